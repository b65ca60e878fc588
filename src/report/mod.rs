/*!
The owner's report (`GET /report`): what the ads brought in a period, and who to call
back. Counts come from the summary the writer keeps (`storage::summary`, calls per
local hour, user, source and outcome), so a page reads a few thousand rows whatever
the number of calls; the call-back list walks the calls of the period newest first
through the start index and stops after [`CALL_BACK_ROWS`].

Files: `data` (the queries and the aggregation), `page` (the HTML, with maud, which
escapes every value), `svg` (the two charts, drawn here as inline SVG).
*/

use chrono::{Datelike, Duration, NaiveDate, TimeZone};
use chrono_tz::Tz;

mod data;
mod page;
mod svg;

pub use data::{CallBack, Report, Totals, load};
pub use page::{CSP, Links, render};

/// How many people the call-back list shows at most.
pub const CALL_BACK_ROWS: usize = 50;

/// The outcomes in the order the charts stack them.
pub const OUTCOMES: [&str; 7] = [
    "answered",
    "voicemail",
    "abandoned",
    "missed",
    "blocked",
    "failed",
    "pending",
];

/// Which calls a report covers: whole local days `[from, to)`, and the scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    /// First day shown.
    pub from: NaiveDate,
    /// The day after the last day shown.
    pub to: NaiveDate,
}

impl Period {
    /// The last `days` days, today included.
    pub fn last_days(today: NaiveDate, days: i64) -> Period {
        Period {
            from: today - Duration::days(days - 1),
            to: today + Duration::days(1),
        }
    }

    /// The month `today` is in.
    pub fn this_month(today: NaiveDate) -> Period {
        let from = today.with_day(1).unwrap_or(today);
        Period {
            from,
            to: next_month(from),
        }
    }

    /// The month before.
    pub fn last_month(today: NaiveDate) -> Period {
        let to = today.with_day(1).unwrap_or(today);
        let from = (to - Duration::days(1)).with_day(1).unwrap_or(to);
        Period { from, to }
    }

    /// Unix seconds of the first instant of `day` in `tz` (the first that exists).
    pub fn start_of(day: NaiveDate, tz: Tz) -> i64 {
        let midnight = day.and_hms_opt(0, 0, 0).unwrap_or_default();
        (0..=180)
            .find_map(|m| {
                tz.from_local_datetime(&(midnight + Duration::minutes(m)))
                    .earliest()
            })
            .map_or_else(|| midnight.and_utc().timestamp(), |t| t.timestamp())
    }

    /// How many days.
    pub fn days(&self) -> i64 {
        (self.to - self.from).num_days()
    }
}

fn next_month(first: NaiveDate) -> NaiveDate {
    let (y, m) = if first.month() == 12 {
        (first.year() + 1, 1)
    } else {
        (first.year(), first.month() + 1)
    };
    NaiveDate::from_ymd_opt(y, m, 1).unwrap_or(first)
}

/// The local day in `tz` that the instant `t` (Unix seconds) falls on.
pub fn local_day(tz: Tz, t: i64) -> NaiveDate {
    chrono::DateTime::from_timestamp(t, 0)
        .unwrap_or_default()
        .with_timezone(&tz)
        .date_naive()
}

#[cfg(test)]
mod tests;
