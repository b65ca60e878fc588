//! The schema, its migrations, and opening the database file.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::StorageError;
use super::checkpoint::{WAL_BACKSTOP_PAGES, WAL_LIMIT_BYTES};

/// The schema version this binary writes. Bump it with a new entry in `MIGRATIONS`.
pub const SCHEMA_VERSION: i64 = 8;

/// Ordered migrations; entry `i` takes the schema from version `i` to `i + 1`.
pub(crate) const MIGRATIONS: &[&str] = &[
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
    // 3 -> 4: outcome, ring time, first-time callers, why (not) qualified, and the
    // rules a call was decided with. `caller_key` (caller and user, NULL for a caller
    // that is not E.164) with its index finds a caller's earlier and later calls in
    // start order at the same cost at 10 calls or 10 million. The new columns are
    // filled from each call's events by the first writer to open the database after
    // this step (`meta.rederive`), which has the rules. `counted` (0 for a blocked
    // call, which never counts as an earlier call) rather than the outcome is in the
    // index: it hardly ever changes, so deciding a call again rarely moves its entry.
    "ALTER TABLE calls ADD COLUMN outcome TEXT;
    ALTER TABLE calls ADD COLUMN ring_seconds INTEGER;
    ALTER TABLE calls ADD COLUMN first_time_caller INTEGER;
    ALTER TABLE calls ADD COLUMN prior_calls INTEGER;
    ALTER TABLE calls ADD COLUMN qualified_reason TEXT NOT NULL DEFAULT '';
    ALTER TABLE calls ADD COLUMN recording_url TEXT NOT NULL DEFAULT '';
    ALTER TABLE calls ADD COLUMN voicemail_url TEXT NOT NULL DEFAULT '';
    ALTER TABLE calls ADD COLUMN captured_by TEXT NOT NULL DEFAULT 'webhook';
    ALTER TABLE calls ADD COLUMN caller_key TEXT;
    ALTER TABLE calls ADD COLUMN abandon_seconds INTEGER;
    ALTER TABLE calls ADD COLUMN lookback_days INTEGER;
    ALTER TABLE calls ADD COLUMN require_first_time INTEGER;
    ALTER TABLE calls ADD COLUMN counted INTEGER NOT NULL DEFAULT 1; -- 0: blocked
    CREATE INDEX calls_by_caller ON calls(caller_key, started_at, counted)
        WHERE caller_key IS NOT NULL;
    INSERT OR REPLACE INTO meta (key, value) VALUES ('rederive', 'schema 4');",
    // 4 -> 5: what the call flow's requests report, as columns of their events like
    // the other facts the rules use (the raw body stays the record). Earlier events
    // carry none of these (DialBridged only mattered from the keypress guard on).
    "ALTER TABLE events ADD COLUMN dial_bridged INTEGER;
    ALTER TABLE events ADD COLUMN answered_by TEXT;
    ALTER TABLE events ADD COLUMN digits TEXT;
    ALTER TABLE events ADD COLUMN recording_url TEXT;
    ALTER TABLE events ADD COLUMN recording_duration INTEGER;",
    // 5 -> 6: the report's summary, calls counted per local hour, user, source and
    // outcome (storage/summary.rs); filled from the calls by the first writer that
    // opens the database with its zone (`meta.report_tz` is not set yet).
    "CREATE TABLE report_hours (
        day          TEXT    NOT NULL,  -- YYYY-MM-DD in export.timezone
        hour         INTEGER NOT NULL,  -- 0-23, local
        user         TEXT    NOT NULL,
        source       TEXT    NOT NULL,
        outcome      TEXT    NOT NULL,  -- an outcome, or pending
        calls        INTEGER NOT NULL,
        qualified    INTEGER NOT NULL,
        first_time   INTEGER NOT NULL,
        talk_seconds INTEGER NOT NULL,  -- of answered calls
        PRIMARY KEY (day, hour, user, source, outcome)
    ) WITHOUT ROWID;",
    // 6 -> 7: the Twilio account. A call's start time as the Calls API reports it
    // (backfilled calls; webhooks never say), and the latest requests refused for a bad
    // signature, for `twilio doctor` (when and which URL was checked: never a body or a
    // signature; the daemon keeps the latest 50).
    "ALTER TABLE events ADD COLUMN start_time INTEGER;
    CREATE TABLE rejected_requests (
        id          INTEGER PRIMARY KEY,
        at_unix     INTEGER NOT NULL,
        url         TEXT    NOT NULL,  -- the URL the signature was checked against
        reason      TEXT    NOT NULL
    );",
    // 7 -> 8: the notification outbox. A row is written in the transaction that makes
    // its call final or qualified, once per (call, event, target); the delivery
    // thread sends it and records the result.
    "CREATE TABLE notifications (
        id          INTEGER PRIMARY KEY,
        call_id     INTEGER NOT NULL,
        call_sid    TEXT    NOT NULL,
        event       TEXT    NOT NULL,  -- call.completed | call.missed | call.qualified
        target      TEXT    NOT NULL,  -- the target's key: kind and URL or recipients, no secret
        webhook_id  TEXT    NOT NULL,  -- the same on every attempt
        payload     TEXT    NOT NULL,  -- {type, timestamp, data} as written with the call
        created_at  INTEGER NOT NULL,  -- Unix seconds
        give_up_at  INTEGER NOT NULL,  -- Unix seconds: failed after this
        state       TEXT    NOT NULL,  -- pending | sent | failed
        attempts    INTEGER NOT NULL DEFAULT 0,
        next_at_ms  INTEGER NOT NULL,  -- Unix milliseconds: when to try next
        last_error  TEXT,
        sent_at     INTEGER,
        UNIQUE (call_id, event, target)
    );
    CREATE INDEX notifications_due ON notifications(next_at_ms) WHERE state = 'pending';",
];

/// How long a write waits for another process's lock before giving up (then 503).
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The busy handler: waits up to [`BUSY_TIMEOUT`] for another connection's lock.
fn wait_for_lock(tries: i32) -> bool {
    const POLL: Duration = Duration::from_micros(200);
    if POLL * (tries.max(0) as u32) >= BUSY_TIMEOUT {
        return false;
    }
    std::thread::sleep(POLL);
    true
}

/// Opens a connection with the pragmas every connection needs.
pub(crate) fn connect(path: &Path, flags: OpenFlags) -> Result<Connection, StorageError> {
    let mut conn = Connection::open_with_flags(path, flags).map_err(|e| StorageError::Open {
        path: path.to_path_buf(),
        source: Arc::new(e),
    })?;
    // SQLite's own busy timeout sleeps 1, 2, 5, 10... ms between tries; polling every
    // 200 us instead lets the writer in as soon as a `requalify` transaction ends.
    conn.busy_handler(Some(wait_for_lock))?;
    // The writer runs about fifteen statements per request; SQLite's default cache of
    // 16 would re-prepare some of them on every request.
    conn.set_prepared_statement_cache_capacity(64);
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
        .map_err(|e| StorageError::Open {
            path: path.to_path_buf(),
            source: Arc::new(e),
        })?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StorageError::NotWal {
            path: path.to_path_buf(),
            mode,
        });
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
        Err(e) => Err(StorageError::Create {
            path: path.to_path_buf(),
            source: Arc::new(e),
        }),
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

/// Like [`open_reader`], refusing a database older than schema `min` (the table asked
/// for is not there yet: the daemon of this version has not opened it).
pub fn open_reader_since(path: &Path, min: i64) -> Result<Connection, StorageError> {
    let conn = open_reader(path)?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version < min {
        return Err(StorageError::TooOld {
            path: path.to_path_buf(),
            version,
        });
    }
    Ok(conn)
}

/// Like [`open_reader`], for reading calls: refuses a database not yet upgraded to this
/// binary's schema (its rows lack columns).
pub fn open_calls_reader(path: &Path) -> Result<Connection, StorageError> {
    let conn = open_reader(path)?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let pending: bool = version == SCHEMA_VERSION
        && conn
            .query_row("SELECT 1 FROM meta WHERE key = 'rederive'", [], |_| Ok(()))
            .is_ok();
    if version < SCHEMA_VERSION || pending {
        return Err(StorageError::TooOld {
            path: path.to_path_buf(),
            version: if pending { version - 1 } else { version },
        });
    }
    Ok(conn)
}

pub(crate) fn check_version(version: i64, path: &Path) -> Result<(), StorageError> {
    if version > SCHEMA_VERSION {
        return Err(StorageError::TooNew {
            path: path.to_path_buf(),
            version,
        });
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
            if created {
                log::info!(
                    "database {} created (schema {SCHEMA_VERSION})",
                    path.display()
                );
            }
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
            StorageError::Migrate {
                path: path.to_path_buf(),
                from: version,
                why: e,
            }
        })?;
        if !created {
            log::info!(
                "database {} migrated to schema {}",
                path.display(),
                version + 1
            );
        }
    }
}
