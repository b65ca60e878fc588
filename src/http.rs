/*!
The HTTP layer: the only module that knows tiny_http, so replacing it stays cheap.

A fixed pool of `workers` threads shares one tiny_http server (`recv()` from several
threads is supported). Each request goes to a plain handler `Fn(&mut Request) ->
Response`; a panic in it becomes a `500` and the worker lives on. Bodies up to the
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
use std::net::SocketAddr;
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
    inner: tiny_http::Request,
    method: Method,
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
        Request { inner, method }
    }

    /// The method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// Path and query exactly as received (never decoded).
    pub fn url(&self) -> &str {
        self.inner.url()
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
            .headers()
            .iter()
            .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    /// The declared `Content-Length`, if any.
    pub fn content_length(&self) -> Option<usize> {
        self.inner.body_length()
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
        self.inner
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

    /// The first header of that name, if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The request handler the workers run.
pub type Handler = dyn Fn(&mut Request) -> Response + Send + Sync;

/// A bound listener, not yet serving.
pub struct Server {
    inner: Arc<tiny_http::Server>,
    addr: SocketAddr,
}

/// A running server: its workers, and how to stop them.
pub struct Running {
    inner: Arc<tiny_http::Server>,
    stopping: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
}

impl Server {
    /// Binds `addr`. `max_body` sets how large a body is read before a worker sees it.
    pub fn bind(addr: SocketAddr, max_body: u64) -> Result<Server, String> {
        tiny_http::set_buffered_body_limit(max_body.min(usize::MAX as u64) as usize);
        tiny_http::set_socket_timeout(Some(SOCKET_TIMEOUT));
        let inner =
            tiny_http::Server::http(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let addr = inner
            .server_addr()
            .to_ip()
            .ok_or_else(|| format!("cannot listen on {addr}: not an IP listener"))?;
        Ok(Server {
            inner: Arc::new(inner),
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
            stopping,
            workers: threads,
        })
    }
}

impl Running {
    /// Stops accepting, lets the workers finish what they hold and what is queued,
    /// and waits for them.
    pub fn stop(self) {
        self.stopping.store(true, Ordering::SeqCst);
        for _ in 0..self.workers.len() {
            self.inner.unblock();
        }
        for w in self.workers {
            let _ = w.join();
        }
        // Dropping the last reference closes the listening socket.
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
        match server.recv() {
            Ok(rq) => serve_one(rq, handler),
            Err(e) => {
                if !stopping.load(Ordering::SeqCst) {
                    on_fatal(format!(
                        "the HTTP listener stopped accepting connections ({e})"
                    ));
                }
                return;
            }
        }
    }
}

fn serve_one(rq: tiny_http::Request, handler: &Handler) {
    let mut req = Request::new(rq);
    let response = match catch_unwind(AssertUnwindSafe(|| handler(&mut req))) {
        Ok(r) => r,
        Err(_) => {
            log::error!(
                "internal error while handling {} {}: answered 500",
                method_name(&req.method),
                req.path()
            );
            Response::text(500, "internal error\n")
        }
    };
    respond(req.inner, response);
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
