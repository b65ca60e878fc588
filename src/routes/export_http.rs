//! `GET /calls.csv` and `GET /calls.xlsx`: export auth (Bearer, Basic, share links),
//! filters, and the download. A workbook is built later, in the connection's thread.

use std::io::Read;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::Utc;
use subtle::ConstantTimeEq;

use crate::config::Secret;
use crate::export::{CsvStream, Filters, Format, Settings, verify_share, xlsx_tempfile};
use crate::http::{Body, Reply, Request, Response};
use crate::logging::escaped;

pub(super) fn authorized(token: &Secret, req: &Request) -> bool {
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

pub(super) fn unauthorized() -> Response {
    Response::text(401, "authentication required: use the export token as a Bearer token or as the Basic password\n")
        .with_header("WWW-Authenticate", "Basic realm=\"calltrackd\"")
}

/// `GET /calls.csv` and `GET /calls.xlsx` (method already checked). A workbook is built
/// later, in the connection's thread.
pub(super) fn http_export(s: &Settings, req: &Request) -> Reply {
    match checked_filters(s, req) {
        Ok((Format::Csv, filters)) => Reply::Now(csv_response(s, filters)),
        Ok((Format::Xlsx, filters)) => {
            let s = s.clone();
            Reply::Later(Box::new(move || xlsx_response(&s, filters)))
        }
        // The path names the format: only .csv and .xlsx come here.
        Ok((Format::Report, _)) => Reply::Now(Response::text(404, "not found\n")),
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
        verify_share(token, format, &pairs, Utc::now().timestamp(), s.timezone).map_err(|e| {
            log::warn!("export: {e}: {}", e.status());
            Response::text(e.status(), format!("{}\n", escaped(&e.to_string())))
        })?
    } else {
        if !authorized(token, req) {
            log::warn!("export: missing or wrong credentials: 401");
            return Err(unauthorized());
        }
        Filters::from_pairs(&pairs, s.timezone)
            .map_err(|e| Response::text(400, format!("{}\n", escaped(&e.to_string()))))?
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
            ("Connection".into(), "close".into()),
        ],
        body: Body::Stream(body),
    }
}

fn csv_response(s: &Settings, filters: Filters) -> Response {
    // This thread builds and streams the download: it yields the CPU to webhooks, and
    // the connection closes afterwards (its thread stays at the lower priority).
    crate::http::lower_priority();
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
    crate::http::lower_priority();
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
