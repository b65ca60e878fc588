//! Test harness: start the real `calltrackd` binary on `127.0.0.1:0` with a config and
//! a SQLite file in a temporary folder, talk real HTTP to it over a raw `TcpStream`,
//! and sign requests with an implementation of Twilio's algorithm that does not use the
//! crate's own signer.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};

pub const TOKEN: &str = "test-auth-token-0123456789";
pub const EXPORT_TOKEN: &str = "test-export-token-abcdef";
pub const TRACKING: &str = "+18005551212";
pub const TRACKING_NO_FORWARD: &str = "+18005550100";
pub const SHOP: &str = "+15558675309";
pub const CALLER: &str = "+14155550100";

/// The binary under test: this build's, or `$CALLTRACKD_TEST_BIN` (to show that a test
/// fails against an older build, as a test of a fix must).
pub fn bin() -> String {
    std::env::var("CALLTRACKD_TEST_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_calltrackd").to_owned())
}

/// The `[[numbers]]` and other sections most tests use; `{db}` is filled in.
pub fn base_config(extra: &str) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"
workers = 4
{extra}
[storage]
path = "calls.db"

[twilio]
auth_token = "{TOKEN}"

[qualify]
min_duration_seconds = 30

[export]
token = "{EXPORT_TOKEN}"
timezone = "America/Chicago"

[[numbers]]
number = "{TRACKING}"
user = "acme-plumbing"
source = "Google Ads"
forward_to = "{SHOP}"
ring_timeout_seconds = 18

[[numbers]]
number = "{TRACKING_NO_FORWARD}"
user = "bob-electric"
source = "Flyer"
"#
    )
}

/// A temporary folder with a config file in it.
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new(config: &str) -> Env {
        let dir = tempfile::Builder::new()
            .prefix("calltrackd-test-")
            .tempdir()
            .unwrap();
        std::fs::write(dir.path().join("config.toml"), config).unwrap();
        let mut perms = std::fs::metadata(dir.path().join("config.toml"))
            .unwrap()
            .permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
        std::fs::set_permissions(dir.path().join("config.toml"), perms).unwrap();
        Env { dir }
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("calls.db")
    }

    pub fn write_config(&self, text: &str) {
        std::fs::write(self.config(), text).unwrap();
    }

    /// Runs `calltrackd ARGS` to completion.
    pub fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new(bin())
            .args(args)
            .env_remove("TWILIO_AUTH_TOKEN")
            .env_remove("CALLTRACKD_EXPORT_TOKEN")
            .env_remove("CALLTRACKD_CONFIG")
            .env_remove("JOURNAL_STREAM")
            .current_dir(self.dir.path())
            .output()
            .unwrap()
    }

    pub fn start(&self) -> Daemon {
        Daemon::start(self, Vec::new())
    }
}

/// A running daemon; killed when dropped.
pub struct Daemon {
    pub child: Child,
    pub addr: SocketAddr,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    /// Starts `calltrackd serve` with extra environment variables (and an optional
    /// program to wrap it, e.g. `setpriv`).
    pub fn start(env: &Env, vars: Vec<(&str, String)>) -> Daemon {
        Daemon::start_wrapped(env, vars, &[])
    }

    pub fn start_wrapped(env: &Env, vars: Vec<(&str, String)>, wrapper: &[&str]) -> Daemon {
        let mut cmd = if wrapper.is_empty() {
            Command::new(bin())
        } else {
            let mut c = Command::new(wrapper[0]);
            c.args(&wrapper[1..]).arg(bin());
            c
        };
        cmd.arg("serve")
            .arg("--config")
            .arg(env.config())
            .env_remove("TWILIO_AUTH_TOKEN")
            .env_remove("CALLTRACKD_EXPORT_TOKEN")
            .env_remove("JOURNAL_STREAM")
            .env_remove("NOTIFY_SOCKET")
            .env("CALLTRACKD_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let log2 = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or("").to_owned();
                    let _ = tx.send(addr);
                }
                log2.lock().unwrap().push(line);
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(a) => a.parse().unwrap(),
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "daemon did not start; log:\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
        };
        Daemon { child, addr, log }
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// The address of the metrics listener, from the log line that announces it.
    pub fn metrics_addr(&self) -> SocketAddr {
        assert!(self.wait_log("metrics on http://", Duration::from_secs(10)));
        let log = self.log_text();
        let rest = log.split("metrics on http://").nth(1).unwrap();
        rest.split('/').next().unwrap().parse().unwrap()
    }

    /// Waits until at least `n` log lines contain `needle`.
    pub fn wait_log_count(&self, needle: &str, n: usize, timeout: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if self.log_text().matches(needle).count() >= n {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// Waits until a log line contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if self.log_text().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn signal(&self, sig: i32) {
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn stop(mut self) -> Option<i32> {
        self.signal(libc::SIGTERM);
        wait_timeout(&mut self.child, Duration::from_secs(20))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The URL the daemon checks signatures against (no public_url: http://Host/...).
    pub fn webhook_url(&self) -> String {
        self.url("/call-tracking/webhook")
    }

    pub fn post_form(&self, params: &[(&str, &str)]) -> Resp {
        let url = self.webhook_url();
        let sig = sign(TOKEN, &url, params);
        self.post_form_signed(params, Some(&sig))
    }

    pub fn post_form_signed(&self, params: &[(&str, &str)], sig: Option<&str>) -> Resp {
        let body = form_encode(params);
        let mut headers = vec![(
            "Content-Type",
            "application/x-www-form-urlencoded".to_owned(),
        )];
        if let Some(s) = sig {
            headers.push(("X-Twilio-Signature", s.to_owned()));
        }
        request(
            self.addr,
            "POST",
            "/call-tracking/webhook",
            &headers,
            body.as_bytes(),
        )
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One signed form POST of `params` to the webhook at `addr` (no public_url: the URL
/// signed is http:// + addr + path), on a fresh connection; usable from any thread.
pub fn post_signed_to(addr: SocketAddr, params: &[(String, String)]) -> Resp {
    let url = format!("http://{addr}/call-tracking/webhook");
    request(
        addr,
        "POST",
        "/call-tracking/webhook",
        &[
            (
                "Content-Type",
                "application/x-www-form-urlencoded".to_owned(),
            ),
            ("X-Twilio-Signature", sign(TOKEN, &url, &borrow(params))),
        ],
        form_encode(&borrow(params)).as_bytes(),
    )
}

pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<i32> {
    let start = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return status.code();
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Twilio's algorithm, written independently of the crate: URL + sorted name/value
/// pairs (distinct values sorted), HMAC-SHA1, base64.
pub fn sign(token: &str, url: &str, params: &[(&str, &str)]) -> String {
    let mut pairs: Vec<(&str, &str)> = params.to_vec();
    pairs.sort();
    pairs.dedup();
    let mut s = url.to_owned();
    for (k, v) in pairs {
        s.push_str(k);
        s.push_str(v);
    }
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(token.as_bytes()).unwrap();
    mac.update(s.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

pub fn form_encode(params: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(params).unwrap()
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`).
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> Resp {
    let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        raw.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        raw.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    raw.push_str("\r\n");
    let mut bytes = raw.into_bytes();
    bytes.extend_from_slice(body);
    raw_request(addr, &bytes, method == "HEAD")
}

/// Sends raw bytes and parses one response.
pub fn raw_request(addr: SocketAddr, bytes: &[u8], head: bool) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(bytes).unwrap();
    read_response(&mut BufReader::new(s), head)
}

pub fn read_response<R: BufRead>(r: &mut R, head: bool) -> Resp {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("bad status line {line:?}"))
        .parse()
        .unwrap();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).unwrap();
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').unwrap();
        headers.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _): &&(String, String)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if !head {
        if get("Transfer-Encoding").is_some_and(|v| v.contains("chunked")) {
            loop {
                let mut size = String::new();
                r.read_line(&mut size).unwrap();
                let n = usize::from_str_radix(size.trim(), 16).unwrap();
                let mut chunk = vec![0; n + 2];
                r.read_exact(&mut chunk).unwrap();
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        } else if let Some(n) = get("Content-Length") {
            let mut b = vec![0; n.parse().unwrap()];
            r.read_exact(&mut b).unwrap();
            body = b;
        } else {
            r.read_to_end(&mut body).unwrap();
        }
    }
    Resp {
        status,
        headers,
        body,
    }
}

pub fn get(addr: SocketAddr, path: &str, headers: &[(&str, String)]) -> Resp {
    request(addr, "GET", path, headers, b"")
}

pub fn bearer() -> Vec<(&'static str, String)> {
    vec![("Authorization", format!("Bearer {EXPORT_TOKEN}"))]
}

/// A socket in the test's folder that plays systemd's `$NOTIFY_SOCKET`.
pub struct Notify {
    sock: std::os::unix::net::UnixDatagram,
    /// Its path, for `NOTIFY_SOCKET`.
    pub path: String,
}

impl Notify {
    pub fn new(env: &Env) -> Notify {
        let path = env.dir.path().join("notify.sock");
        let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Notify {
            sock,
            path: path.display().to_string(),
        }
    }

    /// The next notification within `wait`, if any.
    pub fn next_within(&self, wait: std::time::Duration) -> Option<String> {
        self.sock.set_read_timeout(Some(wait)).unwrap();
        let got = self.next();
        self.sock
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        got
    }

    /// The next notification; `None` after 10 s without one.
    pub fn next(&self) -> Option<String> {
        let mut buf = [0u8; 512];
        let n = self.sock.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }
}

// ------------------------------------------------------------- Twilio requests

pub fn incoming(sid: &str, to: &str) -> Vec<(String, String)> {
    owned(&[
        ("AccountSid", "AC00000000000000000000000000000000"),
        ("ApiVersion", "2010-04-01"),
        ("CallSid", sid),
        ("CallStatus", "ringing"),
        ("Called", to),
        ("Caller", CALLER),
        ("CallerName", "JOHN SMITH"),
        ("Direction", "inbound"),
        ("From", CALLER),
        ("FromCity", "SAN FRANCISCO"),
        ("FromState", "CA"),
        ("To", to),
        ("ToCity", "CHICAGO"),
        ("ToState", "IL"),
    ])
}

pub fn status(
    sid: &str,
    to: &str,
    call_status: &str,
    timestamp: &str,
    duration: Option<&str>,
) -> Vec<(String, String)> {
    let mut p = incoming(sid, to);
    set(&mut p, "CallStatus", call_status);
    p.push(("CallbackSource".into(), "call-progress-events".into()));
    p.push(("Timestamp".into(), timestamp.into()));
    p.push(("SequenceNumber".into(), "0".into()));
    if let Some(d) = duration {
        p.push(("CallDuration".into(), d.into()));
        p.push(("Duration".into(), "1".into()));
    }
    p
}

pub fn dial_action(
    sid: &str,
    to: &str,
    dial_status: &str,
    dial_duration: Option<&str>,
) -> Vec<(String, String)> {
    let mut p = incoming(sid, to);
    set(&mut p, "CallStatus", "in-progress");
    p.push(("DialCallStatus".into(), dial_status.into()));
    p.push(("DialCallSid".into(), format!("{sid}-leg")));
    p.push((
        "DialBridged".into(),
        (dial_status == "completed").to_string(),
    ));
    if let Some(d) = dial_duration {
        p.push(("DialCallDuration".into(), d.into()));
    }
    p
}

pub fn owned(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

pub fn set(p: &mut Vec<(String, String)>, k: &str, v: &str) {
    p.retain(|(a, _)| a != k);
    p.push((k.into(), v.into()));
}

pub fn borrow(p: &[(String, String)]) -> Vec<(&str, &str)> {
    p.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect()
}

// ------------------------------------------------------------- database reads

/// A call row as stored, read with plain SQL.
#[derive(Debug, Clone, PartialEq)]
pub struct CallRow {
    pub user: String,
    pub tracking_number: String,
    pub source: String,
    pub caller: String,
    pub status: String,
    pub answered: Option<bool>,
    pub qualified: Option<bool>,
    pub duration_seconds: Option<i64>,
    pub talk_seconds: Option<i64>,
    pub started_at: i64,
    pub ended_at: Option<i64>,
}

pub fn call_row(db: &Path, sid: &str) -> Option<CallRow> {
    let c = rusqlite::Connection::open(db).unwrap();
    c.query_row(
        "SELECT user, tracking_number, source, caller, status, answered, qualified, duration_seconds,
                talk_seconds, started_at, ended_at FROM calls WHERE call_sid = ?1",
        [sid],
        |r| {
            Ok(CallRow {
                user: r.get(0)?,
                tracking_number: r.get(1)?,
                source: r.get(2)?,
                caller: r.get(3)?,
                status: r.get(4)?,
                answered: r.get(5)?,
                qualified: r.get(6)?,
                duration_seconds: r.get(7)?,
                talk_seconds: r.get(8)?,
                started_at: r.get(9)?,
                ended_at: r.get(10)?,
            })
        },
    )
    .ok()
}

/// The file passes `PRAGMA integrity_check` and holds each of `sids` exactly once.
pub fn assert_sound_with(db: &Path, sids: &[String], what: &str) {
    let c = rusqlite::Connection::open(db).unwrap();
    let check: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok", "{what}");
    let mut stmt = c
        .prepare("SELECT call_sid, count(*) FROM calls GROUP BY call_sid")
        .unwrap();
    let stored: std::collections::HashMap<String, i64> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for sid in sids {
        assert_eq!(
            stored.get(sid),
            Some(&1),
            "{what}: acknowledged call {sid} is not stored exactly once"
        );
    }
}

pub fn count(db: &Path, sql: &str) -> i64 {
    let c = rusqlite::Connection::open(db).unwrap();
    c.query_row(sql, [], |r| r.get(0)).unwrap()
}

pub fn unix(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp()
}

/// Twilio's RFC 2822 form of an RFC 3339 time.
pub fn rfc2822(rfc3339: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .with_timezone(&chrono::Utc)
        .format("%a, %d %b %Y %H:%M:%S +0000")
        .to_string()
}
