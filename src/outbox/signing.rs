//! The `X-Telswap-Signature` scheme: `t=<unix seconds>,v1=<lowercase hex HMAC-SHA256(secret,
//! "<t>.<body>")>`. The timestamp is inside the MAC so a captured request cannot be replayed
//! later than the receiver's tolerance; `v1` names the scheme so a second one can be added
//! beside it during a secret or algorithm rotation (receivers accept any `v1` that matches).
//! Pure: no I/O, no clock (callers pass the time).

use ring::hmac;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "x-telswap-signature";

/// `t=<unix>,v1=<hex>` for `body` sent at `unix` seconds.
pub fn sign(secret: &str, unix: i64, body: &[u8]) -> String {
    format!("t={unix},v1={}", hex(mac(secret, unix, body).as_ref()))
}

fn mac(secret: &str, unix: i64, body: &[u8]) -> hmac::Tag {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(unix.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    ctx.sign()
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The receiver's check: `header` carries a `v1` MAC of `body` by `secret`, made at a time
/// within `tolerance_s` seconds of `now_unix` (either side, for clock skew). The MAC is
/// compared in constant time (`ring::hmac::verify`).
pub fn verify_signature(secret: &str, header: &str, body: &[u8], now_unix: i64, tolerance_s: i64) -> bool {
    let mut t: Option<i64> = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse().ok(),
            Some(("v1", v)) => candidates.push(v),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    if (now_unix - t).abs() > tolerance_s {
        return false;
    }
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let msg = [t.to_string().as_bytes(), b".", body].concat();
    candidates
        .into_iter()
        .filter_map(unhex)
        .any(|tag| hmac::verify(&key, &msg, &tag).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_reference_hmac() {
        // The MAC covers "<t>.<body>" with the secret as the HMAC key.
        let h = sign("Jefe", 0, b"what do ya want for nothing?");
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"Jefe");
        let direct = hmac::sign(&key, b"0.what do ya want for nothing?");
        assert!(h.ends_with(&hex(direct.as_ref())));
        assert_eq!(h.len(), "t=0,v1=".len() + 64);
        // RFC 4231 test case 2, through the same hex encoding.
        let rfc = hmac::sign(&key, b"what do ya want for nothing?");
        assert_eq!(
            hex(rfc.as_ref()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn verifies_and_refuses() {
        let body = br#"{"id":"evt_1"}"#;
        let h = sign("s3cret", 1_700_000_000, body);
        assert!(verify_signature("s3cret", &h, body, 1_700_000_000, 300));
        assert!(verify_signature("s3cret", &h, body, 1_700_000_299, 300));
        assert!(
            verify_signature("s3cret", &h, body, 1_699_999_701, 300),
            "clock skew either way"
        );
        assert!(
            !verify_signature("s3cret", &h, body, 1_700_000_301, 300),
            "too old: replay"
        );
        assert!(!verify_signature("other", &h, body, 1_700_000_000, 300), "wrong secret");
        assert!(
            !verify_signature("s3cret", &h, br#"{"id":"evt_2"}"#, 1_700_000_000, 300),
            "tampered body"
        );
        let shifted = h.replace("t=1700000000", "t=1700000001");
        assert!(
            !verify_signature("s3cret", &shifted, body, 1_700_000_000, 300),
            "tampered time"
        );
        assert!(!verify_signature("s3cret", "", body, 0, 300));
        assert!(!verify_signature("s3cret", "t=1700000000", body, 1_700_000_000, 300));
        assert!(!verify_signature(
            "s3cret",
            "t=1700000000,v1=zz",
            body,
            1_700_000_000,
            300
        ));
        // A rotation header with an extra, unknown MAC still verifies by the good one.
        let rotated = format!("{h},v1=00ff");
        assert!(verify_signature("s3cret", &rotated, body, 1_700_000_000, 300));
    }
}
