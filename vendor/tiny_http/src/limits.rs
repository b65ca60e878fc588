//! calltrackd patch: limits upstream tiny_http 0.12.0 does not have (see PATCHES.md).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Longest header line accepted (request line included), in bytes.
pub(crate) const MAX_HEADER_LINE: usize = 16 * 1024;
/// Most header lines accepted in one request.
pub(crate) const MAX_HEADERS: usize = 128;
/// Most unread body bytes drained when a request is dropped; beyond it the
/// connection is given up.
pub(crate) const DRAIN_LIMIT: usize = 64 * 1024;

static BUFFERED_BODY_LIMIT: AtomicUsize = AtomicUsize::new(1024);
static SOCKET_TIMEOUT_MS: AtomicU64 = AtomicU64::new(0);

/// Bodies up to this size (with a `Content-Length` and no `Expect`) are read completely
/// by the connection's own thread before the request is handed out, so a client that
/// stalls mid-body never occupies a thread that calls `recv()`. Upstream: 1024.
pub fn set_buffered_body_limit(bytes: usize) {
    BUFFERED_BODY_LIMIT.store(bytes, Ordering::Relaxed);
}

pub(crate) fn buffered_body_limit() -> usize {
    BUFFERED_BODY_LIMIT.load(Ordering::Relaxed)
}

/// Read and write timeout for accepted sockets (`None`: none, as upstream).
pub fn set_socket_timeout(timeout: Option<Duration>) {
    let ms = timeout.map(|t| t.as_millis().clamp(1, u64::MAX as u128) as u64).unwrap_or(0);
    SOCKET_TIMEOUT_MS.store(ms, Ordering::Relaxed);
}

pub(crate) fn socket_timeout() -> Option<Duration> {
    match SOCKET_TIMEOUT_MS.load(Ordering::Relaxed) {
        0 => None,
        ms => Some(Duration::from_millis(ms)),
    }
}
