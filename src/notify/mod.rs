/*!
Notifications (`[[notify]]`): who hears about a call, what they get, and delivery.

- When: [`events_for`] compares a call's row before and after a request. A call becomes
  *final* when its outcome becomes known (`call.completed`; `call.missed` as well when
  that outcome is missed, abandoned or voicemail) and *qualified* when `qualified`
  becomes true (`call.qualified`). The writer then puts one row per (call, event,
  target) in the outbox, in the same transaction ([`crate::storage::outbox`]): a crash
  neither loses nor invents one.
- Delivery ([`deliver`]): a thread of the daemon sends due rows, one worker thread per
  target so a slow or dead receiver holds up only its own messages; retries back off
  from 10 s to 1 h and give up after 24 h (marked failed, logged, counted).
- What is sent ([`send`]): a signed JSON `POST` (Standard Webhooks), an ntfy message, a
  plain-text mail, a text through Twilio.
*/

use crate::calls::{CAPTURED_BY_BACKFILL, Call, CallOutcome};
use crate::config::NotifyEvent;

pub mod deliver;
pub mod send;

/// A backfilled call that started longer ago than this notifies nobody.
pub const BACKFILL_QUIET_SECONDS: i64 = 24 * 3600;

/// The events a request causes, from the call's row before (`None`: a new call) and
/// after it.
pub fn events_for(old: Option<&Call>, new: &Call, now: i64) -> Vec<NotifyEvent> {
    if new.captured_by == CAPTURED_BY_BACKFILL && new.started_at < now - BACKFILL_QUIET_SECONDS {
        return Vec::new();
    }
    let mut out = Vec::new();
    if old.is_none_or(|o| o.outcome.is_none())
        && let Some(outcome) = new.outcome
    {
        out.push(NotifyEvent::Completed);
        if matches!(
            outcome,
            CallOutcome::Missed | CallOutcome::Abandoned | CallOutcome::Voicemail
        ) {
            out.push(NotifyEvent::Missed);
        }
    }
    if old.is_none_or(|o| o.qualified != Some(true)) && new.qualified == Some(true) {
        out.push(NotifyEvent::Qualified);
    }
    out
}

/// Now (Unix ms) as notifications see it. Tests move it with
/// `$CALLTRACKD_TEST_CLOCK_OFFSET` (seconds) to reach the 24 h give-up.
pub fn now_ms() -> i64 {
    // Read once: the writer asks for every request that can notify.
    static OFFSET_MS: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    let offset = *OFFSET_MS.get_or_init(|| {
        std::env::var("CALLTRACKD_TEST_CLOCK_OFFSET")
            .ok()
            .and_then(|v| v.parse::<i64>().ok())
            .map_or(0, |s| s * 1000)
    });
    crate::clock::now_ms() + offset
}

/// The wait before attempt `attempts + 1`: 10 s, doubling, at most 1 h.
/// `$CALLTRACKD_TEST_RETRY_MS` replaces the 10 s (tests).
pub fn retry_delay_ms(attempts: i64) -> i64 {
    let base: i64 = std::env::var("CALLTRACKD_TEST_RETRY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let step = base.saturating_mul(1i64 << attempts.clamp(0, 20));
    step.min(base.saturating_mul(360))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(outcome: Option<CallOutcome>, qualified: Option<bool>) -> Call {
        Call {
            outcome,
            qualified,
            started_at: 1_000_000,
            captured_by: "webhook".into(),
            ..Call::default()
        }
    }

    #[test]
    fn final_missed_and_qualified_are_each_told_once() {
        let ringing = call(None, None);
        let missed = call(Some(CallOutcome::Missed), Some(false));
        let answered = call(Some(CallOutcome::Answered), Some(true));
        assert_eq!(events_for(None, &ringing, 1_000_000), vec![]);
        assert_eq!(
            events_for(Some(&ringing), &missed, 1_000_000),
            vec![NotifyEvent::Completed, NotifyEvent::Missed]
        );
        assert_eq!(events_for(Some(&missed), &missed, 1_000_000), vec![]);
        assert_eq!(
            events_for(Some(&ringing), &answered, 1_000_000),
            vec![NotifyEvent::Completed, NotifyEvent::Qualified]
        );
        assert_eq!(events_for(Some(&answered), &answered, 1_000_000), vec![]);
        let mut old = call(None, None);
        old.captured_by = CAPTURED_BY_BACKFILL.into();
        let mut late = missed.clone();
        late.captured_by = CAPTURED_BY_BACKFILL.into();
        assert_eq!(events_for(None, &late, 1_000_000 + 86_401), vec![]);
        assert_eq!(events_for(None, &late, 1_000_000 + 3_600).len(), 2);
    }

    #[test]
    fn retries_back_off_from_10_s_to_an_hour() {
        assert_eq!(retry_delay_ms(0), 10_000);
        assert_eq!(retry_delay_ms(1), 20_000);
        assert_eq!(retry_delay_ms(5), 320_000);
        assert_eq!(retry_delay_ms(9), 3_600_000);
        assert_eq!(retry_delay_ms(50), 3_600_000);
    }
}
