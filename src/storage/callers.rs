//! First-time callers: a call's earlier calls from the same caller to the same user,
//! counted in start order through the `calls_by_caller` index (`caller_key`,
//! `started_at`, `counted`; a tie in one second reads the row for its `call_sid`), so a count costs the same at 10 calls or 10
//! million. When a call takes its place among its caller's calls (it is new, its start
//! moved, or it became blocked), the calls after it are decided again: the flags are as
//! if calls had arrived in the order they started.

use rusqlite::{Connection, params};

use super::StorageError;
use super::callrow::{CALL_COLUMN_COUNT, CALL_COLUMNS, call_from_row};
use crate::calls::Call;
use crate::config::Rules;

const DAY: i64 = 86_400;
/// The longest lookback the config allows: a call can change the flags of its caller's
/// calls up to this long after it (each uses the lookback it was decided with).
const MAX_LOOKBACK_DAYS: i64 = 3_650;

/// Where a call sits among its caller's calls (what other calls' counts depend on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Place {
    key: Option<String>,
    started_at: i64,
    counts: bool,
}

impl Place {
    pub(crate) fn of(c: &Call) -> Place {
        Place {
            key: c.caller_key(),
            started_at: c.started_at,
            counts: c.counts_as_prior(),
        }
    }
}

/// Which calls count: those in the table, or (for a dry run) those in the table as
/// `temp.moved` says they would be after the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum View {
    Stored,
    Preview,
}

pub(crate) const COUNT_STORED: &str = "SELECT count(*) FROM calls
    WHERE caller_key = ?1 AND started_at > ?2
      AND (started_at < ?3 OR (started_at = ?3 AND call_sid < ?4))
      AND counted";
const COUNT_PREVIEW: &str = "SELECT
    (SELECT count(*) FROM calls
     WHERE caller_key = ?1 AND started_at > ?2
       AND (started_at < ?3 OR (started_at = ?3 AND call_sid < ?4))
       AND counted AND id NOT IN (SELECT id FROM temp.moved))
  + (SELECT count(*) FROM temp.moved
     WHERE caller_key = ?1 AND started_at > ?2
       AND (started_at < ?3 OR (started_at = ?3 AND call_sid < ?4)) AND counts)";

/// The number of earlier calls of `c`'s caller within its lookback (`None` for a
/// caller that is not counted). Earlier: started before it, or at the same second
/// with a smaller `CallSid` (the export's order). A call exactly `lookback` days
/// before no longer counts: "no call for 365 days".
pub(crate) fn count_priors(
    conn: &Connection,
    c: &Call,
    rules: &Rules,
    view: View,
) -> Result<Option<i64>, StorageError> {
    let Some(key) = c.caller_key() else {
        return Ok(None);
    };
    let since = c.started_at - c.lookback_days(rules) as i64 * DAY;
    let sql = match view {
        View::Stored => COUNT_STORED,
        View::Preview => COUNT_PREVIEW,
    };
    let n: i64 = conn
        .prepare_cached(sql)?
        .query_row(params![key, since, c.started_at, c.call_sid], |r| r.get(0))?;
    Ok(Some(n))
}

/// A new call's place in one pass over its caller's index entries around it: how many
/// earlier calls fall within its lookback, and whether any later call exists (then
/// [`refresh_later`] has work to do). For the usual new call, the newest of its caller,
/// this is the only look at the index.
pub(crate) fn new_call_place(
    conn: &Connection,
    c: &Call,
    rules: &Rules,
) -> Result<(Option<i64>, bool), StorageError> {
    let Some(key) = c.caller_key() else {
        return Ok((None, false));
    };
    let since = c.started_at - c.lookback_days(rules) as i64 * DAY;
    let mut stmt = conn.prepare_cached(
        "SELECT started_at, counted, id FROM calls
         WHERE caller_key = ?1 AND started_at > ?2 AND started_at <= ?3",
    )?;
    let mut rows = stmt.query(params![key, since, c.started_at + MAX_LOOKBACK_DAYS * DAY])?;
    let (mut priors, mut later) = (0i64, false);
    while let Some(r) = rows.next()? {
        let (start, counted, id): (i64, bool, i64) = (r.get(0)?, r.get(1)?, r.get(2)?);
        let earlier = start < c.started_at
            || (start == c.started_at && {
                // The same second: the export's order, by CallSid.
                let sid: String = conn
                    .prepare_cached("SELECT call_sid FROM calls WHERE id = ?1")?
                    .query_row([id], |r| r.get(0))?;
                sid < c.call_sid
            });
        if earlier {
            priors += i64::from(counted);
        } else {
            later = true;
        }
    }
    Ok((Some(priors), later))
}

/// A caller's calls from ?2 to ?3 (other than ?4) whose lookback (?5 when not fixed
/// yet) reaches back before ?6.
pub(crate) static LATER: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {CALL_COLUMNS}, id FROM calls
         WHERE caller_key = ?1 AND started_at >= ?2 AND started_at <= ?3 AND id != ?4
           AND started_at - coalesce(lookback_days, ?5) * {DAY} < ?6"
    )
});

/// After the call `call_id` (`call_sid`) moved from `old` (None: it is new) to `new`,
/// adjusts the first-time flag, prior count and qualification of the calls after
/// either place that it enters or leaves the lookback of: by one each, so a caller
/// with many calls costs one pass over the calls after this one, not a count for each.
/// Returns how many rows changed.
pub(crate) fn refresh_later(
    conn: &Connection,
    rules: &Rules,
    call_id: i64,
    call_sid: &str,
    old: Option<&Place>,
    new: &Place,
) -> Result<usize, StorageError> {
    let mut changed = 0;
    let mut keys: Vec<&str> = Vec::with_capacity(2);
    for p in old.into_iter().chain(std::iter::once(new)) {
        if let Some(k) = p.key.as_deref()
            && !keys.contains(&k)
        {
            keys.push(k);
        }
    }
    for key in keys {
        let mine = |p: &Place| p.key.as_deref() == Some(key) && p.counts;
        let was = old.filter(|p| mine(p));
        let now = Some(new).filter(|p| mine(p));
        let starts = [was, now].into_iter().flatten().map(|p| p.started_at);
        let (Some(from), Some(last)) = (starts.clone().min(), starts.max()) else {
            continue;
        };
        let mut stmt = conn.prepare_cached(&LATER)?;
        let later: Vec<(Call, i64)> = stmt
            .query_map(
                params![
                    key,
                    from,
                    last + MAX_LOOKBACK_DAYS * DAY,
                    call_id,
                    rules.qualify.first_time_lookback_days as i64,
                    last
                ],
                |r| Ok((call_from_row(r)?, r.get(CALL_COLUMN_COUNT)?)),
            )?
            .collect::<Result<_, _>>()?;
        for (mut c, id) in later {
            let since = c.started_at - c.lookback_days(rules) as i64 * DAY;
            let counts = |p: Option<&Place>| {
                p.is_some_and(|p| {
                    (p.started_at, call_sid) < (c.started_at, c.call_sid.as_str())
                        && p.started_at > since
                }) as i64
            };
            let delta = counts(now) - counts(was);
            if delta == 0 {
                continue;
            }
            let priors = match c.prior_calls {
                Some(n) => Some((n + delta).max(0)),
                None => count_priors(conn, &c, rules, View::Stored)?,
            };
            let before = c.clone();
            c.set_priors(priors);
            if c != before {
                super::summary::adjust(conn, rules.timezone, Some(&before), &c)?;
                conn.prepare_cached(
                    "UPDATE calls SET first_time_caller = ?2, prior_calls = ?3, qualified = ?4,
                        qualified_reason = ?5 WHERE id = ?1",
                )?
                .execute(params![
                    id,
                    c.first_time_caller,
                    c.prior_calls,
                    c.qualified,
                    c.qualified_reason
                ])?;
                changed += 1;
            }
        }
    }
    Ok(changed)
}
