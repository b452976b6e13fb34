//! Inbound calls: the telephony webhooks under `/_telswap/`, the forwarding answer, attribution,
//! and the call record.
//!
//! `POST /_telswap/voice`: signature checked over the URL as the provider called it, the call
//! attributed (called number + time → lease history → session), its row made durable, and only
//! then the TwiML that dials the business line. `POST /_telswap/status`: final status, duration,
//! recording. `/_telswap/whisper`: what the business hears before the caller is connected.
//! Reads lease history through [`Pools`]; writes through [`Store`].

pub mod attribution;
pub mod signature;
pub mod simulate;
pub mod twiml;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::Value;

use crate::clock::{Clock, Millis};
use crate::pool::{Confidence, Held, LeaseRecord, Pools};
use crate::proxy::{BoxError, ConnInfo, ProxyBody};
use crate::rewrite::PhoneNumber;
use crate::rules::{ConsentMode, Dialect, PoolMode, RuleSet, Site, WithoutConsent};
use crate::store::{CallRecord, Inserted, JsonText, LeaseRow, Leg, SourceAudience, Store};
use crate::visitor::classify::Device;
use crate::visitor::identity::{StoredTouch, random_id};
use crate::visitor::sessions::{PageView, Seen, SessionLog, SessionRecord};

/// Webhook bodies are small forms; anything larger is not from a provider.
const MAX_BODY: usize = 64 * 1024;
/// How long a webhook's body may take to arrive.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the business line rings before the call ends (seconds).
const DIAL_TIMEOUT_S: u32 = 20;

/// Looks a secret up by environment variable name (injectable for tests).
pub type Secrets = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

pub fn env_secrets() -> Secrets {
    Arc::new(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
}

pub struct Calls {
    store: Arc<dyn Store>,
    pools: Arc<Pools>,
    sessions: SessionLog,
    clock: Arc<dyn Clock>,
    secrets: Secrets,
    pub stats: CallStats,
}

/// Counters for `/metrics`, since the process started.
#[derive(Debug, Default)]
pub struct CallStats {
    /// New calls stored, by [`Confidence`] in the order of [`Confidence::ALL`].
    by_confidence: [std::sync::atomic::AtomicU64; Confidence::ALL.len()],
    /// Webhooks refused for a bad or missing signature.
    pub forbidden: std::sync::atomic::AtomicU64,
}

impl CallStats {
    fn count(&self, confidence: &str) {
        if let Some(i) = Confidence::ALL.iter().position(|c| c.as_str() == confidence) {
            self.by_confidence[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// `(confidence, calls)` for every confidence, zeros included.
    pub fn by_confidence(&self) -> Vec<(&'static str, u64)> {
        Confidence::ALL
            .iter()
            .zip(&self.by_confidence)
            .map(|(c, n)| (c.as_str(), n.load(std::sync::atomic::Ordering::Relaxed)))
            .collect()
    }
}

struct Hook {
    url_variants: Vec<String>,
    form: Vec<(String, String)>,
    base: String,
}

fn text(status: StatusCode, msg: &str) -> Response<ProxyBody> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .body(
            Full::new(Bytes::from(format!("{msg}\n")))
                .map_err(|e| match e {})
                .boxed(),
        )
        .expect("static response")
}

fn xml(body: String) -> Response<ProxyBody> {
    Response::builder()
        .header(header::CONTENT_TYPE, "text/xml; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Full::new(Bytes::from(body)).map_err(|e| match e {}).boxed())
        .expect("static response")
}

fn field<'a>(form: &'a [(String, String)], k: &str) -> Option<&'a str> {
    form.iter()
        .find(|(key, _)| key == k)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

impl Calls {
    /// Whether calls can be stored now (see [`Store::check`]).
    pub fn check_store(&self) -> Result<(), crate::store::StoreError> {
        self.store.check()
    }

    pub fn new(store: Arc<dyn Store>, pools: Arc<Pools>, sessions: SessionLog, secrets: Secrets) -> Arc<Calls> {
        let clock = pools.clock().clone();
        Arc::new(Calls {
            store,
            pools,
            sessions,
            clock,
            secrets,
            stats: CallStats::default(),
        })
    }

    fn forbidden(&self) -> Response<ProxyBody> {
        self.stats.forbidden.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        text(StatusCode::FORBIDDEN, "forbidden")
    }

    /// Whether a webhook verified with `verified`'s telephony secret may act on `other`'s calls:
    /// the same site, or one of the same provider account (same dialect and secret; an agency
    /// may point every number of one account at one host).
    fn same_account(&self, verified: &Site, other: &Site) -> bool {
        if verified.name == other.name {
            return true;
        }
        let (a, b) = (&verified.telephony, &other.telephony);
        a.dialect == b.dialect
            && match ((self.secrets)(a.secret_env()), (self.secrets)(b.secret_env())) {
                (Some(x), Some(y)) => x == y,
                _ => false,
            }
    }

    /// Answers a request under `/_telswap/`.
    pub async fn handle(
        &self,
        rules: &RuleSet,
        site: &Arc<Site>,
        host: &str,
        req: Request<Incoming>,
        conn: ConnInfo,
    ) -> Response<ProxyBody> {
        let path = req.uri().path().to_string();
        let is_post = req.method() == Method::POST;
        match path.as_str() {
            "/_telswap/voice" | "/_telswap/status" | "/_telswap/whisper" => {}
            _ => return text(StatusCode::NOT_FOUND, "not found"),
        }
        if !is_post {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "POST only");
            r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
            return r;
        }
        let hook = match self.verified(site, host, req, conn).await {
            Ok(h) => h,
            Err(r) => return r,
        };
        match path.as_str() {
            "/_telswap/voice" => self.voice(rules, site, hook).await,
            "/_telswap/status" => self.status(rules, site, hook).await,
            _ => self.whisper(hook).await,
        }
    }

    /// Reads the form and checks the provider's signature; `403` and nothing stored otherwise.
    async fn verified(
        &self,
        site: &Site,
        host: &str,
        req: Request<Incoming>,
        conn: ConnInfo,
    ) -> Result<Hook, Response<ProxyBody>> {
        let headers: HeaderMap = req.headers().clone();
        let pq = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default();
        // A provider sends its few hundred bytes at once; a body that trickles is held no longer
        // than this, or stalled requests would pile up and use every descriptor.
        let collect = Limited::new(req.into_body(), MAX_BODY).collect();
        let Ok(collected) = tokio::time::timeout(BODY_TIMEOUT, collect).await else {
            return Err(text(StatusCode::REQUEST_TIMEOUT, "body too slow"));
        };
        let body = match collected {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                let e: BoxError = e;
                if e.is::<http_body_util::LengthLimitError>() {
                    return Err(text(StatusCode::PAYLOAD_TOO_LARGE, "body too large"));
                }
                return Err(text(StatusCode::BAD_REQUEST, "unreadable body"));
            }
        };
        let scheme = if conn.tls { "https" } else { "http" };
        let base = format!("{scheme}://{host}");
        // Behind a TLS-terminating balancer the provider called https: try what it says too.
        let mut url_variants = vec![format!("{base}{pq}")];
        if let Some(p) = headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok())
            && (p == "https" || p == "http")
            && p != scheme
        {
            url_variants.push(format!("{p}://{host}{pq}"));
        }
        let t = &site.telephony;
        let check = match t.dialect {
            Dialect::Twilio | Dialect::SignalWire => {
                let Some(token) = (self.secrets)(&t.auth_token_env) else {
                    tracing::error!(site = %site.name, env = %t.auth_token_env, "telephony auth token is not set; refusing webhook");
                    return Err(self.forbidden());
                };
                let form = match signature::parse_form(&body) {
                    Ok(f) => f,
                    Err(_) => return Err(text(StatusCode::BAD_REQUEST, "malformed form body")),
                };
                // SignalWire signs in its own header and also accepts Twilio's.
                let sig = signature::signature_headers(t.dialect)
                    .iter()
                    .find_map(|h| headers.get(*h))
                    .and_then(|v| v.to_str().ok());
                let ok = url_variants
                    .iter()
                    .any(|u| signature::verify_twilio(&token, u, &form, sig).is_ok());
                if ok { Ok(form) } else { Err(()) }
            }
            Dialect::Telnyx => {
                let key_env = t.secret_env();
                let Some(key) = (self.secrets)(key_env) else {
                    tracing::error!(site = %site.name, env = %key_env, "Telnyx public key is not set; refusing webhook");
                    return Err(self.forbidden());
                };
                let ts = headers.get("telnyx-timestamp").and_then(|v| v.to_str().ok());
                let sig = headers.get("telnyx-signature-ed25519").and_then(|v| v.to_str().ok());
                let now = (self.clock.now_ms() / 1000) as i64;
                match signature::verify_telnyx(&key, ts, sig, &body, now) {
                    Ok(()) => match signature::parse_form(&body) {
                        Ok(f) => Ok(f),
                        Err(_) => return Err(text(StatusCode::BAD_REQUEST, "malformed form body")),
                    },
                    Err(_) => Err(()),
                }
            }
        };
        match check {
            Ok(form) => Ok(Hook {
                url_variants,
                form,
                base,
            }),
            Err(()) => {
                tracing::warn!(site = %site.name, "webhook with a bad or missing signature refused");
                Err(self.forbidden())
            }
        }
    }

    async fn voice(&self, rules: &RuleSet, site: &Arc<Site>, hook: Hook) -> Response<ProxyBody> {
        let form = &hook.form;
        let (Some(sid), Some(to)) = (field(form, "CallSid"), field(form, "To")) else {
            return text(StatusCode::BAD_REQUEST, "CallSid and To are required");
        };
        let from = field(form, "From").unwrap_or("anonymous").to_string();
        let Ok(to_num) = PhoneNumber::parse(to, &site.country) else {
            return text(StatusCode::BAD_REQUEST, "To is not a phone number");
        };
        // The site that owns the called number: this host's site, or any site that lists it. A
        // number no site lists (taken out of the rules while visitors' pages still show it, or
        // never put in) is still this host's: its account signed the call, and the caller
        // reaches the business rather than an error.
        let owner = owning_site(rules, site, &to_num).unwrap_or_else(|| site.clone());
        if !self.same_account(site, &owner) {
            // Signed with this host's secret, for another site's number: one site's provider
            // account must not create calls on another's.
            tracing::warn!(site = %site.name, owner = %owner.name, "webhook for another account's number refused");
            return self.forbidden();
        }
        let now = self.clock.now_ms();
        let held = self.pools.who_held(&owner, &to_num, now);
        let held = match held {
            Held::Session { pool, candidates } if candidates.is_empty() => {
                // After a restart the in-memory history is empty: ask the store.
                Held::Session {
                    pool: pool.clone(),
                    candidates: self.stored_candidates(&owner, &pool, &to_num, now).await,
                }
            }
            Held::Source { pool, .. } => Held::Source {
                shown_to: self.shown_to(&owner, &pool, &to_num, now).await,
                pool,
            },
            Held::Unknown => self.retired_number(&owner, &to_num, now).await,
            other => other,
        };
        let sessions = self.sessions.clone();
        let store = self.store.clone();
        let lookup = move |id: &str| match sessions.get(id) {
            Some(mem) => Some(with_stored_pages(mem, &*store)),
            None => session_from_store(&*store, id),
        };
        let owner2 = owner.clone();
        let to2 = to_num.clone();
        let attributed =
            tokio::task::spawn_blocking(move || attribution::attribute(&owner2, &to2, now, &held, &lookup))
                .await
                .expect("attribution task");
        let (city, state, country) = attribution::caller_location(
            &from,
            field(form, "FromCity"),
            field(form, "FromState"),
            field(form, "FromCountry"),
        );
        let earlier = if attribution::anonymous_caller(&from) {
            0
        } else {
            let store = self.store.clone();
            let (site_name, from2) = (owner.name.clone(), from.clone());
            tokio::task::spawn_blocking(move || store.earlier_calls(&site_name, &from2, now as i64))
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or(0)
        };
        let record = CallRecord {
            id: format!("c_{}", random_id(12)),
            call_sid: sid.to_string(),
            site: owner.name.clone(),
            tracking_number: to_num.e164(),
            caller: from.clone(),
            started_at: now as i64,
            duration_s: None,
            status: field(form, "CallStatus").unwrap_or("ringing").to_string(),
            caller_city: city,
            caller_state: state,
            caller_country: country,
            returning_caller: earlier > 0,
            earlier_calls: earlier,
            confidence: attributed.confidence.as_str().to_string(),
            attribution: attributed.attribution,
            recording_url: None,
            outcome: None,
        };
        let store = self.store.clone();
        let inserted = tokio::task::spawn_blocking(move || store.insert_call(&record).map(|i| (i, record))).await;
        let record = match inserted {
            Ok(Ok((Inserted::New, r))) => {
                self.stats.count(&r.confidence);
                tracing::info!(call = %r.id, site = %r.site, number = %r.tracking_number, confidence = %r.confidence, "call attributed");
                r
            }
            Ok(Ok((Inserted::Duplicate(existing), _))) => existing,
            Ok(Err(e)) => {
                // Not durable: no answer, so the provider retries rather than a call going unrecorded.
                tracing::error!(error = %e, "storing the call failed");
                return text(StatusCode::SERVICE_UNAVAILABLE, "try again");
            }
            Err(e) => {
                tracing::error!(error = %e, "storing the call failed");
                return text(StatusCode::SERVICE_UNAVAILABLE, "try again");
            }
        };
        let t = &owner.telephony;
        let action = format!("{}/_telswap/status", hook.base);
        let whisper = format!("{}/_telswap/whisper?call={}", hook.base, record.id);
        // The business sees who calls; a withheld id (or a keypad stand-in for one) shows the
        // tracking number instead.
        let caller_id = if from.starts_with('+') && !attribution::anonymous_caller(&from) {
            from.as_str()
        } else {
            to
        };
        let forward = t.forward_to.e164();
        xml(twiml::dial(&twiml::DialAnswer {
            forward_to: &forward,
            caller_id,
            record: t.record,
            timeout_s: DIAL_TIMEOUT_S,
            action_url: &action,
            whisper_url: t.whisper.then_some(whisper.as_str()),
        }))
    }

    /// Who held `number`, a number no pool lists any more (a reload took it out), from the
    /// stored leases that can still explain a call: the session pool it was last in, with its
    /// settings, or, for a pool taken out whole, with the rules' defaults. [`Held::Unknown`]
    /// when none can.
    async fn retired_number(&self, site: &Arc<Site>, number: &PhoneNumber, now: Millis) -> Held {
        let store = self.store.clone();
        let (site, number) = (site.clone(), number.clone());
        let found = tokio::task::spawn_blocking(move || {
            let in_pool = site.pools.iter().filter(|p| p.mode == PoolMode::Session).find_map(|p| {
                let rows: Vec<_> = stored_leases(&*store, &site.name, p, &number, now)
                    .ok()?
                    .into_iter()
                    .filter(|(r, _)| r.pool == p.name)
                    .collect();
                (!rows.is_empty()).then(|| (p.name.clone(), rows))
            });
            // A pool taken out whole: its leases, under the default settings.
            in_pool.or_else(|| {
                let rows: Vec<_> = stored_leases_within(&*store, &site.name, RETIRED_POOL, &number, now)
                    .ok()?
                    .into_iter()
                    .filter(|(r, _)| site.pool(&r.pool).is_none())
                    .collect();
                let pool = rows.last()?.0.pool.clone();
                let rows = rows.into_iter().filter(|(r, _)| r.pool == pool).collect();
                Some((pool, rows))
            })
        })
        .await
        .ok()
        .flatten();
        match found {
            Some((pool, rows)) => Held::Session {
                pool,
                candidates: rows
                    .into_iter()
                    .map(|(r, released)| lease_record(r, released))
                    .collect(),
            },
            None => Held::Unknown,
        }
    }

    /// Who was shown a source pool's number in the pool's `match_window` before `now`. Empty
    /// when the store cannot say: the call is still recorded, with the pool's channel alone.
    /// Not under a timeout of its own: it reads two ranges of one covering index, of at most
    /// `sqlite::AUDIENCE_VIEWS` + 1 entries each, and the call's answer waits for a durable
    /// insert into the same store right after.
    async fn shown_to(&self, site: &Arc<Site>, pool: &str, number: &PhoneNumber, now: Millis) -> SourceAudience {
        let Some(window) = site.pool(pool).map(|p| p.match_window) else {
            return SourceAudience::default();
        };
        // Visitors without consent are shown source numbers and leave no page view.
        let unrecorded = site.consent.mode != ConsentMode::None && site.consent.without == WithoutConsent::Source;
        let store = self.store.clone();
        let (site, number) = (site.name.clone(), number.e164());
        let to = now as i64;
        let from = to.saturating_sub(i64::try_from(window.as_millis()).unwrap_or(i64::MAX));
        let read = tokio::task::spawn_blocking(move || store.source_audience(&site, &number, from, to)).await;
        match read {
            Ok(Ok(mut audience)) => {
                audience.complete &= !unrecorded;
                audience
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "who was shown a source number could not be read");
                SourceAudience::default()
            }
            Err(_) => SourceAudience::default(),
        }
    }

    async fn stored_candidates(
        &self,
        site: &Arc<Site>,
        pool: &str,
        number: &PhoneNumber,
        now: Millis,
    ) -> Vec<LeaseRecord> {
        let store = self.store.clone();
        let (site, pool, number) = (site.clone(), pool.to_string(), number.clone());
        let rows = tokio::task::spawn_blocking(move || match site.pool(&pool) {
            Some(p) => stored_leases(&*store, &site.name, p, &number, now),
            None => Ok(Vec::new()),
        });
        rows.await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default()
            .into_iter()
            .map(|(r, released)| lease_record(r, released))
            .collect()
    }

    async fn status(&self, rules: &RuleSet, site: &Site, hook: Hook) -> Response<ProxyBody> {
        let form = &hook.form;
        let Some(sid) = field(form, "CallSid") else {
            return text(StatusCode::BAD_REQUEST, "CallSid is required");
        };
        // Only a call of this provider account: another's is as unknown as no call at all.
        let store = self.store.clone();
        let owned = sid.to_string();
        let call = tokio::task::spawn_blocking(move || store.call_by_sid(&owned)).await;
        let call_site = match call {
            Ok(Ok(Some(call))) => rules.sites.iter().find(|s| s.name == call.site).cloned(),
            Ok(Ok(None)) => return text(StatusCode::NOT_FOUND, "unknown call"),
            _ => return text(StatusCode::SERVICE_UNAVAILABLE, "try again"),
        };
        if !call_site.is_some_and(|c| self.same_account(site, &c)) {
            tracing::warn!(site = %site.name, "status callback for another account's call refused");
            return text(StatusCode::NOT_FOUND, "unknown call");
        }
        // The `<Dial action>` callback carries the forward's result; the number's own status
        // callback only the caller's leg (see `Leg`).
        let (leg, status, duration) = match field(form, "DialCallStatus") {
            Some(dial) => (Leg::Dial, dial, field(form, "DialCallDuration")),
            None => (
                Leg::Call,
                field(form, "CallStatus").unwrap_or("completed"),
                field(form, "CallDuration"),
            ),
        };
        let status = status.to_string();
        let duration = duration.and_then(|d| d.parse::<u32>().ok());
        let recording = field(form, "RecordingUrl").map(str::to_string);
        let store = self.store.clone();
        let sid = sid.to_string();
        // The first final status sends `call.completed`, committed with the update itself.
        let subscribers = crate::outbox::Subscribers::new(rules, crate::rules::WebhookEvent::CallCompleted);
        let now = self.clock.now_ms();
        let on_final = move |c: &CallRecord| subscribers.deliveries(c, now);
        match tokio::task::spawn_blocking(move || {
            store.update_call_with_events(&sid, leg, &status, duration, recording.as_deref(), &on_final)
        })
        .await
        {
            Ok(Ok(true)) => xml(twiml::empty()),
            Ok(Ok(false)) => text(StatusCode::NOT_FOUND, "unknown call"),
            _ => text(StatusCode::SERVICE_UNAVAILABLE, "try again"),
        }
    }

    async fn whisper(&self, hook: Hook) -> Response<ProxyBody> {
        let id = hook
            .url_variants
            .first()
            .and_then(|u| u.split_once("call="))
            .map(|(_, id)| id.split('&').next().unwrap_or("").to_string())
            .unwrap_or_default();
        let store = self.store.clone();
        let call = tokio::task::spawn_blocking(move || store.call(&id))
            .await
            .ok()
            .and_then(Result::ok)
            .flatten();
        let line = match call {
            Some(c) => {
                let a = &c.attribution;
                let s = |k: &str| a.get(k).and_then(Value::as_str).map(|v| v.replace('_', " "));
                match (s("channel"), s("campaign")) {
                    (Some(ch), Some(cmp)) => format!("Call from {ch}, campaign {cmp}."),
                    (Some(ch), None) => format!("Call from {ch}."),
                    _ => "Call from the website.".to_string(),
                }
            }
            None => "Call from the website.".to_string(),
        };
        xml(twiml::say(&line))
    }
}

/// The settings a pool taken out of the rules is read with: the rules' defaults
/// (`match_window` 2 h, `idle_timeout` 30 min).
const RETIRED_POOL: (Duration, Duration) = (Duration::from_secs(2 * 3600), Duration::from_secs(30 * 60));

/// The stored leases of `number` that can still explain a call at `now` under `pool`'s
/// settings: held then, or ended within its match window; each with when it ended (`None`:
/// held). A row without a release may only lack it because the release was still queued, or
/// the server stopped: the lease lapsed `idle_timeout` after its last page view.
pub(crate) fn stored_leases(
    store: &dyn Store,
    site: &str,
    pool: &crate::rules::Pool,
    number: &PhoneNumber,
    now: Millis,
) -> Result<Vec<(LeaseRow, Option<i64>)>, crate::store::StoreError> {
    stored_leases_within(store, site, (pool.match_window, pool.idle_timeout), number, now)
}

/// [`stored_leases`] under explicit (`match_window`, `idle_timeout`) settings.
fn stored_leases_within(
    store: &dyn Store,
    site: &str,
    (match_window, idle_timeout): (Duration, Duration),
    number: &PhoneNumber,
    now: Millis,
) -> Result<Vec<(LeaseRow, Option<i64>)>, crate::store::StoreError> {
    let window = match_window.as_millis() as i64;
    let idle = idle_timeout.as_millis() as i64;
    let now = now as i64;
    let rows = store.leases_of_number(site, &number.e164(), now - window - idle, now)?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let released = r
                .released
                .or_else(|| Some(r.last_seen + idle).filter(|lapse| *lapse <= now));
            (r, released)
        })
        .filter(|(r, released)| r.started <= now && released.is_none_or(|x| now <= x + window))
        .collect())
}

pub(crate) fn lease_record(r: LeaseRow, released: Option<i64>) -> LeaseRecord {
    LeaseRecord {
        id: r.id,
        number: r.number_index as usize,
        session: r.session,
        visitor: r.visitor,
        started: r.started as Millis,
        last_seen: r.last_seen as Millis,
        released: released.map(|x| x as Millis),
        shared: r.shared,
    }
}

/// This host's site if it lists the number, else any site that does.
fn owning_site(rules: &RuleSet, site: &Arc<Site>, n: &PhoneNumber) -> Option<Arc<Site>> {
    let lists = |s: &Site| {
        s.numbers.contains(n)
            || s.pools
                .iter()
                .any(|p| p.numbers.contains(n) || p.overflow.as_ref() == Some(n))
            || s.offline.iter().any(|o| &o.number == n)
    };
    if lists(site) {
        return Some(site.clone());
    }
    rules.sites.iter().find(|s| lists(s)).cloned()
}

/// A session record from memory, with the page views the store holds from before them. After
/// a restart the in-memory record starts at the first page viewed since; its session began
/// earlier (`started` is carried by the visitor's cookie), and the store has those first pages,
/// the landing page among them. Page views of one session are made at `started` and later, so
/// a record whose first page is at `started` is whole and the store is not read.
fn with_stored_pages(mut mem: SessionRecord, store: &dyn Store) -> SessionRecord {
    let first_held = mem.pages.first().map_or(Millis::MAX, |p| p.at);
    if first_held <= mem.started {
        return mem;
    }
    let Some(stored) = session_from_store(store, &mem.session) else {
        return mem;
    };
    let mut pages: Vec<PageView> = stored.pages.into_iter().filter(|p| p.at < first_held).collect();
    pages.append(&mut mem.pages);
    // The log keeps a session's first pages, and counts those past its bound.
    let max = crate::visitor::sessions::MAX_PAGES_PER_SESSION;
    if pages.len() > max {
        mem.pages_dropped += (pages.len() - max) as u32;
        pages.truncate(max);
    }
    mem.pages = pages;
    mem
}

fn session_from_store(store: &dyn Store, id: &str) -> Option<SessionRecord> {
    let (row, pages) = store.session(id).ok()??;
    let touch = |v: Option<JsonText>| v.and_then(|v| v.parse::<StoredTouch>());
    Some(SessionRecord {
        site: row.site,
        visitor: row.visitor,
        session: row.id,
        started: row.started as Millis,
        device: match row.device.as_str() {
            "mobile" => Device::Mobile,
            "tablet" => Device::Tablet,
            _ => Device::Desktop,
        },
        first: touch(row.first_touch),
        last: touch(row.last_touch),
        touches: row.touches,
        pages: pages
            .into_iter()
            .map(|p| PageView {
                path: p.path,
                at: p.at as Millis,
            })
            .collect(),
        pages_dropped: 0,
    })
}

/// Lease events and page views made durable through the store's batching writer.
pub struct StoreJournal {
    pub store: Arc<dyn Store>,
}

impl crate::pool::LeaseJournal for StoreJournal {
    fn record(&self, site: &str, pool: &str, numbers: &[PhoneNumber], event: &crate::pool::LeaseEvent) {
        use crate::pool::LeaseEvent as E;
        use crate::store::Write;
        let row = |r: &LeaseRecord| LeaseRow {
            id: r.id,
            site: site.to_string(),
            pool: pool.to_string(),
            number: numbers.get(r.number).map(|n| n.e164()).unwrap_or_default(),
            number_index: r.number as u32,
            session: r.session.clone(),
            visitor: r.visitor.clone(),
            started: r.started as i64,
            last_seen: r.last_seen as i64,
            released: r.released.map(|x| x as i64),
            shared: r.shared,
        };
        let w = match event {
            E::Opened(r) => Write::LeaseOpened(row(r)),
            E::Refreshed { id, last_seen } => Write::LeaseRefreshed {
                id: *id,
                last_seen: *last_seen as i64,
            },
            E::Released { id, at } => Write::LeaseReleased {
                id: *id,
                at: *at as i64,
                shared: false,
            },
            E::HandedOver { from, to } => {
                self.store.enqueue(Write::LeaseReleased {
                    id: *from,
                    at: to.started as i64,
                    shared: true,
                });
                Write::LeaseOpened(row(to))
            }
        };
        self.store.enqueue(w);
    }
}

impl crate::visitor::sessions::VisitSink for StoreJournal {
    fn page_view(&self, rec: &SessionRecord, session_changed: bool, page: Option<Seen<'_>>, at: Millis) {
        use crate::store::{PageViewRow, SessionRow, Write};
        let touch = |t: &Option<StoredTouch>| t.as_ref().and_then(JsonText::of);
        // The session row (and its visitor's, which it also upserts) is rewritten only when it
        // changed: a session's later page views usually bring nothing new to it, and each of
        // these upserts dirties B-tree pages keyed by random ids, the writer's main cost.
        if session_changed {
            self.store.enqueue(Write::Session(SessionRow {
                id: rec.session.clone(),
                site: rec.site.clone(),
                visitor: rec.visitor.clone(),
                started: rec.started as i64,
                device: rec.device.as_str().to_string(),
                first_touch: touch(&rec.first),
                last_touch: touch(&rec.last),
                touches: rec.touches,
            }));
        }
        if let Some(page) = page {
            self.store.enqueue(Write::PageView(PageViewRow {
                site: rec.site.clone(),
                visitor: rec.visitor.clone(),
                session: rec.session.clone(),
                path: page.path.to_string(),
                at: at as i64,
                shown: page.shown.cloned(),
            }));
        }
    }
}
