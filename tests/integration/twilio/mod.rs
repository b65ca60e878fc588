//! The Twilio account over REST: `twilio setup`, `twilio doctor`, `backfill` and the
//! daemon's reconcile thread, against the fake of Twilio's API in `fake.rs`.

pub mod fake;

use std::time::Duration;

use fake::{ACCOUNT, API_KEY, API_SECRET, Fake};

use crate::support::*;

const PUBLIC: &str = "https://calls.example.com";
const HOOK: &str = "https://calls.example.com/call-tracking/webhook";

/// The test config pointed at the fake (auth token credentials unless `key`).
fn config(fake: &Fake, extra_twilio: &str) -> String {
    base_config(&format!("public_url = \"{PUBLIC}\"\n")).replace(
        "[twilio]\n",
        &format!("[twilio]\n{}{extra_twilio}\n", fake.twilio_keys()),
    )
}

fn out(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn run(env: &Env, args: &[&str]) -> (i32, String) {
    let mut a: Vec<&str> = args.to_vec();
    let cfg = env.config();
    a.extend(["--config", cfg.to_str().unwrap()]);
    let o = env.run(&a);
    let text = out(&o);
    // No secret is ever printed.
    for secret in [TOKEN, API_SECRET] {
        assert!(!text.contains(secret), "a secret was printed: {text}");
    }
    (o.status.code().unwrap(), text)
}

/// A webhook signed for the public URL the config names.
fn post(d: &Daemon, p: &[(String, String)]) -> u16 {
    let p = borrow(p);
    d.post_form_signed(&p, Some(&sign(TOKEN, HOOK, &p))).status
}

fn posts(fake: &Fake) -> usize {
    fake.seen().iter().filter(|s| s.method == "POST").count()
}

#[test]
fn setup_points_two_numbers_at_calltrackd_then_changes_nothing() {
    let fake = Fake::start();
    fake.add_number(TRACKING, "https://demo.twilio.com/welcome/voice/", "");
    fake.add_number(
        TRACKING_NO_FORWARD,
        "https://old.example.com/hook",
        "https://old.example.com/status",
    );
    let env = Env::new(&config(&fake, ""));

    // Dry run: every change printed, nothing changed.
    let (code, text) = run(&env, &["twilio", "setup", "--dry-run"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&format!("{TRACKING}: VoiceUrl: https://demo.twilio.com/welcome/voice/ -> {HOOK} (dry run: not changed)")),
        "{text}"
    );
    assert!(
        text.contains(&format!("{TRACKING}: StatusCallback: (empty) -> {HOOK}")),
        "{text}"
    );
    assert!(
        text.contains(&format!("{TRACKING_NO_FORWARD}: VoiceMethod: GET -> POST")),
        "{text}"
    );
    assert_eq!(posts(&fake), 0);

    let (code, text) = run(&env, &["twilio", "setup"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("2 number(s) changed, 0 missing"), "{text}");
    for n in [TRACKING, TRACKING_NO_FORWARD] {
        let v = fake.number(n);
        assert_eq!(v["voice_url"], HOOK);
        assert_eq!(v["voice_method"], "POST");
        assert_eq!(v["status_callback"], HOOK);
        assert_eq!(v["status_callback_method"], "POST");
        assert_eq!(v["voice_caller_id_lookup"], false);
    }
    assert_eq!(posts(&fake), 2);

    // A second run changes nothing.
    let (code, text) = run(&env, &["twilio", "setup"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&format!("{TRACKING}: already set up")),
        "{text}"
    );
    assert!(
        text.contains(&format!("{TRACKING_NO_FORWARD}: already set up")),
        "{text}"
    );
    assert_eq!(posts(&fake), 2);

    // caller_name_lookup is a change of its own.
    let cfg = config(&fake, "").replace(
        "ring_timeout_seconds = 18\n",
        "ring_timeout_seconds = 18\ncaller_name_lookup = true\n",
    );
    env.write_config(&cfg);
    let (code, text) = run(&env, &["twilio", "setup"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&format!("{TRACKING}: VoiceCallerIdLookup: false -> true")),
        "{text}"
    );
    assert_eq!(fake.number(TRACKING)["voice_caller_id_lookup"], true);
    assert_eq!(fake.violations(), Vec::<String>::new());
}

#[test]
fn setup_names_a_number_the_account_lacks_and_still_sets_up_the_others() {
    let fake = Fake::start();
    fake.add_number(TRACKING, "", "");
    let env = Env::new(&config(&fake, ""));
    let (code, text) = run(&env, &["twilio", "setup"]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(&format!(
            "{TRACKING_NO_FORWARD}: PROBLEM: not a number of account {ACCOUNT}"
        )),
        "{text}"
    );
    assert_eq!(fake.number(TRACKING)["voice_url"], HOOK);
    assert_eq!(fake.violations(), Vec::<String>::new());
}

#[test]
fn setup_with_an_api_key_and_with_bad_credentials() {
    let fake = Fake::start();
    fake.add_number(TRACKING, "", "");
    fake.add_number(TRACKING_NO_FORWARD, "", "");
    let key = format!("api_key_sid = \"{API_KEY}\"\napi_key_secret = \"{API_SECRET}\"\n");
    let env = Env::new(&config(&fake, &key));
    let (code, text) = run(&env, &["twilio", "setup"]);
    assert_eq!(code, 0, "{text}");
    // A wrong secret: one clear sentence, exit 1, the secret not shown.
    env.write_config(&config(&fake, &key.replace(API_SECRET, "wrong-secret-123")));
    let (code, text) = run(&env, &["twilio", "setup"]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("Twilio refused the credentials"), "{text}");
    assert!(text.contains("error 20003"), "{text}");
    assert!(!text.contains("wrong-secret-123"), "{text}");
    // A key that works, for an account it does not belong to: Twilio's 404, in words.
    let other = "ACffffffffffffffffffffffffffffffff";
    env.write_config(&config(&fake, &key).replace(ACCOUNT, other));
    let (code, text) = run(&env, &["twilio", "doctor"]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(&format!(
            "Twilio has no account {other} (HTTP 404, error 20404)"
        )),
        "{text}"
    );
    // Without an account SID: a sentence naming the key.
    env.write_config(&base_config(&format!("public_url = \"{PUBLIC}\"\n")));
    let (code, text) = run(&env, &["twilio", "setup"]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("account_sid"), "{text}");
}

#[test]
fn rest_calls_retry_429_and_503_and_follow_pages() {
    let fake = Fake::start();
    fake.add_number(TRACKING, "", "");
    fake.add_number(TRACKING_NO_FORWARD, "", "");
    fake.fault(429, Some(1));
    fake.fault(503, None);
    let env = Env::new(&config(&fake, ""));
    let started = std::time::Instant::now();
    let (code, text) = run(&env, &["twilio", "setup"]);
    assert_eq!(code, 0, "{text}");
    // Retry-After: 1 was honoured.
    assert!(started.elapsed() >= Duration::from_secs(1));
    let seen = fake.seen();
    assert_eq!(seen[0].status, 429);
    assert_eq!(seen[1].status, 503);
    assert_eq!(seen[2].status, 200);
    // Four failures in a row: the error is Twilio's, after the retries.
    for _ in 0..4 {
        fake.fault(503, Some(0));
    }
    let (code, text) = run(&env, &["twilio", "setup"]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("HTTP 503"), "{text}");

    // Paging: 5 calls in pages of 2 are all found.
    fake.state.lock().unwrap().page_size = Some(2);
    let now = chrono::Utc::now().timestamp();
    for i in 0..5 {
        fake.add_call(
            &format!("CA{i:032x}"),
            None,
            CALLER,
            TRACKING_NO_FORWARD,
            "inbound",
            "completed",
            now - 600 + i,
            Some(now - 500 + i),
            Some(40),
        );
    }
    let (code, text) = run(&env, &["backfill"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("5 calls listed"), "{text}");
    assert!(
        fake.seen()
            .iter()
            .any(|s| s.query.iter().any(|(k, _)| k == "PageToken"))
    );
    assert_eq!(fake.violations(), Vec::<String>::new());
}

#[test]
fn doctor_passes_then_fails_each_check_one_at_a_time() {
    let fake = Fake::start();
    fake.add_number(TRACKING, "", "");
    fake.add_number(TRACKING_NO_FORWARD, "", "");
    let env = Env::new(&config(&fake, ""));
    assert_eq!(run(&env, &["twilio", "setup"]).0, 0);
    for n in [TRACKING, TRACKING_NO_FORWARD] {
        fake.set_number_field(
            n,
            "voice_fallback_url",
            "https://handler.twilio.com/twiml/EHfallback".into(),
        );
    }
    // The daemon must run at `listen`: give it a fixed free port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let good = config(&fake, "").replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{port}\""),
    );
    env.write_config(&good);
    let d = env.start();
    let (code, text) = run(&env, &["twilio", "doctor"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("all checks passed"), "{text}");
    assert!(!text.contains("PROBLEM"), "{text}");

    let problem = |env: &Env, needle: &str| {
        let (code, text) = run(env, &["twilio", "doctor"]);
        assert_eq!(code, 1, "{text}");
        assert_eq!(text.matches("PROBLEM").count(), 1, "{text}");
        assert!(text.contains(needle), "wanted {needle:?} in:\n{text}");
        assert!(text.contains("fix: "), "{text}");
    };
    // A voice URL that points elsewhere.
    fake.set_number_field(TRACKING, "voice_url", "https://old.example.com/hook".into());
    problem(
        &env,
        &format!("{TRACKING}: voice URL is https://old.example.com/hook (want {HOOK})"),
    );
    fake.set_number_field(TRACKING, "voice_url", HOOK.into());
    // A GET status callback.
    fake.set_number_field(TRACKING, "status_callback_method", "GET".into());
    problem(&env, "status callback method is GET (want POST)");
    fake.set_number_field(TRACKING, "status_callback_method", "POST".into());
    // No fallback URL.
    fake.set_number_field(TRACKING_NO_FORWARD, "voice_fallback_url", "".into());
    problem(
        &env,
        &format!("{TRACKING_NO_FORWARD}: no voice fallback URL"),
    );
    fake.set_number_field(
        TRACKING_NO_FORWARD,
        "voice_fallback_url",
        "https://handler.twilio.com/twiml/EHx".into(),
    );
    // A number the account lacks.
    fake.state
        .lock()
        .unwrap()
        .numbers
        .retain(|n| n["phone_number"] != TRACKING_NO_FORWARD);
    problem(
        &env,
        &format!("{TRACKING_NO_FORWARD} is not a number of account {ACCOUNT}"),
    );
    fake.add_number(TRACKING_NO_FORWARD, HOOK, HOOK);
    for (k, v) in [
        ("voice_method", "POST"),
        ("status_callback_method", "POST"),
        ("voice_fallback_url", "https://handler.twilio.com/twiml/EHy"),
    ] {
        fake.set_number_field(TRACKING_NO_FORWARD, k, v.into());
    }
    assert_eq!(run(&env, &["twilio", "doctor"]).0, 0);
    // Wrong credentials.
    env.write_config(&good.replace(
        &format!("auth_token = \"{TOKEN}\""),
        "auth_token = \"not-the-token-42\"",
    ));
    problem(&env, "the credentials do not work");
    env.write_config(&good);
    // A webhook refused with 403: doctor lists it with the URL it was checked against.
    let r = d.post_form_signed(
        &[("CallSid", "CAforged"), ("From", CALLER), ("To", TRACKING)],
        Some("forged"),
    );
    assert_eq!(r.status, 403);
    let start = std::time::Instant::now();
    loop {
        let (code, text) = run(&env, &["twilio", "doctor"]);
        if code == 1 {
            assert!(text.contains("1 request(s) refused with 403"), "{text}");
            assert!(text.contains(&format!("checked against {HOOK}")), "{text}");
            assert!(!text.contains("forged"), "{text}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The daemon down.
    drop(d);
    let (code, text) = run(&env, &["twilio", "doctor"]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(&format!("no daemon answers at 127.0.0.1:{port}")),
        "{text}"
    );
    // A config that does not load.
    env.write_config("[server]\nlisten = \"nonsense\"\n");
    let (code, text) = run(&env, &["twilio", "doctor"]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("does not load"), "{text}");
    assert_eq!(fake.violations(), Vec::<String>::new());
}

/// Calls Twilio had while calltrackd was stopped: an answered forwarded call (its
/// `<Dial>` leg answered), a forwarded call nobody took, a call to a number without
/// forwarding, an outbound call; and a stored call whose final status never came.
fn seed_missed(fake: &Fake, now: i64) {
    let leg = |n: u32| format!("CA{:032x}", 0xdead_0000u64 + u64::from(n));
    let sid = |n: u32| format!("CA{n:032x}");
    fake.add_call(
        &sid(1),
        None,
        CALLER,
        TRACKING,
        "inbound",
        "completed",
        now - 3_000,
        Some(now - 2_900),
        Some(100),
    );
    fake.add_call(
        &leg(1),
        Some(&sid(1)),
        CALLER,
        SHOP,
        "outbound-dial",
        "completed",
        now - 2_995,
        Some(now - 2_900),
        Some(90),
    );
    fake.add_call(
        &sid(2),
        None,
        "+14155550111",
        TRACKING,
        "inbound",
        "completed",
        now - 2_000,
        Some(now - 1_980),
        Some(20),
    );
    fake.add_call(
        &leg(2),
        Some(&sid(2)),
        "+14155550111",
        SHOP,
        "outbound-dial",
        "no-answer",
        now - 1_999,
        Some(now - 1_981),
        None,
    );
    fake.add_call(
        &sid(3),
        None,
        "+14155550122",
        TRACKING_NO_FORWARD,
        "inbound",
        "completed",
        now - 1_000,
        Some(now - 995),
        Some(5),
    );
    fake.add_call(
        &sid(4),
        None,
        TRACKING,
        "+14155550133",
        "outbound-api",
        "completed",
        now - 500,
        Some(now - 440),
        Some(60),
    );
    // Older than the default 2 days: left out unless --since says so.
    fake.add_call(
        &sid(5),
        None,
        CALLER,
        TRACKING,
        "inbound",
        "busy",
        now - 3 * 86_400,
        Some(now - 3 * 86_400 + 10),
        None,
    );
}

fn outcome(db: &std::path::Path, sid: &str) -> (String, String, Option<i64>, Option<bool>) {
    let c = rusqlite::Connection::open(db).unwrap();
    c.query_row(
        "SELECT coalesce(outcome, ''), captured_by, talk_seconds, first_time_caller FROM calls WHERE call_sid = ?1",
        [sid],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )
    .unwrap()
}

#[test]
fn backfill_records_missed_calls_once_and_adds_a_missed_final_status() {
    let fake = Fake::start();
    let env = Env::new(&config(&fake, ""));
    let now = chrono::Utc::now().timestamp();
    // calltrackd heard the start of one call, never its end.
    let d = env.start();
    let open = "CA00000000000000000000000000000abc";
    let mut p = incoming(open, TRACKING);
    set(&mut p, "From", CALLER);
    assert_eq!(post(&d, &p), 200);
    drop(d);
    fake.add_call(
        open,
        None,
        CALLER,
        TRACKING,
        "inbound",
        "completed",
        now - 200,
        Some(now - 100),
        Some(100),
    );
    fake.add_call(
        "CA000000000000000000000000000dabc0",
        Some(open),
        CALLER,
        SHOP,
        "outbound-dial",
        "completed",
        now - 195,
        Some(now - 100),
        Some(80),
    );
    seed_missed(&fake, now);

    let (code, text) = run(&env, &["backfill"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("5 calls listed"), "{text}");
    assert!(
        text.contains("4 added, 1 given their final status"),
        "{text}"
    );
    let db = env.db();
    let sid = |n: u32| format!("CA{n:032x}");
    let (o, by, talk, _) = outcome(&db, &sid(1));
    assert_eq!(
        (o.as_str(), by.as_str(), talk),
        ("answered", "backfill", Some(90))
    );
    let r = call_row(&db, &sid(1)).unwrap();
    assert_eq!(r.started_at, now - 3_000);
    assert_eq!(r.ended_at, Some(now - 2_900));
    assert_eq!(r.user, "acme-plumbing");
    assert_eq!(r.qualified, Some(true));
    assert_eq!(outcome(&db, &sid(2)).0, "missed");
    // Nobody was rung for a call only Twilio knows (the daemon was down).
    assert_eq!(outcome(&db, &sid(3)).0, "missed");
    assert_eq!(outcome(&db, &sid(4)).0, "answered");
    assert!(call_row(&db, &sid(5)).is_none());
    // The open call got its final status and its dial leg; it stays a webhook call.
    let (o, by, talk, _) = outcome(&db, open);
    assert_eq!(
        (o.as_str(), by.as_str(), talk),
        ("answered", "webhook", Some(80))
    );
    // Each resource is kept verbatim as the event's body.
    let body: String = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row(
            "SELECT CAST(body AS TEXT) FROM events WHERE call_sid = ?1 AND kind = 'backfill'",
            [sid(1)],
            |r| r.get(0),
        )
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["sid"], sid(1));
    assert_eq!(v["duration"], "100");
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM events WHERE kind = 'backfill' AND direction = 'outbound-dial'"
        ),
        3
    );

    // A second run adds nothing.
    let events = count(&db, "SELECT count(*) FROM events");
    let (code, text) = run(&env, &["backfill"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("0 added, 0 given their final status"),
        "{text}"
    );
    assert_eq!(count(&db, "SELECT count(*) FROM events"), events);

    // An earlier call found later moves the first-time flags of the calls after it.
    // The caller's first call in the window is first-time until an earlier one is found.
    assert_eq!(outcome(&db, &sid(1)).3, Some(true));
    let (code, text) = run(
        &env,
        &[
            "backfill",
            "--since",
            &chrono::DateTime::from_timestamp(now - 4 * 86_400, 0)
                .unwrap()
                .to_rfc3339(),
        ],
    );
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("1 added"), "{text}");
    assert_eq!(outcome(&db, &sid(5)).0, "missed");
    assert_eq!(outcome(&db, &sid(5)).3, Some(true));
    assert_eq!(outcome(&db, &sid(1)).3, Some(false));
    assert_eq!(fake.violations(), Vec::<String>::new());

    // The export shows them, captured_by included.
    let o = env.run(&["export", "--config", env.config().to_str().unwrap()]);
    let csv = String::from_utf8_lossy(&o.stdout);
    assert_eq!(csv.matches(",backfill\r\n").count(), 5, "{csv}");
}

#[test]
fn reconcile_inside_the_daemon_records_what_it_missed_while_down() {
    let fake = Fake::start();
    let now = chrono::Utc::now().timestamp();
    seed_missed(&fake, now);
    let env = Env::new(&config(&fake, "reconcile_minutes = 1"));
    let d = env.start();
    assert!(
        d.wait_log("reconcile: 4 calls listed", Duration::from_secs(20)),
        "{}",
        d.log_text()
    );
    assert!(d.log_text().contains("4 added"), "{}", d.log_text());
    assert_eq!(outcome(&env.db(), &format!("CA{:032x}", 1)).0, "answered");
    // Webhooks are answered meanwhile, as ever.
    let p = incoming("CAlive", TRACKING);
    assert_eq!(post(&d, &p), 200);
    assert!(!d.log_text().contains(TOKEN));
    assert_eq!(fake.violations(), Vec::<String>::new());
}

#[test]
fn backfill_escapes_what_the_api_says_and_fails_cleanly_on_garbage_or_no_api() {
    let fake = Fake::start();
    let now = chrono::Utc::now().timestamp();
    // A caller "number" that is a spreadsheet formula with a terminal escape in it.
    let hostile = "=cmd|' /C calc'!A0\u{1b}[2J";
    fake.add_call(
        &format!("CA{:032x}", 7),
        None,
        hostile,
        TRACKING_NO_FORWARD,
        "inbound",
        "completed",
        now - 100,
        Some(now - 90),
        Some(10),
    );
    let env = Env::new(&config(&fake, ""));
    let (code, text) = run(&env, &["backfill"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "a raw escape reached the terminal: {text:?}"
    );
    assert!(text.contains("\\u{1b}[2J"), "{text}");
    let o = env.run(&["export", "--config", env.config().to_str().unwrap()]);
    let csv = String::from_utf8_lossy(&o.stdout);
    assert!(csv.contains(",'=cmd|"), "the cell cannot run: {csv}");

    // An HTML error page where JSON should be: one sentence, exit 1, nothing stored.
    let events = count(&env.db(), "SELECT count(*) FROM events");
    fake.fault(200, None);
    let (code, text) = run(&env, &["backfill"]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("could not be read"), "{text}");
    assert_eq!(count(&env.db(), "SELECT count(*) FROM events"), events);

    // No API at all: after the retries, a sentence naming api_base.
    let dead = format!(
        "http://127.0.0.1:{}",
        crate::notify::receivers::closed_port()
    );
    env.write_config(&config(&fake, "").replace(&fake.base, &dead));
    let cfg = env.config();
    let o = std::process::Command::new(bin())
        .args(["backfill", "--config", cfg.to_str().unwrap()])
        .env("CALLTRACKD_REST_BACKOFF_MS", "10")
        .output()
        .unwrap();
    let text = out(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("cannot reach Twilio's API at {dead}")),
        "{text}"
    );
    assert!(!text.contains(TOKEN));
    assert_eq!(fake.violations(), Vec::<String>::new());
}

#[test]
fn reconcile_with_the_api_down_logs_why_and_webhooks_go_on() {
    let fake = Fake::start();
    let dead = format!(
        "http://127.0.0.1:{}",
        crate::notify::receivers::closed_port()
    );
    let env = Env::new(&config(&fake, "reconcile_minutes = 1").replace(&fake.base, &dead));
    let d = Daemon::start(&env, vec![("CALLTRACKD_REST_BACKOFF_MS", "10".into())]);
    assert!(
        d.wait_log(
            &format!("reconcile: cannot reach Twilio's API at {dead}"),
            Duration::from_secs(20)
        ),
        "{}",
        d.log_text()
    );
    assert!(
        d.log_text().contains("trying again in 1 min"),
        "{}",
        d.log_text()
    );
    assert_eq!(post(&d, &incoming("CAstill", TRACKING)), 200);
    assert_eq!(get(d.addr, "/healthz", &[]).status, 200);
}
