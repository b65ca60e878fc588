/*!
Twilio's REST API (2010-04-01): the client `twilio setup`, `twilio doctor`, `backfill`,
the daemon's reconcile thread and `sms` notifications share.

HTTP Basic with the API key (else the account SID and auth token), TLS verified by
rustls (no OpenSSL: the binary still cross-builds for a Raspberry Pi), 10 s timeouts,
429 and 5xx retried with backoff (`Retry-After` honoured), lists followed through
`next_page_uri`. Twilio's JSON errors become sentences ([`RestError`]); no secret is in
any of them, nor in a log line.

Files: `resources` (the resources calltrackd reads, typed).
*/

use std::io::Read;
use std::time::Duration;

use base64::Engine;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::config::{Config, Secret};

mod resources;
pub use resources::{Account, CallResource, IncomingNumber, Message};

/// The API version path every resource lives under.
pub const API_PATH: &str = "/2010-04-01";
/// How long one request may take (connect, send, answer).
const TIMEOUT: Duration = Duration::from_secs(10);
/// Tries per request: the first and three retries.
const ATTEMPTS: u32 = 4;
/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// The most bytes read of one answer (a page of 1,000 calls is about 1.5 MB).
const MAX_ANSWER: u64 = 16 << 20;

/// What went wrong talking to Twilio, as a sentence with the fix.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RestError {
    /// `[twilio]` lacks what the REST API needs.
    #[error(
        "[twilio] has no `account_sid`; add the Account SID (AC...) from the Twilio console to use the REST API"
    )]
    NoAccount,
    /// 401: the credentials were refused.
    #[error(
        "Twilio refused the credentials for account {account} (HTTP 401{code}): check [twilio] `account_sid` and the auth token (or `api_key_sid` and `api_key_secret`)"
    )]
    Credentials {
        /// The account SID (not a secret).
        account: String,
        /// `, error 20003` or empty.
        code: String,
    },
    /// 404 on a resource.
    #[error("Twilio has no {what} (HTTP 404{code})")]
    NotFound {
        /// What was asked for.
        what: String,
        /// `, error 20404` or empty.
        code: String,
    },
    /// Another error status, after retries where they apply.
    #[error("Twilio answered HTTP {status} to {what}: {message}")]
    Status {
        /// HTTP status.
        status: u16,
        /// What was asked for.
        what: String,
        /// Twilio's message and code, or the status text.
        message: String,
    },
    /// No answer (connection refused, timeout, TLS).
    #[error(
        "cannot reach Twilio's API at {base} ({why}); check the network and [twilio] `api_base`"
    )]
    Unreachable {
        /// `api_base`.
        base: String,
        /// The transport error.
        why: String,
    },
    /// An answer that is not what the API describes.
    #[error("Twilio's answer to {what} could not be read ({why})")]
    BadAnswer {
        /// What was asked for.
        what: String,
        /// What was wrong with it.
        why: String,
    },
}

/// Twilio's error body.
#[derive(Deserialize, Default)]
struct TwilioError {
    code: Option<i64>,
    message: Option<String>,
}

/// A page of a list resource: the items (verbatim) and the next page.
#[derive(Debug)]
pub struct Page {
    /// Each item exactly as Twilio sent it.
    pub items: Vec<Box<RawValue>>,
    /// `next_page_uri`, relative to `api_base`.
    pub next: Option<String>,
}

/// A client for one account.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    account: String,
    /// `Basic ...`: holds the secret, so the type has no `Debug`.
    authorization: String,
    /// Base of the exponential backoff (1 s; tests may shorten it).
    backoff: Duration,
    /// How many requests were made, retries included (for the cost lines).
    requests: std::cell::Cell<u64>,
}

impl Client {
    /// A client for the config's account; [`RestError::NoAccount`] without one.
    pub fn from_config(cfg: &Config) -> Result<Client, RestError> {
        let api = &cfg.twilio_api;
        let account = api.account_sid.clone().ok_or(RestError::NoAccount)?;
        let (user, secret): (&str, &Secret) = match &api.api_key {
            Some((sid, secret)) => (sid, secret),
            None => match cfg.auth_tokens.first() {
                Some(token) => (&account, token),
                None => return Err(RestError::NoAccount),
            },
        };
        Ok(Client::new(&api.api_base, &account, user, secret))
    }

    /// A client for `account` at `base`, authenticating as `user` with `secret`.
    pub fn new(base: &str, account: &str, user: &str, secret: &Secret) -> Client {
        // Twilio's API does not redirect; following one could carry the credentials
        // elsewhere.
        let agent = agent(TIMEOUT);
        let basic =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{}", secret.expose()));
        let backoff = std::env::var("CALLTRACKD_REST_BACKOFF_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(Duration::from_secs(1), Duration::from_millis);
        Client {
            agent,
            base: base.trim_end_matches('/').to_owned(),
            account: account.to_owned(),
            authorization: format!("Basic {basic}"),
            backoff,
            requests: std::cell::Cell::new(0),
        }
    }

    /// The account SID.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// How many HTTP requests this client made so far (retries included).
    pub fn requests(&self) -> u64 {
        self.requests.get()
    }

    /// `/2010-04-01/Accounts/{sid}` + `rest`.
    pub fn account_path(&self, rest: &str) -> String {
        format!("{API_PATH}/Accounts/{}{rest}", self.account)
    }

    /// GET `path` (with its query) as JSON text.
    pub fn get(&self, path: &str, what: &str) -> Result<String, RestError> {
        self.send(what, || {
            self.agent
                .get(format!("{}{path}", self.base))
                .header("Authorization", &self.authorization)
                .header("Accept", "application/json")
                .call()
        })
    }

    /// POST a form to `path`; the answer as JSON text.
    pub fn post(&self, path: &str, form: &[(&str, &str)], what: &str) -> Result<String, RestError> {
        self.send(what, || {
            self.agent
                .post(format!("{}{path}", self.base))
                .header("Authorization", &self.authorization)
                .header("Accept", "application/json")
                .send_form(form.iter().copied())
        })
    }

    /// Every item of a list resource (`key` names the list), page after page.
    pub fn list(&self, path: &str, key: &str, what: &str) -> Result<Vec<Box<RawValue>>, RestError> {
        let mut items = Vec::new();
        let mut next = Some(path.to_owned());
        let mut pages = 0;
        while let Some(p) = next.take() {
            let page = self.page(&p, key, what)?;
            items.extend(page.items);
            pages += 1;
            // A server that keeps answering the same page would loop for ever.
            if page.next.as_deref() == Some(p.as_str()) || pages > 10_000 {
                return Err(RestError::BadAnswer {
                    what: what.to_owned(),
                    why: "its pages do not end".into(),
                });
            }
            next = page.next;
        }
        Ok(items)
    }

    /// One page of a list resource.
    pub fn page(&self, path: &str, key: &str, what: &str) -> Result<Page, RestError> {
        let text = self.get(path, what)?;
        let bad = |why: String| RestError::BadAnswer {
            what: what.to_owned(),
            why,
        };
        let mut page: std::collections::HashMap<String, Box<RawValue>> =
            serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let items = match page.remove(key) {
            Some(raw) => serde_json::from_str::<Vec<Box<RawValue>>>(raw.get())
                .map_err(|e| bad(format!("`{key}`: {e}")))?,
            None => return Err(bad(format!("no `{key}` list"))),
        };
        let next = match page.remove("next_page_uri") {
            Some(raw) => serde_json::from_str::<Option<String>>(raw.get())
                .map_err(|e| bad(format!("`next_page_uri`: {e}")))?,
            None => None,
        };
        // `next_page_uri` is a path on the API's host; anything else is refused so
        // the credentials go nowhere else.
        if let Some(n) = &next
            && !n.starts_with(&format!("{API_PATH}/"))
        {
            return Err(bad(format!(
                "`next_page_uri` {n:?} is not a path of the API"
            )));
        }
        Ok(Page { items, next })
    }

    /// Sends with retries: 429 and 5xx (and no answer at all) are tried again, after
    /// `Retry-After` when given, else after 1, 2, 4 s (with jitter).
    fn send(
        &self,
        what: &str,
        request: impl Fn() -> Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<String, RestError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.requests.set(self.requests.get() + 1);
            let last = attempt >= ATTEMPTS;
            let mut resp = match request() {
                Ok(r) => r,
                Err(e) => {
                    if last {
                        return Err(RestError::Unreachable {
                            base: self.base.clone(),
                            why: e.to_string(),
                        });
                    }
                    log::debug!("Twilio API: {what}: {e}; trying again");
                    std::thread::sleep(self.delay(attempt, None));
                    continue;
                }
            };
            let status = resp.status().as_u16();
            let mut body = String::new();
            let read = resp
                .body_mut()
                .as_reader()
                .take(MAX_ANSWER)
                .read_to_string(&mut body);
            if (200..300).contains(&status) {
                read.map_err(|e| RestError::BadAnswer {
                    what: what.to_owned(),
                    why: e.to_string(),
                })?;
                return Ok(body);
            }
            if (status == 429 || status >= 500) && !last {
                let after = resp
                    .headers()
                    .get("Retry-After")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER));
                log::info!("Twilio API answered {status} to {what}; trying again");
                std::thread::sleep(self.delay(attempt, after));
                continue;
            }
            let err: TwilioError = serde_json::from_str(&body).unwrap_or_default();
            let code = err.code.map(|c| format!(", error {c}")).unwrap_or_default();
            return Err(match status {
                401 => RestError::Credentials {
                    account: self.account.clone(),
                    code,
                },
                404 => RestError::NotFound {
                    what: what.to_owned(),
                    code,
                },
                _ => RestError::Status {
                    status,
                    what: what.to_owned(),
                    message: match err.message {
                        Some(m) => format!("{m}{code}"),
                        None => resp
                            .status()
                            .canonical_reason()
                            .unwrap_or("error")
                            .to_owned(),
                    },
                },
            });
        }
    }

    fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(d) = retry_after {
            return d;
        }
        let base = self.backoff * 2u32.pow(attempt - 1);
        // Jitter: 50-100 % of the step, so clients that failed together do not
        // retry together.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        base.mul_f64(0.5 + f64::from(nanos % 1000) / 2000.0)
    }

    /// The account itself (checks the credentials).
    pub fn fetch_account(&self) -> Result<Account, RestError> {
        let what = format!("account {}", self.account);
        let text = self.get(&self.account_path(".json"), &what)?;
        parse(&text, &what)
    }

    /// The account's number `e164`, if it has it.
    pub fn find_number(&self, e164: &str) -> Result<Option<IncomingNumber>, RestError> {
        let what = format!("the number {e164} of account {}", self.account);
        let path = self.account_path(&format!(
            "/IncomingPhoneNumbers.json?{}",
            query(&[("PhoneNumber", e164)])
        ));
        let items = self.list(&path, "incoming_phone_numbers", &what)?;
        for raw in items {
            let n: IncomingNumber = parse(raw.get(), &what)?;
            if n.phone_number == e164 {
                return Ok(Some(n));
            }
        }
        Ok(None)
    }

    /// Sets fields of a number (`IncomingPhoneNumbers/{Sid}`).
    pub fn update_number(
        &self,
        sid: &str,
        fields: &[(&str, &str)],
    ) -> Result<IncomingNumber, RestError> {
        let what = format!("the update of number {sid}");
        let text = self.post(
            &self.account_path(&format!("/IncomingPhoneNumbers/{sid}.json")),
            fields,
            &what,
        )?;
        parse(&text, &what)
    }

    /// The calls matching `filters` (`Calls.json` query parameters), every page, each
    /// with its JSON text as Twilio sent it.
    pub fn calls(
        &self,
        filters: &[(&str, &str)],
    ) -> Result<Vec<(CallResource, String)>, RestError> {
        let what = "the list of calls".to_owned();
        let mut q: Vec<(&str, &str)> = filters.to_vec();
        q.push(("PageSize", "1000"));
        let path = self.account_path(&format!("/Calls.json?{}", query(&q)));
        self.list(&path, "calls", &what)?
            .into_iter()
            .map(|raw| Ok((parse(raw.get(), &what)?, raw.get().to_owned())))
            .collect()
    }

    /// Sends a text message.
    pub fn send_sms(&self, from: &str, to: &str, body: &str) -> Result<Message, RestError> {
        let what = format!("a text to {to}");
        let text = self.post(
            &self.account_path("/Messages.json"),
            &[("To", to), ("From", from), ("Body", body)],
            &what,
        )?;
        parse(&text, &what)
    }
}

/// An HTTP client for calltrackd's outbound requests (the REST API, notifications,
/// doctor's health check): TLS verified by rustls, `timeout` for the whole request,
/// status codes handed back (not errors), redirects reported rather than followed.
pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .user_agent(concat!("calltrackd/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

fn parse<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T, RestError> {
    serde_json::from_str(text).map_err(|e| RestError::BadAnswer {
        what: what.to_owned(),
        why: e.to_string(),
    })
}

/// A query string, percent-encoded (`StartTime>` keeps its name, encoded).
pub fn query(pairs: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}
