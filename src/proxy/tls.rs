//! The HTTPS listener's certificates: `<host>.crt` + `<host>.key` (PEM) per host in `--certs`,
//! chosen by SNI, with ALPN offering h2 and http/1.1.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Certificates by host name (lower case). Swappable so `SIGHUP` can renew them in place.
#[derive(Debug)]
pub struct SniResolver {
    certs: ArcSwap<HashMap<String, Arc<CertifiedKey>>>,
}

impl SniResolver {
    pub fn new(certs: HashMap<String, Arc<CertifiedKey>>) -> SniResolver {
        SniResolver {
            certs: ArcSwap::from_pointee(certs),
        }
    }

    pub fn replace(&self, certs: HashMap<String, Arc<CertifiedKey>>) {
        self.certs.store(Arc::new(certs));
    }

    pub fn hosts(&self) -> Vec<String> {
        let mut h: Vec<String> = self.certs.load().keys().cloned().collect();
        h.sort();
        h
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let certs = self.certs.load();
        match hello.server_name() {
            Some(name) => {
                let name = name.to_ascii_lowercase();
                if let Some(c) = certs.get(&name) {
                    return Some(c.clone());
                }
                // `_.example.com.crt` serves `*.example.com` (a `*` is awkward in file names).
                // A name no certificate covers is refused (as nginx's `ssl_reject_handshake`):
                // another host's certificate would not verify anyway, and would tell a scanner
                // which sites live here.
                let parent = name.split_once('.').map(|(_, p)| p)?;
                certs.get(&format!("_.{parent}")).cloned()
            }
            None => default_cert(&certs).cloned(),
        }
    }
}

/// The certificate for a client that names no host (as nginx's `default_server`):
/// `_default.crt` if there is one, else the first host's in name order. A load balancer's
/// health check connecting by IP sends no name; an alert would fail it, where with a
/// certificate it can probe (without verifying the name, as such checks do).
fn default_cert(certs: &HashMap<String, Arc<CertifiedKey>>) -> Option<&Arc<CertifiedKey>> {
    certs
        .get(DEFAULT_CERT)
        .or_else(|| certs.iter().min_by(|a, b| a.0.cmp(b.0)).map(|(_, c)| c))
}

/// The stem of the certificate served to clients that name no host it covers.
pub const DEFAULT_CERT: &str = "_default";

/// Loads every `<host>.crt` with its `<host>.key` from `dir`.
pub fn load_certs(dir: &Path) -> Result<HashMap<String, Arc<CertifiedKey>>, String> {
    let mut out = HashMap::new();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|x| x != "crt") {
            continue;
        }
        let host = path
            .file_stem()
            .map(|s| s.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        let key_path = path.with_extension("key");
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&path)
            .and_then(|it| it.collect::<Result<_, _>>())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if chain.is_empty() {
            return Err(format!("{}: no certificate in the file", path.display()));
        }
        let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| format!("{}: {e}", key_path.display()))?;
        let signing = any_supported_type(&key).map_err(|e| format!("{}: {e}", key_path.display()))?;
        let certified = CertifiedKey::new(chain, signing);
        // A key of another certificate would fail every handshake for the host, with nothing
        // said here (as nginx's "key values mismatch" refuses it).
        match certified.keys_match() {
            Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
            Err(e) => {
                return Err(format!(
                    "{}: the key does not belong to the certificate {} ({e})",
                    key_path.display(),
                    path.display()
                ));
            }
        }
        out.insert(host, Arc::new(certified));
    }
    Ok(out)
}

/// A TLS server configuration resolving certificates through `resolver`, ALPN h2 + http/1.1.
pub fn server_config(resolver: Arc<SniResolver>) -> Result<rustls::ServerConfig, String> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}
