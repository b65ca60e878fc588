//! Deciding stored calls again from their events: `calltrackd requalify` (the current
//! rules for every call) and the upgrade to schema 4 (each call's own rules kept).
//!
//! Calls are taken in start order, so when a call's first-time flag is counted every
//! earlier call of its caller has already been decided with the same rules. Each call
//! is decided from its folded events as kept with its row (the fold does not depend on
//! the rules), folded afresh from the events where that is missing.
//!
//! The work is cut into short transactions: 1 ms each, with a 1 ms pause after each,
//! while the daemon has committed within the last 2 s (SQLite's `data_version` says
//! so), else 5 ms each. Commits do not wait for the disk while holding the write lock;
//! the log is flushed right after, with the lock released. So a webhook waits about a
//! millisecond for the lock at most (figures in docs/benchmarks.md). A dry run reads
//! only: calls that would move among their caller's calls are noted in a temporary
//! table, which the counting then reads instead.

use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::StorageError;
use super::callers::{Place, View, count_priors};
use super::callrow::{self, CALL_COLUMN_COUNT, CALL_COLUMNS, call_from_row, write_call};
use super::rows::load_events;
use crate::calls::{Call, Decided, Summary};
use crate::config::{Qualify, Rules};

/// How hard to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// The daemon may be taking webhooks: short transactions while it commits, with a
    /// pause after each to let its writer in.
    Share,
    /// Long transactions: nothing else is writing (the daemon's own start-up).
    Alone,
}

/// How long one transaction may run while another connection is committing, and
/// while none has for [`QUIET`]. Shorter transactions and a longer pause cost
/// requalify time only while the daemon is busy; measured with a webhook every 2 ms,
/// 2 ms / 0.3 ms gave webhooks p50 2.8 ms, 1 ms / 1 ms p50 0.6 ms (idle: 0.8 ms).
const BUDGET_SHARED: Duration = Duration::from_millis(1);
const BUDGET_QUIET: Duration = Duration::from_millis(5);
const BUDGET_ALONE: Duration = Duration::from_millis(500);
/// No commit from another connection for this long: nobody is waiting for us.
const QUIET: Duration = Duration::from_secs(2);
/// The pause after a transaction while another connection commits (its writer polls
/// for the lock every 200 us, and its commit flushes to disk in the meantime).
const PAUSE: Duration = Duration::from_millis(1);

/// Whether another connection (the daemon) has committed lately, from SQLite's
/// `data_version`, which changes when another connection commits.
struct Neighbour {
    version: Option<i64>,
    last_seen: Option<Instant>,
}

impl Neighbour {
    fn active(&mut self, conn: &Connection) -> Result<bool, StorageError> {
        let v: i64 = conn.query_row("PRAGMA data_version", [], |r| r.get(0))?;
        if self.version.is_some_and(|old| old != v) {
            self.last_seen = Some(Instant::now());
        }
        self.version = Some(v);
        Ok(self.last_seen.is_some_and(|t| t.elapsed() < QUIET))
    }
}

/// One call whose user, source, outcome or qualification changed.
#[derive(Debug, Clone)]
pub struct Change {
    /// The call as it was stored.
    pub before: Call,
    /// The call as decided now.
    pub after: Call,
}

/// What a run found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requalified {
    /// Calls decided again.
    pub calls: u64,
    /// Calls whose user, source, outcome or qualification changed.
    pub changed: u64,
    /// Calls that are qualified now and were not.
    pub now_qualified: u64,
    /// Calls that were qualified and are not now.
    pub no_longer_qualified: u64,
    /// Calls whose outcome changed.
    pub outcome_changed: u64,
    /// Calls whose user or source changed.
    pub attribution_changed: u64,
    /// Rows written (any column, the first-time flags included); 0 for a dry run.
    pub rows_written: u64,
}

/// Whether the change is one `requalify` reports.
fn reported(a: &Call, b: &Call) -> bool {
    a.qualified != b.qualified || a.outcome != b.outcome || a.user != b.user || a.source != b.source
}

/// Decides every stored call again from its events. `keep_decided`: each call keeps the
/// user, source and rules it was decided with (the schema upgrade); else the current
/// `rules` decide everything (`requalify`). `dry_run` changes nothing. Each reported
/// change goes to `on_change` as it is found.
///
/// The connection's `synchronous` and `cache_size` are changed for the run and put back
/// afterwards, whatever happens: the daemon's writer runs the schema upgrade's pass on
/// its own connection, which must go on committing with `synchronous=FULL`.
pub fn requalify(
    conn: &mut Connection,
    rules: &Rules,
    keep_decided: bool,
    dry_run: bool,
    pace: Pace,
    on_change: &mut dyn FnMut(&Change),
) -> Result<Requalified, StorageError> {
    let synchronous: i64 = conn.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
    let cache_size: i64 = conn.query_row("PRAGMA cache_size", [], |r| r.get(0))?;
    // Commits here do not wait for the disk while they hold the write lock (the daemon
    // would wait with them); the log is flushed right after each commit instead, with
    // the lock released, so the daemon's next commit does not have to flush our pages
    // (measured: up to 280 ms when they were left to it).
    conn.execute_batch("PRAGMA synchronous = NORMAL")?;
    // A bigger page cache than the daemon's: one pass over every call and its events
    // rereads index pages far less (peak RSS stays well under 64 MiB).
    conn.execute_batch("PRAGMA cache_size = -32768")?;
    let run = Run {
        rules,
        keep_decided,
        dry_run,
        pace,
    };
    let result = run.all(conn, on_change);
    let restored = conn.execute_batch(&format!(
        "PRAGMA synchronous = {synchronous}; PRAGMA cache_size = {cache_size};"
    ));
    let report = result?;
    restored?;
    Ok(report)
}

/// One run's settings.
struct Run<'a> {
    rules: &'a Rules,
    keep_decided: bool,
    dry_run: bool,
    pace: Pace,
}

impl Run<'_> {
    fn all(
        &self,
        conn: &mut Connection,
        on_change: &mut dyn FnMut(&Change),
    ) -> Result<Requalified, StorageError> {
        let Run {
            rules,
            keep_decided,
            dry_run,
            pace,
        } = *self;
        let wal = conn
            .path()
            .map(|p| std::path::PathBuf::from(format!("{p}-wal")));
        let mut neighbour = Neighbour {
            version: None,
            last_seen: None,
        };
        if dry_run {
            conn.execute_batch(
                "CREATE TEMP TABLE IF NOT EXISTS moved (id INTEGER PRIMARY KEY, caller_key TEXT,
                started_at INTEGER NOT NULL, call_sid TEXT NOT NULL, counts INTEGER NOT NULL);
             CREATE INDEX IF NOT EXISTS temp.moved_by_key ON moved(caller_key, started_at);
             DELETE FROM temp.moved;",
            )?;
        }
        let mut report = Requalified::default();
        let mut after: Option<(i64, String)> = None;
        loop {
            let behavior = if dry_run {
                TransactionBehavior::Deferred
            } else {
                TransactionBehavior::Immediate
            };
            let shared = pace == Pace::Share && neighbour.active(conn)?;
            let budget = match pace {
                Pace::Alone => BUDGET_ALONE,
                Pace::Share if shared => BUDGET_SHARED,
                Pace::Share => BUDGET_QUIET,
            };
            let tx = conn.transaction_with_behavior(behavior)?;
            let begun = Instant::now();
            let mut done = false;
            while begun.elapsed() < budget {
                let page = next_page(&tx, after.as_ref())?;
                if page.len() < PAGE {
                    done = true;
                }
                for row in page {
                    after = Some((row.call.started_at, row.call.call_sid.clone()));
                    decide_again(
                        &tx,
                        rules,
                        keep_decided,
                        dry_run,
                        row,
                        &mut report,
                        on_change,
                    )?;
                }
                if done {
                    break;
                }
            }
            if done && !dry_run {
                tx.execute("DELETE FROM meta WHERE key = 'rederive'", [])?;
            }
            tx.commit()?;
            if !dry_run && let Some(wal) = &wal {
                flush(wal);
            }
            if done {
                return Ok(report);
            }
            if shared {
                std::thread::sleep(PAUSE);
            }
        }
    }
}

/// Makes the write-ahead log's pages durable (the commits written so far).
fn flush(wal: &std::path::Path) {
    match std::fs::File::open(wal).and_then(|f| f.sync_data()) {
        Ok(()) => {}
        // Checkpointed and removed meanwhile: nothing to flush.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => log::warn!("requalify: cannot flush {}: {e}", wal.display()),
    }
}

/// Calls fetched per query.
const PAGE: usize = 32;

struct Stored {
    id: i64,
    call: Call,
    state: Option<String>,
    /// The row's rules are from before schema 4 (only its threshold is known).
    partial_rules: bool,
    /// The `caller_key` column as stored (NULL in rows from before schema 4).
    stored_key: Option<String>,
}

fn next_page(
    conn: &Connection,
    after: Option<&(i64, String)>,
) -> Result<Vec<Stored>, StorageError> {
    let (t, sid) = after.cloned().unwrap_or((i64::MIN, String::new()));
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {CALL_COLUMNS}, id, state, abandon_seconds IS NULL, caller_key FROM calls
         INDEXED BY calls_by_start
         WHERE (started_at, call_sid) > (?1, ?2) ORDER BY started_at, call_sid LIMIT ?3"
    ))?;
    let rows = stmt.query_map(params![t, sid, PAGE as i64], |r| {
        Ok(Stored {
            call: call_from_row(r)?,
            id: r.get(CALL_COLUMN_COUNT)?,
            state: r.get(CALL_COLUMN_COUNT + 1)?,
            partial_rules: r.get(CALL_COLUMN_COUNT + 2)?,
            stored_key: r.get(CALL_COLUMN_COUNT + 3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn decide_again(
    conn: &Connection,
    rules: &Rules,
    keep_decided: bool,
    dry_run: bool,
    row: Stored,
    report: &mut Requalified,
    on_change: &mut dyn FnMut(&Change),
) -> Result<(), StorageError> {
    let before = row.call;
    // The events folded (kept with the row, exactly as folding them again would give:
    // the fold is a set of minimums, maximums and flags); folded afresh when missing.
    let kept = row
        .state
        .as_deref()
        .and_then(|json| serde_json::from_str::<Summary>(json).ok());
    let refolded = kept.is_none();
    let summary = match kept {
        Some(s) => s,
        None => {
            let mut s = Summary::default();
            for e in load_events(conn, row.id)? {
                s.add(&e);
            }
            s
        }
    };
    let decided = keep_decided.then(|| Decided {
        user: before.user.clone(),
        source: before.source.clone(),
        qualify: before.qualify.map(|q| {
            if row.partial_rules {
                Qualify {
                    min_duration_seconds: q.min_duration_seconds,
                    ..rules.qualify_for(&before.tracking_number)
                }
            } else {
                q
            }
        }),
        blocked: None,
    });
    let Some(mut after) = summary.decide(rules, decided.as_ref()) else {
        return Ok(());
    };
    // The current block list decides which calls count as blocked.
    if !keep_decided {
        let blocked = rules.block.blocks(&after.caller);
        if blocked != summary.rejected() {
            let d = Decided {
                user: after.user.clone(),
                source: after.source.clone(),
                qualify: None,
                blocked: Some(blocked),
            };
            if let Some(again) = summary.decide(rules, Some(&d)) {
                after = again;
            }
        }
    }
    // Keep what only other sources fill (recordings, backfill) as it was.
    after.recording_url.clone_from(&before.recording_url);
    after.voicemail_url.clone_from(&before.voicemail_url);
    after.captured_by.clone_from(&before.captured_by);
    let view = if dry_run { View::Preview } else { View::Stored };
    let priors = count_priors(conn, &after, rules, view)?;
    after.set_priors(priors);
    report.calls += 1;
    // A summary read from the row is written back as it was.
    let state = match (&row.state, refolded) {
        (Some(st), false) => st.clone(),
        _ => serde_json::to_string(&summary).map_err(|e| StorageError::Encode(e.to_string()))?,
    };
    if dry_run {
        if Place::of(&after) != Place::of(&before) {
            conn.prepare_cached(
                "INSERT OR REPLACE INTO temp.moved (id, caller_key, started_at, call_sid, counts)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                row.id,
                after.caller_key(),
                after.started_at,
                after.call_sid,
                after.counts_as_prior()
            ])?;
        }
    } else if after != before
        || refolded
        || row.partial_rules
        || row.stored_key != before.caller_key()
    {
        let stored = if row.stored_key == before.caller_key() {
            callrow::Stored::Row(&before)
        } else {
            callrow::Stored::Stale(&before)
        };
        write_call(conn, row.id, &after, &state, stored, rules.timezone)?;
        report.rows_written += 1;
    }
    if reported(&before, &after) {
        report.changed += 1;
        match (before.qualified, after.qualified) {
            (Some(true), Some(true)) => {}
            (_, Some(true)) => report.now_qualified += 1,
            (Some(true), _) => report.no_longer_qualified += 1,
            _ => {}
        }
        if before.outcome != after.outcome {
            report.outcome_changed += 1;
        }
        if before.user != after.user || before.source != after.source {
            report.attribution_changed += 1;
        }
        on_change(&Change { before, after });
    }
    Ok(())
}

/// Whether the schema upgrade left calls to decide again (a start-up interrupted by a
/// crash resumes here).
pub(crate) fn rederive_pending(conn: &Connection) -> Result<bool, StorageError> {
    Ok(conn
        .query_row("SELECT 1 FROM meta WHERE key = 'rederive'", [], |_| Ok(()))
        .optional()?
        .is_some())
}
