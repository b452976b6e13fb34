//! Keep-alive: a plain HTTP/1.1 connection between requests is parked without hyper's buffers
//! (`src/proxy/conn.rs`), and a client cannot tell: sequential, pipelined and body-carrying
//! requests on one connection, HTTP/1.0, a WebSocket switch after a parked request, HTTP/2 by
//! prior knowledge, the idle timeouts (HTTP/1.1 and HTTP/2), and shutdown all behave as on any keep-alive server.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use telswap::proxy::conn::{GOAWAY_WAIT, KEEP_ALIVE_IDLE};
use telswap::proxy::server::Running;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PAGE: &str = "<!doctype html><html><body><p>Call (555) 010-0000</p></body></html>\n";
const SWAPPED: &str = "<!doctype html><html><body><p>Call (555) 010-2001</p></body></html>\n";

async fn setup() -> (Origin, Running) {
    let html = Route::page(200, &[("content-type", "text/html; charset=utf-8")], PAGE);
    let origin = Origin::start(vec![
        ("/", html.clone()),
        ("/two", html),
        ("/form", Route::page(200, &[("content-type", "text/plain")], "thanks")),
        ("/ws", Route::WebSocketEcho),
    ])
    .await;
    let proxy = start_proxy(default_site(&origin.url(), "")).await;
    (origin, proxy)
}

/// A keep-alive request (no `Connection: close`).
fn keep_alive(method: &str, target: &str, extra: &str) -> Vec<u8> {
    format!("{method} {target} HTTP/1.1\r\nHost: site.test\r\n{extra}\r\n").into_bytes()
}

/// Reads exactly one response off `s` (`Content-Length` or chunked), leaving what follows in `buf`.
async fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> RawResponse {
    tokio::time::timeout(DEADLINE, async {
        loop {
            if let Some(len) = complete_response_len(buf) {
                let wire: Vec<u8> = buf.drain(..len).collect();
                return parse_response(wire, false);
            }
            assert!(
                read_more(s, buf).await,
                "closed mid-response: {:?}",
                String::from_utf8_lossy(buf)
            );
        }
    })
    .await
    .expect("a response within the deadline")
}

/// The length of the first whole response in `buf`, if it is all there.
fn complete_response_len(buf: &[u8]) -> Option<usize> {
    let head_end = find(buf, b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    if let Some(cl) = head.lines().find_map(|l| l.strip_prefix("content-length:")) {
        let end = head_end + cl.trim().parse::<usize>().ok()?;
        return (buf.len() >= end).then_some(end);
    }
    if head.contains("transfer-encoding: chunked") {
        let mut at = head_end;
        loop {
            let line = find(&buf[at..], b"\r\n")?;
            let size = std::str::from_utf8(&buf[at..at + line])
                .ok()?
                .split(';')
                .next()?
                .trim()
                .to_string();
            let size = usize::from_str_radix(&size, 16).ok()?;
            at += line + 2;
            if size == 0 {
                // No trailers: the final chunk's CRLF ends the response.
                return (buf.len() >= at + 2).then_some(at + 2);
            }
            at += size + 2;
            if buf.len() < at {
                return None;
            }
        }
    }
    Some(head_end)
}

/// A connection that has had one response and is parked.
async fn parked_connection(proxy: &Running) -> (TcpStream, Vec<u8>) {
    let mut s = TcpStream::connect(proxy.http).await.unwrap();
    let mut buf = Vec::new();
    s.write_all(&keep_alive("GET", "/form", "")).await.unwrap();
    assert_eq!(read_response(&mut s, &mut buf).await.text(), "thanks");
    until_idle(proxy, 1).await;
    (s, buf)
}

#[tokio::test]
async fn sequential_requests_share_one_connection_parked_in_between() {
    let (origin, proxy) = setup().await;
    let mut s = TcpStream::connect(proxy.http).await.unwrap();
    let mut buf = Vec::new();
    for (i, path) in ["/", "/two", "/?utm_source=google&utm_medium=organic", "/two"]
        .iter()
        .enumerate()
    {
        s.write_all(&keep_alive("GET", path, "")).await.unwrap();
        let resp = read_response(&mut s, &mut buf).await;
        assert_eq!(resp.status, 200, "request {i}");
        assert!(
            resp.text() == PAGE || resp.text() == SWAPPED,
            "request {i}: {}",
            resp.text()
        );
        until_idle(&proxy, 1).await;
        assert_eq!(proxy.proxy.stats.connections_open.load(Ordering::Relaxed), 1);
    }
    // The organic visitor's pages were swapped (the cookie was not sent back, so each visit
    // is classified afresh: the third is organic, the others direct and left alone).
    assert_eq!(origin.requests().len(), 4);
    drop(s);
    tokio::time::timeout(DEADLINE, async {
        while proxy.proxy.stats.connections_open.load(Ordering::Relaxed) != 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("a closed connection is no longer counted");
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let (_origin, proxy) = setup().await;
    let mut s = TcpStream::connect(proxy.http).await.unwrap();
    let mut burst = keep_alive("GET", "/?utm_source=google&utm_medium=organic", "");
    burst.extend(keep_alive("GET", "/form", ""));
    burst.extend(keep_alive("GET", "/two", ""));
    s.write_all(&burst).await.unwrap();
    let mut buf = Vec::new();
    let first = read_response(&mut s, &mut buf).await;
    let second = read_response(&mut s, &mut buf).await;
    let third = read_response(&mut s, &mut buf).await;
    assert_eq!(first.text(), SWAPPED);
    assert_eq!(second.text(), "thanks");
    assert_eq!(third.text(), PAGE);
    assert!(buf.is_empty(), "nothing more than three responses");
    until_idle(&proxy, 1).await;
    // And the connection still serves after the burst.
    s.write_all(&keep_alive("GET", "/form", "")).await.unwrap();
    assert_eq!(read_response(&mut s, &mut buf).await.text(), "thanks");
}

#[tokio::test]
async fn a_request_split_across_writes_after_a_parked_one_is_read_whole() {
    let (_origin, proxy) = setup().await;
    let (mut s, mut buf) = parked_connection(&proxy).await;
    let req = keep_alive("GET", "/form", "Accept: text/plain\r\n");
    for piece in req.chunks(5) {
        s.write_all(piece).await.unwrap();
        tokio::task::yield_now().await;
    }
    assert_eq!(read_response(&mut s, &mut buf).await.text(), "thanks");
}

#[tokio::test]
async fn half_a_request_read_ahead_with_the_last_one_survives_parking() {
    let (_origin, proxy) = setup().await;
    let mut s = TcpStream::connect(proxy.http).await.unwrap();
    let mut buf = Vec::new();
    // The first request and the start of the second in one write: hyper reads both, answers
    // the first, and is left holding half a request head when the connection is parked.
    let second = keep_alive("GET", "/two", "Accept: text/html\r\n");
    let (head, tail) = second.split_at(20);
    let mut burst = keep_alive("GET", "/form", "");
    burst.extend_from_slice(head);
    s.write_all(&burst).await.unwrap();
    assert_eq!(read_response(&mut s, &mut buf).await.text(), "thanks");
    s.write_all(tail).await.unwrap();
    assert_eq!(read_response(&mut s, &mut buf).await.text(), PAGE);
}

#[tokio::test]
async fn a_request_with_a_body_is_relayed_and_the_connection_goes_on() {
    let (origin, proxy) = setup().await;
    let mut s = TcpStream::connect(proxy.http).await.unwrap();
    let mut buf = Vec::new();
    let body = "name=Ann&phone=5550100000";
    let post = format!(
        "POST /form HTTP/1.1\r\nHost: site.test\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(post.as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut s, &mut buf).await.text(), "thanks");
    s.write_all(&keep_alive("GET", "/", "")).await.unwrap();
    assert_eq!(read_response(&mut s, &mut buf).await.text(), PAGE);
    let seen = origin.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].body, body.as_bytes());
}

#[tokio::test]
async fn http_1_0_without_keep_alive_is_closed_after_its_response() {
    let (_origin, proxy) = setup().await;
    let wire = exchange_wire(proxy.http, b"GET /form HTTP/1.0\r\nHost: site.test\r\n\r\n").await;
    let resp = parse_response(wire, false);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "thanks");
}

#[tokio::test]
async fn connection_close_is_honoured() {
    let (_origin, proxy) = setup().await;
    // `exchange` sends `Connection: close` and reads until the proxy closes.
    let resp = get(proxy.http, "site.test", "/?utm_source=google&utm_medium=organic").await;
    assert_eq!(resp.text(), SWAPPED);
}

#[tokio::test]
async fn a_websocket_switch_after_a_parked_request_tunnels() {
    let (_origin, proxy) = setup().await;
    let (mut s, mut buf) = parked_connection(&proxy).await;
    let upgrade = keep_alive(
        "GET",
        "/ws",
        "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
    );
    s.write_all(&upgrade).await.unwrap();
    let head = read_response(&mut s, &mut buf).await;
    assert_eq!(head.status, 101);
    tokio::time::timeout(DEADLINE, async {
        for msg in [b"\x81\x05hello".as_slice(), &[b'y'; 30_000]] {
            s.write_all(msg).await.unwrap();
            let mut back = vec![0u8; msg.len()];
            let pre = buf.len().min(back.len());
            back[..pre].copy_from_slice(&buf[..pre]);
            buf.drain(..pre);
            s.read_exact(&mut back[pre..]).await.unwrap();
            assert!(back == msg, "the tunnel changed the bytes");
        }
    })
    .await
    .expect("the tunnel echoed within the deadline");
}

type H2Send = hyper::client::conn::http2::SendRequest<Empty<bytes::Bytes>>;

/// An HTTP/2 connection by prior knowledge to the plain listener, its task spawned.
async fn h2c(proxy: &Running) -> (H2Send, tokio::task::JoinHandle<hyper::Result<()>>) {
    let tcp = TcpStream::connect(proxy.http).await.unwrap();
    let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
        .await
        .expect("h2c handshake");
    (send, tokio::spawn(conn))
}

#[tokio::test]
async fn http2_by_prior_knowledge_on_the_plain_listener() {
    let (_origin, proxy) = setup().await;
    let (mut send, _conn) = h2c(&proxy).await;
    for _ in 0..2 {
        let req = http::Request::get("http://site.test/?utm_source=google&utm_medium=organic")
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        let resp = send.send_request(req).await.expect("h2c response");
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.version(), http::Version::HTTP_2);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], SWAPPED.as_bytes());
    }
}

/// One GET on an HTTP/2 connection; the swapped page.
async fn h2_page(send: &mut H2Send) {
    let req = http::Request::get("http://site.test/?utm_source=google&utm_medium=organic")
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = tokio::time::timeout(DEADLINE, send.send_request(req))
        .await
        .expect("an answer within the deadline")
        .expect("h2c response");
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], SWAPPED.as_bytes());
}

#[tokio::test]
async fn an_http2_connection_is_closed_after_the_idle_timeout_counted_from_its_last_stream() {
    let (_origin, proxy) = setup().await;
    let (mut send, conn) = h2c(&proxy).await;
    h2_page(&mut send).await;
    // Two thirds of the idle time pass (virtual time only), then another stream: the idle time
    // starts again when it ends, so the connection outlives one idle time since it opened.
    tokio::time::pause();
    tokio::time::sleep(KEEP_ALIVE_IDLE * 2 / 3).await;
    tokio::time::resume();
    h2_page(&mut send).await;
    tokio::time::pause();
    let quiet = tokio::time::Instant::now();
    tokio::time::sleep(KEEP_ALIVE_IDLE * 2 / 3).await;
    assert!(
        !conn.is_finished(),
        "open: two thirds of an idle time since its last stream"
    );
    let ended = tokio::time::timeout(KEEP_ALIVE_IDLE, conn)
        .await
        .expect("closed within an idle time")
        .expect("the client connection task");
    assert!(ended.is_ok(), "a graceful close (GOAWAY), not an error: {ended:?}");
    let waited = quiet.elapsed();
    assert!(
        // The last stream ended a moment of real time before the clock was paused.
        waited + Duration::from_secs(1) >= KEEP_ALIVE_IDLE && waited <= KEEP_ALIVE_IDLE + Duration::from_millis(5),
        "closed {waited:?} after its last stream"
    );
    assert!(send.is_closed(), "no new streams on it");
}

/// The page at `/`, and at `/feed` a response that sends its head and one chunk, then hangs.
async fn with_feed() -> (Origin, Running) {
    let html = Route::page(200, &[("content-type", "text/html; charset=utf-8")], PAGE);
    let feed = Route::stream_then_hang(
        &[("content-type", "text/plain")],
        vec![bytes::Bytes::from_static(b"first")],
    );
    let origin = Origin::start(vec![("/", html), ("/feed", feed)]).await;
    // The feed is silent longer than the idle times tested here, but not than its site allows
    // an origin to be silent mid-body.
    let proxy = start_proxy(default_site(&origin.url(), r#"response_timeout = "10m""#)).await;
    (origin, proxy)
}

#[tokio::test]
async fn an_http2_stream_open_longer_than_the_idle_timeout_keeps_its_connection() {
    let (_origin, proxy) = with_feed().await;
    let (mut send, conn) = h2c(&proxy).await;
    let req = http::Request::get("http://site.test/feed")
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = tokio::time::timeout(DEADLINE, send.send_request(req))
        .await
        .unwrap()
        .unwrap();
    let mut body = resp.into_body();
    let first = tokio::time::timeout(DEADLINE, body.frame())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.into_data().unwrap(), "first");
    tokio::time::pause();
    tokio::time::sleep(KEEP_ALIVE_IDLE * 3).await;
    tokio::time::resume();
    // Not shut down (a GOAWAY would refuse this stream): it takes a second request.
    let req = http::Request::get("http://site.test/feed")
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let second = tokio::time::timeout(DEADLINE, send.send_request(req)).await.unwrap();
    assert_eq!(second.expect("a second stream on the same connection").status(), 200);
    assert!(!conn.is_finished());
    drop(body);
}

/// One HTTP/2 frame (RFC 9113 §4.1).
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    f.extend([kind, flags]);
    f.extend(stream.to_be_bytes());
    f.extend(payload);
    f
}

/// A GET for `path` on `stream`, END_STREAM (HPACK: `:method GET`, `:scheme http` from the
/// static table, `:path` and `:authority` as literals).
fn h2_get(stream: u32, path: &str) -> Vec<u8> {
    let mut block = vec![0x82, 0x86, 0x44, path.len() as u8];
    block.extend(path.as_bytes());
    block.extend([0x41, 9]);
    block.extend(b"site.test");
    h2_frame(1, 0x5, stream, &block)
}

/// The next frame's kind, flags and stream; `None` at the end of the connection. The server's
/// SETTINGS are acknowledged; nothing else is ever answered (not even a PING).
async fn h2_next(s: &mut TcpStream) -> Option<(u8, u8, u32)> {
    let mut head = [0u8; 9];
    s.read_exact(&mut head).await.ok()?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).await.ok()?;
    if head[3] == 4 && head[4] & 1 == 0 {
        s.write_all(&h2_frame(4, 1, 0, &[])).await.ok()?;
    }
    Some((
        head[3],
        head[4],
        u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
    ))
}

/// A bare HTTP/2 client: the preface, empty SETTINGS and a GET for `/` on stream 1, read to the
/// response's END_STREAM.
async fn bare_h2_client(proxy: &Running) -> TcpStream {
    let mut s = TcpStream::connect(proxy.http).await.unwrap();
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend(h2_frame(4, 0, 0, &[]));
    hello.extend(h2_get(1, "/"));
    s.write_all(&hello).await.unwrap();
    loop {
        let (kind, flags, stream) = tokio::time::timeout(DEADLINE, h2_next(&mut s)).await.unwrap().unwrap();
        if stream == 1 && matches!(kind, 0 | 1) && flags & 1 == 1 {
            return s;
        }
    }
}

#[tokio::test]
async fn an_idle_http2_client_that_never_answers_the_closing_ping_is_dropped() {
    let (_origin, proxy) = setup().await;
    let mut s = bare_h2_client(&proxy).await;
    tokio::time::pause();
    let quiet = tokio::time::Instant::now();
    let mut rest = Vec::new();
    // GOAWAY and PING arrive after the idle time; the socket closes when the PING goes unanswered.
    let read = tokio::time::timeout(KEEP_ALIVE_IDLE * 2, s.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "closed within two idle times");
    let waited = quiet.elapsed();
    let expected = KEEP_ALIVE_IDLE + GOAWAY_WAIT;
    assert!(
        waited + Duration::from_secs(1) >= expected && waited <= expected + Duration::from_millis(5),
        "closed {waited:?} after its last stream"
    );
    assert_eq!(rest.get(3), Some(&7), "a GOAWAY came first");
}

#[tokio::test]
async fn a_stream_opened_as_the_idle_goaway_left_is_served_past_the_ping_wait() {
    let (_origin, proxy) = with_feed().await;
    let mut s = bare_h2_client(&proxy).await;
    tokio::time::pause();
    // The idle GOAWAY (last stream id 2^31-1: streams still in flight towards the server are
    // served) ...
    while tokio::time::timeout(KEEP_ALIVE_IDLE * 2, h2_next(&mut s))
        .await
        .unwrap()
        .unwrap()
        .0
        != 7
    {}
    tokio::time::resume();
    // ... and a stream that crossed it, whose response streams on.
    s.write_all(&h2_get(3, "/feed")).await.unwrap();
    loop {
        let (kind, _, stream) = tokio::time::timeout(DEADLINE, h2_next(&mut s)).await.unwrap().unwrap();
        if kind == 0 && stream == 3 {
            break;
        }
    }
    tokio::time::pause();
    let more = tokio::time::timeout(GOAWAY_WAIT * 3, h2_next(&mut s)).await;
    assert!(more.is_err(), "still open while its stream is: {more:?}");
}

#[tokio::test]
async fn a_parked_connection_is_closed_after_the_idle_timeout() {
    let (_origin, proxy) = setup().await;
    let (mut s, _) = parked_connection(&proxy).await;
    // Only virtual time passes from here: the runtime advances the clock to the proxy's timer.
    tokio::time::pause();
    let parked = tokio::time::Instant::now();
    let mut byte = [0u8; 1];
    assert_eq!(s.read(&mut byte).await.unwrap(), 0, "closed, nothing sent");
    let waited = parked.elapsed();
    assert!(
        // The timer started a moment of real time before the clock was paused.
        waited + Duration::from_secs(1) >= KEEP_ALIVE_IDLE && waited <= KEEP_ALIVE_IDLE + Duration::from_millis(5),
        "closed after {waited:?}"
    );
}

#[tokio::test]
async fn stopping_closes_parked_connections_at_once() {
    let (_origin, proxy) = setup().await;
    let (mut s, _) = parked_connection(&proxy).await;
    tokio::time::timeout(DEADLINE, proxy.stop())
        .await
        .expect("stop does not wait for idle keep-alive connections");
    let mut byte = [0u8; 1];
    let n = tokio::time::timeout(DEADLINE, s.read(&mut byte)).await.expect("closed");
    assert!(matches!(n, Ok(0) | Err(_)), "the parked connection was closed");
}
