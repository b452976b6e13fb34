//! The HTTPS listener: certificates chosen by SNI, HTTP/2 and HTTP/1.1 by ALPN, each host routed
//! to its own site and origin and rewritten like plain HTTP.
//!
//! A throwaway CA (rcgen) signs leaf certificates for `a.test` and `b.test`, written as
//! `<host>.crt` + `<host>.key` into a temporary `--certs` directory; the test clients trust only
//! that CA (rustls with ring).

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use common::*;

const TRACKING_A: &str = "+1 555-010-2001";
const TRACKING_B: &str = "+1 555-010-2002";

fn page(site: &str) -> String {
    format!("<html><body><h1>Site {site}</h1><p>Call (555) 010-0000</p></body></html>")
}

fn rewritten(site: &str, last4: &str) -> String {
    format!("<html><body><h1>Site {site}</h1><p>Call (555) 010-{last4}</p></body></html>")
}

/// A temporary `--certs` directory with a leaf certificate per host, and the CA that signed them.
fn make_certs(hosts: &[&str]) -> (tempfile::TempDir, CertificateDer<'static>) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "telswap test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key")).expect("CA cert");
    let dir = tempfile::tempdir().expect("temp dir");
    for host in hosts {
        let mut params = CertificateParams::new(vec![host.to_string()]).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, *host);
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &ca).expect("leaf cert");
        std::fs::write(dir.path().join(format!("{host}.crt")), cert.pem()).expect("write crt");
        std::fs::write(dir.path().join(format!("{host}.key")), key.serialize_pem()).expect("write key");
    }
    (dir, ca.der().clone())
}

fn client_config(ca: &CertificateDer<'static>, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).expect("trust the test CA");
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

async fn connect(addr: SocketAddr, sni: &str, cfg: Arc<rustls::ClientConfig>) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_string()).expect("server name");
    TlsConnector::from(cfg).connect(name, tcp).await
}

/// Two sites behind one HTTPS listener, each with its own origin and tracking number.
struct TwoSites {
    https: SocketAddr,
    origin_a: Origin,
    origin_b: Origin,
    ca: CertificateDer<'static>,
    running: telswap::proxy::server::Running,
    certs_dir: tempfile::TempDir,
}

async fn two_sites() -> TwoSites {
    let (certs, ca) = make_certs(&["a.test", "b.test"]);
    let origin_a = Origin::start(vec![("/", Route::html(&page("A")))]).await;
    let origin_b = Origin::start(vec![("/", Route::html(&page("B")))]).await;
    let a = site_rules(&["a.test"], &origin_a.url(), "", TRACKING_A);
    let b = site_rules(&["b.test"], &origin_b.url(), "", TRACKING_B);
    let running = start_proxy_with(&[("a", a), ("b", b)], Some(certs.path())).await;
    TwoSites {
        https: running.https.expect("the HTTPS listener is up"),
        origin_a,
        origin_b,
        ca,
        running,
        certs_dir: certs,
    }
}

/// One tracked GET over a fresh HTTP/2 connection with SNI `sni` and `:authority` `authority`.
async fn h2_get(env: &TwoSites, sni: &str, authority: &str) -> (Version, StatusCode, String) {
    tokio::time::timeout(DEADLINE, async {
        let tls = connect(env.https, sni, client_config(&env.ca, &[b"h2", b"http/1.1"]))
            .await
            .expect("TLS handshake");
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(b"h2".as_slice()), "ALPN chose h2");
        let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .expect("HTTP/2 handshake");
        tokio::spawn(conn);
        let req = Request::get(format!("https://{authority}/?{TRACKED_QUERY}"))
            .version(Version::HTTP_2)
            .body(Empty::<Bytes>::new())
            .expect("request");
        let resp = send.send_request(req).await.expect("HTTP/2 response");
        let (version, status) = (resp.version(), resp.status());
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        (version, status, String::from_utf8(body.to_vec()).expect("UTF-8"))
    })
    .await
    .expect("answered within the deadline")
}

#[tokio::test]
async fn h2_routes_each_sni_host_to_its_own_site_and_rewrites() {
    let env = two_sites().await;

    let (version, status, body) = h2_get(&env, "a.test", "a.test").await;
    assert_eq!(version, Version::HTTP_2);
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, rewritten("A", "2001"));
    let seen = env.origin_a.only_request();
    assert_eq!(seen.header("host"), Some("a.test"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
    assert_eq!(seen.header("x-forwarded-host"), Some("a.test"));
    assert!(
        seen.header("via").is_some_and(|v| v.contains("2 telswap")),
        "{:?}",
        seen.header("via")
    );
    assert_eq!(env.origin_b.connections(), 0, "a.test's request went to b's origin");

    let (version, status, body) = h2_get(&env, "b.test", "b.test").await;
    assert_eq!(version, Version::HTTP_2);
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, rewritten("B", "2002"));
    assert_eq!(env.origin_b.only_request().header("host"), Some("b.test"));
    assert_eq!(env.origin_a.requests().len(), 1, "b.test's request went to a's origin");
}

#[tokio::test]
async fn h2_serves_concurrent_streams_on_one_connection() {
    let env = two_sites().await;
    let send = h2_connect(&env, "a.test").await;
    let mut streams = Vec::new();
    for i in 0..8 {
        let mut send = send.clone();
        streams.push(tokio::spawn(async move {
            let req = Request::get(format!("https://a.test/?{TRACKED_QUERY}&n={i}"))
                .version(Version::HTTP_2)
                .body(Empty::<Bytes>::new())
                .expect("request");
            let resp = send.send_request(req).await.expect("response");
            assert_eq!(resp.version(), Version::HTTP_2);
            resp.into_body().collect().await.expect("body").to_bytes()
        }));
    }
    for s in streams {
        let body = within_deadline(s).await.expect("stream task");
        assert_eq!(body, rewritten("A", "2001").as_bytes());
    }
    assert_eq!(env.origin_a.requests().len(), 8);
}

/// `f`'s output, or a panic if it takes longer than [`DEADLINE`].
async fn within_deadline<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(DEADLINE, f).await.expect("deadline")
}

/// An HTTP/2 connection to the HTTPS listener with SNI `sni`.
async fn h2_connect(env: &TwoSites, sni: &str) -> hyper::client::conn::http2::SendRequest<Empty<Bytes>> {
    let tls = connect(env.https, sni, client_config(&env.ca, &[b"h2"]))
        .await
        .expect("TLS handshake");
    let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
        .await
        .expect("HTTP/2 handshake");
    tokio::spawn(conn);
    send
}

#[tokio::test]
async fn h2_cookie_crumbs_reach_an_http1_origin_as_one_header() {
    // Browsers send each cookie as its own `cookie` field over HTTP/2; an HTTP/1.1 origin must get
    // them joined with "; " (RFC 9113 §8.2.3), or many frameworks see only the first cookie.
    let env = two_sites().await;
    let mut send = h2_connect(&env, "a.test").await;
    let req = Request::get("https://a.test/")
        .version(Version::HTTP_2)
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .header("cookie", "c=3")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let resp = within_deadline(send.send_request(req)).await.expect("response");
    assert_eq!(resp.status(), StatusCode::OK);
    let seen = env.origin_a.only_request();
    let cookies: Vec<&str> = seen
        .headers
        .get_all("cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(cookies, ["a=1; b=2; c=3"]);
}

#[tokio::test]
async fn h2_request_for_a_host_not_served_is_421() {
    let env = two_sites().await;
    let mut send = h2_connect(&env, "a.test").await;
    let req = Request::get("https://c.test/")
        .version(Version::HTTP_2)
        .body(Empty::<Bytes>::new())
        .expect("request");
    let resp = within_deadline(send.send_request(req)).await.expect("response");
    assert_eq!(resp.status(), StatusCode::MISDIRECTED_REQUEST);
    assert_eq!(env.origin_a.connections() + env.origin_b.connections(), 0);
}

/// An HTTP/1.1 connection over TLS to `b.test` offering `alpn`, and the protocol ALPN chose.
async fn h1_session(env: &TwoSites, alpn: &[&[u8]]) -> (SendRequest<Empty<Bytes>>, Option<Vec<u8>>) {
    let tls = connect(env.https, "b.test", client_config(&env.ca, alpn))
        .await
        .expect("TLS handshake");
    let negotiated = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("HTTP/1.1 handshake");
    tokio::spawn(conn);
    (send, negotiated)
}

/// One tracked GET of `b.test/` on `send`: the response's version, status and whole body.
async fn h1_get_b(send: &mut SendRequest<Empty<Bytes>>) -> (Version, StatusCode, Bytes) {
    let req = Request::get(format!("/?{TRACKED_QUERY}"))
        .header("host", "b.test")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let resp = within_deadline(send.send_request(req)).await.expect("response");
    let (version, status) = (resp.version(), resp.status());
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (version, status, body)
}

#[tokio::test]
async fn http1_over_tls_is_chosen_by_alpn_and_works() {
    let env = two_sites().await;
    for alpn in [&[b"http/1.1".as_slice()][..], &[]] {
        let (mut send, negotiated) = h1_session(&env, alpn).await;
        assert_ne!(negotiated.as_deref(), Some(b"h2".as_slice()), "h2 was not offered");
        let (version, status, body) = h1_get_b(&mut send).await;
        assert_eq!(version, Version::HTTP_11);
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, rewritten("B", "2002").as_bytes());
    }
    let seen = env.origin_b.requests();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|s| s.header("x-forwarded-proto") == Some("https")));
    assert_eq!(env.origin_a.connections(), 0);
}

/// An idle HTTP/1.1 keep-alive connection over TLS sheds hyper's buffers as a plain one does
/// (parked: `connections_idle`), and its next request on the same TLS session is served.
#[tokio::test]
async fn an_idle_tls_keep_alive_connection_is_parked_and_serves_its_next_request() {
    use std::sync::atomic::Ordering;
    let env = two_sites().await;
    let stats = env.running.proxy.stats.clone();
    let (mut send, _) = h1_session(&env, &[b"http/1.1"]).await;
    for round in 0..3 {
        let (_, status, body) = h1_get_b(&mut send).await;
        assert_eq!(status, StatusCode::OK, "round {round}");
        assert_eq!(body, rewritten("B", "2002").as_bytes(), "round {round}");
        until_idle(&env.running, 1).await;
        assert_eq!(
            stats.connections_open.load(Ordering::Relaxed),
            1,
            "round {round}: one connection"
        );
    }
    assert_eq!(env.origin_b.requests().len(), 3);
}

/// A WebSocket switch over TLS tunnels through the parked-connection loop's own upgrade.
#[tokio::test]
async fn a_websocket_switch_over_tls_tunnels() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (certs, ca) = make_certs(&["b.test"]);
    let origin = Origin::start(vec![("/", Route::html(&page("B"))), ("/ws", Route::WebSocketEcho)]).await;
    let running = start_proxy_with(
        &[("b", site_rules(&["b.test"], &origin.url(), "", TRACKING_B))],
        Some(certs.path()),
    )
    .await;
    let mut tls = connect(
        running.https.expect("HTTPS"),
        "b.test",
        client_config(&ca, &[b"http/1.1"]),
    )
    .await
    .expect("TLS handshake");
    tokio::time::timeout(DEADLINE, async {
        // A page first, so the switch comes on a connection that has been parked.
        tls.write_all(b"GET / HTTP/1.1\r\nHost: b.test\r\n\r\n").await.unwrap();
        let mut got = Vec::new();
        // The whole response: the page, and with chunked coding its last chunk too.
        let done = |got: &[u8]| {
            let text = String::from_utf8_lossy(got).to_ascii_lowercase();
            text.contains("</html>")
                && (!text.contains("transfer-encoding: chunked") || text.ends_with("\r\n0\r\n\r\n"))
        };
        while !done(&got) {
            let mut chunk = [0u8; 4096];
            let n = tls.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed before the page ended");
            got.extend_from_slice(&chunk[..n]);
        }
        tls.write_all(
            b"GET /ws HTTP/1.1\r\nHost: b.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .await
        .unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut b = [0u8; 1];
            assert_eq!(tls.read(&mut b).await.unwrap(), 1, "closed before the switch");
            head.push(b[0]);
        }
        assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
        for msg in [b"\x81\x05hello".as_slice(), &[b'y'; 30_000]] {
            tls.write_all(msg).await.unwrap();
            let mut back = vec![0u8; msg.len()];
            tls.read_exact(&mut back).await.unwrap();
            assert!(back == msg, "the tunnel changed the bytes");
        }
    })
    .await
    .expect("switched and echoed within the deadline");
}

/// A client that accepts any certificate for any name: it fails a handshake only when the server
/// refuses one, so a server falling back to some other host's certificate would be caught.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn accept_any_config() -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(cfg)
}

#[tokio::test]
async fn sni_without_a_certificate_fails_the_handshake() {
    let env = two_sites().await;
    for (who, cfg) in [
        (
            "a client trusting the test CA",
            client_config(&env.ca, &[b"h2", b"http/1.1"]),
        ),
        ("a client accepting any certificate", accept_any_config()),
    ] {
        for sni in ["c.test", "x.a.test"] {
            let result = tokio::time::timeout(DEADLINE, connect(env.https, sni, cfg.clone()))
                .await
                .expect("the handshake ended within the deadline");
            assert!(
                result.is_err(),
                "{who}: the server set up TLS for {sni}, which has no certificate"
            );
        }
    }
    // The same permissive client does get through for a host with a certificate, so the refusal
    // above is the server's; and the listener stays healthy.
    assert!(connect(env.https, "b.test", accept_any_config()).await.is_ok());
    let (_, status, _) = h2_get(&env, "a.test", "a.test").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(env.origin_b.connections(), 0);
}

/// A client that sends no server name (a load balancer's health check by IP) gets the first
/// host's certificate in name order, not an alert.
#[tokio::test]
async fn a_client_without_sni_gets_the_default_certificate() {
    let env = two_sites().await;
    let no_sni = |alpn: &[&[u8]]| {
        let mut cfg = Arc::unwrap_or_clone(client_config(&env.ca, alpn));
        cfg.enable_sni = false;
        Arc::new(cfg)
    };
    // The name here is only what the client verifies the certificate against.
    let tls = connect(env.https, "a.test", no_sni(&[b"http/1.1"])).await;
    assert!(tls.is_ok(), "{:?}", tls.err());
    assert!(connect(env.https, "b.test", no_sni(&[b"http/1.1"])).await.is_err());
}

/// A key that is not the certificate's would fail every handshake for its host: loading refuses
/// it, naming the files, so a reload keeps the old pair.
#[test]
fn a_key_of_another_certificate_is_refused() {
    let (certs, _) = make_certs(&["a.test", "b.test"]);
    assert!(telswap::proxy::tls::load_certs(certs.path()).is_ok());
    std::fs::copy(certs.path().join("b.test.key"), certs.path().join("a.test.key")).unwrap();
    let err = telswap::proxy::tls::load_certs(certs.path()).unwrap_err();
    assert!(
        err.contains("a.test.key: the key does not belong to the certificate"),
        "{err}"
    );
}

/// A reload renews certificates even when the rules it also reads are broken: a certbot hook's
/// SIGHUP must not leave an expiring certificate in place over an unrelated rules mistake.
#[tokio::test]
async fn a_reload_renews_certificates_whatever_the_rules_say() {
    let env = two_sites().await;
    let (more, _) = make_certs(&["c.test"]);
    for f in ["c.test.crt", "c.test.key"] {
        std::fs::copy(more.path().join(f), env.certs_dir.path().join(f)).unwrap();
    }
    let rules = tempfile::tempdir().unwrap();
    std::fs::write(rules.path().join("a.toml"), "hosts = [\"a.test\"]\nbogus_key = 1\n").unwrap();
    let cfg = telswap::proxy::server::ServeConfig {
        rules: rules.path().to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        tls_listen: None,
        certs: env.certs_dir.path().to_path_buf(),
        trusted_proxies: Default::default(),
    };
    assert!(
        !telswap::proxy::server::reload(&cfg, &env.running),
        "the rules are refused"
    );
    let hosts = env.running.resolver.as_ref().unwrap().hosts();
    assert_eq!(hosts, ["a.test", "b.test", "c.test"]);
    // And the old rules still serve.
    let (_, status, _) = h2_get(&env, "a.test", "a.test").await;
    assert_eq!(status, StatusCode::OK);
}

/// An HTTPS origin with a certificate from a private CA: trusted only through `upstream_ca`.
async fn https_origin(certs: &std::path::Path) -> SocketAddr {
    let resolver = Arc::new(telswap::proxy::tls::SniResolver::new(
        telswap::proxy::tls::load_certs(certs).unwrap(),
    ));
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(telswap::proxy::tls::server_config(resolver).unwrap()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(
                        hyper::Response::builder()
                            .header("content-type", "text/html")
                            .body(http_body_util::Full::new(Bytes::from(page("internal"))))
                            .unwrap(),
                    )
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn an_https_origin_signed_by_a_private_ca_is_trusted_through_upstream_ca_only() {
    use base64::Engine;
    let (certs, ca) = make_certs(&["localhost"]);
    let origin = https_origin(certs.path()).await;
    let ca_pem = certs.path().join("internal-ca.pem");
    let b64 = base64::engine::general_purpose::STANDARD.encode(ca.as_ref());
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    std::fs::write(
        &ca_pem,
        format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            lines.join("\n")
        ),
    )
    .unwrap();
    let upstream = format!("https://localhost:{}", origin.port());

    let trusted = start_proxy(default_site(
        &upstream,
        &format!("upstream_ca = {:?}", ca_pem.display().to_string()),
    ))
    .await;
    let resp = get(trusted.http, "site.test", &tracked("/")).await;
    assert_eq!(resp.status, 200);
    assert_eq!(String::from_utf8_lossy(&resp.body), rewritten("internal", "2001"));

    let untrusted = start_proxy(default_site(&upstream, "")).await;
    let resp = get(untrusted.http, "site.test", &tracked("/")).await;
    assert_eq!(resp.status, 502, "an origin certificate nobody vouches for is refused");
}
