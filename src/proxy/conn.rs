//! Client connections, plain or TLS: HTTP/1.1 with idle keep-alive connections parked without
//! hyper's buffers, and HTTP/2 (by prior knowledge on plain connections, by ALPN on TLS, where a
//! client that chose h2 sends the same preface first).
//!
//! Why not hand the socket to one hyper connection for its whole life: hyper's HTTP/1 connection
//! keeps an 8 KiB read buffer, an 8 KiB header write buffer and its dispatcher for as long as
//! the socket is open, so 10,000 idle keep-alive connections cost over 200 MB
//! (`benches/RESULTS.md`). nginx frees a keep-alive connection's request buffers as soon as its
//! response is sent (`ngx_http_set_keepalive`) and allocates again when the next request's
//! first byte arrives; this does the same. Each request (or pipelined burst) is served by a fresh
//! hyper connection; once the response is written and flushed and hyper waits for the next
//! request, the connection is closed *without* shutting the socket down
//! ([`hyper::server::conn::http1::Connection::into_parts`]), any bytes hyper read ahead are kept,
//! and the bare socket waits for readability. A parked connection holds the socket, its task
//! and a timer: well under 1 KiB.
//!
//! A connection is parked only when that is known to be safe: no response in flight, hyper's
//! write buffer flushed, hyper waiting on the socket for more bytes, and the last request had no
//! body left to read. Otherwise the hyper connection goes on as usual. A protocol switch
//! (WebSocket) on such a connection is handed over by [`ManualUpgrade`], since hyper's own
//! upgrade needs the connection to end with a shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;

use super::body::Stall;
use super::{ConnInfo, Proxy, ProxyBody};

/// How long a parked keep-alive connection waits for its next request before it is closed. The
/// same as hyper's header read timeout that used to close idle connections here; nginx's
/// `keepalive_timeout` default is 75 s.
pub const KEEP_ALIVE_IDLE: Duration = Duration::from_secs(30);

/// The HTTP/2 connection preface (RFC 9113 §3.4): a connection that starts with it speaks
/// HTTP/2 (by prior knowledge on a plain connection, as ALPN agreed on a TLS one).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The client's socket, with the bytes already read from it but not yet consumed in front, and
/// what the connection loop needs to know of how hyper last used it.
pub struct Socket {
    pre: Bytes,
    io: Transport,
    state: Arc<ConnState>,
    /// Running while a write waits for the client to take bytes ([`SEND_TIMEOUT`]).
    stall: Stall,
}

/// How long a write may wait for the client to read (nginx's `send_timeout`, 60 s by default):
/// a client that stops reading a large page would otherwise hold its connection, the rewrite's
/// buffers and the origin's connection for as long as it stays connected.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(60);

impl Socket {
    /// `r`, a write's result, with the send timeout: the clock starts when a write first has
    /// to wait, stops when one goes through, and past [`SEND_TIMEOUT`] the write fails (hyper
    /// then closes the connection).
    fn deadline<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        self.stall.check(cx, r, SEND_TIMEOUT).map(|r| {
            r.unwrap_or_else(|()| {
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client read nothing for the send timeout",
                ))
            })
        })
    }
}

/// The byte stream under a connection: `Left` a plain TCP socket, `Right` a TLS stream (boxed:
/// rustls' connection state is large). A parked TLS connection keeps rustls' state (keys, and a
/// 4 KiB record buffer rustls shrinks to when it is empty) but, as a plain one, none of hyper's.
pub type Transport = Either<TcpStream, Box<tokio_rustls::server::TlsStream<TcpStream>>>;

/// Waits until the client sends more. A TLS stream is parked only after hyper's read came back
/// empty-handed (no plaintext left in rustls, [`ConnState::can_park`]), so what comes next comes
/// on the socket.
async fn readable(io: &Transport) -> io::Result<()> {
    match io {
        Either::Left(tcp) => tcp.readable().await,
        Either::Right(tls) => tls.get_ref().0.readable().await,
    }
}

/// What one round of an HTTP/1 connection (one hyper connection) has been doing.
#[derive(Default)]
struct ConnState {
    /// Requests whose response has not been dropped by hyper yet (hyper drops a response body
    /// once it has been written whole, or given up).
    in_flight: AtomicUsize,
    /// Responses finished in this round.
    finished: AtomicUsize,
    /// The last request came with a body (hyper may still have some of it to read).
    body: AtomicBool,
    /// The last read of the socket found nothing to read.
    read_pending: AtomicBool,
    /// Everything hyper wrote has been flushed.
    flushed: AtomicBool,
    /// A `101 Switching Protocols` was answered: the socket goes to the tunnel.
    switching: AtomicBool,
    upgrade: Mutex<Option<oneshot::Sender<Socket>>>,
}

impl ConnState {
    fn reset(&self) {
        self.finished.store(0, Ordering::Relaxed);
        self.read_pending.store(false, Ordering::Relaxed);
        self.flushed.store(true, Ordering::Relaxed);
    }

    fn can_park(&self) -> bool {
        self.finished.load(Ordering::Relaxed) > 0
            && self.in_flight.load(Ordering::Relaxed) == 0
            && !self.body.load(Ordering::Relaxed)
            && self.read_pending.load(Ordering::Relaxed)
            && self.flushed.load(Ordering::Relaxed)
            && !self.switching.load(Ordering::Relaxed)
    }
}

/// The client side of a WebSocket (or other) upgrade on a parked-style connection: the socket,
/// sent once the `101` has been written. Put in the request's extensions for the proxy's tunnel.
#[derive(Clone)]
pub struct ManualUpgrade(Arc<Mutex<Option<oneshot::Receiver<Socket>>>>);

impl ManualUpgrade {
    /// Waits for the socket; `None` when the connection ended without switching.
    pub async fn socket(self) -> Option<Socket> {
        let rx = self.0.lock().expect("upgrade receiver").take()?;
        rx.await.ok()
    }
}

/// Counts a request in flight until its response body is dropped.
struct InFlight(Arc<ConnState>);

impl InFlight {
    fn start(state: &Arc<ConnState>) -> InFlight {
        state.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(state.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.finished.fetch_add(1, Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that tells the connection when hyper is done with it: it holds `G`
/// ([`InFlight`] for HTTP/1, [`StreamGuard`] for an HTTP/2 stream) until it is dropped.
pub struct Tracked<G> {
    body: ProxyBody,
    _guard: G,
}

impl<G: Unpin> Body for Tracked<G> {
    type Data = Bytes;
    type Error = super::BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl AsyncRead for Socket {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !self.pre.is_empty() {
            let n = self.pre.len().min(buf.remaining());
            buf.put_slice(&self.pre[..n]);
            self.pre.advance(n);
            return Poll::Ready(Ok(()));
        }
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        self.state.read_pending.store(r.is_pending(), Ordering::Relaxed);
        r
    }
}

impl AsyncWrite for Socket {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.state.flushed.store(false, Ordering::Relaxed);
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        self.deadline(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.state.flushed.store(false, Ordering::Relaxed);
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.deadline(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // hyper flushes the socket only once its own write buffer is empty.
        let r = Pin::new(&mut self.io).poll_flush(cx);
        if r.is_ready() {
            self.state.flushed.store(true, Ordering::Relaxed);
        }
        self.deadline(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The hyper settings for client connections.
pub struct Builders {
    pub http1: http1::Builder,
    pub http2: http2::Builder<TokioExecutor>,
}

/// Serves one connection (plain, or TLS after its handshake) until it closes, the client goes
/// quiet for [`KEEP_ALIVE_IDLE`] between requests, or `stop` is cancelled (in-flight responses
/// finish first).
pub async fn serve_client(
    io: Transport,
    proxy: Arc<Proxy>,
    info: ConnInfo,
    builders: Arc<Builders>,
    stop: CancellationToken,
) {
    let stats = proxy.stats.clone();
    let _open = Gauge::up(&stats.connections_open);
    let state = Arc::new(ConnState::default());
    let mut socket = Socket {
        pre: Bytes::new(),
        io,
        state,
        stall: Stall::default(),
    };
    match sniff_h2(&mut socket, &stop).await {
        Ok(Some(true)) => return serve_h2(socket, proxy, info, &builders.http2, &stop).await,
        Ok(Some(false)) => {}
        Ok(None) => return,
        Err(e) => return log_end(info.remote, Err(e)),
    }
    loop {
        match serve_h1_round(socket, &proxy, info, &builders.http1, &stop).await {
            Round::Parked(s) => socket = s,
            Round::Done => return,
        }
        // Parked: only the socket is left. Wait for the next request's first byte.
        if socket.pre.is_empty() {
            let _idle = Gauge::up(&stats.connections_idle);
            tokio::select! {
                r = readable(&socket.io) => if let Err(e) = r {
                    return log_end(info.remote, Err(e));
                },
                _ = tokio::time::sleep(KEEP_ALIVE_IDLE) => return close(socket).await,
                _ = stop.cancelled() => return close(socket).await,
            }
        }
    }
}

/// One unit of a gauge, held while it lasts.
struct Gauge<'a>(&'a AtomicU64);

impl<'a> Gauge<'a> {
    fn up(g: &'a AtomicU64) -> Gauge<'a> {
        g.fetch_add(1, Ordering::Relaxed);
        Gauge(g)
    }
}

impl Drop for Gauge<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

enum Round {
    /// The connection is idle between requests; here is its socket.
    Parked(Socket),
    /// The connection is over (closed, failed, upgraded or shut down).
    Done,
}

/// Serves requests on `socket` with one hyper connection until it can be parked or is over.
async fn serve_h1_round(
    socket: Socket,
    proxy: &Arc<Proxy>,
    info: ConnInfo,
    http1: &http1::Builder,
    stop: &CancellationToken,
) -> Round {
    let state = socket.state.clone();
    state.reset();
    let svc = {
        let (proxy, state) = (proxy.clone(), state.clone());
        service_fn(move |mut req: Request<Incoming>| {
            let in_flight = InFlight::start(&state);
            state.body.store(!req.body().is_end_stream(), Ordering::Relaxed);
            if super::headers::wants_upgrade(req.headers()) {
                let (tx, rx) = oneshot::channel();
                *state.upgrade.lock().expect("upgrade sender") = Some(tx);
                req.extensions_mut()
                    .insert(ManualUpgrade(Arc::new(Mutex::new(Some(rx)))));
            }
            let (proxy, state) = (proxy.clone(), state.clone());
            // Boxed: hyper keeps a slot the size of the service's future for the connection.
            Box::pin(async move {
                let resp = proxy.handle(req, info).await;
                if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                    state.switching.store(true, Ordering::Relaxed);
                }
                Ok::<_, Infallible>(resp.map(|body| Tracked {
                    body,
                    _guard: in_flight,
                }))
            })
        })
    };
    // Boxed so that the connection's buffers and state are freed when it is parked; the task
    // keeps only this loop's small state.
    let mut conn = Box::new(http1.serve_connection(TokioIo::new(socket), svc));
    let mut asked = false;
    let mut stopping = false;
    let cancelled = stop.cancelled();
    tokio::pin!(cancelled);
    let result = std::future::poll_fn(|cx| {
        if !stopping && cancelled.as_mut().poll(cx).is_ready() {
            stopping = true;
            Pin::new(&mut *conn).graceful_shutdown();
        }
        loop {
            match conn.poll_without_shutdown(cx) {
                Poll::Ready(r) => return Poll::Ready(r),
                Poll::Pending if !asked && !stopping && state.can_park() => {
                    // hyper is idle: closing it now ends it at once, socket untouched.
                    asked = true;
                    Pin::new(&mut *conn).graceful_shutdown();
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    })
    .await;
    if let Err(e) = result {
        log_end(info.remote, Err(e));
        return Round::Done;
    }
    let switching = state.switching.swap(false, Ordering::Relaxed);
    if !switching && (!asked || stopping) {
        // hyper ended the connection itself (`Connection: close`, HTTP/1.0, the client closed, a
        // request body left unread, shutdown). `poll_without_shutdown` may call that done with
        // the end of the response still in hyper's write buffer, which `into_parts` would drop:
        // finish the ordinary way instead, which flushes it and shuts the socket down.
        drop(state.upgrade.lock().expect("upgrade sender").take());
        if let Err(e) = Pin::new(&mut *conn).await {
            log_end(info.remote, Err(e));
        }
        return Round::Done;
    }
    let parts = (*conn).into_parts();
    let mut socket = parts.io.into_inner();
    // Read ahead by hyper (the start of the next request, often nothing); `pre` is empty here,
    // as hyper reads what is in front before the socket.
    socket.pre = owned_read_ahead(parts.read_buf);
    let upgrade = state.upgrade.lock().expect("upgrade sender").take();
    if switching {
        if let Some(tx) = upgrade {
            let _ = tx.send(socket);
        }
        return Round::Done;
    }
    // Parked only when hyper was idle with everything flushed ([`ConnState::can_park`]).
    Round::Parked(socket)
}

/// hyper's read-ahead as bytes of its own (no allocation when empty, the usual case).
/// `read_buf` is a slice of hyper's read buffer (8 KiB and up), and even an empty slice of it
/// keeps the whole buffer alive: kept as it is, every parked connection held one, and 10,000
/// idle connections took 180 MiB instead of 60.
fn owned_read_ahead(read_buf: Bytes) -> Bytes {
    Bytes::copy_from_slice(&read_buf)
}

/// Reads the first bytes of a new connection, far enough to tell the HTTP/2 preface from an
/// HTTP/1 request line; they stay in front of the socket. `None`: closed before a byte came.
async fn sniff_h2(socket: &mut Socket, stop: &CancellationToken) -> io::Result<Option<bool>> {
    let mut buf = [0u8; H2_PREFACE.len()];
    let mut n = 0;
    // One deadline for the whole preface, so a client cannot hold the connection by dribbling it.
    let deadline = tokio::time::Instant::now() + KEEP_ALIVE_IDLE;
    while n < buf.len() && buf[..n] == H2_PREFACE[..n] {
        let read = tokio::select! {
            r = socket.io.read(&mut buf[n..]) => r?,
            _ = tokio::time::sleep_until(deadline) => 0,
            _ = stop.cancelled() => 0,
        };
        if read == 0 {
            if n > 0 {
                break;
            }
            return Ok(None);
        }
        n += read;
    }
    socket.pre = Bytes::copy_from_slice(&buf[..n]);
    Ok(Some(n == buf.len() && buf == *H2_PREFACE))
}

async fn serve_h2(
    socket: Socket,
    proxy: Arc<Proxy>,
    info: ConnInfo,
    http2: &http2::Builder<TokioExecutor>,
    stop: &CancellationToken,
) {
    let streams = Arc::new(Streams::default());
    let conn = Box::pin(http2.serve_connection(TokioIo::new(socket), service(proxy, info, streams.clone())));
    log_end(
        info.remote,
        drive_h2(conn, stop, &streams, KEEP_ALIVE_IDLE, |c| c.graceful_shutdown()).await,
    );
}

/// The open streams of one HTTP/2 connection, for its idle timeout. A stream counts from its
/// request's arrival to the end of its response body, or to its reset (the guard is dropped with
/// the handler's future or with the body).
pub struct Streams {
    open: AtomicUsize,
    /// When the last stream ended (when the connection opened, before any).
    quiet_since: Mutex<tokio::time::Instant>,
    /// Told each time the last open stream ends (a stored permit if nobody waits yet).
    idle: tokio::sync::Notify,
}

impl Default for Streams {
    fn default() -> Self {
        Streams {
            open: AtomicUsize::new(0),
            quiet_since: Mutex::new(tokio::time::Instant::now()),
            idle: tokio::sync::Notify::new(),
        }
    }
}

impl Streams {
    fn open(self: &Arc<Self>) -> StreamGuard {
        self.open.fetch_add(1, Ordering::AcqRel);
        StreamGuard(self.clone())
    }

    /// When the connection's idle time runs out, if no stream is open now.
    fn idle_deadline(&self, idle: Duration) -> Option<tokio::time::Instant> {
        (self.open.load(Ordering::Acquire) == 0).then(|| *self.quiet_since.lock().expect("streams lock") + idle)
    }
}

pub struct StreamGuard(Arc<Streams>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let streams = &self.0;
        // Set before the count reaches zero, so a zero count never reads an older time.
        let mut since = streams.quiet_since.lock().expect("streams lock");
        if streams.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            *since = tokio::time::Instant::now();
            drop(since);
            streams.idle.notify_one();
        }
    }
}

/// Drives an HTTP/2 connection until it ends. It is shut down gracefully with `shutdown` (GOAWAY,
/// in-flight streams finish) when `stop` is cancelled, or once no stream has been open for
/// `idle`: the same keep-alive limit as HTTP/1.1's parked connections, where hyper's HTTP/2
/// server has none and would hold an idle connection, with its codec buffers and HPACK tables,
/// for as long as the client (or a peer that vanished without a FIN) leaves it open.
pub async fn drive_h2<C, E>(
    mut conn: Pin<Box<C>>,
    stop: &CancellationToken,
    streams: &Streams,
    idle: Duration,
    shutdown: impl FnOnce(Pin<&mut C>),
) -> Result<(), E>
where
    C: Future<Output = Result<(), E>> + ?Sized,
{
    let stopping = loop {
        let deadline = streams.idle_deadline(idle);
        tokio::select! {
            r = conn.as_mut() => return r,
            _ = stop.cancelled() => break true,
            // A stream may have come and gone meanwhile, moving the deadline: looked at again.
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)), if deadline.is_some() => {
                if streams.idle_deadline(idle).is_some_and(|d| d <= tokio::time::Instant::now()) {
                    break false;
                }
            }
            // The last open stream ended: the idle time starts now.
            _ = streams.idle.notified(), if deadline.is_none() => {}
        }
    };
    shutdown(conn.as_mut());
    if stopping {
        // In-flight streams finish first, as on every connection when the proxy stops.
        return conn.await;
    }
    // Idle: h2 sends its last GOAWAY, and closes, only once the client answers its PING (one
    // round trip, RFC 9113 §6.8). A client that never answers, or is gone, is dropped when no
    // stream is open, so only the courtesy is lost. A stream the client opened before the
    // first GOAWAY reached it is served to its end first.
    loop {
        match tokio::time::timeout(GOAWAY_WAIT, conn.as_mut()).await {
            Ok(r) => return r,
            Err(_) if streams.open.load(Ordering::Acquire) == 0 => return Ok(()),
            Err(_) => tokio::select! {
                r = conn.as_mut() => return r,
                _ = streams.idle.notified() => {}
            },
        }
    }
}

/// How long an idle HTTP/2 connection's graceful close waits for the client's PING answer.
pub const GOAWAY_WAIT: Duration = Duration::from_secs(5);

/// One request through the proxy, boxed: hyper's HTTP/1 dispatcher keeps a heap slot the size
/// of the service's future for the connection's whole life.
type Handling = Pin<Box<dyn Future<Output = Result<http::Response<ProxyBody>, Infallible>> + Send>>;

/// The proxy as a hyper service for one HTTP/2 connection, each stream counted in `streams`.
pub fn service(
    proxy: Arc<Proxy>,
    info: ConnInfo,
    streams: Arc<Streams>,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = http::Response<ProxyBody>,
    Error = Infallible,
    Future = Handling,
> + Clone {
    service_fn(move |req| {
        let proxy = proxy.clone();
        let stream = streams.open();
        Box::pin(async move {
            let mut resp = proxy.handle(req, info).await;
            own_header_values(resp.headers_mut());
            Ok(resp.map(|body| Tracked { body, _guard: stream }.boxed()))
        }) as Handling
    })
}

/// Gives every header value its own bytes. A value hyper parsed from the origin's response is a
/// slice of that origin connection's read buffer (16-32 KiB), and h2's HPACK encoder keeps the
/// values it indexes (`date`, `etag`, `content-type`, ...) in its dynamic table for the client
/// connection's life: each idle HTTP/2 connection held a whole origin read buffer, about 16 KiB
/// a connection after the buffers it shares with others (10,000 idle over TLS: 556.5 MiB, 378.9
/// with this).
/// The copies are a few dozen bytes each.
fn own_header_values(headers: &mut http::HeaderMap) {
    for v in headers.values_mut() {
        let sensitive = v.is_sensitive();
        *v = http::HeaderValue::from_bytes(v.as_bytes()).expect("a valid value stays valid");
        v.set_sensitive(sensitive);
    }
}

/// How long closing a connection may wait to send its last bytes: a TLS close_notify cannot
/// leave while a client that stopped reading keeps the send window shut, and the task (with the
/// socket and rustls' state) would wait for it forever.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

async fn close(mut socket: Socket) {
    let _ = tokio::time::timeout(CLOSE_WAIT, socket.io.shutdown()).await;
}

pub fn log_end<E: std::fmt::Display>(remote: SocketAddr, result: Result<(), E>) {
    if let Err(e) = result {
        tracing::debug!(%remote, error = %e, "connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    /// What hyper hands back from `into_parts`: a slice cut from its read buffer, which the rest
    /// of that buffer still shares.
    fn cut(buffer: &mut BytesMut, n: usize) -> Bytes {
        buffer.split_to(n).freeze()
    }

    #[test]
    fn a_parked_socket_keeps_none_of_hypers_read_buffer() {
        let mut buffer = BytesMut::with_capacity(8192);
        let hyper = buffer.as_ptr() as usize..buffer.as_ptr() as usize + 8192;
        buffer.extend_from_slice(b"GET / HTTP/1.1\r\n");
        let empty = cut(&mut buffer, 0);
        let some = cut(&mut buffer, 4);
        assert!(
            !empty.is_unique() && !some.is_unique(),
            "cuts, even empty, share hyper's buffer"
        );

        let kept = owned_read_ahead(some);
        assert_eq!(&kept[..], b"GET ");
        assert!(kept.is_unique(), "the read-ahead is copied out");
        let kept_empty = owned_read_ahead(empty);
        assert!(kept_empty.is_empty());
        assert!(
            !hyper.contains(&(kept_empty.as_ptr() as usize)),
            "nothing points into it"
        );
    }

    #[test]
    fn answer_headers_keep_none_of_the_origins_read_buffer() {
        let mut buffer = BytesMut::with_capacity(16384);
        let origin = buffer.as_ptr() as usize..buffer.as_ptr() as usize + 16384;
        buffer.extend_from_slice(b"text/html; charset=utf-8W/\"5f-1\"secret");
        let mut headers = http::HeaderMap::new();
        for (name, n) in [("content-type", 24), ("etag", 8)] {
            let value = http::HeaderValue::from_maybe_shared(cut(&mut buffer, n)).unwrap();
            headers.insert(name, value);
        }
        let mut secret = http::HeaderValue::from_maybe_shared(cut(&mut buffer, 6)).unwrap();
        secret.set_sensitive(true);
        headers.insert("set-cookie", secret);
        let in_origin = |v: &http::HeaderValue| origin.contains(&(v.as_bytes().as_ptr() as usize));
        assert!(headers.values().all(in_origin));

        own_header_values(&mut headers);
        assert!(
            !headers.values().any(in_origin),
            "no value points into the origin's buffer"
        );
        assert_eq!(headers["content-type"], "text/html; charset=utf-8");
        assert_eq!(headers["etag"], "W/\"5f-1\"");
        assert!(headers["set-cookie"].is_sensitive(), "HPACK still never indexes it");
    }
}
