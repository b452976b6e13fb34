//! The admin listener: the calls and pools API (and, later, the dashboard), behind the admin token.
//!
//! Every path needs `Authorization: Bearer $TELSWAP_ADMIN_TOKEN` (compared in constant time;
//! the token is never logged). Reads the store and the pools; writes only outcomes.

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

use crate::clock::rfc3339;
use crate::pool::Pools;
use crate::proxy::Proxy;
use crate::rules::PoolMode;
use crate::store::{CallFilter, CallRecord, Outcome, Store};

pub mod export;
pub mod reports;
pub mod spend;

/// What the admin API reads.
pub struct Admin {
    token: String,
    store: Arc<dyn Store>,
    pools: Arc<Pools>,
    proxy: Arc<Proxy>,
}

type Resp = Response<Full<Bytes>>;

impl Admin {
    pub fn new(token: String, store: Arc<dyn Store>, pools: Arc<Pools>, proxy: Arc<Proxy>) -> Arc<Admin> {
        Arc::new(Admin {
            token,
            store,
            pools,
            proxy,
        })
    }

    /// Binds `addr` and serves until the returned task is aborted.
    pub async fn serve(
        self: Arc<Self>,
        addr: SocketAddr,
    ) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let me = self.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let me = me.clone();
                        async move { Ok::<_, Infallible>(me.handle(req).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok((local, task))
    }

    fn authorized(&self, req: &Request<Incoming>) -> bool {
        let Some(v) = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let Some(given) = v.strip_prefix("Bearer ").map(str::trim) else {
            return false;
        };
        constant_time_eq(given.as_bytes(), self.token.as_bytes())
    }

    pub async fn handle(&self, req: Request<Incoming>) -> Resp {
        if !self.authorized(&req) {
            return json_resp(
                StatusCode::UNAUTHORIZED,
                json!({"error": "missing or wrong admin token"}),
            )
            .into_www_authenticate();
        }
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or("").to_string();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let result = match (req.method().clone(), segments.as_slice()) {
            (Method::GET, ["api", "calls"]) => self.list_calls(&query).await,
            (Method::GET, ["api", "calls", id]) => self.one_call(id).await,
            (Method::POST, ["api", "calls", id, "outcome"]) => {
                let id = id.to_string();
                self.set_outcome(&id, req).await
            }
            (Method::GET, ["api", "pools"]) => Ok(self.pools_json()),
            (Method::GET, ["api", "reports"]) => Ok(self.report_list()),
            (Method::GET, ["api", "reports", name]) => self.report(name, &req).await,
            (Method::GET, ["api", "export", file]) => self.export(file, &req).await,
            (Method::PUT, ["api", "spend"]) => self.put_spend(req).await,
            (Method::GET, ["metrics"]) => Ok(self.metrics()),
            (_, ["api", ..]) | (_, ["metrics"]) => Err((StatusCode::NOT_FOUND, "no such endpoint".to_string())),
            _ => Err((StatusCode::NOT_FOUND, "not found".to_string())),
        };
        match result {
            Ok(r) => r,
            Err((status, msg)) => json_resp(status, json!({"error": msg})),
        }
    }

    async fn list_calls(&self, query: &str) -> Result<Resp, (StatusCode, String)> {
        let mut f = CallFilter {
            from: None,
            to: None,
            site: None,
            limit: 1000,
        };
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            match k.as_ref() {
                "from" if !v.is_empty() => {
                    f.from = Some(parse_time(&v).ok_or((StatusCode::BAD_REQUEST, bad_time(&v)))?)
                }
                "to" if !v.is_empty() => f.to = Some(parse_time(&v).ok_or((StatusCode::BAD_REQUEST, bad_time(&v)))?),
                "site" if !v.is_empty() => f.site = Some(v.into_owned()),
                "limit" => {
                    f.limit = v
                        .parse()
                        .map_err(|_| (StatusCode::BAD_REQUEST, "limit must be a number".into()))?
                }
                _ => {}
            }
        }
        let store = self.store.clone();
        let calls = tokio::task::spawn_blocking(move || store.calls(&f))
            .await
            .map_err(internal)?
            .map_err(internal)?;
        Ok(json_resp(
            StatusCode::OK,
            json!({"calls": calls.iter().map(call_json).collect::<Vec<_>>()}),
        ))
    }

    async fn one_call(&self, id: &str) -> Result<Resp, (StatusCode, String)> {
        let store = self.store.clone();
        let id = id.to_string();
        match tokio::task::spawn_blocking(move || store.call(&id))
            .await
            .map_err(internal)?
            .map_err(internal)?
        {
            Some(c) => Ok(json_resp(StatusCode::OK, call_json(&c))),
            None => Err((StatusCode::NOT_FOUND, "no such call".into())),
        }
    }

    async fn set_outcome(&self, id: &str, req: Request<Incoming>) -> Result<Resp, (StatusCode, String)> {
        let body = Limited::new(req.into_body(), 16 * 1024)
            .collect()
            .await
            .map_err(|_| (StatusCode::PAYLOAD_TOO_LARGE, "body too large".to_string()))?
            .to_bytes();
        let v: Value =
            serde_json::from_slice(&body).map_err(|e| (StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")))?;
        let kind = v.get("kind").and_then(Value::as_str).filter(|k| !k.trim().is_empty());
        let Some(kind) = kind else {
            return Err((StatusCode::BAD_REQUEST, "kind is required, e.g. \"sale\"".into()));
        };
        let value = match v.get("value") {
            None | Some(Value::Null) => None,
            Some(x) => Some(x.as_f64().filter(|f| f.is_finite() && *f >= 0.0).ok_or((
                StatusCode::BAD_REQUEST,
                "value must be a non-negative number".to_string(),
            ))?),
        };
        let currency = match v.get("currency") {
            None | Some(Value::Null) => None,
            Some(Value::String(c)) if c.len() == 3 && c.bytes().all(|b| b.is_ascii_alphabetic()) => {
                Some(c.to_ascii_uppercase())
            }
            Some(_) => {
                return Err((
                    StatusCode::BAD_REQUEST,
                    "currency must be an ISO 4217 code such as USD".into(),
                ));
            }
        };
        let outcome = Outcome {
            kind: kind.to_string(),
            value,
            currency,
            at: self.pools.clock().now_ms() as i64,
        };
        let store = self.store.clone();
        let id2 = id.to_string();
        let o2 = outcome.clone();
        let found = tokio::task::spawn_blocking(move || store.set_outcome(&id2, &o2))
            .await
            .map_err(internal)?
            .map_err(internal)?;
        if !found {
            return Err((StatusCode::NOT_FOUND, "no such call".into()));
        }
        self.one_call(id).await
    }

    fn pools_json(&self) -> Resp {
        let rules = self.proxy.rules();
        let pools: Vec<Value> = self
            .pools
            .stats(&rules)
            .into_iter()
            .map(|p| {
                json!({
                    "site": p.site,
                    "name": p.name,
                    "mode": match p.mode { PoolMode::Session => "session", PoolMode::Source => "source" },
                    "size": p.size,
                    "leased": p.leased,
                    "peak_leased": p.peak_leased,
                    "exhausted": p.exhausted,
                    "handed_over": p.handed_over,
                    "recommended_size": Value::Null,
                })
            })
            .collect();
        json_resp(StatusCode::OK, json!({"pools": pools}))
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
            "requests_total",
            "Requests received on the public listeners.",
            s.requests.load(Relaxed),
        );
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
            "numbers_swapped_total",
            "Phone numbers replaced in pages.",
            s.swapped.load(Relaxed),
        );
        counter(
            "bail_outs_total",
            "Responses where the rewriter hit its memory limit.",
            s.bail_outs.load(Relaxed),
        );
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

fn bad_time(v: &str) -> String {
    format!("bad time {v:?}: use RFC 3339 (2026-11-27T14:03:11Z), a date (2026-11-27) or Unix milliseconds")
}

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
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let days = days_from_civil(y, m as u32, d as u32);
    let mut secs = days * 86_400;
    if b.len() == 10 {
        return Some(secs * 1000);
    }
    if !matches!(b[10], b'T' | b't' | b' ') || b.len() < 19 {
        return None;
    }
    secs += num(11..13)? * 3600 + num(14..16)? * 60 + num(17..19)?;
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
            let h: i64 = rest.get(1..3)?.parse().ok()?;
            let m: i64 = rest.get(4..6)?.parse().ok()?;
            sign * (h * 3600 + m * 60)
        }
    };
    Some((secs - offset) * 1000)
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
    fn times_parse() {
        assert_eq!(parse_time("1970-01-01"), Some(0));
        assert_eq!(parse_time("2026-11-27T14:03:11Z"), Some(1_795_788_191_000));
        assert_eq!(parse_time("2026-11-27T15:03:11+01:00"), Some(1_795_788_191_000));
        assert_eq!(parse_time("1795788191000"), Some(1_795_788_191_000));
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(parse_time("2026-13-01"), None);
    }
}
