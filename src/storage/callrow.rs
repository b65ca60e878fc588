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

/// Writes the whole row (and the call's folded events, `state`).
pub(crate) fn upsert_call(
    conn: &Connection,
    call_id: i64,
    c: &Call,
    state: &str,
) -> Result<(), StorageError> {
    let q = c.qualify;
    conn.prepare_cached(
        "INSERT INTO calls (id, call_sid, user, tracking_number, source, caller, caller_name,
            caller_city, caller_state, direction, status, answered, qualified, duration_seconds,
            talk_seconds, started_at, ended_at, outcome, ring_seconds, first_time_caller,
            prior_calls, qualified_reason, recording_url, voicemail_url, captured_by, forwarded,
            min_duration_seconds, abandon_seconds, lookback_days, require_first_time,
            caller_key, counted, updated_at, state)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
            ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31, ?32, ?33, ?34)
         ON CONFLICT(id) DO UPDATE SET
            user = excluded.user, tracking_number = excluded.tracking_number,
            source = excluded.source, caller = excluded.caller, caller_name = excluded.caller_name,
            caller_city = excluded.caller_city, caller_state = excluded.caller_state,
            direction = excluded.direction, status = excluded.status,
            answered = excluded.answered, qualified = excluded.qualified,
            duration_seconds = excluded.duration_seconds, talk_seconds = excluded.talk_seconds,
            started_at = excluded.started_at, ended_at = excluded.ended_at,
            outcome = excluded.outcome, ring_seconds = excluded.ring_seconds,
            first_time_caller = excluded.first_time_caller, prior_calls = excluded.prior_calls,
            qualified_reason = excluded.qualified_reason, recording_url = excluded.recording_url,
            voicemail_url = excluded.voicemail_url, captured_by = excluded.captured_by,
            forwarded = excluded.forwarded, min_duration_seconds = excluded.min_duration_seconds,
            abandon_seconds = excluded.abandon_seconds, lookback_days = excluded.lookback_days,
            require_first_time = excluded.require_first_time, caller_key = excluded.caller_key,
            counted = excluded.counted, updated_at = excluded.updated_at, state = excluded.state",
    )?
    .execute(params![
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
        c.started_at,
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
        c.caller_key(),
        c.counts_as_prior(),
        now_rfc3339_ms(),
        state,
    ])?;
    Ok(())
}
