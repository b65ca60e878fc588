//! `GET /report` through the real daemon: auth and scope like the export, the security
//! headers, hostile caller text shown as text, and the page's numbers against the CSV
//! export of the same calls. The browser tests (a real headless Chromium through
//! chromedriver) are in `browser.rs`.

use std::collections::HashMap;
use std::time::Duration;

use crate::outcomes::{DAY, T0, answered, at, forwarded, from, ringing, send};
use crate::support::*;

/// A month of calls: two users, three sources, every outcome, repeat callers, hostile
/// names, a caller who was missed and then answered (not to be called back).
pub(crate) fn seeded(env: &Env) -> Daemon {
    let d = env.start();
    let c = |i: u32| format!("+1312555{i:04}");
    for i in 0..40u32 {
        let start = T0 + i64::from(i % 20) * DAY + i64::from(i) * 3600;
        let caller = c(i % 25);
        match i % 4 {
            0 => answered(
                &d,
                &format!("CAr{i:02}"),
                &caller,
                start,
                20 + i64::from(i) * 3,
            ),
            1 => forwarded(
                &d,
                &format!("CAr{i:02}"),
                &caller,
                start,
                "no-answer",
                None,
                8,
                "no-answer",
            ),
            2 => forwarded(
                &d,
                &format!("CAr{i:02}"),
                &caller,
                start,
                "no-answer",
                None,
                30,
                "completed",
            ),
            _ => {
                // The other user's number, not forwarded: hung up on, missed.
                send(
                    &d,
                    &ringing(&format!("CAr{i:02}"), TRACKING_NO_FORWARD, &caller, start),
                );
                send(
                    &d,
                    &from(
                        status(
                            &format!("CAr{i:02}"),
                            TRACKING_NO_FORWARD,
                            "completed",
                            &at(start + 5),
                            Some("5"),
                        ),
                        &caller,
                    ),
                );
            }
        }
    }
    // Hostile caller names and places on missed calls, so they reach the call-back list;
    // and a 10 kB name of one word, which must wrap rather than widen the page.
    let long = "W".repeat(10_000);
    for (i, name) in HOSTILE.iter().copied().chain([long.as_str()]).enumerate() {
        let sid = format!("CAh{i}");
        let caller = c(100 + i as u32);
        let mut p = ringing(&sid, TRACKING, &caller, T0 + 25 * DAY + i as i64 * 60);
        set(&mut p, "CallerName", name);
        set(&mut p, "FromCity", name);
        send(&d, &p);
        let mut fin = from(
            status(
                &sid,
                TRACKING,
                "no-answer",
                &at(T0 + 25 * DAY + i as i64 * 60 + 40),
                Some("0"),
            ),
            &caller,
        );
        set(&mut fin, "CallerName", name);
        send(&d, &fin);
        let mut dial = from(dial_action(&sid, TRACKING, "no-answer", None), &caller);
        set(&mut dial, "CallerName", name);
        send(&d, &dial);
    }
    d
}

pub(crate) const HOSTILE: [&str; 4] = [
    "<script>alert(1)</script>",
    "\"><img src=x onerror=alert(1)>",
    "\u{202e}gnp.exe \u{202d}Bob",
    "",
];

pub(crate) const MARCH: &str = "?from=2026-03-01&to=2026-04-01";

#[test]
fn the_report_is_served_like_the_export_with_strict_headers() {
    let env = Env::new(&base_config(""));
    let d = seeded(&env);
    let r = get(d.addr, &format!("/report{MARCH}"), &bearer());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
    assert_eq!(r.header("X-Content-Type-Options"), Some("nosniff"));
    assert_eq!(r.header("Referrer-Policy"), Some("no-referrer"));
    assert_eq!(r.header("Cache-Control"), Some("private, no-store"));
    let csp = r.header("Content-Security-Policy").unwrap();
    assert!(csp.starts_with("default-src 'none';"), "{csp}");
    assert!(!csp.contains("unsafe") && !csp.contains("http"), "{csp}");
    let html = r.text();
    assert!(
        !html.contains("<script") && !html.contains("src=\"http"),
        "no script, nothing fetched"
    );
    // Basic works too (a browser's login prompt).
    let basic = get(
        d.addr,
        "/report",
        &[(
            "Authorization",
            format!("Basic {}", b64(&format!(":{EXPORT_TOKEN}"))),
        )],
    );
    assert_eq!(basic.status, 200);
    // The order of checks: method, export on, credentials, filters.
    assert_eq!(
        request(d.addr, "POST", "/report", &bearer(), b"").status,
        405
    );
    let r = get(d.addr, "/report", &[]);
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("WWW-Authenticate"),
        Some("Basic realm=\"calltrackd\"")
    );
    assert_eq!(get(d.addr, "/report?from=yesterday", &bearer()).status, 400);
    assert_eq!(get(d.addr, "/report?outcome=missed", &bearer()).status, 400);
    assert_eq!(get(d.addr, "/report?bogus=1", &bearer()).status, 400);
    let head = request(d.addr, "HEAD", &format!("/report{MARCH}"), &bearer(), b"");
    assert_eq!(head.status, 200);
    drop(d);
    // No export token: no report.
    let env = Env::new(&base_config("").replace(&format!("token = \"{EXPORT_TOKEN}\"\n"), ""));
    let d = env.start();
    assert_eq!(get(d.addr, "/report", &bearer()).status, 404);
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[test]
fn hostile_caller_text_is_shown_as_text() {
    let env = Env::new(&base_config(""));
    let d = seeded(&env);
    let html = get(d.addr, &format!("/report{MARCH}"), &bearer()).text();
    assert!(!html.contains("<script>alert"), "{html}");
    assert!(!html.contains("<img src=x"), "{html}");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"));
    // Isolated from the page's own direction.
    assert!(html.contains("<bdi>\u{202e}gnp.exe \u{202d}Bob</bdi>"));
    // A 10 kB name is kept whole (the layout test in the browser shows it wraps).
    let long = "W".repeat(10_000);
    let mut p = ringing("CAlong", TRACKING, "+13125559999", T0 + 26 * DAY);
    set(&mut p, "CallerName", &long);
    send(&d, &p);
    send(
        &d,
        &from(
            status(
                "CAlong",
                TRACKING,
                "no-answer",
                &at(T0 + 26 * DAY + 20),
                Some("0"),
            ),
            "+13125559999",
        ),
    );
    let html = get(d.addr, &format!("/report{MARCH}"), &bearer()).text();
    assert!(html.contains(&long));
}

#[test]
fn a_report_share_link_shows_one_users_page_and_cannot_be_widened() {
    let env = Env::new(&base_config(""));
    let d = seeded(&env);
    let cfg = env.config();
    let o = env.run(&[
        "share-link",
        "--config",
        cfg.to_str().unwrap(),
        "--user",
        "bob-electric",
        "--format",
        "report",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let link = String::from_utf8(o.stdout).unwrap();
    let query = link
        .trim()
        .split_once("/report")
        .expect("a /report link")
        .1
        .to_owned();
    let r = get(
        d.addr,
        &format!("/report{query}&from=2026-03-01&to=2026-04-01"),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let html = r.text();
    assert!(
        html.contains("Calls – <bdi>bob-electric</bdi>"),
        "scoped to the user"
    );
    assert!(!html.contains("acme-plumbing"), "nothing of the other user");
    assert!(html.contains(">10</b>calls"), "bob's 10 calls in March");
    // Its download links are signed for the same scope and work without credentials.
    let csv_link = html
        .split("id=\"csv\" href=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&");
    let csv = get(d.addr, &format!("/{csv_link}"), &[]);
    assert_eq!(csv.status, 200, "{csv_link}");
    assert_eq!(
        String::from_utf8_lossy(&csv.body).lines().count(),
        11,
        "header + bob's 10 calls"
    );
    // Edited scope: refused; a link for the CSV does not open the report.
    let widened = query.replace("user=bob-electric", "user=acme-plumbing");
    assert_eq!(get(d.addr, &format!("/report{widened}"), &[]).status, 403);
    let o = env.run(&[
        "share-link",
        "--config",
        cfg.to_str().unwrap(),
        "--user",
        "bob-electric",
    ]);
    let csv_query = String::from_utf8(o.stdout)
        .unwrap()
        .trim()
        .split_once("/calls.csv")
        .unwrap()
        .1
        .to_owned();
    assert_eq!(get(d.addr, &format!("/report{csv_query}"), &[]).status, 403);
}

/// What the page shows, computed from the CSV export of the same calls.
#[test]
fn the_reports_numbers_agree_with_the_csv_export() {
    let env = Env::new(&base_config(""));
    let d = seeded(&env);
    let csv = get(d.addr, &format!("/calls.csv{MARCH}"), &bearer()).body;
    let mut rd = csv::Reader::from_reader(&csv[..]);
    let header: Vec<String> = rd.headers().unwrap().iter().map(str::to_owned).collect();
    let rows: Vec<HashMap<String, String>> = rd
        .records()
        .map(|r| {
            header
                .iter()
                .cloned()
                .zip(r.unwrap().iter().map(str::to_owned))
                .collect()
        })
        .collect();
    let tz = chrono_tz::America::Chicago;
    let period = calltrackd::report::Period {
        from: chrono::NaiveDate::from_ymd_opt(2026, 3, 1).unwrap(),
        to: chrono::NaiveDate::from_ymd_opt(2026, 4, 1).unwrap(),
    };
    let report = calltrackd::report::load(&env.db(), tz, period.clone(), None, None).unwrap();
    let t = report.totals;
    let count =
        |f: &dyn Fn(&HashMap<String, String>) -> bool| rows.iter().filter(|r| f(r)).count() as i64;
    assert_eq!(t.calls, rows.len() as i64);
    assert_eq!(t.answered, count(&|r| r["outcome"] == "answered"));
    assert_eq!(
        t.missed,
        count(&|r| r["outcome"] == "missed" || r["outcome"] == "abandoned")
    );
    assert_eq!(t.voicemail, count(&|r| r["outcome"] == "voicemail"));
    assert_eq!(t.qualified, count(&|r| r["qualified"] == "true"));
    assert_eq!(t.first_time, count(&|r| r["first_time_caller"] == "true"));
    let talk: i64 = rows
        .iter()
        .filter(|r| r["outcome"] == "answered")
        .map(|r| r["talk_seconds"].parse::<i64>().unwrap())
        .sum();
    assert_eq!(t.talk_seconds, talk);
    assert!(t.calls > 40 && t.answered > 0 && t.missed > 0 && t.first_time > 0);
    // Per source and per user.
    for (name, tot) in &report.by_source {
        assert_eq!(tot.calls, count(&|r| &r["source"] == name), "{name}");
    }
    for (name, tot) in &report.by_user {
        assert_eq!(tot.calls, count(&|r| &r["user"] == name), "{name}");
        assert_eq!(
            tot.qualified,
            count(&|r| &r["user"] == name && r["qualified"] == "true")
        );
    }
    // Per local day and per day of week × hour, from started_at_local.
    for (day, counts) in &report.per_day {
        let day = day.format("%Y-%m-%d").to_string();
        assert_eq!(
            counts.iter().sum::<i64>(),
            count(&|r| r["started_at_local"].starts_with(&day)),
            "{day}"
        );
    }
    let mut heat = [[0i64; 24]; 7];
    for r in &rows {
        let t = chrono::NaiveDateTime::parse_from_str(&r["started_at_local"], "%Y-%m-%d %H:%M:%S")
            .unwrap();
        use chrono::{Datelike, Timelike};
        heat[t.weekday().num_days_from_monday() as usize][t.hour() as usize] += 1;
    }
    assert_eq!(report.heat, heat);
    // The call-back list: unanswered calls of callers with no later answered call.
    for cb in &report.call_back {
        let later_answered = rows.iter().any(|r| {
            r["caller"] == cb.caller
                && r["user"] == cb.user
                && r["outcome"] == "answered"
                && r["started_at"]
                    > chrono::DateTime::from_timestamp(cb.started_at, 0)
                        .unwrap()
                        .format("%Y-%m-%dT%H:%M:%SZ")
                        .to_string()
        });
        assert!(!later_answered, "{}", cb.caller);
    }
    assert!(!report.call_back.is_empty());
    // A user scope and a source scope give those rows only.
    let bob =
        calltrackd::report::load(&env.db(), tz, period, Some("bob-electric".into()), None).unwrap();
    assert_eq!(bob.totals.calls, count(&|r| r["user"] == "bob-electric"));
    assert!(bob.by_user.is_empty());
}

#[test]
fn a_report_without_its_database_is_a_503_not_a_crash() {
    let env = Env::new(&base_config(""));
    let d = seeded(&env);
    std::fs::remove_file(env.db()).unwrap();
    let r = get(d.addr, &format!("/report{MARCH}"), &bearer());
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.text(), "database unavailable\n");
    // The log line is written before the answer, but reaches the test
    // through a pipe: wait for it rather than read the log at once.
    assert!(
        d.wait_log("report: ", Duration::from_secs(5)),
        "{}",
        d.log_text()
    );
    // The daemon is still there to say so.
    assert_eq!(get(d.addr, "/healthz", &[]).status, 503);
}
