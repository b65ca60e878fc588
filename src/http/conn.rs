//! One connection: read a request completely, handle it, write the answer, and only
//! then read the next one. Everything here runs in the connection's own thread.

use std::io::{self, BufWriter, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use super::server::{Phase, Shared, Slot};
use super::{Body, BodyError, Reply, Request, Response, reason};
use crate::logging::escaped;

/// Most header lines in one request (httparse needs a fixed array).
const MAX_HEADERS: usize = 100;
/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 8 * 1024;
/// After answering a request whose body was not read, how much of it is drained (so the
/// client reads the answer instead of a reset) and for how long at most.
const LINGER_BYTES: usize = 256 * 1024;
const LINGER_TIME: Duration = Duration::from_secs(1);

/// Why no request came out of the connection.
enum Stop {
    /// Close without a word: the client went away, stayed idle, or we are stopping.
    Quiet,
    /// Answer this status (and a short text) and close.
    Refuse(u16, &'static str),
}

/// How a request was framed, beyond what [`Request`] holds.
struct Framing {
    /// HTTP/1.0 (no chunked answers; keep-alive only when asked for).
    http10: bool,
    /// The connection stays open after the answer.
    keep_alive: bool,
}

/// Serves requests on `stream` until it closes, misbehaves, idles out, or the server
/// stops.
pub(super) fn serve(stream: &TcpStream, slot: &Slot, shared: &Shared) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(shared.limits.write_timeout));
    let mut socket = Socket::new(stream);
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let (mut req, framing) = match read_request(&mut socket, &mut buf, slot, shared) {
            Ok(r) => r,
            Err(Stop::Quiet) => return,
            Err(Stop::Refuse(status, text)) => {
                shared.stats.count_refused();
                log::warn!("http: request refused with {status}: {text}");
                let resp = Response::text(status, format!("{text}\n"));
                if write_response(stream, resp, false, true, false).is_ok() {
                    linger(stream);
                }
                return;
            }
        };
        slot.set(Phase::Busy);
        let head_only = *req.method() == super::Method::Head;
        let body_unread = req.body().is_err();
        let response = handle(shared, &mut req);
        slot.set(Phase::Writing);
        let close = !framing.keep_alive
            || body_unread
            || shared.stopping()
            || response
                .header("Connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        match write_response(stream, response, head_only, close, framing.http10) {
            Ok(()) if close => {
                if body_unread {
                    linger(stream);
                }
                let _ = stream.shutdown(Shutdown::Both);
                return;
            }
            Ok(()) => {}
            Err(e) => {
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) {
                    shared.stats.count_timeout();
                    log::warn!(
                        "http: a client did not read its answer within {:?}; connection dropped",
                        shared.limits.write_timeout
                    );
                }
                return;
            }
        }
    }
}

/// Runs the handler (within the `workers` bound) and what it left for later (outside
/// it); a panic in either becomes a `500`.
fn handle(shared: &Shared, req: &mut Request) -> Response {
    let reply = {
        let _permit = shared.permits.acquire();
        catch_unwind(AssertUnwindSafe(|| (shared.handler)(req)))
    };
    let result = match reply {
        Ok(Reply::Now(r)) => Ok(r),
        Ok(Reply::Later(finish)) => catch_unwind(AssertUnwindSafe(finish)),
        Err(e) => Err(e),
    };
    result.unwrap_or_else(|_| {
        log::error!(
            "internal error while handling {} {}: answered 500",
            escaped(req.method().as_str()),
            escaped(req.path())
        );
        Response::text(500, "internal error\n")
    })
}

/// A connection's socket and the read timeout last set on it (one system call saved
/// per request: most requests arrive in one read, after an idle wait whose timeout
/// stays the same).
pub(super) struct Socket<'a> {
    pub(super) stream: &'a TcpStream,
    timeout: Option<Duration>,
}

impl<'a> Socket<'a> {
    pub(super) fn new(stream: &'a TcpStream) -> Socket<'a> {
        Socket {
            stream,
            timeout: None,
        }
    }

    /// Reads bytes into `buf`, waiting at most `wait`. `Ok(0)` is the end of the stream.
    fn read_some(&mut self, buf: &mut Vec<u8>, wait: Duration) -> io::Result<usize> {
        if wait.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        if self.timeout != Some(wait) {
            self.stream.set_read_timeout(Some(wait))?;
            self.timeout = Some(wait);
        }
        let start = buf.len();
        buf.resize(start + READ_CHUNK, 0);
        let mut reader = self.stream;
        let result = reader.read(&mut buf[start..]);
        buf.truncate(start + *result.as_ref().unwrap_or(&0));
        result.map_err(|e| match e.kind() {
            io::ErrorKind::WouldBlock => io::ErrorKind::TimedOut.into(),
            _ => e,
        })
    }

    /// Like [`Socket::read_some`], until an instant.
    fn read_until(&mut self, buf: &mut Vec<u8>, deadline: Instant) -> io::Result<usize> {
        self.read_some(buf, deadline.saturating_duration_since(Instant::now()))
    }
}

/// Where the head ends (after its blank line), if it is complete. A LF not preceded by
/// CR anywhere in the head is refused: line ends are CRLF only, so that nothing that
/// reads or logs a header line can be fooled into seeing two.
fn head_end(buf: &[u8]) -> Result<Option<usize>, Stop> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let scan = &buf[..end.unwrap_or(buf.len())];
    for (i, &b) in scan.iter().enumerate() {
        if b == b'\n' && (i == 0 || scan[i - 1] != b'\r') {
            return Err(Stop::Refuse(
                400,
                "bad request: a bare LF in the request head",
            ));
        }
    }
    Ok(end)
}

/// Reads one complete request: head within the size limit, body by `Content-Length`
/// within the body limit, all within the time limits.
fn read_request(
    socket: &mut Socket,
    buf: &mut Vec<u8>,
    slot: &Slot,
    shared: &Shared,
) -> Result<(Request, Framing), Stop> {
    let limits = &shared.limits;
    if shared.stopping() && buf.is_empty() {
        return Err(Stop::Quiet);
    }
    let mut started = (!buf.is_empty()).then(Instant::now);
    slot.set(if started.is_some() {
        Phase::Receiving
    } else {
        Phase::Idle
    });
    let timed_out = |started: Option<Instant>, shared: &Shared| {
        if started.is_some() {
            shared.stats.count_timeout();
            Stop::Refuse(408, "request timeout: the request did not arrive in time")
        } else {
            Stop::Quiet
        }
    };

    let head_len = loop {
        if let Some(n) = head_end(buf)? {
            if n > limits.max_head {
                return Err(Stop::Refuse(431, "request header fields too large"));
            }
            break n;
        }
        if buf.len() > limits.max_head {
            return Err(Stop::Refuse(431, "request header fields too large"));
        }
        let read = match started {
            None => socket.read_some(buf, limits.idle),
            Some(t) => socket.read_until(buf, t + limits.request_time),
        };
        match read {
            Ok(0) => return Err(Stop::Quiet),
            Ok(_) => {
                if started.is_none() {
                    started = Some(Instant::now());
                    slot.set(Phase::Receiving);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                return Err(timed_out(started, shared));
            }
            Err(_) => return Err(Stop::Quiet),
        }
    };
    let started = started.unwrap_or_else(Instant::now);

    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut slots);
    match parsed.parse(&buf[..head_len]) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(Stop::Refuse(400, "bad request")),
        Err(httparse::Error::Version) => {
            return Err(Stop::Refuse(
                505,
                "HTTP version not supported: use HTTP/1.1",
            ));
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Stop::Refuse(431, "request header fields too large"));
        }
        Err(_) => return Err(Stop::Refuse(400, "bad request: malformed request head")),
    }
    let (Some(method), Some(path), Some(minor)) = (parsed.method, parsed.path, parsed.version)
    else {
        return Err(Stop::Refuse(400, "bad request"));
    };
    if !path.starts_with('/') {
        return Err(Stop::Refuse(400, "bad request: the target must be a path"));
    }
    let headers: Vec<(String, String)> = parsed
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_owned(),
                String::from_utf8_lossy(h.value).trim().to_owned(),
            )
        })
        .collect();
    let (method, path) = (method.to_owned(), path.to_owned());
    fn all<'h>(headers: &'h [(String, String)], name: &'h str) -> impl Iterator<Item = &'h str> {
        headers
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    if all(&headers, "Transfer-Encoding").next().is_some() {
        return Err(Stop::Refuse(
            411,
            "length required: send the body with a Content-Length",
        ));
    }
    let mut length: Option<u64> = None;
    for v in all(&headers, "Content-Length") {
        let n = (!v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            .then(|| v.parse::<u64>().ok())
            .flatten();
        match (n, length) {
            (None, _) => return Err(Stop::Refuse(400, "bad request: invalid Content-Length")),
            (Some(n), Some(prev)) if n != prev => {
                return Err(Stop::Refuse(400, "bad request: conflicting Content-Length"));
            }
            (Some(n), _) => length = Some(n),
        }
    }
    let length = length.unwrap_or(0);
    let expect_continue = match all(&headers, "Expect").next() {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("100-continue") => true,
        Some(_) => return Err(Stop::Refuse(417, "expectation failed")),
    };
    let tokens: Vec<String> = all(&headers, "Connection")
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    let http10 = minor == 0;
    let keep_alive = if http10 {
        tokens.iter().any(|t| t == "keep-alive")
    } else {
        !tokens.iter().any(|t| t == "close")
    };

    let body = if length > limits.max_body {
        // Not read: the handler answers (413 where a body matters), then the
        // connection closes.
        Err(BodyError::TooLarge)
    } else {
        let total = head_len + length as usize;
        if expect_continue && length > 0 && buf.len() < total {
            let mut w = socket.stream;
            if w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").is_err() {
                return Err(Stop::Quiet);
            }
        }
        while buf.len() < total {
            match socket.read_until(buf, started + limits.request_time) {
                Ok(0) => return Err(Stop::Quiet),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    return Err(timed_out(Some(started), shared));
                }
                Err(_) => return Err(Stop::Quiet),
            }
        }
        let body = buf[head_len..total].to_vec();
        // What follows (a pipelined request) stays for the next round; a buffer grown by
        // a large request does not stay large for the connection's life.
        buf.drain(..total);
        if buf.capacity() > 2 * READ_CHUNK {
            buf.shrink_to(READ_CHUNK.max(buf.len()));
        }
        Ok(body)
    };
    if body.is_err() {
        buf.clear();
    }
    Ok((
        Request::new(&method, &path, headers, body),
        Framing { http10, keep_alive },
    ))
}

/// Whether a header of ours may go out as is (no line breaks smuggled into it).
fn header_ok(name: &str, value: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
        && !value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0)
        && !["content-length", "transfer-encoding", "connection"]
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h))
}

/// Writes one answer. Bytes go out with `Content-Length`, streams chunked (to an
/// HTTP/1.0 client: unframed, then the connection closes).
fn write_response(
    stream: &TcpStream,
    resp: Response,
    head_only: bool,
    close: bool,
    http10: bool,
) -> io::Result<()> {
    let mut head = Vec::with_capacity(256);
    let _ = write!(head, "HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status));
    for (k, v) in &resp.headers {
        if header_ok(k, v) {
            let _ = write!(head, "{k}: {v}\r\n");
        }
    }
    let mut out = stream;
    match resp.body {
        Body::Bytes(bytes) => {
            let _ = write!(head, "Content-Length: {}\r\n", bytes.len());
            if close {
                head.extend_from_slice(b"Connection: close\r\n");
            }
            head.extend_from_slice(b"\r\n");
            if !head_only {
                head.extend_from_slice(&bytes);
            }
            out.write_all(&head)
        }
        Body::Stream(mut body) => {
            let chunked = !http10;
            if chunked {
                head.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
            }
            if close || !chunked {
                head.extend_from_slice(b"Connection: close\r\n");
            }
            head.extend_from_slice(b"\r\n");
            let mut w = BufWriter::with_capacity(64 * 1024, out);
            w.write_all(&head)?;
            if head_only {
                return w.flush();
            }
            let mut chunk = vec![0u8; 32 * 1024];
            loop {
                let n = match body.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        // The status is out already: cut the answer short so the client
                        // sees a broken download, not a complete-looking one.
                        log::error!(
                            "http: a streamed answer failed midway ({e}); connection closed"
                        );
                        let _ = w.flush();
                        return Err(e);
                    }
                };
                if chunked {
                    write!(w, "{n:x}\r\n")?;
                }
                w.write_all(&chunk[..n])?;
                if chunked {
                    w.write_all(b"\r\n")?;
                }
            }
            if chunked {
                w.write_all(b"0\r\n\r\n")?;
            }
            w.flush()?;
            if !chunked {
                let _ = stream.shutdown(Shutdown::Write);
            }
            Ok(())
        }
    }
}

/// After answering a request whose body we did not read: stop writing, and read and drop
/// what the client is still sending for a moment, so it reads our answer rather than a
/// connection reset.
fn linger(stream: &TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    let until = Instant::now() + LINGER_TIME;
    let mut drained = 0;
    let mut sink = Vec::new();
    let mut socket = Socket::new(stream);
    while drained < LINGER_BYTES {
        sink.clear();
        match socket.read_until(&mut sink, until) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}
