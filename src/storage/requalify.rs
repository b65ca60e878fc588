//! Deciding stored calls again from their events: `calltrackd requalify` (the current
//! rules for every call) and the upgrade to schema 4 (each call's own rules kept).
//!
//! Calls are taken in start order, so when a call's first-time flag is counted every
//! earlier call of its caller has already been decided with the same rules. The work is
//! cut into short transactions (about 2 ms each when the daemon may be running, with a
//! pause after each for its writer), so a webhook never waits more than a few
//! milliseconds. A dry run reads only: calls that would move among their caller's calls
//! are noted in a temporary table, which the counting then reads instead.

use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::StorageError;
use super::callers::{Place, View, count_priors};
use super::callrow::{CALL_COLUMN_COUNT, CALL_COLUMNS, call_from_row, upsert_call};
use super::rows::load_events;
use crate::calls::{Call, Decided, Summary};
use crate::config::{Qualify, Rules};

/// How hard to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Short transactions with a pause after each: the daemon may be taking webhooks.
    Share,
    /// Long transactions: nothing else is writing (the daemon's own start-up).
    Alone,
}

impl Pace {
    fn budget(self) -> Duration {
        match self {
            Pace::Share => Duration::from_millis(2),
            Pace::Alone => Duration::from_millis(500),
        }
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
pub fn requalify(
    conn: &mut Connection,
    rules: &Rules,
    keep_decided: bool,
    dry_run: bool,
    pace: Pace,
    on_change: &mut dyn FnMut(&Change),
) -> Result<Requalified, StorageError> {
    // What is re-derived can always be re-derived again: its commits need not wait for
    // the disk (the daemon's next commit, or a checkpoint, makes them durable).
    conn.execute_batch("PRAGMA synchronous = NORMAL")?;
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
        let tx = conn.transaction_with_behavior(behavior)?;
        let begun = Instant::now();
        let mut done = false;
        while begun.elapsed() < pace.budget() {
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
        if done {
            return Ok(report);
        }
        if pace == Pace::Share {
            // Let the daemon's writer in (it polls every 200 us while waiting).
            std::thread::sleep(Duration::from_millis(1));
        }
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
}

fn next_page(
    conn: &Connection,
    after: Option<&(i64, String)>,
) -> Result<Vec<Stored>, StorageError> {
    let (t, sid) = after.cloned().unwrap_or((i64::MIN, String::new()));
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {CALL_COLUMNS}, id, state, abandon_seconds IS NULL FROM calls
         INDEXED BY calls_by_start
         WHERE (started_at, call_sid) > (?1, ?2) ORDER BY started_at, call_sid LIMIT ?3"
    ))?;
    let rows = stmt.query_map(params![t, sid, PAGE as i64], |r| {
        Ok(Stored {
            call: call_from_row(r)?,
            id: r.get(CALL_COLUMN_COUNT)?,
            state: r.get(CALL_COLUMN_COUNT + 1)?,
            partial_rules: r.get(CALL_COLUMN_COUNT + 2)?,
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
    let mut summary = Summary::default();
    for e in load_events(conn, row.id)? {
        summary.add(&e);
    }
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
    });
    let Some(mut after) = summary.decide(rules, decided.as_ref()) else {
        return Ok(());
    };
    // Keep what only other sources fill (recordings, backfill) as it was.
    after.recording_url.clone_from(&before.recording_url);
    after.voicemail_url.clone_from(&before.voicemail_url);
    after.captured_by.clone_from(&before.captured_by);
    let view = if dry_run { View::Preview } else { View::Stored };
    let priors = count_priors(conn, &after, rules, view)?;
    after.set_priors(priors);
    report.calls += 1;
    let state = serde_json::to_string(&summary).map_err(|e| StorageError::Encode(e.to_string()))?;
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
    } else if after != before || row.state.as_deref() != Some(state.as_str()) || row.partial_rules {
        upsert_call(conn, row.id, &after, &state)?;
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
