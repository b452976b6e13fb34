//! Durable storage behind a trait; SQLite now, PostgreSQL later.
//!
//! Everything telswap must remember across a restart goes through [`Store`]: calls (the product's
//! output), visitor sessions and their page views (what a call is attributed to), number leases
//! (so a restart can reinstate them and still attribute a call to the session that saw the
//! number), ad spend (for the ROI reports) and the outbox of CRM webhook deliveries.
//!
//! Two write paths with different promises:
//!
//! - **Calls** ([`Store::insert_call`], [`Store::update_call`], [`Store::set_outcome`]) are
//!   synchronous and durable before they return: the telephony webhook answers only after the
//!   call is on disk, so an answered call survives `kill -9` or a power cut.
//! - **Traffic** ([`Write`]: page views, sessions, leases) is queued with [`Store::enqueue`],
//!   which never blocks the request path, and committed in batches by a background writer. A
//!   full queue drops the write and counts it ([`StoreStats::dropped`]); [`Store::flush`] waits
//!   for everything queued so far.
//!
//! - **Outbox** ([`Store::update_call_with_events`], [`Store::set_outcome_with_events`]): the
//!   rows of the events a change causes are written in the *same* transaction as the change,
//!   so a crash can never keep the change and lose its event (or the reverse). The delivery
//!   worker (`crate::outbox`) reads due rows and records each attempt on the durable path.
//!
//! All methods are blocking (SQLite I/O, `fsync` on the call path): from async code call them
//! through `tokio::task::spawn_blocking`, except [`Store::enqueue`] and [`Store::stats`], which
//! never wait.
//!
//! Times are `i64` milliseconds since the Unix epoch; the admin API formats them (RFC 3339).
//! This module depends on no other telswap module, so that it can be tested and swapped alone.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub mod sqlite;

pub use sqlite::SqliteStore;

/// One inbound call, as the admin API and the reports see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    /// Our id (for example `c_...`), chosen by the caller of [`Store::insert_call`].
    pub id: String,
    /// The provider's CallSid. Unique: inserting a repeated one returns the existing row.
    pub call_sid: String,
    pub site: String,
    /// The number that was dialled (E.164).
    pub tracking_number: String,
    /// E.164, or `"anonymous"`.
    pub caller: String,
    pub started_at: i64,
    pub duration_s: Option<u32>,
    /// `ringing`, `in-progress`, `completed`, `busy`, `failed`, `no-answer`, `canceled`.
    pub status: String,
    pub caller_city: Option<String>,
    pub caller_state: Option<String>,
    pub caller_country: Option<String>,
    pub returning_caller: bool,
    pub earlier_calls: u32,
    /// `exact` | `shared` | `late` | `source` | `none`.
    pub confidence: String,
    /// A JSON object (channel, source, medium, click ids, pages, touches...), stored as text.
    pub attribution: serde_json::Value,
    pub recording_url: Option<String>,
    pub outcome: Option<Outcome>,
}

/// What came of a call (a sale, a booking...), set from the admin API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub kind: String,
    pub value: Option<f64>,
    pub currency: Option<String>,
    pub at: i64,
}

impl Outcome {
    /// Whether this outcome says the call was no lead at all (`spam`, `not_a_lead`, a wrong
    /// number...): such a call is no conversion, and is never sent to an ad platform, whose
    /// bidding would learn from it.
    pub fn disqualifies(&self) -> bool {
        const KINDS: [&str; 5] = ["spam", "not_a_lead", "junk", "wrong_number", "solicitation"];
        let kind = self.kind.trim().replace([' ', '-'], "_");
        KINDS.iter().any(|k| kind.eq_ignore_ascii_case(k))
    }
}

/// One lease of a tracking number to a visitor session. `id` is chosen by the pool; see
/// [`Store::max_lease_id`] for continuing the sequence after a restart.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseRow {
    pub id: u64,
    pub site: String,
    pub pool: String,
    pub number: String,
    pub number_index: u32,
    pub session: String,
    pub visitor: String,
    pub started: i64,
    pub last_seen: i64,
    pub released: Option<i64>,
    /// The number was shown to more than one session during this lease (pool exhausted).
    pub shared: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PageViewRow {
    pub site: String,
    pub visitor: String,
    pub session: String,
    pub path: String,
    pub at: i64,
    /// The source pool's number the page showed, when it showed one.
    pub shown: Option<ShownSource>,
}

/// A source pool's number shown on a page view, with the audience it was shown for: a call to
/// a number shared by a whole source learns from these who could have been calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShownSource {
    /// E.164.
    pub number: String,
    /// The deciding touch's channel and source (what chose the pool).
    pub channel: String,
    pub source: String,
}

/// Who was shown a source number in a time window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceAudience {
    /// One row per channel and source, most visitors first.
    pub rows: Vec<AudienceRow>,
    /// The rows count every page view that showed the number in the window: false when there
    /// were more than the store reads (`sqlite::AUDIENCE_VIEWS`, the latest), or when some
    /// visitors see the number unrecorded (no consent).
    pub complete: bool,
}

/// One channel and source of a [`SourceAudience`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudienceRow {
    pub channel: String,
    pub source: String,
    /// Distinct visitors.
    pub visitors: u32,
    /// Their latest page view showing the number (ms).
    pub last_at: i64,
}

/// A visitor session. Its touches are kept as JSON on the row (first and last, plus a count),
/// not in a table of their own.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    pub id: String,
    pub site: String,
    pub visitor: String,
    pub started: i64,
    pub device: String,
    pub first_touch: Option<JsonText>,
    pub last_touch: Option<JsonText>,
    pub touches: u32,
}

/// A value as JSON text, the form the `sessions` table keeps touches in. The journal serializes
/// a touch straight to text on the page view (no `serde_json::Value` tree in between, which was
/// about ten allocations for every new session), and readers parse it back into their own type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonText(pub String);

impl JsonText {
    pub fn of<T: Serialize + ?Sized>(v: &T) -> Option<JsonText> {
        serde_json::to_string(v).ok().map(JsonText)
    }

    /// `None` when the text is not a `T` (a row from an older schema, or hand-edited).
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_str(&self.0).ok()
    }
}

/// Writes that may be batched off the request path.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    PageView(PageViewRow),
    /// Upsert by id: the last write of a session wins (writes are applied in queue order).
    Session(SessionRow),
    /// Insert, or replace the row with the same id.
    LeaseOpened(LeaseRow),
    /// `last_seen` only moves forward.
    LeaseRefreshed {
        id: u64,
        last_seen: i64,
    },
    /// `shared` is or-ed into the row: a lease once shared stays shared.
    LeaseReleased {
        id: u64,
        at: i64,
        shared: bool,
    },
}

/// Ad spend for one site, day, channel and campaign (the ROI reports divide by it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpendRow {
    pub site: String,
    /// `YYYY-MM-DD`, the day the money was spent (the ad platform's day).
    pub day: String,
    /// A channel name as attribution writes it (`paid_search`, `paid_social`, ...).
    pub channel: String,
    /// The campaign name as tagged in `utm_campaign`; empty for spend not split by campaign.
    pub campaign: String,
    pub amount: f64,
    /// ISO 4217, upper case.
    pub currency: String,
}

/// Which calls [`Store::calls`] returns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallFilter {
    /// Inclusive lower bound on `started_at`.
    pub from: Option<i64>,
    /// Exclusive upper bound on `started_at`.
    pub to: Option<i64>,
    pub site: Option<String>,
    /// Only calls after this one in the order calls are listed (newest first): its
    /// (`started_at`, `id`), a page's last. Paging by time alone would skip the calls that
    /// share the last one's millisecond.
    pub after: Option<(i64, String)>,
    /// At most this many calls; `0` means no limit.
    pub limit: usize,
}

/// The result of [`Store::insert_call`].
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // one per webhook, never held in bulk: boxing buys nothing
pub enum Inserted {
    New,
    /// The CallSid was already stored (a retried webhook): the stored record, unchanged.
    Duplicate(CallRecord),
}

/// Counters for `/metrics`. All are totals since the store was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StoreStats {
    /// Writes accepted by [`Store::enqueue`].
    pub enqueued: u64,
    /// Writes refused by [`Store::enqueue`] (queue full, or store closed).
    pub dropped: u64,
    /// Batch transactions committed by the writer.
    pub batches: u64,
    /// Queued writes committed.
    pub rows: u64,
    /// Queued writes that failed (bad row, or a batch whose commit failed); each is logged.
    pub failed: u64,
    /// Writes waiting in the queue right now (approximate).
    pub queued: u64,
    /// Passive checkpoints the store's checkpointer thread completed (not counting those it
    /// found another checkpoint in).
    pub checkpoints: u64,
    /// Log pages those checkpoints copied back into the database file.
    pub checkpointed_pages: u64,
}

/// One event for one destination, written to the outbox with the change that caused it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDelivery {
    /// `evt_...`: the same for every destination of one event, and across retries.
    pub event_id: String,
    /// `call.completed` | `call.outcome`.
    pub event: String,
    pub site: String,
    /// The destination webhook's URL.
    pub url: String,
    /// The JSON body, exactly as it will be POSTed on every attempt.
    pub payload: String,
    pub created_at: i64,
}

/// A delivery waiting in the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The row (unique per event and destination).
    pub id: i64,
    pub event_id: String,
    pub event: String,
    pub site: String,
    pub url: String,
    pub payload: String,
    /// Failed attempts so far.
    pub attempts: u32,
    pub created_at: i64,
    pub next_attempt_at: i64,
}

/// How long the event of a call ended by its caller's leg waits for the `<Dial>`'s result (see
/// [`Store::update_call_with_events`]). The provider requests the Dial's `action` as the forward
/// ends, before the call's own status callback, so this only covers callbacks delivered out of
/// order; a call whose Dial result never comes is reported this much later.
pub const DIAL_GRACE_MS: i64 = 30_000;

/// Which leg of a forwarded call a status callback reports (see [`Store::update_call_with_events`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leg {
    /// The caller's call to the tracking number (`CallStatus`, `CallDuration`).
    Call,
    /// The forward to the business line (`DialCallStatus`, `DialCallDuration`).
    Dial,
}

/// Builds the outbox rows of an event from the call as it stands inside the transaction that
/// changed it.
pub type EventRows<'a> = &'a (dyn Fn(&CallRecord) -> Vec<NewDelivery> + 'a);

/// Outbox counters for `/metrics`: totals since the store was opened, and `pending` now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OutboxStats {
    /// Deliveries a receiver accepted (2xx).
    pub delivered: u64,
    /// Failed attempts that will be retried.
    pub failed: u64,
    /// Deliveries given up (retries exhausted, or the webhook was removed from the rules).
    pub dead: u64,
    /// Deliveries neither delivered nor dead.
    pub pending: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("the store is closed")]
    Closed,
    #[error("a call with id {0:?} already exists (with another CallSid)")]
    DuplicateId(String),
    #[error("value out of range for column {0}")]
    OutOfRange(&'static str),
    #[error("database schema version {found} is newer than this build knows ({known}): refusing to open")]
    SchemaTooNew { found: u32, known: u32 },
    #[error("batched write failed: {0}")]
    Batch(String),
    #[error("the store's file {0} was removed or replaced while open: restart to open it again")]
    FileGone(String),
}

/// Durable storage. Implementations are shared as `Arc<dyn Store>` across threads.
pub trait Store: Send + Sync {
    /// `Ok` while writes reach the file the next start will read (health checks ask).
    fn check(&self) -> Result<(), StoreError>;
    /// Durable before it returns (the webhook answers only after this): synchronous=FULL on
    /// this path. A CallSid seen before returns [`Inserted::Duplicate`] with the stored record
    /// and writes nothing; an `id` already used by another CallSid is
    /// [`StoreError::DuplicateId`].
    fn insert_call(&self, call: &CallRecord) -> Result<Inserted, StoreError>;
    /// Status callback: final status, duration, recording URL; false when the CallSid is
    /// unknown. `None` leaves the stored duration / recording URL as they are, and a late
    /// non-final status (`ringing`, `in-progress`, ...) never replaces a final one.
    fn update_call(
        &self,
        call_sid: &str,
        status: &str,
        duration_s: Option<u32>,
        recording_url: Option<&str>,
    ) -> Result<bool, StoreError>;
    fn call(&self, id: &str) -> Result<Option<CallRecord>, StoreError>;
    fn call_by_sid(&self, call_sid: &str) -> Result<Option<CallRecord>, StoreError>;
    /// Newest first, started_at within [from, to).
    fn calls(&self, f: &CallFilter) -> Result<Vec<CallRecord>, StoreError>;
    /// How many calls this caller made to this site before `before`. Counts the literal
    /// `caller`: skip `"anonymous"` callers before asking.
    fn earlier_calls(&self, site: &str, caller: &str, before: i64) -> Result<u32, StoreError>;
    /// Sets (or replaces) the call's outcome; false when the call id is unknown.
    fn set_outcome(&self, id: &str, o: &Outcome) -> Result<bool, StoreError>;
    /// Non-blocking: queues a write for the batching writer; false (and a counted drop) when
    /// the queue is full or the store is closed.
    fn enqueue(&self, w: Write) -> bool;
    /// Waits until everything queued so far is committed (graceful shutdown, tests).
    fn flush(&self) -> Result<(), StoreError>;
    /// Leases not released, for reinstating after a restart (committed writes only).
    fn live_leases(&self) -> Result<Vec<LeaseRow>, StoreError>;
    /// The highest lease id ever stored (0 when none): a restarted pool numbers new leases
    /// above it, so that they do not overwrite released ones.
    fn max_lease_id(&self) -> Result<u64, StoreError>;
    /// Lease intervals of a number overlapping [from, to] (call attribution after a restart),
    /// oldest first. A lease not yet released counts as open to the present.
    fn leases_of_number(&self, site: &str, number: &str, from: i64, to: i64) -> Result<Vec<LeaseRow>, StoreError>;
    /// Leases of a pool started in [from, to), oldest first (pool sizing from real traffic).
    fn leases_started(&self, site: &str, pool: &str, from: i64, to: i64) -> Result<Vec<LeaseRow>, StoreError>;
    /// Who was shown the source number `number` (E.164) of `site` in [from, to] (committed
    /// writes only): from the latest `sqlite::AUDIENCE_VIEWS` page views that showed it.
    fn source_audience(&self, site: &str, number: &str, from: i64, to: i64) -> Result<SourceAudience, StoreError>;
    /// Records that the dashboard session `id` was logged out (durable before it returns),
    /// refused until `expires` (unix seconds); drops the records of sessions expired by `now`.
    fn admin_logout(&self, id: &str, expires: i64, now: i64) -> Result<(), StoreError>;
    /// The dashboard sessions logged out that have not expired by `now` (unix seconds).
    fn admin_logouts(&self, now: i64) -> Result<Vec<(String, i64)>, StoreError>;
    /// A session and its page views in time order (committed writes only).
    fn session(&self, id: &str) -> Result<Option<(SessionRow, Vec<PageViewRow>)>, StoreError>;
    /// Counters for metrics: queued writes dropped, batches committed, rows written.
    fn stats(&self) -> StoreStats;

    /// [`Store::update_call`], and when this update is the one that first brings the call to a
    /// final status (`completed`, `busy`, `failed`, `no-answer`, `canceled`), the rows
    /// `on_final(updated call)` written to the outbox in the same durable transaction. A
    /// repeated callback, or a late non-final one, finds the call final already and writes no
    /// rows.
    ///
    /// `leg` says whose status it is. A forwarded call has two: the caller's, which ends
    /// `completed` whether or not the business answered and whose duration counts the ringing,
    /// and the `<Dial>`'s, which says whether anyone answered and how long they talked. Once the
    /// Dial's final status is stored, the caller's leg changes neither status nor duration.
    ///
    /// The event waits for the Dial: when the caller's leg is the first final status, its rows
    /// are due [`DIAL_GRACE_MS`] later. When the Dial's final status follows, a queued row of
    /// that event is brought forward, and carries the Dial's word if it changed the status or
    /// duration (a new event id; a retry keeps its backoff), however late it is due, until the
    /// worker takes it ([`Store::outbox_take`]). Where the event went out already, or is going
    /// out, a change is sent as a second `on_final` event: a CRM that keeps the latest per call
    /// holds the Dial's word.
    fn update_call_with_events(
        &self,
        call_sid: &str,
        leg: Leg,
        status: &str,
        duration_s: Option<u32>,
        recording_url: Option<&str>,
        on_final: EventRows<'_>,
    ) -> Result<bool, StoreError>;
    /// [`Store::set_outcome`], with the rows `on_set(updated call)` written to the outbox in
    /// the same durable transaction.
    fn set_outcome_with_events(&self, id: &str, o: &Outcome, on_set: EventRows<'_>) -> Result<bool, StoreError>;
    /// Removes call `id`'s outcome (one recorded by mistake), with the rows `on_clear(updated
    /// call)` written to the outbox in the same transaction when there was one. `None`: no such
    /// call; `Some(false)`: it had no outcome, and nothing is written.
    fn clear_outcome_with_events(&self, id: &str, on_clear: EventRows<'_>) -> Result<Option<bool>, StoreError>;
    /// Up to `limit` deliveries due at `now` (oldest due first), skipping the destinations in
    /// `skip_urls`.
    fn outbox_due(&self, now: i64, limit: usize, skip_urls: &[String]) -> Result<Vec<Delivery>, StoreError>;
    /// The earliest `next_attempt_at` of a pending delivery outside `skip_urls`.
    fn outbox_next_due(&self, skip_urls: &[String]) -> Result<Option<i64>, StoreError>;
    /// The worker takes delivery `id` to send it now: marks it taken and returns it as it
    /// stands (a correction may have rewritten it since it was read), or `None` when it is no
    /// longer pending. A taken row is not rewritten; [`Store::outbox_failed`] gives it back,
    /// and a restart gives every taken row back. (One whose attempt could not be recorded, the
    /// store failing, stays taken until then: it is still sent again, and a correction of it goes
    /// out as a second event, as for a row that may have been delivered.)
    fn outbox_take(&self, id: i64, at: i64) -> Result<Option<Delivery>, StoreError>;
    /// The receiver accepted delivery `id` (durable before it returns).
    fn outbox_delivered(&self, id: i64, at: i64) -> Result<(), StoreError>;
    /// A failed attempt of delivery `id`: retried at `retry_at`, or given up (dead) on `None`.
    /// A retry holds every other pending delivery to the same URL due before `retry_at` back to
    /// it, in the same transaction, without counting an attempt: a receiver that just failed is
    /// not sent the rest of its queue, and nothing of its queue overtakes the row that failed.
    fn outbox_failed(&self, id: i64, at: i64, error: &str, retry_at: Option<i64>) -> Result<(), StoreError>;
    /// Notified whenever outbox rows are committed, so the delivery worker wakes at once.
    fn outbox_wake(&self) -> Arc<tokio::sync::Notify>;
    fn outbox_stats(&self) -> OutboxStats;
    /// Stores ad spend in one transaction (all rows or none), replacing the amount and currency
    /// of rows with the same site, day, channel and campaign. Returns the rows written.
    fn put_spend(&self, rows: &[SpendRow]) -> Result<usize, StoreError>;
    /// Spend rows with `from_day <= day <= to_day` (both `YYYY-MM-DD`, each bound optional),
    /// of one site or all, ordered by day, site, channel, campaign.
    fn spend(
        &self,
        site: Option<&str>,
        from_day: Option<&str>,
        to_day: Option<&str>,
    ) -> Result<Vec<SpendRow>, StoreError>;
}
