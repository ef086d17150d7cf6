//! A minimal HTTP/1.1 responder for the little gitstate serves itself (the `watch`
//! endpoint, the demo's target): GET-style requests, a bounded request head, bounded time,
//! one response per connection. Entry: [`serve`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What to answer.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status line after the version, e.g. `200 OK`.
    pub status: &'static str,
    /// The `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: String,
}

/// Binds `addr` (errors here are startup errors) and answers every request with
/// `handler(method, path)` in the background.
pub async fn serve<H>(addr: SocketAddr, handler: H) -> std::io::Result<SocketAddr>
where
    H: Fn(&str, &str) -> Response + Send + Sync + 'static,
{
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let handler = Arc::new(handler);
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { continue };
            let handler = handler.clone();
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
                    let r = handler(method, path);
                    let head = format!(
                        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        r.status,
                        r.content_type,
                        r.body.len()
                    );
                    stream.write_all(head.as_bytes()).await.ok()?;
                    stream.write_all(r.body.as_bytes()).await.ok()?;
                    stream.shutdown().await.ok()
                })
                .await;
            });
        }
    });
    Ok(bound)
}
