/*!
HTTP routing: which path does what, and the order of checks on the webhook. This is
where a callback is verified.

Webhook checks run in the contract's order: path (404), method (405), size (413),
content type (415), syntax (400), signature (403), then `CallSid` (400). Only a verified
request reaches storage, and its `200` (with TwiML) goes out only after the writer has
committed it.
*/

use std::sync::{Arc, RwLock};

use crate::config::{Rules, Secret};
use crate::export;
use crate::http::{BodyError, Method, Request, Response};
use crate::metrics::{Metrics, Outcome as MetricOutcome};
use crate::signature::{self, Signed};
use crate::storage::{NewEvent, Outcome, Store, now_ms};
use crate::twilio::{self, Answer, BodyType, EMPTY_TWIML, Facts, Kind};

/// The webhook path Twilio posts to.
pub const WEBHOOK_PATH: &str = "/call-tracking/webhook";

/// Everything a request handler needs.
pub struct App {
    /// `[server] public_url`, verbatim.
    pub public_url: Option<String>,
    /// `[server] max_body_bytes`.
    pub max_body_bytes: u64,
    /// Auth tokens accepted for signatures.
    pub auth_tokens: Vec<Secret>,
    /// Numbers and qualification (swapped on SIGHUP).
    pub rules: Arc<RwLock<Arc<Rules>>>,
    /// The writer.
    pub store: Store,
    /// Export settings (HTTP export is off without a token).
    pub export: export::Settings,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
}

impl App {
    fn rules(&self) -> Arc<Rules> {
        match self.rules.read() {
            Ok(r) => Arc::clone(&r),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }
}

fn method_not_allowed(allow: &str) -> Response {
    Response::text(405, "method not allowed\n").with_header("Allow", allow)
}

/// The main listener's router.
pub fn handle(app: &App, req: &mut Request) -> Response {
    let started = std::time::Instant::now();
    let path = req.path().to_owned();
    let response = match path.as_str() {
        WEBHOOK_PATH => match req.method() {
            Method::Post => {
                let r = webhook(app, req);
                app.metrics.observe_webhook_latency(started.elapsed());
                r
            }
            _ => method_not_allowed("POST"),
        },
        "/healthz" => match req.method() {
            Method::Get | Method::Head => healthz(app),
            _ => method_not_allowed("GET, HEAD"),
        },
        "/calls.csv" | "/calls.xlsx" => match req.method() {
            Method::Get | Method::Head => export::http_export(&app.export, req),
            _ => method_not_allowed("GET, HEAD"),
        },
        _ => Response::text(404, "not found\n"),
    };
    app.metrics.count_response(response.status);
    response
}

fn healthz(app: &App) -> Response {
    match app.store.health() {
        Ok(()) => Response::text(200, "ok\n"),
        Err(e) => {
            log::warn!("health check failed: {e}");
            Response::text(503, "database unavailable\n")
        }
    }
}

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

fn webhook(app: &App, req: &mut Request) -> Response {
    let received_ms = now_ms();
    // Size before anything is read.
    if req
        .content_length()
        .is_some_and(|n| n as u64 > app.max_body_bytes)
    {
        log::warn!(
            "webhook: body of {} bytes is over max_body_bytes ({}): 413",
            req.content_length().unwrap_or(0),
            app.max_body_bytes
        );
        return reject(
            app,
            413,
            MetricOutcome::BadRequest,
            "request body too large",
        )
        .with_header("Connection", "close");
    }
    let content_type = req.header("Content-Type").unwrap_or("").to_owned();
    let Some(body_type) = BodyType::from_content_type(Some(&content_type)) else {
        log::warn!("webhook: unsupported Content-Type {content_type:?}: 415");
        return reject(
            app,
            415,
            MetricOutcome::BadRequest,
            "unsupported Content-Type: send application/x-www-form-urlencoded or application/json",
        );
    };
    let body = match req.read_body(app.max_body_bytes) {
        Ok(b) => b,
        Err(BodyError::TooLarge) => {
            log::warn!(
                "webhook: body over max_body_bytes ({}): 413",
                app.max_body_bytes
            );
            return reject(
                app,
                413,
                MetricOutcome::BadRequest,
                "request body too large",
            )
            .with_header("Connection", "close");
        }
        Err(BodyError::Io(e)) => {
            log::warn!("webhook: could not read the request body ({e}): 400");
            return reject(
                app,
                400,
                MetricOutcome::BadRequest,
                "could not read the request body",
            );
        }
    };
    let params = match twilio::parse_body(body_type, &body) {
        Ok(p) => p,
        Err(why) => {
            log::warn!("webhook: unparseable body: {why}: 400");
            return reject(
                app,
                400,
                MetricOutcome::BadRequest,
                &format!("unparseable body: {why}"),
            );
        }
    };

    let Some(url) = signed_url(app, req) else {
        log::warn!(
            "webhook: no Host header and no [server] public_url, so the signature cannot be checked: 403"
        );
        return reject(app, 403, MetricOutcome::BadSignature, "invalid signature");
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
        log::warn!(
            "webhook: rejected ({why}) for URL {url} (also tried with/without the port); if Twilio calls a different URL, set [server] public_url to match it: 403"
        );
        return reject(app, 403, MetricOutcome::BadSignature, "invalid signature");
    }

    let Some(facts) = Facts::from_params(&params) else {
        log::warn!("webhook: signed request without CallSid: 400");
        return reject(app, 400, MetricOutcome::BadRequest, "missing CallSid");
    };

    let kind = twilio::classify(&params);
    let rules = app.rules();
    let (answer, twiml) = match kind {
        Kind::Incoming if !facts.is_child_leg() => {
            let tracking = facts.tracking_number();
            match rules
                .number(tracking)
                .and_then(|n| n.forward_to.as_ref().map(|f| (n, f)))
            {
                Some((n, forward_to)) => {
                    let action = match &app.public_url {
                        Some(base) => format!("{base}{WEBHOOK_PATH}"),
                        // Resolved by Twilio against the request URL: the same path.
                        None => "webhook".to_owned(),
                    };
                    (
                        Answer::Dial,
                        twilio::dial_twiml(forward_to, n.ring_timeout_seconds, &action),
                    )
                }
                None => {
                    log::warn!(
                        "call {}: tracking number {} has no forward_to, so the caller is hung up on",
                        facts.call_sid,
                        if rules.number(tracking).is_some() {
                            "(configured)"
                        } else {
                            "(not in [[numbers]])"
                        }
                    );
                    (Answer::Hangup, EMPTY_TWIML.to_owned())
                }
            }
        }
        _ => (Answer::Ack, EMPTY_TWIML.to_owned()),
    };
    drop(rules);

    let call_sid = facts.call_sid.clone();
    let event = NewEvent {
        received_ms,
        kind,
        answer,
        facts,
        params,
        method: "POST".into(),
        path: req.url().to_owned(),
        content_type,
        body,
        idempotency_token: req.header("I-Twilio-Idempotency-Token").map(str::to_owned),
    };
    match app.store.submit(event) {
        Ok(outcome) => {
            let what = match kind {
                Kind::Incoming => "incoming call",
                Kind::Status => "status callback",
                Kind::DialAction => "dial action",
            };
            match &outcome {
                Outcome::Stored { call, new_call } => {
                    app.metrics.count_webhook(MetricOutcome::Stored);
                    if *new_call && call.user.is_empty() {
                        log::warn!(
                            "call {call_sid}: tracking number is not in [[numbers]]; recorded with an empty user"
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
                    app.metrics.count_webhook(MetricOutcome::Duplicate);
                    log::info!(
                        "stored {what} for call {call_sid}: a repeat of an earlier request, nothing changed"
                    );
                }
                Outcome::ChildLeg => {
                    app.metrics.count_webhook(MetricOutcome::Stored);
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
            log::error!("webhook: call {call_sid} not stored ({e}): 503, Twilio may retry");
            reject(
                app,
                503,
                MetricOutcome::StorageError,
                "storage unavailable, try again later",
            )
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
