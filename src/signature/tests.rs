//! Unit tests for `signature`.

use super::*;

#[test]
fn url_variants_toggle_the_port() {
    assert_eq!(
        url_variants("https://a.com/x?y=1"),
        vec!["https://a.com/x?y=1", "https://a.com:443/x?y=1"]
    );
    assert_eq!(
        url_variants("http://a.com:8080/x"),
        vec!["http://a.com:8080/x", "http://a.com/x"]
    );
    assert_eq!(
        url_variants("https://u:p@a.com:1/x"),
        vec!["https://u:p@a.com:1/x", "https://u:p@a.com/x"]
    );
    assert_eq!(
        url_variants("http://[::1]/x"),
        vec!["http://[::1]/x", "http://[::1]:80/x"]
    );
    assert_eq!(
        url_variants("https://a.com"),
        vec!["https://a.com", "https://a.com:443"]
    );
}

#[test]
fn canonical_sorts_bytes_and_dedups_values() {
    let p = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    let params = vec![
        p("b", "2"),
        p("a", "z"),
        p("a", "y"),
        p("a", "z"),
        p("B", "1"),
    ];
    assert_eq!(canonical_params(&params), b"B1ayazb2");
}

#[test]
fn docs_example() {
    let token = Secret::new("12345".into());
    let p = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    let params = vec![
        p("CallSid", "CA1234567890ABCDE"),
        p("Caller", "+14158675310"),
        p("Digits", "1234"),
        p("From", "+14158675310"),
        p("To", "+18005551212"),
    ];
    let url = "https://example.com/myapp.php?foo=1&bar=2";
    let sig = compute(&token, url, &canonical_params(&params));
    assert_eq!(sig, "L/OH5YylLD5NRKLltdqwSvS0BnU=");
    assert!(verify(
        std::slice::from_ref(&token),
        url,
        Signed::Form(&params),
        Some(&sig)
    ));
    // The previous token is accepted too, in either position.
    let other = Secret::new("other".into());
    assert!(verify(
        &[other.clone(), token],
        url,
        Signed::Form(&params),
        Some(&sig)
    ));
    assert!(!verify(&[other], url, Signed::Form(&params), Some(&sig)));
}

#[test]
fn garbage_headers_are_rejected() {
    let t = [Secret::new("x".into())];
    for h in [None, Some(""), Some("!!!"), Some("AAAA"), Some("\u{0}")] {
        assert!(!verify(&t, "https://a/x", Signed::Form(&[]), h));
    }
    assert!(!verify(
        &t,
        "https://a/x",
        Signed::Json(b"{}"),
        Some("AAAA")
    ));
}
