/*!
Twilio requests: body parsing, telling the kinds of request apart, the facts a call is
derived from, and the TwiML we answer with.

Parsing is strict where the contract says so: a form body with a `%` not followed by two
hex digits, or a decoded name or value that is not UTF-8, is unparseable (400); a JSON
body must be an object whose values are strings, numbers, booleans or `null`.
Everything received is kept (parameters Twilio adds later included): the facts pulled
out here are only what the call rules need.
*/

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// Request parameters in the order received; a name may repeat.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of `name`, when present and not empty.
    pub fn get_nonempty(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }
}

impl Params {
    /// What makes two requests the same request: path, query and the set of distinct
    /// name/value pairs, in any order, as the signature sees them (it ignores a repeated
    /// pair too), so repeating a pair cannot turn a replay into a new request.
    pub fn content_hash(&self, path: &str) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(path.as_bytes());
        h.update([0]);
        let mut pairs: Vec<&(String, String)> = self.0.iter().collect();
        pairs.sort();
        pairs.dedup();
        for (k, v) in pairs {
            h.update((k.len() as u64).to_le_bytes());
            h.update(k.as_bytes());
            h.update((v.len() as u64).to_le_bytes());
            h.update(v.as_bytes());
        }
        h.finalize().into()
    }
}

/// Why a body or a parameter cannot be used (`400`). Messages name what is wrong, never
/// echo a value (the HTTP layer escapes what little request text they hold).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A `%` not followed by two hex digits.
    #[error("a `%` in the form body is not followed by two hex digits")]
    BadEscape,
    /// A decoded name or value that is not UTF-8.
    #[error("a decoded form name or value is not UTF-8")]
    NotUtf8,
    /// Not a JSON object.
    #[error("the JSON body is not a JSON object ({0})")]
    NotAnObject(String),
    /// A JSON value that is an array or an object.
    #[error(
        "JSON value of `{0}` is an array or object; only strings, numbers and booleans are accepted"
    )]
    Nested(String),
    /// A known Twilio parameter twice, with different values.
    #[error("parameter {0} appears twice with different values")]
    Repeated(&'static str),
    /// A known Twilio parameter whose value does not have its shape.
    #[error("parameter {0} has a malformed value")]
    Malformed(&'static str),
}

/// The body types calltrackd accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyType {
    /// `application/x-www-form-urlencoded` (what Twilio sends).
    Form,
    /// `application/json` (signed through `bodySHA256`).
    Json,
}

impl BodyType {
    /// From a `Content-Type` header: the media type, case-insensitive, any parameters.
    pub fn from_content_type(ct: Option<&str>) -> Option<BodyType> {
        let media = ct?.split(';').next()?.trim().to_ascii_lowercase();
        match media.as_str() {
            "application/x-www-form-urlencoded" => Some(BodyType::Form),
            "application/json" => Some(BodyType::Json),
            _ => None,
        }
    }
}

/// Parses a body of the given type.
pub fn parse_body(kind: BodyType, body: &[u8]) -> Result<Params, ParseError> {
    match kind {
        BodyType::Form => parse_form(body),
        BodyType::Json => parse_json(body),
    }
}

/// Strict `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a byte,
/// and a `%` without two hex digits or a non-UTF-8 result is an error.
pub fn parse_form(body: &[u8]) -> Result<Params, ParseError> {
    let mut out = Vec::new();
    for segment in body.split(|&b| b == b'&') {
        if segment.is_empty() {
            continue;
        }
        let (name, value) = match segment.iter().position(|&b| b == b'=') {
            Some(i) => (&segment[..i], &segment[i + 1..]),
            None => (segment, &b""[..]),
        };
        out.push((decode_component(name)?, decode_component(value)?));
    }
    Ok(Params(out))
}

fn decode_component(raw: &[u8]) -> Result<String, ParseError> {
    let mut bytes = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => bytes.push(b' '),
            b'%' => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (
                    raw.get(i + 1).and_then(|&b| hex(b)),
                    raw.get(i + 2).and_then(|&b| hex(b)),
                ) {
                    (Some(h), Some(l)) => bytes.push((h * 16 + l) as u8),
                    _ => return Err(ParseError::BadEscape),
                }
                i += 2;
            }
            b => bytes.push(b),
        }
        i += 1;
    }
    String::from_utf8(bytes).map_err(|_| ParseError::NotUtf8)
}

/// A JSON object: strings as they are, numbers and booleans as their JSON text, `null`
/// ignored; a nested array or object is an error.
pub fn parse_json(body: &[u8]) -> Result<Params, ParseError> {
    struct Pairs(Vec<(String, Box<RawValue>)>);
    struct PairsVisitor;
    impl<'de> Visitor<'de> for PairsVisitor {
        type Value = Pairs;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Pairs, A::Error> {
            let mut v = Vec::new();
            while let Some(entry) = map.next_entry::<String, Box<RawValue>>()? {
                v.push(entry);
            }
            Ok(Pairs(v))
        }
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let pairs = de
        .deserialize_map(PairsVisitor)
        .and_then(|p| de.end().map(|_| p))
        .map_err(|e| ParseError::NotAnObject(e.to_string()))?;
    let mut out = Vec::with_capacity(pairs.0.len());
    for (k, raw) in pairs.0 {
        let text = raw.get();
        match text.as_bytes().first() {
            Some(b'"') => {
                let s: String = serde_json::from_str(text)
                    .map_err(|e| ParseError::NotAnObject(e.to_string()))?;
                out.push((k, s));
            }
            Some(b'n') => {}
            Some(b'[') | Some(b'{') => {
                return Err(ParseError::Nested(k));
            }
            _ => out.push((k, text.to_owned())),
        }
    }
    Ok(Params(out))
}

/// What a known Twilio parameter's value must look like.
#[derive(Clone, Copy)]
enum Shape {
    /// An id: this prefix, then letters, digits or `-`, at most 64 in all, holding no
    /// other parameter's name (what a shifted name/value boundary looks like).
    Sid(&'static str),
    /// One of these words.
    OneOf(&'static [&'static str]),
    /// A count: decimal digits only.
    Digits,
    /// A time Twilio writes (RFC 2822, or RFC 3339).
    Time,
    /// `YYYY-MM-DD`.
    Date,
    /// Lower-case words joined by `-`.
    Word,
}

const CALL_STATUSES: &[&str] = &[
    "queued",
    "initiated",
    "ringing",
    "in-progress",
    "answered",
    "completed",
    "busy",
    "no-answer",
    "failed",
    "canceled",
    "cancelled",
];

/// Twilio's parameters whose values calltrackd relies on, and their shapes.
const KNOWN: &[(&str, Shape)] = &[
    ("CallSid", Shape::Sid("CA")),
    ("ParentCallSid", Shape::Sid("CA")),
    ("AccountSid", Shape::Sid("AC")),
    ("CallStatus", Shape::OneOf(CALL_STATUSES)),
    ("DialCallStatus", Shape::OneOf(CALL_STATUSES)),
    (
        "Direction",
        Shape::OneOf(&[
            "inbound",
            "outbound-api",
            "outbound-dial",
            "trunking-terminating",
            "trunking-originating",
        ]),
    ),
    ("CallDuration", Shape::Digits),
    ("DialCallDuration", Shape::Digits),
    ("Duration", Shape::Digits),
    ("RecordingDuration", Shape::Digits),
    ("SequenceNumber", Shape::Digits),
    ("Timestamp", Shape::Time),
    ("ApiVersion", Shape::Date),
    ("CallbackSource", Shape::Word),
];

fn fits(shape: Shape, v: &str) -> bool {
    match shape {
        Shape::Sid(prefix) => {
            v.len() <= 64
                && v.strip_prefix(prefix).is_some_and(|rest| {
                    !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                })
                && !KNOWN.iter().any(|(name, _)| v.contains(name))
        }
        Shape::OneOf(words) => words.contains(&v),
        Shape::Digits => (1..=10).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_digit()),
        Shape::Time => parse_timestamp(v).is_some(),
        Shape::Date => {
            v.len() == 10
                && v.bytes().enumerate().all(|(i, b)| {
                    if i == 4 || i == 7 {
                        b == b'-'
                    } else {
                        b.is_ascii_digit()
                    }
                })
        }
        Shape::Word => {
            (1..=64).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
        }
    }
}

/// Checks the values of Twilio's known parameters: an empty value counts as absent,
/// anything else must have its parameter's shape, and a known parameter must not come
/// twice with different values. Unknown parameters pass as they are (Twilio adds new
/// ones). A signature covers the concatenation of names and values, so moving the
/// boundary between a name and its value keeps a captured signature valid; the shapes
/// make such a shifted request fail here instead of becoming a new event.
pub fn check_known(p: &Params) -> Result<(), ParseError> {
    for (name, shape) in KNOWN {
        let mut seen: Option<&str> = None;
        for (k, v) in &p.0 {
            if k != name || v.is_empty() {
                continue;
            }
            if seen.is_some_and(|s| s != v) {
                return Err(ParseError::Repeated(name));
            }
            seen = Some(v);
            if !fits(*shape, v) {
                return Err(ParseError::Malformed(name));
            }
        }
    }
    Ok(())
}

/// Which request this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// "A call comes in": wants TwiML.
    Incoming,
    /// A call status callback.
    Status,
    /// The `<Dial action>` callback after the forwarded leg ends.
    DialAction,
    /// The shop's leg asking what to play when it picks up (`<Number url>`: whisper,
    /// keypress), or the key it pressed (`<Gather>` posts back to the same URL).
    Screen,
    /// The answering-machine detection result on the shop's leg (`AnsweredBy`).
    Amd,
    /// The call recording's status callback (`RecordingUrl`).
    Recording,
    /// The voicemail's `<Record>` action or recording status callback.
    Voicemail,
    /// A call resource from Twilio's Calls API (`backfill`, reconcile): a call, or its
    /// final status, that no webhook brought.
    Backfill,
}

impl Kind {
    /// Name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Incoming => "incoming",
            Kind::Status => "status",
            Kind::DialAction => "dial_action",
            Kind::Screen => "screen",
            Kind::Amd => "amd",
            Kind::Recording => "recording",
            Kind::Voicemail => "voicemail",
            Kind::Backfill => "backfill",
        }
    }

    /// From its stored name.
    pub fn from_name(s: &str) -> Kind {
        match s {
            "status" => Kind::Status,
            "dial_action" => Kind::DialAction,
            "screen" => Kind::Screen,
            "amd" => Kind::Amd,
            "recording" => Kind::Recording,
            "voicemail" => Kind::Voicemail,
            "backfill" => Kind::Backfill,
            _ => Kind::Incoming,
        }
    }

    /// A request from the call flow calltrackd set up (its URL names the step).
    pub fn is_step(self) -> bool {
        matches!(
            self,
            Kind::Screen | Kind::Amd | Kind::Recording | Kind::Voicemail
        )
    }

    /// The `step` a URL of ours names: `?step=...&call=<parent CallSid>`.
    fn step(name: &str) -> Option<Kind> {
        match name {
            "screen" => Some(Kind::Screen),
            "amd" => Some(Kind::Amd),
            "recording" => Some(Kind::Recording),
            "voicemail" => Some(Kind::Voicemail),
            _ => None,
        }
    }
}

/// The call-flow step a request's URL names, and the parent call it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Which step.
    pub kind: Kind,
    /// `call=`: the parent call's `CallSid`, as calltrackd wrote it into the URL.
    pub parent: Option<String>,
    /// `number=`: the tracking number (screen URLs).
    pub number: Option<String>,
}

/// Reads `step` and `call` from a request's query. `Ok(None)`: not a step URL (no
/// `step`); an unknown step or a malformed `call` is an error (400).
pub fn step_of(path_and_query: &str) -> Result<Option<Step>, ParseError> {
    let Some((_, query)) = path_and_query.split_once('?') else {
        return Ok(None);
    };
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query).map_err(|_| ParseError::Malformed("step"))?;
    let Some((_, name)) = pairs.iter().find(|(k, _)| k == "step") else {
        return Ok(None);
    };
    let kind = Kind::step(name).ok_or(ParseError::Malformed("step"))?;
    let parent = pairs
        .iter()
        .find(|(k, _)| k == "call")
        .map(|(_, v)| v.clone());
    if parent
        .as_deref()
        .is_some_and(|v| !fits(Shape::Sid("CA"), v))
    {
        return Err(ParseError::Malformed("call"));
    }
    let number = pairs
        .iter()
        .find(|(k, _)| k == "number")
        .map(|(_, v)| v.clone());
    if number
        .as_deref()
        .is_some_and(|v| !crate::config::is_e164(v))
    {
        return Err(ParseError::Malformed("number"));
    }
    Ok(Some(Step {
        kind,
        parent,
        number,
    }))
}

/// Whether a `Direction` means the call was placed from the tracking number.
pub fn is_outbound_direction(direction: &str) -> bool {
    direction.starts_with("outbound")
}

/// Whether a `CallStatus` is final (the call is over).
pub fn is_final_status(s: &str) -> bool {
    matches!(
        s,
        "completed" | "busy" | "no-answer" | "failed" | "canceled" | "cancelled"
    )
}

/// Tells the request kinds apart as the contract says; a request to one of the call
/// flow's own URLs is what its `step` names, whatever its parameters.
pub fn classify(p: &Params, step: Option<&Step>) -> Kind {
    if let Some(s) = step {
        s.kind
    } else if p.get("DialCallStatus").is_some() {
        Kind::DialAction
    } else if p.get("CallbackSource").is_some() || p.get("CallStatus").is_some_and(is_final_status)
    {
        Kind::Status
    } else {
        Kind::Incoming
    }
}

/// Parses Twilio's RFC 2822 `Timestamp` (RFC 3339 also accepted) to Unix seconds.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc2822(s.trim())
        .or_else(|_| chrono::DateTime::parse_from_rfc3339(s.trim()))
        .ok()
        .map(|t| t.timestamp())
}

fn parse_count(s: Option<&str>) -> Option<i64> {
    s.and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|n| *n >= 0)
}

/// The facts about one request that the call rules use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// `CallSid`.
    pub call_sid: String,
    /// `Direction` (empty when absent).
    pub direction: String,
    /// `From`.
    pub from: String,
    /// `To`.
    pub to: String,
    /// `CallStatus`.
    pub call_status: Option<String>,
    /// `SequenceNumber`.
    pub sequence_number: Option<i64>,
    /// `Timestamp` as Unix seconds.
    pub timestamp: Option<i64>,
    /// `CallDuration` (seconds).
    pub call_duration: Option<i64>,
    /// `DialCallStatus`.
    pub dial_call_status: Option<String>,
    /// `DialCallDuration` (seconds).
    pub dial_call_duration: Option<i64>,
    /// `CallerName`.
    pub caller_name: String,
    /// `FromCity`.
    pub from_city: String,
    /// `FromState`.
    pub from_state: String,
    /// `ToCity`.
    pub to_city: String,
    /// `ToState`.
    pub to_state: String,
    /// `DialBridged`: whether the caller was connected to the dialed leg.
    pub dial_bridged: Option<bool>,
    /// `AnsweredBy` (answering-machine detection).
    pub answered_by: Option<String>,
    /// `Digits` (a key pressed).
    pub digits: Option<String>,
    /// `RecordingUrl`.
    pub recording_url: Option<String>,
    /// `RecordingDuration` (seconds).
    pub recording_duration: Option<i64>,
    /// When the call started (Unix seconds): only the Calls API says so (`start_time`).
    pub start_time: Option<i64>,
}

impl Facts {
    /// Pulls the facts out of the parameters. `None` without a non-empty `CallSid`.
    pub fn from_params(p: &Params) -> Option<Facts> {
        let s = |n: &str| p.get(n).unwrap_or("").to_owned();
        let o = |n: &str| p.get_nonempty(n).map(str::to_owned);
        Some(Facts {
            call_sid: p.get_nonempty("CallSid")?.to_owned(),
            direction: s("Direction"),
            from: s("From"),
            to: s("To"),
            call_status: o("CallStatus"),
            sequence_number: parse_count(p.get("SequenceNumber")),
            timestamp: p.get("Timestamp").and_then(parse_timestamp),
            call_duration: parse_count(p.get("CallDuration")),
            dial_call_status: o("DialCallStatus"),
            dial_call_duration: parse_count(p.get("DialCallDuration")),
            caller_name: s("CallerName"),
            from_city: s("FromCity"),
            from_state: s("FromState"),
            to_city: s("ToCity"),
            to_state: s("ToState"),
            dial_bridged: p.get_nonempty("DialBridged").map(|v| v == "true"),
            answered_by: o("AnsweredBy"),
            digits: o("Digits"),
            recording_url: o("RecordingUrl"),
            recording_duration: parse_count(p.get("RecordingDuration")),
            start_time: None,
        })
    }

    /// The facts of a call-flow step: they belong to the parent call (named in our URL,
    /// else `ParentCallSid`, else the request's own `CallSid`).
    pub fn for_step(mut self, p: &Params, step: &Step) -> Facts {
        if let Some(parent) = step
            .parent
            .clone()
            .or_else(|| p.get_nonempty("ParentCallSid").map(str::to_owned))
        {
            self.call_sid = parent;
        }
        self
    }

    /// An `outbound-dial` request is a leg of our own `<Dial>`, not a tracked call.
    pub fn is_child_leg(&self) -> bool {
        self.direction == "outbound-dial"
    }

    /// Whether the call was placed from the tracking number (`outbound-api` etc.).
    pub fn is_outbound(&self) -> bool {
        is_outbound_direction(&self.direction)
    }

    /// The tracking number: `To` inbound, `From` outbound.
    pub fn tracking_number(&self) -> &str {
        if self.is_outbound() {
            &self.from
        } else {
            &self.to
        }
    }
}

/// What we answered a request with (stored with the event: it decides "forwarded",
/// "blocked", and which voicemail guard the call had).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// `<Dial>` to the number's `forward_to` (or `after_hours_forward_to`).
    Dial,
    /// `<Dial>` with the keypress guard.
    DialKeypress,
    /// `<Dial>` with answering-machine detection.
    DialAmd,
    /// `<Response/>` to an incoming call: Twilio hangs up.
    Hangup,
    /// `<Reject>`: the caller is on the block list.
    Reject,
    /// Closed: the closed message (if any), then hang up.
    Closed,
    /// The voicemail greeting and `<Record>`.
    Voicemail,
    /// What the shop's leg hears: whisper, keypress prompt.
    Screen,
    /// `<Response/>` to a callback.
    Ack,
}

impl Answer {
    /// Name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Answer::Dial => "dial",
            Answer::DialKeypress => "dial_keypress",
            Answer::DialAmd => "dial_amd",
            Answer::Hangup => "hangup",
            Answer::Reject => "reject",
            Answer::Closed => "closed",
            Answer::Voicemail => "voicemail",
            Answer::Screen => "screen",
            Answer::Ack => "ack",
        }
    }

    /// From its stored name.
    pub fn from_name(s: &str) -> Answer {
        match s {
            "dial" => Answer::Dial,
            "dial_keypress" => Answer::DialKeypress,
            "dial_amd" => Answer::DialAmd,
            "hangup" => Answer::Hangup,
            "reject" => Answer::Reject,
            "closed" => Answer::Closed,
            "voicemail" => Answer::Voicemail,
            "screen" => Answer::Screen,
            _ => Answer::Ack,
        }
    }
}

#[cfg(test)]
mod tests;
