/*!
Backfill: the calls Twilio has and calltrackd does not, from the Calls API.

For each tracking number, the calls `To` it (inbound) and `From` it (`outbound-api`)
that started in the window; a call with no stored event is recorded as one event
holding its resource verbatim (`captured_by = backfill`), its `<Dial>` leg
(`ParentCallSid` = the call) giving the dial status and talk time, and kept as an event
of its own; a call calltrackd has without its final status gets that status; anything
else is left alone, so a second run adds nothing. Events go through the same rows code
as webhooks (first-time flags of later calls move, the report summary follows).

API cost: per number, two list requests per 1,000 calls in the window, plus one per
inbound call recorded or finished (its `<Dial>` leg).
*/

use std::sync::Arc;

use chrono::DateTime;
use sha2::{Digest, Sha256};

use crate::calls::Call;
use crate::clock::now_ms;
use crate::config::Rules;
use crate::rest::{CallResource, Client, RestError};
use crate::storage::backfill::{Known, known};
use crate::storage::{NewEvent, Outcome, StorageError};
use crate::twilio::{Answer, Facts, Kind, is_final_status};

/// The default window: the last 2 days.
pub const DEFAULT_DAYS: i64 = 2;

/// Calls that started in `[since, until)`, Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Inclusive.
    pub since: i64,
    /// Exclusive.
    pub until: i64,
}

impl Window {
    /// The last `days` days up to `now`.
    pub fn last_days(now: i64, days: i64) -> Window {
        Window {
            since: now - days * 86_400,
            until: now + 1,
        }
    }
}

/// What went wrong.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackfillError {
    /// Talking to Twilio.
    #[error(transparent)]
    Rest(#[from] RestError),
    /// Reading or writing the database.
    #[error("database: {0}")]
    Storage(#[from] StorageError),
}

/// What one run did.
#[derive(Debug, Default)]
pub struct Report {
    /// Calls of the tracking numbers Twilio listed in the window.
    pub listed: usize,
    /// Calls recorded, as stored.
    pub added: Vec<Call>,
    /// Calls that got their final status, as stored.
    pub finished: Vec<Call>,
    /// HTTP requests made (retries included).
    pub requests: u64,
}

/// Runs a backfill over `window`: reads what is known through `reader`, stores through
/// `store` (a transaction of its own from the command line; the writer's queue in the
/// daemon).
pub fn run(
    client: &Client,
    reader: &rusqlite::Connection,
    rules: &Arc<Rules>,
    window: Window,
    store: &mut dyn FnMut(NewEvent) -> Result<Outcome, StorageError>,
) -> Result<Report, BackfillError> {
    let mut report = Report::default();
    let mut numbers: Vec<&str> = rules.numbers.keys().map(String::as_str).collect();
    numbers.sort_unstable();
    let day = |t: i64| {
        DateTime::from_timestamp(t, 0)
            .map(|d| d.format("%Y-%m-%d").to_string())
            .unwrap_or_default()
    };
    // Twilio filters by UTC day; the exact window is applied here.
    let after = day(window.since);
    let before = day(window.until + 86_400);
    let mut calls: Vec<(CallResource, String)> = Vec::new();
    for n in numbers {
        for (filter, direction) in [("To", "inbound"), ("From", "outbound-api")] {
            let found =
                client.calls(&[(filter, n), ("StartTime>", &after), ("StartTime<", &before)])?;
            calls.extend(found.into_iter().filter(|(c, _)| {
                c.direction.as_deref() == Some(direction)
                    && started(c).is_some_and(|s| s >= window.since && s < window.until)
            }));
        }
    }
    calls.sort_by_key(|(c, _)| (started(c), c.sid.clone()));
    calls.dedup_by(|a, b| a.0.sid == b.0.sid);
    report.listed = calls.len();
    for (call, text) in &calls {
        let status = call.status.as_deref().unwrap_or("");
        let (is_new, dial_needed) = match known(reader, &call.sid)? {
            Known::New => (true, true),
            Known::Open { answered } if is_final_status(status) => (false, answered.is_none()),
            Known::Open { .. } | Known::Final => continue,
        };
        let inbound = call.direction.as_deref() == Some("inbound");
        let leg = if inbound && dial_needed {
            client
                .calls(&[("ParentCallSid", &call.sid)])?
                .into_iter()
                .find(|(c, _)| c.direction.as_deref() == Some("outbound-dial"))
        } else {
            None
        };
        let ev = event(client, rules, call, text, leg.as_ref().map(|(c, _)| c));
        if let Outcome::Stored { call: stored, .. } = store(ev)? {
            if is_new {
                report.added.push(*stored);
            } else {
                report.finished.push(*stored);
            }
        }
        // The leg itself, verbatim, as an event of its own (no row: an `outbound-dial`
        // leg is part of its parent's).
        if let Some((c, t)) = &leg
            && matches!(known(reader, &c.sid)?, Known::New)
        {
            store(event(client, rules, c, t, None))?;
        }
    }
    report.requests = client.requests();
    Ok(report)
}

/// `start_time` as Unix seconds.
fn started(c: &CallResource) -> Option<i64> {
    rfc2822(c.start_time.as_deref()?)
}

fn rfc2822(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc2822(s).ok().map(|d| d.timestamp())
}

/// A Calls API resource as an event: its text verbatim, the facts the rules use.
fn event(
    client: &Client,
    rules: &Arc<Rules>,
    c: &CallResource,
    text: &str,
    leg: Option<&CallResource>,
) -> NewEvent {
    let status = c.status.clone().filter(|s| !s.is_empty());
    let seconds = |d: &Option<String>| d.as_deref().and_then(|d| d.trim().parse::<i64>().ok());
    let is_final = status.as_deref().is_some_and(is_final_status);
    let facts = Facts {
        call_sid: c.sid.clone(),
        direction: c.direction.clone().unwrap_or_default(),
        from: c.from.clone().unwrap_or_default(),
        to: c.to.clone().unwrap_or_default(),
        call_duration: if is_final {
            seconds(&c.duration).or(Some(0))
        } else {
            None
        },
        timestamp: if is_final {
            c.end_time.as_deref().and_then(rfc2822)
        } else {
            None
        },
        call_status: status,
        start_time: started(c),
        caller_name: c.caller_name.clone().unwrap_or_default(),
        dial_call_status: leg.and_then(|l| l.status.clone()),
        dial_call_duration: leg.and_then(|l| seconds(&l.duration)),
        answered_by: leg
            .and_then(|l| l.answered_by.clone())
            .filter(|a| !a.is_empty()),
        ..Facts::default()
    };
    let body = text.as_bytes().to_vec();
    let mut h = Sha256::new();
    h.update(b"backfill\0");
    h.update(&body);
    NewEvent {
        received_ms: now_ms(),
        kind: Kind::Backfill,
        answer: Answer::Ack,
        facts,
        rules: rules.clone(),
        content_sha256: h.finalize().into(),
        method: "GET".into(),
        path: client.account_path(&format!("/Calls/{}.json", c.sid)),
        content_type: "application/json".into(),
        body,
        idempotency_token: None,
    }
}
