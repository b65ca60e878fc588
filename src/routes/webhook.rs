//! `POST /call-tracking/webhook`: where a callback is verified, and answered only after
//! its durable commit.

use std::sync::Arc;
use std::sync::mpsc::sync_channel;
use std::time::{Duration, Instant};

use super::App;
use crate::clock::now_ms;
use crate::http::{BodyError, Reply, Request, Response};
use crate::logging::escaped;
use crate::metrics::{Metrics, Outcome as MetricOutcome};
use crate::signature::{self, Signed};
use crate::storage::{NewEvent, Outcome, StorageError, Trouble};
use crate::twilio::{self, Answer, BodyType, Facts, Kind};
use crate::{callflow, twiml};

/// How long a verified request waits for its commit before it is answered `503`.
const COMMIT_WAIT: Duration = Duration::from_secs(30);

fn reject(app: &App, status: u16, outcome: MetricOutcome, text: &str) -> Response {
    app.metrics.count_webhook(outcome);
    Response::text(status, format!("{text}\n"))
}

/// The URL Twilio signed: `public_url` + path and query as received, or without
/// `public_url`, `http://` + `Host` + path and query.
fn signed_url(app: &App, req: &Request) -> Option<String> {
    match &app.public_url {
        Some(base) => Some(format!("{base}{}", req.url())),
        None => req
            .header("Host")
            .map(|h| format!("http://{h}{}", req.url())),
    }
}

/// A verified request, ready to store, and what to answer once it is stored.
pub(super) struct Accepted {
    event: NewEvent,
    twiml: String,
}

/// Everything up to storage: size, type, syntax, signature, `CallSid`, the TwiML.
pub(super) fn webhook(app: &App, req: &mut Request) -> Result<Accepted, Response> {
    let received_ms = now_ms();
    let too_large = || {
        log::warn!(
            "webhook: body over max_body_bytes ({}): 413",
            app.max_body_bytes
        );
        reject(
            app,
            413,
            MetricOutcome::BadRequest,
            "request body too large",
        )
        .with_header("Connection", "close")
    };
    // The HTTP layer read the body unless its Content-Length was over the limit.
    if req.body().is_err() {
        return Err(too_large());
    }
    let content_type = req.header("Content-Type").unwrap_or("").to_owned();
    let Some(body_type) = BodyType::from_content_type(Some(&content_type)) else {
        log::warn!("webhook: unsupported Content-Type {content_type:?}: 415");
        return Err(reject(
            app,
            415,
            MetricOutcome::BadRequest,
            "unsupported Content-Type: send application/x-www-form-urlencoded or application/json",
        ));
    };
    let body = match req.take_body() {
        Ok(b) => b,
        Err(BodyError::TooLarge) => return Err(too_large()),
    };
    let params = match twilio::parse_body(body_type, &body) {
        Ok(p) => p,
        Err(why) => {
            log::warn!("webhook: unparseable body: {why}: 400");
            return Err(reject(
                app,
                400,
                MetricOutcome::BadRequest,
                &format!("unparseable body: {}", escaped(&why.to_string())),
            ));
        }
    };

    let Some(url) = signed_url(app, req) else {
        app.store.note_rejected(
            "(none: no Host header and no public_url)",
            "no URL to check",
        );
        log::warn!(
            "webhook: no Host header and no [server] public_url, so the signature cannot be checked: 403"
        );
        return Err(reject(
            app,
            403,
            MetricOutcome::BadSignature,
            "invalid signature",
        ));
    };
    let header = req.header("X-Twilio-Signature");
    let signed = match body_type {
        BodyType::Form => Signed::Form(&params.0),
        BodyType::Json => Signed::Json(&body),
    };
    if !signature::verify(&app.auth_tokens, &url, signed, header) {
        let why = match (header, body_type) {
            (None, _) => "no X-Twilio-Signature header",
            (Some(_), BodyType::Json) if !url.contains("bodySHA256=") => {
                "JSON body without bodySHA256 in the URL"
            }
            _ => "X-Twilio-Signature does not match",
        };
        app.store.note_rejected(&url, why);
        log::warn!(
            "webhook: rejected ({why}) for URL {url} (also tried with/without the port); if Twilio calls a different URL, set [server] public_url to match it: 403"
        );
        return Err(reject(
            app,
            403,
            MetricOutcome::BadSignature,
            "invalid signature",
        ));
    }

    if let Err(why) = twilio::check_known(&params) {
        log::warn!("webhook: signed request with {why}: 400");
        return Err(reject(
            app,
            400,
            MetricOutcome::BadRequest,
            &format!("bad request: {why}"),
        ));
    }
    let Some(facts) = Facts::from_params(&params) else {
        log::warn!("webhook: signed request without CallSid: 400");
        return Err(reject(
            app,
            400,
            MetricOutcome::BadRequest,
            "missing CallSid",
        ));
    };
    let step = match twilio::step_of(req.url()) {
        Ok(step) => step,
        Err(why) => {
            log::warn!("webhook: signed request whose URL has {why}: 400");
            return Err(reject(
                app,
                400,
                MetricOutcome::BadRequest,
                &format!("bad request: {why}"),
            ));
        }
    };
    let kind = twilio::classify(&params, step.as_ref());
    let facts = match &step {
        Some(st) => facts.for_step(&params, st),
        None => facts,
    };

    let rules = app.rules();
    let urls = &app.urls;
    let (answer, twiml) = match kind {
        Kind::Incoming if !facts.is_child_leg() => {
            let (answer, twiml) =
                callflow::incoming(&rules, &facts, received_ms.div_euclid(1000), urls);
            let tracking = facts.tracking_number();
            match answer {
                Answer::Hangup => log::warn!(
                    "call {}: tracking number {tracking} {}, so the caller is hung up on",
                    facts.call_sid,
                    if rules.number(tracking).is_some() {
                        "has no forward_to"
                    } else {
                        "is not in [[numbers]] (add it to give its calls a user and a forward_to)"
                    }
                ),
                Answer::Reject => log::info!(
                    "call {}: the caller is on the [block] list: rejected",
                    facts.call_sid
                ),
                Answer::Closed | Answer::Voicemail => log::info!(
                    "call {}: {tracking} is closed now (outside its hours): {}",
                    facts.call_sid,
                    if answer == Answer::Voicemail {
                        "voicemail"
                    } else {
                        "closed message"
                    }
                ),
                _ => {}
            }
            (answer, twiml)
        }
        Kind::DialAction => callflow::dial_action(&rules, &facts, urls),
        Kind::Screen => callflow::screen(
            &rules,
            &facts,
            step.as_ref().and_then(|s| s.number.as_deref()),
        ),
        _ => (Answer::Ack, twiml::EMPTY.to_owned()),
    };

    let event = NewEvent {
        received_ms,
        kind,
        answer,
        facts,
        content_sha256: params.content_hash(req.url()),
        method: "POST".into(),
        path: req.url().to_owned(),
        content_type,
        body,
        idempotency_token: req.header("I-Twilio-Idempotency-Token").map(str::to_owned),
        // The row is decided with the rules the TwiML was: one snapshot per request.
        rules,
    };
    Ok(Accepted { event, twiml })
}

/// Hands a verified request to the writer; the `200` (with TwiML) is written only after
/// the commit, by the connection's thread, outside the `workers` bound.
pub(super) fn store_then_answer(app: &App, accepted: Accepted, started: Instant) -> Reply {
    let metrics = Arc::clone(&app.metrics);
    let kind = accepted.event.kind;
    let call_sid = accepted.event.facts.call_sid.clone();
    let twiml = accepted.twiml;
    let (tx, rx) = sync_channel(1);
    app.store.submit_async(
        accepted.event,
        Box::new(move |result| {
            let _ = tx.send(result);
        }),
    );
    Reply::Later(Box::new(move || {
        let result = rx
            .recv_timeout(COMMIT_WAIT)
            .unwrap_or_else(|_| Err(StorageError::WriterStuck(COMMIT_WAIT.as_secs())));
        let response = answer_stored(&metrics, kind, &call_sid, twiml, result);
        metrics.count_response(response.status);
        metrics.observe_webhook_latency(started.elapsed());
        response
    }))
}

/// The answer to a verified request once storage is done with it; one log line each.
fn answer_stored(
    metrics: &Metrics,
    kind: Kind,
    call_sid: &str,
    twiml: String,
    result: Result<Outcome, StorageError>,
) -> Response {
    let what = match kind {
        Kind::Incoming => "incoming call",
        Kind::Status => "status callback",
        Kind::DialAction => "dial action",
        Kind::Screen => "screen (whisper/keypress) request",
        Kind::Amd => "answering-machine result",
        Kind::Recording => "recording callback",
        Kind::Voicemail => "voicemail",
        Kind::Backfill => "backfilled call",
    };
    match result {
        Ok(outcome) => {
            match &outcome {
                Outcome::Stored { call, new_call } => {
                    metrics.count_webhook(MetricOutcome::Stored);
                    if *new_call && call.user.is_empty() {
                        log::warn!(
                            "call {call_sid}: tracking number {} is not in [[numbers]]; recorded with an empty user (add the number to config and reload)",
                            call.tracking_number
                        );
                    }
                    log::info!(
                        "stored {what} for call {call_sid}: user {:?}, status {}, answered {}, qualified {}",
                        call.user,
                        if call.status.is_empty() {
                            "-"
                        } else {
                            &call.status
                        },
                        tri(call.answered),
                        tri(call.qualified)
                    );
                }
                Outcome::Duplicate => {
                    metrics.count_webhook(MetricOutcome::Duplicate);
                    log::info!(
                        "stored {what} for call {call_sid}: a repeat of an earlier request, nothing changed"
                    );
                }
                Outcome::ChildLeg => {
                    metrics.count_webhook(MetricOutcome::Stored);
                    log::info!(
                        "stored {what} for call {call_sid}: an outbound-dial leg, kept as an event only"
                    );
                }
            }
            Response {
                status: 200,
                headers: vec![("Content-Type".into(), "text/xml".into())],
                body: crate::http::Body::Bytes(twiml.into_bytes()),
            }
        }
        Err(e) => {
            let why = match e.trouble() {
                Some(Trouble::Full) => "the disk is full",
                Some(Trouble::ReadOnly) => "the database is read-only",
                Some(Trouble::Locked) => "another process holds the database locked",
                None => "storage failed",
            };
            log::error!("webhook: call {call_sid} not stored, {why} ({e}): 503, Twilio may retry");
            metrics.count_webhook(MetricOutcome::StorageError);
            Response::text(503, "storage unavailable, try again later\n")
                .with_header("Retry-After", "5")
        }
    }
}

fn tri(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "yes",
        Some(false) => "no",
        None => "not yet known",
    }
}
