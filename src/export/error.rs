//! What can go wrong exporting: a filter a person typed (`400`, exit 2), or the
//! database, a file or the workbook writer (`503`, exit 1), with the cause kept.

use std::sync::Arc;

use crate::storage::StorageError;

/// A filter value that cannot be used; the sentence says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// Neither a date nor an RFC 3339 time.
    #[error(
        "`{name}` = {value:?} is not a date (YYYY-MM-DD) or an RFC 3339 time (2026-01-31T13:00:00Z)"
    )]
    NotATime {
        /// `from` or `to`.
        name: String,
        /// As given.
        value: String,
    },
    /// A date whose midnight falls in a time zone's gap and no later time that day exists.
    #[error("`{name}` = {value:?} does not exist in time zone {zone}")]
    NoSuchLocalTime {
        /// `from` or `to`.
        name: String,
        /// As given.
        value: String,
        /// The zone.
        zone: String,
    },
    /// `qualified` or `first_time` other than `true` / `false`.
    #[error("`{name}` = {value:?} must be true or false")]
    NotABool {
        /// The filter.
        name: String,
        /// What was given.
        value: String,
    },
    /// An `outcome` that is not one of the outcomes.
    #[error(
        "`outcome` {0:?} is not an outcome; give one or more of blocked, voicemail, answered, abandoned, missed, failed, separated by commas"
    )]
    NotAnOutcome(String),
    /// A filter given twice.
    #[error("filter `{0}` is given twice; give it once")]
    Repeated(String),
    /// An unknown filter name (a typo must not export everything).
    #[error("unknown filter `{0}`; use from, to, user, source, qualified, outcome or first_time")]
    Unknown(String),
    /// An unknown format.
    #[error("format {0:?} is not csv or xlsx")]
    Format(String),
}

/// A share link that does not grant what it asks for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShareError {
    /// Its query was changed, or the export token changed since (`403`).
    #[error("share link altered or revoked")]
    Altered,
    /// Past its expiry (`403`).
    #[error("share link expired")]
    Expired,
    /// A `from`/`to` added to it cannot be used (`400`).
    #[error(transparent)]
    Filter(#[from] FilterError),
}

impl ShareError {
    /// The HTTP status for it.
    pub fn status(&self) -> u16 {
        match self {
            ShareError::Filter(_) => 400,
            _ => 403,
        }
    }
}

/// An export that failed after its filters were accepted.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ExportError {
    /// The database could not be read.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Writing the output failed (a closed pipe included: see [`ExportError::is_broken_pipe`]).
    #[error("{what}: {source}")]
    Io {
        /// What was being written.
        what: String,
        /// Why.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The workbook writer failed.
    #[error("cannot write the workbook: {0}")]
    Workbook(Arc<rust_xlsxwriter::XlsxError>),
    /// More rows than one sheet holds.
    #[error(
        "more than 1,048,575 calls: too many rows for one Excel sheet; narrow the export with --from/--to or use CSV"
    )]
    TooManyRows,
}

impl ExportError {
    /// Whoever read the output went away (`| head`): not a failure of the export.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, ExportError::Io { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe)
    }

    /// An I/O failure while doing `what`.
    pub(crate) fn io(what: &str, e: std::io::Error) -> ExportError {
        ExportError::Io {
            what: what.to_owned(),
            source: Arc::new(e),
        }
    }
}

impl From<rust_xlsxwriter::XlsxError> for ExportError {
    fn from(e: rust_xlsxwriter::XlsxError) -> Self {
        ExportError::Workbook(Arc::new(e))
    }
}
