//! Sending one notification to one target, and the words of the messages.

use std::time::Duration;

use serde_json::{Value, json};

use crate::config::{Config, NotifyKind, NotifyTarget, is_loopback_host};

/// How long one attempt may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// What to send: the outbox row's parts.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    /// `call.missed`, ..., or `test`.
    pub event: &'a str,
    /// `webhook-id`.
    pub webhook_id: &'a str,
    /// The JSON body: `{type, timestamp, data}`.
    pub payload: &'a str,
}

/// The words of ntfy, mail and text messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Words {
    /// `Missed call from +1555… (Google Ads)`.
    pub title: String,
    /// Time, user, source, outcome, and what to do.
    pub body: String,
    /// `tel:` the caller, when the caller is a phone number.
    pub click: Option<String>,
    /// A missed call (ntfy priority high).
    pub urgent: bool,
}

/// No control characters in a message line (a caller name is the caller's to choose).
fn clean(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).collect()
}

/// The words for `event` about the call in `payload`'s `data`; `zone` names the
/// zone of `started_at_local`.
pub fn words(event: &str, payload: &str, zone: &str) -> Words {
    let v: Value = serde_json::from_str(payload).unwrap_or(Value::Null);
    let d = &v["data"];
    let s = |k: &str| d[k].as_str().map(clean).unwrap_or_default();
    let n = |k: &str| d[k].as_i64();
    let caller = match s("caller") {
        c if c.is_empty() => "an unknown number".to_owned(),
        c => c,
    };
    let source = s("source");
    let via = if source.is_empty() {
        String::new()
    } else {
        format!(" ({source})")
    };
    let outcome = s("outcome");
    let (title, urgent) = match event {
        "test" => ("calltrackd test notification".to_owned(), false),
        "call.missed" if outcome == "voicemail" => (format!("Voicemail from {caller}{via}"), true),
        "call.missed" => (format!("Missed call from {caller}{via}"), true),
        "call.qualified" => (format!("Qualified call from {caller}{via}"), false),
        _ => (format!("Call from {caller}{via}: {outcome}"), false),
    };
    let mut lines = Vec::new();
    if event == "test" {
        lines.push("This is a test from calltrackd: this target is set up right.".to_owned());
    }
    lines.push(format!("{} ({zone})", s("started_at_local")));
    let mut who = format!("user {}", s("user"));
    if !source.is_empty() {
        who.push_str(&format!(", source {source}"));
    }
    let name = s("caller_name");
    if !name.is_empty() {
        who.push_str(&format!(", caller name {name}"));
    }
    lines.push(who);
    let mut what = format!(
        "outcome {}",
        if outcome.is_empty() {
            "pending"
        } else {
            &outcome
        }
    );
    if let Some(r) = n("ring_seconds") {
        what.push_str(&format!(", rang {r} s"));
    }
    if let Some(t) = n("talk_seconds").filter(|t| *t > 0) {
        what.push_str(&format!(", talked {t} s"));
    }
    if d["first_time_caller"] == json!(true) {
        what.push_str(", first-time caller");
    }
    lines.push(what);
    for k in ["voicemail_url", "recording_url"] {
        let u = s(k);
        if !u.is_empty() {
            lines.push(format!("{}: {u}", k.trim_end_matches("_url")));
        }
    }
    let phone = s("caller");
    let click = (phone.starts_with('+')
        && phone.len() > 2
        && phone[1..].bytes().all(|b| b.is_ascii_digit()))
    .then(|| format!("tel:{phone}"));
    if urgent && click.is_some() {
        lines.push("Call back soon.".to_owned());
    }
    Words {
        title,
        body: lines.join("\n"),
        click,
        urgent,
    }
}

thread_local! {
    /// One client per sending thread (each target has its own): connections to a
    /// receiver are kept and reused between messages.
    static AGENT: ureq::Agent = crate::rest::agent(TIMEOUT);
}

/// This thread's client (a redirect is reported, not followed: fix the URL instead).
fn agent() -> ureq::Agent {
    AGENT.with(ureq::Agent::clone)
}

/// A transport failure in words that hold no URL (its path may be a secret).
fn transport(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(_) => format!("no answer within {} s", TIMEOUT.as_secs()),
        ureq::Error::HostNotFound => "host not found".into(),
        ureq::Error::ConnectionFailed => "connection failed".into(),
        ureq::Error::Io(io) => format!("connection failed ({})", io.kind()),
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) => "TLS failed (certificate?)".into(),
        _ => "request failed".into(),
    }
}

fn status_error(resp: &ureq::http::Response<ureq::Body>) -> Result<(), String> {
    let code = resp.status().as_u16();
    if (200..300).contains(&code) {
        return Ok(());
    }
    if (300..400).contains(&code) {
        return Err(format!(
            "redirected (HTTP {code}); set `url` to the address it redirects to"
        ));
    }
    Err(format!("HTTP {code}"))
}

/// Sends `msg` to `target`. The error is a short sentence without secrets or bodies.
pub fn send(target: &NotifyTarget, msg: Outgoing<'_>, cfg: &Config) -> Result<(), String> {
    let zone = cfg.rules.timezone.name();
    match &target.kind {
        NotifyKind::Webhook { url, secret } => {
            let wh = standardwebhooks::Webhook::new(secret.expose())
                .map_err(|_| "the signing secret is not a Standard Webhooks secret".to_owned())?;
            // The receiver checks the timestamp against its own clock: the real one.
            let ts = chrono::Utc::now().timestamp();
            let sig = wh
                .sign(msg.webhook_id, ts, msg.payload.as_bytes())
                .map_err(|e| format!("signing failed: {e}"))?;
            let resp = agent()
                .post(url)
                .header("Content-Type", "application/json")
                .header("webhook-id", msg.webhook_id)
                .header("webhook-timestamp", ts.to_string())
                .header("webhook-signature", sig)
                .send(msg.payload)
                .map_err(|e| transport(&e))?;
            status_error(&resp)
        }
        NotifyKind::Ntfy { url, token } => {
            let w = words(msg.event, msg.payload, zone);
            // JSON publishing: POST to the server with the topic in the body (headers
            // could not carry a caller name's non-ASCII letters).
            let (base, topic) = url
                .trim_end_matches('/')
                .rsplit_once('/')
                .unwrap_or((url, ""));
            let mut body = json!({
                "topic": topic,
                "title": w.title,
                "message": w.body,
                "priority": if w.urgent { 4 } else { 3 },
                "tags": [if w.urgent { "warning" } else { "telephone_receiver" }],
            });
            if let Some(c) = &w.click {
                body["click"] = json!(c);
                body["actions"] = json!([{"action": "view", "label": "Call back", "url": c}]);
            }
            let mut req = agent()
                .post(format!("{base}/"))
                .header("Content-Type", "application/json");
            if let Some(t) = token {
                req = req.header("Authorization", format!("Bearer {}", t.expose()));
            }
            let resp = req.send(body.to_string()).map_err(|e| transport(&e))?;
            status_error(&resp)
        }
        NotifyKind::Email { smtp_url, from, to } => {
            let w = words(msg.event, msg.payload, zone);
            email(smtp_url.expose(), from, to, &w)
        }
        NotifyKind::Sms { from, to } => {
            let w = words(msg.event, msg.payload, zone);
            let client = crate::rest::Client::from_config(cfg).map_err(|e| e.to_string())?;
            let text: String = format!("{}\n{}", w.title, w.body)
                .chars()
                .take(600)
                .collect();
            for t in to {
                client.send_sms(from, t, &text).map_err(|e| e.to_string())?;
            }
            Ok(())
        }
    }
}

fn email(smtp_url: &str, from: &str, to: &[String], w: &Words) -> Result<(), String> {
    use lettre::message::header::ContentType;
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Tls, TlsParameters};
    use lettre::{Message, SmtpTransport, Transport};

    let u = url::Url::parse(smtp_url).map_err(|_| "smtp_url is not a URL".to_owned())?;
    let host = u.host_str().ok_or("smtp_url has no host")?.to_owned();
    let host_plain = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let loopback = is_loopback_host(&host);
    let params =
        TlsParameters::new(host_plain.clone()).map_err(|e| format!("TLS setup failed: {e}"))?;
    let (tls, port) = match u.scheme() {
        "smtps" => (Tls::Wrapper(params), 465),
        // STARTTLS is required, except to a relay on this machine that offers none.
        _ if loopback => (Tls::Opportunistic(params), 25),
        _ => (Tls::Required(params), 587),
    };
    let mut b = SmtpTransport::builder_dangerous(host_plain)
        .port(u.port().unwrap_or(port))
        .tls(tls)
        .timeout(Some(TIMEOUT));
    if !u.username().is_empty() {
        b = b.credentials(Credentials::new(
            percent_decode(u.username()),
            percent_decode(u.password().unwrap_or("")),
        ));
    }
    let mut m = Message::builder()
        .from(
            from.parse()
                .map_err(|_| "`from` is not a mail address".to_owned())?,
        )
        .subject(&w.title)
        .header(ContentType::TEXT_PLAIN);
    for t in to {
        m = m.to(t
            .parse()
            .map_err(|_| format!("`to` {t:?} is not a mail address"))?);
    }
    let mail = m
        .body(w.body.clone())
        .map_err(|e| format!("mail not built: {e}"))?;
    b.build()
        .send(&mail)
        .map(|_| ())
        .map_err(|e| format!("SMTP: {e}"))
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missed_call_says_who_and_where_from_and_offers_a_call_back() {
        let p = json!({"type": "call.missed", "timestamp": "x", "data": {
            "caller": "+14155550100", "source": "Google Ads", "user": "acme",
            "started_at_local": "2026-11-27 09:15:00", "outcome": "missed", "ring_seconds": 18,
            "caller_name": "EVIL\u{1b}[2J"}})
        .to_string();
        let w = words("call.missed", &p, "America/Chicago");
        assert_eq!(w.title, "Missed call from +14155550100 (Google Ads)");
        assert_eq!(w.click.as_deref(), Some("tel:+14155550100"));
        assert!(w.urgent);
        assert!(w.body.contains("2026-11-27 09:15:00 (America/Chicago)"));
        assert!(w.body.contains("rang 18 s"));
        assert!(!w.body.contains('\u{1b}'));
    }

    #[test]
    fn percent_decoding_of_credentials() {
        assert_eq!(percent_decode("us%40er"), "us@er");
        assert_eq!(percent_decode("p%2"), "p%2");
        assert_eq!(percent_decode("caf%C3%A9"), "café");
    }
}
