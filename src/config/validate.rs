//! From the raw file to a typed [`Config`]: every check, each error naming the file, the
//! key and what to write instead.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::error::toml_error;
use super::flow::block_file_entries;
use super::raw::RawConfig;
use super::*;

/// True for `+` followed by 2 to 15 digits, the first not 0 (ITU-T E.164).
pub fn is_e164(s: &str) -> bool {
    let Some(digits) = s.strip_prefix('+') else {
        return false;
    };
    (2..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

/// Checks `http(s)://host[:port][/prefix]` and drops one trailing `/`. The result is
/// used verbatim to build signed URLs, so nothing else is normalised.
pub fn validate_public_url(raw: &str) -> Result<String, UrlProblem> {
    let url = raw.strip_suffix('/').unwrap_or(raw);
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or(UrlProblem::Scheme)?;
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(UrlProblem::Spaces);
    }
    if url.contains(['?', '#']) {
        return Err(UrlProblem::Query);
    }
    let (authority, _prefix) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.contains('@') {
        return Err(UrlProblem::Credentials);
    }
    let (host, port) = split_host_port(authority);
    let host_ok = if let Some(inner) = host.strip_prefix('[') {
        inner
            .strip_suffix(']')
            .is_some_and(|h| h.parse::<std::net::Ipv6Addr>().is_ok())
    } else {
        !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
    };
    if !host_ok {
        return Err(UrlProblem::Host(host.to_owned()));
    }
    if let Some(port) = port
        && !matches!(port.parse::<u16>(), Ok(p) if p > 0)
    {
        return Err(UrlProblem::Port(port.to_owned()));
    }
    if url.ends_with('/') {
        return Err(UrlProblem::DoubleSlash);
    }
    Ok(url.to_owned())
}

/// Why a `public_url` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlProblem {
    /// Not http or https.
    #[error("it must start with https:// or http://")]
    Scheme,
    /// White space or control characters.
    #[error("it must not contain spaces")]
    Spaces,
    /// A query or fragment.
    #[error("it must not have a query or fragment")]
    Query,
    /// A user name or password.
    #[error("it must not contain a user name or password")]
    Credentials,
    /// Not a host name.
    #[error("`{0}` is not a host name")]
    Host(String),
    /// Not a port number.
    #[error("`{0}` is not a port number")]
    Port(String),
    /// Ends with `//`.
    #[error("it must not end with //")]
    DoubleSlash,
}

/// Splits `host[:port]` (IPv6 in brackets). Port is `None` when absent.
pub fn split_host_port(authority: &str) -> (&str, Option<&str>) {
    let colon = if authority.starts_with('[') {
        authority.find("]:").map(|i| i + 1)
    } else {
        authority.rfind(':')
    };
    match colon {
        Some(i) => (&authority[..i], Some(&authority[i + 1..])),
        None => (authority, None),
    }
}

pub(super) struct Loader<'a> {
    pub(super) file: String,
    pub(super) base: &'a Path,
    pub(super) env: &'a Env,
    pub(super) warnings: Vec<String>,
    /// Every problem found so far: all are reported at once.
    pub(super) problems: Vec<ConfigError>,
}

impl Loader<'_> {
    /// Records a problem; loading goes on, to find the others.
    pub(super) fn problem(&mut self, msg: impl fmt::Display) {
        let e = self.err(msg);
        self.problems.push(e);
    }

    /// The value, or the fallback with the error recorded.
    pub(super) fn or<T>(&mut self, r: Result<T, ConfigError>, fallback: T) -> T {
        r.unwrap_or_else(|e| {
            self.problems.push(e);
            fallback
        })
    }

    /// Every problem found, as one error; `Ok` when there was none.
    fn finish(&mut self) -> Result<(), ConfigError> {
        match self.problems.len() {
            0 => Ok(()),
            1 => Err(self.problems.remove(0)),
            _ => Err(ConfigError::Many {
                file: self.file.clone(),
                problems: self.problems.drain(..).map(|e| e.sentence()).collect(),
            }),
        }
    }

    pub(super) fn err(&self, msg: impl fmt::Display) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.clone(),
            message: msg.to_string(),
        }
    }

    pub(super) fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    /// A number within `range`, else the default with the problem recorded.
    pub(super) fn range(
        &mut self,
        key: &str,
        value: Option<i64>,
        range: std::ops::RangeInclusive<i64>,
        what: &str,
        default: u64,
    ) -> u64 {
        match value {
            None => default,
            Some(n) if range.contains(&n) => n as u64,
            Some(n) => {
                self.problem(format_args!(
                    "{key} = {n} is out of range; write {what} from {} to {} (default {default})",
                    range.start(),
                    range.end()
                ));
                default
            }
        }
    }

    /// A number's call-flow keys, checked.
    fn flow(&mut self, at: &str, n: &super::raw::RawNumber) -> Flow {
        let timezone = n.timezone.as_ref().and_then(|name| match name.parse::<chrono_tz::Tz>() {
            Ok(tz) => Some(tz),
            Err(_) => {
                self.problem(format_args!(
                    "{at}: `timezone` = {name:?} is not a known IANA time zone; write a name like \"America/Chicago\""
                ));
                None
            }
        });
        let hours = n.hours.as_ref().map(|list| {
            list.iter()
                .filter_map(|h| match Hours::parse(h) {
                    Ok(h) => Some(h),
                    Err(why) => {
                        self.problem(format_args!("{at}: `hours`: {why}"));
                        None
                    }
                })
                .collect::<Vec<_>>()
        });
        if let Some(f) = &n.after_hours_forward_to {
            if !is_e164(f) {
                self.problem(format_args!(
                    "{at}: `after_hours_forward_to` = {f:?} is not E.164; write + then country code and number, digits only"
                ));
            }
            if hours.is_none() {
                self.problem(format_args!(
                    "{at}: `after_hours_forward_to` is set but `hours` is not, so it would never ring; add `hours` (e.g. [\"mon-fri 08:00-17:00\"]) or remove it"
                ));
            }
        }
        let voicemail_guard = match n.voicemail_guard.as_deref() {
            None => VoicemailGuard::Off,
            Some(g) => VoicemailGuard::parse(g).unwrap_or_else(|| {
                self.problem(format_args!(
                    "{at}: `voicemail_guard` = {g:?} is not a guard; write \"off\", \"keypress\" or \"amd\""
                ));
                VoicemailGuard::Off
            }),
        };
        let text = |v: &Option<String>| {
            v.as_ref()
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
        };
        Flow {
            timezone,
            hours,
            after_hours_forward_to: n.after_hours_forward_to.clone(),
            closed_message: text(&n.closed_message),
            whisper: text(&n.whisper),
            voicemail_guard,
            voicemail: n.voicemail.unwrap_or(false),
            voicemail_greeting: text(&n.voicemail_greeting)
                .unwrap_or_else(|| DEFAULT_GREETING.to_owned()),
            record: n.record.unwrap_or(false),
            record_notice: text(&n.record_notice)
                .unwrap_or_else(|| DEFAULT_RECORD_NOTICE.to_owned()),
            caller_name_lookup: n.caller_name_lookup.unwrap_or(false),
        }
    }

    fn listen(&self, key: &str, value: &str) -> Result<SocketAddr, ConfigError> {
        value.parse().map_err(|_| {
            self.err(format_args!(
                "[server] `{key}` = {value:?} is not an address; write IP:PORT, e.g. \"127.0.0.1:8080\""
            ))
        })
    }
}

impl Config {
    /// Like [`Config::parse`], reading only the secrets in `needs`.
    pub fn parse_for(
        text: &str,
        file: &str,
        base: &Path,
        env: &Env,
        needs: Needs,
    ) -> Result<Config, ConfigError> {
        let mut raw: RawConfig = toml::from_str(text).map_err(|e| toml_error(file, text, &e))?;
        let mut ld = Loader {
            file: file.to_owned(),
            base,
            env,
            warnings: Vec::new(),
            problems: Vec::new(),
        };

        // [server]
        let s = raw.server;
        let fallback: SocketAddr = ([127, 0, 0, 1], 8080).into();
        let listen = ld.listen("listen", s.listen.as_deref().unwrap_or("127.0.0.1:8080"));
        let listen = ld.or(listen, fallback);
        let metrics_listen = match &s.metrics_listen {
            Some(m) => {
                let r = ld.listen("metrics_listen", m).map(Some);
                ld.or(r, None)
            }
            None => None,
        };
        let public_url = match &s.public_url {
            Some(u) => match validate_public_url(u) {
                Ok(v) => Some(v),
                Err(why) => {
                    ld.problem(format_args!(
                        "[server] `public_url` = {u:?} is not usable: {why}; write the URL Twilio reaches calltrackd's \"/\" at, e.g. \"https://calls.example.com\""
                    ));
                    None
                }
            },
            None => None,
        };
        let workers = match s.workers {
            None => 8,
            Some(n) if (1..=1024).contains(&n) => n as usize,
            Some(n) => {
                ld.problem(format_args!(
                    "[server] `workers` = {n} is out of range; write a number from 1 to 1024 (default 8)"
                ));
                8
            }
        };
        let max_connections = match s.max_connections {
            None => 256,
            Some(n) if (16..=4096).contains(&n) => n as usize,
            Some(n) => {
                ld.problem(format_args!(
                    "[server] `max_connections` = {n} is out of range; write a number from 16 to 4096 (default 256)"
                ));
                256
            }
        };
        let max_body_bytes = match s.max_body_bytes {
            None => 65536,
            Some(n) if (1024..=64 * 1024 * 1024).contains(&n) => n as u64,
            Some(n) => {
                ld.problem(format_args!(
                    "[server] `max_body_bytes` = {n} is out of range; write a number from 1024 to 67108864 (default 65536)"
                ));
                65536
            }
        };

        // [storage]
        let storage_path = match (&raw.storage.path, &env.state_directory) {
            (Some(p), _) if p.trim().is_empty() => {
                ld.problem(
                    "[storage] `path` is empty; write the database file's path, e.g. \"/var/lib/calltrackd/calls.db\"",
                );
                PathBuf::from(DEFAULT_DB_PATH)
            }
            (Some(p), _) => ld.resolve(p),
            (None, Some(state)) => state.join("calls.db"),
            (None, None) => PathBuf::from(DEFAULT_DB_PATH),
        };

        // [twilio]
        let mut t = raw.twilio;
        let need = needs.auth_token;
        let twilio_api = ld.twilio_api(&mut t, need);
        let problems_before = ld.problems.len();
        let from_file = ld.secret(
            "twilio",
            "auth_token",
            t.auth_token,
            t.auth_token_file,
            need,
        );
        let from_file = ld.or(from_file, None);
        let previous = ld.secret(
            "twilio",
            "previous_auth_token",
            t.previous_auth_token,
            t.previous_auth_token_file,
            need,
        );
        let previous = ld.or(previous, None);
        let mut auth_tokens = Vec::new();
        let mut origin = "not read by this command".to_owned();
        if need {
            let env_token = ld.env_secret("TWILIO_AUTH_TOKEN", &env.twilio_auth_token);
            let found = match ld.or(env_token, None) {
                Some(tok) => Some((tok, "environment variable TWILIO_AUTH_TOKEN".to_owned())),
                None => match from_file {
                    Some(found) => Some(found),
                    None => {
                        let c = ld.credential("twilio-auth-token");
                        ld.or(c, None)
                    }
                },
            };
            match found {
                Some((primary, from)) => {
                    origin = from;
                    auth_tokens.push(primary);
                }
                // A token that was given but could not be read is reported already.
                None if ld.problems.len() > problems_before => {}
                None => ld.problem(
                    "[twilio] has no auth token; set `auth_token` (or `auth_token_file`, or the environment variable TWILIO_AUTH_TOKEN, or systemd's LoadCredential=twilio-auth-token) to the Auth Token from the Twilio console",
                ),
            }
            let previous = match previous {
                Some((tok, _)) => Some(tok),
                None => {
                    let c = ld.credential("twilio-previous-auth-token");
                    ld.or(c, None).map(|(t, _)| t)
                }
            };
            auth_tokens.extend(previous);
        }

        // [qualify]
        let defaults = Qualify::default();
        let q = raw.qualify;
        let qualify = Qualify {
            min_duration_seconds: ld.range(
                "[qualify] `min_duration_seconds`",
                q.min_duration_seconds,
                0..=86_400,
                "a number of seconds",
                defaults.min_duration_seconds,
            ),
            abandon_seconds: ld.range(
                "[qualify] `abandon_seconds`",
                q.abandon_seconds,
                0..=3_600,
                "a number of seconds",
                defaults.abandon_seconds,
            ),
            first_time_lookback_days: ld.range(
                "[qualify] `first_time_lookback_days`",
                q.first_time_lookback_days,
                1..=3_650,
                "a number of days",
                defaults.first_time_lookback_days,
            ),
            require_first_time: q.require_first_time.unwrap_or(defaults.require_first_time),
        };

        // [export]
        let e = raw.export;
        let file_token = ld.secret("export", "token", e.token, e.token_file, needs.export_token);
        let file_token = ld.or(file_token, None);
        let export_token = if !needs.export_token {
            None
        } else {
            let env_token = ld.env_secret("CALLTRACKD_EXPORT_TOKEN", &env.export_token);
            match ld.or(env_token, None) {
                Some(tok) => Some(tok),
                None => match file_token {
                    Some((tok, _)) => Some(tok),
                    None => {
                        let c = ld.credential("export-token");
                        ld.or(c, None).map(|(t, _)| t)
                    }
                },
            }
        };
        let timezone = match &e.timezone {
            None => chrono_tz::UTC,
            Some(name) => match name.parse::<chrono_tz::Tz>() {
                Ok(tz) => tz,
                Err(_) => {
                    ld.problem(format_args!(
                        "[export] `timezone` = {name:?} is not a known IANA time zone; write a name like \"America/Chicago\" or \"UTC\""
                    ));
                    chrono_tz::UTC
                }
            },
        };

        // [block]
        let mut block = BlockList::default();
        for entry in raw.block.callers.iter().flatten() {
            if let Err(why) = block.add(entry.trim()) {
                ld.problem(format_args!("[block] `callers`: {why}"));
            }
        }
        if let Some(file) = &raw.block.file {
            let path = ld.resolve(file);
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    for (line, entry) in block_file_entries(&text) {
                        if let Err(why) = block.add(entry) {
                            ld.problem(format_args!(
                                "[block] `file` {} line {line}: {why}",
                                path.display()
                            ));
                        }
                    }
                }
                Err(e) => ld.problem(format_args!(
                    "[block] `file` {} cannot be read ({e}); create it (one number or prefix* a line) or remove the key",
                    path.display()
                )),
            }
        }

        // [[notify]]
        let notify = ld.notify(
            std::mem::take(&mut raw.notify),
            need,
            twilio_api.account_sid.is_some(),
        );

        // [[numbers]]
        let mut numbers = HashMap::new();
        for (i, n) in raw.numbers.into_iter().enumerate() {
            let at = format!("[[numbers]] entry {}", i + 1);
            let Some(number) = n.number.clone() else {
                ld.problem(format_args!(
                    "{at} has no `number`; add the Twilio tracking number, e.g. number = \"+18005551212\""
                ));
                continue;
            };
            let before = ld.problems.len();
            let at = format!("[[numbers]] entry {} ({number})", i + 1);
            let flow = ld.flow(&at, &n);
            if !is_e164(&number) {
                ld.problem(format_args!(
                    "{at}: `number` = {number:?} is not E.164; write + then country code and number, digits only, e.g. \"+18005551212\""
                ));
            }
            let user = n.user.unwrap_or_default();
            if user.trim().is_empty() {
                ld.problem(format_args!(
                    "{at} has no `user`; add the customer the calls belong to, e.g. user = \"acme-plumbing\""
                ));
            }
            if let Some(f) = &n.forward_to
                && !is_e164(f)
            {
                ld.problem(format_args!(
                    "{at}: `forward_to` = {f:?} is not E.164; write + then country code and number, digits only, e.g. \"+15558675309\""
                ));
            }
            let ring_timeout_seconds = match n.ring_timeout_seconds {
                None => DEFAULT_RING_TIMEOUT,
                Some(s) if (5..=600).contains(&s) => s as u32,
                Some(s) => {
                    ld.problem(format_args!(
                        "{at}: `ring_timeout_seconds` = {s} is out of range; write 5 to 600 seconds (Twilio's limits; default {DEFAULT_RING_TIMEOUT})"
                    ));
                    DEFAULT_RING_TIMEOUT
                }
            };
            let min_duration_seconds = n.min_duration_seconds.map(|m| {
                ld.range(
                    &format!("{at}: `min_duration_seconds`"),
                    Some(m),
                    0..=86_400,
                    "a number of seconds",
                    qualify.min_duration_seconds,
                )
            });
            if ld.problems.len() > before {
                continue;
            }
            if n.forward_to.is_none() {
                ld.warnings.push(format!(
                    "{at} has no `forward_to`: its calls are recorded and then hung up on"
                ));
            }
            let rule = NumberRule {
                number: number.clone(),
                user,
                source: n.source.unwrap_or_default(),
                forward_to: n.forward_to,
                ring_timeout_seconds,
                min_duration_seconds,
                flow,
            };
            if numbers.insert(number.clone(), rule).is_some() {
                ld.problem(format_args!(
                    "{at}: `number` {number} is listed twice; keep one [[numbers]] block per number"
                ));
            }
        }
        if numbers.is_empty() {
            ld.warnings.push(format!(
                "{file} has no [[numbers]]: every call will be recorded with an empty user"
            ));
        }

        ld.finish()?;
        Ok(Config {
            path: PathBuf::from(file),
            server: ServerConfig {
                listen,
                public_url,
                metrics_listen,
                workers,
                max_body_bytes,
                max_connections,
            },
            storage_path,
            auth_tokens,
            auth_token_origin: origin,
            twilio_api,
            export: ExportConfig {
                token: export_token,
                timezone,
            },
            rules: Rules {
                numbers,
                qualify,
                block,
                timezone,
                notify,
            },
            warnings: ld.warnings,
        })
    }
}
