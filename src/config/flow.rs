//! How a number answers its calls (`[[numbers]]` call-flow keys) and the block list
//! (`[block]`), typed and checked.

use std::collections::HashSet;

use chrono::{Datelike, Timelike};
use chrono_tz::Tz;

use super::validate::is_e164;

/// Said before the greeting's `<Record>` when `voicemail_greeting` is not set.
pub const DEFAULT_GREETING: &str =
    "Sorry we missed your call. Please leave a message after the tone.";
/// Said before a recorded call when `record_notice` is not set.
pub const DEFAULT_RECORD_NOTICE: &str = "This call may be recorded.";

/// `voicemail_guard`: how calltrackd tells a person from the shop phone's voicemail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VoicemailGuard {
    /// No guard: whoever picks up the forwarded leg answered.
    #[default]
    Off,
    /// The shop presses a key to take the call; no key within 5 s hangs up that leg.
    Keypress,
    /// Twilio's answering-machine detection on the forwarded leg.
    Amd,
}

impl VoicemailGuard {
    /// From the config's value.
    pub fn parse(s: &str) -> Option<VoicemailGuard> {
        match s {
            "off" => Some(VoicemailGuard::Off),
            "keypress" => Some(VoicemailGuard::Keypress),
            "amd" => Some(VoicemailGuard::Amd),
            _ => None,
        }
    }
}

/// One `hours` entry: the days it covers and a time range on each of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hours {
    /// Bit 0 = Monday ... bit 6 = Sunday.
    days: u8,
    /// Minutes after midnight, start inclusive.
    start: u16,
    /// Minutes after midnight, end exclusive (after `start`).
    end: u16,
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn day(s: &str) -> Option<u8> {
    DAY_NAMES.iter().position(|d| *d == s).map(|i| i as u8)
}

fn minutes(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    // 24:00 is allowed as an end: "until midnight".
    ((h < 24 && m < 60) || (h == 24 && m == 0)).then_some(h * 60 + m)
}

impl Hours {
    /// Parses `mon-fri 08:00-17:00`, `sat 09:00-12:00`, `mon,wed 08:00-12:00`.
    pub fn parse(s: &str) -> Result<Hours, String> {
        let why = || {
            format!(
                "{s:?} is not an open-hours entry; write days then times, e.g. \"mon-fri 08:00-17:00\", \"sat 09:00-12:00\" or \"mon,wed 08:00-12:00\""
            )
        };
        let mut parts = s.split_whitespace();
        let (Some(days), Some(times), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(why());
        };
        let mut mask = 0u8;
        for item in days.split(',') {
            match item.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (day(a).ok_or_else(why)?, day(b).ok_or_else(why)?);
                    if b < a {
                        return Err(format!(
                            "{s:?}: the day range {item} runs backwards; write it from Monday's side, e.g. \"sat-sun\" or \"mon-fri\""
                        ));
                    }
                    for d in a..=b {
                        mask |= 1 << d;
                    }
                }
                None => mask |= 1 << day(item).ok_or_else(why)?,
            }
        }
        let (start, end) = times.split_once('-').ok_or_else(why)?;
        let (start, end) = (
            minutes(start).ok_or_else(why)?,
            minutes(end).ok_or_else(why)?,
        );
        if end <= start || start >= 24 * 60 {
            return Err(format!(
                "{s:?}: the closing time must be after the opening time on the same day (split a night across two entries)"
            ));
        }
        Ok(Hours {
            days: mask,
            start,
            end,
        })
    }

    fn contains(&self, weekday: u32, minute: u32) -> bool {
        self.days & (1 << weekday) != 0
            && minute >= u32::from(self.start)
            && minute < u32::from(self.end)
    }
}

/// Whether `hours` (none: always open) cover the instant `unix` in zone `tz`.
pub fn is_open(hours: Option<&[Hours]>, tz: Tz, unix: i64) -> bool {
    let Some(hours) = hours else {
        return true;
    };
    let Some(t) = chrono::DateTime::from_timestamp(unix, 0) else {
        return true;
    };
    let local = t.with_timezone(&tz);
    let weekday = local.weekday().num_days_from_monday();
    let minute = local.hour() * 60 + local.minute();
    hours.iter().any(|h| h.contains(weekday, minute))
}

/// How one number answers: everything beyond forwarding.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Flow {
    /// Zone of `hours`.
    pub timezone: Option<Tz>,
    /// Open hours; `None`: always open.
    pub hours: Option<Vec<Hours>>,
    /// Rung outside `hours`.
    pub after_hours_forward_to: Option<String>,
    /// Said outside `hours` when nobody is rung and there is no voicemail.
    pub closed_message: Option<String>,
    /// Said to the shop when it picks up.
    pub whisper: Option<String>,
    /// How a voicemail box is told from a person.
    pub voicemail_guard: VoicemailGuard,
    /// A call nobody took goes to calltrackd's voicemail.
    pub voicemail: bool,
    /// Said before the voicemail beep.
    pub voicemail_greeting: String,
    /// Record the call (the caller hears `record_notice` first).
    pub record: bool,
    /// Said before a recorded call.
    pub record_notice: String,
    /// `twilio setup` turns Twilio's caller-name lookup on for the number.
    pub caller_name_lookup: bool,
}

impl Eq for Flow {}

/// `[block]`: callers rejected before anything rings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BlockList {
    exact: HashSet<String>,
    prefixes: Vec<String>,
}

impl BlockList {
    /// Adds one entry: E.164, or a prefix (`+` and digits) ending in `*`.
    pub fn add(&mut self, entry: &str) -> Result<(), String> {
        if let Some(prefix) = entry.strip_suffix('*') {
            let digits = prefix.strip_prefix('+').unwrap_or("");
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "{entry:?} is not a number prefix; write + and the leading digits, then *, e.g. \"+1900*\""
                ));
            }
            self.prefixes.push(prefix.to_owned());
        } else if is_e164(entry) {
            self.exact.insert(entry.to_owned());
        } else {
            return Err(format!(
                "{entry:?} is neither an E.164 number nor a prefix ending in *; write e.g. \"+15551234567\" or \"+1900*\""
            ));
        }
        Ok(())
    }

    /// Whether a caller is blocked (only E.164 callers can be).
    pub fn blocks(&self, caller: &str) -> bool {
        is_e164(caller)
            && (self.exact.contains(caller) || self.prefixes.iter().any(|p| caller.starts_with(p)))
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.exact.len() + self.prefixes.len()
    }

    /// No entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The entries of a block file: one a line, `#` starts a comment, blank lines skipped.
pub fn block_file_entries(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().filter_map(|(i, line)| {
        let line = line.split('#').next().unwrap_or("").trim();
        (!line.is_empty()).then_some((i + 1, line))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_parse_and_cover_their_minutes() {
        let h = Hours::parse("mon-fri 08:00-17:00").unwrap();
        assert!(h.contains(0, 8 * 60) && h.contains(4, 17 * 60 - 1));
        assert!(!h.contains(0, 17 * 60) && !h.contains(5, 9 * 60) && !h.contains(0, 7 * 60 + 59));
        let h = Hours::parse("mon,wed,sat-sun 22:00-24:00").unwrap();
        assert!(h.contains(2, 23 * 60 + 59) && h.contains(6, 22 * 60) && !h.contains(1, 23 * 60));
        for bad in [
            "mon-fri",
            "monday 08:00-17:00",
            "fri-mon 08:00-17:00",
            "mon 17:00-08:00",
            "mon 8:00-17:00",
            "mon 08:00-25:00",
            "mon 08:00-17:00 extra",
            "",
        ] {
            assert!(Hours::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn open_hours_follow_the_local_clock_across_daylight_saving() {
        let chicago = chrono_tz::America::Chicago;
        let at = |rfc: &str| {
            chrono::DateTime::parse_from_rfc3339(rfc)
                .unwrap()
                .timestamp()
        };
        let weekdays = [Hours::parse("mon-fri 08:00-17:00").unwrap()];
        let h = Some(&weekdays[..]);
        // Monday 2026-03-02 (CST, UTC-6) and Monday 2026-03-09 (CDT, UTC-5).
        assert!(
            !is_open(h, chicago, at("2026-03-02T13:59:59Z")),
            "07:59:59 CST"
        );
        assert!(is_open(h, chicago, at("2026-03-02T14:00:00Z")), "08:00 CST");
        assert!(is_open(h, chicago, at("2026-03-09T13:00:00Z")), "08:00 CDT");
        assert!(
            !is_open(h, chicago, at("2026-03-02T13:00:00Z")),
            "07:00 CST"
        );
        assert!(
            is_open(h, chicago, at("2026-03-09T21:59:59Z")),
            "16:59:59 CDT"
        );
        assert!(
            !is_open(h, chicago, at("2026-03-09T22:00:00Z")),
            "17:00 CDT"
        );
        assert!(!is_open(h, chicago, at("2026-03-07T16:00:00Z")), "Saturday");
        // The night the clocks go forward: 02:00 CST is 03:00 CDT.
        let sunday = [Hours::parse("sun 01:00-03:30").unwrap()];
        let h = Some(&sunday[..]);
        assert!(is_open(h, chicago, at("2026-03-08T07:30:00Z")), "01:30 CST");
        assert!(is_open(h, chicago, at("2026-03-08T08:00:00Z")), "03:00 CDT");
        assert!(
            !is_open(h, chicago, at("2026-03-08T08:30:00Z")),
            "03:30 CDT"
        );
        // And back: 01:30 happens twice on 2026-11-01; both are inside 01:00-02:00.
        let back = [Hours::parse("sun 01:00-02:00").unwrap()];
        let h = Some(&back[..]);
        assert!(is_open(h, chicago, at("2026-11-01T06:30:00Z")), "01:30 CDT");
        assert!(is_open(h, chicago, at("2026-11-01T07:30:00Z")), "01:30 CST");
        assert!(
            !is_open(h, chicago, at("2026-11-01T08:00:00Z")),
            "02:00 CST"
        );
        // No hours: always open.
        assert!(is_open(None, chicago, at("2026-03-07T03:00:00Z")));
    }

    #[test]
    fn blocks_exact_numbers_and_prefixes_only() {
        let mut b = BlockList::default();
        b.add("+15551234567").unwrap();
        b.add("+1900*").unwrap();
        assert!(b.blocks("+15551234567") && b.blocks("+19005550000"));
        assert!(!b.blocks("+15551234568") && !b.blocks("anonymous") && !b.blocks("+1800"));
        for bad in ["*", "+*", "1900*", "+1-900*", "555", "+1555 123"] {
            assert!(b.add(bad).is_err(), "{bad}");
        }
    }
}
