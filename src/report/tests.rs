//! Unit tests for `report`: periods and the charts' safety.

use super::*;

fn d(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

#[test]
fn periods_are_whole_local_days() {
    let today = d("2026-03-10");
    assert_eq!(
        Period::last_days(today, 7),
        Period {
            from: d("2026-03-04"),
            to: d("2026-03-11")
        }
    );
    assert_eq!(Period::this_month(today).to, d("2026-04-01"));
    assert_eq!(
        Period::last_month(d("2026-01-15")),
        Period {
            from: d("2025-12-01"),
            to: d("2026-01-01")
        }
    );
    assert_eq!(Period::last_days(today, 30).days(), 30);
    // Midnight of the day the clocks go forward in Chicago exists; 02:00 would not.
    let chicago = chrono_tz::America::Chicago;
    assert_eq!(Period::start_of(d("2026-03-08"), chicago), 1_772_949_600);
}

#[test]
fn charts_hold_only_numbers_and_fixed_labels() {
    let days = vec![
        (d("2026-03-01"), [3, 1, 0, 2, 0, 0, 1]),
        (d("2026-03-02"), [0; 7]),
    ];
    let s = svg::per_day(&days);
    assert!(s.starts_with("<svg") && s.ends_with("</svg>"));
    assert!(s.contains("2026-03-01 answered: 3"));
    let mut heat = [[0; 24]; 7];
    heat[0][9] = 4;
    let h = svg::heat(&heat);
    assert!(h.contains("Mon 09:00: 4"));
}
