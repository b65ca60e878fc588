/*!
The call rules: where a call's state is decided.

A call row is a pure function of the distinct requests stored for its `CallSid` (and the
rules in force), so the order, number and repetition of Twilio's requests cannot change
the result: [`derive()`] is re-run over all of a call's events whenever one arrives. The
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
use crate::twilio::{Answer, Facts, Kind, is_final_status, is_outbound_direction};

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

    /// When this request says the call had begun: an incoming-call request by its
    /// receipt, a callback by its `Timestamp` (receipt time when absent).
    fn start_bound(&self) -> i64 {
        match self.kind {
            Kind::Incoming => self.received_at,
            _ => self.time(),
        }
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
    let outbound = is_outbound_direction(&direction);
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
        .map(|e| e.start_bound())
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
mod tests;
