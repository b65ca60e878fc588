//! Secrets: tokens from the file, `*_file` keys, the environment and systemd
//! credentials. A secret's value never reaches a log line, an error or `--help`.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::ConfigError;
use super::validate::Loader;

/// A secret (auth token, export token). Its `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: String) -> Secret {
        Secret(value)
    }
    /// The secret itself: use only to key a MAC or compare in constant time.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(****)")
    }
}

impl Loader<'_> {
    /// Reads a secret from `key` / `key_file`, both being an error.
    pub(super) fn secret(
        &mut self,
        table: &str,
        key: &str,
        inline: Option<String>,
        file: Option<String>,
        needed: bool,
    ) -> Result<Option<(Secret, String)>, ConfigError> {
        match (inline, file) {
            (None, Some(_)) if !needed => Ok(None),
            (Some(_), Some(_)) => Err(self.err(format_args!(
                "[{table}] sets both `{key}` and `{key}_file`; keep only one of them"
            ))),
            (Some(v), None) => {
                if v.trim().is_empty() {
                    return Err(self.err(format_args!(
                        "[{table}] `{key}` is empty; set it to the token, or remove the key"
                    )));
                }
                // Trimmed like a token read from a file.
                Ok(Some((
                    Secret::new(v.trim().to_owned()),
                    format!("[{table}] {key}"),
                )))
            }
            (None, Some(f)) => {
                let path = self.resolve(&f);
                let v = self.read_secret_file(&path, &format!("[{table}] `{key}_file`"))?;
                Ok(Some((Secret::new(v), format!("file {}", path.display()))))
            }
            (None, None) => Ok(None),
        }
    }

    pub(super) fn read_secret_file(
        &mut self,
        path: &Path,
        what: &str,
    ) -> Result<String, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            self.err(format_args!(
                "{what} {} cannot be read ({e}); fix the path or the file's permissions",
                path.display()
            ))
        })?;
        let v = text.trim();
        if v.is_empty() {
            return Err(self.err(format_args!(
                "{what} {} is empty; write the token into it",
                path.display()
            )));
        }
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            self.warnings.push(format!(
                "secret file {} is readable by group or others (mode {:o}); run: chmod 600 {}",
                path.display(),
                meta.permissions().mode() & 0o777,
                path.display()
            ));
        }
        Ok(v.to_owned())
    }

    /// A secret from the environment: set-but-empty is an error, not "unset".
    pub(super) fn env_secret(
        &self,
        name: &str,
        value: &Option<String>,
    ) -> Result<Option<Secret>, ConfigError> {
        match value {
            None => Ok(None),
            Some(v) if v.trim().is_empty() => Err(ConfigError::EmptyEnv {
                name: name.to_owned(),
            }),
            Some(v) => Ok(Some(Secret::new(v.trim().to_owned()))),
        }
    }

    /// A secret handed over by systemd's `LoadCredential=`, if present.
    pub(super) fn credential(
        &mut self,
        name: &str,
    ) -> Result<Option<(Secret, String)>, ConfigError> {
        let Some(dir) = &self.env.credentials_directory else {
            return Ok(None);
        };
        let path = dir.join(name);
        if !path.exists() {
            return Ok(None);
        }
        let v = self.read_secret_file(&path, "systemd credential")?;
        Ok(Some((Secret::new(v), format!("systemd credential {name}"))))
    }
}

/// Whether the config text sets a secret inline (`auth_token`, `token`, ...).
pub(super) fn holds_inline_secret(text: &str) -> bool {
    text.lines().any(|l| {
        let l = l.trim_start();
        [
            "auth_token",
            "previous_auth_token",
            "token",
            "api_key_secret",
            "secret",
            "smtp_url",
        ]
        .iter()
        .any(|k| {
            l.strip_prefix(k)
                .is_some_and(|r| r.trim_start().starts_with('='))
        })
    })
}
