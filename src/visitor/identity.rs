//! The visitor's identity and touches, carried in the signed `tsw` cookie.
//!
//! The cookie holds a visitor id, the current session (a new one after 30 minutes without a page
//! view, as analytics tools count sessions), and the first and last non-direct touches. It is
//! signed with HMAC-SHA256 under the cookie key; anything that does not verify (tampered, expired,
//! malformed, signed with another key) is simply a new visitor, never an error.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::hmac;
use serde::{Deserialize, Serialize};

use super::classify::{Channel, ClickIdKind, Touch};
use crate::clock::Millis;

pub const COOKIE_NAME: &str = "tsw";
/// A session ends after this long without a page view (GA4's default session timeout).
pub const SESSION_GAP_MS: Millis = 30 * 60 * 1000;
/// How long a visitor is remembered: 90 days, Google Ads' longest click-conversion window.
pub const VISITOR_TTL_MS: Millis = 90 * 24 * 3600 * 1000;
/// Per-value cap inside the cookie. It keeps an ordinary cookie small; one with many long
/// values is cut further by [`encode`] to stay under browsers' 4 KiB.
const COOKIE_VALUE_CAP: usize = 200;

/// A touch as the cookie keeps it (short field names: it travels with every request).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct StoredTouch {
    /// When (ms since epoch).
    pub t: Millis,
    /// Channel name (`paid_search`, ...).
    pub ch: String,
    pub src: String,
    pub med: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnt: Option<String>,
    /// Click ids as (param name, value).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<(String, String)>,
    /// Landing page path (and query).
    #[serde(default)]
    pub lp: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rf: Option<String>,
    /// Captured custom parameters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prm: Vec<(String, String)>,
}

/// `s` cut to [`COOKIE_VALUE_CAP`] bytes (at a character boundary), as a touch's values are kept.
pub(crate) fn cap(s: &str) -> String {
    if s.len() <= COOKIE_VALUE_CAP {
        return s.to_string();
    }
    let mut end = COOKIE_VALUE_CAP;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

impl StoredTouch {
    pub fn from_touch(t: &Touch, at: Millis, landing: &str) -> StoredTouch {
        StoredTouch {
            t: at,
            ch: t.channel.as_str().to_string(),
            src: cap(&t.source),
            med: cap(&t.medium),
            cmp: t.campaign.as_deref().map(cap),
            term: t.term.as_deref().map(cap),
            cnt: t.content.as_deref().map(cap),
            ids: t
                .click_ids
                .iter()
                .map(|(k, v)| (k.param().to_string(), cap(v)))
                .collect(),
            lp: cap(landing),
            rf: t.referrer.as_deref().map(cap),
            prm: t.params.iter().map(|(k, v)| (cap(k), cap(v))).collect(),
        }
    }

    pub fn channel(&self) -> Channel {
        Channel::parse(&self.ch).unwrap_or_default()
    }

    /// What a pool's `when` is matched against.
    pub fn audience(&self) -> crate::pool::Audience<'_> {
        crate::pool::Audience {
            channel: self.channel(),
            source: &self.src,
            medium: &self.med,
            campaign: self.cmp.as_deref(),
        }
    }

    pub fn click_id(&self, kind: ClickIdKind) -> Option<&str> {
        self.ids
            .iter()
            .find(|(k, _)| k == kind.param())
            .map(|(_, v)| v.as_str())
    }

    /// Same source as another touch: a reload of a tagged landing is not a second touch.
    fn same_source(&self, other: &StoredTouch) -> bool {
        self.ch == other.ch
            && self.src == other.src
            && self.med == other.med
            && self.cmp == other.cmp
            && self.ids == other.ids
    }
}

/// Everything the cookie carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VisitorState {
    /// Visitor id.
    pub vid: String,
    /// Session id.
    pub sid: String,
    /// Session start and last page view (ms).
    pub ss: Millis,
    pub seen: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first: Option<StoredTouch>,
    /// The last non-direct touch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<StoredTouch>,
    /// Touches so far.
    #[serde(default)]
    pub n: u32,
}

/// What one page view did to the visitor's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Visit {
    pub state: VisitorState,
    pub new_visitor: bool,
    pub new_session: bool,
    /// The touch this page view added, if any.
    pub touch: Option<StoredTouch>,
}

/// Applies a page view at `now` to the previous state (if any): continues or starts the session,
/// and records `touch` when it is a new touch. `new_id` makes fresh random ids.
pub fn visit(
    prev: Option<VisitorState>,
    touch: Option<&Touch>,
    landing: &str,
    now: Millis,
    new_id: &mut dyn FnMut() -> String,
) -> Visit {
    let prev = prev.filter(|p| now.saturating_sub(p.seen) < VISITOR_TTL_MS);
    let new_visitor = prev.is_none();
    let mut state = prev.unwrap_or_else(|| VisitorState {
        vid: new_id(),
        sid: String::new(),
        ss: now,
        seen: now,
        first: None,
        last: None,
        n: 0,
    });
    let new_session = state.sid.is_empty() || now.saturating_sub(state.seen) >= SESSION_GAP_MS;
    if new_session {
        state.sid = new_id();
        state.ss = now;
    }
    state.seen = now;
    let mut added = None;
    if let Some(t) = touch {
        let stored = StoredTouch::from_touch(t, now, landing);
        let direct = t.channel == Channel::Direct;
        // A direct visit counts as a touch only when it opens a session; tagged or referred
        // landings always do, unless they repeat the touch that is already current.
        let repeat = !new_session && state.last.as_ref().is_some_and(|l| l.same_source(&stored));
        if (!direct && !repeat) || (direct && new_session) {
            state.n = state.n.saturating_add(1);
            if state.first.is_none() {
                state.first = Some(stored.clone());
            }
            if !direct {
                state.last = Some(stored.clone());
            }
            added = Some(stored);
        }
    }
    Visit {
        state,
        new_visitor,
        new_session,
        touch: added,
    }
}

/// The touch that picks the pool: the first touch, or the last non-direct one (falling back to
/// the first when every touch was direct).
pub fn deciding_touch(state: &VisitorState, first: bool) -> Option<&StoredTouch> {
    if first {
        state.first.as_ref()
    } else {
        state.last.as_ref().or(state.first.as_ref())
    }
}

/// The key that signs cookies.
pub struct CookieKey(hmac::Key);

impl std::fmt::Debug for CookieKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CookieKey(..)")
    }
}

impl CookieKey {
    pub fn new(secret: &[u8]) -> CookieKey {
        CookieKey(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    /// `TELSWAP_COOKIE_KEY` if set, else a key generated once and kept in `data/cookie.key`.
    /// A key from the environment shorter than [`MIN_KEY_LEN`] is an error.
    pub fn load_or_create(data: &std::path::Path) -> std::io::Result<CookieKey> {
        if let Ok(k) = std::env::var("TELSWAP_COOKIE_KEY")
            && !k.is_empty()
        {
            // As long as the generated one: a short key could be guessed, and with it any
            // visitor's touches forged.
            if k.len() < MIN_KEY_LEN {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!(
                        "TELSWAP_COOKIE_KEY has {} characters, fewer than {MIN_KEY_LEN}; \
                         e.g. `head -c 32 /dev/urandom | base64` makes one",
                        k.len()
                    ),
                ));
            }
            return Ok(CookieKey::new(k.as_bytes()));
        }
        let path = data.join("cookie.key");
        if let Ok(existing) = std::fs::read_to_string(&path)
            && existing.trim().len() >= MIN_KEY_LEN
        {
            return Ok(CookieKey::new(existing.trim().as_bytes()));
        }
        std::fs::create_dir_all(data)?;
        let secret = random_id(32);
        write_private(&path, secret.as_bytes())?;
        Ok(CookieKey::new(secret.as_bytes()))
    }
}

/// The shortest cookie key accepted, in characters (a generated key has 43).
pub const MIN_KEY_LEN: usize = 32;

fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    std::io::Write::write_all(&mut f, bytes)
}

/// A random URL-safe id of `bytes` random bytes.
pub fn random_id(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    fill_random(&mut buf);
    B64.encode(buf)
}

/// Fills `out` with bytes from the operating system's CSPRNG, drawn 4 KiB at a time into a
/// per-thread reserve.
///
/// Why: every first page view mints a visitor id and a session id, and asking the kernel for
/// each one was two `getrandom` system calls per page view (strace under `benches/load.sh`),
/// which a virtual machine makes dear. The bytes are the kernel's either way; each is handed out
/// once and zeroed as it leaves the reserve, so what is held is only ids not yet issued.
fn fill_random(out: &mut [u8]) {
    use ring::rand::SecureRandom;
    use std::cell::RefCell;
    const RESERVE: usize = 4096;
    thread_local! {
        /// The reserve and how much of it was handed out.
        static RESERVE_BYTES: RefCell<(Box<[u8; RESERVE]>, usize)> =
            RefCell::new((Box::new([0; RESERVE]), RESERVE));
    }
    let system = ring::rand::SystemRandom::new();
    if out.len() > RESERVE / 16 {
        system.fill(out).expect("system randomness");
        return;
    }
    RESERVE_BYTES.with(|r| {
        let (bytes, used) = &mut *r.borrow_mut();
        if RESERVE - *used < out.len() {
            system.fill(&mut bytes[..]).expect("system randomness");
            *used = 0;
        }
        let take = &mut bytes[*used..*used + out.len()];
        out.copy_from_slice(take);
        take.fill(0);
        *used += out.len();
    });
}

/// A visitor or session id minted at `now_ms`: 6 bytes of the time (big-endian milliseconds)
/// then 10 random bytes, URL-safe, 22 characters like [`random_id`]`(16)`.
///
/// Why the time first: these ids are the keys of the `visitors` and `sessions` B-trees and of
/// the page-view index. Random keys scatter each group commit over the whole tree, so a commit
/// of a few hundred new visitors dirtied (and, once the tables outgrew SQLite's page cache,
/// first read back) about one page per row: 7.7 page writes and 5.6 page reads per page view at
/// 9,000 a second. Ids minted in the same few seconds share their first characters, so they land
/// in one region of the tree and a commit touches a handful of pages. 80 random bits still make
/// an id unguessable; the cookie that carries it is signed anyway, and already holds the time.
pub fn time_ordered_id(now_ms: u64) -> String {
    let mut buf = [0u8; 16];
    buf[..6].copy_from_slice(&now_ms.to_be_bytes()[2..]);
    fill_random(&mut buf[6..]);
    B64.encode(buf)
}

/// `base64url(json).base64url(hmac)`, the tag over the site's name and the payload: a cookie
/// is one site's word about its visitor, and another site on the same server (same key) must not
/// take it as its own.
pub fn encode(state: &VisitorState, key: &CookieKey, site: &str) -> String {
    let sign = |state: &VisitorState| {
        let json = serde_json::to_vec(state).expect("visitor state serialises");
        let payload = B64.encode(json);
        let tag = hmac::sign(&key.0, &signed(site, &payload));
        format!("{payload}.{}", B64.encode(tag.as_ref()))
    };
    let value = sign(state);
    if value.len() <= MAX_COOKIE_VALUE {
        return value;
    }
    // Too long for a browser to keep (it would drop the cookie, and the visitor with it): give up
    // what attribution needs least, step by step. The session record on the server already holds
    // every touch whole; the cookie must above all keep the ids and the deciding touch.
    let mut slim = state.clone();
    for step in 0.. {
        if !slim.shrink(step) {
            break;
        }
        let value = sign(&slim);
        if value.len() <= MAX_COOKIE_VALUE {
            return value;
        }
    }
    sign(&slim)
}

/// The longest `tsw` value sent: browsers keep a cookie of up to 4,096 bytes of name and value,
/// with room left here for the name.
pub const MAX_COOKIE_VALUE: usize = 4_000;

impl VisitorState {
    /// Makes the state smaller by one `step` (0, 1, ...), from what matters least; `false` when
    /// there is no step left.
    fn shrink(&mut self, step: usize) -> bool {
        let short = |s: &mut String, n: usize| {
            if s.len() > n {
                let mut end = n;
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                s.truncate(end);
            }
        };
        match step {
            // The first touch's details (the last touch keeps its own).
            0 => {
                if let Some(f) = &mut self.first {
                    f.prm.clear();
                    (f.rf, f.term, f.cnt) = (None, None, None);
                    f.lp.clear();
                }
            }
            // The last touch's captured parameters, referrer and ad content.
            1 => {
                if let Some(l) = &mut self.last {
                    l.prm.clear();
                    (l.rf, l.cnt) = (None, None);
                }
            }
            // Long values cut, click ids aside (an id cut is no id).
            2 => {
                for t in self.first.iter_mut().chain(self.last.iter_mut()) {
                    for v in [&mut t.src, &mut t.med, &mut t.lp] {
                        short(v, 100);
                    }
                    for v in [&mut t.cmp, &mut t.term].into_iter().flatten() {
                        short(v, 100);
                    }
                }
            }
            3 => self.first = None,
            // The last touch's ids beyond the first two.
            4 => {
                if let Some(l) = &mut self.last {
                    l.ids.truncate(2);
                }
            }
            // What picks the pool, and nothing else.
            5 => {
                if let Some(l) = &mut self.last {
                    *l = StoredTouch {
                        t: l.t,
                        ch: std::mem::take(&mut l.ch),
                        src: std::mem::take(&mut l.src),
                        med: std::mem::take(&mut l.med),
                        cmp: l.cmp.take(),
                        ..StoredTouch::default()
                    };
                }
            }
            _ => return false,
        }
        true
    }
}

/// What is signed for a payload on a site. The name goes first with its length, so no pair of
/// name and payload reads as another.
fn signed(site: &str, payload: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(8 + site.len() + payload.len());
    m.extend_from_slice(&(site.len() as u64).to_be_bytes());
    m.extend_from_slice(site.as_bytes());
    m.extend_from_slice(payload.as_bytes());
    m
}

/// Verifies and reads a cookie value signed for `site`; `None` for anything that does not
/// verify.
pub fn decode(value: &str, key: &CookieKey, site: &str) -> Option<VisitorState> {
    if value.len() > 4096 {
        return None;
    }
    let (payload, sig) = value.split_once('.')?;
    let sig = B64.decode(sig).ok()?;
    hmac::verify(&key.0, &signed(site, payload), &sig).ok()?;
    let json = B64.decode(payload).ok()?;
    serde_json::from_slice(&json).ok()
}

/// Every `tsw` cookie among `Cookie` headers, in order. A browser can send several (one set by
/// a parent domain or another path, one planted by a subdomain): the visitor's state is the
/// first that verifies ([`decode`]), not merely the first.
pub fn from_cookie_headers<'a>(values: impl Iterator<Item = &'a str>) -> impl Iterator<Item = &'a str> {
    values.flat_map(|v| v.split(';')).filter_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == COOKIE_NAME).then_some(v)
    })
}

/// Whether a named cookie with this value is present (consent cookies).
pub fn has_cookie<'a>(values: impl Iterator<Item = &'a str>, name: &str, value: &str) -> bool {
    values
        .flat_map(|v| v.split(';'))
        .any(|c| c.trim().split_once('=').is_some_and(|(k, v)| k == name && v == value))
}

/// The `Set-Cookie` value: signed, `HttpOnly`, `SameSite=Lax`, `Secure` over HTTPS.
pub fn set_cookie(value: &str, secure: bool) -> String {
    let max_age = VISITOR_TTL_MS / 1000;
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE_NAME}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::visitor::classify::{Landing, classify};

    #[test]
    fn time_ordered_ids_share_a_prefix_within_seconds_and_never_repeat() {
        let t = 1_767_571_200_000u64 / 4096 * 4096;
        let a = time_ordered_id(t);
        let b = time_ordered_id(t + 1_000);
        let c = time_ordered_id(t);
        assert_eq!(a.len(), 22);
        assert!(
            a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{a}"
        );
        // 48 bits of time are 8 characters; the top 36 bits (4,096 ms windows) are the first 6.
        assert_eq!(a[..6], b[..6], "{a} {b}");
        assert_eq!(a[..8], c[..8]);
        assert_ne!(a, c, "the random part differs");
        assert_ne!(a[..6], time_ordered_id(t + 86_400_000)[..6]);
    }

    #[test]
    fn ids_drawn_across_reserve_refills_never_repeat() {
        // 2,000 ids of 10 random bytes each use the 4 KiB reserve up about five times over, and
        // ids of 32 bytes (the cookie key) bypass it; a repeat or an all-zero draw (a slice
        // handed out twice, or after it was zeroed) would show as a duplicate.
        let mut seen = std::collections::HashSet::new();
        for i in 0..2_000u64 {
            let id = time_ordered_id(i);
            assert!(seen.insert(id[8..].to_string()), "repeated random part at {i}: {id}");
        }
        assert!(!seen.contains(&B64.encode([0u8; 10])[..14]));
        let (a, b) = (random_id(32), random_id(32));
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
    }

    fn ids() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("id{n}")
        }
    }

    fn touch(query: &str, referrer: Option<&str>) -> Option<Touch> {
        classify(&Landing {
            query,
            referrer,
            own_hosts: &["example.com".into()],
            capture: &[],
        })
    }

    /// A landing with every parameter long (a campaign URL built by a tool) still gives a cookie
    /// a browser keeps, which still carries the click id and the deciding touch.
    #[test]
    fn a_cookie_stays_under_the_browsers_limit_and_keeps_the_click_id() {
        let key = CookieKey::new(b"0123456789abcdef0123456789abcdef");
        let long = "x".repeat(300);
        let query = format!(
            "utm_source=google&utm_medium=cpc&utm_campaign={long}&utm_term={long}&utm_content={long}\
             &gclid=G{long}&gbraid={long}&wbraid={long}&msclkid={long}&fbclid={long}&cta={long}"
        );
        let first = visit(
            None,
            touch(&query, None).as_ref(),
            &format!("/?{query}"),
            1000,
            &mut ids(),
        );
        // A second paid click in the session: first and last touch both long.
        let again = format!("{query}&utm_campaign=again");
        let v = visit(
            Some(first.state),
            touch(&again, None).as_ref(),
            &format!("/?{again}"),
            2000,
            &mut ids(),
        );
        let full = serde_json::to_vec(&v.state).unwrap().len();
        assert!(full > MAX_COOKIE_VALUE, "the test state is small: {full}");
        let c = encode(&v.state, &key, "a");
        assert!(c.len() <= MAX_COOKIE_VALUE, "{}", c.len());
        let back = decode(&c, &key, "a").expect("it verifies");
        assert_eq!((back.vid, back.sid), (v.state.vid.clone(), v.state.sid.clone()));
        let last = back.last.expect("the deciding touch");
        assert_eq!((last.ch.as_str(), last.src.as_str()), ("paid_search", "google"));
        // (Every value is kept to `COOKIE_VALUE_CAP` from the start.)
        let gclid = last.ids.iter().find(|(k, _)| k == "gclid").map(|(_, v)| v.as_str());
        assert_eq!(gclid, Some(cap(&format!("G{long}")).as_str()));
    }

    #[test]
    fn round_trips_and_rejects_tampering() {
        let key = CookieKey::new(b"0123456789abcdef0123456789abcdef");
        let v = visit(
            None,
            touch("utm_source=google&utm_medium=cpc&gclid=abc", None).as_ref(),
            "/",
            1000,
            &mut ids(),
        );
        let c = encode(&v.state, &key, "a");
        assert_eq!(decode(&c, &key, "a"), Some(v.state.clone()));
        // Tampered payload, tampered signature, other key, other site, garbage: all just "no
        // cookie".
        let (p, s) = c.split_once('.').unwrap();
        let mut bytes = p.as_bytes().to_vec();
        bytes[3] ^= 1;
        assert_eq!(
            decode(&format!("{}.{s}", String::from_utf8_lossy(&bytes)), &key, "a"),
            None
        );
        assert_eq!(decode(&format!("{p}.{}", &s[1..]), &key, "a"), None);
        assert_eq!(
            decode(&c, &CookieKey::new(b"another key of enough length 123"), "a"),
            None
        );
        assert_eq!(decode(&c, &key, "b"), None);
        for junk in ["", ".", "abc", "a.b.c", "%%%.%%%"] {
            assert_eq!(decode(junk, &key, "a"), None);
        }
    }

    #[test]
    fn sessions_restart_after_thirty_idle_minutes() {
        let mut id = ids();
        let a = visit(None, touch("", None).as_ref(), "/", 0, &mut id);
        assert!(a.new_visitor && a.new_session);
        let b = visit(Some(a.state.clone()), None, "/x", SESSION_GAP_MS - 1, &mut id);
        assert!(!b.new_session);
        assert_eq!(b.state.sid, a.state.sid);
        let c = visit(Some(b.state.clone()), None, "/y", 2 * SESSION_GAP_MS, &mut id);
        assert!(c.new_session && !c.new_visitor);
        assert_ne!(c.state.sid, a.state.sid);
        assert_eq!(c.state.vid, a.state.vid);
        let d = visit(Some(c.state), None, "/", 2 * SESSION_GAP_MS + VISITOR_TTL_MS, &mut id);
        assert!(d.new_visitor, "a visitor unseen for 90 days is new");
    }

    #[test]
    fn last_non_direct_touch_survives_direct_returns() {
        let mut id = ids();
        let paid = visit(
            None,
            touch("utm_source=google&utm_medium=cpc", None).as_ref(),
            "/",
            0,
            &mut id,
        );
        let back = visit(
            Some(paid.state),
            touch("", None).as_ref(),
            "/",
            3 * SESSION_GAP_MS,
            &mut id,
        );
        assert_eq!(back.state.n, 2);
        assert_eq!(deciding_touch(&back.state, false).unwrap().ch, "paid_search");
        let social = visit(
            Some(back.state),
            touch("", Some("https://l.facebook.com/")).as_ref(),
            "/",
            7 * SESSION_GAP_MS,
            &mut id,
        );
        assert_eq!(deciding_touch(&social.state, false).unwrap().ch, "organic_social");
        assert_eq!(deciding_touch(&social.state, true).unwrap().ch, "paid_search");
        // Reloading a tagged landing inside the session is not another touch.
        let again = visit(
            Some(social.state.clone()),
            touch("", Some("https://l.facebook.com/")).as_ref(),
            "/",
            7 * SESSION_GAP_MS + 1,
            &mut id,
        );
        assert_eq!(again.state.n, social.state.n);
    }
}
