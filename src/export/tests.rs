//! Unit tests for `export`.

use super::csv::push_record;
use super::*;

#[test]
fn cells_are_neutralised_but_phones_kept() {
    assert_eq!(safe_cell("+14155550100"), "+14155550100");
    assert_eq!(safe_cell("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
    assert_eq!(safe_cell("+1 415"), "'+1 415");
    assert_eq!(safe_cell("+"), "'+");
    assert_eq!(safe_cell("-2+3"), "'-2+3");
    assert_eq!(safe_cell("@SUM(A1)"), "'@SUM(A1)");
    assert_eq!(safe_cell("\tx"), "'\tx");
    assert_eq!(safe_cell("\rx"), "'\rx");
    assert_eq!(safe_cell("JOHN SMITH"), "JOHN SMITH");
    assert_eq!(safe_cell(""), "");
    // Invisible characters before a trigger, and the fullwidth and small forms.
    for hidden in [
        " =1+1",
        "\u{a0}=1+1",
        "\u{feff}=1+1",
        "\u{200b}@SUM(A1)",
        "  \u{2060}-2",
        "\u{ff1d}1+1",
        "\u{ff0b}1",
        "\u{ff0d}1",
        "\u{ff20}A1",
        "\u{fe62}1",
        "\u{2212}1",
    ] {
        assert_eq!(safe_cell(hidden), format!("'{hidden}"), "{hidden:?}");
    }
    // White space before harmless text stays as it is.
    assert_eq!(safe_cell(" JOHN"), " JOHN");
    assert_eq!(safe_cell("\u{a0}"), "\u{a0}");
}

#[test]
fn bounds() {
    let ny: Tz = "America/New_York".parse().unwrap();
    assert_eq!(
        parse_bound("from", "2026-01-01", chrono_tz::UTC).unwrap(),
        1767225600
    );
    assert_eq!(
        parse_bound("from", "2026-01-01", ny).unwrap(),
        1767225600 + 5 * 3600
    );
    assert_eq!(
        parse_bound("from", "2026-01-01T00:00:00Z", ny).unwrap(),
        1767225600
    );
    assert!(parse_bound("from", "2026-13-01", ny).is_err());
    assert!(parse_bound("from", "yesterday", ny).is_err());
    assert!(parse_bound("from", "2026-1-1", ny).is_err());
}

#[test]
fn filters_are_strict() {
    let p = |v: &[(&str, &str)]| {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect::<Vec<_>>()
    };
    assert!(Filters::from_pairs(&p(&[("qualifed", "true")]), chrono_tz::UTC).is_err());
    assert!(Filters::from_pairs(&p(&[("qualified", "yes")]), chrono_tz::UTC).is_err());
    assert!(Filters::from_pairs(&p(&[("user", "a"), ("user", "b")]), chrono_tz::UTC).is_err());
    let f =
        Filters::from_pairs(&p(&[("user", "a"), ("qualified", "false")]), chrono_tz::UTC).unwrap();
    assert_eq!((f.user.as_deref(), f.qualified), (Some("a"), Some(false)));
}

#[test]
fn share_links_verify_and_refuse_edits() {
    let t = Secret::new("tok".into());
    let scope = vec![("user".to_string(), "acme".to_string())];
    let q = share_query(&t, Format::Csv, &scope, 2000);
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&q).unwrap();
    let f = verify_share(&t, Format::Csv, &pairs, 1000, chrono_tz::UTC).unwrap();
    assert_eq!(f.user.as_deref(), Some("acme"));
    // expired
    assert_eq!(
        verify_share(&t, Format::Csv, &pairs, 2000, chrono_tz::UTC)
            .unwrap_err()
            .status(),
        403
    );
    // other format, other token
    assert!(verify_share(&t, Format::Xlsx, &pairs, 1000, chrono_tz::UTC).is_err());
    assert!(
        verify_share(
            &Secret::new("new".into()),
            Format::Csv,
            &pairs,
            1000,
            chrono_tz::UTC
        )
        .is_err()
    );
    // edited user, added scope, extended expiry
    for (k, v) in [
        ("user", "other"),
        ("source", "x"),
        ("expires", "9999999999"),
    ] {
        let mut edited: Vec<(String, String)> =
            pairs.iter().filter(|(a, _)| a != k).cloned().collect();
        edited.push((k.into(), v.into()));
        assert_eq!(
            verify_share(&t, Format::Csv, &edited, 1000, chrono_tz::UTC)
                .unwrap_err()
                .status(),
            403,
            "{k}"
        );
    }
    // a scope filter given twice
    let mut doubled = pairs.clone();
    doubled.push(("user".into(), "acme".into()));
    assert_eq!(
        verify_share(&t, Format::Csv, &doubled, 1000, chrono_tz::UTC)
            .unwrap_err()
            .status(),
        403
    );
    // from/to narrow
    let mut narrowed = pairs.clone();
    narrowed.push(("from".into(), "2026-01-01".into()));
    assert!(
        verify_share(&t, Format::Csv, &narrowed, 1000, chrono_tz::UTC)
            .unwrap()
            .from
            .is_some()
    );
}

#[test]
fn links_made_before_outcome_filters_still_verify_and_new_scope_is_signed() {
    let t = Secret::new("tok".into());
    // A link as the first share links were signed (HMAC over user, source, qualified,
    // absent ones as '-'), computed independently of this crate.
    let old: Vec<(String, String)> = [
        ("user", "acme"),
        ("expires", "2000"),
        ("sig", "ltHdpA22OypUsFF_Fkk2lozuNBEpMgGQV9ou6HNUjwY"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    let f = verify_share(&t, Format::Csv, &old, 1000, chrono_tz::UTC).unwrap();
    assert_eq!(
        (f.user.as_deref(), f.outcome.as_ref()),
        (Some("acme"), None)
    );
    // outcome or first_time added to it: altered.
    for (k, v) in [("outcome", "missed"), ("first_time", "true")] {
        let mut edited = old.clone();
        edited.push((k.into(), v.into()));
        assert!(verify_share(&t, Format::Csv, &edited, 1000, chrono_tz::UTC).is_err());
    }
    // A link scoped by outcome carries it, signed.
    let scope = vec![
        ("outcome".to_string(), "missed,abandoned".to_string()),
        ("first_time".to_string(), "true".to_string()),
    ];
    let q = share_query(&t, Format::Csv, &scope, 2000);
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&q).unwrap();
    let f = verify_share(&t, Format::Csv, &pairs, 1000, chrono_tz::UTC).unwrap();
    assert_eq!(f.first_time, Some(true));
    assert_eq!(f.outcome.map(|o| o.len()), Some(2));
    let widened: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| {
            let v = if k == "outcome" {
                "missed,abandoned,answered"
            } else {
                v
            };
            (k.clone(), v.to_string())
        })
        .collect();
    assert!(verify_share(&t, Format::Csv, &widened, 1000, chrono_tz::UTC).is_err());
}

#[test]
fn fields_with_semicolons_are_quoted_like_commas() {
    let mut out = Vec::new();
    push_record(
        &mut out,
        ["a", "b;=cmd|' /C calc'!A0", "c,d", "say \"hi\"", "x\ny", ""],
    );
    assert_eq!(
        String::from_utf8(out.clone()).unwrap(),
        "a,\"b;=cmd|' /C calc'!A0\",\"c,d\",\"say \"\"hi\"\"\",\"x\ny\",\r\n"
    );
    // An independent RFC 4180 reader gives the fields back; a field read on its own by
    // a reader that splits on semicolons (and honours quotes) stays one field.
    let mut r = ::csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(&out[..]);
    let rec = r.records().next().unwrap().unwrap();
    assert_eq!(rec.get(1), Some("b;=cmd|' /C calc'!A0"));
    let mut field = Vec::new();
    push_record(&mut field, ["b;=cmd|' /C calc'!A0"]);
    let mut r = ::csv::ReaderBuilder::new()
        .has_headers(false)
        .delimiter(b';')
        .from_reader(&field[..]);
    let rec = r.records().next().unwrap().unwrap();
    assert_eq!(rec.len(), 1);
}
