//! The file as serde reads it: every key optional, unknown keys refused.

use serde::Deserialize;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) server: RawServer,
    #[serde(default)]
    pub(super) storage: RawStorage,
    #[serde(default)]
    pub(super) twilio: RawTwilio,
    #[serde(default)]
    pub(super) qualify: RawQualify,
    #[serde(default)]
    pub(super) block: RawBlock,
    #[serde(default)]
    pub(super) export: RawExport,
    #[serde(default)]
    pub(super) numbers: Vec<RawNumber>,
    #[serde(default)]
    pub(super) notify: Vec<RawNotify>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNotify {
    pub(super) kind: Option<String>,
    pub(super) events: Option<Vec<String>>,
    pub(super) users: Option<Vec<String>>,
    pub(super) url: Option<String>,
    pub(super) secret: Option<String>,
    pub(super) secret_file: Option<String>,
    pub(super) token: Option<String>,
    pub(super) token_file: Option<String>,
    pub(super) smtp_url: Option<String>,
    pub(super) smtp_url_file: Option<String>,
    pub(super) from: Option<String>,
    pub(super) to: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub(super) listen: Option<String>,
    pub(super) public_url: Option<String>,
    pub(super) metrics_listen: Option<String>,
    pub(super) workers: Option<i64>,
    pub(super) max_body_bytes: Option<i64>,
    pub(super) max_connections: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStorage {
    pub(super) path: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTwilio {
    pub(super) auth_token: Option<String>,
    pub(super) auth_token_file: Option<String>,
    pub(super) previous_auth_token: Option<String>,
    pub(super) previous_auth_token_file: Option<String>,
    pub(super) account_sid: Option<String>,
    pub(super) api_key_sid: Option<String>,
    pub(super) api_key_secret: Option<String>,
    pub(super) api_key_secret_file: Option<String>,
    pub(super) api_base: Option<String>,
    pub(super) reconcile_minutes: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawQualify {
    pub(super) min_duration_seconds: Option<i64>,
    pub(super) abandon_seconds: Option<i64>,
    pub(super) first_time_lookback_days: Option<i64>,
    pub(super) require_first_time: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBlock {
    pub(super) callers: Option<Vec<String>>,
    pub(super) file: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExport {
    pub(super) token: Option<String>,
    pub(super) token_file: Option<String>,
    pub(super) timezone: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNumber {
    pub(super) number: Option<String>,
    pub(super) user: Option<String>,
    pub(super) source: Option<String>,
    pub(super) forward_to: Option<String>,
    pub(super) ring_timeout_seconds: Option<i64>,
    pub(super) min_duration_seconds: Option<i64>,
    pub(super) timezone: Option<String>,
    pub(super) hours: Option<Vec<String>>,
    pub(super) after_hours_forward_to: Option<String>,
    pub(super) closed_message: Option<String>,
    pub(super) whisper: Option<String>,
    pub(super) voicemail_guard: Option<String>,
    pub(super) voicemail: Option<bool>,
    pub(super) voicemail_greeting: Option<String>,
    pub(super) record: Option<bool>,
    pub(super) record_notice: Option<String>,
    pub(super) caller_name_lookup: Option<bool>,
}
