//! Hostile clients and faults: each test reproduces an attack that used to make the
//! daemon deaf, frozen, bloated or forgetful, and checks that it no longer does. All
//! traffic stays on loopback; every loop is bounded in count and time.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::support::*;

const TS: &str = "Mon, 02 Mar 2026 15:00:47 +0000";

/// A field of `/proc/PID/status` in kB (or a plain count, for `Threads`).
fn proc_status(pid: u32, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

/// One signed form POST to the webhook, as raw bytes (keep-alive unless `close`).
fn signed_raw(addr: SocketAddr, params: &[(String, String)], close: bool) -> Vec<u8> {
    let url = format!("http://{addr}/call-tracking/webhook");
    let body = form_encode(&borrow(params));
    format!(
        "POST /call-tracking/webhook HTTP/1.1\r\nHost: {addr}\r\n{}Content-Type: application/x-www-form-urlencoded\r\nX-Twilio-Signature: {}\r\nContent-Length: {}\r\n\r\n{body}",
        if close { "Connection: close\r\n" } else { "" },
        sign(TOKEN, &url, &borrow(params)),
        body.len()
    )
    .into_bytes()
}

/// Posts a signed incoming call on a new connection: its status and how long it took.
fn timed_post(d: &Daemon, sid: &str) -> (u16, Duration) {
    let t = Instant::now();
    let status = d.post_form(&borrow(&incoming(sid, TRACKING))).status;
    (status, t.elapsed())
}

/// Connects with a small receive buffer, so that a client that does not read fills it
/// quickly.
fn small_window_connect(addr: SocketAddr) -> TcpStream {
    use std::os::fd::AsRawFd;
    let s = TcpStream::connect(addr).unwrap();
    let size: libc::c_int = 4096;
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &size as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    s
}

/// Writes `data` from a thread of its own (it may block for good: the peer need not
/// read); the thread ends when the socket closes.
fn write_in_background(s: &TcpStream, data: Vec<u8>) {
    let mut w = s.try_clone().unwrap();
    std::thread::spawn(move || {
        let _ = w.write_all(&data);
    });
}

/// Fills the `calls` table with `n` bulk calls (plain SQL on a stopped daemon's file).
fn seed_calls(env: &Env, n: usize) {
    let d = env.start();
    assert_eq!(d.stop(), Some(0));
    let c = rusqlite::Connection::open(env.db()).unwrap();
    c.execute_batch(&format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n})
         INSERT INTO calls (id, call_sid, user, tracking_number, source, caller, caller_name,
            caller_city, caller_state, direction, status, answered, qualified,
            duration_seconds, talk_seconds, started_at, ended_at, forwarded,
            min_duration_seconds, updated_at)
         SELECT 1000000 + i, printf('CAbulk%08d', i), 'bulk', '+18005551212', 'x',
            '+14155550100', 'NAME', 'C', 'S', 'inbound', 'completed', 1, 1, 60, 50,
            1700000000 + i, 1700000060 + i, 1, 30, 'now' FROM n;"
    ))
    .unwrap();
}

/// A chunked answer's body, read as it comes, with its lines counted.
struct Download {
    r: BufReader<TcpStream>,
    /// Bytes left in the current chunk; `None` after the last chunk.
    left: Option<usize>,
    lines: usize,
}

impl Download {
    /// Sends a GET for the CSV export and reads the status line and headers.
    fn start(addr: SocketAddr) -> Download {
        let mut s = TcpStream::connect(addr).unwrap();
        write!(
            s,
            "GET /calls.csv HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {EXPORT_TOKEN}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut r = BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert!(line.starts_with("HTTP/1.1 200"), "{line}");
        loop {
            line.clear();
            r.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
        }
        Download {
            r,
            left: Some(0),
            lines: 0,
        }
    }

    /// Reads up to `n` bytes of the body; 0 at its end. Panics on broken framing.
    fn read(&mut self, n: usize) -> usize {
        let Some(mut left) = self.left else { return 0 };
        if left == 0 {
            let mut size = String::new();
            if self.r.read_line(&mut size).unwrap() == 0 {
                panic!("the download was cut short");
            }
            left = usize::from_str_radix(size.trim(), 16)
                .unwrap_or_else(|_| panic!("bad chunk size {size:?}"));
            if left == 0 {
                self.left = None;
                return 0;
            }
        }
        let mut buf = vec![0; n.min(left)];
        self.r
            .read_exact(&mut buf)
            .expect("the download was cut short");
        self.lines += buf.iter().filter(|&&b| b == b'\n').count();
        left -= buf.len();
        if left == 0 {
            let mut crlf = [0u8; 2];
            self.r.read_exact(&mut crlf).unwrap();
        }
        self.left = Some(left);
        buf.len()
    }

    /// Reads the rest; the number of lines in the whole body.
    fn finish(mut self) -> usize {
        while self.read(64 * 1024) > 0 {}
        self.lines
    }
}

fn metric(addr: SocketAddr, series: &str) -> f64 {
    let text = get(addr, "/metrics", &[]).text();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

#[test]
fn pipelined_replays_from_clients_that_never_read_stall_no_one() {
    let env = Env::new(&base_config(""));
    let d = env.start();
    // Three clients each pipeline 2,000 copies of one captured status callback and never
    // read an answer. Before, their answers queued behind one thread that wrote all
    // answers: once a socket was full, no webhook from anyone was answered.
    let replay = signed_raw(
        d.addr,
        &status("CAreplay1", TRACKING, "completed", TS, Some("47")),
        false,
    );
    let attackers: Vec<TcpStream> = (0..3)
        .map(|_| {
            let s = small_window_connect(d.addr);
            write_in_background(&s, replay.repeat(2000));
            s
        })
        .collect();
    let mut worst = Duration::ZERO;
    for i in 0..30 {
        let (status, took) = timed_post(&d, &format!("CAfresh{i}"));
        assert_eq!(status, 200, "{}", d.log_text());
        worst = worst.max(took);
    }
    assert!(worst < Duration::from_secs(3), "slowest answer {worst:?}");
    assert_eq!(get(d.addr, "/healthz", &[]).status, 200);
    // The replays were duplicates: one call, the fresh ones each stored.
    assert_eq!(count(&env.db(), "SELECT count(*) FROM calls"), 31);
    // SIGTERM with the attackers still connected and not reading: stopped in time.
    let t = Instant::now();
    assert_eq!(d.stop(), Some(0));
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    drop(attackers);
}

#[test]
fn pipelined_requests_do_not_grow_memory() {
    let env = Env::new(&base_config(""));
    let d = env.start();
    let pid = d.child.id();
    assert_eq!(timed_post(&d, "CAwarm").0, 200);
    let before = proc_status(pid, "VmRSS");
    // Eight clients pipeline 4 MB of signed requests each and never read.
    let replay = signed_raw(
        d.addr,
        &status("CAmem1", TRACKING, "completed", TS, Some("47")),
        false,
    );
    let copies = 4_000_000 / replay.len();
    let clients: Vec<TcpStream> = (0..8)
        .map(|_| {
            let s = small_window_connect(d.addr);
            write_in_background(&s, replay.repeat(copies));
            s
        })
        .collect();
    // Wait until the flood is being served (replays stored as duplicate events), then
    // for the answers to back up (stored events stop growing).
    let start = Instant::now();
    let mut last = -1;
    loop {
        let n = count(&env.db(), "SELECT count(*) FROM events");
        if n > 100 && n == last {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "flood never settled"
        );
        last = n;
        std::thread::sleep(Duration::from_millis(500));
    }
    let peak = proc_status(pid, "VmHWM");
    assert!(
        peak < before + 24 * 1024,
        "RSS grew from {before} kB to a peak of {peak} kB"
    );
    assert_eq!(timed_post(&d, "CAafterflood").0, 200);
    drop(clients);
}

#[test]
fn downloads_that_are_never_read_cannot_keep_callbacks_out() {
    // As many never-read downloads as the daemon takes connections: each answer sticks
    // in its socket. Their connections make room for callbacks.
    let env = Env::new(&base_config(
        "max_connections = 16\nmetrics_listen = \"127.0.0.1:0\"\n",
    ));
    seed_calls(&env, 50_000);
    let d = env.start();
    let maddr = d.metrics_addr();
    let stuck: Vec<TcpStream> = (0..16)
        .map(|_| {
            let mut s = small_window_connect(d.addr);
            write!(
                s,
                "GET /calls.csv HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {EXPORT_TOKEN}\r\n\r\n"
            )
            .unwrap();
            s
        })
        .collect();
    for i in 0..10 {
        let (status, took) = timed_post(&d, &format!("CAnr{i}"));
        assert_eq!(status, 200);
        assert!(took < Duration::from_secs(5), "{took:?}");
    }
    assert!(
        metric(
            maddr,
            "calltrackd_http_connection_events_total{event=\"evicted\"}"
        ) >= 1.0
    );
    drop(stuck);
}

#[test]
fn slow_and_oddly_framed_bodies_hold_no_worker() {
    // Four workers; twelve clients trickle a body one byte at a time.
    let env = Env::new(&base_config(""));
    let d = env.start();
    let stop = Arc::new(AtomicBool::new(false));
    let mut tricklers = Vec::new();
    for _ in 0..12 {
        let mut s = TcpStream::connect(d.addr).unwrap();
        s.write_all(b"POST /call-tracking/webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 500\r\n\r\nC")
            .unwrap();
        let mut w = s.try_clone().unwrap();
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if w.write_all(b"a").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        });
        tricklers.push(s);
    }
    // Chunked bodies are refused at once (Twilio always sends Content-Length).
    for _ in 0..8 {
        let mut s = TcpStream::connect(d.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"POST /call-tracking/webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nC")
            .unwrap();
        let r = read_response(&mut BufReader::new(s), false);
        assert_eq!(r.status, 411);
    }
    // Meanwhile real callbacks are answered at once.
    for i in 0..10 {
        let (status, took) = timed_post(&d, &format!("CAslow{i}"));
        assert_eq!(status, 200);
        assert!(took < Duration::from_secs(2), "{took:?}");
    }
    // Expect: 100-continue gets its 100, then the answer.
    let p = incoming("CAexpect", TRACKING);
    let url = format!("http://{}/call-tracking/webhook", d.addr);
    let body = form_encode(&borrow(&p));
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "POST /call-tracking/webhook HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nX-Twilio-Signature: {}\r\nContent-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        d.addr,
        sign(TOKEN, &url, &borrow(&p)),
        body.len()
    )
    .unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 100"), "{line}");
    r.read_line(&mut line).unwrap();
    s.write_all(body.as_bytes()).unwrap();
    assert_eq!(read_response(&mut r, false).status, 200);
    // Upgrade is not taken up: the request is answered as a plain request.
    let mut raw = signed_raw(d.addr, &incoming("CAupgradehdr", TRACKING), true);
    let at = raw.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
    raw.splice(
        at..at,
        b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
            .iter()
            .copied(),
    );
    assert_eq!(raw_request(d.addr, &raw, false).status, 200);
    // A trickled request gets 408 once its time (10 s from its first byte) is up.
    let mut r = BufReader::new(tricklers[0].try_clone().unwrap());
    tricklers[0]
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    assert_eq!(read_response(&mut r, false).status, 408);
    stop.store(true, Ordering::Relaxed);
    assert_eq!(count(&env.db(), "SELECT count(*) FROM calls"), 12);
}

#[test]
fn a_flood_of_idle_connections_is_bounded_and_a_callback_still_gets_in() {
    let env = Env::new(&base_config("max_connections = 16\n"));
    let d = env.start();
    let pid = d.child.id();
    let idle: Vec<TcpStream> = (0..300)
        .filter_map(|_| TcpStream::connect(d.addr).ok())
        .collect();
    for i in 0..5 {
        let (status, took) = timed_post(&d, &format!("CAflood{i}"));
        assert_eq!(status, 200, "{}", d.log_text());
        assert!(took < Duration::from_secs(3), "{took:?}");
    }
    // 16 connection threads at most, plus the daemon's own few. Threads of evicted
    // connections may take a moment to finish on a loaded machine: wait for that (a
    // daemon that keeps every connection would stay far above).
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut threads = proc_status(pid, "Threads");
    while threads > 16 + 12 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        threads = proc_status(pid, "Threads");
    }
    assert!(threads <= 16 + 12, "{threads} threads");
    drop(idle);
    // An idle keep-alive connection is closed after a few seconds.
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let t = Instant::now();
    let mut buf = [0u8; 16];
    assert_eq!(s.read(&mut buf).unwrap_or(0), 0);
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
    // A huge head: 431.
    let head = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    assert_eq!(raw_request(d.addr, head.as_bytes(), false).status, 431);
}

#[test]
fn running_out_of_file_descriptors_is_survived() {
    // Few descriptors: accept() fails with EMFILE. The daemon used to stop accepting for
    // good; now it backs off, frees an idle connection, and keeps serving.
    let env = Env::new(&base_config(""));
    let d = Daemon::start_wrapped(&env, Vec::new(), &["prlimit", "--nofile=48:48", "--"]);
    let held: Vec<TcpStream> = (0..80)
        .filter_map(|_| TcpStream::connect(d.addr).ok())
        .collect();
    assert!(
        d.wait_log("cannot accept connections", Duration::from_secs(10)),
        "{}",
        d.log_text()
    );
    let (status, _) = timed_post(&d, "CAemfile1");
    assert_eq!(status, 200, "{}", d.log_text());
    drop(held);
    assert_eq!(timed_post(&d, "CAemfile2").0, 200);
    assert_eq!(get(d.addr, "/healthz", &[]).status, 200);
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn protocol_edges() {
    let env = Env::new(&base_config("").replace(
        &format!("token = \"{EXPORT_TOKEN}\""),
        &format!("token = \"  {EXPORT_TOKEN}\\n\""),
    ));
    let d = env.start();
    for (raw, want) in [
        (&b"GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n"[..], 505),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
        (
            b"GET /healthz HTTP/1.1\r\nHost: x\nX-Injected: 1\r\n\r\n",
            400,
        ),
        (
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            400,
        ),
        (
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nExpect: something\r\n\r\n",
            417,
        ),
    ] {
        assert_eq!(
            raw_request(d.addr, raw, false).status,
            want,
            "{}",
            String::from_utf8_lossy(raw)
        );
    }
    // The auth scheme is case-insensitive; the inline token was trimmed.
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let h = vec![("Authorization", format!("{scheme} {EXPORT_TOKEN}"))];
        assert_eq!(get(d.addr, "/calls.csv", &h).status, 200, "{scheme}");
    }
    // HTTP/1.0 gets an answer and the connection closes after it.
    let r = raw_request(d.addr, b"GET /healthz HTTP/1.0\r\n\r\n", false);
    assert_eq!((r.status, r.text().as_str()), (200, "ok\n"));
    // Still healthy after all that.
    assert_eq!(timed_post(&d, "CAedges").0, 200);
}

#[test]
fn log_lines_and_error_bodies_cannot_be_forged() {
    let env = Env::new(&base_config(""));
    let d = env.start();
    // A JSON key with a line break and an escape sequence, in a body that is refused.
    let body = br#"{"CallSid":"CA1","x\n[ERROR] forged line\u001b[31m":{"a":1}}"#;
    let r = request(
        d.addr,
        "POST",
        "/call-tracking/webhook",
        &[("Content-Type", "application/json".into())],
        body,
    );
    assert_eq!(r.status, 400);
    let text = r.text();
    assert_eq!(text.matches('\n').count(), 1, "{text:?}");
    assert!(!text.contains('\x1b'), "{text:?}");
    // A header value with an escape character is refused by the HTTP layer.
    let r = raw_request(
        d.addr,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: \x1b[2J\r\n\r\n",
        false,
    );
    assert_eq!(r.status, 400);
    assert!(d.wait_log("forged line", Duration::from_secs(5)));
    let log = d.log_text();
    assert!(
        log.lines()
            .all(|l| !l.trim_start().starts_with("[ERROR] forged")),
        "{log}"
    );
    assert!(!log.contains('\x1b'), "{log}");
}

#[test]
fn a_database_deleted_under_the_daemon_is_noticed_before_the_next_200() {
    let env = Env::new(&base_config(""));
    let d = env.start();
    assert_eq!(timed_post(&d, "CAdel1").0, 200);
    std::fs::remove_file(env.db()).unwrap();
    assert_eq!(timed_post(&d, "CAdel2").0, 503);
    assert!(
        d.wait_log("was deleted", Duration::from_secs(10)),
        "{}",
        d.log_text()
    );
    assert_eq!(get(d.addr, "/healthz", &[]).status, 503);
    assert_eq!(timed_post(&d, "CAdel3").0, 503);
    drop(d);

    // Replaced (a copy moved over it): the same.
    let env = Env::new(&base_config(""));
    let d = env.start();
    assert_eq!(timed_post(&d, "CArep1").0, 200);
    let copy = env.dir.path().join("copy.db");
    let o = env.run(&[
        "backup",
        "--config",
        env.config().to_str().unwrap(),
        copy.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0));
    std::fs::rename(&copy, env.db()).unwrap();
    assert_eq!(timed_post(&d, "CArep2").0, 503);
    assert!(
        d.wait_log("was replaced", Duration::from_secs(10)),
        "{}",
        d.log_text()
    );
    assert_eq!(get(d.addr, "/healthz", &[]).status, 503);
}

#[test]
fn a_slow_download_holds_no_snapshot_back() {
    let env = Env::new(&base_config(""));
    seed_calls(&env, 100_000);
    let d = env.start();
    let mut download = Download::start(d.addr);
    download.read(1024);
    // 1,500 callbacks while the download crawls (it reads nothing meanwhile).
    for i in 0..1500 {
        assert_eq!(timed_post(&d, &format!("CAwal{i}")).0, 200);
    }
    // The download, still open and unread, holds no snapshot: a checkpoint can copy
    // every frame of the log (before, the export's one long read transaction kept every
    // frame after its start in the log, which grew with each callback).
    let c = rusqlite::Connection::open(env.db()).unwrap();
    let (busy, log, copied): (i64, i64, i64) = c
        .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    assert_eq!((busy, log), (0, copied), "frames held back by a reader");
    drop(c);
    let wal = std::fs::metadata(env.dir.path().join("calls.db-wal"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert!(wal < 48 * 1024 * 1024, "WAL {wal} bytes");
    assert!(download.finish() > 100_000);
}

#[test]
fn the_wal_shrinks_back_after_an_outside_reader_ends() {
    let env = Env::new(&base_config("metrics_listen = \"127.0.0.1:0\"\n"));
    let d = env.start();
    let maddr = d.metrics_addr();
    assert_eq!(timed_post(&d, "CAout0").0, 200);
    // An outside reader holds a snapshot: checkpoints cannot finish, the WAL grows.
    let reader = rusqlite::Connection::open(env.db()).unwrap();
    reader
        .execute_batch("BEGIN; SELECT count(*) FROM calls;")
        .unwrap();
    let n: i64 = reader
        .query_row("SELECT count(*) FROM calls", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
    for i in 0..800 {
        assert_eq!(timed_post(&d, &format!("CAout{}", i + 1)).0, 200);
    }
    let grown = metric(maddr, "calltrackd_wal_bytes");
    assert!(grown > 8.0 * 1024.0 * 1024.0, "WAL only {grown} bytes");
    reader.execute_batch("COMMIT").unwrap();
    drop(reader);
    // Once the reader is gone, the WAL is cut back without any further write.
    let start = Instant::now();
    while metric(maddr, "calltrackd_wal_bytes") > 8.0 * 1024.0 * 1024.0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the WAL stayed at {} bytes",
            metric(maddr, "calltrackd_wal_bytes")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(count(&env.db(), "SELECT count(*) FROM calls"), 801);
}

/// Timing-sensitive: run alone (CI runs it with the other ignored tests, after the
/// suite), not beside seventy other tests on two cores.
#[test]
#[ignore = "timing-sensitive: run alone with `cargo test -- --ignored`"]
fn sixteen_crawling_downloads_never_hold_up_twilio() {
    let env = Env::new(&base_config(""));
    seed_calls(&env, 200_000);
    let d = env.start();
    // Sixteen downloads of 200,000 calls, each reading about 1 kB a second.
    let stop = Arc::new(AtomicBool::new(false));
    let downloads: Vec<_> = (0..16)
        .map(|_| {
            let stop = Arc::clone(&stop);
            let mut download = Download::start(d.addr);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    download.read(100);
                    std::thread::sleep(Duration::from_millis(100));
                }
                download.finish()
            })
        })
        .collect();
    let mut worst = Duration::ZERO;
    for i in 0..60 {
        let (status, took) = timed_post(&d, &format!("CAcrawl{i}"));
        assert_eq!(status, 200);
        worst = worst.max(took);
    }
    stop.store(true, Ordering::Relaxed);
    // The downloads then complete, whole.
    for h in downloads {
        let lines = h.join().unwrap();
        assert!(lines > 200_000, "{lines} lines");
    }
    assert!(
        worst < Duration::from_millis(100),
        "slowest callback {worst:?}"
    );
}

#[test]
fn files_are_private_and_never_follow_a_planted_link() {
    let env = Env::new(&base_config(""));
    // umask 000: the database, its WAL and its -shm are still 0600.
    let d = Daemon::start_wrapped(
        &env,
        Vec::new(),
        &["sh", "-c", "umask 000; exec \"$0\" \"$@\""],
    );
    assert_eq!(timed_post(&d, "CAmode").0, 200);
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    for suffix in ["", "-wal", "-shm"] {
        let p = env.dir.path().join(format!("calls.db{suffix}"));
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
    // A workbook over HTTP leaves no file behind in the database's folder.
    let files = || std::fs::read_dir(env.dir.path()).unwrap().count();
    let before = files();
    let r = get(d.addr, "/calls.xlsx", &bearer());
    assert_eq!(r.status, 200);
    assert_eq!(files(), before);

    // A backup is 0600 too, even made under umask 000.
    let cfg = env.config();
    let backup = env.dir.path().join("b.db");
    let o = std::process::Command::new("sh")
        .args(["-c", "umask 000; exec \"$0\" \"$@\""])
        .arg(bin())
        .args(["backup", "--config", cfg.to_str().unwrap()])
        .arg(&backup)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(mode(&backup), 0o600);

    // export --output: never over an existing file without --force, never through a
    // planted symlink, and its partial file is not at a name another user can guess.
    let victim = env.dir.path().join("victim");
    std::fs::write(&victim, "keep me").unwrap();
    let out = env.dir.path().join("out.csv");
    std::os::unix::fs::symlink(&victim, &out).unwrap();
    std::os::unix::fs::symlink(&victim, env.dir.path().join(".out.csv.partial")).unwrap();
    let export = |force: bool| {
        let mut args = vec![
            "export",
            "--config",
            cfg.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ];
        if force {
            args.push("--force");
        }
        env.run(&args)
    };
    let o = export(false);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--force"));
    let o = export(true);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
    let meta = std::fs::symlink_metadata(&out).unwrap();
    assert!(meta.file_type().is_file());
    assert_eq!(mode(&out), 0o600);
    assert!(
        std::fs::read_to_string(&out)
            .unwrap()
            .starts_with("call_sid,")
    );
}

#[test]
fn secrets_are_never_echoed_in_type_errors() {
    let secret = "31415926535";
    let bad = base_config("").replace(
        &format!("token = \"{EXPORT_TOKEN}\""),
        &format!("token = {secret}"),
    );
    let env = Env::new(&bad);
    let o = env.run(&["check-config", "--config", env.config().to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("invalid type") && !err.contains(secret),
        "{err}"
    );
    // The same file on SIGHUP: refused, and the log does not show it either.
    let env = Env::new(&base_config(""));
    let d = env.start();
    env.write_config(&bad);
    d.signal(libc::SIGHUP);
    assert!(d.wait_log("reload refused", Duration::from_secs(10)));
    assert!(!d.log_text().contains(secret), "{}", d.log_text());
}

#[test]
fn replays_with_repeated_pairs_or_shifted_boundaries_add_nothing() {
    let env = Env::new(&base_config(""));
    let d = env.start();
    let url = d.webhook_url();
    let mut p = status("CAshift1", TRACKING, "completed", TS, Some("47"));
    p.push(("Extra".into(), "1".into()));
    assert_eq!(d.post_form(&borrow(&p)).status, 200);
    let calls_before = count(&env.db(), "SELECT count(*) FROM calls");
    // The same pairs with one repeated: the signature is the same, so it is a replay.
    let sig = sign(TOKEN, &url, &borrow(&p));
    let mut repeated = p.clone();
    repeated.push(("Extra".into(), "1".into()));
    assert_eq!(sign(TOKEN, &url, &borrow(&repeated)), sig);
    assert_eq!(
        d.post_form_signed(&borrow(&repeated), Some(&sig)).status,
        200
    );
    assert_eq!(
        count(
            &env.db(),
            "SELECT count(*) FROM events WHERE duplicate_of IS NOT NULL"
        ),
        1
    );
    // The boundary between CallSid's value and the next name moved: the signature still
    // matches, the request must not.
    let mut shifted: Vec<(String, String)> = p
        .iter()
        .filter(|(k, _)| k != "CallStatus")
        .cloned()
        .collect();
    set(&mut shifted, "CallSid", "CAshift1CallStatuscompleted");
    assert_eq!(sign(TOKEN, &url, &borrow(&shifted)), sig);
    assert_eq!(
        d.post_form_signed(&borrow(&shifted), Some(&sig)).status,
        400
    );
    // A known parameter with a malformed value, validly signed: 400.
    let mut bad = p.clone();
    set(&mut bad, "CallDuration", "47abc");
    assert_eq!(d.post_form(&borrow(&bad)).status, 400);
    let mut twice = p.clone();
    twice.push(("CallStatus".into(), "busy".into()));
    assert_eq!(d.post_form(&borrow(&twice)).status, 400);
    assert_eq!(count(&env.db(), "SELECT count(*) FROM calls"), calls_before);
    assert_eq!(count(&env.db(), "SELECT count(*) FROM events"), 2);
}
