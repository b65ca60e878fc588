//! Which calls to export: the query string or the command line's flags, checked, then
//! turned into the page query's conditions.

use chrono::{DateTime, NaiveDate, TimeZone};
use chrono_tz::Tz;

use super::FilterError;
use crate::calls::CallOutcome;

/// Which calls, as a person gives them on the command line: the scope a share link
/// carries (`--user`, `--source`, `--qualified`, `--outcome`, `--first-time`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Scope {
    /// Only this user's calls
    #[arg(long, value_name = "U")]
    pub user: Option<String>,
    /// Only calls from this marketing source
    #[arg(long, value_name = "S")]
    pub source: Option<String>,
    /// Only qualified (true) or unqualified (false) calls
    #[arg(long, value_name = "true|false")]
    pub qualified: Option<String>,
    /// Only calls with these outcomes (comma-separated: blocked, voicemail, answered,
    /// abandoned, missed, failed)
    #[arg(long, value_name = "LIST")]
    pub outcome: Option<String>,
    /// Only first-time callers (true) or repeat callers (false)
    #[arg(long = "first-time", value_name = "true|false")]
    pub first_time: Option<String>,
}

/// The scope and a time range (`export`). Its [`FilterArgs::pairs`] go through
/// [`Filters::from_pairs`] exactly as an HTTP query does, so the command line and HTTP
/// can never disagree about a filter.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct FilterArgs {
    /// Only calls that started at or after this date (YYYY-MM-DD, in export.timezone) or RFC 3339 time
    #[arg(long, value_name = "D")]
    pub from: Option<String>,
    /// Only calls that started before this date or time (exclusive)
    #[arg(long, value_name = "D")]
    pub to: Option<String>,
    /// `--user`, `--source`, `--qualified`, `--outcome`, `--first-time`.
    #[command(flatten)]
    pub scope: Scope,
}

impl Scope {
    /// As `name=value` pairs.
    pub fn pairs(&self) -> Vec<(String, String)> {
        named(&[
            ("user", &self.user),
            ("source", &self.source),
            ("qualified", &self.qualified),
            ("outcome", &self.outcome),
            ("first_time", &self.first_time),
        ])
    }
}

impl FilterArgs {
    /// As `name=value` pairs, the form an HTTP query takes.
    pub fn pairs(&self) -> Vec<(String, String)> {
        let mut out = named(&[("from", &self.from), ("to", &self.to)]);
        out.extend(self.scope.pairs());
        out
    }
}

fn named(fields: &[(&str, &Option<String>)]) -> Vec<(String, String)> {
    fields
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| ((*k).to_owned(), v.clone())))
        .collect()
}

/// Which calls to export. Times are Unix seconds on `started_at`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    /// Inclusive lower bound.
    pub from: Option<i64>,
    /// Exclusive upper bound.
    pub to: Option<i64>,
    /// Exact user.
    pub user: Option<String>,
    /// Exact source.
    pub source: Option<String>,
    /// Qualified or not.
    pub qualified: Option<bool>,
    /// Any of these outcomes.
    pub outcome: Option<Vec<CallOutcome>>,
    /// First-time caller or not (calls whose caller is not counted match neither).
    pub first_time: Option<bool>,
}

/// Parses a `from`/`to` bound: a date (`YYYY-MM-DD`, midnight in `tz`) or RFC 3339.
pub fn parse_bound(name: &str, value: &str, tz: Tz) -> Result<i64, FilterError> {
    if let Ok(d) = NaiveDate::parse_from_str(value, "%Y-%m-%d")
        && value.len() == 10
    {
        let midnight = d.and_hms_opt(0, 0, 0).expect("midnight exists");
        // A DST gap at midnight: the first instant of that local day.
        let local = tz
            .from_local_datetime(&midnight)
            .earliest()
            .or_else(|| {
                (1..=180).find_map(|m| {
                    tz.from_local_datetime(&(midnight + chrono::Duration::minutes(m)))
                        .earliest()
                })
            })
            .ok_or_else(|| FilterError::NoSuchLocalTime {
                name: name.to_owned(),
                value: value.to_owned(),
                zone: tz.name().to_owned(),
            })?;
        return Ok(local.timestamp());
    }
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.timestamp())
        .map_err(|_| FilterError::NotATime {
            name: name.to_owned(),
            value: value.to_owned(),
        })
}

/// Parses `true` / `false`.
fn parse_bool(name: &str, value: &str) -> Result<bool, FilterError> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(FilterError::NotABool {
            name: name.to_owned(),
            value: value.to_owned(),
        }),
    }
}

/// Parses a comma-separated list of outcomes (each once, none empty).
fn parse_outcomes(value: &str) -> Result<Vec<CallOutcome>, FilterError> {
    let mut out = Vec::new();
    for part in value.split(',') {
        let o =
            CallOutcome::parse(part).ok_or_else(|| FilterError::NotAnOutcome(part.to_owned()))?;
        if !out.contains(&o) {
            out.push(o);
        }
    }
    out.sort();
    Ok(out)
}

impl Filters {
    /// From `name=value` pairs (a query string or the CLI flags), strictly: unknown or
    /// repeated names are errors, so a typo never exports everything.
    pub fn from_pairs(pairs: &[(String, String)], tz: Tz) -> Result<Filters, FilterError> {
        let mut f = Filters::default();
        let mut seen: Vec<&str> = Vec::new();
        for (k, v) in pairs {
            if seen.contains(&k.as_str()) {
                return Err(FilterError::Repeated(k.clone()));
            }
            seen.push(k);
            match k.as_str() {
                "from" => f.from = Some(parse_bound("from", v, tz)?),
                "to" => f.to = Some(parse_bound("to", v, tz)?),
                "user" => f.user = Some(v.clone()),
                "source" => f.source = Some(v.clone()),
                "qualified" => f.qualified = Some(parse_bool("qualified", v)?),
                "outcome" => f.outcome = Some(parse_outcomes(v)?),
                "first_time" => f.first_time = Some(parse_bool("first_time", v)?),
                other => return Err(FilterError::Unknown(other.to_owned())),
            }
        }
        Ok(f)
    }
}

/// The page query for these filters: only the conditions in use, so SQLite walks the
/// `(started_at, call_sid)` index from the last row of the previous page instead of
/// scanning the table (an `?1 IS NULL OR ...` form defeats the index).
pub(super) fn page_sql(f: &Filters, after: bool) -> String {
    let mut sql = format!(
        "SELECT {} FROM calls INDEXED BY calls_by_start WHERE 1",
        crate::storage::CALL_COLUMNS
    );
    if let Some(list) = &f.outcome {
        // Names from a fixed set, never the query's text: safe to write into the SQL.
        let names: Vec<String> = list.iter().map(|o| format!("'{}'", o.as_str())).collect();
        sql.push_str(&format!(" AND outcome IN ({})", names.join(", ")));
    }
    for (on, cond) in [
        (f.from.is_some(), " AND started_at >= :from"),
        (f.to.is_some(), " AND started_at < :to"),
        (f.user.is_some(), " AND user = :user"),
        (f.source.is_some(), " AND source = :source"),
        (f.qualified.is_some(), " AND qualified = :qualified"),
        (
            f.first_time.is_some(),
            " AND first_time_caller = :first_time",
        ),
        (
            after,
            " AND (started_at, call_sid) > (:after_t, :after_sid)",
        ),
    ] {
        if on {
            sql.push_str(cond);
        }
    }
    sql.push_str(" ORDER BY started_at, call_sid LIMIT :limit");
    sql
}
