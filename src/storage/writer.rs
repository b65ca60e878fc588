//! The writer thread: takes what has queued, applies it in one transaction, commits
//! once, then hands each request its result; checks the file under it and its health.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender};
use std::thread::JoinHandle;
use std::time::Instant;

use rusqlite::Connection;

use crate::clock::now_rfc3339_ms;

use super::checkpoint::checkpoint_loop;
use super::outbox::Attempt;
use super::rows::apply_batch;
use super::schema::open_writer;
use super::{BatchObserver, Health, Msg, Pending, StorageError, answer};

/// A list of attempts and who waits to hear they were recorded.
type Attempts = (Vec<(i64, Attempt)>, Box<dyn FnOnce(bool) + Send>);

/// How many queued requests one transaction takes at most.
const MAX_BATCH: usize = 512;
/// Starts the checkpoint thread and the writer thread on an open connection.
pub(super) fn start(
    path: &Path,
    conn: Connection,
    observer: Arc<dyn BatchObserver>,
    rx: Receiver<Msg>,
) -> Result<JoinHandle<()>, StorageError> {
    let (poke, pokes) = std::sync::mpsc::sync_channel::<()>(1);
    let checkpoint_path = path.to_path_buf();
    let checkpointer = std::thread::Builder::new()
        .name("checkpointer".into())
        .spawn(move || checkpoint_loop(&checkpoint_path, pokes))
        .map_err(|e| StorageError::Thread {
            what: "checkpoint",
            source: Arc::new(e),
        })?;
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
    std::thread::Builder::new()
        .name("writer".into())
        .spawn(move || writer.run(rx))
        .map_err(|e| StorageError::Thread {
            what: "writer",
            source: Arc::new(e),
        })
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

impl Writer {
    fn run(mut self, rx: Receiver<Msg>) {
        let mut stop = false;
        while !stop && let Ok(first) = rx.recv() {
            let mut writes = Vec::new();
            let mut health = Vec::new();
            let mut refused = Vec::new();
            let mut attempts = Vec::new();
            let mut next = Some(first);
            while let Some(m) = next.take() {
                match m {
                    Msg::Write(ev, done) => writes.push((ev, done)),
                    Msg::Health(reply) => health.push(reply),
                    Msg::Rejected(r) => refused.push(r),
                    Msg::Attempts(list, done) => attempts.push((list, done)),
                    Msg::Stop => {
                        stop = true;
                        break;
                    }
                }
                if writes.len() < MAX_BATCH {
                    next = rx.try_recv().ok();
                }
            }
            if !writes.is_empty() || !attempts.is_empty() {
                self.write_batch(writes, attempts);
                if !self.failing
                    && let Some(p) = &self.poke
                {
                    let _ = p.try_send(());
                }
            }
            if !refused.is_empty()
                && let Ok(conn) = self.connection()
                && let Err(e) = super::rejections::store(conn, &refused)
            {
                log::debug!("refused requests not kept for `twilio doctor`: {e}");
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
        let e = StorageError::Lost {
            path: self.path.clone(),
            what,
        };
        log::error!("{e}");
        self.conn = None;
        self.lost = Some(e.clone());
        Err(e)
    }

    fn write_batch(&mut self, writes: Vec<Pending>, attempts: Vec<Attempts>) {
        let started = Instant::now();
        let size = writes.len();
        let all: Vec<(i64, Attempt)> = attempts
            .iter()
            .flat_map(|(a, _)| a.iter().cloned())
            .collect();
        let result = self
            .connection()
            .and_then(|conn| apply_batch(conn, &writes, &all))
            .and_then(|outcomes| self.check_identity().map(|()| outcomes));
        let ok = result.is_ok();
        let recorded = matches!(result, Ok((_, true)));
        for (_, done) in attempts {
            let call = std::panic::AssertUnwindSafe(move || done(recorded));
            let _ = std::panic::catch_unwind(call);
        }
        if size == 0 {
            // Only attempts: no request to answer, nothing to count.
            if result.is_err() {
                self.conn = None;
            }
            return;
        }
        match result {
            Ok((outcomes, _)) => {
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
                return Err(StorageError::ReadOnly);
            }
            if failing {
                // The last write failed: only a real write proves it works again, and
                // one into WAL space allocated before the disk filled proves nothing.
                // So first copy the WAL into the database and cut it to zero bytes.
                let busy: i64 =
                    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
                if busy != 0 {
                    return Err(StorageError::WalBusy);
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
