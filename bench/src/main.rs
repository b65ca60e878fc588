//! `calltrackd-bench`: the load generator and the benchmarks, as ratios against baselines
//! run on the same machine in the same run (`--help` for each command).
//!
//! ```text
//! calltrackd-bench ingest [--rounds 3] [--connections 16] [--requests 20000] [--workers 8]
//!                         [--flask] [--binary PATH]
//!     per round, side by side: a bare tiny_http server (the ceiling), the durable limit
//!     (tiny_http handing each raw body to one writer thread that appends it to SQLite,
//!     WAL, synchronous=FULL, and commits whatever has queued before answering: the least
//!     any server that keeps every request durable before its 200 can do here), and
//!     calltrackd; then medians and ranges over the rounds
//! calltrackd-bench fire --url URL --token TOKEN [--connections N] [--requests N] [--db FILE]
//!     the load alone, against any URL; with --db, verifies calltrackd's database
//!     with --previous PATH, that build (e.g. the commit before a change) too, in the
//!     same rounds: calltrackd / previous
//! calltrackd-bench export [--rows 1000000]
//!     calltrackd export (CLI and HTTP) vs `sqlite3 -csv` on the same rows; peak RSS
//! calltrackd-bench report [--calls 1000000]
//!     GET /report over that many calls (a year of them): the last 30 days and the whole
//!     year, against `sqlite3` counting the same calls by outcome straight from `calls`;
//!     the daemon's peak RSS
//! calltrackd-bench requalify [--calls 1000000]
//!     `calltrackd requalify` over that many stored calls (3 events each): time and peak
//!     RSS; then again while the daemon takes webhooks, with their latency against an
//!     idle daemon's
//! ```
//!
//! Run it from a release build: `cargo run --release -p calltrackd-bench -- ingest`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use calltrackd::config::Secret;
use calltrackd::signature;
use clap::{Args, Parser};

/// Load generator and benchmarks for calltrackd, as ratios against baselines measured in
/// the same run.
#[derive(Parser)]
#[command(name = "calltrackd-bench")]
enum Cli {
    /// Ingest: bare server, durable limit and calltrackd, side by side, over rounds
    Ingest(IngestArgs),
    /// Fire the load at any URL (another implementation, calltrackd behind a proxy)
    Fire(FireArgs),
    /// Export 1,000,000 calls: calltrackd (CLI and HTTP) vs sqlite3 -csv
    Export(ExportArgs),
    /// Requalify 1,000,000 stored calls: time, peak RSS, webhook latency meanwhile
    Requalify(RequalifyArgs),
    /// The report page over 1,000,000 calls: 30 days and a year, vs scanning the calls
    Report(RequalifyArgs),
}

#[derive(Args)]
struct RequalifyArgs {
    #[arg(long, default_value_t = 1_000_000)]
    calls: usize,
    /// Seed the database and its config into this folder, keep them, and stop (to
    /// profile `calltrackd requalify --config DIR/config.toml` by hand)
    #[arg(long, value_name = "DIR")]
    seed_only: Option<PathBuf>,
}

#[derive(Args)]
struct IngestArgs {
    /// Rounds; the servers alternate within each
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Keep-alive connections
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Distinct signed status callbacks per server and round
    #[arg(long, default_value_t = 20_000)]
    requests: usize,
    /// Worker threads of the baselines, and calltrackd's [server] workers
    #[arg(long, default_value_t = 8)]
    workers: usize,
    /// Also the Flask + Twilio SDK handler in tests/baseline (needs gunicorn)
    #[arg(long)]
    flask: bool,
    /// Measure this calltrackd binary (e.g. a previous build) instead of the sibling one
    #[arg(long, value_name = "PATH")]
    binary: Option<PathBuf>,
    /// Also measure this calltrackd binary (e.g. the build before a change) in every
    /// round, alternating with the others, and report calltrackd / previous
    #[arg(long, value_name = "PATH")]
    previous: Option<PathBuf>,
    /// Also measure calltrackd with a [[notify]] webhook target (every call final and
    /// qualified: two outbox rows and two deliveries per request, to a local sink) in
    /// every round, and report notifying / calltrackd
    #[arg(long)]
    notify: bool,
}

#[derive(Args)]
struct FireArgs {
    /// The webhook URL, http://host:port/path
    #[arg(long)]
    url: String,
    /// The auth token to sign with
    #[arg(long)]
    token: String,
    #[arg(long, default_value_t = 16)]
    connections: usize,
    #[arg(long, default_value_t = 20_000)]
    requests: usize,
    /// calltrackd's database, to verify every acknowledged call afterwards
    #[arg(long, value_name = "FILE")]
    db: Option<PathBuf>,
}

#[derive(Args)]
struct ExportArgs {
    #[arg(long, default_value_t = 1_000_000)]
    rows: usize,
}

fn main() {
    let result = match Cli::parse() {
        Cli::Ingest(a) => ingest(&a),
        Cli::Fire(a) => fire_cmd(&a),
        Cli::Export(a) => export(&a),
        Cli::Requalify(a) => requalify(&a),
        Cli::Report(a) => report_page(&a),
    };
    if let Err(e) = result {
        eprintln!("calltrackd-bench: {e}");
        std::process::exit(1);
    }
}

// ------------------------------------------------------------------ the load

/// One pre-built request (bytes) and its CallSid.
struct Prepared {
    sid: String,
    bytes: Vec<u8>,
}

fn prepare(
    url: &str,
    token: &str,
    n: usize,
    run: &str,
) -> Result<(SocketAddr, Vec<Prepared>), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("--url must be http://host:port/path")?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let addr: SocketAddr = authority
        .parse()
        .or_else(|_| {
            std::net::ToSocketAddrs::to_socket_addrs(authority)
                .map_err(|e| e.to_string())
                .and_then(|mut a| a.next().ok_or("no address".into()))
        })
        .map_err(|e| format!("--url host: {e}"))?;
    let token = Secret::new(token.to_owned());
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let sid = call_sid(run, i);
        // 10,000 callers, each calling a few times: first-time counting has earlier
        // calls to find, as in real traffic (one caller making every call would be the
        // robocaller case, not a shop's day).
        let caller = format!("+1415{:07}", 5_550_000 + i % 10_000);
        // Calls end in order, about a thousand a second (a burst); all last 47 s.
        let ended = chrono::DateTime::from_timestamp(1_772_463_647 + (i / 1000) as i64, 0)
            .unwrap_or_default()
            .to_rfc2822();
        let params: Vec<(String, String)> = [
            ("AccountSid", "AC00000000000000000000000000000000"),
            ("ApiVersion", "2010-04-01"),
            ("CallSid", sid.as_str()),
            ("CallStatus", "completed"),
            ("CallbackSource", "call-progress-events"),
            ("CallDuration", "47"),
            ("Called", "+18005551212"),
            ("Caller", caller.as_str()),
            ("CallerName", "JOHN SMITH"),
            ("Direction", "inbound"),
            ("Duration", "1"),
            ("From", caller.as_str()),
            ("FromCity", "SAN FRANCISCO"),
            ("FromCountry", "US"),
            ("FromState", "CA"),
            ("FromZip", "94103"),
            ("SequenceNumber", "0"),
            ("Timestamp", ended.as_str()),
            ("To", "+18005551212"),
            ("ToCity", "CHICAGO"),
            ("ToCountry", "US"),
            ("ToState", "IL"),
            ("ToZip", "60601"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let sig = signature::compute(&token, url, &signature::canonical_params(&params));
        let body = serde_urlencoded::to_string(&params).map_err(|e| e.to_string())?;
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/x-www-form-urlencoded\r\nX-Twilio-Signature: {sig}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body.as_bytes());
        out.push(Prepared { sid, bytes });
    }
    Ok((addr, out))
}

/// A CallSid shaped like Twilio's (`CA` and 32 random-looking hex digits), distinct for
/// each `(run, i)`: stored in key order they would flatter the database's indexes.
fn call_sid(run: &str, i: usize) -> String {
    fn mix(mut z: u64) -> u64 {
        // splitmix64
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    let seed = run.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let a = mix(seed ^ i as u64);
    format!("CA{:016x}{:016x}", a, mix(a))
}

struct LoadResult {
    elapsed: Duration,
    latencies: Vec<Duration>,
    acknowledged: Vec<String>,
    failed: usize,
}

impl LoadResult {
    fn rate(&self) -> f64 {
        self.acknowledged.len() as f64 / self.elapsed.as_secs_f64()
    }
    fn pct(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[i]
    }
}

/// Fires `reqs` over `conns` connections (kept alive when the server allows); each
/// request waits for its answer.
fn fire(addr: SocketAddr, reqs: Vec<Prepared>, conns: usize) -> LoadResult {
    let per = reqs.len().div_ceil(conns.max(1));
    let mut chunks: Vec<Vec<Prepared>> = Vec::new();
    let mut it = reqs.into_iter();
    loop {
        let c: Vec<Prepared> = it.by_ref().take(per).collect();
        if c.is_empty() {
            break;
        }
        chunks.push(c);
    }
    let start = Instant::now();
    let handles: Vec<_> = chunks
        .into_iter()
        .map(|chunk| std::thread::spawn(move || one_connection(addr, chunk)))
        .collect();
    let mut result = LoadResult {
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
        acknowledged: Vec::new(),
        failed: 0,
    };
    for h in handles {
        let (lat, ack, failed) = h.join().unwrap_or_default();
        result.latencies.extend(lat);
        result.acknowledged.extend(ack);
        result.failed += failed;
    }
    result.elapsed = start.elapsed();
    result.latencies.sort();
    result
}

fn one_connection(addr: SocketAddr, reqs: Vec<Prepared>) -> (Vec<Duration>, Vec<String>, usize) {
    let mut lat = Vec::with_capacity(reqs.len());
    let mut ack = Vec::with_capacity(reqs.len());
    let mut failed = 0;
    let mut conn: Option<(TcpStream, BufReader<TcpStream>)> = None;
    for r in reqs {
        if conn.is_none() {
            conn = TcpStream::connect(addr).ok().and_then(|s| {
                let _ = s.set_nodelay(true);
                let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
                s.try_clone().ok().map(|r| (s, BufReader::new(r)))
            });
        }
        let Some((w, rd)) = conn.as_mut() else {
            failed += 1;
            continue;
        };
        let t = Instant::now();
        let status = w.write_all(&r.bytes).ok().and_then(|_| read_response(rd));
        match status {
            Some((code, keep)) => {
                lat.push(t.elapsed());
                if code == 200 {
                    ack.push(r.sid);
                } else {
                    failed += 1;
                }
                if !keep {
                    conn = None;
                }
            }
            None => {
                failed += 1;
                conn = None;
            }
        }
    }
    (lat, ack, failed)
}

/// Reads one answer: its status, and whether the server keeps the connection open
/// (HTTP/1.1 unless `Connection: close`; HTTP/1.0 only with `keep-alive`), so that
/// servers without keep-alive (gunicorn's sync workers, Werkzeug) can be measured too.
fn read_response(r: &mut BufReader<TcpStream>) -> Option<(u16, bool)> {
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut status_line = line.split_whitespace();
    let mut keep = status_line.next()? == "HTTP/1.1";
    let status: u16 = status_line.next()?.parse().ok()?;
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().ok()?;
            } else if k.eq_ignore_ascii_case("connection") {
                keep = v.trim().eq_ignore_ascii_case("keep-alive");
            }
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some((status, keep))
}

/// Every acknowledged call has exactly one call row and one event.
fn verify_db(db: &Path, acknowledged: &[String]) -> Result<(), String> {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| e.to_string())?;
    // One pass over each table: the CallSid columns carry no index of their own.
    let per_sid = |table: &str| -> Result<HashMap<String, i64>, String> {
        let sql = format!("SELECT call_sid, count(*) FROM {table} GROUP BY call_sid");
        let mut stmt = c.prepare(&sql).map_err(|e| e.to_string())?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| e.to_string())?;
        rows.collect::<Result<_, _>>().map_err(|e| e.to_string())
    };
    let calls = per_sid("calls")?;
    let events = per_sid("events")?;
    for sid in acknowledged {
        let n = calls.get(sid).copied().unwrap_or(0);
        let e = events.get(sid).copied().unwrap_or(0);
        if n != 1 || e != 1 {
            return Err(format!(
                "call {sid}: {n} call rows and {e} events, expected 1 and 1"
            ));
        }
    }
    Ok(())
}

fn fire_cmd(o: &FireArgs) -> Result<(), String> {
    let run = format!("{:x}", std::process::id());
    let (addr, reqs) = prepare(&o.url, &o.token, o.requests, &run)?;
    let r = fire(addr, reqs, o.connections);
    report("load", &r);
    if let Some(db) = &o.db {
        verify_db(db, &r.acknowledged)?;
        println!(
            "verified: all {} acknowledged calls stored exactly once",
            r.acknowledged.len()
        );
    }
    Ok(())
}

fn report(name: &str, r: &LoadResult) {
    println!(
        "{name:<28} {:>9.0} req/s   p50 {:>7.3} ms   p99 {:>7.3} ms   max {:>8.3} ms   ok {:>6}   failed {}",
        r.rate(),
        r.pct(0.50).as_secs_f64() * 1e3,
        r.pct(0.99).as_secs_f64() * 1e3,
        r.latencies
            .last()
            .copied()
            .unwrap_or_default()
            .as_secs_f64()
            * 1e3,
        r.acknowledged.len(),
        r.failed
    );
}

// ------------------------------------------------------------------ ingest

/// `ingest --binary PATH`: measure another build (e.g. the previous one) against the
/// same baselines.
static OTHER_BINARY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

fn sibling_binary() -> Result<PathBuf, String> {
    if let Some(other) = OTHER_BINARY.get() {
        return Ok(other.clone());
    }
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let bin = me.with_file_name("calltrackd");
    if bin.exists() {
        Ok(bin)
    } else {
        Err(format!(
            "{} not found: build it first (cargo build --release)",
            bin.display()
        ))
    }
}

/// A tiny_http server that answers every request with `<Response/>` and does nothing
/// else: the ceiling for this machine, in this run.
fn bare_server(workers: usize) -> Result<(SocketAddr, Arc<AtomicBool>), String> {
    let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").map_err(|e| e.to_string())?);
    let addr = server.server_addr().to_ip().ok_or("no ip")?;
    let stop = Arc::new(AtomicBool::new(false));
    for _ in 0..workers {
        let s = Arc::clone(&server);
        std::thread::spawn(move || {
            while let Ok(mut rq) = s.recv() {
                let mut body = Vec::new();
                let _ = rq.as_reader().read_to_end(&mut body);
                let resp = tiny_http::Response::from_string(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response/>\n",
                )
                .with_header(
                    tiny_http::Header::from_bytes("Content-Type", "text/xml")
                        .expect("static header"),
                );
                let _ = rq.respond(resp);
            }
        });
    }
    Ok((addr, stop))
}

fn proc_status_kib(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

struct Daemon {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Writes a config file readable by its owner only (it holds a token).
fn write_config(path: &Path, text: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).map_err(|e| e.to_string())?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| e.to_string())
}

fn start_daemon(workers: usize, token: &str, binary: &Path, extra: &str) -> Result<Daemon, String> {
    let dir = std::env::temp_dir().join(format!("calltrackd-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let cfg = dir.join("config.toml");
    write_config(
        &cfg,
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nworkers = {workers}\n[storage]\npath = \"calls.db\"\n[twilio]\nauth_token = \"{token}\"\n[[numbers]]\nnumber = \"+18005551212\"\nuser = \"bench\"\nforward_to = \"+15558675309\"\n{extra}"
        ),
    )?;
    let (child, addr) = spawn_daemon_with(binary, &cfg)?;
    Ok(Daemon { child, addr, dir })
}

/// Starts `calltrackd serve --config cfg` (log to our stderr, warnings only) and
/// waits until it listens.
fn spawn_daemon(cfg: &Path) -> Result<(Child, SocketAddr), String> {
    spawn_daemon_with(&sibling_binary()?, cfg)
}

fn spawn_daemon_with(binary: &Path, cfg: &Path) -> Result<(Child, SocketAddr), String> {
    let mut child = Command::new(binary)
        .args(["serve", "--config"])
        .arg(cfg)
        .env("CALLTRACKD_LOG", "warn")
        .env_remove("TWILIO_AUTH_TOKEN")
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let stderr = child.stderr.take();
    std::thread::spawn(move || {
        if let Some(s) = stderr {
            for line in BufReader::new(s).lines().map_while(Result::ok) {
                eprintln!("  calltrackd: {line}");
            }
        }
    });
    // At warn level the "listening" line is not printed; find the port in /proc.
    let start = Instant::now();
    loop {
        if let Some(a) = listening_port(child.id()) {
            return Ok((child, a));
        }
        if start.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            return Err("calltrackd did not start listening".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The loopback TCP port a process listens on, from /proc (no log parsing needed).
fn listening_port(pid: u32) -> Option<SocketAddr> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let s = l.to_string_lossy().into_owned();
            s.strip_prefix("socket:[")
                .and_then(|r| r.strip_suffix(']'))
                .map(str::to_owned)
        })
        .collect();
    let tcp = std::fs::read_to_string("/proc/net/tcp").ok()?;
    for line in tcp.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() > 9 && f[3] == "0A" && inodes.iter().any(|i| i == f[9]) {
            let port = u16::from_str_radix(f[1].split(':').nth(1)?, 16).ok()?;
            return Some(SocketAddr::from(([127, 0, 0, 1], port)));
        }
    }
    None
}

/// One server's figures in one round.
struct Figures {
    rate: f64,
    p99_ms: f64,
}

fn figures(r: &LoadResult) -> Figures {
    Figures {
        rate: r.rate(),
        p99_ms: r.pct(0.99).as_secs_f64() * 1e3,
    }
}

/// Median and range of a list, as "median (min–max)".
fn spread(mut v: Vec<f64>, digits: usize) -> String {
    v.sort_by(|a, b| a.total_cmp(b));
    let med = if v.is_empty() {
        0.0
    } else if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    format!(
        "{med:.digits$} ({:.digits$}–{:.digits$})",
        v.first().copied().unwrap_or(0.0),
        v.last().copied().unwrap_or(0.0)
    )
}

/// Loads a fresh instance of one kind of server and measures it.
fn measure(
    kind: &str,
    o: &IngestArgs,
    token: &str,
    round: usize,
) -> Result<(Figures, Option<(u64, u64)>), String> {
    let tag = format!("{}{round}", &kind[..1]);
    let (addr, idle, dir, child) = match kind {
        "bare" => (bare_server(o.workers)?.0, None, None, None),
        "durable" => {
            let dir = std::env::temp_dir().join(format!(
                "calltrackd-bench-durable-{}-{round}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            (
                durable_server(o.workers, &dir.join("raw.db"))?,
                None,
                Some(dir),
                None,
            )
        }
        _ => {
            let binary = match kind {
                "previous" => o.previous.clone().ok_or("no --previous")?,
                _ => sibling_binary()?,
            };
            let extra = if kind == "notifying" {
                let (sink, _) = bare_server(4)?;
                format!(
                    "[[notify]]\nkind = \"webhook\"\nevents = [\"call.completed\", \"call.qualified\"]\nurl = \"http://{sink}/hook\"\nsecret = \"whsec_YmVuY2gtc2lnbmluZy1rZXktMDEyMzQ1Njc4OWFi\"\n"
                )
            } else {
                String::new()
            };
            let d = start_daemon(o.workers, token, &binary, &extra)?;
            let idle = wait_idle_rss(d.child.id());
            (d.addr, Some(idle), None, Some(d))
        }
    };
    let url = format!("http://{addr}/call-tracking/webhook");
    let (_, warm) = prepare(&url, token, 2000, &format!("w{tag}"))?;
    fire(addr, warm, o.connections);
    let (_, reqs) = prepare(&url, token, o.requests, &tag)?;
    let r = fire(addr, reqs, o.connections);
    report(kind, &r);
    let mut rss = None;
    if let Some(d) = &child {
        let peak = proc_status_kib(d.child.id(), "VmHWM:").unwrap_or(0);
        verify_db(&d.dir.join("calls.db"), &r.acknowledged)?;
        rss = Some((idle.unwrap_or(0), peak));
    }
    if let Some(dir) = dir {
        let _ = std::fs::remove_dir_all(dir);
    }
    if r.failed > 0 {
        return Err(format!("{kind}: {} requests failed", r.failed));
    }
    Ok((figures(&r), rss))
}

fn ingest(o: &IngestArgs) -> Result<(), String> {
    if let Some(b) = &o.binary {
        let _ = OTHER_BINARY.set(b.clone());
    }
    let token = "bench-token";
    println!(
        "ingest: {} rounds of {} distinct signed status callbacks over {} keep-alive connections, {} workers",
        o.rounds, o.requests, o.connections, o.workers
    );
    let mut kinds = vec!["bare", "durable", "calltrackd"];
    if o.previous.is_some() {
        kinds.push("previous");
    }
    if o.notify {
        kinds.push("notifying");
    }
    let mut all: HashMap<&str, Vec<Figures>> = HashMap::new();
    let mut rss: Vec<(u64, u64)> = Vec::new();
    for round in 0..o.rounds {
        println!("round {}", round + 1);
        // Alternate the order from round to round.
        for k in 0..kinds.len() {
            let kind = kinds[(k + round) % kinds.len()];
            let (f, r) = measure(kind, o, token, round)?;
            all.entry(kind).or_default().push(f);
            if kind == "calltrackd" {
                rss.extend(r);
            }
        }
    }
    let get = |k: &str| all.get(k).map(Vec::as_slice).unwrap_or(&[]);
    let ratio = |a: &str, b: &str| -> Vec<f64> {
        get(a)
            .iter()
            .zip(get(b))
            .map(|(x, y)| x.rate / y.rate)
            .collect()
    };
    println!("\nmedians (ranges) over {} rounds:", o.rounds);
    for &k in &kinds {
        println!(
            "  {k:<11} {} req/s, p99 {} ms",
            spread(get(k).iter().map(|f| f.rate).collect(), 0),
            spread(get(k).iter().map(|f| f.p99_ms).collect(), 2)
        );
    }
    println!(
        "  calltrackd / durable limit = {} of the rate (per round)",
        spread(ratio("calltrackd", "durable"), 2)
    );
    println!(
        "  calltrackd / bare          = {} of the rate (per round)",
        spread(ratio("calltrackd", "bare"), 2)
    );
    if o.previous.is_some() {
        println!(
            "  calltrackd / previous      = {} of the rate (per round)",
            spread(ratio("calltrackd", "previous"), 3)
        );
        let p99 = |k: &str| get(k).iter().map(|f| f.p99_ms).collect::<Vec<_>>();
        println!(
            "  calltrackd / previous p99  = {} (per round)",
            spread(
                p99("calltrackd")
                    .iter()
                    .zip(p99("previous"))
                    .map(|(a, b)| a / b)
                    .collect(),
                3
            )
        );
    }
    if o.notify {
        println!(
            "  notifying / calltrackd     = {} of the rate (per round)",
            spread(ratio("notifying", "calltrackd"), 3)
        );
    }
    println!(
        "  calltrackd RSS: idle {} MiB, peak under load {} MiB",
        spread(rss.iter().map(|r| r.0 as f64 / 1024.0).collect(), 1),
        spread(rss.iter().map(|r| r.1 as f64 / 1024.0).collect(), 1)
    );
    if o.flask {
        let n = o.requests.min(5000);
        let f = start_flask(token)?;
        let url = format!("http://{}/call-tracking/webhook", f.addr);
        let (_, warm) = prepare(&url, token, 200, "wf")?;
        fire(f.addr, warm, o.connections);
        let (_, reqs) = prepare(&url, token, n, "f0")?;
        let flask = fire(f.addr, reqs, o.connections);
        report("Flask + Twilio SDK (gunicorn)", &flask);
        let ct = spread(get("calltrackd").iter().map(|f| f.rate).collect(), 0);
        println!(
            "  Flask + Twilio SDK: {:.0} req/s, p99 {:.2} ms ({n} requests); calltrackd {ct} req/s",
            flask.rate(),
            flask.pct(0.99).as_secs_f64() * 1e3
        );
    }
    Ok(())
}

/// calltrackd's RSS once it has settled after start (the same reading twice in a row).
fn wait_idle_rss(pid: u32) -> u64 {
    let mut last = 0;
    for _ in 0..50 {
        let now = proc_status_kib(pid, "VmRSS:").unwrap_or(0);
        if now == last && now > 0 {
            return now;
        }
        last = now;
        std::thread::sleep(Duration::from_millis(50));
    }
    last
}

/// The durable limit: tiny_http hands each raw body to one writer thread, which appends
/// whatever has queued to SQLite (WAL, `synchronous=FULL`) in one transaction and only
/// then lets the requests be answered. No parsing, no signature, no call rows: the least
/// any server that keeps every request durable before its 200 can do on this machine.
fn durable_server(workers: usize, db: &Path) -> Result<SocketAddr, String> {
    use std::sync::mpsc::{Sender, SyncSender, channel, sync_channel};
    let conn = rusqlite::Connection::open(db).map_err(|e| e.to_string())?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
         CREATE TABLE raw (id INTEGER PRIMARY KEY, body BLOB NOT NULL);",
    )
    .map_err(|e| e.to_string())?;
    let (tx, rx) = channel::<(Vec<u8>, SyncSender<bool>)>();
    std::thread::spawn(move || {
        let mut conn = conn;
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            while let Ok(more) = rx.try_recv() {
                batch.push(more);
            }
            let ok = (|| -> rusqlite::Result<()> {
                let t = conn.transaction()?;
                {
                    let mut stmt = t.prepare_cached("INSERT INTO raw (body) VALUES (?1)")?;
                    for (body, _) in &batch {
                        stmt.execute([body])?;
                    }
                }
                t.commit()
            })()
            .is_ok();
            for (_, done) in batch {
                let _ = done.send(ok);
            }
        }
    });
    let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").map_err(|e| e.to_string())?);
    let addr = server.server_addr().to_ip().ok_or("no ip")?;
    for _ in 0..workers {
        let s = Arc::clone(&server);
        let tx: Sender<(Vec<u8>, SyncSender<bool>)> = tx.clone();
        std::thread::spawn(move || {
            while let Ok(mut rq) = s.recv() {
                let mut body = Vec::new();
                let _ = rq.as_reader().read_to_end(&mut body);
                let (done, stored) = sync_channel(1);
                let ok = tx.send((body, done)).is_ok() && stored.recv().unwrap_or(false);
                let resp = tiny_http::Response::from_string(if ok {
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response/>\n"
                } else {
                    "storage failed\n"
                })
                .with_status_code(if ok { 200 } else { 503 });
                let _ = rq.respond(resp);
            }
        });
    }
    Ok(addr)
}

/// Starts `tests/baseline/flask_handler.py` under gunicorn (5 sync workers, as its
/// docs suggest for two cores) on a free loopback port and waits until it listens.
fn start_flask(token: &str) -> Result<Daemon, String> {
    let dir = std::env::temp_dir().join(format!("calltrackd-bench-flask-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let child = Command::new("gunicorn")
        .args(["-w", "5", "-b", &addr.to_string(), "--chdir"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/baseline"))
        .arg("flask_handler:app")
        .env("TWILIO_AUTH_TOKEN", token)
        .env("CALLS_DB", dir.join("flask-calls.db"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            format!("{e} (--flask needs: apt-get install python3-flask python3-twilio gunicorn)")
        })?;
    let daemon = Daemon { child, addr, dir };
    let start = Instant::now();
    while TcpStream::connect(addr).is_err() {
        if start.elapsed() > Duration::from_secs(15) {
            return Err("gunicorn did not start listening".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(daemon)
}

// ------------------------------------------------------------------ export

fn run_measured(cmd: &mut Command) -> Result<(Duration, u64), String> {
    run_measured_to(cmd, Stdio::null())
}

/// [`run_measured`] with the command's stdout going to `out`. The peak RSS is the
/// child's own `VmHWM`, read from /proc while it runs (it restarts at `exec`), not
/// `wait4`'s `ru_maxrss`, which also counts the forked copy of this process before the
/// `exec` (this process holds a large database cache after seeding).
fn run_measured_to(cmd: &mut Command, out: Stdio) -> Result<(Duration, u64), String> {
    let start = Instant::now();
    let mut child = cmd
        .stdout(out)
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    let pid = child.id();
    let mut peak = 0;
    loop {
        if let Some(hwm) = proc_status_kib(pid, "VmHWM:") {
            peak = peak.max(hwm);
        }
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(status) if status.success() => return Ok((start.elapsed(), peak)),
            Some(_) => return Err(format!("{cmd:?} failed")),
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn export(o: &ExportArgs) -> Result<(), String> {
    let rows = o.rows;
    let dir = std::env::temp_dir().join(format!("calltrackd-bench-export-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let db = dir.join("calls.db");
    let cfg = dir.join("config.toml");
    write_config(
        &cfg,
        "[server]\nlisten = \"127.0.0.1:0\"\n[storage]\npath = \"calls.db\"\n[twilio]\nauth_token = \"t\"\n[export]\ntoken = \"bench-export\"\ntimezone = \"America/Chicago\"\n[[numbers]]\nnumber = \"+18005551212\"\nuser = \"acme-plumbing\"\n",
    )?;
    println!("export: seeding {rows} calls ...");
    {
        let c = calltrackd::storage::open_writer(&db).map_err(|e| e.to_string())?;
        c.execute_batch(&format!(
            "BEGIN;
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
             INSERT INTO calls (id, call_sid, user, tracking_number, source, caller,
                caller_name, caller_city, caller_state, direction, status, answered, qualified,
                duration_seconds, talk_seconds, started_at, ended_at, forwarded,
                min_duration_seconds, updated_at, state)
             SELECT i, printf('CA%032d', i), 'acme-plumbing', '+18005551212', 'Google Ads',
                '+1415555' || printf('%04d', i % 10000), 'JOHN SMITH', 'SAN FRANCISCO', 'CA', 'inbound',
                'completed', 1, i % 3 > 0, 60 + i % 300, 40 + i % 200, 1767225600 + i * 30,
                1767225660 + i * 30, 1, 30, 'now', NULL FROM n;
             COMMIT;"
        ))
        .map_err(|e| e.to_string())?;
    }
    let cols = calltrackd::export::COLUMNS[..16].join(", ");
    let sql = format!("SELECT {cols} FROM calls ORDER BY started_at, call_sid");
    let bin = sibling_binary()?;
    let mut best: [(Duration, u64); 2] = [(Duration::MAX, 0); 2];
    for _ in 0..3 {
        let base = run_measured(
            Command::new("sqlite3")
                .args(["-csv", "-header"])
                .arg(&db)
                .arg(&sql),
        )
        .map_err(|e| format!("{e} (is sqlite3 installed? apt-get install sqlite3)"))?;
        let ours = run_measured(Command::new(&bin).args(["export", "--config"]).arg(&cfg))?;
        for (slot, m) in best.iter_mut().zip([base, ours]) {
            if m.0 < slot.0 {
                *slot = m;
            }
        }
    }
    let [(bt, brss), (ot, orss)] = best;
    println!(
        "sqlite3 -csv (baseline)      {:>7.2} s   peak RSS {:>6.1} MiB",
        bt.as_secs_f64(),
        brss as f64 / 1024.0
    );
    println!(
        "calltrackd export (CLI)      {:>7.2} s   peak RSS {:>6.1} MiB",
        ot.as_secs_f64(),
        orss as f64 / 1024.0
    );
    println!(
        "ratio: calltrackd / sqlite3 = {:.2}x the time",
        ot.as_secs_f64() / bt.as_secs_f64()
    );

    // Over HTTP: the daemon's peak RSS while streaming all rows.
    let (mut child, addr) = spawn_daemon(&cfg)?;
    let pid = child.id();
    let before = proc_status_kib(pid, "VmRSS:").unwrap_or(0);
    let t = Instant::now();
    let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    write!(s, "GET /calls.csv HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer bench-export\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut total = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n as u64,
            Err(e) => return Err(e.to_string()),
        }
    }
    let http = t.elapsed();
    let peak = proc_status_kib(pid, "VmHWM:").unwrap_or(0);
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "calltrackd GET /calls.csv    {:>7.2} s   daemon RSS {:.1} MiB before, peak {:.1} MiB ({:.0} MB sent)",
        http.as_secs_f64(),
        before as f64 / 1024.0,
        peak as f64 / 1024.0,
        total as f64 / 1e6
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

// ------------------------------------------------------------------ requalify

/// Stores `n` forwarded calls, three events each (incoming, `<Dial action>`, final
/// status), with rows decided by an older rule, straight into a fresh database.
fn seed_calls(db: &Path, n: usize) -> Result<(), String> {
    let c = calltrackd::storage::open_writer(db).map_err(|e| e.to_string())?;
    // 100,000 callers over a year (about ten calls each); a quarter not answered.
    c.execute_batch(&format!(
        "PRAGMA synchronous = OFF;
         BEGIN;
         CREATE TEMP TABLE n AS
           WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n})
           SELECT i, printf('CA%032x', i * 2654435761 % 4294967296 * 65536 + i) AS sid,
                  '+1415' || printf('%07d', 5550000 + (i * 7919) % 100000) AS caller,
                  1735689600 + i * 30 AS t, i % 4 = 0 AS missed, 20 + i % 100 AS talk
           FROM n;
         INSERT INTO events (id, call_id, received_at, call_sid, kind, answer, content_sha256,
             method, path, content_type, body, direction, from_number, to_number, call_status,
             sequence_number, timestamp, call_duration, dial_call_status, dial_call_duration,
             caller_name, from_city, from_state, to_city, to_state, received_unix)
           SELECT 3 * i - 2, 3 * i - 2, 'x', sid, 'incoming', 'dial', randomblob(32), 'POST',
             '/call-tracking/webhook', 'application/x-www-form-urlencoded', x'00', 'inbound',
             caller, '+18005551212', 'ringing', NULL, NULL, NULL, NULL, NULL, '', '', '', '',
             '', t FROM n;
         INSERT INTO events (id, call_id, received_at, call_sid, kind, answer, content_sha256,
             method, path, content_type, body, direction, from_number, to_number, call_status,
             sequence_number, timestamp, call_duration, dial_call_status, dial_call_duration,
             caller_name, from_city, from_state, to_city, to_state, received_unix)
           SELECT 3 * i - 1, 3 * i - 2, 'x', sid, 'dial_action', 'ack', randomblob(32), 'POST',
             '/call-tracking/webhook', 'application/x-www-form-urlencoded', x'00', 'inbound',
             caller, '+18005551212', 'in-progress', NULL, NULL, NULL,
             CASE WHEN missed THEN 'no-answer' ELSE 'completed' END,
             CASE WHEN missed THEN NULL ELSE talk END, '', '', '', '', '', t + 5 + talk FROM n;
         INSERT INTO events (id, call_id, received_at, call_sid, kind, answer, content_sha256,
             method, path, content_type, body, direction, from_number, to_number, call_status,
             sequence_number, timestamp, call_duration, dial_call_status, dial_call_duration,
             caller_name, from_city, from_state, to_city, to_state, received_unix)
           SELECT 3 * i, 3 * i - 2, 'x', sid, 'status', 'ack', randomblob(32), 'POST',
             '/call-tracking/webhook', 'application/x-www-form-urlencoded', x'00', 'inbound',
             caller, '+18005551212', 'completed', 0, t + 5 + talk, 5 + talk, NULL, NULL, '', '',
             '', '', '', t + 5 + talk FROM n;
         INSERT INTO sids (call_sid, call_id) SELECT sid, 3 * i - 2 FROM n;
         INSERT INTO calls (id, call_sid, user, tracking_number, source, caller, caller_name,
             caller_city, caller_state, direction, status, answered, qualified, duration_seconds,
             talk_seconds, started_at, ended_at, forwarded, min_duration_seconds, updated_at,
             outcome, ring_seconds, caller_key)
           SELECT 3 * i - 2, sid, 'acme-plumbing', '+18005551212',
             CASE i % 3 WHEN 0 THEN 'Google Ads' WHEN 1 THEN 'Yard signs' ELSE 'Flyer' END,
             caller, '', '', '', 'inbound', 'completed', NOT missed, NOT missed AND talk >= 30,
             5 + talk, CASE WHEN missed THEN 0 ELSE talk END, t, t + 5 + talk, 1, 30, 'x',
             CASE WHEN missed THEN 'missed' ELSE 'answered' END, 5, 'u acme-plumbing ' || caller
           FROM n;
         DROP TABLE temp.n;
         -- Rows as the daemon keeps them: nothing left for a start-up pass to redo.
         DELETE FROM meta WHERE key = 'rederive';
         COMMIT;"
    ))
    .map_err(|e| e.to_string())
}

/// Sends signed requests one at a time until `until` says stop; their latencies.
fn latencies_while(
    addr: SocketAddr,
    reqs: Vec<Prepared>,
    until: &dyn Fn() -> bool,
) -> Result<Vec<Duration>, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut r = BufReader::new(s.try_clone().map_err(|e| e.to_string())?);
    let mut lat = Vec::new();
    for p in reqs {
        if until() {
            break;
        }
        let t = Instant::now();
        s.write_all(&p.bytes).map_err(|e| e.to_string())?;
        match read_response(&mut r) {
            Some((200, _)) => lat.push(t.elapsed()),
            other => return Err(format!("webhook answered {other:?}")),
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    lat.sort();
    Ok(lat)
}

fn latency_line(name: &str, lat: &[Duration]) {
    let p = |q: f64| {
        lat.get(((lat.len().max(1) - 1) as f64 * q).round() as usize)
            .copied()
            .unwrap_or_default()
            .as_secs_f64()
            * 1e3
    };
    println!(
        "{name:<34} {:>6} webhooks   p50 {:>6.2} ms   p99 {:>6.2} ms   max {:>6.2} ms",
        lat.len(),
        p(0.5),
        p(0.99),
        p(1.0)
    );
}

fn requalify(o: &RequalifyArgs) -> Result<(), String> {
    let dir = match &o.seed_only {
        Some(d) => d.clone(),
        None => {
            std::env::temp_dir().join(format!("calltrackd-bench-requalify-{}", std::process::id()))
        }
    };
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let db = dir.join("calls.db");
    let cfg = dir.join("config.toml");
    let config = |min: u32| {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[storage]\npath = \"calls.db\"\n[twilio]\nauth_token = \"bench-token\"\n[qualify]\nmin_duration_seconds = {min}\n[[numbers]]\nnumber = \"+18005551212\"\nuser = \"acme-plumbing\"\nsource = \"Google Ads\"\nforward_to = \"+15558675309\"\n"
        )
    };
    println!("requalify: seeding {} calls (3 events each) ...", o.calls);
    let t = Instant::now();
    seed_calls(&db, o.calls)?;
    // Seeding leaves a gigabyte of dirty pages for the kernel to write back; let it
    // finish first, or requalify's flushes queue behind that writeback (it doubled the
    // times measured).
    std::fs::File::open(&db)
        .and_then(|f| f.sync_all())
        .map_err(|e| e.to_string())?;
    println!("  seeded in {:.1} s", t.elapsed().as_secs_f64());
    if o.seed_only.is_some() {
        write_config(&cfg, &config(60))?;
        println!("  kept in {}", dir.display());
        return Ok(());
    }
    let bin = sibling_binary()?;
    let run = |min: u32| -> Result<(Duration, u64, String), String> {
        write_config(&cfg, &config(min))?;
        let out = dir.join("requalify.out");
        let file = std::fs::File::create(&out).map_err(|e| e.to_string())?;
        let (took, rss) = run_measured_to(
            Command::new(&bin).args(["requalify", "--config"]).arg(&cfg),
            Stdio::from(file),
        )?;
        let text = std::fs::read_to_string(&out).map_err(|e| e.to_string())?;
        let last = text.lines().last().unwrap_or_default().to_owned();
        Ok((took, rss, last))
    };
    // First run: the seeded rows have no folded events yet (as after an upgrade from
    // schema 2): every call's events are read, and every row is written.
    let (took, rss, summary) = run(60)?;
    println!(
        "requalify, events folded afresh    {:>7.2} s   peak RSS {:>6.1} MiB\n  {summary}",
        took.as_secs_f64(),
        rss as f64 / 1024.0
    );
    // The usual case: a threshold changed; every answered call is written again.
    let (took, rss, summary) = run(45)?;
    println!(
        "requalify, threshold 60 -> 45 s    {:>7.2} s   peak RSS {:>6.1} MiB\n  {summary}",
        took.as_secs_f64(),
        rss as f64 / 1024.0
    );

    // While the daemon takes webhooks: their latency, idle vs during a requalify that
    // changes every answered call's qualification again.
    write_config(&cfg, &config(45))?;
    let (mut child, addr) = spawn_daemon(&cfg)?;
    let url = format!("http://{addr}/call-tracking/webhook");
    let (_, reqs) = prepare(&url, "bench-token", 60_000, "rq")?;
    let mut reqs = reqs.into_iter();
    let idle = latencies_while(addr, reqs.by_ref().take(2000).collect(), &|| false)?;
    latency_line("webhooks, daemon idle", &idle);
    write_config(&cfg, &config(30))?;
    let out = std::fs::File::create(dir.join("requalify2.out")).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut rq = Command::new(&bin)
        .args(["requalify", "--config"])
        .arg(&cfg)
        .stdout(out)
        .spawn()
        .map_err(|e| e.to_string())?;
    let finished = std::sync::atomic::AtomicBool::new(false);
    let during = std::thread::scope(|sc| {
        let h = sc.spawn(|| {
            latencies_while(addr, reqs.collect(), &|| {
                finished.load(std::sync::atomic::Ordering::Relaxed)
            })
        });
        let status = rq.wait();
        finished.store(true, std::sync::atomic::Ordering::Relaxed);
        (status, h.join())
    });
    let took = started.elapsed();
    let (status, lat) = during;
    if !status.map(|s| s.success()).unwrap_or(false) {
        return Err("requalify failed while the daemon ran".into());
    }
    let lat = lat.map_err(|_| "latency thread panicked")??;
    latency_line("webhooks, during requalify", &lat);
    println!(
        "calltrackd requalify (daemon up)   {:>7.2} s",
        took.as_secs_f64()
    );
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

// ------------------------------------------------------------------ report

fn report_page(o: &RequalifyArgs) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("calltrackd-bench-report-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let db = dir.join("calls.db");
    let cfg = dir.join("config.toml");
    write_config(
        &cfg,
        "[server]\nlisten = \"127.0.0.1:0\"\n[storage]\npath = \"calls.db\"\n[twilio]\nauth_token = \"bench-token\"\n[export]\ntoken = \"bench-export\"\ntimezone = \"America/Chicago\"\n[[numbers]]\nnumber = \"+18005551212\"\nuser = \"acme-plumbing\"\n",
    )?;
    println!("report: seeding {} calls over a year ...", o.calls);
    seed_calls(&db, o.calls)?;
    {
        // The summary the daemon would have kept all along.
        let env = calltrackd::config::Env::from_process();
        let config =
            calltrackd::config::Config::load_for(&cfg, &env, calltrackd::config::Needs::NONE)
                .map_err(|e| e.to_string())?;
        let mut c = calltrackd::storage::open_writer(&db).map_err(|e| e.to_string())?;
        calltrackd::storage::summary::prepare(&mut c, config.rules.timezone)
            .map_err(|e| e.to_string())?;
    }
    std::fs::File::open(&db)
        .and_then(|f| f.sync_all())
        .map_err(|e| e.to_string())?;
    let (mut child, addr) = spawn_daemon(&cfg)?;
    let pid = child.id();
    // The seeded year: 2025-01-01 (America/Chicago) for o.calls * 30 s.
    let periods = [
        (
            "30 days",
            "2025-11-01",
            "2025-12-01",
            1_761_973_200_i64,
            1_764_568_800_i64,
        ),
        (
            "a year",
            "2025-01-01",
            "2026-01-01",
            1_735_711_200,
            1_767_247_200,
        ),
    ];
    for (name, from, to, t0, t1) in periods {
        let mut ours = Vec::new();
        let mut base = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
            write!(s, "GET /report?from={from}&to={to} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer bench-export\r\nConnection: close\r\n\r\n")
                .map_err(|e| e.to_string())?;
            let mut body = Vec::new();
            s.read_to_end(&mut body).map_err(|e| e.to_string())?;
            ours.push(t.elapsed());
            if !body.starts_with(b"HTTP/1.1 200") {
                return Err(format!(
                    "report answered {}",
                    String::from_utf8_lossy(&body[..body.len().min(200)])
                ));
            }
            let sql = format!(
                "SELECT outcome, count(*), sum(qualified), sum(talk_seconds) FROM calls WHERE started_at >= {t0} AND started_at < {t1} GROUP BY outcome"
            );
            let (took, _) = run_measured(Command::new("sqlite3").arg(&db).arg(&sql))
                .map_err(|e| format!("{e} (is sqlite3 installed?)"))?;
            base.push(took);
        }
        ours.sort();
        base.sort();
        println!(
            "GET /report, {name:<8}  median {:>7.1} ms (max {:>7.1})   sqlite3 counting the calls by outcome: median {:>7.1} ms   ratio {:.2}",
            ours[2].as_secs_f64() * 1e3,
            ours[4].as_secs_f64() * 1e3,
            base[2].as_secs_f64() * 1e3,
            ours[2].as_secs_f64() / base[2].as_secs_f64()
        );
    }
    println!(
        "daemon peak RSS while serving: {:.1} MiB",
        proc_status_kib(pid, "VmHWM:").unwrap_or(0) as f64 / 1024.0
    );
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
