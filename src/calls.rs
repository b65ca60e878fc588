/*!
The call rules: where a call's state is decided.

A call row is a pure function of the distinct requests stored for its `CallSid` (and the
rules in force), so the order, number and repetition of Twilio's requests cannot change
the result: [`derive`] is re-run over all of a call's events whenever one arrives. The
contract's rules, in one place:

- tracking number `To` (inbound) or `From` (outbound); `caller` the other side;
- `status`: the most advanced `CallStatus` (a late `ringing` never beats `completed`);
- `started_at`: earliest of every request's `Timestamp` (receipt time when absent) and
  the final callback's `Timestamp - CallDuration`; `ended_at`: the final `Timestamp`;
- *forwarded*: we answered with `<Dial>`, or a `DialCallStatus` arrived;
- *answered*: forwarded → `DialCallStatus == completed`; else final `CallStatus ==
  completed` unless we hung up (`<Response/>`) before any final status;
- *talk*: forwarded → `DialCallDuration` (0 unanswered); else `CallDuration` if answered;
- *qualified*: answered and talk ≥ `min_duration_seconds`.

What a stored call was decided with (user, source, threshold) is kept: a `SIGHUP` that
changes the rules applies to calls decided from then on.
*/

use crate::config::Rules;
use crate::twilio::{Answer, Facts, Kind, is_final_status};

/// One stored request, as the rules see it.
#[derive(Debug, Clone)]
pub struct Event {
    /// Storage order (receipt order).
    pub id: i64,
    /// Receipt time, Unix seconds.
    pub received_at: i64,
    /// Which request it was.
    pub kind: Kind,
    /// What we answered.
    pub answer: Answer,
    /// What it said.
    pub facts: Facts,
}

impl Event {
    /// `Timestamp`, or the receipt time when Twilio sent none.
    fn time(&self) -> i64 {
        self.facts.timestamp.unwrap_or(self.received_at)
    }
}

/// What an existing row was decided with; kept across reloads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decided {
    /// The user the call was attributed to.
    pub user: String,
    /// The source it was attributed to.
    pub source: String,
    /// The threshold it was qualified with, once it was.
    pub min_duration_seconds: Option<u64>,
}

/// A call row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Call {
    /// `CallSid` of the parent call.
    pub call_sid: String,
    /// Owner from `[[numbers]]`; empty for an unknown number.
    pub user: String,
    /// The Twilio number the call came in on (or went out from).
    pub tracking_number: String,
    /// Marketing source from `[[numbers]]`.
    pub source: String,
    /// The other party's number.
    pub caller: String,
    /// `CallerName` (caller ID lookup), when Twilio sent one.
    pub caller_name: String,
    /// The other party's city.
    pub caller_city: String,
    /// The other party's state.
    pub caller_state: String,
    /// `Direction`.
    pub direction: String,
    /// Latest `CallStatus` of the parent call.
    pub status: String,
    /// Whether someone answered; `None` until known.
    pub answered: Option<bool>,
    /// Answered and long enough; `None` until known.
    pub qualified: Option<bool>,
    /// The parent's `CallDuration`.
    pub duration_seconds: Option<i64>,
    /// Seconds of conversation.
    pub talk_seconds: Option<i64>,
    /// Unix seconds.
    pub started_at: i64,
    /// Unix seconds, once the final status arrived.
    pub ended_at: Option<i64>,
    /// Whether the call was forwarded with `<Dial>`.
    pub forwarded: bool,
    /// The threshold `qualified` was decided with.
    pub min_duration_seconds: Option<u64>,
}

/// Order of call statuses: a status never moves back to a lower rank.
fn status_rank(s: &str) -> u8 {
    match s {
        "queued" | "initiated" => 0,
        "ringing" => 1,
        "in-progress" | "answered" => 2,
        s if is_final_status(s) => 3,
        _ => 0,
    }
}

fn first_nonempty<'a>(events: &'a [&Event], f: impl Fn(&'a Facts) -> &'a str) -> String {
    events
        .iter()
        .map(|e| f(&e.facts))
        .find(|s| !s.is_empty())
        .unwrap_or("")
        .to_owned()
}

/// Derives the call row from its events (any order; duplicates already removed).
/// `None` when there is nothing to derive (no event, or only `outbound-dial` legs).
pub fn derive(events: &[Event], rules: &Rules, decided: Option<&Decided>) -> Option<Call> {
    let mut evs: Vec<&Event> = events.iter().filter(|e| !e.facts.is_child_leg()).collect();
    evs.sort_by_key(|e| e.id);
    let first = evs.first()?;

    let direction = first_nonempty(&evs, |f| &f.direction);
    let outbound = direction.starts_with("outbound");
    let pick = |inbound: fn(&Facts) -> &str, outbound_f: fn(&Facts) -> &str| {
        first_nonempty(&evs, if outbound { outbound_f } else { inbound })
    };
    let tracking_number = pick(|f| &f.to, |f| &f.from);
    let caller = pick(|f| &f.from, |f| &f.to);
    let caller_city = pick(|f| &f.from_city, |f| &f.to_city);
    let caller_state = pick(|f| &f.from_state, |f| &f.to_state);
    let caller_name = first_nonempty(&evs, |f| &f.caller_name);

    let (user, source) = match decided {
        Some(d) => (d.user.clone(), d.source.clone()),
        None => rules
            .number(&tracking_number)
            .map(|n| (n.user.clone(), n.source.clone()))
            .unwrap_or_default(),
    };

    // Latest status by rank, then SequenceNumber, then time, then arrival.
    let status = evs
        .iter()
        .filter_map(|e| e.facts.call_status.as_deref().map(|s| (e, s)))
        .max_by_key(|(e, s)| {
            (
                status_rank(s),
                e.facts.sequence_number.unwrap_or(-1),
                e.time(),
                e.id,
            )
        })
        .map(|(_, s)| s.to_owned())
        .unwrap_or_default();

    let finals: Vec<&&Event> = evs
        .iter()
        .filter(|e| e.facts.call_status.as_deref().is_some_and(is_final_status))
        .collect();
    let final_ev = finals
        .iter()
        .max_by_key(|e| (e.facts.sequence_number.unwrap_or(-1), e.time(), e.id))
        .copied();
    let first_final_id = finals.iter().map(|e| e.id).min();

    let duration_seconds = final_ev
        .and_then(|e| e.facts.call_duration)
        .or_else(|| evs.iter().filter_map(|e| e.facts.call_duration).max());
    let ended_at = final_ev.map(|e| e.time());

    let mut started_at = evs
        .iter()
        .map(|e| e.time())
        .min()
        .unwrap_or(first.received_at);
    if let (Some(end), Some(d)) = (ended_at, final_ev.and_then(|e| e.facts.call_duration)) {
        started_at = started_at.min(end - d);
    }

    let dial = evs
        .iter()
        .filter(|e| e.facts.dial_call_status.is_some())
        .max_by_key(|e| e.id);
    let forwarded = dial.is_some()
        || evs
            .iter()
            .any(|e| e.kind == Kind::Incoming && e.answer == Answer::Dial);
    let final_status = final_ev.and_then(|e| e.facts.call_status.as_deref());

    let (answered, talk_seconds) = if forwarded {
        match dial {
            Some(d) => {
                let ok = d.facts.dial_call_status.as_deref() == Some("completed");
                let talk = if ok {
                    d.facts.dial_call_duration.unwrap_or(0)
                } else {
                    0
                };
                (Some(ok), Some(talk))
            }
            None => match final_status {
                Some(s) if s != "completed" => (Some(false), Some(0)),
                _ => (None, None),
            },
        }
    } else {
        match final_status {
            Some(s) => {
                let hung_up_first = evs.iter().any(|e| {
                    e.kind == Kind::Incoming
                        && e.answer == Answer::Hangup
                        && first_final_id.is_some_and(|f| e.id < f)
                });
                let ok = s == "completed" && !hung_up_first;
                (
                    Some(ok),
                    Some(if ok { duration_seconds.unwrap_or(0) } else { 0 }),
                )
            }
            None => (None, None),
        }
    };

    let min_duration_seconds = answered.map(|_| {
        decided
            .and_then(|d| d.min_duration_seconds)
            .unwrap_or(rules.min_duration_seconds)
    });
    let qualified = answered
        .map(|a| a && talk_seconds.unwrap_or(0) >= min_duration_seconds.unwrap_or(0) as i64);

    Some(Call {
        call_sid: first.facts.call_sid.clone(),
        user,
        tracking_number,
        source,
        caller,
        caller_name,
        caller_city,
        caller_state,
        direction,
        status,
        answered,
        qualified,
        duration_seconds,
        talk_seconds,
        started_at,
        ended_at,
        forwarded,
        min_duration_seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NumberRule;

    const T0: i64 = 1_700_000_000;

    fn rules() -> Rules {
        let mut r = Rules {
            min_duration_seconds: 30,
            ..Rules::default()
        };
        r.numbers.insert(
            "+18005551212".into(),
            NumberRule {
                number: "+18005551212".into(),
                user: "acme".into(),
                source: "Google Ads".into(),
                forward_to: Some("+15558675309".into()),
                ring_timeout_seconds: 20,
            },
        );
        r
    }

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
        derive(&evs, &rules(), None).unwrap()
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
        let c = derive(&evs, &rules(), None).unwrap();
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
            let c = derive(&evs, &rules(), None).unwrap();
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
        let c = derive(&evs, &rules(), None).unwrap();
        assert_eq!(
            (c.answered, c.qualified, c.talk_seconds),
            (None, None, None)
        );
        let evs = [
            incoming(1, T0, Answer::Dial),
            status(2, T0 + 9, "no-answer", T0 + 9, Some(0)),
        ];
        let c = derive(&evs, &rules(), None).unwrap();
        assert_eq!(
            (c.answered, c.qualified, c.talk_seconds),
            (Some(false), Some(false), Some(0))
        );
    }

    #[test]
    fn not_forwarded_busy_and_no_answer() {
        for st in ["busy", "no-answer"] {
            let evs = [status(1, T0, st, T0, Some(0))];
            let c = derive(&evs, &rules(), None).unwrap();
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
        let c = derive(&evs, &rules(), None).unwrap();
        assert_eq!(
            (c.answered, c.qualified, c.talk_seconds),
            (Some(false), Some(false), Some(0))
        );
        // Before the final status, nothing is known yet.
        let c = derive(&evs[..1], &rules(), None).unwrap();
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
        let c = derive(&[e], &rules(), None).unwrap();
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
        assert!(derive(&[e], &rules(), None).is_none());
    }

    #[test]
    fn unknown_number_has_empty_user() {
        let mut e = status(1, T0, "completed", T0, Some(5));
        e.facts.to = "+19999999999".into();
        let c = derive(&[e], &rules(), None).unwrap();
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
        let c = derive(&evs, &rules(), Some(&d)).unwrap();
        assert_eq!(
            (c.user.as_str(), c.qualified, c.min_duration_seconds),
            ("old", Some(true), Some(10))
        );
    }
}
