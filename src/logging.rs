/*!
Logging to stderr with `log` + `simplelog`.

The level comes from `$CALLTRACKD_LOG` (`error`, `warn`, `info` — the default — `debug`,
`trace`). Under systemd (`$JOURNAL_STREAM` set) lines carry no timestamp, because
journald adds its own. Nothing logged anywhere in calltrackd contains a token or an
expected signature.
*/

use log::LevelFilter;
use simplelog::{ConfigBuilder, WriteLogger};

/// Installs the logger; calling it twice is harmless.
pub fn init() {
    let level = std::env::var("CALLTRACKD_LOG")
        .ok()
        .and_then(|v| v.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::Info);
    let mut b = ConfigBuilder::new();
    // tiny_http logs the accept error our own shutdown causes; the daemon reports a
    // real listener failure itself (src/http.rs), so its messages are not needed.
    b.add_filter_ignore_str("tiny_http");
    b.set_target_level(LevelFilter::Off)
        .set_thread_level(LevelFilter::Off)
        .set_location_level(LevelFilter::Off);
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        b.set_time_level(LevelFilter::Off);
    } else {
        b.set_time_format_rfc3339();
    }
    let _ = WriteLogger::init(level, b.build(), std::io::stderr());
}
