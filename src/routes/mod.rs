/*!
All HTTP handling: which path does what (this file), the webhook and the order of its
checks (`webhook`: where a callback is verified), the export and its auth (`export`),
the owner's report page (`report_http`),
`/healthz` (`health`) and `/metrics` (`metrics`).

Webhook checks run in the contract's order: path (404), method (405), size (413),
content type (415), syntax (400), signature (403), then `CallSid` (400). Only a verified
request reaches storage, and its `200` (with TwiML) goes out only after the writer has
committed it.
*/

use std::sync::{Arc, RwLock};
use std::time::Instant;

use crate::config::{Rules, Secret};
use crate::export;
use crate::http::{Method, Reply, Request, Response};
use crate::metrics::Metrics;
use crate::storage::Store;

mod export_http;
mod health;
mod metrics;
mod report_http;
mod webhook;

pub use health::HEALTH_RESTART;
pub use metrics::metrics_route;

/// The webhook path Twilio posts to.
pub const WEBHOOK_PATH: &str = "/call-tracking/webhook";

/// Everything a request handler needs.
pub struct App {
    /// `[server] public_url`, verbatim.
    pub public_url: Option<String>,
    /// Where the call flow's TwiML sends Twilio back (built once from `public_url`).
    pub urls: crate::callflow::Urls,
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
    pub(crate) fn rules(&self) -> Arc<Rules> {
        match self.rules.read() {
            Ok(r) => Arc::clone(&r),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }
}

pub(crate) fn method_not_allowed(allow: &str) -> Response {
    Response::text(405, "method not allowed\n").with_header("Allow", allow)
}

/// Counts the status of an answer in `/metrics`, now or once it is made.
fn counted(app: &App, reply: Reply) -> Reply {
    let metrics = Arc::clone(&app.metrics);
    match reply {
        Reply::Now(r) => {
            metrics.count_response(r.status);
            Reply::Now(r)
        }
        Reply::Later(finish) => Reply::Later(Box::new(move || {
            let r = finish();
            metrics.count_response(r.status);
            r
        })),
    }
}

/// The main listener's router.
pub fn handle(app: &App, req: &mut Request) -> Reply {
    let started = Instant::now();
    let response = match req.path() {
        WEBHOOK_PATH => match req.method() {
            Method::Post => match webhook::webhook(app, req) {
                Ok(accepted) => return webhook::store_then_answer(app, accepted, started),
                Err(rejected) => {
                    app.metrics.observe_webhook_latency(started.elapsed());
                    rejected
                }
            },
            _ => method_not_allowed("POST"),
        },
        "/healthz" => match req.method() {
            Method::Get | Method::Head => health::healthz(app),
            _ => method_not_allowed("GET, HEAD"),
        },
        "/calls.csv" | "/calls.xlsx" => match req.method() {
            Method::Get | Method::Head => {
                return counted(app, export_http::http_export(&app.export, req));
            }
            _ => method_not_allowed("GET, HEAD"),
        },
        "/report" => match req.method() {
            Method::Get | Method::Head => {
                return counted(app, report_http::http_report(&app.export, req));
            }
            _ => method_not_allowed("GET, HEAD"),
        },
        _ => Response::text(404, "not found\n"),
    };
    app.metrics.count_response(response.status);
    Reply::Now(response)
}
