//! `GET /metrics` on its own listener: Prometheus text, no per-call labels.

use std::path::Path;

use crate::http::{self, Response};
use crate::metrics::Metrics;

/// The metrics listener's router.
pub fn metrics_route(metrics: &Metrics, db: &Path, req: &http::Request) -> Response {
    match (req.path(), req.method()) {
        ("/metrics", http::Method::Get | http::Method::Head) => Response {
            status: 200,
            headers: vec![(
                "Content-Type".into(),
                "text/plain; version=0.0.4; charset=utf-8".into(),
            )],
            body: http::Body::Bytes(metrics.render(db).into_bytes()),
        },
        ("/metrics", _) => {
            Response::text(405, "method not allowed\n").with_header("Allow", "GET, HEAD")
        }
        _ => Response::text(404, "not found\n"),
    }
}
