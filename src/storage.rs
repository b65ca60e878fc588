/*!
Storage: the SQLite file, its schema, and the one writer thread. This is where a row is
written.

Connection threads verify and parse requests in parallel, then hand each one (with a
callback that passes its result back) to the writer thread through a channel, and wait.
The writer takes whatever has queued up, applies it inside one `BEGIN IMMEDIATE`
transaction, commits once (one fsync per batch with `synchronous=FULL`), and only then
hands each result back; the connection's thread writes the answer. A request is never
acknowledged before its batch is durable; a failed commit answers every request in it
with an error and stores none of it (a request that fails alone is retried in its own
savepoint so that its batch-mates still commit). After any failure the
writer reopens its connection, so a database made writable again (space freed,
permissions fixed) recovers by itself. A checkpoint thread copies the WAL back into the
database file on its own connection, so no commit waits for that.

Each request is stored verbatim in `events`; the `calls` row of its `CallSid` keeps the
call's distinct events folded into a [`crate::calls::Summary`], into which each new
request is folded before the rules decide the row again. Duplicates (same path, query
and set of parameters, found through an index by content hash) are stored as events
marked `duplicate_of` and change nothing else.

Rows are keyed by a call id, the id of the first event of the `CallSid` (table `sids`
maps one to the other), not by the random `CallSid` itself: new events, calls and index
entries land at the end of their B-trees, so a commit writes few pages, and only a
call's first request touches a random place (its `sids` entry).
*/

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use sha2::{Digest, Sha256};

use crate::calls::{self, Call, Decided, Summary};
use crate::config::Rules;
use crate::twilio::{Answer, Facts, Kind, Params};

/// The schema version this binary writes. Bump it with a new entry in `MIGRATIONS`.
pub const SCHEMA_VERSION: i64 = 3;

/// Ordered migrations; entry `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 0 -> 1: events (every verified request, verbatim) and calls (derived rows).
    "CREATE TABLE events (
        id                 INTEGER PRIMARY KEY,
        received_at        TEXT    NOT NULL,  -- RFC 3339 UTC, milliseconds
        call_sid           TEXT    NOT NULL,
        kind               TEXT    NOT NULL,  -- incoming | status | dial_action
        answer             TEXT    NOT NULL,  -- dial | hangup | ack
        duplicate_of       INTEGER REFERENCES events(id),
        content_sha256     BLOB    NOT NULL,
        idempotency_token  TEXT,
        method             TEXT    NOT NULL,
        path               TEXT    NOT NULL,  -- path and query exactly as received
        content_type       TEXT    NOT NULL,
        body               BLOB    NOT NULL,  -- the raw body, verbatim (all parameters)
        direction          TEXT    NOT NULL,
        from_number        TEXT    NOT NULL,
        to_number          TEXT    NOT NULL,
        call_status        TEXT,
        sequence_number    INTEGER,
        timestamp          INTEGER,           -- Twilio's Timestamp, Unix seconds
        call_duration      INTEGER,
        dial_call_status   TEXT,
        dial_call_duration INTEGER,
        caller_name        TEXT    NOT NULL,
        from_city          TEXT    NOT NULL,
        from_state         TEXT    NOT NULL,
        to_city            TEXT    NOT NULL,
        to_state           TEXT    NOT NULL,
        received_unix      INTEGER NOT NULL
    );
    CREATE INDEX events_by_call ON events(call_sid, id);
    CREATE TABLE calls (
        call_sid             TEXT PRIMARY KEY,
        user                 TEXT    NOT NULL,
        tracking_number      TEXT    NOT NULL,
        source               TEXT    NOT NULL,
        caller               TEXT    NOT NULL,
        caller_name          TEXT    NOT NULL,
        caller_city          TEXT    NOT NULL,
        caller_state         TEXT    NOT NULL,
        direction            TEXT    NOT NULL,
        status               TEXT    NOT NULL,
        answered             INTEGER,         -- NULL until known
        qualified            INTEGER,         -- NULL until known
        duration_seconds     INTEGER,
        talk_seconds         INTEGER,
        started_at           INTEGER NOT NULL, -- Unix seconds
        ended_at             INTEGER,
        forwarded            INTEGER NOT NULL,
        min_duration_seconds INTEGER,          -- threshold qualified was decided with
        updated_at           TEXT    NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX calls_by_start ON calls(started_at, call_sid);
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;",
    // 1 -> 2: calls and events keyed by a time-ordered call id (the id of the call's
    // first event) instead of the random CallSid. A CallSid is looked up once per
    // request in `sids`, the only randomly ordered index left; new rows of `calls`,
    // `events` and their indexes land at the end of their B-trees, so a commit writes
    // far fewer pages. Tables are rebuilt (SQLite cannot add a NOT NULL column).
    "CREATE TABLE sids (
        call_sid TEXT PRIMARY KEY,
        call_id  INTEGER NOT NULL  -- id of the first event with this CallSid
    ) WITHOUT ROWID;
    INSERT INTO sids (call_sid, call_id) SELECT call_sid, min(id) FROM events GROUP BY call_sid;
    CREATE TABLE events_v2 (
        id                 INTEGER PRIMARY KEY,
        call_id            INTEGER NOT NULL,  -- sids.call_id of call_sid
        received_at        TEXT    NOT NULL,  -- RFC 3339 UTC, milliseconds
        call_sid           TEXT    NOT NULL,
        kind               TEXT    NOT NULL,  -- incoming | status | dial_action
        answer             TEXT    NOT NULL,  -- dial | hangup | ack
        duplicate_of       INTEGER REFERENCES events(id),
        content_sha256     BLOB    NOT NULL,
        idempotency_token  TEXT,
        method             TEXT    NOT NULL,
        path               TEXT    NOT NULL,  -- path and query exactly as received
        content_type       TEXT    NOT NULL,
        body               BLOB    NOT NULL,  -- the raw body, verbatim (all parameters)
        direction          TEXT    NOT NULL,
        from_number        TEXT    NOT NULL,
        to_number          TEXT    NOT NULL,
        call_status        TEXT,
        sequence_number    INTEGER,
        timestamp          INTEGER,           -- Twilio's Timestamp, Unix seconds
        call_duration      INTEGER,
        dial_call_status   TEXT,
        dial_call_duration INTEGER,
        caller_name        TEXT    NOT NULL,
        from_city          TEXT    NOT NULL,
        from_state         TEXT    NOT NULL,
        to_city            TEXT    NOT NULL,
        to_state           TEXT    NOT NULL,
        received_unix      INTEGER NOT NULL
    );
    INSERT INTO events_v2 (id, call_id, received_at, call_sid, kind, answer, duplicate_of,
        content_sha256, idempotency_token, method, path, content_type, body, direction,
        from_number, to_number, call_status, sequence_number, timestamp, call_duration,
        dial_call_status, dial_call_duration, caller_name, from_city, from_state, to_city,
        to_state, received_unix)
    SELECT e.id, s.call_id, e.received_at, e.call_sid, e.kind, e.answer, e.duplicate_of,
        e.content_sha256, e.idempotency_token, e.method, e.path, e.content_type, e.body,
        e.direction, e.from_number, e.to_number, e.call_status, e.sequence_number, e.timestamp,
        e.call_duration, e.dial_call_status, e.dial_call_duration, e.caller_name, e.from_city,
        e.from_state, e.to_city, e.to_state, e.received_unix
    FROM events e JOIN sids s ON s.call_sid = e.call_sid ORDER BY e.id;
    CREATE TABLE calls_v2 (
        id                   INTEGER PRIMARY KEY,  -- sids.call_id of call_sid
        call_sid             TEXT    NOT NULL,
        user                 TEXT    NOT NULL,
        tracking_number      TEXT    NOT NULL,
        source               TEXT    NOT NULL,
        caller               TEXT    NOT NULL,
        caller_name          TEXT    NOT NULL,
        caller_city          TEXT    NOT NULL,
        caller_state         TEXT    NOT NULL,
        direction            TEXT    NOT NULL,
        status               TEXT    NOT NULL,
        answered             INTEGER,         -- NULL until known
        qualified            INTEGER,         -- NULL until known
        duration_seconds     INTEGER,
        talk_seconds         INTEGER,
        started_at           INTEGER NOT NULL, -- Unix seconds
        ended_at             INTEGER,
        forwarded            INTEGER NOT NULL,
        min_duration_seconds INTEGER,          -- threshold qualified was decided with
        updated_at           TEXT    NOT NULL
    );
    INSERT INTO calls_v2 SELECT s.call_id, c.* FROM calls c JOIN sids s ON s.call_sid = c.call_sid
        ORDER BY s.call_id;
    DROP TABLE calls;
    ALTER TABLE calls_v2 RENAME TO calls;
    CREATE INDEX calls_by_start ON calls(started_at, call_sid);
    DROP TABLE events;
    ALTER TABLE events_v2 RENAME TO events;
    CREATE INDEX events_by_call ON events(call_id, id);",
    // 2 -> 3: the call row keeps its events folded (`state`, a calls::Summary as JSON;
    // NULL until the call's next request rebuilds it from its events), so a request
    // is stored without re-reading its call's earlier events; a repeat is found through
    // the index by its content hash rather than by reading them.
    "ALTER TABLE calls ADD COLUMN state TEXT;
    DROP INDEX events_by_call;
    CREATE INDEX events_by_call ON events(call_id, content_sha256);",
];

/// How many queued requests one transaction takes at most.
const MAX_BATCH: usize = 512;
/// How long a health check waits for the writer to answer.
const HEALTH_WAIT: Duration = Duration::from_secs(5);
/// How long a write waits for another process's lock before giving up (then 503).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A storage failure, as a sentence for the log. The request gets 503.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageError(pub String);

impl std::fmt::Display for StorageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StorageError {}

impl From<rusqlite::Error> for StorageError {
    fn from(e: rusqlite::Error) -> Self {
        StorageError(e.to_string())
    }
}

/// A verified request, ready to store.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// Receipt time, Unix milliseconds.
    pub received_ms: i64,
    /// Which request it is.
    pub kind: Kind,
    /// What we answer it with.
    pub answer: Answer,
    /// The facts the call rules use.
    pub facts: Facts,
    /// The numbers and qualification rules this request was answered with: its call row
    /// is decided with the same ones, even when a reload lands in between.
    pub rules: Arc<Rules>,
    /// What makes two requests the same request ([`content_hash`]), computed by the
    /// worker so the single writer does not have to.
    pub content_sha256: [u8; 32],
    /// HTTP method.
    pub method: String,
    /// Path and query as received.
    pub path: String,
    /// `Content-Type` as received.
    pub content_type: String,
    /// The raw body.
    pub body: Vec<u8>,
    /// `I-Twilio-Idempotency-Token`, when present.
    pub idempotency_token: Option<String>,
}

/// What makes two requests the same request: path, query and the set of distinct
/// name/value pairs, in any order, as the signature sees them (it ignores a repeated
/// pair too), so repeating a pair cannot turn a replay into a new request.
pub fn content_hash(path: &str, params: &Params) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(path.as_bytes());
    h.update([0]);
    let mut pairs: Vec<&(String, String)> = params.0.iter().collect();
    pairs.sort();
    pairs.dedup();
    for (k, v) in pairs {
        h.update((k.len() as u64).to_le_bytes());
        h.update(k.as_bytes());
        h.update((v.len() as u64).to_le_bytes());
        h.update(v.as_bytes());
    }
    h.finalize().into()
}

/// What storing a request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Stored; the call row was created or updated.
    Stored {
        /// The derived call, as now stored.
        call: Box<Call>,
        /// Whether this request created the call row.
        new_call: bool,
    },
    /// The same request was stored before: kept as a duplicate event, nothing changed.
    Duplicate,
    /// An `outbound-dial` leg: kept as an event, no call row touched.
    ChildLeg,
}

/// Called with a request's result once its batch is committed (or has failed), on the
/// writer thread: it must only hand the result on (the connection's thread answers).
pub type Done = Box<dyn FnOnce(Result<Outcome, StorageError>) + Send>;
/// A request waiting in a batch.
type Pending = (Box<NewEvent>, Done);

/// Hands a result to its request; a panic there costs that request only.
fn answer(done: Done, result: Result<Outcome, StorageError>) {
    let call = std::panic::AssertUnwindSafe(move || done(result));
    if std::panic::catch_unwind(call).is_err() {
        log::error!("internal error while answering a stored request");
    }
}

enum Msg {
    Write(Box<NewEvent>, Done),
    Health(SyncSender<Health>),
    /// Store what came before, then stop (even while other handles remain).
    Stop,
}

/// What a health check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// A webhook would be stored now.
    Ok,
    /// Storage refuses writes for now (disk full, read-only, locked); calltrackd recovers
    /// by itself once the cause is gone, and a restart would not help.
    Unavailable(StorageError),
    /// calltrackd cannot recover without a restart: the writer thread is stuck or gone,
    /// or the database file was deleted or replaced.
    Broken(StorageError),
}

/// Handle to the writer thread. Cheap to share; dropping the last one stops the writer
/// once it has finished what is queued.
pub struct Store {
    tx: Sender<Msg>,
}

/// Sizes of the batches committed, for metrics.
pub trait BatchObserver: Send + Sync {
    /// One commit of `size` requests that took `elapsed`; `ok` false when it failed.
    fn batch(&self, size: usize, elapsed: Duration, ok: bool);
}

/// Opens a connection with the pragmas every connection needs.
fn connect(path: &Path, flags: OpenFlags) -> Result<Connection, StorageError> {
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| StorageError(format!("cannot open database {}: {e}", path.display())))?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // 8 MiB of page cache (default 2 MiB): the indexes of a busy month stay in memory.
    conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA cache_size = -8192;")?;
    Ok(conn)
}

/// Opens the writer connection: WAL, `synchronous=FULL`, schema migrated.
pub fn open_writer(path: &Path) -> Result<Connection, StorageError> {
    create_private(path)?;
    writable_sidecars(path);
    let conn = connect(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // journal_mode returns a row and is refused inside a transaction: do it first.
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(|e| StorageError(format!("cannot switch {} to WAL: {e}", path.display())))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StorageError(format!(
            "database {} stays in journal mode {mode}; WAL is required (is the file on a network filesystem?)",
            path.display()
        )));
    }
    conn.execute_batch(&format!(
        "PRAGMA synchronous = FULL; PRAGMA wal_autocheckpoint = {WAL_BACKSTOP_PAGES};
         PRAGMA journal_size_limit = {WAL_LIMIT_BYTES};"
    ))?;
    migrate(&conn, path)?;
    Ok(conn)
}

/// Creates the database file, when there is none, with mode 0600 whatever the umask:
/// SQLite would create it 0644 less the umask, and gives `-wal` and `-shm` the mode of
/// the database file, so all three stay private to the daemon's user.
fn create_private(path: &Path) -> Result<(), StorageError> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StorageError(format!(
            "cannot open database {}: {e}",
            path.display()
        ))),
    }
}

/// SQLite creates `-wal` and `-shm` with the database file's mode. Those made while the
/// file was read-only stay read-only after it is made writable again, and a read-only
/// `-shm` keeps every later connection from writing. So when the file is writable and a
/// sidecar is not, give the sidecar the file's mode (it is ours: we created it), or say
/// what to do when that is not allowed.
fn writable_sidecars(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o200 == 0 {
        return;
    }
    for suffix in ["-wal", "-shm"] {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        let side = PathBuf::from(side);
        let Ok(m) = std::fs::metadata(&side) else {
            continue;
        };
        if m.permissions().mode() & 0o200 != 0 {
            continue;
        }
        match std::fs::set_permissions(&side, std::fs::Permissions::from_mode(mode)) {
            Ok(()) => log::info!(
                "{} was left read-only while the database was; made it mode {mode:o} like the database",
                side.display()
            ),
            Err(e) => log::error!(
                "{} is read-only and cannot be changed ({e}); give it the owner and mode of {} (or delete it while calltrackd is stopped)",
                side.display(),
                path.display()
            ),
        }
    }
}

/// Opens a read-only connection (export, backup checks). Never blocks the writer (WAL).
pub fn open_reader(path: &Path) -> Result<Connection, StorageError> {
    let conn = connect(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    check_version(version, path)?;
    Ok(conn)
}

fn check_version(version: i64, path: &Path) -> Result<(), StorageError> {
    if version > SCHEMA_VERSION {
        return Err(StorageError(format!(
            "database {} has schema version {version}, newer than this calltrackd understands ({SCHEMA_VERSION}); run the newer calltrackd or restore a backup",
            path.display()
        )));
    }
    Ok(())
}

/// Applies the missing migrations in order, each in its own IMMEDIATE transaction.
/// Rebuilding a table drops the table its foreign keys name for a moment, so, as SQLite
/// documents for table rebuilds, enforcement is off meanwhile (it cannot change inside a
/// transaction) and `foreign_key_check` must come back empty before each commit.
fn migrate(conn: &Connection, path: &Path) -> Result<(), StorageError> {
    conn.execute_batch("PRAGMA foreign_keys = OFF")?;
    let result = migrate_steps(conn, path);
    conn.execute_batch("PRAGMA foreign_keys = ON")?;
    result
}

fn migrate_steps(conn: &Connection, path: &Path) -> Result<(), StorageError> {
    let created: bool = conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? == 0;
    loop {
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        check_version(version, path)?;
        if version == SCHEMA_VERSION {
            return Ok(());
        }
        // Under systemd a long migration (a big database on an SD card) must not run
        // into the start timeout: systemd would kill it, the transaction would roll back,
        // and the restart would begin it again. Ask for an hour (systemd 236+). Creating
        // a new database is quick and needs no such notice.
        if !created {
            crate::systemd::notify(&format!(
                "EXTEND_TIMEOUT_USEC=3600000000\nSTATUS=migrating the database to schema {}",
                version + 1
            ));
        }
        let step = || -> Result<(), String> {
            conn.execute_batch("BEGIN IMMEDIATE")
                .map_err(|e| e.to_string())?;
            conn.execute_batch(MIGRATIONS[version as usize])
                .map_err(|e| e.to_string())?;
            let broken: i64 = conn
                .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
                    r.get(0)
                })
                .map_err(|e| e.to_string())?;
            if broken != 0 {
                return Err(format!("{broken} rows break a foreign key"));
            }
            conn.execute_batch(&format!("PRAGMA user_version = {}; COMMIT;", version + 1))
                .map_err(|e| e.to_string())
        };
        step().map_err(|e| {
            let _ = conn.execute_batch("ROLLBACK");
            StorageError(format!(
                "cannot migrate database {} from schema {version} to {}: {e}",
                path.display(),
                version + 1
            ))
        })?;
        log::info!(
            "database {} migrated to schema {}",
            path.display(),
            version + 1
        );
    }
}

impl Store {
    /// Opens (creating and migrating) the database and starts the writer thread.
    /// Fails when the database cannot be opened at all; a read-only database opens,
    /// and writes to it answer errors until it becomes writable.
    pub fn start(
        path: &Path,
        observer: Arc<dyn BatchObserver>,
    ) -> Result<(Store, JoinHandle<()>), StorageError> {
        let conn = open_writer(path)?;
        if conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(false) {
            log::error!(
                "database {} is read-only: webhooks will get 503 until calltrackd can write to it",
                path.display()
            );
        }
        let (tx, rx) = channel();
        let (poke, pokes) = sync_channel::<()>(1);
        let checkpoint_path = path.to_path_buf();
        let checkpointer = std::thread::Builder::new()
            .name("checkpointer".into())
            .spawn(move || checkpoint_loop(&checkpoint_path, pokes))
            .map_err(|e| StorageError(format!("cannot start the checkpoint thread: {e}")))?;
        let writer = Writer {
            path: path.to_path_buf(),
            conn: Some(conn),
            observer,
            failing: false,
            poke: Some(poke),
            checkpointer: Some(checkpointer),
            identity: file_identity(path),
            lost: None,
        };
        let handle = std::thread::Builder::new()
            .name("writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StorageError(format!("cannot start the writer thread: {e}")))?;
        Ok((Store { tx }, handle))
    }

    /// Queues a request; `done` gets its result once its batch is durably committed
    /// (or has failed). Never blocks on the disk.
    pub fn submit_async(&self, ev: NewEvent, done: Done) {
        if let Err(std::sync::mpsc::SendError(Msg::Write(_, done))) =
            self.tx.send(Msg::Write(Box::new(ev), done))
        {
            done(Err(StorageError("the writer thread has stopped".into())));
        }
    }

    /// Whether the database can take writes right now.
    /// Asks the writer to store what is queued before this call and stop, even while
    /// other handles (a connection thread still finishing) remain; what they submit
    /// afterwards is answered as a storage failure.
    pub fn shutdown(&self) {
        let _ = self.tx.send(Msg::Stop);
    }

    /// Whether a webhook would be stored right now: asked of the writer thread itself,
    /// through its queue, like a webhook.
    pub fn health(&self) -> Health {
        let (reply_tx, reply_rx) = sync_channel(1);
        if self.tx.send(Msg::Health(reply_tx)).is_err() {
            return Health::Broken(StorageError("the writer thread has stopped".into()));
        }
        reply_rx.recv_timeout(HEALTH_WAIT).unwrap_or_else(|_| {
            Health::Broken(StorageError(format!(
                "the writer thread did not answer within {} s",
                HEALTH_WAIT.as_secs()
            )))
        })
    }
}

struct Writer {
    path: PathBuf,
    conn: Option<Connection>,
    observer: Arc<dyn BatchObserver>,
    /// The last write failed: health checks must prove a write works again.
    failing: bool,
    /// Wakes the checkpoint thread after a commit ([`checkpoint_loop`]).
    poke: Option<SyncSender<()>>,
    /// Joined before the writer closes its connection, which must be the last.
    checkpointer: Option<JoinHandle<()>>,
    /// Device and inode of the database file the writer opened.
    identity: Option<(u64, u64)>,
    /// Set for good once the file on disk is no longer the one open: every write and
    /// health check fails with this until a restart opens the file that is there.
    lost: Option<StorageError>,
}

/// Device and inode of the file at `path`, if there is one.
fn file_identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// How often, at most, the checkpoint thread copies the WAL into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(20);
/// WAL pages at which the writer checkpoints itself, inside a commit: the backstop that
/// bounds the WAL (32 MiB) when the checkpoint thread cannot finish under steady writes.
const WAL_BACKSTOP_PAGES: i64 = 8000;

/// The WAL's size once it is reset after a complete checkpoint (`journal_size_limit`):
/// above what the writer's backstop lets it reach under steady load, so busy periods
/// reuse the file instead of cutting and regrowing it (a growing file makes every fsync
/// dearer). Only an outside reader can push it beyond.
const WAL_LIMIT_BYTES: u64 = 48 * 1024 * 1024;
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
fn checkpoint_loop(path: &Path, pokes: Receiver<()>) {
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
                if e.0 != last_error {
                    log::warn!(
                        "database {}: background checkpoint failed: {e}",
                        path.display()
                    );
                    last_error = e.0;
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

impl Writer {
    fn run(mut self, rx: Receiver<Msg>) {
        let mut stop = false;
        while !stop && let Ok(first) = rx.recv() {
            let mut writes = Vec::new();
            let mut health = Vec::new();
            let mut next = Some(first);
            while let Some(m) = next.take() {
                match m {
                    Msg::Write(ev, done) => writes.push((ev, done)),
                    Msg::Health(reply) => health.push(reply),
                    Msg::Stop => {
                        stop = true;
                        break;
                    }
                }
                if writes.len() < MAX_BATCH {
                    next = rx.try_recv().ok();
                }
            }
            if !writes.is_empty() {
                self.write_batch(writes);
                if !self.failing
                    && let Some(p) = &self.poke
                {
                    let _ = p.try_send(());
                }
            }
            if !health.is_empty() {
                let result = match self.check_health() {
                    Ok(()) => Health::Ok,
                    Err(e) if self.lost.is_some() => Health::Broken(e),
                    Err(e) => Health::Unavailable(e),
                };
                for reply in health {
                    let _ = reply.send(result.clone());
                }
            }
        }
        drop(self.poke.take());
        if let Some(c) = self.checkpointer.take() {
            let _ = c.join();
        }
        // The last connection to close checkpoints the WAL and removes it.
        if let Some(conn) = self.conn.take()
            && let Err((_, e)) = conn.close()
        {
            log::error!("closing database {}: {e}", self.path.display());
        }
    }

    fn connection(&mut self) -> Result<&mut Connection, StorageError> {
        if let Some(lost) = &self.lost {
            return Err(lost.clone());
        }
        if self.conn.is_none() {
            self.conn = Some(open_writer(&self.path)?);
        }
        Ok(self.conn.as_mut().expect("connection was just opened"))
    }

    /// Whether the file at the database's path is still the one the writer has open.
    /// A file deleted or replaced under the daemon would take commits that vanish at
    /// the next restart: after a commit and before any answer, this turns them into
    /// 503s, and keeps failing (health checks included) until a restart.
    fn check_identity(&mut self) -> Result<(), StorageError> {
        if let Some(lost) = &self.lost {
            return Err(lost.clone());
        }
        let now = file_identity(&self.path);
        if now.is_some() && now == self.identity {
            return Ok(());
        }
        let what = if now.is_none() { "deleted" } else { "replaced" };
        let e = StorageError(format!(
            "database file {} was {what} while calltrackd had it open; nothing more is stored until calltrackd restarts and opens the file that is there now (restore the file or restart calltrackd)",
            self.path.display()
        ));
        log::error!("{e}");
        self.conn = None;
        self.lost = Some(e.clone());
        Err(e)
    }

    fn write_batch(&mut self, writes: Vec<Pending>) {
        let started = Instant::now();
        let size = writes.len();
        let result = self
            .connection()
            .and_then(|conn| apply_batch(conn, &writes))
            .and_then(|outcomes| self.check_identity().map(|()| outcomes));
        let ok = result.is_ok();
        match result {
            Ok(outcomes) => {
                // Nothing stored (each request failed in its own savepoint, as all do
                // on a read-only file) is a failing database, not bad requests: reopen
                // it next time, or a database made writable again stays unused.
                self.failing = !outcomes.iter().any(Result::is_ok);
                if self.failing {
                    self.conn = None;
                }
                for ((_, done), outcome) in writes.into_iter().zip(outcomes) {
                    answer(done, outcome);
                }
            }
            Err(e) => {
                log::error!(
                    "database {}: a batch of {size} requests was not stored ({e}); they get 503 and Twilio may retry",
                    self.path.display()
                );
                self.failing = true;
                // A fresh connection next time: recovers from read-only opens and
                // leaves no half-finished transaction behind.
                self.conn = None;
                for (_, done) in writes {
                    answer(done, Err(e.clone()));
                }
            }
        }
        self.observer.batch(size, started.elapsed(), ok);
    }

    fn check_health(&mut self) -> Result<(), StorageError> {
        self.check_identity()?;
        let failing = self.failing;
        let result = self.connection().and_then(|conn| {
            if conn.is_readonly(rusqlite::MAIN_DB)? {
                return Err(StorageError("the database is read-only".into()));
            }
            if failing {
                // The last write failed: only a real write proves it works again, and
                // one into WAL space allocated before the disk filled proves nothing.
                // So first copy the WAL into the database and cut it to zero bytes.
                let busy: i64 =
                    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
                if busy != 0 {
                    return Err(StorageError(
                        "the last write failed and the write-ahead log cannot be checkpointed yet"
                            .into(),
                    ));
                }
                let tx =
                    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                tx.execute(
                    "INSERT INTO meta(key, value) VALUES('health_probe', ?1)
                     ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    [now_rfc3339_ms()],
                )?;
                tx.commit()?;
            } else {
                conn.query_row("SELECT count(*) FROM meta", [], |r| r.get::<_, i64>(0))?;
            }
            Ok(())
        });
        match &result {
            Ok(()) => self.failing = false,
            Err(_) => self.conn = None,
        }
        result
    }
}

/// One transaction for the whole batch. The usual case, every request applying, costs
/// no savepoints; if one request fails to apply, the batch is rolled back and redone with
/// each request in its own savepoint, so that request fails alone. A failed commit fails
/// them all.
fn apply_batch(
    conn: &mut Connection,
    writes: &[Pending],
) -> Result<Vec<Result<Outcome, StorageError>>, StorageError> {
    {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
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
            return Ok(outcomes);
        }
        tx.rollback()?;
    }
    let mut tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
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
    Ok(outcomes)
}

/// Stores one request: the lookup of its CallSid, the index lookup that tells a
/// repeat, the event row, and the call row with this request folded into its summary.
/// Nothing here reads the call's earlier events (except once for a row stored before
/// schema 3), so the cost does not grow with their number.
fn apply_one(conn: &Connection, rules: &Rules, ev: &NewEvent) -> Result<Outcome, StorageError> {
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
    if ev.facts.is_child_leg() {
        return Ok(Outcome::ChildLeg);
    }
    let row: Option<(Decided, Option<String>)> = conn
        .prepare_cached(
            "SELECT user, source, min_duration_seconds, state FROM calls WHERE id = ?1",
        )?
        .query_row([call_id], |r| {
            Ok((
                Decided {
                    user: r.get(0)?,
                    source: r.get(1)?,
                    min_duration_seconds: r.get::<_, Option<i64>>(2)?.map(|v| v as u64),
                },
                r.get(3)?,
            ))
        })
        .optional()?;
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
    let decided = row.map(|(d, _)| d);
    let new_call = decided.is_none();
    let Some(call) = summary.decide(rules, decided.as_ref()) else {
        return Ok(Outcome::ChildLeg);
    };
    let state = serde_json::to_string(&summary)
        .map_err(|e| StorageError(format!("cannot encode the call summary: {e}")))?;
    upsert_call(conn, call_id, &call, &state)?;
    Ok(Outcome::Stored {
        call: Box::new(call),
        new_call,
    })
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
            to_state, received_unix)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
            ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28)",
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
    ])?;
    Ok(conn.last_insert_rowid())
}

fn kind_from_str(s: &str) -> Kind {
    match s {
        "status" => Kind::Status,
        "dial_action" => Kind::DialAction,
        _ => Kind::Incoming,
    }
}

fn answer_from_str(s: &str) -> Answer {
    match s {
        "dial" => Answer::Dial,
        "hangup" => Answer::Hangup,
        _ => Answer::Ack,
    }
}

#[cfg(test)]
thread_local! {
    /// How many times a call's events were read back on this thread (tests check that
    /// storing a request does not, so its cost cannot grow with them).
    static EVENT_LOADS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The distinct events of one call, in no particular order (the fold needs none).
fn load_events(conn: &Connection, call_id: i64) -> Result<Vec<calls::Event>, StorageError> {
    #[cfg(test)]
    EVENT_LOADS.with(|n| n.set(n.get() + 1));
    let mut stmt = conn.prepare_cached(
        "SELECT id, received_unix, kind, answer, direction, from_number, to_number, call_status,
                sequence_number, timestamp, call_duration, dial_call_status, dial_call_duration,
                caller_name, from_city, from_state, to_city, to_state, call_sid
         FROM events WHERE call_id = ?1 AND duplicate_of IS NULL",
    )?;
    let rows = stmt.query_map([call_id], |r| {
        let event = calls::Event {
            id: r.get(0)?,
            received_at: r.get(1)?,
            kind: kind_from_str(&r.get::<_, String>(2)?),
            answer: answer_from_str(&r.get::<_, String>(3)?),
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
            },
        };
        Ok(event)
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn upsert_call(conn: &Connection, call_id: i64, c: &Call, state: &str) -> Result<(), StorageError> {
    conn.prepare_cached(
        "INSERT INTO calls (id, call_sid, user, tracking_number, source, caller, caller_name,
            caller_city, caller_state, direction, status, answered, qualified, duration_seconds,
            talk_seconds, started_at, ended_at, forwarded, min_duration_seconds, updated_at, state)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
            ?19, ?20, ?21)
         ON CONFLICT(id) DO UPDATE SET
            user = excluded.user, tracking_number = excluded.tracking_number,
            source = excluded.source, caller = excluded.caller, caller_name = excluded.caller_name,
            caller_city = excluded.caller_city, caller_state = excluded.caller_state,
            direction = excluded.direction, status = excluded.status,
            answered = excluded.answered, qualified = excluded.qualified,
            duration_seconds = excluded.duration_seconds, talk_seconds = excluded.talk_seconds,
            started_at = excluded.started_at, ended_at = excluded.ended_at,
            forwarded = excluded.forwarded, min_duration_seconds = excluded.min_duration_seconds,
            updated_at = excluded.updated_at, state = excluded.state",
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
        c.forwarded,
        c.min_duration_seconds.map(|v| v as i64),
        now_rfc3339_ms(),
        state,
    ])?;
    Ok(())
}

/// Copies the database consistently into `dest` (`VACUUM INTO`: one read snapshot, so
/// it is safe while the daemon writes), then checks the copy with `PRAGMA
/// integrity_check` and syncs it to disk. Returns the number of calls in the copy.
pub fn backup_into(db: &Path, dest: &Path) -> Result<i64, StorageError> {
    let conn = open_reader(db)?;
    let dest_str = dest
        .to_str()
        .ok_or_else(|| StorageError(format!("{} is not a UTF-8 path", dest.display())))?;
    conn.execute("VACUUM INTO ?1", [dest_str]).map_err(|e| {
        StorageError(format!(
            "cannot copy {} to {}: {e}",
            db.display(),
            dest.display()
        ))
    })?;
    drop(conn);
    let copy = Connection::open_with_flags(dest, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let check: String = copy.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    if check != "ok" {
        return Err(StorageError(format!(
            "the copy {} fails its integrity check: {check}",
            dest.display()
        )));
    }
    let calls: i64 = copy.query_row("SELECT count(*) FROM calls", [], |r| r.get(0))?;
    drop(copy);
    std::fs::File::open(dest)
        .and_then(|f| f.sync_all())
        .map_err(|e| StorageError(format!("cannot sync {}: {e}", dest.display())))?;
    Ok(calls)
}

/// The path of the database's write-ahead log.
pub fn wal_path(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push("-wal");
    PathBuf::from(p)
}

/// The size of the database's write-ahead log in bytes (0 when there is none).
pub fn wal_size(db: &Path) -> u64 {
    std::fs::metadata(wal_path(db)).map_or(0, |m| m.len())
}

/// Unix milliseconds as RFC 3339 UTC with milliseconds.
pub fn rfc3339_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Now, Unix milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn now_rfc3339_ms() -> String {
    rfc3339_ms(now_ms())
}

#[cfg(test)]
mod tests;
