//! The upstream side: a pooled keep-alive client per distinct TLS trust set and timeout.
//!
//! Origins are reached over HTTP/1.1 (keep-alive, and the only version that can relay a
//! WebSocket upgrade); HTTPS origins are verified against the webpki roots plus, per site, an
//! optional extra CA for internal origins.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::ProxyBody;
use crate::rules::Site;

pub type UpstreamClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, ProxyBody>;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    ca: Option<PathBuf>,
    connect_timeout: Duration,
}

/// Clients shared across sites with the same trust and timeouts, so keep-alive pools are reused.
#[derive(Default)]
pub struct Clients {
    by_key: Mutex<HashMap<Key, UpstreamClient>>,
}

impl Clients {
    pub fn for_site(&self, site: &Site) -> Result<UpstreamClient, String> {
        let key = Key {
            ca: site.upstream_ca.clone(),
            connect_timeout: site.connect_timeout,
        };
        let mut map = self.by_key.lock().expect("clients lock");
        if let Some(c) = map.get(&key) {
            return Ok(c.clone());
        }
        let client = build(&key)?;
        map.insert(key, client.clone());
        Ok(client)
    }

    /// Forgets clients (after a reload, so a changed CA file is read again).
    pub fn clear(&self) {
        self.by_key.lock().expect("clients lock").clear();
    }
}

/// TLS for talking to origins: the webpki roots, plus `extra_ca` (PEM) when given.
pub fn tls_client_config(extra_ca: Option<&std::path::Path>) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(ca) = extra_ca {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
            .map_err(|e| format!("upstream_ca {}: {e}", ca.display()))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("upstream_ca {}: {e}", ca.display()))?;
        for c in certs {
            roots.add(c).map_err(|e| format!("upstream_ca {}: {e}", ca.display()))?;
        }
    }
    Ok(
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Dials `http://` and `https://` URLs over HTTP/1.1 (rustls with `tls`), with a connect
/// timeout and `TCP_NODELAY`: the origins' clients and the webhook outbox both connect this way.
pub fn connector(tls: rustls::ClientConfig, connect_timeout: Duration) -> hyper_rustls::HttpsConnector<HttpConnector> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http)
}

fn build(key: &Key) -> Result<UpstreamClient, String> {
    let connector = connector(tls_client_config(key.ca.as_deref())?, key.connect_timeout);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .http1_max_headers(MAX_ORIGIN_HEADERS)
        .build(connector))
}

/// The most header fields an origin's response may carry. hyper's default, 100, turned a page
/// with many `Set-Cookie`s and `Link` preloads into a 502; nginx counts none (it bounds their
/// bytes). Above 100 hyper parses into a heap buffer of this size: 256 keeps it at a few KB.
const MAX_ORIGIN_HEADERS: usize = 256;

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty};
    use hyper::body::Body;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::proxy::{BoxError, ProxyBody};

    /// The length an origin's response head declares, as the proxy sees it: through this client
    /// and the body's boxing, from its size hint (`Proxy::response_filter` decides on it whether
    /// a page may be recorded). `Err` when hyper refuses the head.
    async fn declared(head: &'static str) -> Result<Option<u64>, hyper_util::client::legacy::Error> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(head.as_bytes()).await;
        });
        let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
            .build(connector(tls_client_config(None).unwrap(), Duration::from_secs(5)));
        let resp = client.get(format!("http://{addr}/").parse().unwrap()).await?;
        let body: ProxyBody = resp.into_body().map_err(BoxError::from).boxed();
        Ok(body.size_hint().exact())
    }

    #[tokio::test]
    async fn a_body_carries_the_origins_validated_content_length() {
        let ok = |cl: &str| format!("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n{cl}\r\n\r\n");
        let cases: [(String, Option<u64>); 4] = [
            (ok("Content-Length: 1048577"), Some(1_048_577)),
            (ok("Content-Length: 42, 42"), Some(42)),
            (ok("Content-Length: 42\r\nContent-Length: 42"), Some(42)),
            (ok("Transfer-Encoding: chunked\r\nContent-Length: 5000000"), None),
        ];
        for (head, want) in cases {
            let head: &'static str = head.leak();
            assert_eq!(declared(head).await.unwrap(), want, "{head:?}");
        }
        let refused = [
            "",
            "-1",
            "+5",
            "1e6",
            "12 34",
            "0x10",
            "99999999999999999999999",
            "42, 43",
        ];
        for bad in refused
            .map(|v| format!("Content-Length: {v}"))
            .into_iter()
            .chain(["Content-Length: 42\r\nContent-Length: 7".to_string()])
        {
            assert!(declared(ok(&bad).leak()).await.is_err(), "{bad:?} is refused");
        }
    }
}
