//! [`Store`] on an embedded SQLite file (`<data>/telswap.db`, WAL mode, bundled SQLite).
//!
//! # Connections and threads
//!
//! - **Call connection** (behind a `Mutex`, `synchronous=FULL`): `insert_call`, `update_call`,
//!   `set_outcome`. In WAL mode FULL syncs the log on every commit, so a call is on disk when
//!   the method returns and survives `kill -9` or a power cut. Also runs the migrations at open.
//!   The outbox is written here too: an event's rows in the same transaction as the call
//!   update or outcome that caused it, and each delivery attempt's result.
//! - **Writer thread** (`telswap-store-writer`, its own connection, `synchronous=NORMAL`): takes
//!   [`Write`]s from a bounded `sync_channel` ([`StoreOptions::queue_capacity`], 10,000), lets
//!   them gather for [`StoreOptions::linger`] (20 ms) after the first, and commits up to
//!   [`StoreOptions::batch_max`] (1,000) per transaction. A write that fails on
//!   its own (a bad row) is logged, counted in [`StoreStats::failed`] and skipped; the rest of
//!   its batch commits. NORMAL in WAL mode may lose the last batches on a power cut, never on a
//!   process crash, and never corrupts the file.
//! - **Checkpointer thread** (`telswap-store-checkpoint`, its own connection, `SCHED_IDLE` on
//!   Linux): copies the write-ahead log back into the database file (a passive checkpoint)
//!   when the writer's commit leaves [`StoreOptions::checkpoint_pages`] (1,000) or more log
//!   pages, the job SQLite's auto-checkpoint would do inside that commit. Past
//!   [`BACKSTOP_PAGES`] the writer stops waking it and checkpoints after its own commits, so
//!   the log stays bounded when the checkpointer gets no CPU. The call connection's
//!   auto-checkpoint is set to the same backstop.
//! - **Readers**: a small pool of `query_only` connections (up to 4 kept idle, more opened on
//!   demand), so reads never wait behind the writers (WAL: readers see the last commit).
//!
//! [`Store::flush`] sends a marker through the queue and waits for the batch holding it to
//! commit. [`SqliteStore::close`] (also run on drop) refuses new work, lets the writer drain the
//! queue, commit and exit, and joins it. After `close`, every method returns
//! [`StoreError::Closed`] and `enqueue` returns false.
//!
//! # Schema
//!
//! Versioned migrations in [`MIGRATIONS`], applied in order inside one `IMMEDIATE` transaction
//! and recorded in `schema_version`; reopening applies only the new ones, and a database newer
//! than this build is refused ([`StoreError::SchemaTooNew`]). Never edit a shipped migration:
//! append a new one. Touches are kept as JSON on `sessions` (`first_touch`, `last_touch`, and a
//! count) rather than in a table: that is all a session row carries, and a call's attribution
//! snapshot (JSON on `calls`) holds the full touch history the call was credited with. Batched
//! tables have no foreign keys on purpose (a page view may be committed before its session);
//! `outcomes.call_id` references `calls`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::types::{Type, Value};
use rusqlite::{Connection, ErrorCode, OptionalExtension, Row, TransactionBehavior, params, params_from_iter};
use tracing::{debug, error, info, warn};

use super::{
    AudienceRow, CallFilter, CallRecord, DIAL_GRACE_MS, Delivery, EventRows, Inserted, JsonText, LeaseRow, Leg,
    NewDelivery, OutboxStats, Outcome, PageViewRow, SessionRow, ShownSource, SourceAudience, SpendRow, Store,
    StoreError, StoreStats, Write,
};

/// The database file inside the data directory.
pub const DB_FILE: &str = "telswap.db";

/// Schema migrations, in order; `MIGRATIONS[i]` brings the schema to version `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: the core: traffic, leases, calls.
    r#"
    CREATE TABLE visitors (
        site       TEXT NOT NULL,
        id         TEXT NOT NULL,
        first_seen INTEGER NOT NULL,          -- start of their first session (ms)
        last_seen  INTEGER NOT NULL,          -- start of their latest session (ms)
        PRIMARY KEY (site, id)
    ) WITHOUT ROWID;

    CREATE TABLE sessions (
        id          TEXT PRIMARY KEY,
        site        TEXT NOT NULL,
        visitor     TEXT NOT NULL,
        started     INTEGER NOT NULL,
        device      TEXT NOT NULL,
        first_touch TEXT,                     -- JSON
        last_touch  TEXT,                     -- JSON
        touches     INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX idx_sessions_visitor ON sessions (site, visitor, started);

    CREATE TABLE page_views (
        id      INTEGER PRIMARY KEY,
        site    TEXT NOT NULL,
        visitor TEXT NOT NULL,
        session TEXT NOT NULL,
        path    TEXT NOT NULL,
        at      INTEGER NOT NULL
    );
    CREATE INDEX idx_page_views_session ON page_views (session, at);

    CREATE TABLE leases (
        id           INTEGER PRIMARY KEY,     -- chosen by the pool
        site         TEXT NOT NULL,
        pool         TEXT NOT NULL,
        number       TEXT NOT NULL,
        number_index INTEGER NOT NULL,
        session      TEXT NOT NULL,
        visitor      TEXT NOT NULL,
        started      INTEGER NOT NULL,
        last_seen    INTEGER NOT NULL,
        released     INTEGER,
        shared       INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX idx_leases_number ON leases (site, number, started);
    CREATE INDEX idx_leases_live ON leases (id) WHERE released IS NULL;

    CREATE TABLE calls (
        id               TEXT PRIMARY KEY,
        call_sid         TEXT NOT NULL UNIQUE,
        site             TEXT NOT NULL,
        tracking_number  TEXT NOT NULL,
        caller           TEXT NOT NULL,
        started_at       INTEGER NOT NULL,
        duration_s       INTEGER,
        status           TEXT NOT NULL,
        caller_city      TEXT,
        caller_state     TEXT,
        caller_country   TEXT,
        returning_caller INTEGER NOT NULL,
        earlier_calls    INTEGER NOT NULL,
        confidence       TEXT NOT NULL,
        attribution      TEXT NOT NULL,       -- JSON object
        recording_url    TEXT
    );
    CREATE INDEX idx_calls_started ON calls (started_at);
    CREATE INDEX idx_calls_site_started ON calls (site, started_at);
    CREATE INDEX idx_calls_site_caller ON calls (site, caller, started_at);

    CREATE TABLE outcomes (
        call_id  TEXT PRIMARY KEY REFERENCES calls (id) ON DELETE CASCADE,
        kind     TEXT NOT NULL,
        value    REAL,
        currency TEXT,
        at       INTEGER NOT NULL
    );
    "#,
    // 2: for later features: ad spend (ROI reports) and the webhook outbox.
    r#"
    CREATE TABLE spend (
        site     TEXT NOT NULL,
        day      TEXT NOT NULL,               -- YYYY-MM-DD, the site's day
        channel  TEXT NOT NULL,
        campaign TEXT NOT NULL DEFAULT '',
        amount   REAL NOT NULL,
        currency TEXT NOT NULL,
        PRIMARY KEY (site, day, channel, campaign)
    );

    CREATE TABLE outbox (
        id              INTEGER PRIMARY KEY,
        event           TEXT NOT NULL,
        payload         TEXT NOT NULL,        -- JSON
        attempts        INTEGER NOT NULL DEFAULT 0,
        created_at      INTEGER NOT NULL,
        next_attempt_at INTEGER NOT NULL,
        delivered_at    INTEGER
    );
    CREATE INDEX idx_outbox_due ON outbox (next_attempt_at) WHERE delivered_at IS NULL;
    "#,
    // 3: the outbox as delivery needs it: one row per (event, destination webhook). Migration 2's
    // table was never written by any build, so it is replaced rather than altered.
    r#"
    DROP INDEX idx_outbox_due;
    DROP TABLE outbox;
    CREATE TABLE outbox (
        id              INTEGER PRIMARY KEY,
        event_id        TEXT NOT NULL,        -- evt_...: shared by an event's destinations, stable across retries
        event           TEXT NOT NULL,        -- call.completed | call.outcome
        site            TEXT NOT NULL,
        url             TEXT NOT NULL,        -- the destination webhook
        payload         TEXT NOT NULL,        -- the JSON body, POSTed as is on every attempt
        attempts        INTEGER NOT NULL DEFAULT 0,   -- failed attempts
        created_at      INTEGER NOT NULL,
        next_attempt_at INTEGER NOT NULL,
        delivered_at    INTEGER,
        dead_at         INTEGER,
        last_error      TEXT,
        UNIQUE (event_id, url)
    );
    CREATE INDEX idx_outbox_due ON outbox (next_attempt_at) WHERE delivered_at IS NULL AND dead_at IS NULL;
    "#,
    // 4: whether a call's status and duration came from its `<Dial>` (see `Leg`).
    r#"
    ALTER TABLE calls ADD COLUMN dial_final INTEGER NOT NULL DEFAULT 0;
    "#,
    // 5: when the delivery worker took a row to send it (NULL: not in its hands), so that a
    // correction rewrites a row not yet sent however late it is due.
    r#"
    ALTER TABLE outbox ADD COLUMN taken_at INTEGER;
    "#,
    // 6: the source pool's number a page view showed, and the channel and source it was shown
    // for (NULL when it showed none): who could be calling a number shared by a whole source.
    // The index holds only those rows, so page views of session numbers cost it nothing, and
    // every column the call's question reads, so that it reads no table page.
    r#"
    ALTER TABLE page_views ADD COLUMN shown TEXT;
    ALTER TABLE page_views ADD COLUMN channel TEXT;
    ALTER TABLE page_views ADD COLUMN source TEXT;
    CREATE INDEX idx_page_views_shown ON page_views (site, shown, at, visitor, channel, source)
        WHERE shown IS NOT NULL;
    "#,
    // 7: whether the store is open (1 from its opening to a close that committed every queued
    // write), so that the next start knows when a run ended without one: queued page views were
    // lost, and nobody knows which ([`SqliteStore::unclean_start`]). `views_lost_at`: the latest
    // `at` up to which a page view showing a source number may have been lost (0: none), kept
    // across runs, as audiences over it are not whole.
    r#"
    CREATE TABLE store_state (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        open INTEGER NOT NULL,
        views_lost_at INTEGER NOT NULL DEFAULT 0
    );
    "#,
    // 8: dashboard sessions logged out, refused until they would have expired (unix seconds).
    r#"
    CREATE TABLE admin_logouts (id TEXT PRIMARY KEY, expires INTEGER NOT NULL);
    "#,
];

/// Page views that [`Store::source_audience`] reads at most, the latest first. A call's answer
/// waits for it, and a busy site's source number may be on a million pages in the window: the
/// latest few thousand show who was seeing it, in a few milliseconds (the index holds every
/// column read). Past it the audience is marked incomplete, and no channel is inferred from it:
/// one visitor reloading a page thousands of times may fill the sample, and must not decide
/// the channel.
pub const AUDIENCE_VIEWS: i64 = 5_000;

/// Tuning for [`SqliteStore::open_with`]; [`SqliteStore::open`] uses the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// Bound of the batched-write queue (default 10,000).
    pub queue_capacity: usize,
    /// Most writes committed in one transaction (default 1,000).
    pub batch_max: usize,
    /// How long a connection waits for another one's write lock (default 5 s).
    pub busy_timeout: Duration,
    /// How long the writer lets writes gather after the first one of a batch (default 20 ms).
    pub linger: Duration,
    /// Log pages after a commit at which the writer wakes the checkpointer (default 1,000, the
    /// threshold of SQLite's own auto-checkpoint; 0 counts as 1). From [`BACKSTOP_PAGES`] on
    /// the checkpointer is never woken and every checkpoint runs on the writer's thread.
    pub checkpoint_pages: u32,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            queue_capacity: 10_000,
            batch_max: 1_000,
            busy_timeout: Duration::from_secs(5),
            linger: DEFAULT_LINGER,
            checkpoint_pages: 1_000,
        }
    }
}

/// The writer's linger: after the first write of a batch arrives it sleeps this long, then takes
/// everything queued. Why: without it the writer woke for nearly every page view (a futex wake
/// and a context switch on the request path) and committed a transaction of one or two rows
/// each time; at 2,000 page views a second that cost the proxy more CPU than its own HTTP work
/// and put the commits in the request latency tail (`benches/RESULTS.md`). Sleeping rather than
/// waiting on the queue is the point: a sender only wakes a receiver that is blocked. A flush or
/// close waits at most this long more.
pub const DEFAULT_LINGER: Duration = Duration::from_millis(20);

/// Idle read connections kept for reuse.
const READ_POOL_IDLE: usize = 4;

/// Statuses after which a call does not change state any more.
const FINAL_STATUSES: &str = "('completed', 'busy', 'failed', 'no-answer', 'canceled')";
/// The same list for Rust code; keep the two in step.
const FINAL: &[&str] = &["completed", "busy", "failed", "no-answer", "canceled"];

/// An outbox row's columns, in the order [`delivery_from_row`] reads them.
macro_rules! delivery_columns {
    () => {
        "id, event_id, event, site, url, payload, attempts, created_at, next_attempt_at"
    };
}

const DELIVERY_SELECT: &str = concat!(
    "SELECT ",
    delivery_columns!(),
    " FROM outbox WHERE delivered_at IS NULL AND dead_at IS NULL"
);

const CALL_SELECT: &str = "SELECT c.id, c.call_sid, c.site, c.tracking_number, c.caller, c.started_at, c.duration_s, \
     c.status, c.caller_city, c.caller_state, c.caller_country, c.returning_caller, c.earlier_calls, c.confidence, \
     c.attribution, c.recording_url, o.kind, o.value, o.currency, o.at \
     FROM calls c LEFT JOIN outcomes o ON o.call_id = c.id";

const LEASE_SELECT: &str = "SELECT id, site, pool, number, number_index, session, visitor, started, last_seen, \
     released, shared FROM leases";

enum Msg {
    Write(Write),
    Flush(SyncSender<Result<(), String>>),
    Close,
}

#[derive(Default)]
struct Counters {
    enqueued: AtomicU64,
    dropped: AtomicU64,
    /// The latest `at` of a page view showing a source number that was lost (refused, or its
    /// batch failed); 0 for none (no page view is at the epoch). An audience read over a window
    /// reaching it is not whole.
    lost_source_view_at: AtomicI64,
    batches: AtomicU64,
    rows: AtomicU64,
    failed: AtomicU64,
    outbox_delivered: AtomicU64,
    outbox_failed: AtomicU64,
    outbox_dead: AtomicU64,
    outbox_pending: AtomicU64,
    checkpoints: AtomicU64,
    checkpointed_pages: AtomicU64,
}

impl Counters {
    /// A page view showing a source number, at `at` or before, may have been lost.
    fn lost_view_at(&self, at: i64) {
        self.lost_source_view_at.fetch_max(at, Ordering::Relaxed);
    }
}

/// The SQLite [`Store`]. Open with [`SqliteStore::open`]; share the `Arc`.
pub struct SqliteStore {
    path: PathBuf,
    /// The file opened: a call is not answered as stored into a file that is no longer the one
    /// at `path` (deleted, or replaced by a restore), which the next start would not read.
    file: OpenedFile,
    calls: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    queue: SyncSender<Msg>,
    writer: Mutex<Option<JoinHandle<Option<String>>>>,
    checkpointer: Mutex<Option<Checkpointer>>,
    /// The last run did not close the store (see [`SqliteStore::unclean_start`]).
    unclean_start: bool,
    closed: AtomicBool,
    counters: Arc<Counters>,
    busy_timeout: Duration,
    outbox_wake: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("stats", &self.stats())
            .finish()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) `dir/telswap.db`, applies pending migrations and starts the
    /// writer thread.
    pub fn open(dir: &Path) -> Result<Arc<SqliteStore>, StoreError> {
        Self::open_with(dir, StoreOptions::default())
    }

    pub fn open_with(dir: &Path, options: StoreOptions) -> Result<Arc<SqliteStore>, StoreError> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(DB_FILE);
        let mut calls = connect(&path, "FULL", options.busy_timeout)?;
        let mode: String = calls.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            warn!(path = %path.display(), mode, "SQLite refused WAL mode; writes will block reads");
        }
        let version = migrate(&mut calls, MIGRATIONS)?;
        let (open, views_lost_at) = calls
            .query_row("SELECT open, views_lost_at FROM store_state WHERE id = 1", [], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
            })
            .optional()?
            .unwrap_or((0, 0));
        let unclean_start = open != 0;
        calls.execute(
            "INSERT INTO store_state (id, open) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET open = 1",
            [],
        )?;
        if unclean_start {
            warn!(path = %path.display(), "the store was not closed by the last run (a crash or kill): page views it had queued may be lost");
        }
        // Rows a stopped (or killed) server had taken are in nobody's hands now.
        calls.execute("UPDATE outbox SET taken_at = NULL WHERE taken_at IS NOT NULL", [])?;
        let pending: i64 = calls.query_row(
            "SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL AND dead_at IS NULL",
            [],
            |r| r.get(0),
        )?;
        let mut writer_conn = connect(&path, "NORMAL", options.busy_timeout)?;
        let reader = open_reader(&path, options.busy_timeout)?;
        calls.execute_batch(&format!("PRAGMA wal_autocheckpoint = {BACKSTOP_PAGES};"))?;
        for conn in [&calls, &writer_conn] {
            conn.execute_batch(&format!("PRAGMA journal_size_limit = {WAL_KEEP_BYTES};"))?;
        }

        let (queue, rx) = mpsc::sync_channel(options.queue_capacity.max(1));
        let counters = Arc::new(Counters::default());
        counters.outbox_pending.store(pending.max(0) as u64, Ordering::Relaxed);
        counters.lost_source_view_at.store(views_lost_at, Ordering::Relaxed);
        // The writer's auto-checkpoint is the hook this installs: a `wal_autocheckpoint` pragma
        // on the writer's connection after it would replace the hook, and nothing would wake
        // the checkpointer.
        let checkpointer = Checkpointer::start(
            connect(&path, "NORMAL", options.busy_timeout)?,
            Arc::clone(&counters),
            &mut writer_conn,
            options.checkpoint_pages,
        )?;
        let writer_counters = Arc::clone(&counters);
        let (batch_max, linger) = (options.batch_max.max(1), options.linger);
        let file = OpenedFile::new(&path)?;
        let writer_file = file.clone();
        let writer = std::thread::Builder::new()
            .name("telswap-store-writer".into())
            .spawn(move || run_writer(writer_conn, rx, &writer_counters, &writer_file, batch_max, linger))?;
        info!(path = %path.display(), schema_version = version, "store opened");
        Ok(Arc::new(SqliteStore {
            path,
            file,
            calls: Mutex::new(calls),
            readers: Mutex::new(vec![reader]),
            queue,
            writer: Mutex::new(Some(writer)),
            checkpointer: Mutex::new(Some(checkpointer)),
            closed: AtomicBool::new(false),
            unclean_start,
            counters,
            busy_timeout: options.busy_timeout,
            outbox_wake: Arc::new(tokio::sync::Notify::new()),
        }))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the last run that opened this store ended without closing it (a crash, `kill
    /// -9`, a failed batch): the page views it had queued, not yet committed, are lost, and
    /// which they were is not known. Calls are not among them (each is committed before it is
    /// answered).
    pub fn unclean_start(&self) -> bool {
        self.unclean_start
    }

    /// Page views up to `at` may have been lost without a trace (after an
    /// [`unclean_start`](Self::unclean_start)): an audience read over a window reaching `at` is
    /// not whole, as when this process loses one.
    pub fn note_views_lost_up_to(&self, at: i64) {
        self.counters.lost_view_at(at);
        // Kept now, not only at the close: this run may crash too.
        self.keep_views_lost_at();
    }

    /// Writes when page views were last lost into `store_state`, for the next start to read.
    fn keep_views_lost_at(&self) {
        let at = self.counters.lost_source_view_at.load(Ordering::Relaxed);
        let kept = lock(&self.calls).execute("UPDATE store_state SET views_lost_at = MAX(views_lost_at, ?1)", [at]);
        if let Err(e) = kept {
            warn!(error = %e, "the store could not record when page views were lost");
        }
    }

    /// Refuses new work, commits everything queued, stops and joins the writer thread, then the
    /// checkpointer (after any checkpoint it is in the middle of), and checkpoints the log
    /// once more from this thread. Idempotent; also run on drop. Errors if a batch failed to
    /// commit since the last flush.
    pub fn close(&self) -> Result<(), StoreError> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        // A full queue makes this wait for the writer to make room: that is the drain.
        let _ = self.queue.send(Msg::Close);
        let handle = lock(&self.writer).take();
        // Joined after the writer, whose connection holds its wake channel.
        let checkpointer = lock(&self.checkpointer).take();
        let Some(handle) = handle else { return Ok(()) };
        let joined = handle.join();
        // The writer's connection, and with it the checkpointer's wake channel, is gone: the
        // checkpointer ends after any checkpoint it is in.
        if let Some(checkpointer) = checkpointer {
            checkpointer.join();
        }
        // Views lost in this run (refused, or in a failed batch) stay lost for the next.
        self.keep_views_lost_at();
        let last = lock(&self.calls).query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(0));
        if let Err(e) = last {
            warn!(error = %e, "the store's last checkpoint failed; the log is kept and read at the next open");
        }
        match joined {
            Ok(None) => {
                // Every queued write is committed: the next start has lost nothing.
                if let Err(e) = lock(&self.calls).execute("UPDATE store_state SET open = 0", []) {
                    warn!(error = %e, "the store could not record its close; the next start reads it as a crash");
                }
                info!(path = %self.path.display(), "store closed");
                Ok(())
            }
            Ok(Some(failure)) => Err(StoreError::Batch(failure)),
            Err(_) => Err(StoreError::Batch("the writer thread panicked".into())),
        }
    }

    fn check_open(&self) -> Result<(), StoreError> {
        if self.closed.load(Ordering::Acquire) {
            Err(StoreError::Closed)
        } else {
            Ok(())
        }
    }

    /// [`SqliteStore::check_open`], and that the file at `path` is still the one open: asked
    /// before each write a provider is told is durable (a stat; calls are few).
    fn check_durable(&self) -> Result<(), StoreError> {
        self.check_open()?;
        self.file.check().inspect_err(|_| {
            tracing::error!(
                path = %self.path.display(),
                "the store's file was removed or replaced: calls are refused (503) until a restart"
            );
        })
    }

    /// Runs `f` on a pooled read connection. Not once the file at the path is another: a new
    /// reader would open (or create) that one, and answer from an empty store as if no call had
    /// ever been made.
    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
        Store::check(self)?;
        let pooled = lock(&self.readers).pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => open_reader(&self.path, self.busy_timeout)?,
        };
        let result = f(&conn);
        let mut pool = lock(&self.readers);
        if pool.len() < READ_POOL_IDLE {
            pool.push(conn);
        }
        result
    }
}

/// The database file a store opened, to tell whether the file at its path is still that one.
#[derive(Clone)]
struct OpenedFile {
    path: PathBuf,
    /// (device, inode) when opened.
    id: (u64, u64),
}

impl OpenedFile {
    fn new(path: &Path) -> std::io::Result<OpenedFile> {
        let id = Self::id(path)?;
        Ok(OpenedFile {
            path: path.to_path_buf(),
            id,
        })
    }

    fn id(path: &Path) -> std::io::Result<(u64, u64)> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path)?;
        Ok((m.dev(), m.ino()))
    }

    /// `Ok` while the file at the path is the one opened (a stat).
    fn check(&self) -> Result<(), StoreError> {
        match Self::id(&self.path) {
            Ok(id) if id == self.id => Ok(()),
            _ => Err(StoreError::FileGone(self.path.display().to_string())),
        }
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            error!(error = %e, "closing the store");
        }
    }
}

impl Store for SqliteStore {
    fn check(&self) -> Result<(), StoreError> {
        self.check_open()?;
        self.file.check()
    }

    fn insert_call(&self, call: &CallRecord) -> Result<Inserted, StoreError> {
        self.check_durable()?;
        let attribution = serde_json::to_string(&call.attribution)?;
        let mut conn = lock(&self.calls);
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let inserted = tx.execute(
            "INSERT INTO calls (id, call_sid, site, tracking_number, caller, started_at, duration_s, status, \
             caller_city, caller_state, caller_country, returning_caller, earlier_calls, confidence, attribution, \
             recording_url) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16) \
             ON CONFLICT (call_sid) DO NOTHING",
            params![
                call.id,
                call.call_sid,
                call.site,
                call.tracking_number,
                call.caller,
                call.started_at,
                call.duration_s,
                call.status,
                call.caller_city,
                call.caller_state,
                call.caller_country,
                call.returning_caller,
                call.earlier_calls,
                call.confidence,
                attribution,
                call.recording_url,
            ],
        );
        match inserted {
            Ok(0) => {
                let existing = query_calls(
                    &tx,
                    &format!("{CALL_SELECT} WHERE c.call_sid = ?1"),
                    &[Value::Text(call.call_sid.clone())],
                )?;
                return match existing.into_iter().next() {
                    Some(existing) => {
                        debug!(call_sid = %call.call_sid, "duplicate call webhook");
                        Ok(Inserted::Duplicate(existing))
                    }
                    // Unreachable: the conflict says the row exists and we hold the write lock.
                    None => Err(StoreError::Sqlite(rusqlite::Error::QueryReturnedNoRows)),
                };
            }
            Ok(_) => {}
            Err(e) if e.sqlite_error_code() == Some(ErrorCode::ConstraintViolation) => {
                return Err(StoreError::DuplicateId(call.id.clone()));
            }
            Err(e) => return Err(e.into()),
        }
        if let Some(o) = &call.outcome {
            upsert_outcome(&tx, &call.id, o)?;
        }
        tx.commit()?;
        Ok(Inserted::New)
    }

    fn update_call(
        &self,
        call_sid: &str,
        status: &str,
        duration_s: Option<u32>,
        recording_url: Option<&str>,
    ) -> Result<bool, StoreError> {
        self.update_call_with_events(call_sid, Leg::Call, status, duration_s, recording_url, &|_| Vec::new())
    }

    fn call(&self, id: &str) -> Result<Option<CallRecord>, StoreError> {
        self.read(|conn| {
            let found = query_calls(
                conn,
                &format!("{CALL_SELECT} WHERE c.id = ?1"),
                &[Value::Text(id.to_owned())],
            )?;
            Ok(found.into_iter().next())
        })
    }

    fn call_by_sid(&self, call_sid: &str) -> Result<Option<CallRecord>, StoreError> {
        self.read(|conn| {
            let sql = format!("{CALL_SELECT} WHERE c.call_sid = ?1");
            let found = query_calls(conn, &sql, &[Value::Text(call_sid.to_owned())])?;
            Ok(found.into_iter().next())
        })
    }

    fn calls(&self, f: &CallFilter) -> Result<Vec<CallRecord>, StoreError> {
        let mut sql = format!("{CALL_SELECT} WHERE 1 = 1");
        let mut args = Vec::new();
        if let Some(from) = f.from {
            args.push(Value::Integer(from));
            sql.push_str(&format!(" AND c.started_at >= ?{}", args.len()));
        }
        if let Some(to) = f.to {
            args.push(Value::Integer(to));
            sql.push_str(&format!(" AND c.started_at < ?{}", args.len()));
        }
        if let Some(site) = &f.site {
            args.push(Value::Text(site.clone()));
            sql.push_str(&format!(" AND c.site = ?{}", args.len()));
        }
        if let Some((at, id)) = &f.after {
            args.push(Value::Integer(*at));
            args.push(Value::Text(id.clone()));
            let (a, i) = (args.len() - 1, args.len());
            sql.push_str(&format!(
                " AND (c.started_at < ?{a} OR (c.started_at = ?{a} AND c.id < ?{i}))"
            ));
        }
        sql.push_str(" ORDER BY c.started_at DESC, c.id DESC");
        if f.limit > 0 {
            args.push(Value::Integer(i64::try_from(f.limit).unwrap_or(i64::MAX)));
            sql.push_str(&format!(" LIMIT ?{}", args.len()));
        }
        self.read(|conn| query_calls(conn, &sql, &args))
    }

    fn earlier_calls(&self, site: &str, caller: &str, before: i64) -> Result<u32, StoreError> {
        self.read(|conn| {
            let n: i64 = conn
                .prepare_cached("SELECT COUNT(*) FROM calls WHERE site = ?1 AND caller = ?2 AND started_at < ?3")?
                .query_row(params![site, caller, before], |r| r.get(0))?;
            Ok(u32::try_from(n).unwrap_or(u32::MAX))
        })
    }

    fn set_outcome(&self, id: &str, o: &Outcome) -> Result<bool, StoreError> {
        self.set_outcome_with_events(id, o, &|_| Vec::new())
    }

    fn enqueue(&self, w: Write) -> bool {
        let msg = Msg::Write(w);
        // A refused write comes back, to be noted as lost.
        let (refused, msg) = if self.closed.load(Ordering::Acquire) {
            ("closed", msg)
        } else {
            match self.queue.try_send(msg) {
                Ok(()) => {
                    self.counters.enqueued.fetch_add(1, Ordering::Relaxed);
                    return true;
                }
                Err(TrySendError::Full(msg)) => ("full", msg),
                Err(TrySendError::Disconnected(msg)) => ("closed", msg),
            }
        };
        if let Msg::Write(w) = &msg {
            note_lost(&self.counters, std::slice::from_ref(w));
        }
        let dropped = self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        if dropped.is_multiple_of(1_000) {
            warn!(
                queue = refused,
                dropped_total = dropped + 1,
                "store queue refused a write (dropped)"
            );
        }
        false
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.check_open()?;
        let (reply, done) = mpsc::sync_channel(1);
        self.queue.send(Msg::Flush(reply)).map_err(|_| StoreError::Closed)?;
        match done.recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(failure)) => Err(StoreError::Batch(failure)),
            Err(_) => Err(StoreError::Closed),
        }
    }

    fn live_leases(&self) -> Result<Vec<LeaseRow>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!("{LEASE_SELECT} WHERE released IS NULL ORDER BY id"))?;
            let rows = stmt.query_map([], lease_from_row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
    }

    fn admin_logout(&self, id: &str, expires: i64, now: i64) -> Result<(), StoreError> {
        self.check_durable()?;
        let mut conn = lock(&self.calls);
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute("DELETE FROM admin_logouts WHERE expires <= ?1", [now])?;
        tx.execute(
            "INSERT OR REPLACE INTO admin_logouts (id, expires) VALUES (?1, ?2)",
            params![id, expires],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn admin_logouts(&self, now: i64) -> Result<Vec<(String, i64)>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached("SELECT id, expires FROM admin_logouts WHERE expires > ?1")?;
            let rows = stmt
                .query_map([now], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
    }

    fn max_lease_id(&self) -> Result<u64, StoreError> {
        self.read(|conn| {
            let max: i64 = conn.query_row("SELECT COALESCE(MAX(id), 0) FROM leases", [], |r| r.get(0))?;
            u64::try_from(max).map_err(|_| StoreError::OutOfRange("leases.id"))
        })
    }

    fn leases_of_number(&self, site: &str, number: &str, from: i64, to: i64) -> Result<Vec<LeaseRow>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "{LEASE_SELECT} WHERE site = ?1 AND number = ?2 AND started <= ?4 \
                 AND (released IS NULL OR released >= ?3) ORDER BY started, id"
            ))?;
            let rows = stmt
                .query_map(params![site, number, from, to], lease_from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
    }

    fn leases_started(&self, site: &str, pool: &str, from: i64, to: i64) -> Result<Vec<LeaseRow>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "{LEASE_SELECT} WHERE site = ?1 AND pool = ?2 AND started >= ?3 AND started < ?4 ORDER BY started, id"
            ))?;
            let rows = stmt
                .query_map(params![site, pool, from, to], lease_from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
    }

    fn source_audience(&self, site: &str, number: &str, from: i64, to: i64) -> Result<SourceAudience, StoreError> {
        self.read(|conn| {
            // One read transaction: the count and the rows from the same snapshot.
            let tx = conn.unchecked_transaction()?;
            let args = params![site, number, from, to, AUDIENCE_VIEWS + 1];
            // Whether there are more views than it reads: one past the bound, counted in the index.
            let views: i64 = tx
                .prepare_cached(
                    "SELECT COUNT(*) FROM (SELECT 1 FROM page_views \
                     WHERE site = ?1 AND shown = ?2 AND at BETWEEN ?3 AND ?4 LIMIT ?5)",
                )?
                .query_row(args, |r| r.get(0))?;
            let rows = tx
                .prepare_cached(
                    "SELECT channel, source, COUNT(DISTINCT visitor), MAX(at) FROM ( \
                       SELECT channel, source, visitor, at FROM page_views \
                       WHERE site = ?1 AND shown = ?2 AND at BETWEEN ?3 AND ?4 ORDER BY at DESC LIMIT ?5) \
                     GROUP BY channel, source ORDER BY 3 DESC, 4 DESC, channel, source",
                )?
                .query_map(params![site, number, from, to, AUDIENCE_VIEWS], |r| {
                    Ok(AudienceRow {
                        channel: r.get::<_, Option<String>>(0)?.unwrap_or_default(),
                        source: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                        visitors: r.get(2)?,
                        last_at: r.get(3)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            // A view that showed it may have been lost in the window (not only of this number:
            // losses are rare, and not kept per number).
            let lost_at = self.counters.lost_source_view_at.load(Ordering::Relaxed);
            let lost = lost_at != 0 && lost_at >= from;
            Ok(SourceAudience {
                rows,
                complete: views <= AUDIENCE_VIEWS && !lost,
            })
        })
    }

    fn session(&self, id: &str) -> Result<Option<(SessionRow, Vec<PageViewRow>)>, StoreError> {
        self.read(|conn| {
            // One read transaction: the session and its page views from the same snapshot.
            let tx = conn.unchecked_transaction()?;
            let session = tx
                .prepare_cached(
                    "SELECT id, site, visitor, started, device, first_touch, last_touch, touches \
                     FROM sessions WHERE id = ?1",
                )?
                .query_row([id], |r| {
                    Ok(SessionRow {
                        id: r.get(0)?,
                        site: r.get(1)?,
                        visitor: r.get(2)?,
                        started: r.get(3)?,
                        device: r.get(4)?,
                        first_touch: r.get::<_, Option<String>>(5)?.map(JsonText),
                        last_touch: r.get::<_, Option<String>>(6)?.map(JsonText),
                        touches: r.get(7)?,
                    })
                })
                .optional()?;
            let Some(session) = session else { return Ok(None) };
            let views = tx
                .prepare_cached(
                    "SELECT site, visitor, session, path, at, shown, channel, source FROM page_views \
                     WHERE session = ?1 ORDER BY at, id",
                )?
                .query_map([id], |r| {
                    let shown = match (r.get(5)?, r.get(6)?, r.get(7)?) {
                        (Some(number), Some(channel), Some(source)) => Some(ShownSource {
                            number,
                            channel,
                            source,
                        }),
                        _ => None,
                    };
                    Ok(PageViewRow {
                        site: r.get(0)?,
                        visitor: r.get(1)?,
                        session: r.get(2)?,
                        path: r.get(3)?,
                        at: r.get(4)?,
                        shown,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Some((session, views)))
        })
    }

    fn put_spend(&self, rows: &[SpendRow]) -> Result<usize, StoreError> {
        self.check_durable()?;
        let mut conn = lock(&self.calls);
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO spend (site, day, channel, campaign, amount, currency) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                 ON CONFLICT (site, day, channel, campaign) DO UPDATE SET \
                 amount = excluded.amount, currency = excluded.currency",
            )?;
            for r in rows {
                stmt.execute(params![r.site, r.day, r.channel, r.campaign, r.amount, r.currency])?;
            }
        }
        tx.commit()?;
        Ok(rows.len())
    }

    fn spend(
        &self,
        site: Option<&str>,
        from_day: Option<&str>,
        to_day: Option<&str>,
    ) -> Result<Vec<SpendRow>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT site, day, channel, campaign, amount, currency FROM spend \
                 WHERE (?1 IS NULL OR site = ?1) AND (?2 IS NULL OR day >= ?2) AND (?3 IS NULL OR day <= ?3) \
                 ORDER BY day, site, channel, campaign",
            )?;
            let rows = stmt
                .query_map(params![site, from_day, to_day], |r| {
                    Ok(SpendRow {
                        site: r.get(0)?,
                        day: r.get(1)?,
                        channel: r.get(2)?,
                        campaign: r.get(3)?,
                        amount: r.get(4)?,
                        currency: r.get(5)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
    }

    fn stats(&self) -> StoreStats {
        let c = &self.counters;
        let enqueued = c.enqueued.load(Ordering::Relaxed);
        let rows = c.rows.load(Ordering::Relaxed);
        let failed = c.failed.load(Ordering::Relaxed);
        StoreStats {
            enqueued,
            dropped: c.dropped.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
            rows,
            failed,
            queued: enqueued.saturating_sub(rows + failed),
            checkpoints: c.checkpoints.load(Ordering::Relaxed),
            checkpointed_pages: c.checkpointed_pages.load(Ordering::Relaxed),
        }
    }

    fn update_call_with_events(
        &self,
        call_sid: &str,
        leg: Leg,
        status: &str,
        duration_s: Option<u32>,
        recording_url: Option<&str>,
        on_final: EventRows<'_>,
    ) -> Result<bool, StoreError> {
        self.check_durable()?;
        let mut conn = lock(&self.calls);
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let before: Option<(String, Option<u32>, bool)> = tx
            .prepare_cached("SELECT status, duration_s, dial_final FROM calls WHERE call_sid = ?1")?
            .query_row([call_sid], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        let Some((before, before_duration, dial_known)) = before else {
            return Ok(false);
        };
        // A late non-final status never replaces a final one; the caller's leg never replaces
        // the Dial's final word; a Dial nobody answered has no talk time, whatever the caller's
        // leg counted.
        tx.prepare_cached(&format!(
            "UPDATE calls SET \
             status = CASE WHEN dial_final = 1 AND ?5 = 0 THEN status \
                      WHEN status IN {FINAL_STATUSES} AND ?2 NOT IN {FINAL_STATUSES} THEN status ELSE ?2 END, \
             duration_s = CASE WHEN dial_final = 1 AND ?5 = 0 THEN duration_s \
                          WHEN ?5 = 1 AND ?2 <> 'completed' THEN ?3 \
                          ELSE COALESCE(?3, duration_s) END, \
             recording_url = COALESCE(?4, recording_url), \
             dial_final = CASE WHEN ?5 = 1 AND ?2 IN {FINAL_STATUSES} THEN 1 ELSE dial_final END \
             WHERE call_sid = ?1"
        ))?
        .execute(params![call_sid, status, duration_s, recording_url, leg == Leg::Dial])?;
        let (mut added, mut woken) = (0, false);
        let ends = FINAL.contains(&status);
        let first_final = ends && !FINAL.contains(&before.as_str());
        // The Dial's result after the caller's leg had ended the call: what the event said, or
        // is about to say, may be wrong (`completed`, ringing counted as talk time).
        let corrects = ends && leg == Leg::Dial && !first_final && !dial_known;
        if first_final || corrects {
            let call = query_calls(
                &tx,
                &format!("{CALL_SELECT} WHERE c.call_sid = ?1"),
                &[Value::Text(call_sid.to_owned())],
            )?;
            let rows = call.first().map(on_final).unwrap_or_default();
            if let (Some(call), Some(first)) = (call.first(), rows.first()) {
                let now = first.created_at;
                if first_final {
                    let wait = if leg == Leg::Call { DIAL_GRACE_MS } else { 0 };
                    added = insert_deliveries(&tx, &rows, now + wait)?;
                } else {
                    let changed = (call.status.as_str(), call.duration_s) != (before.as_str(), before_duration);
                    let moved;
                    (added, moved) = correct_deliveries(&tx, &rows, &call.id, changed, now)?;
                    woken = moved > 0;
                }
            }
        }
        tx.commit()?;
        self.outbox_added(added);
        if woken {
            // Rows brought forward: the worker sleeps until they were due.
            self.outbox_wake.notify_one();
        }
        Ok(true)
    }

    fn set_outcome_with_events(&self, id: &str, o: &Outcome, on_set: EventRows<'_>) -> Result<bool, StoreError> {
        self.outcome_change(id, on_set, |tx| Ok(upsert_outcome(tx, id, o)? > 0))
    }

    fn clear_outcome_with_events(&self, id: &str, on_clear: EventRows<'_>) -> Result<Option<bool>, StoreError> {
        let mut exists = false;
        let cleared = self.outcome_change(id, on_clear, |tx| {
            exists = tx
                .prepare_cached("SELECT 1 FROM calls WHERE id = ?1")?
                .query_row([id], |_| Ok(()))
                .optional()?
                .is_some();
            Ok(tx
                .prepare_cached("DELETE FROM outcomes WHERE call_id = ?1")?
                .execute([id])?
                > 0)
        })?;
        Ok(exists.then_some(cleared))
    }

    fn outbox_due(&self, now: i64, limit: usize, skip_urls: &[String]) -> Result<Vec<Delivery>, StoreError> {
        let skip = serde_json::to_string(skip_urls)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "{DELIVERY_SELECT} AND next_attempt_at <= ?1 \
                 AND url NOT IN (SELECT value FROM json_each(?2)) ORDER BY next_attempt_at, id LIMIT ?3"
            ))?;
            let rows = stmt
                .query_map(params![now, skip, limit], delivery_from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
    }

    fn outbox_next_due(&self, skip_urls: &[String]) -> Result<Option<i64>, StoreError> {
        let skip = serde_json::to_string(skip_urls)?;
        self.read(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT MIN(next_attempt_at) FROM outbox WHERE delivered_at IS NULL AND dead_at IS NULL \
                     AND url NOT IN (SELECT value FROM json_each(?1))",
                )?
                .query_row([skip], |r| r.get(0))?)
        })
    }

    fn outbox_take(&self, id: i64, at: i64) -> Result<Option<Delivery>, StoreError> {
        self.check_open()?;
        let conn = lock(&self.calls);
        Ok(conn
            .prepare_cached(concat!(
                "UPDATE outbox SET taken_at = ?2 WHERE id = ?1 AND delivered_at IS NULL AND dead_at IS NULL \
                 RETURNING ",
                delivery_columns!()
            ))?
            .query_row(params![id, at], delivery_from_row)
            .optional()?)
    }

    fn outbox_delivered(&self, id: i64, at: i64) -> Result<(), StoreError> {
        self.check_open()?;
        let conn = lock(&self.calls);
        let n = conn
            .prepare_cached(
                "UPDATE outbox SET delivered_at = ?2 WHERE id = ?1 AND delivered_at IS NULL AND dead_at IS NULL",
            )?
            .execute(params![id, at])?;
        if n > 0 {
            self.counters.outbox_delivered.fetch_add(1, Ordering::Relaxed);
            self.outbox_settled();
        }
        Ok(())
    }

    fn outbox_failed(&self, id: i64, at: i64, error: &str, retry_at: Option<i64>) -> Result<(), StoreError> {
        self.check_open()?;
        let mut conn = lock(&self.calls);
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx
            .prepare_cached(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?3, taken_at = NULL, \
                 next_attempt_at = COALESCE(?4, next_attempt_at), dead_at = CASE WHEN ?4 IS NULL THEN ?2 END \
                 WHERE id = ?1 AND delivered_at IS NULL AND dead_at IS NULL",
            )?
            .execute(params![id, at, error, retry_at])?;
        if let (1.., Some(until)) = (n, retry_at) {
            // In the same transaction: the rest of the queue is never due before the row that
            // failed (a call's outcome stays behind its call.completed).
            tx.prepare_cached(
                "UPDATE outbox SET next_attempt_at = ?2 WHERE url = (SELECT url FROM outbox WHERE id = ?1) \
                 AND id <> ?1 AND next_attempt_at < ?2 AND delivered_at IS NULL AND dead_at IS NULL",
            )?
            .execute(params![id, until])?;
        }
        tx.commit()?;
        if n > 0 {
            if retry_at.is_some() {
                self.counters.outbox_failed.fetch_add(1, Ordering::Relaxed);
            } else {
                self.counters.outbox_dead.fetch_add(1, Ordering::Relaxed);
                self.outbox_settled();
            }
        }
        Ok(())
    }

    fn outbox_wake(&self) -> Arc<tokio::sync::Notify> {
        self.outbox_wake.clone()
    }

    fn outbox_stats(&self) -> OutboxStats {
        let c = &self.counters;
        OutboxStats {
            delivered: c.outbox_delivered.load(Ordering::Relaxed),
            failed: c.outbox_failed.load(Ordering::Relaxed),
            dead: c.outbox_dead.load(Ordering::Relaxed),
            pending: c.outbox_pending.load(Ordering::Relaxed),
        }
    }
}

impl SqliteStore {
    /// After a commit that added `n` outbox rows: count them and wake the delivery worker.
    fn outbox_added(&self, n: usize) {
        if n > 0 {
            self.counters.outbox_pending.fetch_add(n as u64, Ordering::Relaxed);
            self.outbox_wake.notify_one();
        }
    }

    /// Runs `change` on call `id`'s outcome in one durable transaction; when it changed
    /// something, writes the rows `on_change(updated call)` to the outbox in the same one.
    /// Returns whether it changed something (nothing is committed otherwise).
    fn outcome_change(
        &self,
        id: &str,
        on_change: EventRows<'_>,
        change: impl FnOnce(&Connection) -> Result<bool, StoreError>,
    ) -> Result<bool, StoreError> {
        self.check_durable()?;
        let mut conn = lock(&self.calls);
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if !change(&tx)? {
            return Ok(false);
        }
        let call = query_calls(
            &tx,
            &format!("{CALL_SELECT} WHERE c.id = ?1"),
            &[Value::Text(id.to_owned())],
        )?;
        let added = match call.first() {
            Some(call) => {
                let rows = on_change(call);
                let now = rows.first().map_or(0, |r| r.created_at);
                let mut added = 0;
                for d in &rows {
                    // Behind the call's own events still queued for this destination (a
                    // `call.completed` waiting for the Dial's result): a CRM hears of the call
                    // before its outcome.
                    let due = tx
                        .prepare_cached(
                            "SELECT MAX(next_attempt_at) FROM outbox WHERE url = ?1                              AND delivered_at IS NULL AND dead_at IS NULL AND json_extract(payload, '$.call.id') = ?2",
                        )?
                        .query_row(params![d.url, call.id], |r| r.get::<_, Option<i64>>(0))?
                        .map_or(now, |queued| queued.max(now));
                    added += insert_deliveries(&tx, std::slice::from_ref(d), due)?;
                }
                added
            }
            None => 0,
        };
        tx.commit()?;
        self.outbox_added(added);
        Ok(true)
    }

    fn outbox_settled(&self) {
        let _ = self
            .counters
            .outbox_pending
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| Some(p.saturating_sub(1)));
    }
}

/// Writes an event's deliveries, first due at `due`; returns how many rows were new. A row for
/// an (event id, url) already stored is left as it is.
fn insert_deliveries(conn: &Connection, rows: &[NewDelivery], due: i64) -> Result<usize, StoreError> {
    let mut added = 0;
    for d in rows {
        added += conn
            .prepare_cached(
                "INSERT INTO outbox (event_id, event, site, url, payload, created_at, next_attempt_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (event_id, url) DO NOTHING",
            )?
            .execute(params![
                d.event_id,
                d.event,
                d.site,
                d.url,
                d.payload,
                d.created_at,
                due
            ])?;
    }
    Ok(added)
}

/// The Dial's result reached a call whose caller's leg had already brought it to a final
/// status, with the event `rows` (one per destination, due now) about the call as it now stands.
/// For each destination: a row of the earlier event that the worker has not taken to send
/// (`taken_at`) is brought forward if it was waiting for the Dial (no attempt yet), and
/// when the Dial `changed` status or duration it says so instead (the new event's id and
/// body; a retry keeps its backoff). A destination that got the earlier event, or is being
/// sent it, gets the new one as a second event, if it `changed` anything. Returns the rows
/// added and the queued rows updated.
fn correct_deliveries(
    conn: &Connection,
    rows: &[NewDelivery],
    call_id: &str,
    changed: bool,
    now: i64,
) -> Result<(usize, usize), StoreError> {
    let (mut added, mut updated) = (0, 0);
    for d in rows {
        let queued = conn
            .prepare_cached(
                "UPDATE outbox SET \
                 next_attempt_at = CASE WHEN attempts = 0 THEN MIN(next_attempt_at, ?5) ELSE next_attempt_at END, \
                 event_id = CASE WHEN ?6 THEN ?3 ELSE event_id END, \
                 payload = CASE WHEN ?6 THEN ?4 ELSE payload END \
                 WHERE event = ?1 AND url = ?2 AND delivered_at IS NULL AND dead_at IS NULL \
                 AND taken_at IS NULL AND json_extract(payload, '$.call.id') = ?7",
            )?
            .execute(params![d.event, d.url, d.event_id, d.payload, now, changed, call_id])?;
        if queued == 0 && changed {
            added += insert_deliveries(conn, std::slice::from_ref(d), now)?;
        }
        if queued > 0 {
            // The call's later events (an outcome) queued behind the one brought forward
            // come forward with it, still after it.
            conn.prepare_cached(
                "UPDATE outbox SET next_attempt_at = MAX(?3, COALESCE((SELECT MAX(o.next_attempt_at) FROM outbox o \
                 WHERE o.url = outbox.url AND o.event = ?2 AND o.delivered_at IS NULL AND o.dead_at IS NULL \
                 AND json_extract(o.payload, '$.call.id') = ?4), ?3)) \
                 WHERE url = ?1 AND event <> ?2 AND attempts = 0 AND delivered_at IS NULL AND dead_at IS NULL \
                 AND taken_at IS NULL AND next_attempt_at > ?3 AND json_extract(payload, '$.call.id') = ?4",
            )?
            .execute(params![d.url, d.event, now, call_id])?;
        }
        updated += queued;
    }
    Ok((added, updated))
}

fn delivery_from_row(r: &Row<'_>) -> rusqlite::Result<Delivery> {
    Ok(Delivery {
        id: r.get(0)?,
        event_id: r.get(1)?,
        event: r.get(2)?,
        site: r.get(3)?,
        url: r.get(4)?,
        payload: r.get(5)?,
        attempts: r.get(6)?,
        created_at: r.get(7)?,
        next_attempt_at: r.get(8)?,
    })
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a connection leaves no open transaction (it rolls back on drop).
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn connect(path: &Path, synchronous: &str, busy_timeout: Duration) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(busy_timeout)?;
    conn.execute_batch(&format!(
        "PRAGMA foreign_keys = ON; PRAGMA synchronous = {synchronous};"
    ))?;
    Ok(conn)
}

fn open_reader(path: &Path, busy_timeout: Duration) -> Result<Connection, StoreError> {
    let conn = connect(path, "NORMAL", busy_timeout)?;
    conn.execute_batch("PRAGMA query_only = ON;")?;
    Ok(conn)
}

/// Brings the schema to `migrations.len()`; returns that version.
fn migrate(conn: &mut Connection, migrations: &[&str]) -> Result<u32, StoreError> {
    let known = u32::try_from(migrations.len()).map_err(|_| StoreError::OutOfRange("schema_version"))?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )?;
    let current: u32 = tx.query_row("SELECT COALESCE(MAX(version), 0) FROM schema_version", [], |r| r.get(0))?;
    if current > known {
        return Err(StoreError::SchemaTooNew { found: current, known });
    }
    for (version, sql) in (1..=known).zip(migrations).skip(current as usize) {
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_version (version, applied_at) VALUES (?1, ?2)",
            params![version, now_ms()],
        )?;
        info!(version, "applied schema migration");
    }
    tx.commit()?;
    Ok(known)
}

fn query_calls(conn: &Connection, sql: &str, args: &[Value]) -> Result<Vec<CallRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt
        .query_map(params_from_iter(args), call_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

fn call_from_row(r: &Row<'_>) -> rusqlite::Result<CallRecord> {
    let attribution: String = r.get(14)?;
    let attribution = serde_json::from_str(&attribution)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(14, Type::Text, Box::new(e)))?;
    let outcome = match r.get::<_, Option<String>>(16)? {
        Some(kind) => Some(Outcome {
            kind,
            value: r.get(17)?,
            currency: r.get(18)?,
            at: r.get(19)?,
        }),
        None => None,
    };
    Ok(CallRecord {
        id: r.get(0)?,
        call_sid: r.get(1)?,
        site: r.get(2)?,
        tracking_number: r.get(3)?,
        caller: r.get(4)?,
        started_at: r.get(5)?,
        duration_s: r.get(6)?,
        status: r.get(7)?,
        caller_city: r.get(8)?,
        caller_state: r.get(9)?,
        caller_country: r.get(10)?,
        returning_caller: r.get(11)?,
        earlier_calls: r.get(12)?,
        confidence: r.get(13)?,
        attribution,
        recording_url: r.get(15)?,
        outcome,
    })
}

fn lease_from_row(r: &Row<'_>) -> rusqlite::Result<LeaseRow> {
    let id: i64 = r.get(0)?;
    Ok(LeaseRow {
        id: u64::try_from(id).map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, Type::Integer, Box::new(e)))?,
        site: r.get(1)?,
        pool: r.get(2)?,
        number: r.get(3)?,
        number_index: r.get(4)?,
        session: r.get(5)?,
        visitor: r.get(6)?,
        started: r.get(7)?,
        last_seen: r.get(8)?,
        released: r.get(9)?,
        shared: r.get(10)?,
    })
}

fn lease_id(id: u64) -> Result<i64, StoreError> {
    i64::try_from(id).map_err(|_| StoreError::OutOfRange("leases.id"))
}

/// Sets a call's outcome; returns 0 when the call does not exist.
fn upsert_outcome(conn: &Connection, call_id: &str, o: &Outcome) -> Result<usize, StoreError> {
    Ok(conn
        .prepare_cached(
            "INSERT INTO outcomes (call_id, kind, value, currency, at) \
             SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS (SELECT 1 FROM calls WHERE id = ?1) \
             ON CONFLICT (call_id) DO UPDATE SET \
             kind = excluded.kind, value = excluded.value, currency = excluded.currency, at = excluded.at",
        )?
        .execute(params![call_id, o.kind, o.value, o.currency, o.at])?)
}

/// Applies one queued write inside the writer's transaction.
fn apply(conn: &Connection, w: &Write) -> Result<(), StoreError> {
    match w {
        Write::PageView(v) => {
            let shown = v.shown.as_ref();
            conn.prepare_cached(
                "INSERT INTO page_views (site, visitor, session, path, at, shown, channel, source) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                v.site,
                v.visitor,
                v.session,
                v.path,
                v.at,
                shown.map(|s| &s.number),
                shown.map(|s| &s.channel),
                shown.map(|s| &s.source),
            ])?;
        }
        Write::Session(s) => {
            conn.prepare_cached(
                "INSERT INTO sessions (id, site, visitor, started, device, first_touch, last_touch, touches) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
                 ON CONFLICT (id) DO UPDATE SET site = excluded.site, visitor = excluded.visitor, \
                 started = excluded.started, device = excluded.device, first_touch = excluded.first_touch, \
                 last_touch = excluded.last_touch, touches = excluded.touches",
            )?
            .execute(params![
                s.id,
                s.site,
                s.visitor,
                s.started,
                s.device,
                s.first_touch.as_ref().map(|j| j.0.as_str()),
                s.last_touch.as_ref().map(|j| j.0.as_str()),
                s.touches,
            ])?;
            conn.prepare_cached(
                "INSERT INTO visitors (site, id, first_seen, last_seen) VALUES (?1, ?2, ?3, ?3) \
                 ON CONFLICT (site, id) DO UPDATE SET first_seen = min(first_seen, excluded.first_seen), \
                 last_seen = max(last_seen, excluded.last_seen)",
            )?
            .execute(params![s.site, s.visitor, s.started])?;
        }
        Write::LeaseOpened(l) => {
            conn.prepare_cached(
                "INSERT INTO leases (id, site, pool, number, number_index, session, visitor, started, last_seen, \
                 released, shared) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
                 ON CONFLICT (id) DO UPDATE SET site = excluded.site, pool = excluded.pool, number = excluded.number, \
                 number_index = excluded.number_index, session = excluded.session, visitor = excluded.visitor, \
                 started = excluded.started, last_seen = excluded.last_seen, released = excluded.released, \
                 shared = excluded.shared",
            )?
            .execute(params![
                lease_id(l.id)?,
                l.site,
                l.pool,
                l.number,
                l.number_index,
                l.session,
                l.visitor,
                l.started,
                l.last_seen,
                l.released,
                l.shared,
            ])?;
        }
        Write::LeaseRefreshed { id, last_seen } => {
            conn.prepare_cached("UPDATE leases SET last_seen = max(last_seen, ?2) WHERE id = ?1")?
                .execute(params![lease_id(*id)?, last_seen])?;
        }
        Write::LeaseReleased { id, at, shared } => {
            conn.prepare_cached(
                "UPDATE leases SET released = COALESCE(released, ?2), shared = (shared OR ?3) WHERE id = ?1",
            )?
            .execute(params![lease_id(*id)?, at, shared])?;
        }
    }
    Ok(())
}

/// Commits `batch` in one transaction (emptying it). Bad rows are skipped and counted; an error
/// here means the whole batch was lost.
fn commit_batch(conn: &mut Connection, batch: &mut Vec<Write>, counters: &Counters) -> Result<(), String> {
    if batch.is_empty() {
        return Ok(());
    }
    let total = batch.len() as u64;
    let result = (|| -> Result<(u64, u64), rusqlite::Error> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (mut ok, mut bad) = (0, 0);
        let mut ran_since = Instant::now();
        for w in batch.iter() {
            if ran_since.elapsed() >= WRITER_YIELD_EVERY {
                // Let a worker the writer's slice holds back serve its requests (see below).
                std::thread::yield_now();
                ran_since = Instant::now();
            }
            match apply(&tx, w) {
                Ok(()) => ok += 1,
                Err(e) => {
                    bad += 1;
                    note_lost(counters, std::slice::from_ref(w));
                    warn!(error = %e, write = ?w, "queued store write failed; skipped");
                }
            }
        }
        tx.commit()?;
        Ok((ok, bad))
    })();
    if result.is_err() {
        note_lost(counters, batch);
    }
    batch.clear();
    match result {
        Ok((ok, bad)) => {
            counters.batches.fetch_add(1, Ordering::Relaxed);
            counters.rows.fetch_add(ok, Ordering::Relaxed);
            counters.failed.fetch_add(bad, Ordering::Relaxed);
            Ok(())
        }
        Err(e) => Err(lost(total, counters, "failed to commit", &e)),
    }
}

/// Counts and logs `batch` as lost (emptying it) for `why`; returns the failure to report.
fn lose_batch(batch: &mut Vec<Write>, counters: &Counters, why: &StoreError) -> String {
    let total = batch.len() as u64;
    note_lost(counters, batch);
    batch.clear();
    lost(total, counters, "was not written", why)
}

/// The `at` of a page view that showed a source number.
fn source_view_at(w: &Write) -> Option<i64> {
    match w {
        Write::PageView(v) if v.shown.is_some() => Some(v.at),
        _ => None,
    }
}

/// Notes the page views showing a source number among `writes`, which are lost.
fn note_lost(counters: &Counters, writes: &[Write]) {
    if let Some(at) = writes.iter().filter_map(source_view_at).max() {
        counters.lost_view_at(at);
    }
}

/// Counts and logs `total` queued writes as lost (the batch `how`, for `why`); returns the
/// failure a flush reports.
fn lost(total: u64, counters: &Counters, how: &str, why: &dyn std::fmt::Display) -> String {
    counters.failed.fetch_add(total, Ordering::Relaxed);
    error!(error = %why, writes = total, "store batch {how}; its writes are lost");
    format!("a batch of {total} writes {how}: {why}")
}

/// How long the writer runs inside a batch before it offers the CPU to whatever else is ready.
///
/// Why: its lower priority decides who gets the CPU over time, not how long a request that
/// arrives during a commit waits. On the 6.x kernels' EEVDF scheduler a running task keeps its
/// slice (about 1.5 ms on two CPUs) before a woken worker may run, and the store writer ran in
/// slices of up to 2.4 ms beside the worker under `benches/load.sh` (`perf sched`): the
/// proxy's p99 carried them. A `sched_yield` every 200 µs bounds that wait without changing
/// the writer's share (a yield costs well under a microsecond, and the writer goes on at once
/// when nothing else is ready), where `SCHED_IDLE` would let a saturated worker starve it.
const WRITER_YIELD_EVERY: Duration = Duration::from_micros(200);

/// The writer thread's nice value (Linux): page views may wait a few milliseconds, a visitor's
/// page should not wait behind their commit. On a core the writer shares with the proxy's
/// workers the scheduler then runs requests first; +5 still leaves the writer about a fifth of
/// a core that both want (CFS weights 335 against 1024), more than page views at one core's
/// saturation need (13 %, `benches/RESULTS.md`), so nothing is dropped for want of CPU.
const WRITER_NICE: i32 = 5;

fn lower_priority() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), WRITER_NICE) {
        debug!(error = %e, "could not lower the store writer's priority");
    }
}

/// Log pages (4 KiB each) after which the committing connection checkpoints by itself: the
/// writer's, once the checkpointer has fallen that far behind (a core too busy to give an
/// idle-priority thread any time), and the call connection's auto-checkpoint. The writer stops
/// waking the checkpointer past it (a wake already queued still runs once), so that a
/// checkpoint of its own can take the lock when the checkpointer's current one ends. With the
/// proxy saturating the core for a minute (`wrk -c32`, 21,000 req/s, every request a new
/// visitor) the log file went up to 89 MB and back to 8 MB ([`WAL_KEEP_BYTES`]) every 15-20 s.
pub const BACKSTOP_PAGES: u32 = 10_000;

/// A log file grown past this (by a backstop's worth of pages) is cut back to it when the
/// log starts over, instead of keeping its largest size on disk.
const WAL_KEEP_BYTES: u64 = 8 << 20;

/// The store's checkpointer thread (see the module doc). Why a thread of its own: a checkpoint
/// copies hundreds of pages in one SQLite call that cannot yield. Run by the writer's
/// auto-checkpoint it held a proxy worker sharing the core off the CPU for up to 3 ms at a
/// time. At `SCHED_IDLE` a worker that wakes takes the core back at once; one preempted by
/// another task (a softirq thread it woke) may still see the scheduler pick the checkpointer
/// next, for up to a slice. `perf sched`, `benches/load.sh`'s small page paced at 5,200 req/s:
/// a worker waited over 0.5 ms for the CPU 5 times in 6 s before, once or twice in 11 s after
/// (longest 3.0 ms before, 2.3 ms after).
///
/// Woken through a one-slot channel whose sender is the writer connection's WAL hook: wakes
/// coalesce while a checkpoint runs, and when the writer's connection is dropped (the writer
/// ended, or never started) the thread ends by itself.
struct Checkpointer {
    handle: JoinHandle<()>,
}

impl Checkpointer {
    /// Starts the thread on `conn` and installs the hook on `writer` that wakes it (and, past
    /// [`BACKSTOP_PAGES`], checkpoints on the writer's own thread).
    fn start(
        conn: Connection,
        counters: Arc<Counters>,
        writer: &mut Connection,
        wake_at: u32,
    ) -> Result<Checkpointer, StoreError> {
        let (wake, woken) = mpsc::sync_channel::<()>(1);
        let wake_at = i32::try_from(wake_at.max(1)).unwrap_or(i32::MAX);
        let backstop = BACKSTOP_PAGES as i32;
        writer.wal_hook(Some(move |wal: &mut rusqlite::hooks::Wal, pages: i32| {
            if pages >= backstop {
                // Busy (the checkpointer is in one) is fine: the next commit tries again, and
                // it is not woken meanwhile. An error returned here would fail the statement
                // although its commit is done, so none is.
                if let Err(e) = wal.checkpoint() {
                    debug!(error = %e, pages, "backstop checkpoint did not run");
                }
            } else if pages >= wake_at {
                let _ = wake.try_send(());
            }
            Ok(())
        }))?;
        let handle = std::thread::Builder::new()
            .name("telswap-store-checkpoint".into())
            .spawn(move || run_checkpointer(&conn, &woken, &counters))?;
        Ok(Checkpointer { handle })
    }

    /// Waits for the thread, which ends once the writer's connection is dropped.
    fn join(self) {
        if self.handle.join().is_err() {
            error!("the store's checkpointer thread panicked");
        }
    }
}

fn run_checkpointer(conn: &Connection, woken: &Receiver<()>, counters: &Counters) {
    idle_priority();
    while woken.recv().is_ok() {
        // PASSIVE: copies what no reader still needs, never waits for a lock and never blocks
        // a commit; what it leaves is copied by the next one. Safe beside the call connection's
        // synchronous=FULL: at NORMAL a checkpoint still syncs the log before copying and the
        // database file before the log may start over (not so at synchronous=OFF).
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        }) {
            Ok((0, log, copied)) => {
                counters.checkpoints.fetch_add(1, Ordering::Relaxed);
                counters
                    .checkpointed_pages
                    .fetch_add(copied.max(0) as u64, Ordering::Relaxed);
                debug!(log, copied, "store checkpoint");
            }
            Ok((_, log, _)) => debug!(log, "store checkpoint busy; the next one copies it"),
            Err(e) => warn!(error = %e, "store checkpoint failed; the next one retries"),
        }
    }
}

/// `SCHED_IDLE` for the calling thread (Linux; elsewhere, or if refused, it keeps its priority).
fn idle_priority() {
    #[cfg(target_os = "linux")]
    {
        use thread_priority::{
            NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy, set_thread_priority_and_policy,
            thread_native_id, thread_schedule_policy,
        };
        let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
        // The crate sets the policy, then the nice value (0 here), which a process started at a
        // positive nice may not do: what counts is the policy.
        let set = set_thread_priority_and_policy(thread_native_id(), ThreadPriority::Min, idle);
        if thread_schedule_policy().ok() != Some(idle) {
            debug!(result = ?set, "could not give the store checkpointer idle priority");
        }
    }
}

/// The writer thread. Returns the failure not yet reported to a flush, if any.
fn run_writer(
    mut conn: Connection,
    rx: Receiver<Msg>,
    counters: &Counters,
    file: &OpenedFile,
    batch_max: usize,
    linger: Duration,
) -> Option<String> {
    lower_priority();
    let mut batch = Vec::with_capacity(batch_max);
    let mut waiters: Vec<SyncSender<Result<(), String>>> = Vec::new();
    let mut failure: Option<String> = None;
    let mut closing = false;
    let mut backlog = false;
    loop {
        // Block for the first message (unless closing), let more gather ([`DEFAULT_LINGER`]),
        // then take what is queued.
        let first = if closing { rx.try_recv().ok() } else { rx.recv().ok() };
        let Some(first) = first else { break };
        // A backlog (the last batch was full) is taken at once.
        if !closing && !backlog && !linger.is_zero() && matches!(first, Msg::Write(_)) {
            std::thread::sleep(linger);
        }
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Write(w) => batch.push(w),
                Msg::Flush(reply) => waiters.push(reply),
                Msg::Close => closing = true,
            }
            if batch.len() >= batch_max {
                break;
            }
            next = rx.try_recv().ok();
        }
        backlog = batch.len() >= batch_max;
        // A batch committed into a file no longer at the path would be lost at the next start
        // without a word: count it lost and say so (a stat per batch; batches come at most
        // every `linger`).
        let committed = match (batch.is_empty(), file.check()) {
            (false, Err(gone)) => Err(lose_batch(&mut batch, counters, &gone)),
            _ => commit_batch(&mut conn, &mut batch, counters),
        };
        if let Err(e) = committed {
            failure = Some(e);
        }
        if !waiters.is_empty() {
            let result = failure.take().map_or(Ok(()), Err);
            for reply in waiters.drain(..) {
                let _ = reply.send(result.clone());
            }
        }
    }
    if let Err(e) = conn.execute_batch("PRAGMA optimize;") {
        debug!(error = %e, "PRAGMA optimize at close");
    }
    failure
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call(n: u32) -> CallRecord {
        CallRecord {
            id: format!("c_{n:04}"),
            call_sid: format!("CA{n:032}"),
            site: "example".into(),
            tracking_number: "+15550101001".into(),
            caller: "+15557770000".into(),
            started_at: 1_700_000_000_000 + i64::from(n) * 1_000,
            duration_s: None,
            status: "ringing".into(),
            caller_city: None,
            caller_state: None,
            caller_country: None,
            returning_caller: false,
            earlier_calls: 0,
            confidence: "none".into(),
            attribution: json!({}),
            recording_url: None,
            outcome: None,
        }
    }

    fn full_call() -> CallRecord {
        CallRecord {
            id: "c_full".into(),
            call_sid: "CAfull".into(),
            site: "acme".into(),
            tracking_number: "+15550101002".into(),
            caller: "+15551234567".into(),
            started_at: 1_712_345_678_901,
            duration_s: Some(185),
            status: "completed".into(),
            caller_city: Some("Springfield".into()),
            caller_state: Some("IL".into()),
            caller_country: Some("US".into()),
            returning_caller: true,
            earlier_calls: 3,
            confidence: "exact".into(),
            attribution: json!({
                "channel": "paid_search", "source": "google", "medium": "cpc", "campaign": "spring",
                "gclid": "Cj0KCQ", "landing_page": "/offers?x=1", "device": "mobile",
                "params": {"utm_id": "42"}, "pages": [{"path": "/", "at": 1_712_345_600_000_i64}],
                "touches": [{"channel": "paid_search"}], "unicode": "café ☎"
            }),
            recording_url: Some("https://api.example/rec/RE1".into()),
            outcome: Some(Outcome {
                kind: "sale".into(),
                value: Some(120.5),
                currency: Some("USD".into()),
                at: 42,
            }),
        }
    }

    fn lease(id: u64, number: &str, started: i64) -> LeaseRow {
        LeaseRow {
            id,
            site: "example".into(),
            pool: "google-ads".into(),
            number: number.into(),
            number_index: 1,
            session: format!("s{id}"),
            visitor: format!("v{id}"),
            started,
            last_seen: started,
            released: None,
            shared: false,
        }
    }

    fn count(store: &SqliteStore, table: &str) -> i64 {
        store
            .read(|c| Ok(c.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))?))
            .unwrap()
    }

    #[test]
    fn insert_and_fetch_every_field() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let full = full_call();
        let bare = call(1);
        assert_eq!(store.insert_call(&full).unwrap(), Inserted::New);
        assert_eq!(store.insert_call(&bare).unwrap(), Inserted::New);
        assert_eq!(store.call("c_full").unwrap().as_ref(), Some(&full));
        assert_eq!(store.call_by_sid("CAfull").unwrap().as_ref(), Some(&full));
        assert_eq!(store.call(&bare.id).unwrap().as_ref(), Some(&bare));
        assert_eq!(store.call("nope").unwrap(), None);
        assert_eq!(store.call_by_sid("nope").unwrap(), None);
        // The JSON shape the admin API serves is the record's own.
        let v = serde_json::to_value(&full).unwrap();
        assert_eq!(v["attribution"]["pages"][0]["path"], "/");
        assert_eq!(v["outcome"]["value"], 120.5);
    }

    /// A call is never acknowledged into a file the next start will not read: once the file at
    /// the store's path is gone or another, durable writes fail (the webhook answers 503 and the
    /// provider retries) instead of landing in an unlinked inode, `check` says so (the health
    /// check), and queued writes are counted lost and reported by `flush`, not committed there
    /// in silence.
    #[test]
    fn a_removed_or_replaced_file_refuses_durable_writes() {
        for replace in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let store = SqliteStore::open(dir.path()).unwrap();
            assert_eq!(store.insert_call(&call(1)).unwrap(), Inserted::New);
            assert!(store.check().is_ok());
            std::fs::remove_file(store.path()).unwrap();
            if replace {
                std::fs::write(store.path(), b"").unwrap();
            }
            assert!(matches!(store.check(), Err(StoreError::FileGone(_))));
            assert!(matches!(store.call("c_0001"), Err(StoreError::FileGone(_))));
            assert!(
                matches!(store.insert_call(&call(2)), Err(StoreError::FileGone(_))),
                "{replace}"
            );
            assert!(matches!(
                store.update_call_with_events("CA1", Leg::Call, "completed", Some(3), None, &|_| Vec::new()),
                Err(StoreError::FileGone(_))
            ));
            let view = PageViewRow {
                site: "example".into(),
                visitor: "v1".into(),
                session: "s1".into(),
                path: "/".into(),
                at: 1_000,
                shown: None,
            };
            assert!(store.enqueue(Write::PageView(view)));
            let flushed = store.flush();
            assert!(
                matches!(&flushed, Err(StoreError::Batch(m)) if m.contains("removed or replaced")),
                "{flushed:?}"
            );
            let stats = store.stats();
            assert_eq!((stats.rows, stats.failed), (0, 1));
        }
    }

    #[test]
    fn duplicate_call_sid_returns_the_first_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let first = call(1);
        let mut retry = call(1);
        retry.id = "c_other".into();
        retry.status = "in-progress".into();
        assert_eq!(store.insert_call(&first).unwrap(), Inserted::New);
        assert_eq!(store.insert_call(&retry).unwrap(), Inserted::Duplicate(first.clone()));
        assert_eq!(count(&store, "calls"), 1);
        assert_eq!(store.call("c_other").unwrap(), None);

        // Same id, another CallSid: an error, not a silent overwrite.
        let mut clash = call(2);
        clash.id = first.id.clone();
        assert!(matches!(store.insert_call(&clash), Err(StoreError::DuplicateId(id)) if id == first.id));
        assert_eq!(count(&store, "calls"), 1);
    }

    #[test]
    fn concurrent_duplicate_webhooks_store_one_call() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let results: Vec<Inserted> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let store = &store;
                    s.spawn(move || {
                        let mut c = call(7);
                        c.id = format!("c_try{i}");
                        store.insert_call(&c).unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(results.iter().filter(|r| **r == Inserted::New).count(), 1);
        assert_eq!(count(&store, "calls"), 1);
    }

    /// A forwarded call that nobody answered stays missed, and a call that was answered keeps
    /// its talk time, in whichever order the two legs' callbacks arrive: the caller's leg ends
    /// `completed` either way, its duration counting the ringing.
    #[test]
    fn the_dials_result_stands_against_the_callers_leg() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let none = |_: &CallRecord| Vec::new();
        type Update<'a> = (Leg, &'a str, Option<u32>);
        type Case<'a> = (&'a [Update<'a>], (&'a str, Option<u32>));
        let cases: [Case; 4] = [
            (
                &[(Leg::Dial, "no-answer", None), (Leg::Call, "completed", Some(24))],
                ("no-answer", None),
            ),
            (
                &[(Leg::Call, "completed", Some(24)), (Leg::Dial, "no-answer", None)],
                ("no-answer", None),
            ),
            (
                &[(Leg::Dial, "completed", Some(12)), (Leg::Call, "completed", Some(35))],
                ("completed", Some(12)),
            ),
            (
                &[(Leg::Call, "completed", Some(35)), (Leg::Dial, "completed", Some(12))],
                ("completed", Some(12)),
            ),
        ];
        for (i, (updates, want)) in cases.iter().enumerate() {
            let c = call(i as u32 + 10);
            store.insert_call(&c).unwrap();
            for (leg, status, duration) in updates.iter() {
                assert!(
                    store
                        .update_call_with_events(&c.call_sid, *leg, status, *duration, None, &none)
                        .unwrap()
                );
            }
            let got = store.call(&c.id).unwrap().unwrap();
            assert_eq!((got.status.as_str(), got.duration_s), *want, "case {i}");
        }
        // Without a Dial callback, the caller's leg is all there is.
        let c = call(20);
        store.insert_call(&c).unwrap();
        store.update_call(&c.call_sid, "completed", Some(40), None).unwrap();
        assert_eq!(store.call(&c.id).unwrap().unwrap().duration_s, Some(40));
    }

    #[test]
    fn update_call_sets_final_status() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        store.insert_call(&call(1)).unwrap();
        assert!(!store.update_call("CAunknown", "completed", Some(3), None).unwrap());
        assert!(store.update_call(&call(1).call_sid, "in-progress", None, None).unwrap());
        assert_eq!(store.call("c_0001").unwrap().unwrap().status, "in-progress");
        assert!(
            store
                .update_call(&call(1).call_sid, "completed", Some(61), Some("https://rec/1"))
                .unwrap()
        );
        let c = store.call("c_0001").unwrap().unwrap();
        assert_eq!(
            (c.status.as_str(), c.duration_s, c.recording_url.as_deref()),
            ("completed", Some(61), Some("https://rec/1"))
        );
        // A late, out-of-order callback neither reverts the status nor erases what is known.
        assert!(store.update_call(&call(1).call_sid, "ringing", None, None).unwrap());
        let c = store.call("c_0001").unwrap().unwrap();
        assert_eq!(
            (c.status.as_str(), c.duration_s, c.recording_url.as_deref()),
            ("completed", Some(61), Some("https://rec/1"))
        );
    }

    #[test]
    fn calls_filter_and_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        for n in 0..10 {
            let mut c = call(n);
            c.site = if n % 2 == 0 { "even".into() } else { "odd".into() };
            store.insert_call(&c).unwrap();
        }
        let ids = |f: CallFilter| store.calls(&f).unwrap().into_iter().map(|c| c.id).collect::<Vec<_>>();
        let all = ids(CallFilter::default());
        assert_eq!(all.len(), 10);
        assert_eq!(all[0], "c_0009");
        assert_eq!(all[9], "c_0000");
        let t = |n: i64| 1_700_000_000_000 + n * 1_000;
        // [from, to): 3 included, 6 excluded.
        assert_eq!(
            ids(CallFilter {
                from: Some(t(3)),
                to: Some(t(6)),
                ..Default::default()
            }),
            ["c_0005", "c_0004", "c_0003"]
        );
        assert_eq!(
            ids(CallFilter {
                from: Some(t(3)),
                site: Some("odd".into()),
                ..Default::default()
            }),
            ["c_0009", "c_0007", "c_0005", "c_0003"]
        );
        assert_eq!(
            ids(CallFilter {
                to: Some(t(5)),
                site: Some("even".into()),
                limit: 2,
                ..Default::default()
            }),
            ["c_0004", "c_0002"]
        );
        assert!(
            ids(CallFilter {
                site: Some("none".into()),
                ..Default::default()
            })
            .is_empty()
        );
        // Pages by (started_at, id): calls sharing a millisecond are neither skipped nor
        // repeated.
        for n in 10..14 {
            let mut c = call(n);
            c.started_at = t(20);
            store.insert_call(&c).unwrap();
        }
        let mut paged = Vec::new();
        let mut after = None;
        loop {
            let page = store
                .calls(&CallFilter {
                    after: after.clone(),
                    limit: 3,
                    ..Default::default()
                })
                .unwrap();
            let Some(last) = page.last() else { break };
            after = Some((last.started_at, last.id.clone()));
            paged.extend(page.into_iter().map(|c| c.id));
        }
        assert_eq!(paged.len(), 14);
        assert_eq!(&paged[..5], ["c_0013", "c_0012", "c_0011", "c_0010", "c_0009"]);
    }

    #[test]
    fn earlier_calls_counts_this_callers_calls_to_this_site() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        for n in 0..5 {
            store.insert_call(&call(n)).unwrap();
        }
        let mut other_site = call(10);
        other_site.site = "other".into();
        store.insert_call(&other_site).unwrap();
        let mut other_caller = call(11);
        other_caller.caller = "+15550000000".into();
        store.insert_call(&other_caller).unwrap();
        let t3 = call(3).started_at;
        assert_eq!(store.earlier_calls("example", "+15557770000", t3).unwrap(), 3);
        assert_eq!(store.earlier_calls("example", "+15557770000", i64::MAX).unwrap(), 5);
        assert_eq!(store.earlier_calls("example", "+15550000000", i64::MAX).unwrap(), 1);
        assert_eq!(store.earlier_calls("other", "+15557770000", i64::MAX).unwrap(), 1);
        assert_eq!(store.earlier_calls("example", "+19999999999", i64::MAX).unwrap(), 0);
    }

    #[test]
    fn set_outcome_sets_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        store.insert_call(&call(1)).unwrap();
        let sale = Outcome {
            kind: "sale".into(),
            value: Some(99.0),
            currency: Some("EUR".into()),
            at: 5,
        };
        assert!(!store.set_outcome("c_missing", &sale).unwrap());
        assert!(store.set_outcome("c_0001", &sale).unwrap());
        assert_eq!(store.call("c_0001").unwrap().unwrap().outcome, Some(sale));
        let lead = Outcome {
            kind: "lead".into(),
            value: None,
            currency: None,
            at: 6,
        };
        assert!(store.set_outcome("c_0001", &lead).unwrap());
        assert_eq!(store.call("c_0001").unwrap().unwrap().outcome, Some(lead));
        assert_eq!(count(&store, "outcomes"), 1);
    }

    #[test]
    fn ten_thousand_page_views_then_flush() {
        let dir = tempfile::tempdir().unwrap();
        // Room for all 10,001 writes: with the default bound of 10,000 the last one is refused
        // whenever the writer has not taken the first yet (a race the test used to lose).
        let options = StoreOptions {
            queue_capacity: 10_001,
            ..StoreOptions::default()
        };
        let store = SqliteStore::open_with(dir.path(), options).unwrap();
        let session = SessionRow {
            id: "s1".into(),
            site: "example".into(),
            visitor: "v1".into(),
            started: 1_000,
            device: "desktop".into(),
            first_touch: JsonText::of(&json!({"channel": "paid_search", "gclid": "abc"})),
            last_touch: None,
            touches: 1,
        };
        assert!(store.enqueue(Write::Session(session.clone())));
        for i in 0..10_000 {
            let view = PageViewRow {
                site: "example".into(),
                visitor: "v1".into(),
                session: "s1".into(),
                path: format!("/p/{i}"),
                at: 1_000 + i,
                shown: None,
            };
            assert!(store.enqueue(Write::PageView(view)), "queue refused write {i}");
        }
        store.flush().unwrap();
        let (got, views) = store.session("s1").unwrap().unwrap();
        assert_eq!(got, session);
        assert_eq!(views.len(), 10_000);
        assert_eq!(views[0].path, "/p/0");
        assert_eq!(views[9_999].path, "/p/9999");
        let stats = store.stats();
        assert_eq!(
            (stats.enqueued, stats.rows, stats.dropped, stats.failed, stats.queued),
            (10_001, 10_001, 0, 0, 0)
        );
        assert!(stats.batches >= 11, "at most 1,000 writes a batch: {stats:?}");

        // Upsert by id: the later row wins.
        let later = SessionRow {
            last_touch: JsonText::of(&json!({"channel": "email"})),
            touches: 2,
            ..session
        };
        store.enqueue(Write::Session(later.clone()));
        store.flush().unwrap();
        assert_eq!(store.session("s1").unwrap().unwrap().0, later);
        assert_eq!(count(&store, "visitors"), 1);
        assert_eq!(store.session("nope").unwrap(), None);
    }

    #[test]
    fn checkpointer_copies_the_log_back_at_idle_priority() {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions {
            checkpoint_pages: 20,
            ..StoreOptions::default()
        };
        let store = SqliteStore::open_with(dir.path(), options).unwrap();
        let pragma = |name: &str| -> i64 {
            lock(&store.calls)
                .query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(pragma("wal_autocheckpoint"), i64::from(BACKSTOP_PAGES));
        assert_eq!(pragma("journal_size_limit"), WAL_KEEP_BYTES as i64);
        let view = |i: i64| page_view("example", &format!("v{i}"), 1_000 + i, None);
        // Batches until one commit leaves 20 log pages (a few hundred rows), then until the
        // checkpointer has copied some back (an idle-priority thread on a busy test machine may
        // wait its turn; the writer wakes it again after every commit past 20 pages).
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut rows = 0;
        while store.stats().checkpointed_pages == 0 {
            assert!(
                Instant::now() < deadline,
                "no checkpoint copied anything: {:?}",
                store.stats()
            );
            for _ in 0..500 {
                assert!(store.enqueue(view(rows)));
                rows += 1;
            }
            store.flush().unwrap();
        }
        #[cfg(target_os = "linux")]
        {
            // This store's checkpointer sets its policy before its first checkpoint, and it has
            // run one, so at least one thread of that name is at SCHED_IDLE (5). Other tests'
            // checkpointers may be just starting, still at the default policy.
            let mut idle = 0;
            for task in std::fs::read_dir("/proc/self/task").unwrap() {
                let stat = std::fs::read_to_string(task.unwrap().path().join("stat")).unwrap_or_default();
                // The policy is field 41; fields from the 3rd on follow the name's ") ".
                let Some((name, rest)) = stat.split_once(" (").and_then(|(_, r)| r.rsplit_once(") ")) else {
                    continue;
                };
                if name == "telswap-store-c" && rest.split(' ').nth(38) == Some("5") {
                    idle += 1;
                }
            }
            assert!(idle >= 1, "no checkpointer thread at SCHED_IDLE");
        }
        assert_eq!(count(&store, "page_views"), rows);
        store.close().unwrap();
        // close's last checkpoint copied the whole log: the database file holds every page.
        let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
        let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
        let size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
        let file = std::fs::metadata(dir.path().join(DB_FILE)).unwrap().len();
        drop(conn);
        assert_eq!(file, (pages * size) as u64, "pages left in the log after close");
        let reopened = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(count(&reopened, "page_views"), rows);
    }

    /// Offers `writes` to a store whose queue holds 2 and whose writer is stalled on its first
    /// batch (of at most 5) by another connection's write lock, so that the queue fills; then
    /// lets it go and flushes. Returns how many were accepted.
    fn enqueue_stalled(store: &SqliteStore, writes: impl Iterator<Item = Write>) -> usize {
        let mut blocker = Connection::open(store.path()).unwrap();
        let hold = blocker
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .unwrap();
        let accepted = writes.map(|w| store.enqueue(w)).filter(|&accepted| accepted).count();
        hold.commit().unwrap();
        store.flush().unwrap();
        accepted
    }

    /// Whether the audience of `+15550102002` on `example` from `from` to 400 is whole.
    fn audience_whole(store: &SqliteStore, from: i64) -> bool {
        store
            .source_audience("example", "+15550102002", from, 400)
            .unwrap()
            .complete
    }

    /// A page view of `/` in session `s-{visitor}`; `shown`: the source number, channel and
    /// source it showed.
    fn page_view(site: &str, visitor: &str, at: i64, shown: Option<(&str, &str, &str)>) -> Write {
        Write::PageView(PageViewRow {
            site: site.into(),
            visitor: visitor.into(),
            session: format!("s-{visitor}"),
            path: "/".into(),
            at,
            shown: shown.map(|(number, channel, source)| ShownSource {
                number: number.into(),
                channel: channel.into(),
                source: source.into(),
            }),
        })
    }

    fn small_queue_store(dir: &Path) -> Arc<SqliteStore> {
        let options = StoreOptions {
            queue_capacity: 2,
            batch_max: 5,
            ..Default::default()
        };
        SqliteStore::open_with(dir, options).unwrap()
    }

    #[test]
    fn full_queue_drops_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let store = small_queue_store(dir.path());
        let accepted = enqueue_stalled(&store, (0..100).map(|i| Write::LeaseRefreshed { id: i, last_seen: 0 }));
        let stats = store.stats();
        assert!(accepted <= 5 + 2 + 1, "accepted {accepted}");
        assert_eq!(stats.dropped, 100 - accepted as u64);
        assert_eq!(stats.rows, accepted as u64);
    }

    /// A page view showing a source number that the store could not keep makes every audience
    /// whose window reaches it incomplete: a visitor saw the number and nothing says who.
    #[test]
    fn a_lost_source_view_leaves_the_audience_incomplete() {
        let dir = tempfile::tempdir().unwrap();
        let store = small_queue_store(dir.path());
        let social = Some(("+15550102002", "organic_social", "facebook"));
        let view = |at: i64| page_view("example", &format!("v{at}"), at, social);
        let accepted = enqueue_stalled(&store, (1_000..1_100).map(view));
        assert!(accepted < 100);
        let got = store.source_audience("example", "+15550102002", 0, 2_000).unwrap();
        assert!(!got.rows.is_empty() && !got.complete, "{got:?}");
        // A window that starts after the last loss is whole again.
        assert!(store.enqueue(view(5_000)));
        store.flush().unwrap();
        let got = store.source_audience("example", "+15550102002", 1_100, 6_000).unwrap();
        assert!(got.complete, "{got:?}");
        assert_eq!(got.rows[0].visitors, 1);
    }

    #[test]
    fn leases_live_and_by_number() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(store.max_lease_id().unwrap(), 0);
        // Number A: [100, 200] released, [300, open); number B: [150, open).
        store.enqueue(Write::LeaseOpened(lease(1, "A", 100)));
        store.enqueue(Write::LeaseOpened(lease(2, "B", 150)));
        store.enqueue(Write::LeaseOpened(lease(3, "A", 300)));
        store.enqueue(Write::LeaseRefreshed { id: 1, last_seen: 180 });
        store.enqueue(Write::LeaseRefreshed { id: 1, last_seen: 170 }); // never backwards
        store.enqueue(Write::LeaseReleased {
            id: 1,
            at: 200,
            shared: true,
        });
        store.enqueue(Write::LeaseRefreshed { id: 3, last_seen: 350 });
        store.flush().unwrap();

        let live = store.live_leases().unwrap();
        assert_eq!(live.iter().map(|l| l.id).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(
            live[1],
            LeaseRow {
                last_seen: 350,
                ..lease(3, "A", 300)
            }
        );
        assert_eq!(store.max_lease_id().unwrap(), 3);

        let window = |from, to| {
            store
                .leases_of_number("example", "A", from, to)
                .unwrap()
                .into_iter()
                .map(|l| l.id)
                .collect::<Vec<_>>()
        };
        let released = store.leases_of_number("example", "A", 0, 1_000).unwrap();
        assert_eq!(
            released[0],
            LeaseRow {
                last_seen: 180,
                released: Some(200),
                shared: true,
                ..lease(1, "A", 100)
            }
        );
        assert_eq!(window(0, 1_000), [1, 3]);
        assert_eq!(window(0, 99), Vec::<u64>::new());
        assert_eq!(window(0, 100), [1]); // closed interval: touching counts
        assert_eq!(window(200, 250), [1]);
        assert_eq!(window(201, 299), Vec::<u64>::new());
        assert_eq!(window(250, 300), [3]);
        assert_eq!(window(10_000, 20_000), [3]); // unreleased: open to the present
        assert!(store.leases_of_number("other", "A", 0, 1_000).unwrap().is_empty());
        assert_eq!(store.leases_of_number("example", "B", 0, 1_000).unwrap().len(), 1);
    }

    #[test]
    fn reopen_keeps_everything_and_does_not_rerun_migrations() {
        let dir = tempfile::tempdir().unwrap();
        let versions = |store: &SqliteStore| {
            store
                .read(|c| {
                    let mut stmt = c.prepare("SELECT version, applied_at FROM schema_version ORDER BY version")?;
                    let rows = stmt.query_map([], |r| Ok((r.get::<_, u32>(0)?, r.get::<_, i64>(1)?)))?;
                    Ok(rows.collect::<Result<Vec<_>, _>>()?)
                })
                .unwrap()
        };
        let before = {
            let store = SqliteStore::open(dir.path()).unwrap();
            store.insert_call(&full_call()).unwrap();
            store.enqueue(Write::LeaseOpened(lease(9, "A", 1)));
            store.enqueue(Write::PageView(PageViewRow {
                site: "example".into(),
                visitor: "v".into(),
                session: "s".into(),
                path: "/".into(),
                at: 1,
                shown: None,
            }));
            store.enqueue(Write::Session(SessionRow {
                id: "s".into(),
                site: "example".into(),
                visitor: "v".into(),
                started: 1,
                device: "mobile".into(),
                first_touch: None,
                last_touch: None,
                touches: 0,
            }));
            versions(&store)
            // Dropped here without flush: close drains the queue.
        };
        assert_eq!(before.len(), MIGRATIONS.len());
        std::thread::sleep(Duration::from_millis(5));
        let store = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(versions(&store), before);
        assert_eq!(store.call("c_full").unwrap(), Some(full_call()));
        assert_eq!(store.live_leases().unwrap(), [lease(9, "A", 1)]);
        assert_eq!(store.session("s").unwrap().unwrap().1.len(), 1);
    }

    #[test]
    fn pending_migrations_apply_to_an_old_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DB_FILE);
        {
            let mut conn = Connection::open(&path).unwrap();
            assert_eq!(migrate(&mut conn, &MIGRATIONS[..1]).unwrap(), 1);
            conn.execute(
                "INSERT INTO calls (id, call_sid, site, tracking_number, caller, started_at, status, \
                 returning_caller, earlier_calls, confidence, attribution) \
                 VALUES ('c_old', 'CAold', 'example', '+1555', '+1666', 5, 'completed', 0, 0, 'none', '{}')",
                [],
            )
            .unwrap();
            conn.execute_batch(
                "INSERT INTO sessions (id, site, visitor, started, device, touches) \
                 VALUES ('s_old', 'example', 'v_old', 5, 'mobile', 0); \
                 INSERT INTO page_views (site, visitor, session, path, at) \
                 VALUES ('example', 'v_old', 's_old', '/old', 6);",
            )
            .unwrap();
        }
        let store = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(store.call("c_old").unwrap().unwrap().call_sid, "CAold");
        // A page view from before source numbers were recorded showed none.
        let (_, views) = store.session("s_old").unwrap().unwrap();
        assert_eq!((views[0].path.as_str(), &views[0].shown), ("/old", &None));
        assert_eq!(store.source_audience("example", "+1555", 0, 10).unwrap().rows, []);
        assert_eq!(count(&store, "spend"), 0);
        assert_eq!(count(&store, "outbox"), 0);
        assert_eq!(count(&store, "schema_version"), MIGRATIONS.len() as i64);
        drop(store);

        // A migration appended later applies to today's database and keeps its data...
        let mut future = MIGRATIONS.to_vec();
        future.push("ALTER TABLE calls ADD COLUMN notes TEXT;");
        let mut conn = Connection::open(&path).unwrap();
        assert_eq!(migrate(&mut conn, &future).unwrap(), future.len() as u32);
        let notes: Option<String> = conn
            .query_row("SELECT notes FROM calls WHERE id = 'c_old'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(notes, None);
        drop(conn);
        // ...and this build refuses the newer database rather than misread it.
        assert!(matches!(
            SqliteStore::open(dir.path()),
            Err(StoreError::SchemaTooNew { found, known }) if found == known + 1 && known == MIGRATIONS.len() as u32
        ));
    }

    #[test]
    fn source_audience_counts_visitors_per_channel_and_source_in_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let view = |site: &str, visitor: &str, at: i64, shown| store.enqueue(page_view(site, visitor, at, shown));
        let social = Some(("+15550102002", "organic_social", "facebook"));
        let paid = Some(("+15550102002", "paid_social", "facebook"));
        assert!(view("example", "v1", 100, social));
        assert!(view("example", "v1", 150, social), "the same visitor again counts once");
        assert!(view("example", "v2", 200, social));
        assert!(view("example", "v3", 300, paid));
        assert!(view("example", "v4", 50, paid), "before the window");
        assert!(view("example", "v5", 500, paid), "after the call");
        assert!(view("other", "v6", 200, paid), "another site");
        assert!(view(
            "example",
            "v7",
            200,
            Some(("+15550102009", "email", "newsletter"))
        ));
        assert!(view("example", "v8", 200, None), "a page that showed no source number");
        store.flush().unwrap();
        let row = |channel: &str, visitors: u32, last_at: i64| AudienceRow {
            channel: channel.into(),
            source: "facebook".into(),
            visitors,
            last_at,
        };
        let got = store.source_audience("example", "+15550102002", 100, 400).unwrap();
        assert_eq!(got.rows, [row("organic_social", 2, 200), row("paid_social", 1, 300)]);
        assert!(got.complete);
        let none = store.source_audience("example", "+15550109999", 0, 1_000).unwrap();
        assert_eq!((none.rows, none.complete), (vec![], true));

        // Past the views it reads, the latest count and the audience says it is not whole:
        // here one visitor's reloads hide the two who came before.
        for i in 0..AUDIENCE_VIEWS {
            assert!(view("example", "v9", 1_000 + i, paid));
        }
        store.flush().unwrap();
        let got = store
            .source_audience("example", "+15550102002", 1_000, i64::MAX)
            .unwrap();
        assert_eq!((got.rows.len(), got.complete), (1, true), "exactly the bound is whole");
        let got = store.source_audience("example", "+15550102002", 0, i64::MAX).unwrap();
        assert!(!got.complete);
        let seen: Vec<_> = got.rows.iter().map(|r| (r.channel.as_str(), r.visitors)).collect();
        assert_eq!(seen, [("paid_social", 1)], "v9's reloads fill the sample");
    }

    /// A run that ended without closing the store (here: the store leaked, never closed, as a
    /// `kill -9` leaves it) is known to the next; one that closed it is not.
    #[test]
    fn the_next_start_knows_whether_the_store_was_closed() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        assert!(!store.unclean_start(), "a new store lost nothing");
        store.close().unwrap();
        drop(store);
        let store = SqliteStore::open(dir.path()).unwrap();
        assert!(!store.unclean_start(), "closed");
        std::mem::forget(store);
        let store = SqliteStore::open(dir.path()).unwrap();
        assert!(store.unclean_start(), "never closed");

        // What the restarted server notes: an audience reaching back to the restart is not whole.
        let social = Some(("+15550102002", "organic_social", "facebook"));
        assert!(store.enqueue(page_view("example", "v1", 100, social)));
        store.flush().unwrap();
        store.note_views_lost_up_to(150);
        assert!(!audience_whole(&store, 100) && audience_whole(&store, 151));
        drop(store);
        // A clean run after it still knows: the loss is kept, not only the crash.
        let store = SqliteStore::open(dir.path()).unwrap();
        assert!(!store.unclean_start(), "dropped is closed");
        assert!(!audience_whole(&store, 100) && audience_whole(&store, 151));
    }

    /// Views this run lost (the queue full) stay lost for the next, though it closed cleanly.
    #[test]
    fn views_lost_in_a_clean_run_are_known_to_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let store = small_queue_store(dir.path());
        let social = Some(("+15550102002", "organic_social", "facebook"));
        let accepted = enqueue_stalled(&store, (0..20).map(|i| page_view("example", "v1", 100 + i, social)));
        assert!(accepted < 20, "the small queue refuses some");
        store.close().unwrap();
        drop(store);
        let store = SqliteStore::open(dir.path()).unwrap();
        assert!(!store.unclean_start());
        assert!(!audience_whole(&store, 0) && audience_whole(&store, 200));
    }

    #[test]
    fn admin_logouts_last_until_their_sessions_expire() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        store.admin_logout("a", 100, 10).unwrap();
        store.admin_logout("b", 200, 10).unwrap();
        assert_eq!(store.admin_logouts(50).unwrap().len(), 2);
        assert_eq!(store.admin_logouts(100).unwrap(), [("b".to_string(), 200)]);
        // The next logout drops what has expired.
        store.admin_logout("c", 300, 150).unwrap();
        drop(store);
        let store = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(count(&store, "admin_logouts"), 2);
        assert_eq!(store.admin_logouts(0).unwrap().len(), 2);
    }

    #[test]
    fn spend_upserts_and_filters_by_site_and_day() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let row = |site: &str, day: &str, campaign: &str, amount: f64| SpendRow {
            site: site.into(),
            day: day.into(),
            channel: "paid_search".into(),
            campaign: campaign.into(),
            amount,
            currency: "USD".into(),
        };
        let n = store
            .put_spend(&[
                row("a", "2026-11-01", "spring", 10.0),
                row("a", "2026-11-02", "spring", 20.0),
                row("a", "2026-11-02", "", 5.0),
                row("b", "2026-11-02", "spring", 7.0),
            ])
            .unwrap();
        assert_eq!(n, 4);
        // Same key: the amount is replaced, not added.
        store.put_spend(&[row("a", "2026-11-02", "spring", 25.0)]).unwrap();
        assert_eq!(count(&store, "spend"), 4);
        let all = store.spend(None, None, None).unwrap();
        assert_eq!(all.len(), 4);
        assert_eq!(all[0], row("a", "2026-11-01", "spring", 10.0));
        let a2 = store.spend(Some("a"), Some("2026-11-02"), Some("2026-11-02")).unwrap();
        assert_eq!(
            a2,
            [row("a", "2026-11-02", "", 5.0), row("a", "2026-11-02", "spring", 25.0)]
        );
        assert_eq!(store.spend(None, None, Some("2026-11-01")).unwrap().len(), 1);
        assert_eq!(store.spend(Some("b"), Some("2026-11-03"), None).unwrap(), []);
    }

    #[test]
    fn closed_store_refuses_work() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        store.enqueue(Write::LeaseOpened(lease(1, "A", 1)));
        store.close().unwrap();
        store.close().unwrap();
        assert!(!store.enqueue(Write::LeaseRefreshed { id: 1, last_seen: 2 }));
        assert!(matches!(store.flush(), Err(StoreError::Closed)));
        assert!(matches!(store.insert_call(&call(1)), Err(StoreError::Closed)));
        assert!(matches!(store.live_leases(), Err(StoreError::Closed)));
        assert_eq!(store.stats().dropped, 1);
        drop(store);
        assert_eq!(SqliteStore::open(dir.path()).unwrap().live_leases().unwrap().len(), 1);
    }

    #[test]
    fn calls_survive_a_crash_without_drop_or_flush() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        for n in 0..50 {
            store.insert_call(&call(n)).unwrap();
        }
        store
            .set_outcome(
                "c_0007",
                &Outcome {
                    kind: "sale".into(),
                    value: None,
                    currency: None,
                    at: 1,
                },
            )
            .unwrap();
        std::mem::forget(store);
        let reopened = SqliteStore::open(dir.path()).unwrap();
        let calls = reopened.calls(&CallFilter::default()).unwrap();
        assert_eq!(calls.len(), 50);
        for n in (0..50).filter(|n| *n != 7) {
            assert_eq!(reopened.call(&call(n).id).unwrap(), Some(call(n)));
        }
        assert_eq!(reopened.call("c_0007").unwrap().unwrap().outcome.unwrap().kind, "sale");
    }

    fn delivery(event_id: &str, url: &str, at: i64) -> NewDelivery {
        NewDelivery {
            event_id: event_id.into(),
            event: "call.completed".into(),
            site: "example".into(),
            url: url.into(),
            payload: format!("{{\"id\":\"{event_id}\"}}"),
            created_at: at,
        }
    }

    #[test]
    fn first_final_status_writes_its_events_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        store.insert_call(&call(1)).unwrap();
        let seen = Mutex::new(Vec::new());
        let rows = |c: &CallRecord| {
            lock(&seen).push((c.status.clone(), c.duration_s));
            vec![delivery("evt_a", "http://a/", 10), delivery("evt_a", "http://b/", 10)]
        };
        let sid = call(1).call_sid;
        assert!(
            !store
                .update_call_with_events("CAnope", Leg::Call, "completed", None, None, &rows)
                .unwrap()
        );
        assert!(
            store
                .update_call_with_events(&sid, Leg::Call, "in-progress", None, None, &rows)
                .unwrap()
        );
        assert_eq!(store.outbox_stats().pending, 0, "not final yet");
        assert!(
            store
                .update_call_with_events(&sid, Leg::Call, "completed", Some(42), None, &rows)
                .unwrap()
        );
        // The rows were built from the call as updated, inside the transaction.
        assert_eq!(*lock(&seen), [("completed".to_string(), Some(42))]);
        // Repeated, late and final-to-final callbacks write nothing more.
        for status in ["completed", "ringing", "busy"] {
            assert!(
                store
                    .update_call_with_events(&sid, Leg::Call, status, None, None, &rows)
                    .unwrap()
            );
        }
        assert_eq!(lock(&seen).len(), 1);
        assert_eq!(count(&store, "outbox"), 2);
        assert_eq!(store.outbox_stats().pending, 2);
        assert!(store.outbox_wake().notified().now_or_never_for_test());
    }

    trait NowOrNever {
        fn now_or_never_for_test(self) -> bool;
    }

    impl<F: std::future::Future> NowOrNever for F {
        /// A stored `notify_one` permit makes `notified()` ready at once.
        fn now_or_never_for_test(self) -> bool {
            let mut fut = std::pin::pin!(self);
            let waker = std::task::Waker::noop();
            fut.as_mut().poll(&mut std::task::Context::from_waker(waker)).is_ready()
        }
    }

    #[test]
    fn outcome_writes_its_event_in_the_same_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        store.insert_call(&call(2)).unwrap();
        let sale = Outcome {
            kind: "sale".into(),
            value: Some(5.0),
            currency: None,
            at: 7,
        };
        let rows = |c: &CallRecord| {
            assert_eq!(c.outcome.as_ref().map(|o| o.kind.as_str()), Some("sale"));
            vec![delivery("evt_o", "http://a/", 7)]
        };
        assert!(!store.set_outcome_with_events("c_missing", &sale, &rows).unwrap());
        assert!(store.set_outcome_with_events("c_0002", &sale, &rows).unwrap());
        assert_eq!(count(&store, "outbox"), 1);
        // Rows that fail to insert roll the outcome back with them.
        let bad = |_: &CallRecord| {
            vec![NewDelivery {
                payload: String::new(),
                ..delivery("evt_p", "http://a/", 8)
            }]
        };
        let lead = Outcome {
            kind: "lead".into(),
            ..sale.clone()
        };
        store
            .calls
            .lock()
            .unwrap()
            .execute_batch(
                "CREATE TRIGGER refuse_empty BEFORE INSERT ON outbox WHEN NEW.payload = '' \
                 BEGIN SELECT RAISE(ABORT, 'empty payload'); END",
            )
            .unwrap();
        assert!(store.set_outcome_with_events("c_0002", &lead, &bad).is_err());
        assert_eq!(store.call("c_0002").unwrap().unwrap().outcome, Some(sale));
        assert_eq!(count(&store, "outbox"), 1);
    }

    /// The Dial's late result rewrites the queued `call.completed` however late it is due, as
    /// long as the worker has not taken it; once taken it is left as it is and a second event
    /// says what changed. A failed attempt, or a restart, gives the row back.
    #[test]
    fn a_correction_rewrites_a_row_until_the_worker_takes_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SqliteStore::open(dir.path()).unwrap();
        let at = Mutex::new(1_000);
        let rows = |c: &CallRecord| {
            let event_id = format!("evt_{}_{}", c.id, c.status);
            vec![NewDelivery {
                payload: json!({"id": event_id, "call": {"id": c.id, "status": c.status}}).to_string(),
                ..delivery(&event_id, "http://a/", *lock(&at))
            }]
        };
        let mine = |store: &SqliteStore, n: u32| -> Vec<(String, u32)> {
            let id = call(n).id;
            store
                .outbox_due(i64::MAX, 100, &[])
                .unwrap()
                .into_iter()
                .filter(|d| d.payload.contains(&id))
                .map(|d| (d.event_id, d.attempts))
                .collect()
        };
        // `before` runs between the caller's leg (the event due after the grace) and the Dial's
        // result, which comes when the event is long due.
        // It answers whether to restart the store before the Dial's result.
        type Before<'a> = &'a dyn Fn(&SqliteStore, i64) -> bool;
        type Case<'a> = (u32, &'a str, Before<'a>, Vec<(&'a str, u32)>);
        let cases: [Case; 4] = [
            (4, "never taken", &|_, _| false, vec![("no-answer", 0)]),
            (
                5,
                "taken and being sent",
                &|s, id| {
                    s.outbox_take(id, 2_000).unwrap().unwrap();
                    false
                },
                vec![("completed", 0), ("no-answer", 0)],
            ),
            (
                6,
                "taken, then failed",
                &|s, id| {
                    s.outbox_take(id, 2_000).unwrap().unwrap();
                    s.outbox_failed(id, 2_001, "HTTP 500", Some(99_000)).unwrap();
                    false
                },
                vec![("no-answer", 1)],
            ),
            (
                7,
                "taken when the server was killed",
                &|s, id| {
                    s.outbox_take(id, 2_000).unwrap().unwrap();
                    true
                },
                vec![("no-answer", 0)],
            ),
        ];
        for (n, case, before, want) in cases {
            store.insert_call(&call(n)).unwrap();
            *lock(&at) = 1_000;
            store
                .update_call_with_events(&call(n).call_sid, Leg::Call, "completed", Some(30), None, &rows)
                .unwrap();
            let id = store
                .outbox_due(i64::MAX, 100, &[])
                .unwrap()
                .iter()
                .map(|d| d.id)
                .max()
                .unwrap();
            if before(&store, id) {
                drop(store);
                store = SqliteStore::open(dir.path()).unwrap();
            }
            *lock(&at) = 1_000 + DIAL_GRACE_MS + 60_000;
            store
                .update_call_with_events(&call(n).call_sid, Leg::Dial, "no-answer", None, None, &rows)
                .unwrap();
            let want: Vec<(String, u32)> = want
                .iter()
                .map(|(status, attempts)| (format!("evt_{}_{status}", call(n).id), *attempts))
                .collect();
            assert_eq!(mine(&store, n), want, "{case}");
        }
        // A delivered row is no longer there to take.
        let id = store.outbox_due(i64::MAX, 100, &[]).unwrap()[0].id;
        store.outbox_delivered(id, 5).unwrap();
        assert!(store.outbox_take(id, 6).unwrap().is_none());
    }

    #[test]
    fn due_delivered_failed_deferred_dead_and_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        store.insert_call(&call(3)).unwrap();
        let rows = |_: &CallRecord| {
            vec![
                delivery("evt_1", "http://a/", 100),
                delivery("evt_1", "http://b/", 100),
                delivery("evt_2", "http://a/", 100),
            ]
        };
        store
            .update_call_with_events(&call(3).call_sid, Leg::Dial, "completed", None, None, &rows)
            .unwrap();
        let due = store.outbox_due(100, 10, &[]).unwrap();
        assert_eq!(due.len(), 3);
        assert_eq!(
            (due[0].event_id.as_str(), due[0].url.as_str(), due[0].attempts),
            ("evt_1", "http://a/", 0)
        );
        assert!(
            store.outbox_due(99, 10, &[]).unwrap().is_empty(),
            "not due before created"
        );
        assert_eq!(store.outbox_due(100, 10, &["http://a/".into()]).unwrap().len(), 1);
        assert_eq!(store.outbox_due(100, 1, &[]).unwrap().len(), 1);

        store.outbox_delivered(due[1].id, 101).unwrap();
        store.outbox_delivered(due[1].id, 102).unwrap(); // once only
        // The rest of the destination's queue is held back with it.
        store.outbox_failed(due[0].id, 101, "HTTP 500", Some(5_000)).unwrap();
        assert!(store.outbox_due(4_999, 10, &[]).unwrap().is_empty());
        assert_eq!(store.outbox_next_due(&[]).unwrap(), Some(5_000));
        assert_eq!(store.outbox_next_due(&["http://a/".into()]).unwrap(), None);
        let again = store.outbox_due(5_000, 10, &[]).unwrap();
        assert_eq!(
            again.iter().map(|d| (d.id, d.attempts)).collect::<Vec<_>>(),
            [(due[0].id, 1), (due[2].id, 0)]
        );
        store.outbox_failed(due[2].id, 5_001, "refused", None).unwrap();
        assert_eq!(
            store.outbox_stats(),
            OutboxStats {
                delivered: 1,
                failed: 1,
                dead: 1,
                pending: 1
            }
        );
        drop(store);
        let store = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(store.outbox_stats().pending, 1, "pending counted again at open");
        let left = store.outbox_due(i64::MAX, 10, &[]).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!((left[0].event_id.as_str(), left[0].attempts), ("evt_1", 1));
    }

    const CRASH_DIR_ENV: &str = "TELSWAP_STORE_CRASH_CHILD_DIR";

    /// Helper for `calls_survive_kill_9`: run as a child process, killed mid-flight.
    #[test]
    #[ignore = "helper process of calls_survive_kill_9"]
    fn crash_child() {
        let Some(dir) = std::env::var_os(CRASH_DIR_ENV) else {
            return;
        };
        let store = SqliteStore::open(Path::new(&dir)).unwrap();
        for n in 0..20 {
            store.insert_call(&call(n)).unwrap();
        }
        println!("telswap-store: inserted");
        std::thread::sleep(Duration::from_secs(60));
    }

    #[test]
    fn calls_survive_kill_9() {
        use std::io::{BufRead, BufReader};
        use std::process::{Command, Stdio};
        let dir = tempfile::tempdir().unwrap();
        let module = module_path!().split_once("::").map_or(module_path!(), |(_, rest)| rest);
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                &format!("{module}::crash_child"),
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CRASH_DIR_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut seen = Vec::new();
        for line in stdout.lines() {
            let line = line.unwrap();
            if line.contains("telswap-store: inserted") {
                break;
            }
            seen.push(line);
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let n = store.calls(&CallFilter::default()).unwrap().len();
        assert_eq!(n, 20, "child said: {seen:?}");
    }

    /// `cargo test --release -- --ignored --nocapture throughput`
    #[test]
    #[ignore = "measurement; run in release with --nocapture"]
    fn throughput() {
        const N: usize = 200_000;
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let start = Instant::now();
        for i in 0..N {
            let mut w = Write::PageView(PageViewRow {
                site: "example".into(),
                visitor: format!("v{}", i % 5_000),
                session: format!("s{}", i % 20_000),
                path: format!("/products/item-{i}?utm_source=google"),
                at: 1_700_000_000_000 + i as i64,
                shown: None,
            });
            // Measure sustained throughput: wait for room instead of dropping.
            loop {
                match store.queue.try_send(Msg::Write(w)) {
                    Ok(()) => break,
                    Err(TrySendError::Full(Msg::Write(back))) => {
                        w = back;
                        std::thread::yield_now();
                    }
                    Err(_) => panic!("writer gone"),
                }
            }
            store.counters.enqueued.fetch_add(1, Ordering::Relaxed);
        }
        store.flush().unwrap();
        let secs = start.elapsed().as_secs_f64();
        let stats = store.stats();
        assert_eq!(stats.rows, N as u64);
        println!(
            "page views: {N} writes in {secs:.2} s = {:.0} writes/s ({} batches)",
            N as f64 / secs,
            stats.batches
        );

        let start = Instant::now();
        for n in 0..200 {
            store.insert_call(&call(n)).unwrap();
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "insert_call (synchronous=FULL): 200 in {secs:.2} s = {:.0} calls/s",
            200.0 / secs
        );
    }
}
