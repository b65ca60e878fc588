/*!
Logging to stderr, one line per message.

The level comes from `$CALLTRACKD_LOG` (`error`, `warn`, `info` — the default — `debug`,
`trace`). Under systemd (`$JOURNAL_STREAM` set) lines carry no timestamp, because
journald adds its own. Nothing logged anywhere in calltrackd contains a token or an
expected signature.

Log lines cannot be forged: every control character in a message (CR, LF, ESC, the
rest of C0 and C1, DEL, and the Unicode line and paragraph separators) is written
escaped (`\n`, `\u{1b}`), so text from a request (a Host, a path, a JSON key) can
never start a line of its own or drive the terminal that shows the log. The escaping is
done here, for every message, rather than at each place that logs request text.
*/

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::Write as _;

use log::{LevelFilter, Log, Metadata, Record};

struct Logger {
    level: LevelFilter,
    timestamps: bool,
}

impl Log for Logger {
    fn enabled(&self, meta: &Metadata) -> bool {
        meta.level() <= self.level && meta.target().starts_with("calltrackd")
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut line = String::with_capacity(128);
        if self.timestamps {
            let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
            let _ = write!(line, "{now} ");
        }
        let msg = record.args().to_string();
        let _ = writeln!(line, "[{}] {}", record.level(), escaped(&msg));
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// `$CALLTRACKD_LOG` is not a level.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "CALLTRACKD_LOG={0:?} is not a log level; use error, warn, info, debug or trace (or unset it for info)"
)]
pub struct UnknownLevel(String);

/// Installs the logger; calling it twice is harmless. An unknown `$CALLTRACKD_LOG` is an
/// error (a typo must not silently mean `info`).
pub fn init() -> Result<(), UnknownLevel> {
    let level = match std::env::var("CALLTRACKD_LOG") {
        Err(_) => LevelFilter::Info,
        Ok(v) if v.trim().is_empty() => LevelFilter::Info,
        Ok(v) => v
            .trim()
            .parse::<LevelFilter>()
            .map_err(|_| UnknownLevel(escaped(&v).into_owned()))?,
    };
    let logger = Logger {
        level,
        timestamps: std::env::var_os("JOURNAL_STREAM").is_none(),
    };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(level);
    }
    Ok(())
}

/// Whether a character must not reach a log line or an answer as it is.
fn is_unsafe(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

/// `s` with every control character written as an escape (`\n`, `\r`, `\t`, `\u{1b}`).
pub fn escaped(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_unsafe(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::escaped;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escaped("plain text"), "plain text");
        assert_eq!(
            escaped("a\r\n[ERROR] forged\x1b[31m\u{85}\u{2028}"),
            "a\\r\\n[ERROR] forged\\u{1b}[31m\\u{85}\\u{2028}"
        );
    }
}
