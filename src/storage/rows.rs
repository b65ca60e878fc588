//! The rows one request writes: its event, its CallSid's entry, its call row.

use rusqlite::{Connection, OptionalExtension, params};

use super::callers::{Place, View, count_priors, new_call_place, refresh_later};
use super::callrow::{CALL_COLUMN_COUNT, CALL_COLUMNS, Stored, call_from_row, write_call};
use super::outbox::Attempt;
use super::{NewEvent, Outcome, Pending, StorageError};
use crate::calls::{self, Call, CallOutcome, Decided, Summary};
use crate::clock::rfc3339_ms;
use crate::config::Rules;
use crate::twilio::{Answer, Facts, Kind};

/// One transaction for the whole batch. The usual case, every request applying, costs
/// no savepoints; if one request fails to apply, the batch is rolled back and redone with
/// each request in its own savepoint, so that request fails alone. A failed commit fails
/// them all.
///
/// The notification attempts ride along in the same transaction, in a savepoint of
/// their own (a failure there costs the webhooks nothing); the flag says whether they
/// were recorded.
pub(crate) fn apply_batch(
    conn: &mut Connection,
    writes: &[Pending],
    attempts: &[(i64, Attempt)],
) -> Result<(Vec<Result<Outcome, StorageError>>, bool), StorageError> {
    {
        let mut tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let recorded = record_attempts(&mut tx, attempts);
        let mut outcomes = Vec::with_capacity(writes.len());
        let mut all_ok = true;
        for (ev, _) in writes {
            match apply_one(&tx, &ev.rules, ev) {
                Ok(o) => outcomes.push(Ok(o)),
                Err(_) => {
                    all_ok = false;
                    break;
                }
            }
        }
        if all_ok {
            tx.commit()?;
            return Ok((outcomes, recorded));
        }
        tx.rollback()?;
    }
    let mut tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let recorded = record_attempts(&mut tx, attempts);
    let mut outcomes = Vec::with_capacity(writes.len());
    for (ev, _) in writes {
        let mut sp = tx.savepoint()?;
        match apply_one(&sp, &ev.rules, ev) {
            Ok(outcome) => {
                sp.commit()?;
                outcomes.push(Ok(outcome));
            }
            Err(e) => {
                sp.rollback()?;
                drop(sp);
                log::error!("request for call {} not stored: {e}", ev.facts.call_sid);
                outcomes.push(Err(e));
            }
        }
    }
    tx.commit()?;
    Ok((outcomes, recorded))
}

/// Records the delivery thread's finished attempts in a savepoint; false if they
/// could not be (they stay in flight and are offered again).
fn record_attempts(tx: &mut rusqlite::Transaction<'_>, attempts: &[(i64, Attempt)]) -> bool {
    if attempts.is_empty() {
        return true;
    }
    let now = crate::notify::now_ms().div_euclid(1000);
    let Ok(sp) = tx.savepoint() else {
        return false;
    };
    for (id, a) in attempts {
        if let Err(e) = super::outbox::record(&sp, *id, a, now) {
            log::warn!("notify: outbox attempt not recorded: {e}");
            return false; // the savepoint rolls back when dropped
        }
    }
    sp.commit().is_ok()
}

/// Stores one request: the lookup of its CallSid, the index lookup that tells a
/// repeat, the event row, and the call row with this request folded into its summary.
/// Nothing here reads the call's earlier events (except once for a row stored before
/// schema 3), so the cost does not grow with their number.
pub(crate) fn apply_one(
    conn: &Connection,
    rules: &Rules,
    ev: &NewEvent,
) -> Result<Outcome, StorageError> {
    let hash = ev.content_sha256;
    let sid = &ev.facts.call_sid;
    let known: Option<i64> = conn
        .prepare_cached("SELECT call_id FROM sids WHERE call_sid = ?1")?
        .query_row([sid], |r| r.get(0))
        .optional()?;
    let (call_id, id) = match known {
        Some(call_id) => {
            let original: Option<i64> = conn
                .prepare_cached(
                    "SELECT id FROM events
                     WHERE call_id = ?1 AND content_sha256 = ?2 AND duplicate_of IS NULL
                     LIMIT 1",
                )?
                .query_row(params![call_id, &hash[..]], |r| r.get(0))
                .optional()?;
            let id = insert_event(conn, ev, None, call_id, original)?;
            if original.is_some() {
                return Ok(Outcome::Duplicate);
            }
            (call_id, id)
        }
        None => {
            // The first request of this CallSid: its event's id becomes the call id, so
            // new calls sort by arrival and their rows land at the end of each B-tree.
            let id: i64 = conn
                .prepare_cached("SELECT coalesce(max(id), 0) + 1 FROM events")?
                .query_row([], |r| r.get(0))?;
            insert_event(conn, ev, Some(id), id, None)?;
            conn.prepare_cached("INSERT INTO sids (call_sid, call_id) VALUES (?1, ?2)")?
                .execute(params![sid, id])?;
            (id, id)
        }
    };
    if ev.facts.is_child_leg() && !ev.kind.is_step() {
        return Ok(Outcome::ChildLeg);
    }
    // A CallSid seen for the first time has no row yet: no need to look.
    let row: Option<(Call, Option<String>)> = if known.is_none() {
        None
    } else {
        conn.prepare_cached(&format!(
            "SELECT {CALL_COLUMNS}, state FROM calls WHERE id = ?1"
        ))?
        .query_row([call_id], |r| {
            Ok((call_from_row(r)?, r.get(CALL_COLUMN_COUNT)?))
        })
        .optional()?
    };
    let kept = row
        .as_ref()
        .and_then(|(_, state)| state.as_deref())
        .and_then(|json| serde_json::from_str::<Summary>(json).ok());
    // A new call starts empty; a row from before schema 3, or a CallSid whose earlier
    // requests were all dial legs, folds its stored events once. Folding is idempotent,
    // so the event just inserted may be folded twice.
    let mut summary = match kept {
        Some(s) => s,
        None if known.is_none() => Summary::default(),
        None => {
            let mut s = Summary::default();
            for e in load_events(conn, call_id)? {
                s.add(&e);
            }
            s
        }
    };
    summary.add(&calls::Event {
        id,
        received_at: ev.received_ms.div_euclid(1000),
        kind: ev.kind,
        answer: ev.answer,
        facts: ev.facts.clone(),
    });
    let old = row.map(|(c, _)| c);
    let decided = old.as_ref().map(|c| Decided {
        user: c.user.clone(),
        source: c.source.clone(),
        qualify: c.qualify,
        // Blocked by `requalify` stays blocked; otherwise what was answered decides.
        blocked: (c.outcome == Some(CallOutcome::Blocked)).then_some(true),
    });
    let Some(mut call) = summary.decide(rules, decided.as_ref()) else {
        return Ok(Outcome::ChildLeg);
    };
    let state = serde_json::to_string(&summary).map_err(|e| StorageError::Encode(e.to_string()))?;
    place_call(conn, rules, call_id, old.as_ref(), &mut call, &state)?;
    if !rules.notify.is_empty() {
        let now_ms = crate::notify::now_ms();
        let events = crate::notify::events_for(old.as_ref(), &call, now_ms.div_euclid(1000));
        if !events.is_empty() {
            super::outbox::enqueue(conn, rules, call_id, &call, &events, now_ms)?;
        }
    }
    Ok(Outcome::Stored {
        call: Box::new(call),
        new_call: old.is_none(),
    })
}

/// Writes a decided call: its first-time flag counted afresh when it took a new place
/// among its caller's calls (else kept), the row, then the calls after it decided again.
pub(crate) fn place_call(
    conn: &Connection,
    rules: &Rules,
    call_id: i64,
    old: Option<&Call>,
    call: &mut Call,
    state: &str,
) -> Result<(), StorageError> {
    let new_place = Place::of(call);
    let old_place = old.map(Place::of);
    let moved = old_place.as_ref() != Some(&new_place);
    // Its own count also depends on its lookback, fixed once it is answered or not.
    let recount = moved || old.is_some_and(|o| o.lookback_days(rules) != call.lookback_days(rules));
    let (priors, later) = match old {
        Some(o) if !recount => (o.prior_calls, true),
        Some(_) => (count_priors(conn, call, rules, View::Stored)?, true),
        None => new_call_place(conn, call, rules)?,
    };
    call.set_priors(priors);
    write_call(
        conn,
        call_id,
        call,
        state,
        old.map_or(Stored::Nothing, Stored::Row),
        rules.timezone,
    )?;
    if moved && later {
        refresh_later(
            conn,
            rules,
            call_id,
            &call.call_sid,
            old_place.as_ref(),
            &new_place,
        )?;
    }
    Ok(())
}

/// Inserts the event row; `id` None lets SQLite choose it. Returns the id.
fn insert_event(
    conn: &Connection,
    ev: &NewEvent,
    id: Option<i64>,
    call_id: i64,
    duplicate_of: Option<i64>,
) -> Result<i64, StorageError> {
    let f = &ev.facts;
    conn.prepare_cached(
        "INSERT INTO events (id, call_id, received_at, call_sid, kind, answer, duplicate_of,
            content_sha256, idempotency_token, method, path, content_type, body, direction,
            from_number, to_number, call_status, sequence_number, timestamp, call_duration,
            dial_call_status, dial_call_duration, caller_name, from_city, from_state, to_city,
            to_state, received_unix, dial_bridged, answered_by, digits, recording_url,
            recording_duration, start_time)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
            ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31, ?32, ?33, ?34)",
    )?
    .execute(params![
        id,
        call_id,
        rfc3339_ms(ev.received_ms),
        f.call_sid,
        ev.kind.as_str(),
        ev.answer.as_str(),
        duplicate_of,
        &ev.content_sha256[..],
        ev.idempotency_token,
        ev.method,
        ev.path,
        ev.content_type,
        ev.body,
        f.direction,
        f.from,
        f.to,
        f.call_status,
        f.sequence_number,
        f.timestamp,
        f.call_duration,
        f.dial_call_status,
        f.dial_call_duration,
        f.caller_name,
        f.from_city,
        f.from_state,
        f.to_city,
        f.to_state,
        ev.received_ms.div_euclid(1000),
        f.dial_bridged,
        f.answered_by,
        f.digits,
        f.recording_url,
        f.recording_duration,
        f.start_time,
    ])?;
    Ok(conn.last_insert_rowid())
}

#[cfg(test)]
thread_local! {
    /// How many times a call's events were read back on this thread (tests check that
    /// storing a request does not, so its cost cannot grow with them).
    pub(crate) static EVENT_LOADS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The distinct events of one call, in no particular order (the fold needs none).
pub(crate) fn load_events(
    conn: &Connection,
    call_id: i64,
) -> Result<Vec<calls::Event>, StorageError> {
    #[cfg(test)]
    EVENT_LOADS.with(|n| n.set(n.get() + 1));
    let mut stmt = conn.prepare_cached(
        "SELECT id, received_unix, kind, answer, direction, from_number, to_number, call_status,
                sequence_number, timestamp, call_duration, dial_call_status, dial_call_duration,
                caller_name, from_city, from_state, to_city, to_state, call_sid, dial_bridged,
                answered_by, digits, recording_url, recording_duration, start_time
         FROM events WHERE call_id = ?1 AND duplicate_of IS NULL",
    )?;
    let rows = stmt.query_map([call_id], |r| {
        let event = calls::Event {
            id: r.get(0)?,
            received_at: r.get(1)?,
            kind: Kind::from_name(&r.get::<_, String>(2)?),
            answer: Answer::from_name(&r.get::<_, String>(3)?),
            facts: Facts {
                call_sid: r.get(18)?,
                direction: r.get(4)?,
                from: r.get(5)?,
                to: r.get(6)?,
                call_status: r.get(7)?,
                sequence_number: r.get(8)?,
                timestamp: r.get(9)?,
                call_duration: r.get(10)?,
                dial_call_status: r.get(11)?,
                dial_call_duration: r.get(12)?,
                caller_name: r.get(13)?,
                from_city: r.get(14)?,
                from_state: r.get(15)?,
                to_city: r.get(16)?,
                to_state: r.get(17)?,
                dial_bridged: r.get(19)?,
                answered_by: r.get(20)?,
                digits: r.get(21)?,
                recording_url: r.get(22)?,
                recording_duration: r.get(23)?,
                start_time: r.get(24)?,
            },
        };
        Ok(event)
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
