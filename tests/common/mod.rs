//! Shared harness for the proxy's integration tests (after pingora's `mock_origin`):
//!
//! - [`Origin`]: a real HTTP/1.1 origin (hyper) on an ephemeral loopback port that counts the TCP
//!   connections it accepts and records every request it sees (method, target, headers, body);
//! - [`start_proxy`]: the proxy started in-process from rule texts, on ephemeral ports;
//! - [`exchange`]: a raw HTTP/1.1 client over a `TcpStream`, for byte-exact bodies and headers;
//! - content-coding helpers ([`encode`], [`decode`]) and the WebSocket accept-key computation.
//!
//! Every test binary uses a different subset of this module.
#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use telswap::proxy::server::{Running, ServeConfig};

/// The site's own number, as the rules list it.
pub const SITE_NUMBER: &str = "+1 555-010-0000";
/// The query that makes a visitor organic search traffic, which the default rules give
/// [`TRACKING_NUMBER`].
pub const TRACKED_QUERY: &str = "utm_source=google&utm_medium=organic";
pub const TRACKING_NUMBER: &str = "+1 555-010-2001";

/// A guard against a hung proxy: no exchange in these tests takes more than a fraction of this.
/// Not a timing assumption: every test completes or fails on its own well before it.
pub const DEADLINE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// The mock origin

/// What the origin answers on one path.
#[derive(Clone, Debug)]
pub enum Route {
    /// A fixed representation. Like a real static file server it honours `HEAD` (headers only,
    /// with the full `Content-Length`), `If-None-Match` equal to its `ETag` (`304`) and a single
    /// `Range: bytes=A-B` (`206` with `Content-Range`).
    Page {
        status: u16,
        headers: Vec<(String, String)>,
        body: Bytes,
    },
    /// `200`, `text/html; charset=utf-8`, the page with `{n}` replaced by how many requests the
    /// origin has seen (this one included), as 8 digits: a fresh token in every response, as a
    /// dynamic site sends.
    Numbered(String),
    /// Accepts the request and never answers (for response timeouts).
    Hang,
    /// Answers a WebSocket handshake with `101` and then echoes every byte it receives.
    WebSocketEcho,
    /// Sends the head and `chunks` one by one, then keeps the response open forever without
    /// sending more: whatever the visitor gets of it, the proxy streamed.
    StreamThenHang {
        headers: Vec<(String, String)>,
        chunks: Vec<Bytes>,
    },
}

impl Route {
    pub fn page(status: u16, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Route {
        Route::Page {
            status,
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            body: body.into(),
        }
    }

    /// `200`, `text/html; charset=utf-8`.
    pub fn html(body: &str) -> Route {
        Route::page(200, &[("content-type", "text/html; charset=utf-8")], body.to_string())
    }

    /// `200` with `headers`, `chunks`, then silence (see [`Route::StreamThenHang`]).
    pub fn stream_then_hang(headers: &[(&str, &str)], chunks: Vec<Bytes>) -> Route {
        Route::StreamThenHang {
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            chunks,
        }
    }
}

/// One request as the origin received it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: Method,
    /// Path and query.
    pub target: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().expect("ASCII header"))
    }
}

pub struct Origin {
    pub addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Origin {
    /// Starts an origin serving `routes` (by path, query ignored); other paths get `404`.
    pub async fn start(routes: Vec<(&str, Route)>) -> Origin {
        let routes: Arc<HashMap<String, Route>> =
            Arc::new(routes.into_iter().map(|(p, r)| (p.to_string(), r)).collect());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
        let addr = listener.local_addr().expect("origin address");
        let connections = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (c, s) = (connections.clone(), seen.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                c.fetch_add(1, Ordering::SeqCst);
                let (routes, seen) = (routes.clone(), s.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| answer(req, routes.clone(), seen.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Origin {
            addr,
            connections,
            seen,
        }
    }

    /// `http://127.0.0.1:PORT`, for a site's `upstream`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen").clone()
    }

    pub fn only_request(&self) -> Seen {
        let seen = self.requests();
        assert_eq!(
            seen.len(),
            1,
            "the origin should have seen exactly one request: {seen:#?}"
        );
        seen.into_iter().next().expect("one request")
    }
}

type OriginBody = BoxBody<Bytes, std::io::Error>;

async fn answer(
    mut req: Request<Incoming>,
    routes: Arc<HashMap<String, Route>>,
    seen: Arc<Mutex<Vec<Seen>>>,
) -> Result<Response<OriginBody>, Infallible> {
    let route = routes.get(req.uri().path()).cloned();
    let target = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let method = req.method().clone();
    let headers = req.headers().clone();

    if let Some(Route::WebSocketEcho) = route {
        seen.lock().expect("seen").push(Seen {
            method,
            target,
            headers: headers.clone(),
            body: Bytes::new(),
        });
        let Some(key) = headers.get("sec-websocket-key") else {
            return Ok(reply(400, &[], Bytes::new()));
        };
        let accept = websocket_accept(key.to_str().expect("ASCII key"));
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(upgraded) = upgrade.await else { return };
            let mut io = TokioIo::new(upgraded);
            let mut buf = [0u8; 4096];
            loop {
                match io.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if io.write_all(&buf[..n]).await.is_err() || io.flush().await.is_err() {
                            break;
                        }
                    }
                }
            }
        });
        return Ok(reply(
            101,
            &[
                ("connection", "Upgrade"),
                ("upgrade", "websocket"),
                ("sec-websocket-accept", &accept),
            ],
            Bytes::new(),
        ));
    }

    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    seen.lock().expect("seen").push(Seen {
        method: method.clone(),
        target,
        headers: headers.clone(),
        body,
    });

    match route {
        None => Ok(reply(
            404,
            &[("content-type", "text/plain")],
            Bytes::from_static(b"no route"),
        )),
        Some(Route::Hang) => std::future::pending().await,
        Some(Route::Numbered(page)) => {
            let n = seen.lock().expect("seen").len();
            let body = page.replace("{n}", &format!("{n:08}"));
            Ok(reply(
                200,
                &[("content-type", "text/html; charset=utf-8")],
                Bytes::from(body),
            ))
        }
        Some(Route::WebSocketEcho) => unreachable!("handled above"),
        Some(Route::StreamThenHang { headers, chunks }) => {
            let frames = futures_util::stream::iter(chunks.into_iter().map(|c| Ok(Frame::data(c))));
            let tail = futures_util::stream::once(std::future::pending());
            let body = StreamBody::new(futures_util::StreamExt::chain(frames, tail)).boxed();
            let mut resp = reply(200, &[], Bytes::new());
            for (k, v) in &headers {
                resp.headers_mut().append(
                    header::HeaderName::from_bytes(k.as_bytes()).expect("header name"),
                    HeaderValue::from_str(v).expect("header value"),
                );
            }
            *resp.body_mut() = body;
            Ok(resp)
        }
        Some(Route::Page {
            status,
            headers: route_headers,
            body,
        }) => {
            let hv: Vec<(&str, &str)> = route_headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let etag = route_headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("etag"))
                .map(|(_, v)| v.as_str());
            if let (Some(etag), Some(inm)) = (etag, headers.get(header::IF_NONE_MATCH))
                && inm.as_bytes() == etag.as_bytes()
            {
                let kept: Vec<(&str, &str)> = hv
                    .iter()
                    .copied()
                    .filter(|(k, _)| !k.eq_ignore_ascii_case("content-type"))
                    .collect();
                return Ok(reply(304, &kept, Bytes::new()));
            }
            if let Some((start, end)) = headers.get(header::RANGE).and_then(parse_range)
                && status == 200
                && start <= end
                && end < body.len()
            {
                let range = format!("bytes {start}-{end}/{}", body.len());
                let mut h = hv.clone();
                h.push(("content-range", &range));
                return Ok(reply(206, &h, body.slice(start..=end)));
            }
            if method == Method::HEAD {
                let len = body.len().to_string();
                let mut h = hv.clone();
                h.push(("content-length", &len));
                return Ok(reply(status, &h, Bytes::new()));
            }
            Ok(reply(status, &hv, body))
        }
    }
}

fn reply(status: u16, headers: &[(&str, &str)], body: Bytes) -> Response<OriginBody> {
    let mut resp = Response::new(Full::new(body).map_err(|e| match e {}).boxed());
    *resp.status_mut() = StatusCode::from_u16(status).expect("status");
    for (k, v) in headers {
        resp.headers_mut().append(
            header::HeaderName::from_bytes(k.as_bytes()).expect("header name"),
            HeaderValue::from_str(v).expect("header value"),
        );
    }
    resp
}

/// `bytes=A-B` (one closed range only; enough for an origin that serves ranges).
fn parse_range(v: &HeaderValue) -> Option<(usize, usize)> {
    let (a, b) = v.to_str().ok()?.strip_prefix("bytes=")?.split_once('-')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

/// An origin that answers every request with `response` byte for byte and then closes, for
/// responses no well-behaved server library would send (a body cut short of its framing).
pub async fn raw_origin(response: Vec<u8>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind raw origin");
    let addr = listener.local_addr().expect("raw origin address");
    let response = Arc::new(response);
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            let response = response.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while find(&head, b"\r\n\r\n").is_none() {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s.write_all(&response).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

// ---------------------------------------------------------------------------------------------
// The proxy

/// A site's rules: `hosts`, the `upstream`, the site's own number, `extra` top-level keys (e.g.
/// `response_timeout = "300ms"`), and one source pool giving organic search visitors `tracking`.
pub fn site_rules(hosts: &[&str], upstream: &str, extra: &str, tracking: &str) -> String {
    let hosts: Vec<String> = hosts.iter().map(|h| format!("{h:?}")).collect();
    format!(
        r#"hosts = [{hosts}]
upstream = "{upstream}"
numbers = ["{SITE_NUMBER}"]
{extra}

[[pool]]
name = "organic"
mode = "source"
when.channel = ["organic_search"]
numbers = ["{tracking}"]
"#,
        hosts = hosts.join(", ")
    )
}

/// The usual single site: `site.test` and `other.test` in front of `upstream`.
pub fn default_site(upstream: &str, extra: &str) -> String {
    site_rules(&["site.test", "other.test"], upstream, extra, TRACKING_NUMBER)
}

/// Starts the proxy on ephemeral loopback ports with the rule files `sites` (name, text); with
/// `certs`, also the HTTPS listener serving the `<host>.crt` / `<host>.key` pairs found there.
pub async fn start_proxy_with(sites: &[(&str, String)], certs: Option<&Path>) -> Running {
    let sources: Vec<(PathBuf, String)> = sites
        .iter()
        .map(|(name, text)| (PathBuf::from(format!("{name}.toml")), text.clone()))
        .collect();
    let set = telswap::rules::load_sources(&sources).unwrap_or_else(|p| panic!("test rules rejected:\n{p}"));
    let proxy = telswap::proxy::Proxy::new(set, Arc::new(telswap::pool::SourceChooser));
    let cfg = ServeConfig {
        rules: "rules".into(),
        listen: "127.0.0.1:0".parse().expect("addr"),
        tls_listen: certs.map(|_| "127.0.0.1:0".parse().expect("addr")),
        certs: certs.map(Path::to_path_buf).unwrap_or_else(|| "certs".into()),
        trusted_proxies: Default::default(),
    };
    telswap::proxy::server::start(&cfg, proxy).await.expect("proxy starts")
}

/// Starts the proxy (plain HTTP only) with one site.
pub async fn start_proxy(site: String) -> Running {
    start_proxy_with(&[("site", site)], None).await
}

/// Waits until the proxy counts `n` parked connections (parking follows the response's flush
/// on the proxy's side, a moment after the client has read it).
pub async fn until_idle(proxy: &Running, n: u64) {
    tokio::time::timeout(DEADLINE, async {
        while proxy.proxy.stats.connections_idle.load(Ordering::Relaxed) != n {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{n} parked connection(s) expected"));
}

// ---------------------------------------------------------------------------------------------
// A raw HTTP/1.1 client

/// A response as it came off the wire.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// In wire order, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body after undoing chunked transfer coding (content codings untouched).
    pub body: Vec<u8>,
    /// The whole response exactly as received.
    pub wire: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }

    pub fn has(&self, name: &str) -> bool {
        self.header(name).is_some()
    }

    /// Every value of a header, in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A request head with `Host` and `Connection: close` (the client reads to EOF), plus `headers`.
pub fn request_head(method: &str, host: &str, target: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut s = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("connection")) {
        s.push_str("Connection: close\r\n");
    }
    for (k, v) in headers {
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    s.push_str("\r\n");
    s.into_bytes()
}

/// Sends `request` on a fresh connection and reads the response until the server closes.
pub async fn exchange(addr: SocketAddr, request: &[u8]) -> RawResponse {
    parse_response(exchange_wire(addr, request).await, request.starts_with(b"HEAD "))
}

/// Sends `request` and returns every byte the server sent until it closed, unparsed (for
/// responses that may be cut short).
pub async fn exchange_wire(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    tokio::time::timeout(DEADLINE, async {
        let mut s = TcpStream::connect(addr).await.expect("connect to the proxy");
        // A server may answer before reading everything (431) and close: the answer still counts.
        let _ = s.write_all(request).await;
        let mut wire = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match s.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => wire.extend_from_slice(&buf[..n]),
                Err(_) if !wire.is_empty() => break,
                Err(e) => panic!("reading the response: {e}"),
            }
        }
        wire
    })
    .await
    .expect("the proxy answered and closed within the deadline")
}

/// A connection with `request` sent, for tests that read the response piece by piece.
pub async fn open(addr: SocketAddr, request: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect to the proxy");
    s.write_all(request).await.expect("send the request");
    s
}

/// Reads whatever arrives next onto `wire`; `false` once the server has closed.
pub async fn read_more(s: &mut TcpStream, wire: &mut Vec<u8>) -> bool {
    let mut buf = vec![0u8; 64 * 1024];
    match s.read(&mut buf).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            wire.extend_from_slice(&buf[..n]);
            true
        }
    }
}

/// `GET`/`HEAD`/... `target` with `Host: host` and extra `headers`.
pub async fn send(addr: SocketAddr, method: &str, host: &str, target: &str, headers: &[(&str, &str)]) -> RawResponse {
    exchange(addr, &request_head(method, host, target, headers)).await
}

pub async fn get(addr: SocketAddr, host: &str, target: &str) -> RawResponse {
    send(addr, "GET", host, target, &[]).await
}

/// `target` with the organic-search query appended.
pub fn tracked(path: &str) -> String {
    format!("{path}?{TRACKED_QUERY}")
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Splits a response off the wire into status, headers and (de-chunked) body.
pub fn parse_response(wire: Vec<u8>, is_head: bool) -> RawResponse {
    let end = find(&wire, b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete response head in {:?}", String::from_utf8_lossy(&wire)));
    let head = std::str::from_utf8(&wire[..end]).expect("ASCII response head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap_or_else(|| panic!("bad header line {l:?}"));
            (k.trim().to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    let rest = &wire[end + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    let body = if is_head || status == 304 || status == 204 {
        assert!(
            rest.is_empty(),
            "a {status} response to HEAD/304/204 carried a body: {rest:?}"
        );
        Vec::new()
    } else if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    if !is_head
        && !chunked
        && let Some((_, cl)) = headers.iter().find(|(k, _)| k == "content-length")
    {
        assert_eq!(
            cl.parse::<usize>().expect("numeric Content-Length"),
            body.len(),
            "Content-Length vs body"
        );
    }
    RawResponse {
        status,
        headers,
        body,
        wire,
    }
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = find(rest, b"\r\n").expect("chunk size line");
        let size_line = std::str::from_utf8(&rest[..line_end]).expect("chunk size");
        let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16).expect("hex chunk size");
        rest = &rest[line_end + 2..];
        if size == 0 {
            return out;
        }
        assert!(rest.len() >= size + 2, "truncated chunk");
        out.extend_from_slice(&rest[..size]);
        assert_eq!(&rest[size..size + 2], b"\r\n", "chunk terminator");
        rest = &rest[size + 2..];
    }
}

// ---------------------------------------------------------------------------------------------
// Content codings (RFC 9110 §8.4.1; `deflate` is the zlib format)

/// `coding`'s bytes for `data`; `raw-deflate` is deflate without zlib's wrapper, as old servers
/// send under the name `deflate`.
pub async fn encode(coding: &str, data: &[u8]) -> Vec<u8> {
    use async_compression::tokio::write::{BrotliEncoder, DeflateEncoder, GzipEncoder, ZlibEncoder, ZstdEncoder};
    async fn run<W: tokio::io::AsyncWrite + Unpin>(mut w: W, data: &[u8]) -> W {
        w.write_all(data).await.expect("encode");
        w.shutdown().await.expect("encode");
        w
    }
    match coding {
        "gzip" => run(GzipEncoder::new(Vec::new()), data).await.into_inner(),
        "deflate" => run(ZlibEncoder::new(Vec::new()), data).await.into_inner(),
        "raw-deflate" => run(DeflateEncoder::new(Vec::new()), data).await.into_inner(),
        "br" => run(BrotliEncoder::new(Vec::new()), data).await.into_inner(),
        "zstd" => run(ZstdEncoder::new(Vec::new()), data).await.into_inner(),
        other => panic!("unknown coding {other}"),
    }
}

/// The first part of a compressed stream, flushed so that it decodes on its own (as a server
/// that streams compressed output sends it); the stream is not finished.
pub async fn encode_flushed_prefix(coding: &str, data: &[u8]) -> Vec<u8> {
    use async_compression::tokio::write::{BrotliEncoder, GzipEncoder, ZlibEncoder, ZstdEncoder};
    async fn run<W: tokio::io::AsyncWrite + Unpin>(mut w: W, data: &[u8]) -> W {
        w.write_all(data).await.expect("encode");
        w.flush().await.expect("flush");
        w
    }
    match coding {
        "gzip" => run(GzipEncoder::new(Vec::new()), data).await.into_inner(),
        "deflate" => run(ZlibEncoder::new(Vec::new()), data).await.into_inner(),
        "br" => run(BrotliEncoder::new(Vec::new()), data).await.into_inner(),
        "zstd" => run(ZstdEncoder::new(Vec::new()), data).await.into_inner(),
        other => panic!("unknown coding {other}"),
    }
}

/// Decodes as much of an unfinished compressed stream as it holds.
pub async fn decode_prefix(coding: &str, data: &[u8]) -> Vec<u8> {
    use async_compression::tokio::bufread::{BrotliDecoder, GzipDecoder, ZlibDecoder, ZstdDecoder};
    let mut out = Vec::new();
    // The stream is cut short on purpose: the error at its end is expected, the output kept.
    let _ = match coding {
        "gzip" => GzipDecoder::new(data).read_to_end(&mut out).await,
        "deflate" => ZlibDecoder::new(data).read_to_end(&mut out).await,
        "br" => BrotliDecoder::new(data).read_to_end(&mut out).await,
        "zstd" => ZstdDecoder::new(data).read_to_end(&mut out).await,
        other => panic!("unknown coding {other}"),
    };
    out
}

/// The data of the complete chunks at the start of a chunked body that may be cut short, and
/// whether the terminating zero-size chunk arrived.
pub fn dechunk_prefix(mut rest: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    loop {
        let Some(line_end) = find(rest, b"\r\n") else {
            return (out, false);
        };
        let Some(size) = std::str::from_utf8(&rest[..line_end])
            .ok()
            .and_then(|l| usize::from_str_radix(l.split(';').next().unwrap_or("").trim(), 16).ok())
        else {
            return (out, false);
        };
        rest = &rest[line_end + 2..];
        if size == 0 {
            return (out, rest.starts_with(b"\r\n"));
        }
        if rest.len() < size + 2 {
            return (out, false);
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

pub async fn decode(coding: &str, data: &[u8]) -> Vec<u8> {
    use async_compression::tokio::bufread::{BrotliDecoder, GzipDecoder, ZlibDecoder, ZstdDecoder};
    let mut out = Vec::new();
    let r = match coding {
        "gzip" => GzipDecoder::new(data).read_to_end(&mut out).await,
        "deflate" => ZlibDecoder::new(data).read_to_end(&mut out).await,
        "br" => BrotliDecoder::new(data).read_to_end(&mut out).await,
        "zstd" => ZstdDecoder::new(data).read_to_end(&mut out).await,
        other => panic!("unknown coding {other}"),
    };
    r.unwrap_or_else(|e| panic!("the {coding} body does not decode: {e}"));
    out
}

// ---------------------------------------------------------------------------------------------
// WebSocket handshake (RFC 6455 §4.2.2): base64(SHA-1(key + GUID)), hand-rolled to add no crate.

pub fn websocket_accept(key: &str) -> String {
    base64(&sha1(format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11").as_bytes()))
}

/// SHA-1 (RFC 3174).
pub fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x6745_2301, 0xEFCD_AB89, 0x98BA_DCFE, 0x1032_5476, 0xC3D2_E1F0];
    let mut msg = data.to_vec();
    let bits = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bits.to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 80];
        for (word, bytes) in w.iter_mut().zip(block.chunks(4)) {
            *word = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (hi, v) in h.iter_mut().zip([a, b, c, d, e]) {
            *hi = hi.wrapping_add(v);
        }
    }
    let mut out = [0u8; 20];
    for (o, hi) in out.chunks_mut(4).zip(h) {
        o.copy_from_slice(&hi.to_be_bytes());
    }
    out
}

/// Standard base64 with padding (RFC 4648 §4).
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        out.push(ALPHABET[(n >> 18) as usize & 63] as char);
        out.push(ALPHABET[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            ALPHABET[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            ALPHABET[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

/// An origin that answers every request with `page` as `text/html` (the end-to-end tests'
/// site: the calls, reports, dashboard and outbox tests only need the number to be on it).
pub async fn html_origin(page: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let svc = service_fn(move |_req: Request<Incoming>| async move {
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header("content-type", "text/html")
                            .body(Full::new(Bytes::from(page)))
                            .unwrap(),
                    )
                });
                let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

/// The whole product (store, pools, webhooks, proxy and admin listeners) from one rules text
/// (`site.toml`), on ephemeral loopback ports, with `data` as its folder and `clock` as its time.
pub async fn start_app(
    rules: &str,
    data: &Path,
    clock: Arc<telswap::clock::ManualClock>,
    admin_token: &str,
    secrets: telswap::calls::Secrets,
) -> telswap::app::App {
    start_app_sites(&[("site", rules.to_string())], data, clock, admin_token, secrets).await
}

/// [`start_app`] with several sites: (file name without `.toml`, rules).
pub async fn start_app_sites(
    sites: &[(&str, String)],
    data: &Path,
    clock: Arc<telswap::clock::ManualClock>,
    admin_token: &str,
    secrets: telswap::calls::Secrets,
) -> telswap::app::App {
    let sources: Vec<(PathBuf, String)> = sites
        .iter()
        .map(|(name, text)| (PathBuf::from(format!("{name}.toml")), text.clone()))
        .collect();
    let set = telswap::rules::load_sources(&sources).unwrap();
    telswap::app::App::start(
        set,
        telswap::app::AppConfig {
            serve: ServeConfig {
                rules: "rules".into(),
                listen: "127.0.0.1:0".parse().unwrap(),
                tls_listen: None,
                certs: "certs".into(),
                trusted_proxies: Default::default(),
            },
            admin: Some("127.0.0.1:0".parse().unwrap()),
            admin_token: Some(admin_token.into()),
            data: data.to_path_buf(),
            secrets,
            clock: Some(clock as Arc<dyn telswap::clock::Clock>),
        },
    )
    .await
    .unwrap()
}
