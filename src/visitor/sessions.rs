//! Server-side session records: the page views of each session (bounded), its device and its
//! deciding touch, for attributing a call to what the caller did on the site.
//!
//! Held in a moka cache keyed by session id: bounded in entries, idle entries evicted after a
//! day, and past the bound the least recently seen session leaves first. moka runs its
//! housekeeping lazily, so the pool's maintenance tick calls [`SessionLog::run_pending_tasks`]
//! (REFERENCE.md §6). Durable storage of the same facts comes with the store; this is the hot
//! copy, and a call whose session has left it is attributed from the store.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::classify::Device;
use super::identity::StoredTouch;
use crate::clock::Millis;
use crate::store::ShownSource;

/// Page views kept per session: enough for any real journey, bounded against crawlers.
pub const MAX_PAGES_PER_SESSION: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageView {
    pub path: String,
    pub at: Millis,
}

#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub site: String,
    pub visitor: String,
    pub session: String,
    pub started: Millis,
    pub device: Device,
    /// Touches known at the latest page view (first, last non-direct), and the count.
    pub first: Option<StoredTouch>,
    pub last: Option<StoredTouch>,
    pub touches: u32,
    pub pages: Vec<PageView>,
    /// Page views beyond [`MAX_PAGES_PER_SESSION`] are counted, not kept.
    pub pages_dropped: u32,
}

/// A page the visitor was shown (not a redirect, nor an origin that failed).
#[derive(Debug, Clone, Copy)]
pub struct Seen<'a> {
    pub path: &'a str,
    /// The source pool's number on it, when it showed one (see [`ShownSource`]).
    pub shown: Option<&'a ShownSource>,
}

impl<'a> Seen<'a> {
    /// A page that showed no source number.
    pub fn path(path: &'a str) -> Seen<'a> {
        Seen { path, shown: None }
    }
}

/// Receives every page view with its session record (e.g. to make it durable). Called under
/// the session's lock: keep it cheap (queue, don't write). `session_changed`: the record's
/// durable fields (touches) differ from what the last call carried, or this is the session's
/// first view since this process started; otherwise only the page view itself is new.
pub trait VisitSink: Send + Sync {
    fn page_view(&self, rec: &SessionRecord, session_changed: bool, page: Option<Seen<'_>>, at: Millis);
}

/// The session table's hasher. Session ids are ours (random, in a signed cookie), so a client
/// cannot choose keys that collide, and a keyed SipHash buys nothing here; what it costs shows
/// when moka rebuilds a segment of its table, rehashing every key in it on the inserting
/// request's thread (see [`SessionLog::new`]).
type Hasher = foldhash::fast::RandomState;

#[derive(Clone)]
pub struct SessionLog {
    cache: moka::sync::Cache<String, Arc<Mutex<SessionRecord>>, Hasher>,
    sink: Option<Arc<dyn VisitSink>>,
}

impl std::fmt::Debug for SessionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SessionLog({} sessions)", self.cache.entry_count())
    }
}

impl SessionLog {
    /// A log of at most `max_sessions` sessions, its table sized for all of them at once.
    ///
    /// Why presized: moka's table (64 segments) doubles a segment by moving every entry in one
    /// call on the inserting thread, and with uniform hashing all 64 segments double within a
    /// few thousand inserts of each other: a burst of stalls of up to 3 ms each on the request
    /// path, 321 ms of them over the first 600,000 sessions in all (a scratch program inserting
    /// session-sized entries; 6 ms with the table presized). Every new visitor inserts a session,
    /// so those bursts land in a busy proxy's p99. The table for 1,000,000 sessions is about
    /// 17 MiB of bucket pointers, next to the hundreds of bytes each session record takes.
    ///
    /// Why LRU: moka's default policy (TinyLFU) admits a new entry at the bound only if it has
    /// been asked for more often than the entry it would evict. A new visitor's session has not,
    /// so at the bound most new sessions were refused (in a scratch run, 400 of the last 1,000
    /// of 2,000,000 sessions were kept), and each of their page views made a fresh record
    /// holding only that view: a call then read the wrong landing page and history. For
    /// sessions, recency is the whole point: the one seen longest ago leaves.
    ///
    /// At the bound every insert removes an entry, and moka rebuilds a table segment (1/64 of
    /// the table) whenever its removed slots pass a tenth of it, on the inserting thread; the
    /// hasher (`Hasher`, above) halves that stall (`examples/session_log.rs`, `benches/RESULTS.md`).
    pub fn new(max_sessions: u64) -> SessionLog {
        SessionLog {
            cache: moka::sync::Cache::builder()
                .max_capacity(max_sessions)
                .initial_capacity(usize::try_from(max_sessions).unwrap_or(usize::MAX))
                .time_to_idle(Duration::from_secs(24 * 3600))
                .eviction_policy(moka::policy::EvictionPolicy::lru())
                .build_with_hasher(Hasher::default()),
            sink: None,
        }
    }

    /// The same log, also handing every page view to `sink`.
    pub fn with_sink(mut self, sink: Arc<dyn VisitSink>) -> SessionLog {
        self.sink = Some(sink);
        self
    }

    /// Records one page view of a session, creating the record on its first view.
    #[allow(clippy::too_many_arguments)]
    pub fn page_view(
        &self,
        site: &str,
        visitor: &str,
        session: &str,
        started: Millis,
        device: Device,
        state: (&Option<StoredTouch>, &Option<StoredTouch>, u32),
        page: Option<Seen<'_>>,
        at: Millis,
    ) {
        let rec = self.cache.get_with(session.to_string(), || {
            Arc::new(Mutex::new(SessionRecord {
                site: site.to_string(),
                visitor: visitor.to_string(),
                session: session.to_string(),
                started,
                device,
                first: None,
                last: None,
                touches: 0,
                pages: Vec::new(),
                pages_dropped: 0,
            }))
        });
        let mut r = rec.lock().expect("session lock");
        let first_view = r.pages.is_empty() && r.pages_dropped == 0;
        let changed = first_view || r.touches != state.2 || r.first != *state.0 || r.last != *state.1;
        r.first = state.0.clone();
        r.last = state.1.clone();
        r.touches = state.2;
        match page {
            None => {}
            Some(page) if r.pages.len() < MAX_PAGES_PER_SESSION => r.pages.push(PageView {
                path: page.path.to_string(),
                at,
            }),
            Some(_) => r.pages_dropped += 1,
        }
        if let Some(sink) = &self.sink {
            sink.page_view(&r, changed, page, at);
        }
    }

    pub fn get(&self, session: &str) -> Option<SessionRecord> {
        self.cache.get(session).map(|r| r.lock().expect("session lock").clone())
    }

    /// Sessions held (after moka's pending housekeeping, so the count is current).
    pub fn len(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn run_pending_tasks(&self) {
        self.cache.run_pending_tasks();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Changes(Mutex<Vec<(String, bool)>>);

    impl VisitSink for Changes {
        fn page_view(&self, _: &SessionRecord, session_changed: bool, page: Option<Seen<'_>>, _: Millis) {
            self.0
                .lock()
                .unwrap()
                .push((page.map_or("-", |p| p.path).to_string(), session_changed));
        }
    }

    #[test]
    fn the_session_counts_as_changed_on_its_first_view_and_when_its_touches_change() {
        let sink = Arc::new(Changes::default());
        let log = SessionLog::new(100).with_sink(sink.clone());
        let paid = StoredTouch {
            src: "google".into(),
            med: "cpc".into(),
            ..StoredTouch::default()
        };
        let view = |touches: (&Option<StoredTouch>, &Option<StoredTouch>, u32), path: &str, at: Millis| {
            log.page_view(
                "site",
                "v1",
                "s1",
                1_000,
                Device::Desktop,
                touches,
                Some(Seen::path(path)),
                at,
            );
        };
        let (none, some) = (None, Some(paid));
        view((&none, &none, 0), "/", 1_000);
        view((&none, &none, 0), "/about", 2_000);
        view((&some, &some, 1), "/offer", 3_000);
        view((&some, &some, 1), "/contact", 4_000);
        let got = sink.0.lock().unwrap().clone();
        let want = [("/", true), ("/about", false), ("/offer", true), ("/contact", false)];
        assert_eq!(got, want.map(|(p, c)| (p.to_string(), c)).to_vec());
        assert_eq!(log.get("s1").unwrap().pages.len(), 4, "every view is still kept");
    }

    #[test]
    fn at_the_bound_the_session_seen_longest_ago_leaves_and_a_new_one_keeps_its_history() {
        let log = SessionLog::new(50);
        let none = None;
        for i in 0..500u64 {
            let session = format!("s{i}");
            for (k, path) in ["/landing", "/pricing", "/contact"].into_iter().enumerate() {
                let at = i * 10 + k as u64;
                log.page_view(
                    "site",
                    "v",
                    &session,
                    i * 10,
                    Device::Mobile,
                    (&none, &none, 0),
                    Some(Seen::path(path)),
                    at,
                );
                // The maintenance tick's housekeeping, as often as a busy site would see it.
                log.run_pending_tasks();
            }
        }
        assert_eq!(log.len(), 50);
        for i in 450..500 {
            let rec = log
                .get(&format!("s{i}"))
                .unwrap_or_else(|| panic!("session s{i} was refused"));
            let pages: Vec<&str> = rec.pages.iter().map(|p| p.path.as_str()).collect();
            assert_eq!(pages, ["/landing", "/pricing", "/contact"], "s{i} kept its whole visit");
        }
        assert!(log.get("s449").is_none(), "the least recently seen session left first");
    }
}
