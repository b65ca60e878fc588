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
- *outcome* (once final), *ring time*: [`outcome_of`] and [`ring_seconds`];
- *first-time caller*: needs the caller's other calls, so storage counts them
  ([`Call::caller_key`], [`Call::set_priors`]) in start order;
- *qualified* and its reason: [`Call::settle`] — answered, talk ≥ the threshold (the
  number's own, else `[qualify]`'s), first-time when `require_first_time`.

What a stored call was decided with (user, source, `[qualify]`) is kept: a `SIGHUP`
that changes the rules applies to calls decided from then on; `calltrackd requalify`
applies them to the calls already stored.
*/

use serde::{Deserialize, Serialize};

use crate::config::{Qualify, Rules, is_e164};
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
        if let Some(start) = self.facts.start_time {
            return start;
        }
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
    /// The `[qualify]` rules (with the number's own threshold) it was decided with,
    /// fixed once whether it was answered became known.
    pub qualify: Option<Qualify>,
    /// Whether the call counts as blocked: `None` goes by what calltrackd answered
    /// (`<Reject>`); `requalify` sets it from the current block list, and a stored
    /// call keeps what it was decided with.
    pub blocked: Option<bool>,
}

/// What happened to the caller, once the call is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CallOutcome {
    /// The caller was on the block list and was rejected.
    Blocked,
    /// The caller left a message (or the voicemail guard found a machine).
    Voicemail,
    /// A person answered.
    Answered,
    /// A forwarded call the caller gave up on before `abandon_seconds`.
    Abandoned,
    /// Not answered otherwise.
    Missed,
    /// Twilio could not connect the call.
    Failed,
}

impl CallOutcome {
    /// Every outcome, in the contract's order.
    pub const ALL: [CallOutcome; 6] = [
        CallOutcome::Blocked,
        CallOutcome::Voicemail,
        CallOutcome::Answered,
        CallOutcome::Abandoned,
        CallOutcome::Missed,
        CallOutcome::Failed,
    ];

    /// The name in CSV, filters, metrics and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Blocked => "blocked",
            CallOutcome::Voicemail => "voicemail",
            CallOutcome::Answered => "answered",
            CallOutcome::Abandoned => "abandoned",
            CallOutcome::Missed => "missed",
            CallOutcome::Failed => "failed",
        }
    }

    /// The name of an outcome that may not be known yet: `pending` before the call is
    /// final (the report and `/metrics` count those too).
    pub fn label(o: Option<CallOutcome>) -> &'static str {
        o.map_or("pending", CallOutcome::as_str)
    }

    /// From its name.
    pub fn parse(s: &str) -> Option<CallOutcome> {
        CallOutcome::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

impl rusqlite::types::FromSql for CallOutcome {
    fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let s = v.as_str()?;
        CallOutcome::parse(s).ok_or_else(|| {
            rusqlite::types::FromSqlError::Other(format!("unknown outcome {s:?}").into())
        })
    }
}

impl rusqlite::types::ToSql for CallOutcome {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

/// How a call became known to calltrackd.
pub const CAPTURED_BY_WEBHOOK: &str = "webhook";
/// `captured_by` of a call first learnt from Twilio's Calls API (`backfill`, reconcile).
pub const CAPTURED_BY_BACKFILL: &str = "backfill";

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
    /// What happened to the caller; `None` until the call is final.
    pub outcome: Option<CallOutcome>,
    /// How long the caller waited for a person; `None` until `ended_at`.
    pub ring_seconds: Option<i64>,
    /// No call from this caller to this user within the lookback before this one;
    /// `None` for a caller that is not an E.164 number.
    pub first_time_caller: Option<bool>,
    /// How many such earlier calls there are.
    pub prior_calls: Option<i64>,
    /// Why the call is or is not qualified; empty until the outcome is known.
    pub qualified_reason: String,
    /// `RecordingUrl` of the call's recording.
    pub recording_url: String,
    /// `RecordingUrl` of the voicemail left.
    pub voicemail_url: String,
    /// `webhook`, or `backfill` for a call known only from Twilio's Calls API.
    pub captured_by: String,
    /// Whether the call was forwarded with `<Dial>`.
    pub forwarded: bool,
    /// The `[qualify]` rules `qualified` was decided with.
    pub qualify: Option<Qualify>,
}

impl Call {
    /// Whose calls count as this call's earlier ones: the same caller to the same user
    /// (to the same tracking number when the user is empty). `None` when the caller is
    /// not an E.164 number (anonymous, withheld): such calls are never counted.
    pub fn caller_key(&self) -> Option<String> {
        if !is_e164(&self.caller) {
            return None;
        }
        Some(if self.user.is_empty() {
            format!("n {} {}", self.tracking_number, self.caller)
        } else {
            format!("u {} {}", self.user, self.caller)
        })
    }

    /// Whether this call counts as an earlier call of its caller's later ones.
    pub fn counts_as_prior(&self) -> bool {
        self.outcome != Some(CallOutcome::Blocked)
    }

    /// The lookback this call's first-time flag is decided with.
    pub fn lookback_days(&self, rules: &Rules) -> u64 {
        self.qualify
            .unwrap_or_else(|| rules.qualify_for(&self.tracking_number))
            .first_time_lookback_days
    }

    /// Sets the first-time flag from the number of earlier calls (as counted by
    /// storage; `None` for a caller without a key), then qualification.
    pub fn set_priors(&mut self, prior_calls: Option<i64>) {
        self.prior_calls = prior_calls;
        self.first_time_caller = prior_calls.map(|n| n == 0);
        self.settle();
    }

    /// Decides `qualified` and `qualified_reason` from the outcome, talk time and
    /// first-time flag, with the rules the call was decided with.
    pub fn settle(&mut self) {
        let Some(q) = self.qualify else {
            self.qualified = None;
            self.qualified_reason.clear();
            return;
        };
        let talk = self.talk_seconds.unwrap_or(0);
        let min = q.min_duration_seconds as i64;
        let first_time_ok = !q.require_first_time || self.first_time_caller == Some(true);
        let long_enough = talk >= min;
        let (qualified, reason) = match self.outcome {
            // Before the final status: known from the dial result, no reason yet.
            None => (
                self.answered.map(|a| a && first_time_ok && long_enough),
                String::new(),
            ),
            Some(CallOutcome::Blocked) => (Some(false), "blocked caller".to_owned()),
            Some(CallOutcome::Answered) if !first_time_ok => {
                (Some(false), "not a first-time caller".to_owned())
            }
            Some(CallOutcome::Answered) if !long_enough => {
                (Some(false), format!("talked {talk} s, under {min} s"))
            }
            Some(CallOutcome::Answered) => {
                (Some(true), format!("talked {talk} s, at least {min} s"))
            }
            Some(o) => (Some(false), format!("not answered ({})", o.as_str())),
        };
        self.qualified = qualified;
        self.qualified_reason = reason;
    }
}

/// What decides a final call's outcome. The call-flow features (block list, voicemail,
/// voicemail guard) add their facts here; the order of the rules is [`outcome_of`]'s.
#[derive(Debug, Clone, Default)]
pub struct OutcomeFacts<'a> {
    /// An `outbound-api` call.
    pub outbound: bool,
    /// The parent's final `CallStatus`.
    pub final_status: &'a str,
    /// Answered with `<Dial>`, or a `DialCallStatus` arrived.
    pub forwarded: bool,
    /// The latest `DialCallStatus`.
    pub dial_status: Option<&'a str>,
    /// The call connected: the dial leg completed, or (not forwarded) it completed.
    pub connected: bool,
    /// The caller matched the block list and was rejected.
    pub blocked: bool,
    /// A voicemail of at least 1 s was left on calltrackd's voicemail.
    pub voicemail_left: bool,
    /// The voicemail guard found a machine rather than a person.
    pub guard_found_machine: bool,
    /// How long the caller waited for a person.
    pub ring_seconds: i64,
}

/// The contract's outcome rules, the first that applies.
pub fn outcome_of(f: &OutcomeFacts<'_>, abandon_seconds: u64) -> CallOutcome {
    use CallOutcome::*;
    if f.blocked {
        return Blocked;
    }
    if f.voicemail_left || f.guard_found_machine {
        return Voicemail;
    }
    if f.outbound {
        return match f.final_status {
            "completed" => Answered,
            "failed" => Failed,
            _ => Missed,
        };
    }
    if f.connected {
        return Answered;
    }
    if f.forwarded {
        // The leg's own result when Twilio sent it, else the parent's final status.
        let leg = f.dial_status.unwrap_or(f.final_status);
        if f.dial_status.is_none() && f.final_status == "failed" {
            return Failed;
        }
        if leg == "busy" || leg == "failed" || f.ring_seconds >= abandon_seconds as i64 {
            return Missed;
        }
        return Abandoned;
    }
    if f.final_status == "failed" {
        return Failed;
    }
    Missed
}

/// How long the caller waited for a person: from the start to the end, less the talk
/// time of a connected forwarded call and the length of a voicemail left; never below
/// 0; 0 for a call that never rang anyone (not forwarded, blocked).
pub fn ring_seconds(
    started_at: i64,
    ended_at: i64,
    forwarded: bool,
    blocked: bool,
    talk_when_connected: i64,
    voicemail_seconds: i64,
) -> i64 {
    if !forwarded || blocked {
        return 0;
    }
    (ended_at - started_at - talk_when_connected - voicemail_seconds).max(0)
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
    /// Rejected: the caller was on the block list.
    #[serde(rename = "rj", skip_serializing_if = "std::ops::Not::not", default)]
    rejected: bool,
    /// Dialed with the keypress guard.
    #[serde(rename = "gk", skip_serializing_if = "std::ops::Not::not", default)]
    guard_keypress: bool,
    /// Dialed with answering-machine detection.
    #[serde(rename = "ga", skip_serializing_if = "std::ops::Not::not", default)]
    guard_amd: bool,
    /// The shop pressed a key on the keypress guard.
    #[serde(rename = "kp", skip_serializing_if = "std::ops::Not::not", default)]
    key_pressed: bool,
    /// Answering-machine detection found a machine or a fax.
    #[serde(rename = "mc", skip_serializing_if = "std::ops::Not::not", default)]
    machine: bool,
    /// The longest voicemail recording reported.
    #[serde(rename = "vm", skip_serializing_if = "Option::is_none", default)]
    voicemail: Option<Recorded>,
    /// The call's recording.
    #[serde(rename = "rec", skip_serializing_if = "First::is_empty", default)]
    recording_url: First,
    /// The call's first event is a Calls API resource: no webhook came before it.
    #[serde(rename = "bf", skip_serializing_if = "std::ops::Not::not", default)]
    backfilled: bool,
}

/// A recording reported by Twilio: the longest (then the first) wins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Recorded {
    id: i64,
    url: String,
    duration: i64,
}

/// Whether an `AnsweredBy` says no person answered.
pub fn is_machine(answered_by: &str) -> bool {
    answered_by.starts_with("machine") || answered_by.starts_with("fax")
}

fn min_opt(a: Option<i64>, b: i64) -> Option<i64> {
    Some(a.map_or(b, |a| a.min(b)))
}

impl Summary {
    /// Folds one event in (`outbound-dial` legs are not part of the call row, except
    /// what the call flow's steps say about it).
    pub fn add(&mut self, e: &Event) {
        let f = &e.facts;
        if e.kind.is_step() {
            self.add_step(e);
            return;
        }
        if f.is_child_leg() {
            return;
        }
        if self.first_id.is_none_or(|id| e.id < id) {
            self.first_id = Some(e.id);
            self.call_sid = f.call_sid.clone();
            self.first_received_at = e.received_at;
            self.backfilled = e.kind == Kind::Backfill;
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
                Answer::DialKeypress => {
                    self.answered_with_dial = true;
                    self.guard_keypress = true;
                }
                Answer::DialAmd => {
                    self.answered_with_dial = true;
                    self.guard_amd = true;
                }
                Answer::Reject => {
                    self.rejected = true;
                    self.first_hangup_id = min_opt(self.first_hangup_id, e.id);
                }
                // Nobody was rung: whatever the final status says, no person answered.
                Answer::Hangup | Answer::Closed | Answer::Voicemail => {
                    self.first_hangup_id = min_opt(self.first_hangup_id, e.id)
                }
                Answer::Screen | Answer::Ack => {}
            }
        }
    }

    /// Whether calltrackd rejected the call (the caller was on the block list).
    pub fn rejected(&self) -> bool {
        self.rejected
    }

    /// A request from one of the call flow's own steps: only what that step reports.
    fn add_step(&mut self, e: &Event) {
        let f = &e.facts;
        match e.kind {
            Kind::Screen => self.key_pressed |= f.digits.as_deref().is_some_and(|d| !d.is_empty()),
            Kind::Amd => self.machine |= f.answered_by.as_deref().is_some_and(is_machine),
            Kind::Recording => {
                if let Some(url) = &f.recording_url {
                    self.recording_url.offer(e.id, url);
                }
            }
            Kind::Voicemail => {
                if let Some(url) = &f.recording_url {
                    let r = Recorded {
                        id: e.id,
                        url: url.clone(),
                        duration: f.recording_duration.unwrap_or(0),
                    };
                    let better = self
                        .voicemail
                        .as_ref()
                        .is_none_or(|v| (r.duration, -r.id) > (v.duration, -v.id));
                    if better {
                        self.voicemail = Some(r);
                    }
                }
            }
            _ => {}
        }
    }

    /// The call row the rules give; `None` before any request of the call itself.
    pub fn decide(&self, rules: &Rules, decided: Option<&Decided>) -> Option<Call> {
        self.first_id?;
        let blocked = decided.and_then(|d| d.blocked).unwrap_or(self.rejected);
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
        // A person took the forwarded leg: it completed, and the guard (if any) said
        // person: a key pressed, or no machine found (`unknown` counts as a person).
        let person = |completed: bool| {
            completed
                && (!self.guard_keypress || self.key_pressed)
                && (!self.guard_amd || !self.machine)
        };
        let (connected, talk_seconds) = if forwarded {
            match &self.dial {
                Some(d) => {
                    let ok = person(d.status == "completed");
                    (Some(ok), Some(if ok { d.duration.unwrap_or(0) } else { 0 }))
                }
                // No leg result: a final status other than `completed` says nobody
                // answered; `completed` alone cannot say (the contract counts a
                // forwarded call answered only by its `DialCallStatus`), so the call
                // waits for its `<Dial action>` before it has an outcome.
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
                    // An inbound call only the Calls API knows, with no `<Dial>` leg:
                    // calltrackd never answered it, nobody was rung (Twilio played its
                    // error message, or the fallback said something), so no person took it.
                    let unattended = self.backfilled && !outbound;
                    let ok = s == "completed" && !hung_up_first && !unattended;
                    (
                        Some(ok),
                        Some(if ok { duration_seconds.unwrap_or(0) } else { 0 }),
                    )
                }
                None => (None, None),
            }
        };

        let voicemail = self.voicemail.as_ref().filter(|v| v.duration >= 1);
        let ring = ended_at.map(|end| {
            let talk = if connected == Some(true) && forwarded {
                talk_seconds.unwrap_or(0)
            } else {
                0
            };
            let message = voicemail.map_or(0, |v| v.duration);
            ring_seconds(started_at, end, forwarded, blocked, talk, message)
        });
        // The rules are fixed with the call once whether it was answered is known.
        let fixed = decided.and_then(|d| d.qualify);
        let qualify =
            connected.map(|_| fixed.unwrap_or_else(|| rules.qualify_for(&tracking_number)));
        let outcome = final_status.filter(|_| connected.is_some()).map(|fs| {
            let abandon = qualify
                .unwrap_or_else(|| rules.qualify_for(&tracking_number))
                .abandon_seconds;
            outcome_of(
                &OutcomeFacts {
                    outbound,
                    final_status: fs,
                    forwarded,
                    dial_status: self.dial.as_ref().map(|d| d.status.as_str()),
                    connected: connected == Some(true),
                    blocked,
                    voicemail_left: voicemail.is_some(),
                    guard_found_machine: self.guard_amd && self.machine,
                    ring_seconds: ring.unwrap_or(0),
                },
                abandon,
            )
        });
        let answered = match outcome {
            Some(o) => Some(o == CallOutcome::Answered),
            None => connected,
        };

        let mut call = Call {
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
            qualified: None,
            duration_seconds,
            talk_seconds,
            started_at,
            ended_at,
            outcome,
            ring_seconds: ring,
            first_time_caller: None,
            prior_calls: None,
            qualified_reason: String::new(),
            recording_url: self.recording_url.v.clone(),
            voicemail_url: voicemail.map(|v| v.url.clone()).unwrap_or_default(),
            captured_by: if self.backfilled {
                CAPTURED_BY_BACKFILL
            } else {
                CAPTURED_BY_WEBHOOK
            }
            .to_owned(),
            forwarded,
            qualify,
        };
        call.settle();
        Some(call)
    }
}

/// Derives the call row from its events (any order; duplicates already removed), all
/// but its first-time flag, which needs the caller's other calls ([`Call::set_priors`]).
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
