//! `[watch.tls]` (SPEC §20): the listeners' certificate and key, read at start (bad files
//! are a startup error), then polled every [`POLL`] through their resolved paths (a
//! Kubernetes secret's symlink swap is seen). A new pair is served once it parses and
//! the key matches the certificate; otherwise the old pair stays, the failure is logged
//! and counted (`gitstate_tls_reload_failures_total`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// How often the files are read again.
pub const POLL: Duration = Duration::from_secs(10);

/// The pair served now, and how to read it again.
#[derive(Debug)]
pub struct Certs {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<(Vec<u8>, Arc<CertifiedKey>)>,
    failures: AtomicU64,
}

impl Certs {
    /// Reads and checks the pair at `cert` and `key`: an error names the file and what is
    /// wrong with it.
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<Self>, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let (bytes, pair) = read_pair(cert, key, &provider)?;
        Ok(Arc::new(Self {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            provider,
            current: RwLock::new((bytes, pair)),
            failures: AtomicU64::new(0),
        }))
    }

    /// Reloads failed so far (for the metric).
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Reads the files again: a changed, valid pair is served from now on; a changed,
    /// broken one is refused (logged and counted), the old pair kept.
    pub fn reload(&self) {
        let bytes = match (std::fs::read(&self.cert), std::fs::read(&self.key)) {
            (Ok(mut c), Ok(k)) => {
                c.extend(k);
                c
            }
            (Err(e), _) | (_, Err(e)) => {
                self.failed(&format!("cannot read the certificate or key: {e}"));
                return;
            }
        };
        if self.current.read().unwrap_or_else(|p| p.into_inner()).0 == bytes {
            return;
        }
        match read_pair(&self.cert, &self.key, &self.provider) {
            Ok((bytes, pair)) => {
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = (bytes, pair);
                tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
            }
            Err(e) => {
                // Counted once per change, not every poll: remember what was refused.
                self.failed(&e);
                let served = self.current.read().unwrap_or_else(|p| p.into_inner()).1.clone();
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = (bytes, served);
            }
        }
    }

    fn failed(&self, why: &str) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(error = why, "TLS certificate not reloaded; serving the previous one");
    }

    /// Polls the files every [`POLL`] while the process runs.
    pub fn watch(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(POLL).await;
                let Some(me) = me.upgrade() else { return };
                let _ = tokio::task::spawn_blocking(move || me.reload()).await;
            }
        });
    }

    /// A TLS acceptor that serves whatever pair is current at each handshake.
    pub fn acceptor(self: &Arc<Self>) -> tokio_rustls::TlsAcceptor {
        let config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .expect("the default provider supports the default versions")
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        let mut config = config;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }
}

impl ResolvesServerCert for Certs {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(|p| p.into_inner()).1.clone())
    }
}

/// The files' bytes (to see a change) and the pair they make, checked.
fn read_pair(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<(Vec<u8>, Arc<CertifiedKey>), String> {
    let c = std::fs::read(cert).map_err(|e| format!("watch.tls.cert {}: {e}", cert.display()))?;
    let k = std::fs::read(key).map_err(|e| format!("watch.tls.key {}: {e}", key.display()))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&c)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("watch.tls.cert {}: not PEM certificates: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("watch.tls.cert {}: no certificate in it", cert.display()));
    }
    let private = PrivateKeyDer::from_pem_slice(&k)
        .map_err(|e| format!("watch.tls.key {}: not a PEM private key: {e}", key.display()))?;
    let signing = provider
        .key_provider
        .load_private_key(private)
        .map_err(|e| format!("watch.tls.key {}: {e}", key.display()))?;
    let pair = CertifiedKey::new(chain, signing);
    pair.keys_match().map_err(|e| {
        format!("watch.tls: the key {} does not match the certificate {}: {e}", key.display(), cert.display())
    })?;
    let mut bytes = c;
    bytes.extend(k);
    Ok((bytes, Arc::new(pair)))
}
