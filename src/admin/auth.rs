//! Who may use the admin listener: the bearer token for the API, and for a browser a session
//! cookie given in exchange for the token on the login page.
//!
//! The cookie is signed: `<expiry unix seconds>.<session id>.<hex HMAC-SHA256(key, both)>`, the
//! key derived from the admin token. A restart keeps browsers logged in, and changing the token
//! logs every browser out. Logging out revokes the session id until it would have expired
//! (the store keeps the revocations, so a copy of the cookie stays refused after a restart). It
//! is `HttpOnly` (no script reads it) and `SameSite=Strict` (no other site can make a browser
//! send it, which is what protects the dashboard's forms from cross-site requests).

use std::collections::HashMap;
use std::sync::Mutex;

use ring::hmac;

use super::constant_time_eq;
use crate::visitor::identity::random_id;

/// The session cookie's name.
pub const COOKIE: &str = "telswap_admin";

/// How long a dashboard login lasts: a working day, so a forgotten browser does not stay in.
pub const SESSION_SECS: u64 = 12 * 3600;

/// What a request presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// A valid bearer token or session cookie.
    Valid,
    /// Nothing, or something wrong.
    Missing,
}

pub struct Auth {
    token: String,
    key: hmac::Key,
    /// Sessions logged out, by id, with their expiry: refused until then.
    revoked: Mutex<HashMap<String, u64>>,
}

/// A session cookie's parts, once its signature is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: String,
    pub expires: u64,
}

impl Auth {
    pub fn new(token: String) -> Auth {
        // A key of its own (not the token itself), so a leaked cookie says nothing about the token.
        let derive = hmac::Key::new(hmac::HMAC_SHA256, token.as_bytes());
        let key = hmac::Key::new(
            hmac::HMAC_SHA256,
            hmac::sign(&derive, b"telswap admin session cookie v1").as_ref(),
        );
        Auth {
            token,
            key,
            revoked: Mutex::new(HashMap::new()),
        }
    }

    /// Refuses `session` from now on (a logout, or one read back from the store at start-up).
    pub fn revoke(&self, session: &Session, now_s: u64) {
        let mut revoked = self.revoked.lock().unwrap_or_else(|e| e.into_inner());
        // Expired sessions are refused anyway: the map holds only logouts of live sessions.
        revoked.retain(|_, expires| *expires > now_s);
        revoked.insert(session.id.clone(), session.expires);
    }

    pub fn token_ok(&self, given: &str) -> bool {
        constant_time_eq(given.trim().as_bytes(), self.token.as_bytes())
    }

    /// Checks the `Authorization: Bearer` header value and the `Cookie` header values.
    pub fn check<'a>(
        &self,
        authorization: Option<&str>,
        cookies: impl Iterator<Item = &'a str>,
        now_s: u64,
    ) -> Credential {
        // The scheme is case-insensitive (RFC 9110 §11.1): `bearer` is as good as `Bearer`.
        let bearer = authorization
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        if let Some(given) = bearer
            && self.token_ok(given)
        {
            return Credential::Valid;
        }
        match self.session(cookies, now_s) {
            Some(_) => Credential::Valid,
            None => Credential::Missing,
        }
    }

    /// The live session among the `Cookie` header values: signed with this token's key, not
    /// expired, not logged out.
    pub fn session<'a>(&self, cookies: impl Iterator<Item = &'a str>, now_s: u64) -> Option<Session> {
        cookies
            .flat_map(|header| header.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .filter(|(name, _)| *name == COOKIE)
            .filter_map(|(_, value)| self.session_of(value, now_s))
            // The lock only for the lookup: signatures are checked outside it, as a request
            // may carry many cookies to check.
            .find(|s| {
                !self
                    .revoked
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .contains_key(&s.id)
            })
    }

    /// A fresh session value, valid for [`SESSION_SECS`].
    pub fn session_value(&self, now_s: u64) -> String {
        let signed = format!("{}.{}", now_s + SESSION_SECS, random_id(16));
        let sig = hex(hmac::sign(&self.key, signed.as_bytes()).as_ref());
        format!("{signed}.{sig}")
    }

    fn session_of(&self, value: &str, now_s: u64) -> Option<Session> {
        let (signed, sig) = value.rsplit_once('.')?;
        let (exp, id) = signed.split_once('.')?;
        let expires = exp.parse::<u64>().ok()?;
        let want = hex(hmac::sign(&self.key, signed.as_bytes()).as_ref());
        (constant_time_eq(sig.as_bytes(), want.as_bytes()) && now_s < expires).then(|| Session {
            id: id.to_string(),
            expires,
        })
    }

    /// The `Set-Cookie` value that logs a browser in.
    pub fn login_cookie(&self, now_s: u64) -> String {
        format!(
            "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECS}",
            self.session_value(now_s)
        )
    }
}

/// The `Set-Cookie` value that logs a browser out.
pub fn logout_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Where to go after logging in: only a local dashboard path, never another site (an open
/// redirect would let a phishing link bounce through the login page).
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') && !n.starts_with("/login") => {
            n.to_string()
        }
        _ => "/".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_cookie() {
        let a = Auth::new("s3cret".into());
        let none = std::iter::empty();
        assert_eq!(a.check(Some("Bearer s3cret"), none, 0), Credential::Valid);
        for scheme in ["bearer", "BEARER"] {
            let header = format!("{scheme} s3cret");
            assert_eq!(a.check(Some(&header), std::iter::empty(), 0), Credential::Valid);
        }
        assert_eq!(
            a.check(Some("Basic s3cret"), std::iter::empty(), 0),
            Credential::Missing
        );
        assert_eq!(a.check(Some("Bearer nope"), std::iter::empty(), 0), Credential::Missing);
        assert_eq!(a.check(Some("s3cret"), std::iter::empty(), 0), Credential::Missing);
        let v = a.session_value(1000);
        let header = format!("a=b; {COOKIE}={v}; c=d");
        assert_eq!(a.check(None, [header.as_str()].into_iter(), 1001), Credential::Valid);
        // Expired.
        assert_eq!(
            a.check(None, [header.as_str()].into_iter(), 1000 + SESSION_SECS),
            Credential::Missing
        );
        // Forged expiry, or another token's cookie.
        let forged = format!("{COOKIE}={}{}", 9_999_999, &v[v.find('.').unwrap()..]);
        assert_eq!(a.check(None, [forged.as_str()].into_iter(), 1001), Credential::Missing);
        let other = Auth::new("other".into()).session_value(1000);
        let h2 = format!("{COOKIE}={other}");
        assert_eq!(a.check(None, [h2.as_str()].into_iter(), 1001), Credential::Missing);
        assert_eq!(a.check(None, ["telswap_admin="].into_iter(), 1), Credential::Missing);
        assert_eq!(
            a.check(None, ["telswap_admin=99999.abc"].into_iter(), 1),
            Credential::Missing
        );
    }

    /// A logged-out session stays refused, however its cookie is kept; another browser's
    /// session is not touched.
    #[test]
    fn a_logged_out_session_is_refused() {
        let a = Auth::new("s3cret".into());
        let (one, two) = (a.session_value(1000), a.session_value(1000));
        let (one, two) = (format!("{COOKIE}={one}"), format!("{COOKIE}={two}"));
        let session = a.session([one.as_str()].into_iter(), 1001).unwrap();
        assert_eq!(session.expires, 1000 + SESSION_SECS);
        a.revoke(&session, 1001);
        assert_eq!(a.check(None, [one.as_str()].into_iter(), 1002), Credential::Missing);
        assert_eq!(a.check(None, [two.as_str()].into_iter(), 1002), Credential::Valid);
        // Both cookies sent: the live one counts.
        let both = format!("{one}; {two}");
        assert_eq!(a.check(None, [both.as_str()].into_iter(), 1002), Credential::Valid);
    }

    #[test]
    fn next_stays_local() {
        assert_eq!(safe_next(Some("/calls?x=1")), "/calls?x=1");
        assert_eq!(safe_next(Some("//evil.example")), "/");
        assert_eq!(safe_next(Some("https://evil.example")), "/");
        assert_eq!(safe_next(Some("/\\evil")), "/");
        assert_eq!(safe_next(None), "/");
    }
}
