//! Inbound calls end to end: a visitor's journey through the proxy, the provider's signed
//! webhook, the forwarding answer, and the call as the admin API reports it.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioExecutor;
use ring::signature::KeyPair;
use serde_json::Value;
use telswap::app::App;
use telswap::calls::signature::twilio_signature;
use telswap::clock::{Clock, ManualClock};

const TOKEN: &str = "test-auth-token";
const ADMIN: &str = "admin-secret-token";
const PAGE: &str = "<html><body><p>Call <b>555-010-0000</b></p></body></html>";

fn rules(origin: std::net::SocketAddr, dialect: &str, exhausted: &str, size: usize) -> String {
    let numbers: Vec<String> = (1..=size).map(|i| format!("\"+1 555-010-100{i}\"")).collect();
    format!(
        r#"hosts = ["site.test"]
upstream = "http://{origin}"
numbers = ["+1 555-010-0000"]
capture = ["cta"]

[telephony]
dialect = "{dialect}"
auth_token_env = "TEST_TOKEN"
public_key_env = "TEST_TELNYX_KEY"
forward_to = "+1 555-010-0077"
record = true
whisper = true

[[pool]]
name = "ads"
mode = "session"
when.channel = ["paid_search"]
numbers = [{}]
idle_timeout = "30m"
match_window = "2h"
exhausted = "{exhausted}"
overflow = "+1 555-010-1999"

[[pool]]
name = "organic"
mode = "source"
when.channel = ["organic_search"]
numbers = ["+1 555-010-2001"]

[[pool]]
name = "social"
mode = "source"
when.channel = ["organic_social", "paid_social"]
numbers = ["+1 555-010-2002"]

[[offline]]
number = "+1 555-010-3001"
campaign = "radio-spring"
"#,
        numbers.join(", ")
    )
}

struct Env {
    app: App,
    client: hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

async fn start(text: &str, data: &Path, clock: Arc<ManualClock>, telnyx_key: Option<String>) -> Env {
    let secrets: telswap::calls::Secrets = Arc::new(move |name: &str| match name {
        "TEST_TOKEN" => Some(TOKEN.to_string()),
        "TEST_TELNYX_KEY" => telnyx_key.clone(),
        _ => None,
    });
    let app = common::start_app(text, data, clock.clone(), ADMIN, secrets).await;
    Env {
        app,
        client: hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http(),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

impl Env {
    fn base(&self) -> String {
        format!("http://{}", self.app.running.http)
    }

    /// A page view; returns the number shown and the cookie to keep.
    async fn visit(&self, path: &str, cookie: Option<&str>) -> (String, Option<String>) {
        let mut req = hyper::Request::get(format!("{}{path}", self.base()))
            .header("host", "site.test")
            .header("accept", "text/html")
            .header(
                "user-agent",
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) Mobile/15E148",
            );
        if let Some(c) = cookie {
            req = req
                .header("cookie", format!("tsw={c}"))
                .header("referer", "http://site.test/");
        }
        let resp = self
            .client
            .request(req.body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap();
        let set = resp.headers().get_all("set-cookie").iter().find_map(|v| {
            v.to_str()
                .ok()?
                .strip_prefix("tsw=")
                .map(|r| r.split(';').next().unwrap().to_string())
        });
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8(body.to_vec()).unwrap();
        let at = body.find("<b>").unwrap() + 3;
        (body[at..at + 12].to_string(), set.or(cookie.map(str::to_string)))
    }

    /// POSTs a provider webhook; `sign` decides the signature headers.
    async fn hook(&self, path: &str, params: &[(&str, &str)], sign: Sign<'_>) -> (u16, String) {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter())
            .finish();
        let mut req = hyper::Request::post(format!("{}{path}", self.base()))
            .header("host", "site.test")
            .header("content-type", "application/x-www-form-urlencoded");
        let owned: Vec<(String, String)> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        match sign {
            Sign::Twilio(token) => {
                let sig = twilio_signature(token, &format!("http://site.test{path}"), &owned);
                req = req.header("x-twilio-signature", sig);
            }
            Sign::Header(name, value) => req = req.header(name, value),
            Sign::Telnyx(kp, ts) => {
                use base64::Engine;
                let msg = [ts.to_string().as_bytes(), b"|", body.as_bytes()].concat();
                let sig = base64::engine::general_purpose::STANDARD.encode(kp.sign(&msg).as_ref());
                req = req
                    .header("telnyx-signature-ed25519", sig)
                    .header("telnyx-timestamp", ts.to_string());
            }
            Sign::None => {}
        }
        let resp = self
            .client
            .request(req.body(Full::new(Bytes::from(body))).unwrap())
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// The incoming-call webhook for a call `sid` to `to`, signed as Twilio signs it.
    async fn voice(&self, sid: &str, to: &str) -> (u16, String) {
        self.hook("/_telswap/voice", &call_params(sid, to), Sign::Twilio(TOKEN))
            .await
    }

    /// GETs an admin path with the token: status and body.
    async fn admin_raw(&self, path: &str) -> (u16, Bytes) {
        let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let req = hyper::Request::get(format!("http://{}{path}", self.app.admin.unwrap()))
            .header("authorization", format!("Bearer {ADMIN}"))
            .body(Empty::new())
            .unwrap();
        let resp = client.request(req).await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.into_body().collect().await.unwrap().to_bytes())
    }

    async fn admin(&self, path: &str) -> (u16, Value) {
        let (status, body) = self.admin_raw(path).await;
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    async fn metrics(&self) -> String {
        String::from_utf8(self.admin_raw("/metrics").await.1.to_vec()).unwrap()
    }

    async fn calls(&self) -> Vec<Value> {
        self.admin("/api/calls").await.1["calls"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

enum Sign<'a> {
    Twilio(&'a str),
    Header(&'static str, &'a str),
    Telnyx(&'a ring::signature::Ed25519KeyPair, i64),
    None,
}

fn call_params<'a>(sid: &'a str, to: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("CallSid", sid),
        ("AccountSid", "AC123"),
        ("From", "+14155550123"),
        ("To", to),
        ("CallStatus", "ringing"),
        ("Direction", "inbound"),
        ("FromCity", "SAN FRANCISCO"),
        ("FromState", "CA"),
        ("FromCountry", "US"),
    ]
}

const LANDING: &str =
    "/?utm_source=google&utm_medium=cpc&utm_campaign=spring&utm_term=emergency+plumber&gclid=Cj0KCQiAtest";

#[tokio::test]
async fn a_paid_journey_is_attributed_exactly_with_its_page_history() {
    let data = tempfile::tempdir().unwrap();
    let o = common::html_origin(PAGE).await;
    let clock = ManualClock::new(now_ms());
    let env = start(&rules(o, "twilio", "overflow", 2), data.path(), clock.clone(), None).await;
    let (n, cookie) = env.visit(LANDING, None).await;
    assert_eq!(n, "555-010-1001");
    // `/pricing?cta=header`: a placement link inside the site (the rules capture `cta`).
    for page in ["/services", "/pricing?cta=header", "/contact"] {
        clock.advance(Duration::from_secs(60));
        let (m, _) = env.visit(page, cookie.as_deref()).await;
        assert_eq!(m, n, "the number stays with the visitor on {page}");
    }
    clock.advance(Duration::from_secs(30));
    let (status, twiml) = env.voice("CA0001", "+15550101001").await;
    assert_eq!(status, 200, "{twiml}");
    assert!(
        twiml.contains("<Number url=\"http://site.test/_telswap/whisper?call="),
        "{twiml}"
    );
    assert!(twiml.contains(">+15550100077</Number>"), "dials forward_to: {twiml}");
    assert!(twiml.contains("callerId=\"+14155550123\""), "{twiml}");
    assert!(twiml.contains("record=\"record-from-answer\""), "{twiml}");
    assert!(twiml.contains("action=\"http://site.test/_telswap/status\""), "{twiml}");

    let calls = env.calls().await;
    assert_eq!(calls.len(), 1);
    let c = &calls[0];
    assert_eq!(c["confidence"], "exact");
    assert_eq!(c["tracking_number"], "+15550101001");
    assert_eq!(c["caller"], "+14155550123");
    assert_eq!(
        (c["caller_city"].as_str(), c["caller_state"].as_str()),
        (Some("SAN FRANCISCO"), Some("CA"))
    );
    assert_eq!(c["returning_caller"], false);
    let a = &c["attribution"];
    assert_eq!(a["channel"], "paid_search");
    assert_eq!(a["source"], "google");
    assert_eq!(a["medium"], "cpc");
    assert_eq!(a["campaign"], "spring");
    assert_eq!(a["term"], "emergency plumber");
    assert_eq!(a["gclid"], "Cj0KCQiAtest");
    assert_eq!(a["device"], "mobile");
    assert_eq!(a["landing_page"], LANDING);
    let pages: Vec<&str> = a["pages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert_eq!(pages, [LANDING, "/services", "/pricing?cta=header", "/contact"]);
    assert_eq!(
        a["params"],
        serde_json::json!({"cta": "header"}),
        "the placement clicked before the call"
    );

    // The whisper tells the business where the call came from.
    let id = c["id"].as_str().unwrap();
    let (status, say) = env
        .hook(
            &format!("/_telswap/whisper?call={id}"),
            &[("CallSid", "CA0001")],
            Sign::Twilio(TOKEN),
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        say.contains("<Say>Call from paid search, campaign spring.</Say>"),
        "{say}"
    );

    // The status callback completes the call; a second call from the same caller is returning.
    let (status, _) = env
        .hook(
            "/_telswap/status",
            &[
                ("CallSid", "CA0001"),
                ("CallStatus", "completed"),
                ("DialCallStatus", "completed"),
                ("DialCallDuration", "95"),
                ("RecordingUrl", "https://api.example/rec/1"),
            ],
            Sign::Twilio(TOKEN),
        )
        .await;
    assert_eq!(status, 200);
    let (_, one) = env.admin(&format!("/api/calls/{id}")).await;
    assert_eq!(
        (one["status"].as_str(), one["duration_s"].as_u64()),
        (Some("completed"), Some(95))
    );
    assert_eq!(one["recording_url"], "https://api.example/rec/1");
    clock.advance(Duration::from_secs(600));
    env.voice("CA0002", "+15550101001").await;
    let calls = env.calls().await;
    assert_eq!(
        calls[0]["returning_caller"], true,
        "newest first, and it is a repeat caller"
    );
    assert_eq!(calls[0]["earlier_calls"], 1);
    env.app.stop().await;
}

#[tokio::test]
async fn a_call_after_release_inside_the_window_is_late_and_after_it_none() {
    let data = tempfile::tempdir().unwrap();
    let o = common::html_origin(PAGE).await;
    let clock = ManualClock::new(now_ms());
    let env = start(&rules(o, "twilio", "overflow", 2), data.path(), clock.clone(), None).await;
    env.visit(LANDING, None).await;
    clock.advance(Duration::from_secs(45 * 60));
    env.voice("CA1", "+15550101001").await;
    clock.advance(Duration::from_secs(3 * 3600));
    env.voice("CA2", "+15550101001").await;
    let calls = env.calls().await;
    assert_eq!(calls[1]["confidence"], "late");
    assert_eq!(calls[1]["attribution"]["campaign"], "spring");
    assert_eq!(calls[0]["confidence"], "none");
    env.app.stop().await;
}

#[tokio::test]
async fn a_handed_over_number_is_shared_with_both_candidates() {
    let data = tempfile::tempdir().unwrap();
    let o = common::html_origin(PAGE).await;
    let clock = ManualClock::new(now_ms());
    let env = start(&rules(o, "twilio", "reuse_oldest", 1), data.path(), clock.clone(), None).await;
    let (a, _) = env.visit(LANDING, None).await;
    clock.advance(Duration::from_secs(60));
    let (b, _) = env
        .visit(
            "/?utm_source=bing&utm_medium=cpc&utm_campaign=autumn&msclkid=ms123",
            None,
        )
        .await;
    assert_eq!(a, b, "the only number is handed over");
    env.voice("CA9", "+15550101001").await;
    let c = &env.calls().await[0];
    assert_eq!(c["confidence"], "shared");
    let cands = c["attribution"]["candidates"].as_array().unwrap();
    assert_eq!(cands.len(), 2);
    assert_eq!(cands[0]["campaign"], "autumn", "the current holder first");
    assert_eq!(cands[1]["campaign"], "spring");
    assert_eq!(c["attribution"]["msclkid"], "ms123");
    env.app.stop().await;
}

#[tokio::test]
async fn source_and_offline_numbers_attribute_the_channel_only() {
    let data = tempfile::tempdir().unwrap();
    let o = common::html_origin(PAGE).await;
    let env = start(
        &rules(o, "twilio", "overflow", 1),
        data.path(),
        ManualClock::new(now_ms()),
        None,
    )
    .await;
    env.voice("CAs", "+15550102001").await;
    env.voice("CAo", "+15550103001").await;
    // The site's own number still forwards, and so does a number nobody lists.
    let (s, _) = env.voice("CAm", "+15550100000").await;
    assert_eq!(s, 200);
    // The overflow number: no visitor, but its pool's channel.
    env.voice("CAv", "+15550101999").await;
    let (s, twiml) = env.voice("CAx", "+15550109999").await;
    assert_eq!(s, 200);
    assert!(twiml.contains("+15550100077"), "forwarded to the business: {twiml}");
    let calls = env.calls().await;
    let by = |sid_number: &str| {
        calls
            .iter()
            .find(|c| c["tracking_number"] == sid_number)
            .unwrap()
            .clone()
    };
    assert_eq!(by("+15550102001")["confidence"], "source");
    assert_eq!(by("+15550102001")["attribution"]["channel"], "organic_search");
    // Paged two at a time, the five calls come once each, newest first, as in one page.
    let all: Vec<Value> = calls.iter().map(|c| c["id"].clone()).collect();
    assert_eq!(all.len(), 5);
    let (mut paged, mut next) = (Vec::new(), None::<String>);
    loop {
        let path = match &next {
            Some(after) => format!("/api/calls?limit=2&after={after}"),
            None => "/api/calls?limit=2".to_string(),
        };
        let (status, page) = env.admin(&path).await;
        assert_eq!(status, 200);
        paged.extend(page["calls"].as_array().unwrap().iter().map(|c| c["id"].clone()));
        match page["next"].as_str() {
            Some(n) => next = Some(n.to_string()),
            None => break,
        }
    }
    assert_eq!(paged, all);
    assert_eq!(by("+15550101999")["confidence"], "none");
    assert_eq!(by("+15550101999")["attribution"]["channel"], "paid_search");
    assert_eq!(by("+15550101999")["attribution"]["pool"], "ads");
    assert_eq!(by("+15550103001")["confidence"], "source");
    assert_eq!(by("+15550103001")["attribution"]["campaign"], "radio-spring");
    assert_eq!(by("+15550100000")["confidence"], "none");
    assert_eq!(by("+15550109999")["confidence"], "none");
    env.app.stop().await;
}

/// A number bought back or moved to another site leaves the rules while visitors' open pages
/// still show it: a call to it reaches the business, and the visitor who had it, as a call
/// after the lease ended.
#[tokio::test]
async fn a_call_to_a_number_a_reload_took_out_still_forwards_and_finds_its_visitor() {
    let data = tempfile::tempdir().unwrap();
    let o = common::html_origin(PAGE).await;
    let clock = ManualClock::new(now_ms());
    let text = rules(o, "twilio", "overflow", 2);
    let env = start(&text, data.path(), clock.clone(), None).await;
    let (n, _) = env.visit(LANDING, None).await;
    assert_eq!(n, "555-010-1001");
    let fewer = text.replace("\"+1 555-010-1001\", ", "");
    assert_ne!(fewer, text);
    let set = telswap::rules::load_sources(&[(std::path::PathBuf::from("site.toml"), fewer)]).unwrap();
    env.app.proxy.replace_rules(set);
    // The lease and its end, as the journal's writer commits them within milliseconds.
    telswap::store::Store::flush(&*env.app.store).unwrap();
    clock.advance(Duration::from_secs(60));
    let (s, twiml) = env.voice("CAgone", "+15550101001").await;
    assert_eq!(s, 200);
    assert!(twiml.contains("+15550100077"), "{twiml}");
    let calls = env.calls().await;
    let c = &calls[0];
    assert_eq!(c["confidence"], "late", "{c}");
    assert_eq!(c["attribution"]["pool"], "ads");
    assert_eq!(c["attribution"]["gclid"], "Cj0KCQiAtest");
    assert_eq!(c["attribution"]["term"], "emergency plumber");

    // The whole pool taken out: its leases are read with the default settings.
    let (n, _) = env.visit(LANDING, None).await;
    assert_eq!(n, "555-010-1002");
    let start = text.find("[[pool]]\nname = \"ads\"").unwrap();
    let end = text.find("[[pool]]\nname = \"organic\"").unwrap();
    let no_ads = format!("{}{}", &text[..start], &text[end..]);
    let set = telswap::rules::load_sources(&[(std::path::PathBuf::from("site.toml"), no_ads)]).unwrap();
    env.app.proxy.replace_rules(set);
    telswap::store::Store::flush(&*env.app.store).unwrap();
    clock.advance(Duration::from_secs(60));
    let (s, _) = env.voice("CAgone2", "+15550101002").await;
    assert_eq!(s, 200);
    let calls = env.calls().await;
    let c = calls.iter().find(|c| c["call_sid"] == "CAgone2").unwrap();
    assert_eq!(c["attribution"]["pool"], "ads", "{c}");
    assert_eq!(c["attribution"]["gclid"], "Cj0KCQiAtest", "{c}");
    assert_ne!(c["confidence"], "none", "{c}");
    env.app.stop().await;
}

#[tokio::test]
async fn unsigned_tampered_or_foreign_webhooks_are_403_and_store_nothing_for_every_dialect() {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let kp = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let other = ring::signature::Ed25519KeyPair::from_pkcs8(
        ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap().as_ref(),
    )
    .unwrap();
    use base64::Engine;
    let public = base64::engine::general_purpose::STANDARD.encode(kp.public_key().as_ref());
    for dialect in ["twilio", "signalwire", "telnyx"] {
        let data = tempfile::tempdir().unwrap();
        let o = common::html_origin(PAGE).await;
        let clock = ManualClock::new(now_ms());
        let env = start(
            &rules(o, dialect, "overflow", 1),
            data.path(),
            clock.clone(),
            Some(public.clone()),
        )
        .await;
        let p = call_params("CAbad", "+15550101001");
        let good_twilio = twilio_signature(TOKEN, "http://site.test/_telswap/voice", &owned(&p));
        let now = (clock.now_ms() / 1000) as i64;
        let mut refused: Vec<(u16, &str)> = vec![
            (env.hook("/_telswap/voice", &p, Sign::None).await.0, "unsigned"),
            (
                env.hook("/_telswap/voice", &p, Sign::Twilio("wrong-token")).await.0,
                "wrong token",
            ),
            (
                env.hook("/_telswap/voice", &p, Sign::Header("x-twilio-signature", "bm9wZQ=="))
                    .await
                    .0,
                "garbage",
            ),
            (
                env.hook("/_telswap/voice", &p, Sign::Telnyx(&other, now)).await.0,
                "other key",
            ),
        ];
        if dialect != "telnyx" {
            // Signed for one body, sent with another.
            let mut tampered = p.clone();
            tampered[2] = ("From", "+19995550000");
            refused.push((
                env.hook(
                    "/_telswap/voice",
                    &tampered,
                    Sign::Header("x-twilio-signature", &good_twilio),
                )
                .await
                .0,
                "tampered",
            ));
        } else {
            refused.push((
                env.hook("/_telswap/voice", &p, Sign::Twilio(TOKEN)).await.0,
                "twilio-signed to telnyx",
            ));
            refused.push((
                env.hook("/_telswap/voice", &p, Sign::Telnyx(&kp, now - 301)).await.0,
                "stale",
            ));
        }
        for (status, what) in &refused {
            assert_eq!(*status, 403, "{dialect}: {what}");
        }
        assert!(
            env.calls().await.is_empty(),
            "{dialect}: nothing stored for refused webhooks"
        );
        let (status, body) = match dialect {
            "twilio" => env.hook("/_telswap/voice", &p, Sign::Twilio(TOKEN)).await,
            "signalwire" => {
                env.hook(
                    "/_telswap/voice",
                    &p,
                    Sign::Header("x-signalwire-signature", &good_twilio),
                )
                .await
            }
            _ => env.hook("/_telswap/voice", &p, Sign::Telnyx(&kp, now)).await,
        };
        assert_eq!(status, 200, "{dialect}: {body}");
        // The provider retries: the same CallSid is answered the same and stored once.
        let again = match dialect {
            "telnyx" => env.hook("/_telswap/voice", &p, Sign::Telnyx(&kp, now)).await,
            _ => env.hook("/_telswap/voice", &p, Sign::Twilio(TOKEN)).await,
        };
        assert_eq!(again.0, 200, "{dialect}");
        assert_eq!(
            env.calls().await.len(),
            1,
            "{dialect}: a repeated CallSid is stored once"
        );
        // A malformed body: signed correctly but not a form / without CallSid.
        let (status, _) = match dialect {
            "telnyx" => {
                env.hook("/_telswap/voice", &[("To", "+15550101001")], Sign::Telnyx(&kp, now))
                    .await
            }
            _ => {
                env.hook("/_telswap/voice", &[("To", "+15550101001")], Sign::Twilio(TOKEN))
                    .await
            }
        };
        assert_eq!(status, 400, "{dialect}: a call without CallSid");
        env.app.stop().await;
    }
}

fn owned(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[tokio::test]
async fn admin_api_needs_the_token_and_records_outcomes() {
    let data = tempfile::tempdir().unwrap();
    let o = common::html_origin(PAGE).await;
    let env = start(
        &rules(o, "twilio", "overflow", 1),
        data.path(),
        ManualClock::new(now_ms()),
        None,
    )
    .await;
    env.voice("CAout", "+15550102001").await;
    let id = env.calls().await[0]["id"].as_str().unwrap().to_string();
    let admin = env.app.admin.unwrap();
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let send = |method: &str, path: &str, auth: Option<&str>, body: &str| {
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(format!("http://{admin}{path}"));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let req = req.body(Full::new(Bytes::from(body.to_string()))).unwrap();
        let client = client.clone();
        async move {
            let resp = client.request(req).await.unwrap();
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };
    for path in ["/api/calls", &format!("/api/calls/{id}"), "/api/pools", "/metrics"] {
        assert_eq!(send("GET", path, None, "").await.0, 401, "{path} without a token");
        assert_eq!(
            send("GET", path, Some("Bearer wrong"), "").await.0,
            401,
            "{path} with a wrong token"
        );
        assert_eq!(
            send("GET", path, Some(&format!("Bearer {ADMIN}")), "").await.0,
            200,
            "{path}"
        );
    }
    let bearer = format!("Bearer {ADMIN}");
    let (s, body) = send(
        "POST",
        &format!("/api/calls/{id}/outcome"),
        Some(&bearer),
        r#"{"kind":"sale","value":120.0,"currency":"usd"}"#,
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (v["outcome"]["kind"].as_str(), v["outcome"]["value"].as_f64()),
        (Some("sale"), Some(120.0))
    );
    assert_eq!(v["outcome"]["currency"], "USD");
    for bad in [
        r#"{"value":1}"#,
        "not json",
        r#"{"kind":"sale","value":-5}"#,
        r#"{"kind":"sale","currency":"dollars"}"#,
        r#"{"kind":"sale","value":250,"curency":"EUR"}"#,
        r#"["sale"]"#,
    ] {
        assert_eq!(
            send("POST", &format!("/api/calls/{id}/outcome"), Some(&bearer), bad)
                .await
                .0,
            400,
            "{bad}"
        );
    }
    assert_eq!(
        send("POST", "/api/calls/c_nope/outcome", Some(&bearer), r#"{"kind":"sale"}"#)
            .await
            .0,
        404
    );
    // An outcome recorded by mistake is removed; removing none changes nothing.
    let outcome_path = format!("/api/calls/{id}/outcome");
    for _ in 0..2 {
        let (s, body) = send("DELETE", &outcome_path, Some(&bearer), "").await;
        assert_eq!(s, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["outcome"], Value::Null, "{body}");
    }
    let (_, report) = send("GET", "/api/reports/outcomes", Some(&bearer), "").await;
    assert!(!report.contains("\"sale\""), "{report}");
    assert_eq!(
        send("DELETE", "/api/calls/c_nope/outcome", Some(&bearer), "").await.0,
        404
    );
    assert_eq!(send("DELETE", &outcome_path, None, "").await.0, 401);
    assert_eq!(send("PUT", &outcome_path, Some(&bearer), "").await.0, 405);
    // A site filter names a site: a typo is no site without calls (an empty ad upload).
    for path in [
        "/api/calls",
        "/api/reports/overview",
        "/api/export/google-ads.csv",
        "/api/pools",
    ] {
        let (s, body) = send("GET", &format!("{path}?site=stie"), Some(&bearer), "").await;
        assert_eq!(s, 400, "{path}: {body}");
        assert!(body.contains("no site \\\"stie\\\"; sites: site"), "{path}: {body}");
        assert_eq!(
            send("GET", &format!("{path}?site=site"), Some(&bearer), "").await.0,
            200,
            "{path}"
        );
    }
    assert_eq!(send("GET", "/api/pools?pool=ads", Some(&bearer), "").await.0, 400);
    assert_eq!(send("GET", "/api/calls?from=yesterday", Some(&bearer), "").await.0, 400);
    assert_eq!(send("GET", "/api/calls?offset=5", Some(&bearer), "").await.0, 400);
    assert_eq!(send("GET", "/api/calls?after=nonsense", Some(&bearer), "").await.0, 400);
    let (_, pools) = send("GET", "/api/pools", Some(&bearer), "").await;
    let pools: Value = serde_json::from_str(&pools).unwrap();
    let ads = &pools["pools"][0];
    assert_eq!(
        (ads["site"].as_str(), ads["name"].as_str(), ads["mode"].as_str()),
        (Some("site"), Some("ads"), Some("session"))
    );
    assert!(ads.get("peak_leased").is_some() && ads.get("exhausted").is_some() && ads.get("leased").is_some());
    env.app.stop().await;
}

/// A site of the test rules, served with a manual clock from a data folder of its own, whose
/// `social` pool shows one number to organic and paid social visitors alike.
async fn social_site() -> (tempfile::TempDir, String, Arc<ManualClock>, Env) {
    let data = tempfile::tempdir().unwrap();
    let text = rules(common::html_origin(PAGE).await, "twilio", "overflow", 1);
    let clock = ManualClock::new(now_ms());
    let env = start(&text, data.path(), clock.clone(), None).await;
    (data, text, clock, env)
}

/// A source number shared by two channels: a call is credited to the channel that every
/// visitor shown the number in the pool's `match_window` came from, and to none once they
/// differ; who saw it is kept on the call either way, and read from the store, so a restart
/// keeps it.
#[tokio::test]
async fn a_shared_source_number_is_credited_to_the_channel_of_everyone_who_saw_it() {
    let (data, text, clock, env) = social_site().await;
    let organic = "/?utm_source=facebook&utm_medium=social";
    let (n, _) = env.visit(organic, None).await;
    assert_eq!(n, "555-010-2002");
    env.visit(organic, None).await;
    // Seen three hours ago: outside the 2 h window of a call now.
    let (n, _) = env.visit("/?utm_source=instagram&utm_medium=paid_social", None).await;
    assert_eq!(n, "555-010-2002");
    clock.advance(Duration::from_secs(3 * 3600));
    env.visit(organic, None).await;
    telswap::store::Store::flush(&*env.app.store).unwrap();
    clock.advance(Duration::from_secs(60));
    env.voice("CAsocial1", "+15550102002").await;
    let c = &env.calls().await[0];
    assert_eq!(c["confidence"], "source");
    let a = &c["attribution"];
    assert_eq!(
        (a["channel"].as_str(), a["source"].as_str()),
        (Some("organic_social"), Some("facebook")),
        "{c}"
    );
    assert_eq!(a["shown_to"]["sources"][0]["visitors"], 1, "{c}");
    assert_eq!(a["shown_to"]["complete"], true, "{c}");

    // A paid visitor now sees it too: the next call is no longer any one channel's. After a
    // restart, as the audience is the store's.
    env.visit("/?utm_source=instagram&utm_medium=paid_social", None).await;
    telswap::store::Store::flush(&*env.app.store).unwrap();
    env.app.stop().await;
    let env = start(&text, data.path(), clock.clone(), None).await;
    clock.advance(Duration::from_secs(60));
    env.voice("CAsocial2", "+15550102002").await;
    let c = env
        .calls()
        .await
        .into_iter()
        .find(|c| c["call_sid"] == "CAsocial2")
        .unwrap();
    let a = &c["attribution"];
    assert_eq!(
        (a["channel"].as_str(), a["source"].as_str(), a["pool"].as_str()),
        (None, None, Some("social")),
        "{c}"
    );
    let shown: Vec<(&str, &str, u64)> = a["shown_to"]["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["channel"].as_str().unwrap(),
                r["source"].as_str().unwrap(),
                r["visitors"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        shown,
        [("paid_social", "instagram", 1), ("organic_social", "facebook", 1)],
        "{c}"
    );
    let (status, page) = env.admin_raw(&format!("/calls/{}", c["id"].as_str().unwrap())).await;
    let page = String::from_utf8_lossy(&page);
    assert_eq!(status, 200);
    assert!(
        page.contains("Number shown to") && page.contains("paid_social (instagram): 1 visitors"),
        "{page}"
    );
    env.app.stop().await;
}

/// Where visitors without consent are shown source numbers, they leave no page view: the
/// audience is not whole, and no channel is inferred from the visitors who did.
#[tokio::test]
async fn a_source_number_seen_without_consent_is_credited_to_no_inferred_channel() {
    let data = tempfile::tempdir().unwrap();
    let o = common::html_origin(PAGE).await;
    let text = rules(o, "twilio", "overflow", 1).replace(
        "[telephony]",
        "[consent]\nmode = \"gpc\"\nwithout = \"source\"\n\n[telephony]",
    );
    let env = start(&text, data.path(), ManualClock::new(now_ms()), None).await;
    let (n, _) = env.visit("/?utm_source=facebook&utm_medium=social", None).await;
    assert_eq!(n, "555-010-2002");
    telswap::store::Store::flush(&*env.app.store).unwrap();
    env.voice("CAgpc", "+15550102002").await;
    let c = &env.calls().await[0];
    let a = &c["attribution"];
    assert_eq!((a["channel"].as_str(), a["source"].as_str()), (None, None), "{c}");
    assert_eq!(a["shown_to"]["complete"], false, "{c}");
    assert_eq!(a["shown_to"]["sources"][0]["channel"], "organic_social", "{c}");
    env.app.stop().await;
}

/// A run that ended without closing its store (a crash, `kill -9`) may have lost page views it
/// had queued, and which is not known: a call's audience reaching back before the restart is
/// not whole, and no channel is inferred from it. One past the pool's `match_window`, or after a
/// clean stop, is.
#[tokio::test]
async fn after_a_crash_a_source_numbers_audience_is_not_known_whole() {
    let (data, text, clock, env) = social_site().await;
    let organic = "/?utm_source=facebook&utm_medium=social";
    env.visit(organic, None).await;
    telswap::store::Store::flush(&*env.app.store).unwrap();
    // No stop: the store is never closed, as a crash leaves it.
    std::mem::forget(env);

    let env = start(&text, data.path(), clock.clone(), None).await;
    clock.advance(Duration::from_secs(60));
    let channel_and_whole = |c: &serde_json::Value| {
        let a = &c["attribution"];
        (
            a["channel"].as_str().map(String::from),
            a["shown_to"]["complete"].as_bool(),
        )
    };
    env.voice("CAcrash1", "+15550102002").await;
    let c = &env.calls().await[0];
    assert_eq!(channel_and_whole(c), (None, Some(false)), "{c}");
    assert_eq!(
        c["attribution"]["shown_to"]["sources"][0]["channel"], "organic_social",
        "{c}"
    );

    // Past the window, what was lost no longer counts.
    clock.advance(Duration::from_secs(3 * 3600));
    env.visit(organic, None).await;
    telswap::store::Store::flush(&*env.app.store).unwrap();
    env.voice("CAcrash2", "+15550102002").await;
    let c = &env.calls().await[0];
    assert_eq!(channel_and_whole(c), (Some("organic_social".into()), Some(true)), "{c}");

    // A clean stop loses nothing.
    env.app.stop().await;
    let env = start(&text, data.path(), clock.clone(), None).await;
    clock.advance(Duration::from_secs(60));
    env.voice("CAcrash3", "+15550102002").await;
    let c = &env.calls().await[0];
    assert_eq!(channel_and_whole(c), (Some("organic_social".into()), Some(true)), "{c}");
    env.app.stop().await;
}

#[tokio::test]
async fn a_restart_keeps_live_leases_and_the_visitor_keeps_the_number() {
    let data = tempfile::tempdir().unwrap();
    let o = common::html_origin(PAGE).await;
    let text = rules(o, "twilio", "overflow", 2);
    let clock = ManualClock::new(now_ms());
    let env = start(&text, data.path(), clock.clone(), None).await;
    let (n, cookie) = env.visit(LANDING, None).await;
    assert_eq!(n, "555-010-1001");
    env.app.stop().await;

    clock.advance(Duration::from_secs(60));
    let env = start(&text, data.path(), clock.clone(), None).await;
    let (other, _) = env.visit(LANDING, None).await;
    assert_eq!(other, "555-010-1002", "the live lease survived the restart");
    let (same, _) = env.visit("/next", cookie.as_deref()).await;
    assert_eq!(same, "555-010-1001", "and its visitor still has it");
    env.voice("CAr", "+15550101001").await;
    let c = &env.calls().await[0];
    assert_eq!(c["confidence"], "exact");
    assert_eq!(c["attribution"]["campaign"], "spring");
    // The journey spans the restart: the landing page viewed before it is still the first.
    let pages: Vec<&str> = c["attribution"]["pages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert_eq!(pages, [LANDING, "/next"]);
    env.app.stop().await;
}

/// A restart keeps the order released numbers rested in, and their history: the number whose
/// visitor left last is not the next one handed out, and that visitor's late call is still
/// theirs (`late`), not the next visitor's (`exact`). A fresh table handed numbers out in list
/// order.
#[tokio::test]
async fn a_restart_keeps_the_rest_order_and_history_of_released_numbers() {
    let data = tempfile::tempdir().unwrap();
    let o = common::html_origin(PAGE).await;
    let text = rules(o, "twilio", "overflow", 3);
    let clock = ManualClock::new(now_ms());
    let env = start(&text, data.path(), clock.clone(), None).await;
    let (n1, c1) = env.visit(LANDING, None).await;
    let (n2, _) = env.visit(LANDING, None).await;
    let (n3, c3) = env.visit(LANDING, None).await;
    assert_eq!(
        [n1.as_str(), &n2, &n3],
        ["555-010-1001", "555-010-1002", "555-010-1003"]
    );
    // Last seen: the second visitor first, then the first, then the third.
    clock.advance(Duration::from_secs(5 * 60));
    env.visit("/next", c1.as_deref()).await;
    clock.advance(Duration::from_secs(5 * 60));
    env.visit("/next", c3.as_deref()).await;
    env.app.stop().await;

    // Past every idle_timeout (30m): all three leases ended, in that order.
    clock.advance(Duration::from_secs(30 * 60 + 60));
    let env = start(&text, data.path(), clock.clone(), None).await;
    let (next, _) = env.visit(LANDING, None).await;
    assert_eq!(next, "555-010-1002", "the number rested longest goes first");
    env.voice("CAlate", "+15550101001").await;
    let c = &env.calls().await[0];
    assert_eq!(c["confidence"], "late", "the first visitor's late call is theirs: {c}");
    env.app.stop().await;
}

/// Numbers bought while the server was down, listed first: a live lease is found by its number,
/// not by its old place in the list.
#[tokio::test]
async fn a_restart_with_numbers_added_keeps_live_leases() {
    let data = tempfile::tempdir().unwrap();
    let o = common::html_origin(PAGE).await;
    let text = rules(o, "twilio", "overflow", 2);
    let clock = ManualClock::new(now_ms());
    let env = start(&text, data.path(), clock.clone(), None).await;
    env.visit(LANDING, None).await;
    let (n, cookie) = env.visit(LANDING, None).await;
    assert_eq!(n, "555-010-1002");
    env.app.stop().await;

    let more = text.replace(
        "numbers = [\"+1 555-010-1001\"",
        "numbers = [\"+1 555-010-1009\", \"+1 555-010-1001\"",
    );
    assert_ne!(more, text);
    let env = start(&more, data.path(), clock.clone(), None).await;
    let (same, _) = env.visit("/next", cookie.as_deref()).await;
    assert_eq!(
        same, "555-010-1002",
        "the lease survived the restart though its number moved"
    );
    let (new, _) = env.visit(LANDING, None).await;
    assert_eq!(new, "555-010-1009");
    env.app.stop().await;
}

#[tokio::test]
async fn telswap_call_signs_like_the_provider_and_ends_the_call() {
    let data = tempfile::tempdir().unwrap();
    let o = common::html_origin(PAGE).await;
    let env = start(
        &rules(o, "twilio", "overflow", 1),
        data.path(),
        ManualClock::new(now_ms()),
        None,
    )
    .await;
    let base = env.base();
    // The command as a person runs it.
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_telswap"))
            .args([
                "call",
                "--server",
                &base,
                "--host",
                "site.test",
                "--to",
                "+15550102001",
                "--from",
                "+12125550188",
            ])
            .args(["--duration", "42", "--token", TOKEN])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("voice webhook answered 200") && stdout.contains("status callback answered 200"),
        "{stdout}"
    );
    let c = &env.calls().await[0];
    assert_eq!(
        (c["status"].as_str(), c["duration_s"].as_u64()),
        (Some("completed"), Some(42))
    );
    assert_eq!(c["caller_state"], "NY");
    assert!(stdout.contains(c["call_sid"].as_str().unwrap()));
    // With the wrong secret the server refuses, and the command says so.
    let base = env.base();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_telswap"))
            .args([
                "call",
                "--server",
                &base,
                "--host",
                "site.test",
                "--to",
                "+15550102001",
                "--token",
                "nope",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("refused the call (403: bad signature)"));
    assert_eq!(env.calls().await.len(), 1);
    env.app.stop().await;
}

/// Three sites: `site` (this test's token), `shared` (another variable, the same token: one
/// provider account) and `other` (its own account). A webhook signed for `site.test` may act on
/// `shared`'s numbers and calls, never on `other`'s.
#[tokio::test]
async fn a_webhook_acts_only_on_calls_of_the_account_that_signed_it() {
    let data = tempfile::tempdir().unwrap();
    let o = common::html_origin(PAGE).await;
    let site = |host: &str, env: &str, number: &str| {
        format!(
            "hosts = [\"{host}\"]\nupstream = \"http://{o}\"\nnumbers = [\"{number}0\"]\n\
             [telephony]\nauth_token_env = \"{env}\"\n\
             [[offline]]\nnumber = \"{number}1\"\ncampaign = \"print\"\n"
        )
    };
    let sites = [
        ("site", site("site.test", "TEST_TOKEN", "+1 555-010-000")),
        ("shared", site("shared.test", "SHARED_TOKEN", "+1 555-020-000")),
        ("other", site("other.test", "OTHER_TOKEN", "+1 555-030-000")),
    ];
    let secrets: telswap::calls::Secrets = Arc::new(|name: &str| match name {
        "TEST_TOKEN" | "SHARED_TOKEN" => Some(TOKEN.to_string()),
        "OTHER_TOKEN" => Some("other-account-token".to_string()),
        _ => None,
    });
    let clock = ManualClock::new(now_ms());
    let app = common::start_app_sites(&sites, data.path(), clock, ADMIN, secrets).await;
    let env = Env {
        app,
        client: hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http(),
    };
    let envr = &env;
    let voice = |sid: &'static str, to: &'static str| async move { envr.voice(sid, to).await.0 };
    assert_eq!(voice("CA1", "+15550200001").await, 200, "same account, other site");
    assert_eq!(voice("CA2", "+15550300001").await, 403, "another account's number");
    let calls = env.calls().await;
    let sites: Vec<_> = calls.iter().map(|c| c["site"].as_str().unwrap()).collect();
    assert_eq!(sites, ["shared"], "nothing stored for the refused call");

    // A call of `other`, placed through its own host and token.
    let params: Vec<(String, String)> = call_params("CA3", "+15550300001")
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let post = |path: &str, params: &[(String, String)], host: &str, token: &str| {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter())
            .finish();
        hyper::Request::post(format!("{}{path}", env.base()))
            .header("host", host)
            .header("content-type", "application/x-www-form-urlencoded")
            .header(
                "x-twilio-signature",
                twilio_signature(token, &format!("http://{host}{path}"), params),
            )
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    };
    let send = |req| async { env.client.request(req).await.unwrap().status() };
    let get = hyper::Request::get(format!("{}/_telswap/voice", env.base()))
        .header("host", "site.test")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = env.client.request(get).await.unwrap();
    assert_eq!(
        (resp.status().as_u16(), resp.headers()["allow"].to_str().unwrap()),
        (405, "POST")
    );
    assert_eq!(
        send(post("/_telswap/voice", &params, "other.test", "other-account-token")).await,
        200
    );
    // Its status callback, signed by this site's account: as unknown as no call, and unchanged.
    let status: Vec<(String, String)> = [("CallSid", "CA3"), ("CallStatus", "completed"), ("CallDuration", "777")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(send(post("/_telswap/status", &status, "site.test", TOKEN)).await, 404);
    let other = env.calls().await.into_iter().find(|c| c["site"] == "other").unwrap();
    assert_eq!(
        (other["status"].as_str(), other["duration_s"].as_u64()),
        (Some("ringing"), None)
    );
    // Its own account may.
    assert_eq!(
        send(post("/_telswap/status", &status, "other.test", "other-account-token")).await,
        200
    );
    let other = env.calls().await.into_iter().find(|c| c["site"] == "other").unwrap();
    assert_eq!(other["duration_s"].as_u64(), Some(777));
    env.app.stop().await;
}

/// Slow peers are not held (virtual time): a webhook whose body stalls is answered 408 after
/// `BODY_TIMEOUT` (stalled requests would otherwise pile up until no descriptor is left for
/// real calls), and the admin listener drops a request head that never ends (slowloris), as the
/// public ones do.
#[tokio::test(start_paused = true)]
async fn a_stalled_webhook_body_and_a_stalled_admin_request_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let data = tempfile::tempdir().unwrap();
    let o = common::html_origin(PAGE).await;
    let env = start(
        &rules(o, "twilio", "overflow", 2),
        data.path(),
        ManualClock::new(now_ms()),
        None,
    )
    .await;
    let mut s = tokio::net::TcpStream::connect(env.app.running.http).await.unwrap();
    s.write_all(b"POST /_telswap/voice HTTP/1.1\r\nHost: site.test\r\nContent-Length: 1000\r\n\r\nab")
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 408");
    assert_eq!(started.elapsed(), telswap::calls::BODY_TIMEOUT);
    assert!(env.calls().await.is_empty());

    let mut s = tokio::net::TcpStream::connect(env.app.admin.unwrap()).await.unwrap();
    s.write_all(b"GET /api/calls HTTP/1.1\r\nHost: x\r\nX-A: ")
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest).await;
    assert!(started.elapsed() >= std::time::Duration::from_secs(30));
    assert!(started.elapsed() < std::time::Duration::from_secs(31));
    env.app.stop().await;
}

/// With `telswap.db` removed while serving, calls are refused with 503 (the provider retries)
/// and the health check fails, so a balancer or orchestrator notices and restarts the process,
/// which opens the file again.
#[tokio::test]
async fn a_removed_store_file_fails_the_health_check_and_refuses_calls() {
    let data = tempfile::tempdir().unwrap();
    let o = common::html_origin(PAGE).await;
    let clock = ManualClock::new(now_ms());
    let env = start(&rules(o, "twilio", "overflow", 2), data.path(), clock, None).await;
    let health = |env: &Env| {
        let req = hyper::Request::get(format!("{}/_telswap/health", env.base()))
            .header("host", "anything.test")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let fut = env.client.request(req);
        async move {
            let resp = fut.await.unwrap();
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };
    assert_eq!(health(&env).await.0, 200);
    env.visit(LANDING, None).await;
    assert!(env.metrics().await.contains("\ntelswap_store_ok 1\n"));
    std::fs::remove_file(data.path().join("telswap.db")).unwrap();
    let (status, body) = health(&env).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("removed or replaced"), "{body}");
    let (status, _) = env.voice("CA1", "+15550101001").await;
    assert_eq!(status, 503);
    let metrics = env.metrics().await;
    assert!(metrics.contains("\ntelswap_store_ok 0\n"), "{metrics}");
    env.app.stop().await;
}
