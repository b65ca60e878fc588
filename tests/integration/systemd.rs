//! Running under systemd: credentials, state directory, sd_notify, watchdog, journald.

use crate::support::*;

#[test]
fn credentials_state_directory_notify_and_watchdog() {
    // A config with no token and no storage path, as the packaged one.
    let env = Env::new(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[[numbers]]\nnumber = \"{TRACKING}\"\nuser = \"acme-plumbing\"\nforward_to = \"{SHOP}\"\n"
    ));
    let creds = env.dir.path().join("creds");
    let state = env.dir.path().join("state");
    std::fs::create_dir_all(&creds).unwrap();
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(creds.join("twilio-auth-token"), format!("{TOKEN}\n")).unwrap();
    std::fs::write(creds.join("export-token"), EXPORT_TOKEN).unwrap();
    let notify = Notify::new(&env);

    let d = Daemon::start(
        &env,
        vec![
            ("CREDENTIALS_DIRECTORY", creds.display().to_string()),
            ("STATE_DIRECTORY", state.display().to_string()),
            ("NOTIFY_SOCKET", notify.path.clone()),
            ("WATCHDOG_USEC", "400000".into()),
            ("JOURNAL_STREAM", "8:12345".into()),
        ],
    );
    assert_eq!(notify.next().as_deref(), Some("READY=1"));
    // The watchdog pings only after its own GET /healthz got an answer.
    assert_eq!(notify.next().as_deref(), Some("WATCHDOG=1"));

    // The token from $CREDENTIALS_DIRECTORY verifies signatures; the database is in
    // $STATE_DIRECTORY; the export token works too.
    assert_eq!(
        d.post_form(&borrow(&incoming("CAsd1", TRACKING))).status,
        200
    );
    assert!(call_row(&state.join("calls.db"), "CAsd1").is_some());
    assert_eq!(get(d.addr, "/calls.csv", &bearer()).status, 200);

    // journald adds its own timestamps: lines start with the level.
    let log = d.log_text();
    assert!(log.lines().all(|l| l.starts_with('[')), "{log}");

    d.signal(libc::SIGTERM);
    let mut msgs = Vec::new();
    while let Some(m) = notify.next() {
        msgs.push(m);
        if msgs.last().map(String::as_str) == Some("STOPPING=1") {
            break;
        }
    }
    assert_eq!(
        msgs.last().map(String::as_str),
        Some("STOPPING=1"),
        "{msgs:?}"
    );
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn a_panicking_handler_gets_500_and_the_worker_lives_on() {
    use calltrackd::http::{Limits, Reply, Response, Server};
    use std::sync::Arc;
    let server = Server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = server.local_addr();
    let running = server
        .run(
            "t",
            // One worker: its permit must come back after the panic.
            Limits::new(1024, 16, 1),
            Arc::new(|req: &mut calltrackd::http::Request| {
                if req.path() == "/panic" {
                    panic!("boom");
                }
                Reply::Now(Response::text(200, "fine\n"))
            }),
            Arc::new(|_| {}),
        )
        .unwrap();
    let r = get(addr, "/panic", &[]);
    assert_eq!(r.status, 500);
    for _ in 0..3 {
        let r = get(addr, "/ok", &[]);
        assert_eq!((r.status, r.text().as_str()), (200, "fine\n"));
    }
    running.stop();
}

#[test]
fn the_watchdog_stops_only_when_a_restart_would_help() {
    let env = Env::new(&base_config(""));
    let notify = Notify::new(&env);
    let d = Daemon::start(
        &env,
        vec![
            ("NOTIFY_SOCKET", notify.path.clone()),
            ("WATCHDOG_USEC", "400000".into()),
        ],
    );
    assert_eq!(notify.next().as_deref(), Some("READY=1"));
    assert_eq!(notify.next().as_deref(), Some("WATCHDOG=1"));
    // The database file is deleted: /healthz says a restart is needed, and the watchdog
    // stops pinging so that systemd restarts calltrackd.
    std::fs::remove_file(env.db()).unwrap();
    assert_eq!(
        d.post_form(&borrow(&incoming("CAwd1", TRACKING))).status,
        503
    );
    let r = get(d.addr, "/healthz", &[]);
    assert_eq!(
        (r.status, r.text().as_str()),
        (503, "unhealthy: restart needed\n")
    );
    // Pings already on their way may still come; then none for a second and a half.
    let settle = std::time::Instant::now();
    while notify
        .next_within(std::time::Duration::from_millis(300))
        .is_some()
    {
        assert!(
            settle.elapsed() < std::time::Duration::from_secs(3),
            "the watchdog keeps pinging"
        );
    }
    assert_eq!(
        notify.next_within(std::time::Duration::from_millis(1500)),
        None
    );
    assert!(
        d.wait_log("watchdog: GET /healthz", std::time::Duration::from_secs(10)),
        "{}",
        d.log_text()
    );
}
