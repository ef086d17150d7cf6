//! TLS for test servers: a throw-away CA (rcgen) that signs a certificate for 127.0.0.1,
//! and a TLS listener serving a [`crate::TestServer`]'s routes.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::TestServer;

/// A CA and the PEM file holding its certificate.
pub struct TestCa {
    pub pem_file: PathBuf,
    _dir: tempfile::TempDir,
    acceptor: TlsAcceptor,
}

impl TestCa {
    /// Makes a CA and a server certificate for `127.0.0.1` and `localhost`.
    pub fn new() -> Self {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "gitstate test CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);

        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();

        Self::serving(&ca_cert.pem(), &cert, &key)
    }

    /// A server whose certificate for `names` is its own issuer, and a PEM file holding
    /// that certificate: what `openssl req -x509` makes (`as_ca`: with `CA:TRUE`, as
    /// openssl's default configuration sets), and what `curl --cacert` accepts.
    pub fn self_signed(names: &[&str], as_ca: bool) -> Self {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
        if as_ca {
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        }
        params.distinguished_name.push(rcgen::DnType::CommonName, names.first().copied().unwrap_or("x"));
        let cert = params.self_signed(&key).unwrap();
        Self::serving(&cert.pem(), &cert, &key)
    }

    fn serving(pem: &str, cert: &rcgen::Certificate, key: &rcgen::KeyPair) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pem_file = dir.path().join("ca.pem");
        std::fs::write(&pem_file, pem).unwrap();
        let _ = tokio_rustls::rustls::crypto::aws_lc_rs::default_provider().install_default();
        let config = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(cert.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap();
        Self { pem_file, _dir: dir, acceptor: TlsAcceptor::from(Arc::new(config)) }
    }

    /// Serves `routes`' behaviour over TLS on a new port; returns the port.
    pub async fn serve(&self, routes: TestServer) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let acceptor = self.acceptor.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (acceptor, routes) = (acceptor.clone(), routes.clone());
                tokio::spawn(async move {
                    let _open = routes.connected();
                    if let Ok(tls) = acceptor.accept(stream).await {
                        routes.serve(tls).await;
                    }
                });
            }
        });
        port
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}
