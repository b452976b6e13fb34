//! Durability: `kill -9` in the middle of a burst of call webhooks loses no call that was
//! answered, and stores none twice. Also the webhook latency measurement (ignored by default).

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioExecutor;
use telswap::calls::signature::twilio_signature;

const TOKEN: &str = "crash-test-token";
const ADMIN: &str = "crash-admin-token";

const RULES: &str = r#"hosts = ["site.test"]
upstream = "http://127.0.0.1:9"
numbers = ["+1 555-010-0000"]
[telephony]
auth_token_env = "CRASH_TEST_TOKEN"
[[pool]]
name = "organic"
mode = "source"
when.channel = ["organic_search"]
numbers = ["+1 555-010-2001"]
"#;

struct Server {
    child: Child,
    http: String,
    admin: String,
}

/// `threads`: `--threads` for the runtime (`1` runs on tokio's current-thread scheduler, as
/// `benches/load.sh` does); `None`, one worker per CPU.
fn serve(rules: &Path, data: &Path, threads: Option<&str>) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_telswap"))
        .args(["serve", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--rules"])
        .arg(rules)
        .arg("--data")
        .arg(data)
        .args(threads.map(|n| ["--threads", n]).into_iter().flatten())
        .env("TELSWAP_ADMIN_TOKEN", ADMIN)
        .env("CRASH_TEST_TOKEN", TOKEN)
        .env("TELSWAP_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let line = loop {
        let mut l = String::new();
        assert!(err.read_line(&mut l).unwrap() > 0, "server exited before serving");
        if l.contains("telswap serving") {
            break l;
        }
    };
    std::thread::spawn(move || for _ in err.lines() {});
    let field = |name: &str| {
        let at = line.find(&format!("{name}=")).unwrap() + name.len() + 1;
        line[at..]
            .split_whitespace()
            .next()
            .unwrap()
            .trim_start_matches("Some(")
            .trim_end_matches(')')
            .to_string()
    };
    Server {
        http: field("http"),
        admin: field("admin"),
        child,
    }
}

type Client = hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

async fn call(client: &Client, http: &str, sid: &str) -> Option<u16> {
    let params = vec![
        ("CallSid".to_string(), sid.to_string()),
        ("From".to_string(), "+14155550123".to_string()),
        ("To".to_string(), "+15550102001".to_string()),
        ("CallStatus".to_string(), "ringing".to_string()),
    ];
    let sig = twilio_signature(TOKEN, "http://site.test/_telswap/voice", &params);
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter())
        .finish();
    let req = hyper::Request::post(format!("http://{http}/_telswap/voice"))
        .header("host", "site.test")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", sig)
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let resp = client.request(req).await.ok()?;
    let status = resp.status().as_u16();
    resp.into_body().collect().await.ok()?;
    Some(status)
}

async fn stored_sids(admin: &str) -> Vec<String> {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let req = hyper::Request::get(format!("http://{admin}/api/calls?limit=0"))
        .header("authorization", format!("Bearer {ADMIN}"))
        .body(Empty::new())
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let v: serde_json::Value = serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    v["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["call_sid"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_burst_loses_no_answered_call_and_stores_none_twice() {
    let rules = tempfile::tempdir().unwrap();
    std::fs::write(rules.path().join("site.toml"), RULES).unwrap();
    let data = tempfile::tempdir().unwrap();
    // The burst runs on the single-threaded runtime, the restart on the default one.
    let mut server = serve(rules.path(), data.path(), Some("1"));
    let client: Client = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http();
    let answered = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sem = Arc::new(tokio::sync::Semaphore::new(200));
    let (killed_tx, killed_rx) = tokio::sync::oneshot::channel::<()>();
    let killed_tx = Arc::new(std::sync::Mutex::new(Some(killed_tx)));
    let mut tasks = Vec::new();
    for i in 0..500 {
        let (client, http, answered, sem, killed_tx) = (
            client.clone(),
            server.http.clone(),
            answered.clone(),
            sem.clone(),
            killed_tx.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire().await.unwrap();
            let sid = format!("CA{i:032}");
            if call(&client, &http, &sid).await == Some(200) {
                let mut a = answered.lock().unwrap();
                a.push(sid);
                // Kill once a good part of the burst has been answered, the rest in flight.
                if a.len() == 150
                    && let Some(tx) = killed_tx.lock().unwrap().take()
                {
                    let _ = tx.send(());
                }
            }
        }));
    }
    let _ = killed_rx.await;
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    for t in tasks {
        let _ = t.await;
    }
    let answered = answered.lock().unwrap().clone();
    assert!(
        answered.len() >= 150 && answered.len() < 500,
        "the kill landed mid-burst ({} answered)",
        answered.len()
    );

    let server = serve(rules.path(), data.path(), None);
    let stored = stored_sids(&server.admin).await;
    let unique: HashSet<&String> = stored.iter().collect();
    assert_eq!(unique.len(), stored.len(), "no call stored twice");
    let missing: Vec<&String> = answered.iter().filter(|s| !unique.contains(s)).collect();
    assert!(
        missing.is_empty(),
        "{} answered calls lost after kill -9: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    eprintln!(
        "{} answered before kill -9, {} stored after restart",
        answered.len(),
        stored.len()
    );
    let mut s = server;
    let _ = s.child.kill();
    let _ = s.child.wait();
}

/// `cargo test --release --test crash -- --ignored --nocapture`: webhook-to-answer latency on
/// loopback with 200 calls in flight at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn measure_webhook_latency_under_200_concurrent_calls() {
    let rules = tempfile::tempdir().unwrap();
    std::fs::write(rules.path().join("site.toml"), RULES).unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut server = serve(rules.path(), data.path(), None);
    let client: Client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(200)
        .build_http();
    let total = 2000;
    let sem = Arc::new(tokio::sync::Semaphore::new(200));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..total {
        let (client, http, sem) = (client.clone(), server.http.clone(), sem.clone());
        tasks.push(tokio::spawn(async move {
            let _p = sem.acquire().await.unwrap();
            let t = Instant::now();
            let ok = call(&client, &http, &format!("CL{i:032}")).await == Some(200);
            (ok, t.elapsed())
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        let (ok, d) = t.await.unwrap();
        assert!(ok);
        lat.push(d);
    }
    let wall = start.elapsed();
    lat.sort();
    let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    println!(
        "webhooks: {total} calls, 200 in flight: {:.0} calls/s, p50 {:?}, p99 {:?}, max {:?}",
        total as f64 / wall.as_secs_f64(),
        p(0.5),
        p(0.99),
        p(1.0)
    );
    let _ = server.child.kill();
    let _ = server.child.wait();
}
