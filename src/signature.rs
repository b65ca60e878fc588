/*!
`X-Twilio-Signature`: computing and checking it exactly as Twilio's own SDKs do.

The signed string is the URL Twilio requested, verbatim (never decoded, re-encoded,
re-sorted or lowercased), followed, for a form body, by every parameter name and its
form-decoded value, names sorted in byte order and a repeated name's distinct values
sorted too. It is signed with HMAC-SHA1 keyed by the auth token and base64-encoded.
A JSON body is signed through its SHA-256, which Twilio puts in the URL as `bodySHA256`.

Like the SDKs, the check also tries the URL without its port and, when it has none, with
the scheme's default port, because Twilio is not consistent about ports. Comparison is
constant time (the MAC crate's `verify_slice`), and nothing here ever logs a token or
the expected signature.
*/

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{Secret, split_host_port};

type HmacSha1 = Hmac<Sha1>;

/// What follows the URL in the signed string.
pub enum Signed<'a> {
    /// A form body's decoded parameters, in any order (they get sorted here).
    Form(&'a [(String, String)]),
    /// A JSON body, verified through the URL's `bodySHA256`.
    Json(&'a [u8]),
}

/// The canonical parameter suffix: names in byte order, each name's distinct values
/// sorted, concatenated as name+value with no separators.
pub fn canonical_params(params: &[(String, String)]) -> Vec<u8> {
    let mut pairs: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    let mut out = Vec::with_capacity(pairs.iter().map(|(k, v)| k.len() + v.len()).sum());
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    out
}

/// The signature Twilio sends for `url` followed by `suffix`.
pub fn compute(token: &Secret, url: &str, suffix: &[u8]) -> String {
    B64.encode(mac(token, url, suffix).finalize().into_bytes())
}

fn mac(token: &Secret, url: &str, suffix: &[u8]) -> HmacSha1 {
    let mut m =
        HmacSha1::new_from_slice(token.expose().as_bytes()).expect("HMAC takes any key length");
    m.update(url.as_bytes());
    m.update(suffix);
    m
}

/// The URL as given, then the port variant the SDKs also accept: without the port when
/// it has one, with the scheme's default port (443 for https, 80 otherwise) when not.
pub fn url_variants(url: &str) -> Vec<String> {
    let mut out = vec![url.to_owned()];
    let Some(scheme_end) = url.find("://") else {
        return out;
    };
    let after = scheme_end + 3;
    let rest = &url[after..];
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..auth_end];
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(i) => (&authority[..=i], &authority[i + 1..]),
        None => ("", authority),
    };
    let (host, port) = split_host_port(hostport);
    let tail = &rest[auth_end..];
    let scheme = &url[..scheme_end];
    let variant = match port {
        Some(_) => format!("{scheme}://{userinfo}{host}{tail}"),
        None => {
            let default = if scheme.eq_ignore_ascii_case("https") {
                443
            } else {
                80
            };
            format!("{scheme}://{userinfo}{host}:{default}{tail}")
        }
    };
    out.push(variant);
    out
}

/// The value of `bodySHA256` in the URL's query, percent-decoded.
fn body_sha256_param(url: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or("");
    form_urlencoded_pairs(query)
        .into_iter()
        .find(|(k, _)| k == "bodySHA256")
        .map(|(_, v)| v)
}

fn form_urlencoded_pairs(query: &str) -> Vec<(String, String)> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(query).unwrap_or_default()
}

/// Lowercase hex SHA-256 of a body, as Twilio puts it in `bodySHA256`.
pub fn body_sha256_hex(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    let mut s = String::with_capacity(64);
    for b in digest.iter() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Checks `header` against every token and URL variant. False for a missing, empty or
/// undecodable header, and for a JSON body whose URL has no matching `bodySHA256`.
pub fn verify(tokens: &[Secret], url: &str, signed: Signed<'_>, header: Option<&str>) -> bool {
    let Some(header) = header else {
        return false;
    };
    let Ok(expected) = B64.decode(header.trim()) else {
        return false;
    };
    let suffix = match signed {
        Signed::Form(params) => canonical_params(params),
        Signed::Json(body) => {
            let Some(claimed) = body_sha256_param(url) else {
                return false;
            };
            let actual = body_sha256_hex(body);
            if !bool::from(actual.as_bytes().ct_eq(claimed.as_bytes())) {
                return false;
            }
            Vec::new()
        }
    };
    let mut ok = false;
    for candidate in url_variants(url) {
        for token in tokens {
            // No early return: every candidate is checked, each in constant time.
            ok |= mac(token, &candidate, &suffix)
                .verify_slice(&expected)
                .is_ok();
        }
    }
    ok
}

#[cfg(test)]
mod tests;
