//! The admin listener: the dashboard, the calls, pools and reports API, exports and metrics,
//! behind the admin token.
//!
//! Every path needs `Authorization: Bearer $TELSWAP_ADMIN_TOKEN` (compared in constant time;
//! the token is never logged) or the dashboard's session cookie ([`auth`]). Without either, the
//! API and `/metrics` answer `401` and dashboard pages redirect to the login page. Reads the
//! store and the pools; writes only outcomes (and ad spend).
//!
//! Layout: [`auth`] (token and cookie), [`dashboard`] (pages, pure), [`charts`] (inline SVG,
//! pure), [`sizing`] (recommended pool size, pure), [`occupancy`] (pool samples over time).

pub mod auth;
pub mod charts;
pub mod dashboard;
pub mod occupancy;
pub mod sizing;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::clock::{Millis, rfc3339};
use crate::pool::Pools;
use crate::proxy::Proxy;
use crate::rules::PoolMode;
use crate::store::{CallFilter, CallRecord, Outcome, Store};

use auth::{Auth, Credential};
use dashboard::Range;
use occupancy::Occupancy;
pub mod export;
pub mod reports;
pub mod spend;

/// What the admin API reads.
pub struct Admin {
    auth: Auth,
    store: Arc<dyn Store>,
    pools: Arc<Pools>,
    proxy: Arc<Proxy>,
    occupancy: Occupancy,
}

type Resp = Response<Full<Bytes>>;
type Handled = Result<Resp, (StatusCode, String)>;

/// How often the pools page's occupancy is sampled.
const SAMPLE_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// How far back the recommended size looks: a week covers every weekday's peak.
const SIZING_WINDOW_MS: Millis = 7 * 24 * 3_600_000;

/// A request's `Cookie` header values.
fn cookies(req: &Request<Incoming>) -> impl Iterator<Item = &str> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
}

/// The largest outcome value or spend amount taken (a trillion in any currency): reports add
/// them up as floats, and two values near `f64::MAX` would sum to infinity, which JSON cannot
/// carry.
pub const MAX_AMOUNT: f64 = 1e12;

impl Admin {
    pub fn new(token: String, store: Arc<dyn Store>, pools: Arc<Pools>, proxy: Arc<Proxy>) -> Arc<Admin> {
        let auth = Auth::new(token);
        let now_s = pools.clock().now_ms() / 1000;
        match store.admin_logouts(now_s as i64) {
            Ok(rows) => {
                for (id, expires) in rows {
                    let expires = u64::try_from(expires).unwrap_or(0);
                    auth.revoke(&auth::Session { id, expires }, now_s);
                }
            }
            // Sessions logged out before this start would be taken again: say so.
            Err(e) => tracing::error!(error = %e, "reading the dashboard's logged-out sessions failed"),
        }
        Arc::new(Admin {
            auth,
            store,
            pools,
            proxy,
            occupancy: Occupancy::default(),
        })
    }

    fn now_ms(&self) -> Millis {
        self.pools.clock().now_ms()
    }

    /// Binds `addr` and serves until the returned task is aborted; samples pool occupancy
    /// meanwhile.
    pub async fn serve(
        self: Arc<Self>,
        addr: SocketAddr,
    ) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let sampler = {
            let me = self.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(SAMPLE_EVERY);
                loop {
                    tick.tick().await;
                    let stats = me.pools.stats(&me.proxy.rules());
                    me.occupancy.record(me.now_ms(), &stats);
                }
            })
        };
        let task = tokio::spawn(async move {
            // Aborting this task drops the sampler's handle: stop it with the listener.
            struct AbortOnDrop(tokio::task::JoinHandle<()>);
            impl Drop for AbortOnDrop {
                fn drop(&mut self) {
                    self.0.abort();
                }
            }
            let _sampler = AbortOnDrop(sampler);
            while let Ok((stream, _)) = listener.accept().await {
                let me = self.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let me = me.clone();
                        async move { Ok::<_, Infallible>(me.handle(req).await) }
                    });
                    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    // A request head that never ends is dropped, as on the public listeners.
                    builder
                        .http1()
                        .timer(hyper_util::rt::TokioTimer::new())
                        .header_read_timeout(std::time::Duration::from_secs(30));
                    let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
        Ok((local, task))
    }

    fn credential(&self, req: &Request<Incoming>) -> Credential {
        let authorization = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        self.auth.check(authorization, cookies(req), self.now_ms() / 1000)
    }

    /// Ends the request's dashboard session, here and in the store, so that a copy of its
    /// cookie is refused, after a restart too. Without a live session there is nothing to end
    /// (and no other site can end one: the cookie is `SameSite=Strict`).
    async fn logout(&self, req: &Request<Incoming>) {
        let now_s = self.now_ms() / 1000;
        let Some(session) = self.auth.session(cookies(req), now_s) else {
            return;
        };
        self.auth.revoke(&session, now_s);
        let store = self.store.clone();
        let (id, expires) = (session.id, i64::try_from(session.expires).unwrap_or(i64::MAX));
        let stored = tokio::task::spawn_blocking(move || store.admin_logout(&id, expires, now_s as i64)).await;
        if !matches!(stored, Ok(Ok(()))) {
            tracing::error!(
                "a dashboard logout could not be stored: its cookie is refused until this server restarts, not after"
            );
        }
    }

    pub async fn handle(&self, req: Request<Incoming>) -> Resp {
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or("").to_string();
        let api = path.starts_with("/api/") || path == "/metrics";
        if is_cross_site_write(&req) {
            // The session cookie is `SameSite=Strict`, but "site" spans ports and subdomains:
            // the public listener serving the site's pages is the same site. A change asked
            // for by another origin's page is refused whatever it carries.
            let msg = "refused: a change must come from the dashboard's own pages";
            return if api {
                json_resp(StatusCode::FORBIDDEN, json!({ "error": msg }))
            } else {
                html_resp(StatusCode::FORBIDDEN, dashboard::error_body(msg))
            };
        }
        // The login page and logout need no credential; everything else does.
        match (req.method(), path.as_str()) {
            (&Method::GET, "/login") => {
                let next = form_value(&query, "next");
                return html_resp(
                    StatusCode::OK,
                    dashboard::login_page(None, &auth::safe_next(next.as_deref())),
                );
            }
            (&Method::POST, "/login") => return self.login(req).await,
            (&Method::POST, "/logout") => {
                self.logout(&req).await;
                let mut r = redirect("/login");
                set_cookie(&mut r, &auth::logout_cookie());
                return r;
            }
            _ => {}
        }
        if self.credential(&req) != Credential::Valid {
            if api {
                return json_resp(
                    StatusCode::UNAUTHORIZED,
                    json!({"error": "missing or wrong admin token"}),
                )
                .into_www_authenticate();
            }
            let here = if query.is_empty() {
                path.clone()
            } else {
                format!("{path}?{query}")
            };
            let target: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("next", &here)
                .finish();
            return redirect(&format!("/login?{target}"));
        }
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        // A HEAD is answered as its GET (hyper sends no body).
        let method = match req.method() {
            &Method::HEAD => Method::GET,
            m => m.clone(),
        };
        let result = match (method, segments.as_slice()) {
            (Method::GET, ["api", "calls"]) => self.list_calls(&query).await,
            (Method::GET, ["api", "calls", id]) => self.one_call(id).await,
            (Method::POST, ["api", "calls", id, "outcome"]) => {
                let id = id.to_string();
                self.set_outcome(&id, req).await
            }
            (Method::DELETE, ["api", "calls", id, "outcome"]) => match self.clear_outcome(id).await {
                Ok(()) => self.one_call(id).await,
                Err(e) => Err(e),
            },
            (Method::GET, ["api", "pools"]) => self.pools_json(&query).await,
            (Method::GET, ["api", "reports"]) => Ok(self.report_list()),
            (Method::GET, ["api", "reports", name]) => self.report(name, &req).await,
            (Method::GET, ["api", "export", file]) => self.export(file, &req).await,
            (Method::PUT, ["api", "spend"]) => self.put_spend(req).await,
            (Method::GET, ["metrics"]) => Ok(self.metrics()),
            (Method::GET, [""]) => self.page_overview(&query).await,
            (Method::GET, ["calls"]) => self.page_calls(&query).await,
            (Method::GET, ["calls", id]) => self.page_call(id, &query).await,
            (Method::POST, ["calls", id, "outcome"]) => {
                let id = id.to_string();
                self.form_outcome(&id, req).await
            }
            (Method::GET, ["pools"]) => self.page_pools(&query).await,
            (Method::GET, ["reports", name]) => self.page_report(name, &query).await,
            // A typed or trimmed address: the first report, with the range it carried.
            (Method::GET, ["reports"]) => {
                let q = if query.is_empty() {
                    String::new()
                } else {
                    format!("?{query}")
                };
                Ok(redirect(&format!("/reports/{}{q}", reports::REPORTS[0])))
            }
            // Every method a path takes was matched above: any other is a 405.
            (_, path) if let Some(allow) = allowed_methods(path) => {
                let mut r = self.error_resp(api, StatusCode::METHOD_NOT_ALLOWED, &format!("use {allow}"));
                r.headers_mut()
                    .insert(header::ALLOW, http::HeaderValue::from_static(allow));
                return r;
            }
            (_, ["api", ..]) | (_, ["metrics"]) => Err((StatusCode::NOT_FOUND, "no such endpoint".to_string())),
            _ => Err((StatusCode::NOT_FOUND, "not found".to_string())),
        };
        result.unwrap_or_else(|(status, msg)| self.error_resp(api, status, &msg))
    }

    /// An error for an authenticated request: JSON for the API, a dashboard page otherwise.
    fn error_resp(&self, api: bool, status: StatusCode, msg: &str) -> Resp {
        if api {
            json_resp(status, json!({ "error": msg }))
        } else {
            html_resp(status, self.page("Error", "", None, &dashboard::error_body(msg)))
        }
    }

    async fn login(&self, req: Request<Incoming>) -> Resp {
        let body = match Limited::new(req.into_body(), 8 * 1024).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return html_resp(StatusCode::PAYLOAD_TOO_LARGE, dashboard::error_body("form too large")),
        };
        let form = String::from_utf8_lossy(&body).into_owned();
        let next = auth::safe_next(form_value(&form, "next").as_deref());
        match form_value(&form, "token") {
            Some(t) if self.auth.token_ok(&t) => {
                let mut r = redirect(&next);
                set_cookie(&mut r, &self.auth.login_cookie(self.now_ms() / 1000));
                r
            }
            _ => {
                tracing::warn!("dashboard login with a wrong token");
                html_resp(
                    StatusCode::UNAUTHORIZED,
                    dashboard::login_page(Some("That is not the admin token."), &next),
                )
            }
        }
    }

    /// A dashboard page in its frame.
    fn page(&self, title: &str, active: &str, range: Option<&Range>, body: &str) -> String {
        let sites: Vec<String> = self.proxy.rules().sites.iter().map(|s| s.name.clone()).collect();
        dashboard::layout(title, active, range, &sites, reports::REPORTS, body)
    }

    fn range(&self, query: &str) -> Result<Range, (StatusCode, String)> {
        Range::from_query(query, self.now_ms() as i64).map_err(|e| (StatusCode::BAD_REQUEST, e))
    }

    /// The calls of the range, newest first (as the call log lists them).
    async fn calls_in(&self, range: &Range) -> Result<Vec<CallRecord>, (StatusCode, String)> {
        let mut calls = self.period_calls(&range.period()).await?;
        calls.reverse();
        Ok(calls)
    }

    async fn page_overview(&self, query: &str) -> Handled {
        self.page_report("overview", query).await
    }

    async fn page_report(&self, name: &str, query: &str) -> Handled {
        let range = self.range(query)?;
        let report = self.report_value(name, &range.period()).await?;
        let title = report.get("title").and_then(Value::as_str).unwrap_or(name).to_string();
        let api = format!("/api/reports/{name}?{}", range.api_query());
        let active = if name == "overview" {
            "/".to_string()
        } else {
            format!("/reports/{name}")
        };
        let body = dashboard::report_body(&report, &api);
        Ok(html_resp(
            StatusCode::OK,
            self.page(&title, &active, Some(&range), &body),
        ))
    }

    async fn page_calls(&self, query: &str) -> Handled {
        let range = self.range(query)?;
        let filters = dashboard::CallFilters::from_query(query).map_err(|e| (StatusCode::BAD_REQUEST, e))?;
        let calls: Vec<CallRecord> = self
            .calls_in(&range)
            .await?
            .into_iter()
            .filter(|c| filters.keep(c))
            .collect();
        let body = format!("{}{}", filters.form(&range), dashboard::calls_table(&calls, &range));
        Ok(html_resp(
            StatusCode::OK,
            self.page("Calls", "/calls", Some(&range), &body),
        ))
    }

    async fn page_call(&self, id: &str, query: &str) -> Handled {
        // The range only travels on, in the navigation's links.
        let range = self.range(query)?;
        let store = self.store.clone();
        let id = id.to_string();
        let call = tokio::task::spawn_blocking(move || store.call(&id))
            .await
            .map_err(internal)?
            .map_err(store_error)?
            .ok_or((StatusCode::NOT_FOUND, "no such call".to_string()))?;
        let title = format!("Call from {}", call.caller);
        Ok(html_resp(
            StatusCode::OK,
            self.page(&title, "/calls", Some(&range), &dashboard::call_page(&call)),
        ))
    }

    /// The journey page's outcome form: the same checks as the API, then back to the call.
    async fn form_outcome(&self, id: &str, req: Request<Incoming>) -> Handled {
        let body = read_body(req).await?;
        let form = String::from_utf8_lossy(&body).into_owned();
        if form_urlencoded::parse(form.as_bytes()).any(|(k, _)| k == "remove") {
            self.clear_outcome(id).await?;
            return Ok(redirect(&format!("/calls/{id}")));
        }
        let mut v = serde_json::Map::new();
        for (k, val) in form_urlencoded::parse(form.as_bytes()) {
            let val = val.trim().to_string();
            match k.as_ref() {
                "kind" => {
                    v.insert("kind".into(), json!(val));
                }
                "value" if !val.is_empty() => {
                    // `NaN` and `inf` parse, and would be stored as no value at all.
                    let n = val
                        .parse::<f64>()
                        .ok()
                        .filter(|n| n.is_finite())
                        .ok_or_else(|| (StatusCode::BAD_REQUEST, format!("value {val:?} is not a number")))?;
                    v.insert("value".into(), json!(n));
                }
                "currency" if !val.is_empty() => {
                    v.insert("currency".into(), json!(val));
                }
                _ => {}
            }
        }
        let outcome = self.outcome_from(&Value::Object(v))?;
        self.store_outcome(id, outcome).await?;
        Ok(redirect(&format!("/calls/{id}")))
    }

    /// Occupancy over the page's range; the recommended size always reads the last 7 days.
    async fn page_pools(&self, query: &str) -> Handled {
        let range = self.range(query)?;
        self.known_site(range.site.as_deref()).await?;
        let views: Vec<_> = self
            .pool_views(Some((range.from_ms as Millis, range.to_ms as Millis)))
            .await
            .into_iter()
            .filter(|p| range.site.as_ref().is_none_or(|s| *s == p.site))
            .collect();
        Ok(html_resp(
            StatusCode::OK,
            self.page("Pools", "/pools", Some(&range), &dashboard::pools_page(&views)),
        ))
    }

    /// Every pool with its live figures, its sizing from the last 7 days of leases, and its
    /// occupancy samples within `window` (default: the last 7 days).
    async fn pool_views(&self, window: Option<(Millis, Millis)>) -> Vec<dashboard::PoolView> {
        let rules = self.proxy.rules();
        let now = self.now_ms();
        let (from, to) = window.unwrap_or((now.saturating_sub(SIZING_WINDOW_MS), now + 1));
        let mut out = Vec::new();
        for p in self.pools.stats(&rules) {
            let idle = rules
                .sites
                .iter()
                .find(|s| s.name == p.site)
                .and_then(|s| s.pool(&p.name))
                .map(|q| q.idle_timeout.as_millis() as i64)
                .unwrap_or(0);
            let sizing = match p.mode {
                PoolMode::Session => {
                    let (store, site, pool) = (self.store.clone(), p.site.clone(), p.name.clone());
                    let since = now.saturating_sub(SIZING_WINDOW_MS) as i64;
                    let rows =
                        tokio::task::spawn_blocking(move || store.leases_started(&site, &pool, since, now as i64 + 1))
                            .await;
                    match rows {
                        Ok(Ok(rows)) => sizing::Traffic::from_leases(&rows, idle).map(sizing::Sizing::new),
                        Ok(Err(e)) => {
                            tracing::error!(error = %e, "reading leases for pool sizing");
                            None
                        }
                        Err(_) => None,
                    }
                }
                PoolMode::Source => None,
            };
            let series = self
                .occupancy
                .series(&p.site, &p.name, from, to, 120)
                .into_iter()
                .map(|(at, leased, events)| (rfc3339(at).replace('T', " "), leased as f64, events as f64))
                .collect();
            out.push(dashboard::PoolView {
                mode: match p.mode {
                    PoolMode::Session => "session",
                    PoolMode::Source => "source",
                },
                site: p.site,
                name: p.name,
                size: p.size,
                leased: p.leased,
                peak_leased: p.peak_leased,
                exhausted: p.exhausted,
                handed_over: p.handed_over,
                sizing,
                series,
            });
        }
        out
    }

    /// A `site` filter must name a site: one of the rules, or one that has calls stored (taken
    /// out of the rules since). A typo would otherwise answer as a site without calls, and an
    /// export for an ad platform would go out empty.
    async fn known_site(&self, site: Option<&str>) -> Result<(), (StatusCode, String)> {
        let Some(site) = site else { return Ok(()) };
        let rules = self.proxy.rules();
        if rules.sites.iter().any(|s| s.name == site) {
            return Ok(());
        }
        let store = self.store.clone();
        let f = CallFilter {
            site: Some(site.to_string()),
            limit: 1,
            ..CallFilter::default()
        };
        let stored = tokio::task::spawn_blocking(move || store.calls(&f))
            .await
            .map_err(internal)?
            .map_err(store_error)?;
        if stored.is_empty() {
            let names: Vec<&str> = rules.sites.iter().map(|s| s.name.as_str()).collect();
            return Err((
                StatusCode::BAD_REQUEST,
                format!("no site {site:?}; sites: {}", names.join(", ")),
            ));
        }
        Ok(())
    }

    async fn list_calls(&self, query: &str) -> Result<Resp, (StatusCode, String)> {
        // `from`, `to`, `site` and `tz` read as the reports read them (a date is a day in `tz`).
        let mut period = reports::Period::default();
        let (mut limit, mut after) = (DEFAULT_CALLS_PAGE, None);
        let bad = |m: &str| (StatusCode::BAD_REQUEST, m.to_string());
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            if period.take(&k, &v)? {
                continue;
            }
            match &*k {
                "limit" => {
                    limit = v
                        .parse()
                        .ok()
                        .filter(|n| *n <= MAX_CALLS_PAGE)
                        .ok_or_else(|| bad(&format!("limit must be a number from 0 (all) to {MAX_CALLS_PAGE}")))?;
                }
                "after" => {
                    let cursor = v
                        .split_once('.')
                        .and_then(|(at, id)| Some((at.parse::<i64>().ok()?, id.to_string())))
                        .ok_or_else(|| bad("after must be a page's `next` value"))?;
                    after = Some(cursor);
                }
                // As the reports: a parameter this endpoint does not know (`offset`, `page`)
                // is a mistake to say, not to ignore while answering something else.
                other => return Err(bad(&format!("unknown parameter {other:?}"))),
            }
        }
        period.check()?;
        self.known_site(period.site.as_deref()).await?;
        // One more than the page, to know whether another follows (`0`: all, one page).
        let f = CallFilter {
            from: period.from,
            to: period.to,
            site: period.site,
            after,
            limit: if limit == 0 { 0 } else { limit + 1 },
        };
        let store = self.store.clone();
        let mut calls = tokio::task::spawn_blocking(move || store.calls(&f))
            .await
            .map_err(internal)?
            .map_err(store_error)?;
        let next = (limit > 0 && calls.len() > limit).then(|| {
            calls.truncate(limit);
            calls.last().map(|c| format!("{}.{}", c.started_at, c.id))
        });
        Ok(json_resp(
            StatusCode::OK,
            json!({"calls": calls.iter().map(call_json).collect::<Vec<_>>(), "next": next.flatten()}),
        ))
    }

    async fn one_call(&self, id: &str) -> Result<Resp, (StatusCode, String)> {
        let store = self.store.clone();
        let id = id.to_string();
        match tokio::task::spawn_blocking(move || store.call(&id))
            .await
            .map_err(internal)?
            .map_err(store_error)?
        {
            Some(c) => Ok(json_resp(StatusCode::OK, call_json(&c))),
            None => Err((StatusCode::NOT_FOUND, "no such call".into())),
        }
    }

    async fn set_outcome(&self, id: &str, req: Request<Incoming>) -> Handled {
        let body = read_body(req).await?;
        let v: Value =
            serde_json::from_slice(&body).map_err(|e| (StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")))?;
        let outcome = self.outcome_from(&v)?;
        self.store_outcome(id, outcome).await?;
        self.one_call(id).await
    }

    /// Checks an outcome (from the API's JSON or the dashboard's form). Its value is at most
    /// [`MAX_AMOUNT`].
    fn outcome_from(&self, v: &Value) -> Result<Outcome, (StatusCode, String)> {
        const FIELDS: [&str; 3] = ["kind", "value", "currency"];
        let Some(fields) = v.as_object() else {
            return Err((
                StatusCode::BAD_REQUEST,
                "expected a JSON object such as {\"kind\":\"sale\",\"value\":120,\"currency\":\"USD\"}".into(),
            ));
        };
        // A misspelt field would be dropped in silence: a value stored without its currency.
        if let Some(unknown) = fields.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err((
                StatusCode::BAD_REQUEST,
                format!("unknown field {unknown:?}; an outcome has kind, value and currency"),
            ));
        }
        let kind = v.get("kind").and_then(Value::as_str).filter(|k| !k.trim().is_empty());
        let Some(kind) = kind else {
            return Err((StatusCode::BAD_REQUEST, "kind is required, e.g. \"sale\"".into()));
        };
        let value = match v.get("value") {
            None | Some(Value::Null) => None,
            Some(x) => Some(x.as_f64().filter(|f| (0.0..=MAX_AMOUNT).contains(f)).ok_or((
                StatusCode::BAD_REQUEST,
                format!("value must be a number from 0 to {MAX_AMOUNT:e}"),
            ))?),
        };
        let currency = match v.get("currency") {
            None | Some(Value::Null) => None,
            Some(Value::String(c)) if let Some(code) = currency(c) => Some(code),
            Some(other) => {
                return Err((
                    StatusCode::BAD_REQUEST,
                    format!("currency {other} is not an ISO 4217 code such as USD"),
                ));
            }
        };
        Ok(Outcome {
            kind: kind.trim().to_string(),
            value,
            currency,
            at: self.now_ms() as i64,
        })
    }

    async fn store_outcome(&self, id: &str, outcome: Outcome) -> Result<(), (StatusCode, String)> {
        let store = self.store.clone();
        let id = id.to_string();
        // `call.outcome` to the site's CRM webhooks, committed with the outcome itself.
        let subscribers = crate::outbox::Subscribers::new(&self.proxy.rules(), crate::rules::WebhookEvent::CallOutcome);
        let now = self.now_ms();
        let on_set = move |c: &CallRecord| subscribers.deliveries(c, now);
        let found = tokio::task::spawn_blocking(move || store.set_outcome_with_events(&id, &outcome, &on_set))
            .await
            .map_err(internal)?
            .map_err(store_error)?;
        if !found {
            return Err((StatusCode::NOT_FOUND, "no such call".into()));
        }
        Ok(())
    }

    /// Removes a call's outcome (a sale recorded on the wrong call): it leaves the conversions,
    /// the reports and the exports, and the call's CRM webhooks get `call.outcome` with
    /// `outcome: null`. A call without one is left as it is.
    async fn clear_outcome(&self, id: &str) -> Result<(), (StatusCode, String)> {
        let store = self.store.clone();
        let id = id.to_string();
        let subscribers = crate::outbox::Subscribers::new(&self.proxy.rules(), crate::rules::WebhookEvent::CallOutcome);
        let now = self.now_ms();
        let on_clear = move |c: &CallRecord| subscribers.deliveries(c, now);
        match tokio::task::spawn_blocking(move || store.clear_outcome_with_events(&id, &on_clear))
            .await
            .map_err(internal)?
            .map_err(store_error)?
        {
            Some(_) => Ok(()),
            None => Err((StatusCode::NOT_FOUND, "no such call".into())),
        }
    }

    /// `GET /api/pools[?site=]`.
    async fn pools_json(&self, query: &str) -> Result<Resp, (StatusCode, String)> {
        let mut site = None;
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            match &*k {
                "site" if !v.is_empty() => site = Some(v.into_owned()),
                "site" => {}
                other => return Err((StatusCode::BAD_REQUEST, format!("unknown parameter {other:?}"))),
            }
        }
        self.known_site(site.as_deref()).await?;
        let pools: Vec<Value> = self
            .pool_views(None)
            .await
            .into_iter()
            .filter(|p| site.as_ref().is_none_or(|s| *s == p.site))
            .map(|p| {
                json!({
                    "site": p.site,
                    "name": p.name,
                    "mode": p.mode,
                    "size": p.size,
                    "leased": p.leased,
                    "peak_leased": p.peak_leased,
                    "exhausted": p.exhausted,
                    "handed_over": p.handed_over,
                    "recommended_size": p.sizing.as_ref().map(|s| s.recommended),
                    "sizing": p.sizing.as_ref().map(|s| json!({
                        "leases_7d": s.traffic.leases,
                        "peak_arrivals_per_hour": s.traffic.peak_arrivals_per_hour,
                        "mean_lease_minutes": s.traffic.mean_lease_min,
                        "mean_session_minutes": s.traffic.mean_session_min,
                        "peak_concurrent": s.traffic.peak_concurrent,
                        "daily_visitors": s.traffic.daily_visitors,
                        "littles_law_held": s.littles_l,
                        "nimbata": s.nimbata,
                        "ctm": s.ctm,
                        "seed_article": [s.seed_article.0, s.seed_article.1],
                    })),
                })
            })
            .collect();
        Ok(json_resp(StatusCode::OK, json!({"pools": pools})))
    }

    fn metrics(&self) -> Resp {
        use std::fmt::Write;
        use std::sync::atomic::Ordering::Relaxed;
        let s = &self.proxy.stats;
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP telswap_{name} {help}\n# TYPE telswap_{name} counter\ntelswap_{name} {v}"
            );
        };
        counter(
            "misdirected_total",
            "Requests for hosts no rules file names (421).",
            s.misdirected.load(Relaxed),
        );
        counter(
            "upstream_errors_total",
            "Upstream connection or protocol failures (502).",
            s.upstream_errors.load(Relaxed),
        );
        counter(
            "upstream_timeouts_total",
            "Upstream timeouts (504).",
            s.upstream_timeouts.load(Relaxed),
        );
        counter(
            "rewritten_total",
            "HTML responses rewritten.",
            s.rewritten.load(Relaxed),
        );
        counter(
            "rewritten_lol_html_total",
            "Of those, rewritten by lol_html (a charset other than UTF-8, a complex exclude selector, or --engine lol_html); the rest by the byte-level engine.",
            s.rewritten_lol_html.load(Relaxed),
        );
        counter(
            "rewritten_replayed_total",
            "Of those, answered from the recording of an earlier response with the same bytes (same page, rules and number); the rest went through an engine.",
            s.rewritten_replayed.load(Relaxed),
        );
        counter(
            "rewritten_resumed_total",
            "Of the rest, answered from a recording up to where they differed from it, an engine reading only what followed.",
            s.rewritten_resumed.load(Relaxed),
        );
        counter(
            "rewritten_realigned_total",
            "Of the resumed, those that went back to their recording after a change of length (a counter's digits, a banner) moved the rest of the page.",
            s.rewritten_realigned.load(Relaxed),
        );
        counter(
            "replayed_bytes_total",
            "Page bytes answered from recordings without an engine reading them.",
            s.replayed_bytes.load(Relaxed),
        );
        counter(
            "numbers_swapped_total",
            "Phone numbers replaced in pages.",
            s.swapped.load(Relaxed),
        );
        counter(
            "bail_outs_total",
            "Responses where the rewriter hit its memory limit.",
            s.bail_outs.load(Relaxed),
        );
        for (name, help, v) in [
            (
                "connections_open",
                "Client connections (plain and TLS, after the handshake) open now.",
                &s.connections_open,
            ),
            (
                "connections_idle",
                "Of those, keep-alive connections parked between requests (no request buffers held).",
                &s.connections_idle,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP telswap_{name} {help}\n# TYPE telswap_{name} gauge\ntelswap_{name} {}",
                v.load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP telswap_requests_total Requests answered on the public listeners, by site and status.\n# TYPE telswap_requests_total counter"
        );
        for (site, status, n) in s.by_status() {
            let _ = writeln!(
                out,
                "telswap_requests_total{{site=\"{}\",status=\"{status}\"}} {n}",
                esc(&site)
            );
        }
        let (buckets, sum) = s.upstream_latency.snapshot();
        let _ = writeln!(
            out,
            "# HELP telswap_upstream_latency_seconds Time from sending a request upstream to its response headers.\n# TYPE telswap_upstream_latency_seconds histogram"
        );
        for (le, n) in &buckets {
            let le = le.map(|b| b.to_string()).unwrap_or_else(|| "+Inf".into());
            let _ = writeln!(out, "telswap_upstream_latency_seconds_bucket{{le=\"{le}\"}} {n}");
        }
        let count = buckets.last().map(|b| b.1).unwrap_or(0);
        let _ = writeln!(
            out,
            "telswap_upstream_latency_seconds_sum {sum}\ntelswap_upstream_latency_seconds_count {count}"
        );
        if let Some(calls) = self.proxy.calls() {
            let _ = writeln!(
                out,
                "# HELP telswap_calls_total Calls stored, by attribution confidence.\n# TYPE telswap_calls_total counter"
            );
            for (confidence, n) in calls.stats.by_confidence() {
                let _ = writeln!(out, "telswap_calls_total{{confidence=\"{confidence}\"}} {n}");
            }
            let _ = writeln!(
                out,
                "# HELP telswap_webhooks_forbidden_total Telephony webhooks refused for a bad or missing signature.\n# TYPE telswap_webhooks_forbidden_total counter\ntelswap_webhooks_forbidden_total {}",
                calls.stats.forbidden.load(Relaxed)
            );
        }
        let stats = self.pools.stats(&self.proxy.rules());
        type Family = (
            &'static str,
            &'static str,
            &'static str,
            fn(&crate::pool::PoolStats) -> u64,
        );
        let families: [Family; 3] = [
            ("pool_size", "gauge", "Numbers in the pool.", |p| p.size as u64),
            ("pool_leased", "gauge", "Numbers leased now.", |p| p.leased as u64),
            (
                "pool_exhausted_total",
                "counter",
                "Page views that found the pool exhausted.",
                |p| p.exhausted,
            ),
        ];
        for (name, kind, help, value) in families {
            let _ = writeln!(out, "# HELP telswap_{name} {help}\n# TYPE telswap_{name} {kind}");
            for p in &stats {
                let (site, pool, v) = (esc(&p.site), esc(&p.name), value(p));
                let _ = writeln!(out, "telswap_{name}{{site=\"{site}\",pool=\"{pool}\"}} {v}");
            }
        }
        let o = self.store.outbox_stats();
        let _ = writeln!(
            out,
            "# HELP telswap_webhook_deliveries_total CRM webhook delivery attempts by result.\n\
             # TYPE telswap_webhook_deliveries_total counter\n\
             telswap_webhook_deliveries_total{{result=\"delivered\"}} {}\n\
             telswap_webhook_deliveries_total{{result=\"failed\"}} {}\n\
             telswap_webhook_deliveries_total{{result=\"dead\"}} {}\n\
             # HELP telswap_webhook_pending CRM webhook deliveries waiting in the outbox.\n\
             # TYPE telswap_webhook_pending gauge\n\
             telswap_webhook_pending {}",
            o.delivered, o.failed, o.dead, o.pending
        );
        // The batched writes (page views, sessions, leases): `failed` and `dropped` are what a
        // dashboard will not show; `ok` 0 means calls are refused until a restart.
        let st = self.store.stats();
        let _ = writeln!(
            out,
            "# HELP telswap_store_writes_total Queued store writes (page views, sessions, leases) by result.\n\
             # TYPE telswap_store_writes_total counter\n\
             telswap_store_writes_total{{result=\"committed\"}} {}\n\
             telswap_store_writes_total{{result=\"failed\"}} {}\n\
             telswap_store_writes_total{{result=\"dropped\"}} {}\n\
             # HELP telswap_store_queued Store writes waiting for the writer.\n\
             # TYPE telswap_store_queued gauge\n\
             telswap_store_queued {}\n\
             # HELP telswap_store_ok 1 while the store's file is the one open and calls can be stored.\n\
             # TYPE telswap_store_ok gauge\n\
             telswap_store_ok {}",
            st.rows,
            st.failed,
            st.dropped,
            st.queued,
            u8::from(self.store.check().is_ok())
        );
        Response::builder()
            .header(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")
            .body(Full::new(Bytes::from(out)))
            .expect("static response")
    }
}

/// Compares without an early exit, so timing does not reveal how much of the token matched.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

trait WwwAuthenticate {
    fn into_www_authenticate(self) -> Self;
}

impl WwwAuthenticate for Resp {
    fn into_www_authenticate(mut self) -> Self {
        self.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer realm=\"telswap\""),
        );
        self
    }
}

fn internal(e: impl std::fmt::Display) -> (StatusCode, String) {
    tracing::error!(error = %e, "admin API");
    (StatusCode::INTERNAL_SERVER_ERROR, "internal error".into())
}

/// A store error as the API answers it: `503` with the reason when the store cannot serve now
/// (its file removed or replaced, or closing), which a restart fixes; else `500`.
fn store_error(e: crate::store::StoreError) -> (StatusCode, String) {
    use crate::store::StoreError;
    match e {
        StoreError::FileGone(_) | StoreError::Closed => {
            tracing::error!(error = %e, "admin API");
            (StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
        other => internal(other),
    }
}

fn bad_time(v: &str) -> String {
    format!("bad time {v:?}: use RFC 3339 (2026-11-27T14:03:11Z), a date (2026-11-27) or Unix milliseconds")
}

/// The end of a period given as `to`: [`parse_time`], except that a bare date (`2026-11-27`)
/// means the end of that day, so `from=D&to=D` is the whole of day D, as on the dashboard (a
/// time is taken as it is, the end excluded).
pub fn parse_end(s: &str) -> Option<i64> {
    let t = parse_time(s)?;
    Some(if is_date(s) { t + DAY_MS } else { t })
}

/// Whether `s` is a bare date (`2026-11-27`), which [`parse_time`] reads as that day's midnight.
pub fn is_date(s: &str) -> bool {
    s.len() == 10 && s.as_bytes()[4] == b'-'
}

/// A day in milliseconds.
pub const DAY_MS: i64 = 86_400_000;

/// `2026-11-27T14:03:11Z`, `2026-11-27T14:03:11+01:00`, `2026-11-27`, or Unix milliseconds.
pub fn parse_time(s: &str) -> Option<i64> {
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&m) || !(1..=days_in_month(y, m)).contains(&d) {
        return None;
    }
    let days = days_from_civil(y, m as u32, d as u32);
    let mut secs = days * 86_400;
    if b.len() == 10 {
        return Some(secs * 1000);
    }
    if !matches!(b[10], b'T' | b't' | b' ') || b.len() < 19 || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if hh > 23 || mm > 59 || ss > 59 {
        return None;
    }
    secs += hh * 3600 + mm * 60 + ss;
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        rest = &frac[n..];
    }
    let offset = match rest {
        "Z" | "z" | "" => 0,
        _ => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            if rest.len() != 6 || rest.as_bytes()[3] != b':' {
                return None;
            }
            let h: i64 = rest.get(1..3)?.parse().ok()?;
            let m: i64 = rest.get(4..6)?.parse().ok()?;
            if h > 23 || m > 59 {
                return None;
            }
            sign * (h * 3600 + m * 60)
        }
    };
    Some((secs - offset) * 1000)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A `CALL` as SPEC.md names its fields.
/// Calls a page of `GET /api/calls` holds unless `limit` says otherwise, and the most it may.
const DEFAULT_CALLS_PAGE: usize = 1000;
const MAX_CALLS_PAGE: usize = 10_000;

pub fn call_json(c: &CallRecord) -> Value {
    json!({
        "id": c.id,
        "call_sid": c.call_sid,
        "site": c.site,
        "tracking_number": c.tracking_number,
        "caller": c.caller,
        "started_at": rfc3339(c.started_at.max(0) as u64),
        "duration_s": c.duration_s,
        "status": c.status,
        "caller_city": c.caller_city,
        "caller_state": c.caller_state,
        "caller_country": c.caller_country,
        "returning_caller": c.returning_caller,
        "earlier_calls": c.earlier_calls,
        "confidence": c.confidence,
        "attribution": c.attribution,
        "recording_url": c.recording_url,
        "outcome": c.outcome.as_ref().map(|o| json!({
            "kind": o.kind, "value": o.value, "currency": o.currency, "at": rfc3339(o.at.max(0) as u64)
        })),
    })
}

/// Whether a request that changes something (any method but GET and HEAD) was sent by a page
/// of another origin: `Sec-Fetch-Site` says so where the browser sends it, else an `Origin`
/// whose host is not the one asked. Scripts (curl, a CRM's server) send neither.
fn is_cross_site_write<B>(req: &Request<B>) -> bool {
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        return false;
    }
    let h = req.headers();
    if let Some(site) = h.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return !matches!(site, "same-origin" | "none");
    }
    let Some(origin) = h.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let host = h.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    !origin_host.eq_ignore_ascii_case(host)
}

/// The methods a path of the admin listener takes, for a `405`'s `Allow`; `None`: no such
/// path. Kept beside [`Admin::handle`]'s routes, which it mirrors.
fn allowed_methods(segments: &[&str]) -> Option<&'static str> {
    match segments {
        ["api", "calls", _, "outcome"] => Some("POST, DELETE"),
        ["calls", _, "outcome"] => Some("POST"),
        ["api", "spend"] => Some("PUT"),
        ["api", "calls"]
        | ["api", "calls", _]
        | ["api", "pools"]
        | ["api", "reports"]
        | ["api", "reports", _]
        | ["api", "export", _]
        | ["metrics"]
        | [""]
        | ["calls"]
        | ["calls", _]
        | ["pools"]
        | ["reports"]
        | ["reports", _] => Some("GET, HEAD"),
        _ => None,
    }
}

fn html_resp(status: StatusCode, body: String) -> Resp {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        // The dashboard runs no script and is never framed.
        .header(header::CONTENT_SECURITY_POLICY, "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'")
        .header(header::REFERRER_POLICY, "no-referrer")
        .body(Full::new(Bytes::from(body)))
        .expect("static response")
}

/// `303 See Other`: after a form post the browser fetches the target with GET.
fn redirect(to: &str) -> Resp {
    Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(header::LOCATION, to)
        .header(header::CACHE_CONTROL, "no-store")
        .body(Full::new(Bytes::new()))
        .unwrap_or_else(|_| {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::SEE_OTHER;
            r.headers_mut()
                .insert(header::LOCATION, http::HeaderValue::from_static("/"));
            r
        })
}

fn set_cookie(r: &mut Resp, cookie: &str) {
    if let Ok(v) = http::HeaderValue::from_str(cookie) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// The first value of `key` in a query string or form body.
fn form_value(form: &str, key: &str) -> Option<String> {
    form_urlencoded::parse(form.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// The currencies of ISO 4217 in use (2025), which ad platforms take: a value or spend in any
/// other code (a typo such as `USS`) would make a currency of its own, and every ROAS that mixes it
/// `null`.
const CURRENCIES: [&str; 157] = [
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT", "BGN", "BHD", "BIF",
    "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD", "CDF", "CHF", "CLP", "CNY", "COP", "CRC",
    "CUP", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS",
    "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR", "ISK", "JMD",
    "JOD", "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL",
    "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN", "MYR", "MZN", "NAD",
    "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD",
    "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP",
    "SZL", "THB", "TJS", "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "UYU", "UZS", "VED",
    "VES", "VND", "VUV", "WST", "XAF", "XCD", "XCG", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWG",
];

/// `code` upper-cased when it is a currency of [`CURRENCIES`].
pub fn currency(code: &str) -> Option<String> {
    let code = code.trim().to_ascii_uppercase();
    CURRENCIES.binary_search(&code.as_str()).is_ok().then_some(code)
}

/// A request body of at most 16 KiB (outcomes, forms).
async fn read_body(req: Request<Incoming>) -> Result<Bytes, (StatusCode, String)> {
    Ok(Limited::new(req.into_body(), 16 * 1024)
        .collect()
        .await
        .map_err(|_| (StatusCode::PAYLOAD_TOO_LARGE, "body too large".to_string()))?
        .to_bytes())
}

fn json_resp(status: StatusCode, v: Value) -> Resp {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Full::new(Bytes::from(serde_json::to_vec(&v).expect("json"))))
        .expect("static response")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currencies_are_iso_4217_codes_in_use() {
        assert!(CURRENCIES.windows(2).all(|w| w[0] < w[1]), "sorted, for the search");
        assert_eq!(currency(" usd ").as_deref(), Some("USD"));
        assert_eq!(currency("eur").as_deref(), Some("EUR"));
        for typo in ["USS", "EUD", "GPB", "US", "DOLLARS", ""] {
            assert_eq!(currency(typo), None, "{typo}");
        }
    }

    #[test]
    fn times_parse() {
        assert_eq!(parse_time("1970-01-01"), Some(0));
        assert_eq!(parse_time("2026-11-27T14:03:11Z"), Some(1_795_788_191_000));
        assert_eq!(parse_time("2026-11-27T15:03:11+01:00"), Some(1_795_788_191_000));
        assert_eq!(parse_time("1795788191000"), Some(1_795_788_191_000));
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(parse_time("2026-13-01"), None);
        assert_eq!(parse_time("2024-02-29"), Some(1_709_164_800_000));
        assert_eq!(parse_time("2000-02-29"), Some(951_782_400_000));
        for bad in [
            "2026-02-29",
            "1900-02-29",
            "2026-02-31",
            "2026-04-31",
            "2026-12-07T99:99:99Z",
            "2026-12-07T24:00:00Z",
            "2026-12-07T12:60:00Z",
            "2026-12-07T12:00:60Z",
            "2026-12-07T12-00-00Z",
            "2026-12-07T12:00:00+25:00",
            "2026-12-07T12:00:00+01:00junk",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_bare_date_as_the_end_of_a_period_takes_in_that_whole_day() {
        let day = parse_time("2026-11-27").unwrap();
        assert_eq!(parse_end("2026-11-27"), Some(day + DAY_MS));
        // A time, or milliseconds, is the end itself.
        assert_eq!(parse_end("2026-11-27T14:03:11Z"), parse_time("2026-11-27T14:03:11Z"));
        assert_eq!(parse_end("1795788191000"), Some(1_795_788_191_000));
        assert_eq!(parse_end("2026-11-2x"), None);
    }
}
