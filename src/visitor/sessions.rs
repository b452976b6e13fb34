//! Server-side session records: the page views of each session (bounded), its device and its
//! deciding touch, for attributing a call to what the caller did on the site.
//!
//! Held in a moka cache keyed by session id: bounded in entries, idle entries evicted after a
//! day. moka runs its housekeeping lazily, so the pool's maintenance tick calls
//! [`SessionLog::run_pending_tasks`] (REFERENCE.md §6). Durable storage of the same facts comes
//! with the store; this is the hot copy.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::classify::Device;
use super::identity::StoredTouch;
use crate::clock::Millis;

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

/// Receives every page view with its session record (e.g. to make it durable). Called under
/// the session's lock: keep it cheap (queue, don't write).
pub trait VisitSink: Send + Sync {
    fn page_view(&self, rec: &SessionRecord, path: &str, at: Millis);
}

#[derive(Clone)]
pub struct SessionLog {
    cache: moka::sync::Cache<String, Arc<Mutex<SessionRecord>>>,
    sink: Option<Arc<dyn VisitSink>>,
}

impl std::fmt::Debug for SessionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SessionLog({} sessions)", self.cache.entry_count())
    }
}

impl SessionLog {
    pub fn new(max_sessions: u64) -> SessionLog {
        SessionLog {
            cache: moka::sync::Cache::builder()
                .max_capacity(max_sessions)
                .time_to_idle(Duration::from_secs(24 * 3600))
                .build(),
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
        path: &str,
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
        r.first = state.0.clone();
        r.last = state.1.clone();
        r.touches = state.2;
        if r.pages.len() < MAX_PAGES_PER_SESSION {
            r.pages.push(PageView {
                path: path.to_string(),
                at,
            });
        } else {
            r.pages_dropped += 1;
        }
        if let Some(sink) = &self.sink {
            sink.page_view(&r, path, at);
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
