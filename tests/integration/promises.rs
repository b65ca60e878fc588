//! Promises the docs make that had no test of their own.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::*;

fn signed_post(d: &Daemon, sid: &str) -> Resp {
    d.post_form(&borrow(&incoming(sid, TRACKING)))
}

#[test]
fn a_database_locked_by_another_process_gets_503_after_the_busy_timeout() {
    let env = Env::new(&base_config(""));
    let d = env.start();
    assert_eq!(signed_post(&d, "CAlock1").status, 200);
    let other = rusqlite::Connection::open(env.db()).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let t = Instant::now();
    let r = signed_post(&d, "CAlock2");
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(t.elapsed() >= Duration::from_secs(4), "{:?}", t.elapsed());
    assert!(
        d.wait_log(
            "another process holds the database locked",
            Duration::from_secs(5)
        ),
        "{}",
        d.log_text()
    );
    other.execute_batch("ROLLBACK").unwrap();
    assert_eq!(signed_post(&d, "CAlock3").status, 200);
}

#[test]
fn a_failed_migration_leaves_the_old_schema_whole_and_a_retry_works() {
    let env = Env::new(&base_config(""));
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/schema1.db");
    std::fs::copy(fixture, env.db()).unwrap();
    // An extra column makes the schema 1 -> 2 table rebuild fail halfway.
    let c = rusqlite::Connection::open(env.db()).unwrap();
    c.execute_batch("ALTER TABLE calls ADD COLUMN extra TEXT")
        .unwrap();
    drop(c);
    let o = env.run(&["serve", "--config", env.config().to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot migrate"), "{err}");
    assert_eq!(
        count(&env.db(), "SELECT user_version FROM pragma_user_version"),
        1
    );
    let c = rusqlite::Connection::open(env.db()).unwrap();
    let ok: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    assert_eq!(count(&env.db(), "SELECT count(*) FROM calls"), 2);
    // The obstacle gone, the same file migrates.
    c.execute_batch("ALTER TABLE calls DROP COLUMN extra")
        .unwrap();
    drop(c);
    let d = env.start();
    assert_eq!(
        count(&env.db(), "SELECT user_version FROM pragma_user_version"),
        calltrackd::storage::SCHEMA_VERSION
    );
    assert_eq!(signed_post(&d, "CAretry").status, 200);
}

#[test]
fn one_bad_request_does_not_fail_its_batch_mates() {
    let env = Env::new(&base_config(""));
    let d = env.start();
    // A trigger in the file makes exactly one CallSid fail to store.
    let c = rusqlite::Connection::open(env.db()).unwrap();
    c.execute_batch(
        "CREATE TRIGGER boom BEFORE INSERT ON events WHEN NEW.call_sid = 'CAboom'
         BEGIN SELECT RAISE(ABORT, 'boom'); END;",
    )
    .unwrap();
    drop(c);
    let addr = d.addr;
    let threads: Vec<_> = (0..12)
        .map(|i| {
            std::thread::spawn(move || {
                let sid = if i == 5 {
                    "CAboom".to_owned()
                } else {
                    format!("CAmate{i}")
                };
                let r = post_signed_to(addr, &incoming(&sid, TRACKING));
                (sid, r.status)
            })
        })
        .collect();
    for t in threads {
        let (sid, status) = t.join().unwrap();
        let want = if sid == "CAboom" { 503 } else { 200 };
        assert_eq!(status, want, "{sid}");
    }
    assert_eq!(count(&env.db(), "SELECT count(*) FROM calls"), 11);
}

#[test]
fn the_config_path_comes_from_the_flag_then_the_environment_then_etc() {
    let env = Env::new(&base_config(""));
    let check = |vars: &[(&str, &str)]| {
        let mut c = Command::new(bin());
        c.arg("check-config")
            .env_remove("CALLTRACKD_CONFIG")
            .env_remove("TWILIO_AUTH_TOKEN")
            .current_dir(env.dir.path());
        for (k, v) in vars {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    let cfg = env.config().display().to_string();
    let o = check(&[("CALLTRACKD_CONFIG", &cfg)]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains(&cfg));
    if !std::path::Path::new("/etc/calltrackd/config.toml").exists() {
        let o = check(&[]);
        assert_eq!(o.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&o.stderr).contains("/etc/calltrackd/config.toml"));
    }
}

#[test]
fn the_export_token_comes_from_the_environment_before_the_file_before_credentials() {
    let creds = tempfile::tempdir().unwrap();
    std::fs::write(creds.path().join("export-token"), "from-credential").unwrap();
    let env = Env::new(&base_config(""));
    let auth = |t: &str| vec![("Authorization", format!("Bearer {t}"))];
    // File token over the credential.
    let d = Daemon::start(
        &env,
        vec![("CREDENTIALS_DIRECTORY", creds.path().display().to_string())],
    );
    assert_eq!(get(d.addr, "/calls.csv", &auth(EXPORT_TOKEN)).status, 200);
    assert_eq!(
        get(d.addr, "/calls.csv", &auth("from-credential")).status,
        401
    );
    drop(d);
    // The environment over both.
    let d = Daemon::start(
        &env,
        vec![
            ("CREDENTIALS_DIRECTORY", creds.path().display().to_string()),
            ("CALLTRACKD_EXPORT_TOKEN", "from-environment".into()),
        ],
    );
    assert_eq!(
        get(d.addr, "/calls.csv", &auth("from-environment")).status,
        200
    );
    assert_eq!(get(d.addr, "/calls.csv", &auth(EXPORT_TOKEN)).status, 401);
    drop(d);
    // No token in the file: the credential.
    let env = Env::new(&base_config("").replace(&format!("token = \"{EXPORT_TOKEN}\"\n"), ""));
    let d = Daemon::start(
        &env,
        vec![("CREDENTIALS_DIRECTORY", creds.path().display().to_string())],
    );
    assert_eq!(
        get(d.addr, "/calls.csv", &auth("from-credential")).status,
        200
    );
}

#[test]
fn the_previous_auth_token_from_a_file_or_a_credential_still_verifies() {
    let old = "the-old-auth-token-0000";
    let env = Env::new(&base_config("").replace(
        &format!("auth_token = \"{TOKEN}\""),
        &format!("auth_token = \"{TOKEN}\"\nprevious_auth_token_file = \"old-token\""),
    ));
    std::fs::write(env.dir.path().join("old-token"), format!("{old}\n")).unwrap();
    let mut perms = std::fs::metadata(env.dir.path().join("old-token"))
        .unwrap()
        .permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
    std::fs::set_permissions(env.dir.path().join("old-token"), perms).unwrap();
    let post_with = |d: &Daemon, token: &str, sid: &str| {
        let p = incoming(sid, TRACKING);
        let sig = sign(token, &d.webhook_url(), &borrow(&p));
        d.post_form_signed(&borrow(&p), Some(&sig)).status
    };
    let d = env.start();
    assert_eq!(post_with(&d, old, "CAold1"), 200);
    assert_eq!(post_with(&d, TOKEN, "CAnew1"), 200);
    assert_eq!(post_with(&d, "neither", "CAbad1"), 403);
    drop(d);
    // As a systemd credential.
    let creds = tempfile::tempdir().unwrap();
    std::fs::write(creds.path().join("twilio-previous-auth-token"), old).unwrap();
    let env = Env::new(&base_config(""));
    let d = Daemon::start(
        &env,
        vec![("CREDENTIALS_DIRECTORY", creds.path().display().to_string())],
    );
    assert_eq!(post_with(&d, old, "CAold2"), 200);
}

#[test]
fn forwarded_headers_are_not_trusted() {
    let env = Env::new(&base_config(""));
    let d = env.start();
    let p = incoming("CAfwd", TRACKING);
    // Signed for the URL the forwarded headers claim: refused.
    let claimed = "https://calls.example.com/call-tracking/webhook";
    let body = form_encode(&borrow(&p));
    let headers = |sig: String| {
        vec![
            (
                "Content-Type",
                "application/x-www-form-urlencoded".to_owned(),
            ),
            ("X-Forwarded-Proto", "https".to_owned()),
            ("X-Forwarded-Host", "calls.example.com".to_owned()),
            ("X-Twilio-Signature", sig),
        ]
    };
    let r = request(
        d.addr,
        "POST",
        "/call-tracking/webhook",
        &headers(sign(TOKEN, claimed, &borrow(&p))),
        body.as_bytes(),
    );
    assert_eq!(r.status, 403);
    // Signed for http:// + Host: accepted, the forwarded headers changing nothing.
    let r = request(
        d.addr,
        "POST",
        "/call-tracking/webhook",
        &headers(sign(TOKEN, &d.webhook_url(), &borrow(&p))),
        body.as_bytes(),
    );
    assert_eq!(r.status, 200);
}

#[test]
fn every_metrics_family_is_served() {
    let env = Env::new(&base_config("metrics_listen = \"127.0.0.1:0\"\n"));
    let d = env.start();
    let maddr = d.metrics_addr();
    assert_eq!(signed_post(&d, "CAmetric").status, 200);
    let text = get(maddr, "/metrics", &[]).text();
    for family in [
        "calltrackd_build_info",
        "calltrackd_webhook_requests_total",
        "calltrackd_http_responses_total",
        "calltrackd_webhook_duration_seconds",
        "calltrackd_commit_batch_size",
        "calltrackd_commit_duration_seconds",
        "calltrackd_commit_failures_total",
        "calltrackd_config_reloads_total",
        "calltrackd_http_connections",
        "calltrackd_http_connection_events_total",
        "calltrackd_wal_bytes",
        "calltrackd_calls",
        "calltrackd_database_up",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family} missing:\n{text}"
        );
    }
    assert!(!text.contains("CAmetric") && !text.contains(CALLER));
}

#[test]
fn serve_warns_when_the_config_holding_a_secret_is_readable_by_others() {
    let env = Env::new(&base_config(""));
    let mut perms = std::fs::metadata(env.config()).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o644);
    std::fs::set_permissions(env.config(), perms).unwrap();
    let d = env.start();
    assert!(
        d.wait_log("readable by group or others", Duration::from_secs(10)),
        "{}",
        d.log_text()
    );
    assert!(!d.log_text().contains(TOKEN));
}

#[test]
fn calls_that_started_at_the_same_second_are_ordered_by_call_sid() {
    let env = Env::new(&base_config(""));
    let d = env.start();
    // Three calls with the same start (the same final Timestamp and CallDuration).
    for sid in ["CAtieC", "CAtieA", "CAtieB"] {
        let p = status(
            sid,
            TRACKING,
            "completed",
            "Mon, 02 Mar 2026 15:00:47 +0000",
            Some("47"),
        );
        assert_eq!(d.post_form(&borrow(&p)).status, 200);
    }
    let csv = get(d.addr, "/calls.csv", &bearer()).text();
    let sids: Vec<&str> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(sids, ["CAtieA", "CAtieB", "CAtieC"]);
}
