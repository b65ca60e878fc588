//! What calltrackd answers each request with: the call flow of the contract's
//! "Answering calls", decided from the rules snapshot, the request and the time. Pure
//! functions (the HTTP side stores the request, then sends what these return), so every
//! branch can be tested without a phone.
//!
//! 1. A caller on the block list: `<Reject reason="busy"/>`.
//! 2. Outside `hours`: ring `after_hours_forward_to`; else the voicemail when on; else
//!    the closed message (if any) and hang up.
//! 3. Otherwise ring `forward_to` (with the record notice first when `record` is on):
//!    `whisper` and the keypress guard through `<Number url>`, the AMD guard through
//!    `machineDetection`.
//! 4. The `<Dial action>`: when no person took the call and `voicemail` is on, the
//!    greeting and `<Record>`; otherwise end the call.
//!
//! Every URL calltrackd gives Twilio is the webhook's, with `?step=<step>&call=<the
//! parent CallSid>`, so each request is told apart by its URL (never taken for a new
//! incoming call) and stored as an event of the parent call.

use crate::config::{NumberRule, Rules, VoicemailGuard, is_open};
use crate::twilio::{Answer, Facts, Kind};
use crate::twiml::{self, DialPlan, Twiml};

/// Where Twilio sends the call flow's requests: the webhook's URL (`public_url` +
/// path, or relative to the request when there is no `public_url`).
#[derive(Debug, Clone)]
pub struct Urls {
    webhook: String,
}

impl Urls {
    /// From the webhook's full URL, or `None`: relative (`webhook`), which Twilio
    /// resolves against the URL it requested (the webhook itself).
    pub fn new(webhook_url: Option<String>) -> Urls {
        Urls {
            webhook: webhook_url.unwrap_or_else(|| "webhook".to_owned()),
        }
    }

    /// The `<Dial action>` URL.
    pub fn action(&self) -> &str {
        &self.webhook
    }

    /// The URL of one step of `parent`'s call flow.
    pub fn step(&self, step: Kind, parent: &str) -> String {
        format!("{}?step={}&call={parent}", self.webhook, step.as_str())
    }

    /// The screen's URL also names the tracking number, whose whisper and guard the
    /// shop's leg (which carries the shop's number, not the tracking number) gets.
    pub fn screen(&self, parent: &str, tracking: &str) -> String {
        format!(
            "{}&number={}",
            self.step(Kind::Screen, parent),
            tracking.replace('+', "%2B")
        )
    }
}

/// The answer to "a call comes in".
pub fn incoming(rules: &Rules, facts: &Facts, now: i64, urls: &Urls) -> (Answer, String) {
    let caller = if facts.is_outbound() {
        &facts.to
    } else {
        &facts.from
    };
    if rules.block.blocks(caller) {
        return (Answer::Reject, Twiml::new().reject_busy().finish());
    }
    let Some(n) = rules.number(facts.tracking_number()) else {
        return (Answer::Hangup, twiml::EMPTY.to_owned());
    };
    let tz = n.flow.timezone.unwrap_or(rules.timezone);
    let open = is_open(n.flow.hours.as_deref(), tz, now);
    let ring = if open {
        n.forward_to.as_deref()
    } else {
        n.flow.after_hours_forward_to.as_deref()
    };
    match ring {
        Some(number) => dial(n, number, &facts.call_sid, urls),
        None if n.flow.voicemail => voicemail(n, &facts.call_sid, urls),
        None if !open => {
            let mut t = Twiml::new();
            if let Some(msg) = &n.flow.closed_message {
                t.say(msg);
            }
            (Answer::Closed, t.hangup().finish())
        }
        None => (Answer::Hangup, twiml::EMPTY.to_owned()),
    }
}

/// The greeting and `<Record>`, reporting to the voicemail step of `parent`.
fn voicemail(n: &NumberRule, parent: &str, urls: &Urls) -> (Answer, String) {
    let twiml = Twiml::new()
        .voicemail(
            &n.flow.voicemail_greeting,
            &urls.step(Kind::Voicemail, parent),
        )
        .finish();
    (Answer::Voicemail, twiml)
}

fn dial(n: &NumberRule, number: &str, parent: &str, urls: &Urls) -> (Answer, String) {
    let f = &n.flow;
    let screen = (f.whisper.is_some() || f.voicemail_guard == VoicemailGuard::Keypress)
        .then(|| urls.screen(parent, &n.number));
    let amd = (f.voicemail_guard == VoicemailGuard::Amd).then(|| urls.step(Kind::Amd, parent));
    let recording = f.record.then(|| urls.step(Kind::Recording, parent));
    let mut t = Twiml::new();
    if f.record {
        t.say(&f.record_notice);
    }
    t.dial(&DialPlan {
        number,
        ring_timeout_seconds: n.ring_timeout_seconds,
        action: Some(urls.action()),
        screen_url: screen.as_deref(),
        amd_callback: amd.as_deref(),
        recording_callback: recording.as_deref(),
    });
    let answer = match f.voicemail_guard {
        VoicemailGuard::Off => Answer::Dial,
        VoicemailGuard::Keypress => Answer::DialKeypress,
        VoicemailGuard::Amd => Answer::DialAmd,
    };
    (answer, t.finish())
}

/// Whether a person took the forwarded leg, as far as its `<Dial action>` can tell:
/// it completed, and was bridged to the caller (with the keypress guard, only a key
/// bridges it; without a guard a missing `DialBridged` is taken as bridged).
pub fn taken_by_person(facts: &Facts, guard: VoicemailGuard) -> bool {
    facts.dial_call_status.as_deref() == Some("completed")
        && match guard {
            VoicemailGuard::Keypress => facts.dial_bridged == Some(true),
            _ => facts.dial_bridged != Some(false),
        }
}

/// The answer to the `<Dial action>`: the voicemail when nobody took the call and the
/// number has one; otherwise end the call.
pub fn dial_action(rules: &Rules, facts: &Facts, urls: &Urls) -> (Answer, String) {
    match rules.number(facts.tracking_number()) {
        Some(n) if n.flow.voicemail && !taken_by_person(facts, n.flow.voicemail_guard) => {
            voicemail(n, &facts.call_sid, urls)
        }
        _ => (Answer::Ack, twiml::EMPTY.to_owned()),
    }
}

/// The answer to the shop's leg: the whisper and keypress prompt when it picks up;
/// once a key is pressed, an empty answer, which bridges the call. `tracking` is the
/// tracking number the screen's URL names (a number no longer configured: bridged).
pub fn screen(rules: &Rules, facts: &Facts, tracking: Option<&str>) -> (Answer, String) {
    if facts.digits.is_some() {
        return (Answer::Ack, twiml::EMPTY.to_owned());
    }
    match tracking.and_then(|t| rules.number(t)) {
        Some(n) => (
            Answer::Screen,
            Twiml::new()
                .screen(n.flow.whisper.as_deref(), n.flow.voicemail_guard)
                .finish(),
        ),
        None => (Answer::Ack, twiml::EMPTY.to_owned()),
    }
}

#[cfg(test)]
mod tests;
