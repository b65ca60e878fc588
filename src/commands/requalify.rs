//! `calltrackd requalify`: decide every stored call again with the config's current
//! numbers and `[qualify]` rules, and say what changed.

use std::io::Write;
use std::path::Path;

use super::CliError;
use crate::calls::Call;
use crate::config::{Config, Env, Needs};
use crate::storage::{self, Change, Pace, Requalified};

/// Runs it; prints each changed call, then the counts, to `out`.
pub fn requalify(config: &Path, dry_run: bool, out: &mut dyn Write) -> Result<(), CliError> {
    let cfg = Config::load_for(config, &Env::from_process(), Needs::NONE)?;
    let db = &cfg.storage_path;
    let runtime = |e: storage::StorageError| CliError::runtime(format!("requalify: {e}"));
    if dry_run {
        // A dry run writes nothing, not even a schema upgrade.
        storage::open_calls_reader(db).map_err(runtime)?;
    } else {
        storage::open_reader(db).map_err(runtime)?;
    }
    // Webhooks first: the daemon's threads win the CPU whenever they need it.
    crate::http::lower_priority();
    let mut conn = storage::open_writer(db).map_err(runtime)?;
    if !dry_run {
        storage::summary::prepare(&mut conn, cfg.rules.timezone).map_err(runtime)?;
    }
    let mut write_error = None;
    let mut print = |c: &Change| {
        if write_error.is_none()
            && let Err(e) = writeln!(out, "{}", change_line(c))
        {
            write_error = Some(e);
        }
    };
    let done = storage::requalify(
        &mut conn,
        &cfg.rules,
        false,
        dry_run,
        Pace::Share,
        &mut print,
    )
    .map_err(runtime)?;
    if let Some(e) = write_error
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        return Err(CliError::runtime(format!(
            "requalify: cannot write the list: {e}"
        )));
    }
    let _ = writeln!(out, "{}", summary(&done, dry_run));
    Ok(())
}

fn shown(v: &str) -> String {
    if v.is_empty() {
        "(empty)".to_owned()
    } else {
        format!("{v:?}")
    }
}

fn tri(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "true",
        Some(false) => "false",
        None => "(empty)",
    }
}

fn outcome(c: &Call) -> &'static str {
    c.outcome.map_or("(empty)", |o| o.as_str())
}

/// `CA…  qualified false -> true  outcome missed -> answered`: the fields that changed.
fn change_line(c: &Change) -> String {
    let (a, b) = (&c.before, &c.after);
    let mut line = a.call_sid.clone();
    if a.qualified != b.qualified {
        line.push_str(&format!(
            "  qualified {} -> {}",
            tri(a.qualified),
            tri(b.qualified)
        ));
    }
    if a.outcome != b.outcome {
        line.push_str(&format!("  outcome {} -> {}", outcome(a), outcome(b)));
    }
    if a.user != b.user {
        line.push_str(&format!("  user {} -> {}", shown(&a.user), shown(&b.user)));
    }
    if a.source != b.source {
        line.push_str(&format!(
            "  source {} -> {}",
            shown(&a.source),
            shown(&b.source)
        ));
    }
    if a.qualified_reason != b.qualified_reason && !b.qualified_reason.is_empty() {
        line.push_str(&format!("  ({})", b.qualified_reason));
    }
    line
}

fn summary(r: &Requalified, dry_run: bool) -> String {
    let count = crate::config::count;
    format!(
        "{}: {} decided again with the current rules; {} changed ({} now qualified, {} no longer qualified, {} with another outcome, {} with another user or source){}",
        if dry_run {
            "requalify --dry-run"
        } else {
            "requalify"
        },
        count(r.calls as usize, "call", "calls"),
        r.changed,
        r.now_qualified,
        r.no_longer_qualified,
        r.outcome_changed,
        r.attribution_changed,
        if dry_run { "; nothing was written" } else { "" }
    )
}
