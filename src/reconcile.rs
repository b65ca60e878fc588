//! The daemon's reconcile thread (`[twilio] reconcile_minutes > 0`): a backfill of the
//! last 2 days at start and then every so often, through the writer's queue like a
//! webhook (a few small writes between webhook batches: it never holds the database),
//! at a lower CPU priority. It logs what it added.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::backfill::{self, DEFAULT_DAYS, Window};
use crate::commands::call_line;
use crate::config::{Config, Rules};
use crate::rest::Client;
use crate::storage::{self, NewEvent, Outcome, StorageError, Store};

/// Starts the thread; it stops when `stop`'s sender is dropped.
pub fn start(
    cfg: &Config,
    store: Store,
    rules: Arc<RwLock<Arc<Rules>>>,
    stop: Receiver<()>,
) -> std::io::Result<()> {
    let every = Duration::from_secs(cfg.twilio_api.reconcile_minutes * 60);
    let cfg = cfg.clone();
    std::thread::Builder::new()
        .name("reconcile".into())
        .spawn(move || {
            crate::http::lower_priority();
            loop {
                let current = rules
                    .read()
                    .map(|r| Arc::clone(&r))
                    .unwrap_or_else(|e| Arc::clone(&e.into_inner()));
                once(&cfg, &store, &current);
                match stop.recv_timeout(every) {
                    Err(RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
            }
        })?;
    Ok(())
}

fn once(cfg: &Config, store: &Store, rules: &Arc<Rules>) {
    let client = match Client::from_config(cfg) {
        Ok(c) => c,
        Err(e) => return log::warn!("reconcile: {e}"),
    };
    let reader = match storage::open_calls_reader(&cfg.storage_path) {
        Ok(r) => r,
        Err(e) => return log::warn!("reconcile: {e}; trying again later"),
    };
    let window = Window::last_days(chrono::Utc::now().timestamp(), DEFAULT_DAYS);
    let mut submit = |ev: NewEvent| -> Result<Outcome, StorageError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        store.submit_async(
            ev,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        rx.recv().unwrap_or(Err(StorageError::WriterStopped))
    };
    match backfill::run(&client, &reader, rules, window, &mut submit) {
        Ok(r) => {
            for c in &r.added {
                log::info!("reconcile: {}", call_line("added", c));
            }
            for c in &r.finished {
                log::info!("reconcile: {}", call_line("final status for", c));
            }
            log::info!(
                "reconcile: {} calls listed by Twilio in the last {DEFAULT_DAYS} days; {} added, {} given their final status ({} API requests)",
                r.listed,
                r.added.len(),
                r.finished.len(),
                r.requests
            );
        }
        Err(e) => log::warn!(
            "reconcile: {e}; trying again in {} min{}",
            cfg.twilio_api.reconcile_minutes,
            if matches!(
                e,
                backfill::BackfillError::Rest(crate::rest::RestError::Unreachable { .. })
            ) {
                " (under the packaged systemd unit, allow outbound connections: docs/twilio.md)"
            } else {
                ""
            }
        ),
    }
}
