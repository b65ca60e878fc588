/*!
The spreadsheet export: CSV (streamed) and XLSX, over HTTP and from the command line.

Both paths run the same code ([`Filters`] → [`CsvStream`] / [`write_xlsx`]), so the same
filters give byte-identical CSV. Rows come from a read-only connection, fetched in pages
of 2,000 by `(started_at, call_sid)`, each page its own short read transaction: memory
stays flat however many rows there are, a client that goes away simply stops the
paging, and a slow download never holds a snapshot open (which would keep SQLite from
checkpointing and let the write-ahead log grow for as long as the download takes). A
call that changes while its export is running shows as it was when its page was read.

Workbooks are built in an unnamed temporary file (`O_TMPFILE`, or an unpredictable name
opened with `O_EXCL` and removed at once) in the database's own folder, one at a time,
in the connection's thread: never in a folder other local users can write, and never on
the threads that answer Twilio.

Cells cannot run as formulas: a text cell that starts with `=`, `+`, `-`, `@`, tab or CR
gets a `'` in front, except a plain phone number (`+` and digits only), which cannot run
and is kept as it is.

Files: `filters` (query and flags to SQL conditions), `pager` (rows in pages), `csv`
(the streamed CSV and cell safety), `xlsx` (the workbook), `share` (share links). The
HTTP side (auth, answers) is in `crate::routes::export`.
*/

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use chrono_tz::Tz;

use crate::config::Secret;

mod csv;
mod error;
mod filters;
mod json;
mod pager;
mod share;
mod xlsx;

pub use csv::{CsvStream, safe_cell};
pub use error::{ExportError, FilterError, ShareError};
pub use filters::{FilterArgs, Filters, Scope, parse_bound};
pub use json::call_object;
pub use share::{share_query, verify_share};
pub use xlsx::{write_xlsx, xlsx_tempfile};

/// The CSV/XLSX columns, in order. New columns are only ever appended.
pub const COLUMNS: [&str; 25] = [
    "call_sid",
    "user",
    "tracking_number",
    "source",
    "caller",
    "caller_name",
    "caller_city",
    "caller_state",
    "direction",
    "status",
    "answered",
    "qualified",
    "duration_seconds",
    "talk_seconds",
    "started_at",
    "ended_at",
    "started_at_local",
    "outcome",
    "ring_seconds",
    "first_time_caller",
    "prior_calls",
    "qualified_reason",
    "recording_url",
    "voicemail_url",
    "captured_by",
];

/// Rows fetched per query page.
const PAGE: usize = 2000;

/// What the HTTP export needs.
#[derive(Clone)]
pub struct Settings {
    /// The database.
    pub db_path: PathBuf,
    /// `None`: the HTTP export is off (404).
    pub token: Option<Secret>,
    /// Zone for `started_at_local` and date filters.
    pub timezone: Tz,
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// RFC 4180 CSV.
    Csv,
    /// Excel workbook.
    Xlsx,
    /// The report page (share links only).
    Report,
}

impl Format {
    /// From `csv` / `xlsx`.
    pub fn parse(s: &str) -> Result<Format, FilterError> {
        match s {
            "csv" => Ok(Format::Csv),
            "xlsx" => Ok(Format::Xlsx),
            "report" => Ok(Format::Report),
            _ => Err(FilterError::Format(s.to_owned())),
        }
    }

    /// File extension / path suffix.
    pub fn ext(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Xlsx => "xlsx",
            Format::Report => "report",
        }
    }
}

/// Writes the export to `out` (CSV) — the command line's path, same bytes as HTTP.
pub fn write_csv(
    db: &Path,
    filters: Filters,
    tz: Tz,
    out: &mut dyn Write,
) -> Result<(), ExportError> {
    let mut stream = CsvStream::open(db, filters, tz)?;
    io::copy(&mut stream, out)
        .map(|_| ())
        .map_err(|e| ExportError::io("cannot write the CSV", e))
}

/// The folder for temporary files: the database's own, which only the daemon writes.
pub fn private_tempdir(db: &Path) -> PathBuf {
    match db.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests;
