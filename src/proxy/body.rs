//! The response body filter: decode the origin's content coding, rewrite, re-encode, stream.
//!
//! A spawned task pulls the origin body, pushes it through the [`PageRewriter`] and sends the
//! output down a small bounded channel that is the visitor's response body. The channel bound is
//! what keeps memory flat for any page size: a slow visitor slows the read from the origin.
//! Every read is flushed through the encoder so the visitor's first bytes leave as soon as the
//! origin's arrive.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_compression::tokio::bufread::{BrotliDecoder, DeflateDecoder, GzipDecoder, ZlibDecoder, ZstdDecoder};
use async_compression::tokio::write::{BrotliEncoder, GzipEncoder, ZlibEncoder, ZstdEncoder};
use bytes::Bytes;
use futures_util::TryStreamExt;
use http_body_util::BodyExt;
use hyper::body::Frame;
use tokio::io::{AsyncBufRead, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio_util::io::StreamReader;

use super::{BoxError, ProxyBody, Stats};
use crate::rewrite::{PageRewriter, replay};

/// The origin's body, ended with an error when nothing arrives for `idle` (nginx's
/// `proxy_read_timeout`): an origin that stalls mid-page would otherwise hold the visitor's
/// connection and its own until the visitor gives up. The visitor then sees the response cut
/// (a reset stream, or a chunked body without its last chunk), never a page that looks whole.
pub fn idle_timeout(origin: ProxyBody, idle: std::time::Duration) -> ProxyBody {
    idle_timeout_with(origin, idle, |idle| {
        format!("the origin sent nothing for {idle:?}").into()
    })
}

/// [`idle_timeout`] with the error `stalled` makes (the visitor's body has its own).
pub fn idle_timeout_with(
    body: ProxyBody,
    idle: std::time::Duration,
    stalled: fn(std::time::Duration) -> BoxError,
) -> ProxyBody {
    IdleTimeout {
        inner: body,
        idle,
        stalled,
        stall: Stall::default(),
    }
    .boxed()
}

/// The request body, with `sent` fired when it has all been read (or failed): the wait for
/// the origin's answer is timed from then, so an upload that takes longer than
/// `response_timeout` is not cut while it flows.
pub fn signal_end(body: ProxyBody, sent: tokio::sync::oneshot::Sender<()>) -> ProxyBody {
    SignalEnd {
        inner: body,
        sent: Some(sent),
    }
    .boxed()
}

struct SignalEnd {
    inner: ProxyBody,
    sent: Option<tokio::sync::oneshot::Sender<()>>,
}

impl hyper::body::Body for SignalEnd {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let me = &mut *self;
        let polled = std::pin::Pin::new(&mut me.inner).poll_frame(cx);
        let ended = matches!(polled, std::task::Poll::Ready(None | Some(Err(_)))) || me.inner.is_end_stream();
        if ended && let Some(sent) = me.sent.take() {
            let _ = sent.send(());
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

struct IdleTimeout {
    inner: ProxyBody,
    idle: std::time::Duration,
    stalled: fn(std::time::Duration) -> BoxError,
    stall: Stall,
}

/// The clock of a wait without progress, for the timeouts that bound one (the origin's or the
/// visitor's silence in a body, a client that reads nothing): started by the first poll that
/// has to wait, stopped by the next that makes progress. Made on the first wait only: a stream
/// whose polls are ready when asked (most pages from a nearby origin, most writes) never arms a
/// timer.
#[derive(Default)]
pub(super) struct Stall(Option<std::pin::Pin<Box<tokio::time::Sleep>>>);

impl Stall {
    /// `polled`, a poll's result, with the clock: `Ok` as it came when ready, `Err(())` once
    /// the waits since the last progress have lasted `limit`, `Pending` before.
    pub(super) fn check<T>(
        &mut self,
        cx: &mut std::task::Context<'_>,
        polled: std::task::Poll<T>,
        limit: std::time::Duration,
    ) -> std::task::Poll<Result<T, ()>> {
        use std::task::Poll;
        if let Poll::Ready(v) = polled {
            self.0 = None;
            return Poll::Ready(Ok(v));
        }
        let timer = self.0.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.0 = None;
                Poll::Ready(Err(()))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl hyper::body::Body for IdleTimeout {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let me = &mut *self;
        let polled = std::pin::Pin::new(&mut me.inner).poll_frame(cx);
        me.stall
            .check(cx, polled, me.idle)
            .map(|r| r.unwrap_or_else(|()| Some(Err((me.stalled)(me.idle)))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// A content coding we can undo and redo (RFC 9110 §8.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Identity,
    Gzip,
    Deflate,
    Brotli,
    Zstd,
}

impl Coding {
    /// `None` for a coding we cannot handle (or a stack of several): the body passes untouched.
    pub fn from_header(v: Option<&str>) -> Option<Coding> {
        match v.map(|s| s.trim().to_ascii_lowercase()).as_deref() {
            None | Some("") | Some("identity") => Some(Coding::Identity),
            Some("gzip") | Some("x-gzip") => Some(Coding::Gzip),
            Some("deflate") => Some(Coding::Deflate),
            Some("br") => Some(Coding::Brotli),
            Some("zstd") => Some(Coding::Zstd),
            _ => None,
        }
    }
}

const READ_SIZE: usize = 16 * 1024;
/// How long the first bytes of a page without a declared charset wait for the rest of the
/// prescan window when the origin pauses (HTML's encoding sniffing: "500ms or 1024 bytes,
/// whichever came first"). Without it an origin that flushes a short `<head>` early and then
/// renders the rest would have its early flush held back until 1024 bytes.
pub const PRESCAN_WAIT: std::time::Duration = std::time::Duration::from_millis(500);
/// Chunks in flight to the visitor; with [`READ_SIZE`] this bounds a response's buffered output.
const CHANNEL_DEPTH: usize = 4;

type Encoder = Box<dyn AsyncWrite + Send + Unpin>;

fn encoder(coding: Coding) -> Option<(Encoder, Arc<std::sync::Mutex<Vec<u8>>>)> {
    let buf = Arc::new(std::sync::Mutex::new(Vec::new()));
    let w = SharedVec(buf.clone());
    let enc: Encoder = match coding {
        Coding::Identity => return None,
        Coding::Gzip => Box::new(GzipEncoder::new(w)),
        Coding::Deflate => Box::new(ZlibEncoder::new(w)),
        Coding::Brotli => Box::new(BrotliEncoder::new(w)),
        Coding::Zstd => Box::new(ZstdEncoder::new(w)),
    };
    Some((enc, buf))
}

/// An `AsyncWrite` into a shared `Vec`, so encoded output can be taken between writes.
struct SharedVec(Arc<std::sync::Mutex<Vec<u8>>>);

impl AsyncWrite for SharedVec {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.0.lock().expect("encoder buffer").extend_from_slice(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

fn decoder(body: ProxyBody, coding: Coding) -> Box<dyn AsyncRead + Send + Unpin> {
    let stream = body
        .into_data_stream()
        .map_err(|e| std::io::Error::other(e.to_string()));
    let reader = StreamReader::new(stream);
    match coding {
        Coding::Identity => Box::new(reader),
        Coding::Gzip => Box::new(GzipDecoder::new(BufReader::new(reader))),
        Coding::Deflate => Box::new(Inflate::Undecided(Some(BufReader::new(reader)))),
        Coding::Brotli => Box::new(BrotliDecoder::new(BufReader::new(reader))),
        Coding::Zstd => Box::new(ZstdDecoder::new(BufReader::new(reader))),
    }
}

/// `Content-Encoding: deflate` means zlib-wrapped data (RFC 9110 §8.4.1.2), but old IIS and PHP
/// servers send raw deflate under the name, and browsers read both: so does this, by the
/// first bytes (a zlib header: compression method 8, a window of at most 32 KiB, and a check
/// making the first two bytes a multiple of 31).
enum Inflate<R> {
    Undecided(Option<BufReader<R>>),
    Zlib(ZlibDecoder<BufReader<R>>),
    Raw(DeflateDecoder<BufReader<R>>),
}

fn zlib_header(b: &[u8]) -> bool {
    match b {
        [cmf, flg, ..] => cmf & 0x0f == 8 && cmf >> 4 <= 7 && (u16::from(*cmf) << 8 | u16::from(*flg)) % 31 == 0,
        [cmf] => cmf & 0x0f == 8 && cmf >> 4 <= 7,
        [] => true,
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Inflate<R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::pin::Pin;
        use std::task::Poll;
        loop {
            match &mut *self {
                Inflate::Zlib(d) => return Pin::new(d).poll_read(cx, buf),
                Inflate::Raw(d) => return Pin::new(d).poll_read(cx, buf),
                Inflate::Undecided(r) => {
                    let reader = r.as_mut().expect("decided once");
                    let zlib = match Pin::new(reader).poll_fill_buf(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Ready(Ok(first)) => zlib_header(first),
                    };
                    let reader = r.take().expect("decided once");
                    *self = if zlib {
                        Inflate::Zlib(ZlibDecoder::new(reader))
                    } else {
                        Inflate::Raw(DeflateDecoder::new(reader))
                    };
                }
            }
        }
    }
}

/// How long to wait for the origin's next bytes while the rewriter holds some for a decision,
/// before [`PageRewriter::settle_now`]: the charset prescan ([`PRESCAN_WAIT`], counted from the
/// first byte held), or a replay's bytes past its last clean point ([`replay::HOLD_WAIT`], counted
/// from the origin's last bytes: it only bridges the gaps of an origin that keeps sending).
fn hold_wait(rw: &PageRewriter) -> Option<std::time::Duration> {
    if rw.holds_prescan() {
        Some(PRESCAN_WAIT)
    } else if rw.holds_replay() {
        Some(replay::HOLD_WAIT)
    } else {
        None
    }
}

/// Returns the visitor's body: the origin's body rewritten, in the same content coding.
/// The page `origin` (in `coding`) rewritten by `rw`, sent in `out`: the same coding, or
/// identity for a visitor who does not accept the origin's.
pub fn rewrite(origin: ProxyBody, coding: Coding, out: Coding, rw: PageRewriter, stats: Arc<Stats>) -> ProxyBody {
    debug_assert!(out == coding || out == Coding::Identity, "transcoding only decodes");
    if coding == Coding::Identity {
        return Inline {
            origin,
            rw: std::sync::Mutex::new(rw),
            stats,
            hold: None,
            ended: false,
            recorded: false,
        }
        .boxed();
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(CHANNEL_DEPTH);
    tokio::spawn(async move {
        let mut rw = rw;
        let result = pump(origin, coding, out, &mut rw, &tx).await;
        record(&rw, &stats);
        if let Err(e) = result {
            tracing::warn!(error = %e, "rewritten response ended early");
            // The visitor sees a reset stream rather than a silently truncated page.
            let _ = tx.send(Err(e)).await;
        }
    });
    let stream = tokio_stream_from(rx);
    http_body_util::StreamBody::new(stream).boxed()
}

/// Adds one finished page's figures to the proxy's counters.
fn record(rw: &PageRewriter, stats: &Stats) {
    let page = rw.stats();
    if rw.is_fast() == Some(false) {
        stats.rewritten_lol_html.fetch_add(1, Ordering::Relaxed);
    }
    let from_recording = page.replayed_bytes.load(Ordering::Relaxed) as u64;
    if page.replayed.load(Ordering::Relaxed) {
        stats.rewritten_replayed.fetch_add(1, Ordering::Relaxed);
    } else if from_recording > 0 {
        stats.rewritten_resumed.fetch_add(1, Ordering::Relaxed);
        if page.realigned.load(Ordering::Relaxed) {
            stats.rewritten_realigned.fetch_add(1, Ordering::Relaxed);
        }
    }
    stats.replayed_bytes.fetch_add(from_recording, Ordering::Relaxed);
    stats
        .swapped
        .fetch_add(page.swapped.load(Ordering::Relaxed) as u64, Ordering::Relaxed);
    if page.bailed_out.load(Ordering::Relaxed) {
        stats.bail_outs.fetch_add(1, Ordering::Relaxed);
    }
}

/// An uncompressed page, rewritten as the visitor's connection pulls it: each origin chunk is
/// rewritten when hyper asks for the next one, so there is no task, channel or extra copy, and
/// a slow visitor slows the read from the origin by itself (hyper polls a body only when it can
/// write). Compressed pages go through [`pump`], where the codecs' async interfaces live.
struct Inline {
    origin: ProxyBody,
    /// Only ever reached through `&mut self` ([`std::sync::Mutex::get_mut`], no locking): the
    /// mutex is there because a response body must be `Sync` and lol_html's rewriter is not.
    rw: std::sync::Mutex<PageRewriter>,
    stats: Arc<Stats>,
    /// Runs while the origin pauses with bytes held ([`hold_wait`]): the charset prescan's
    /// window, or a replay's wait for the origin's next bytes.
    hold: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    ended: bool,
    recorded: bool,
}

impl Inline {
    fn rw(&mut self) -> &mut PageRewriter {
        self.rw.get_mut().unwrap_or_else(|e| e.into_inner())
    }

    fn record_once(&mut self) {
        if !self.recorded {
            self.recorded = true;
            let rw = self.rw.get_mut().unwrap_or_else(|e| e.into_inner());
            record(rw, &self.stats);
        }
    }
}

impl hyper::body::Body for Inline {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        use std::task::Poll;
        let this = &mut *self;
        while !this.ended {
            match std::pin::Pin::new(&mut this.origin).poll_frame(cx) {
                Poll::Pending => {
                    let Some(wait) = hold_wait(this.rw()) else {
                        return Poll::Pending;
                    };
                    let timer = this.hold.get_or_insert_with(|| Box::pin(tokio::time::sleep(wait)));
                    if timer.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    // The origin paused past the wait: what has arrived decides. With nothing
                    // to send yet, the loop polls the origin again, which registers its waker.
                    this.rw().settle_now();
                }
                Poll::Ready(Some(Ok(frame))) => {
                    // Trailers are not relayed on rewritten pages (as before: the pump read data only).
                    let Ok(data) = frame.into_data() else { continue };
                    this.rw().write(&data);
                }
                Poll::Ready(Some(Err(e))) => {
                    this.ended = true;
                    this.record_once();
                    tracing::warn!(error = %e, "rewritten response ended early");
                    // The visitor sees a reset stream rather than a silently truncated page.
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => {
                    this.ended = true;
                    this.rw().end();
                    this.record_once();
                }
            }
            if !this.rw().holds_prescan() {
                // Settled (by the wait or by the bytes): the timer is not needed any more. (A
                // replay's hold is waited for afresh after each of the origin's chunks.)
                this.hold = None;
            }
            let out = this.rw().take_output();
            if !out.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
            }
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }
}

impl Drop for Inline {
    fn drop(&mut self) {
        // The visitor went away mid-page: what was swapped so far still counts.
        self.record_once();
    }
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, BoxError>>,
) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, BoxError>> + Send + Sync + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

async fn pump(
    origin: ProxyBody,
    coding: Coding,
    out: Coding,
    rw: &mut PageRewriter,
    tx: &tokio::sync::mpsc::Sender<Result<Frame<Bytes>, BoxError>>,
) -> Result<(), BoxError> {
    let mut reader = decoder(origin, coding);
    let mut enc = encoder(out);
    let mut buf = vec![0u8; READ_SIZE];
    let mut prescan_until = None;
    loop {
        // `None`: the prescan wait ran out before the origin's next bytes.
        let now = tokio::time::Instant::now();
        let until = if rw.holds_prescan() {
            Some(*prescan_until.get_or_insert(now + PRESCAN_WAIT))
        } else {
            hold_wait(rw).map(|wait| now + wait)
        };
        let read = match until {
            // `read` is cancel-safe: when the wait ends first, no byte is lost.
            Some(until) => tokio::select! {
                n = reader.read(&mut buf) => Some(n?),
                () = tokio::time::sleep_until(until) => None,
            },
            None => Some(reader.read(&mut buf).await?),
        };
        match read {
            Some(0) => break,
            Some(n) => rw.write(&buf[..n]),
            None => rw.settle_now(),
        }
        let out = rw.take_output();
        let out = match &mut enc {
            Some((e, shared)) => {
                e.write_all(&out).await?;
                e.flush().await?;
                std::mem::take(&mut *shared.lock().expect("encoder buffer"))
            }
            None => out,
        };
        if !out.is_empty() && tx.send(Ok(Frame::data(Bytes::from(out)))).await.is_err() {
            // The visitor went away: stop reading from the origin.
            return Ok(());
        }
    }
    rw.end();
    let mut out = rw.take_output();
    if let Some((mut e, shared)) = enc {
        e.write_all(&out).await?;
        e.shutdown().await?;
        out = std::mem::take(&mut *shared.lock().expect("encoder buffer"));
    }
    if !out.is_empty() {
        let _ = tx.send(Ok(Frame::data(Bytes::from(out)))).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rewrite::html::DEFAULT_MEMORY_LIMIT;
    use crate::rewrite::{NumberMatcher, PageRules, PhoneNumber, Replacement};

    /// An early flush: the start of a `<head>`, short of the prescan window and of anything that
    /// settles it (`<meta charset>`, `</head>`, `<body>`).
    const HEAD: &str = "<!doctype html><html><head><title>Call 555-010-0000</title>\n";
    const REST: &str = "</head><body><p>Or call (555) 010-0000 today.</p></body></html>";

    fn rewritten() -> String {
        format!("{HEAD}{REST}")
            .replace("555-010-0000", "555-010-1001")
            .replace("(555) 010-0000", "(555) 010-1001")
    }

    fn rewriter() -> PageRewriter {
        let rules = PageRules::new(
            Arc::new(NumberMatcher::new(&[
                PhoneNumber::parse("+1 555-010-0000", "US").unwrap()
            ])),
            vec!["[data-telswap-ignore]".into()],
            DEFAULT_MEMORY_LIMIT,
        );
        let to = Arc::new(Replacement::new(PhoneNumber::parse("+1 555-010-1001", "US").unwrap()));
        // No charset given: the prescan decides.
        PageRewriter::new(&rules, to, None).unwrap()
    }

    type Origin = tokio::sync::mpsc::Sender<Result<Frame<Bytes>, BoxError>>;

    /// An origin body fed by hand: what is sent is what the origin has flushed so far.
    fn origin() -> (Origin, ProxyBody) {
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        (tx, http_body_util::StreamBody::new(tokio_stream_from(rx)).boxed())
    }

    async fn send(tx: &Origin, bytes: &[u8]) {
        tx.send(Ok(Frame::data(Bytes::copy_from_slice(bytes)))).await.unwrap();
    }

    /// The visitor's next frame while the origin is paused; fails (rather than hanging) when
    /// the early flush is held back.
    async fn next(body: &mut ProxyBody) -> Bytes {
        let frame = tokio::time::timeout(PRESCAN_WAIT * 4, body.frame()).await;
        let frame = frame.expect("the visitor got nothing while the origin paused");
        frame.unwrap().unwrap().into_data().unwrap()
    }

    async fn rest_of(mut body: ProxyBody) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            out.extend_from_slice(&frame.unwrap().into_data().unwrap());
        }
        out
    }

    /// The test page, uncompressed both ways, through [`rewrite`].
    fn rewrite_plain(body: ProxyBody) -> ProxyBody {
        rewrite(
            body,
            Coding::Identity,
            Coding::Identity,
            rewriter(),
            Arc::new(Stats::default()),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn an_early_flush_short_of_the_prescan_window_reaches_the_visitor_after_the_wait() {
        let (tx, body) = origin();
        let mut visitor = rewrite_plain(body);
        send(&tx, HEAD.as_bytes()).await;
        let start = tokio::time::Instant::now();
        let first = next(&mut visitor).await;
        // The origin has sent nothing more: this frame is the early flush, let go by the wait.
        assert_eq!(start.elapsed(), PRESCAN_WAIT);
        let first = String::from_utf8(first.to_vec()).unwrap();
        assert!(first.contains("Call 555-010-1001"), "{first}");
        send(&tx, REST.as_bytes()).await;
        drop(tx);
        let all = format!("{first}{}", String::from_utf8(rest_of(visitor).await).unwrap());
        assert_eq!(all, rewritten());
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_that_keep_coming_settle_the_prescan_without_the_wait() {
        let (tx, body) = origin();
        let mut visitor = rewrite_plain(body);
        send(&tx, HEAD.as_bytes()).await;
        let more = tokio::spawn(async move {
            tokio::time::sleep(PRESCAN_WAIT / 5).await;
            send(&tx, REST.as_bytes()).await;
        });
        let start = tokio::time::Instant::now();
        let first = visitor.frame().await.unwrap().unwrap().into_data().unwrap();
        // `</head>` arrived 100 ms in and settled it: no waiting out the rest of the 500 ms.
        assert_eq!(start.elapsed(), PRESCAN_WAIT / 5);
        more.await.unwrap();
        let all = [first.to_vec(), rest_of(visitor).await].concat();
        assert_eq!(String::from_utf8(all).unwrap(), rewritten());
    }

    #[tokio::test(start_paused = true)]
    async fn a_compressed_early_flush_also_passes_after_the_wait() {
        let (tx, body) = origin();
        let mut visitor = rewrite(body, Coding::Gzip, Coding::Gzip, rewriter(), Arc::new(Stats::default()));
        let mut gz = GzipEncoder::new(Vec::new());
        gz.write_all(HEAD.as_bytes()).await.unwrap();
        gz.flush().await.unwrap();
        let flushed = gz.get_ref().len();
        send(&tx, gz.get_ref()).await;
        let start = tokio::time::Instant::now();
        // The gzip header may go first; the page's first bytes come when the wait ends.
        let mut first = Vec::new();
        while start.elapsed() < PRESCAN_WAIT {
            first.extend_from_slice(&next(&mut visitor).await);
        }
        assert_eq!(start.elapsed(), PRESCAN_WAIT);
        let (mut so_far, mut buf) = (Vec::new(), [0u8; 256]);
        let mut partial = GzipDecoder::new(&first[..]);
        while let Ok(n @ 1..) = partial.read(&mut buf).await {
            so_far.extend_from_slice(&buf[..n]);
        }
        let so_far = String::from_utf8(so_far).unwrap();
        assert!(so_far.contains("Call 555-010-1001"), "{so_far:?}");
        gz.write_all(REST.as_bytes()).await.unwrap();
        gz.shutdown().await.unwrap();
        send(&tx, &gz.get_ref()[flushed..]).await;
        drop(tx);
        let all = [first.to_vec(), rest_of(visitor).await].concat();
        let mut plain = String::new();
        GzipDecoder::new(&all[..]).read_to_string(&mut plain).await.unwrap();
        assert_eq!(plain, rewritten());
    }
}
