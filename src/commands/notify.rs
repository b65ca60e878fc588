//! `calltrackd notify test|list|retry`.

use std::io::Write;
use std::path::Path;

use super::CliError;
use crate::calls::{Call, CallOutcome};
use crate::config::{Config, Env, Needs, notify_label};
use crate::notify::send::{Outgoing, send};
use crate::storage::outbox::{self, Attempt};
use crate::storage::{self, open_writer};

/// `notify test`: a clearly marked test message to every target; one line each.
pub fn test(config: &Path, out: &mut dyn Write) -> Result<(), CliError> {
    let cfg = Config::load_for(config, &Env::from_process(), Needs::ALL)?;
    if cfg.rules.notify.is_empty() {
        return Err(CliError::usage(format!(
            "{}: there is no [[notify]] block to test; add one (docs/notifications.md)",
            cfg.path.display()
        )));
    }
    let now = chrono::Utc::now().timestamp();
    let sample = Call {
        call_sid: "CA00000000000000000000000000000000".into(),
        user: cfg.rules.notify[0]
            .users
            .as_ref()
            .and_then(|u| u.first().cloned())
            .unwrap_or_else(|| "test-user".into()),
        tracking_number: "+18005551212".into(),
        source: "calltrackd test".into(),
        caller: "+15005550006".into(),
        direction: "inbound".into(),
        status: "no-answer".into(),
        answered: Some(false),
        qualified: Some(false),
        started_at: now - 30,
        ended_at: Some(now),
        outcome: Some(CallOutcome::Missed),
        ring_seconds: Some(20),
        talk_seconds: Some(0),
        duration_seconds: Some(0),
        qualified_reason: "test".into(),
        captured_by: "test".into(),
        ..Call::default()
    };
    let payload = outbox::payload("test", &sample, cfg.rules.timezone, now);
    let mut failed = 0;
    for t in &cfg.rules.notify {
        let id = outbox::webhook_id(&sample.call_sid, "test", &format!("{}{now}", t.key));
        let msg = Outgoing {
            event: "test",
            webhook_id: &id,
            payload: &payload,
        };
        match send(t, msg, &cfg) {
            Ok(()) => {
                let _ = writeln!(out, "ok    {}", notify_label(&t.key));
            }
            Err(e) => {
                failed += 1;
                let _ = writeln!(
                    out,
                    "FAIL  {}: {}",
                    notify_label(&t.key),
                    crate::logging::escaped(&e)
                );
            }
        }
    }
    if failed > 0 {
        return Err(CliError::runtime(format!(
            "notify test: {failed} of {} targets failed",
            cfg.rules.notify.len()
        )));
    }
    Ok(())
}

fn when(t: i64) -> String {
    crate::clock::rfc3339_ms(t * 1000)
}

/// `notify list [--failed]`: the outbox, newest first.
pub fn list(config: &Path, failed_only: bool, out: &mut dyn Write) -> Result<(), CliError> {
    let cfg = Config::load_for(config, &Env::from_process(), Needs::NONE)?;
    let rows = outbox::list(&cfg.storage_path, failed_only, 1000)
        .map_err(|e| CliError::runtime(format!("notify list: {e}")))?;
    let _ = writeln!(
        out,
        "{:>6}  {:<7}  {:<14}  {:<34}  {:<28}  {:>8}  {:<24}  last error",
        "id", "state", "event", "call", "target", "attempts", "created"
    );
    for r in &rows {
        let _ = writeln!(
            out,
            "{:>6}  {:<7}  {:<14}  {:<34}  {:<28}  {:>8}  {:<24}  {}",
            r.id,
            r.state,
            r.event,
            r.call_sid,
            notify_label(&r.target),
            r.attempts,
            when(r.created_at),
            // An upstream server's words: no control character reaches the terminal.
            crate::logging::escaped(r.last_error.as_deref().unwrap_or(""))
        );
    }
    let _ = writeln!(out, "{} notification(s)", rows.len());
    Ok(())
}

/// `notify retry ID`: sends a failed (or pending) notification now, and records it.
pub fn retry(config: &Path, id: i64, out: &mut dyn Write) -> Result<(), CliError> {
    let cfg = Config::load_for(config, &Env::from_process(), Needs::ALL)?;
    let runtime = |e: storage::StorageError| CliError::runtime(format!("notify retry: {e}"));
    let conn = open_writer(&cfg.storage_path).map_err(runtime)?;
    let row = outbox::get(&conn, id).map_err(runtime)?.ok_or_else(|| {
        CliError::usage(format!(
            "notify retry: there is no notification {id} (see `calltrackd notify list`)"
        ))
    })?;
    if row.state == "sent" {
        return Err(CliError::usage(format!(
            "notify retry: notification {id} was sent already"
        )));
    }
    let Some(target) = cfg.rules.notify.iter().find(|t| t.key == row.target) else {
        return Err(CliError::usage(format!(
            "notify retry: notification {id} is for {}, which is no longer in [[notify]]",
            notify_label(&row.target)
        )));
    };
    let msg = Outgoing {
        event: &row.event,
        webhook_id: &row.webhook_id,
        payload: &row.payload,
    };
    let now = chrono::Utc::now().timestamp();
    match send(target, msg, &cfg) {
        Ok(()) => {
            outbox::record(&conn, id, &Attempt::Sent, now).map_err(runtime)?;
            let _ = writeln!(
                out,
                "ok    notification {id} ({} for call {}) sent to {}",
                row.event,
                row.call_sid,
                notify_label(&row.target)
            );
            Ok(())
        }
        Err(error) => {
            let _ = writeln!(
                out,
                "FAIL  notification {id} to {}: {}",
                notify_label(&row.target),
                crate::logging::escaped(&error)
            );
            outbox::record(
                &conn,
                id,
                &Attempt::Failed {
                    error: error.clone(),
                },
                now,
            )
            .map_err(runtime)?;
            Err(CliError::runtime(format!("notify retry: {error}")))
        }
    }
}
