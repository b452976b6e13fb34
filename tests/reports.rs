//! Reports, ad spend and CSV exports end to end: visitors through the proxy, signed webhooks,
//! status callbacks and outcomes, then every report's figures and the exports byte for byte.

mod common;

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use telswap::app::App;
use telswap::calls::signature::twilio_signature;
use telswap::clock::ManualClock;

const TOKEN: &str = "test-auth-token";
const ADMIN: &str = "admin-secret-token";
const PAGE: &str = "<html><body><p>Call <b>555-010-0000</b></p></body></html>";
/// 2026-11-27T14:00:00Z, a Friday.
const T0: u64 = 1_795_788_000_000;
const MOBILE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) Mobile/15E148";
const DESKTOP: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";

const LANDING1: &str = "/?utm_source=google&utm_medium=cpc&utm_campaign=spring&utm_term=emergency+plumber\
                        &gclid=Cj0KCQiAtest&cta=header";
const LANDING2: &str = "/services?utm_source=bing&utm_medium=cpc&utm_campaign=autumn&utm_term=plumber+near+me\
                        &msclkid=ms123&cta=footer";
const LANDING3: &str =
    "/drains?utm_source=google&utm_medium=cpc&utm_campaign=spring&utm_term=drain+cleaning&gbraid=0AbCdEf";

fn rules(origin: std::net::SocketAddr) -> String {
    format!(
        r#"hosts = ["site.test"]
upstream = "http://{origin}"
numbers = ["+1 555-010-0000"]
capture = ["cta"]

[telephony]
dialect = "twilio"
auth_token_env = "TEST_TOKEN"
forward_to = "+1 555-010-0077"

[[pool]]
name = "ads"
mode = "session"
when.channel = ["paid_search"]
numbers = ["+1 555-010-1001", "+1 555-010-1002", "+1 555-010-1003"]
idle_timeout = "30m"
match_window = "2h"

[[pool]]
name = "organic"
mode = "source"
when.channel = ["organic_search"]
numbers = ["+1 555-010-2001"]

[[offline]]
number = "+1 555-010-3001"
campaign = "radio-spring"
"#
    )
}

type Client = hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

struct Env {
    app: App,
    client: Client,
    clock: Arc<ManualClock>,
}

struct Reply {
    status: u16,
    headers: http::HeaderMap,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

async fn start(text: &str, data: &Path, clock: Arc<ManualClock>) -> Env {
    let secrets: telswap::calls::Secrets =
        Arc::new(move |name: &str| (name == "TEST_TOKEN").then(|| TOKEN.to_string()));
    let app = common::start_app(text, data, clock.clone(), ADMIN, secrets).await;
    Env {
        app,
        client: hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http(),
        clock,
    }
}

impl Env {
    fn at(&self, offset_s: i64) {
        self.clock.set((T0 as i64 + offset_s * 1000) as u64);
    }

    /// A page view; returns the number shown and the visitor cookie.
    async fn visit(&self, path: &str, ua: &str, referer: Option<&str>, cookie: Option<&str>) -> (String, String) {
        let mut req = hyper::Request::get(format!("http://{}{path}", self.app.running.http))
            .header("host", "site.test")
            .header("accept", "text/html")
            .header("user-agent", ua);
        if let Some(r) = referer {
            req = req.header("referer", r);
        }
        if let Some(c) = cookie {
            req = req.header("cookie", format!("tsw={c}"));
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
        let body = String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
        let at = body.find("<b>").unwrap() + 3;
        (
            body[at..at + 12].to_string(),
            set.or(cookie.map(str::to_string)).unwrap(),
        )
    }

    async fn hook(&self, path: &str, params: &[(&str, &str)]) {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter())
            .finish();
        let owned: Vec<(String, String)> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let sig = twilio_signature(TOKEN, &format!("http://site.test{path}"), &owned);
        let req = hyper::Request::post(format!("http://{}{path}", self.app.running.http))
            .header("host", "site.test")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-twilio-signature", sig)
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let resp = self.client.request(req).await.unwrap();
        assert_eq!(resp.status(), 200, "{path} {params:?}");
    }

    /// An incoming call at `offset_s`, then its status callback (`None`: no answer).
    async fn call(&self, offset_s: i64, sid: &str, from: &str, to: &str, duration: Option<u32>) {
        self.at(offset_s);
        let p = [
            ("CallSid", sid),
            ("AccountSid", "AC1"),
            ("From", from),
            ("To", to),
            ("CallStatus", "ringing"),
            ("Direction", "inbound"),
        ];
        self.hook("/_telswap/voice", &p).await;
        let d = duration.map(|d| d.to_string());
        let status: Vec<(&str, &str)> = match &d {
            Some(d) => vec![
                ("CallSid", sid),
                ("CallStatus", "completed"),
                ("DialCallStatus", "completed"),
                ("DialCallDuration", d),
            ],
            None => vec![
                ("CallSid", sid),
                ("CallStatus", "completed"),
                ("DialCallStatus", "no-answer"),
            ],
        };
        self.hook("/_telswap/status", &status).await;
    }

    async fn admin(&self, method: &str, path: &str, ctype: Option<&str>, body: &str) -> Reply {
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.app.admin.unwrap()))
            .header("authorization", format!("Bearer {ADMIN}"));
        if let Some(c) = ctype {
            req = req.header("content-type", c);
        }
        let resp = self
            .client
            .request(req.body(Full::new(Bytes::from(body.to_string()))).unwrap())
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
        Reply { status, headers, body }
    }

    async fn get(&self, path: &str) -> Reply {
        self.admin("GET", path, None, "").await
    }

    async fn report(&self, name: &str) -> Value {
        let r = self
            .get(&format!("/api/reports/{name}?from=2026-11-27&to=2026-11-28"))
            .await;
        assert_eq!(r.status, 200, "{name}: {}", r.body);
        r.json()
    }
}

/// The rows of a report, each reduced to the given keys.
fn pick(v: &Value, keys: &[&str]) -> Vec<Value> {
    v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| Value::Object(keys.iter().map(|k| (k.to_string(), r[*k].clone())).collect()))
        .collect()
}

fn sub(v: &Value, keys: &[&str]) -> Value {
    Value::Object(keys.iter().map(|k| (k.to_string(), v[*k].clone())).collect())
}

#[tokio::test]
async fn reports_spend_and_exports_from_real_calls() {
    let data = tempfile::tempdir().unwrap();
    let o = common::html_origin(PAGE).await;
    let clock = ManualClock::new(T0 - 2 * 3_600_000);
    let env = start(&rules(o), data.path(), clock.clone()).await;

    // Visitor 2 first found the site through organic search, two hours earlier.
    let (n, v2) = env.visit("/", DESKTOP, Some("https://www.google.com/"), None).await;
    assert_eq!(n, "555-010-2001", "organic visitors see the organic number");
    env.at(0);
    let (n1, v1) = env.visit(LANDING1, MOBILE, None, None).await;
    env.at(30);
    let (n2, v2) = env.visit(LANDING2, DESKTOP, None, Some(&v2)).await;
    env.at(40);
    let (n3, _) = env.visit(LANDING3, MOBILE, None, None).await;
    assert_eq!(
        [n1.as_str(), &n2, &n3],
        ["555-010-1001", "555-010-1002", "555-010-1003"]
    );
    env.at(60);
    env.visit("/pricing", MOBILE, Some("http://site.test/"), Some(&v1))
        .await;
    env.visit("/contact", DESKTOP, Some("http://site.test/services"), Some(&v2))
        .await;

    env.call(90, "CA1", "+14155550123", "+15550101001", Some(95)).await;
    env.call(120, "CA2", "+12125550188", "+15550101002", Some(20)).await;
    env.call(150, "CA3", "+14155550123", "+15550101003", Some(45)).await;
    env.call(180, "CA4", "+13105550100", "+15550102001", None).await;
    env.call(86_400, "CA5", "+14155550123", "+15550103001", Some(300)).await;

    let calls = env.get("/api/calls").await.json()["calls"].as_array().unwrap().clone();
    // A date as `to` takes in that whole day: `from=D&to=D` is day D, as on the dashboard.
    for (q, want) in [
        ("from=2026-11-27&to=2026-11-27", &["CA4", "CA3", "CA2", "CA1"][..]),
        ("from=2026-11-28&to=2026-11-28", &["CA5"]),
        ("to=2026-11-27T14:02:00Z", &["CA1"]),
        // A date is a day in `tz`: the 28th at +12:00 runs from 12:00 UTC on the 27th.
        (
            "from=2026-11-28&to=2026-11-28&tz=%2B12:00",
            &["CA4", "CA3", "CA2", "CA1"],
        ),
    ] {
        let v = env.get(&format!("/api/calls?{q}")).await.json();
        let got: Vec<&str> = v["calls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["call_sid"].as_str().unwrap())
            .collect();
        assert_eq!(got, want, "{q}");
    }
    let id = |sid: &str| {
        calls.iter().find(|c| c["call_sid"] == sid).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    for (sid, outcome) in [
        ("CA1", r#"{"kind":"sale","value":120,"currency":"USD"}"#),
        ("CA3", r#"{"kind":"sale","value":80,"currency":"USD"}"#),
        ("CA5", r#"{"kind":"booking"}"#),
    ] {
        let r = env
            .admin("POST", &format!("/api/calls/{}/outcome", id(sid)), None, outcome)
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }

    // Spend: a CSV upload and a JSON one.
    let csv = "site,day,channel,campaign,amount,currency\r\n\
               site,2026-11-27,paid_search,spring,100,USD\r\n\
               site,2026-11-27,paid_search,autumn,50,USD\r\n";
    let r = env.admin("PUT", "/api/spend", Some("text/csv"), csv).await;
    assert_eq!((r.status, r.json()), (200, json!({"stored": 2})), "{}", r.body);
    let r = env
        .admin(
            "PUT",
            "/api/spend",
            Some("application/json"),
            r#"{"spend":[{"site":"site","day":"2026-11-27","channel":"paid_social","amount":10,"currency":"USD"}]}"#,
        )
        .await;
    assert_eq!((r.status, r.json()), (200, json!({"stored": 1})), "{}", r.body);
    // A bad line: 400 naming it, and nothing of that upload is stored.
    let bad = "site,day,channel,campaign,amount,currency\n\
               site,2026-11-27,paid_search,spring,999,USD\n\
               site,2026-11-27,paid_search,autumn,lots,USD\n";
    let r = env
        .admin("PUT", "/api/spend", Some("text/csv; charset=utf-8"), bad)
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["error"],
        "line 3: amount: must be a number from 0 to 1e12, got \"lots\""
    );
    let r = env.admin("PUT", "/api/spend", Some("text/plain"), csv).await;
    assert_eq!(r.status, 415);

    // The list of reports, then each report's figures.
    let list = env.get("/api/reports").await.json();
    assert_eq!(list["reports"].as_array().unwrap().len(), 13);

    let v = env.report("overview").await;
    assert_eq!(
        (v["from"].as_str(), v["to"].as_str()),
        (Some("2026-11-27T00:00:00Z"), Some("2026-11-29T00:00:00Z"))
    );
    assert_eq!(
        v["rows"],
        json!([
            {"day": "2026-11-27", "calls": 4, "answered": 3, "first_time": 3, "conversions": 2, "sales": 2, "value": 200.0},
            {"day": "2026-11-28", "calls": 1, "answered": 1, "first_time": 0, "conversions": 1, "sales": 0, "value": 0.0},
        ])
    );
    assert_eq!(
        sub(
            &v["totals"],
            &[
                "calls",
                "answered",
                "conversions",
                "sales",
                "value",
                "answer_rate",
                "conversion_rate"
            ]
        ),
        json!({"calls": 5, "answered": 4, "conversions": 3, "sales": 2, "value": 200.0, "answer_rate": 0.8,
               "conversion_rate": 0.4})
    );
    assert_eq!(v["currency"], "USD");

    let v = env.report("channels").await;
    assert_eq!(
        pick(
            &v,
            &[
                "channel",
                "calls",
                "answered",
                "first_time",
                "sales",
                "conversion_rate",
                "value"
            ]
        ),
        [
            json!({"channel": "paid_search", "calls": 3, "answered": 3, "first_time": 2, "sales": 2,
                   "conversion_rate": 0.6667, "value": 200.0}),
            json!({"channel": "offline", "calls": 1, "answered": 1, "first_time": 0, "sales": 0,
                   "conversion_rate": 0.0, "value": 0.0}),
            json!({"channel": "organic_search", "calls": 1, "answered": 0, "first_time": 1, "sales": 0,
                   "conversion_rate": 0.0, "value": 0.0}),
        ]
    );

    let v = env.report("campaigns").await;
    assert_eq!(
        pick(&v, &["campaign", "channel", "calls", "sales", "value", "spend", "roas"]),
        [
            json!({"campaign": "spring", "channel": "paid_search", "calls": 2, "sales": 2, "value": 200.0,
                   "spend": 100.0, "roas": 2.0}),
            json!({"campaign": "(not set)", "channel": "organic_search", "calls": 1, "sales": 0, "value": 0.0,
                   "spend": 0.0, "roas": null}),
            json!({"campaign": "autumn", "channel": "paid_search", "calls": 1, "sales": 0, "value": 0.0,
                   "spend": 50.0, "roas": 0.0}),
            json!({"campaign": "radio-spring", "channel": "offline", "calls": 1, "sales": 0, "value": 0.0,
                   "spend": 0.0, "roas": null}),
        ]
    );

    let v = env.report("keywords").await;
    assert_eq!(
        pick(&v, &["term", "campaign", "calls", "sales", "value"]),
        [
            json!({"term": "emergency plumber", "campaign": "spring", "calls": 1, "sales": 1, "value": 120.0}),
            json!({"term": "drain cleaning", "campaign": "spring", "calls": 1, "sales": 1, "value": 80.0}),
            json!({"term": "plumber near me", "campaign": "autumn", "calls": 1, "sales": 0, "value": 0.0}),
        ]
    );
    assert_eq!(v["totals"]["calls_without_keyword"], 2);

    let v = env.report("pages").await;
    assert_eq!(
        pick(
            &v,
            &["page", "landed", "landed_sales", "last_viewed", "last_viewed_sales"]
        ),
        [
            json!({"page": "/drains", "landed": 1, "landed_sales": 1, "last_viewed": 1, "last_viewed_sales": 1}),
            json!({"page": "/", "landed": 1, "landed_sales": 1, "last_viewed": 0, "last_viewed_sales": 0}),
            json!({"page": "/contact", "landed": 0, "landed_sales": 0, "last_viewed": 1, "last_viewed_sales": 0}),
            json!({"page": "/pricing", "landed": 0, "landed_sales": 0, "last_viewed": 1, "last_viewed_sales": 1}),
            json!({"page": "/services", "landed": 1, "landed_sales": 0, "last_viewed": 0, "last_viewed_sales": 0}),
        ]
    );

    let v = env.report("placements").await;
    assert_eq!(
        pick(&v, &["param", "placement", "calls", "sales", "value"]),
        [
            json!({"param": "cta", "placement": "header", "calls": 1, "sales": 1, "value": 120.0}),
            json!({"param": "cta", "placement": "footer", "calls": 1, "sales": 0, "value": 0.0}),
        ]
    );
    assert_eq!(
        sub(&v["totals"], &["calls", "calls_without_placement"]),
        json!({"calls": 2, "calls_without_placement": 3})
    );

    let v = env.report("devices").await;
    assert_eq!(
        pick(&v, &["device", "calls", "sales"]),
        [
            json!({"device": "mobile", "calls": 2, "sales": 2}),
            json!({"device": "(not set)", "calls": 2, "sales": 0}),
            json!({"device": "desktop", "calls": 1, "sales": 0}),
        ]
    );

    let v = env.report("times").await;
    assert_eq!(v["heatmap"][4][14], 4, "Friday 14:00 UTC");
    assert_eq!(v["heatmap"][5][14], 1, "Saturday 14:00 UTC");
    assert_eq!(
        pick(&v, &["weekday", "hour", "calls", "answered"]),
        [
            json!({"weekday": "Friday", "hour": "14:00", "calls": 4, "answered": 3}),
            json!({"weekday": "Saturday", "hour": "14:00", "calls": 1, "answered": 1}),
        ]
    );
    // In New York the calls came at 09:00.
    let r = env
        .get("/api/reports/times?from=2026-11-27&to=2026-11-28&tz=-05:00")
        .await;
    assert_eq!(r.json()["heatmap"][4][9], 4);
    let r = env.get("/api/reports/times?tz=%2B01:00").await;
    assert_eq!(
        (r.json()["tz"].as_str(), &r.json()["heatmap"][4][15]),
        (Some("+01:00"), &json!(4))
    );

    let v = env.report("outcomes").await;
    assert_eq!(
        v["rows"],
        json!([
            {"outcome": "sale", "calls": 2, "share": 0.4, "value": 200.0, "average_value": 100.0},
            {"outcome": "booking", "calls": 1, "share": 0.2, "value": 0.0, "average_value": 0.0},
            {"outcome": "(no outcome)", "calls": 2, "share": 0.4, "value": 0.0, "average_value": 0.0},
        ])
    );
    assert_eq!(
        v["totals"],
        json!({"calls": 5, "conversions": 3, "sales": 2, "outcome_rate": 0.6, "conversion_rate": 0.4, "value": 200.0,
               "average_sale_value": 100.0})
    );

    let v = env.report("quality").await;
    assert_eq!(
        pick(&v, &["duration", "calls", "sales", "talk_time"]),
        [
            json!({"duration": "0-9s", "calls": 0, "sales": 0, "talk_time": 0}),
            json!({"duration": "10-29s", "calls": 1, "sales": 0, "talk_time": 20}),
            json!({"duration": "30-59s", "calls": 1, "sales": 1, "talk_time": 45}),
            json!({"duration": "60-179s", "calls": 1, "sales": 1, "talk_time": 95}),
            json!({"duration": "180-599s", "calls": 1, "sales": 0, "talk_time": 300}),
            json!({"duration": "600s+", "calls": 0, "sales": 0, "talk_time": 0}),
            json!({"duration": "missed", "calls": 1, "sales": 0, "talk_time": 0}),
            json!({"duration": "in progress", "calls": 0, "sales": 0, "talk_time": 0}),
        ]
    );
    assert_eq!(
        sub(
            &v["totals"],
            &["answered", "missed", "answer_rate", "talk_time", "average_duration"]
        ),
        json!({"answered": 4, "missed": 1, "answer_rate": 0.8, "talk_time": 460, "average_duration": 115})
    );

    let v = env.report("callers").await;
    assert_eq!(
        pick(&v, &["call", "calls", "sales", "first_sales"]),
        [
            json!({"call": "1st call", "calls": 3, "sales": 1, "first_sales": 1}),
            json!({"call": "2nd call", "calls": 1, "sales": 1, "first_sales": 0}),
            json!({"call": "3rd call", "calls": 1, "sales": 0, "first_sales": 0}),
            json!({"call": "4th call", "calls": 0, "sales": 0, "first_sales": 0}),
            json!({"call": "5th+ call", "calls": 0, "sales": 0, "first_sales": 0}),
        ]
    );
    assert_eq!(
        sub(
            &v["totals"],
            &[
                "first_time",
                "returning",
                "callers",
                "callers_with_sale",
                "average_calls_before_first_sale"
            ]
        ),
        json!({"first_time": 3, "returning": 2, "callers": 3, "callers_with_sale": 1,
               "average_calls_before_first_sale": 0.0})
    );

    let v = env.report("touchpoints").await;
    assert_eq!(
        pick(&v, &["touches", "calls", "sales"]),
        [
            json!({"touches": "1", "calls": 2, "sales": 2}),
            json!({"touches": "2", "calls": 1, "sales": 0}),
            json!({"touches": "3", "calls": 0, "sales": 0}),
            json!({"touches": "4", "calls": 0, "sales": 0}),
            json!({"touches": "5+", "calls": 0, "sales": 0}),
            json!({"touches": "(unknown)", "calls": 2, "sales": 0}),
        ]
    );
    assert_eq!(
        sub(
            &v["totals"],
            &["average_touches_before_call", "average_touches_before_sale"]
        ),
        json!({"average_touches_before_call": 1.3333, "average_touches_before_sale": 1.0})
    );

    let v = env.report("roi").await;
    assert_eq!(
        v["rows"],
        json!([
            {"channel": "paid_search", "campaign": "(all)", "spend": 150.0, "calls": 3, "sales": 2, "value": 200.0,
             "cost_per_call": 50.0, "cost_per_sale": 75.0, "roas": 1.3333},
            {"channel": "paid_search", "campaign": "spring", "spend": 100.0, "calls": 2, "sales": 2, "value": 200.0,
             "cost_per_call": 50.0, "cost_per_sale": 50.0, "roas": 2.0},
            {"channel": "paid_search", "campaign": "autumn", "spend": 50.0, "calls": 1, "sales": 0, "value": 0.0,
             "cost_per_call": 50.0, "cost_per_sale": null, "roas": 0.0},
            {"channel": "paid_social", "campaign": "(all)", "spend": 10.0, "calls": 0, "sales": 0, "value": 0.0,
             "cost_per_call": null, "cost_per_sale": null, "roas": 0.0},
        ])
    );
    assert_eq!(
        v["totals"],
        json!({"spend": 160.0, "calls": 3, "sales": 2, "value": 200.0, "cost_per_call": 53.33, "cost_per_sale": 80.0,
               "roas": 1.25})
    );
    // Spend of other days is not counted.
    let r = env.get("/api/reports/roi?from=2026-11-28&to=2026-11-28").await.json();
    assert_eq!(r["rows"], json!([]));

    // Exports, byte for byte.
    let r = env
        .get("/api/export/google-ads.csv?min_duration=30&from=2026-11-27&to=2026-11-28")
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.headers["content-type"], "text/csv; charset=utf-8");
    assert_eq!(
        r.headers["content-disposition"],
        "attachment; filename=\"google-ads.csv\""
    );
    assert_eq!(
        r.body,
        "Parameters:TimeZone=+0000\r\n\
         Google Click ID,Conversion Name,Conversion Time,Conversion Value,Conversion Currency\r\n\
         Cj0KCQiAtest,Phone call,2026-11-27 14:01:30,120,USD\r\n\
         0AbCdEf,Phone call,2026-11-27 14:02:30,80,USD\r\n"
    );
    let r = env
        .get("/api/export/google-ads.csv?min_duration=60&conversion=Qualified+call")
        .await;
    assert_eq!(
        r.body,
        "Parameters:TimeZone=+0000\r\n\
         Google Click ID,Conversion Name,Conversion Time,Conversion Value,Conversion Currency\r\n\
         Cj0KCQiAtest,Qualified call,2026-11-27 14:01:30,120,USD\r\n"
    );
    let r = env.get("/api/export/microsoft-ads.csv").await;
    assert_eq!(
        r.headers["content-disposition"],
        "attachment; filename=\"microsoft-ads.csv\""
    );
    assert_eq!(
        r.body,
        "Parameters:TimeZone=+0000\r\n\
         Microsoft Click ID,Conversion Name,Conversion Time,Conversion Value,Conversion Currency\r\n\
         ms123,Phone call,2026-11-27 14:02:00,,\r\n"
    );
    let r = env.get("/api/export/microsoft-ads.csv?min_duration=30").await;
    assert_eq!(r.body.lines().count(), 2, "header only: the Bing call lasted 20 s");

    let r = env.get("/api/export/calls.csv?from=2026-11-27&to=2026-11-28").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-disposition"], "attachment; filename=\"calls.csv\"");
    let header = "id,call_sid,site,started_at,tracking_number,caller,caller_city,caller_state,caller_country,status,\
                  duration_s,returning_caller,earlier_calls,confidence,channel,source,medium,campaign,term,content,\
                  landing_page,referrer,device,touches,pages,params,gclid,gbraid,wbraid,msclkid,fbclid,outcome_kind,\
                  outcome_value,outcome_currency,outcome_at,recording_url\r\n";
    let want = format!(
        "{header}\
         {},CA1,site,2026-11-27T14:01:30Z,+15550101001,+14155550123,,CA,US,completed,95,false,0,exact,paid_search,google,\
         cpc,spring,emergency plumber,,{LANDING1},,mobile,1,{LANDING1} > /pricing,cta=header,Cj0KCQiAtest,,,,,sale,120,\
         USD,2026-11-28T14:00:00Z,\r\n\
         {},CA2,site,2026-11-27T14:02:00Z,+15550101002,+12125550188,,NY,US,completed,20,false,0,exact,paid_search,bing,\
         cpc,autumn,plumber near me,,{LANDING2},,desktop,2,{LANDING2} > /contact,cta=footer,,,,ms123,,,,,,\r\n\
         {},CA3,site,2026-11-27T14:02:30Z,+15550101003,+14155550123,,CA,US,completed,45,true,1,exact,paid_search,google,\
         cpc,spring,drain cleaning,,{LANDING3},,mobile,1,{LANDING3},,,0AbCdEf,,,,sale,80,USD,2026-11-28T14:00:00Z,\r\n\
         {},CA4,site,2026-11-27T14:03:00Z,+15550102001,+13105550100,,CA,US,no-answer,,false,0,source,organic_search,,,,,,,,,\
         0,,,,,,,,,,,,\r\n\
         {},CA5,site,2026-11-28T14:00:00Z,+15550103001,+14155550123,,CA,US,completed,300,true,2,source,offline,offline,\
         offline,radio-spring,,,,,,0,,,,,,,,booking,,,2026-11-28T14:00:00Z,\r\n",
        id("CA1"),
        id("CA2"),
        id("CA3"),
        id("CA4"),
        id("CA5"),
    );
    assert_eq!(r.body, want);

    // Bad input.
    let r = env.get("/api/reports/nope").await;
    assert_eq!(r.status, 404);
    assert!(
        r.json()["error"].as_str().unwrap().contains("overview, channels"),
        "{}",
        r.body
    );
    for bad in [
        "/api/export/google-ads.csv?min_duration=abc",
        "/api/export/google-ads.csv?min_duration=-5",
        "/api/export/google-ads.csv?conversion=",
        "/api/export/google-ads.csv?min_durration=30",
        "/api/export/calls.csv?from=yesterday",
        "/api/reports/overview?tz=CET",
        "/api/reports/overview?from=2026-11-29&to=2026-11-27",
    ] {
        let r = env.get(bad).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        assert!(r.json()["error"].is_string(), "{bad}");
    }
    assert_eq!(env.get("/api/export/other.csv").await.status, 404);
    env.app.stop().await;
}
