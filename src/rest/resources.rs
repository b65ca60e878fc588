//! The REST resources calltrackd reads, with the fields it uses (names as in Twilio's
//! OpenAPI description of the 2010-04-01 API; every other field is ignored).

use serde::Deserialize;

/// `Account`.
#[derive(Debug, Clone, Deserialize)]
pub struct Account {
    /// `AC...`
    pub sid: String,
    /// `active`, `suspended`, `closed`.
    #[serde(default)]
    pub status: Option<String>,
    /// The account's name.
    #[serde(default)]
    pub friendly_name: Option<String>,
}

/// `IncomingPhoneNumber`.
#[derive(Debug, Clone, Deserialize)]
pub struct IncomingNumber {
    /// `PN...`
    pub sid: String,
    /// E.164.
    pub phone_number: String,
    /// "A call comes in" URL.
    #[serde(default)]
    pub voice_url: Option<String>,
    /// Its method.
    #[serde(default)]
    pub voice_method: Option<String>,
    /// The fallback URL.
    #[serde(default)]
    pub voice_fallback_url: Option<String>,
    /// The status callback URL.
    #[serde(default)]
    pub status_callback: Option<String>,
    /// Its method.
    #[serde(default)]
    pub status_callback_method: Option<String>,
    /// Caller-name lookup.
    #[serde(default)]
    pub voice_caller_id_lookup: Option<bool>,
    /// A TwiML app that overrides the voice URL, when set.
    #[serde(default)]
    pub voice_application_sid: Option<String>,
}

/// `Call`.
#[derive(Debug, Clone, Deserialize)]
pub struct CallResource {
    /// `CA...`
    pub sid: String,
    /// The parent of a `<Dial>` leg.
    #[serde(default)]
    pub parent_call_sid: Option<String>,
    /// E.164 (or a client/SIP name).
    #[serde(default)]
    pub from: Option<String>,
    /// E.164.
    #[serde(default)]
    pub to: Option<String>,
    /// `queued`, `ringing`, `in-progress`, `completed`, `busy`, `failed`, `no-answer`,
    /// `canceled`.
    #[serde(default)]
    pub status: Option<String>,
    /// `inbound`, `outbound-api`, `outbound-dial`.
    #[serde(default)]
    pub direction: Option<String>,
    /// RFC 2822.
    #[serde(default)]
    pub start_time: Option<String>,
    /// RFC 2822.
    #[serde(default)]
    pub end_time: Option<String>,
    /// Seconds, as a string; empty or null when unanswered.
    #[serde(default)]
    pub duration: Option<String>,
    /// Caller name (when looked up).
    #[serde(default)]
    pub caller_name: Option<String>,
    /// Answering-machine detection.
    #[serde(default)]
    pub answered_by: Option<String>,
}

/// `Message`.
#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    /// `SM...`
    pub sid: String,
    /// `queued`, `accepted`...
    #[serde(default)]
    pub status: Option<String>,
}
