//! A `calls` row as a [`Call`]: the one column list every reader and writer uses.

use rusqlite::{Connection, Row, params};

use super::StorageError;
use crate::calls::Call;
use crate::clock::now_rfc3339_ms;
use crate::config::Qualify;

/// The columns [`call_from_row`] reads, in its order.
pub(crate) const CALL_COLUMNS: &str = "call_sid, user, tracking_number, source, caller,
    caller_name, caller_city, caller_state, direction, status, answered, qualified,
    duration_seconds, talk_seconds, started_at, ended_at, outcome, ring_seconds,
    first_time_caller, prior_calls, qualified_reason, recording_url, voicemail_url,
    captured_by, forwarded, min_duration_seconds, abandon_seconds, lookback_days,
    require_first_time";

/// How many columns [`CALL_COLUMNS`] has: a query may select more after them.
pub(crate) const CALL_COLUMN_COUNT: usize = 29;

/// The rules a row was decided with: set once `min_duration_seconds` is (the others
/// are NULL only in rows from before schema 4, until they are re-derived).
fn qualify_from_row(r: &Row<'_>, at: usize) -> rusqlite::Result<Option<Qualify>> {
    let d = Qualify::default();
    let Some(min) = r.get::<_, Option<i64>>(at)? else {
        return Ok(None);
    };
    Ok(Some(Qualify {
        min_duration_seconds: min as u64,
        abandon_seconds: r
            .get::<_, Option<i64>>(at + 1)?
            .map_or(d.abandon_seconds, |v| v as u64),
        first_time_lookback_days: r
            .get::<_, Option<i64>>(at + 2)?
            .map_or(d.first_time_lookback_days, |v| v as u64),
        require_first_time: r
            .get::<_, Option<bool>>(at + 3)?
            .unwrap_or(d.require_first_time),
    }))
}

/// Reads [`CALL_COLUMNS`].
pub(crate) fn call_from_row(r: &Row<'_>) -> rusqlite::Result<Call> {
    Ok(Call {
        call_sid: r.get(0)?,
        user: r.get(1)?,
        tracking_number: r.get(2)?,
        source: r.get(3)?,
        caller: r.get(4)?,
        caller_name: r.get(5)?,
        caller_city: r.get(6)?,
        caller_state: r.get(7)?,
        direction: r.get(8)?,
        status: r.get(9)?,
        answered: r.get(10)?,
        qualified: r.get(11)?,
        duration_seconds: r.get(12)?,
        talk_seconds: r.get(13)?,
        started_at: r.get(14)?,
        ended_at: r.get(15)?,
        outcome: r.get(16)?,
        ring_seconds: r.get(17)?,
        first_time_caller: r.get(18)?,
        prior_calls: r.get(19)?,
        qualified_reason: r.get(20)?,
        recording_url: r.get(21)?,
        voicemail_url: r.get(22)?,
        captured_by: r.get(23)?,
        forwarded: r.get(24)?,
        qualify: qualify_from_row(r, 25)?,
    })
}

/// The columns written, in [`write_call`]'s parameter order (`?2`...); those after
/// [`INDEXED_FROM`] are in an index besides the primary key.
const WRITTEN: [&str; 33] = [
    "call_sid",
    "user",
    "tracking_number",
    "source",
    "caller",
    "caller_name",
    "caller_city",
    "caller_state",
    "direction",
    "status",
    "answered",
    "qualified",
    "duration_seconds",
    "talk_seconds",
    "ended_at",
    "outcome",
    "ring_seconds",
    "first_time_caller",
    "prior_calls",
    "qualified_reason",
    "recording_url",
    "voicemail_url",
    "captured_by",
    "forwarded",
    "min_duration_seconds",
    "abandon_seconds",
    "lookback_days",
    "require_first_time",
    "updated_at",
    "state",
    // In `calls_by_start` or `calls_by_caller`:
    "started_at",
    "caller_key",
    "counted",
];
const INDEXED_FROM: usize = 30;

/// The statements: a new row, and an update with or without the indexed columns
/// (SQLite rewrites the index entries of every column an UPDATE sets, changed or not).
static INSERT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let params: Vec<String> = (1..=WRITTEN.len() + 1).map(|i| format!("?{i}")).collect();
    format!(
        "INSERT INTO calls (id, {}) VALUES ({})",
        WRITTEN.join(", "),
        params.join(", ")
    )
});
static UPDATE_ALL: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| update_sql(WRITTEN.len()));
static UPDATE_UNINDEXED: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| update_sql(INDEXED_FROM));

fn update_sql(columns: usize) -> String {
    let set: Vec<String> = WRITTEN[..columns]
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{c} = ?{}", i + 2))
        .collect();
    format!("UPDATE calls SET {} WHERE id = ?1", set.join(", "))
}

/// What is stored for a call before it is written.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stored<'a> {
    /// No row yet.
    Nothing,
    /// This row, with its indexed columns as its values give them.
    Row(&'a Call),
    /// This row, whose indexed columns may not match its values (written before they
    /// existed): rewrite them.
    Stale(&'a Call),
}

/// Writes the row (and the call's folded events, `state`): a new row when there was
/// none, else an update that leaves the index entries alone unless the start, the
/// caller key or whether the call counts changed.
/// The report's summary moves with it (`summary::adjust`), in the same transaction.
pub(crate) fn write_call(
    conn: &Connection,
    call_id: i64,
    c: &Call,
    state: &str,
    old: Stored<'_>,
    tz: chrono_tz::Tz,
) -> Result<(), StorageError> {
    let q = c.qualify;
    let values = params![
        call_id,
        c.call_sid,
        c.user,
        c.tracking_number,
        c.source,
        c.caller,
        c.caller_name,
        c.caller_city,
        c.caller_state,
        c.direction,
        c.status,
        c.answered,
        c.qualified,
        c.duration_seconds,
        c.talk_seconds,
        c.ended_at,
        c.outcome,
        c.ring_seconds,
        c.first_time_caller,
        c.prior_calls,
        c.qualified_reason,
        c.recording_url,
        c.voicemail_url,
        c.captured_by,
        c.forwarded,
        q.map(|q| q.min_duration_seconds as i64),
        q.map(|q| q.abandon_seconds as i64),
        q.map(|q| q.first_time_lookback_days as i64),
        q.map(|q| q.require_first_time),
        now_rfc3339_ms(),
        state,
        c.started_at,
        c.caller_key(),
        c.counts_as_prior(),
    ];
    match old {
        Stored::Nothing => conn.prepare_cached(&INSERT)?.execute(values)?,
        Stored::Row(o)
            if o.started_at == c.started_at
                && o.caller_key() == c.caller_key()
                && o.counts_as_prior() == c.counts_as_prior() =>
        {
            conn.prepare_cached(&UPDATE_UNINDEXED)?
                .execute(&values[..INDEXED_FROM + 1])?
        }
        Stored::Row(_) | Stored::Stale(_) => conn.prepare_cached(&UPDATE_ALL)?.execute(values)?,
    };
    let before = match old {
        Stored::Nothing => None,
        Stored::Row(o) | Stored::Stale(o) => Some(o),
    };
    super::summary::adjust(conn, tz, before, c)
}
