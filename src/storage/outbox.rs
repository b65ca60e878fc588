//! The notification outbox: rows written with the call (in the writer's transaction),
//! read and updated by the delivery thread and `calltrackd notify`.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

use super::StorageError;
use super::schema::open_reader_since;
use crate::calls::Call;
use crate::config::{NotifyEvent, Rules};

/// How long a notification is retried before it is marked failed.
pub const GIVE_UP_SECONDS: i64 = 24 * 3600;

/// One outbox row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// Row id (what `notify retry` takes).
    pub id: i64,
    /// The call.
    pub call_sid: String,
    /// `call.completed`...
    pub event: String,
    /// The target's key.
    pub target: String,
    /// `msg_...`: the same on every attempt.
    pub webhook_id: String,
    /// The JSON body.
    pub payload: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub give_up_at: i64,
    /// `pending`, `sent`, `failed`.
    pub state: String,
    /// Attempts made.
    pub attempts: i64,
    /// Unix milliseconds.
    pub next_at_ms: i64,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

const COLUMNS: &str = "id, call_sid, event, target, webhook_id, payload, created_at, give_up_at,
    state, attempts, next_at_ms, last_error";

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Notification> {
    Ok(Notification {
        id: r.get(0)?,
        call_sid: r.get(1)?,
        event: r.get(2)?,
        target: r.get(3)?,
        webhook_id: r.get(4)?,
        payload: r.get(5)?,
        created_at: r.get(6)?,
        give_up_at: r.get(7)?,
        state: r.get(8)?,
        attempts: r.get(9)?,
        next_at_ms: r.get(10)?,
        last_error: r.get(11)?,
    })
}

/// The `webhook-id` of (call, event, target): stable, unique, no secret in it.
pub fn webhook_id(call_sid: &str, event: &str, target: &str) -> String {
    let mut h = Sha256::new();
    for part in [call_sid, event, target] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let d = h.finalize();
    let hex: String = d[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("msg_{hex}")
}

/// The JSON body of a notification: `{"type", "timestamp", "data"}`.
pub fn payload(event: &str, call: &Call, tz: chrono_tz::Tz, now: i64) -> String {
    let when = chrono::DateTime::from_timestamp(now, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    serde_json::json!({
        "type": event,
        "timestamp": when,
        "data": crate::export::call_object(call, tz),
    })
    .to_string()
}

/// Writes the notifications `events` of `call` owes to the targets that want them
/// (inside the caller's transaction); an existing (call, event, target) is left as is.
pub(crate) fn enqueue(
    conn: &Connection,
    rules: &Rules,
    call_id: i64,
    call: &Call,
    events: &[NotifyEvent],
    now_ms: i64,
) -> Result<(), StorageError> {
    let now = now_ms.div_euclid(1000);
    for &event in events {
        let mut body = None;
        for t in rules.notify.iter().filter(|t| t.wants(event, &call.user)) {
            let body: &str =
                body.get_or_insert_with(|| payload(event.as_str(), call, rules.timezone, now));
            conn.prepare_cached(
                "INSERT OR IGNORE INTO notifications (call_id, call_sid, event, target, webhook_id,
                    payload, created_at, give_up_at, state, next_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'pending', ?9)",
            )?
            .execute(params![
                call_id,
                call.call_sid,
                event.as_str(),
                t.key,
                webhook_id(&call.call_sid, event.as_str(), &t.key),
                body,
                now,
                now + GIVE_UP_SECONDS,
                now_ms,
            ])?;
        }
    }
    Ok(())
}

/// Pending notifications due by `now_ms`, oldest first.
pub fn due(
    conn: &Connection,
    now_ms: i64,
    limit: usize,
) -> Result<Vec<Notification>, StorageError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM notifications WHERE state = 'pending' AND next_at_ms <= ?1
         ORDER BY next_at_ms, id LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![now_ms, limit as i64], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// When the next pending notification is due (Unix ms), if any.
pub fn next_due(conn: &Connection) -> Result<Option<i64>, StorageError> {
    Ok(conn
        .prepare_cached("SELECT min(next_at_ms) FROM notifications WHERE state = 'pending'")?
        .query_row([], |r| r.get(0))?)
}

/// Records an attempt's result: sent; tried again at `retry_at_ms`; or failed for good.
pub fn record(conn: &Connection, id: i64, result: &Attempt, now: i64) -> Result<(), StorageError> {
    match result {
        Attempt::Sent => conn.execute(
            "UPDATE notifications SET state = 'sent', attempts = attempts + 1, sent_at = ?2,
                last_error = NULL WHERE id = ?1",
            params![id, now],
        )?,
        Attempt::Retry { error, at_ms } => conn.execute(
            "UPDATE notifications SET attempts = attempts + 1, last_error = ?2, next_at_ms = ?3
             WHERE id = ?1",
            params![id, error, at_ms],
        )?,
        Attempt::Failed { error } => conn.execute(
            "UPDATE notifications SET state = 'failed', attempts = attempts + 1, last_error = ?2
             WHERE id = ?1",
            params![id, error],
        )?,
    };
    Ok(())
}

/// What an attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// Delivered.
    Sent,
    /// Failed; try again then.
    Retry {
        /// Why it failed.
        error: String,
        /// Unix ms.
        at_ms: i64,
    },
    /// Failed for good (given up, or the target is gone).
    Failed {
        /// Why.
        error: String,
    },
}

/// The outbox (only failed ones with `failed_only`), newest first, at most `limit`.
pub fn list(db: &Path, failed_only: bool, limit: usize) -> Result<Vec<Notification>, StorageError> {
    let conn = open_reader_since(db, 8)?;
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM notifications {} ORDER BY id DESC LIMIT ?1",
        if failed_only {
            "WHERE state = 'failed'"
        } else {
            ""
        }
    ))?;
    let rows = stmt.query_map([limit as i64], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// One notification by id.
pub fn get(conn: &Connection, id: i64) -> Result<Option<Notification>, StorageError> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM notifications WHERE id = ?1"),
            [id],
            from_row,
        )
        .optional()?)
}
