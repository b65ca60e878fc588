//! Receivers the notification tests start on loopback: the signed-webhook receiver and
//! the SMTP server (Python: the reference Standard Webhooks library, aiosmtpd), and an
//! HTTP receiver of our own for ntfy's JSON publishing and for bad behaviour (500,
//! redirect, hang).

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The Python that has the packages the receivers need: Debian's (CI installs
/// python3-aiosmtpd there), else whatever `python3` is.
pub fn python() -> &'static str {
    if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

fn support(file: &str) -> String {
    format!("{}/tests/support/{file}", env!("CARGO_MANIFEST_DIR"))
}

/// A Python receiver printing one JSON line per message.
pub struct PyReceiver {
    child: Child,
    pub port: u16,
    lines: Arc<Mutex<Vec<Value>>>,
}

impl Drop for PyReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl PyReceiver {
    fn start(args: Vec<String>, what: &str) -> PyReceiver {
        let mut child = Command::new(python())
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {} for the {what}: {e}", python()));
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        out.read_line(&mut first).unwrap();
        let port: u16 = first
            .trim()
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "the {what} did not start (install python3-aiosmtpd: .ci/run does): {first:?}"
                )
            });
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l2 = lines.clone();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str(&line) {
                    l2.lock().unwrap().push(v);
                }
            }
        });
        PyReceiver { child, port, lines }
    }

    /// The Standard Webhooks receiver (`--fail N`: answer the first N with 500).
    pub fn webhook(secret: &str, port: Option<u16>, fail: usize) -> PyReceiver {
        let mut a = vec![
            support("webhook_receiver.py"),
            secret.to_owned(),
            "--fail".into(),
            fail.to_string(),
        ];
        if let Some(p) = port {
            a.extend(["--port".into(), p.to_string()]);
        }
        PyReceiver::start(a, "webhook receiver")
    }

    /// The SMTP server.
    pub fn smtp() -> PyReceiver {
        PyReceiver::start(vec![support("smtp_server.py")], "SMTP server")
    }

    pub fn got(&self) -> Vec<Value> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits until at least `n` messages arrived.
    pub fn wait(&self, n: usize, timeout: Duration) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let got = self.got();
            if got.len() >= n || start.elapsed() > timeout {
                return got;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks/calls", self.port)
    }
}

/// How the HTTP receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 200, and keep the request.
    Ok,
    /// This status.
    Status(u16),
    /// 302 to elsewhere.
    Redirect,
    /// Read the request, never answer.
    Hang,
}

/// A request the HTTP receiver got.
#[derive(Debug, Clone)]
pub struct Got {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

pub struct HttpReceiver {
    pub port: u16,
    pub got: Arc<Mutex<Vec<Got>>>,
    server: Arc<tiny_http::Server>,
}

impl Drop for HttpReceiver {
    fn drop(&mut self) {
        self.server.unblock();
    }
}

impl HttpReceiver {
    pub fn start(mode: Mode) -> HttpReceiver {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let port = server.server_addr().to_ip().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let (s2, g2) = (server.clone(), got.clone());
        std::thread::spawn(move || {
            for mut req in s2.incoming_requests() {
                let mut body = String::new();
                let _ = std::io::Read::read_to_string(req.as_reader(), &mut body);
                g2.lock().unwrap().push(Got {
                    path: req.url().to_owned(),
                    headers: req
                        .headers()
                        .iter()
                        .map(|h| (h.field.to_string().to_lowercase(), h.value.to_string()))
                        .collect(),
                    body,
                });
                match mode {
                    Mode::Ok => {
                        let _ = req.respond(tiny_http::Response::from_string("{}"));
                    }
                    Mode::Status(s) => {
                        let _ =
                            req.respond(tiny_http::Response::from_string("no").with_status_code(s));
                    }
                    Mode::Redirect => {
                        let _ = req.respond(
                            tiny_http::Response::from_string("")
                                .with_status_code(302)
                                .with_header(
                                    tiny_http::Header::from_bytes(
                                        "Location",
                                        "https://elsewhere.example/x",
                                    )
                                    .unwrap(),
                                ),
                        );
                    }
                    Mode::Hang => {
                        // Hold the request (and its connection) for good.
                        std::thread::spawn(move || {
                            std::thread::sleep(Duration::from_secs(3600));
                            drop(req);
                        });
                    }
                }
            }
        });
        HttpReceiver { port, got, server }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn wait(&self, n: usize, timeout: Duration) -> Vec<Got> {
        let start = Instant::now();
        loop {
            let got = self.got.lock().unwrap().clone();
            if got.len() >= n || start.elapsed() > timeout {
                return got;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
