//! TwiML: every answer calltrackd gives Twilio is written here, by one small builder
//! that XML-escapes every value (config text, numbers, URLs). Nothing a caller sends
//! ever reaches it.

use std::fmt::Write as _;

use crate::config::VoicemailGuard;

/// `<Response/>`: ends the call (or acknowledges a callback).
pub const EMPTY: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response/>\n";

/// What the shop hears on a keypress guard, after the whisper.
pub const PRESS_ANY_KEY: &str = "Press any key to take this call.";

/// How long the shop has to press a key.
pub const KEYPRESS_SECONDS: u32 = 5;

/// The longest voicemail, in seconds.
pub const VOICEMAIL_MAX_SECONDS: u32 = 120;

/// A TwiML document under construction.
pub struct Twiml(String);

impl Twiml {
    /// `<Response>`.
    pub fn new() -> Twiml {
        let mut s = String::with_capacity(256);
        s.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response>");
        Twiml(s)
    }

    /// `<name a="v" ...>` (or `/>` when `empty`), every value escaped.
    fn open(&mut self, name: &str, attrs: &[(&str, &str)], empty: bool) -> &mut Twiml {
        let _ = write!(self.0, "<{name}");
        for (k, v) in attrs {
            let _ = write!(self.0, " {k}=\"");
            escape_into(&mut self.0, v);
            self.0.push('"');
        }
        self.0.push_str(if empty { "/>" } else { ">" });
        self
    }

    fn close(&mut self, name: &str) -> &mut Twiml {
        let _ = write!(self.0, "</{name}>");
        self
    }

    fn text(&mut self, t: &str) -> &mut Twiml {
        escape_into(&mut self.0, t);
        self
    }

    /// `<Say>text</Say>`.
    pub fn say(&mut self, text: &str) -> &mut Twiml {
        self.open("Say", &[], false).text(text).close("Say")
    }

    /// `<Hangup/>`.
    pub fn hangup(&mut self) -> &mut Twiml {
        self.open("Hangup", &[], true)
    }

    /// `<Reject reason="busy"/>`: Twilio does not pick up (nor bill) the call.
    pub fn reject_busy(&mut self) -> &mut Twiml {
        self.open("Reject", &[("reason", "busy")], true)
    }

    /// The whole document.
    pub fn finish(&mut self) -> String {
        let mut s = std::mem::take(&mut self.0);
        s.push_str("</Response>\n");
        s
    }

    /// `<Dial>` per [`DialPlan`].
    pub fn dial(&mut self, d: &DialPlan<'_>) -> &mut Twiml {
        let timeout = d.ring_timeout_seconds.to_string();
        let mut attrs = Vec::new();
        if let Some(action) = d.action {
            attrs.extend([("action", action), ("method", "POST")]);
        }
        attrs.extend([("timeout", timeout.as_str()), ("answerOnBridge", "true")]);
        if let Some(cb) = d.recording_callback {
            attrs.extend([
                ("record", "record-from-answer-dual"),
                ("recordingStatusCallback", cb),
                ("recordingStatusCallbackMethod", "POST"),
            ]);
        }
        self.open("Dial", &attrs, false);
        let mut number: Vec<(&str, &str)> = Vec::new();
        if let Some(url) = d.screen_url {
            number.extend([("url", url), ("method", "POST")]);
        }
        if let Some(url) = d.amd_callback {
            number.extend([
                ("machineDetection", "Enable"),
                ("amdStatusCallback", url),
                ("amdStatusCallbackMethod", "POST"),
            ]);
        }
        self.open("Number", &number, false)
            .text(d.number)
            .close("Number")
            .close("Dial")
    }

    /// The voicemail: the greeting, then `<Record>` with a beep, its end and its
    /// recording both reported to `callback`, then `<Hangup/>` (an empty recording
    /// skips the action).
    pub fn voicemail(&mut self, greeting: &str, callback: &str) -> &mut Twiml {
        let max = VOICEMAIL_MAX_SECONDS.to_string();
        self.say(greeting)
            .open(
                "Record",
                &[
                    ("action", callback),
                    ("method", "POST"),
                    ("maxLength", max.as_str()),
                    ("playBeep", "true"),
                    ("recordingStatusCallback", callback),
                    ("recordingStatusCallbackMethod", "POST"),
                ],
                true,
            )
            .hangup()
    }

    /// What the shop hears when it picks up: the whisper, and with a keypress guard the
    /// request to press a key (`<Gather>` posts the key back to the same URL; no key
    /// within [`KEYPRESS_SECONDS`] falls through to `<Hangup/>`, which ends only the
    /// shop's leg).
    pub fn screen(&mut self, whisper: Option<&str>, guard: VoicemailGuard) -> &mut Twiml {
        if guard == VoicemailGuard::Keypress {
            let timeout = KEYPRESS_SECONDS.to_string();
            self.open(
                "Gather",
                &[("numDigits", "1"), ("timeout", timeout.as_str())],
                false,
            );
            if let Some(w) = whisper {
                self.say(w);
            }
            self.say(PRESS_ANY_KEY).close("Gather").hangup()
        } else {
            match whisper {
                Some(w) => self.say(w),
                None => self,
            }
        }
    }
}

impl Default for Twiml {
    fn default() -> Twiml {
        Twiml::new()
    }
}

/// A `<Dial>`: where, how long, and the URLs of its callbacks.
#[derive(Debug, Clone, Copy)]
pub struct DialPlan<'a> {
    /// The phone to ring.
    pub number: &'a str,
    /// How long it rings.
    pub ring_timeout_seconds: u32,
    /// The `<Dial action>` URL (none in the static fallback TwiML).
    pub action: Option<&'a str>,
    /// `<Number url>`: the whisper / keypress screen.
    pub screen_url: Option<&'a str>,
    /// `amdStatusCallback`: answering-machine detection.
    pub amd_callback: Option<&'a str>,
    /// `recordingStatusCallback`: record the call.
    pub recording_callback: Option<&'a str>,
}

/// `<Dial>` to `forward_to` with nothing else: the simplest answer, and (without an
/// `action`) the static fallback TwiML that rings the shop while calltrackd is down.
pub fn plain_dial(forward_to: &str, ring_timeout_seconds: u32, action: Option<&str>) -> String {
    Twiml::new()
        .dial(&DialPlan {
            number: forward_to,
            ring_timeout_seconds,
            action,
            screen_url: None,
            amd_callback: None,
            recording_callback: None,
        })
        .finish()
}

fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
}
