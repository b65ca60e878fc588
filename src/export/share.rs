//! Share links: filters, an expiry and an HMAC-SHA256 keyed by the export token, in the
//! query of an export URL.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use chrono_tz::Tz;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::{Filters, Format, ShareError};
use crate::config::Secret;

type HmacSha256 = Hmac<Sha256>;

/// The query parameters a share link signs (besides `expires` and `sig`). The first
/// three are signed present or absent, as since the first links; those after them only
/// when present, so links made before they existed keep working (and one of them added
/// to such a link still changes its signature).
const SHARE_SCOPE: [&str; 5] = ["user", "source", "qualified", "outcome", "first_time"];
/// How many of [`SHARE_SCOPE`] are signed even when absent.
const ALWAYS_SIGNED: usize = 3;

fn share_mac(
    token: &Secret,
    format: Format,
    scope: &[(String, String)],
    expires: i64,
) -> HmacSha256 {
    let mut m =
        HmacSha256::new_from_slice(token.expose().as_bytes()).expect("HMAC takes any key length");
    m.update(b"calltrackd share link v1\n");
    m.update(format.ext().as_bytes());
    for (i, name) in SHARE_SCOPE.iter().enumerate() {
        match scope.iter().find(|(k, _)| k == name) {
            Some((_, v)) => {
                m.update(b"\n");
                m.update(name.as_bytes());
                m.update(b"=");
                m.update(v.as_bytes());
            }
            None if i < ALWAYS_SIGNED => m.update(b"\n-"),
            None => {}
        }
    }
    m.update(format!("\nexpires={expires}").as_bytes());
    m
}

/// The share link's query string for these scope filters.
pub fn share_query(
    token: &Secret,
    format: Format,
    scope: &[(String, String)],
    expires: i64,
) -> String {
    let sig = B64URL.encode(
        share_mac(token, format, scope, expires)
            .finalize()
            .into_bytes(),
    );
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    for name in SHARE_SCOPE {
        if let Some((_, v)) = scope.iter().find(|(k, _)| k == name) {
            pairs.push((name, v));
        }
    }
    let expires = expires.to_string();
    pairs.push(("expires", &expires));
    pairs.push(("sig", &sig));
    serde_urlencoded::to_string(&pairs).unwrap_or_default()
}

/// Checks a share link's query; returns the filters it grants (plus any `from`/`to`).
pub fn verify_share(
    token: &Secret,
    format: Format,
    pairs: &[(String, String)],
    now: i64,
    tz: Tz,
) -> Result<Filters, ShareError> {
    let mut scope = Vec::new();
    let mut dates = Vec::new();
    let (mut expires, mut sig) = (None, None);
    for (k, v) in pairs {
        let slot = match k.as_str() {
            "expires" => &mut expires,
            "sig" => &mut sig,
            "from" | "to" => {
                dates.push((k.clone(), v.clone()));
                continue;
            }
            k if SHARE_SCOPE.contains(&k) => {
                if scope.iter().any(|(n, _)| n == k) {
                    return Err(ShareError::Altered);
                }
                scope.push((k.to_owned(), v.clone()));
                continue;
            }
            _ => return Err(ShareError::Altered),
        };
        if slot.replace(v.clone()).is_some() {
            return Err(ShareError::Altered);
        }
    }
    let expires: i64 = expires
        .and_then(|e| e.parse().ok())
        .ok_or(ShareError::Altered)?;
    let sig = sig
        .and_then(|s| B64URL.decode(s).ok())
        .ok_or(ShareError::Altered)?;
    if share_mac(token, format, &scope, expires)
        .verify_slice(&sig)
        .is_err()
    {
        return Err(ShareError::Altered);
    }
    if now >= expires {
        return Err(ShareError::Expired);
    }
    let mut all = scope;
    all.extend(dates);
    Ok(Filters::from_pairs(&all, tz)?)
}
