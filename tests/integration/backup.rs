//! `calltrackd backup`: a consistent, verified copy taken while the daemon writes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::resilience::load;
use crate::support::*;

#[test]
fn backup_under_write_load_holds_every_call_acknowledged_before_it_started() {
    let env = Env::new(&base_config(""));
    let d = env.start();
    let stop = Arc::new(AtomicBool::new(false));
    let loader = load(d.addr, 4, "bk", Arc::clone(&stop));
    // Under way: some calls stored already.
    assert!(d.wait_log_count("stored status callback", 50, Duration::from_secs(20)));
    // Everything acknowledged up to now must be in the copy.
    let before: Vec<String> = {
        let c = rusqlite::Connection::open(env.db()).unwrap();
        let mut s = c.prepare("SELECT call_sid FROM calls").unwrap();
        s.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert!(!before.is_empty());
    let dest = env.dir.path().join("copy.db");
    let o = env.run(&[
        "backup",
        "--config",
        env.config().to_str().unwrap(),
        dest.to_str().unwrap(),
    ]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("integrity check ok"), "{out}");
    // Writes went on after the copy.
    let so_far = d.log_text().matches("stored status callback").count();
    assert!(d.wait_log_count(
        "stored status callback",
        so_far + 20,
        Duration::from_secs(20)
    ));
    stop.store(true, Ordering::Relaxed);
    let acked = loader.join().unwrap().acked;
    assert!(
        acked.len() > before.len(),
        "the load kept writing during the backup"
    );
    assert_sound_with(&dest, &before, "the backup copy");
    assert_eq!(d.stop(), Some(0));

    // Restore: the copy replaces the database, and the daemon runs on it.
    let copied = count(&dest, "SELECT count(*) FROM calls");
    std::fs::remove_file(env.db()).unwrap();
    let _ = std::fs::remove_file(env.dir.path().join("calls.db-wal"));
    let _ = std::fs::remove_file(env.dir.path().join("calls.db-shm"));
    std::fs::copy(&dest, env.db()).unwrap();
    let d = env.start();
    assert_eq!(count(&env.db(), "SELECT count(*) FROM calls"), copied);
    assert_eq!(
        d.post_form(&borrow(&incoming("CArestored", TRACKING)))
            .status,
        200
    );
    assert!(call_row(&env.db(), "CArestored").is_some());

    // The same destination again: refused, nothing overwritten.
    let o = env.run(&[
        "backup",
        "--config",
        env.config().to_str().unwrap(),
        dest.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    // A folder as destination: a new time-stamped file in it.
    let dir = env.dir.path().join("backups");
    std::fs::create_dir(&dir).unwrap();
    let o = env.run(&[
        "backup",
        "--config",
        env.config().to_str().unwrap(),
        dir.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0));
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        files.len() == 1 && files[0].starts_with("calls-") && files[0].ends_with(".db"),
        "{files:?}"
    );
}
