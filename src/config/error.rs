//! What can go wrong loading the config: one sentence naming the file, the key and
//! the fix. Exit code 2.

use std::sync::Arc;

/// A configuration error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error(
        "{file}: cannot read the config file ({source}); pass the right one with --config PATH or $CALLTRACKD_CONFIG"
    )]
    Read {
        /// The config file.
        file: String,
        /// Why.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The file is not valid TOML, or a value has the wrong type or an unknown key.
    #[error("{file}:{at}: {message}; {fix}")]
    Syntax {
        /// The config file.
        file: String,
        /// ` line N in [table]`, when known.
        at: String,
        /// What is wrong (never a value: it could be a secret).
        message: String,
        /// What to do.
        fix: &'static str,
    },
    /// A value is not acceptable: the sentence names the key and what to write.
    #[error("{file}: {message}")]
    Invalid {
        /// The config file.
        file: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// Several problems, all found in one run.
    #[error("{file}: {} problems:{}", problems.len(), problems.iter().map(|p| format!("\n  - {p}")).collect::<String>())]
    Many {
        /// The config file.
        file: String,
        /// Each problem, a sentence without the file name.
        problems: Vec<String>,
    },
    /// A secret's environment variable is set but empty.
    #[error("environment variable {name} is set but empty; unset it or give it the token")]
    EmptyEnv {
        /// The variable.
        name: String,
    },
}

/// `invalid type: integer `31415926535`, expected a string` without the value:
/// `invalid type: integer, expected a string`. Key names in other messages stay.
fn redact_values(msg: &str) -> String {
    if !(msg.starts_with("invalid type") || msg.starts_with("invalid value")) {
        return msg.to_owned();
    }
    let mut out = String::with_capacity(msg.len());
    let mut inside = false;
    for c in msg.chars() {
        if c == '`' {
            inside = !inside;
        } else if !inside {
            out.push(c);
        }
    }
    out.replace(" ,", ",").replace("  ", " ")
}

/// Turns a TOML/serde error into one sentence: file, line, table, key, fix.
pub(super) fn toml_error(file: &str, text: &str, e: &toml::de::Error) -> ConfigError {
    // serde quotes the offending value (`invalid type: integer `31415926535``), and
    // the line could be a secret's: name only its type, never the value.
    let msg = redact_values(e.message().trim().trim_end_matches('.'));
    let msg = msg.as_str();
    let (line, table) = match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let table = before
                .lines()
                .rev()
                .map(str::trim)
                .find(|l| l.starts_with('['))
                .map(|l| {
                    let end = l.rfind(']').map(|i| i + 1).unwrap_or(l.len());
                    format!(" in {}", &l[..end])
                })
                .unwrap_or_default();
            (format!("line {line}"), table)
        }
        None => ("".into(), String::new()),
    };
    // A misspelled table (`[[number]]`, `[sever]`) reaches serde as an unknown key of
    // the top level: name it as the table it is, and the table meant.
    if let Some(name) = msg
        .strip_prefix("unknown field `")
        .and_then(|r| r.split('`').next())
        && let Some(span) = e.span()
        && text[span.start.min(text.len())..]
            .lines()
            .next()
            .is_some_and(|l| l.trim_end().ends_with(']'))
    {
        const TABLES: [&str; 6] = [
            "server", "storage", "twilio", "qualify", "export", "numbers",
        ];
        let line_no = text[..span.start.min(text.len())].matches('\n').count() + 1;
        let meant = TABLES
            .iter()
            .find(|t| t.starts_with(name) || name.starts_with(*t))
            .map(|t| {
                if *t == "numbers" {
                    " Did you mean [[numbers]]?".to_owned()
                } else {
                    format!(" Did you mean [{t}]?")
                }
            })
            .unwrap_or_default();
        return ConfigError::Syntax {
            file: file.to_owned(),
            at: format!(" line {line_no}"),
            message: format!(
                "unknown table `{name}`.{meant} The tables are [server], [storage], [twilio], [qualify], [export] and [[numbers]]"
            ),
            fix: "fix the table's name",
        };
    }
    let fix = if msg.starts_with("unknown field") {
        "remove that key or fix its spelling (see config.example.toml)"
    } else if msg.starts_with("invalid type") {
        "write the value with the type shown (strings in quotes, numbers without)"
    } else if msg.contains("duplicate key") {
        "keep each key once"
    } else {
        "fix the TOML syntax there"
    };
    let msg = msg.replace("field", "key");
    let at = if line.is_empty() {
        String::new()
    } else {
        format!(" {line}{table}")
    };
    ConfigError::Syntax {
        file: file.to_owned(),
        at,
        message: msg,
        fix,
    }
}

impl ConfigError {
    /// The sentence without the file name in front (for a list of problems).
    pub(super) fn sentence(&self) -> String {
        match self {
            ConfigError::Invalid { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }
}
