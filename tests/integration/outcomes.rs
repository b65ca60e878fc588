//! What happened on each call, through the real daemon over HTTP: outcome, ring time,
//! first-time callers (in start order, whatever the arrival order), why a call is or is
//! not qualified, the new filters, `/metrics` by outcome, and `calltrackd requalify`.
//!
//! Calls are built from callbacks that carry Twilio's `Timestamp`: a `ringing` progress
//! callback at the start, then the `<Dial action>` and the final status callback. The
//! start is then the ringing callback's `Timestamp` (earlier than any receipt time),
//! so ring times are exact to the second.

use std::collections::HashMap;

use crate::support::*;

/// 2026-03-02T15:00:00Z.
pub(crate) const T0: i64 = 1_772_463_600;
pub(crate) const DAY: i64 = 86_400;

/// Twilio's `Timestamp` form of Unix time `t`.
pub(crate) fn at(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .unwrap()
        .format("%a, %d %b %Y %H:%M:%S +0000")
        .to_string()
}

pub(crate) fn send(d: &Daemon, p: &[(String, String)]) {
    let r = d.post_form(&borrow(p));
    assert_eq!(r.status, 200, "{}", r.text());
}

pub(crate) fn from(mut p: Vec<(String, String)>, caller: &str) -> Vec<(String, String)> {
    set(&mut p, "From", caller);
    set(&mut p, "Caller", caller);
    p
}

/// The `ringing` progress callback at `start` (a callback, not the incoming request).
pub(crate) fn ringing(sid: &str, to: &str, caller: &str, start: i64) -> Vec<(String, String)> {
    from(status(sid, to, "ringing", &at(start), None), caller)
}

/// A forwarded call: rang from `start`, the shop's leg ended `dial` after `talk` s of
/// talk, the call ended `len` s after the start with final status `fin`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forwarded(
    d: &Daemon,
    sid: &str,
    caller: &str,
    start: i64,
    dial: &str,
    talk: Option<i64>,
    len: i64,
    fin: &str,
) {
    send(d, &ringing(sid, TRACKING, caller, start));
    let talk = talk.map(|t| t.to_string());
    send(
        d,
        &from(dial_action(sid, TRACKING, dial, talk.as_deref()), caller),
    );
    let duration = if fin == "completed" {
        len.to_string()
    } else {
        "0".into()
    };
    send(
        d,
        &from(
            status(sid, TRACKING, fin, &at(start + len), Some(&duration)),
            caller,
        ),
    );
}

/// An answered forwarded call with `talk` s of talk after 5 s of ringing.
pub(crate) fn answered(d: &Daemon, sid: &str, caller: &str, start: i64, talk: i64) {
    forwarded(
        d,
        sid,
        caller,
        start,
        "completed",
        Some(talk),
        talk + 5,
        "completed",
    );
}

type Rows = HashMap<String, HashMap<String, String>>;

fn rows(d: &Daemon, query: &str) -> Rows {
    let r = get(d.addr, &format!("/calls.csv{query}"), &bearer());
    assert_eq!(r.status, 200, "{}", r.text());
    parse_csv(&r.body)
}

fn parse_csv(body: &[u8]) -> Rows {
    let mut rd = csv::Reader::from_reader(body);
    let header: Vec<String> = rd.headers().unwrap().iter().map(str::to_owned).collect();
    rd.records()
        .map(|rec| {
            let m: HashMap<String, String> = header
                .iter()
                .cloned()
                .zip(rec.unwrap().iter().map(str::to_owned))
                .collect();
            (m["call_sid"].clone(), m)
        })
        .collect()
}

fn cell<'a>(rows: &'a Rows, sid: &str, col: &str) -> &'a str {
    rows.get(sid)
        .unwrap_or_else(|| panic!("{sid} not exported"))
        .get(col)
        .unwrap_or_else(|| panic!("no column {col}"))
}

/// outcome, ring_seconds, answered, qualified, qualified_reason.
fn summary(rows: &Rows, sid: &str) -> [String; 5] {
    [
        "outcome",
        "ring_seconds",
        "answered",
        "qualified",
        "qualified_reason",
    ]
    .map(|c| cell(rows, sid, c).to_owned())
}

fn expect(rows: &Rows, sid: &str, want: [&str; 5]) {
    assert_eq!(summary(rows, sid), want.map(str::to_owned), "{sid}");
}

#[test]
fn every_outcome_ring_time_and_reason() {
    let env = Env::new(&base_config(""));
    let d = env.start();
    let c = |i: u32| format!("+1415555{i:04}");
    // Answered: 57 s from start to end, 45 s of talk: it rang 12 s.
    answered(&d, "CAans", &c(1), T0, 45);
    forwarded(
        &d,
        "CAans2",
        &c(2),
        T0,
        "completed",
        Some(45),
        57,
        "completed",
    );
    // Short talk.
    answered(&d, "CAshort", &c(3), T0, 12);
    // Nobody answered; the caller hung up after 14 s (abandoned) or 15 s (missed).
    forwarded(&d, "CAab14", &c(4), T0, "no-answer", None, 14, "no-answer");
    forwarded(&d, "CAab15", &c(5), T0, "no-answer", None, 15, "no-answer");
    forwarded(&d, "CAcancel", &c(6), T0, "canceled", None, 3, "canceled");
    // The shop was busy or its leg failed: missed however short.
    forwarded(&d, "CAbusy", &c(7), T0, "busy", None, 4, "completed");
    forwarded(&d, "CAlegfail", &c(8), T0, "failed", None, 2, "completed");
    // Rang out after 20 s.
    forwarded(
        &d,
        "CAringout",
        &c(9),
        T0,
        "no-answer",
        None,
        25,
        "completed",
    );
    // Twilio could not connect the call at all.
    send(&d, &ringing("CAfailed", TRACKING_NO_FORWARD, &c(10), T0));
    send(
        &d,
        &from(
            status(
                "CAfailed",
                TRACKING_NO_FORWARD,
                "failed",
                &at(T0),
                Some("0"),
            ),
            &c(10),
        ),
    );
    // No forward_to: calltrackd hung up, nobody rang (ring 0).
    let mut inc = from(incoming("CAhungup", TRACKING_NO_FORWARD), &c(11));
    set(&mut inc, "CallStatus", "ringing");
    send(&d, &inc);
    send(
        &d,
        &from(
            status(
                "CAhungup",
                TRACKING_NO_FORWARD,
                "completed",
                &at(T0 + 2),
                Some("2"),
            ),
            &c(11),
        ),
    );
    // Outbound calls from a tracking number.
    for (sid, st, dur) in [
        ("CAout1", "completed", "80"),
        ("CAout2", "failed", "0"),
        ("CAout3", "no-answer", "0"),
    ] {
        let mut p = status(sid, TRACKING_NO_FORWARD, st, &at(T0 + 100), Some(dur));
        set(&mut p, "Direction", "outbound-api");
        set(&mut p, "From", TRACKING_NO_FORWARD);
        set(&mut p, "To", &c(20));
        send(&d, &p);
    }
    // Still ringing: nothing known yet.
    send(&d, &ringing("CAlive", TRACKING, &c(12), T0));

    let r = rows(&d, "");
    expect(
        &r,
        "CAans",
        [
            "answered",
            "5",
            "true",
            "true",
            "talked 45 s, at least 30 s",
        ],
    );
    expect(
        &r,
        "CAans2",
        [
            "answered",
            "12",
            "true",
            "true",
            "talked 45 s, at least 30 s",
        ],
    );
    expect(
        &r,
        "CAshort",
        ["answered", "5", "true", "false", "talked 12 s, under 30 s"],
    );
    expect(
        &r,
        "CAab14",
        [
            "abandoned",
            "14",
            "false",
            "false",
            "not answered (abandoned)",
        ],
    );
    expect(
        &r,
        "CAab15",
        ["missed", "15", "false", "false", "not answered (missed)"],
    );
    expect(
        &r,
        "CAcancel",
        [
            "abandoned",
            "3",
            "false",
            "false",
            "not answered (abandoned)",
        ],
    );
    expect(
        &r,
        "CAbusy",
        ["missed", "4", "false", "false", "not answered (missed)"],
    );
    expect(
        &r,
        "CAlegfail",
        ["missed", "2", "false", "false", "not answered (missed)"],
    );
    expect(
        &r,
        "CAringout",
        ["missed", "25", "false", "false", "not answered (missed)"],
    );
    expect(
        &r,
        "CAfailed",
        ["failed", "0", "false", "false", "not answered (failed)"],
    );
    expect(
        &r,
        "CAhungup",
        ["missed", "0", "false", "false", "not answered (missed)"],
    );
    expect(
        &r,
        "CAout1",
        [
            "answered",
            "0",
            "true",
            "true",
            "talked 80 s, at least 30 s",
        ],
    );
    expect(
        &r,
        "CAout2",
        ["failed", "0", "false", "false", "not answered (failed)"],
    );
    expect(
        &r,
        "CAout3",
        ["missed", "0", "false", "false", "not answered (missed)"],
    );
    expect(&r, "CAlive", ["", "", "", "", ""]);
    assert_eq!(cell(&r, "CAans", "talk_seconds"), "45");
    for sid in r.keys() {
        assert_eq!(cell(&r, sid, "captured_by"), "webhook");
        assert_eq!(cell(&r, sid, "recording_url"), "");
        assert_eq!(cell(&r, sid, "voicemail_url"), "");
    }
}

#[test]
fn order_and_repetition_of_requests_change_nothing() {
    let env = Env::new(&base_config(""));
    let d = env.start();
    let parts = |sid: &str| {
        vec![
            ringing(sid, TRACKING, CALLER, T0),
            dial_action(sid, TRACKING, "no-answer", None),
            status(sid, TRACKING, "no-answer", &at(T0 + 14), Some("0")),
        ]
    };
    for p in parts("CAin") {
        send(&d, &p);
    }
    let mut rev = parts("CArev");
    rev.reverse();
    for p in rev.iter().chain(rev.iter()) {
        send(&d, p);
    }
    let r = rows(&d, "");
    assert_eq!(summary(&r, "CAin"), summary(&r, "CArev"));
    assert_eq!(cell(&r, "CArev", "outcome"), "abandoned");
}

#[test]
fn first_time_callers_within_and_beyond_the_lookback() {
    let env = Env::new(&base_config(""));
    let d = env.start();
    // Each pair: an earlier call 364, 365 or 366 days before a later one.
    for (i, days) in [(1, 364), (2, 365), (3, 366)] {
        let caller = format!("+1312555{i:04}");
        answered(&d, &format!("CAearly{days}"), &caller, T0 - days * DAY, 40);
        answered(&d, &format!("CAlate{days}"), &caller, T0, 40);
    }
    let r = rows(&d, "");
    let ft = |sid: &str| {
        (
            cell(&r, sid, "first_time_caller").to_owned(),
            cell(&r, sid, "prior_calls").to_owned(),
        )
    };
    for days in [364, 365, 366] {
        assert_eq!(ft(&format!("CAearly{days}")), ("true".into(), "0".into()));
    }
    // "No call from this caller for 365 days": one exactly 365 days before no longer counts.
    assert_eq!(ft("CAlate364"), ("false".into(), "1".into()));
    assert_eq!(ft("CAlate365"), ("true".into(), "0".into()));
    assert_eq!(ft("CAlate366"), ("true".into(), "0".into()));
}

#[test]
fn first_time_counts_per_user_never_anonymous_and_in_start_order() {
    let env = Env::new(&base_config(""));
    let d = env.start();
    // The later call arrives first: a first-time caller, until the earlier one arrives.
    answered(&d, "CAsecond", CALLER, T0, 40);
    let r = rows(&d, "");
    assert_eq!(cell(&r, "CAsecond", "first_time_caller"), "true");
    answered(&d, "CAfirst", CALLER, T0 - 10 * DAY, 40);
    let r = rows(&d, "");
    assert_eq!(cell(&r, "CAfirst", "first_time_caller"), "true");
    assert_eq!(cell(&r, "CAfirst", "prior_calls"), "0");
    assert_eq!(cell(&r, "CAsecond", "first_time_caller"), "false");
    assert_eq!(cell(&r, "CAsecond", "prior_calls"), "1");
    // A third, between them: the second now has two earlier calls.
    answered(&d, "CAmiddle", CALLER, T0 - 5 * DAY, 40);
    let r = rows(&d, "");
    assert_eq!(cell(&r, "CAmiddle", "prior_calls"), "1");
    assert_eq!(cell(&r, "CAsecond", "prior_calls"), "2");
    // The same caller to another user is a first-time caller there.
    send(
        &d,
        &ringing("CAother", TRACKING_NO_FORWARD, CALLER, T0 + 60),
    );
    send(
        &d,
        &status(
            "CAother",
            TRACKING_NO_FORWARD,
            "completed",
            &at(T0 + 100),
            Some("40"),
        ),
    );
    // Anonymous and withheld callers are never counted, however often they call.
    for (i, who) in ["anonymous", "Restricted", "anonymous", "", "266696687"]
        .iter()
        .enumerate()
    {
        answered(&d, &format!("CAanon{i}"), who, T0 + i as i64 * 60, 40);
    }
    let r = rows(&d, "");
    assert_eq!(cell(&r, "CAother", "first_time_caller"), "true");
    for i in 0..5 {
        let sid = format!("CAanon{i}");
        assert_eq!(cell(&r, &sid, "first_time_caller"), "", "{sid}");
        assert_eq!(cell(&r, &sid, "prior_calls"), "", "{sid}");
    }
}

fn config_with(qualify: &str, number_extra: &str) -> String {
    base_config("")
        .replace(
            "[qualify]\nmin_duration_seconds = 30\n",
            &format!("[qualify]\nmin_duration_seconds = 30\n{qualify}"),
        )
        .replace(
            "ring_timeout_seconds = 18\n",
            &format!("ring_timeout_seconds = 18\n{number_extra}"),
        )
}

#[test]
fn per_number_threshold_and_require_first_time() {
    let env = Env::new(&config_with(
        "require_first_time = true\n",
        "min_duration_seconds = 60\n",
    ));
    let d = env.start();
    answered(&d, "CA45", "+13125550001", T0, 45);
    answered(&d, "CA60", "+13125550002", T0, 60);
    answered(&d, "CArepeat", "+13125550002", T0 + DAY, 300);
    answered(&d, "CAanon", "anonymous", T0, 300);
    // The other number has no threshold of its own: [qualify]'s 30 s.
    send(
        &d,
        &ringing("CAflyer", TRACKING_NO_FORWARD, "+13125550003", T0),
    );
    send(
        &d,
        &from(
            status(
                "CAflyer",
                TRACKING_NO_FORWARD,
                "completed",
                &at(T0 + 45),
                Some("45"),
            ),
            "+13125550003",
        ),
    );
    let r = rows(&d, "");
    assert_eq!(
        cell(&r, "CA45", "qualified_reason"),
        "talked 45 s, under 60 s"
    );
    assert_eq!(
        cell(&r, "CA60", "qualified_reason"),
        "talked 60 s, at least 60 s"
    );
    assert_eq!(cell(&r, "CA60", "qualified"), "true");
    assert_eq!(cell(&r, "CArepeat", "qualified"), "false");
    assert_eq!(
        cell(&r, "CArepeat", "qualified_reason"),
        "not a first-time caller"
    );
    // A caller that cannot be told first-time is not one.
    assert_eq!(
        cell(&r, "CAanon", "qualified_reason"),
        "not a first-time caller"
    );
    assert_eq!(
        cell(&r, "CAflyer", "qualified_reason"),
        "talked 45 s, at least 30 s"
    );
}

#[test]
fn a_late_earlier_call_unqualifies_a_later_one_under_require_first_time() {
    let env = Env::new(&config_with("require_first_time = true\n", ""));
    let d = env.start();
    answered(&d, "CAlater", CALLER, T0, 100);
    assert_eq!(cell(&rows(&d, ""), "CAlater", "qualified"), "true");
    answered(&d, "CAearlier", CALLER, T0 - DAY, 100);
    let r = rows(&d, "");
    assert_eq!(cell(&r, "CAlater", "qualified"), "false");
    assert_eq!(
        cell(&r, "CAlater", "qualified_reason"),
        "not a first-time caller"
    );
    assert_eq!(cell(&r, "CAearlier", "qualified"), "true");
}

#[test]
fn abandon_seconds_is_configurable() {
    let env = Env::new(&config_with("abandon_seconds = 30\n", ""));
    let d = env.start();
    forwarded(&d, "CA29", CALLER, T0, "no-answer", None, 29, "no-answer");
    forwarded(
        &d,
        "CA30",
        "+13125550009",
        T0,
        "no-answer",
        None,
        30,
        "no-answer",
    );
    let r = rows(&d, "");
    assert_eq!(cell(&r, "CA29", "outcome"), "abandoned");
    assert_eq!(cell(&r, "CA30", "outcome"), "missed");
}

fn filter_fixture() -> (Env, Daemon) {
    let env = Env::new(&base_config(""));
    let d = env.start();
    answered(&d, "CAa", "+13125550001", T0, 45);
    forwarded(
        &d,
        "CAab",
        "+13125550002",
        T0 + 1,
        "no-answer",
        None,
        5,
        "no-answer",
    );
    forwarded(
        &d,
        "CAm",
        "+13125550003",
        T0 + 2,
        "busy",
        None,
        5,
        "completed",
    );
    answered(&d, "CArep", "+13125550001", T0 + 3, 45);
    send(&d, &ringing("CAlive", TRACKING, "+13125550004", T0 + 4));
    (env, d)
}

fn sids(rows: &Rows) -> Vec<&str> {
    let mut v: Vec<&str> = rows.keys().map(String::as_str).collect();
    v.sort();
    v
}

#[test]
fn outcome_and_first_time_filters_over_http_and_cli() {
    let (env, d) = filter_fixture();
    assert_eq!(sids(&rows(&d, "?outcome=answered")), ["CAa", "CArep"]);
    assert_eq!(
        sids(&rows(&d, "?outcome=missed,abandoned,voicemail")),
        ["CAab", "CAm"]
    );
    assert_eq!(sids(&rows(&d, "?outcome=abandoned,abandoned")), ["CAab"]);
    assert_eq!(sids(&rows(&d, "?first_time=false")), ["CArep"]);
    assert_eq!(
        sids(&rows(&d, "?first_time=true&outcome=answered")),
        ["CAa"]
    );
    for bad in [
        "?outcome=bogus",
        "?outcome=missed,",
        "?outcome=",
        "?outcome=Missed",
        "?first_time=yes",
        "?first_time=",
        "?first-time=true",
    ] {
        let r = get(d.addr, &format!("/calls.csv{bad}"), &bearer());
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
    }
    // The command line gives the same bytes, and refuses the same values (exit 2).
    let cfg = env.config();
    let cfg = cfg.to_str().unwrap();
    let cli = env.run(&[
        "export",
        "--config",
        cfg,
        "--outcome",
        "missed,abandoned",
        "--first-time",
        "true",
    ]);
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    let http = get(
        d.addr,
        "/calls.csv?outcome=missed,abandoned&first_time=true",
        &bearer(),
    );
    assert_eq!(cli.stdout, http.body);
    // A share link carries the new filters, signed; edited, it is refused.
    let link = env.run(&[
        "share-link",
        "--config",
        cfg,
        "--outcome",
        "missed,abandoned",
    ]);
    assert!(
        link.status.success(),
        "{}",
        String::from_utf8_lossy(&link.stderr)
    );
    let link = String::from_utf8(link.stdout).unwrap();
    let query = link.trim().split_once("/calls.csv").unwrap().1.to_owned();
    let shared = get(d.addr, &format!("/calls.csv{query}"), &[]);
    assert_eq!(shared.status, 200, "{}", shared.text());
    assert_eq!(sids(&parse_csv(&shared.body)), ["CAab", "CAm"]);
    let widened = query.replace("missed%2Cabandoned", "missed%2Cabandoned%2Canswered");
    assert_ne!(widened, query);
    assert_eq!(
        get(d.addr, &format!("/calls.csv{widened}"), &[]).status,
        403
    );
    for args in [["--outcome", "bogus"], ["--first-time", "maybe"]] {
        let o = env.run(&["export", "--config", cfg, args[0], args[1]]);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(args[1]) && !err.contains("panicked"), "{err}");
    }
}

#[test]
fn metrics_count_calls_by_outcome() {
    let env = Env::new(&base_config("metrics_listen = \"127.0.0.1:0\"\n"));
    let d = env.start();
    answered(&d, "CAa", "+13125550001", T0, 45);
    forwarded(
        &d,
        "CAab",
        "+13125550002",
        T0 + 1,
        "no-answer",
        None,
        5,
        "no-answer",
    );
    send(&d, &ringing("CAlive", TRACKING, "+13125550004", T0 + 4));
    let text = get(d.metrics_addr(), "/metrics", &[]).text();
    for line in [
        "calltrackd_calls_by_outcome{outcome=\"answered\"} 1",
        "calltrackd_calls_by_outcome{outcome=\"abandoned\"} 1",
        "calltrackd_calls_by_outcome{outcome=\"missed\"} 0",
        "calltrackd_calls_by_outcome{outcome=\"blocked\"} 0",
        "calltrackd_calls_by_outcome{outcome=\"pending\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }
    assert!(!text.contains("+1312"), "no phone number in metrics");
}

#[test]
fn requalify_applies_changed_rules_to_stored_calls_and_dry_run_changes_nothing() {
    let env = Env::new(&base_config(""));
    let d = env.start();
    answered(&d, "CA45", "+13125550001", T0, 45);
    answered(&d, "CA90", "+13125550002", T0, 90);
    answered(&d, "CArep", "+13125550001", T0 + DAY, 90);
    let before = get(d.addr, "/calls.csv", &bearer()).body;
    let r = parse_csv(&before);
    assert_eq!(cell(&r, "CA45", "qualified"), "true");

    // New rules in the file: a 60 s threshold, first-time callers only, and the number
    // moved to another user. The daemon is not told (no SIGHUP) and keeps running.
    env.write_config(
        &config_with("require_first_time = true\n", "")
            .replace("min_duration_seconds = 30", "min_duration_seconds = 60")
            .replace("user = \"acme-plumbing\"", "user = \"acme-2\""),
    );
    let cfg = env.config();
    let cfg = cfg.to_str().unwrap();
    let dry = env.run(&["requalify", "--config", cfg, "--dry-run"]);
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    let out = String::from_utf8_lossy(&dry.stdout).to_string();
    assert!(
        out.contains("CA45  qualified true -> false  user \"acme-plumbing\" -> \"acme-2\"  (talked 45 s, under 60 s)"),
        "{out}"
    );
    assert!(
        out.contains("CArep  qualified true -> false  user \"acme-plumbing\" -> \"acme-2\"  (not a first-time caller)"),
        "{out}"
    );
    assert!(out.contains("3 calls decided again"), "{out}");
    assert!(out.contains("3 changed (0 now qualified, 2 no longer qualified, 0 with another outcome, 3 with another user or source)"), "{out}");
    assert!(out.contains("nothing was written"), "{out}");
    assert_eq!(
        get(d.addr, "/calls.csv", &bearer()).body,
        before,
        "dry run wrote nothing"
    );

    let real = env.run(&["requalify", "--config", cfg]);
    assert!(
        real.status.success(),
        "{}",
        String::from_utf8_lossy(&real.stderr)
    );
    let real_out = String::from_utf8_lossy(&real.stdout);
    assert_eq!(
        real_out
            .lines()
            .filter(|l| l.starts_with("CA"))
            .collect::<Vec<_>>(),
        out.lines()
            .filter(|l| l.starts_with("CA"))
            .collect::<Vec<_>>(),
        "the dry run showed exactly what the run did"
    );
    let r = rows(&d, "");
    assert_eq!(
        cell(&r, "CA45", "qualified_reason"),
        "talked 45 s, under 60 s"
    );
    assert_eq!(cell(&r, "CA90", "qualified"), "true");
    assert_eq!(
        cell(&r, "CArep", "qualified_reason"),
        "not a first-time caller"
    );
    assert_eq!(cell(&r, "CA90", "user"), "acme-2");
    // A second run finds nothing to change; the daemon still takes webhooks.
    let again = env.run(&["requalify", "--config", cfg]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("0 changed"));
    answered(&d, "CAafter", "+13125550009", T0 + 2 * DAY, 45);
    // The daemon was not reloaded: it still decides new calls with its own rules.
    assert_eq!(cell(&rows(&d, ""), "CAafter", "qualified"), "true");
}

#[test]
fn requalify_refuses_a_bad_config_and_a_missing_database() {
    let env = Env::new(&base_config(""));
    let cfg = env.config();
    let cfg = cfg.to_str().unwrap();
    let o = env.run(&["requalify", "--config", cfg]);
    assert_eq!(o.status.code(), Some(1), "no database yet");
    assert!(String::from_utf8_lossy(&o.stderr).contains("calls.db"));
    env.write_config(&config_with("abandon_seconds = -1\n", ""));
    let o = env.run(&["requalify", "--config", cfg]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("abandon_seconds"));
}

#[test]
fn first_time_flags_match_a_brute_force_count_whatever_the_arrival_order() {
    // 48 calls from 4 callers over ~900 days; each call's requests arrive shuffled
    // among all the others', and half of the calls learn an earlier start late (a
    // callback whose Timestamp is earlier than the one that came first).
    let env = Env::new(&base_config(""));
    let d = env.start();
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    struct C {
        sid: String,
        caller: String,
        start: i64,
    }
    let mut calls = Vec::new();
    let mut requests = Vec::new();
    for i in 0..48 {
        let caller = format!("+1646555{:04}", rand(4));
        let start = T0 - rand(900) as i64 * DAY - rand(3) as i64 * 3600;
        let sid = format!("CAr{i:02}");
        let late = i % 2 == 0;
        // The first callback says the call began 2 minutes after it did, for half.
        let shown = if late { start + 120 } else { start };
        requests.push(from(
            status(&sid, TRACKING, "ringing", &at(shown), None),
            &caller,
        ));
        requests.push(from(
            dial_action(&sid, TRACKING, "completed", Some("40")),
            &caller,
        ));
        let mut fin = from(
            status(&sid, TRACKING, "completed", &at(start + 200), Some("200")),
            &caller,
        );
        set(&mut fin, "SequenceNumber", "3");
        requests.push(fin);
        calls.push(C { sid, caller, start });
    }
    for i in (1..requests.len()).rev() {
        let j = rand(i as u64 + 1) as usize;
        requests.swap(i, j);
    }
    for p in &requests {
        send(&d, p);
    }
    let r = rows(&d, "");
    for c in &calls {
        let prior = calls
            .iter()
            .filter(|o| {
                o.caller == c.caller
                    && (o.start, &o.sid) < (c.start, &c.sid)
                    && o.start > c.start - 365 * DAY
            })
            .count();
        assert_eq!(
            (
                cell(&r, &c.sid, "prior_calls"),
                cell(&r, &c.sid, "first_time_caller")
            ),
            (
                prior.to_string().as_str(),
                if prior == 0 { "true" } else { "false" }
            ),
            "{}",
            c.sid
        );
        assert_eq!(cell(&r, &c.sid, "started_at"), &rfc3339(c.start));
    }
    // The report's summary, moved with every cascade, agrees with the rows.
    let period = calltrackd::report::Period {
        from: chrono::NaiveDate::from_ymd_opt(2023, 1, 1).unwrap(),
        to: chrono::NaiveDate::from_ymd_opt(2027, 1, 1).unwrap(),
    };
    let summary =
        calltrackd::report::load(&env.db(), chrono_tz::America::Chicago, period, None, None)
            .unwrap();
    let n =
        |f: &dyn Fn(&HashMap<String, String>) -> bool| r.values().filter(|c| f(c)).count() as i64;
    assert_eq!(summary.totals.calls, r.len() as i64);
    assert_eq!(
        summary.totals.first_time,
        n(&|c| c["first_time_caller"] == "true")
    );
    assert_eq!(summary.totals.answered, n(&|c| c["outcome"] == "answered"));
    // requalify, counting everything afresh, finds the same.
    let before = get(d.addr, "/calls.csv", &bearer()).body;
    let o = env.run(&["requalify", "--config", env.config().to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("0 changed"));
    assert_eq!(get(d.addr, "/calls.csv", &bearer()).body, before);
}

fn rfc3339(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

#[test]
fn requalify_against_a_locked_database_fails_cleanly_and_changes_nothing() {
    let env = Env::new(&base_config(""));
    let d = env.start();
    answered(&d, "CA45", "+13125550001", T0, 45);
    let before = get(d.addr, "/calls.csv", &bearer()).body;
    drop(d);
    env.write_config(
        &base_config("").replace("min_duration_seconds = 30", "min_duration_seconds = 60"),
    );
    // Another process holds the write lock for longer than requalify waits (5 s).
    let holder = rusqlite::Connection::open(env.db()).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let o = env.run(&["requalify", "--config", env.config().to_str().unwrap()]);
    holder.execute_batch("ROLLBACK").unwrap();
    drop(holder);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("requalify") && err.contains("locked"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let d = env.start();
    assert_eq!(
        get(d.addr, "/calls.csv", &bearer()).body,
        before,
        "nothing half-written"
    );
}
