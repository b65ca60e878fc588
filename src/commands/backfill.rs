//! `calltrackd backfill [--since D] [--until D]`: record the calls Twilio has and
//! calltrackd never heard of (see [`crate::backfill`]).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use super::CliError;
use crate::backfill::{self, DEFAULT_DAYS, Window};
use crate::calls::{Call, CallOutcome};
use crate::config::{Config, Env, Needs};
use crate::export::parse_bound;
use crate::rest::Client;
use crate::storage;

/// One line per call recorded or finished (what the Calls API said, escaped: it is
/// printed to a terminal).
pub fn call_line(verb: &str, c: &Call) -> String {
    let line = format!(
        "{verb} {}  {} -> {}  user {:?}  started {}  status {}  outcome {}",
        c.call_sid,
        c.caller,
        c.tracking_number,
        c.user,
        crate::clock::rfc3339_ms(c.started_at * 1000),
        c.status,
        CallOutcome::label(c.outcome)
    );
    crate::logging::escaped(&line).into_owned()
}

/// Runs it.
pub fn backfill(
    config: &Path,
    since: Option<&str>,
    until: Option<&str>,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let cfg = Config::load_for(config, &Env::from_process(), Needs::ALL)?;
    let tz = cfg.export.timezone;
    let now = chrono::Utc::now().timestamp();
    let mut window = Window::last_days(now, DEFAULT_DAYS);
    if let Some(s) = since {
        window.since = parse_bound("--since", s, tz).map_err(|e| CliError::usage(e.to_string()))?;
    }
    if let Some(u) = until {
        window.until = parse_bound("--until", u, tz).map_err(|e| CliError::usage(e.to_string()))?;
    }
    if window.until <= window.since {
        return Err(CliError::usage("backfill: --until must be after --since"));
    }
    let client = Client::from_config(&cfg).map_err(|e| CliError::runtime(e.to_string()))?;
    let runtime = |e: storage::StorageError| CliError::runtime(format!("backfill: {e}"));
    let mut writer = storage::open_writer(&cfg.storage_path).map_err(runtime)?;
    storage::finish_upgrade(&mut writer, &cfg.rules).map_err(runtime)?;
    storage::summary::prepare(&mut writer, cfg.rules.timezone).map_err(runtime)?;
    let reader = storage::open_calls_reader(&cfg.storage_path).map_err(runtime)?;
    let rules = Arc::new(cfg.rules.clone());
    let mut store = |ev| storage::backfill::record(&mut writer, &ev);
    let report = backfill::run(&client, &reader, &rules, window, &mut store)
        .map_err(|e| CliError::runtime(format!("backfill: {e}")))?;
    for c in &report.added {
        let _ = writeln!(out, "{}", call_line("added", c));
    }
    for c in &report.finished {
        let _ = writeln!(out, "{}", call_line("final status for", c));
    }
    let _ = writeln!(
        out,
        "{} calls listed by Twilio from {} to {}; {} added, {} given their final status; {} API requests",
        report.listed,
        crate::clock::rfc3339_ms(window.since * 1000),
        crate::clock::rfc3339_ms(window.until * 1000),
        report.added.len(),
        report.finished.len(),
        report.requests
    );
    Ok(())
}
