//! `[twilio]`'s REST keys: the account, its credentials for the REST API, where the API
//! is, and how often the daemon reconciles its calls with it.

use super::raw::RawTwilio;
use super::secrets::Secret;
use super::validate::{Loader, split_host_port};

/// Twilio's REST API, unless `api_base` says otherwise.
pub const DEFAULT_API_BASE: &str = "https://api.twilio.com";

/// How calltrackd reaches the Twilio account's REST API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwilioApi {
    /// `account_sid` (`AC` + 32 hex digits); the REST commands need it.
    pub account_sid: Option<String>,
    /// `api_key_sid` and its secret: used instead of the auth token when set.
    pub api_key: Option<(String, Secret)>,
    /// `http(s)://host[:port]` without a trailing `/`.
    pub api_base: String,
    /// `> 0`: the daemon backfills the last 2 days this often.
    pub reconcile_minutes: u64,
}

impl Default for TwilioApi {
    fn default() -> TwilioApi {
        TwilioApi {
            account_sid: None,
            api_key: None,
            api_base: DEFAULT_API_BASE.to_owned(),
            reconcile_minutes: 0,
        }
    }
}

/// Whether `s` is a Twilio SID with this two-letter prefix (`AC`, `SK`, `CA`...).
pub fn is_sid(s: &str, prefix: &str) -> bool {
    s.len() == 34 && s.starts_with(prefix) && s[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether a host is this machine (plain `http://` is allowed only there: a test
/// server or a local proxy; anywhere else the credentials would cross the network in
/// the clear).
pub fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Loader<'_> {
    /// `[twilio]`'s REST keys, checked; `need_secret` reads the API key secret.
    pub(super) fn twilio_api(&mut self, t: &mut RawTwilio, need_secret: bool) -> TwilioApi {
        let mut api = TwilioApi::default();
        if let Some(sid) = t.account_sid.take() {
            if is_sid(sid.trim(), "AC") {
                api.account_sid = Some(sid.trim().to_owned());
            } else {
                self.problem(
                    "[twilio] `account_sid` is not an account SID; copy the Account SID (AC followed by 32 hex digits) from the Twilio console",
                );
            }
        }
        let secret = self.secret(
            "twilio",
            "api_key_secret",
            t.api_key_secret.take(),
            t.api_key_secret_file.take(),
            need_secret,
        );
        let secret = self.or(secret, None);
        match (t.api_key_sid.take(), secret) {
            (Some(sid), secret) => {
                if !is_sid(sid.trim(), "SK") {
                    self.problem(
                        "[twilio] `api_key_sid` is not an API key SID; write the key's SID (SK followed by 32 hex digits), or remove it to use the auth token",
                    );
                } else if let Some((secret, _)) = secret {
                    api.api_key = Some((sid.trim().to_owned(), secret));
                } else if need_secret {
                    self.problem(
                        "[twilio] `api_key_sid` is set without `api_key_secret` (or `api_key_secret_file`); add the key's secret, or remove `api_key_sid`",
                    );
                }
            }
            (None, Some(_)) => self.problem(
                "[twilio] `api_key_secret` is set without `api_key_sid`; add the key's SID (SK...), or remove the secret",
            ),
            (None, None) => {}
        }
        if api.api_key.is_some() && api.account_sid.is_none() {
            self.problem(
                "[twilio] an API key needs `account_sid` too; add the Account SID (AC...) the key belongs to",
            );
        }
        if let Some(base) = t.api_base.take() {
            match check_api_base(&base) {
                Ok(b) => api.api_base = b,
                Err(why) => self.problem(format_args!(
                    "[twilio] `api_base` = {base:?} {why}; write e.g. \"{DEFAULT_API_BASE}\""
                )),
            }
        }
        api.reconcile_minutes = self.range(
            "[twilio] `reconcile_minutes`",
            t.reconcile_minutes,
            0..=1_440,
            "a number of minutes (0 = off)",
            0,
        );
        if api.reconcile_minutes > 0 && api.account_sid.is_none() {
            self.problem(
                "[twilio] `reconcile_minutes` needs `account_sid`; add the Account SID (AC...), or set reconcile_minutes = 0",
            );
        }
        api
    }
}

/// `api_base` without a trailing `/`, or why it is refused.
fn check_api_base(raw: &str) -> Result<String, &'static str> {
    let url = raw.trim().trim_end_matches('/');
    let (https, rest) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
        (Some(r), _) => (true, r),
        (_, Some(r)) => (false, r),
        _ => return Err("is not an http(s):// URL"),
    };
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
        return Err("must be a scheme and a host (and port) only");
    }
    let (host, port) = split_host_port(rest);
    if port.is_some_and(|p| p.parse::<u16>().map_or(true, |p| p == 0)) {
        return Err("has a bad port");
    }
    if !https && !is_loopback_host(host) {
        return Err(
            "is plain http:// to another machine (the credentials would cross the network unencrypted); use https://",
        );
    }
    Ok(url.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_base_is_https_or_loopback() {
        assert_eq!(
            check_api_base("https://api.twilio.com/").unwrap(),
            "https://api.twilio.com"
        );
        assert_eq!(
            check_api_base("http://127.0.0.1:9000").unwrap(),
            "http://127.0.0.1:9000"
        );
        assert!(check_api_base("http://[::1]:9000").is_ok());
        assert!(check_api_base("http://localhost:9").is_ok());
        assert!(check_api_base("http://api.twilio.com").is_err());
        assert!(check_api_base("https://api.twilio.com/2010-04-01").is_err());
        assert!(check_api_base("https://user:pw@api.twilio.com").is_err());
        assert!(check_api_base("ftp://x").is_err());
        assert!(check_api_base("https://x:0").is_err());
    }

    #[test]
    fn sids_have_their_prefix_and_32_hex_digits() {
        assert!(is_sid("AC0123456789abcdef0123456789abcdef", "AC"));
        assert!(!is_sid("AC0123456789abcdef0123456789abcde", "AC"));
        assert!(!is_sid("SK0123456789abcdef0123456789abcdef", "AC"));
        assert!(!is_sid("AC0123456789abcdef0123456789abcdeg", "AC"));
    }
}
