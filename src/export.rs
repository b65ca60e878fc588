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

HTTP auth is `Authorization: Bearer <token>` or Basic with the token as password,
compared in constant time; a share link instead carries its filters, an expiry and an
HMAC-SHA256 (keyed by the export token) in its query.
*/

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use hmac::{Hmac, KeyInit, Mac};
use rusqlite::Connection;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::config::Secret;
use crate::http::{Body, Reply, Request, Response};
use crate::logging::escaped;
use crate::storage::{self, StorageError};

/// The CSV/XLSX columns, in order. New columns are only ever appended.
pub const COLUMNS: [&str; 17] = [
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
}

impl Format {
    /// From `csv` / `xlsx`.
    pub fn parse(s: &str) -> Result<Format, String> {
        match s {
            "csv" => Ok(Format::Csv),
            "xlsx" => Ok(Format::Xlsx),
            _ => Err(format!("format {s:?} is not csv or xlsx")),
        }
    }

    /// File extension / path suffix.
    pub fn ext(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Xlsx => "xlsx",
        }
    }
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
}

/// Parses a `from`/`to` bound: a date (`YYYY-MM-DD`, midnight in `tz`) or RFC 3339.
pub fn parse_bound(name: &str, value: &str, tz: Tz) -> Result<i64, String> {
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
            .ok_or_else(|| {
                format!(
                    "`{name}` = {value:?} does not exist in time zone {}",
                    tz.name()
                )
            })?;
        return Ok(local.timestamp());
    }
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.timestamp())
        .map_err(|_| {
            format!(
                "`{name}` = {value:?} is not a date (YYYY-MM-DD) or an RFC 3339 time (2026-01-31T13:00:00Z)"
            )
        })
}

/// Parses `true` / `false`.
pub fn parse_qualified(value: &str) -> Result<bool, String> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("`qualified` = {value:?} must be true or false")),
    }
}

impl Filters {
    /// From `name=value` pairs (a query string or the CLI flags), strictly: unknown or
    /// repeated names are errors, so a typo never exports everything.
    pub fn from_pairs(pairs: &[(String, String)], tz: Tz) -> Result<Filters, String> {
        let mut f = Filters::default();
        let mut seen: Vec<&str> = Vec::new();
        for (k, v) in pairs {
            if seen.contains(&k.as_str()) {
                return Err(format!("filter `{k}` is given twice; give it once"));
            }
            seen.push(k);
            match k.as_str() {
                "from" => f.from = Some(parse_bound("from", v, tz)?),
                "to" => f.to = Some(parse_bound("to", v, tz)?),
                "user" => f.user = Some(v.clone()),
                "source" => f.source = Some(v.clone()),
                "qualified" => f.qualified = Some(parse_qualified(v)?),
                other => {
                    return Err(format!(
                        "unknown filter `{other}`; use from, to, user, source or qualified"
                    ));
                }
            }
        }
        Ok(f)
    }
}

/// One exported row, straight from the `calls` table.
#[derive(Debug, Clone)]
struct Row {
    call_sid: String,
    user: String,
    tracking_number: String,
    source: String,
    caller: String,
    caller_name: String,
    caller_city: String,
    caller_state: String,
    direction: String,
    status: String,
    answered: Option<bool>,
    qualified: Option<bool>,
    duration_seconds: Option<i64>,
    talk_seconds: Option<i64>,
    started_at: i64,
    ended_at: Option<i64>,
}

/// The page query for these filters: only the conditions in use, so SQLite walks the
/// `(started_at, call_sid)` index from the last row of the previous page instead of
/// scanning the table (an `?1 IS NULL OR ...` form defeats the index).
fn page_sql(f: &Filters, after: bool) -> String {
    let mut sql = String::from(
        "SELECT call_sid, user, tracking_number, source, caller, caller_name, caller_city,
            caller_state, direction, status, answered, qualified, duration_seconds, talk_seconds,
            started_at, ended_at
         FROM calls INDEXED BY calls_by_start WHERE 1",
    );
    for (on, cond) in [
        (f.from.is_some(), " AND started_at >= :from"),
        (f.to.is_some(), " AND started_at < :to"),
        (f.user.is_some(), " AND user = :user"),
        (f.source.is_some(), " AND source = :source"),
        (f.qualified.is_some(), " AND qualified = :qualified"),
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

/// Pages through the filtered calls, each page in its own read transaction.
struct Pager {
    conn: Connection,
    filters: Filters,
    after: Option<(i64, String)>,
    done: bool,
}

impl Pager {
    fn open(db: &Path, filters: Filters) -> Result<Pager, StorageError> {
        let conn = storage::open_reader(db)?;
        // No BEGIN: each page's statement is its own read transaction, ended when its
        // rows are collected, so no snapshot outlives a page.
        Ok(Pager {
            conn,
            filters,
            after: None,
            done: false,
        })
    }

    fn next_page(&mut self) -> Result<Vec<Row>, StorageError> {
        if self.done {
            return Ok(Vec::new());
        }
        let f = &self.filters;
        let mut stmt = self
            .conn
            .prepare_cached(&page_sql(f, self.after.is_some()))?;
        let limit = PAGE as i64;
        let mut named: Vec<(&str, &dyn rusqlite::ToSql)> = vec![(":limit", &limit)];
        if let Some(v) = &f.from {
            named.push((":from", v));
        }
        if let Some(v) = &f.to {
            named.push((":to", v));
        }
        if let Some(v) = &f.user {
            named.push((":user", v));
        }
        if let Some(v) = &f.source {
            named.push((":source", v));
        }
        if let Some(v) = &f.qualified {
            named.push((":qualified", v));
        }
        if let Some((t, sid)) = &self.after {
            named.push((":after_t", t));
            named.push((":after_sid", sid));
        }
        let rows = stmt.query_map(named.as_slice(), |r| {
            Ok(Row {
                call_sid: r.get(0)?,
                user: r.get(1)?,
                tracking_number: r.get(2)?,
                source: r.get(3)?,
                caller: r.get(4)?,
                caller_name: r.get(5)?,
                caller_city: r.get(6)?,
                caller_state: r.get(7)?,
                direction: r.get(8)?,
                status: r.get(9)?,
                answered: r.get(10)?,
                qualified: r.get(11)?,
                duration_seconds: r.get(12)?,
                talk_seconds: r.get(13)?,
                started_at: r.get(14)?,
                ended_at: r.get(15)?,
            })
        })?;
        let page: Vec<Row> = rows.collect::<Result<_, _>>()?;
        if page.len() < PAGE {
            self.done = true;
        }
        if let Some(last) = page.last() {
            self.after = Some((last.started_at, last.call_sid.clone()));
        }
        Ok(page)
    }
}

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
fn push_record<'a>(out: &mut Vec<u8>, fields: impl IntoIterator<Item = &'a str>) {
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

fn local_naive(t: i64, tz: Tz) -> chrono::NaiveDateTime {
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

/// Writes the filtered calls as an XLSX workbook to `out`; the workbook writer's own
/// temporary files (unnamed) go into `tempdir`.
pub fn write_xlsx(
    db: &Path,
    filters: Filters,
    tz: Tz,
    out: &mut std::fs::File,
    tempdir: &Path,
) -> Result<u64, String> {
    use rust_xlsxwriter::{Format as XFormat, Workbook};
    let xerr = |e: rust_xlsxwriter::XlsxError| format!("cannot write the workbook: {e}");
    let mut pager = Pager::open(db, filters).map_err(|e| e.to_string())?;
    let mut wb = Workbook::new();
    wb.set_tempdir(tempdir).map_err(xerr)?;
    let mut ws = wb.new_worksheet_with_constant_memory().map_err(xerr)?;
    ws.set_name("Calls").map_err(xerr)?;
    let bold = XFormat::new().set_bold();
    let when = XFormat::new().set_num_format("yyyy-mm-dd hh:mm:ss");
    for (c, name) in COLUMNS.iter().enumerate() {
        ws.write_string_with_format(0, c as u16, *name, &bold)
            .map_err(xerr)?;
    }
    let mut row: u32 = 0;
    loop {
        let page = pager.next_page().map_err(|e| e.to_string())?;
        if page.is_empty() {
            break;
        }
        for r in page {
            row += 1;
            if row >= 1_048_576 {
                return Err("more than 1,048,575 calls: too many rows for one Excel sheet; narrow the export with --from/--to or use CSV".into());
            }
            let texts = [
                (0u16, &r.call_sid),
                (1, &r.user),
                (2, &r.tracking_number),
                (3, &r.source),
                (4, &r.caller),
                (5, &r.caller_name),
                (6, &r.caller_city),
                (7, &r.caller_state),
                (8, &r.direction),
                (9, &r.status),
            ];
            for (c, v) in texts {
                if !v.is_empty() {
                    ws.write_string(row, c, v.as_str()).map_err(xerr)?;
                }
            }
            if let Some(a) = r.answered {
                ws.write_boolean(row, 10, a).map_err(xerr)?;
            }
            if let Some(q) = r.qualified {
                ws.write_boolean(row, 11, q).map_err(xerr)?;
            }
            if let Some(d) = r.duration_seconds {
                ws.write_number(row, 12, d as f64).map_err(xerr)?;
            }
            if let Some(t) = r.talk_seconds {
                ws.write_number(row, 13, t as f64).map_err(xerr)?;
            }
            let utc = |t: i64| {
                DateTime::<Utc>::from_timestamp(t, 0)
                    .unwrap_or_default()
                    .naive_utc()
            };
            ws.write_datetime_with_format(row, 14, utc(r.started_at), &when)
                .map_err(xerr)?;
            if let Some(e) = r.ended_at {
                ws.write_datetime_with_format(row, 15, utc(e), &when)
                    .map_err(xerr)?;
            }
            ws.write_datetime_with_format(row, 16, local_naive(r.started_at, tz), &when)
                .map_err(xerr)?;
        }
    }
    ws.set_freeze_panes(1, 0).map_err(xerr)?;
    ws.autofilter(0, 0, row, (COLUMNS.len() - 1) as u16)
        .map_err(xerr)?;
    for (c, w) in [
        (0u16, 36.0),
        (1, 18.0),
        (2, 15.0),
        (3, 16.0),
        (4, 15.0),
        (5, 18.0),
        (14, 20.0),
        (15, 20.0),
        (16, 20.0),
    ] {
        ws.set_column_width(c, w).map_err(xerr)?;
    }
    wb.push_worksheet(ws);
    wb.save_to_writer(&mut *out).map_err(xerr)?;
    Ok(row as u64)
}

/// Writes the export to `out` (CSV) — the command line's path, same bytes as HTTP.
pub fn write_csv(db: &Path, filters: Filters, tz: Tz, out: &mut dyn Write) -> Result<(), String> {
    let mut stream = CsvStream::open(db, filters, tz).map_err(|e| e.to_string())?;
    io::copy(&mut stream, out)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

// ---------------------------------------------------------------- share links

type HmacSha256 = Hmac<Sha256>;

/// The query parameters a share link signs (besides `expires` and `sig`).
const SHARE_SCOPE: [&str; 3] = ["user", "source", "qualified"];

fn share_mac(
    token: &Secret,
    format: Format,
    scope: &[(String, String)],
    expires: i64,
) -> HmacSha256 {
    let mut m =
        HmacSha256::new_from_slice(token.expose().as_bytes()).expect("HMAC takes any key length");
    m.update(b"calltrackd share link v1\n");
    m.update(format.ext().as_bytes());
    for name in SHARE_SCOPE {
        m.update(b"\n");
        match scope.iter().find(|(k, _)| k == name) {
            Some((_, v)) => {
                m.update(name.as_bytes());
                m.update(b"=");
                m.update(v.as_bytes());
            }
            None => m.update(b"-"),
        }
    }
    m.update(format!("\nexpires={expires}").as_bytes());
    m
}

/// The share link's query string for these scope filters.
pub fn share_query(
    token: &Secret,
    format: Format,
    scope: &[(String, String)],
    expires: i64,
) -> String {
    let sig = B64URL.encode(
        share_mac(token, format, scope, expires)
            .finalize()
            .into_bytes(),
    );
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    for name in SHARE_SCOPE {
        if let Some((_, v)) = scope.iter().find(|(k, _)| k == name) {
            pairs.push((name, v));
        }
    }
    let expires = expires.to_string();
    pairs.push(("expires", &expires));
    pairs.push(("sig", &sig));
    serde_urlencoded::to_string(&pairs).unwrap_or_default()
}

/// Checks a share link's query; returns the filters it grants (plus any `from`/`to`).
fn verify_share(
    token: &Secret,
    format: Format,
    pairs: &[(String, String)],
    now: i64,
    tz: Tz,
) -> Result<Filters, (u16, String)> {
    let forbidden = |m: &str| (403, m.to_owned());
    let mut scope = Vec::new();
    let mut dates = Vec::new();
    let (mut expires, mut sig) = (None, None);
    for (k, v) in pairs {
        let slot = match k.as_str() {
            "expires" => &mut expires,
            "sig" => &mut sig,
            "from" | "to" => {
                dates.push((k.clone(), v.clone()));
                continue;
            }
            k if SHARE_SCOPE.contains(&k) => {
                if scope.iter().any(|(n, _)| n == k) {
                    return Err(forbidden("share link altered"));
                }
                scope.push((k.to_owned(), v.clone()));
                continue;
            }
            _ => return Err(forbidden("share link altered")),
        };
        if slot.replace(v.clone()).is_some() {
            return Err(forbidden("share link altered"));
        }
    }
    let expires: i64 = expires
        .and_then(|e| e.parse().ok())
        .ok_or_else(|| forbidden("share link altered"))?;
    let sig = sig
        .and_then(|s| B64URL.decode(s).ok())
        .ok_or_else(|| forbidden("share link altered"))?;
    if share_mac(token, format, &scope, expires)
        .verify_slice(&sig)
        .is_err()
    {
        return Err(forbidden("share link altered or revoked"));
    }
    if now >= expires {
        return Err(forbidden("share link expired"));
    }
    let mut all = scope;
    all.extend(dates);
    Filters::from_pairs(&all, tz).map_err(|e| (400, e))
}

// ---------------------------------------------------------------- HTTP

fn authorized(token: &Secret, req: &Request) -> bool {
    let Some(h) = req.header("Authorization") else {
        return false;
    };
    // The scheme is case-insensitive (RFC 9110): `Bearer`, `bearer`, `BEARER`.
    let (scheme, rest) = h.trim().split_once(' ').unwrap_or((h.trim(), ""));
    let given: Vec<u8> = if scheme.eq_ignore_ascii_case("bearer") {
        rest.trim().as_bytes().to_vec()
    } else if scheme.eq_ignore_ascii_case("basic") {
        match B64.decode(rest.trim()) {
            Ok(raw) => match raw.iter().position(|&c| c == b':') {
                Some(i) => raw[i + 1..].to_vec(),
                None => return false,
            },
            Err(_) => return false,
        }
    } else {
        return false;
    };
    bool::from(given.ct_eq(token.expose().as_bytes()))
}

fn unauthorized() -> Response {
    Response::text(401, "authentication required: use the export token as a Bearer token or as the Basic password\n")
        .with_header("WWW-Authenticate", "Basic realm=\"calltrackd\"")
}

/// `GET /calls.csv` and `GET /calls.xlsx` (method already checked). A workbook is built
/// later, in the connection's thread.
pub fn http_export(s: &Settings, req: &Request) -> Reply {
    match checked_filters(s, req) {
        Ok((Format::Csv, filters)) => Reply::Now(csv_response(s, filters)),
        Ok((Format::Xlsx, filters)) => {
            let s = s.clone();
            Reply::Later(Box::new(move || xlsx_response(&s, filters)))
        }
        Err(r) => Reply::Now(r),
    }
}

/// Export on, credentials, filters: the format and the filters, or the refusal.
fn checked_filters(s: &Settings, req: &Request) -> Result<(Format, Filters), Response> {
    let Some(token) = &s.token else {
        return Err(Response::text(
            404,
            "not found (the HTTP export is off: no export token is configured)\n",
        ));
    };
    let format = if req.path().ends_with(".xlsx") {
        Format::Xlsx
    } else {
        Format::Csv
    };
    let pairs: Vec<(String, String)> = match req.query() {
        Some(q) => match serde_urlencoded::from_str(q) {
            Ok(p) => p,
            Err(_) => {
                return Err(Response::text(400, "the query string cannot be decoded\n"));
            }
        },
        None => Vec::new(),
    };
    let filters = if pairs.iter().any(|(k, _)| k == "sig") {
        verify_share(token, format, &pairs, Utc::now().timestamp(), s.timezone).map_err(
            |(status, msg)| {
                log::warn!("export: {msg}: {status}");
                Response::text(status, format!("{}\n", escaped(&msg)))
            },
        )?
    } else {
        if !authorized(token, req) {
            log::warn!("export: missing or wrong credentials: 401");
            return Err(unauthorized());
        }
        Filters::from_pairs(&pairs, s.timezone)
            .map_err(|msg| Response::text(400, format!("{}\n", escaped(&msg))))?
    };
    Ok((format, filters))
}

/// A `200` download: its type, how the browser should take it, and the stream.
fn download(content_type: &str, disposition: &str, body: Box<dyn Read + Send>) -> Response {
    Response {
        status: 200,
        headers: vec![
            ("Content-Type".into(), content_type.into()),
            ("Content-Disposition".into(), disposition.into()),
            ("Cache-Control".into(), "no-store".into()),
        ],
        body: Body::Stream(body),
    }
}

fn csv_response(s: &Settings, filters: Filters) -> Response {
    match CsvStream::open(&s.db_path, filters, s.timezone) {
        Ok(stream) => download(
            "text/csv; charset=utf-8",
            "inline; filename=\"calls.csv\"",
            Box::new(stream),
        ),
        Err(e) => {
            log::error!("export: {e}: 503");
            Response::text(503, "database unavailable\n")
        }
    }
}

fn xlsx_response(s: &Settings, filters: Filters) -> Response {
    match xlsx_tempfile(s, filters) {
        Ok(file) => download(
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "attachment; filename=\"calls.xlsx\"",
            Box::new(file),
        ),
        Err(e) => {
            log::error!("export: {e}: 503");
            Response::text(503, "export unavailable\n")
        }
    }
}

/// The folder for temporary files: the database's own, which only the daemon writes.
pub fn private_tempdir(db: &Path) -> PathBuf {
    match db.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Builds the workbook in an unnamed temporary file and returns it open, at its start.
/// One workbook is built at a time: each takes a core for a while, and the other core
/// stays free for webhooks.
fn xlsx_tempfile(s: &Settings, filters: Filters) -> Result<std::fs::File, String> {
    use std::io::{Seek, SeekFrom};
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let dir = private_tempdir(&s.db_path);
    let mut file = tempfile::tempfile_in(&dir)
        .map_err(|e| format!("cannot create a temporary file in {}: {e}", dir.display()))?;
    write_xlsx(&s.db_path, filters, s.timezone, &mut file, &dir)?;
    file.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    Ok(file)
}

#[cfg(test)]
mod tests;
