//! Every test vector that Twilio's Python SDK accepts (`verified_with_twilio_python`),
//! copied from `shared/twilio-vectors.json` into `tests/data/`, run through the
//! crate's verifier: a valid vector must verify and an invalid one must not.

use calltrackd::config::Secret;
use calltrackd::signature::{Signed, verify};
use serde_json::Value;

fn vectors() -> Vec<Value> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/twilio-vectors.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn params(v: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(obj) = v["params"].as_object() {
        for (k, val) in obj {
            match val {
                Value::String(s) => out.push((k.clone(), s.clone())),
                Value::Array(a) => {
                    for x in a {
                        out.push((k.clone(), x.as_str().unwrap().to_owned()));
                    }
                }
                other => panic!("unexpected param value {other}"),
            }
        }
    }
    out
}

fn check(v: &Value) -> bool {
    let token = Secret::new(v["auth_token"].as_str().unwrap().to_owned());
    let url = v["url"].as_str().unwrap();
    let sig = v["signature"].as_str().unwrap();
    match v["body"].as_str() {
        Some(body) => verify(&[token], url, Signed::Json(body.as_bytes()), Some(sig)),
        None => verify(&[token], url, Signed::Form(&params(v)), Some(sig)),
    }
}

#[test]
fn python_sdk_vectors_all_agree() {
    let all = vectors();
    let mut checked = 0;
    for (i, v) in all.iter().enumerate() {
        if !v["verified_with_twilio_python"].as_bool().unwrap() {
            continue;
        }
        let expected = v["valid"].as_bool().unwrap();
        assert_eq!(check(v), expected, "vector #{i} ({})", v["source"]);
        checked += 1;
    }
    assert_eq!(checked, 64, "the python-verified set has 64 vectors");
}

#[test]
fn json_bodies_without_body_sha256_are_rejected_not_crashed() {
    // #26, #40, #43: twilio-python raises TypeError on these; the contract says reject.
    for (i, v) in vectors().iter().enumerate() {
        if v["body"].is_string() && !v["url"].as_str().unwrap().contains("bodySHA256") {
            assert!(!check(v), "vector #{i}");
        }
    }
}

#[test]
fn the_previous_token_also_verifies() {
    let v = &vectors()[0];
    let sig = v["signature"].as_str().unwrap();
    let tokens = [
        Secret::new("new-token".into()),
        Secret::new(v["auth_token"].as_str().unwrap().into()),
    ];
    assert!(verify(
        &tokens,
        v["url"].as_str().unwrap(),
        Signed::Form(&params(v)),
        Some(sig)
    ));
}

/// Every valid vector, through an implementation of Twilio's algorithm that is not the
/// crate's (the tests' own signer), then to the real daemon as a real request:
/// 1. the tests' signer gives each vector's signature for the vector's own URL (so it
///    agrees with the SDK that made the vector, or for the four node-only vectors with
///    the algorithm the contract states);
/// 2. the vector's parameters (or JSON body), with the vector's query string, are posted
///    to the webhook, signed by the tests' signer for the URL the daemon checks; the
///    daemon must accept the signature (anything but 403).
///
/// Nothing here checks the crate against itself.
#[test]
fn every_valid_vector_is_accepted_over_http() {
    use crate::support::*;
    let all = vectors();
    let mut sent = 0;
    for token in ["12345", "s3cr3t"] {
        let cfg = base_config("public_url = \"https://calls.example.com\"\n").replace(
            &format!("auth_token = \"{TOKEN}\""),
            &format!("auth_token = \"{token}\""),
        );
        let env = Env::new(&cfg);
        let d = env.start();
        for (i, v) in all.iter().enumerate() {
            if !v["valid"].as_bool().unwrap() || v["auth_token"].as_str() != Some(token) {
                continue;
            }
            let url = v["url"].as_str().unwrap();
            let owned = match v["body"].as_str() {
                Some(_) => Vec::new(),
                None => params(v),
            };
            let pairs = borrow(&owned);
            // The URL the signature covers: as given, or (node-only vectors) with `'`
            // and `%27` exchanged as WHATWG URL parsing does; each with the port toggle.
            let quote_forms = [
                url.to_owned(),
                url.replace('\'', "%27"),
                url.replace("%27", "'"),
            ];
            let signed_url = quote_forms
                .iter()
                .find(|form| {
                    port_variants(form)
                        .iter()
                        .any(|u| sign(token, u, &pairs) == v["signature"].as_str().unwrap())
                })
                .unwrap_or_else(|| {
                    panic!(
                        "vector #{i} ({}): the tests' signer disagrees with the SDK",
                        v["source"]
                    )
                });
            // The request carries the query the signature covers, byte for byte.
            let target = match signed_url.split_once('?') {
                Some((_, query)) => format!("/call-tracking/webhook?{query}"),
                None => "/call-tracking/webhook".to_owned(),
            };
            let signed = sign(token, &format!("https://calls.example.com{target}"), &pairs);
            let (ct, body) = match v["body"].as_str() {
                Some(b) => ("application/json", b.as_bytes().to_vec()),
                None => (
                    "application/x-www-form-urlencoded",
                    form_encode(&pairs).into_bytes(),
                ),
            };
            let headers = vec![
                ("Content-Type", ct.to_owned()),
                ("X-Twilio-Signature", signed),
            ];
            let r = request(d.addr, "POST", &target, &headers, &body);
            // Past the signature: 400 (no CallSid, or not a Twilio-shaped request) or
            // 200 both mean it verified; 403 means it did not.
            assert_ne!(
                r.status,
                403,
                "vector #{i} ({}) was refused: {}",
                v["source"],
                d.log_text()
            );
            sent += 1;
        }
    }
    let valid = all.iter().filter(|v| v["valid"].as_bool().unwrap()).count();
    assert_eq!(sent, valid, "every valid vector was sent");
}

/// The URL as given, without its port, and (when it has none) with the scheme's default
/// port: the forms Twilio's SDKs try, written here from their documented behaviour.
fn port_variants(url: &str) -> Vec<String> {
    let (scheme, rest) = url.split_once("://").unwrap();
    let cut = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(cut);
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (format!("{u}@"), h),
        None => (String::new(), authority),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => (h, Some(p)),
        _ => (hostport, None),
    };
    let default = if scheme.eq_ignore_ascii_case("https") {
        "443"
    } else {
        "80"
    };
    let mut out = vec![url.to_owned()];
    match port {
        Some(_) => out.push(format!("{scheme}://{userinfo}{host}{tail}")),
        None => out.push(format!("{scheme}://{userinfo}{host}:{default}{tail}")),
    }
    out
}
