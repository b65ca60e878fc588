//! Upgrading: a database written by an older calltrackd is migrated on start and keeps
//! working. `tests/data/schema1.db` was written by calltrackd with schema 1 (the
//! commit before schema 2): call CAupgrade1 came in, was answered for 45 s (its
//! `<Dial action>`), and its incoming request came twice; CAupgrade2 is still ringing.

use crate::support::*;

/// The first request of CAupgrade1, exactly as stored in the fixture.
fn first_request() -> Vec<(String, String)> {
    owned(&[
        ("CallSid", "CAupgrade1"),
        ("From", CALLER),
        ("To", TRACKING),
        ("CallStatus", "ringing"),
        ("Direction", "inbound"),
    ])
}

#[test]
fn a_schema_1_database_is_migrated_on_start_and_keeps_its_calls() {
    let env = Env::new(&base_config(""));
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/schema1.db"),
        env.db(),
    )
    .unwrap();
    let notify = Notify::new(&env);
    let d = Daemon::start(&env, vec![("NOTIFY_SOCKET", notify.path.clone())]);

    // systemd is told to wait for the migration before it is told the daemon is ready.
    let first = notify.next().unwrap_or_default();
    assert!(
        first.starts_with("EXTEND_TIMEOUT_USEC=") && first.contains("schema 2"),
        "{first}"
    );
    // One notice per migration step (schema 3 too), then READY.
    let mut next = notify.next().unwrap_or_default();
    while next.starts_with("EXTEND_TIMEOUT_USEC=") {
        next = notify.next().unwrap_or_default();
    }
    assert_eq!(next, "READY=1");
    assert_eq!(
        count(&env.db(), "SELECT user_version FROM pragma_user_version"),
        3
    );

    // The migrated call takes its status callback; a repeat of a request stored before
    // the upgrade is still a repeat.
    let done = status(
        "CAupgrade1",
        TRACKING,
        "completed",
        "Mon, 02 Mar 2026 15:00:52 +0000",
        Some("52"),
    );
    assert_eq!(d.post_form(&borrow(&done)).status, 200);
    assert_eq!(d.post_form(&borrow(&first_request())).status, 200);
    let row = call_row(&env.db(), "CAupgrade1").expect("CAupgrade1 kept");
    assert_eq!(row.user, "acme-plumbing");
    assert_eq!(row.status, "completed");
    assert_eq!(row.answered, Some(true));
    assert_eq!(row.talk_seconds, Some(45));
    assert_eq!(row.qualified, Some(true));
    assert_eq!(count(&env.db(), "SELECT count(*) FROM events"), 6);
    assert_eq!(
        count(
            &env.db(),
            "SELECT count(*) FROM events WHERE duplicate_of IS NOT NULL"
        ),
        2
    );
    // The call still ringing is untouched, and both are exported.
    assert_eq!(call_row(&env.db(), "CAupgrade2").unwrap().status, "ringing");
    let csv = String::from_utf8(get(d.addr, "/calls.csv", &bearer()).body).unwrap();
    assert!(
        csv.contains("CAupgrade1") && csv.contains("CAupgrade2"),
        "{csv}"
    );
    assert_eq!(count(&env.db(), "SELECT count(*) FROM calls"), 2);
    let c = rusqlite::Connection::open(env.db()).unwrap();
    let check: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}
