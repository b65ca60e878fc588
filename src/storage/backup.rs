//! `calltrackd backup`: a consistent, verified copy of the database.

use std::path::Path;
use std::sync::Arc;

use rusqlite::{Connection, OpenFlags};

use super::StorageError;
use super::schema::open_reader;

/// Copies the database consistently into `dest` (`VACUUM INTO`: one read snapshot, so
/// it is safe while the daemon writes), then checks the copy with `PRAGMA
/// integrity_check` and syncs it to disk. Returns the number of calls in the copy.
pub fn backup_into(db: &Path, dest: &Path) -> Result<i64, StorageError> {
    let conn = open_reader(db)?;
    let dest_str = dest
        .to_str()
        .ok_or_else(|| StorageError::Backup(format!("{} is not a UTF-8 path", dest.display())))?;
    conn.execute("VACUUM INTO ?1", [dest_str])
        .map_err(|e| StorageError::Copy {
            from: db.to_path_buf(),
            to: dest.to_path_buf(),
            source: Arc::new(e),
        })?;
    drop(conn);
    let copy = Connection::open_with_flags(dest, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let check: String = copy.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    if check != "ok" {
        return Err(StorageError::Backup(format!(
            "the copy {} fails its integrity check: {check}",
            dest.display()
        )));
    }
    let calls: i64 = copy.query_row("SELECT count(*) FROM calls", [], |r| r.get(0))?;
    drop(copy);
    std::fs::File::open(dest)
        .and_then(|f| f.sync_all())
        .map_err(|e| StorageError::Io {
            what: format!("cannot sync {}", dest.display()),
            source: Arc::new(e),
        })?;
    Ok(calls)
}
