//! The export over real HTTP and the real binary: columns, filters, auth, safe cells,
//! DST, CLI = HTTP, share links, XLSX read back with an XLSX reader.

use std::io::Read;

use crate::support::*;

const HOSTILE: [&str; 8] = [
    "=HYPERLINK(\"http://evil.example\",\"click\")",
    "+SUM(1,2)",
    "-2+3",
    "@SUM(A1)",
    "\t=1+1",
    "\r=1+1",
    "=cmd|' /C calc'!A0",
    "+1 (415) 555-0100",
];

/// A daemon with a known set of calls.
fn seeded() -> (Env, Daemon) {
    let env = Env::new(&base_config("public_url = \"https://calls.example.com\"\n"));
    let d = env.start();
    let url = "https://calls.example.com/call-tracking/webhook";
    let send = |p: Vec<(String, String)>| {
        let sig = sign(TOKEN, url, &borrow(&p));
        let r = d.post_form_signed(&borrow(&p), Some(&sig));
        assert_eq!(r.status, 200, "{}", r.text());
    };
    // Forwarded and qualified, Google Ads, 2026-03-02 (CST).
    send(incoming("CA01", TRACKING));
    send(dial_action("CA01", TRACKING, "completed", Some("45")));
    send(status(
        "CA01",
        TRACKING,
        "completed",
        &rfc2822("2026-03-02T15:00:57Z"),
        Some("57"),
    ));
    // Forwarded, unanswered, 2026-03-05.
    send(dial_action("CA02", TRACKING, "no-answer", None));
    send(status(
        "CA02",
        TRACKING,
        "completed",
        &rfc2822("2026-03-05T16:00:20Z"),
        Some("20"),
    ));
    // Around the spring-forward gap in Chicago (2026-03-08 02:00 CST -> 03:00 CDT).
    send(status(
        "CA03",
        TRACKING_NO_FORWARD,
        "completed",
        &rfc2822("2026-03-08T08:00:39Z"),
        Some("40"),
    ));
    send(status(
        "CA04",
        TRACKING_NO_FORWARD,
        "completed",
        &rfc2822("2026-03-08T08:00:40Z"),
        Some("40"),
    ));
    // Around the fall-back overlap (2026-11-01 02:00 CDT -> 01:00 CST).
    send(status(
        "CA05",
        TRACKING_NO_FORWARD,
        "completed",
        &rfc2822("2026-11-01T06:30:40Z"),
        Some("40"),
    ));
    send(status(
        "CA06",
        TRACKING_NO_FORWARD,
        "completed",
        &rfc2822("2026-11-01T07:30:40Z"),
        Some("40"),
    ));
    // Hostile caller names on an unknown number.
    for (i, name) in HOSTILE.iter().enumerate() {
        let mut p = status(
            &format!("CAh{i}"),
            "+18005559999",
            "busy",
            &rfc2822("2026-04-01T12:00:00Z"),
            Some("0"),
        );
        set(&mut p, "CallerName", name);
        send(p);
    }
    (env, d)
}

fn csv_rows(body: &[u8]) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::ReaderBuilder::new().from_reader(body);
    let header = r.headers().unwrap().iter().map(str::to_owned).collect();
    let rows = r
        .records()
        .map(|rec| rec.unwrap().iter().map(str::to_owned).collect())
        .collect();
    (header, rows)
}

fn export_http(d: &Daemon, query: &str) -> Resp {
    get(d.addr, &format!("/calls.csv{query}"), &bearer())
}

fn col(header: &[String], name: &str) -> usize {
    header.iter().position(|h| h == name).unwrap()
}

#[test]
fn csv_columns_values_and_order() {
    let (_env, d) = seeded();
    let r = export_http(&d, "");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("text/csv; charset=utf-8"));
    assert!(r.body.windows(2).any(|w| w == b"\r\n"), "CRLF line ends");
    let (header, rows) = csv_rows(&r.body);
    assert_eq!(
        header.join(","),
        "call_sid,user,tracking_number,source,caller,caller_name,caller_city,caller_state,direction,status,answered,qualified,duration_seconds,talk_seconds,started_at,ended_at,started_at_local,outcome,ring_seconds,first_time_caller,prior_calls,qualified_reason,recording_url,voicemail_url,captured_by"
    );
    assert_eq!(rows.len(), 6 + HOSTILE.len());
    let first = &rows[0];
    let expected = [
        "CA01",
        "acme-plumbing",
        TRACKING,
        "Google Ads",
        CALLER,
        "JOHN SMITH",
        "SAN FRANCISCO",
        "CA",
        "inbound",
        "completed",
        "true",
        "true",
        "57",
        "45",
        "2026-03-02T15:00:00Z",
        "2026-03-02T15:00:57Z",
        "2026-03-02 09:00:00",
        "answered",
        "12",
        "true",
        "0",
        "talked 45 s, at least 30 s",
        "",
        "",
        "webhook",
    ];
    assert_eq!(first, &expected.map(str::to_owned).to_vec());
    let second = &rows[1];
    assert_eq!(second[0], "CA02");
    assert_eq!(
        (
            second[10].as_str(),
            second[11].as_str(),
            second[13].as_str()
        ),
        ("false", "false", "0")
    );
    // Ordered by started_at, then call_sid.
    let starts: Vec<&String> = rows
        .iter()
        .map(|r| &r[col(&header, "started_at")])
        .collect();
    let mut sorted = starts.clone();
    sorted.sort();
    assert_eq!(starts, sorted);
    // Unknown values are empty cells: an in-progress call.
    let p = incoming("CAlive", TRACKING);
    assert_eq!(
        d.post_form_signed(
            &borrow(&p),
            Some(&sign(
                TOKEN,
                "https://calls.example.com/call-tracking/webhook",
                &borrow(&p)
            ))
        )
        .status,
        200
    );
    let (_, rows) = csv_rows(&export_http(&d, "?user=acme-plumbing").body);
    let live = rows.iter().find(|r| r[0] == "CAlive").unwrap();
    assert_eq!(&live[10..14], &["", "", "", ""]);
    assert_eq!(live[15], "");
}

#[test]
fn formulas_are_neutralised_and_phones_kept() {
    let (_env, d) = seeded();
    let (header, rows) = csv_rows(&export_http(&d, "?from=2026-04-01&to=2026-04-02").body);
    let name = col(&header, "caller_name");
    let mut names: Vec<String> = rows.iter().map(|r| r[name].clone()).collect();
    names.sort();
    let mut expected: Vec<String> = HOSTILE.iter().map(|h| format!("'{h}")).collect();
    expected.sort();
    assert_eq!(names, expected);
    for r in &rows {
        assert_eq!(
            r[col(&header, "caller")],
            CALLER,
            "a plain phone number stays as it is"
        );
        assert_eq!(r[col(&header, "tracking_number")], "+18005559999");
        assert_eq!(r[col(&header, "user")], "", "unknown number: empty user");
    }
}

#[test]
fn local_column_crosses_dst_in_the_configured_zone() {
    let (_env, d) = seeded();
    let (header, rows) = csv_rows(&export_http(&d, "?user=bob-electric").body);
    let local = col(&header, "started_at_local");
    let by_sid = |sid: &str| rows.iter().find(|r| r[0] == sid).unwrap()[local].clone();
    assert_eq!(by_sid("CA03"), "2026-03-08 01:59:59"); // 07:59:59Z, CST
    assert_eq!(by_sid("CA04"), "2026-03-08 03:00:00"); // 08:00:00Z, CDT
    assert_eq!(by_sid("CA05"), "2026-11-01 01:30:00"); // 06:30Z, CDT
    assert_eq!(by_sid("CA06"), "2026-11-01 01:30:00"); // 07:30Z, CST: the repeated hour
    // A date filter is local midnight: 2026-03-08 starts at 06:00Z (CST).
    let (_, rows) = csv_rows(&export_http(&d, "?from=2026-03-08&to=2026-03-09").body);
    let sids: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(sids, ["CA03", "CA04"]);
}

#[test]
fn filters() {
    let (_env, d) = seeded();
    let sids = |q: &str| -> Vec<String> {
        let r = export_http(&d, q);
        assert_eq!(r.status, 200, "{q}: {}", r.text());
        csv_rows(&r.body)
            .1
            .into_iter()
            .map(|r| r[0].clone())
            .collect()
    };
    assert_eq!(sids("?user=acme-plumbing"), ["CA01", "CA02"]);
    assert_eq!(
        sids("?source=Flyer&qualified=true"),
        ["CA03", "CA04", "CA05", "CA06"]
    );
    assert_eq!(sids("?user=acme-plumbing&qualified=false"), ["CA02"]);
    assert_eq!(sids("?from=2026-03-02T15:00:00Z&to=2026-03-05"), ["CA01"]);
    assert_eq!(sids("?from=2026-03-02T15:00:01Z&to=2026-03-06"), ["CA02"]);
    assert_eq!(sids("?to=2026-03-02T15:00:00Z"), Vec::<String>::new());
    assert_eq!(sids("?source=Google%20Ads"), ["CA01", "CA02"]);
    assert_eq!(sids("?user=nobody"), Vec::<String>::new());
    for bad in [
        "?qualified=yes",
        "?from=03/02/2026",
        "?to=2026-02-30",
        "?colour=red",
        "?user=a&user=b",
    ] {
        let r = export_http(&d, bad);
        assert_eq!(r.status, 400, "{bad}");
        assert!(
            r.text().ends_with('\n') && r.text().len() > 10,
            "{bad}: a sentence: {}",
            r.text()
        );
    }
}

#[test]
fn cli_and_http_are_byte_identical() {
    let (env, d) = seeded();
    let cfg = env.config();
    for (query, flags) in [
        ("", vec![]),
        ("?user=acme-plumbing", vec!["--user", "acme-plumbing"]),
        (
            "?qualified=true&from=2026-03-03",
            vec!["--qualified", "true", "--from", "2026-03-03"],
        ),
        (
            "?source=Flyer&to=2026-11-01T07:00:00Z",
            vec!["--source", "Flyer", "--to", "2026-11-01T07:00:00Z"],
        ),
    ] {
        let http = export_http(&d, query).body;
        let mut args = vec!["export", "--config", cfg.to_str().unwrap()];
        args.extend(flags.iter().copied());
        let o = env.run(&args);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(o.stdout, http, "{query}");
        // And to a file.
        let out = env.dir.path().join("out.csv");
        let _ = std::fs::remove_file(&out);
        args.extend(["--output", out.to_str().unwrap()]);
        assert_eq!(env.run(&args).status.code(), Some(0));
        assert_eq!(std::fs::read(&out).unwrap(), http);
    }
    let o = env.run(&[
        "export",
        "--config",
        cfg.to_str().unwrap(),
        "--qualified",
        "maybe",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("qualified"));
    // A workbook to a redirected stdout (not a terminal) is the same workbook.
    let o = env.run(&[
        "export",
        "--config",
        cfg.to_str().unwrap(),
        "--format",
        "xlsx",
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let http = get(d.addr, "/calls.xlsx", &bearer()).body;
    // (Byte for byte they differ: the workbook records when it was made.)
    assert_eq!(xlsx_cells(&o.stdout), xlsx_cells(&http));
}

#[test]
fn export_auth_and_order_of_checks() {
    let (env, d) = seeded();
    let r = get(d.addr, "/calls.csv", &[]);
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("WWW-Authenticate"),
        Some("Basic realm=\"calltrackd\"")
    );
    assert_eq!(
        get(
            d.addr,
            "/calls.csv",
            &[("Authorization", "Bearer wrong".into())]
        )
        .status,
        401
    );
    assert_eq!(
        get(
            d.addr,
            "/calls.csv",
            &[("Authorization", "Basic !!!".into())]
        )
        .status,
        401
    );
    let basic = |user: &str, pass: &str| {
        use base64::Engine;
        vec![(
            "Authorization",
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
            ),
        )]
    };
    assert_eq!(
        get(d.addr, "/calls.csv", &basic("sheets", EXPORT_TOKEN)).status,
        200
    );
    assert_eq!(
        get(d.addr, "/calls.csv", &basic("", EXPORT_TOKEN)).status,
        200
    );
    assert_eq!(
        get(d.addr, "/calls.csv", &basic(EXPORT_TOKEN, "x")).status,
        401
    );
    // 401 comes before 400.
    assert_eq!(get(d.addr, "/calls.csv?qualified=maybe", &[]).status, 401);
    let r = request(d.addr, "POST", "/calls.csv", &bearer(), b"");
    assert_eq!((r.status, r.header("Allow")), (405, Some("GET, HEAD")));
    let r = request(d.addr, "HEAD", "/calls.csv", &bearer(), b"");
    assert_eq!((r.status, r.body.len()), (200, 0));
    assert!(!d.log_text().contains(EXPORT_TOKEN));
    drop(d);

    // No export token: the HTTP export is off (404), after the method check (405).
    let cfg = std::fs::read_to_string(env.config())
        .unwrap()
        .replace(&format!("token = \"{EXPORT_TOKEN}\"\n"), "");
    env.write_config(&cfg);
    let d = env.start();
    assert_eq!(get(d.addr, "/calls.csv", &bearer()).status, 404);
    assert_eq!(get(d.addr, "/calls.xlsx", &[]).status, 404);
    assert_eq!(
        request(d.addr, "DELETE", "/calls.csv", &[], b"").status,
        405
    );
    // The command line still works.
    let o = env.run(&["export", "--config", env.config().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("call_sid,"));
}

fn share(env: &Env, args: &[&str]) -> String {
    let cfg = env.config();
    let mut a = vec!["share-link", "--config", cfg.to_str().unwrap()];
    a.extend_from_slice(args);
    let o = env.run(&a);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap().trim().to_owned()
}

/// The path and query of a share link (public_url is https://calls.example.com).
fn path_of(link: &str) -> String {
    link.strip_prefix("https://calls.example.com")
        .unwrap()
        .to_owned()
}

#[test]
fn share_links_scope_expire_refuse_edits_and_revoke() {
    let (env, d) = seeded();
    let link = share(&env, &["--user", "acme-plumbing"]);
    assert!(
        link.starts_with("https://calls.example.com/calls.csv?"),
        "{link}"
    );
    assert!(!link.contains(EXPORT_TOKEN));
    // Lifetime: 90 days by default, --days otherwise (read from the link itself).
    let expires = |link: &str| -> i64 {
        link.split("expires=")
            .nth(1)
            .unwrap()
            .split('&')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let now = chrono::Utc::now().timestamp();
    assert!((expires(&link) - (now + 90 * 86_400)).abs() < 120, "{link}");
    let week = share(&env, &["--user", "acme-plumbing", "--days", "7"]);
    assert!((expires(&week) - (now + 7 * 86_400)).abs() < 120, "{week}");
    let r = get(d.addr, &path_of(&link), &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    let sids: Vec<String> = csv_rows(&r.body)
        .1
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(sids, ["CA01", "CA02"], "only that customer's calls");
    // from/to narrow it.
    let r = get(d.addr, &format!("{}&from=2026-03-04", path_of(&link)), &[]);
    assert_eq!(csv_rows(&r.body).1.len(), 1);
    // Edited: another user, an added filter, a removed filter, a longer expiry.
    let p = path_of(&link);
    for edited in [
        p.replace("user=acme-plumbing", "user=bob-electric"),
        format!("{p}&qualified=true"),
        p.replace("user=acme-plumbing&", ""),
        {
            let exp = p
                .split("expires=")
                .nth(1)
                .unwrap()
                .split('&')
                .next()
                .unwrap();
            p.replace(exp, &(exp.parse::<i64>().unwrap() + 86400).to_string())
        },
        p.replace("/calls.csv", "/calls.xlsx"),
    ] {
        assert_eq!(get(d.addr, &edited, &[]).status, 403, "{edited}");
    }
    // Expired (signed with the right token, expiry in the past).
    let past = chrono::Utc::now().timestamp() - 1;
    let q = calltrackd::export::share_query(
        &calltrackd::config::Secret::new(EXPORT_TOKEN.into()),
        calltrackd::export::Format::Csv,
        &[("user".into(), "acme-plumbing".into())],
        past,
    );
    let r = get(d.addr, &format!("/calls.csv?{q}"), &[]);
    assert_eq!(r.status, 403);
    assert!(r.text().contains("expired"));
    // An XLSX link.
    let xlink = share(
        &env,
        &["--user", "bob-electric", "--format", "xlsx", "--days", "7"],
    );
    assert!(xlink.starts_with("https://calls.example.com/calls.xlsx?"));
    assert_eq!(get(d.addr, &path_of(&xlink), &[]).status, 200);
    drop(d);

    // A new export token revokes every link.
    let cfg = std::fs::read_to_string(env.config())
        .unwrap()
        .replace(EXPORT_TOKEN, "a-brand-new-export-token");
    env.write_config(&cfg);
    let d = env.start();
    assert_eq!(get(d.addr, &path_of(&link), &[]).status, 403);

    // Usage errors.
    for bad in [
        vec!["--days", "0"],
        vec!["--qualified", "perhaps"],
        vec!["--format", "pdf"],
    ] {
        let cfg = env.config();
        let mut a = vec!["share-link", "--config", cfg.to_str().unwrap()];
        a.extend(bad.iter().copied());
        assert_eq!(env.run(&a).status.code(), Some(2), "{bad:?}");
    }
}

fn xlsx_cells(bytes: &[u8]) -> (calamine::Range<calamine::Data>, String) {
    use calamine::Reader;
    let mut wb: calamine::Xlsx<_> =
        calamine::Xlsx::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
    assert_eq!(wb.sheet_names(), ["Calls"]);
    let range = wb.worksheet_range("Calls").unwrap();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
    let mut sheet = String::new();
    zip.by_name("xl/worksheets/sheet1.xml")
        .unwrap()
        .read_to_string(&mut sheet)
        .unwrap();
    (range, sheet)
}

#[test]
fn xlsx_has_typed_cells_frozen_header_and_autofilter() {
    use calamine::Data;
    let (env, d) = seeded();
    let r = get(d.addr, "/calls.xlsx?user=acme-plumbing", &bearer());
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("Content-Type"),
        Some("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
    );
    let (range, sheet) = xlsx_cells(&r.body);
    assert_eq!(range.height(), 3);
    let header: Vec<String> = (0..25)
        .map(|c| range.get((0, c)).unwrap().to_string())
        .collect();
    // The contract's columns, written out here (not the crate's own list).
    let contract = [
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
    assert_eq!(header, contract);
    let cell = |row: usize, c: usize| range.get((row, c)).cloned().unwrap_or(Data::Empty);
    assert_eq!(cell(1, 0), Data::String("CA01".into()));
    assert_eq!(
        cell(1, 2),
        Data::String(TRACKING.into()),
        "phone numbers are text"
    );
    assert_eq!(cell(1, 4), Data::String(CALLER.into()));
    assert_eq!(cell(1, 10), Data::Bool(true));
    assert_eq!(cell(1, 11), Data::Bool(true));
    assert_eq!(cell(1, 12), Data::Float(57.0));
    assert_eq!(cell(1, 13), Data::Float(45.0));
    let dt = |row, c| match cell(row, c) {
        Data::DateTime(x) => x.as_datetime().unwrap().to_string(),
        other => panic!("not a date-time cell: {other:?}"),
    };
    assert_eq!(dt(1, 14), "2026-03-02 15:00:00");
    assert_eq!(dt(1, 15), "2026-03-02 15:00:57");
    assert_eq!(
        dt(1, 16),
        "2026-03-02 09:00:00",
        "local time in America/Chicago"
    );
    assert_eq!(cell(1, 17), Data::String("answered".into()));
    assert_eq!(cell(1, 18), Data::Float(12.0), "ring seconds are a number");
    assert_eq!(cell(1, 19), Data::Bool(true), "first-time is a boolean");
    assert_eq!(cell(1, 20), Data::Float(0.0), "prior calls are a number");
    assert_eq!(
        cell(1, 21),
        Data::String("talked 45 s, at least 30 s".into())
    );
    assert_eq!(cell(1, 22), Data::Empty, "no recording: an empty cell");
    assert_eq!(cell(1, 24), Data::String("webhook".into()));
    assert_eq!(cell(2, 11), Data::Bool(false));
    assert_eq!(cell(2, 19), Data::Bool(false), "the caller's second call");
    assert_eq!(cell(2, 20), Data::Float(1.0));
    assert!(sheet.contains("state=\"frozen\""), "frozen header");
    assert!(sheet.contains("<autoFilter ref=\"A1:Y3\""), "autofilter");

    // String cells hold hostile names unchanged (no ' prefix: a string cannot run).
    let r = get(
        d.addr,
        "/calls.xlsx?from=2026-04-01&to=2026-04-02",
        &bearer(),
    );
    let (range, _) = xlsx_cells(&r.body);
    let mut names: Vec<String> = (1..range.height())
        .map(|row| range.get((row, 5)).unwrap().to_string())
        .collect();
    names.sort();
    let mut expected: Vec<String> = HOSTILE.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(names, expected);

    // The command line writes the same workbook content.
    let out = env.dir.path().join("calls.xlsx");
    let o = env.run(&[
        "export",
        "--config",
        env.config().to_str().unwrap(),
        "--format",
        "xlsx",
        "--output",
        out.to_str().unwrap(),
        "--user",
        "acme-plumbing",
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let (cli_range, _) = xlsx_cells(&std::fs::read(&out).unwrap());
    let http = get(d.addr, "/calls.xlsx?user=acme-plumbing", &bearer()).body;
    let (http_range, _) = xlsx_cells(&http);
    assert_eq!(cli_range, http_range);
}

#[test]
fn a_client_that_goes_away_mid_download_breaks_nothing() {
    let (env, d) = seeded();
    // Enough rows that the response does not fit in socket buffers.
    {
        let c = rusqlite::Connection::open(env.db()).unwrap();
        c.execute_batch(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50000)
             INSERT INTO calls (id, call_sid, user, tracking_number, source, caller, caller_name,
                caller_city, caller_state, direction, status, answered, qualified, duration_seconds,
                talk_seconds, started_at, ended_at, forwarded, min_duration_seconds, updated_at)
             SELECT 1000000 + i, 'CAbulk' || i, 'bulk', '+18005551212', 'x', '+14155550100', 'NAME', 'C', 'S',
                'inbound', 'completed', 1, 1, 60, 50, 1700000000 + i, 1700000060 + i, 1, 30, 'now' FROM n;",
        )
        .unwrap();
    }
    for _ in 0..5 {
        let mut s = std::net::TcpStream::connect(d.addr).unwrap();
        use std::io::Write;
        write!(
            s,
            "GET /calls.csv HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {EXPORT_TOKEN}\r\n\r\n"
        )
        .unwrap();
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).unwrap();
        drop(s); // gone mid-download
    }
    // The daemon still stores callbacks and serves full exports.
    let p = incoming("CAafter", TRACKING);
    let url = "https://calls.example.com/call-tracking/webhook";
    assert_eq!(
        d.post_form_signed(&borrow(&p), Some(&sign(TOKEN, url, &borrow(&p))))
            .status,
        200
    );
    let r = export_http(&d, "?user=bulk");
    assert_eq!(csv_rows(&r.body).1.len(), 50000);
    assert!(!d.log_text().contains("panicked"));
}
