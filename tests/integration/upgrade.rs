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
        calltrackd::storage::SCHEMA_VERSION
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

/// `tests/data/schema3.db` was written by calltrackd with schema 3 (commit 5af40f5)
/// through real signed requests (`tests/data/make-schema3.py` lists its calls). The
/// upgrade to schema 4 gives every stored call its outcome, ring time, first-time flag
/// and reason from its stored events, with the threshold it was decided with.
#[test]
fn a_schema_3_database_gets_outcomes_ring_time_and_first_time_from_its_events() {
    // A higher threshold than the one the calls were decided with (30 s).
    let env = Env::new(
        &base_config("").replace("min_duration_seconds = 30", "min_duration_seconds = 60"),
    );
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/schema3.db"),
        env.db(),
    )
    .unwrap();
    let d = env.start();
    assert!(d.wait_log(
        "decided 4 stored calls again",
        std::time::Duration::from_secs(10)
    ));
    assert_eq!(
        count(&env.db(), "SELECT user_version FROM pragma_user_version"),
        calltrackd::storage::SCHEMA_VERSION
    );
    let csv = get(d.addr, "/calls.csv", &bearer()).body;
    let mut rd = csv::Reader::from_reader(&csv[..]);
    let header: Vec<String> = rd.headers().unwrap().iter().map(str::to_owned).collect();
    let want = [
        "call_sid",
        "outcome",
        "ring_seconds",
        "first_time_caller",
        "prior_calls",
        "qualified",
        "qualified_reason",
        "captured_by",
    ];
    let idx: Vec<usize> = want
        .iter()
        .map(|w| header.iter().position(|h| h == w).unwrap())
        .collect();
    let rows: Vec<Vec<String>> = rd
        .records()
        .map(|r| {
            let r = r.unwrap();
            idx.iter().map(|&i| r[i].to_owned()).collect()
        })
        .collect();
    let expected = [
        [
            "CAv3ans",
            "answered",
            "12",
            "true",
            "0",
            "true",
            "talked 45 s, at least 30 s",
            "webhook",
        ],
        [
            "CAv3again",
            "abandoned",
            "10",
            "false",
            "1",
            "false",
            "not answered (abandoned)",
            "webhook",
        ],
        [
            "CAv3anon",
            "missed",
            "0",
            "",
            "",
            "false",
            "not answered (missed)",
            "webhook",
        ],
        ["CAv3live", "", "", "true", "0", "", "", "webhook"],
    ];
    assert_eq!(
        rows,
        expected.map(|r| r.map(str::to_owned).to_vec()).to_vec()
    );
    // Each stored request is still the same request: a repeat stays a repeat, and the
    // call still ringing takes its end.
    let before = count(
        &env.db(),
        "SELECT count(*) FROM events WHERE duplicate_of IS NULL",
    );
    let again = owned(&[
        ("CallSid", "CAv3again"),
        ("AccountSid", "AC00000000000000000000000000000000"),
        ("From", CALLER),
        ("To", TRACKING),
        ("Direction", "inbound"),
        ("CallStatus", "ringing"),
    ]);
    assert_eq!(d.post_form(&borrow(&again)).status, 200);
    assert_eq!(
        count(
            &env.db(),
            "SELECT count(*) FROM events WHERE duplicate_of IS NULL"
        ),
        before
    );
    let mut done = status(
        "CAv3live",
        TRACKING,
        "no-answer",
        "Thu, 05 Mar 2026 15:00:30 +0000",
        Some("0"),
    );
    set(&mut done, "From", "+13125550199");
    assert_eq!(d.post_form(&borrow(&done)).status, 200);
    let csv = String::from_utf8(get(d.addr, "/calls.csv?outcome=missed", &bearer()).body).unwrap();
    assert!(
        csv.contains("CAv3live"),
        "rang 30 s, then gone: missed\n{csv}"
    );
    // A second start has nothing left to do.
    drop(d);
    let d = env.start();
    assert_eq!(get(d.addr, "/healthz", &[]).status, 200);
    assert!(!d.log_text().contains("decided"), "{}", d.log_text());
    let c = rusqlite::Connection::open(env.db()).unwrap();
    let check: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}
