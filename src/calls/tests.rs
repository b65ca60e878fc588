//! Unit tests for `calls`.

use super::*;
use crate::config::Qualify;

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
    assert_eq!(c.qualify.map(|q| q.min_duration_seconds), Some(30));
    assert_eq!(c.outcome, Some(CallOutcome::Answered));
    assert_eq!(c.qualified_reason, "talked 30 s, at least 30 s");
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
        qualify: Some(Qualify {
            min_duration_seconds: 10,
            ..Qualify::default()
        }),
        blocked: None,
    };
    let evs = [
        incoming(1, T0, Answer::Dial),
        dial(2, T0 + 20, "completed", Some(20)),
    ];
    let c = derive(&evs, &Rules::example(), Some(&d)).unwrap();
    assert_eq!(
        (
            c.user.as_str(),
            c.qualified,
            c.qualify.map(|q| q.min_duration_seconds)
        ),
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

fn facts_for(outbound: bool, final_status: &str) -> OutcomeFacts<'_> {
    OutcomeFacts {
        outbound,
        final_status,
        ..OutcomeFacts::default()
    }
}

#[test]
fn outcome_rules_in_order() {
    use CallOutcome::*;
    let fwd = |dial: Option<&'static str>, ring: i64| OutcomeFacts {
        final_status: "completed",
        forwarded: true,
        dial_status: dial,
        connected: dial == Some("completed"),
        ring_seconds: ring,
        ..OutcomeFacts::default()
    };
    assert_eq!(outcome_of(&fwd(Some("completed"), 3), 15), Answered);
    assert_eq!(outcome_of(&fwd(Some("no-answer"), 14), 15), Abandoned);
    assert_eq!(outcome_of(&fwd(Some("no-answer"), 15), 15), Missed);
    assert_eq!(outcome_of(&fwd(Some("canceled"), 2), 15), Abandoned);
    assert_eq!(outcome_of(&fwd(Some("busy"), 2), 15), Missed);
    assert_eq!(outcome_of(&fwd(Some("failed"), 2), 15), Missed);
    assert_eq!(outcome_of(&fwd(None, 2), 15), Abandoned);
    let parent_failed = OutcomeFacts {
        final_status: "failed",
        ..fwd(None, 0)
    };
    assert_eq!(outcome_of(&parent_failed, 15), Failed);
    assert_eq!(outcome_of(&facts_for(false, "failed"), 15), Failed);
    assert_eq!(outcome_of(&facts_for(false, "no-answer"), 15), Missed);
    assert_eq!(outcome_of(&facts_for(true, "completed"), 15), Answered);
    assert_eq!(outcome_of(&facts_for(true, "failed"), 15), Failed);
    assert_eq!(outcome_of(&facts_for(true, "busy"), 15), Missed);
    let blocked = OutcomeFacts {
        blocked: true,
        voicemail_left: true,
        ..fwd(Some("completed"), 0)
    };
    assert_eq!(outcome_of(&blocked, 15), Blocked);
    let voicemail = OutcomeFacts {
        voicemail_left: true,
        ..fwd(Some("no-answer"), 20)
    };
    assert_eq!(outcome_of(&voicemail, 15), Voicemail);
}

#[test]
fn ring_time_subtracts_talk_and_message_never_below_zero() {
    assert_eq!(ring_seconds(T0, T0 + 100, true, false, 80, 0), 20);
    assert_eq!(ring_seconds(T0, T0 + 100, true, false, 0, 30), 70);
    assert_eq!(ring_seconds(T0, T0 + 10, true, false, 80, 0), 0);
    assert_eq!(ring_seconds(T0, T0 + 100, false, false, 0, 0), 0);
    assert_eq!(ring_seconds(T0, T0 + 100, true, true, 0, 0), 0);
}

#[test]
fn reasons_in_the_contract_words() {
    let mut c = forwarded_call(12);
    assert_eq!(c.qualified_reason, "talked 12 s, under 30 s");
    c.qualify = Some(Qualify {
        require_first_time: true,
        ..Qualify::default()
    });
    c.talk_seconds = Some(47);
    c.set_priors(Some(2));
    assert_eq!(
        (c.qualified, c.first_time_caller),
        (Some(false), Some(false))
    );
    assert_eq!(c.qualified_reason, "not a first-time caller");
    c.set_priors(Some(0));
    assert_eq!(c.qualified_reason, "talked 47 s, at least 30 s");
    assert_eq!(c.qualified, Some(true));
    c.set_priors(None);
    assert_eq!(c.qualified_reason, "not a first-time caller");
    c.outcome = Some(CallOutcome::Missed);
    c.settle();
    assert_eq!(c.qualified_reason, "not answered (missed)");
    c.outcome = Some(CallOutcome::Blocked);
    c.settle();
    assert_eq!(
        (c.qualified, c.qualified_reason.as_str()),
        (Some(false), "blocked caller")
    );
}

#[test]
fn only_e164_callers_have_a_key() {
    let mut c = forwarded_call(40);
    assert_eq!(c.caller_key().as_deref(), Some("u acme +14155550100"));
    for anon in ["anonymous", "Restricted", "", "+0123", "266696687"] {
        c.caller = anon.into();
        assert_eq!(c.caller_key(), None, "{anon}");
    }
    c.caller = "+14155550100".into();
    c.user.clear();
    assert_eq!(
        c.caller_key().as_deref(),
        Some("n +18005551212 +14155550100")
    );
}
