/*!
The command-line commands besides `serve`: `check-config`, `sign`, `export`,
`share-link` and `backup`. Each returns a [`CliError`] carrying the exit code: 2 for bad
usage, bad config or a bad filter value, 1 for a runtime failure.
*/

use std::io::{IsTerminal, Seek, SeekFrom, Write};
use std::path::Path;

use crate::config::{Config, ConfigError, Env, Needs, Secret};
use crate::export::{self, ExportError, FilterArgs, Filters, Format, Scope};
use crate::signature;
use crate::storage;

mod backfill;
pub mod notify;
mod requalify;
mod twilio;
pub use backfill::{backfill, call_line};
pub use requalify::requalify;
pub use twilio::{WEBHOOK_PATH, doctor, setup};

/// A failed command: the message (one sentence) and the exit code.
#[derive(Debug)]
pub struct CliError {
    /// 2: usage, config or filter; 1: runtime.
    pub code: u8,
    /// What went wrong and what to do.
    pub message: String,
}

impl CliError {
    /// Exit 2.
    pub fn usage(message: impl Into<String>) -> CliError {
        CliError {
            code: 2,
            message: message.into(),
        }
    }
    /// Exit 1.
    pub fn runtime(message: impl Into<String>) -> CliError {
        CliError {
            code: 1,
            message: message.into(),
        }
    }
}

impl From<ConfigError> for CliError {
    fn from(e: ConfigError) -> Self {
        CliError::usage(e.to_string())
    }
}

fn print_warnings(cfg: &Config) {
    for w in &cfg.warnings {
        eprintln!("warning: {w}");
    }
}

/// `check-config`: validate, print the summary (and the fallback TwiML).
pub fn check_config(path: &Path, fallback_twiml: bool) -> Result<(), CliError> {
    let cfg = Config::load_for(path, &Env::from_process(), Needs::ALL)?;
    print_warnings(&cfg);
    if let Some(dir) = cfg.storage_path.parent()
        && !dir.as_os_str().is_empty()
        && !dir.is_dir()
    {
        eprintln!(
            "warning: the database folder {} does not exist yet (under the packaged unit, systemd creates it at start; otherwise create it before `calltrackd serve`)",
            dir.display()
        );
    }
    let mut out = std::io::stdout().lock();
    let mut text = format!("{} is valid\n{}", path.display(), cfg.summary());
    if fallback_twiml {
        text.push_str(&fallback_twiml_text(&cfg));
    }
    let _ = out.write_all(text.as_bytes());
    Ok(())
}

/// Static TwiML per forwarded number, for a TwiML Bin used as Twilio's fallback URL.
pub fn fallback_twiml_text(cfg: &Config) -> String {
    let mut nums: Vec<_> = cfg
        .rules
        .numbers
        .values()
        .filter(|n| n.forward_to.is_some())
        .collect();
    nums.sort_by(|a, b| a.number.cmp(&b.number));
    let mut s = String::from(
        "\nFallback TwiML: for each number, create a TwiML Bin with this content and set it as the\nnumber's \"Primary handler fails\" (voice fallback) URL in the Twilio console, so calls\nstill ring through while calltrackd is down (such calls are not recorded).\n",
    );
    if nums.is_empty() {
        s.push_str("(no number has a forward_to)\n");
    }
    for n in nums {
        let forward = n.forward_to.as_deref().unwrap_or_default();
        s.push_str(&format!("\n# {} ({})\n", n.number, n.user));
        s.push_str(&crate::twiml::plain_dial(
            forward,
            n.ring_timeout_seconds,
            None,
        ));
    }
    s
}

/// `sign`: the signature Twilio would send for a form POST of `params` to `url`.
pub fn sign(config: &Path, url: &str, params: &[String]) -> Result<String, CliError> {
    let mut pairs = Vec::with_capacity(params.len());
    for p in params {
        match p.split_once('=') {
            Some((k, v)) => pairs.push((k.to_owned(), v.to_owned())),
            None => {
                return Err(CliError::usage(format!(
                    "sign: parameter {p:?} has no `=`; write NAME=VALUE, e.g. CallSid=CA123"
                )));
            }
        }
    }
    let env = Env::from_process();
    let token = match env.twilio_auth_token.as_deref() {
        Some(t) if !t.trim().is_empty() => crate::config::Secret::new(t.trim().to_owned()),
        Some(_) => {
            return Err(CliError::usage(
                "environment variable TWILIO_AUTH_TOKEN is set but empty; unset it or give it the token",
            ));
        }
        None => {
            let cfg = Config::load_for(
                config,
                &env,
                Needs {
                    auth_token: true,
                    export_token: false,
                },
            )?;
            cfg.auth_tokens[0].clone()
        }
    };
    Ok(signature::compute(
        &token,
        url,
        &signature::canonical_params(&pairs),
    ))
}

fn parse_format(s: Option<&str>) -> Result<Format, CliError> {
    Format::parse(s.unwrap_or("csv")).map_err(|e| CliError::usage(format!("--format: {e}")))
}

/// A file written next to its destination and renamed into place when complete. The
/// partial file has an unpredictable name, is created with `O_EXCL` (so a planted file or
/// symlink is never followed or reused) and mode 0600; the destination must not exist
/// unless `force`.
fn write_atomically(
    dest: &Path,
    force: bool,
    write: impl FnOnce(&mut std::fs::File) -> Result<(), ExportError>,
) -> Result<(), CliError> {
    let name = dest
        .file_name()
        .ok_or_else(|| CliError::usage(format!("{} is not a file name", dest.display())))?;
    if !force && std::fs::symlink_metadata(dest).is_ok() {
        return Err(CliError::usage(format!(
            "{} already exists; choose another file name, or add --force to replace it",
            dest.display()
        )));
    }
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let fail = |e: &dyn std::fmt::Display| {
        CliError::runtime(format!("cannot write {}: {e}", dest.display()))
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.", name.to_string_lossy()))
        .suffix(".partial")
        .tempfile_in(dir)
        .map_err(|e| fail(&e))?;
    write(tmp.as_file_mut()).map_err(|e| fail(&e))?;
    tmp.as_file().sync_all().map_err(|e| fail(&e))?;
    if force {
        tmp.persist(dest).map_err(|e| fail(&e.error))?;
    } else {
        // Fails rather than replacing a file that appeared meanwhile.
        tmp.persist_noclobber(dest).map_err(|e| fail(&e.error))?;
    }
    Ok(())
}

/// `export`: the calls as CSV (stdout or file) or XLSX (file).
pub fn export(
    config: &Path,
    filters: &FilterArgs,
    format: Option<&str>,
    output: Option<&Path>,
    force: bool,
) -> Result<(), CliError> {
    let format = parse_format(format)?;
    let cfg = Config::load_for(config, &Env::from_process(), Needs::NONE)?;
    let tz = cfg.export.timezone;
    let f = Filters::from_pairs(&filters.pairs(), tz)
        .map_err(|e| CliError::usage(format!("export: {e}")))?;
    let db = cfg.storage_path.clone();
    // Open once up front so a missing database is a clear runtime error, not a file.
    storage::open_calls_reader(&db).map_err(|e| CliError::runtime(e.to_string()))?;
    let tempdir = std::env::temp_dir();
    match (format, output) {
        (Format::Xlsx, Some(out)) => write_atomically(out, force, |file| {
            let dir = out
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            export::write_xlsx(&db, f, tz, file, dir).map(|_| ())
        }),
        (Format::Csv, Some(out)) => write_atomically(out, force, |file| {
            let mut w = std::io::BufWriter::new(file);
            export::write_csv(&db, f, tz, &mut w)?;
            w.flush()
                .map_err(|e| ExportError::io("cannot write the CSV", e))
        }),
        (Format::Xlsx, None) => {
            if std::io::stdout().is_terminal() {
                return Err(CliError::usage(
                    "export --format xlsx writes a binary workbook: redirect stdout to a file, or use --output FILE",
                ));
            }
            // A workbook is written whole (it is a zip), so it is built in an unnamed
            // temporary file first, then copied out.
            let mut file = tempfile::tempfile_in(&tempdir).map_err(|e| {
                CliError::runtime(format!(
                    "cannot create a temporary file in {}: {e}",
                    tempdir.display()
                ))
            })?;
            export::write_xlsx(&db, f, tz, &mut file, &tempdir)
                .and_then(|_| {
                    file.seek(SeekFrom::Start(0))
                        .map_err(|e| ExportError::io("cannot read the workbook back", e))
                })
                .and_then(|_| {
                    let mut w = std::io::stdout().lock();
                    std::io::copy(&mut file, &mut w)
                        .and_then(|_| w.flush())
                        .map_err(|e| ExportError::io("cannot write to stdout", e))
                })
                .or_else(broken_pipe_is_fine)
        }
        (Format::Report, _) => Err(CliError::usage(
            "export --format report: the report is a web page; open /report, or make a link with `calltrackd share-link --format report`",
        )),
        (Format::Csv, None) => {
            let stdout = std::io::stdout();
            let mut w = std::io::BufWriter::new(stdout.lock());
            export::write_csv(&db, f, tz, &mut w)
                .and_then(|_| {
                    w.flush()
                        .map_err(|e| ExportError::io("cannot write to stdout", e))
                })
                .or_else(broken_pipe_is_fine)
        }
    }
}

/// `| head` closing the pipe is not an error (told by the error's kind, not its text).
fn broken_pipe_is_fine(e: ExportError) -> Result<(), CliError> {
    if e.is_broken_pipe() {
        Ok(())
    } else {
        Err(CliError::runtime(format!("export failed: {e}")))
    }
}

/// `share-link`: a read-only, expiring export URL.
pub fn share_link(
    config: &Path,
    filters: &Scope,
    format: Option<&str>,
    days: Option<i64>,
) -> Result<String, CliError> {
    let format = parse_format(format)?;
    let days = days.unwrap_or(90);
    if !(1..=3650).contains(&days) {
        return Err(CliError::usage(format!(
            "--days {days} is out of range; give 1 to 3650 (default 90)"
        )));
    }
    let cfg = Config::load_for(
        config,
        &Env::from_process(),
        Needs {
            auth_token: false,
            export_token: true,
        },
    )?;
    Filters::from_pairs(&filters.pairs(), cfg.export.timezone)
        .map_err(|e| CliError::usage(format!("share-link: {e}")))?;
    // On an installed system the export token reaches the daemon as a systemd
    // credential loaded from the file beside the config; a shell has no
    // $CREDENTIALS_DIRECTORY, so read that file the way the unit does.
    let beside = config
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .join("export-token");
    let token = match cfg.export.token.clone() {
        Some(t) => t,
        None => match std::fs::read_to_string(&beside) {
            Ok(text) if !text.trim().is_empty() => Secret::new(text.trim().to_owned()),
            Ok(_) => {
                return Err(CliError::usage(format!(
                    "{} is empty; write the export token into it",
                    beside.display()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                return Err(CliError::usage(format!(
                    "{} cannot be read ({e}); run share-link as root (sudo), or give the token in $CALLTRACKD_EXPORT_TOKEN",
                    beside.display()
                )));
            }
            Err(_) => {
                return Err(CliError::usage(format!(
                    "{}: no export token: set [export] `token` (or `token_file`, or $CALLTRACKD_EXPORT_TOKEN), or put it in {} (the file the packaged unit loads with LoadCredential=export-token): share links are signed with it",
                    config.display(),
                    beside.display()
                )));
            }
        },
    };
    let base = match cfg.server.public_url.as_deref() {
        Some(b) => b.to_owned(),
        None => {
            let local = format!("http://{}", cfg.server.listen);
            eprintln!(
                "note: {} has no [server] public_url, so the link points at the local listener {local}; set public_url to the address people reach calltrackd at",
                config.display()
            );
            local
        }
    };
    let expires = chrono::Utc::now().timestamp() + days * 86_400;
    let query = export::share_query(&token, format, &filters.pairs(), expires);
    Ok(match format {
        Format::Report => format!("{base}/report?{query}"),
        _ => format!("{base}/calls.{}?{query}", format.ext()),
    })
}

/// `backup DEST`: a consistent, verified copy of the database, safe while serving.
pub fn backup(config: &Path, dest: &Path) -> Result<String, CliError> {
    let cfg = Config::load_for(config, &Env::from_process(), Needs::NONE)?;
    // A folder: a new time-stamped file in it (what the backup timer uses).
    let named;
    let dest = if dest.is_dir() {
        named = dest.join(format!(
            "calls-{}.db",
            chrono::Utc::now().format("%Y%m%d-%H%M%S")
        ));
        named.as_path()
    } else {
        dest
    };
    if dest.exists() {
        return Err(CliError::usage(format!(
            "backup: {} already exists; remove it or choose another file name",
            dest.display()
        )));
    }
    // The copy goes into an empty file with an unpredictable name, created with O_EXCL
    // and mode 0600 (VACUUM INTO accepts an empty file), then takes its name.
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let result = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".partial")
        .tempfile_in(dir)
        .map_err(|e| storage::StorageError::Io {
            what: format!("cannot create a file in {}", dir.display()),
            source: std::sync::Arc::new(e),
        })
        .and_then(|tmp| {
            let calls = storage::backup_into(&cfg.storage_path, tmp.path())?;
            tmp.persist_noclobber(dest)
                .map_err(|e| storage::StorageError::Io {
                    what: format!("cannot rename into {}", dest.display()),
                    source: std::sync::Arc::new(e.error),
                })?;
            let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
            Ok(calls)
        });
    match result {
        Ok(calls) => Ok(format!(
            "backup of {} written to {} ({calls} calls, integrity check ok)",
            cfg.storage_path.display(),
            dest.display()
        )),
        Err(e) => Err(CliError::runtime(format!("backup failed: {e}"))),
    }
}
