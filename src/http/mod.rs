/*!
The HTTP layer: a small HTTP/1.1 server built for a daemon that faces hostile clients.
No other module reads or writes a socket.

How a connection is served ([`conn`]): each accepted connection has its own thread, which
reads one request (head, then body) within fixed time and size limits, runs the handler,
writes the answer, and only then reads the next request. So:

- a connection has at most one request in progress: pipelined bytes wait in the kernel,
  never in memory, and no answer waits behind another connection's answer;
- answers are written by the connection's own thread with a write timeout, so a client
  that never reads blocks nobody but itself and is dropped after [`Limits::write_timeout`];
- a body is read completely (by `Content-Length`, at most `max_body_bytes`) before the
  handler sees the request, within [`Limits::request_time`] of the request's first byte:
  a client that trickles bytes holds only its own connection, and only for that long;
  `Transfer-Encoding` (chunked bodies) is answered `411`, `Expect: 100-continue` gets its
  `100 Continue` only for a body within the limit;
- the request head is bounded ([`Limits::max_head`], `431` beyond it), a bare LF in it is
  a `400`, an HTTP version other than 1.0/1.1 a `505`;
- idle keep-alive connections are closed after [`Limits::idle`].

The listener ([`server`]) bounds open connections to [`Limits::max_connections`]: at the
limit, a new connection takes the place of the connection that has waited longest
without a request being handled (an idle or trickling one, or one whose answer has
been stuck for 2 s behind a client that does not read), so a flood of connections
cannot keep a real callback out. Each connection's kernel send buffer is fixed at
256 KiB, so a client that stops reading blocks our writes soon, not after megabytes. Errors from `accept()` (out of file
descriptors or memory) are logged and retried with a backoff; they never stop the
listener.

Handlers are plain functions of a complete [`Request`]. At most `workers` run at once
(their CPU work: parsing, verifying, routing); what a handler leaves for later
([`Reply::Later`], e.g. waiting for the durable commit, or building a workbook) runs in
the connection's thread outside that bound, so slow work never holds up quick work. A
panic in a handler becomes a `500` and the connection thread lives on.
*/

mod conn;
mod server;

use std::io::Read;
use std::time::Duration;

pub use server::{Running, Server, ServerError, Stats};

/// Size and time limits of one listener.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body read (`[server] max_body_bytes`); larger ones get `413`.
    pub max_body: u64,
    /// Largest request head (request line and headers); larger ones get `431`.
    pub max_head: usize,
    /// Most connections open at once (`[server] max_connections`).
    pub max_connections: usize,
    /// Handlers running at once (`[server] workers`).
    pub workers: usize,
    /// How long a connection may wait for the first byte of a request.
    pub idle: Duration,
    /// How long a request may take to arrive completely, from its first byte.
    pub request_time: Duration,
    /// How long one write to a client may block before the connection is dropped.
    pub write_timeout: Duration,
    /// On stop, how long requests in flight get to finish before their connections are
    /// cut.
    pub drain: Duration,
}

impl Limits {
    /// The defaults around the two configurable sizes.
    pub fn new(max_body: u64, max_connections: usize, workers: usize) -> Limits {
        Limits {
            max_body,
            max_head: 16 * 1024,
            max_connections,
            workers,
            idle: Duration::from_secs(5),
            request_time: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            drain: Duration::from_secs(10),
        }
    }
}

/// HTTP methods the routes care about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// GET
    Get,
    /// HEAD
    Head,
    /// POST
    Post,
    /// Anything else.
    Other(String),
}

impl Method {
    fn parse(s: &str) -> Method {
        match s {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            other => Method::Other(other.to_owned()),
        }
    }

    /// The method's name.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Other(s) => s,
        }
    }
}

/// Why a request's body is not there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// Its `Content-Length` is over the limit: it was not read.
    TooLarge,
}

/// A complete request: head and body.
#[derive(Debug)]
pub struct Request {
    method: Method,
    url: String,
    headers: Vec<(String, String)>,
    body: Result<Vec<u8>, BodyError>,
}

impl Request {
    /// A request as the connection read it (also for unit tests of handlers).
    pub fn new(
        method: &str,
        url: &str,
        headers: Vec<(String, String)>,
        body: Result<Vec<u8>, BodyError>,
    ) -> Request {
        Request {
            method: Method::parse(method),
            url: url.to_owned(),
            headers,
            body,
        }
    }

    /// The method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// Path and query exactly as received (never decoded).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The path (before `?`).
    pub fn path(&self) -> &str {
        self.url.split('?').next().unwrap_or("")
    }

    /// The raw query (after `?`), if any.
    pub fn query(&self) -> Option<&str> {
        self.url.split_once('?').map(|(_, q)| q)
    }

    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body, read completely (at most the listener's `max_body`).
    pub fn body(&self) -> Result<&[u8], BodyError> {
        self.body.as_deref().map_err(|e| *e)
    }

    /// Takes the body out of the request.
    pub fn take_body(&mut self) -> Result<Vec<u8>, BodyError> {
        std::mem::replace(&mut self.body, Ok(Vec::new()))
    }
}

/// A response body.
pub enum Body {
    /// Bytes known up front.
    Bytes(Vec<u8>),
    /// A stream (sent chunked), for exports.
    Stream(Box<dyn Read + Send>),
}

/// A response.
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers besides `Content-Length`/`Transfer-Encoding`/`Connection`.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Body,
}

impl Response {
    /// A response with a plain-text body.
    pub fn text(status: u16, text: impl Into<String>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".into(), "text/plain; charset=utf-8".into())],
            body: Body::Bytes(text.into().into_bytes()),
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What a handler gives back.
pub enum Reply {
    /// The answer.
    Now(Response),
    /// Work that finishes the answer in the connection's thread, outside the `workers`
    /// bound: waiting for a durable commit, building a file to download.
    Later(Box<dyn FnOnce() -> Response + Send>),
}

/// The request handler: a plain function of a complete request.
pub type Handler = dyn Fn(&mut Request) -> Reply + Send + Sync;

/// Lowers the calling thread's CPU priority (nice 10), for work that must never hold up
/// webhooks: a download's connection thread calls it, and its answer closes the
/// connection, since an unprivileged thread cannot raise its priority back;
/// `calltrackd requalify` calls it for its one thread.
pub fn lower_priority() {
    // SAFETY: setpriority(2) on this thread's own id (Linux treats a thread id as a
    // process for PRIO_PROCESS); no memory is touched. std has no wrapper for it.
    #[allow(unsafe_code)]
    let r = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10)
    };
    if r != 0 {
        log::debug!(
            "cannot lower a download thread's priority: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// The reason phrase of a status code.
fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

#[cfg(test)]
mod tests;
