//! Unit tests for `calls`.

use super::*;

const T0: i64 = 1_700_000_000;

fn facts() -> Facts {
    Facts {
        call_sid: "CA1".into(),
        direction: "inbound".into(),
        from: "+14155550100".into(),
        to: "+18005551212".into(),
        from_city: "SF".into(),
        from_state: "CA".into(),
        ..Facts::default()
    }
}

fn incoming(id: i64, at: i64, answer: Answer) -> Event {
    Event {
        id,
        received_at: at,
        kind: Kind::Incoming,
        answer,
        facts: Facts {
            call_status: Some("ringing".into()),
            ..facts()
        },
    }
}

fn status(id: i64, at: i64, st: &str, ts: i64, dur: Option<i64>) -> Event {
    Event {
        id,
        received_at: at,
        kind: Kind::Status,
        answer: Answer::Ack,
        facts: Facts {
            call_status: Some(st.into()),
            timestamp: Some(ts),
            call_duration: dur,
            ..facts()
        },
    }
}

fn dial(id: i64, at: i64, st: &str, dur: Option<i64>) -> Event {
    Event {
        id,
        received_at: at,
        kind: Kind::DialAction,
        answer: Answer::Ack,
        facts: Facts {
            call_status: Some("in-progress".into()),
            dial_call_status: Some(st.into()),
            dial_call_duration: dur,
            ..facts()
        },
    }
}

fn forwarded_call(talk: i64) -> Call {
    let evs = [
        incoming(1, T0, Answer::Dial),
        dial(2, T0 + talk + 5, "completed", Some(talk)),
        status(3, T0 + talk + 6, "completed", T0 + talk + 5, Some(talk + 5)),
    ];
    derive(&evs, &Rules::example(), None).unwrap()
}

#[test]
fn qualified_boundary_29_30() {
    let c = forwarded_call(29);
    assert_eq!(
        (c.answered, c.qualified, c.talk_seconds),
        (Some(true), Some(false), Some(29))
    );
    let c = forwarded_call(30);
    assert_eq!(
        (c.answered, c.qualified, c.talk_seconds),
        (Some(true), Some(true), Some(30))
    );
    assert_eq!(c.duration_seconds, Some(35));
    assert_eq!(c.started_at, T0);
    assert_eq!(c.ended_at, Some(T0 + 35));
    assert_eq!(c.user, "acme");
    assert_eq!(c.source, "Google Ads");
    assert_eq!(c.caller, "+14155550100");
    assert_eq!(c.status, "completed");
    assert!(c.forwarded);
    assert_eq!(c.min_duration_seconds, Some(30));
}

#[test]
fn order_does_not_matter() {
    let evs = [
        status(1, T0 + 50, "completed", T0 + 45, Some(45)),
        dial(2, T0 + 51, "completed", Some(40)),
        incoming(3, T0 + 52, Answer::Dial),
        status(4, T0 + 53, "ringing", T0 + 1, None),
    ];
    let c = derive(&evs, &Rules::example(), None).unwrap();
    assert_eq!(c.status, "completed");
    assert_eq!(c.started_at, T0);
    assert_eq!(c.ended_at, Some(T0 + 45));
    assert_eq!(
        (c.answered, c.qualified, c.talk_seconds),
        (Some(true), Some(true), Some(40))
    );
}

#[test]
fn dial_outcomes_not_answered() {
    for st in ["busy", "no-answer", "failed", "canceled"] {
        let evs = [incoming(1, T0, Answer::Dial), dial(2, T0 + 20, st, None)];
        let c = derive(&evs, &Rules::example(), None).unwrap();
        assert_eq!(
            (c.answered, c.qualified, c.talk_seconds),
            (Some(false), Some(false), Some(0)),
            "{st}"
        );
    }
}

#[test]
fn forwarded_without_dial_result_stays_unknown_unless_final_is_not_completed() {
    let evs = [
        incoming(1, T0, Answer::Dial),
        status(2, T0 + 9, "completed", T0 + 9, Some(9)),
    ];
    let c = derive(&evs, &Rules::example(), None).unwrap();
    assert_eq!(
        (c.answered, c.qualified, c.talk_seconds),
        (None, None, None)
    );
    let evs = [
        incoming(1, T0, Answer::Dial),
        status(2, T0 + 9, "no-answer", T0 + 9, Some(0)),
    ];
    let c = derive(&evs, &Rules::example(), None).unwrap();
    assert_eq!(
        (c.answered, c.qualified, c.talk_seconds),
        (Some(false), Some(false), Some(0))
    );
}

#[test]
fn not_forwarded_busy_and_no_answer() {
    for st in ["busy", "no-answer"] {
        let evs = [status(1, T0, st, T0, Some(0))];
        let c = derive(&evs, &Rules::example(), None).unwrap();
        assert_eq!(
            (c.answered, c.qualified, c.talk_seconds),
            (Some(false), Some(false), Some(0))
        );
        assert_eq!(c.status, st);
        assert!(!c.forwarded);
    }
}

#[test]
fn hangup_before_final_is_not_answered() {
    let evs = [
        incoming(1, T0, Answer::Hangup),
        status(2, T0 + 2, "completed", T0 + 1, Some(1)),
    ];
    let c = derive(&evs, &Rules::example(), None).unwrap();
    assert_eq!(
        (c.answered, c.qualified, c.talk_seconds),
        (Some(false), Some(false), Some(0))
    );
    // Before the final status, nothing is known yet.
    let c = derive(&evs[..1], &Rules::example(), None).unwrap();
    assert_eq!((c.answered, c.qualified), (None, None));
    assert_eq!(c.status, "ringing");
}

#[test]
fn outbound_uses_from_as_tracking_number() {
    let mut e = status(1, T0 + 60, "completed", T0 + 60, Some(45));
    e.facts.direction = "outbound-api".into();
    e.facts.from = "+18005551212".into();
    e.facts.to = "+14155550100".into();
    e.facts.to_city = "OAKLAND".into();
    let c = derive(&[e], &Rules::example(), None).unwrap();
    assert_eq!(c.tracking_number, "+18005551212");
    assert_eq!(c.caller, "+14155550100");
    assert_eq!(c.caller_city, "OAKLAND");
    assert_eq!(c.user, "acme");
    assert_eq!(
        (c.answered, c.qualified, c.talk_seconds),
        (Some(true), Some(true), Some(45))
    );
    assert_eq!(c.started_at, T0 + 15);
}

#[test]
fn child_legs_do_not_make_calls() {
    let mut e = status(1, T0, "completed", T0, Some(5));
    e.facts.direction = "outbound-dial".into();
    assert!(derive(&[e], &Rules::example(), None).is_none());
}

#[test]
fn unknown_number_has_empty_user() {
    let mut e = status(1, T0, "completed", T0, Some(5));
    e.facts.to = "+19999999999".into();
    let c = derive(&[e], &Rules::example(), None).unwrap();
    assert_eq!((c.user.as_str(), c.source.as_str()), ("", ""));
}

#[test]
fn decided_values_survive_rule_changes() {
    let d = Decided {
        user: "old".into(),
        source: "old-src".into(),
        min_duration_seconds: Some(10),
    };
    let evs = [
        incoming(1, T0, Answer::Dial),
        dial(2, T0 + 20, "completed", Some(20)),
    ];
    let c = derive(&evs, &Rules::example(), Some(&d)).unwrap();
    assert_eq!(
        (c.user.as_str(), c.qualified, c.min_duration_seconds),
        ("old", Some(true), Some(10))
    );
}

#[test]
fn an_incoming_request_counts_at_its_receipt_not_a_timestamp_it_carries() {
    let mut e = incoming(1, T0 + 100, Answer::Dial);
    e.facts.timestamp = Some(T0);
    let c = derive(&[e], &Rules::example(), None).unwrap();
    assert_eq!(c.started_at, T0 + 100);
}
