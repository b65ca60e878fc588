/*!
The configuration file: TOML in, a validated and typed [`Config`] out.

Loading happens in two stages (the ripgrep `LowArgs -> HiArgs` habit): serde reads the
file into the `Raw*` structs, which reject unknown keys, and [`Config::load`] turns those
into typed values, resolving secrets from `*_file` keys, `$TWILIO_AUTH_TOKEN`,
`$CALLTRACKD_EXPORT_TOKEN` and systemd's `$CREDENTIALS_DIRECTORY`. Every error is one
sentence that names the file, the key and what to write instead.

The parts that `SIGHUP` may change at run time (`[[numbers]]`, `[qualify]`, `[block]`) live in
[`Rules`], which the server keeps behind a lock so a reload swaps them atomically.

Files: `raw` (the file as serde reads it), `validate` (raw to typed, every check),
`flow` (a number's call flow: hours, guard; the block list),
`secrets` (tokens from the file, `*_file`, the environment and systemd credentials),
`error` (what can go wrong, naming file, key and fix).
*/

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod account;
mod error;
mod flow;
mod notify;
mod raw;
mod secrets;
mod validate;

use secrets::holds_inline_secret;

pub use account::{DEFAULT_API_BASE, TwilioApi, is_loopback_host, is_sid};
pub use error::ConfigError;
pub use flow::{
    BlockList, DEFAULT_GREETING, DEFAULT_RECORD_NOTICE, Flow, Hours, VoicemailGuard, is_open,
};
pub use notify::{NotifyEvent, NotifyKind, NotifyTarget, label as notify_label};
pub use secrets::Secret;
pub use validate::{UrlProblem, is_e164, split_host_port, validate_public_url};

/// Where `--config` points when neither the flag nor `$CALLTRACKD_CONFIG` is given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/calltrackd/config.toml";
/// Default database location outside systemd.
pub const DEFAULT_DB_PATH: &str = "/var/lib/calltrackd/calls.db";
/// Default `ring_timeout_seconds`: under the ~25 s at which most mobile voicemail
/// answers, so a voicemail pickup is not counted as an answered call.
pub const DEFAULT_RING_TIMEOUT: u32 = 20;

/// One tracking number from `[[numbers]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberRule {
    /// The Twilio number in E.164.
    pub number: String,
    /// Whom the calls belong to.
    pub user: String,
    /// Marketing source label; empty when not set.
    pub source: String,
    /// The shop's real phone, when incoming calls are forwarded.
    pub forward_to: Option<String>,
    /// How long `<Dial>` rings before giving up.
    pub ring_timeout_seconds: u32,
    /// This number's own qualification threshold, overriding `[qualify]`'s.
    pub min_duration_seconds: Option<u64>,
    /// How it answers beyond forwarding: hours, whisper, guard, voicemail, recording.
    pub flow: Flow,
}

/// `[qualify]`: what makes a call qualified, abandoned, first-time. A call keeps the
/// values it was decided with (see [`crate::calls`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Qualify {
    /// Talk time (seconds) an answered call needs to count as qualified.
    pub min_duration_seconds: u64,
    /// An unanswered forwarded call whose caller waited less than this was abandoned.
    pub abandon_seconds: u64,
    /// No call from the caller to the user for this many days: a first-time caller.
    pub first_time_lookback_days: u64,
    /// Only first-time callers can be qualified.
    pub require_first_time: bool,
}

impl Default for Qualify {
    fn default() -> Qualify {
        Qualify {
            min_duration_seconds: 30,
            abandon_seconds: 15,
            first_time_lookback_days: 365,
            require_first_time: false,
        }
    }
}

/// The rules `SIGHUP` reloads: the number map, `[qualify]` and `[block]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rules {
    /// Tracking numbers by E.164 number.
    pub numbers: HashMap<String, NumberRule>,
    /// `[qualify]`.
    pub qualify: Qualify,
    /// `[block]`: callers rejected before anything rings.
    pub block: BlockList,
    /// `[export] timezone`: the zone of a number's `hours` unless it sets its own.
    pub timezone: chrono_tz::Tz,
    /// `[[notify]]`: who hears about calls.
    pub notify: Vec<NotifyTarget>,
}

impl Rules {
    /// The rule for a tracking number, if configured.
    pub fn number(&self, number: &str) -> Option<&NumberRule> {
        self.numbers.get(number)
    }

    /// `[qualify]` as it applies to calls on `tracking_number` (its own
    /// `min_duration_seconds`, when set, wins).
    pub fn qualify_for(&self, tracking_number: &str) -> Qualify {
        let mut q = self.qualify;
        if let Some(min) = self
            .number(tracking_number)
            .and_then(|n| n.min_duration_seconds)
        {
            q.min_duration_seconds = min;
        }
        q
    }

    /// For unit tests: one forwarded tracking number (+18005551212, user `acme`, source
    /// `Google Ads`) and a 30 s threshold.
    #[cfg(test)]
    pub(crate) fn example() -> Rules {
        let mut r = Rules::default();
        r.numbers.insert(
            "+18005551212".into(),
            NumberRule {
                number: "+18005551212".into(),
                user: "acme".into(),
                source: "Google Ads".into(),
                forward_to: Some("+15558675309".into()),
                ring_timeout_seconds: 20,
                min_duration_seconds: None,
                flow: Flow::default(),
            },
        );
        r
    }
}

/// `[server]`, typed.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Main listener (webhook, export, healthz).
    pub listen: SocketAddr,
    /// `http(s)://host[:port][/prefix]` without a trailing `/`.
    pub public_url: Option<String>,
    /// Optional listener for `/metrics` only.
    pub metrics_listen: Option<SocketAddr>,
    /// Request-handling threads.
    pub workers: usize,
    /// Bodies above this get 413.
    pub max_body_bytes: u64,
    /// Most connections open at once on the main listener.
    pub max_connections: usize,
}

/// `[export]`, typed.
#[derive(Debug, Clone)]
pub struct ExportConfig {
    /// Token for the HTTP export and share links; `None` turns the HTTP export off.
    pub token: Option<Secret>,
    /// Zone for `started_at_local` and date filters.
    pub timezone: chrono_tz::Tz,
}

/// Which secrets a command needs; the ones it does not need are not read at all, so an
/// operator can run `export` or `backup` without access to the token files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    /// The Twilio auth token (`serve`, `check-config`, `sign`).
    pub auth_token: bool,
    /// The export token (`serve`, `check-config`, `share-link`).
    pub export_token: bool,
}

impl Needs {
    /// Everything (`serve`, `check-config`).
    pub const ALL: Needs = Needs {
        auth_token: true,
        export_token: true,
    };
    /// No secret (`export`, `backup`).
    pub const NONE: Needs = Needs {
        auth_token: false,
        export_token: false,
    };
}

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// `[server]`.
    pub server: ServerConfig,
    /// The SQLite file.
    pub storage_path: PathBuf,
    /// The current auth token, then the previous one while rotating.
    pub auth_tokens: Vec<Secret>,
    /// Where the auth token came from (for `check-config`; never the value).
    pub auth_token_origin: String,
    /// `[twilio]`'s REST keys: account, API key, `api_base`, `reconcile_minutes`.
    pub twilio_api: TwilioApi,
    /// `[export]`.
    pub export: ExportConfig,
    /// Numbers and qualification.
    pub rules: Rules,
    /// Things worth a warning on start (file modes, numbers without forwarding).
    pub warnings: Vec<String>,
}

/// Environment the loader consults; a struct so tests need not touch the process env.
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// `$TWILIO_AUTH_TOKEN`
    pub twilio_auth_token: Option<String>,
    /// `$CALLTRACKD_EXPORT_TOKEN`
    pub export_token: Option<String>,
    /// `$CREDENTIALS_DIRECTORY` (systemd `LoadCredential=`)
    pub credentials_directory: Option<PathBuf>,
    /// `$STATE_DIRECTORY` (systemd `StateDirectory=`)
    pub state_directory: Option<PathBuf>,
}

impl Env {
    /// Reads the variables from the process environment.
    pub fn from_process() -> Env {
        let var = |name: &str| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned());
        Env {
            twilio_auth_token: var("TWILIO_AUTH_TOKEN"),
            export_token: var("CALLTRACKD_EXPORT_TOKEN"),
            credentials_directory: var("CREDENTIALS_DIRECTORY")
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
            // systemd may pass several colon-separated directories; the first is ours.
            state_directory: var("STATE_DIRECTORY")
                .and_then(|s| s.split(':').next().map(str::to_owned))
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
        }
    }
}

/// `1 number`, `2 numbers`, `0 numbers`.
pub fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The config path from `--config`, else `$CALLTRACKD_CONFIG`, else the default.
pub fn resolve_path(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| {
        std::env::var_os("CALLTRACKD_CONFIG")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    })
    .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH))
}

impl Config {
    /// Reads and validates the file at `path` with the given environment.
    pub fn load(path: &Path, env: &Env) -> Result<Config, ConfigError> {
        Config::load_for(path, env, Needs::ALL)
    }

    /// Like [`Config::load`], reading only the secrets in `needs`.
    pub fn load_for(path: &Path, env: &Env, needs: Needs) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            file: file.clone(),
            source: Arc::new(e),
        })?;
        let base = path
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                }
            })
            .unwrap_or(Path::new("."));
        Config::parse_for(&text, &file, base, env, needs).map(|mut c| {
            c.path = path.to_path_buf();
            if let Ok(meta) = std::fs::metadata(path)
                && meta.permissions().mode() & 0o077 != 0
                && holds_inline_secret(&text)
            {
                c.warnings.push(format!(
                    "{file} holds a secret and is readable by group or others (mode {:o}); run: chmod 600 {file} (or chmod 640 and chgrp it to the service's group)",
                    meta.permissions().mode() & 0o777
                ));
            }
            c
        })
    }

    /// Parses config text; `base` is the folder relative paths resolve against.
    pub fn parse(text: &str, file: &str, base: &Path, env: &Env) -> Result<Config, ConfigError> {
        Config::parse_for(text, file, base, env, Needs::ALL)
    }

    /// A summary for `check-config` and the start-up log: no secret in it.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let mut line = |k: &str, v: &str| out.push_str(&format!("{k:<17}{v}\n"));
        line("config", &self.path.display().to_string());
        line("listen", &self.server.listen.to_string());
        line(
            "public_url",
            self.server
                .public_url
                .as_deref()
                .unwrap_or("(not set: signatures use http:// + the Host header)"),
        );
        line(
            "metrics",
            &self
                .server
                .metrics_listen
                .map(|a| format!("http://{a}/metrics"))
                .unwrap_or_else(|| "off".into()),
        );
        line("workers", &self.server.workers.to_string());
        line("max body", &format!("{} bytes", self.server.max_body_bytes));
        line("max connections", &self.server.max_connections.to_string());
        line("database", &self.storage_path.display().to_string());
        line(
            "auth token",
            &format!(
                "{}{}{}",
                if self.auth_tokens.is_empty() {
                    ""
                } else {
                    "set, from "
                },
                self.auth_token_origin,
                if self.auth_tokens.len() > 1 {
                    "; previous token also accepted"
                } else {
                    ""
                }
            ),
        );
        line(
            "http export",
            if self.export.token.is_some() {
                "on (token set)"
            } else {
                "off (no export token in the config, $CALLTRACKD_EXPORT_TOKEN or systemd credential)"
            },
        );
        line("timezone", self.export.timezone.name());
        let api = &self.twilio_api;
        line(
            "twilio account",
            &match &api.account_sid {
                None => "not set (needed by `twilio setup`, `twilio doctor`, `backfill`, sms)"
                    .to_owned(),
                Some(sid) => format!(
                    "{sid} at {}, {}{}",
                    api.api_base,
                    if api.api_key.is_some() {
                        "API key"
                    } else {
                        "auth token"
                    },
                    if api.reconcile_minutes > 0 {
                        format!(", reconciled every {} min", api.reconcile_minutes)
                    } else {
                        String::new()
                    }
                ),
            },
        );
        let q = &self.rules.qualify;
        line(
            "qualified",
            &format!(
                "answered and at least {} s of talk{}",
                q.min_duration_seconds,
                if q.require_first_time {
                    ", first-time callers only"
                } else {
                    ""
                }
            ),
        );
        line(
            "abandoned",
            &format!(
                "unanswered after less than {} s of ringing",
                q.abandon_seconds
            ),
        );
        line(
            "first-time",
            &format!(
                "no call from the caller to the user in {} days",
                q.first_time_lookback_days
            ),
        );
        line(
            "notify",
            &if self.rules.notify.is_empty() {
                "none".to_owned()
            } else {
                self.rules
                    .notify
                    .iter()
                    .map(|t| {
                        format!(
                            "{} ({})",
                            notify_label(&t.key),
                            t.events
                                .iter()
                                .map(|e| e.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            },
        );
        line(
            "block list",
            &count(self.rules.block.len(), "entry", "entries"),
        );
        let users: BTreeSet<&str> = self
            .rules
            .numbers
            .values()
            .map(|n| n.user.as_str())
            .collect();
        line(
            "numbers",
            &format!(
                "{}, {}",
                count(self.rules.numbers.len(), "number", "numbers"),
                count(users.len(), "user", "users")
            ),
        );
        let mut nums: Vec<&NumberRule> = self.rules.numbers.values().collect();
        nums.sort_by(|a, b| a.number.cmp(&b.number));
        for n in nums {
            let mut s = format!("  {}  user {:?}", n.number, n.user);
            if !n.source.is_empty() {
                s.push_str(&format!("  source {:?}", n.source));
            }
            match &n.forward_to {
                Some(f) => s.push_str(&format!(
                    "  forwards to {f} (rings {} s)",
                    n.ring_timeout_seconds
                )),
                None => s.push_str("  not forwarded"),
            }
            if let Some(min) = n.min_duration_seconds {
                s.push_str(&format!("  qualified at {min} s"));
            }
            let f = &n.flow;
            if let Some(h) = &f.hours {
                s.push_str(&format!(
                    "  {} ({})",
                    count(h.len(), "hours entry", "hours entries"),
                    f.timezone.unwrap_or(self.rules.timezone).name()
                ));
                if let Some(a) = &f.after_hours_forward_to {
                    s.push_str(&format!(", after hours {a}"));
                }
            }
            for (on, what) in [
                (f.whisper.is_some(), "whisper"),
                (
                    f.voicemail_guard == VoicemailGuard::Keypress,
                    "keypress guard",
                ),
                (
                    f.voicemail_guard == VoicemailGuard::Amd,
                    "AMD guard (billed)",
                ),
                (f.voicemail, "voicemail"),
                (f.record, "recorded"),
            ] {
                if on {
                    s.push_str(&format!("  {what}"));
                }
            }
            out.push_str(&s);
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests;
