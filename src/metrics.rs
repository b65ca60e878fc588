/*!
`GET /metrics` in the Prometheus text format, served on `metrics_listen` only.

A handful of atomic counters and fixed-bucket histograms; no metrics crate is needed
for that. Labels come from fixed sets (outcome, status code, true/false/unknown): never
a phone number, `CallSid` or any other per-call value. Call counts by answered and
qualified are read from the database at scrape time, so they survive restarts.
*/

use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::storage::{self, BatchObserver};

/// How a webhook request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Verified and committed.
    Stored,
    /// Verified; a repeat of an earlier request.
    Duplicate,
    /// Missing or wrong signature.
    BadSignature,
    /// Too large, wrong type, unparseable, no `CallSid`.
    BadRequest,
    /// Verified but not stored (503).
    StorageError,
}

const OUTCOMES: [(Outcome, &str); 5] = [
    (Outcome::Stored, "stored"),
    (Outcome::Duplicate, "duplicate"),
    (Outcome::BadSignature, "bad_signature"),
    (Outcome::BadRequest, "bad_request"),
    (Outcome::StorageError, "storage_error"),
];

const STATUS_CODES: [u16; 10] = [200, 400, 401, 403, 404, 405, 413, 415, 500, 503];

/// A histogram with fixed upper bounds.
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    count: AtomicU64,
    /// Sum in millionths, to stay in integers.
    sum_micros: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    fn observe(&self, v: f64) {
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            if v <= *b {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((v * 1e6).max(0.0) as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{b}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// The daemon's counters.
pub struct Metrics {
    webhooks: [AtomicU64; 5],
    /// One per status code, then "other".
    responses: [AtomicU64; 11],
    latency: Histogram,
    batch_size: Histogram,
    commit_seconds: Histogram,
    commit_failures: AtomicU64,
    reloads: AtomicU64,
    reload_failures: AtomicU64,
    /// Notification attempts by kind ([`NOTIFY_KINDS`]) and result ([`NOTIFY_RESULTS`]).
    notifications: [[AtomicU64; 3]; 4],
    http: std::sync::OnceLock<std::sync::Arc<crate::http::Stats>>,
}

/// The `kind` label values of `calltrackd_notifications_total`.
pub const NOTIFY_KINDS: [&str; 4] = ["webhook", "ntfy", "email", "sms"];
/// The `result` label values: delivered; failed and retried later; failed for good.
pub const NOTIFY_RESULTS: [&str; 3] = ["sent", "retry", "failed"];

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// All zero.
    pub fn new() -> Metrics {
        Metrics {
            webhooks: Default::default(),
            responses: Default::default(),
            latency: Histogram::new(&[
                0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
            ]),
            batch_size: Histogram::new(&[
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0,
            ]),
            commit_seconds: Histogram::new(&[
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0,
            ]),
            commit_failures: AtomicU64::new(0),
            reloads: AtomicU64::new(0),
            reload_failures: AtomicU64::new(0),
            notifications: Default::default(),
            http: std::sync::OnceLock::new(),
        }
    }

    /// Counts one notification attempt (`kind` and `result` from the fixed label sets).
    pub fn count_notification(&self, kind: &str, result: &str) {
        if let (Some(k), Some(r)) = (
            NOTIFY_KINDS.iter().position(|x| *x == kind),
            NOTIFY_RESULTS.iter().position(|x| *x == result),
        ) {
            self.notifications[k][r].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts one webhook request by outcome.
    pub fn count_webhook(&self, o: Outcome) {
        if let Some(i) = OUTCOMES.iter().position(|(x, _)| *x == o) {
            self.webhooks[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts one response on the main listener by status code (others as "other").
    pub fn count_response(&self, status: u16) {
        let i = STATUS_CODES.iter().position(|c| *c == status).unwrap_or(10);
        self.responses[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Time from receipt to answer of one webhook request.
    pub fn observe_webhook_latency(&self, d: Duration) {
        self.latency.observe(d.as_secs_f64());
    }

    /// The main listener's connection counters, shown from then on.
    pub fn set_http_stats(&self, stats: std::sync::Arc<crate::http::Stats>) {
        let _ = self.http.set(stats);
    }

    /// Counts a config reload.
    pub fn count_reload(&self, ok: bool) {
        if ok {
            self.reloads.fetch_add(1, Ordering::Relaxed);
        } else {
            self.reload_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The text exposition; call counts come from `db` when it can be read.
    pub fn render(&self, db: &Path) -> String {
        let mut out = String::with_capacity(4096);
        let _ = writeln!(
            out,
            "# HELP calltrackd_build_info Build information.\n# TYPE calltrackd_build_info gauge\ncalltrackd_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        let _ = writeln!(
            out,
            "# HELP calltrackd_notifications_total Notification attempts by kind and result (sent, retry: failed and tried again later, failed: given up).\n# TYPE calltrackd_notifications_total counter"
        );
        for (k, kind) in NOTIFY_KINDS.iter().enumerate() {
            for (r, result) in NOTIFY_RESULTS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "calltrackd_notifications_total{{kind=\"{kind}\",result=\"{result}\"}} {}",
                    self.notifications[k][r].load(Ordering::Relaxed)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP calltrackd_webhook_requests_total Webhook requests by outcome.\n# TYPE calltrackd_webhook_requests_total counter"
        );
        for (i, (_, name)) in OUTCOMES.iter().enumerate() {
            let _ = writeln!(
                out,
                "calltrackd_webhook_requests_total{{outcome=\"{name}\"}} {}",
                self.webhooks[i].load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP calltrackd_http_responses_total Responses on the main listener by status code.\n# TYPE calltrackd_http_responses_total counter"
        );
        for (i, code) in STATUS_CODES.iter().enumerate() {
            let _ = writeln!(
                out,
                "calltrackd_http_responses_total{{code=\"{code}\"}} {}",
                self.responses[i].load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "calltrackd_http_responses_total{{code=\"other\"}} {}",
            self.responses[10].load(Ordering::Relaxed)
        );
        self.latency.render(
            &mut out,
            "calltrackd_webhook_duration_seconds",
            "Time from receipt to answer of webhook requests (verification, parsing and the durable commit).",
        );
        self.batch_size.render(
            &mut out,
            "calltrackd_commit_batch_size",
            "Requests committed per database transaction (group commit).",
        );
        self.commit_seconds.render(
            &mut out,
            "calltrackd_commit_duration_seconds",
            "Time to apply and durably commit one batch.",
        );
        let _ = writeln!(
            out,
            "# HELP calltrackd_commit_failures_total Batches that failed to commit (every request in them got 503).\n# TYPE calltrackd_commit_failures_total counter\ncalltrackd_commit_failures_total {}",
            self.commit_failures.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP calltrackd_config_reloads_total SIGHUP reloads by result.\n# TYPE calltrackd_config_reloads_total counter\ncalltrackd_config_reloads_total{{result=\"ok\"}} {}\ncalltrackd_config_reloads_total{{result=\"refused\"}} {}",
            self.reloads.load(Ordering::Relaxed),
            self.reload_failures.load(Ordering::Relaxed)
        );
        if let Some(h) = self.http.get() {
            let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "# HELP calltrackd_http_connections Connections open on the main listener.\n# TYPE calltrackd_http_connections gauge\ncalltrackd_http_connections {}",
                get(&h.open)
            );
            let _ = writeln!(
                out,
                "# HELP calltrackd_http_connection_events_total Connection events on the main listener: accepted, closed to make room at max_connections (evicted), accept() failures retried (accept_error), requests or answers that ran out of time (timeout), requests refused by the HTTP layer (refused).\n# TYPE calltrackd_http_connection_events_total counter"
            );
            for (name, v) in [
                ("accepted", &h.accepted),
                ("evicted", &h.evicted),
                ("accept_error", &h.accept_errors),
                ("timeout", &h.timeouts),
                ("refused", &h.refused),
            ] {
                let _ = writeln!(
                    out,
                    "calltrackd_http_connection_events_total{{event=\"{name}\"}} {}",
                    get(v)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP calltrackd_wal_bytes Size of the database's write-ahead log file.\n# TYPE calltrackd_wal_bytes gauge\ncalltrackd_wal_bytes {}",
            storage::wal_size(db)
        );
        match call_counts(db) {
            Ok((rows, by_outcome)) => {
                let _ = writeln!(
                    out,
                    "# HELP calltrackd_calls Stored calls by answered and qualified.\n# TYPE calltrackd_calls gauge"
                );
                for (answered, qualified, n) in rows {
                    let _ = writeln!(
                        out,
                        "calltrackd_calls{{answered=\"{answered}\",qualified=\"{qualified}\"}} {n}"
                    );
                }
                let _ = writeln!(
                    out,
                    "# HELP calltrackd_calls_by_outcome Stored calls by outcome (pending: not final yet).\n# TYPE calltrackd_calls_by_outcome gauge"
                );
                for (outcome, n) in by_outcome {
                    let _ = writeln!(
                        out,
                        "calltrackd_calls_by_outcome{{outcome=\"{outcome}\"}} {n}"
                    );
                }
                let _ = writeln!(
                    out,
                    "# HELP calltrackd_database_up Whether the database could be read.\n# TYPE calltrackd_database_up gauge\ncalltrackd_database_up 1"
                );
            }
            Err(e) => {
                log::warn!("metrics: cannot read call counts: {e}");
                let _ = writeln!(
                    out,
                    "# HELP calltrackd_database_up Whether the database could be read.\n# TYPE calltrackd_database_up gauge\ncalltrackd_database_up 0"
                );
            }
        }
        out
    }
}

fn label(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "true",
        Some(false) => "false",
        None => "unknown",
    }
}

/// Calls by (answered, qualified), and by outcome (every outcome listed, `pending`
/// for calls not final yet).
type CallCounts = (
    Vec<(&'static str, &'static str, i64)>,
    Vec<(&'static str, i64)>,
);

fn call_counts(db: &Path) -> Result<CallCounts, storage::StorageError> {
    use crate::calls::CallOutcome;
    let conn = storage::open_calls_reader(db)?;
    let mut stmt = conn.prepare(
        "SELECT answered, qualified, outcome, count(*) FROM calls GROUP BY 1, 2, 3 ORDER BY 1, 2",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            label(r.get::<_, Option<bool>>(0)?),
            label(r.get::<_, Option<bool>>(1)?),
            r.get::<_, Option<CallOutcome>>(2)?,
            r.get::<_, i64>(3)?,
        ))
    })?;
    let mut by_flags: Vec<(&'static str, &'static str, i64)> = Vec::new();
    let mut by_outcome: Vec<(&'static str, i64)> = CallOutcome::ALL
        .iter()
        .map(|o| (o.as_str(), 0))
        .chain([(CallOutcome::label(None), 0)])
        .collect();
    for row in rows {
        let (a, q, o, n) = row?;
        match by_flags.last_mut() {
            Some(last) if last.0 == a && last.1 == q => last.2 += n,
            _ => by_flags.push((a, q, n)),
        }
        let name = CallOutcome::label(o);
        if let Some(slot) = by_outcome.iter_mut().find(|(k, _)| *k == name) {
            slot.1 += n;
        }
    }
    Ok((by_flags, by_outcome))
}

impl BatchObserver for Metrics {
    fn batch(&self, size: usize, elapsed: Duration, ok: bool) {
        self.batch_size.observe(size as f64);
        self.commit_seconds.observe(elapsed.as_secs_f64());
        if !ok {
            self.commit_failures.fetch_add(1, Ordering::Relaxed);
        }
    }
}
