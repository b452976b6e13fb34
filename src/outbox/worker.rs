//! The delivery worker: one tokio task that POSTs due outbox rows to their webhooks and records
//! every attempt in the store.
//!
//! A pass fetches up to [`BATCH`] due rows, groups them by destination URL and starts one task
//! per destination that delivers its group in order. The pass does not wait for them: a
//! destination still sending is skipped by later passes until its task ends, so a receiver
//! that answers slowly (each request may take the whole timeout) delays its own events only,
//! not every other receiver's. The first failure in a group schedules that row's retry
//! ([`super::backoff`]) and defers the rest of the group to the same moment, so a receiver that
//! is down gets one request per retry step, not one per queued event. Between passes the task
//! sleeps until the next row is due, a destination's task ends, the store commits new rows
//! ([`Store::outbox_wake`]), or it is stopped. Time comes from the injected [`Clock`]; the
//! sleep itself is tokio's, capped at [`MAX_IDLE`] so a clock that jumps is noticed.
//!
//! A destination whose `secret_env` is not set is held (nothing is sent unsigned, no attempt
//! is counted) and logged every [`SECRET_RECHECK`]; its events go out once the variable is
//! set and the server restarted. A row whose webhook is no longer in the rules is dead.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use super::{backoff, signing};
use crate::calls::Secrets;
use crate::clock::{Clock, Millis};
use crate::rules::RuleSet;
use crate::store::{Delivery, Store};

/// Rows taken per pass: enough to keep a few receivers busy, few enough that a pass is short.
pub const BATCH: usize = 64;
/// Longest sleep between passes, so a clock moved from outside is noticed.
pub const MAX_IDLE: Duration = Duration::from_secs(60);
/// How often a destination without its secret is checked (and the problem logged) again.
pub const SECRET_RECHECK: Duration = Duration::from_secs(10 * 60);
/// Default per-request timeout (connect, send, response head and body).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// After a store error, wait this long before the next pass rather than spin.
const STORE_RETRY: Duration = Duration::from_secs(1);
/// Response bodies are read (so the connection can be reused) up to this much, then dropped.
const MAX_RESPONSE: usize = 64 * 1024;

/// The current rules (hot-reloaded), where destinations and their secrets are looked up.
pub type RulesSource = Arc<dyn Fn() -> Arc<RuleSet> + Send + Sync>;

type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

pub struct OutboxConfig {
    pub store: Arc<dyn Store>,
    pub rules: RulesSource,
    pub clock: Arc<dyn Clock>,
    pub secrets: Secrets,
    pub timeout: Duration,
}

impl OutboxConfig {
    pub fn new(store: Arc<dyn Store>, rules: RulesSource, clock: Arc<dyn Clock>, secrets: Secrets) -> OutboxConfig {
        OutboxConfig {
            store,
            rules,
            clock,
            secrets,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

struct Worker {
    store: Arc<dyn Store>,
    rules: RulesSource,
    clock: Arc<dyn Clock>,
    secrets: Secrets,
    timeout: Duration,
    client: HttpClient,
    /// Set by [`Outbox::stop`]: a destination's task sends no further row after it.
    stopping: watch::Receiver<bool>,
}

/// The running worker. [`Outbox::stop`] lets deliveries in flight finish and record.
pub struct Outbox {
    wake: Arc<Notify>,
    stop: watch::Sender<bool>,
    started: Arc<AtomicU64>,
    finished: watch::Receiver<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Outbox {
    /// Starts the task (on the current tokio runtime).
    pub fn start(cfg: OutboxConfig) -> Result<Outbox, String> {
        use crate::proxy::upstream::{connector, tls_client_config};
        let connector = connector(tls_client_config(None)?, cfg.timeout);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        let rules = (cfg.rules)();
        for site in &rules.sites {
            for w in &site.webhooks {
                if (cfg.secrets)(&w.secret_env).is_none() {
                    error!(site = %site.name, url = %w.url, env = %w.secret_env,
                        "webhook secret is not set: its events are kept in the outbox, not sent, until it is");
                }
            }
        }
        let wake = cfg.store.outbox_wake();
        let (stop, stop_rx) = watch::channel(false);
        let (finished_tx, finished) = watch::channel(0u64);
        let started = Arc::new(AtomicU64::new(0));
        let worker = Arc::new(Worker {
            store: cfg.store,
            rules: cfg.rules,
            clock: cfg.clock,
            secrets: cfg.secrets,
            timeout: cfg.timeout,
            client,
            stopping: stop_rx.clone(),
        });
        let task = tokio::spawn(run(worker, wake.clone(), stop_rx, started.clone(), finished_tx));
        Ok(Outbox {
            wake,
            stop,
            started,
            finished,
            task,
        })
    }

    /// Wakes the worker for a pass now (it also wakes by itself on new rows and due retries).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Wakes the worker and waits until a pass that began after this call has finished with
    /// nothing left in flight: every row due by then has been attempted. For tests that move a manual clock, and for a
    /// flush before stopping.
    pub async fn sync(&self) {
        let seen = self.started.load(Ordering::SeqCst);
        self.wake();
        let mut finished = self.finished.clone();
        let _ = finished.wait_for(|f| *f > seen).await;
    }

    /// Becomes `true` once [`Outbox::stop`] is asked: from then on no destination is sent a
    /// further row.
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Stops taking new rows, lets the deliveries in flight finish (each bounded by the request
    /// timeout) and record their result, then ends the task. Rows not yet sent stay due.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await {
            error!(error = %e, "outbox worker ended abnormally");
        }
    }
}

async fn run(
    w: Arc<Worker>,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
    started: Arc<AtomicU64>,
    finished: watch::Sender<u64>,
) {
    // Destinations held for a missing secret, until when (in memory: a restart re-checks).
    let mut held: HashMap<String, Millis> = HashMap::new();
    let mut sending = Sending::default();
    loop {
        while let Some(done) = sending.set.try_join_next_with_id() {
            sending.finished(done, &mut held);
        }
        if *stop.borrow() {
            break;
        }
        let pass = started.fetch_add(1, Ordering::SeqCst) + 1;
        let now = w.clock.now_ms();
        held.retain(|_, until| *until > now);
        // A destination still sending its last rows is not given more: its rows wait their
        // turn, in order, while every other destination's go out.
        let skip: Vec<String> = held.keys().chain(sending.urls.values()).cloned().collect();
        let store = w.store.clone();
        let skipped = skip.clone();
        let due = tokio::task::spawn_blocking(move || store.outbox_due(now as i64, BATCH, &skipped)).await;
        let mut wait = None;
        let read = matches!(due, Ok(Ok(_)));
        match due {
            Ok(Ok(rows)) => {
                if rows.len() == BATCH {
                    wait = Some(Duration::ZERO);
                }
                for (url, group) in by_destination(rows) {
                    let me = w.clone();
                    let task = sending.set.spawn(async move { me.deliver_group(group).await });
                    sending.urls.insert(task.id(), url);
                }
            }
            Ok(Err(e)) => {
                error!(error = %e, "reading the outbox");
                wait = Some(STORE_RETRY);
            }
            Err(e) => {
                error!(error = %e, "reading the outbox");
                wait = Some(STORE_RETRY);
            }
        }
        let wait = match wait {
            Some(wait) => wait,
            None => {
                let skip: Vec<String> = held.keys().chain(sending.urls.values()).cloned().collect();
                w.until_next(&skip, &held).await
            }
        };
        if read && sending.urls.is_empty() {
            // Nothing in flight: every row due when this pass began has been attempted.
            finished.send_replace(pass);
        }
        if wait.is_zero() {
            continue;
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => {}
            Some(done) = sending.set.join_next_with_id(), if !sending.set.is_empty() => {
                sending.finished(done, &mut held);
            }
        }
    }
    // Stopping: what is in flight finishes (each request bounded by the timeout) and records.
    while let Some(done) = sending.set.join_next_with_id().await {
        sending.finished(done, &mut held);
    }
    finished.send_replace(started.load(Ordering::SeqCst));
}

/// The destinations being sent to, each by one task that delivers its rows in order.
#[derive(Default)]
struct Sending {
    set: JoinSet<Option<Millis>>,
    urls: HashMap<tokio::task::Id, String>,
}

impl Sending {
    /// A destination's task ended: it may take rows again, or is held (its secret is missing).
    fn finished(
        &mut self,
        done: Result<(tokio::task::Id, Option<Millis>), tokio::task::JoinError>,
        held: &mut HashMap<String, Millis>,
    ) {
        let (id, hold) = match done {
            Ok((id, hold)) => (id, hold),
            Err(e) => {
                error!(error = %e, "outbox delivery task failed");
                (e.id(), None)
            }
        };
        if let (Some(url), Some(until)) = (self.urls.remove(&id), hold) {
            held.insert(url, until);
        }
    }
}

/// Due rows grouped by destination URL, each group in the order the rows were due.
fn by_destination(rows: Vec<Delivery>) -> Vec<(String, Vec<Delivery>)> {
    let mut groups: Vec<(String, Vec<Delivery>)> = Vec::new();
    for row in rows {
        match groups.iter_mut().find(|(url, _)| *url == row.url) {
            Some((_, g)) => g.push(row),
            None => groups.push((row.url.clone(), vec![row])),
        }
    }
    groups
}

impl Worker {
    /// How long to sleep: until the earliest due row of a destination not in `skip`, or a
    /// hold ends.
    async fn until_next(&self, skip: &[String], held: &HashMap<String, Millis>) -> Duration {
        let store = self.store.clone();
        let skip = skip.to_vec();
        let next = match tokio::task::spawn_blocking(move || store.outbox_next_due(&skip)).await {
            Ok(Ok(next)) => next.map(|t| t.max(0) as Millis),
            _ => return STORE_RETRY,
        };
        let wake_at = next.into_iter().chain(held.values().copied()).min();
        let now = self.clock.now_ms();
        match wake_at {
            Some(at) => Duration::from_millis(at.saturating_sub(now)).min(MAX_IDLE),
            None => MAX_IDLE,
        }
    }

    /// One destination's rows, in order; stops at the first failure. `Some(until)`: hold the
    /// destination until then (its secret is missing, or the store failed).
    async fn deliver_group(&self, rows: Vec<Delivery>) -> Option<Millis> {
        let rules = (self.rules)();
        for row in rows {
            if *self.stopping.borrow() {
                // Stopping: the rows left stay due, for the next start. The one in flight was
                // let finish (a receiver may be slow to answer each, up to the timeout).
                break;
            }
            let hook = rules
                .sites
                .iter()
                .find(|s| s.name == row.site)
                .and_then(|s| s.webhooks.iter().find(|h| h.url == row.url));
            let Some(hook) = hook else {
                warn!(event = %row.event_id, site = %row.site, url = %row.url,
                    "webhook is no longer in the rules: delivery given up");
                let now = self.clock.now_ms() as i64;
                self.record(move |s| s.outbox_failed(row.id, now, "the webhook is no longer in the rules", None))
                    .await;
                continue;
            };
            let Some(secret) = (self.secrets)(&hook.secret_env) else {
                error!(site = %row.site, url = %row.url, env = %hook.secret_env,
                    "webhook secret is not set: deliveries held");
                return Some(self.clock.now_ms() + SECRET_RECHECK.as_millis() as Millis);
            };
            // Taken as it stands now: a correction may have rewritten it since it was read,
            // and none may once it is taken.
            let store = self.store.clone();
            let (id, now) = (row.id, self.clock.now_ms() as i64);
            let taken = match tokio::task::spawn_blocking(move || store.outbox_take(id, now)).await {
                Ok(Ok(Some(row))) => Ok(row),
                Ok(Ok(None)) => continue,
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            let row = match taken {
                Ok(row) => row,
                Err(e) => {
                    error!(error = %e, "taking a webhook delivery from the outbox");
                    return Some(self.clock.now_ms() + STORE_RETRY.as_millis() as Millis);
                }
            };
            match self.post(&row, &secret).await {
                Ok(()) => {
                    let now = self.clock.now_ms() as i64;
                    info!(event = %row.event_id, kind = %row.event, url = %row.url, "webhook delivered");
                    self.record(move |s| s.outbox_delivered(row.id, now)).await;
                }
                Err(why) => {
                    let failures = row.attempts + 1;
                    let now = self.clock.now_ms() as i64;
                    let next = backoff::next_attempt(failures, row.created_at, now, backoff::seed(row.id, failures));
                    let id = row.id;
                    let why2 = why.clone();
                    self.record(move |s| s.outbox_failed(id, now, &why2, next)).await;
                    match next {
                        Some(at) => {
                            warn!(event = %row.event_id, url = %row.url, attempt = failures, error = %why,
                                retry_in_s = (at - now) / 1000, "webhook delivery failed; will retry");
                            return None;
                        }
                        None => {
                            error!(event = %row.event_id, url = %row.url, attempts = failures, error = %why,
                                "webhook delivery given up after retrying for 3 days (dead)");
                        }
                    }
                }
            }
        }
        None
    }

    /// One signed POST; `Ok` on a 2xx answer within the timeout.
    async fn post(&self, row: &Delivery, secret: &str) -> Result<(), String> {
        let unix = (self.clock.now_ms() / 1000) as i64;
        let body = Bytes::from(row.payload.clone());
        let req = Request::post(&row.url)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::USER_AGENT, concat!("telswap/", env!("CARGO_PKG_VERSION")))
            .header(signing::SIGNATURE_HEADER, signing::sign(secret, unix, &body))
            .header("x-telswap-event", &row.event)
            .header("x-telswap-event-id", &row.event_id)
            .body(Full::new(body))
            .map_err(|e| format!("bad request: {e}"))?;
        // The timeout covers the answer's head only: a 2xx head is delivery, however slowly the
        // receiver then sends its body (timing that out sent the event again).
        let resp = match tokio::time::timeout(self.timeout, self.client.request(req)).await {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) => return Err(crate::proxy::error_chain(&e)),
            Err(_) => return Err(format!("no answer within {:?}", self.timeout)),
        };
        let status = resp.status();
        // Read the (small) answer so the connection can be reused; its content is ignored, and
        // one that dawdles is dropped with its connection, off the delivery's clock.
        let body = Limited::new(resp.into_body(), MAX_RESPONSE).collect();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(BODY_DRAIN, body).await;
        });
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {}", status.as_u16()))
        }
    }

    /// Runs a store write off the runtime; a failure is logged (the row stays as it was).
    async fn record(&self, f: impl FnOnce(&dyn Store) -> Result<(), crate::store::StoreError> + Send + 'static) {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || f(&*store)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => error!(error = %e, "recording a webhook delivery in the outbox"),
            Err(e) => error!(error = %e, "recording a webhook delivery in the outbox"),
        }
    }
}

/// How long a receiver's answer body is read, after its head, before its connection is dropped.
const BODY_DRAIN: std::time::Duration = std::time::Duration::from_secs(10);
