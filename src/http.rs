/*!
The HTTP layer: the only module that knows tiny_http, so replacing it stays cheap.

A fixed pool of `workers` threads shares one tiny_http server (`recv()` from several
threads is supported). Each request goes to a plain handler `Fn(&mut Request) ->
Option<Response>`; a panic in it becomes a `500` and the worker lives on. A handler may
[`Request::defer`] its answer to another thread (the webhook answers after the durable
commit) and return `None`. Bodies up to the
configured limit are read by tiny_http's per-connection thread before a worker sees the
request (our patched copy, see `vendor/tiny_http/PATCHES.md`), so clients that stall
mid-request never occupy a worker; larger bodies are refused by their `Content-Length`
before a byte is read.

tiny_http stops accepting for good after any `accept()` error (for example when file
descriptors run out). The worker that receives that error reports it through
[`Server::run`]'s `on_fatal`, and the daemon exits non-zero so systemd restarts it rather
than leaving it alive and deaf.
*/

use std::io::{Cursor, Read};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// Read/write timeout for client sockets: frees the thread of a client that stalls.
pub const SOCKET_TIMEOUT: Duration = Duration::from_secs(30);

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

/// An incoming request. The body is read on demand, after routing.
pub struct Request {
    /// `None` once [`Request::defer`] handed the answer to someone else.
    inner: Option<tiny_http::Request>,
    method: Method,
    url: String,
}

/// The right to answer a request later, from any thread (after a durable commit).
/// Dropped without [`Responder::send`], the client gets an empty `500`.
pub struct Responder {
    inner: tiny_http::Request,
}

impl Responder {
    /// Sends the response.
    pub fn send(self, response: Response) {
        respond(self.inner, response);
    }
}

/// Why a body could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// More than the limit.
    TooLarge,
    /// The client went away or sent a broken body.
    Io(std::io::Error),
}

impl Request {
    fn new(inner: tiny_http::Request) -> Request {
        let method = match inner.method() {
            tiny_http::Method::Get => Method::Get,
            tiny_http::Method::Head => Method::Head,
            tiny_http::Method::Post => Method::Post,
            other => Method::Other(other.as_str().to_owned()),
        };
        let url = inner.url().to_owned();
        Request {
            inner: Some(inner),
            method,
            url,
        }
    }

    /// Takes the answer out of the handler: the handler then returns `None` and
    /// whoever holds the [`Responder`] answers. `None` if already taken.
    pub fn defer(&mut self) -> Option<Responder> {
        self.inner.take().map(|inner| Responder { inner })
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
        self.url().split('?').next().unwrap_or("")
    }

    /// The raw query (after `?`), if any.
    pub fn query(&self) -> Option<&str> {
        self.url().split_once('?').map(|(_, q)| q)
    }

    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.inner
            .as_ref()?
            .headers()
            .iter()
            .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    /// The declared `Content-Length`, if any.
    pub fn content_length(&self) -> Option<usize> {
        self.inner.as_ref()?.body_length()
    }

    /// Reads the whole body, refusing more than `limit` bytes (checked against the
    /// declared length first, then while reading chunked bodies).
    pub fn read_body(&mut self, limit: u64) -> Result<Vec<u8>, BodyError> {
        if let Some(len) = self.content_length()
            && len as u64 > limit
        {
            return Err(BodyError::TooLarge);
        }
        let mut body = Vec::with_capacity(self.content_length().unwrap_or(0));
        let Some(inner) = self.inner.as_mut() else {
            return Err(BodyError::Io(std::io::Error::other(
                "request already answered",
            )));
        };
        inner
            .as_reader()
            .take(limit + 1)
            .read_to_end(&mut body)
            .map_err(BodyError::Io)?;
        if body.len() as u64 > limit {
            return Err(BodyError::TooLarge);
        }
        Ok(body)
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
    /// Headers besides `Content-Length`/`Transfer-Encoding`.
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
}

/// Process-wide limits for every listener: bodies up to `max_body` bytes are read
/// completely before a worker sees the request, and client sockets time out after
/// [`SOCKET_TIMEOUT`]. Call once, before binding.
pub fn set_limits(max_body: u64) {
    tiny_http::set_buffered_body_limit(max_body.min(usize::MAX as u64) as usize);
    tiny_http::set_socket_timeout(Some(SOCKET_TIMEOUT));
}

/// The request handler the workers run: a response now, or `None` after
/// [`Request::defer`] (the answer comes later through the [`Responder`]).
pub type Handler = dyn Fn(&mut Request) -> Option<Response> + Send + Sync;

/// How long stopping workers wait for more requests before they exit: requests that
/// were already on their way (keep-alive connections) are still answered.
const DRAIN_QUIET: Duration = Duration::from_millis(200);

/// A bound listener, not yet serving.
pub struct Server {
    inner: Arc<tiny_http::Server>,
    /// A second handle on the listening socket, to stop accepting on shutdown.
    listener: TcpListener,
    addr: SocketAddr,
}

/// A running server: its workers, and how to stop them.
pub struct Running {
    inner: Arc<tiny_http::Server>,
    listener: TcpListener,
    stopping: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
}

impl Server {
    /// Binds `addr`.
    pub fn bind(addr: SocketAddr) -> Result<Server, String> {
        let listener =
            TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let ours = listener
            .try_clone()
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let inner = tiny_http::Server::from_listener(listener, None)
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        Ok(Server {
            inner: Arc::new(inner),
            listener: ours,
            addr,
        })
    }

    /// The address actually bound (the port when binding `:0`).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Starts `workers` threads running `handler`. `on_fatal` is called (once per
    /// failing worker) when the listener dies outside of a stop.
    pub fn run(
        self,
        name: &str,
        workers: usize,
        handler: Arc<Handler>,
        on_fatal: Arc<dyn Fn(String) + Send + Sync>,
    ) -> Result<Running, String> {
        let stopping = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::with_capacity(workers);
        for i in 0..workers {
            let server = Arc::clone(&self.inner);
            let handler = Arc::clone(&handler);
            let stopping = Arc::clone(&stopping);
            let on_fatal = Arc::clone(&on_fatal);
            let t = std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || worker(&server, &*handler, &stopping, &*on_fatal))
                .map_err(|e| format!("cannot start worker thread: {e}"))?;
            threads.push(t);
        }
        Ok(Running {
            inner: self.inner,
            listener: self.listener,
            stopping,
            workers: threads,
        })
    }
}

impl Running {
    /// Stops accepting new connections, lets the workers answer what is queued and
    /// what arrives on open connections until things are quiet, and waits for them.
    /// Answers handed to a [`Responder`] are the holder's to finish.
    pub fn stop(self) {
        self.stopping.store(true, Ordering::SeqCst);
        // SAFETY: shutdown(2) on a socket we own; the fd stays valid until dropped.
        // tiny_http's accept() then fails and its accept thread ends: no new
        // connections, while requests already queued are still served below.
        unsafe {
            libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RD);
        }
        for w in self.workers {
            let _ = w.join();
        }
        drop(self.inner);
    }
}

fn worker(
    server: &tiny_http::Server,
    handler: &Handler,
    stopping: &AtomicBool,
    on_fatal: &(dyn Fn(String) + Send + Sync),
) {
    loop {
        let stop = stopping.load(Ordering::SeqCst);
        // While serving, wake now and then to notice a stop; when stopping, leave once
        // no request has come for a little while.
        let wait = if stop {
            DRAIN_QUIET
        } else {
            Duration::from_millis(500)
        };
        match server.recv_timeout(wait) {
            Ok(Some(rq)) => serve_one(rq, handler, stop),
            Ok(None) if stop => return,
            Ok(None) => {}
            Err(e) => {
                if !stopping.load(Ordering::SeqCst) {
                    on_fatal(format!(
                        "the HTTP listener stopped accepting connections ({e})"
                    ));
                    return;
                }
            }
        }
    }
}

fn serve_one(rq: tiny_http::Request, handler: &Handler, stopping: bool) {
    let mut req = Request::new(rq);
    let outcome = catch_unwind(AssertUnwindSafe(|| handler(&mut req)));
    let Some(inner) = req.inner.take() else {
        // Deferred: the Responder answers (dropped unanswered, tiny_http sends 500).
        return;
    };
    let mut response = match outcome {
        Ok(Some(r)) => r,
        Ok(None) => {
            log::error!(
                "handler for {} {} gave no response: answered 500",
                method_name(&req.method),
                req.path()
            );
            Response::text(500, "internal error\n")
        }
        Err(_) => {
            log::error!(
                "internal error while handling {} {}: answered 500",
                method_name(&req.method),
                req.path()
            );
            Response::text(500, "internal error\n")
        }
    };
    if stopping {
        response.headers.push(("Connection".into(), "close".into()));
    }
    respond(inner, response);
}

fn method_name(m: &Method) -> &str {
    match m {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Other(s) => s,
    }
}

fn respond(rq: tiny_http::Request, r: Response) {
    let headers: Vec<tiny_http::Header> = r
        .headers
        .iter()
        .filter_map(|(k, v)| tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()).ok())
        .collect();
    let status = tiny_http::StatusCode(r.status);
    let result = match r.body {
        Body::Bytes(b) => {
            let len = b.len();
            rq.respond(tiny_http::Response::new(
                status,
                headers,
                Cursor::new(b),
                Some(len),
                None,
            ))
        }
        Body::Stream(s) => rq.respond(tiny_http::Response::new(status, headers, s, None, None)),
    };
    if let Err(e) = result {
        log::debug!("client went away before the response was sent: {e}");
    }
}
