//! Unit tests for `callflow`: the branches the integration tests reach through HTTP,
//! checked here against the rules directly.

use super::*;
use crate::config::{Flow, Hours};
use crate::twilio::Facts;

fn rules(flow: Flow) -> Rules {
    let mut r = Rules::example();
    r.numbers.get_mut("+18005551212").unwrap().flow = flow;
    r
}

fn call(from: &str) -> Facts {
    Facts {
        call_sid: "CA1".into(),
        direction: "inbound".into(),
        from: from.into(),
        to: "+18005551212".into(),
        ..Facts::default()
    }
}

#[test]
fn urls_are_absolute_with_public_url_and_escaped_in_twiml() {
    let urls = Urls::new(Some(
        "https://c.example.com/ct/call-tracking/webhook".into(),
    ));
    assert_eq!(
        urls.step(Kind::Amd, "CA1"),
        "https://c.example.com/ct/call-tracking/webhook?step=amd&call=CA1"
    );
    let r = rules(Flow {
        voicemail_guard: VoicemailGuard::Amd,
        ..Flow::default()
    });
    let (answer, t) = incoming(&r, &call("+14155550100"), 0, &urls);
    assert_eq!(answer, Answer::DialAmd);
    assert!(
        t.contains("amdStatusCallback=\"https://c.example.com/ct/call-tracking/webhook?step=amd&amp;call=CA1\""),
        "{t}"
    );
}

#[test]
fn a_leg_counts_as_taken_only_when_completed_and_bridged() {
    let leg = |status: &str, bridged: Option<bool>| Facts {
        dial_call_status: Some(status.into()),
        dial_bridged: bridged,
        ..Facts::default()
    };
    use VoicemailGuard::*;
    assert!(taken_by_person(&leg("completed", Some(true)), Keypress));
    assert!(!taken_by_person(&leg("completed", None), Keypress));
    assert!(!taken_by_person(&leg("completed", Some(false)), Keypress));
    assert!(taken_by_person(&leg("completed", None), Off));
    assert!(!taken_by_person(&leg("completed", Some(false)), Off));
    assert!(!taken_by_person(&leg("no-answer", Some(true)), Amd));
    assert!(!taken_by_person(&leg("busy", None), Off));
}

#[test]
fn closed_without_anywhere_to_go_says_the_message_escaped() {
    let r = rules(Flow {
        hours: Some(vec![Hours::parse("mon 00:00-00:01").unwrap()]),
        timezone: Some(chrono_tz::UTC),
        closed_message: Some("We're <closed> & \"away\"".into()),
        ..Flow::default()
    });
    // 2026-03-03 is a Tuesday.
    let tuesday = 1_772_496_000;
    let (answer, t) = incoming(&r, &call("+14155550100"), tuesday, &Urls::new(None));
    assert_eq!(answer, Answer::Closed);
    assert!(
        t.ends_with("<Response><Say>We&apos;re &lt;closed&gt; &amp; &quot;away&quot;</Say><Hangup/></Response>\n"),
        "{t}"
    );
}
