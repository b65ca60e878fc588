//! The report's numbers: the summary rows of the period, added up in every way the page
//! shows them, and the call-back list.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{Datelike, NaiveDate};
use chrono_tz::Tz;
use rusqlite::params;

use super::{CALL_BACK_ROWS, OUTCOMES, Period};
use crate::storage::{self, StorageError};

/// Counts over a set of calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Calls.
    pub calls: i64,
    /// Answered by a person.
    pub answered: i64,
    /// Missed or abandoned.
    pub missed: i64,
    /// A voicemail left (or the shop's machine took it).
    pub voicemail: i64,
    /// Qualified.
    pub qualified: i64,
    /// From first-time callers.
    pub first_time: i64,
    /// Seconds of talk of the answered calls.
    pub talk_seconds: i64,
}

impl Totals {
    fn add(&mut self, outcome: &str, calls: i64, qualified: i64, first_time: i64, talk: i64) {
        self.calls += calls;
        match outcome {
            "answered" => self.answered += calls,
            "missed" | "abandoned" => self.missed += calls,
            "voicemail" => self.voicemail += calls,
            _ => {}
        }
        self.qualified += qualified;
        self.first_time += first_time;
        self.talk_seconds += talk;
    }

    /// Qualified calls per call, in percent (none: no calls).
    pub fn qualified_rate(&self) -> Option<f64> {
        (self.calls > 0).then(|| 100.0 * self.qualified as f64 / self.calls as f64)
    }

    /// Average talk time of an answered call, in seconds (none: none answered).
    pub fn average_talk(&self) -> Option<i64> {
        (self.answered > 0).then(|| self.talk_seconds / self.answered)
    }
}

/// One person to call back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallBack {
    /// When their latest unanswered call started (Unix seconds).
    pub started_at: i64,
    /// Their number (E.164).
    pub caller: String,
    /// Caller ID name, as Twilio sent it.
    pub caller_name: String,
    /// Their city, as Twilio sent it.
    pub caller_city: String,
    /// Their state, as Twilio sent it.
    pub caller_state: String,
    /// Whose call it was.
    pub user: String,
    /// From which source.
    pub source: String,
    /// `missed`, `abandoned` or `voicemail`.
    pub outcome: String,
    /// The voicemail they left, if any.
    pub voicemail_url: String,
    /// How many unanswered calls from them in the period.
    pub calls: i64,
}

/// Everything a report page shows.
#[derive(Debug, Clone)]
pub struct Report {
    /// The days covered.
    pub period: Period,
    /// The zone of the days and hours.
    pub tz: Tz,
    /// Only this user's calls.
    pub user: Option<String>,
    /// Only this source's calls.
    pub source: Option<String>,
    /// All of them.
    pub totals: Totals,
    /// Per source, by name.
    pub by_source: Vec<(String, Totals)>,
    /// Per user, by name (empty when scoped to one user).
    pub by_user: Vec<(String, Totals)>,
    /// Per day of the period, calls per outcome in [`OUTCOMES`] order.
    pub per_day: Vec<(NaiveDate, [i64; 7])>,
    /// Calls by day of week (Monday first) and hour.
    pub heat: [[i64; 24]; 7],
    /// Whom to call back, newest first.
    pub call_back: Vec<CallBack>,
}

/// Reads a report from the database.
pub fn load(
    db: &Path,
    tz: Tz,
    period: Period,
    user: Option<String>,
    source: Option<String>,
) -> Result<Report, StorageError> {
    let conn = storage::open_calls_reader(db)?;
    // The primary key's range on `day` does the work; the scope is checked on the rows.
    let sql = "SELECT day, hour, user, source, outcome, calls, qualified, first_time,
            talk_seconds
         FROM report_hours
         WHERE day >= ?1 AND day < ?2 AND calls != 0
           AND (?3 IS NULL OR user = ?3) AND (?4 IS NULL OR source = ?4)";
    let from = period.from.format("%Y-%m-%d").to_string();
    let to = period.to.format("%Y-%m-%d").to_string();
    let mut totals = Totals::default();
    let mut by_source: BTreeMap<String, Totals> = BTreeMap::new();
    let mut by_user: BTreeMap<String, Totals> = BTreeMap::new();
    let days = period.days().max(0) as usize;
    let mut per_day: Vec<(NaiveDate, [i64; 7])> = period
        .from
        .iter_days()
        .take(days)
        .map(|d| (d, [0; 7]))
        .collect();
    let mut heat = [[0i64; 24]; 7];
    {
        // One short read transaction: the summary rows of the period.
        let mut stmt = conn.prepare(sql)?;
        let mut rows = stmt.query(params![from, to, user, source])?;
        while let Some(r) = rows.next()? {
            let day: String = r.get(0)?;
            let hour: i64 = r.get(1)?;
            let u: String = r.get(2)?;
            let s: String = r.get(3)?;
            let outcome: String = r.get(4)?;
            let (calls, q, ft, talk): (i64, i64, i64, i64) =
                (r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?);
            totals.add(&outcome, calls, q, ft, talk);
            by_source
                .entry(s)
                .or_default()
                .add(&outcome, calls, q, ft, talk);
            by_user
                .entry(u)
                .or_default()
                .add(&outcome, calls, q, ft, talk);
            let Ok(d) = NaiveDate::parse_from_str(&day, "%Y-%m-%d") else {
                continue;
            };
            let i = (d - period.from).num_days();
            if let (Ok(i), Some(o)) = (
                usize::try_from(i),
                OUTCOMES.iter().position(|n| *n == outcome),
            ) && let Some(slot) = per_day.get_mut(i)
            {
                slot.1[o] += calls;
            }
            let dow = d.weekday().num_days_from_monday() as usize;
            if let Ok(h) = usize::try_from(hour)
                && h < 24
            {
                heat[dow][h] += calls;
            }
        }
    }
    let call_back = call_back(&conn, tz, &period, user.as_deref(), source.as_deref())?;
    Ok(Report {
        period,
        tz,
        by_user: if user.is_some() {
            Vec::new()
        } else {
            by_user.into_iter().collect()
        },
        user,
        source,
        totals,
        by_source: by_source.into_iter().collect(),
        per_day,
        heat,
        call_back,
    })
}

/// Missed, abandoned and voicemail calls of the period whose caller has no later
/// answered call (to the same user), newest first, one row per caller.
fn call_back(
    conn: &rusqlite::Connection,
    tz: Tz,
    period: &Period,
    user: Option<&str>,
    source: Option<&str>,
) -> Result<Vec<CallBack>, StorageError> {
    // Newest first through the start index; each candidate's later calls through the
    // caller index.
    let sql = "SELECT started_at, caller, caller_name, caller_city, caller_state, user, source,
                outcome, voicemail_url, caller_key
         FROM calls AS c INDEXED BY calls_by_start
         WHERE started_at >= ?1 AND started_at < ?2
           AND outcome IN ('missed', 'abandoned', 'voicemail') AND caller_key IS NOT NULL
           AND (?3 IS NULL OR user = ?3) AND (?4 IS NULL OR source = ?4)
           AND NOT EXISTS (SELECT 1 FROM calls AS later
                           WHERE later.caller_key = c.caller_key
                             AND later.started_at > c.started_at
                             AND later.outcome = 'answered')
         ORDER BY started_at DESC, call_sid DESC";
    let from = Period::start_of(period.from, tz);
    let to = Period::start_of(period.to, tz);
    let mut stmt = conn.prepare(sql)?;
    let mut rows = stmt.query(params![from, to, user, source])?;
    let mut out: Vec<CallBack> = Vec::new();
    let mut keys: Vec<String> = Vec::new();
    while let Some(r) = rows.next()? {
        let key: String = r.get(9)?;
        if let Some(i) = keys.iter().position(|k| *k == key) {
            out[i].calls += 1;
            continue;
        }
        if out.len() == CALL_BACK_ROWS {
            // Only counting the listed callers' other calls would need the rest of the
            // period: the list shows the newest people, their counts within what was read.
            break;
        }
        keys.push(key);
        out.push(CallBack {
            started_at: r.get(0)?,
            caller: r.get(1)?,
            caller_name: r.get(2)?,
            caller_city: r.get(3)?,
            caller_state: r.get(4)?,
            user: r.get(5)?,
            source: r.get(6)?,
            outcome: r.get(7)?,
            voicemail_url: r.get(8)?,
            calls: 1,
        });
    }
    Ok(out)
}
