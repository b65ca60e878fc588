//! A call as JSON: the CSV columns by name, typed (numbers, booleans, strings; `null`
//! for an empty cell). The body of `webhook` notifications.

use chrono_tz::Tz;
use serde_json::{Map, Value};

use super::COLUMNS;
use super::csv::local_naive;
use crate::calls::Call;

fn text(s: &str) -> Value {
    if s.is_empty() {
        Value::Null
    } else {
        Value::String(s.to_owned())
    }
}

fn utc(t: i64) -> Value {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| Value::String(d.format("%Y-%m-%dT%H:%M:%SZ").to_string()))
        .unwrap_or(Value::Null)
}

/// The call's columns, in CSV order (spreadsheet-formula guards do not apply: JSON
/// values cannot run).
pub fn call_object(c: &Call, tz: Tz) -> Map<String, Value> {
    let values = [
        text(&c.call_sid),
        text(&c.user),
        text(&c.tracking_number),
        text(&c.source),
        text(&c.caller),
        text(&c.caller_name),
        text(&c.caller_city),
        text(&c.caller_state),
        text(&c.direction),
        text(&c.status),
        c.answered.map_or(Value::Null, Value::Bool),
        c.qualified.map_or(Value::Null, Value::Bool),
        c.duration_seconds.map_or(Value::Null, Value::from),
        c.talk_seconds.map_or(Value::Null, Value::from),
        utc(c.started_at),
        c.ended_at.map_or(Value::Null, utc),
        Value::String(
            local_naive(c.started_at, tz)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string(),
        ),
        c.outcome
            .map_or(Value::Null, |o| Value::String(o.as_str().to_owned())),
        c.ring_seconds.map_or(Value::Null, Value::from),
        c.first_time_caller.map_or(Value::Null, Value::Bool),
        c.prior_calls.map_or(Value::Null, Value::from),
        text(&c.qualified_reason),
        text(&c.recording_url),
        text(&c.voicemail_url),
        text(&c.captured_by),
    ];
    COLUMNS
        .iter()
        .zip(values)
        .map(|(k, v)| ((*k).to_owned(), v))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_column_in_order_typed_and_null_when_empty() {
        let c = Call {
            call_sid: "CA1".into(),
            user: "acme".into(),
            caller: "+14155550100".into(),
            answered: Some(true),
            talk_seconds: Some(45),
            started_at: 1_700_000_000,
            ..Call::default()
        };
        let o = call_object(&c, chrono_tz::UTC);
        assert_eq!(o.keys().map(String::as_str).collect::<Vec<_>>(), COLUMNS);
        assert_eq!(o["answered"], Value::Bool(true));
        assert_eq!(o["talk_seconds"], Value::from(45));
        assert_eq!(o["source"], Value::Null);
        assert_eq!(o["qualified"], Value::Null);
        assert_eq!(o["started_at"], "2023-11-14T22:13:20Z");
    }
}
