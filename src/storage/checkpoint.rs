//! The checkpoint thread, and keeping the write-ahead log small.

use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

use super::StorageError;
use super::schema::{BUSY_TIMEOUT, connect};

/// How often, at most, the checkpoint thread copies the WAL into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(20);
/// WAL pages at which the writer checkpoints itself, inside a commit: the backstop that
/// bounds the WAL (32 MiB) when the checkpoint thread cannot finish under steady writes.
pub(crate) const WAL_BACKSTOP_PAGES: i64 = 8000;

/// The WAL's size once it is reset after a complete checkpoint (`journal_size_limit`):
/// above what the writer's backstop lets it reach under steady load, so busy periods
/// reuse the file instead of cutting and regrowing it (a growing file makes every fsync
/// dearer). Only an outside reader can push it beyond.
pub(crate) const WAL_LIMIT_BYTES: u64 = 48 * 1024 * 1024;
/// A WAL bigger than this, with no write for [`WAL_SHRINK_EVERY`], is truncated.
const WAL_KEEP_BYTES: u64 = 8 * 1024 * 1024;
/// A WAL this big for [`WAL_WARN_AFTER`] means something holds checkpoints back.
const WAL_WARN_BYTES: u64 = 64 * 1024 * 1024;
const WAL_WARN_AFTER: Duration = Duration::from_secs(60);
/// At most one warning about a big WAL per this long.
const WAL_WARN_EVERY: Duration = Duration::from_secs(600);
/// While the WAL is bigger than [`WAL_KEEP_BYTES`], how often the checkpoint thread
/// tries to shrink it even when no commit pokes it.
const WAL_SHRINK_EVERY: Duration = Duration::from_secs(1);

/// Copies committed pages from the WAL into the database on its own connection, with
/// `PRAGMA wal_checkpoint(PASSIVE)`, which never blocks the writer. SQLite would
/// otherwise do it inside the commit that fills the WAL to 1000 pages, so every request
/// of that batch waited for a few hundred random writes and two fsyncs. Runs after
/// commits (the writer pokes it), at most every [`CHECKPOINT_EVERY`]; stops when the
/// writer does.
///
/// It also keeps the WAL small. calltrackd's own readers hold no snapshot for long
/// (exports read page by page), but a reader outside calltrackd (an `sqlite3` shell left
/// in a transaction) keeps any checkpoint from finishing, and the WAL grows meanwhile.
/// Once that reader is gone, the next write resets the WAL and `journal_size_limit`
/// cuts it back to [`WAL_LIMIT_BYTES`]; after a second without writes, this thread
/// truncates it to nothing (`wal_checkpoint(TRUNCATE)`, only when that cannot wait on
/// anyone). While it stays far above normal, a warning says why.
pub(crate) fn checkpoint_loop(path: &Path, pokes: Receiver<()>) {
    use std::sync::mpsc::RecvTimeoutError;
    let mut conn: Option<Connection> = None;
    let mut last_error = String::new();
    let mut big_since: Option<Instant> = None;
    let mut warned: Option<Instant> = None;
    loop {
        // Idle: no commit for a while. Only then may the WAL be cut to nothing.
        let idle = if wal_size(path) > WAL_KEEP_BYTES {
            match pokes.recv_timeout(WAL_SHRINK_EVERY) {
                Ok(()) => false,
                Err(RecvTimeoutError::Timeout) => true,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        } else if pokes.recv().is_err() {
            return;
        } else {
            false
        };
        let result = match conn.as_ref() {
            Some(c) => Ok(c),
            None => connect(
                path,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .and_then(|c| {
                // The database file must be synced before the WAL counts as copied,
                // since the writer then starts overwriting it.
                c.execute_batch("PRAGMA synchronous = FULL")?;
                Ok(&*conn.insert(c))
            }),
        }
        .and_then(|c| {
            let (busy, log, copied): (i64, i64, i64) = c
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .map_err(StorageError::from)?;
            if idle && busy == 0 && log == copied && wal_size(path) > WAL_KEEP_BYTES {
                // Idle, everything is copied and the WAL is oversized: cut it to zero,
                // but never wait for a lock to do so.
                c.busy_timeout(Duration::ZERO)?;
                let _ = c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                    r.get::<_, i64>(0)
                });
                c.busy_timeout(BUSY_TIMEOUT)?;
            }
            Ok(())
        });
        match result {
            Ok(()) => last_error.clear(),
            Err(e) => {
                // The writer reports what matters (its commits fail); say it once here.
                let text = e.to_string();
                if text != last_error {
                    log::warn!(
                        "database {}: background checkpoint failed: {e}",
                        path.display()
                    );
                    last_error = text;
                }
                conn = None;
            }
        }
        let wal = wal_size(path);
        if wal > WAL_WARN_BYTES {
            let since = *big_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= WAL_WARN_AFTER
                && warned.is_none_or(|t| t.elapsed() >= WAL_WARN_EVERY)
            {
                warned = Some(Instant::now());
                log::warn!(
                    "database {}: the write-ahead log has been {} MiB for over {} s; something outside calltrackd (an sqlite3 shell, a backup or sync tool) is probably holding a read transaction open, which keeps SQLite from reusing the log. End it, keep such transactions short, or copy the database with `calltrackd backup`",
                    path.display(),
                    wal / (1024 * 1024),
                    since.elapsed().as_secs()
                );
            }
        } else {
            big_since = None;
        }
        std::thread::sleep(CHECKPOINT_EVERY);
    }
}

/// The path of the database's write-ahead log.
fn wal_path(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push("-wal");
    PathBuf::from(p)
}

/// The size of the database's write-ahead log in bytes (0 when there is none).
pub fn wal_size(db: &Path) -> u64 {
    std::fs::metadata(wal_path(db)).map_or(0, |m| m.len())
}
