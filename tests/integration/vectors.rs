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
