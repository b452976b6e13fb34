//! Streaming: a 50 MB page goes through the real `telswap serve` process with flat memory, and
//! the visitor's first bytes arrive while the origin is still sending.

use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

const PAGE_BYTES: usize = 50 << 20;
const CHUNK: usize = 64 << 10;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// One chunk of page: markup, prices, dates and the site's number in a few shapes.
fn chunk(i: usize) -> Vec<u8> {
    let block = format!(
        "<div class=\"row\" data-i=\"{i}\"><p>Call (555) 010-0000 or <a href=\"tel:+15550100000\">555-010-0000</a>. \
         Order 98765-{i} on 03/27/2011 for $1,234.50.</p></div>\n"
    );
    let mut out = Vec::with_capacity(CHUNK + block.len());
    while out.len() < CHUNK {
        out.extend_from_slice(block.as_bytes());
    }
    out
}

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn origin_response(big: bool, release: Option<oneshot::Receiver<()>>) -> hyper::Response<Body> {
    let (tx, mut rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(2);
    tokio::spawn(async move {
        let head: &[u8] = b"<!doctype html><html><head><meta charset=utf-8><title>big</title></head><body>";
        let _ = tx.send(Ok(Frame::data(Bytes::from_static(head)))).await;
        let n = if big { PAGE_BYTES / CHUNK } else { 1 };
        for i in 0..n {
            if i == n - 1
                && let Some(rx) = release
            {
                // The last chunk leaves only after the visitor has seen the first bytes.
                let _ = rx.await;
                let _ = tx.send(Ok(Frame::data(Bytes::from(chunk(i))))).await;
                break;
            }
            if tx.send(Ok(Frame::data(Bytes::from(chunk(i))))).await.is_err() {
                return;
            }
        }
        let _ = tx.send(Ok(Frame::data(Bytes::from_static(b"</body></html>")))).await;
    });
    let body = StreamBody::new(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    hyper::Response::builder()
        .header("content-type", "text/html; charset=utf-8")
        .body(body.boxed())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_megabyte_page_streams_with_flat_memory_and_early_first_byte() {
    let (release_tx, release_rx) = oneshot::channel::<()>();
    let release = std::sync::Arc::new(std::sync::Mutex::new(Some(release_rx)));
    let origin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin_addr = origin.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = origin.accept().await {
            let release = release.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let release = release.clone();
                    async move {
                        let big = req.uri().path() == "/big";
                        let rel = if big { release.lock().unwrap().take() } else { None };
                        Ok::<_, Infallible>(origin_response(big, rel).await)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });

    // The proxy: the real binary, as an operator runs it.
    let rules = tempfile::tempdir().unwrap();
    std::fs::write(
        rules.path().join("big.toml"),
        format!(
            "hosts = [\"big.test\"]\nupstream = \"http://{origin_addr}\"\nnumbers = [\"+1 555-010-0000\"]\n\
             [[pool]]\nname = \"organic\"\nmode = \"source\"\nwhen.channel = [\"organic_search\"]\n\
             numbers = [\"+1 555-010-2001\"]\n"
        ),
    )
    .unwrap();
    // Its own data folder: without `--data` it would write to `data/` in the working directory.
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_telswap"))
        .args(["serve", "--listen", "127.0.0.1:0", "--rules"])
        .arg(rules.path())
        .arg("--data")
        .arg(data.path())
        .env("TELSWAP_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let addr = loop {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "proxy exited");
        if let Some(at) = line.find("http=") {
            break line[at + 5..].split_whitespace().next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || for _ in stderr.lines() {});
    let pid = child.id();

    let client =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http::<http_body_util::Empty<Bytes>>();
    let get = |path: &str| {
        hyper::Request::get(format!("http://{addr}{path}?utm_source=google&utm_medium=organic"))
            .header("host", "big.test")
            .body(http_body_util::Empty::new())
            .unwrap()
    };
    // Warm up: allocator arenas, the upstream pool, lol_html's first buffers.
    for _ in 0..3 {
        let resp = client.request(get("/small")).await.unwrap();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert!(body.windows(14).any(|w| w == b"(555) 010-2001"));
    }
    let before = rss_kib(pid);

    let resp = client.request(get("/big")).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("content-length").is_none());
    let mut body = resp.into_body();
    let mut received = 0usize;
    let mut swapped = 0usize;
    let mut peak = before;
    let mut release_tx = Some(release_tx);
    while let Some(frame) = body.frame().await {
        let frame = frame.unwrap();
        let Some(data) = frame.data_ref() else { continue };
        received += data.len();
        swapped += data.windows(14).filter(|w| *w == b"(555) 010-2001").count();
        if let Some(tx) = release_tx.take() {
            // First bytes are here while the origin still holds its last chunk.
            tx.send(()).unwrap();
        }
        if received % (4 << 20) < data.len() {
            peak = peak.max(rss_kib(pid));
        }
    }
    peak = peak.max(rss_kib(pid));
    assert!(received > PAGE_BYTES, "received {received} bytes");
    assert!(swapped > 100_000, "only {swapped} swaps seen");
    let growth_mib = (peak.saturating_sub(before)) as f64 / 1024.0;
    eprintln!("RSS before {before} KiB, peak {peak} KiB, growth {growth_mib:.1} MiB for {received} bytes");
    assert!(growth_mib < 20.0, "proxy RSS grew {growth_mib:.1} MiB streaming 50 MB");
    let _ = child.kill();
    let _ = child.wait();
}
