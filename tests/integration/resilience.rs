//! Durability and robustness: kill -9 under load, graceful stop, reload, stalled and
//! garbage clients, a full disk, a dead listener, and /metrics.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::*;

/// What a load run saw.
#[derive(Default)]
pub struct Seen {
    /// CallSids answered 200.
    pub acked: Vec<String>,
    /// Every other status.
    pub other: Vec<u16>,
    /// CallSids whose request went out on an accepted connection that then closed
    /// without a status line: a failure, unless the daemon was meant to die.
    pub cut: Vec<String>,
    /// Connections refused.
    pub refused: usize,
}

/// Keeps posting distinct signed status callbacks over `conns` keep-alive-less
/// connections until `stop`.
pub fn load(
    addr: std::net::SocketAddr,
    conns: usize,
    prefix: &str,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Seen> {
    let prefix = prefix.to_owned();
    std::thread::spawn(move || {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let threads: Vec<_> = (0..conns)
            .map(|c| {
                let (stop, seen, prefix) = (Arc::clone(&stop), Arc::clone(&seen), prefix.clone());
                std::thread::spawn(move || {
                    let url = format!("http://{addr}/call-tracking/webhook");
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        i += 1;
                        let sid = format!("CA{prefix}{c}x{i}");
                        let p = status(&sid, TRACKING, "completed", "Mon, 02 Mar 2026 15:00:47 +0000", Some("47"));
                        let body = form_encode(&borrow(&p));
                        let raw = format!(
                            "POST /call-tracking/webhook HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nX-Twilio-Signature: {}\r\nContent-Length: {}\r\n\r\n{body}",
                            sign(TOKEN, &url, &borrow(&p)),
                            body.len()
                        );
                        let Ok(mut s) = TcpStream::connect(addr) else {
                            seen.lock().unwrap().refused += 1;
                            // Refused: the daemon is gone or not listening; back off.
                            std::thread::sleep(Duration::from_millis(5));
                            continue;
                        };
                        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                        let mut resp = Vec::new();
                        if s.write_all(raw.as_bytes()).is_ok() {
                            let _ = s.read_to_end(&mut resp);
                        }
                        let text = String::from_utf8_lossy(&resp);
                        let mut seen = seen.lock().unwrap();
                        match text.split_whitespace().nth(1).and_then(|c| c.parse::<u16>().ok()) {
                            Some(200) => seen.acked.push(sid),
                            Some(code) => seen.other.push(code),
                            None => seen.cut.push(sid),
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            let _ = t.join();
        }
        std::mem::take(&mut *seen.lock().unwrap())
    })
}

#[test]
fn kill_9_under_load_loses_no_acknowledged_call() {
    let env = Env::new(&base_config(""));
    let mut all_acked = Vec::new();
    for cycle in 0..3 {
        let d = env.start();
        let stop = Arc::new(AtomicBool::new(false));
        let loader = load(d.addr, 6, &format!("k{cycle}"), Arc::clone(&stop));
        // Killed mid-load: once some calls are stored.
        assert!(d.wait_log_count("stored status callback", 30, Duration::from_secs(20)));
        drop(d); // SIGKILL while requests are in flight
        stop.store(true, Ordering::Relaxed);
        let acked = loader.join().unwrap().acked;
        assert!(!acked.is_empty(), "cycle {cycle}: the load got answers");
        all_acked.extend(acked);
        // Restart on the same file: every acknowledged call is there, and the file is sound.
        let d = env.start();
        assert_sound_with(
            &env.db(),
            &all_acked,
            &format!("after kill -9, cycle {cycle}"),
        );
        drop(d);
    }
}

#[test]
fn sigterm_and_sigint_drain_in_flight_requests_and_exit_0() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let env = Env::new(&base_config(""));
        let d = env.start();
        let stop = Arc::new(AtomicBool::new(false));
        let loader = load(d.addr, 6, &format!("s{sig}"), Arc::clone(&stop));
        assert!(d.wait_log_count("stored status callback", 30, Duration::from_secs(20)));
        d.signal(sig);
        let mut d = d;
        let code = wait_timeout(&mut d.child, Duration::from_secs(15));
        stop.store(true, Ordering::Relaxed);
        let Seen {
            acked, other, cut, ..
        } = loader.join().unwrap();
        assert_eq!(
            code,
            Some(0),
            "signal {sig}: exit code; log:\n{}",
            d.log_text()
        );
        assert!(
            other.iter().all(|c| *c != 500 && *c != 503),
            "signal {sig}: {other:?}"
        );
        // A connection cut at the stop may only be one the daemon never took up (still
        // in the kernel's queue): a request it stored was in flight and must have been
        // answered.
        for sid in &cut {
            assert!(
                call_row(&env.db(), sid).is_none(),
                "signal {sig}: {sid} was stored but its connection was cut unanswered"
            );
        }
        assert!(d.wait_log("stopped cleanly", Duration::from_secs(10)));
        // Closed cleanly: no WAL left behind.
        assert!(!env.dir.path().join("calls.db-wal").exists());
        assert_sound_with(&env.db(), &acked, &format!("after signal {sig}"));
    }
}

#[test]
fn sighup_reloads_rules_without_dropping_requests_and_refuses_a_broken_file() {
    let env = Env::new(&base_config(""));
    let d = env.start();
    let post = |p: Vec<(String, String)>| d.post_form(&borrow(&p));
    let forwarded = |sid: &str, talk: &str| {
        assert_eq!(post(incoming(sid, TRACKING)).status, 200);
        assert_eq!(
            post(dial_action(sid, TRACKING, "completed", Some(talk))).status,
            200
        );
    };
    forwarded("CAbefore", "45");
    let stop = Arc::new(AtomicBool::new(false));
    let loader = load(d.addr, 3, "hup", Arc::clone(&stop));

    // New threshold, new owner for the number, a new number.
    let cfg = base_config("")
        .replace("min_duration_seconds = 30", "min_duration_seconds = 60")
        .replace("user = \"acme-plumbing\"", "user = \"new-owner\"")
        + "\n[[numbers]]\nnumber = \"+18005550111\"\nuser = \"third\"\nforward_to = \"+15550001111\"\n";
    env.write_config(&cfg);
    d.signal(libc::SIGHUP);
    assert!(
        d.wait_log("SIGHUP: reloaded", Duration::from_secs(5)),
        "{}",
        d.log_text()
    );
    forwarded("CAafter", "45");
    let before = call_row(&env.db(), "CAbefore").unwrap();
    let after = call_row(&env.db(), "CAafter").unwrap();
    assert_eq!(
        (before.user.as_str(), before.qualified),
        ("acme-plumbing", Some(true)),
        "stored calls keep their rules"
    );
    assert_eq!(
        (after.user.as_str(), after.qualified),
        ("new-owner", Some(false)),
        "new calls get the new rules"
    );
    let r = post(incoming("CAthird", "+18005550111"));
    assert!(
        r.text().contains("<Number>+15550001111</Number>"),
        "{}",
        r.text()
    );

    // A broken file is refused; the previous rules stay.
    env.write_config("[server]\nlisten = \"127.0.0.1:0\"\nbogus = 1\n");
    d.signal(libc::SIGHUP);
    assert!(d.wait_log("reload refused", Duration::from_secs(5)));
    forwarded("CAbroken", "45");
    let row = call_row(&env.db(), "CAbroken").unwrap();
    assert_eq!(
        (row.user.as_str(), row.qualified),
        ("new-owner", Some(false))
    );

    stop.store(true, Ordering::Relaxed);
    let seen = loader.join().unwrap();
    assert!(!seen.acked.is_empty());
    assert!(
        seen.other.is_empty() && seen.cut.is_empty() && seen.refused == 0,
        "no request failed during reloads: statuses {:?}, {} cut, {} refused",
        seen.other,
        seen.cut.len(),
        seen.refused
    );
}

#[test]
fn stalled_clients_do_not_delay_a_valid_callback() {
    let env = Env::new(&base_config(""));
    let d = env.start();
    let mut stalled = Vec::new();
    for i in 0..200 {
        let mut s = TcpStream::connect(d.addr).unwrap();
        let partial = if i % 2 == 0 {
            // Stalled in the headers.
            "POST /call-tracking/webhook HTTP/1.1\r\nHost: x\r\nContent-Ty".to_owned()
        } else {
            // Stalled in the body.
            "POST /call-tracking/webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 5000\r\n\r\nCallSid=CA".to_owned()
        };
        s.write_all(partial.as_bytes()).unwrap();
        stalled.push(s);
    }
    for n in 0..5 {
        let t = Instant::now();
        let r = d.post_form(&borrow(&incoming(&format!("CAvalid{n}"), TRACKING)));
        let took = t.elapsed();
        assert_eq!(r.status, 200);
        assert!(
            took < Duration::from_secs(1),
            "a valid callback took {took:?} with 200 stalled clients"
        );
    }
    assert_eq!(get(d.addr, "/healthz", &[]).status, 200);
    drop(stalled);
}

#[test]
fn garbage_truncated_and_oversized_requests_never_get_500() {
    let env = Env::new(&base_config(""));
    let d = env.start();
    let long_header = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Long: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let many_headers = format!("GET /healthz HTTP/1.1\r\n{}\r\n", "X-A: b\r\n".repeat(300));
    let cases: Vec<Vec<u8>> = vec![
        b"\x00\x01\x02\x03garbage\r\n\r\n".to_vec(),
        b"GET\r\n\r\n".to_vec(),
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
        b"POST /call-tracking/webhook HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n".to_vec(),
        b"POST /call-tracking/webhook HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\nzz\r\n".to_vec(),
        b"POST /call-tracking/webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 10\r\n\r\nCall".to_vec(),
        b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n".to_vec(),
        b"GET /%%%%% HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        b"POST /call-tracking/webhook HTTP/1.1\r\nHost: x\r\nExpect: something\r\n\r\n".to_vec(),
        long_header.into_bytes(),
        many_headers.into_bytes(),
    ];
    for (i, raw) in cases.iter().enumerate() {
        let mut s = TcpStream::connect(d.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let _ = s.write_all(raw);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut resp = Vec::new();
        let _ = s.read_to_end(&mut resp);
        let text = String::from_utf8_lossy(&resp);
        assert!(
            !text.starts_with("HTTP/1.1 500") && !text.starts_with("HTTP/1.0 500"),
            "case {i}: {text}"
        );
    }
    // Chunked (no Content-Length to refuse it up front): 411, whatever its size.
    let chunk = "a".repeat(70_000);
    let raw = format!(
        "POST /call-tracking/webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    assert_eq!(raw_request(d.addr, raw.as_bytes(), false).status, 411);
    // Still healthy, nothing stored, nothing panicked.
    assert_eq!(get(d.addr, "/healthz", &[]).status, 200);
    assert_eq!(
        d.post_form(&borrow(&incoming("CAafter", TRACKING))).status,
        200
    );
    assert_eq!(count(&env.db(), "SELECT count(*) FROM events"), 1);
    let log = d.log_text();
    assert!(
        !log.contains("panicked") && !log.contains("internal error"),
        "{log}"
    );
}

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// Needs root to mount a 1 MiB tmpfs, so the runner reports it as ignored in a plain
/// `cargo test`; CI (root) runs it with `cargo test -- --ignored`.
#[test]
#[ignore = "needs root to mount a tmpfs: run `cargo test -- --ignored` as root"]
fn full_disk_answers_503_and_recovers_when_space_returns() {
    assert!(
        is_root(),
        "this test mounts a tmpfs: run it as root (it is ignored otherwise)"
    );
    let env = Env::new(&base_config("").replace("path = \"calls.db\"", "path = \"disk/calls.db\""));
    let disk = env.dir.path().join("disk");
    std::fs::create_dir(&disk).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&disk)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(mounted, "cannot mount a tmpfs here");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _guard = Unmount(disk.clone());
    let d = env.start();
    assert_eq!(
        d.post_form(&borrow(&incoming("CAfull0", TRACKING))).status,
        200
    );
    // Fill the disk.
    let filler = disk.join("filler");
    {
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
    }
    let db = disk.join("calls.db");
    let events_before = count(&db, "SELECT count(*) FROM events");
    let mut saw_503 = false;
    for i in 0..40 {
        let mut p = incoming(&format!("CAfull{}", i + 1), TRACKING);
        set(&mut p, "CallerName", &"X".repeat(3000));
        let r = d.post_form(&borrow(&p));
        assert!(r.status == 200 || r.status == 503, "{}", r.status);
        if r.status == 503 {
            saw_503 = true;
            break;
        }
    }
    assert!(saw_503, "a full disk must answer 503");
    // Told apart by SQLite's error code, not by a guess.
    assert!(
        d.wait_log("not stored, the disk is full", Duration::from_secs(10)),
        "{}",
        d.log_text()
    );
    assert_eq!(get(d.addr, "/healthz", &[]).status, 503);
    let c = rusqlite::Connection::open(&db).unwrap();
    let check: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    assert!(count(&db, "SELECT count(*) FROM events") >= events_before);
    drop(c);
    // Space returns: the daemon recovers by itself.
    std::fs::remove_file(&filler).unwrap();
    let r = d.post_form(&borrow(&incoming("CAfullafter", TRACKING)));
    assert_eq!(r.status, 200, "{}", d.log_text());
    assert_eq!(get(d.addr, "/healthz", &[]).status, 200);
    assert!(call_row(&db, "CAfullafter").is_some());
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn metrics_on_their_own_listener_without_per_call_labels() {
    // Port 0: the daemon picks one and logs it (no port picked, freed and reused here).
    let env = Env::new(&base_config("metrics_listen = \"127.0.0.1:0\"\n"));
    let d = env.start();
    let maddr = d.metrics_addr();
    assert_eq!(
        d.post_form(&borrow(&incoming("CAm1", TRACKING))).status,
        200
    );
    assert_eq!(
        d.post_form(&borrow(&incoming("CAm1", TRACKING))).status,
        200
    );
    assert_eq!(
        d.post_form_signed(&borrow(&incoming("CAm2", TRACKING)), Some("bad"))
            .status,
        403
    );
    assert_eq!(
        request(
            d.addr,
            "POST",
            "/call-tracking/webhook",
            &[("Content-Type", "text/plain".into())],
            b"x"
        )
        .status,
        415
    );
    assert_eq!(
        d.post_form(&borrow(&dial_action(
            "CAm1",
            TRACKING,
            "completed",
            Some("40")
        )))
        .status,
        200
    );
    let r = get(maddr, "/metrics", &[]);
    assert_eq!(r.status, 200);
    assert!(
        r.header("Content-Type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let m = r.text();
    for line in [
        "calltrackd_webhook_requests_total{outcome=\"stored\"} 2",
        "calltrackd_webhook_requests_total{outcome=\"duplicate\"} 1",
        "calltrackd_webhook_requests_total{outcome=\"bad_signature\"} 1",
        "calltrackd_webhook_requests_total{outcome=\"bad_request\"} 1",
        "calltrackd_webhook_requests_total{outcome=\"storage_error\"} 0",
        "calltrackd_calls{answered=\"true\",qualified=\"true\"} 1",
        "calltrackd_commit_batch_size_count",
        "calltrackd_commit_duration_seconds_bucket{le=\"+Inf\"}",
        "calltrackd_webhook_duration_seconds_count 5",
        "calltrackd_build_info{version=\"",
    ] {
        assert!(m.contains(line), "missing {line:?} in\n{m}");
    }
    for secret in ["CAm1", TRACKING, CALLER, SHOP, "acme-plumbing", TOKEN] {
        assert!(!m.contains(secret), "{secret} must not appear in /metrics");
    }
    assert_eq!(get(maddr, "/calls.csv", &bearer()).status, 404);
    assert_eq!(get(maddr, "/healthz", &[]).status, 404);
    assert_eq!(get(d.addr, "/metrics", &[]).status, 404);
}

#[test]
fn committed_requests_reach_the_database_file_while_the_daemon_runs() {
    // The WAL is copied into the database file in the background (not by SQLite inside
    // a commit at 1000 pages, which delayed that batch's answers): a few requests, far
    // below any page threshold, are in the main file itself shortly after they commit.
    let env = Env::new(&base_config(""));
    let d = env.start();
    let n = 20;
    for i in 0..n {
        let p = incoming(&format!("CAckpt{i}"), TRACKING);
        assert_eq!(d.post_form(&borrow(&p)).status, 200);
    }
    let copy_dir = tempfile::tempdir().unwrap();
    let copy = copy_dir.path().join("main-file-only.db");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        // The main file alone, without its -wal: what a checkpoint has written.
        std::fs::copy(env.db(), &copy).unwrap();
        let in_main_file = rusqlite::Connection::open(&copy)
            .and_then(|c| c.query_row("SELECT count(*) FROM events", [], |r| r.get::<_, i64>(0)))
            .unwrap_or(0);
        if in_main_file == n {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after 5 s the database file holds {in_main_file} of {n} committed events"
        );
        std::thread::sleep(Duration::from_millis(50));
        let _ = std::fs::remove_file(copy_dir.path().join("main-file-only.db-wal"));
    }
    assert_eq!(get(d.addr, "/healthz", &[]).status, 200);
}

#[test]
fn a_reload_never_splits_a_request_between_two_rule_sets() {
    // The same number belongs to "alpha" (ringing A) in one config and to "beta"
    // (ringing B) in the other; SIGHUP flips between them while calls stream in. Each
    // call's row must have the user of the config its TwiML came from.
    let config = |user: &str, shop: &str| {
        base_config("")
            .replace("user = \"acme-plumbing\"", &format!("user = \"{user}\""))
            .replace(
                &format!("forward_to = \"{SHOP}\""),
                &format!("forward_to = \"{shop}\""),
            )
    };
    let (a, b) = (
        config("alpha", "+15550000001"),
        config("beta", "+15550000002"),
    );
    let env = Env::new(&a);
    let d = env.start();
    let stop = Arc::new(AtomicBool::new(false));
    let addr = d.addr;
    let loader = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) && i < 5000 {
                i += 1;
                let sid = format!("CArace{i}");
                let r = post_signed_to(addr, &incoming(&sid, TRACKING));
                assert_eq!(r.status, 200);
                seen.push((sid, r.text().contains("+15550000001")));
            }
            seen
        })
    };
    for k in 0..20 {
        env.write_config(if k % 2 == 0 { &b } else { &a });
        d.signal(libc::SIGHUP);
        let start = Instant::now();
        while d.log_text().matches("SIGHUP: reloaded").count() < k + 1 {
            assert!(start.elapsed() < Duration::from_secs(10), "reload {k}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let seen = loader.join().unwrap();
    let alpha = seen.iter().filter(|(_, a)| *a).count();
    assert!(alpha > 0 && alpha < seen.len(), "{alpha} of {}", seen.len());
    for (sid, rang_alpha) in &seen {
        let row = call_row(&env.db(), sid).unwrap();
        let want = if *rang_alpha { "alpha" } else { "beta" };
        assert_eq!(row.user, want, "{sid}");
    }
}

#[test]
fn a_call_begun_just_before_a_crash_keeps_its_identity_after_it() {
    // A kill -9 right after a call's first request must not make a later callback of
    // that call start a second call.
    let env = Env::new(&base_config(""));
    let d = env.start();
    assert_eq!(
        d.post_form(&borrow(&incoming("CAwarm", TRACKING))).status,
        200
    );
    assert_eq!(
        d.post_form(&borrow(&incoming("CAcrash", TRACKING))).status,
        200
    );
    drop(d); // SIGKILL
    let d = env.start();
    let done = status(
        "CAcrash",
        TRACKING,
        "completed",
        "Mon, 02 Mar 2026 15:00:47 +0000",
        Some("47"),
    );
    assert_eq!(d.post_form(&borrow(&done)).status, 200);
    assert_eq!(
        count(
            &env.db(),
            "SELECT count(*) FROM calls WHERE call_sid = 'CAcrash'"
        ),
        1
    );
    assert_eq!(call_row(&env.db(), "CAcrash").unwrap().status, "completed");
    assert_eq!(
        count(
            &env.db(),
            "SELECT count(*) FROM sids WHERE call_sid = 'CAcrash'"
        ),
        1
    );
    // And after a clean stop.
    assert_eq!(
        d.post_form(&borrow(&incoming("CAclean", TRACKING))).status,
        200
    );
    assert_eq!(d.stop(), Some(0));
    assert_eq!(
        count(
            &env.db(),
            "SELECT count(*) FROM sids WHERE call_sid = 'CAclean'"
        ),
        1
    );
}
