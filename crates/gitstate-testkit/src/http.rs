//! An HTTP/1.1 test server on 127.0.0.1 whose routes behave as told: answer JSON, fail,
//! redirect, hang, trickle, never end, reset the connection, send a gzip bomb. Written on
//! raw TCP so that it can misbehave in ways a real HTTP library would not allow.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// What a route does.
#[derive(Debug, Clone)]
pub enum Behavior {
    /// 200 with this body and `Content-Type: application/json`.
    Json(String),
    /// 200 with these raw bytes.
    Bytes(Vec<u8>),
    /// This status, empty body.
    Status(u16),
    /// A redirect with this status and `Location`.
    Redirect(u16, String),
    /// Read the request, then never answer.
    NeverRespond,
    /// Headers, then one byte of body every `interval`, forever.
    Trickle(Duration),
    /// Headers without a length, then zeros forever, as fast as the client reads.
    Endless,
    /// `Content-Length` of this many bytes, and that many zeros.
    Huge(u64),
    /// A small gzip body (`Content-Encoding: gzip`) that inflates to this many zeros.
    GzipBomb(usize),
    /// Close the connection with a TCP reset right after reading the request.
    Reset,
    /// 200 with the file's current content (404 while it does not exist): a target a
    /// deploy script outside the test can change.
    File(std::path::PathBuf),
    /// These bytes as the whole response, no status line or headers (HTTP/0.9 and
    /// garbage), then the connection is closed.
    Raw(Vec<u8>),
    /// An informational `103 Early Hints` response, then nothing ever again.
    InformationalThenHang,
    /// 200 with this (plain) body, claiming `Content-Encoding: gzip`.
    EncodingLie(String),
    /// 200 with a chunked body: these pieces, one chunk each, written one at a time.
    Chunked(Vec<Vec<u8>>),
    /// A chunked body of 64 KiB chunks of zeros, forever.
    ChunkedEndless,
    /// These bytes after a `200 OK` status line (headers, body, anything), then the
    /// connection is closed.
    AfterStatusLine(Vec<u8>),
    /// As `Json`, then the connection is closed without saying so: a server letting a
    /// kept connection go (its idle timeout, a restart).
    JsonThenClose(String),
}

/// A running server. Routes can be changed while it runs.
#[derive(Clone)]
pub struct TestServer {
    pub port: u16,
    routes: Arc<Mutex<HashMap<String, Behavior>>>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    active: Arc<Mutex<(usize, usize)>>,
    bodies: Arc<Mutex<HashMap<String, Vec<String>>>>,
    connections: Arc<std::sync::atomic::AtomicUsize>,
    open: Arc<std::sync::atomic::AtomicUsize>,
}

impl TestServer {
    /// Starts a plain-HTTP server on the current tokio runtime.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = Self {
            port,
            routes: Arc::default(),
            hits: Arc::default(),
            active: Arc::default(),
            bodies: Arc::default(),
            connections: Arc::default(),
            open: Arc::default(),
        };
        let s = server.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let s = s.clone();
                tokio::spawn(async move {
                    let _open = s.connected();
                    let _ = stream.set_nodelay(true);
                    if let Some(Behavior::Reset) = s.peek_route(&stream).await {
                        let _ = stream.set_zero_linger();
                        drop(stream);
                        return;
                    }
                    s.serve(stream).await;
                });
            }
        });
        server
    }

    /// Starts a server on its own runtime thread, for tests without a runtime.
    pub fn start_background() -> Self {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt =
                tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async move {
                tx.send(Self::start().await).unwrap();
                std::future::pending::<()>().await;
            });
        });
        rx.recv().unwrap()
    }

    /// Serves `path` with `behavior`.
    pub fn route(&self, path: &str, behavior: Behavior) -> &Self {
        self.routes.lock().unwrap().insert(path.to_owned(), behavior);
        self
    }

    /// `http://127.0.0.1:port{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Requests seen for `path`.
    pub fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    /// The bodies of the requests seen for `path` (POSTs to a receiver), in order.
    pub fn bodies(&self, path: &str) -> Vec<String> {
        self.bodies.lock().unwrap().get(path).cloned().unwrap_or_default()
    }

    /// The connections this server has accepted.
    pub fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The connections open now (accepted and not yet closed by either side).
    pub fn open_connections(&self) -> usize {
        self.open.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Counts a connection accepted; it is counted open until the guard drops.
    pub(crate) fn connected(&self) -> OpenGuard {
        self.connections.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.open.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        OpenGuard(self.open.clone())
    }

    /// The most requests this server has had in progress at once.
    pub fn peak_in_progress(&self) -> usize {
        self.active.lock().unwrap().1
    }

    fn enter(&self) {
        let mut a = self.active.lock().unwrap();
        a.0 += 1;
        a.1 = a.1.max(a.0);
    }

    fn leave(&self) {
        self.active.lock().unwrap().0 -= 1;
    }

    /// Reset needs the path before a reader takes the stream: peek the request line.
    async fn peek_route(&self, stream: &tokio::net::TcpStream) -> Option<Behavior> {
        let mut buf = [0u8; 2048];
        let n = tokio::time::timeout(Duration::from_secs(10), stream.peek(&mut buf)).await.ok()?.ok()?;
        let line = String::from_utf8_lossy(&buf[..n]);
        let path = line.split_whitespace().nth(1)?.to_owned();
        self.routes.lock().unwrap().get(&path).cloned()
    }

    /// Serves requests on one connection (keep-alive), plain or TLS.
    pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(&self, stream: S) {
        let mut reader = BufReader::new(stream);
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
            let mut length = 0usize;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).await.unwrap_or(0) == 0 {
                    return;
                }
                if h.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':')
                    && k.trim().eq_ignore_ascii_case("content-length")
                {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            if length > 0 {
                let mut body = vec![0u8; length.min(1 << 20)];
                if tokio::io::AsyncReadExt::read_exact(&mut reader, &mut body).await.is_err() {
                    return;
                }
                let text = String::from_utf8_lossy(&body).into_owned();
                self.bodies.lock().unwrap().entry(path.clone()).or_default().push(text);
            }
            *self.hits.lock().unwrap().entry(path.clone()).or_default() += 1;
            let behavior = self.routes.lock().unwrap().get(&path).cloned().unwrap_or(Behavior::Status(404));
            self.enter();
            let keep = if let Behavior::NeverRespond = behavior {
                // Hold the request until the client gives up and closes the connection.
                let mut sink = [0u8; 1024];
                while tokio::io::AsyncReadExt::read(&mut reader, &mut sink).await.unwrap_or(0) > 0 {}
                false
            } else {
                respond(reader.get_mut(), behavior).await.is_ok()
            };
            self.leave();
            if !keep {
                return;
            }
        }
    }
}

/// Counts a connection open while it lives.
pub(crate) struct OpenGuard(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

async fn respond<W: AsyncWrite + Unpin>(w: &mut W, b: Behavior) -> std::io::Result<()> {
    let reason = |c: u16| match c {
        200 => "OK",
        301 => "Moved Permanently",
        302 => "Found",
        307 => "Temporary Redirect",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        _ => "Status",
    };
    match b {
        Behavior::Json(body) => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            w.write_all(head.as_bytes()).await?;
            w.write_all(body.as_bytes()).await?;
        }
        Behavior::Bytes(body) => {
            w.write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes())
                .await?;
            w.write_all(&body).await?;
        }
        Behavior::Status(c) => {
            w.write_all(format!("HTTP/1.1 {c} {}\r\nContent-Length: 0\r\n\r\n", reason(c)).as_bytes())
                .await?;
        }
        Behavior::Redirect(c, loc) => {
            let head = format!("HTTP/1.1 {c} {}\r\nLocation: {loc}\r\nContent-Length: 0\r\n\r\n", reason(c));
            w.write_all(head.as_bytes()).await?;
        }
        Behavior::NeverRespond => unreachable!("handled by serve"),
        Behavior::Trickle(every) => {
            w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n").await?;
            loop {
                w.write_all(b" ").await?;
                w.flush().await?;
                tokio::time::sleep(every).await;
            }
        }
        Behavior::Endless => {
            w.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n").await?;
            let chunk = vec![b'0'; 64 * 1024];
            loop {
                w.write_all(&chunk).await?;
            }
        }
        Behavior::Huge(n) => {
            w.write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n").as_bytes()).await?;
            let chunk = vec![b'0'; 64 * 1024];
            let mut left = n;
            while left > 0 {
                let k = left.min(chunk.len() as u64) as usize;
                w.write_all(&chunk[..k]).await?;
                left -= k as u64;
            }
        }
        Behavior::GzipBomb(n) => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            let zeros = vec![0u8; 1 << 20];
            let mut left = n;
            while left > 0 {
                let k = left.min(zeros.len());
                enc.write_all(&zeros[..k])?;
                left -= k;
            }
            let body = enc.finish()?;
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            w.write_all(head.as_bytes()).await?;
            w.write_all(&body).await?;
        }
        Behavior::Reset => return Err(std::io::Error::other("reset")),
        Behavior::Raw(bytes) => {
            w.write_all(&bytes).await?;
            w.flush().await?;
            return Err(std::io::Error::other("raw response: close"));
        }
        Behavior::InformationalThenHang => {
            w.write_all(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n").await?;
            w.flush().await?;
            std::future::pending::<()>().await;
        }
        Behavior::EncodingLie(body) => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            w.write_all(head.as_bytes()).await?;
            w.write_all(body.as_bytes()).await?;
        }
        Behavior::Chunked(pieces) => {
            w.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").await?;
            for piece in pieces.iter().filter(|p| !p.is_empty()) {
                w.write_all(format!("{:x}\r\n", piece.len()).as_bytes()).await?;
                w.write_all(piece).await?;
                w.write_all(b"\r\n").await?;
                w.flush().await?;
            }
            w.write_all(b"0\r\n\r\n").await?;
        }
        Behavior::ChunkedEndless => {
            w.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").await?;
            let chunk = [b"10000\r\n".as_slice(), &[b'0'; 0x10000], b"\r\n"].concat();
            loop {
                w.write_all(&chunk).await?;
            }
        }
        Behavior::AfterStatusLine(bytes) => {
            w.write_all(b"HTTP/1.1 200 OK\r\n").await?;
            w.write_all(&bytes).await?;
            w.flush().await?;
            return Err(std::io::Error::other("raw response: close"));
        }
        Behavior::JsonThenClose(body) => {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
            w.write_all(head.as_bytes()).await?;
            w.write_all(body.as_bytes()).await?;
            w.flush().await?;
            return Err(std::io::Error::other("let the kept connection go"));
        }
        Behavior::File(path) => match std::fs::read(&path) {
            Ok(body) => {
                w.write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes())
                    .await?;
                w.write_all(&body).await?;
            }
            Err(_) => w.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n").await?,
        },
    }
    w.flush().await
}
