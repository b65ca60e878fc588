//! The CSV: streamed page by page, every text cell made safe for spreadsheets.

use std::io::{self, Read};
use std::path::Path;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::pager::Pager;
use super::{COLUMNS, Filters};
use crate::storage::StorageError;

/// Whether a text is a plain phone number (`+` and digits only).
fn is_plain_phone(s: &str) -> bool {
    s.len() > 1 && s.starts_with('+') && s[1..].bytes().all(|b| b.is_ascii_digit())
}

/// Characters a spreadsheet may skip before it looks for a formula: white space, the
/// no-break space, the byte-order mark, zero-width and direction marks.
fn is_invisible_lead(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '\u{00A0}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{2060}' | '\u{FEFF}'
        )
}

/// Characters that start a formula, in any locale: `= + - @`, their fullwidth and small
/// forms, the minus sign, and tab or CR (the contract's list).
fn is_trigger(c: char) -> bool {
    matches!(
        c,
        '=' | '+'
            | '-'
            | '@'
            | '\t'
            | '\r'
            | '\u{FF1D}'
            | '\u{FF0B}'
            | '\u{FF0D}'
            | '\u{FF20}'
            | '\u{FE62}'
            | '\u{FE63}'
            | '\u{FE66}'
            | '\u{2212}'
    )
}

/// Neutralises a text cell so no spreadsheet runs it as a formula: a cell that starts
/// with a trigger, or with invisible characters and then a trigger, gets a `'` in front;
/// a plain phone number (`+` and digits only) cannot run and is kept as it is.
pub fn safe_cell(s: &str) -> std::borrow::Cow<'_, str> {
    let mut chars = s.chars();
    let risky = match chars.next() {
        Some(c) if is_trigger(c) => true,
        Some(c) if is_invisible_lead(c) => s
            .chars()
            .find(|c| !is_invisible_lead(*c))
            .is_some_and(is_trigger),
        _ => false,
    };
    if risky && !is_plain_phone(s) {
        std::borrow::Cow::Owned(format!("'{s}"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// Appends one CSV record (RFC 4180, CRLF). A field is quoted when it holds `,`, `"`,
/// CR or LF, as RFC 4180 requires, and also `;`: a spreadsheet that splits on
/// semicolons (the default in many locales) must not cut a field into a new cell that
/// could start with `=`. (The csv crate quotes by a fixed set of characters that cannot
/// include `;` next to `,`, so this is done here.)
pub(crate) fn push_record<'a>(out: &mut Vec<u8>, fields: impl IntoIterator<Item = &'a str>) {
    for (i, f) in fields.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if f.bytes()
            .any(|b| matches!(b, b',' | b';' | b'"' | b'\r' | b'\n'))
        {
            out.push(b'"');
            for b in f.bytes() {
                if b == b'"' {
                    out.push(b'"');
                }
                out.push(b);
            }
            out.push(b'"');
        } else {
            out.extend_from_slice(f.as_bytes());
        }
    }
    out.extend_from_slice(b"\r\n");
}

fn rfc3339(t: i64) -> String {
    DateTime::<Utc>::from_timestamp(t, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub(super) fn local_naive(t: i64, tz: Tz) -> chrono::NaiveDateTime {
    DateTime::<Utc>::from_timestamp(t, 0)
        .unwrap_or_default()
        .with_timezone(&tz)
        .naive_local()
}

fn tri(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "true",
        Some(false) => "false",
        None => "",
    }
}

fn num(v: Option<i64>) -> String {
    v.map(|n| n.to_string()).unwrap_or_default()
}

/// The export as a stream of CSV bytes: header, then rows page by page.
pub struct CsvStream {
    pager: Pager,
    tz: Tz,
    buf: Vec<u8>,
    pos: usize,
    header_done: bool,
    finished: bool,
}

impl CsvStream {
    /// Opens the snapshot; fails when the database cannot be read.
    pub fn open(db: &Path, filters: Filters, tz: Tz) -> Result<CsvStream, StorageError> {
        Ok(CsvStream {
            pager: Pager::open(db, filters)?,
            tz,
            buf: Vec::with_capacity(256 * 1024),
            pos: 0,
            header_done: false,
            finished: false,
        })
    }

    fn fill(&mut self) -> io::Result<()> {
        self.buf.clear();
        self.pos = 0;
        if !self.header_done {
            self.header_done = true;
            push_record(&mut self.buf, COLUMNS);
        } else {
            let page = self.pager.next_page().map_err(io::Error::other)?;
            if page.is_empty() {
                self.finished = true;
            }
            for r in &page {
                let started = rfc3339(r.started_at);
                let ended = r.ended_at.map(rfc3339).unwrap_or_default();
                let local = local_naive(r.started_at, self.tz)
                    .format("%Y-%m-%d %H:%M:%S")
                    .to_string();
                let duration = num(r.duration_seconds);
                let talk = num(r.talk_seconds);
                let ring = num(r.ring_seconds);
                let prior = num(r.prior_calls);
                push_record(
                    &mut self.buf,
                    [
                        &*safe_cell(&r.call_sid),
                        &*safe_cell(&r.user),
                        &*safe_cell(&r.tracking_number),
                        &*safe_cell(&r.source),
                        &*safe_cell(&r.caller),
                        &*safe_cell(&r.caller_name),
                        &*safe_cell(&r.caller_city),
                        &*safe_cell(&r.caller_state),
                        &*safe_cell(&r.direction),
                        &*safe_cell(&r.status),
                        tri(r.answered),
                        tri(r.qualified),
                        &duration,
                        &talk,
                        &started,
                        &ended,
                        &local,
                        r.outcome.map_or("", |o| o.as_str()),
                        &ring,
                        tri(r.first_time_caller),
                        &prior,
                        &*safe_cell(&r.qualified_reason),
                        &*safe_cell(&r.recording_url),
                        &*safe_cell(&r.voicemail_url),
                        &*safe_cell(&r.captured_by),
                    ],
                );
            }
        }
        Ok(())
    }
}

impl Read for CsvStream {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.buf.len() {
            if self.finished {
                return Ok(0);
            }
            self.fill()?;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
