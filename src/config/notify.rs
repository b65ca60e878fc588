//! `[[notify]]`: who hears about calls, and how (webhook, ntfy, email, sms).

use super::is_e164;
use super::raw::RawNotify;
use super::secrets::Secret;
use super::validate::Loader;

/// A notification event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotifyEvent {
    /// `call.completed`: a call became final (its outcome is known).
    Completed,
    /// `call.missed`: it became final as missed, abandoned or voicemail.
    Missed,
    /// `call.qualified`: it became qualified.
    Qualified,
}

impl NotifyEvent {
    /// Its name in the config and in payloads.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyEvent::Completed => "call.completed",
            NotifyEvent::Missed => "call.missed",
            NotifyEvent::Qualified => "call.qualified",
        }
    }

    /// From its name.
    pub fn parse(s: &str) -> Option<NotifyEvent> {
        match s {
            "call.completed" => Some(NotifyEvent::Completed),
            "call.missed" => Some(NotifyEvent::Missed),
            "call.qualified" => Some(NotifyEvent::Qualified),
            _ => None,
        }
    }
}

/// How a target is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyKind {
    /// A signed JSON `POST` (Standard Webhooks).
    Webhook {
        /// The receiver.
        url: String,
        /// `whsec_...`: the signing secret.
        secret: Secret,
    },
    /// A message to an ntfy topic URL.
    Ntfy {
        /// The topic URL.
        url: String,
        /// Access token, when the topic needs one.
        token: Option<Secret>,
    },
    /// A plain-text mail over SMTP.
    Email {
        /// `smtps://` or `smtp://` with credentials: a secret.
        smtp_url: Secret,
        /// Sender.
        from: String,
        /// Addresses.
        to: Vec<String>,
    },
    /// A text via Twilio's Messages API.
    Sms {
        /// A Twilio number of the account.
        from: String,
        /// E.164 numbers.
        to: Vec<String>,
    },
}

/// One `[[notify]]` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyTarget {
    /// How.
    pub kind: NotifyKind,
    /// Which events.
    pub events: Vec<NotifyEvent>,
    /// Only these users' calls, when set.
    pub users: Option<Vec<String>>,
    /// What identifies the target in the outbox, stable across restarts and reloads,
    /// with no secret in it (`webhook https://host/path`, `email a@b.c`...).
    pub key: String,
}

impl NotifyTarget {
    /// `webhook`, `ntfy`, `email`, `sms`.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            NotifyKind::Webhook { .. } => "webhook",
            NotifyKind::Ntfy { .. } => "ntfy",
            NotifyKind::Email { .. } => "email",
            NotifyKind::Sms { .. } => "sms",
        }
    }

    /// Whether this target wants `event` for a call of `user`.
    pub fn wants(&self, event: NotifyEvent, user: &str) -> bool {
        self.events.contains(&event)
            && self
                .users
                .as_ref()
                .is_none_or(|u| u.iter().any(|x| x == user))
    }
}

/// A name for logs: the kind and the host or the recipients, never a path, a query
/// or a credential (a webhook URL's path is often a secret of its own).
pub fn label(key: &str) -> String {
    let (kind, rest) = key.split_once(' ').unwrap_or((key, ""));
    match kind {
        "webhook" | "ntfy" => {
            let host = rest
                .split_once("://")
                .map_or(rest, |(_, r)| r)
                .split(['/', '?', '#'])
                .next()
                .unwrap_or("");
            format!("{kind} {host}")
        }
        _ => key.to_owned(),
    }
}

fn http_url(u: &str) -> bool {
    (u.starts_with("https://") || u.starts_with("http://"))
        && u.len() > "https://".len()
        && !u.chars().any(|c| c.is_whitespace() || c.is_control())
}

impl Loader<'_> {
    /// The `[[notify]]` blocks, checked; `need` reads their secrets.
    pub(super) fn notify(
        &mut self,
        raw: Vec<RawNotify>,
        need: bool,
        has_account: bool,
    ) -> Vec<NotifyTarget> {
        let mut out = Vec::new();
        for (i, n) in raw.into_iter().enumerate() {
            let at = format!("[[notify]] entry {}", i + 1);
            if let Some(t) = self.notify_one(&at, n, need, has_account) {
                out.push(t);
            }
        }
        out
    }

    /// A `[[notify]]` secret from `key` or `key_file` (read only when `need`).
    fn notify_secret(
        &mut self,
        key: &str,
        inline: &Option<String>,
        file: &Option<String>,
        need: bool,
    ) -> Option<Secret> {
        let s = self.secret("notify", key, inline.clone(), file.clone(), need);
        self.or(s, None).map(|(s, _)| s)
    }

    fn notify_one(
        &mut self,
        at: &str,
        n: RawNotify,
        need: bool,
        has_account: bool,
    ) -> Option<NotifyTarget> {
        let mut events = Vec::new();
        match &n.events {
            None => self.problem(format_args!(
                "{at} has no `events`; add e.g. events = [\"call.missed\"] (call.completed, call.missed, call.qualified)"
            )),
            Some(list) if list.is_empty() => self.problem(format_args!(
                "{at}: `events` is empty; list at least one of call.completed, call.missed, call.qualified"
            )),
            Some(list) => {
                for e in list {
                    match NotifyEvent::parse(e) {
                        Some(ev) if !events.contains(&ev) => events.push(ev),
                        Some(_) => {}
                        None => self.problem(format_args!(
                            "{at}: unknown event {e:?}; write call.completed, call.missed or call.qualified"
                        )),
                    }
                }
            }
        }
        let users = n.users.clone();
        let need_key = |ld: &mut Self, key: &str, what: &str| {
            ld.problem(format_args!(
                "{at} (kind = {:?}) has no `{key}`; add {what}",
                n.kind.as_deref().unwrap_or("")
            ));
        };
        let url = n.url.clone().map(|u| u.trim().to_owned());
        // The `url` webhook and ntfy need: present and http(s).
        let the_url = |ld: &mut Self, example: &str| -> Option<String> {
            match &url {
                Some(u) if http_url(u) => Some(u.clone()),
                Some(_) => {
                    ld.problem(format_args!("{at}: `url` is not an http(s):// URL"));
                    None
                }
                None => {
                    need_key(ld, "url", example);
                    None
                }
            }
        };
        let recipients = |ld: &mut Self, phone: bool| -> Vec<String> {
            let list = n.to.clone().unwrap_or_default();
            if list.is_empty() {
                need_key(
                    ld,
                    "to",
                    if phone {
                        "to = [\"+15558675309\"] (E.164 numbers)"
                    } else {
                        "to = [\"owner@example.com\"]"
                    },
                );
            }
            for t in &list {
                let ok = if phone {
                    is_e164(t)
                } else {
                    t.contains('@') && !t.contains(char::is_whitespace)
                };
                if !ok {
                    ld.problem(format_args!(
                        "{at}: `to` entry {t:?} is not {}",
                        if phone {
                            "an E.164 number like \"+15558675309\""
                        } else {
                            "a mail address"
                        }
                    ));
                }
            }
            list
        };
        let kind = match n.kind.as_deref() {
            Some("webhook") => {
                let secret = self.notify_secret("secret", &n.secret, &n.secret_file, need);
                let url = the_url(
                    self,
                    "url = \"https://crm.example.com/hooks/calls\" (the receiver)",
                )?;
                match secret {
                    Some(s) => {
                        if standardwebhooks::Webhook::new(s.expose()).is_err() {
                            self.problem(format_args!(
                                "{at}: `secret` is not a Standard Webhooks secret; write \"whsec_\" followed by base64 (e.g. from `openssl rand -base64 32`)"
                            ));
                            return None;
                        }
                        NotifyKind::Webhook { url, secret: s }
                    }
                    None if need => {
                        need_key(
                            self,
                            "secret",
                            "secret = \"whsec_...\" (or secret_file): receivers check the signature with it",
                        );
                        return None;
                    }
                    None => NotifyKind::Webhook {
                        url,
                        secret: Secret::new(String::new()),
                    },
                }
            }
            Some("ntfy") => {
                let token = self.notify_secret("token", &n.token, &n.token_file, need);
                let url = the_url(self, "url = \"https://ntfy.sh/your-topic\" (the topic URL)")?;
                NotifyKind::Ntfy { url, token }
            }
            Some("email") => {
                let smtp = self.notify_secret("smtp_url", &n.smtp_url, &n.smtp_url_file, need);
                let to = recipients(self, false);
                let Some(from) = n.from.clone().filter(|f| f.contains('@')) else {
                    need_key(
                        self,
                        "from",
                        "from = \"calls@example.com\" (the sender address)",
                    );
                    return None;
                };
                match smtp {
                    Some(s) => {
                        let u = s.expose();
                        if !(u.starts_with("smtps://") || u.starts_with("smtp://"))
                            || url::Url::parse(u).is_err()
                        {
                            self.problem(format_args!(
                                "{at}: `smtp_url` is not an smtps:// or smtp:// URL (e.g. \"smtps://user:password@mail.example.com\"); its value is not shown"
                            ));
                            return None;
                        }
                        NotifyKind::Email {
                            smtp_url: s,
                            from,
                            to,
                        }
                    }
                    None if need => {
                        need_key(
                            self,
                            "smtp_url",
                            "smtp_url = \"smtps://user:password@mail.example.com\" (or smtp_url_file)",
                        );
                        return None;
                    }
                    None => NotifyKind::Email {
                        smtp_url: Secret::new(String::new()),
                        from,
                        to,
                    },
                }
            }
            Some("sms") => {
                let to = recipients(self, true);
                if !has_account {
                    self.problem(format_args!(
                        "{at}: sms needs [twilio] `account_sid` (texts go through the account's Messages API)"
                    ));
                }
                match n.from.clone() {
                    Some(f) if is_e164(&f) => NotifyKind::Sms { from: f, to },
                    _ => {
                        need_key(
                            self,
                            "from",
                            "from = \"+18005551212\" (a number of the Twilio account that can send texts)",
                        );
                        return None;
                    }
                }
            }
            Some(other) => {
                self.problem(format_args!(
                    "{at}: unknown kind {other:?}; write \"webhook\", \"ntfy\", \"email\" or \"sms\""
                ));
                return None;
            }
            None => {
                self.problem(format_args!(
                    "{at} has no `kind`; write kind = \"webhook\", \"ntfy\", \"email\" or \"sms\""
                ));
                return None;
            }
        };
        // Keys the kind does not use are refused, so a typo does not pass silently.
        let used: &[&str] = match &kind {
            NotifyKind::Webhook { .. } => &["url", "secret"],
            NotifyKind::Ntfy { .. } => &["url", "token"],
            NotifyKind::Email { .. } => &["smtp_url", "from", "to"],
            NotifyKind::Sms { .. } => &["from", "to"],
        };
        for (key, set) in [
            ("url", n.url.is_some()),
            ("secret", n.secret.is_some() || n.secret_file.is_some()),
            ("token", n.token.is_some() || n.token_file.is_some()),
            (
                "smtp_url",
                n.smtp_url.is_some() || n.smtp_url_file.is_some(),
            ),
            ("from", n.from.is_some()),
            ("to", n.to.is_some()),
        ] {
            if set && !used.contains(&key) {
                self.problem(format_args!(
                    "{at}: `{key}` does not apply to kind = {:?}; remove it",
                    n.kind.as_deref().unwrap_or("")
                ));
            }
        }
        let key = match &kind {
            NotifyKind::Webhook { url, .. } => format!("webhook {url}"),
            NotifyKind::Ntfy { url, .. } => format!("ntfy {url}"),
            NotifyKind::Email { to, .. } => format!("email {}", to.join(",")),
            NotifyKind::Sms { from, to } => format!("sms {from}>{}", to.join(",")),
        };
        Some(NotifyTarget {
            kind,
            events,
            users,
            key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::label;

    #[test]
    fn labels_never_show_a_path_or_query() {
        assert_eq!(
            label("webhook https://hooks.zapier.com/hooks/catch/123/secret?x=1"),
            "webhook hooks.zapier.com"
        );
        assert_eq!(label("ntfy https://ntfy.sh/my-topic"), "ntfy ntfy.sh");
        assert_eq!(label("email a@b.c"), "email a@b.c");
    }
}
