//! The `watch` HTTP endpoint: `GET /metrics` (OpenMetrics), `/healthz`, `/readyz` (after
//! the first full pass) and `/status` (the `status -o json` document). Minimal HTTP/1.1:
//! GET only, bounded request heads and time, one response per connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::metrics::Metrics;
use crate::state::StateStore;

/// What the endpoint serves from.
pub struct Endpoint {
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// The state.
    pub store: Arc<StateStore>,
    /// Set after the first full pass.
    pub ready: Arc<AtomicBool>,
}

/// Binds `addr` (errors here are startup errors) and serves in the background.
pub async fn start(addr: SocketAddr, endpoint: Endpoint) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let endpoint = Arc::new(endpoint);
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { continue };
            let endpoint = endpoint.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(10), async {
                    let mut buf = vec![0u8; 8192];
                    let mut seen = 0;
                    while seen < buf.len() {
                        let n = stream.read(&mut buf[seen..]).await.ok()?;
                        if n == 0 {
                            return None;
                        }
                        seen += n;
                        if buf[..seen].windows(4).any(|w| w == b"\r\n\r\n") {
                            break;
                        }
                    }
                    let head = String::from_utf8_lossy(&buf[..seen]);
                    let mut parts = head.split_whitespace();
                    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                    let (status, ctype, body) = endpoint.respond(method, path);
                    let resp = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    stream.write_all(resp.as_bytes()).await.ok()?;
                    stream.write_all(body.as_bytes()).await.ok()?;
                    stream.shutdown().await.ok()
                })
                .await;
            });
        }
    });
    Ok(bound)
}

impl Endpoint {
    fn respond(&self, method: &str, path: &str) -> (&'static str, &'static str, String) {
        const TEXT: &str = "text/plain; charset=utf-8";
        if method != "GET" {
            return ("405 Method Not Allowed", TEXT, "GET only\n".into());
        }
        match path.split('?').next().unwrap_or("") {
            "/metrics" => (
                "200 OK",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                self.metrics.encode(),
            ),
            "/healthz" => ("200 OK", TEXT, "ok\n".into()),
            "/readyz" if self.ready.load(Ordering::SeqCst) => ("200 OK", TEXT, "ready\n".into()),
            "/readyz" => ("503 Service Unavailable", TEXT, "waiting for the first full pass\n".into()),
            "/status" => {
                let doc = crate::commands::status::report(&self.store.environments());
                ("200 OK", "application/json", serde_json::to_string_pretty(&doc).unwrap_or_default())
            }
            _ => ("404 Not Found", TEXT, "not found: try /metrics, /healthz, /readyz, /status\n".into()),
        }
    }
}
