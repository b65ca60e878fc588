//! `GET /report`: the owner's page. Auth and scope exactly as the export (Bearer or
//! Basic, or a share link made with `--format report`); the page is built in the
//! connection's thread, at a lower priority, off the webhook path.

use chrono::{Duration, Utc};

use super::export_http::{authorized, unauthorized};
use crate::export::{Filters, Format, Settings, share_query, verify_share};
use crate::http::{Body, Reply, Request, Response};
use crate::logging::escaped;
use crate::report::{self, CSP, Period};

/// The filters the report takes; the others (`qualified`, `outcome`, `first_time`)
/// would make its counts disagree with its own call list.
const REPORT_FILTERS: [&str; 4] = ["from", "to", "user", "source"];

/// `GET /report` (method already checked).
pub(super) fn http_report(s: &Settings, req: &Request) -> Reply {
    match checked(s, req) {
        Ok((filters, links)) => {
            let s = s.clone();
            Reply::Later(Box::new(move || page(&s, filters, links)))
        }
        Err(r) => Reply::Now(r),
    }
}

fn bad(msg: &str) -> Response {
    Response::text(400, format!("{}\n", escaped(msg)))
}

fn checked(s: &Settings, req: &Request) -> Result<(Filters, report::Links), Response> {
    let Some(token) = &s.token else {
        return Err(Response::text(
            404,
            "not found (the report is off: no export token is configured)\n",
        ));
    };
    let pairs: Vec<(String, String)> = match req.query() {
        Some(q) => {
            serde_urlencoded::from_str(q).map_err(|_| bad("the query string cannot be decoded"))?
        }
        None => Vec::new(),
    };
    let now = Utc::now().timestamp();
    let dated = |k: &str| k == "from" || k == "to";
    if pairs.iter().any(|(k, _)| k == "sig") {
        let filters =
            verify_share(token, Format::Report, &pairs, now, s.timezone).map_err(|e| {
                log::warn!("report: {e}: {}", e.status());
                Response::text(e.status(), format!("{}\n", escaped(&e.to_string())))
            })?;
        // The page's own links keep the signed scope; its downloads get links of their
        // own, signed for the same scope and expiry.
        let keep: Vec<(String, String)> =
            pairs.iter().filter(|(k, _)| !dated(k)).cloned().collect();
        let scope: Vec<(String, String)> = keep
            .iter()
            .filter(|(k, _)| k != "sig" && k != "expires")
            .cloned()
            .collect();
        let expires: i64 = keep
            .iter()
            .find(|(k, _)| k == "expires")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(now);
        let dates: Vec<(String, String)> =
            pairs.iter().filter(|(k, _)| dated(k)).cloned().collect();
        let with_dates = |q: String| {
            if dates.is_empty() {
                q
            } else {
                format!(
                    "{q}&{}",
                    serde_urlencoded::to_string(&dates).unwrap_or_default()
                )
            }
        };
        let links = report::Links {
            csv: format!(
                "calls.csv?{}",
                with_dates(share_query(token, Format::Csv, &scope, expires))
            ),
            xlsx: format!(
                "calls.xlsx?{}",
                with_dates(share_query(token, Format::Xlsx, &scope, expires))
            ),
            keep,
        };
        if let Some((k, _)) = scope
            .iter()
            .find(|(k, _)| !REPORT_FILTERS.contains(&k.as_str()))
        {
            return Err(bad(&format!(
                "filter `{k}` is for the export; the report takes from, to, user and source"
            )));
        }
        return Ok((filters, links));
    }
    if !authorized(token, req) {
        log::warn!("report: missing or wrong credentials: 401");
        return Err(unauthorized());
    }
    let filters = Filters::from_pairs(&pairs, s.timezone).map_err(|e| bad(&e.to_string()))?;
    if let Some((k, _)) = pairs
        .iter()
        .find(|(k, _)| !REPORT_FILTERS.contains(&k.as_str()))
    {
        return Err(bad(&format!(
            "filter `{k}` is for the export; the report takes from, to, user and source"
        )));
    }
    let keep: Vec<(String, String)> = pairs.iter().filter(|(k, _)| !dated(k)).cloned().collect();
    let all = serde_urlencoded::to_string(&pairs).unwrap_or_default();
    Ok((
        filters,
        report::Links {
            csv: format!("calls.csv?{all}"),
            xlsx: format!("calls.xlsx?{all}"),
            keep,
        },
    ))
}

/// The period the filters name, in whole local days; the last 30 days by default.
fn period(f: &Filters, s: &Settings, now: i64) -> Period {
    let tz = s.timezone;
    let today = report::local_day(tz, now);
    let to =
        f.to.map(|t| report::local_day(tz, t - 1) + Duration::days(1))
            .unwrap_or(today + Duration::days(1));
    let from = f
        .from
        .map(|t| report::local_day(tz, t))
        .unwrap_or(to - Duration::days(30));
    Period {
        from,
        to: to.max(from),
    }
}

fn page(s: &Settings, f: Filters, mut links: report::Links) -> Response {
    crate::http::lower_priority();
    let now = Utc::now().timestamp();
    let p = period(&f, s, now);
    // Period links and the form carry the dates themselves.
    links.keep.retain(|(k, _)| k != "from" && k != "to");
    match report::load(&s.db_path, s.timezone, p, f.user, f.source) {
        Ok(r) => Response {
            status: 200,
            headers: vec![
                ("Content-Type".into(), "text/html; charset=utf-8".into()),
                ("Content-Security-Policy".into(), CSP.clone()),
                ("X-Content-Type-Options".into(), "nosniff".into()),
                ("Referrer-Policy".into(), "no-referrer".into()),
                ("Cache-Control".into(), "private, no-store".into()),
                ("Connection".into(), "close".into()),
            ],
            body: Body::Bytes(
                report::render(&r, &links, report::local_day(s.timezone, now)).into_bytes(),
            ),
        },
        Err(e) => {
            log::error!("report: {e}: 503");
            Response::text(503, "database unavailable\n")
        }
    }
}
