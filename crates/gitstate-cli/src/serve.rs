//! The little HTTP gitstate serves itself (the `watch` endpoint, the demo's target), on
//! hyper: HTTP/1.1, GET-style requests answered by a plain function. What a hostile or
//! broken client can do is bounded: at most [`MAX_CONNECTIONS`] at a time (more wait in
//! the kernel's backlog), a request head of at most 16 KiB that must arrive within
//! [`HEAD_TIMEOUT`], a connection closed after [`CONNECTION_TIMEOUT`] however it
//! behaves, and an `accept` that fails (no file descriptors left) backs off instead of
//! spinning. Entry: [`serve`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
pub use hyper::StatusCode;
use hyper::body::Bytes;
use hyper::body::Frame;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// Time a client has to send a request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a connection may stay open, kept alive or not.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause after a failed `accept` (file descriptors exhausted, say) before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(250);

/// What to answer.
pub struct Response {
    /// The status.
    pub status: StatusCode,
    /// The `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: Body,
    /// More headers (a Content-Security-Policy, say).
    pub headers: Vec<(&'static str, String)>,
}

impl Response {
    /// A whole body at once, no more headers.
    pub fn new(status: StatusCode, content_type: &'static str, body: impl Into<String>) -> Self {
        Self { status, content_type, body: Body::Full(body.into()), headers: Vec::new() }
    }
}

/// A body: whole, or a stream of chunks sent as they come (server-sent events) until the
/// stream ends or the connection's time is up.
pub enum Body {
    /// All of it.
    Full(String),
    /// Chunk by chunk.
    Stream(futures::stream::BoxStream<'static, String>),
}

/// A request, its body read (at most the `max_body` given to [`serve`]).
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query, without its `?`, when there is one.
    pub query: Option<String>,
    /// The headers.
    pub headers: hyper::HeaderMap,
    /// The body; empty when `max_body` is 0.
    pub body: Bytes,
    /// The client's address.
    pub peer: SocketAddr,
    /// Whether it came over TLS.
    pub tls: bool,
}

/// An answer now, or one that needs waiting for (a password's hash, an action).
pub enum Answer {
    /// Ready.
    Now(Response),
    /// Made by this future.
    Later(futures::future::BoxFuture<'static, Response>),
}

impl From<Response> for Answer {
    fn from(r: Response) -> Self {
        Answer::Now(r)
    }
}

/// How a listener serves, beyond its handler.
#[derive(Clone, Default)]
pub struct Options {
    /// Bodies are read up to this many bytes (none when 0); a longer one is `413`.
    pub max_body: usize,
    /// HTTPS with these certificates, when set.
    pub tls: Option<Arc<crate::listener::tls::Certs>>,
    /// Headers every answer carries (unless the handler set them), the listener's own
    /// answers (`413`) too.
    pub headers: Vec<(&'static str, String)>,
}

impl Request {
    /// A header's value as text, by name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
    }
}

/// Binds `addr` (errors here are startup errors) and answers every request with
/// `handler(request)` in the background. Bodies are read up to `max_body` bytes (none
/// when 0); a longer one is answered 413 without calling the handler.
pub async fn serve<H>(addr: SocketAddr, max_body: usize, handler: H) -> std::io::Result<SocketAddr>
where
    H: Fn(&Request) -> Response + Send + Sync + 'static,
{
    serve_with(addr, Options { max_body, ..Options::default() }, move |r| Answer::Now(handler(r))).await
}

/// As [`serve`], with TLS when `options` say so, and handlers that may answer later.
pub async fn serve_with<H>(addr: SocketAddr, options: Options, handler: H) -> std::io::Result<SocketAddr>
where
    H: Fn(&Request) -> Answer + Send + Sync + 'static,
{
    let Options { max_body, tls, headers } = options;
    let always: Arc<Vec<(hyper::header::HeaderName, HeaderValue)>> = Arc::new(
        headers
            .into_iter()
            .filter_map(|(k, v)| {
                Some((hyper::header::HeaderName::from_static(k), HeaderValue::from_str(&v).ok()?))
            })
            .collect(),
    );
    let acceptor = tls.map(|certs| certs.acceptor());
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let handler = Arc::new(handler);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        loop {
            let Ok(slot) = slots.clone().acquire_owned().await else { return };
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed; backing off");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            let handler = handler.clone();
            let acceptor = acceptor.clone();
            let always = always.clone();
            tokio::spawn(async move {
                let _slot = slot;
                let tls = acceptor.is_some();
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let handler = handler.clone();
                    let always = always.clone();
                    let with_always = move |mut resp: hyper::Response<UnsyncBoxBody<Bytes, Infallible>>| {
                        for (k, v) in always.iter() {
                            if !resp.headers().contains_key(k) {
                                resp.headers_mut().insert(k.clone(), v.clone());
                            }
                        }
                        resp
                    };
                    async move {
                        let (parts, incoming) = req.into_parts();
                        let body = if max_body == 0 {
                            Bytes::new()
                        } else {
                            match http_body_util::Limited::new(incoming, max_body).collect().await {
                                Ok(b) => b.to_bytes(),
                                Err(_) => {
                                    let mut resp = hyper::Response::new(BodyExt::boxed_unsync(Full::new(
                                        Bytes::from("request body too large, or not read whole\n"),
                                    )));
                                    *resp.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
                                    return Ok::<_, Infallible>(with_always(resp));
                                }
                            }
                        };
                        let request = Request {
                            method: parts.method.as_str().to_owned(),
                            path: parts.uri.path().to_owned(),
                            query: parts.uri.query().map(str::to_owned),
                            headers: parts.headers,
                            body,
                            peer,
                            tls,
                        };
                        let r = match handler(&request) {
                            Answer::Now(r) => r,
                            Answer::Later(f) => f.await,
                        };
                        let body: UnsyncBoxBody<Bytes, Infallible> = match r.body {
                            Body::Full(text) => BodyExt::boxed_unsync(Full::new(Bytes::from(text))),
                            Body::Stream(chunks) => BodyExt::boxed_unsync(StreamBody::new(
                                chunks.map(|c| Ok::<_, Infallible>(Frame::data(Bytes::from(c)))),
                            )),
                        };
                        let mut resp = hyper::Response::new(body);
                        *resp.status_mut() = r.status;
                        resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(r.content_type));
                        for (name, value) in r.headers {
                            if let Ok(value) = HeaderValue::from_str(&value) {
                                resp.headers_mut().insert(name, value);
                            }
                        }
                        Ok::<_, Infallible>(with_always(resp))
                    }
                });
                let http = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEAD_TIMEOUT)
                    .max_buf_size(16 * 1024)
                    .clone();
                let served = async move {
                    match acceptor {
                        None => {
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                        // The handshake, too, within the head's time.
                        Some(a) => match tokio::time::timeout(HEAD_TIMEOUT, a.accept(stream)).await {
                            Ok(Ok(tls)) => {
                                let _ = http.serve_connection(TokioIo::new(tls), service).await;
                            }
                            Ok(Err(e)) => tracing::debug!(error = %e, %peer, "TLS handshake failed"),
                            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                        },
                    }
                };
                let _ = tokio::time::timeout(CONNECTION_TIMEOUT, served).await;
            });
        }
    });
    Ok(bound)
}
