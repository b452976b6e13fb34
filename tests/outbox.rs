//! CRM webhooks end to end: a call's `call.completed` and `call.outcome` events reach a loopback
//! receiver exactly once, signed, through receiver errors, a receiver that is down, a restart,
//! and repeated status callbacks; `[[webhook]]` rule errors name FILE:LINE.
//!
//! Time is a [`ManualClock`]: the test moves it past a retry and then runs a worker pass with
//! [`telswap::outbox::Outbox::sync`], so no test sleeps for a backoff.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use telswap::app::App;
use telswap::calls::signature::twilio_signature;
use telswap::clock::{Clock, ManualClock};
use telswap::outbox::verify_signature;
use telswap::store::Store;
use tokio::net::TcpListener;

const TOKEN: &str = "outbox-auth-token";
const ADMIN: &str = "outbox-admin-token";
const HOOK_SECRET: &str = "whsec-test-1234";

#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    Accept,
    /// Answer 500.
    Fail,
    /// Accept the connection and close it at once: the receiver is down.
    Down,
    /// Answer 200 at once, then never finish the body.
    SlowBody,
}

/// One request the receiver saw.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    event: String,
    event_id: String,
    signature_ok: bool,
    content_type: String,
    body: Value,
    answered: u16,
}

#[derive(Default)]
struct ReceiverState {
    mode: Option<Mode>,
    seen: Vec<Seen>,
    refused: usize,
    /// Requests to this path are kept waiting for an answer until `release`.
    stall_path: Option<String>,
    /// Requests that were kept waiting.
    stalled: usize,
    release: Arc<tokio::sync::Notify>,
}

/// A CRM on loopback that records every event and can be told to fail or be down.
#[derive(Clone)]
struct Receiver {
    addr: SocketAddr,
    state: Arc<Mutex<ReceiverState>>,
}

impl Receiver {
    async fn start(clock: Arc<ManualClock>) -> Receiver {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let state = Arc::new(Mutex::new(ReceiverState {
            mode: Some(Mode::Accept),
            ..Default::default()
        }));
        let st = state.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                if st.lock().unwrap().mode == Some(Mode::Down) {
                    st.lock().unwrap().refused += 1;
                    drop(s);
                    continue;
                }
                let st = st.clone();
                let clock = clock.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let st = st.clone();
                        let clock = clock.clone();
                        async move {
                            let h = |n: &str| {
                                req.headers()
                                    .get(n)
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or("")
                                    .to_string()
                            };
                            let (sig, event, event_id, content_type) = (
                                h("x-telswap-signature"),
                                h("x-telswap-event"),
                                h("x-telswap-event-id"),
                                h("content-type"),
                            );
                            let path = req.uri().path().to_string();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let now = (clock.now_ms() / 1000) as i64;
                            let release = st.lock().unwrap().release.clone();
                            let released = release.notified();
                            tokio::pin!(released);
                            let stalled = {
                                // Listening before the lock is let go: a release() after it
                                // is not missed.
                                let mut st = st.lock().unwrap();
                                let stalled = st.stall_path.as_deref() == Some(path.as_str());
                                if stalled {
                                    released.as_mut().enable();
                                    st.stalled += 1;
                                }
                                stalled
                            };
                            if stalled {
                                released.await;
                            }
                            let mut st = st.lock().unwrap();
                            let answered = if st.mode == Some(Mode::Fail) { 500 } else { 204 };
                            st.seen.push(Seen {
                                path,
                                event,
                                event_id,
                                signature_ok: verify_signature(HOOK_SECRET, &sig, &body, now, 300),
                                content_type,
                                body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                                answered,
                            });
                            let body: http_body_util::combinators::BoxBody<Bytes, Infallible> =
                                if st.mode == Some(Mode::SlowBody) {
                                    // A first byte, then nothing: the head says 200.
                                    let stream = futures_util::stream::once(async {
                                        Ok::<_, Infallible>(hyper::body::Frame::data(Bytes::from_static(b"o")))
                                    })
                                    .chain(futures_util::stream::pending());
                                    BodyExt::boxed(http_body_util::StreamBody::new(stream))
                                } else {
                                    Full::new(Bytes::new()).boxed()
                                };
                            let answered = if st.mode == Some(Mode::SlowBody) { 200 } else { answered };
                            Ok::<_, Infallible>(hyper::Response::builder().status(answered).body(body).unwrap())
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        Receiver { addr, state }
    }

    fn set(&self, mode: Mode) {
        self.state.lock().unwrap().mode = Some(mode);
    }

    /// Keeps every request to `path` waiting for its answer until [`Receiver::release`].
    fn stall(&self, path: &str) {
        self.state.lock().unwrap().stall_path = Some(path.to_string());
    }

    /// Requests kept waiting so far.
    fn stalled(&self) -> usize {
        self.state.lock().unwrap().stalled
    }

    /// Answers the requests kept waiting, and stops keeping any.
    fn release(&self) {
        let mut st = self.state.lock().unwrap();
        st.stall_path = None;
        st.release.notify_waiters();
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// Events the receiver accepted (2xx), in order.
    fn accepted(&self) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.answered < 300).collect()
    }

    fn refused(&self) -> usize {
        self.state.lock().unwrap().refused
    }
}

fn rules(receiver: SocketAddr) -> String {
    format!(
        r#"hosts = ["site.test"]
upstream = "http://127.0.0.1:9"
numbers = ["+1 555-010-0000"]

[telephony]
auth_token_env = "TEST_TOKEN"

[[pool]]
name = "organic"
mode = "source"
when.channel = ["organic_search"]
numbers = ["+1 555-010-2001"]

[[webhook]]
url = "http://{receiver}/hooks/crm"
secret_env = "TEST_HOOK_SECRET"

[[webhook]]
url = "http://{receiver}/hooks/outcomes-only"
secret_env = "TEST_HOOK_SECRET"
events = ["call.outcome"]
"#
    )
}

async fn start(receiver: &Receiver, data: &Path, clock: &Arc<ManualClock>, with_secret: bool) -> App {
    let secrets: telswap::calls::Secrets = Arc::new(move |name: &str| match name {
        "TEST_TOKEN" => Some(TOKEN.to_string()),
        "TEST_HOOK_SECRET" if with_secret => Some(HOOK_SECRET.to_string()),
        _ => None,
    });
    common::start_app(&rules(receiver.addr), data, clock.clone(), ADMIN, secrets).await
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Runs one worker pass over everything due now.
async fn pass(app: &App) {
    tokio::time::timeout(Duration::from_secs(30), app.outbox.sync())
        .await
        .expect("an outbox pass finishes");
}

/// Waits (up to 5 s) until `done` holds: for what the worker does on its own, with no pass to
/// wait for.
async fn until(mut done: impl FnMut() -> bool, what: &str) {
    let wait = async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), wait).await.expect(what);
}

/// A signed provider webhook; returns the HTTP status.
async fn hook(app: &App, path: &str, params: &[(&str, &str)]) -> u16 {
    let owned: Vec<(String, String)> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let sig = twilio_signature(TOKEN, &format!("http://site.test{path}"), &owned);
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter())
        .finish();
    let req = hyper::Request::post(format!("http://{}{path}", app.running.http))
        .header("host", "site.test")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", sig)
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http();
    let resp = client.request(req).await.unwrap();
    let status = resp.status().as_u16();
    resp.into_body().collect().await.unwrap();
    status
}

/// An inbound call answered, then its status callback: returns the call id.
async fn completed_call(app: &App, sid: &str) -> String {
    ring(app, sid).await;
    assert_eq!(status_callback(app, sid).await, 200);
    call_id(app, sid).await
}

/// An inbound call to the tracking number, ringing.
async fn ring(app: &App, sid: &str) {
    let voice = [
        ("CallSid", sid),
        ("From", "+14155550123"),
        ("To", "+15550102001"),
        ("CallStatus", "ringing"),
    ];
    assert_eq!(hook(app, "/_telswap/voice", &voice).await, 200);
}

/// The caller's leg reports first, `completed` after `secs` (ringing counted): the call is
/// final, and its `call.completed` waits for the Dial's result.
async fn caller_leg_ends(app: &App, sid: &str, secs: &str) {
    let leg = [("CallSid", sid), ("CallStatus", "completed"), ("CallDuration", secs)];
    assert_eq!(hook(app, "/_telswap/status", &leg).await, 200);
}

/// The id the admin API gives call `sid`.
async fn call_id(app: &App, sid: &str) -> String {
    let calls = admin(app, "GET", "/api/calls", "").await.1;
    calls["calls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["call_sid"] == sid)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn status_callback(app: &App, sid: &str) -> u16 {
    let status = [
        ("CallSid", sid),
        ("CallStatus", "completed"),
        ("DialCallStatus", "completed"),
        ("DialCallDuration", "61"),
    ];
    hook(app, "/_telswap/status", &status).await
}

async fn admin(app: &App, method: &str, path: &str, body: &str) -> (u16, Value, String) {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = hyper::Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", app.admin.unwrap()))
        .header("authorization", format!("Bearer {ADMIN}"))
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null), text)
}

#[tokio::test]
async fn a_completed_call_sends_one_signed_event_and_repeated_callbacks_send_none() {
    let data = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(now_ms());
    let receiver = Receiver::start(clock.clone()).await;
    let app = start(&receiver, data.path(), &clock, true).await;
    let id = completed_call(&app, "CAdone1").await;
    pass(&app).await;

    let seen = receiver.seen();
    assert_eq!(
        seen.len(),
        1,
        "one event, to the one webhook subscribed to call.completed: {seen:?}"
    );
    let e = &seen[0];
    assert!(e.signature_ok, "the signature verifies with the shared secret");
    assert_eq!(e.path, "/hooks/crm");
    assert_eq!(e.content_type, "application/json");
    assert_eq!(e.event, "call.completed");
    assert!(e.event_id.starts_with("evt_"), "{}", e.event_id);
    assert_eq!(e.body["id"], e.event_id.as_str(), "the header names the payload's id");
    assert_eq!(e.body["type"], "call.completed");
    assert_eq!(e.body["site"], "site");
    assert_eq!(e.body["created_at"], telswap::clock::rfc3339(clock.now_ms()));
    let call = &e.body["call"];
    assert_eq!(call["id"], id.as_str());
    assert_eq!(call["status"], "completed");
    assert_eq!(call["duration_s"], 61);
    assert_eq!(call["tracking_number"], "+15550102001");
    // The CALL object is the admin API's.
    let (_, one, _) = admin(&app, "GET", &format!("/api/calls/{id}"), "").await;
    assert_eq!(call, &one);

    // The provider retries the callback, and a late "busy" arrives: no second event.
    assert_eq!(status_callback(&app, "CAdone1").await, 200);
    let busy = [("CallSid", "CAdone1"), ("CallStatus", "busy")];
    assert_eq!(hook(&app, "/_telswap/status", &busy).await, 200);
    clock.advance(Duration::from_secs(7 * 24 * 3600));
    pass(&app).await;
    assert_eq!(receiver.seen().len(), 1, "{:?}", receiver.seen());
    let stats = app.store.outbox_stats();
    assert_eq!((stats.delivered, stats.failed, stats.dead, stats.pending), (1, 0, 0, 0));
    app.stop().await;
}

/// A call's two legs report separately: the caller's ends `completed` (ringing counted as
/// talk time) whether or not the business answered, the `<Dial>`'s says what happened. The CRM
/// is told the Dial's word: once when it comes within the grace, and as a second event when it
/// comes after the first went out.
#[tokio::test]
async fn call_completed_carries_the_dials_result_whichever_leg_reports_first() {
    let data = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(now_ms());
    let receiver = Receiver::start(clock.clone()).await;
    let app = start(&receiver, data.path(), &clock, true).await;
    let dial = |sid: &'static str, status: &'static str, secs: &'static str| {
        [
            ("CallSid", sid),
            ("CallStatus", "in-progress"),
            ("DialCallStatus", status),
            ("DialCallDuration", secs),
        ]
    };
    let completed = |sid: &str| -> Vec<Seen> {
        receiver
            .accepted()
            .into_iter()
            .filter(|s| s.event == "call.completed" && s.body["call"]["call_sid"] == sid)
            .collect()
    };
    let said = |s: &Seen| (s.body["call"]["status"].clone(), s.body["call"]["duration_s"].clone());

    // Out of order, within the grace: nothing goes out on the caller's leg, one event with the
    // Dial's result when it comes, and nothing more later.
    ring(&app, "CAmissed").await;
    caller_leg_ends(&app, "CAmissed", "24").await;
    pass(&app).await;
    clock.advance(Duration::from_secs(5));
    pass(&app).await;
    assert!(completed("CAmissed").is_empty(), "the caller's leg waits for the Dial");
    assert_eq!(
        hook(&app, "/_telswap/status", &dial("CAmissed", "no-answer", "0")).await,
        200
    );
    // It goes out as the Dial's result comes, not when the wait would have ended: the worker,
    // asleep until then, is woken.
    until(
        || !completed("CAmissed").is_empty(),
        "sent without waiting out the grace",
    )
    .await;
    clock.advance(Duration::from_secs(3600));
    pass(&app).await;
    let seen = completed("CAmissed");
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(said(&seen[0]), (Value::from("no-answer"), Value::from(0)));

    // The Dial's result never comes: the caller's leg is reported once the grace is over.
    ring(&app, "CAlate").await;
    caller_leg_ends(&app, "CAlate", "24").await;
    clock.advance(Duration::from_millis(telswap::store::DIAL_GRACE_MS as u64 - 1));
    pass(&app).await;
    assert!(completed("CAlate").is_empty());
    clock.advance(Duration::from_millis(1));
    pass(&app).await;
    let first = completed("CAlate");
    assert_eq!(first.len(), 1);
    assert_eq!(said(&first[0]), (Value::from("completed"), Value::from(24)));
    // ... and when it does come after all, and says otherwise, a second event says so.
    assert_eq!(hook(&app, "/_telswap/status", &dial("CAlate", "busy", "0")).await, 200);
    pass(&app).await;
    let both = completed("CAlate");
    assert_eq!(both.len(), 2, "{both:?}");
    assert_ne!(both[0].event_id, both[1].event_id);
    assert_eq!(said(&both[1]), (Value::from("busy"), Value::from(0)));
    // A repeat of the Dial's callback changes nothing and says nothing.
    assert_eq!(hook(&app, "/_telswap/status", &dial("CAlate", "busy", "0")).await, 200);
    pass(&app).await;
    assert_eq!(completed("CAlate").len(), 2);

    // A late Dial that agrees with what was sent sends nothing more.
    ring(&app, "CAsame").await;
    caller_leg_ends(&app, "CAsame", "24").await;
    clock.advance(Duration::from_millis(telswap::store::DIAL_GRACE_MS as u64));
    pass(&app).await;
    assert_eq!(
        hook(&app, "/_telswap/status", &dial("CAsame", "completed", "24")).await,
        200
    );
    pass(&app).await;
    assert_eq!(completed("CAsame").len(), 1);

    // In the usual order (the Dial's `action` first), one event at once.
    ring(&app, "CAusual").await;
    assert_eq!(
        hook(&app, "/_telswap/status", &dial("CAusual", "completed", "12")).await,
        200
    );
    pass(&app).await;
    assert_eq!(completed("CAusual").len(), 1);
    caller_leg_ends(&app, "CAusual", "24").await;
    clock.advance(Duration::from_secs(3600));
    pass(&app).await;
    let seen = completed("CAusual");
    assert_eq!(seen.len(), 1);
    assert_eq!(said(&seen[0]), (Value::from("completed"), Value::from(12)));

    // A first event that failed and waits for its retry when the Dial's result comes: the
    // retry carries the Dial's word, at its backoff's time.
    receiver.set(Mode::Fail);
    ring(&app, "CAretry").await;
    caller_leg_ends(&app, "CAretry", "24").await;
    clock.advance(Duration::from_millis(telswap::store::DIAL_GRACE_MS as u64));
    pass(&app).await;
    assert_eq!(
        hook(&app, "/_telswap/status", &dial("CAretry", "no-answer", "0")).await,
        200
    );
    receiver.set(Mode::Accept);
    pass(&app).await;
    assert!(completed("CAretry").is_empty(), "the retry keeps its backoff");
    clock.advance(Duration::from_secs(13));
    pass(&app).await;
    let seen = completed("CAretry");
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(said(&seen[0]), (Value::from("no-answer"), Value::from(0)));

    let stats = app.store.outbox_stats();
    assert_eq!((stats.delivered, stats.failed, stats.pending), (6, 1, 0), "{stats:?}");
    app.stop().await;
}

/// An outcome recorded while the call's `call.completed` waits for the Dial's result goes out
/// after it, to a CRM that hears of both; a destination that takes only outcomes gets it at once.
#[tokio::test]
async fn an_outcome_set_while_call_completed_waits_goes_out_after_it() {
    let data = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(now_ms());
    let receiver = Receiver::start(clock.clone()).await;
    let app = start(&receiver, data.path(), &clock, true).await;
    let order = |sid: &str| -> Vec<(String, String)> {
        receiver
            .accepted()
            .into_iter()
            .filter(|s| s.body["call"]["call_sid"] == sid)
            .map(|s| (s.path, s.event))
            .collect()
    };
    let crm = |sid: &str| -> Vec<String> {
        order(sid)
            .into_iter()
            .filter(|(p, _)| p == "/hooks/crm")
            .map(|(_, e)| e)
            .collect()
    };
    for (sid, dial_comes) in [("CAheld", true), ("CAnodial", false)] {
        ring(&app, sid).await;
        caller_leg_ends(&app, sid, "24").await;
        let id = call_id(&app, sid).await;
        let (status, _, body) = admin(
            &app,
            "POST",
            &format!("/api/calls/{id}/outcome"),
            r#"{"kind":"sale","value":80.0,"currency":"USD"}"#,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        pass(&app).await;
        assert_eq!(
            order(sid),
            [("/hooks/outcomes-only".to_string(), "call.outcome".to_string())],
            "{sid}: the CRM's outcome waits behind its call.completed"
        );
        if dial_comes {
            let dial = [
                ("CallSid", sid),
                ("CallStatus", "in-progress"),
                ("DialCallStatus", "completed"),
                ("DialCallDuration", "12"),
            ];
            assert_eq!(hook(&app, "/_telswap/status", &dial).await, 200);
            // Both come forward with the Dial's result, without waiting out the grace.
            until(|| crm(sid).len() == 2, "both sent once the Dial's result is in").await;
        } else {
            clock.advance(Duration::from_millis(telswap::store::DIAL_GRACE_MS as u64));
            pass(&app).await;
        }
        assert_eq!(crm(sid), ["call.completed", "call.outcome"], "{sid}");
        clock.advance(Duration::from_secs(3600));
        pass(&app).await;
        assert_eq!(order(sid).len(), 3, "{sid}: {:?}", order(sid));
    }
    app.stop().await;
}

#[tokio::test]
async fn an_outcome_sends_call_outcome_to_every_subscribed_webhook() {
    let data = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(now_ms());
    let receiver = Receiver::start(clock.clone()).await;
    let app = start(&receiver, data.path(), &clock, true).await;
    let id = completed_call(&app, "CAsale").await;
    pass(&app).await;
    clock.advance(Duration::from_secs(3600));
    let (status, _, body) = admin(
        &app,
        "POST",
        &format!("/api/calls/{id}/outcome"),
        r#"{"kind":"sale","value":120.0,"currency":"usd"}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    pass(&app).await;

    let outcomes: Vec<Seen> = receiver
        .accepted()
        .into_iter()
        .filter(|s| s.event == "call.outcome")
        .collect();
    let mut paths: Vec<&str> = outcomes.iter().map(|s| s.path.as_str()).collect();
    paths.sort();
    assert_eq!(paths, ["/hooks/crm", "/hooks/outcomes-only"], "{outcomes:?}");
    assert_eq!(
        outcomes[0].event_id, outcomes[1].event_id,
        "one event, the same id at each destination"
    );
    for e in &outcomes {
        assert!(e.signature_ok);
        assert_eq!(e.body["type"], "call.outcome");
        assert_eq!(e.body["call"]["id"], id.as_str());
        assert_eq!(e.body["call"]["outcome"]["kind"], "sale");
        assert_eq!(e.body["call"]["outcome"]["value"], 120.0);
        assert_eq!(e.body["call"]["outcome"]["currency"], "USD");
    }
    assert_eq!(receiver.seen().len(), 3, "call.completed once, call.outcome twice");

    // Removing it says so, as another call.outcome; removing none says nothing.
    for _ in 0..2 {
        let (status, _, body) = admin(&app, "DELETE", &format!("/api/calls/{id}/outcome"), "").await;
        assert_eq!(status, 200, "{body}");
        pass(&app).await;
    }
    let removed: Vec<Seen> = receiver.seen().into_iter().skip(3).collect();
    assert_eq!(
        removed.len(),
        2,
        "one event, at each of the two destinations: {removed:?}"
    );
    for e in &removed {
        assert_eq!(e.body["type"], "call.outcome");
        assert_eq!(e.body["call"]["outcome"], Value::Null);
    }
    let kept = receiver.seen().len();

    // An unknown call sets nothing and sends nothing.
    let (status, _, _) = admin(&app, "POST", "/api/calls/c_nope/outcome", r#"{"kind":"sale"}"#).await;
    assert_eq!(status, 404);
    pass(&app).await;
    assert_eq!(receiver.seen().len(), kept);

    let (_, _, metrics) = admin(&app, "GET", "/metrics", "").await;
    assert!(
        metrics.contains("telswap_webhook_deliveries_total{result=\"delivered\"} 5"),
        "{metrics}"
    );
    assert!(metrics.contains("telswap_webhook_deliveries_total{result=\"failed\"} 0"));
    assert!(metrics.contains("telswap_webhook_pending 0"));
    app.stop().await;
}

#[tokio::test]
async fn a_failing_receiver_gets_the_event_exactly_once_after_backoff() {
    let data = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(now_ms());
    let receiver = Receiver::start(clock.clone()).await;
    receiver.set(Mode::Fail);
    let app = start(&receiver, data.path(), &clock, true).await;
    completed_call(&app, "CAflaky").await;
    pass(&app).await;
    assert_eq!(receiver.seen().len(), 1, "first attempt at once");
    assert_eq!(receiver.seen()[0].answered, 500);

    // Not retried before the first backoff step (10 s, -20 % jitter at most).
    pass(&app).await;
    clock.advance(Duration::from_secs(7));
    pass(&app).await;
    assert_eq!(receiver.seen().len(), 1, "no retry before 8 s");
    clock.advance(Duration::from_secs(6)); // 13 s: past 10 s + 20 %
    pass(&app).await;
    assert_eq!(receiver.seen().len(), 2, "second attempt after the first step");
    // The second step is 30 s: still failing now, the receiver recovers before the third.
    clock.advance(Duration::from_secs(20));
    pass(&app).await;
    assert_eq!(receiver.seen().len(), 2, "no retry before 24 s");
    receiver.set(Mode::Accept);
    clock.advance(Duration::from_secs(20));
    pass(&app).await;

    let seen = receiver.seen();
    assert_eq!(seen.iter().map(|s| s.answered).collect::<Vec<_>>(), [500, 500, 204]);
    assert!(
        seen.iter().all(|s| s.event_id == seen[0].event_id),
        "one event id on every attempt"
    );
    assert!(
        seen.iter().all(|s| s.signature_ok),
        "each attempt signed at its own time"
    );
    assert_eq!(receiver.accepted().len(), 1);
    // Nothing more, however long we wait.
    clock.advance(Duration::from_secs(4 * 24 * 3600));
    pass(&app).await;
    assert_eq!(receiver.seen().len(), 3);
    let (_, _, metrics) = admin(&app, "GET", "/metrics", "").await;
    for line in [
        "telswap_webhook_deliveries_total{result=\"delivered\"} 1",
        "telswap_webhook_deliveries_total{result=\"failed\"} 2",
        "telswap_webhook_deliveries_total{result=\"dead\"} 0",
        "telswap_webhook_pending 0",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    app.stop().await;
}

/// A receiver that takes its time to answer holds up its own events only: another webhook's
/// event goes out while the first receiver is still answering.
#[tokio::test]
async fn a_slow_receiver_does_not_hold_up_another_receivers_events() {
    let data = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(now_ms());
    let receiver = Receiver::start(clock.clone()).await;
    let app = start(&receiver, data.path(), &clock, true).await;
    receiver.stall("/hooks/crm");
    // call.completed goes to /hooks/crm, which does not answer yet.
    let id = completed_call(&app, "CAslow").await;
    until(|| receiver.stalled() > 0, "call.completed reaches /hooks/crm").await;
    let (status, _, body) = admin(
        &app,
        "POST",
        &format!("/api/calls/{id}/outcome"),
        r#"{"kind":"sale","value":80.0,"currency":"USD"}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // call.outcome goes to both webhooks: the outcomes-only one gets it now.
    until(
        || receiver.seen().iter().any(|s| s.path == "/hooks/outcomes-only"),
        "the other receiver's event is sent while /hooks/crm is still answering",
    )
    .await;
    assert!(
        receiver.seen().iter().all(|s| s.path != "/hooks/crm"),
        "/hooks/crm has answered nothing yet"
    );
    // Once it answers, it gets its two events in order, once each.
    receiver.release();
    pass(&app).await;
    let crm: Vec<String> = receiver
        .accepted()
        .into_iter()
        .filter(|s| s.path == "/hooks/crm")
        .map(|s| s.event)
        .collect();
    assert_eq!(crm, ["call.completed", "call.outcome"]);
    assert_eq!(receiver.seen().len(), 3);
    let stats = app.store.outbox_stats();
    assert_eq!((stats.delivered, stats.pending), (3, 0), "{stats:?}");
    app.stop().await;
}

/// A receiver that is behind (still answering an earlier event) when a call's `call.completed`
/// falls due, and the Dial's result comes before its turn: it gets that event once, saying
/// what the Dial said, not the stale event and then a correction.
#[tokio::test]
async fn a_receiver_that_is_behind_gets_the_dials_word_in_one_event() {
    let data = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(now_ms());
    let receiver = Receiver::start(clock.clone()).await;
    let app = start(&receiver, data.path(), &clock, true).await;
    receiver.stall("/hooks/crm");
    completed_call(&app, "CAahead").await;
    until(|| receiver.stalled() > 0, "the first event reaches /hooks/crm").await;
    ring(&app, "CAbehind").await;
    caller_leg_ends(&app, "CAbehind", "24").await;
    // An outcome within the grace: it goes out after call.completed, whatever moves.
    let id = call_id(&app, "CAbehind").await;
    let (status, _, body) = admin(&app, "POST", &format!("/api/calls/{id}/outcome"), r#"{"kind":"lead"}"#).await;
    assert_eq!(status, 200, "{body}");
    // Long past the grace: the event is due, and waits its turn behind the stalled one.
    clock.advance(Duration::from_millis(telswap::store::DIAL_GRACE_MS as u64 + 60_000));
    app.outbox.wake();
    let dial = [
        ("CallSid", "CAbehind"),
        ("CallStatus", "in-progress"),
        ("DialCallStatus", "no-answer"),
        ("DialCallDuration", "0"),
    ];
    assert_eq!(hook(&app, "/_telswap/status", &dial).await, 200);
    receiver.release();
    pass(&app).await;
    clock.advance(Duration::from_secs(3600));
    pass(&app).await;
    let behind: Vec<Seen> = receiver
        .accepted()
        .into_iter()
        .filter(|s| s.event == "call.completed" && s.body["call"]["call_sid"] == "CAbehind")
        .collect();
    assert_eq!(behind.len(), 1, "{behind:?}");
    assert_eq!(behind[0].body["call"]["status"], "no-answer");
    assert_eq!(behind[0].body["call"]["duration_s"], 0);
    let crm: Vec<String> = receiver
        .accepted()
        .into_iter()
        .filter(|s| s.path == "/hooks/crm" && s.body["call"]["call_sid"] == "CAbehind")
        .map(|s| s.event)
        .collect();
    assert_eq!(crm, ["call.completed", "call.outcome"]);
    app.stop().await;
}

/// Stopping waits for the event a slow receiver is answering, not for the rest of its queue:
/// those stay in the outbox and go out after the restart, in order, once each.
#[tokio::test]
async fn stopping_lets_the_event_in_flight_finish_and_keeps_the_rest_for_the_restart() {
    let data = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(now_ms());
    let receiver = Receiver::start(clock.clone()).await;
    let app = start(&receiver, data.path(), &clock, true).await;
    // Two calls whose caller's legs report alone: both events wait out the grace, and are due
    // together, one queue for /hooks/crm.
    for sid in ["CAstop1", "CAstop2"] {
        ring(&app, sid).await;
        caller_leg_ends(&app, sid, "30").await;
    }
    receiver.stall("/hooks/crm");
    clock.advance(Duration::from_millis(telswap::store::DIAL_GRACE_MS as u64));
    app.outbox.wake();
    until(|| receiver.stalled() > 0, "the first event is being sent to /hooks/crm").await;
    let mut stopping = app.outbox.stopping();
    let stopped = tokio::spawn(app.stop());
    stopping.wait_for(|s| *s).await.unwrap();
    receiver.release();
    tokio::time::timeout(Duration::from_secs(5), stopped)
        .await
        .expect("stop waits for the event in flight only")
        .unwrap();
    let crm = |r: &Receiver| -> Vec<String> {
        r.accepted()
            .into_iter()
            .filter(|s| s.path == "/hooks/crm")
            .map(|s| s.body["call"]["call_sid"].as_str().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(crm(&receiver), ["CAstop1"]);
    assert_eq!(receiver.stalled(), 1, "nothing more was sent to it");

    let app = start(&receiver, data.path(), &clock, true).await;
    pass(&app).await;
    assert_eq!(crm(&receiver), ["CAstop1", "CAstop2"]);
    app.stop().await;
}

/// A 2xx head is delivery, however slowly the receiver then sends its body: timing the body
/// out sent the event again.
#[tokio::test]
async fn a_receiver_that_answers_2xx_and_dawdles_over_its_body_gets_the_event_once() {
    let data = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(now_ms());
    let receiver = Receiver::start(clock.clone()).await;
    receiver.set(Mode::SlowBody);
    let app = start(&receiver, data.path(), &clock, true).await;
    completed_call(&app, "CAslow").await;
    pass(&app).await;
    assert_eq!(receiver.seen().len(), 1);
    clock.advance(Duration::from_secs(3600));
    pass(&app).await;
    assert_eq!(receiver.seen().len(), 1, "never sent again");
    let (_, _, metrics) = admin(&app, "GET", "/metrics", "").await;
    assert!(
        metrics.contains("telswap_webhook_deliveries_total{result=\"delivered\"} 1"),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_event_survives_a_restart_while_the_receiver_is_down_and_arrives_once() {
    let data = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(now_ms());
    let receiver = Receiver::start(clock.clone()).await;
    receiver.set(Mode::Down);
    let app = start(&receiver, data.path(), &clock, true).await;
    completed_call(&app, "CAdown").await;
    pass(&app).await;
    assert_eq!(receiver.refused(), 1, "one attempt, the connection dropped");
    assert!(receiver.seen().is_empty());
    app.stop().await;

    // The receiver comes back while telswap is stopped; telswap restarts on the same data.
    receiver.set(Mode::Accept);
    let app = start(&receiver, data.path(), &clock, true).await;
    pass(&app).await;
    assert!(
        receiver.seen().is_empty(),
        "the retry waits for its backoff across the restart"
    );
    clock.advance(Duration::from_secs(13));
    pass(&app).await;
    let seen = receiver.accepted();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].event, "call.completed");
    assert!(seen[0].signature_ok);

    // And once only, across another restart and a long wait.
    app.stop().await;
    clock.advance(Duration::from_secs(24 * 3600));
    let app = start(&receiver, data.path(), &clock, true).await;
    pass(&app).await;
    assert_eq!(receiver.seen().len(), 1);
    assert_eq!(receiver.refused(), 1);
    app.stop().await;
}

#[tokio::test]
async fn an_event_enqueued_without_its_secret_is_held_through_a_restart_then_sent_once() {
    let data = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(now_ms());
    let receiver = Receiver::start(clock.clone()).await;
    let app = start(&receiver, data.path(), &clock, false).await;
    completed_call(&app, "CAnosecret").await;
    pass(&app).await;
    clock.advance(Duration::from_secs(3600));
    pass(&app).await;
    assert!(receiver.seen().is_empty(), "nothing is sent unsigned");
    assert_eq!(receiver.refused(), 0);
    let stats = app.store.outbox_stats();
    assert_eq!((stats.failed, stats.dead, stats.pending), (0, 0, 1), "held, not failed");
    app.stop().await;

    let app = start(&receiver, data.path(), &clock, true).await;
    pass(&app).await;
    let seen = receiver.accepted();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].signature_ok);
    pass(&app).await;
    assert_eq!(receiver.seen().len(), 1);
    app.stop().await;
}

#[test]
fn webhook_rule_errors_name_file_and_line() {
    let text = r#"hosts = ["site.test"]
upstream = "http://127.0.0.1:9"
numbers = ["+1 555-010-0000"]
[telephony]
auth_token_env = "T"

[[webhook]]
url = "ftp://crm.example/hook"
secret_env = "CRM_SECRET"

[[webhook]]
url = "https://crm.example/hook"
secret_envv = "CRM_SECRET"

[[webhook]]
url = "https://crm.example/other"
secret_env = "CRM SECRET"
events = ["call.completed", "call.outcom"]

[[webhook]]
url = "https://crm.example/hook"
secret_env = "X"
"#;
    let err = telswap::rules::load_sources(&[(PathBuf::from("rules/acme.toml"), text.to_string())]).unwrap_err();
    let lines: Vec<String> = err.0.iter().map(|p| p.to_string()).collect();
    let expect = [
        "rules/acme.toml:8: bad webhook url \"ftp://crm.example/hook\": expected http:// or https://",
        "rules/acme.toml:11: a [[webhook]] needs secret_env = \"NAME_OF_ENV_VAR\"",
        "rules/acme.toml:13: unknown key \"secret_envv\" in [[webhook]] (did you mean \"secret_env\"?)",
        "rules/acme.toml:17: secret_env \"CRM SECRET\" must name an environment variable (letters, digits, _)",
        "rules/acme.toml:18: unknown webhook event \"call.outcom\" (did you mean \"call.outcome\"?): expected one of [\"call.completed\", \"call.outcome\"]",
        "rules/acme.toml:21: webhook url \"https://crm.example/hook\" is listed twice in this site",
    ];
    for e in expect {
        assert!(lines.iter().any(|l| l == e), "missing {e:?} in {lines:#?}");
    }
    assert_eq!(lines.len(), expect.len(), "{lines:#?}");

    // A valid webhook: events default to both.
    let ok = text.split("[[webhook]]").next().unwrap().to_string()
        + "[[webhook]]\nurl = \"https://crm.example/hook?k=1\"\nsecret_env = \"CRM_SECRET\"\n";
    let set = telswap::rules::load_sources(&[(PathBuf::from("acme.toml"), ok)]).unwrap();
    let w = &set.sites[0].webhooks[0];
    assert_eq!(w.url, "https://crm.example/hook?k=1");
    assert_eq!(w.secret_env, "CRM_SECRET");
    assert_eq!(w.events, telswap::rules::WebhookEvent::ALL);
    // A missing url.
    let no_url = "hosts = [\"a.test\"]\nupstream = \"http://127.0.0.1:9\"\nnumbers = [\"+1 555-010-0000\"]\n\
                  [telephony]\nauth_token_env = \"T\"\n[[webhook]]\nsecret_env = \"S\"\n";
    let err = telswap::rules::load_sources(&[(PathBuf::from("b.toml"), no_url.to_string())]).unwrap_err();
    assert_eq!(err.to_string(), "b.toml:6: a [[webhook]] needs url = \"https://...\"");
}
