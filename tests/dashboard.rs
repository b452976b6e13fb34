//! The admin listener as a browser and a scraper see it: login, the session cookie, every
//! dashboard page, the outcome form, the pools page's recommended size, and `/metrics`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioExecutor;
use telswap::app::App;
use telswap::calls::signature::twilio_signature;
use telswap::clock::ManualClock;

const TOKEN: &str = "test-auth-token";
const ADMIN: &str = "admin-secret-token";
const PAGE: &str = "<html><body><p>Call <b>555-010-0000</b></p></body></html>";

fn rules(origin: std::net::SocketAddr) -> String {
    format!(
        r#"hosts = ["site.test"]
upstream = "http://{origin}"
numbers = ["+1 555-010-0000"]

[telephony]
auth_token_env = "TEST_TOKEN"

[[pool]]
name = "ads"
mode = "session"
when.channel = ["paid_search"]
numbers = ["+1 555-010-1001", "+1 555-010-1002"]
idle_timeout = "30m"
"#
    )
}

type Client = hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

struct Env {
    app: App,
    client: Client,
    clock: Arc<ManualClock>,
}

struct Answer {
    status: u16,
    headers: http::HeaderMap,
    body: String,
}

impl Env {
    async fn start(data: &std::path::Path) -> Env {
        // 2026-11-27 14:00 UTC, a Friday.
        Env::start_at(data, ManualClock::new(1_795_788_000_000)).await
    }

    async fn start_at(data: &std::path::Path, clock: Arc<ManualClock>) -> Env {
        let o = common::html_origin(PAGE).await;
        let secrets: telswap::calls::Secrets = Arc::new(|name: &str| (name == "TEST_TOKEN").then(|| TOKEN.to_string()));
        let app = common::start_app(&rules(o), data, clock.clone(), ADMIN, secrets).await;
        Env {
            app,
            client: hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http(),
            clock,
        }
    }

    async fn send(&self, req: http::request::Builder, body: &str) -> Answer {
        let resp = self
            .client
            .request(req.body(Full::new(Bytes::from(body.to_string()))).unwrap())
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.app.admin.unwrap())
    }

    async fn get(&self, path: &str, auth: Auth<'_>) -> Answer {
        let mut req = hyper::Request::get(self.admin_url(path));
        match auth {
            Auth::Bearer(t) => req = req.header("authorization", format!("Bearer {t}")),
            Auth::Cookie(c) => req = req.header("cookie", c),
            Auth::None => {}
        }
        self.send(req, "").await
    }

    async fn post_form(&self, path: &str, cookie: Option<&str>, form: &[(&str, &str)]) -> Answer {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form.iter())
            .finish();
        let mut req =
            hyper::Request::post(self.admin_url(path)).header("content-type", "application/x-www-form-urlencoded");
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        self.send(req, &body).await
    }

    /// Logs in and returns the `Cookie` header value to send.
    async fn login(&self) -> String {
        let a = self
            .post_form("/login", None, &[("token", ADMIN), ("next", "/calls")])
            .await;
        assert_eq!(a.status, 303, "{}", a.body);
        assert_eq!(a.headers["location"], "/calls");
        let set = a.headers["set-cookie"].to_str().unwrap().to_string();
        assert!(set.contains("HttpOnly"), "{set}");
        assert!(set.contains("SameSite=Strict"), "{set}");
        set.split(';').next().unwrap().to_string()
    }

    /// A paid visitor's landing and one more page; then their call, answered for `duration` s.
    async fn paid_call(&self, sid: &str, duration: u32) {
        let landing = "/?utm_source=google&utm_medium=cpc&utm_campaign=spring&utm_term=emergency+plumber&gclid=Cj0test";
        let page = |path: &str, cookie: Option<&str>| {
            let mut r = hyper::Request::get(format!("http://{}{path}", self.app.running.http))
                .header("host", "site.test")
                .header("accept", "text/html");
            if let Some(c) = cookie {
                r = r.header("cookie", c.to_string()).header("referer", "http://site.test/");
            }
            r
        };
        let first = self.send(page(landing, None), "").await;
        let cookie = first.headers["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        self.clock.advance(Duration::from_secs(60));
        let second = self.send(page("/contact", Some(&cookie)), "").await;
        let at = second.body.find("<b>").unwrap() + 3;
        let shown = &second.body[at..at + 12];
        let to = format!("+1{}", shown.replace('-', ""));
        self.clock.advance(Duration::from_secs(30));
        for (path, status, extra) in [
            ("/_telswap/voice", "ringing", None),
            ("/_telswap/status", "completed", Some(duration.to_string())),
        ] {
            let mut params: Vec<(String, String)> = vec![
                ("CallSid".into(), sid.into()),
                ("AccountSid".into(), "AC1".into()),
                ("From".into(), "+14155550123".into()),
                ("To".into(), to.clone()),
                ("CallStatus".into(), status.into()),
                ("Direction".into(), "inbound".into()),
            ];
            if let Some(d) = extra {
                params.push(("CallDuration".into(), d));
            }
            let sig = twilio_signature(TOKEN, &format!("http://site.test{path}"), &params);
            let body = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(params.iter())
                .finish();
            let req = hyper::Request::post(format!("http://{}{path}", self.app.running.http))
                .header("host", "site.test")
                .header("content-type", "application/x-www-form-urlencoded")
                .header("x-twilio-signature", sig);
            assert_eq!(self.send(req, &body).await.status, 200, "{path}");
        }
        telswap::store::Store::flush(&*self.app.store).unwrap();
    }
}

enum Auth<'a> {
    Bearer(&'a str),
    Cookie(&'a str),
    None,
}

#[tokio::test]
async fn every_admin_path_needs_the_token_or_a_login() {
    let data = tempfile::tempdir().unwrap();
    let env = Env::start(data.path()).await;
    let api = [
        "/api/calls",
        "/api/calls/c_x",
        "/api/pools",
        "/api/reports/channels",
        "/api/export/calls.csv",
        "/api/export/google-ads.csv",
        "/metrics",
    ];
    let pages = ["/", "/calls", "/calls/c_x", "/pools", "/reports/channels"];
    let forged = "telswap_admin=99999999999.00";
    for path in api {
        for auth in [Auth::None, Auth::Bearer("wrong"), Auth::Cookie(forged)] {
            let a = env.get(path, auth).await;
            assert_eq!(a.status, 401, "{path}");
            assert!(a.body.contains("error"), "{path}: {}", a.body);
        }
    }
    for path in pages {
        for auth in [Auth::None, Auth::Bearer("wrong"), Auth::Cookie(forged)] {
            let a = env.get(path, auth).await;
            assert_eq!(a.status, 303, "{path}");
            let loc = a.headers["location"].to_str().unwrap();
            assert!(loc.starts_with("/login?next="), "{path} → {loc}");
        }
    }
    // A wrong token on the login page gives no cookie.
    let a = env.post_form("/login", None, &[("token", "nope")]).await;
    assert_eq!(a.status, 401);
    assert!(a.headers.get("set-cookie").is_none());
    // The login page itself is public, and an off-site `next` is ignored.
    assert_eq!(env.get("/login", Auth::None).await.status, 200);
    let a = env
        .post_form("/login", None, &[("token", ADMIN), ("next", "//evil.example/")])
        .await;
    assert_eq!(a.headers["location"], "/");
    // After login the cookie opens pages and the API alike; the bearer token too.
    let cookie = env.login().await;
    for path in pages.iter().filter(|p| !p.contains("c_x") && !p.contains("reports")) {
        let a = env.get(path, Auth::Cookie(&cookie)).await;
        assert_eq!(a.status, 200, "{path}: {}", a.body);
        assert!(a.body.contains("<nav>"), "{path}");
    }
    assert_eq!(env.get("/api/calls", Auth::Cookie(&cookie)).await.status, 200);
    assert_eq!(env.get("/api/calls", Auth::Bearer(ADMIN)).await.status, 200);
    assert_eq!(env.get("/calls/c_x", Auth::Cookie(&cookie)).await.status, 404);
    // A wrong method on a known path is a 405 that says which methods it takes; HEAD is GET's.
    let bearer = format!("bearer {ADMIN}");
    for (method, path, allow) in [
        ("POST", "/api/calls", "GET, HEAD"),
        ("DELETE", "/api/calls/c_x", "GET, HEAD"),
        ("PUT", "/api/pools", "GET, HEAD"),
        ("POST", "/metrics", "GET, HEAD"),
        ("GET", "/api/spend", "PUT"),
        ("GET", "/api/calls/c_x/outcome", "POST, DELETE"),
        ("DELETE", "/calls/c_x/outcome", "POST"),
        ("DELETE", "/pools", "GET, HEAD"),
    ] {
        let req = hyper::Request::builder()
            .method(method)
            .uri(env.admin_url(path))
            .header("authorization", &bearer);
        let a = env.send(req, "").await;
        assert_eq!(
            (a.status, a.headers.get("allow").and_then(|v| v.to_str().ok())),
            (405, Some(allow)),
            "{method} {path}"
        );
    }
    let head = hyper::Request::head(env.admin_url("/api/pools")).header("authorization", &bearer);
    assert_eq!(
        env.send(head, "").await.status,
        200,
        "HEAD, with the scheme in lower case"
    );
    // A change asked for by another origin's page is refused, cookie or not; the dashboard's
    // own forms and scripts (no such headers) pass.
    let admin_host = env.app.admin.unwrap().to_string();
    let own_origin = format!("http://{admin_host}");
    for (name, value, status) in [
        ("origin", "http://evil.example", 403),
        ("origin", "null", 403),
        ("sec-fetch-site", "cross-site", 403),
        ("sec-fetch-site", "same-site", 403),
        ("sec-fetch-site", "same-origin", 303),
        ("origin", own_origin.as_str(), 303),
    ] {
        // A session of its own each: a logout that passes ends it.
        let cookie = env.login().await;
        let req = hyper::Request::post(env.admin_url("/logout"))
            .header("cookie", &cookie)
            .header(name, value);
        assert_eq!(env.send(req, "").await.status, status, "{name}: {value}");
        let after = env.get("/api/calls", Auth::Cookie(&cookie)).await.status;
        assert_eq!(after, if status == 303 { 401 } else { 200 }, "{name}: {value}");
    }
    let req = hyper::Request::post(env.admin_url("/api/calls/c_x/outcome"))
        .header("authorization", format!("Bearer {ADMIN}"))
        .header("sec-fetch-site", "cross-site");
    assert_eq!(env.send(req, r#"{"kind":"sale"}"#).await.status, 403);
    // A login lasts 12 hours.
    let other = env.login().await;
    env.clock.advance(Duration::from_secs(12 * 3600 - 1));
    assert_eq!(env.get("/calls", Auth::Cookie(&other)).await.status, 200);
    env.clock.advance(Duration::from_secs(1));
    assert_eq!(env.get("/calls", Auth::Cookie(&other)).await.status, 303);

    // Logging out clears the cookie, and ends the session on the server: a copy of the cookie
    // is refused, after a restart too. Another browser's session goes on.
    let (cookie, other) = (env.login().await, env.login().await);
    let a = env.post_form("/logout", Some(&cookie), &[]).await;
    assert!(a.headers["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    assert_eq!(env.get("/calls", Auth::Cookie(&cookie)).await.status, 303);
    assert_eq!(env.get("/calls", Auth::Cookie(&other)).await.status, 200);
    let clock = env.clock.clone();
    env.app.stop().await;
    let env = Env::start_at(data.path(), clock).await;
    assert_eq!(env.get("/api/calls", Auth::Cookie(&cookie)).await.status, 401);
    assert_eq!(env.get("/api/calls", Auth::Cookie(&other)).await.status, 200);
    env.app.stop().await;
}

#[tokio::test]
async fn a_call_opens_its_journey_and_takes_an_outcome_from_the_form() {
    let data = tempfile::tempdir().unwrap();
    let env = Env::start(data.path()).await;
    env.paid_call("CA100", 95).await;
    let cookie = env.login().await;

    let log = env
        .get("/calls?from=2026-11-27&to=2026-11-27", Auth::Cookie(&cookie))
        .await;
    assert_eq!(log.status, 200);
    assert!(log.body.contains(r#"data-figure="calls">1<"#), "{}", log.body);
    assert!(log.body.contains("paid_search") && log.body.contains("spring") && log.body.contains("emergency plumber"));
    // Filters: another channel hides it; a date range before it too.
    let other = env.get("/calls?channel=email", Auth::Cookie(&cookie)).await;
    assert!(other.body.contains(r#"data-figure="calls">0<"#));
    let before = env
        .get("/calls?from=2026-11-01&to=2026-11-02", Auth::Cookie(&cookie))
        .await;
    assert!(before.body.contains(r#"data-figure="calls">0<"#));
    assert_eq!(env.get("/calls?from=soon", Auth::Cookie(&cookie)).await.status, 400);
    let reports = env.get("/reports?from=2026-11-01", Auth::Cookie(&cookie)).await;
    assert_eq!(
        (reports.status, reports.headers["location"].to_str().unwrap()),
        (303, "/reports/overview?from=2026-11-01")
    );
    // A channel or confidence no call can have is a mistake to say, not an empty list.
    for bad in ["/calls?channel=bogus", "/calls?confidence=zzz"] {
        let page = env.get(bad, Auth::Cookie(&cookie)).await;
        assert_eq!(page.status, 400, "{bad}");
        assert!(page.body.contains("is not a"), "{bad}: {}", page.body);
    }
    let video = env.get("/calls?channel=paid_video", Auth::Cookie(&cookie)).await;
    assert!(video.status == 200 && video.body.contains("<option selected>paid_video</option>"));

    let id = {
        let at = log.body.find("href=\"/calls/c").unwrap() + "href=\"/calls/".len();
        log.body[at..].split('"').next().unwrap().to_string()
    };
    let journey = env.get(&format!("/calls/{id}"), Auth::Cookie(&cookie)).await;
    assert_eq!(journey.status, 200);
    for want in [
        r#"data-figure="confidence">exact<"#,
        "gclid=Cj0test",
        "/contact",
        "emergency plumber",
        "first call",
        r#"data-figure="touches">"#,
    ] {
        assert!(journey.body.contains(want), "journey lacks {want}: {}", journey.body);
    }

    // The outcome form: bad values refused (`NaN` and `inf` parse as floats, and would be
    // stored as no value; past a trillion, totals could overflow), a good one stored and shown.
    for value in ["lots", "NaN", "inf", "1e400", "2e12", "-1"] {
        let bad = env
            .post_form(
                &format!("/calls/{id}/outcome"),
                Some(&cookie),
                &[("kind", "sale"), ("value", value)],
            )
            .await;
        assert_eq!(bad.status, 400, "{value}: {}", bad.body);
    }
    let ok = env
        .post_form(
            &format!("/calls/{id}/outcome"),
            Some(&cookie),
            &[("kind", "sale"), ("value", "120"), ("currency", "usd")],
        )
        .await;
    assert_eq!(ok.status, 303);
    let api = env.get(&format!("/api/calls/{id}"), Auth::Bearer(ADMIN)).await;
    let v: serde_json::Value = serde_json::from_str(&api.body).unwrap();
    assert_eq!(v["outcome"]["kind"], "sale");
    assert_eq!(v["outcome"]["value"], 120.0);
    assert_eq!(v["outcome"]["currency"], "USD");
    let journey = env.get(&format!("/calls/{id}"), Auth::Cookie(&cookie)).await;
    assert!(journey.body.contains(r#"data-figure="outcome">sale<"#));

    // Every report page shows the report's totals as the API computes them, with a chart.
    for name in telswap::admin::reports::REPORTS {
        let page = env
            .get(
                &format!("/reports/{name}?from=2026-11-27&to=2026-11-27"),
                Auth::Cookie(&cookie),
            )
            .await;
        assert_eq!(page.status, 200, "{name}");
        assert!(
            page.body.contains("<svg") || page.body.contains("data-empty"),
            "{name} has neither a chart nor an empty note"
        );
        let api = env
            .get(
                &format!("/api/reports/{name}?from=2026-11-27&to=2026-11-27"),
                Auth::Bearer(ADMIN),
            )
            .await;
        let v: serde_json::Value = serde_json::from_str(&api.body).unwrap();
        if let Some(calls) = v["totals"]["calls"].as_u64() {
            assert!(
                page.body.contains(&format!(r#"data-figure="calls">{calls}<"#)),
                "{name}: page disagrees with the API's {calls} calls"
            );
        }
    }
    let overview = env.get("/?from=2026-11-27&to=2026-11-27", Auth::Cookie(&cookie)).await;
    assert!(overview.body.contains(r#"data-figure="calls">1<"#), "{}", overview.body);

    // A sale recorded on the wrong call is removed from the journey page.
    assert!(journey.body.contains("Remove outcome"));
    let removed = env
        .post_form(&format!("/calls/{id}/outcome"), Some(&cookie), &[("remove", "1")])
        .await;
    assert_eq!(removed.status, 303);
    let api = env.get(&format!("/api/calls/{id}"), Auth::Bearer(ADMIN)).await;
    let v: serde_json::Value = serde_json::from_str(&api.body).unwrap();
    assert_eq!(v["outcome"], serde_json::Value::Null);
    let journey = env.get(&format!("/calls/{id}"), Auth::Cookie(&cookie)).await;
    assert!(!journey.body.contains(r#"data-figure="outcome""#) && !journey.body.contains("Remove outcome"));
    env.app.stop().await;
}

#[tokio::test]
async fn pools_page_recommends_a_size_from_the_leases_and_metrics_count_it_all() {
    let data = tempfile::tempdir().unwrap();
    let env = Env::start(data.path()).await;
    env.paid_call("CA200", 40).await;
    env.paid_call("CA201", 10).await;

    let pools = env.get("/api/pools", Auth::Bearer(ADMIN)).await;
    let v: serde_json::Value = serde_json::from_str(&pools.body).unwrap();
    let ads = v["pools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "ads")
        .unwrap();
    assert_eq!(ads["size"], 2);
    // Two leases in one hour, each held ~1.5 min + 30 min idle: L ≈ 1.05 → 1.05 + 2√1.05 → 4.
    assert_eq!(ads["sizing"]["leases_7d"], 2);
    assert_eq!(ads["sizing"]["peak_arrivals_per_hour"], 2.0);
    assert_eq!(ads["recommended_size"], 4);

    let cookie = env.login().await;
    let page = env.get("/pools", Auth::Cookie(&cookie)).await;
    assert!(
        page.body.contains(r#"data-figure="recommended_size">4<"#),
        "{}",
        page.body
    );
    assert!(page.body.contains("Little's law"));
    assert!(page.body.contains("Nimbata") && page.body.contains("CallTrackingMetrics"));

    let m = env.get("/metrics", Auth::Bearer(ADMIN)).await.body;
    for want in [
        "telswap_requests_total{site=\"site\",status=\"200\"} 8",
        "telswap_upstream_latency_seconds_bucket{le=\"+Inf\"} 4",
        "telswap_upstream_latency_seconds_count 4",
        "telswap_calls_total{confidence=\"exact\"} 2",
        "telswap_calls_total{confidence=\"none\"} 0",
        "telswap_pool_size{site=\"site\",pool=\"ads\"} 2",
        "telswap_rewritten_total 4",
        // UTF-8 pages with the default `exclude`: all four took the byte-level engine.
        "telswap_rewritten_lol_html_total 0",
        "telswap_numbers_swapped_total 4",
    ] {
        assert!(m.contains(want), "metrics lack {want}:\n{m}");
    }
    env.app.stop().await;
}
