//! Webhook signature checks for the telephony providers that call `POST /_telswap/voice` and
//! `POST /_telswap/status` (REFERENCE.md §2).
//!
//! * Twilio and SignalWire (Twilio-compatible): `X-Twilio-Signature` / `X-SignalWire-Signature` is
//!   `base64(HMAC-SHA1(auth_token, url + concat(key + value for every POST param, sorted)))`, where
//!   `url` is exactly what the provider requested (scheme, host, port, path, query).
//! * Telnyx (native): `telnyx-signature-ed25519` is a base64 Ed25519 signature over
//!   `"{telnyx-timestamp}|{raw body}"`, checked with the account's base64 public key, and refused when
//!   the timestamp is more than 300 s away from now.
//!
//! Pure functions: no I/O, no clock (the caller passes `now`), comparisons in constant time.
//!
//! ## Ordering of POST params (Twilio / SignalWire)
//!
//! Params are sorted by key, then by value, keeping every pair: a key sent several times contributes
//! `key + value` once per occurrence, its values in sorted order. This is twilio-python's
//! `RequestValidator` (`for name in sorted(set(params)): for value in sorted(values): s += name + value`)
//! and is what [`twilio_signature`] computes. Because the official helpers disagree on repeated keys
//! (twilio-node also drops duplicate values, and some senders keep the order of appearance),
//! [`verify_twilio`] additionally accepts, only when the params contain a repeated key, the
//! signature over the deduplicated sorted values and over the values in order of appearance (keys
//! still sorted). Each candidate is a full HMAC over the same secret, so this widens nothing an
//! attacker without the token can use.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::{hmac, signature as ed};

/// Which provider (and so which signing scheme) a site's `[telephony] dialect` names.
pub use crate::rules::Dialect;

/// Why a webhook's signature was refused. Every variant means "answer 403, store nothing".
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    /// The signature (or, for Telnyx, the timestamp) header is absent or empty.
    #[error("signature header missing")]
    Missing,
    /// The signature does not match the request.
    #[error("signature does not match")]
    Invalid,
    /// Telnyx: the signed timestamp is more than [`TELNYX_TOLERANCE_S`] seconds from now.
    #[error("signature timestamp outside the allowed window")]
    Stale,
    /// Telnyx: the configured public key is not base64 of 32 raw bytes.
    #[error("configured public key is not a base64 Ed25519 key")]
    BadKey,
    /// A header or body that cannot be decoded (bad base64, bad timestamp, invalid UTF-8).
    #[error("malformed: {0}")]
    Malformed(String),
}

/// Largest accepted distance, in seconds, between a Telnyx timestamp and now (past or future).
pub const TELNYX_TOLERANCE_S: i64 = 300;

/// Lower-case header names carrying the signature for a dialect, most specific first.
///
/// Twilio: `x-twilio-signature`. SignalWire: `x-signalwire-signature`, falling back to
/// `x-twilio-signature` (SignalWire's compatibility API sends both). Telnyx: the signature header
/// `telnyx-signature-ed25519` then the timestamp header `telnyx-timestamp` (both needed).
pub fn signature_headers(d: Dialect) -> &'static [&'static str] {
    match d {
        Dialect::Twilio => &["x-twilio-signature"],
        Dialect::SignalWire => &["x-signalwire-signature", "x-twilio-signature"],
        Dialect::Telnyx => &["telnyx-signature-ed25519", "telnyx-timestamp"],
    }
}

/// Twilio/SignalWire: `base64(HMAC-SHA1(token, url + concat(sorted key+value of every POST param)))`.
///
/// `url` is used byte for byte; params are ordered by key then value (see the module doc).
pub fn twilio_signature(token: &str, url: &str, params: &[(String, String)]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, token.as_bytes());
    let data = signed_data(url, &sorted_pairs(params));
    B64.encode(hmac::sign(&key, data.as_bytes()).as_ref())
}

/// Checks a Twilio/SignalWire signature header against `url` as the provider called it.
///
/// Also tries the URL with the scheme's default port added (when it has none) or removed (when it
/// names it explicitly): 443 for `https`, 80 for `http`, as Twilio's own validators do, since the
/// provider's signing side is inconsistent about it. Comparison is constant time
/// (`ring::hmac::verify`). `Missing` for an absent or blank header, `Malformed` for a header that
/// is not base64, `Invalid` otherwise.
pub fn verify_twilio(
    token: &str,
    url: &str,
    params: &[(String, String)],
    header_value: Option<&str>,
) -> Result<(), SignatureError> {
    let header = header_value
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .ok_or(SignatureError::Missing)?;
    let tag = B64
        .decode(header)
        .map_err(|_| SignatureError::Malformed("signature header is not base64".into()))?;
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, token.as_bytes());
    let orderings = param_orderings(params);
    let mut ok = false;
    for u in url_variants(url) {
        for pairs in &orderings {
            // Evaluate every candidate (no early exit) so timing does not tell which one matched.
            ok |= hmac::verify(&key, signed_data(&u, pairs).as_bytes(), &tag).is_ok();
        }
    }
    if ok { Ok(()) } else { Err(SignatureError::Invalid) }
}

/// Telnyx: Ed25519 over `"{timestamp}|{raw body}"`.
///
/// `public_key_b64` is the account's public key, base64 of 32 raw bytes (`BadKey` otherwise);
/// `timestamp` is the `telnyx-timestamp` header (Unix seconds), `signature_b64` the
/// `telnyx-signature-ed25519` header. The signature is checked first; an authentic request whose
/// timestamp is more than 300 s before or after `now_unix` is `Stale` (replay protection).
pub fn verify_telnyx(
    public_key_b64: &str,
    timestamp: Option<&str>,
    signature_b64: Option<&str>,
    body: &[u8],
    now_unix: i64,
) -> Result<(), SignatureError> {
    let key = B64.decode(public_key_b64.trim()).map_err(|_| SignatureError::BadKey)?;
    if key.len() != 32 {
        return Err(SignatureError::BadKey);
    }
    let timestamp = timestamp.filter(|s| !s.trim().is_empty());
    let signature_b64 = signature_b64.filter(|s| !s.trim().is_empty());
    let (Some(timestamp), Some(sig)) = (timestamp, signature_b64) else {
        return Err(SignatureError::Missing);
    };
    let sig = B64
        .decode(sig.trim())
        .map_err(|_| SignatureError::Malformed("telnyx-signature-ed25519 is not base64".into()))?;
    if sig.len() != 64 {
        return Err(SignatureError::Malformed(
            "telnyx-signature-ed25519 is not 64 bytes".into(),
        ));
    }
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::Malformed("telnyx-timestamp is not Unix seconds".into()))?;
    // The signed message uses the header exactly as sent.
    let mut message = Vec::with_capacity(timestamp.len() + 1 + body.len());
    message.extend_from_slice(timestamp.as_bytes());
    message.push(b'|');
    message.extend_from_slice(body);
    ed::UnparsedPublicKey::new(&ed::ED25519, &key)
        .verify(&message, &sig)
        .map_err(|_| SignatureError::Invalid)?;
    if now_unix.abs_diff(ts) > TELNYX_TOLERANCE_S.unsigned_abs() {
        return Err(SignatureError::Stale);
    }
    Ok(())
}

/// Parses an `application/x-www-form-urlencoded` body into its pairs, in order.
///
/// Same rules as the WHATWG URL standard (and `form_urlencoded::parse`): `&`-separated, empty
/// segments skipped, a name without `=` gets an empty value, `+` is a space, `%XX` is decoded and
/// malformed `%` escapes are kept literally. Unlike `form_urlencoded::parse`, a name or value that is
/// not valid UTF-8 after decoding is an error rather than being replaced with U+FFFD, since a lossy
/// value would be signed differently from what the provider sent.
pub fn parse_form(body: &[u8]) -> Result<Vec<(String, String)>, SignatureError> {
    let decode = |raw: &[u8]| -> Result<String, SignatureError> {
        let plus_as_space: Vec<u8> = raw.iter().map(|&b| if b == b'+' { b' ' } else { b }).collect();
        let bytes: Vec<u8> = percent_encoding::percent_decode(&plus_as_space).collect();
        String::from_utf8(bytes).map_err(|_| SignatureError::Malformed("form body is not valid UTF-8".into()))
    };
    body.split(|&b| b == b'&')
        .filter(|segment| !segment.is_empty())
        .map(|segment| {
            let (name, value) = match segment.iter().position(|&b| b == b'=') {
                Some(i) => (&segment[..i], &segment[i + 1..]),
                None => (segment, &[][..]),
            };
            Ok((decode(name)?, decode(value)?))
        })
        .collect()
}

/// `url` followed by `key + value` for each pair.
fn signed_data(url: &str, pairs: &[(&str, &str)]) -> String {
    let len = url.len() + pairs.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
    let mut s = String::with_capacity(len);
    s.push_str(url);
    for (k, v) in pairs {
        s.push_str(k);
        s.push_str(v);
    }
    s
}

/// The canonical order: by key, then by value, duplicates kept (twilio-python).
fn sorted_pairs(params: &[(String, String)]) -> Vec<(&str, &str)> {
    let mut pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    pairs.sort_unstable();
    pairs
}

/// The param orders [`verify_twilio`] accepts: the canonical one, plus, when a key repeats, the
/// deduplicated one (twilio-node) and the one keeping values in order of appearance.
fn param_orderings(params: &[(String, String)]) -> Vec<Vec<(&str, &str)>> {
    let canonical = sorted_pairs(params);
    let repeated_key = canonical.windows(2).any(|w| w[0].0 == w[1].0);
    let mut out = vec![canonical.clone()];
    if repeated_key {
        let mut deduped = canonical;
        deduped.dedup();
        let mut appearance: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        appearance.sort_by(|a, b| a.0.cmp(b.0)); // stable: equal keys keep their order
        for candidate in [deduped, appearance] {
            if !out.contains(&candidate) {
                out.push(candidate);
            }
        }
    }
    out
}

/// `url` itself, then the same URL with the scheme's default port removed (if it is written) or
/// added (if no port is written). Other schemes and other ports give `url` alone.
fn url_variants(url: &str) -> Vec<String> {
    let mut out = vec![url.to_owned()];
    let Some(scheme_end) = url.find("://") else {
        return out;
    };
    let default_port = match url[..scheme_end].to_ascii_lowercase().as_str() {
        "https" => 443u16,
        "http" => 80,
        _ => return out,
    };
    let auth_start = scheme_end + 3;
    let auth_end = url[auth_start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| auth_start + i);
    let authority = &url[auth_start..auth_end];
    // Skip any `user:password@`; a bracketed IPv6 host may contain ':' itself.
    let host_start = authority.rfind('@').map_or(0, |i| i + 1);
    let host_port = &authority[host_start..];
    let host_len = if host_port.starts_with('[') {
        host_port.find(']').map_or(host_port.len(), |i| i + 1)
    } else {
        host_port.find(':').unwrap_or(host_port.len())
    };
    let port = &host_port[host_len..];
    let port_at = auth_start + host_start + host_len; // index in `url` where ":port" starts (or would)
    if port.is_empty() {
        out.push(format!("{}:{default_port}{}", &url[..port_at], &url[port_at..]));
    } else if port.strip_prefix(':').and_then(|p| p.parse::<u16>().ok()) == Some(default_port) {
        out.push(format!("{}{}", &url[..port_at], &url[auth_end..]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{Ed25519KeyPair, KeyPair};

    const TOKEN: &str = "12345";
    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
    const URL_443: &str = "https://mycompany.com:443/myapp.php?foo=1&bar=2";
    const SIG: &str = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";
    const SIG_443: &str = "kvajT1Ptam85bY51eRf/AJRuM3w=";

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// The official twilio-python test vector, deliberately not in sorted order.
    fn vector_params() -> Vec<(String, String)> {
        pairs(&[
            ("To", "+18005551212"),
            ("CallSid", "CA1234567890ABCDE"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("Caller", "+14158675309"),
        ])
    }

    #[test]
    fn reference_vector() {
        assert_eq!(twilio_signature(TOKEN, URL, &vector_params()), SIG);
        assert_eq!(twilio_signature(TOKEN, URL_443, &vector_params()), SIG_443);
    }

    #[test]
    fn verify_reference_vector_either_url_form() {
        let p = vector_params();
        assert_eq!(verify_twilio(TOKEN, URL, &p, Some(SIG)), Ok(()));
        assert_eq!(verify_twilio(TOKEN, URL_443, &p, Some(SIG_443)), Ok(()));
        // Signed over one form, called with the other.
        assert_eq!(verify_twilio(TOKEN, URL_443, &p, Some(SIG)), Ok(()));
        assert_eq!(verify_twilio(TOKEN, URL, &p, Some(SIG_443)), Ok(()));
        // Surrounding whitespace in the header is tolerated.
        assert_eq!(
            verify_twilio(TOKEN, URL, &p, Some(" RSOYDt4T1cUTdK1PDd93/VVr8B8= ")),
            Ok(())
        );
    }

    #[test]
    fn tampered_param_is_invalid() {
        let mut p = vector_params();
        p[0].1 = "+18005551213".into();
        assert_eq!(verify_twilio(TOKEN, URL, &p, Some(SIG)), Err(SignatureError::Invalid));
        let mut extra = vector_params();
        extra.push(("CallStatus".into(), "ringing".into()));
        assert_eq!(
            verify_twilio(TOKEN, URL, &extra, Some(SIG)),
            Err(SignatureError::Invalid)
        );
        let fewer = &vector_params()[1..];
        assert_eq!(
            verify_twilio(TOKEN, URL, fewer, Some(SIG)),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn tampered_url_is_invalid() {
        let p = vector_params();
        for url in [
            "https://mycompany.com/myapp.php?foo=1&bar=3",
            "http://mycompany.com/myapp.php?foo=1&bar=2",
            "https://mycompany.com:8443/myapp.php?foo=1&bar=2",
            "https://evil.com/myapp.php?foo=1&bar=2",
        ] {
            assert_eq!(
                verify_twilio(TOKEN, url, &p, Some(SIG)),
                Err(SignatureError::Invalid),
                "{url}"
            );
        }
    }

    #[test]
    fn missing_header() {
        let p = vector_params();
        assert_eq!(verify_twilio(TOKEN, URL, &p, None), Err(SignatureError::Missing));
        assert_eq!(verify_twilio(TOKEN, URL, &p, Some("")), Err(SignatureError::Missing));
        assert_eq!(verify_twilio(TOKEN, URL, &p, Some("  ")), Err(SignatureError::Missing));
    }

    #[test]
    fn wrong_token_is_invalid() {
        assert_eq!(
            verify_twilio("54321", URL, &vector_params(), Some(SIG)),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            verify_twilio("", URL, &vector_params(), Some(SIG)),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn garbage_header() {
        let p = vector_params();
        assert!(matches!(
            verify_twilio(TOKEN, URL, &p, Some("not base64!")),
            Err(SignatureError::Malformed(_))
        ));
        // Valid base64 of the wrong length is simply a wrong signature.
        assert_eq!(
            verify_twilio(TOKEN, URL, &p, Some("AAAA")),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn empty_body() {
        let p = parse_form(b"").unwrap();
        assert!(p.is_empty());
        let sig = twilio_signature(TOKEN, URL, &p);
        // No params: the HMAC covers the URL alone.
        let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, TOKEN.as_bytes());
        assert_eq!(sig, B64.encode(hmac::sign(&key, URL.as_bytes()).as_ref()));
        assert_eq!(verify_twilio(TOKEN, URL, &p, Some(&sig)), Ok(()));
        assert_eq!(
            verify_twilio(TOKEN, URL, &vector_params(), Some(&sig)),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn form_body_round_trip_with_reference_vector() {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(vector_params())
            .finish();
        assert!(body.contains("%2B18005551212"), "{body}");
        let p = parse_form(body.as_bytes()).unwrap();
        assert_eq!(p, vector_params());
        assert_eq!(verify_twilio(TOKEN, URL, &p, Some(SIG)), Ok(()));
    }

    #[test]
    fn port_variants() {
        assert_eq!(url_variants(URL), [URL, URL_443]);
        assert_eq!(url_variants(URL_443), [URL_443, URL]);
        assert_eq!(
            url_variants("http://h.example/v"),
            ["http://h.example/v", "http://h.example:80/v"]
        );
        assert_eq!(
            url_variants("http://h.example:80"),
            ["http://h.example:80", "http://h.example"]
        );
        assert_eq!(
            url_variants("HTTPS://h.example?x=1"),
            ["HTTPS://h.example?x=1", "HTTPS://h.example:443?x=1"]
        );
        assert_eq!(
            url_variants("https://u:p@h.example/v"),
            ["https://u:p@h.example/v", "https://u:p@h.example:443/v"]
        );
        assert_eq!(
            url_variants("https://[::1]:443/v"),
            ["https://[::1]:443/v", "https://[::1]/v"]
        );
        assert_eq!(
            url_variants("https://[::1]/v"),
            ["https://[::1]/v", "https://[::1]:443/v"]
        );
        // Non-default ports, the other scheme's default, and non-URLs are used as given only.
        assert_eq!(url_variants("https://h.example:8443/v"), ["https://h.example:8443/v"]);
        assert_eq!(url_variants("https://h.example:80/v"), ["https://h.example:80/v"]);
        assert_eq!(url_variants("/relative"), ["/relative"]);
    }

    #[test]
    fn verify_plain_http_default_port() {
        let p = pairs(&[("CallSid", "CA1")]);
        let sig = twilio_signature(TOKEN, "http://h.example:80/_telswap/voice", &p);
        assert_eq!(
            verify_twilio(TOKEN, "http://h.example/_telswap/voice", &p, Some(&sig)),
            Ok(())
        );
    }

    #[test]
    fn repeated_keys() {
        let p = pairs(&[("b", "2"), ("a", "z"), ("a", "y"), ("a", "y")]);
        // Canonical (twilio-python): keys sorted, values sorted, duplicates kept.
        let canonical = twilio_signature(TOKEN, URL, &pairs(&[("a", "y"), ("a", "y"), ("a", "z"), ("b", "2")]));
        assert_eq!(twilio_signature(TOKEN, URL, &p), canonical);
        assert_eq!(verify_twilio(TOKEN, URL, &p, Some(&canonical)), Ok(()));
        // twilio-node: duplicate values dropped.
        let node = twilio_signature(TOKEN, URL, &pairs(&[("a", "y"), ("a", "z"), ("b", "2")]));
        assert_ne!(node, canonical);
        assert_eq!(verify_twilio(TOKEN, URL, &p, Some(&node)), Ok(()));
        // Values in order of appearance (keys sorted): the signed string is URL + "az" "ay" "ay" "b2".
        let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, TOKEN.as_bytes());
        let appearance = B64.encode(hmac::sign(&key, format!("{URL}azayayb2").as_bytes()).as_ref());
        assert_eq!(verify_twilio(TOKEN, URL, &p, Some(&appearance)), Ok(()));
        // But not an arbitrary order of keys.
        let unsorted = B64.encode(hmac::sign(&key, format!("{URL}b2azayay").as_bytes()).as_ref());
        assert_eq!(
            verify_twilio(TOKEN, URL, &p, Some(&unsorted)),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn parse_form_rules() {
        assert_eq!(
            parse_form(b"a=1&&b=x+y%2Bz&flag&c=%zz&=v&d=caf%C3%A9&e=a=b").unwrap(),
            pairs(&[
                ("a", "1"),
                ("b", "x y+z"),
                ("flag", ""),
                ("c", "%zz"),
                ("", "v"),
                ("d", "café"),
                ("e", "a=b")
            ])
        );
        assert!(matches!(parse_form(b"a=%FF"), Err(SignatureError::Malformed(_))));
        assert!(matches!(parse_form(b"%C3=1"), Err(SignatureError::Malformed(_))));
        assert!(matches!(parse_form(b"a=\xff"), Err(SignatureError::Malformed(_))));
    }

    #[test]
    fn headers_per_dialect() {
        assert_eq!(signature_headers(Dialect::Twilio), ["x-twilio-signature"]);
        assert_eq!(
            signature_headers(Dialect::SignalWire),
            ["x-signalwire-signature", "x-twilio-signature"]
        );
        assert_eq!(
            signature_headers(Dialect::Telnyx),
            ["telnyx-signature-ed25519", "telnyx-timestamp"]
        );
    }

    struct Telnyx {
        pair: Ed25519KeyPair,
        public_b64: String,
    }

    impl Telnyx {
        fn new() -> Self {
            let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
            let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
            let public_b64 = B64.encode(pair.public_key().as_ref());
            Telnyx { pair, public_b64 }
        }

        fn sign(&self, timestamp: &str, body: &[u8]) -> String {
            let mut msg = format!("{timestamp}|").into_bytes();
            msg.extend_from_slice(body);
            B64.encode(self.pair.sign(&msg).as_ref())
        }
    }

    const NOW: i64 = 1_700_000_000;
    const BODY: &[u8] = br#"{"data":{"event_type":"call.initiated","payload":{"to":"+15550101001"}}}"#;

    #[test]
    fn telnyx_ok() {
        let t = Telnyx::new();
        let ts = NOW.to_string();
        let sig = t.sign(&ts, BODY);
        assert_eq!(verify_telnyx(&t.public_b64, Some(&ts), Some(&sig), BODY, NOW), Ok(()));
        // Within the window on either side, and exactly at its edges.
        for now in [NOW - 300, NOW - 1, NOW + 1, NOW + 300] {
            assert_eq!(
                verify_telnyx(&t.public_b64, Some(&ts), Some(&sig), BODY, now),
                Ok(()),
                "{now}"
            );
        }
        // Empty body.
        let sig = t.sign(&ts, b"");
        assert_eq!(verify_telnyx(&t.public_b64, Some(&ts), Some(&sig), b"", NOW), Ok(()));
    }

    #[test]
    fn telnyx_tampered_body_is_invalid() {
        let t = Telnyx::new();
        let ts = NOW.to_string();
        let sig = t.sign(&ts, BODY);
        let mut body = BODY.to_vec();
        body[20] ^= 1;
        assert_eq!(
            verify_telnyx(&t.public_b64, Some(&ts), Some(&sig), &body, NOW),
            Err(SignatureError::Invalid)
        );
        // The timestamp is part of the signed message: changing it (even within the window) fails.
        let other = (NOW - 10).to_string();
        assert_eq!(
            verify_telnyx(&t.public_b64, Some(&other), Some(&sig), BODY, NOW),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn telnyx_wrong_key_is_invalid() {
        let t = Telnyx::new();
        let other = Telnyx::new();
        let ts = NOW.to_string();
        let sig = t.sign(&ts, BODY);
        assert_eq!(
            verify_telnyx(&other.public_b64, Some(&ts), Some(&sig), BODY, NOW),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn telnyx_stale_and_future() {
        let t = Telnyx::new();
        let ts = NOW.to_string();
        let sig = t.sign(&ts, BODY);
        assert_eq!(
            verify_telnyx(&t.public_b64, Some(&ts), Some(&sig), BODY, NOW + 301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify_telnyx(&t.public_b64, Some(&ts), Some(&sig), BODY, NOW - 301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify_telnyx(&t.public_b64, Some(&ts), Some(&sig), BODY, 0),
            Err(SignatureError::Stale)
        );
    }

    #[test]
    fn telnyx_missing_headers() {
        let t = Telnyx::new();
        let ts = NOW.to_string();
        let sig = t.sign(&ts, BODY);
        assert_eq!(
            verify_telnyx(&t.public_b64, None, Some(&sig), BODY, NOW),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify_telnyx(&t.public_b64, Some(&ts), None, BODY, NOW),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify_telnyx(&t.public_b64, Some(""), Some(&sig), BODY, NOW),
            Err(SignatureError::Missing)
        );
    }

    #[test]
    fn telnyx_garbage() {
        let t = Telnyx::new();
        let ts = NOW.to_string();
        let sig = t.sign(&ts, BODY);
        let malformed = |r: Result<(), SignatureError>| matches!(r, Err(SignatureError::Malformed(_)));
        assert!(malformed(verify_telnyx(
            &t.public_b64,
            Some(&ts),
            Some("%%%not base64"),
            BODY,
            NOW
        )));
        assert!(malformed(verify_telnyx(
            &t.public_b64,
            Some(&ts),
            Some("AAAA"),
            BODY,
            NOW
        )));
        assert!(malformed(verify_telnyx(
            &t.public_b64,
            Some("yesterday"),
            Some(&sig),
            BODY,
            NOW
        )));
        for key in ["%%%not base64", "AAAA", "", &B64.encode([7u8; 33])] {
            assert_eq!(
                verify_telnyx(key, Some(&ts), Some(&sig), BODY, NOW),
                Err(SignatureError::BadKey),
                "{key}"
            );
        }
    }
}
