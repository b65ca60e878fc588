//! The latest requests refused for a bad signature: when, and which URL the signature
//! was checked against (never a body or a signature), for `twilio doctor`.

use std::path::Path;

use rusqlite::{Connection, params};

use super::StorageError;
use super::schema::open_reader_since;

/// How many the database keeps.
const KEEP: i64 = 50;

/// One refused request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// When, Unix seconds.
    pub at_unix: i64,
    /// The URL the signature was checked against.
    pub url: String,
    /// Why (missing header, mismatch...).
    pub reason: String,
}

/// Stores refused requests, keeping the latest [`KEEP`].
pub(crate) fn store(conn: &mut Connection, list: &[Rejection]) -> Result<(), StorageError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    for r in list {
        tx.prepare_cached(
            "INSERT INTO rejected_requests (at_unix, url, reason) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![r.at_unix, r.url, r.reason])?;
    }
    tx.execute(
        "DELETE FROM rejected_requests WHERE id <= (SELECT max(id) FROM rejected_requests) - ?1",
        [KEEP],
    )?;
    tx.commit()?;
    Ok(())
}

/// The refused requests since `since` (Unix seconds), newest first.
pub fn recent(db: &Path, since: i64) -> Result<Vec<Rejection>, StorageError> {
    let conn = open_reader_since(db, 7)?;
    let mut stmt = conn.prepare(
        "SELECT at_unix, url, reason FROM rejected_requests WHERE at_unix >= ?1 ORDER BY id DESC",
    )?;
    let rows = stmt.query_map([since], |r| {
        Ok(Rejection {
            at_unix: r.get(0)?,
            url: r.get(1)?,
            reason: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
