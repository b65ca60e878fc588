//! Property-based tests (proptest): no input panics the form parser, the JSON parser,
//! the signature check or the cell neutralisation, and the round trips hold.

use calltrackd::config::Secret;
use calltrackd::export::safe_cell;
use calltrackd::signature::{Signed, canonical_params, compute, url_variants, verify};
use calltrackd::twilio::{parse_form, parse_json};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn form_parser_never_panics(body in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = parse_form(&body);
    }

    #[test]
    fn form_parser_round_trips(pairs in proptest::collection::vec((".{0,12}", ".{0,24}"), 0..8)) {
        let encoded = serde_urlencoded::to_string(&pairs).unwrap();
        let parsed = parse_form(encoded.as_bytes()).unwrap();
        prop_assert_eq!(parsed.0, pairs);
    }

    #[test]
    fn json_parser_never_panics(body in proptest::collection::vec(any::<u8>(), 0..300), s in "\\PC{0,80}") {
        let _ = parse_json(&body);
        let _ = parse_json(s.as_bytes());
    }

    #[test]
    fn signature_check_never_panics(url in "\\PC{0,60}", header in "\\PC{0,40}", body in proptest::collection::vec(any::<u8>(), 0..100),
                                    params in proptest::collection::vec(("\\PC{0,8}", "\\PC{0,16}"), 0..6)) {
        let t = [Secret::new("token".into())];
        let _ = url_variants(&url);
        prop_assert!(!verify(&t, &url, Signed::Form(&params), Some(&header)) || header.len() >= 28);
        let _ = verify(&t, &url, Signed::Json(&body), Some(&header));
        let _ = verify(&t, &url, Signed::Form(&params), None);
    }

    #[test]
    fn what_is_signed_verifies_and_any_change_does_not(
        host in "[a-z]{1,10}\\.example", port in proptest::option::of(1u16..65535), path in "(/[A-Za-z0-9%._~-]{0,8}){0,3}",
        query in proptest::option::of("[A-Za-z0-9=&%+]{0,20}"),
        params in proptest::collection::vec(("[A-Za-z]{1,8}", "\\PC{0,16}"), 1..8),
    ) {
        let url = format!("https://{host}{}{path}{}", port.map(|p| format!(":{p}")).unwrap_or_default(),
                          query.map(|q| format!("?{q}")).unwrap_or_default());
        let t = Secret::new("s3cr3t".into());
        let sig = compute(&t, &url, &canonical_params(&params));
        prop_assert!(verify(std::slice::from_ref(&t), &url, Signed::Form(&params), Some(&sig)));
        let mut changed = params.clone();
        changed[0].1.push('x');
        prop_assert!(!verify(std::slice::from_ref(&t), &url, Signed::Form(&changed), Some(&sig)));
        prop_assert!(!verify(&[Secret::new("other".into())], &url, Signed::Form(&params), Some(&sig)));
    }

    #[test]
    fn cells_never_start_a_formula(s in "\\PC{0,30}|[=+@\\t\\r-]\\PC{0,10}|\\+[0-9]{0,15}") {
        let out = safe_cell(&s);
        let plain_phone = s.len() > 1 && s.starts_with('+') && s[1..].bytes().all(|b| b.is_ascii_digit());
        let starts_formula = matches!(out.as_bytes().first(), Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r'));
        prop_assert!(!starts_formula || plain_phone, "{:?} -> {:?}", s, out);
        // Nothing is lost: either unchanged or one ' in front.
        prop_assert!(out == s || out.strip_prefix('\'') == Some(s.as_str()));
    }
}
