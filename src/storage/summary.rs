//! The report's summary table, `report_hours`: calls counted per local day and hour (in
//! `export.timezone`), user, source and outcome, with how many were qualified and
//! first-time and their talk time. Whoever writes a call row moves the call from its old
//! bucket to its new one in the same transaction ([`adjust`]), so the table always
//! agrees with `calls`, and a report reads a few thousand summary rows instead of every
//! call. The zone it was built in is kept in `meta.report_tz`; opened with another zone,
//! it is rebuilt from the calls ([`prepare`]).

use std::collections::HashMap;

use chrono::Timelike;
use chrono_tz::Tz;
use rusqlite::{Connection, OptionalExtension, params};

use super::StorageError;
use super::callrow::{CALL_COLUMNS, call_from_row};
use crate::calls::{Call, CallOutcome};

/// Where a call is counted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    day: String,
    hour: u32,
    user: String,
    source: String,
    outcome: &'static str,
}

/// What is counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Measures {
    calls: i64,
    qualified: i64,
    first_time: i64,
    talk: i64,
}

fn bucket(c: &Call, tz: Tz) -> (Key, Measures) {
    let local = chrono::DateTime::from_timestamp(c.started_at, 0)
        .unwrap_or_default()
        .with_timezone(&tz);
    let key = Key {
        day: local.format("%Y-%m-%d").to_string(),
        hour: local.hour(),
        user: c.user.clone(),
        source: c.source.clone(),
        outcome: CallOutcome::label(c.outcome),
    };
    let m = Measures {
        calls: 1,
        qualified: i64::from(c.qualified == Some(true)),
        first_time: i64::from(c.first_time_caller == Some(true)),
        talk: if c.outcome == Some(CallOutcome::Answered) {
            c.talk_seconds.unwrap_or(0)
        } else {
            0
        },
    };
    (key, m)
}

fn add(conn: &Connection, k: &Key, m: Measures, sign: i64) -> Result<(), StorageError> {
    conn.prepare_cached(
        "INSERT INTO report_hours (day, hour, user, source, outcome, calls, qualified,
            first_time, talk_seconds)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (day, hour, user, source, outcome) DO UPDATE SET
            calls = calls + excluded.calls, qualified = qualified + excluded.qualified,
            first_time = first_time + excluded.first_time,
            talk_seconds = talk_seconds + excluded.talk_seconds",
    )?
    .execute(params![
        k.day,
        k.hour,
        k.user,
        k.source,
        k.outcome,
        sign * m.calls,
        sign * m.qualified,
        sign * m.first_time,
        sign * m.talk
    ])?;
    Ok(())
}

/// Moves a call from the bucket of `old` (none: a new call) to that of `new`.
pub(crate) fn adjust(
    conn: &Connection,
    tz: Tz,
    old: Option<&Call>,
    new: &Call,
) -> Result<(), StorageError> {
    let (nk, nm) = bucket(new, tz);
    match old.map(|o| bucket(o, tz)) {
        Some((ok, om)) if ok == nk && om == nm => Ok(()),
        Some((ok, om)) => {
            add(conn, &ok, om, -1)?;
            add(conn, &nk, nm, 1)
        }
        None => add(conn, &nk, nm, 1),
    }
}

/// Makes sure the summary was built in `tz`; rebuilds it from the calls otherwise (a
/// new table, or `export.timezone` changed). One pass over the calls.
pub fn prepare(conn: &mut Connection, tz: Tz) -> Result<(), StorageError> {
    let built: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = 'report_tz'", [], |r| {
            r.get(0)
        })
        .optional()?;
    if built.as_deref() == Some(tz.name()) {
        return Ok(());
    }
    let started = std::time::Instant::now();
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut totals: HashMap<Key, Measures> = HashMap::new();
    let mut calls = 0u64;
    {
        let mut stmt = tx.prepare(&format!("SELECT {CALL_COLUMNS} FROM calls"))?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let (k, m) = bucket(&call_from_row(r)?, tz);
            let t = totals.entry(k).or_default();
            t.calls += m.calls;
            t.qualified += m.qualified;
            t.first_time += m.first_time;
            t.talk += m.talk;
            calls += 1;
        }
    }
    tx.execute("DELETE FROM report_hours", [])?;
    for (k, m) in &totals {
        add(&tx, k, *m, 1)?;
    }
    tx.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES ('report_tz', ?1)",
        [tz.name()],
    )?;
    tx.commit()?;
    log::info!(
        "report summary built in {} from {calls} calls ({:.1} s)",
        tz.name(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
