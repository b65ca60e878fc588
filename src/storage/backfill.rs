//! What backfill asks of the database: whether a CallSid is known and has its final
//! status, and storing a Calls API resource as one event (through [`apply_one`], the
//! same path a webhook takes).

use rusqlite::{Connection, OptionalExtension};

use super::rows::apply_one;
use super::{NewEvent, Outcome, StorageError};
use crate::twilio::is_final_status;

/// What calltrackd already has of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Known {
    /// Nothing: no event of this CallSid.
    New,
    /// Its row, without a final status; `answered` as stored.
    Open {
        /// Whether it was answered, when known.
        answered: Option<bool>,
    },
    /// Its final status (or no row of its own: a `<Dial>` leg, kept as an event).
    Final,
}

/// What calltrackd has of `call_sid`.
pub fn known(conn: &Connection, call_sid: &str) -> Result<Known, StorageError> {
    let id: Option<i64> = conn
        .prepare_cached("SELECT call_id FROM sids WHERE call_sid = ?1")?
        .query_row([call_sid], |r| r.get(0))
        .optional()?;
    let Some(id) = id else {
        return Ok(Known::New);
    };
    let row: Option<(String, Option<bool>)> = conn
        .prepare_cached("SELECT status, answered FROM calls WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(match row {
        Some((status, answered)) if !is_final_status(&status) => Known::Open { answered },
        _ => Known::Final,
    })
}

/// Stores one event in its own transaction (`backfill` run from the command line,
/// next to a running daemon: each write holds the lock for about a millisecond).
pub fn record(conn: &mut Connection, ev: &NewEvent) -> Result<Outcome, StorageError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let out = apply_one(&tx, &ev.rules, ev)?;
    tx.commit()?;
    Ok(out)
}
