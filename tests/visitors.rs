//! Visitors through the real proxy with a cookie-keeping client: leases per session, stickiness
//! across pages, overflow, crawlers, consent, tampered cookies.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use telswap::clock::TokioClock;
use telswap::pool::{NoJournal, Pools};
use telswap::proxy::server::{self, ServeConfig};
use telswap::proxy::{Parts, Proxy};
use telswap::visitor::identity::CookieKey;
use telswap::visitor::sessions::SessionLog;
use tokio::net::TcpListener;

const PAGE: &str = "<html><body><p>Call <b>555-010-0000</b></p></body></html>";

async fn origin() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let svc = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                    let ct = if req.uri().path().ends_with(".png") {
                        "image/png"
                    } else {
                        "text/html"
                    };
                    let status = if req.headers().contains_key("if-none-match") {
                        304
                    } else if req.uri().path() == "/moved" {
                        301
                    } else {
                        200
                    };
                    Ok::<_, Infallible>(
                        hyper::Response::builder()
                            .status(status)
                            .header("content-type", ct)
                            .header("cache-control", "public, max-age=600")
                            .header("etag", "\"v1\"")
                            .body(Full::new(Bytes::from(PAGE)))
                            .unwrap(),
                    )
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

struct Harness {
    base: String,
    client: hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>,
    proxy: Arc<Proxy>,
    _running: server::Running,
}

const RULES: &str = r#"hosts = ["site.test"]
upstream = "http://ORIGIN"
numbers = ["+1 555-010-0000"]
CONSENT
[[pool]]
name = "ads"
mode = "session"
when.channel = ["paid_search"]
numbers = ["+1 555-010-1001", "+1 555-010-1002", "+1 555-010-1003"]
exhausted = "overflow"
overflow = "+1 555-010-1999"

[[pool]]
name = "organic"
mode = "source"
when.channel = ["organic_search"]
numbers = ["+1 555-010-2001"]
"#;

async fn harness(consent: &str) -> Harness {
    let o = origin().await;
    let text = RULES.replace("ORIGIN", &o.to_string()).replace("CONSENT", consent);
    let set = telswap::rules::load_sources(&[(PathBuf::from("site.toml"), text)]).unwrap();
    let clock = TokioClock::new();
    let pools = Pools::new(&set, clock.clone(), Arc::new(NoJournal));
    let parts = Parts {
        cookie_key: CookieKey::new(b"test key test key test key test key"),
        clock,
        sessions: SessionLog::new(1000),
        calls: None,
    };
    let proxy = Proxy::with_parts(set, pools, parts);
    let cfg = ServeConfig {
        rules: "rules".into(),
        listen: "127.0.0.1:0".parse().unwrap(),
        tls_listen: None,
        certs: "certs".into(),
        trusted_proxies: Default::default(),
    };
    let running = server::start(&cfg, proxy.clone()).await.unwrap();
    Harness {
        base: format!("http://{}", running.http),
        client: hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http(),
        proxy,
        _running: running,
    }
}

/// One browser: keeps its `tsw` cookie.
#[derive(Default)]
struct Browser {
    cookie: Option<String>,
    /// The last page's `Cache-Control`.
    cache_control: Option<String>,
    extra: Vec<(&'static str, String)>,
}

impl Browser {
    /// Returns (the number on the page, whether a cookie was set).
    async fn get(&mut self, h: &Harness, path: &str, referer: Option<&str>) -> (String, bool) {
        let mut req = hyper::Request::get(format!("{}{path}", h.base))
            .header("host", "site.test")
            .header("accept", "text/html");
        if let Some(r) = referer {
            req = req.header("referer", r);
        }
        let mut cookies: Vec<String> = self
            .extra
            .iter()
            .filter(|(k, _)| *k == "cookie")
            .map(|(_, v)| v.clone())
            .collect();
        if let Some(c) = &self.cookie {
            cookies.push(format!("tsw={c}"));
        }
        if !cookies.is_empty() {
            req = req.header("cookie", cookies.join("; "));
        }
        for (k, v) in self.extra.iter().filter(|(k, _)| *k != "cookie") {
            req = req.header(*k, v);
        }
        let resp = h.client.request(req.body(Empty::new()).unwrap()).await.unwrap();
        let set = resp.headers().get_all("set-cookie").iter().find_map(|v| {
            let v = v.to_str().ok()?;
            v.strip_prefix("tsw=")
                .map(|rest| rest.split(';').next().unwrap().to_string())
        });
        let was_set = set.is_some();
        self.cache_control = resp
            .headers()
            .get("cache-control")
            .map(|v| v.to_str().unwrap().to_string());
        if let Some(c) = set {
            self.cookie = Some(c);
        }
        let body = String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
        let at = body.find("<b>").unwrap() + 3;
        (body[at..at + 12].to_string(), was_set)
    }
}

const PAID: &str = "/?utm_source=google&utm_medium=cpc&utm_term=plumber&gclid=Cj0abc";

#[tokio::test]
async fn three_paid_visitors_lease_three_numbers_the_fourth_gets_overflow_and_each_keeps_theirs() {
    let h = harness("").await;
    let mut browsers: Vec<Browser> = (0..4).map(|_| Browser::default()).collect();
    let mut seen = Vec::new();
    for b in browsers.iter_mut() {
        let (n, set) = b.get(&h, PAID, Some("https://www.google.com/")).await;
        assert!(set, "a consenting visitor gets the tsw cookie");
        seen.push(n);
    }
    assert_eq!(seen, ["555-010-1001", "555-010-1002", "555-010-1003", "555-010-1999"]);
    // The number a visitor should see changes (a session number is the visitor's for a while
    // only, the overflow visitor may lease one later): the browser must ask again before it
    // shows the page from its cache.
    for b in [&browsers[0], &browsers[3]] {
        assert_eq!(b.cache_control.as_deref(), Some("private, max-age=600, no-cache"));
    }
    // Stickiness: internal navigation and a later direct return keep each visitor's number.
    for (i, b) in browsers.iter_mut().enumerate().take(3) {
        for page in ["/services", "/contact", "/"] {
            let (n, _) = b.get(&h, page, Some("http://site.test/")).await;
            assert_eq!(n, seen[i], "visitor {i} on {page}");
        }
        let (n, _) = b.get(&h, "/", None).await;
        assert_eq!(n, seen[i], "visitor {i} typing the URL again");
    }
    // The session's pages were kept server-side, in order, with its touch.
    let key = CookieKey::new(b"test key test key test key test key");
    let state = telswap::visitor::identity::decode(browsers[0].cookie.as_deref().unwrap(), &key, "site").unwrap();
    let rec = h.proxy.sessions().get(&state.sid).unwrap();
    let pages: Vec<&str> = rec.pages.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(pages, [PAID, "/services", "/contact", "/", "/"]);
    // A redirect is no page the visitor saw: `/moved` (301) is not in the history, where it
    // lands is.
    for page in ["/moved", "/moved/"] {
        browsers[0].get(&h, page, Some("http://site.test/")).await;
    }
    let rec = h.proxy.sessions().get(&state.sid).unwrap();
    assert_eq!(rec.pages.last().unwrap().path, "/moved/");
    assert_eq!(rec.pages.len(), 6);
    let touch = rec.last.unwrap();
    assert_eq!(
        (touch.ch.as_str(), touch.term.as_deref(), touch.ids[0].1.as_str()),
        ("paid_search", Some("plumber"), "Cj0abc")
    );
    assert_eq!(h.proxy.sessions().len(), 4);
    // An asset request is not a page view: no cookie.
    let mut img = Browser::default();
    let req = hyper::Request::get(format!("{}/logo.png", h.base))
        .header("host", "site.test")
        .body(Empty::new())
        .unwrap();
    let resp = h.client.request(req).await.unwrap();
    assert!(resp.headers().get("set-cookie").is_none());
    let _ = &mut img;
}

/// `<link rel=prefetch>` (instant.page, quicklink and the WordPress speed plugins put one on
/// links a visitor hovers) and speculation rules fetch the next page before the visitor asks
/// for it, and the browser may show that copy without asking again: it must carry the
/// visitor's number, and it is the only sign of the page the server gets.
#[tokio::test]
async fn a_prefetched_page_shows_the_visitors_number_and_a_prefetched_asset_is_no_page() {
    let h = harness("").await;
    let mut b = Browser::default();
    let (n, _) = b.get(&h, PAID, Some("https://www.google.com/")).await;
    assert_eq!(n, "555-010-1001");
    let cookie = format!("tsw={}", b.cookie.as_deref().unwrap());
    let navigation = "text/html,application/xhtml+xml,*/*;q=0.8";
    for (dest, accept, purpose) in [
        ("empty", "*/*", ("x-moz", "prefetch")),
        ("empty", "*/*", ("sec-purpose", "prefetch")),
        ("empty", navigation, ("purpose", "prefetch")),
        ("document", "text/html", ("sec-purpose", "prefetch;prerender")),
    ] {
        let (body, _) = fetch(
            &h,
            "/contact",
            &cookie,
            &[("accept", accept), ("sec-fetch-dest", dest), purpose],
        )
        .await;
        assert!(body.contains("555-010-1001"), "{dest} {accept} {purpose:?}: {body}");
    }
    let key = CookieKey::new(b"test key test key test key test key");
    let state = telswap::visitor::identity::decode(b.cookie.as_deref().unwrap(), &key, "site").unwrap();
    let pages = || -> usize { h.proxy.sessions().get(&state.sid).unwrap().pages.len() };
    assert_eq!(pages(), 5);
    // A script's own fetch of the page, with no purpose, stays what it was: not a page view.
    let (body, set) = fetch(
        &h,
        "/contact",
        &cookie,
        &[("accept", "*/*"), ("sec-fetch-dest", "empty")],
    )
    .await;
    assert!(body.contains("555-010-0000") && !set, "{body}");
    // Assets prefetched (a script chunk, an image), or fetched by a prerendered page, are no
    // page views whatever their `Accept` says.
    for (path, headers) in [
        (
            "/logo.png",
            [
                ("accept", navigation),
                ("sec-fetch-dest", "empty"),
                ("sec-purpose", "prefetch"),
            ],
        ),
        (
            "/chunk.js",
            [("accept", "*/*"), ("sec-fetch-dest", "empty"), ("x-moz", "prefetch")],
        ),
        (
            "/api/cart",
            [
                ("accept", "image/avif,*/*"),
                ("sec-fetch-dest", "image"),
                ("sec-purpose", "prefetch;prerender"),
            ],
        ),
    ] {
        let (_, set) = fetch(&h, path, &cookie, &headers).await;
        assert!(!set, "{path} {headers:?} is no page view");
    }
    assert_eq!(pages(), 5);
    // A hovered link carrying another source's tags is prefetched with the visitor's own
    // source: it is no landing until they follow it.
    let tagged = "/offers?utm_source=newsletter&utm_medium=email";
    let (body, _) = fetch(
        &h,
        tagged,
        &cookie,
        &[
            ("accept", "*/*"),
            ("sec-fetch-dest", "empty"),
            ("sec-purpose", "prefetch"),
        ],
    )
    .await;
    assert!(body.contains("555-010-1001"), "{body}");
    let rec = h.proxy.sessions().get(&state.sid).unwrap();
    assert_eq!(rec.last.as_ref().unwrap().ch, "paid_search");
    assert_eq!(
        rec.pages.last().unwrap().path,
        tagged,
        "the prefetched page is in the history"
    );
    // From another site (a speculation rule on a partner's page), it is the landing the
    // browser will show without asking again: its source counts.
    let prefetch = [
        ("accept", "text/html"),
        ("sec-fetch-dest", "document"),
        ("sec-purpose", "prefetch"),
    ];
    fetch(
        &h,
        tagged,
        &cookie,
        &[&prefetch[..], &[("referer", "https://news.example/")]].concat(),
    )
    .await;
    let rec = h.proxy.sessions().get(&state.sid).unwrap();
    assert_eq!(rec.last.as_ref().unwrap().ch, "email");
}

/// `path` fetched with this cookie and these headers, from a page of the site: its body, and
/// whether it set the visitor cookie (what a page view does).
async fn fetch(h: &Harness, path: &str, cookie: &str, headers: &[(&str, &str)]) -> (String, bool) {
    let mut req = hyper::Request::get(format!("{}{path}", h.base))
        .header("host", "site.test")
        .header("cookie", cookie);
    if !headers.iter().any(|(k, _)| *k == "referer") {
        req = req.header("referer", "http://site.test/");
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = h.client.request(req.body(Empty::new()).unwrap()).await.unwrap();
    let set = resp.headers().contains_key("set-cookie");
    let body = String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    (body, set)
}

#[tokio::test]
async fn tampered_or_foreign_cookies_make_a_new_visitor() {
    let h = harness("").await;
    let mut b = Browser::default();
    let (n, _) = b.get(&h, "/?utm_source=google&utm_medium=organic", None).await;
    assert_eq!(n, "555-010-2001");
    let (n, _) = b.get(&h, "/next", Some("http://site.test/")).await;
    assert_eq!(n, "555-010-2001", "the cookie carries the organic touch");
    let good = b.cookie.clone().unwrap();
    for bad in [
        format!("x{good}"),
        good.replacen('.', ".A", 1),
        "garbage".to_string(),
        String::new(),
    ] {
        let mut t = Browser {
            cookie: Some(bad),
            ..Default::default()
        };
        let (n, set) = t.get(&h, "/next", Some("http://site.test/")).await;
        assert_eq!(n, "555-010-0000", "an unverifiable cookie carries no touch");
        assert!(set, "and is replaced by a fresh one");
    }
}

#[tokio::test]
async fn crawlers_see_the_original_number_and_get_no_cookie() {
    let h = harness("").await;
    for ua in [
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    ] {
        let mut b = Browser {
            extra: vec![("user-agent", ua.to_string())],
            ..Default::default()
        };
        let (n, set) = b.get(&h, PAID, None).await;
        assert_eq!((n.as_str(), set), ("555-010-0000", false), "{ua}");
    }
    assert_eq!(h.proxy.sessions().len(), 0, "nothing stored for crawlers");
}

#[tokio::test]
async fn global_privacy_control_means_no_cookie_and_source_numbers_only() {
    let h = harness("[consent]\nmode = \"gpc\"\nwithout = \"source\"\n").await;
    let mut b = Browser {
        extra: vec![("sec-gpc", "1".into())],
        ..Default::default()
    };
    let (n, set) = b.get(&h, "/?utm_source=google&utm_medium=organic", None).await;
    assert_eq!((n.as_str(), set), ("555-010-2001", false));
    let (n, set) = b.get(&h, PAID, None).await;
    assert_eq!(
        (n.as_str(), set),
        ("555-010-0000", false),
        "no session lease without consent"
    );
    assert_eq!(h.proxy.sessions().len(), 0, "nothing stored without consent");
    let mut ok = Browser::default();
    let (n, set) = ok.get(&h, PAID, None).await;
    assert_eq!((n.as_str(), set), ("555-010-1001", true));
}

#[tokio::test]
async fn consent_cookie_mode() {
    let h = harness("[consent]\nmode = \"cookie\"\ncookie = \"consent=yes\"\nwithout = \"original\"\n").await;
    let mut no = Browser::default();
    let (n, set) = no.get(&h, "/?utm_source=google&utm_medium=organic", None).await;
    assert_eq!((n.as_str(), set), ("555-010-0000", false));
    let mut yes = Browser {
        extra: vec![("cookie", "consent=yes".into())],
        ..Default::default()
    };
    let (n, set) = yes.get(&h, "/?utm_source=google&utm_medium=organic", None).await;
    assert_eq!((n.as_str(), set), ("555-010-2001", true));
}

#[tokio::test]
async fn pages_that_set_the_cookie_are_private_and_never_revalidated_into_a_stale_number() {
    let h = harness("").await;
    // Any page view that carries a visitor cookie is private, whatever the origin said.
    let req = hyper::Request::get(format!("{}/plain", h.base))
        .header("host", "site.test")
        .header("if-none-match", "\"v1\"")
        .body(Empty::new())
        .unwrap();
    let resp = h.client.request(req).await.unwrap();
    assert_eq!(resp.status(), 200, "a page view is never answered 304 on a DNI site");
    assert!(resp.headers().contains_key("set-cookie"));
    assert_eq!(resp.headers()["cache-control"], "private, max-age=600, no-cache");
    // Assets keep their validators and shared caching.
    let req = hyper::Request::get(format!("{}/logo.png", h.base))
        .header("host", "site.test")
        .header("if-none-match", "\"v1\"")
        .body(Empty::new())
        .unwrap();
    let resp = h.client.request(req).await.unwrap();
    assert_eq!(resp.status(), 304);
    assert_eq!(resp.headers()["cache-control"], "public, max-age=600");
}

/// A `HEAD` (an uptime monitor, a link checker) is not a visitor: it leases nothing, stores no
/// session and sets no cookie, however paid its URL looks. Its headers are still the ones the
/// `GET` would have: no `Content-Length` where the page would be rewritten, the origin's where
/// it would not.
#[tokio::test]
async fn head_requests_lease_nothing_and_keep_the_get_headers() {
    let h = harness("").await;
    let send = |method: &'static str, path: &'static str| {
        let req = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", h.base))
            .header("host", "site.test")
            .header("accept", "text/html")
            .body(Empty::new())
            .unwrap();
        h.client.request(req)
    };
    let organic = "/?utm_source=google&utm_medium=organic";
    for _ in 0..5 {
        for path in [PAID, organic, "/"] {
            let resp = send("HEAD", path).await.unwrap();
            assert_eq!(resp.status(), 200, "{path}");
            assert!(
                resp.headers().get("set-cookie").is_none(),
                "{path}: a HEAD got a cookie"
            );
        }
    }
    assert_eq!(h.proxy.sessions().len(), 0, "a HEAD stored a session");
    // Five paid HEADs leased nothing: the first paid visitor still gets the pool's first number.
    let (n, set) = Browser::default().get(&h, PAID, None).await;
    assert_eq!((n.as_str(), set), ("555-010-1001", true));

    for (path, rewritten) in [(PAID, true), (organic, true), ("/", false)] {
        let head = send("HEAD", path).await.unwrap();
        let get = send("GET", path).await.unwrap();
        for name in ["content-length", "etag", "cache-control", "content-type"] {
            assert_eq!(head.headers().get(name), get.headers().get(name), "{path}: {name}");
        }
        assert_eq!(head.headers().contains_key("content-length"), !rewritten, "{path}");
    }
}

/// A second `tsw` cookie ahead of the visitor's own (one planted by a subdomain, or left by an
/// old path) does not make them a new visitor: the first that verifies counts.
#[tokio::test]
async fn the_first_tsw_cookie_that_verifies_is_the_visitors() {
    let h = harness("").await;
    let mut b = Browser {
        extra: vec![("cookie", "tsw=planted".into())],
        ..Default::default()
    };
    let (n, set) = b.get(&h, PAID, None).await;
    assert_eq!((n.as_str(), set), ("555-010-1001", true));
    let (n, _) = b.get(&h, "/next", Some("http://site.test/")).await;
    assert_eq!(
        n, "555-010-1001",
        "the planted cookie came first and the visitor kept the number"
    );
    assert_eq!(h.proxy.sessions().len(), 1);
}
