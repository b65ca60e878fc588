//! What can go wrong with storage. Each variant keeps its cause (SQLite's error with its
//! code, an I/O error) and reads as one sentence for the log; the request gets `503`.

use std::path::PathBuf;
use std::sync::Arc;

/// A storage failure. Cheap to clone: one failed batch answers all of its requests.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    /// A database call failed.
    #[error("{0}")]
    Sqlite(#[from] Arc<rusqlite::Error>),
    /// The database file cannot be opened or created.
    #[error("cannot open database {}: {source}", path.display())]
    Open {
        /// The database file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Arc<rusqlite::Error>,
    },
    /// The database file cannot be created.
    #[error("cannot open database {}: {source}", path.display())]
    Create {
        /// The database file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The database will not use a write-ahead log.
    #[error("database {} stays in journal mode {mode}; WAL is required (is the file on a network filesystem?)", path.display())]
    NotWal {
        /// The database file.
        path: PathBuf,
        /// The journal mode it kept.
        mode: String,
    },
    /// A newer calltrackd wrote the database.
    #[error("database {} has schema version {version}, newer than this calltrackd understands ({}); run the newer calltrackd or restore a backup", path.display(), super::SCHEMA_VERSION)]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// Its schema version.
        version: i64,
    },
    /// An older calltrackd wrote the database and it was not upgraded yet.
    #[error("database {} has schema version {version}, older than this calltrackd reads ({}); start `calltrackd serve` (or run `calltrackd requalify`) once to upgrade it", path.display(), super::SCHEMA_VERSION)]
    TooOld {
        /// The database file.
        path: PathBuf,
        /// Its schema version.
        version: i64,
    },
    /// A migration step failed (and was rolled back).
    #[error("cannot migrate database {} from schema {from} to {}: {why}", path.display(), from + 1)]
    Migrate {
        /// The database file.
        path: PathBuf,
        /// The version it stays at.
        from: i64,
        /// What failed.
        why: String,
    },
    /// SQLite opened the file read-only.
    #[error("the database is read-only")]
    ReadOnly,
    /// After a failed write, the log could not be emptied to prove writes work again.
    #[error("the last write failed and the write-ahead log cannot be checkpointed yet")]
    WalBusy,
    /// The file at the database's path is not the one the writer has open.
    #[error("database file {} was {what} while calltrackd had it open; nothing more is stored until calltrackd restarts and opens the file that is there now (restore the file or restart calltrackd)", path.display())]
    Lost {
        /// The database file.
        path: PathBuf,
        /// `deleted` or `replaced`.
        what: &'static str,
    },
    /// The writer thread is gone.
    #[error("the writer thread has stopped")]
    WriterStopped,
    /// The writer thread did not answer in time.
    #[error("the writer thread did not answer within {0} s")]
    WriterStuck(u64),
    /// A thread could not be started.
    #[error("cannot start the {what} thread: {source}")]
    Thread {
        /// Which thread.
        what: &'static str,
        /// Why.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// A file operation around a backup or export failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, naming the file.
        what: String,
        /// Why.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// `VACUUM INTO` failed.
    #[error("cannot copy {} to {}: {source}", from.display(), to.display())]
    Copy {
        /// The database.
        from: PathBuf,
        /// The copy.
        to: PathBuf,
        /// Why.
        #[source]
        source: Arc<rusqlite::Error>,
    },
    /// A backup copy failed its check, or its path cannot be used.
    #[error("{0}")]
    Backup(String),
    /// The call summary could not be encoded.
    #[error("cannot encode the call summary: {0}")]
    Encode(String),
}

impl From<rusqlite::Error> for StorageError {
    fn from(e: rusqlite::Error) -> Self {
        StorageError::Sqlite(Arc::new(e))
    }
}

/// Why storage refuses writes, from SQLite's error code (never from message text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trouble {
    /// The file or its folder is read-only.
    ReadOnly,
    /// The disk (or a quota) is full.
    Full,
    /// Another process holds a lock past the busy timeout.
    Locked,
}

impl StorageError {
    /// The cause, when it is one of the conditions calltrackd recovers from by itself.
    pub fn trouble(&self) -> Option<Trouble> {
        let sqlite = match self {
            StorageError::ReadOnly => return Some(Trouble::ReadOnly),
            StorageError::Sqlite(e) | StorageError::Open { source: e, .. } => e,
            _ => return None,
        };
        match sqlite.sqlite_error_code()? {
            rusqlite::ErrorCode::ReadOnly => Some(Trouble::ReadOnly),
            rusqlite::ErrorCode::DiskFull => Some(Trouble::Full),
            rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked => {
                Some(Trouble::Locked)
            }
            _ => None,
        }
    }
}
