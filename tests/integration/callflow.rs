//! The call flow through the real daemon over HTTP: block list, open hours, whisper,
//! the keypress and AMD voicemail guards, voicemail and recording. Every TwiML answer is
//! parsed as XML and checked element by element; every request the flow produces is
//! sent to the URL the TwiML named (as Twilio would), signed by the tests' own signer.

use std::time::Duration;

use chrono::Datelike;

use crate::support::*;

const BLOCKED: &str = "+15551234567";
const SPAM: &str = "+19005550000";
const AFTER_HOURS: &str = "+15550001111";

/// An element: its name, attributes (sorted) and text, and its children.
#[derive(Debug, PartialEq, Eq)]
struct El {
    name: String,
    attrs: Vec<(String, String)>,
    text: String,
    children: Vec<El>,
}

fn el(node: roxmltree::Node<'_, '_>) -> El {
    let mut attrs: Vec<(String, String)> = node
        .attributes()
        .map(|a| (a.name().to_owned(), a.value().to_owned()))
        .collect();
    attrs.sort();
    El {
        name: node.tag_name().name().to_owned(),
        attrs,
        text: node
            .children()
            .filter(|c| c.is_text())
            .map(|c| c.text().unwrap_or(""))
            .collect::<String>(),
        children: node.children().filter(|c| c.is_element()).map(el).collect(),
    }
}

/// The TwiML of a `200 text/xml` answer, parsed.
fn twiml(r: &Resp) -> El {
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("Content-Type"), Some("text/xml"));
    let text = r.text();
    let doc = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let root = el(doc.root_element());
    assert_eq!(root.name, "Response");
    assert!(root.attrs.is_empty());
    root
}

fn names(e: &El) -> Vec<&str> {
    e.children.iter().map(|c| c.name.as_str()).collect()
}

fn attr<'a>(e: &'a El, name: &str) -> Option<&'a str> {
    e.attrs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Sends `params` to `url` as the TwiML gave it (relative URLs resolve against the
/// webhook's, as Twilio resolves them), signed for that exact URL.
fn post_to(d: &Daemon, url: &str, params: &[(String, String)]) -> Resp {
    let path = match url.strip_prefix("webhook") {
        Some(rest) => format!("/call-tracking/webhook{rest}"),
        None => url.to_owned(),
    };
    let full = d.url(&path);
    let sig = sign(TOKEN, &full, &borrow(params));
    request(
        d.addr,
        "POST",
        &path,
        &[
            (
                "Content-Type",
                "application/x-www-form-urlencoded".to_owned(),
            ),
            ("X-Twilio-Signature", sig),
        ],
        form_encode(&borrow(params)).as_bytes(),
    )
}

fn from(caller: &str, sid: &str) -> Vec<(String, String)> {
    let mut p = incoming(sid, TRACKING);
    set(&mut p, "From", caller);
    set(&mut p, "Caller", caller);
    p
}

/// The shop's leg as Twilio sends it to a `<Number url>` or an AMD callback.
fn child_leg(parent: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut p = owned(&[
        ("AccountSid", "AC00000000000000000000000000000000"),
        ("CallSid", &format!("{parent}leg")),
        ("ParentCallSid", parent),
        ("Direction", "outbound-dial"),
        ("From", CALLER),
        ("To", SHOP),
        ("CallStatus", "in-progress"),
    ]);
    p.extend(owned(extra));
    p
}

fn config(extra_number: &str, extra: &str) -> String {
    base_config("").replace(
        "ring_timeout_seconds = 18\n",
        &format!("ring_timeout_seconds = 18\n{extra_number}"),
    ) + extra
}

fn export(d: &Daemon) -> Vec<std::collections::HashMap<String, String>> {
    let r = get(d.addr, "/calls.csv", &bearer());
    assert_eq!(r.status, 200);
    let mut rd = csv::Reader::from_reader(&r.body[..]);
    let header: Vec<String> = rd.headers().unwrap().iter().map(str::to_owned).collect();
    rd.records()
        .map(|rec| {
            header
                .iter()
                .cloned()
                .zip(rec.unwrap().iter().map(str::to_owned))
                .collect()
        })
        .collect()
}

fn call(d: &Daemon, sid: &str) -> std::collections::HashMap<String, String> {
    export(d)
        .into_iter()
        .find(|r| r["call_sid"] == sid)
        .unwrap_or_else(|| panic!("{sid} not exported"))
}

fn end(d: &Daemon, sid: &str, caller: &str, st: &str, dur: &str) {
    let mut p = status(sid, TRACKING, st, &rfc2822_now(), Some(dur));
    set(&mut p, "From", caller);
    assert_eq!(d.post_form(&borrow(&p)).status, 200);
}

fn rfc2822_now() -> String {
    chrono::Utc::now()
        .format("%a, %d %b %Y %H:%M:%S +0000")
        .to_string()
}

#[test]
fn blocked_callers_are_rejected_exactly_and_by_prefix_and_reload_keeps_a_good_list() {
    let env = Env::new(&config(
        "",
        &format!("\n[block]\ncallers = [\"{BLOCKED}\"]\nfile = \"blocked.txt\"\n"),
    ));
    std::fs::write(
        env.dir.path().join("blocked.txt"),
        "# spam ranges\n+1900*   # premium\n\n",
    )
    .unwrap();
    let d = env.start();
    for (sid, caller) in [("CAblk1", BLOCKED), ("CAblk2", SPAM)] {
        let t = twiml(&d.post_form(&borrow(&from(caller, sid))));
        assert_eq!(
            t.children,
            vec![El {
                name: "Reject".into(),
                attrs: vec![("reason".into(), "busy".into())],
                text: String::new(),
                children: vec![],
            }],
            "{caller}"
        );
        end(&d, sid, caller, "busy", "0");
    }
    // Near misses ring through; so do anonymous callers.
    for (sid, caller) in [
        ("CAok1", "+15551234568"),
        ("CAok2", "anonymous"),
        ("CAok3", "+1800555"),
    ] {
        let t = twiml(&d.post_form(&borrow(&from(caller, sid))));
        assert_eq!(names(&t), ["Dial"], "{caller}");
    }
    let c = call(&d, "CAblk1");
    assert_eq!(
        (
            c["outcome"].as_str(),
            c["qualified"].as_str(),
            c["qualified_reason"].as_str(),
            c["ring_seconds"].as_str()
        ),
        ("blocked", "false", "blocked caller", "0")
    );
    assert_eq!(call(&d, "CAblk2")["outcome"], "blocked");

    // A broken block file on reload is refused and the old list stays.
    std::fs::write(env.dir.path().join("blocked.txt"), "+1900*\nnot-a-number\n").unwrap();
    d.signal(libc::SIGHUP);
    assert!(
        d.wait_log("line 2", Duration::from_secs(10)),
        "{}",
        d.log_text()
    );
    let t = twiml(&d.post_form(&borrow(&from(SPAM, "CAblk3"))));
    assert_eq!(names(&t), ["Reject"]);

    // Unblocked by a good reload: the caller rings through, and is a first-time
    // caller (blocked calls never count as earlier calls).
    std::fs::write(env.dir.path().join("blocked.txt"), "# none\n").unwrap();
    env.write_config(&config("", ""));
    d.signal(libc::SIGHUP);
    assert!(d.wait_log_count("SIGHUP: reloaded", 1, Duration::from_secs(10)));
    let t = twiml(&d.post_form(&borrow(&from(BLOCKED, "CAafter"))));
    assert_eq!(names(&t), ["Dial"]);
    assert_eq!(call(&d, "CAafter")["first_time_caller"], "true");
}

#[test]
fn requalify_applies_a_changed_block_list_to_history() {
    let env = Env::new(&config("", ""));
    let d = env.start();
    let t = twiml(&d.post_form(&borrow(&from(SPAM, "CAspam"))));
    assert_eq!(names(&t), ["Dial"]);
    let mut dial = dial_action("CAspam", TRACKING, "completed", Some("40"));
    set(&mut dial, "From", SPAM);
    assert_eq!(d.post_form(&borrow(&dial)).status, 200);
    end(&d, "CAspam", SPAM, "completed", "45");
    assert_eq!(call(&d, "CAspam")["qualified"], "true");
    env.write_config(&config("", "\n[block]\ncallers = [\"+1900*\"]\n"));
    let cfg = env.config();
    let o = env.run(&["requalify", "--config", cfg.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(
            "CAspam  qualified true -> false  outcome answered -> blocked  (blocked caller)"
        ),
        "{out}"
    );
    let c = call(&d, "CAspam");
    assert_eq!(
        (c["outcome"].as_str(), c["qualified"].as_str()),
        ("blocked", "false")
    );
}

/// `hours` for the whole of today in America/Chicago (open now), or for the whole of
/// tomorrow only (closed now). Edges and daylight saving are unit-tested on the hours
/// check itself (`config::flow`); here the daemon's own clock decides.
fn hours_now(open: bool) -> String {
    let today = chrono::Utc::now()
        .with_timezone(&chrono_tz::America::Chicago)
        .weekday()
        .num_days_from_monday() as usize;
    let day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        [if open { today } else { (today + 1) % 7 }];
    format!("hours = [\"{day} 00:00-24:00\"]\ntimezone = \"America/Chicago\"\n")
}

#[test]
fn open_hours_ring_the_shop_and_closed_hours_go_where_the_config_says() {
    // Open now: the shop rings.
    let env = Env::new(&config(&hours_now(true), ""));
    let d = env.start();
    let t = twiml(&d.post_form(&borrow(&from(CALLER, "CAopen"))));
    assert_eq!(names(&t), ["Dial"]);
    assert_eq!(t.children[0].children[0].text, SHOP);
    drop(d);

    // Closed, with an after-hours number: it rings instead.
    let closed = hours_now(false);
    env.write_config(&config(
        &format!("{closed}after_hours_forward_to = \"{AFTER_HOURS}\"\nvoicemail = true\n"),
        "",
    ));
    let d = env.start();
    let t = twiml(&d.post_form(&borrow(&from(CALLER, "CAafter"))));
    assert_eq!(names(&t), ["Dial"]);
    assert_eq!(t.children[0].children[0].text, AFTER_HOURS);
    drop(d);

    // Closed, no after-hours number, voicemail on: straight to voicemail.
    env.write_config(&config(&format!("{closed}voicemail = true\n"), ""));
    let d = env.start();
    let t = twiml(&d.post_form(&borrow(&from(CALLER, "CAvm"))));
    assert_eq!(names(&t), ["Say", "Record", "Hangup"]);
    assert_eq!(t.children[0].text, calltrackd::config::DEFAULT_GREETING);
    end(&d, "CAvm", CALLER, "completed", "6");
    let c = call(&d, "CAvm");
    assert_eq!(
        (c["outcome"].as_str(), c["ring_seconds"].as_str()),
        ("missed", "0"),
        "no message left"
    );
    drop(d);

    // Closed, a closed message: said, then hang up; without one, just hang up.
    env.write_config(&config(
        &format!("{closed}closed_message = \"Closed <today> & \\\"tomorrow\\\"\"\n"),
        "",
    ));
    let d = env.start();
    let t = twiml(&d.post_form(&borrow(&from(CALLER, "CAclosed"))));
    assert_eq!(names(&t), ["Say", "Hangup"]);
    assert_eq!(
        t.children[0].text, "Closed <today> & \"tomorrow\"",
        "config text escaped, not markup"
    );
    end(&d, "CAclosed", CALLER, "completed", "4");
    let c = call(&d, "CAclosed");
    assert_eq!(
        (c["outcome"].as_str(), c["answered"].as_str()),
        ("missed", "false")
    );
    drop(d);
    env.write_config(&config(&closed, ""));
    let d = env.start();
    let t = twiml(&d.post_form(&borrow(&from(CALLER, "CAclosed2"))));
    assert_eq!(names(&t), ["Hangup"]);
}

#[test]
fn hours_that_do_not_parse_or_make_no_sense_are_config_errors() {
    for (extra, needle) in [
        ("hours = [\"mon-fri 8-17\"]\n", "hours"),
        ("hours = [\"mon 17:00-08:00\"]\n", "closing time"),
        (
            "after_hours_forward_to = \"+15550001111\"\n",
            "`hours` is not",
        ),
        ("voicemail_guard = \"maybe\"\n", "voicemail_guard"),
        ("timezone = \"Mars/Base\"\n", "timezone"),
    ] {
        let env = Env::new(&config(extra, ""));
        let o = env.run(&["check-config", "--config", env.config().to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{extra}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(needle), "{extra}: {err}");
    }
    let env = Env::new(&config("", "\n[block]\ncallers = [\"1900*\"]\n"));
    let o = env.run(&["check-config", "--config", env.config().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("[block]"));
}

/// The incoming call's `<Dial>` and its `<Number>`.
fn dial_of(t: &El) -> (&El, &El) {
    let dial = t
        .children
        .iter()
        .find(|c| c.name == "Dial")
        .expect("a <Dial>");
    (dial, &dial.children[0])
}

#[test]
fn whisper_and_keypress_guard_a_key_takes_the_call_no_key_never_answers() {
    let env = Env::new(&config(
        "whisper = \"Call from <Google> & Co\"\nvoicemail_guard = \"keypress\"\nvoicemail = true\n",
        "",
    ));
    let d = env.start();
    for (sid, key) in [("CAkey", true), ("CAnokey", false)] {
        let t = twiml(&d.post_form(&borrow(&from(CALLER, sid))));
        let (dial, number) = dial_of(&t);
        assert_eq!(attr(dial, "answerOnBridge"), Some("true"));
        assert_eq!(number.text, SHOP);
        let url = attr(number, "url").expect("<Number url>").to_owned();
        assert_eq!(
            url,
            format!("webhook?step=screen&call={sid}&number=%2B18005551212")
        );
        assert_eq!(attr(number, "method"), Some("POST"));
        // The shop picks up: it hears the whisper and the prompt.
        let screen = twiml(&post_to(&d, &url, &child_leg(sid, &[])));
        assert_eq!(names(&screen), ["Gather", "Hangup"]);
        let gather = &screen.children[0];
        assert_eq!(attr(gather, "numDigits"), Some("1"));
        assert_eq!(attr(gather, "timeout"), Some("5"));
        assert_eq!(
            attr(gather, "action"),
            None,
            "the key comes back to the same URL"
        );
        assert_eq!(names(gather), ["Say", "Say"]);
        assert_eq!(gather.children[0].text, "Call from <Google> & Co");
        assert_eq!(gather.children[1].text, "Press any key to take this call.");
        if key {
            let bridged = twiml(&post_to(&d, &url, &child_leg(sid, &[("Digits", "1")])));
            assert!(
                bridged.children.is_empty(),
                "an empty answer bridges the call"
            );
        }
        let mut action = from(CALLER, sid);
        set(&mut action, "CallStatus", "in-progress");
        action.extend(owned(&[
            ("DialCallStatus", "completed"),
            ("DialCallSid", &format!("{sid}leg")),
            ("DialBridged", if key { "true" } else { "false" }),
            ("DialCallDuration", if key { "40" } else { "6" }),
        ]));
        let after = twiml(&post_to(&d, "webhook", &action));
        if key {
            assert!(after.children.is_empty(), "the call ends cleanly");
        } else {
            assert_eq!(
                names(&after),
                ["Say", "Record", "Hangup"],
                "nobody took it: voicemail"
            );
        }
        end(&d, sid, CALLER, "completed", if key { "50" } else { "30" });
    }
    let c = call(&d, "CAkey");
    assert_eq!(
        (
            c["outcome"].as_str(),
            c["answered"].as_str(),
            c["talk_seconds"].as_str()
        ),
        ("answered", "true", "40")
    );
    let c = call(&d, "CAnokey");
    assert_eq!(
        (
            c["outcome"].as_str(),
            c["answered"].as_str(),
            c["talk_seconds"].as_str()
        ),
        ("missed", "false", "0"),
        "the shop's voicemail can never take the call"
    );
    // The screen's requests are events of the parent call, not calls of their own.
    assert_eq!(export(&d).len(), 2);
    assert_eq!(
        count(
            &env.db(),
            "SELECT count(*) FROM events WHERE kind = 'screen' AND call_sid = 'CAkey'"
        ),
        2
    );
}

#[test]
fn answering_machine_detection_decides_person_or_voicemail() {
    let env = Env::new(&config("voicemail_guard = \"amd\"\n", ""));
    let d = env.start();
    for (i, answered_by) in [
        "human",
        "machine_start",
        "machine_end_beep",
        "fax",
        "unknown",
    ]
    .iter()
    .enumerate()
    {
        let sid = format!("CAamd{i}");
        let t = twiml(&d.post_form(&borrow(&from(CALLER, &sid))));
        let (_, number) = dial_of(&t);
        assert_eq!(attr(number, "machineDetection"), Some("Enable"));
        assert_eq!(attr(number, "amdStatusCallbackMethod"), Some("POST"));
        assert_eq!(attr(number, "url"), None, "no whisper, no screen");
        let cb = attr(number, "amdStatusCallback").unwrap().to_owned();
        assert_eq!(cb, format!("webhook?step=amd&call={sid}"));
        let r = post_to(
            &d,
            &cb,
            &child_leg(
                &sid,
                &[
                    ("AnsweredBy", answered_by),
                    ("MachineDetectionDuration", "2100"),
                ],
            ),
        );
        assert!(twiml(&r).children.is_empty());
        let mut action = dial_action(&sid, TRACKING, "completed", Some("35"));
        set(&mut action, "From", CALLER);
        assert_eq!(d.post_form(&borrow(&action)).status, 200);
        end(&d, &sid, CALLER, "completed", "45");
    }
    let outcomes: Vec<String> = (0..5)
        .map(|i| call(&d, &format!("CAamd{i}"))["outcome"].clone())
        .collect();
    assert_eq!(
        outcomes,
        [
            "answered",
            "voicemail",
            "voicemail",
            "voicemail",
            "answered"
        ]
    );
    assert_eq!(
        call(&d, "CAamd1")["qualified_reason"],
        "not answered (voicemail)"
    );
}

#[test]
fn voicemail_left_gives_its_url_and_outcome_and_an_empty_one_does_not() {
    let env = Env::new(&config(
        "voicemail = true\nvoicemail_greeting = \"Leave it & we call back\"\n",
        "",
    ));
    let d = env.start();
    for (sid, secs) in [("CAmsg", "12"), ("CAempty", "0")] {
        assert_eq!(
            names(&twiml(&d.post_form(&borrow(&from(CALLER, sid))))),
            ["Dial"]
        );
        let mut action = dial_action(sid, TRACKING, "no-answer", None);
        set(&mut action, "From", CALLER);
        let vm = twiml(&d.post_form(&borrow(&action)));
        assert_eq!(names(&vm), ["Say", "Record", "Hangup"]);
        assert_eq!(vm.children[0].text, "Leave it & we call back");
        let rec = &vm.children[1];
        assert_eq!(attr(rec, "maxLength"), Some("120"));
        assert_eq!(attr(rec, "playBeep"), Some("true"));
        let cb = attr(rec, "recordingStatusCallback").unwrap().to_owned();
        assert_eq!(cb, format!("webhook?step=voicemail&call={sid}"));
        assert_eq!(attr(rec, "action"), Some(cb.as_str()));
        let url = format!("https://api.twilio.com/2010-04-01/Accounts/AC0/Recordings/RE{sid}");
        let mut p = owned(&[
            ("AccountSid", "AC00000000000000000000000000000000"),
            ("CallSid", sid),
            ("RecordingSid", &format!("RE{sid}")),
            ("RecordingUrl", &url),
            ("RecordingStatus", "completed"),
            ("RecordingDuration", secs),
            ("RecordingSource", "RecordVerb"),
        ]);
        assert!(twiml(&post_to(&d, &cb, &p)).children.is_empty());
        set(&mut p, "RecordingStatus", "absent");
        end(&d, sid, CALLER, "completed", "40");
    }
    let c = call(&d, "CAmsg");
    assert_eq!(c["outcome"], "voicemail");
    assert!(c["voicemail_url"].ends_with("/Recordings/RECAmsg"), "{c:?}");
    assert_eq!(c["qualified_reason"], "not answered (voicemail)");
    let c = call(&d, "CAempty");
    assert_eq!(
        (c["outcome"].as_str(), c["voicemail_url"].as_str()),
        ("missed", "")
    );
}

#[test]
fn recorded_calls_hear_the_notice_and_get_their_recording_url() {
    let env = Env::new(&config(
        "record = true\nrecord_notice = \"Recorded for <quality>\"\n",
        "",
    ));
    let d = env.start();
    let t = twiml(&d.post_form(&borrow(&from(CALLER, "CArec"))));
    assert_eq!(names(&t), ["Say", "Dial"]);
    assert_eq!(t.children[0].text, "Recorded for <quality>");
    let (dial, _) = dial_of(&t);
    assert_eq!(attr(dial, "record"), Some("record-from-answer-dual"));
    assert_eq!(attr(dial, "recordingStatusCallbackMethod"), Some("POST"));
    let cb = attr(dial, "recordingStatusCallback").unwrap().to_owned();
    assert_eq!(cb, "webhook?step=recording&call=CArec");
    let p = owned(&[
        ("AccountSid", "AC00000000000000000000000000000000"),
        ("CallSid", "CArec"),
        ("RecordingSid", "REcall"),
        (
            "RecordingUrl",
            "https://api.twilio.com/2010-04-01/Accounts/AC0/Recordings/REcall",
        ),
        ("RecordingStatus", "completed"),
        ("RecordingDuration", "41"),
        ("RecordingChannels", "2"),
        ("RecordingSource", "DialVerb"),
    ]);
    assert!(twiml(&post_to(&d, &cb, &p)).children.is_empty());
    let mut action = dial_action("CArec", TRACKING, "completed", Some("41"));
    set(&mut action, "From", CALLER);
    assert_eq!(d.post_form(&borrow(&action)).status, 200);
    end(&d, "CArec", CALLER, "completed", "45");
    let c = call(&d, "CArec");
    assert_eq!(
        c["recording_url"],
        "https://api.twilio.com/2010-04-01/Accounts/AC0/Recordings/REcall"
    );
    assert_eq!(
        (c["outcome"].as_str(), c["voicemail_url"].as_str()),
        ("answered", "")
    );
}

#[test]
fn every_call_flow_request_needs_a_good_signature_and_a_known_step() {
    let env = Env::new(&config(
        "voicemail = true\nvoicemail_guard = \"keypress\"\nrecord = true\n",
        "",
    ));
    let d = env.start();
    for step in ["screen", "amd", "recording", "voicemail"] {
        let path = format!("/call-tracking/webhook?step={step}&call=CAsig");
        let p = child_leg("CAsig", &[("Digits", "1"), ("RecordingUrl", "https://x/y")]);
        // Signed for the URL without the query: wrong.
        let wrong = sign(TOKEN, &d.url("/call-tracking/webhook"), &borrow(&p));
        let r = request(
            d.addr,
            "POST",
            &path,
            &[
                (
                    "Content-Type",
                    "application/x-www-form-urlencoded".to_owned(),
                ),
                ("X-Twilio-Signature", wrong),
            ],
            form_encode(&borrow(&p)).as_bytes(),
        );
        assert_eq!(r.status, 403, "{step}");
    }
    assert_eq!(
        count(&env.db(), "SELECT count(*) FROM events"),
        0,
        "nothing stored"
    );
    // An unknown step, or a parent that is not a CallSid: 400, nothing stored.
    for path in [
        "/call-tracking/webhook?step=dial&call=CAsig",
        "/call-tracking/webhook?step=amd&call=%3Cscript%3E",
    ] {
        let r = post_to(&d, path, &child_leg("CAsig", &[]));
        assert_eq!(r.status, 400, "{path}: {}", r.text());
    }
    assert_eq!(count(&env.db(), "SELECT count(*) FROM events"), 0);
    // A step request is never taken for a new incoming call, even shaped like one.
    let r = post_to(
        &d,
        "/call-tracking/webhook?step=recording&call=CAsig",
        &from(CALLER, "CAsig"),
    );
    assert!(twiml(&r).children.is_empty(), "no new TwiML for a step");
    assert_eq!(
        count(
            &env.db(),
            "SELECT count(*) FROM events WHERE kind = 'recording'"
        ),
        1
    );
}

/// The edges of `hours` over HTTP, on the daemon's own clock: a window that starts this
/// minute is open, one that ends this minute (the end is not included) is closed, and
/// one that starts next minute is closed. A request that crosses into the next minute
/// is tried again. Daylight-saving changes cannot be reached on the real clock; they
/// are unit-tested on the same hours check (`config::flow`).
#[test]
fn hours_edges_on_the_daemons_clock() {
    use chrono::Timelike;
    let tz = chrono_tz::America::Chicago;
    let day_name = |t: chrono::DateTime<chrono_tz::Tz>| {
        ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
            [t.weekday().num_days_from_monday() as usize]
    };
    for (label, open_expected) in [
        ("starts now", true),
        ("ended now", false),
        ("starts next minute", false),
    ] {
        let mut tries = 0;
        loop {
            tries += 1;
            let now = chrono::Utc::now().with_timezone(&tz);
            let m = now.hour() * 60 + now.minute();
            // Stay clear of midnight, where a window would cross days.
            if !(2..24 * 60 - 3).contains(&m) {
                std::thread::sleep(Duration::from_secs(5));
                continue;
            }
            let hm = |m: u32| format!("{:02}:{:02}", m / 60, m % 60);
            let window = match label {
                "starts now" => format!("{} {}-{}", day_name(now), hm(m), hm(m + 2)),
                "ended now" => format!("{} {}-{}", day_name(now), hm(m - 2), hm(m)),
                _ => format!("{} {}-{}", day_name(now), hm(m + 1), hm(m + 3)),
            };
            let env = Env::new(&config(
                &format!("hours = [\"{window}\"]\ntimezone = \"America/Chicago\"\n"),
                "",
            ));
            let d = env.start();
            let t = twiml(&d.post_form(&borrow(&from(CALLER, "CAedge"))));
            let after = chrono::Utc::now().with_timezone(&tz);
            if after.minute() != now.minute() {
                assert!(tries < 5, "the minute kept changing");
                continue;
            }
            let open = names(&t) == ["Dial"];
            assert_eq!(
                open,
                open_expected,
                "{label}: {window} at {}",
                now.format("%a %H:%M:%S")
            );
            break;
        }
    }
}
