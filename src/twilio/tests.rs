//! Unit tests for `twilio`.

use super::*;

fn pairs(v: &[(&str, &str)]) -> Params {
    Params(
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
    )
}

#[test]
fn form_decoding() {
    let p = parse_form(b"From=%2B14158675310&CallerName=JOHN+SMITH&Empty=&Flag&&x=%C3%B1").unwrap();
    assert_eq!(
        p,
        pairs(&[
            ("From", "+14158675310"),
            ("CallerName", "JOHN SMITH"),
            ("Empty", ""),
            ("Flag", ""),
            ("x", "ñ")
        ])
    );
    assert!(parse_form(b"a=%").is_err());
    assert!(parse_form(b"a=%4").is_err());
    assert!(parse_form(b"a=%zz").is_err());
    assert!(parse_form(b"a=%FF").is_err());
    assert!(parse_form(b"%FF=1").is_err());
    assert_eq!(parse_form(b"").unwrap(), Params::default());
}

#[test]
fn json_decoding() {
    let p = parse_json(br#"{"CallSid":"CA1","n":1.50,"b":true,"z":null,"s":"a\"b"}"#).unwrap();
    assert_eq!(
        p,
        pairs(&[
            ("CallSid", "CA1"),
            ("n", "1.50"),
            ("b", "true"),
            ("s", "a\"b")
        ])
    );
    assert!(parse_json(br#"{"a":[1]}"#).is_err());
    assert!(parse_json(br#"{"a":{"b":1}}"#).is_err());
    assert!(parse_json(br#"[1,2]"#).is_err());
    assert!(parse_json(br#"{"a":1} x"#).is_err());
    assert!(parse_json(b"").is_err());
}

#[test]
fn content_types() {
    use BodyType::*;
    assert_eq!(
        BodyType::from_content_type(Some("application/x-www-form-urlencoded; charset=UTF-8")),
        Some(Form)
    );
    assert_eq!(
        BodyType::from_content_type(Some("Application/JSON")),
        Some(Json)
    );
    assert_eq!(BodyType::from_content_type(Some("text/plain")), None);
    assert_eq!(BodyType::from_content_type(None), None);
}

#[test]
fn classification() {
    assert_eq!(
        classify(&pairs(&[("CallStatus", "ringing")])),
        Kind::Incoming
    );
    assert_eq!(
        classify(&pairs(&[("CallStatus", "in-progress")])),
        Kind::Incoming
    );
    assert_eq!(
        classify(&pairs(&[
            ("CallStatus", "in-progress"),
            ("CallbackSource", "call-progress-events")
        ])),
        Kind::Status
    );
    assert_eq!(
        classify(&pairs(&[("CallStatus", "no-answer")])),
        Kind::Status
    );
    assert_eq!(
        classify(&pairs(&[
            ("CallStatus", "completed"),
            ("DialCallStatus", "busy")
        ])),
        Kind::DialAction
    );
}

#[test]
fn timestamps() {
    assert_eq!(
        parse_timestamp("Tue, 31 Aug 2010 20:36:28 +0000"),
        Some(1283286988)
    );
    assert_eq!(parse_timestamp("2010-08-31T20:36:28Z"), Some(1283286988));
    assert_eq!(parse_timestamp("yesterday"), None);
}

#[test]
fn twiml_is_escaped() {
    let t = crate::twiml::plain_dial("+15558675309", 20, Some("https://a/x?y=1&z=2"));
    assert!(t.contains("action=\"https://a/x?y=1&amp;z=2\""), "{t}");
    assert!(t.contains("timeout=\"20\" answerOnBridge=\"true\"><Number>+15558675309</Number>"));
    assert!(t.starts_with("<?xml"));
}

#[test]
fn the_twiml_the_readme_shows_is_the_twiml_sent() {
    let readme = include_str!("../../README.md");
    let sent = crate::twiml::plain_dial(
        "+15558675309",
        20,
        Some("https://calls.example.com/call-tracking/webhook"),
    );
    assert!(readme.contains(sent.trim_end()), "README lacks:\n{sent}");
}

/// Classifies a request to the plain webhook URL (no call-flow step).
fn classify(p: &Params) -> Kind {
    super::classify(p, None)
}

#[test]
fn step_urls_name_their_step_and_parent() {
    let s = step_of("/call-tracking/webhook?step=screen&call=CA1234&number=%2B18005551212")
        .unwrap()
        .unwrap();
    assert_eq!(s.kind, Kind::Screen);
    assert_eq!(s.parent.as_deref(), Some("CA1234"));
    assert_eq!(s.number.as_deref(), Some("+18005551212"));
    assert_eq!(step_of("/call-tracking/webhook").unwrap(), None);
    assert_eq!(step_of("/call-tracking/webhook?x=1").unwrap(), None);
    for bad in [
        "/call-tracking/webhook?step=dial",
        "/call-tracking/webhook?step=amd&call=XX12",
        "/call-tracking/webhook?step=screen&call=CA1&number=18005551212",
    ] {
        assert!(step_of(bad).is_err(), "{bad}");
    }
    // A step request is what its URL says, whatever its parameters.
    let p = pairs(&[("CallStatus", "ringing")]);
    let step = step_of("/w?step=amd&call=CA1").unwrap();
    assert_eq!(super::classify(&p, step.as_ref()), Kind::Amd);
}
