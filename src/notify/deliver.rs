//! The daemon's delivery thread: sends what the outbox holds when it is due, one worker
//! thread per target (a receiver that hangs or answers slowly holds up only its own
//! messages), and has each attempt recorded. It only reads the database (a connection
//! per look); the attempts are recorded by the writer thread with its next batch, so
//! the writer stays the one connection that writes and webhooks never wait on a lock
//! held for a receiver.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::send::{Outgoing, send};
use super::{now_ms, retry_delay_ms};
use crate::config::{Config, NotifyTarget, Rules, notify_label};
use crate::metrics::Metrics;
use crate::storage::outbox::{self, Attempt, Notification};
use crate::storage::{StorageError, Store, open_reader};

/// How often the outbox is looked at.
const POLL: Duration = Duration::from_millis(250);

struct Job {
    row: Notification,
    target: NotifyTarget,
}

struct Done {
    row: Notification,
    kind: &'static str,
    result: Result<(), String>,
}

/// Attempts handed to the writer, and whether it recorded them.
type Recorded = (Vec<(i64, Attempt)>, bool);

/// Starts the thread; it stops when `stop`'s sender is dropped.
pub fn start(
    cfg: &Config,
    store: Store,
    rules: Arc<RwLock<Arc<Rules>>>,
    metrics: Arc<Metrics>,
    stop: Receiver<()>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let cfg = Arc::new(cfg.clone());
    std::thread::Builder::new()
        .name("notify".into())
        .spawn(move || Dispatcher::new(cfg, store, rules, metrics).run(stop))
}

struct Dispatcher {
    cfg: Arc<Config>,
    store: Store,
    rules: Arc<RwLock<Arc<Rules>>>,
    metrics: Arc<Metrics>,
    workers: HashMap<String, Sender<Job>>,
    /// Handed to a worker and not yet recorded: not handed out again.
    in_flight: HashSet<i64>,
    /// Finished attempts not yet handed to the writer.
    finished: Vec<(i64, Attempt)>,
    /// A list handed to the writer is not answered yet.
    recording: bool,
    recorded_tx: Sender<Recorded>,
    recorded_rx: Receiver<Recorded>,
    done_tx: Sender<Done>,
    done_rx: Receiver<Done>,
    db: PathBuf,
}

impl Dispatcher {
    fn new(
        cfg: Arc<Config>,
        store: Store,
        rules: Arc<RwLock<Arc<Rules>>>,
        metrics: Arc<Metrics>,
    ) -> Dispatcher {
        let (done_tx, done_rx) = channel();
        let (recorded_tx, recorded_rx) = channel();
        Dispatcher {
            db: cfg.storage_path.clone(),
            cfg,
            store,
            rules,
            metrics,
            workers: HashMap::new(),
            in_flight: HashSet::new(),
            finished: Vec::new(),
            recording: false,
            recorded_tx,
            recorded_rx,
            done_tx,
            done_rx,
        }
    }

    fn run(mut self, stop: Receiver<()>) {
        crate::http::lower_priority();
        let mut complained = false;
        loop {
            match self.tick() {
                Ok(()) => complained = false,
                // Said once until it works again: the webhook path logs its own.
                Err(e) if !complained => {
                    log::warn!("notify: outbox not readable ({e}); trying again");
                    complained = true;
                }
                Err(_) => {}
            }
            match stop.recv_timeout(POLL) {
                Err(RecvTimeoutError::Timeout) => {}
                _ => {
                    // What finished meanwhile is recorded before the writer stops.
                    self.collect();
                    self.hand_to_writer();
                    return;
                }
            }
        }
    }

    /// Takes the finished attempts and the writer's answers.
    fn collect(&mut self) {
        while let Ok(d) = self.done_rx.try_recv() {
            let id = d.row.id;
            let attempt = self.finish(d);
            self.finished.push((id, attempt));
        }
        while let Ok((list, ok)) = self.recorded_rx.try_recv() {
            self.recording = false;
            if ok {
                for (id, _) in list {
                    self.in_flight.remove(&id);
                }
            } else {
                // Not recorded: offered to the writer again (never sent twice).
                self.finished.extend(list);
            }
        }
    }

    /// Hands the finished attempts to the writer, one list at a time.
    fn hand_to_writer(&mut self) {
        if self.recording || self.finished.is_empty() {
            return;
        }
        let list = std::mem::take(&mut self.finished);
        let answer = self.recorded_tx.clone();
        let copy = list.clone();
        self.recording = true;
        self.store.record_attempts(
            list,
            Box::new(move |ok| {
                let _ = answer.send((copy, ok));
            }),
        );
    }

    /// Records what finished, then hands out what is due.
    fn tick(&mut self) -> Result<(), StorageError> {
        self.collect();
        self.hand_to_writer();
        let now = now_ms();
        let due = {
            let conn = open_reader(&self.db)?;
            outbox::due(&conn, now, 256)?
        };
        let rules = self
            .rules
            .read()
            .map(|r| Arc::clone(&r))
            .unwrap_or_else(|e| Arc::clone(&e.into_inner()));
        for row in due {
            if self.in_flight.contains(&row.id) {
                continue;
            }
            self.in_flight.insert(row.id);
            let Some(target) = rules.notify.iter().find(|t| t.key == row.target).cloned() else {
                let error = "its [[notify]] target is no longer in the config".to_owned();
                log::error!(
                    "notify: {} for call {} to {} given up: {error}",
                    row.event,
                    row.call_sid,
                    notify_label(&row.target)
                );
                self.finished.push((row.id, Attempt::Failed { error }));
                continue;
            };
            let tx = self.worker(&target);
            if let Err(e) = tx.send(Job { row, target }) {
                // The worker died (it never should): start a new one next time.
                self.in_flight.remove(&e.0.row.id);
                self.workers.remove(&e.0.target.key);
            }
        }
        Ok(())
    }

    fn worker(&mut self, target: &NotifyTarget) -> Sender<Job> {
        if let Some(tx) = self.workers.get(&target.key) {
            return tx.clone();
        }
        let (tx, rx) = channel::<Job>();
        let done = self.done_tx.clone();
        let cfg = Arc::clone(&self.cfg);
        let spawned = std::thread::Builder::new()
            .name("notify-target".into())
            .spawn(move || {
                crate::http::lower_priority();
                for job in rx {
                    let msg = Outgoing {
                        event: &job.row.event,
                        webhook_id: &job.row.webhook_id,
                        payload: &job.row.payload,
                    };
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        send(&job.target, msg, &cfg)
                    }))
                    .unwrap_or_else(|_| Err("internal error while sending".into()));
                    let kind = job.target.kind_name();
                    if done
                        .send(Done {
                            row: job.row,
                            kind,
                            result,
                        })
                        .is_err()
                    {
                        return;
                    }
                }
            });
        if spawned.is_ok() {
            self.workers.insert(target.key.clone(), tx.clone());
        } else {
            log::warn!(
                "notify: cannot start a thread for {}",
                notify_label(&target.key)
            );
        }
        tx
    }

    /// What a finished attempt comes to (logged and counted here, recorded by `tick`).
    fn finish(&self, d: Done) -> Attempt {
        let now = now_ms();
        let r = &d.row;
        let to = notify_label(&r.target);
        let attempt = r.attempts + 1;
        match d.result {
            Ok(()) => {
                log::info!(
                    "notify: {} for call {} sent to {to} (attempt {attempt})",
                    r.event,
                    r.call_sid
                );
                self.metrics.count_notification(d.kind, "sent");
                Attempt::Sent
            }
            Err(error) if now / 1000 >= r.give_up_at => {
                log::error!(
                    "notify: {} for call {} to {to} given up after {attempt} attempts over 24 h: {error}; `calltrackd notify retry {}` sends it again",
                    r.event,
                    r.call_sid,
                    r.id
                );
                self.metrics.count_notification(d.kind, "failed");
                Attempt::Failed { error }
            }
            Err(error) => {
                let wait = retry_delay_ms(r.attempts);
                log::warn!(
                    "notify: {} for call {} to {to} failed (attempt {attempt}: {error}); trying again in {} s",
                    r.event,
                    r.call_sid,
                    wait / 1000
                );
                self.metrics.count_notification(d.kind, "retry");
                Attempt::Retry {
                    error,
                    at_ms: now + wait,
                }
            }
        }
    }
}
