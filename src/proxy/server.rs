//! Listeners: accept loops for plain HTTP and HTTPS (the TLS handshake, then the same
//! connection loop, [`super::conn`]: HTTP/1.1 with parked keep-alive connections, HTTP/2),
//! graceful shutdown, and `SIGHUP` reload of rules and certificates.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::conn::{self, Builders};
use super::tls::SniResolver;
use super::{ConnInfo, Proxy};

/// Request headers larger than this get `431 Request Header Fields Too Large` (hyper answers
/// it for HTTP/1.1 when its read buffer fills before the headers end). 64 KiB is above what
/// browsers send (Chrome caps at 256 KiB of cookies but real sites stay far below) and what
/// nginx accepts by default (4 × 8 KiB).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// The HTTP/1 settings. The header read timeout bounds a slow client's request head
/// (slowloris).
macro_rules! http1_settings {
    ($b:expr) => {
        $b.timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(30))
            .max_buf_size(MAX_HEADER_BYTES)
    };
}

/// The HTTP/2 settings, likewise.
macro_rules! http2_settings {
    ($b:expr) => {
        $b.timer(TokioTimer::new())
            .max_header_list_size(MAX_HEADER_BYTES as u32)
            .max_concurrent_streams(256)
    };
}

/// For every connection ([`conn::serve_client`]).
fn builders() -> Builders {
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1_settings!(http1);
    let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    http2_settings!(http2);
    Builders { http1, http2 }
}

/// Serves plain HTTP on `listener` until `shutdown` turns true, then drains open connections.
pub async fn serve_http(listener: TcpListener, proxy: Arc<Proxy>, shutdown: watch::Receiver<bool>) {
    serve(listener, None, proxy, shutdown).await
}

/// Serves HTTPS on `listener` with `acceptor` (certificates by SNI, ALPN h2 + http/1.1).
pub async fn serve_https(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    proxy: Arc<Proxy>,
    shutdown: watch::Receiver<bool>,
) {
    serve(listener, Some(acceptor), proxy, shutdown).await
}

async fn serve(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    proxy: Arc<Proxy>,
    mut shutdown: watch::Receiver<bool>,
) {
    let builders = Arc::new(builders());
    let stop = CancellationToken::new();
    let tasks = TaskTracker::new();
    loop {
        let (stream, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut shutdown) => break,
        };
        let _ = stream.set_nodelay(true);
        let (proxy, stop) = (proxy.clone(), stop.clone());
        let info = ConnInfo::new(remote, acceptor.is_some());
        // Separate tasks for plain and TLS connections: a task's allocation is the size of its
        // whole future, so a plain connection does not carry room for a TLS handshake's state.
        let builders = builders.clone();
        match acceptor.clone() {
            Some(acceptor) => tasks.spawn(async move {
                let tls = tokio::select! {
                    // Boxed: the handshake's state is freed when it ends, instead of keeping a
                    // slot in this task for the connection's whole life.
                    r = Box::pin(acceptor.accept(stream)) => match r {
                        Ok(tls) => tls,
                        Err(e) => return tracing::debug!(%remote, error = %e, "TLS handshake failed"),
                    },
                    _ = stop.cancelled() => return,
                };
                // An h2 client (ALPN `h2`) starts with the HTTP/2 preface, which the loop detects.
                conn::serve_client(Either::Right(Box::new(tls)), proxy, info, builders, stop).await
            }),
            None => tasks.spawn(conn::serve_client(Either::Left(stream), proxy, info, builders, stop)),
        };
    }
    drop(listener);
    // In-flight requests finish; idle keep-alive connections are closed.
    stop.cancel();
    tasks.close();
    tokio::select! {
        _ = tasks.wait() => {}
        _ = tokio::time::sleep(Duration::from_secs(30)) => tracing::warn!("connections still open after 30 s; closing"),
    }
}

/// Resolves once shutdown is requested (or its sender is gone).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await.is_ok();
}

/// Everything `telswap serve` needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub rules: PathBuf,
    pub listen: SocketAddr,
    pub tls_listen: Option<SocketAddr>,
    pub certs: PathBuf,
    /// Balancers in front whose `X-Forwarded-For` and `-Proto` are believed (`--trusted-proxies`).
    pub trusted_proxies: super::headers::TrustedProxies,
}

/// A running proxy: its bound addresses, and a handle to stop it.
pub struct Running {
    pub http: SocketAddr,
    pub https: Option<SocketAddr>,
    pub proxy: Arc<Proxy>,
    pub resolver: Option<Arc<SniResolver>>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops accepting, lets in-flight requests finish, and waits for the listeners to close.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }

    /// Waits until the listeners stop (after [`Running::trigger_stop`] or a fatal error).
    pub async fn wait(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }

    pub fn trigger_stop(&self) {
        let _ = self.shutdown.send(true);
    }
}

/// Binds the listeners and starts serving `proxy`.
pub async fn start(cfg: &ServeConfig, proxy: Arc<Proxy>) -> Result<Running, String> {
    proxy.set_trusted_proxies(cfg.trusted_proxies.clone());
    let (tx, rx) = watch::channel(false);
    let mut tasks = Vec::new();
    let plain = TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cfg.listen))?;
    let http = plain.local_addr().map_err(|e| e.to_string())?;
    tasks.push(tokio::spawn(serve_http(plain, proxy.clone(), rx.clone())));
    let mut https = None;
    let mut resolver = None;
    if let Some(addr) = cfg.tls_listen {
        let certs = super::tls::load_certs(&cfg.certs)?;
        if certs.is_empty() {
            return Err(format!(
                "{}: no <host>.crt + <host>.key pairs for the TLS listener",
                cfg.certs.display()
            ));
        }
        let r = Arc::new(SniResolver::new(certs));
        let acceptor = TlsAcceptor::from(Arc::new(super::tls::server_config(r.clone())?));
        let l = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        https = Some(l.local_addr().map_err(|e| e.to_string())?);
        tasks.push(tokio::spawn(serve_https(l, acceptor, proxy.clone(), rx.clone())));
        resolver = Some(r);
    }
    Ok(Running {
        http,
        https,
        proxy,
        resolver,
        shutdown: tx,
        tasks,
    })
}

/// Re-reads rules (and certificates): a valid new set replaces the old one atomically; an
/// invalid one is logged with every problem and the old set stays.
pub fn reload(cfg: &ServeConfig, running: &Running) -> bool {
    // Certificates first, and whatever the rules say: a renewal (a certbot hook's SIGHUP) must
    // not wait for an unrelated rules mistake to be fixed while the old certificate expires.
    if let Some(r) = &running.resolver {
        match super::tls::load_certs(&cfg.certs) {
            Ok(c) if !c.is_empty() => {
                let n = c.len();
                r.replace(c);
                tracing::info!(certificates = n, "certificates reloaded");
            }
            Ok(_) => tracing::error!("no certificates found on reload; keeping the old ones"),
            Err(e) => tracing::error!(error = %e, "certificates not reloaded; keeping the old ones"),
        }
    }
    match crate::rules::load_dir(&cfg.rules) {
        Ok(set) => {
            let n = set.sites.len();
            running.proxy.replace_rules(set);
            tracing::info!(sites = n, "rules reloaded");
            true
        }
        Err(problems) => {
            for p in &problems.0 {
                tracing::error!("{p}");
            }
            tracing::error!("reload refused: the previous rules stay in force");
            false
        }
    }
}
