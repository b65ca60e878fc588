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

Files: [`schema`](self) (the schema, migrations, opening the file), `writer` (the writer
thread), `rows` (what one request writes), `checkpoint` (the checkpoint thread and the
WAL's size), `backup`, `error` (what can go wrong, with SQLite's code kept).

Rows are keyed by a call id, the id of the first event of the `CallSid` (table `sids`
maps one to the other), not by the random `CallSid` itself: new events, calls and index
entries land at the end of their B-trees, so a commit writes few pages, and only a
call's first request touches a random place (its `sids` entry).
*/

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{Sender, SyncSender, channel, sync_channel};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::calls::Call;
use crate::config::Rules;
use crate::twilio::{Answer, Facts, Kind};

pub mod backfill;
mod backup;
mod callers;
mod callrow;
mod checkpoint;
mod error;
pub mod outbox;
pub mod rejections;
mod requalify;
mod rows;
mod schema;
pub mod summary;
mod writer;

pub use backup::backup_into;
pub(crate) use callrow::{CALL_COLUMNS, call_from_row};
pub use checkpoint::wal_size;
pub use error::{StorageError, Trouble};
pub use requalify::{Change, Pace, Requalified, requalify};
pub use schema::{SCHEMA_VERSION, open_calls_reader, open_reader, open_writer};

/// How long a health check waits for the writer to answer.
const HEALTH_WAIT: Duration = Duration::from_secs(5);
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
pub(crate) type Pending = (Box<NewEvent>, Done);

/// Hands a result to its request; a panic there costs that request only.
pub(crate) fn answer(done: Done, result: Result<Outcome, StorageError>) {
    let call = std::panic::AssertUnwindSafe(move || done(result));
    if std::panic::catch_unwind(call).is_err() {
        log::error!("internal error while answering a stored request");
    }
}

pub(crate) enum Msg {
    Write(Box<NewEvent>, Done),
    Rejected(rejections::Rejection),
    /// Notification attempts to record; told whether they were.
    Attempts(Vec<(i64, outbox::Attempt)>, Box<dyn FnOnce(bool) + Send>),
    Health(SyncSender<Health>),
    /// Store what came before, then stop (even while other handles remain).
    Stop,
}

/// What a health check found.
#[derive(Debug, Clone)]
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
#[derive(Clone)]
pub struct Store {
    tx: Sender<Msg>,
    /// When a refused request was last passed on to be stored (one a second at most:
    /// a flood of forged requests must not become a flood of disk writes).
    last_rejection: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
}

/// Sizes of the batches committed, for metrics.
pub trait BatchObserver: Send + Sync {
    /// One commit of `size` requests that took `elapsed`; `ok` false when it failed.
    fn batch(&self, size: usize, elapsed: Duration, ok: bool);
}

impl Store {
    /// Opens (creating and migrating) the database and starts the writer thread.
    /// Fails when the database cannot be opened at all; a read-only database opens,
    /// and writes to it answer errors until it becomes writable.
    pub fn start(
        path: &Path,
        observer: Arc<dyn BatchObserver>,
        rules: &Rules,
    ) -> Result<(Store, JoinHandle<()>), StorageError> {
        let mut conn = open_writer(path)?;
        finish_upgrade(&mut conn, rules)?;
        summary::prepare(&mut conn, rules.timezone)?;
        if conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(false) {
            log::error!(
                "database {} is read-only: webhooks will get 503 until calltrackd can write to it",
                path.display()
            );
        }
        let (tx, rx) = channel();
        let handle = writer::start(path, conn, observer, rx)?;
        Ok((
            Store {
                tx,
                last_rejection: Arc::new(std::sync::Mutex::new(None)),
            },
            handle,
        ))
    }

    /// Queues a request; `done` gets its result once its batch is durably committed
    /// (or has failed). Never blocks on the disk.
    pub fn submit_async(&self, ev: NewEvent, done: Done) {
        if let Err(std::sync::mpsc::SendError(Msg::Write(_, done))) =
            self.tx.send(Msg::Write(Box::new(ev), done))
        {
            done(Err(StorageError::WriterStopped));
        }
    }

    /// Keeps a refused request's time, URL and reason for `twilio doctor` (at most one
    /// a second; the log has every one).
    pub fn note_rejected(&self, url: &str, reason: &str) {
        let now = std::time::Instant::now();
        {
            let mut last = self
                .last_rejection
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|t| now.duration_since(t) < Duration::from_secs(1)) {
                return;
            }
            *last = Some(now);
        }
        let _ = self.tx.send(Msg::Rejected(rejections::Rejection {
            at_unix: chrono::Utc::now().timestamp(),
            url: url.to_owned(),
            reason: reason.to_owned(),
        }));
    }

    /// Records the delivery thread's finished attempts with the next batch (the writer
    /// stays the only connection that writes); `done` is told whether they were.
    pub fn record_attempts(
        &self,
        attempts: Vec<(i64, outbox::Attempt)>,
        done: Box<dyn FnOnce(bool) + Send>,
    ) {
        if let Err(std::sync::mpsc::SendError(Msg::Attempts(_, done))) =
            self.tx.send(Msg::Attempts(attempts, done))
        {
            done(false);
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
            return Health::Broken(StorageError::WriterStopped);
        }
        reply_rx
            .recv_timeout(HEALTH_WAIT)
            .unwrap_or_else(|_| Health::Broken(StorageError::WriterStuck(HEALTH_WAIT.as_secs())))
    }
}

/// Decides the stored calls again after a schema upgrade that added what calls say
/// (outcome, first-time...), with the rules each was decided with (the current ones
/// for what a call was never decided with). Resumes after a crash.
pub fn finish_upgrade(conn: &mut rusqlite::Connection, rules: &Rules) -> Result<(), StorageError> {
    if !requalify::rederive_pending(conn)? {
        return Ok(());
    }
    let started = std::time::Instant::now();
    let done = requalify(conn, rules, true, false, Pace::Alone, &mut |_| {})?;
    log::info!(
        "decided {} stored calls again from their events for the new schema ({} rows written, {:.1} s)",
        done.calls,
        done.rows_written,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests;
