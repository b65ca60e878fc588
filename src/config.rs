/*!
The configuration file: TOML in, a validated and typed [`Config`] out.

Loading happens in two stages (the ripgrep `LowArgs -> HiArgs` habit): serde reads the
file into the `Raw*` structs, which reject unknown keys, and [`Config::load`] turns those
into typed values, resolving secrets from `*_file` keys, `$TWILIO_AUTH_TOKEN`,
`$CALLTRACKD_EXPORT_TOKEN` and systemd's `$CREDENTIALS_DIRECTORY`. Every error is one
sentence that names the file, the key and what to write instead.

The parts that `SIGHUP` may change at run time (`[[numbers]]` and `[qualify]`) live in
[`Rules`], which the server keeps behind a lock so a reload swaps them atomically.
*/

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Where `--config` points when neither the flag nor `$CALLTRACKD_CONFIG` is given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/calltrackd/config.toml";
/// Default database location outside systemd.
pub const DEFAULT_DB_PATH: &str = "/var/lib/calltrackd/calls.db";
/// Default `ring_timeout_seconds`: under the ~25 s at which most mobile voicemail
/// answers, so a voicemail pickup is not counted as an answered call.
pub const DEFAULT_RING_TIMEOUT: u32 = 20;

/// A secret (auth token, export token). Its `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: String) -> Secret {
        Secret(value)
    }
    /// The secret itself: use only to key a MAC or compare in constant time.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(****)")
    }
}

/// A configuration error: one sentence naming file, key and fix. Exit code 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

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
}

/// The rules `SIGHUP` reloads: the number map and the qualification threshold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rules {
    /// Tracking numbers by E.164 number.
    pub numbers: HashMap<String, NumberRule>,
    /// Talk time (seconds) an answered call needs to count as qualified.
    pub min_duration_seconds: u64,
}

impl Rules {
    /// The rule for a tracking number, if configured.
    pub fn number(&self, number: &str) -> Option<&NumberRule> {
        self.numbers.get(number)
    }

    /// For unit tests: one forwarded tracking number (+18005551212, user `acme`, source
    /// `Google Ads`) and a 30 s threshold.
    #[cfg(test)]
    pub(crate) fn example() -> Rules {
        let mut r = Rules {
            min_duration_seconds: 30,
            ..Rules::default()
        };
        r.numbers.insert(
            "+18005551212".into(),
            NumberRule {
                number: "+18005551212".into(),
                user: "acme".into(),
                source: "Google Ads".into(),
                forward_to: Some("+15558675309".into()),
                ring_timeout_seconds: 20,
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
    /// `[export]`.
    pub export: ExportConfig,
    /// Numbers and qualification.
    pub rules: Rules,
    /// Things worth a warning on start (file modes, numbers without forwarding).
    pub warnings: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    storage: RawStorage,
    #[serde(default)]
    twilio: RawTwilio,
    #[serde(default)]
    qualify: RawQualify,
    #[serde(default)]
    export: RawExport,
    #[serde(default)]
    numbers: Vec<RawNumber>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    public_url: Option<String>,
    metrics_listen: Option<String>,
    workers: Option<i64>,
    max_body_bytes: Option<i64>,
    max_connections: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    path: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTwilio {
    auth_token: Option<String>,
    auth_token_file: Option<String>,
    previous_auth_token: Option<String>,
    previous_auth_token_file: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawQualify {
    min_duration_seconds: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawExport {
    token: Option<String>,
    token_file: Option<String>,
    timezone: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNumber {
    number: Option<String>,
    user: Option<String>,
    source: Option<String>,
    forward_to: Option<String>,
    ring_timeout_seconds: Option<i64>,
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

/// The config path from `--config`, else `$CALLTRACKD_CONFIG`, else the default.
pub fn resolve_path(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| {
        std::env::var_os("CALLTRACKD_CONFIG")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    })
    .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH))
}

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
pub fn validate_public_url(raw: &str) -> Result<String, String> {
    let url = raw.strip_suffix('/').unwrap_or(raw);
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or("it must start with https:// or http://")?;
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("it must not contain spaces".into());
    }
    if url.contains(['?', '#']) {
        return Err("it must not have a query or fragment".into());
    }
    let (authority, _prefix) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.contains('@') {
        return Err("it must not contain a user name or password".into());
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
        return Err(format!("`{host}` is not a host name"));
    }
    if let Some(port) = port
        && !matches!(port.parse::<u16>(), Ok(p) if p > 0)
    {
        return Err(format!("`{port}` is not a port number"));
    }
    if url.ends_with('/') {
        return Err("it must not end with //".into());
    }
    Ok(url.to_owned())
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

struct Loader<'a> {
    file: String,
    base: &'a Path,
    env: &'a Env,
    warnings: Vec<String>,
}

impl Loader<'_> {
    fn err(&self, msg: impl fmt::Display) -> ConfigError {
        ConfigError(format!("{}: {}", self.file, msg))
    }

    fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    /// Reads a secret from `key` / `key_file`, both being an error.
    fn secret(
        &mut self,
        table: &str,
        key: &str,
        inline: Option<String>,
        file: Option<String>,
        needed: bool,
    ) -> Result<Option<(Secret, String)>, ConfigError> {
        match (inline, file) {
            (None, Some(_)) if !needed => Ok(None),
            (Some(_), Some(_)) => Err(self.err(format_args!(
                "[{table}] sets both `{key}` and `{key}_file`; keep only one of them"
            ))),
            (Some(v), None) => {
                if v.trim().is_empty() {
                    return Err(self.err(format_args!(
                        "[{table}] `{key}` is empty; set it to the token, or remove the key"
                    )));
                }
                // Trimmed like a token read from a file.
                Ok(Some((
                    Secret::new(v.trim().to_owned()),
                    format!("[{table}] {key}"),
                )))
            }
            (None, Some(f)) => {
                let path = self.resolve(&f);
                let v = self.read_secret_file(&path, &format!("[{table}] `{key}_file`"))?;
                Ok(Some((Secret::new(v), format!("file {}", path.display()))))
            }
            (None, None) => Ok(None),
        }
    }

    fn read_secret_file(&mut self, path: &Path, what: &str) -> Result<String, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            self.err(format_args!(
                "{what} {} cannot be read ({e}); fix the path or the file's permissions",
                path.display()
            ))
        })?;
        let v = text.trim();
        if v.is_empty() {
            return Err(self.err(format_args!(
                "{what} {} is empty; write the token into it",
                path.display()
            )));
        }
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            self.warnings.push(format!(
                "secret file {} is readable by group or others (mode {:o}); run: chmod 600 {}",
                path.display(),
                meta.permissions().mode() & 0o777,
                path.display()
            ));
        }
        Ok(v.to_owned())
    }

    /// A secret from the environment: set-but-empty is an error, not "unset".
    fn env_secret(
        &self,
        name: &str,
        value: &Option<String>,
    ) -> Result<Option<Secret>, ConfigError> {
        match value {
            None => Ok(None),
            Some(v) if v.trim().is_empty() => Err(ConfigError(format!(
                "environment variable {name} is set but empty; unset it or give it the token"
            ))),
            Some(v) => Ok(Some(Secret::new(v.trim().to_owned()))),
        }
    }

    /// A secret handed over by systemd's `LoadCredential=`, if present.
    fn credential(&mut self, name: &str) -> Result<Option<(Secret, String)>, ConfigError> {
        let Some(dir) = &self.env.credentials_directory else {
            return Ok(None);
        };
        let path = dir.join(name);
        if !path.exists() {
            return Ok(None);
        }
        let v = self.read_secret_file(&path, "systemd credential")?;
        Ok(Some((Secret::new(v), format!("systemd credential {name}"))))
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
    /// Reads and validates the file at `path` with the given environment.
    pub fn load(path: &Path, env: &Env) -> Result<Config, ConfigError> {
        Config::load_for(path, env, Needs::ALL)
    }

    /// Like [`Config::load`], reading only the secrets in `needs`.
    pub fn load_for(path: &Path, env: &Env, needs: Needs) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError(format!(
                "{file}: cannot read the config file ({e}); pass the right one with --config PATH or $CALLTRACKD_CONFIG"
            ))
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

    /// Like [`Config::parse`], reading only the secrets in `needs`.
    pub fn parse_for(
        text: &str,
        file: &str,
        base: &Path,
        env: &Env,
        needs: Needs,
    ) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| toml_error(file, text, &e))?;
        let mut ld = Loader {
            file: file.to_owned(),
            base,
            env,
            warnings: Vec::new(),
        };

        // [server]
        let s = raw.server;
        let listen = ld.listen("listen", s.listen.as_deref().unwrap_or("127.0.0.1:8080"))?;
        let metrics_listen = match &s.metrics_listen {
            Some(m) => Some(ld.listen("metrics_listen", m)?),
            None => None,
        };
        let public_url = match &s.public_url {
            Some(u) => Some(validate_public_url(u).map_err(|why| {
                ld.err(format_args!(
                    "[server] `public_url` = {u:?} is not usable: {why}; write the URL Twilio reaches calltrackd's \"/\" at, e.g. \"https://calls.example.com\""
                ))
            })?),
            None => None,
        };
        let workers = match s.workers {
            None => 8,
            Some(n) if (1..=1024).contains(&n) => n as usize,
            Some(n) => {
                return Err(ld.err(format_args!(
                    "[server] `workers` = {n} is out of range; write a number from 1 to 1024 (default 8)"
                )));
            }
        };
        let max_connections = match s.max_connections {
            None => 256,
            Some(n) if (16..=4096).contains(&n) => n as usize,
            Some(n) => {
                return Err(ld.err(format_args!(
                    "[server] `max_connections` = {n} is out of range; write a number from 16 to 4096 (default 256)"
                )));
            }
        };
        let max_body_bytes = match s.max_body_bytes {
            None => 65536,
            Some(n) if (1024..=64 * 1024 * 1024).contains(&n) => n as u64,
            Some(n) => {
                return Err(ld.err(format_args!(
                    "[server] `max_body_bytes` = {n} is out of range; write a number from 1024 to 67108864 (default 65536)"
                )));
            }
        };

        // [storage]
        let storage_path = match (&raw.storage.path, &env.state_directory) {
            (Some(p), _) if p.trim().is_empty() => {
                return Err(ld.err(
                    "[storage] `path` is empty; write the database file's path, e.g. \"/var/lib/calltrackd/calls.db\"",
                ));
            }
            (Some(p), _) => ld.resolve(p),
            (None, Some(state)) => state.join("calls.db"),
            (None, None) => PathBuf::from(DEFAULT_DB_PATH),
        };

        // [twilio]
        let t = raw.twilio;
        let need = needs.auth_token;
        let from_file = ld.secret(
            "twilio",
            "auth_token",
            t.auth_token,
            t.auth_token_file,
            need,
        )?;
        let previous = ld.secret(
            "twilio",
            "previous_auth_token",
            t.previous_auth_token,
            t.previous_auth_token_file,
            need,
        )?;
        let mut auth_tokens = Vec::new();
        let mut origin = "not read by this command".to_owned();
        if need {
            let found = match ld.env_secret("TWILIO_AUTH_TOKEN", &env.twilio_auth_token)? {
                Some(tok) => Some((tok, "environment variable TWILIO_AUTH_TOKEN".to_owned())),
                None => match from_file {
                    Some(found) => Some(found),
                    None => ld.credential("twilio-auth-token")?,
                },
            };
            let Some((primary, from)) = found else {
                return Err(ld.err(
                    "[twilio] has no auth token; set `auth_token` (or `auth_token_file`, or the environment variable TWILIO_AUTH_TOKEN, or systemd's LoadCredential=twilio-auth-token) to the Auth Token from the Twilio console",
                ));
            };
            origin = from;
            auth_tokens.push(primary);
            let previous = match previous {
                Some((tok, _)) => Some(tok),
                None => ld.credential("twilio-previous-auth-token")?.map(|(t, _)| t),
            };
            auth_tokens.extend(previous);
        }

        // [qualify]
        let min_duration_seconds = match raw.qualify.min_duration_seconds {
            None => 30,
            Some(n) if (0..=86_400).contains(&n) => n as u64,
            Some(n) => {
                return Err(ld.err(format_args!(
                    "[qualify] `min_duration_seconds` = {n} is out of range; write a number of seconds from 0 to 86400 (default 30)"
                )));
            }
        };

        // [export]
        let e = raw.export;
        let file_token = ld.secret("export", "token", e.token, e.token_file, needs.export_token)?;
        let export_token = if !needs.export_token {
            None
        } else {
            match ld.env_secret("CALLTRACKD_EXPORT_TOKEN", &env.export_token)? {
                Some(tok) => Some(tok),
                None => match file_token {
                    Some((tok, _)) => Some(tok),
                    None => ld.credential("export-token")?.map(|(t, _)| t),
                },
            }
        };
        let timezone = match &e.timezone {
            None => chrono_tz::UTC,
            Some(name) => name.parse::<chrono_tz::Tz>().map_err(|_| {
                ld.err(format_args!(
                    "[export] `timezone` = {name:?} is not a known IANA time zone; write a name like \"America/Chicago\" or \"UTC\""
                ))
            })?,
        };

        // [[numbers]]
        let mut numbers = HashMap::new();
        for (i, n) in raw.numbers.into_iter().enumerate() {
            let at = format!("[[numbers]] entry {}", i + 1);
            let number = n.number.ok_or_else(|| {
                ld.err(format_args!(
                    "{at} has no `number`; add the Twilio tracking number, e.g. number = \"+18005551212\""
                ))
            })?;
            let at = format!("[[numbers]] entry {} ({number})", i + 1);
            if !is_e164(&number) {
                return Err(ld.err(format_args!(
                    "{at}: `number` = {number:?} is not E.164; write + then country code and number, digits only, e.g. \"+18005551212\""
                )));
            }
            let user = n.user.unwrap_or_default();
            if user.trim().is_empty() {
                return Err(ld.err(format_args!(
                    "{at} has no `user`; add the customer the calls belong to, e.g. user = \"acme-plumbing\""
                )));
            }
            if let Some(f) = &n.forward_to
                && !is_e164(f)
            {
                return Err(ld.err(format_args!(
                    "{at}: `forward_to` = {f:?} is not E.164; write + then country code and number, digits only, e.g. \"+15558675309\""
                )));
            }
            let ring_timeout_seconds = match n.ring_timeout_seconds {
                None => DEFAULT_RING_TIMEOUT,
                Some(s) if (5..=600).contains(&s) => s as u32,
                Some(s) => {
                    return Err(ld.err(format_args!(
                        "{at}: `ring_timeout_seconds` = {s} is out of range; write 5 to 600 seconds (Twilio's limits; default {DEFAULT_RING_TIMEOUT})"
                    )));
                }
            };
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
            };
            if numbers.insert(number.clone(), rule).is_some() {
                return Err(ld.err(format_args!(
                    "{at}: `number` {number} is listed twice; keep one [[numbers]] block per number"
                )));
            }
        }
        if numbers.is_empty() {
            ld.warnings.push(format!(
                "{file} has no [[numbers]]: every call will be recorded with an empty user"
            ));
        }

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
            export: ExportConfig {
                token: export_token,
                timezone,
            },
            rules: Rules {
                numbers,
                min_duration_seconds,
            },
            warnings: ld.warnings,
        })
    }

    /// A summary for `check-config` and the start-up log: no secret in it.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let mut line = |k: &str, v: &str| out.push_str(&format!("{k:<14}{v}\n"));
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
        line(
            "qualified",
            &format!(
                "answered and at least {} s of talk",
                self.rules.min_duration_seconds
            ),
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
                "{} numbers, {} users",
                self.rules.numbers.len(),
                users.len()
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
            out.push_str(&s);
            out.push('\n');
        }
        out
    }
}

/// Whether the config text sets a secret inline (`auth_token`, `token`, ...).
fn holds_inline_secret(text: &str) -> bool {
    text.lines().any(|l| {
        let l = l.trim_start();
        ["auth_token", "previous_auth_token", "token"]
            .iter()
            .any(|k| {
                l.strip_prefix(k)
                    .is_some_and(|r| r.trim_start().starts_with('='))
            })
    })
}

/// `invalid type: integer `31415926535`, expected a string` without the value:
/// `invalid type: integer, expected a string`. Key names in other messages stay.
fn redact_values(msg: &str) -> String {
    if !(msg.starts_with("invalid type") || msg.starts_with("invalid value")) {
        return msg.to_owned();
    }
    let mut out = String::with_capacity(msg.len());
    let mut inside = false;
    for c in msg.chars() {
        if c == '`' {
            inside = !inside;
        } else if !inside {
            out.push(c);
        }
    }
    out.replace(" ,", ",").replace("  ", " ")
}

/// Turns a TOML/serde error into one sentence: file, line, table, key, fix.
fn toml_error(file: &str, text: &str, e: &toml::de::Error) -> ConfigError {
    // serde quotes the offending value (`invalid type: integer `31415926535``), and
    // the line could be a secret's: name only its type, never the value.
    let msg = redact_values(e.message().trim().trim_end_matches('.'));
    let msg = msg.as_str();
    let (line, table) = match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let table = before
                .lines()
                .rev()
                .map(str::trim)
                .find(|l| l.starts_with('['))
                .map(|l| {
                    let end = l.rfind(']').map(|i| i + 1).unwrap_or(l.len());
                    format!(" in {}", &l[..end])
                })
                .unwrap_or_default();
            (format!("line {line}"), table)
        }
        None => ("".into(), String::new()),
    };
    let fix = if msg.starts_with("unknown field") {
        "remove that key or fix its spelling (see config.example.toml)"
    } else if msg.starts_with("invalid type") {
        "write the value with the type shown (strings in quotes, numbers without)"
    } else if msg.contains("duplicate key") {
        "keep each key once"
    } else {
        "fix the TOML syntax there"
    };
    let msg = msg.replace("field", "key");
    let at = if line.is_empty() {
        String::new()
    } else {
        format!(" {line}{table}")
    };
    ConfigError(format!("{file}:{at}: {msg}; {fix}"))
}

#[cfg(test)]
mod tests;
