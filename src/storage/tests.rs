//! Unit tests for `storage`.

use std::path::PathBuf;

use rusqlite::{Connection, params};

use super::rows::{EVENT_LOADS, apply_one, load_events};
use super::schema::MIGRATIONS;
use super::*;
use crate::calls::Summary;

#[test]
fn newer_schema_is_refused() {
    let dir = std::env::temp_dir().join(format!("ct-schema-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("t.db");
    let _ = std::fs::remove_file(&db);
    drop(open_writer(&db).unwrap());
    let c = Connection::open(&db).unwrap();
    c.execute_batch(&format!("PRAGMA user_version = {}", SCHEMA_VERSION + 1))
        .unwrap();
    drop(c);
    let e = open_writer(&db).unwrap_err().to_string();
    assert!(e.contains("newer than this calltrackd"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

use crate::twilio::{Answer, Facts, classify, parse_form};

const PATH: &str = "/call-tracking/webhook";

fn temp_db(name: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("ct-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("t.db");
    (dir, db)
}

fn event(body: &str, received_ms: i64) -> NewEvent {
    let params = parse_form(body.as_bytes()).unwrap();
    NewEvent {
        received_ms,
        kind: classify(&params, None),
        answer: Answer::Ack,
        facts: Facts::from_params(&params).unwrap(),
        content_sha256: params.content_hash(PATH),
        method: "POST".into(),
        path: PATH.into(),
        content_type: "application/x-www-form-urlencoded".into(),
        body: body.as_bytes().to_vec(),
        idempotency_token: None,
        rules: Arc::new(Rules::example()),
    }
}

/// An event row as schema 1 stored it.
fn insert_v1_event(c: &Connection, id: i64, ev: &NewEvent, duplicate_of: Option<i64>) {
    c.execute(
        "INSERT INTO events (id, received_at, call_sid, kind, answer, duplicate_of,
            content_sha256, method, path, content_type, body, direction, from_number, to_number,
            call_status, caller_name, from_city, from_state, to_city, to_state, received_unix)
         VALUES (?1, '2026-11-23T10:00:00.000Z', ?2, ?3, 'ack', ?4, ?5, 'POST', ?6,
            'application/x-www-form-urlencoded', ?7, ?8, ?9, ?10, ?11, '', '', '', '', '', ?12)",
        params![
            id,
            ev.facts.call_sid,
            ev.kind.as_str(),
            duplicate_of,
            &ev.content_sha256[..],
            PATH,
            ev.body,
            ev.facts.direction,
            ev.facts.from,
            ev.facts.to,
            ev.facts.call_status,
            ev.received_ms / 1000,
        ],
    )
    .unwrap();
}

const INCOMING: &str = "CallSid=CA1&AccountSid=AC1&From=%2B14155550100&To=%2B18005551212&CallStatus=ringing&Direction=inbound";
const LEG: &str = "CallSid=CAleg&ParentCallSid=CA1&AccountSid=AC1&From=%2B18005551212&To=%2B15558675309&CallStatus=completed&Direction=outbound-dial&CallDuration=40";
const COMPLETED: &str = "CallSid=CA1&AccountSid=AC1&From=%2B14155550100&To=%2B18005551212&CallStatus=completed&Direction=inbound&CallDuration=95&CallbackSource=call-progress-events";

#[test]
fn a_schema_1_database_is_migrated_and_keeps_working() {
    let (dir, db) = temp_db("migrate");
    let incoming = event(INCOMING, 1_700_000_000_000);
    {
        // The database as calltrackd with schema 1 left it: an incoming call, a dial
        // leg, a repeat of the incoming request, and the call's row.
        let c = Connection::open(&db).unwrap();
        c.execute_batch(MIGRATIONS[0]).unwrap();
        c.execute_batch("PRAGMA journal_mode = WAL; PRAGMA user_version = 1;")
            .unwrap();
        insert_v1_event(&c, 1, &incoming, None);
        insert_v1_event(&c, 2, &event(LEG, 1_700_000_050_000), None);
        insert_v1_event(&c, 3, &incoming, Some(1));
        c.execute(
            "INSERT INTO calls VALUES ('CA1', 'acme', '+18005551212', 'Google Ads',
                '+14155550100', '', '', '', 'inbound', 'ringing', NULL, NULL, NULL, NULL,
                1700000000, NULL, 1, NULL, '2026-11-23T10:00:00.000Z')",
            [],
        )
        .unwrap();
    }

    let conn = open_writer(&db).unwrap();
    let one = |sql: &str| -> String { conn.query_row(sql, [], |r| r.get::<_, String>(0)).unwrap() };
    assert_eq!(
        one("SELECT CAST(user_version AS TEXT) FROM pragma_user_version"),
        SCHEMA_VERSION.to_string()
    );
    assert_eq!(one("PRAGMA integrity_check"), "ok");
    assert_eq!(
        one("SELECT CAST(count(*) AS TEXT) FROM pragma_foreign_key_check"),
        "0"
    );
    assert!(
        conn.query_row("PRAGMA foreign_keys", [], |r| r.get::<_, bool>(0))
            .unwrap()
    );
    assert_eq!(
        one("SELECT group_concat(call_sid || '=' || call_id, ' ') FROM sids"),
        "CA1=1 CAleg=2"
    );
    assert_eq!(
        one(
            "SELECT group_concat(id || ':' || call_id || ':' || coalesce(duplicate_of, '-'), ' ')
             FROM (SELECT * FROM events ORDER BY id)"
        ),
        "1:1:- 2:2:- 3:1:1"
    );
    assert_eq!(
        one("SELECT CAST(body AS TEXT) FROM events WHERE id = 2"),
        LEG
    );
    assert_eq!(
        one(
            "SELECT id || ' ' || call_sid || ' ' || user || ' ' || source || ' ' || status FROM calls"
        ),
        "1 CA1 acme Google Ads ringing"
    );

    // The migrated call takes its status callback into the same row...
    let rules = Rules::example();
    let outcome = apply_one(&conn, &rules, &event(COMPLETED, 1_700_000_100_000)).unwrap();
    let Outcome::Stored { call, new_call } = outcome else {
        panic!("not stored: {outcome:?}")
    };
    assert!(!new_call);
    assert_eq!(call.status, "completed");
    assert_eq!(
        one("SELECT group_concat(id || ' ' || status || ' ' || duration_seconds, ',') FROM calls"),
        "1 completed 95"
    );
    // ...a repeat is still a repeat, and a new call gets the id of its first event.
    assert_eq!(
        apply_one(&conn, &rules, &incoming).unwrap(),
        Outcome::Duplicate
    );
    let fresh = INCOMING.replace("CA1", "CA2");
    assert!(matches!(
        apply_one(&conn, &rules, &event(&fresh, 1_700_000_200_000)).unwrap(),
        Outcome::Stored { new_call: true, .. }
    ));
    assert_eq!(
        one("SELECT CAST(call_id AS TEXT) FROM sids WHERE call_sid = 'CA2'"),
        "6"
    );
    assert_eq!(
        one(
            "SELECT group_concat(id || '=' || call_sid, ' ') FROM (SELECT * FROM calls ORDER BY id)"
        ),
        "1=CA1 6=CA2"
    );
    drop(conn);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn storing_a_request_never_reads_its_calls_earlier_events() {
    let (dir, db) = temp_db("fold");
    let conn = open_writer(&db).unwrap();
    let rules = Rules::example();
    let loads = || EVENT_LOADS.with(|n| n.get());
    let before = loads();
    conn.execute_batch("BEGIN").unwrap();
    // 3,000 distinct requests of one call (what 6,000 replay variants used to cost
    // linearly), then its final status: the row is right, no event was read back.
    for i in 0..3000 {
        let body = format!("{INCOMING}&Variant={i}");
        let o = apply_one(&conn, &rules, &event(&body, 1_700_000_000_000 + i)).unwrap();
        assert!(matches!(o, Outcome::Stored { .. }), "{o:?}");
    }
    let o = apply_one(&conn, &rules, &event(COMPLETED, 1_700_000_100_000)).unwrap();
    let Outcome::Stored { call, .. } = o else {
        panic!("{o:?}")
    };
    assert_eq!(
        (call.status.as_str(), call.answered, call.duration_seconds),
        ("completed", Some(true), Some(95))
    );
    // A repeat is found by its hash, still without reading the events.
    assert_eq!(
        apply_one(&conn, &rules, &event(&format!("{INCOMING}&Variant=7"), 0)).unwrap(),
        Outcome::Duplicate
    );
    assert_eq!(
        loads(),
        before,
        "a call's events were read back while storing"
    );
    conn.execute_batch("COMMIT").unwrap();
    // The kept summary is what folding every stored event gives.
    let kept: String = conn
        .query_row("SELECT state FROM calls WHERE call_sid = 'CA1'", [], |r| {
            r.get(0)
        })
        .unwrap();
    let kept: Summary = serde_json::from_str(&kept).unwrap();
    let call_id: i64 = conn
        .query_row("SELECT call_id FROM sids WHERE call_sid = 'CA1'", [], |r| {
            r.get(0)
        })
        .unwrap();
    let mut folded = Summary::default();
    for e in load_events(&conn, call_id).unwrap() {
        folded.add(&e);
    }
    assert_eq!(kept, folded);
    drop(conn);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Every query the first-time counting runs goes through the caller index, so its cost
/// does not grow with the number of stored calls.
#[test]
fn first_time_queries_use_the_caller_index() {
    let (dir, db) = temp_db("plans");
    let conn = open_writer(&db).unwrap();
    let plan = |sql: &str| -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let n = stmt.parameter_count();
        let rows: Vec<String> = stmt
            .query_map(
                rusqlite::params_from_iter(std::iter::repeat_n(rusqlite::types::Null, n)),
                |r| r.get::<_, String>(3),
            )
            .unwrap()
            .map(Result::unwrap)
            .collect();
        rows.join("; ")
    };
    for sql in [super::callers::COUNT_STORED, super::callers::LATER.as_str()] {
        let p = plan(sql);
        assert!(p.contains("INDEX calls_by_caller"), "{sql}\n{p}");
        assert!(!p.contains("SCAN"), "{sql}\n{p}");
    }
    assert!(
        plan(super::callers::COUNT_STORED).contains(
            "USING INDEX calls_by_caller (caller_key=? AND started_at>? AND started_at<?)"
        ) || plan(super::callers::COUNT_STORED)
            .contains("calls_by_caller (caller_key=? AND started_at>?"),
        "the count ranges over the caller's entries: {}",
        plan(super::callers::COUNT_STORED)
    );
    drop(conn);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The schema upgrade's pass runs on the writer's own connection: afterwards that
/// connection still commits with synchronous=FULL and the daemon's page cache size
/// (it once kept requalify's NORMAL and 32 MiB).
#[test]
fn the_upgrade_pass_leaves_the_writer_connection_as_it_was() {
    let (dir, db) = temp_db("pragmas");
    let mut conn = open_writer(&db).unwrap();
    let before: (i64, i64) = (
        conn.query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap(),
        conn.query_row("PRAGMA cache_size", [], |r| r.get(0))
            .unwrap(),
    );
    assert_eq!(before, (2, -8192));
    assert!(super::requalify::rederive_pending(&conn).unwrap());
    finish_upgrade(&mut conn, &Rules::example()).unwrap();
    assert!(!super::requalify::rederive_pending(&conn).unwrap());
    let after: (i64, i64) = (
        conn.query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap(),
        conn.query_row("PRAGMA cache_size", [], |r| r.get(0))
            .unwrap(),
    );
    assert_eq!(after, before);
    drop(conn);
    std::fs::remove_dir_all(&dir).unwrap();
}
