//! The webhook end to end: the real binary, real HTTP, a real SQLite file.

use std::time::Duration;

use crate::support::*;

fn post(d: &Daemon, p: &[(String, String)]) -> Resp {
    d.post_form(&borrow(p))
}

const T: &str = "2026-03-02T15:00:00Z";

fn at(secs: i64) -> String {
    let t = chrono::DateTime::parse_from_rfc3339(T).unwrap() + chrono::Duration::seconds(secs);
    rfc2822(&t.to_rfc3339())
}

/// A forwarded call: incoming, dial action with `talk` seconds, final status.
fn forwarded_call(d: &Daemon, sid: &str, dial_status: &str, talk: Option<&str>) {
    let r = post(d, &incoming(sid, TRACKING));
    assert_eq!(r.status, 200, "{}", r.text());
    let r = post(d, &dial_action(sid, TRACKING, dial_status, talk));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("text/xml"));
    assert!(r.text().contains("<Response/>"));
    let total = talk.map(|t| t.parse::<i64>().unwrap() + 12).unwrap_or(20);
    let r = post(
        d,
        &status(
            sid,
            TRACKING,
            "completed",
            &at(total),
            Some(&total.to_string()),
        ),
    );
    assert_eq!(r.status, 200);
}

#[test]
fn forwarded_call_is_answered_and_qualified() {
    let env = Env::new(&base_config(""));
    let d = env.start();
    forwarded_call(&d, "CAfwd1", "completed", Some("45"));
    let row = call_row(&env.db(), "CAfwd1").unwrap();
    assert_eq!(row.user, "acme-plumbing");
    assert_eq!(row.source, "Google Ads");
    assert_eq!(row.tracking_number, TRACKING);
    assert_eq!(row.caller, CALLER);
    assert_eq!(row.status, "completed");
    assert_eq!((row.answered, row.qualified), (Some(true), Some(true)));
    assert_eq!(
        (row.duration_seconds, row.talk_seconds),
        (Some(57), Some(45))
    );
    // started = final Timestamp - CallDuration; ended = final Timestamp.
    assert_eq!(row.started_at, unix(T));
    assert_eq!(row.ended_at, Some(unix(T) + 57));
    assert_eq!(count(&env.db(), "SELECT count(*) FROM events"), 3);
    assert!(d.wait_log(
        "stored status callback for call CAfwd1",
        std::time::Duration::from_secs(10)
    ));
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn incoming_call_twiml() {
    let env = Env::new(&base_config(
        "public_url = \"https://calls.example.com/ct\"\n",
    ));
    let d = env.start();
    let p = incoming("CAtwiml1", TRACKING);
    let url = "https://calls.example.com/ct/call-tracking/webhook";
    let r = d.post_form_signed(&borrow(&p), Some(&sign(TOKEN, url, &borrow(&p))));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("Content-Type"), Some("text/xml"));
    let xml = r.text();
    assert!(
        xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"),
        "{xml}"
    );
    assert!(
        xml.contains(&format!(
            "<Dial action=\"{url}\" method=\"POST\" timeout=\"18\" answerOnBridge=\"true\"><Number>{SHOP}</Number></Dial>"
        )),
        "{xml}"
    );

    // No forward_to: an empty response (Twilio hangs up) and a warning.
    let p = incoming("CAtwiml2", TRACKING_NO_FORWARD);
    let r = d.post_form_signed(&borrow(&p), Some(&sign(TOKEN, url, &borrow(&p))));
    assert_eq!(r.status, 200);
    assert_eq!(
        r.text().trim_end(),
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response/>"
    );
    assert!(d.wait_log("has no forward_to", Duration::from_secs(2)));
    // Hung up on before any final status: not answered once the call ends.
    let p = status(
        "CAtwiml2",
        TRACKING_NO_FORWARD,
        "completed",
        &at(1),
        Some("1"),
    );
    let r = d.post_form_signed(&borrow(&p), Some(&sign(TOKEN, url, &borrow(&p))));
    assert_eq!(r.status, 200);
    let row = call_row(&env.db(), "CAtwiml2").unwrap();
    assert_eq!(
        (row.answered, row.qualified, row.talk_seconds),
        (Some(false), Some(false), Some(0))
    );
}

#[test]
fn qualification_boundary_29_and_30_seconds() {
    let env = Env::new(&base_config(""));
    let d = env.start();
    forwarded_call(&d, "CA29", "completed", Some("29"));
    forwarded_call(&d, "CA30", "completed", Some("30"));
    let r29 = call_row(&env.db(), "CA29").unwrap();
    let r30 = call_row(&env.db(), "CA30").unwrap();
    assert_eq!(
        (r29.answered, r29.qualified, r29.talk_seconds),
        (Some(true), Some(false), Some(29))
    );
    assert_eq!(
        (r30.answered, r30.qualified, r30.talk_seconds),
        (Some(true), Some(true), Some(30))
    );
}

#[test]
fn dial_action_outcomes() {
    let env = Env::new(&base_config(""));
    let d = env.start();
    forwarded_call(&d, "CAdialok", "completed", Some("31"));
    for st in ["no-answer", "busy", "failed", "canceled"] {
        let sid = format!("CAdial-{st}");
        forwarded_call(&d, &sid, st, None);
        let row = call_row(&env.db(), &sid).unwrap();
        assert_eq!(
            (row.answered, row.qualified, row.talk_seconds),
            (Some(false), Some(false), Some(0)),
            "{st}"
        );
        // The parent completed (Twilio answered it to run <Dial>), the leg did not.
        assert_eq!(row.status, "completed");
    }
    let ok = call_row(&env.db(), "CAdialok").unwrap();
    assert_eq!((ok.answered, ok.qualified), (Some(true), Some(true)));
}

#[test]
fn busy_and_no_answer_status_callbacks() {
    let env = Env::new(&base_config(""));
    let d = env.start();
    for st in ["busy", "no-answer"] {
        let sid = format!("CAst-{st}");
        let r = post(
            &d,
            &status(&sid, TRACKING_NO_FORWARD, st, &at(5), Some("0")),
        );
        assert_eq!(r.status, 200);
        let row = call_row(&env.db(), &sid).unwrap();
        assert_eq!(row.status, st);
        assert_eq!(
            (row.answered, row.qualified, row.talk_seconds),
            (Some(false), Some(false), Some(0))
        );
        assert_eq!(row.user, "bob-electric");
    }
}

#[test]
fn outbound_call_uses_from_as_tracking_number() {
    let env = Env::new(&base_config(""));
    let d = env.start();
    let mut p = status("CAout", TRACKING, "completed", &at(90), Some("60"));
    set(&mut p, "Direction", "outbound-api");
    set(&mut p, "From", TRACKING);
    set(&mut p, "To", CALLER);
    set(&mut p, "ToCity", "OAKLAND");
    let r = post(&d, &p);
    assert_eq!(r.status, 200);
    let row = call_row(&env.db(), "CAout").unwrap();
    assert_eq!(row.tracking_number, TRACKING);
    assert_eq!(row.caller, CALLER);
    assert_eq!(row.user, "acme-plumbing");
    assert_eq!(
        (row.answered, row.qualified, row.talk_seconds),
        (Some(true), Some(true), Some(60))
    );
    assert_eq!(row.started_at, unix(T) + 30);

    // A leg of our own <Dial> is kept as an event, but makes no call row.
    let mut leg = status("CAleg", SHOP, "completed", &at(10), Some("10"));
    set(&mut leg, "Direction", "outbound-dial");
    set(&mut leg, "ParentCallSid", "CAout");
    assert_eq!(post(&d, &leg).status, 200);
    assert!(call_row(&env.db(), "CAleg").is_none());
    assert_eq!(
        count(
            &env.db(),
            "SELECT count(*) FROM events WHERE call_sid = 'CAleg'"
        ),
        1
    );
}

#[test]
fn unknown_number_is_recorded_with_empty_user() {
    let env = Env::new(&base_config(""));
    let d = env.start();
    let r = post(&d, &incoming("CAunknown", "+18005559999"));
    assert_eq!(r.status, 200);
    assert!(r.text().contains("<Response/>"));
    let row = call_row(&env.db(), "CAunknown").unwrap();
    assert_eq!((row.user.as_str(), row.source.as_str()), ("", ""));
    assert_eq!(row.tracking_number, "+18005559999");
    assert!(d.wait_log("not in [[numbers]]", Duration::from_secs(2)));
}

#[test]
fn duplicates_change_nothing() {
    let env = Env::new(&base_config(""));
    let d = env.start();
    forwarded_call(&d, "CAdup", "completed", Some("40"));
    let before = call_row(&env.db(), "CAdup").unwrap();
    // Twilio retries: the same requests again, one with an idempotency token.
    let p = status("CAdup", TRACKING, "completed", &at(52), Some("52"));
    assert_eq!(post(&d, &p).status, 200);
    let body = form_encode(&borrow(&p));
    let sig = sign(TOKEN, &d.webhook_url(), &borrow(&p));
    let r = request(
        d.addr,
        "POST",
        "/call-tracking/webhook",
        &[
            ("Content-Type", "application/x-www-form-urlencoded".into()),
            ("X-Twilio-Signature", sig),
            ("I-Twilio-Idempotency-Token", "retry-1".into()),
        ],
        body.as_bytes(),
    );
    assert_eq!(r.status, 200);
    assert_eq!(post(&d, &incoming("CAdup", TRACKING)).status, 200);
    assert_eq!(call_row(&env.db(), "CAdup").unwrap(), before);
    assert_eq!(count(&env.db(), "SELECT count(*) FROM calls"), 1);
    // Every verified request is kept; the repeats are marked as such.
    assert_eq!(
        count(
            &env.db(),
            "SELECT count(*) FROM events WHERE call_sid = 'CAdup'"
        ),
        6
    );
    assert_eq!(
        count(
            &env.db(),
            "SELECT count(*) FROM events WHERE duplicate_of IS NOT NULL"
        ),
        3
    );
    assert_eq!(
        count(
            &env.db(),
            "SELECT count(*) FROM events WHERE idempotency_token = 'retry-1'"
        ),
        1
    );
}

#[test]
fn out_of_order_events_give_the_same_call() {
    let env = Env::new(&base_config(""));
    let d = env.start();
    // Final status first, then the dial action, then a late ringing and the incoming.
    let sid = "CAooo";
    assert_eq!(
        post(&d, &status(sid, TRACKING, "completed", &at(70), Some("70"))).status,
        200
    );
    let mid = call_row(&env.db(), sid).unwrap();
    assert_eq!(mid.status, "completed");
    assert_eq!((mid.answered, mid.qualified), (Some(true), Some(true)));
    assert_eq!(
        post(&d, &dial_action(sid, TRACKING, "completed", Some("20"))).status,
        200
    );
    let mut late = status(sid, TRACKING, "ringing", &at(1), None);
    set(&mut late, "SequenceNumber", "1");
    assert_eq!(post(&d, &late).status, 200);
    assert_eq!(post(&d, &incoming(sid, TRACKING)).status, 200);
    let row = call_row(&env.db(), sid).unwrap();
    assert_eq!(
        row.status, "completed",
        "a late ringing never overwrites completed"
    );
    assert_eq!(
        (row.answered, row.qualified, row.talk_seconds),
        (Some(true), Some(false), Some(20))
    );
    assert_eq!(row.started_at, unix(T));
    assert_eq!(row.ended_at, Some(unix(T) + 70));
}

#[test]
fn bad_signatures_are_403_and_store_nothing() {
    let env = Env::new(&base_config(""));
    let d = env.start();
    let p = incoming("CAbad", TRACKING);
    let good = sign(TOKEN, &d.webhook_url(), &borrow(&p));
    // Missing, wrong, signed with another token, signed for another URL.
    for sig in [
        None,
        Some("RSOYDt4T1cUTdK1PDd93/VVr8B8=".to_owned()),
        Some("not base64 at all".to_owned()),
        Some(sign("other-token", &d.webhook_url(), &borrow(&p))),
        Some(sign(
            TOKEN,
            "https://elsewhere.example/call-tracking/webhook",
            &borrow(&p),
        )),
    ] {
        let r = d.post_form_signed(&borrow(&p), sig.as_deref());
        assert_eq!(r.status, 403, "{sig:?}");
    }
    // Tampered: a parameter changed, added or dropped after signing.
    let mut changed = p.clone();
    set(&mut changed, "To", TRACKING_NO_FORWARD);
    let mut added = p.clone();
    added.push(("Extra".into(), "1".into()));
    let dropped: Vec<_> = p
        .iter()
        .filter(|(k, _)| k != "CallerName")
        .cloned()
        .collect();
    for t in [changed, added, dropped] {
        assert_eq!(d.post_form_signed(&borrow(&t), Some(&good)).status, 403);
    }
    // A JSON body without bodySHA256 cannot be verified.
    let r = request(
        d.addr,
        "POST",
        "/call-tracking/webhook",
        &[
            ("Content-Type", "application/json".into()),
            ("X-Twilio-Signature", sign(TOKEN, &d.webhook_url(), &[])),
        ],
        br#"{"CallSid":"CAbad"}"#,
    );
    assert_eq!(r.status, 403);
    assert_eq!(count(&env.db(), "SELECT count(*) FROM events"), 0);
    assert_eq!(count(&env.db(), "SELECT count(*) FROM calls"), 0);
    // The warning names the URL that was checked, never the token or the signature.
    assert!(d.wait_log("for URL ", std::time::Duration::from_secs(5)));
    let log = d.log_text();
    assert!(
        log.contains(&format!("for URL {}", d.webhook_url())),
        "{log}"
    );
    assert!(!log.contains(TOKEN) && !log.contains(&good), "{log}");
    // And the right signature still works.
    assert_eq!(d.post_form_signed(&borrow(&p), Some(&good)).status, 200);
}

#[test]
fn json_body_with_body_sha256() {
    let env = Env::new(&base_config(""));
    let d = env.start();
    let body = br#"{"CallSid":"CAjson","CallStatus":"completed","CallDuration":42,"Direction":"inbound","From":"+14155550100","To":"+18005550100","Timestamp":"Mon, 02 Mar 2026 15:00:42 +0000","Extra":null}"#;
    let hash: String = {
        use sha2::Digest;
        sha2::Sha256::digest(body)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let path = format!("/call-tracking/webhook?bodySHA256={hash}");
    let sig = sign(TOKEN, &d.url(&path), &[]);
    let headers = [
        ("Content-Type", "application/json; charset=utf-8".to_owned()),
        ("X-Twilio-Signature", sig),
    ];
    let r = request(d.addr, "POST", &path, &headers, body);
    assert_eq!(r.status, 200, "{}", r.text());
    let row = call_row(&env.db(), "CAjson").unwrap();
    assert_eq!(
        (row.answered, row.talk_seconds, row.qualified),
        (Some(true), Some(42), Some(true))
    );
    // The same URL and signature with a different body: the hash no longer matches.
    let r = request(d.addr, "POST", &path, &headers, br#"{"CallSid":"CAjson2"}"#);
    assert_eq!(r.status, 403);
}

#[test]
fn error_statuses_in_contract_order() {
    let env = Env::new(&base_config("max_body_bytes = 2048\n"));
    let d = env.start();
    let wh = "/call-tracking/webhook";
    assert_eq!(get(d.addr, "/nope", &[]).status, 404);
    assert_eq!(
        request(d.addr, "POST", "/call-tracking/webhook/", &[], b"x").status,
        404
    );
    let r = get(d.addr, wh, &[]);
    assert_eq!((r.status, r.header("Allow")), (405, Some("POST")));
    let r = request(d.addr, "PUT", "/healthz", &[], b"");
    assert_eq!((r.status, r.header("Allow")), (405, Some("GET, HEAD")));
    // 413 before reading, whatever the content type.
    let big = vec![b'a'; 4096];
    assert_eq!(
        request(
            d.addr,
            "POST",
            wh,
            &[("Content-Type", "text/plain".into())],
            &big
        )
        .status,
        413
    );
    // A huge declared length with no body: refused at once, and the daemon lives on.
    let r = raw_request(
        d.addr,
        b"POST /call-tracking/webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000000000000\r\n\r\n",
        false,
    );
    assert_eq!(r.status, 413);
    assert_eq!(
        request(
            d.addr,
            "POST",
            wh,
            &[("Content-Type", "text/plain".into())],
            b"a=b"
        )
        .status,
        415
    );
    assert_eq!(request(d.addr, "POST", wh, &[], b"a=b").status, 415);
    let form = [(
        "Content-Type",
        "application/x-www-form-urlencoded".to_owned(),
    )];
    assert_eq!(
        request(d.addr, "POST", wh, &form, b"CallSid=%zz").status,
        400
    );
    assert_eq!(
        request(d.addr, "POST", wh, &form, b"CallSid=%FF%FE").status,
        400
    );
    let json = [("Content-Type", "application/json".to_owned())];
    assert_eq!(
        request(d.addr, "POST", wh, &json, b"{\"CallSid\": [1]}").status,
        400
    );
    assert_eq!(request(d.addr, "POST", wh, &json, b"not json").status, 400);
    // Unsigned but well-formed: 403 (signature is checked before CallSid).
    assert_eq!(request(d.addr, "POST", wh, &form, b"From=x").status, 403);
    // Signed but without CallSid: 400.
    let p = [("From", CALLER), ("To", TRACKING)];
    assert_eq!(d.post_form(&p).status, 400);
    // Health, GET and HEAD.
    let r = get(d.addr, "/healthz", &[]);
    assert_eq!((r.status, r.text().as_str()), (200, "ok\n"));
    let r = request(d.addr, "HEAD", "/healthz", &[], b"");
    assert_eq!((r.status, r.body.len()), (200, 0));
    // The metrics path is not served on the main listener.
    assert_eq!(get(d.addr, "/metrics", &[]).status, 404);
    assert_eq!(count(&env.db(), "SELECT count(*) FROM events"), 0);
    assert!(!d.log_text().contains("panicked"));
}

#[test]
fn calls_survive_a_restart() {
    let env = Env::new(&base_config(""));
    let d = env.start();
    let r = post(&d, &incoming("CArestart", TRACKING));
    assert_eq!(r.status, 200);
    assert_eq!(d.stop(), Some(0));
    let d = env.start();
    assert_eq!(
        post(
            &d,
            &dial_action("CArestart", TRACKING, "completed", Some("33"))
        )
        .status,
        200
    );
    let row = call_row(&env.db(), "CArestart").unwrap();
    assert_eq!((row.answered, row.qualified), (Some(true), Some(true)));
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn previous_auth_token_is_accepted_while_rotating() {
    let cfg = base_config("").replace(
        &format!("auth_token = \"{TOKEN}\""),
        &format!("auth_token = \"brand-new-token\"\nprevious_auth_token = \"{TOKEN}\""),
    );
    let env = Env::new(&cfg);
    let d = env.start();
    assert_eq!(post(&d, &incoming("CArot1", TRACKING)).status, 200);
    let p = incoming("CArot2", TRACKING);
    let sig = sign("brand-new-token", &d.webhook_url(), &borrow(&p));
    assert_eq!(d.post_form_signed(&borrow(&p), Some(&sig)).status, 200);
    let sig = sign("unknown-token", &d.webhook_url(), &borrow(&p));
    assert_eq!(d.post_form_signed(&borrow(&p), Some(&sig)).status, 403);
}

#[test]
fn public_url_port_variants() {
    let env = Env::new(&base_config("public_url = \"https://calls.example.com\"\n"));
    let d = env.start();
    let p = incoming("CAport", TRACKING);
    for url in [
        "https://calls.example.com/call-tracking/webhook?x=1&a=2",
        "https://calls.example.com:443/call-tracking/webhook?x=1&a=2",
    ] {
        let sig = sign(TOKEN, url, &borrow(&p));
        let body = form_encode(&borrow(&p));
        let r = request(
            d.addr,
            "POST",
            "/call-tracking/webhook?x=1&a=2",
            &[
                ("Content-Type", "application/x-www-form-urlencoded".into()),
                ("X-Twilio-Signature", sig),
            ],
            body.as_bytes(),
        );
        assert_eq!(r.status, 200, "{url}");
    }
    // The query is signed verbatim: re-sorted, it is another URL.
    let sig = sign(
        TOKEN,
        "https://calls.example.com/call-tracking/webhook?a=2&x=1",
        &borrow(&p),
    );
    let body = form_encode(&borrow(&p));
    let r = request(
        d.addr,
        "POST",
        "/call-tracking/webhook?x=1&a=2",
        &[
            ("Content-Type", "application/x-www-form-urlencoded".into()),
            ("X-Twilio-Signature", sig),
        ],
        body.as_bytes(),
    );
    assert_eq!(r.status, 403);
}

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

fn chmod(path: &std::path::Path, mode: u32) {
    let mut p = std::fs::metadata(path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut p, mode);
    std::fs::set_permissions(path, p).unwrap();
}

#[test]
fn read_only_database_answers_503_then_recovers() {
    let env = Env::new(&base_config(""));
    let d = env.start();
    assert_eq!(post(&d, &incoming("CAro1", TRACKING)).status, 200);
    assert_eq!(d.stop(), Some(0));
    let events = count(&env.db(), "SELECT count(*) FROM events");

    // Make the database file read-only. root ignores file modes, so then the daemon
    // runs as `nobody` (setpriv), for whom the mode applies.
    chmod(env.dir.path(), 0o777);
    chmod(&env.config(), 0o644);
    chmod(&env.db(), 0o444);
    let wrapper: &[&str] = if is_root() {
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ]
    } else {
        &[]
    };
    let d = Daemon::start_wrapped(&env, Vec::new(), wrapper);
    let r = post(
        &d,
        &status("CAro1", TRACKING, "completed", &at(40), Some("40")),
    );
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("Retry-After"), Some("5"));
    assert_eq!(get(d.addr, "/healthz", &[]).status, 503);
    assert_eq!(
        count(&env.db(), "SELECT count(*) FROM events"),
        events,
        "nothing half-stored"
    );
    assert!(
        d.wait_log("read-only", std::time::Duration::from_secs(10)),
        "{}",
        d.log_text()
    );
    // Twilio retries while it is still read-only.
    let r = post(
        &d,
        &status("CAro1", TRACKING, "completed", &at(40), Some("40")),
    );
    assert_eq!(r.status, 503, "{}", r.text());

    // Writable again: the same request (Twilio's retry) now succeeds, without a health
    // check in between to reopen the database.
    chmod(&env.db(), 0o666);
    let r = post(
        &d,
        &status("CAro1", TRACKING, "completed", &at(40), Some("40")),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(get(d.addr, "/healthz", &[]).status, 200);
    assert_eq!(call_row(&env.db(), "CAro1").unwrap().status, "completed");
}
