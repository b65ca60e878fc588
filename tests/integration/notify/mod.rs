//! Notifications through the real daemon to real receivers on loopback: signed webhooks
//! checked by the reference Standard Webhooks library (Python), ntfy's JSON publishing,
//! mail through a real SMTP server (aiosmtpd), texts through the Twilio fake; filters,
//! receivers that are down, fail, redirect or hang, kill -9 between commit and
//! delivery, the 24 h give-up (fake clock), and `notify test|list|retry`.

pub mod receivers;

use std::time::{Duration, Instant};

use base64::Engine;
use receivers::{HttpReceiver, Mode, PyReceiver, closed_port};
use serde_json::Value;

use crate::outcomes::{answered, forwarded, send};
use crate::support::*;
use crate::twilio::fake::{self, Fake};

fn secret() -> String {
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(b"calltrackd test signing key 0123")
    )
}

fn with_notify(blocks: &str) -> String {
    format!(
        "{}\n{blocks}",
        base_config("metrics_listen = \"127.0.0.1:0\"\n")
    )
}

fn webhook_block(url: &str, events: &str, users: Option<&str>) -> String {
    format!(
        "[[notify]]\nkind = \"webhook\"\nevents = [{events}]\n{}url = \"{url}\"\nsecret = \"{}\"\n",
        users
            .map(|u| format!("users = [\"{u}\"]\n"))
            .unwrap_or_default(),
        secret()
    )
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A call on bob's number (not forwarded): nobody takes it.
fn missed_unforwarded(d: &Daemon, sid: &str, start: i64) {
    send(d, &incoming(sid, TRACKING_NO_FORWARD));
    send(
        d,
        &status(
            sid,
            TRACKING_NO_FORWARD,
            "completed",
            &crate::outcomes::at(start + 20),
            Some("1"),
        ),
    );
}

fn types(got: &[Value]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = got
        .iter()
        .map(|g| {
            let body: Value = serde_json::from_str(g["body"].as_str().unwrap()).unwrap();
            (
                body["data"]["call_sid"].as_str().unwrap_or("").to_owned(),
                body["type"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

fn outbox(env: &Env, sql: &str) -> i64 {
    count(&env.db(), sql)
}

/// Waits (up to 10 s) until `sql` counts `want`: the daemon records an attempt just
/// after the receiver has it.
fn eventually(env: &Env, sql: &str, want: i64) {
    let start = Instant::now();
    while outbox(env, sql) != want && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(outbox(env, sql), want, "{sql}");
}

#[test]
fn signed_webhooks_and_ntfy_arrive_once_per_event_and_follow_their_filters() {
    let hook = PyReceiver::webhook(&secret(), None, 0);
    let ntfy = HttpReceiver::start(Mode::Ok);
    let cfg = with_notify(&format!(
        "{}\n[[notify]]\nkind = \"ntfy\"\nevents = [\"call.missed\"]\nusers = [\"acme-plumbing\"]\nurl = \"{}\"\ntoken = \"tk_ntfy_secret_9\"\n",
        webhook_block(
            &hook.url(),
            "\"call.completed\", \"call.missed\", \"call.qualified\"",
            None
        ),
        ntfy.url("/acme-calls")
    ));
    let env = Env::new(&cfg);
    let d = env.start();
    let t = now() - 300;
    missed_unforwarded(&d, "CAbobmissed", t);
    forwarded(
        &d,
        "CAacmemissed",
        "+14155550142",
        t + 10,
        "no-answer",
        None,
        20,
        "completed",
    );
    answered(&d, "CAacmegood", "+14155550143", t + 20, 60);
    // Repeats and late callbacks invent nothing.
    answered(&d, "CAacmegood", "+14155550143", t + 20, 60);

    let got = hook.wait(7, Duration::from_secs(10));
    assert_eq!(
        types(&got),
        vec![
            ("CAacmegood".into(), "call.completed".into()),
            ("CAacmegood".into(), "call.qualified".into()),
            ("CAacmemissed".into(), "call.completed".into()),
            ("CAacmemissed".into(), "call.missed".into()),
            ("CAbobmissed".into(), "call.completed".into()),
            ("CAbobmissed".into(), "call.missed".into()),
        ],
        "{got:#?}"
    );
    for g in &got {
        // Verified by the reference implementation, with its headers.
        assert_eq!(g["verified"], true, "{g}");
        assert_eq!(g["content_type"], "application/json");
        assert!(g["id"].as_str().unwrap().starts_with("msg_"));
        assert!(g["signature"].as_str().unwrap().starts_with("v1,"));
    }
    // The data are the CSV columns by name, typed; null for an empty cell.
    // (`call.qualified` comes with the <Dial action>, before the final status: its
    // outcome is still null; `call.completed` has it.)
    let good = got
        .iter()
        .map(|g| serde_json::from_str::<Value>(g["body"].as_str().unwrap()).unwrap())
        .find(|b| b["type"] == "call.completed" && b["data"]["call_sid"] == "CAacmegood")
        .unwrap();
    let data = good["data"].as_object().unwrap();
    assert_eq!(data.keys().next().unwrap(), "call_sid");
    assert_eq!(data.len(), 25);
    assert_eq!(data["answered"], true);
    assert_eq!(data["qualified"], true);
    assert_eq!(data["talk_seconds"], 60);
    assert_eq!(data["outcome"], "answered");
    assert_eq!(data["user"], "acme-plumbing");
    assert_eq!(data["recording_url"], Value::Null);
    assert!(good["timestamp"].as_str().unwrap().ends_with('Z'));

    // ntfy: only acme's missed call, as a JSON publish to the topic.
    let n = ntfy.wait(1, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(500));
    let n = if n.len() == 1 {
        ntfy.wait(1, Duration::ZERO)
    } else {
        n
    };
    assert_eq!(n.len(), 1, "{n:#?}");
    assert_eq!(n[0].path, "/");
    let m: Value = serde_json::from_str(&n[0].body).unwrap();
    assert_eq!(m["topic"], "acme-calls");
    assert_eq!(m["title"], "Missed call from +14155550142 (Google Ads)");
    assert_eq!(m["click"], "tel:+14155550142");
    assert_eq!(m["priority"], 4);
    assert!(
        m["message"]
            .as_str()
            .unwrap()
            .contains("user acme-plumbing")
    );
    assert!(
        n[0].headers
            .iter()
            .any(|(k, v)| k == "authorization" && v == "Bearer tk_ntfy_secret_9")
    );

    // The outbox: one row per (call, event, target), all sent.
    assert_eq!(outbox(&env, "SELECT count(*) FROM notifications"), 7);
    eventually(
        &env,
        "SELECT count(*) FROM notifications WHERE state = 'sent'",
        7,
    );
    // Secrets and bodies stay out of the log.
    let log = d.log_text();
    for s in [
        secret().as_str(),
        "tk_ntfy_secret_9",
        "+14155550142 (Google Ads)",
    ] {
        assert!(!log.contains(s), "{s} in the log:\n{log}");
    }
    assert!(
        log.contains("notify: call.missed for call CAacmemissed sent to ntfy 127.0.0.1"),
        "{log}"
    );
    let m = get(d.metrics_addr(), "/metrics", &[]).text();
    assert!(
        m.contains("calltrackd_notifications_total{kind=\"webhook\",result=\"sent\"} 6"),
        "{m}"
    );
    assert!(
        m.contains("calltrackd_notifications_total{kind=\"ntfy\",result=\"sent\"} 1"),
        "{m}"
    );
}

#[test]
fn a_receiver_down_then_failing_then_back_gets_each_message_once_with_the_same_id() {
    let port = closed_port();
    let url = format!("http://127.0.0.1:{port}/hooks/calls");
    let env = Env::new(&with_notify(&webhook_block(&url, "\"call.missed\"", None)));
    let d = Daemon::start(&env, vec![("CALLTRACKD_TEST_RETRY_MS", "300".into())]);
    missed_unforwarded(&d, "CAdown", now() - 60);
    // Down: refused, tried again.
    assert!(
        d.wait_log_count(
            "failed (attempt 2: connection failed",
            1,
            Duration::from_secs(10)
        ),
        "{}",
        d.log_text()
    );
    // Back, but answering 500 twice first.
    let hook = PyReceiver::webhook(&secret(), Some(port), 2);
    let got = hook.wait(3, Duration::from_secs(15));
    assert_eq!(got.len(), 3, "{got:#?}");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(hook.got().len(), 3, "delivered once, then nothing more");
    let ids: Vec<&str> = got.iter().map(|g| g["id"].as_str().unwrap()).collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
    let bodies: Vec<&str> = got.iter().map(|g| g["body"].as_str().unwrap()).collect();
    assert!(bodies.iter().all(|b| *b == bodies[0]));
    assert!(got.iter().all(|g| g["verified"] == true));
    assert!(
        d.log_text().contains("failed (attempt 3: HTTP 500)"),
        "{}",
        d.log_text()
    );
    eventually(
        &env,
        "SELECT count(*) FROM notifications WHERE state = 'sent' AND attempts >= 5",
        1,
    );
}

#[test]
fn kill_9_between_commit_and_delivery_delivers_after_restart_and_invents_nothing() {
    let port = closed_port();
    let url = format!("http://127.0.0.1:{port}/hooks/calls");
    let env = Env::new(&with_notify(&webhook_block(
        &url,
        "\"call.completed\", \"call.missed\"",
        None,
    )));
    let vars = || vec![("CALLTRACKD_TEST_RETRY_MS", "300".into())];
    let d = Daemon::start(&env, vars());
    missed_unforwarded(&d, "CAkill1", now() - 100);
    missed_unforwarded(&d, "CAkill2", now() - 50);
    // Acknowledged (200s above): the rows are committed. kill -9 now.
    drop(d);
    assert_eq!(
        outbox(
            &env,
            "SELECT count(*) FROM notifications WHERE state = 'pending'"
        ),
        4
    );
    let hook = PyReceiver::webhook(&secret(), Some(port), 0);
    let d = Daemon::start(&env, vars());
    let got = hook.wait(4, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(800));
    let got = if got.len() == 4 { hook.got() } else { got };
    assert_eq!(
        types(&got),
        vec![
            ("CAkill1".into(), "call.completed".into()),
            ("CAkill1".into(), "call.missed".into()),
            ("CAkill2".into(), "call.completed".into()),
            ("CAkill2".into(), "call.missed".into()),
        ]
    );
    assert_eq!(outbox(&env, "SELECT count(*) FROM notifications"), 4);
    eventually(
        &env,
        "SELECT count(*) FROM notifications WHERE state = 'sent'",
        4,
    );
    drop(d);
}

#[test]
fn after_24_hours_a_notification_is_given_up_then_notify_retry_sends_it() {
    let port = closed_port();
    let url = format!("http://127.0.0.1:{port}/hooks/calls");
    let env = Env::new(&with_notify(&webhook_block(&url, "\"call.missed\"", None)));
    let d = Daemon::start(&env, vec![("CALLTRACKD_TEST_RETRY_MS", "60000".into())]);
    missed_unforwarded(&d, "CAlate", now() - 60);
    assert!(
        d.wait_log("failed (attempt 1", Duration::from_secs(10)),
        "{}",
        d.log_text()
    );
    // The attempt is recorded just after its log line.
    let start = Instant::now();
    while outbox(
        &env,
        "SELECT count(*) FROM notifications WHERE attempts = 1",
    ) == 0
    {
        assert!(start.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(d);
    // 25 hours later (the daemon's notification clock moved forward).
    let d = Daemon::start(
        &env,
        vec![
            ("CALLTRACKD_TEST_RETRY_MS", "100".into()),
            ("CALLTRACKD_TEST_CLOCK_OFFSET", "90000".into()),
        ],
    );
    assert!(
        d.wait_log(
            "given up after 2 attempts over 24 h",
            Duration::from_secs(10)
        ),
        "{}",
        d.log_text()
    );
    let m = get(d.metrics_addr(), "/metrics", &[]).text();
    assert!(
        m.contains("calltrackd_notifications_total{kind=\"webhook\",result=\"failed\"} 1"),
        "{m}"
    );
    drop(d);

    let cfg = env.config();
    let cfg = cfg.to_str().unwrap();
    let o = env.run(&["notify", "list", "--failed", "--config", cfg]);
    let list = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "{list}");
    assert!(
        list.contains("failed") && list.contains("CAlate") && list.contains("connection failed"),
        "{list}"
    );
    assert!(
        !list.contains("/hooks/calls"),
        "no URL path in the list: {list}"
    );
    let id: i64 = count(
        &env.db(),
        "SELECT id FROM notifications WHERE call_sid = 'CAlate'",
    );
    // Still down: retry says why, exit 1.
    let o = env.run(&["notify", "retry", &id.to_string(), "--config", cfg]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("FAIL"));
    // Back: sent now, with the same webhook-id.
    let hook = PyReceiver::webhook(&secret(), Some(port), 0);
    let o = env.run(&["notify", "retry", &id.to_string(), "--config", cfg]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = hook.wait(1, Duration::from_secs(5));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["verified"], true);
    let wid: String = rusqlite::Connection::open(env.db())
        .unwrap()
        .query_row(
            "SELECT webhook_id FROM notifications WHERE id = ?1",
            [id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(got[0]["id"], wid.as_str());
    assert_eq!(
        outbox(
            &env,
            "SELECT count(*) FROM notifications WHERE state = 'sent'"
        ),
        1
    );
    let o = env.run(&["notify", "retry", &id.to_string(), "--config", cfg]);
    assert_eq!(o.status.code(), Some(2), "sent already");
    let o = env.run(&["notify", "retry", "999", "--config", cfg]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn bad_receivers_never_stall_the_daemon_or_the_other_targets() {
    let hang = HttpReceiver::start(Mode::Hang);
    let redirect = HttpReceiver::start(Mode::Redirect);
    let error = HttpReceiver::start(Mode::Status(500));
    let good = PyReceiver::webhook(&secret(), None, 0);
    let ev = "\"call.missed\"";
    let cfg = with_notify(&format!(
        "{}{}{}{}",
        webhook_block(&hang.url("/hang"), ev, None),
        webhook_block(&redirect.url("/moved"), ev, None),
        webhook_block(&error.url("/broken"), ev, None),
        webhook_block(&good.url(), ev, None)
    ));
    let env = Env::new(&cfg);
    let d = Daemon::start(&env, vec![("CALLTRACKD_TEST_RETRY_MS", "200".into())]);
    let start = Instant::now();
    for i in 0..5 {
        missed_unforwarded(&d, &format!("CAbad{i}"), now() - 100 + i);
    }
    // Webhooks are answered at once whatever the receivers do.
    assert!(start.elapsed() < Duration::from_secs(5));
    let got = good.wait(5, Duration::from_secs(10));
    assert_eq!(
        got.len(),
        5,
        "the good receiver is not held up by the hanging one"
    );
    assert!(
        d.wait_log(
            "failed (attempt 1: redirected (HTTP 302)",
            Duration::from_secs(10)
        ),
        "{}",
        d.log_text()
    );
    assert!(d.wait_log("failed (attempt 1: HTTP 500)", Duration::from_secs(10)));
    // The hanging receiver got its first request and holds it; the daemon still answers.
    assert!(!hang.wait(1, Duration::from_secs(5)).is_empty());
    let r = get(d.addr, "/healthz", &[]);
    assert_eq!(r.status, 200);
    missed_unforwarded(&d, "CAbad9", now());
    assert_eq!(good.wait(6, Duration::from_secs(10)).len(), 6);
    // It stops cleanly with a send still hanging.
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn email_goes_through_a_real_smtp_server_and_sms_through_twilio() {
    let smtp = PyReceiver::smtp();
    let fake = Fake::start();
    let cfg = with_notify(&format!(
        "[[notify]]\nkind = \"email\"\nevents = [\"call.missed\"]\nsmtp_url = \"smtp://127.0.0.1:{}\"\nfrom = \"calls@example.com\"\nto = [\"owner@example.com\", \"office@example.com\"]\n\n[[notify]]\nkind = \"sms\"\nevents = [\"call.missed\"]\nfrom = \"{TRACKING}\"\nto = [\"+15558675309\"]\n",
        smtp.port
    ))
    .replace("[twilio]\n", &format!("[twilio]\n{}", fake.twilio_keys()));
    let env = Env::new(&cfg);
    let d = env.start();
    forwarded(
        &d,
        "CAmail",
        "+14155550177",
        now() - 100,
        "no-answer",
        None,
        20,
        "completed",
    );
    let mails = smtp.wait(1, Duration::from_secs(10));
    assert_eq!(mails.len(), 1);
    let m = &mails[0];
    assert_eq!(m["from"], "calls@example.com");
    assert_eq!(
        m["to"],
        serde_json::json!(["owner@example.com", "office@example.com"])
    );
    let data = m["data"].as_str().unwrap();
    assert!(
        data.contains("Subject: Missed call from +14155550177 (Google Ads)"),
        "{data}"
    );
    assert!(
        data.contains("user acme-plumbing, source Google Ads"),
        "{data}"
    );
    assert!(data.contains("Content-Type: text/plain"), "{data}");
    let start = Instant::now();
    while fake.messages().is_empty() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let texts = fake.messages();
    assert_eq!(texts.len(), 1);
    assert_eq!(texts[0]["to"], "+15558675309");
    assert_eq!(texts[0]["from"], TRACKING);
    assert!(
        texts[0]["body"]
            .as_str()
            .unwrap()
            .starts_with("Missed call from +14155550177 (Google Ads)")
    );
    assert_eq!(fake.violations(), Vec::<String>::new());
    assert!(!d.log_text().contains(fake::AUTH_TOKEN));
}

#[test]
fn notify_test_sends_a_marked_message_to_each_target_and_names_the_failures() {
    let hook = PyReceiver::webhook(&secret(), None, 0);
    let ntfy = HttpReceiver::start(Mode::Ok);
    let smtp = PyReceiver::smtp();
    let fake = Fake::start();
    let dead = closed_port();
    let blocks = format!(
        "{}[[notify]]\nkind = \"ntfy\"\nevents = [\"call.missed\"]\nurl = \"{}\"\n\n[[notify]]\nkind = \"email\"\nevents = [\"call.missed\"]\nsmtp_url = \"smtp://127.0.0.1:{}\"\nfrom = \"calls@example.com\"\nto = [\"owner@example.com\"]\n\n[[notify]]\nkind = \"sms\"\nevents = [\"call.missed\"]\nfrom = \"{TRACKING}\"\nto = [\"+15558675309\"]\n",
        webhook_block(&hook.url(), "\"call.missed\"", None),
        ntfy.url("/t"),
        smtp.port
    );
    let cfg =
        with_notify(&blocks).replace("[twilio]\n", &format!("[twilio]\n{}", fake.twilio_keys()));
    let env = Env::new(&cfg);
    let c = env.config();
    let o = env.run(&["notify", "test", "--config", c.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        o.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let oks = |t: &str| t.lines().filter(|l| l.starts_with("ok ")).count();
    assert_eq!(oks(&text), 4, "{text}");
    let got = hook.wait(1, Duration::from_secs(5));
    assert_eq!(got[0]["verified"], true);
    let body: Value = serde_json::from_str(got[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["type"], "test");
    let n: Value = serde_json::from_str(&ntfy.wait(1, Duration::from_secs(5))[0].body).unwrap();
    assert_eq!(n["title"], "calltrackd test notification");
    assert!(
        smtp.wait(1, Duration::from_secs(5))[0]["data"]
            .as_str()
            .unwrap()
            .contains("Subject: calltrackd test notification")
    );
    assert_eq!(fake.messages().len(), 1);
    // Nothing went into the outbox.
    assert!(!env.db().exists() || count(&env.db(), "SELECT count(*) FROM notifications") == 0);

    // A target that is down: named, exit 1, the others still sent.
    env.write_config(&cfg.replace(&hook.url(), &format!("http://127.0.0.1:{dead}/x")));
    let o = env.run(&["notify", "test", "--config", c.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!(
            "FAIL  webhook 127.0.0.1:{dead}: connection failed"
        )),
        "{text}"
    );
    assert_eq!(oks(&text), 3, "{text}");
}

#[test]
fn notify_config_errors_name_the_key() {
    for (block, needle) in [
        (
            "[[notify]]\nkind = \"webhook\"\nevents = [\"call.missed\"]\nurl = \"https://x.example/h\"\n",
            "has no `secret`",
        ),
        (
            "[[notify]]\nkind = \"ntfy\"\nevents = [\"call.missed\"]\nurl = \"ftp://ntfy.sh/x\"\n",
            "`url` is not an http(s):// URL",
        ),
        (
            "[[notify]]\nkind = \"ntfy\"\nevents = [\"call.missed\"]\n",
            "has no `url`",
        ),
        (
            "[[notify]]\nkind = \"pager\"\nevents = [\"call.missed\"]\n",
            "unknown kind \"pager\"",
        ),
        (
            "[[notify]]\nkind = \"ntfy\"\nevents = [\"call.lost\"]\nurl = \"https://ntfy.sh/x\"\n",
            "unknown event \"call.lost\"",
        ),
        (
            "[[notify]]\nkind = \"ntfy\"\nurl = \"https://ntfy.sh/x\"\n",
            "has no `events`",
        ),
        (
            "[[notify]]\nkind = \"email\"\nevents = [\"call.missed\"]\nfrom = \"a@b.c\"\nto = [\"o@b.c\"]\n",
            "has no `smtp_url`",
        ),
        (
            "[[notify]]\nkind = \"sms\"\nevents = [\"call.missed\"]\nfrom = \"+18005551212\"\nto = [\"+15558675309\"]\n",
            "sms needs [twilio] `account_sid`",
        ),
        (
            "[[notify]]\nkind = \"ntfy\"\nevents = [\"call.missed\"]\nurl = \"https://ntfy.sh/x\"\nsecret = \"whsec_abc\"\n",
            "`secret` does not apply",
        ),
        (
            "[[notify]]\nkind = \"webhook\"\nevents = [\"call.missed\"]\nurl = \"https://x.example/h\"\nsecret = \"not base64!\"\n",
            "not a Standard Webhooks secret",
        ),
    ] {
        let env = Env::new(&with_notify(block));
        let o = env.run(&["check-config", "--config", env.config().to_str().unwrap()]);
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert_eq!(o.status.code(), Some(2), "{block}: {err}");
        assert!(err.contains(needle), "wanted {needle:?}: {err}");
        assert!(!err.contains("not base64!"), "{err}");
    }
}
