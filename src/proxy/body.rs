//! The response body filter: decode the origin's content coding, rewrite, re-encode, stream.
//!
//! A spawned task pulls the origin body, pushes it through the [`PageRewriter`] and sends the
//! output down a small bounded channel that is the visitor's response body. The channel bound is
//! what keeps memory flat for any page size: a slow visitor slows the read from the origin.
//! Every read is flushed through the encoder so the visitor's first bytes leave as soon as the
//! origin's arrive.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_compression::tokio::bufread::{BrotliDecoder, GzipDecoder, ZlibDecoder, ZstdDecoder};
use async_compression::tokio::write::{BrotliEncoder, GzipEncoder, ZlibEncoder, ZstdEncoder};
use bytes::Bytes;
use futures_util::TryStreamExt;
use http_body_util::BodyExt;
use hyper::body::Frame;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio_util::io::StreamReader;

use super::{BoxError, ProxyBody, Stats};
use crate::rewrite::PageRewriter;

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
        Coding::Deflate => Box::new(ZlibDecoder::new(BufReader::new(reader))),
        Coding::Brotli => Box::new(BrotliDecoder::new(BufReader::new(reader))),
        Coding::Zstd => Box::new(ZstdDecoder::new(BufReader::new(reader))),
    }
}

/// Returns the visitor's body: the origin's body rewritten, in the same content coding.
pub fn rewrite(origin: ProxyBody, coding: Coding, rw: PageRewriter, stats: Arc<Stats>) -> ProxyBody {
    if coding == Coding::Identity {
        return Inline {
            origin,
            rw: std::sync::Mutex::new(rw),
            stats,
            ended: false,
            recorded: false,
        }
        .boxed();
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(CHANNEL_DEPTH);
    tokio::spawn(async move {
        let mut rw = rw;
        let result = pump(origin, coding, &mut rw, &tx).await;
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
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => {
                    // Trailers are not relayed on rewritten pages (as before: the pump read data only).
                    let Ok(data) = frame.into_data() else { continue };
                    let rw = this.rw();
                    rw.write(&data);
                    let out = rw.take_output();
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                    }
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
                    let out = this.rw().take_output();
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                    }
                }
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
    rw: &mut PageRewriter,
    tx: &tokio::sync::mpsc::Sender<Result<Frame<Bytes>, BoxError>>,
) -> Result<(), BoxError> {
    let mut reader = decoder(origin, coding);
    let mut enc = encoder(coding);
    let mut buf = vec![0u8; READ_SIZE];
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        rw.write(&buf[..n]);
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
