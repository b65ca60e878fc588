//! `twilio setup` (point every tracking number at calltrackd) and `twilio doctor`
//! (check the whole path a call takes, one line per check with the fix).

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use super::CliError;
use crate::config::{Config, Env, Needs, NumberRule};
use crate::logging::escaped;
use crate::rest::{Client, IncomingNumber, RestError};
use crate::storage;

/// The webhook path Twilio is pointed at.
pub const WEBHOOK_PATH: &str = "/call-tracking/webhook";

fn numbers(cfg: &Config) -> Vec<&NumberRule> {
    let mut v: Vec<&NumberRule> = cfg.rules.numbers.values().collect();
    v.sort_by(|a, b| a.number.cmp(&b.number));
    v
}

fn rest_error(e: RestError) -> CliError {
    CliError::runtime(e.to_string())
}

/// The changes a number needs: (form field, old value, new value).
fn wanted(n: &IncomingNumber, rule: &NumberRule, url: &str) -> Vec<(&'static str, String, String)> {
    let mut out = Vec::new();
    let mut want = |field: &'static str, have: Option<String>, want: &str| {
        let have = have.unwrap_or_default();
        if have != want {
            out.push((field, have, want.to_owned()));
        }
    };
    want("VoiceUrl", n.voice_url.clone(), url);
    want("VoiceMethod", n.voice_method.clone(), "POST");
    want("StatusCallback", n.status_callback.clone(), url);
    want(
        "StatusCallbackMethod",
        n.status_callback_method.clone(),
        "POST",
    );
    want(
        "VoiceCallerIdLookup",
        Some(n.voice_caller_id_lookup.unwrap_or(false).to_string()),
        if rule.flow.caller_name_lookup {
            "true"
        } else {
            "false"
        },
    );
    out
}

/// A value Twilio (or a request) gave, as printed: control characters escaped, so an
/// account's or a client's text cannot drive the terminal.
fn shown(v: &str) -> std::borrow::Cow<'_, str> {
    if v.is_empty() {
        "(empty)".into()
    } else {
        escaped(v)
    }
}

/// `twilio setup [--dry-run]`.
pub fn setup(config: &Path, dry_run: bool, out: &mut dyn Write) -> Result<(), CliError> {
    let cfg = Config::load_for(config, &Env::from_process(), Needs::ALL)?;
    let Some(public) = cfg.server.public_url.clone() else {
        return Err(CliError::usage(format!(
            "{}: [server] `public_url` is not set; set it to the https:// address Twilio reaches calltrackd at, then run `calltrackd twilio setup` again",
            cfg.path.display()
        )));
    };
    if cfg.rules.numbers.is_empty() {
        return Err(CliError::usage(format!(
            "{}: there are no [[numbers]] to set up; add each tracking number first",
            cfg.path.display()
        )));
    }
    let client = Client::from_config(&cfg).map_err(rest_error)?;
    let url = format!("{public}{WEBHOOK_PATH}");
    let mut missing = 0;
    let mut changed = 0;
    for rule in numbers(&cfg) {
        let n = match client.find_number(&rule.number) {
            Ok(Some(n)) => n,
            Ok(None) => {
                missing += 1;
                let _ = writeln!(
                    out,
                    "{}: PROBLEM: not a number of account {}; buy or port it into this account, or fix [[numbers]] (or [twilio] account_sid)",
                    rule.number,
                    client.account()
                );
                continue;
            }
            Err(e) => return Err(rest_error(e)),
        };
        let changes = wanted(&n, rule, &url);
        if changes.is_empty() {
            let _ = writeln!(out, "{}: already set up", rule.number);
            continue;
        }
        for (field, old, new) in &changes {
            let _ = writeln!(
                out,
                "{}: {field}: {} -> {}{}",
                rule.number,
                shown(old),
                new,
                if dry_run {
                    " (dry run: not changed)"
                } else {
                    ""
                }
            );
        }
        if let Some(app) = n.voice_application_sid.as_deref().filter(|a| !a.is_empty()) {
            let _ = writeln!(
                out,
                "{}: note: voice application {} is set and takes precedence over VoiceUrl; remove it in the console",
                rule.number,
                shown(app)
            );
        }
        if !dry_run {
            let form: Vec<(&str, &str)> =
                changes.iter().map(|(f, _, v)| (*f, v.as_str())).collect();
            client.update_number(&n.sid, &form).map_err(rest_error)?;
            changed += 1;
        }
    }
    let _ = writeln!(
        out,
        "{} number(s) {}, {} missing from the account",
        changed,
        if dry_run {
            "checked (dry run)"
        } else {
            "changed"
        },
        missing
    );
    if missing > 0 {
        return Err(CliError::runtime(format!(
            "twilio setup: {missing} number(s) are not in account {}",
            client.account()
        )));
    }
    Ok(())
}

/// One check's result.
struct Check<'a> {
    out: &'a mut dyn Write,
    problems: usize,
}

impl Check<'_> {
    fn ok(&mut self, what: &str) {
        let _ = writeln!(self.out, "ok       {what}");
    }
    fn problem(&mut self, what: &str, fix: &str) {
        self.problems += 1;
        let _ = writeln!(self.out, "PROBLEM  {what}\n         fix: {fix}");
    }
}

/// `twilio doctor`: exit 0 when every check passes, 1 otherwise.
pub fn doctor(config: &Path, out: &mut dyn Write) -> Result<(), CliError> {
    let mut c = Check { out, problems: 0 };
    let cfg = match Config::load_for(config, &Env::from_process(), Needs::ALL) {
        Ok(cfg) => {
            c.ok(&format!("config {} loads", config.display()));
            cfg
        }
        Err(e) => {
            c.problem(
                &format!("config {} does not load", config.display()),
                &e.to_string(),
            );
            return Err(CliError::runtime("twilio doctor: 1 problem"));
        }
    };
    healthz(&cfg, &mut c);
    let url = cfg
        .server
        .public_url
        .as_ref()
        .map(|p| format!("{p}{WEBHOOK_PATH}"));
    if url.is_none() {
        c.problem(
            "[server] public_url is not set",
            "set it to the https:// address Twilio reaches calltrackd at (signatures are checked against it)",
        );
    }
    match Client::from_config(&cfg) {
        Err(e) => c.problem("no Twilio account configured", &e.to_string()),
        Ok(client) => match client.fetch_account() {
            Err(e) => c.problem("the credentials do not work", &e.to_string()),
            Ok(acct) => {
                c.ok(&format!(
                    "credentials work for account {} ({})",
                    shown(&acct.sid),
                    shown(acct.status.as_deref().unwrap_or("status unknown"))
                ));
                for rule in numbers(&cfg) {
                    number_checks(&client, rule, url.as_deref(), &mut c);
                }
            }
        },
    }
    rejected(&cfg, url.as_deref(), &mut c);
    if c.problems == 0 {
        let _ = writeln!(c.out, "all checks passed");
        Ok(())
    } else {
        Err(CliError::runtime(format!(
            "twilio doctor: {} problem(s)",
            c.problems
        )))
    }
}

fn healthz(cfg: &Config, c: &mut Check<'_>) {
    let mut addr = cfg.server.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let agent = crate::rest::agent(Duration::from_secs(5));
    match agent.get(format!("http://{addr}/healthz")).call() {
        Ok(r) if r.status() == 200 => c.ok(&format!("daemon answers /healthz at {addr}")),
        Ok(mut r) => {
            let body = r.body_mut().read_to_string().unwrap_or_default();
            c.problem(
                &format!("daemon at {addr} is not healthy ({}: {})", r.status().as_u16(), body.trim()),
                "see `journalctl -u calltrackd`; `unhealthy: restart needed` means `systemctl restart calltrackd`",
            )
        }
        Err(e) => c.problem(
            &format!("no daemon answers at {addr} ({e})"),
            "start it: `systemctl start calltrackd` (or `calltrackd serve`), and check [server] listen",
        ),
    }
}

fn number_checks(client: &Client, rule: &NumberRule, url: Option<&str>, c: &mut Check<'_>) {
    let n =
        match client.find_number(&rule.number) {
            Ok(Some(n)) => n,
            Ok(None) => {
                return c.problem(
                &format!("{} is not a number of account {}", rule.number, client.account()),
                "buy or port it into this account, or fix [[numbers]] (or [twilio] account_sid)",
            );
            }
            Err(e) => {
                return c.problem(
                    &format!("{}: cannot be looked up", rule.number),
                    &e.to_string(),
                );
            }
        };
    c.ok(&format!(
        "{} is in the account ({})",
        rule.number,
        shown(&n.sid)
    ));
    if let Some(url) = url {
        let pairs = [
            ("voice URL", n.voice_url.as_deref(), url),
            ("voice method", n.voice_method.as_deref(), "POST"),
            ("status callback", n.status_callback.as_deref(), url),
            (
                "status callback method",
                n.status_callback_method.as_deref(),
                "POST",
            ),
        ];
        for (what, have, want) in pairs {
            let have = have.unwrap_or("");
            if have == want {
                c.ok(&format!("{}: {what} is {want}", rule.number));
            } else {
                c.problem(
                    &format!("{}: {what} is {} (want {want})", rule.number, shown(have)),
                    "run `calltrackd twilio setup`",
                );
            }
        }
    }
    match n.voice_fallback_url.as_deref().filter(|u| !u.is_empty()) {
        Some(f) => c.ok(&format!("{}: voice fallback URL is set ({})", rule.number, shown(f))),
        None => c.problem(
            &format!("{}: no voice fallback URL: calls fail while calltrackd is down", rule.number),
            "run `calltrackd check-config --fallback-twiml`, put the number's TwiML in a TwiML Bin, and set the Bin's URL as the number's \"Primary handler fails\" URL in the console",
        ),
    }
}

fn rejected(cfg: &Config, url: Option<&str>, c: &mut Check<'_>) {
    let since = chrono::Utc::now().timestamp() - 86_400;
    match storage::rejections::recent(&cfg.storage_path, since) {
        Err(e) => c.problem(
            "cannot read the requests refused with 403",
            &format!("{e}; run doctor as a user that can read the database"),
        ),
        Ok(list) if list.is_empty() => c.ok("no request was refused with 403 in the last 24 hours"),
        Ok(list) => {
            let mut what = format!(
                "{} request(s) refused with 403 (bad signature) in the last 24 hours; the latest:",
                list.len()
            );
            for r in list.iter().take(5) {
                what.push_str(&format!(
                    "\n           {}  checked against {}  ({})",
                    crate::clock::rfc3339_ms(r.at_unix * 1000),
                    shown(&r.url),
                    shown(&r.reason)
                ));
            }
            let fix = match url {
                Some(u) if list.iter().any(|r| !r.url.starts_with(u)) => format!(
                    "Twilio signs the URL it calls; set [server] public_url so that it plus {WEBHOOK_PATH} is exactly the number's voice URL ({u} now), then run `calltrackd twilio setup`"
                ),
                _ => "check that [twilio] auth_token is the account's current Auth Token (rotating? set previous_auth_token), and that the proxy passes the Host and path unchanged".to_owned(),
            };
            c.problem(&what, &fix);
        }
    }
}
