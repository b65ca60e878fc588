/*!
The call rules: where a call's state is decided.

A call row is a pure function of the distinct requests stored for its `CallSid` (and the
rules in force), so the order, number and repetition of Twilio's requests cannot change
the result. The events are folded into a [`Summary`] (kept with the call row, so each
new request is folded in at a constant cost), and [`Summary::decide`] applies the
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

use serde::{Deserialize, Serialize};

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

/// The first non-empty value of a field, by event id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct First {
    id: i64,
    v: String,
}

impl First {
    fn is_empty(&self) -> bool {
        self.v.is_empty()
    }

    fn offer(&mut self, id: i64, v: &str) {
        if !v.is_empty() && (self.v.is_empty() || id < self.id) {
            self.id = id;
            self.v = v.to_owned();
        }
    }
}

/// The latest `CallStatus` by rank, then `SequenceNumber`, then time, then arrival.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Latest {
    key: (u8, i64, i64, i64),
    status: String,
}

/// The final status callback that counts: by `SequenceNumber`, time, arrival.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Final {
    key: (i64, i64, i64),
    status: String,
    time: i64,
    call_duration: Option<i64>,
}

/// The latest `<Dial action>` result, by arrival.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Dialed {
    id: i64,
    status: String,
    duration: Option<i64>,
}

/// Everything the rules need from a call's events, folded one event at a time.
///
/// Adding events in any order gives the same summary (every field is a minimum, a
/// maximum, or a flag), so the writer keeps it with the call row and folds each new
/// request into it: storing a request costs the same whether its call has 3 events or
/// 6,000. [`derive()`] folds a whole list the same way. Stored as compact JSON (short
/// names, empty fields left out): it is written with every request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    #[serde(rename = "i", skip_serializing_if = "Option::is_none", default)]
    first_id: Option<i64>,
    #[serde(rename = "sid", default)]
    call_sid: String,
    #[serde(rename = "rcv", default)]
    first_received_at: i64,
    #[serde(rename = "dir", skip_serializing_if = "First::is_empty", default)]
    direction: First,
    #[serde(rename = "f", skip_serializing_if = "First::is_empty", default)]
    from: First,
    #[serde(rename = "t", skip_serializing_if = "First::is_empty", default)]
    to: First,
    #[serde(rename = "fc", skip_serializing_if = "First::is_empty", default)]
    from_city: First,
    #[serde(rename = "fs", skip_serializing_if = "First::is_empty", default)]
    from_state: First,
    #[serde(rename = "tc", skip_serializing_if = "First::is_empty", default)]
    to_city: First,
    #[serde(rename = "ts", skip_serializing_if = "First::is_empty", default)]
    to_state: First,
    #[serde(rename = "cn", skip_serializing_if = "First::is_empty", default)]
    caller_name: First,
    #[serde(rename = "st", skip_serializing_if = "Option::is_none", default)]
    latest: Option<Latest>,
    #[serde(rename = "fin", skip_serializing_if = "Option::is_none", default)]
    final_ev: Option<Final>,
    #[serde(rename = "ffi", skip_serializing_if = "Option::is_none", default)]
    first_final_id: Option<i64>,
    #[serde(rename = "mcd", skip_serializing_if = "Option::is_none", default)]
    max_call_duration: Option<i64>,
    #[serde(rename = "ms", skip_serializing_if = "Option::is_none", default)]
    min_start: Option<i64>,
    #[serde(rename = "dl", skip_serializing_if = "Option::is_none", default)]
    dial: Option<Dialed>,
    #[serde(rename = "awd", skip_serializing_if = "std::ops::Not::not", default)]
    answered_with_dial: bool,
    #[serde(rename = "fhi", skip_serializing_if = "Option::is_none", default)]
    first_hangup_id: Option<i64>,
}

fn min_opt(a: Option<i64>, b: i64) -> Option<i64> {
    Some(a.map_or(b, |a| a.min(b)))
}

impl Summary {
    /// Folds one event in (`outbound-dial` legs are not part of the call row).
    pub fn add(&mut self, e: &Event) {
        let f = &e.facts;
        if f.is_child_leg() {
            return;
        }
        if self.first_id.is_none_or(|id| e.id < id) {
            self.first_id = Some(e.id);
            self.call_sid = f.call_sid.clone();
            self.first_received_at = e.received_at;
        }
        self.direction.offer(e.id, &f.direction);
        self.from.offer(e.id, &f.from);
        self.to.offer(e.id, &f.to);
        self.from_city.offer(e.id, &f.from_city);
        self.from_state.offer(e.id, &f.from_state);
        self.to_city.offer(e.id, &f.to_city);
        self.to_state.offer(e.id, &f.to_state);
        self.caller_name.offer(e.id, &f.caller_name);
        let seq = f.sequence_number.unwrap_or(-1);
        if let Some(st) = &f.call_status {
            let key = (status_rank(st), seq, e.time(), e.id);
            if self.latest.as_ref().is_none_or(|l| key > l.key) {
                self.latest = Some(Latest {
                    key,
                    status: st.clone(),
                });
            }
            if is_final_status(st) {
                let key = (seq, e.time(), e.id);
                if self.final_ev.as_ref().is_none_or(|x| key > x.key) {
                    self.final_ev = Some(Final {
                        key,
                        status: st.clone(),
                        time: e.time(),
                        call_duration: f.call_duration,
                    });
                }
                self.first_final_id = min_opt(self.first_final_id, e.id);
            }
        }
        if let Some(d) = f.call_duration {
            self.max_call_duration = Some(self.max_call_duration.map_or(d, |m| m.max(d)));
        }
        self.min_start = min_opt(self.min_start, e.start_bound());
        if let Some(ds) = &f.dial_call_status
            && self.dial.as_ref().is_none_or(|d| e.id > d.id)
        {
            self.dial = Some(Dialed {
                id: e.id,
                status: ds.clone(),
                duration: f.dial_call_duration,
            });
        }
        if e.kind == Kind::Incoming {
            match e.answer {
                Answer::Dial => self.answered_with_dial = true,
                Answer::Hangup => self.first_hangup_id = min_opt(self.first_hangup_id, e.id),
                Answer::Ack => {}
            }
        }
    }

    /// The call row the rules give; `None` before any request of the call itself.
    pub fn decide(&self, rules: &Rules, decided: Option<&Decided>) -> Option<Call> {
        self.first_id?;
        let direction = self.direction.v.clone();
        let outbound = is_outbound_direction(&direction);
        let pick = |inbound: &First, outbound_f: &First| {
            if outbound { outbound_f } else { inbound }.v.clone()
        };
        let tracking_number = pick(&self.to, &self.from);
        let caller = pick(&self.from, &self.to);
        let caller_city = pick(&self.from_city, &self.to_city);
        let caller_state = pick(&self.from_state, &self.to_state);

        let (user, source) = match decided {
            Some(d) => (d.user.clone(), d.source.clone()),
            None => rules
                .number(&tracking_number)
                .map(|n| (n.user.clone(), n.source.clone()))
                .unwrap_or_default(),
        };
        let status = self
            .latest
            .as_ref()
            .map(|l| l.status.clone())
            .unwrap_or_default();
        let final_ev = self.final_ev.as_ref();
        let final_status = final_ev.map(|e| e.status.as_str());
        let duration_seconds = final_ev
            .and_then(|e| e.call_duration)
            .or(self.max_call_duration);
        let ended_at = final_ev.map(|e| e.time);
        let mut started_at = self.min_start.unwrap_or(self.first_received_at);
        if let (Some(end), Some(d)) = (ended_at, final_ev.and_then(|e| e.call_duration)) {
            started_at = started_at.min(end - d);
        }

        let forwarded = self.dial.is_some() || self.answered_with_dial;
        let (answered, talk_seconds) = if forwarded {
            match &self.dial {
                Some(d) => {
                    let ok = d.status == "completed";
                    (Some(ok), Some(if ok { d.duration.unwrap_or(0) } else { 0 }))
                }
                None => match final_status {
                    Some(s) if s != "completed" => (Some(false), Some(0)),
                    _ => (None, None),
                },
            }
        } else {
            match final_status {
                Some(s) => {
                    let hung_up_first = self
                        .first_hangup_id
                        .zip(self.first_final_id)
                        .is_some_and(|(h, f)| h < f);
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
            call_sid: self.call_sid.clone(),
            user,
            tracking_number,
            source,
            caller,
            caller_name: self.caller_name.v.clone(),
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
}

/// Derives the call row from its events (any order; duplicates already removed).
/// `None` when there is nothing to derive (no event, or only `outbound-dial` legs).
pub fn derive(events: &[Event], rules: &Rules, decided: Option<&Decided>) -> Option<Call> {
    let mut summary = Summary::default();
    for e in events {
        summary.add(e);
    }
    summary.decide(rules, decided)
}

#[cfg(test)]
mod tests;
