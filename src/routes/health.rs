//! `GET /healthz`: whether a webhook would be stored and answered now.

use super::App;
use crate::http::Response;
use crate::storage::Health;

/// `200 ok` only when a webhook would be stored and answered now. The answer goes the
/// way a webhook's does (listener, connection thread, writer queue), so getting one at
/// all proves those; the systemd watchdog reads the body of a `503`
/// ([`HEALTH_RESTART`]: restart me; else: wait, a restart would not help).
pub(super) fn healthz(app: &App) -> Response {
    match app.store.health() {
        Health::Ok => Response::text(200, "ok\n"),
        Health::Unavailable(e) => {
            log::warn!("health check failed: {e}");
            Response::text(503, "database unavailable\n")
        }
        Health::Broken(e) => {
            log::error!("health check failed, calltrackd needs a restart: {e}");
            Response::text(503, format!("{HEALTH_RESTART}\n"))
        }
    }
}

/// The body of a `503` from `/healthz` that only a restart can cure.
pub const HEALTH_RESTART: &str = "unhealthy: restart needed";
