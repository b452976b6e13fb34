//! The proxy: listeners, routing by host, and a request's life as named phases.
//!
//! `handle` runs, in order (after pingora's phases):
//! 1. [`Proxy::route`]: the site for `Host` / `:authority`, or `421` without touching any upstream;
//! 2. `visitor`: classify the visitor and let the [`NumberChooser`] pick the number (a `HEAD`
//!    leases nothing: see `Shown::Unleased`);
//! 3. [`Proxy::upstream_request`]: header hygiene (RFC 9110 §7.6.1), `X-Forwarded-*`, `Via`;
//! 4. send, with connect and response-header timeouts (`502` / `504`);
//! 5. [`Proxy::response_filter`]: decide whether the body is rewritten, fix headers;
//! 6. [`body::rewrite`]: decode, rewrite, re-encode, stream.
//!
//! Depends on `rules`, `visitor`, `pool` and `rewrite`; nothing depends on it but `main`.

pub mod body;
pub mod conn;
pub mod headers;
pub mod server;
pub mod stats;
pub mod tls;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::clock::{Clock, TokioClock};
use crate::pool::{self, Audience, Choice, Holder, How, NumberChooser};
use crate::rewrite::PageRewriter;
use crate::rules::{Attribution, BotPolicy, ConsentMode, PoolMode, RuleSet, Site, WithoutConsent};
use crate::store::ShownSource;
use crate::visitor::classify::{self, Landing};
use crate::visitor::identity::{self, CookieKey};
use crate::visitor::sessions::{Seen, SessionLog};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type ProxyBody = BoxBody<Bytes, BoxError>;

pub use stats::Stats;

/// What the listener knows about the connection a request came on; [`Proxy::handle`] adds
/// what trusted balancers say about the visitor behind it.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    /// The address the connection came from: the visitor, or a balancer in front.
    pub remote: SocketAddr,
    /// Whether the visitor's connection is HTTPS: this one is TLS, or a trusted balancer said so.
    pub tls: bool,
    /// The visitor's address: `remote`'s, or what trusted balancers said.
    pub client: std::net::IpAddr,
    /// `remote` is a trusted balancer (`--trusted-proxies`), whose forwarding headers are kept.
    pub proxied: bool,
}

impl ConnInfo {
    /// A connection accepted from `remote`, before any request on it is read.
    pub fn new(remote: SocketAddr, tls: bool) -> ConnInfo {
        ConnInfo {
            remote,
            tls,
            client: remote.ip().to_canonical(),
            proxied: false,
        }
    }
}

/// The proxy's shared state: the current rules (swapped whole on reload), upstream clients,
/// the number chooser, visitor identity and counters.
pub struct Proxy {
    rules: ArcSwap<RuleSet>,
    clients: upstream::Clients,
    chooser: Arc<dyn NumberChooser>,
    cookie_key: CookieKey,
    clock: Arc<dyn Clock>,
    sessions: SessionLog,
    calls: Option<Arc<crate::calls::Calls>>,
    /// Set by the listener ([`server::start`]); empty unless `--trusted-proxies` names some.
    trusted: ArcSwap<headers::TrustedProxies>,
    pub stats: Arc<Stats>,
}

/// What the proxy needs besides rules and a chooser.
pub struct Parts {
    pub cookie_key: CookieKey,
    pub clock: Arc<dyn Clock>,
    pub sessions: SessionLog,
    /// The telephony webhooks; without them `/_telswap/` answers `404`.
    pub calls: Option<Arc<crate::calls::Calls>>,
}

impl Parts {
    /// A random cookie key (cookies do not survive a restart), tokio's clock, a session log.
    pub fn ephemeral() -> Parts {
        Parts {
            cookie_key: CookieKey::new(identity::random_id(32).as_bytes()),
            clock: TokioClock::new(),
            sessions: SessionLog::new(1_000_000),
            calls: None,
        }
    }
}

/// What the visitor phase decided.
struct VisitorOutcome {
    shown: Shown,
    set_cookie: Option<String>,
    /// The page view to record once the origin's status says it was one.
    view: Option<PendingView>,
}

/// A page view waiting for the origin's answer: a redirect (`/contact` → `/contact/`, the
/// commonest on WordPress sites) is no page the visitor saw, and would count twice in the
/// session's history and the pages report. Its touch still counts (an ad's landing URL often
/// redirects, and may lose its click id on the way).
///
/// Recorded when dropped, so that every way out of a request records it once: with the page
/// when the origin answered with one ([`PendingView::answered`]), else the touch alone (an origin
/// that failed showed no page, but a call to the number leased for it needs the session).
struct PendingView {
    sessions: SessionLog,
    site: String,
    state: identity::VisitorState,
    device: classify::Device,
    path: String,
    shown: Option<ShownSource>,
    at: crate::clock::Millis,
    page: bool,
}

impl PendingView {
    fn answered(mut self, status: StatusCode) {
        self.page = !status.is_redirection();
    }
}

impl Drop for PendingView {
    fn drop(&mut self) {
        let st = &self.state;
        self.sessions.page_view(
            &self.site,
            &st.vid,
            &st.sid,
            st.ss,
            self.device,
            (&st.first, &st.last, st.n),
            self.page.then_some(Seen {
                path: &self.path,
                shown: self.shown.as_ref(),
            }),
            self.at,
        );
    }
}

/// The number a response is for.
#[derive(Debug, Clone)]
enum Shown {
    /// The chooser's answer: the site's own number (the page passes unchanged) or a tracking
    /// number that replaces it.
    Chosen(Choice),
    /// A `HEAD` whose `GET` would lease a session number. Nothing is leased for a `HEAD`: it is
    /// an uptime monitor or a link checker, not a visitor who might call, and would otherwise
    /// use up the paid pool. But its headers must be those of the rewritten page (RFC 9110
    /// §9.3.2: no `Content-Length` the rewrite would not keep).
    Unleased,
}

impl Shown {
    /// For the access log: the number (`original`, `unleased` or E.164), its pool and how it
    /// was given (`session`, `session-shared`, `source`, `overflow`; `-` for no pool).
    fn describe(&self) -> (String, &str, &'static str) {
        match self {
            Shown::Chosen(Choice::Original) => ("original".into(), "-", "-"),
            Shown::Chosen(Choice::Tracking { number, pool, how }) => {
                let how = match how {
                    How::Source => "source",
                    How::Session { shared: false, .. } => "session",
                    How::Session { shared: true, .. } => "session-shared",
                    How::Overflow => "overflow",
                };
                (number.e164(), pool, how)
            }
            Shown::Unleased => ("unleased".into(), "-", "-"),
        }
    }
}

impl VisitorOutcome {
    fn original() -> VisitorOutcome {
        VisitorOutcome {
            shown: Shown::Chosen(Choice::Original),
            set_cookie: None,
            view: None,
        }
    }

    /// The chooser's decision, with no cookie.
    fn chosen(choice: Choice) -> VisitorOutcome {
        VisitorOutcome {
            shown: Shown::Chosen(choice),
            set_cookie: None,
            view: None,
        }
    }
}

impl Proxy {
    pub fn new(rules: RuleSet, chooser: Arc<dyn NumberChooser>) -> Arc<Proxy> {
        Proxy::with_parts(rules, chooser, Parts::ephemeral())
    }

    pub fn with_parts(rules: RuleSet, chooser: Arc<dyn NumberChooser>, parts: Parts) -> Arc<Proxy> {
        Arc::new(Proxy {
            rules: ArcSwap::from_pointee(rules),
            clients: upstream::Clients::default(),
            chooser,
            cookie_key: parts.cookie_key,
            clock: parts.clock,
            sessions: parts.sessions,
            calls: parts.calls,
            trusted: ArcSwap::from_pointee(headers::TrustedProxies::default()),
            stats: Arc::new(Stats::default()),
        })
    }

    /// The balancers whose forwarding headers say who the visitor is ([`headers::TrustedProxies`]).
    pub fn set_trusted_proxies(&self, trusted: headers::TrustedProxies) {
        self.trusted.store(Arc::new(trusted));
    }

    /// Installs a new validated rule set. Requests in flight keep the set they started with.
    pub fn replace_rules(&self, rules: RuleSet) {
        self.chooser.rules_changed(&rules);
        self.rules.store(Arc::new(rules));
        self.clients.clear();
    }

    /// The server-side session records (page views) the visitor phase keeps.
    pub fn sessions(&self) -> &SessionLog {
        &self.sessions
    }

    /// The webhook handler, when this proxy answers calls.
    pub fn calls(&self) -> Option<&Arc<crate::calls::Calls>> {
        self.calls.as_ref()
    }

    pub fn rules(&self) -> Arc<RuleSet> {
        self.rules.load_full()
    }

    /// One request, start to finish. Never fails: errors become status pages.
    pub async fn handle(&self, req: Request<Incoming>, mut conn: ConnInfo) -> Response<ProxyBody> {
        let trusted = self.trusted.load();
        if !trusted.is_empty() {
            let v = trusted.visitor(conn.remote.ip(), conn.tls, req.headers());
            (conn.client, conn.tls, conn.proxied) = (v.ip, v.https, v.proxied);
        }
        if req.method() == http::Method::CONNECT || req.uri() == "*" {
            // Not for an origin: a reverse proxy tunnels nowhere (CONNECT), and `OPTIONS *`
            // asks about this server, whose target no origin URL can carry.
            return server_wide(req.method());
        }
        if req.uri().path() == HEALTH_PATH {
            // Before routing: a load balancer's probe names no site (often an IP for a host), and
            // is left out of the request counts, which it would otherwise swell every few seconds.
            return self.health(req.method());
        }
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        // What the access log needs of the request, taken only when it is on: the request is
        // consumed on its way upstream.
        let access = tracing::enabled!(target: ACCESS_LOG, tracing::Level::INFO)
            .then(|| (req.method().clone(), req.uri().clone(), std::time::Instant::now()));
        let routed = host_is_sound(&req).then(|| self.route(&req));
        let (mut resp, site, host) = match routed {
            None => {
                // RFC 9112 §3.2: an HTTP/1.1 request without Host, or with several, is a 400.
                self.stats.record_status(stats::NO_SITE, 400);
                let resp = status_page(StatusCode::BAD_REQUEST, "A request names exactly one host.");
                (resp, None, None)
            }
            Some(Some((site, host))) => {
                let resp = self.handle_site(&site, &host, req, conn).await;
                self.stats.record_status(&site.name, resp.status().as_u16());
                (resp, Some(site), Some(host))
            }
            Some(None) => {
                self.stats.misdirected.fetch_add(1, Ordering::Relaxed);
                self.stats.record_status(stats::NO_SITE, 421);
                let host = access.as_ref().and_then(|_| request_host(&req)).map(str::to_string);
                let resp = status_page(StatusCode::MISDIRECTED_REQUEST, "This host is not served here.");
                (resp, None, host)
            }
        };
        if let Some((method, uri, started)) = access {
            let shown = resp.extensions_mut().remove::<Shown>();
            let (number, pool, how) = shown.as_ref().map_or(("-".into(), "-", "-"), Shown::describe);
            tracing::info!(
                target: ACCESS_LOG,
                remote = %conn.client,
                method = %method,
                host = host.as_deref().unwrap_or("-"),
                target = uri.path_and_query().map_or("/", |p| p.as_str()),
                status = resp.status().as_u16(),
                site = site.as_ref().map_or(stats::NO_SITE, |s| s.name.as_str()),
                number = %number,
                pool,
                how,
                ms = format_args!("{:.2}", started.elapsed().as_secs_f64() * 1e3),
            );
        }
        resp
    }

    /// `GET /_telswap/health`: `200` while this process serves its rules and can store calls,
    /// for load balancers and orchestrators; the body says how many sites. `503` when the store
    /// cannot keep calls (its file removed or replaced): a restart is what fixes it.
    fn health(&self, method: &http::Method) -> Response<ProxyBody> {
        let builder = Response::builder()
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .header(header::CACHE_CONTROL, "no-store");
        let store = self.calls.as_ref().map_or(Ok(()), |c| c.check_store());
        let (builder, body) = match (method, store) {
            (&http::Method::GET | &http::Method::HEAD, Err(e)) => (
                builder.status(StatusCode::SERVICE_UNAVAILABLE),
                format!("unavailable: {e}\n"),
            ),
            (&http::Method::GET | &http::Method::HEAD, Ok(())) => (
                builder.status(StatusCode::OK),
                format!("ok: {} sites\n", self.rules.load().sites.len()),
            ),
            _ => (
                builder
                    .status(StatusCode::METHOD_NOT_ALLOWED)
                    .header(header::ALLOW, "GET, HEAD"),
                "GET or HEAD only\n".to_string(),
            ),
        };
        builder
            .body(Full::new(Bytes::from(body)).map_err(|e| match e {}).boxed())
            .expect("static response")
    }

    /// Phases 2 to 6 for a request routed to `site`.
    async fn handle_site(
        &self,
        site: &Arc<Site>,
        host: &str,
        mut req: Request<Incoming>,
        conn: ConnInfo,
    ) -> Response<ProxyBody> {
        if req.uri().path().starts_with("/_telswap/") {
            return match &self.calls {
                Some(calls) => calls.handle(&self.rules.load(), site, host, req, conn).await,
                None => status_page(StatusCode::NOT_FOUND, "Not found."),
            };
        }

        // Only page views count: assets pass with the original number and no cookie.
        // A prefetch or prerender: read once, for what counts as a page view and for its touch.
        let speculative = headers::is_speculative(req.headers());
        let page_view = is_page_view(&req, speculative);
        let mut visitor = if page_view {
            self.visitor(site, &req, conn, speculative)
        } else {
            VisitorOutcome::original()
        };
        if !site.pools.is_empty() && page_view {
            // A page on a DNI site is never revalidated: a 304 would bring back whatever number
            // the browser's cached copy showed, not the one this visitor holds now.
            req.headers_mut().remove(header::IF_NONE_MATCH);
            req.headers_mut().remove(header::IF_MODIFIED_SINCE);
            // Nor, when HTML is asked for, answered with a byte range: ranges of the origin's
            // bytes do not address the rewrite, and a resumed download would splice two numbers
            // into one. Media and downloads keep their ranges (a video player needs its 206s).
            if headers::asks_for_html(req.headers()) == Some(true) {
                req.headers_mut().remove(header::RANGE);
                req.headers_mut().remove(header::IF_RANGE);
            }
        }

        // A protocol switch carries no body: one that declares one is forwarded as a plain
        // request (its `Upgrade` dropped as hop-by-hop), never with its body cut off under a
        // `Content-Length` the origin would then read from the next visitor's request.
        let upgrade = headers::wants_upgrade(req.headers())
            && req.version() == Version::HTTP_11
            && hyper::body::Body::size_hint(req.body()).exact() == Some(0);
        let client_upgrade = upgrade.then(|| match req.extensions_mut().remove::<conn::ManualUpgrade>() {
            Some(manual) => ClientUpgrade::Manual(manual),
            None => ClientUpgrade::Hyper(hyper::upgrade::on(&mut req)),
        });
        let is_head = req.method() == http::Method::HEAD;
        let accepts = headers::Accepts::of(req.headers());
        // Which page this is, for replaying an earlier rewrite of the same bytes (cheap: a
        // reference-counted clone).
        let path = req.uri().path_and_query().cloned();
        let (upstream_req, body_sent) = match self.upstream_request(site, host, req, conn, upgrade) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(site = %site.name, error = %e, "bad upstream request");
                return status_page(StatusCode::BAD_REQUEST, "Bad request.");
            }
        };

        let client = match self.clients.for_site(site) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(site = %site.name, error = %e, "upstream client");
                return status_page(StatusCode::BAD_GATEWAY, "The site could not be reached.");
            }
        };
        let sent = std::time::Instant::now();
        let exchange = client.request(upstream_req);
        // `response_timeout` is the wait for the answer once the request is sent: an upload
        // that flows is not cut (its silences are, `ClientBodyError::Stalled`).
        let answered = match body_sent {
            None => tokio::time::timeout(site.response_timeout, exchange).await,
            Some(body_sent) => {
                tokio::pin!(exchange);
                tokio::select! {
                    r = &mut exchange => Ok(r),
                    _ = body_sent => tokio::time::timeout(site.response_timeout, exchange).await,
                }
            }
        };
        let mut resp = match answered {
            Ok(Ok(r)) => {
                self.stats.upstream_latency.observe(sent.elapsed());
                r
            }
            Ok(Err(e)) if is_timeout(&e) => {
                self.stats.upstream_timeouts.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(site = %site.name, error = %error_chain(&e), "upstream connect timed out");
                return status_page(StatusCode::GATEWAY_TIMEOUT, "The site took too long to answer.");
            }
            Ok(Err(ref e)) if let Some(bad) = caused_by::<ClientBodyError>(e) => {
                // The visitor's own body was malformed, cut or stalled: not the origin's fault.
                tracing::debug!(site = %site.name, error = %error_chain(e), "bad request body");
                return match bad {
                    ClientBodyError::Stalled(_) => {
                        status_page(StatusCode::REQUEST_TIMEOUT, "The request body stalled.")
                    }
                    ClientBodyError::Read(_) => status_page(StatusCode::BAD_REQUEST, "Bad request."),
                };
            }
            Ok(Err(e)) => {
                self.stats.upstream_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(site = %site.name, error = %error_chain(&e), "upstream failed");
                return status_page(StatusCode::BAD_GATEWAY, "The site could not be reached.");
            }
            Err(_) => {
                self.stats.upstream_timeouts.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(site = %site.name, "upstream response headers timed out");
                return status_page(StatusCode::GATEWAY_TIMEOUT, "The site took too long to answer.");
            }
        };

        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(client_upgrade) = client_upgrade {
                let upstream_upgrade = hyper::upgrade::on(&mut resp);
                tokio::spawn(tunnel(client_upgrade, upstream_upgrade));
            }
            let (mut parts, _) = resp.into_parts();
            headers::strip_hop_by_hop(&mut parts.headers, true);
            return Response::from_parts(parts, Empty::new().map_err(|e| match e {}).boxed());
        }

        let (mut parts, body) = resp.into_parts();
        if let Some(view) = visitor.view.take() {
            view.answered(parts.status);
        }
        let public = if conn.tls { "https" } else { "http" };
        headers::public_locations(&mut parts.headers, &site.upstream, public, host);
        let body = body::idle_timeout(body.map_err(BoxError::from).boxed(), site.response_timeout);
        let page = Page {
            host,
            path: path.as_ref().map_or("/", |p| p.as_str()),
        };
        let body = self.response_filter(site, &visitor.shown, (is_head, accepts), page, &mut parts, body);
        if visitor.set_cookie.is_some() {
            // A response carrying one visitor's identity must never be stored by a shared cache.
            headers::make_private(&mut parts.headers);
        }
        if let Some(cookie) = visitor.set_cookie
            && let Ok(v) = HeaderValue::from_str(&cookie)
        {
            parts.headers.append(header::SET_COOKIE, v);
        }
        if tracing::enabled!(target: ACCESS_LOG, tracing::Level::INFO) {
            parts.extensions.insert(visitor.shown);
        }
        Response::from_parts(parts, body)
    }

    /// Phase 1: the site for this request's host.
    fn route(&self, req: &Request<Incoming>) -> Option<(Arc<Site>, String)> {
        let host = request_host(req)?;
        let site = self.rules.load().site_for_host(host)?.clone();
        Some((site, host.to_string()))
    }

    /// Phase 2: who is this visitor (of a page view), and which number do they see.
    fn visitor(&self, site: &Site, req: &Request<Incoming>, conn: ConnInfo, speculative: bool) -> VisitorOutcome {
        let h = req.headers();
        let ua = h.get(header::USER_AGENT).and_then(|v| v.to_str().ok());
        if site.bots == BotPolicy::Original && classify::is_bot(ua) {
            return VisitorOutcome::original();
        }
        let path = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let landing = Landing {
            query: req.uri().query().unwrap_or(""),
            referrer: h.get(header::REFERER).and_then(|v| v.to_str().ok()),
            own_hosts: &site.hosts,
            capture: &site.capture,
        };
        let touch = classify::classify(&landing);
        let cookies = || h.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok());
        let consent = match site.consent.mode {
            ConsentMode::None => true,
            ConsentMode::Gpc => h
                .get("sec-gpc")
                .and_then(|v| v.to_str().ok())
                .is_none_or(|v| v.trim() != "1"),
            ConsentMode::Cookie => site
                .consent
                .cookie
                .as_ref()
                .is_some_and(|(k, v)| identity::has_cookie(cookies(), k, v)),
        };
        if !consent {
            // No cookie, nothing stored: at most a source number for this one page.
            if site.consent.without == WithoutConsent::Original {
                return VisitorOutcome::original();
            }
            let audience = touch.as_ref().map(|t| Audience {
                channel: t.channel,
                source: &t.source,
                medium: &t.medium,
                campaign: t.campaign.as_deref(),
            });
            // Without a holder the chooser leases nothing, so a HEAD is answered the same way.
            return VisitorOutcome::chosen(self.chooser.choose(site, audience.as_ref(), None));
        }
        let prev =
            identity::from_cookie_headers(cookies()).find_map(|v| identity::decode(v, &self.cookie_key, &site.name));
        // A prefetch from a page of the site (a hovered link) is no landing: a link carrying
        // `utm_*` or a click id must not make the visitor's source one they never followed.
        let hovered = prev.is_some() && speculative && classify::is_internal(&landing);
        let touch = touch.filter(|_| !hovered);
        let now = self.clock.now_ms();
        let visit = identity::visit(prev, touch.as_ref(), path, now, &mut || identity::time_ordered_id(now));
        let st = &visit.state;
        let deciding = identity::deciding_touch(st, site.attribution == Attribution::First);
        let audience = deciding.map(identity::StoredTouch::audience);
        if req.method() == http::Method::HEAD {
            // Nothing leased, stored or set: see `Shown::Unleased`.
            let session_pool = audience
                .as_ref()
                .and_then(|a| pool::matching_pool(site, a, true))
                .is_some_and(|p| p.mode == PoolMode::Session);
            if session_pool {
                return VisitorOutcome {
                    shown: Shown::Unleased,
                    set_cookie: None,
                    view: None,
                };
            }
            return VisitorOutcome::chosen(self.chooser.choose(site, audience.as_ref(), None));
        }
        let holder = Holder {
            visitor: &st.vid,
            session: &st.sid,
        };
        let choice = self.chooser.choose(site, audience.as_ref(), Some(&holder));
        // A source number is everyone's: which audiences saw it is what a call to it can learn.
        let shown = match (&choice, &audience) {
            (
                Choice::Tracking {
                    number,
                    how: How::Source,
                    ..
                },
                Some(a),
            ) => Some(ShownSource {
                number: number.e164(),
                channel: a.channel.as_str().to_string(),
                source: a.source.to_string(),
            }),
            _ => None,
        };
        let device = classify::device(ua, h.get("sec-ch-ua-mobile").and_then(|v| v.to_str().ok()));
        let cookie = identity::set_cookie(&identity::encode(st, &self.cookie_key, &site.name), conn.tls);
        VisitorOutcome {
            shown: Shown::Chosen(choice),
            set_cookie: Some(cookie),
            view: Some(PendingView {
                sessions: self.sessions.clone(),
                site: site.name.clone(),
                state: visit.state,
                device,
                path: path.to_string(),
                shown,
                at: now,
                page: false,
            }),
        }
    }

    /// Phase 3: the request as the origin should see it.
    fn upstream_request(
        &self,
        site: &Site,
        host: &str,
        req: Request<Incoming>,
        conn: ConnInfo,
        upgrade: bool,
    ) -> Result<(Request<ProxyBody>, Option<BodySent>), http::Error> {
        let (mut parts, body) = req.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers, upgrade);
        if parts.version == Version::HTTP_2 {
            headers::join_cookie_crumbs(&mut parts.headers);
        }
        let proto = if conn.tls { "https" } else { "http" };
        headers::add_forwarding(
            &mut parts.headers,
            (
                &conn.remote.ip().to_canonical().to_string(),
                &conn.client.to_string(),
                conn.proxied,
            ),
            proto,
            host,
            parts.version,
        );
        // HTTP/2 carries the host in `:authority`; the origin (HTTP/1.1) needs it as `Host`.
        parts.headers.insert(header::HOST, HeaderValue::from_str(host)?);
        if let Some(ae) = headers::upstream_accept_encoding(&parts.headers) {
            parts.headers.insert(header::ACCEPT_ENCODING, ae);
        }
        let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let authority = site.upstream.authority().map(|a| a.as_str()).unwrap_or("");
        let scheme = site.upstream.scheme_str().unwrap_or("http");
        parts.uri = format!("{scheme}://{authority}{path}").parse()?;
        parts.version = Version::HTTP_11;
        if upgrade || hyper::body::Body::size_hint(&body).exact() == Some(0) {
            let body = Empty::new().map_err(|e| match e {}).boxed();
            return Ok((Request::from_parts(parts, body), None));
        }
        // A body to send: its errors are the visitor's, a silence of `response_timeout` in it
        // ends it (the visitor stalled), and its end starts the wait for the answer.
        let body = body.map_err(|e| Box::new(ClientBodyError::Read(e)) as BoxError).boxed();
        let stalled = |idle| Box::new(ClientBodyError::Stalled(idle)) as BoxError;
        let body = body::idle_timeout_with(body, site.response_timeout, stalled);
        let (tx, rx) = tokio::sync::oneshot::channel();
        Ok((Request::from_parts(parts, body::signal_end(body, tx)), Some(rx)))
    }

    /// Phase 5: headers, and whether the body goes through the rewriter.
    fn response_filter(
        &self,
        site: &Site,
        shown: &Shown,
        (is_head, accepts): (bool, headers::Accepts),
        page: Page<'_>,
        parts: &mut http::response::Parts,
        body: ProxyBody,
    ) -> ProxyBody {
        headers::strip_hop_by_hop(&mut parts.headers, false);
        headers::add_via(&mut parts.headers, parts.version);
        let (is_html, charset) = headers::html_content_type(&parts.headers);
        let status = parts.status.as_u16();
        // 206 (a byte range of the original), 304 (the visitor's cached copy) and the bodiless
        // statuses pass untouched.
        let has_body = !is_head && !matches!(status, 100..=199 | 204 | 205 | 206 | 304);
        if !is_html || matches!(status, 206 | 304) {
            return body;
        }
        // A page that may show a tracking number must never be stored by a shared cache, even
        // when this visitor sees the original: the next visitor may not. Nor shown again from
        // the browser's own cache without asking, whatever number it shows: the number this
        // visitor should see changes with their session and source (a session number lapses
        // and goes to another visitor; the organic visitor of last week who comes back from a
        // paid ad and follows a link to `/` must see the ad's number, not last week's).
        if !site.pools.is_empty() {
            headers::make_private(&mut parts.headers);
            headers::revalidate_always(&mut parts.headers);
        }
        let number = match shown {
            Shown::Chosen(Choice::Original) => return body,
            Shown::Chosen(Choice::Tracking { number, .. }) => Some(number),
            Shown::Unleased => None,
        };
        let coding = headers_coding(parts);
        let Some(coding) = coding else { return body };
        // The origin's coding if the visitor takes it, else the page goes out decoded.
        let out = if accepts.allows(coding) {
            coding
        } else {
            body::Coding::Identity
        };
        // A label no browser knows (`charset=`, `charset=none`) is ignored, as browsers ignore
        // it: the page's `<meta>` or the prescan decides, as with no label at all.
        let encoding = charset
            .as_deref()
            .and_then(|label| encoding_rs::Encoding::for_label(label.as_bytes()));
        let Some(number) = number else {
            // A HEAD with no number chosen: the headers a GET's rewrite would give.
            if PageRewriter::can_rewrite(encoding) {
                rewritten_headers(&mut parts.headers, coding != out);
            }
            return body;
        };
        let to = site.replacement(number);
        // Bodiless answers (HEAD, 204, 205) are never recorded nor replayed; nor is a page that
        // says it is larger than a recording may be: its first MiB would be copied (as it came
        // and as rewritten) only to be dropped, and again on every `VOLATILE_RETRY`-th response.
        // Its length is hyper's reading of `Content-Length` (validated, and none for a chunked
        // body), which the body's size hint carries exactly.
        let too_large = coding == body::Coding::Identity
            && hyper::body::Body::size_hint(&body)
                .exact()
                .is_some_and(|n| n > crate::rewrite::replay::MAX_PAGE as u64);
        let key = (has_body && !too_large).then(|| page.key().into_boxed_str());
        let Some(rw) = PageRewriter::for_page(&site.page, to, encoding, key) else {
            return body;
        };
        rewritten_headers(&mut parts.headers, coding != out);
        if !has_body {
            return body;
        }
        self.stats.rewritten.fetch_add(1, Ordering::Relaxed);
        body::rewrite(body, coding, out, rw, self.stats.clone())
    }
}

/// The page a response is for: the host the visitor asked and the path with its query.
#[derive(Clone, Copy)]
struct Page<'a> {
    host: &'a str,
    path: &'a str,
}

impl Page<'_> {
    /// The name its rewrite is recorded under (`rewrite::replay`): host, path and query, less
    /// the parameters that only say where the visitor came from (`utm_*`, click ids), which are
    /// new on every ad click while the page is not. A recording is used only when the bytes
    /// match, so this only decides which one is tried.
    fn key(&self) -> String {
        let (path, query) = self.path.split_once('?').unwrap_or((self.path, ""));
        let mut key = String::with_capacity(self.host.len() + self.path.len());
        key.push_str(self.host);
        key.push_str(path);
        let mut sep = '?';
        for param in query.split('&').filter(|p| !p.is_empty()) {
            let name = param.split_once('=').map_or(param, |(n, _)| n);
            if !is_tracking_param(name) {
                key.push(sep);
                key.push_str(param);
                sep = '&';
            }
        }
        key
    }
}

/// The `tracing` target of the access log, one line per request (not the health checks):
/// off by default; `TELSWAP_LOG=info,access=info` turns it on.
pub const ACCESS_LOG: &str = "access";

/// `CONNECT` (405) and `OPTIONS *` (200, with the methods pages take).
fn server_wide(method: &http::Method) -> Response<ProxyBody> {
    let status = if *method == http::Method::OPTIONS {
        StatusCode::OK
    } else {
        StatusCode::METHOD_NOT_ALLOWED
    };
    Response::builder()
        .status(status)
        .header(header::ALLOW, "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
        .header(header::CONTENT_LENGTH, "0")
        .body(Empty::new().map_err(|e| match e {}).boxed())
        .expect("static response")
}

/// The public listeners' health check, answered for any host.
pub const HEALTH_PATH: &str = "/_telswap/health";

/// The host a request names: its target's authority (absolute form, HTTP/2's `:authority`),
/// else its `Host` field.
fn request_host<B>(req: &Request<B>) -> Option<&str> {
    req.uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| req.headers().get(header::HOST).and_then(|h| h.to_str().ok()))
}

/// Whether the request names its host once: at most one `Host` field, and for HTTP/1.1 one at
/// all, unless the target is absolute (HTTP/2 carries `:authority`).
fn host_is_sound<B>(req: &Request<B>) -> bool {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (_, Some(_)) => false,
        (Some(_), None) => true,
        (None, None) => req.version() != Version::HTTP_11 || req.uri().authority().is_some(),
    }
}

/// URL parameters that say where a visit came from, not which page it is.
fn is_tracking_param(name: &str) -> bool {
    const OTHERS: [&str; 4] = ["_gl", "gad_source", "gad_campaignid", "srsltid"];
    name.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("utm_"))
        || classify::ClickIdKind::from_param(name).is_some()
        || OTHERS.iter().any(|o| o.eq_ignore_ascii_case(name))
}

/// Whether a request is a page view (a document), not an asset, a fetch or a form post:
/// what the request says of wanting HTML ([`headers::asks_for_html`]: `Sec-Fetch-Dest`, then
/// `Accept`), else the path's extension.
///
/// A script's fetch that asks for HTML is a page view too: Turbo (Rails' default), pjax and
/// their kin navigate by fetching the next page and swapping it in, so the visitor sees its
/// number as on any page, and must see theirs. Other fetches (JSON, `*/*`) are not.
/// `speculative`: the request is a prefetch or prerender ([`headers::is_speculative`]).
fn is_page_view(req: &Request<Incoming>, speculative: bool) -> bool {
    if !matches!(*req.method(), http::Method::GET | http::Method::HEAD) {
        return false;
    }
    let h = req.headers();
    // A `<link rel=prefetch>` is fetched as a script's fetch is (`Sec-Fetch-Dest: empty`),
    // whatever it fetches, with the navigation's `Accept` (Chrome) or `*/*` (Firefox): its path
    // tells first, then an `Accept` that rules HTML out. A page it fetches must carry the
    // visitor's number, not the site's: the browser may show that copy on the next click
    // without asking again (Chrome's five minutes), and for the same reason it counts as seen.
    let prefetch = speculative
        && h.get("sec-fetch-dest")
            .is_none_or(|d| d.as_bytes().eq_ignore_ascii_case(b"empty"));
    if prefetch {
        return !has_asset_extension(req.uri().path()) && headers::asks_for_html_by_accept(h) != Some(false);
    }
    if let Some(said) = headers::asks_for_html(h) {
        return said;
    }
    !has_asset_extension(req.uri().path())
}

/// Whether a path's last segment ends like a stylesheet, script, image, font or download.
fn has_asset_extension(path: &str) -> bool {
    const ASSETS: &[&str] = &[
        "css", "js", "mjs", "map", "png", "jpg", "jpeg", "gif", "svg", "webp", "avif", "ico", "woff", "woff2", "ttf",
        "otf", "eot", "json", "xml", "txt", "pdf", "mp4", "webm", "mp3", "zip", "wasm",
    ];
    let last = path.rsplit('/').next().unwrap_or("");
    last.rsplit_once('.')
        .is_some_and(|(_, ext)| ASSETS.iter().any(|a| a.eq_ignore_ascii_case(ext)))
}

/// The headers of a page that is rewritten (`decoded`: and sent without its content coding).
fn rewritten_headers(h: &mut http::HeaderMap, decoded: bool) {
    headers::drop_representation_headers(h);
    if decoded {
        h.remove(header::CONTENT_ENCODING);
    }
}

fn headers_coding(parts: &http::response::Parts) -> Option<body::Coding> {
    let mut values = parts.headers.get_all(header::CONTENT_ENCODING).iter();
    let first = values.next();
    if values.next().is_some() {
        return None;
    }
    let v = match first {
        Some(v) => Some(v.to_str().ok()?),
        None => None,
    };
    if v.is_some_and(|v| v.contains(',')) {
        return None;
    }
    body::Coding::from_header(v)
}

/// The visitor's side of a protocol switch: the socket itself from the connection loop
/// ([`conn::ManualUpgrade`], plain or TLS), or hyper's upgrade where a connection is served
/// by hyper alone.
enum ClientUpgrade {
    Hyper(hyper::upgrade::OnUpgrade),
    Manual(conn::ManualUpgrade),
}

/// Relays bytes both ways once both sides have switched protocols (WebSocket).
async fn tunnel(client: ClientUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    let mut u = match upstream.await {
        Ok(u) => TokioIo::new(u),
        Err(e) => return tracing::debug!(error = %e, "upstream upgrade failed"),
    };
    let _ = match client {
        ClientUpgrade::Hyper(on) => match on.await {
            Ok(c) => tokio::io::copy_bidirectional(&mut TokioIo::new(c), &mut u).await,
            Err(e) => return tracing::debug!(error = %e, "upgrade failed"),
        },
        ClientUpgrade::Manual(manual) => match manual.socket().await {
            Some(mut c) => tokio::io::copy_bidirectional(&mut c, &mut u).await,
            None => return tracing::debug!("the connection ended before switching protocols"),
        },
    };
}

/// Fires when the request body has been sent ([`body::signal_end`]).
type BodySent = tokio::sync::oneshot::Receiver<()>;

/// An error of the visitor's request body, as it comes back through the upstream client.
#[derive(Debug)]
enum ClientBodyError {
    /// Malformed or cut.
    Read(hyper::Error),
    /// Nothing came for this long.
    Stalled(std::time::Duration),
}

impl std::fmt::Display for ClientBodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientBodyError::Read(e) => write!(f, "reading the request body: {e}"),
            ClientBodyError::Stalled(idle) => write!(f, "the request body sent nothing for {idle:?}"),
        }
    }
}

impl std::error::Error for ClientBodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientBodyError::Read(e) => Some(e),
            ClientBodyError::Stalled(_) => None,
        }
    }
}

/// An error and every error it came from, outermost first.
fn chain<'a>(e: &'a (dyn std::error::Error + 'static)) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e), |s| s.source())
}

/// The first error of type `T` in an error's chain.
fn caused_by<'a, T: std::error::Error + 'static>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a T> {
    chain(e).find_map(|s| s.downcast_ref::<T>())
}

fn is_timeout(e: &hyper_util::client::legacy::Error) -> bool {
    chain(e).any(|s| {
        s.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
            || s.to_string().contains("timed out")
    })
}

/// An error and its causes, for logs: a client error's own text (`client error (Connect)`) does
/// not tell a refused port from a certificate it would not trust.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    chain(e).map(|s| s.to_string()).collect::<Vec<_>>().join(": ")
}

/// A small page for errors that says what happened to the visitor and nothing about internals.
pub fn status_page(status: StatusCode, message: &str) -> Response<ProxyBody> {
    let reason = status.canonical_reason().unwrap_or("");
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{code} {reason}</title></head>\
         <body><h1>{code} {reason}</h1><p>{message}</p></body></html>\n",
        code = status.as_u16()
    );
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Full::new(Bytes::from(html)).map_err(|e| match e {}).boxed())
        .expect("static response")
}
