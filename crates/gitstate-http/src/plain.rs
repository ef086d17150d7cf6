//! A small HTTP/1.1 client for the commonest probe: a `GET` of a plain `http://` URL, its
//! connection kept for the next pass. Entry points: [`Pool`] (the idle connections of a
//! process) and [`Pool::get`].
//!
//! Why not reqwest here too: a pass over a fleet of thousands of hosts is one request per
//! host, and opening a fresh connection for each (connect, and on loopback the server's
//! half of the handshake, then shutdown and close) was most of `watch`'s CPU at 10,000
//! hosts. Keeping one idle connection per host through hyper's pool costs some 15 KB of
//! memory each; here an idle connection is its socket and registration, about 200 bytes.
//! Everything else — TLS, proxies, credentials in the URL — stays with reqwest (the probe
//! chooses, [`Pool::serves`]).
//!
//! The bounds are SPEC §8's: the caller's deadline covers connecting, the head and the
//! body; a head is at most [`HEAD_MAX`] bytes and [`MAX_HEADERS`] fields; a body at most
//! the target's `max_bytes`, whether framed by `Content-Length`, chunked, or ended by the
//! server closing. Whatever a server sends, the answer is a response or a failure saying
//! why; a connection goes back to the pool only after a whole, well-framed response to
//! which the server did not say `Connection: close`, with nothing after it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use gitstate_core::ProbeFailure;
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use url::{Host, Origin, Url};

use crate::probe::CONNECT_TIMEOUT;

/// The largest response head (status line and header fields) read, in bytes.
pub const HEAD_MAX: usize = 64 * 1024;
/// The most header fields a response may have.
pub const MAX_HEADERS: usize = 100;
/// An idle connection older than this is closed rather than reused (hyper's default too).
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// A connection is not kept past this age: a URL behind a balancer that routes whole
/// connections (a Kubernetes Service, a TCP load balancer) then reaches its other
/// instances now and then, as it did with a connection per request, at the cost of one
/// handshake every few minutes.
const MAX_AGE: Duration = Duration::from_secs(300);
/// The longest chunk-size line (with extensions) of a chunked body.
const CHUNK_LINE_MAX: usize = 4096;
/// How much is read from the socket at a time.
const READ_STEP: usize = 8 * 1024;

/// The idle connections of a process, at most `cap` of them, by origin.
pub(crate) struct Pool {
    state: Mutex<Idle>,
    cap: usize,
}

#[derive(Default)]
struct Idle {
    /// Each with when it was opened and since when it idles.
    by_origin: HashMap<Origin, Vec<(TcpStream, Instant, Instant)>>,
    total: usize,
}

impl Pool {
    /// A pool keeping at most `cap` idle connections (each is an open file).
    pub(crate) fn new(cap: usize) -> Self {
        Self { state: Mutex::default(), cap }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Idle> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether this client fetches `url`: plain `http://` without credentials in it.
    pub(crate) fn serves(url: &Url) -> bool {
        url.scheme() == "http" && url.username().is_empty() && url.password().is_none()
    }

    /// A kept connection to `origin` that the server has not closed, if there is one.
    fn take(&self, origin: &Origin) -> Option<(TcpStream, Instant)> {
        let mut idle = self.lock();
        let Idle { by_origin, total } = &mut *idle;
        let list = by_origin.get_mut(origin)?;
        let mut found = None;
        while let Some((stream, opened, since)) = list.pop() {
            *total -= 1;
            if since.elapsed() < IDLE_TIMEOUT && open(&stream) {
                found = Some((stream, opened));
                break;
            }
        }
        if list.is_empty() {
            by_origin.remove(origin);
        }
        found
    }

    fn put(&self, origin: Origin, conn: Conn) {
        if !young(conn.opened, Instant::now()) {
            return;
        }
        let mut idle = self.lock();
        if idle.total < self.cap {
            idle.total += 1;
            idle.by_origin.entry(origin).or_default().push((conn.stream, conn.opened, Instant::now()));
        }
    }

    /// Closes the idle connections to an origin no target names any more.
    pub(crate) fn forget(&self, origin: &Origin) {
        let mut idle = self.lock();
        if let Some(list) = idle.by_origin.remove(origin) {
            idle.total -= list.len();
        }
    }

    /// Sends `GET url` with the `extra` header lines (each `name: value\r\n`) and reads the
    /// response head. A kept connection is used when there is one; when the server had
    /// closed it before answering (it may, any time it is idle), the request is sent once
    /// more on a fresh connection — a `GET` may be repeated. Unless `keep`, the request
    /// says `Connection: close` and the connection is not kept after it.
    pub(crate) async fn get(
        &self,
        url: &Url,
        extra: &[u8],
        user_agent: &str,
        keep: bool,
    ) -> Result<Response<'_>, ProbeFailure> {
        let origin = url.origin();
        let request = request(url, extra, user_agent, keep);
        if let Some((stream, opened)) = self.take(&origin) {
            match exchange(stream, opened, &request, true).await {
                Ok((conn, mut head)) => {
                    head.reusable &= keep;
                    return Ok(Response { pool: self, origin, conn, head });
                }
                Err(Failed::Closed) => {}
                Err(Failed::Other(f)) => return Err(f),
            }
        }
        let stream = connect(url).await?;
        match exchange(stream, Instant::now(), &request, false).await {
            Ok((conn, mut head)) => {
                head.reusable &= keep;
                Ok(Response { pool: self, origin, conn, head })
            }
            Err(Failed::Closed) => Err(ProbeFailure::unreachable("connection closed before a response")),
            Err(Failed::Other(f)) => Err(f),
        }
    }
}

/// Whether a connection opened at `opened` may still be kept at `now` ([`MAX_AGE`]).
fn young(opened: Instant, now: Instant) -> bool {
    now.saturating_duration_since(opened) < MAX_AGE
}

/// Whether an idle connection is still open: nothing to read, not even the end.
fn open(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

fn request(url: &Url, extra: &[u8], user_agent: &str, keep: bool) -> Vec<u8> {
    let mut r = Vec::with_capacity(128 + extra.len());
    r.extend_from_slice(b"GET ");
    r.extend_from_slice(url.path().as_bytes());
    if let Some(q) = url.query() {
        r.push(b'?');
        r.extend_from_slice(q.as_bytes());
    }
    r.extend_from_slice(b" HTTP/1.1\r\n");
    let has = |name: &str| {
        extra.split(|&b| b == b'\n').any(|line| {
            line.len() > name.len()
                && line[..name.len()].eq_ignore_ascii_case(name.as_bytes())
                && line[name.len()] == b':'
        })
    };
    if !has("host") {
        r.extend_from_slice(b"Host: ");
        r.extend_from_slice(url.host_str().unwrap_or_default().as_bytes());
        if let Some(port) = url.port() {
            r.extend_from_slice(format!(":{port}").as_bytes());
        }
        r.extend_from_slice(b"\r\n");
    }
    if !has("user-agent") {
        r.extend_from_slice(format!("User-Agent: {user_agent}\r\n").as_bytes());
    }
    if !has("accept") {
        r.extend_from_slice(b"Accept: */*\r\n");
    }
    if !keep {
        r.extend_from_slice(b"Connection: close\r\n");
    }
    r.extend_from_slice(extra);
    r.extend_from_slice(b"\r\n");
    r
}

async fn connect(url: &Url) -> Result<TcpStream, ProbeFailure> {
    let cannot = |why: String| ProbeFailure::unreachable(format!("cannot connect: {why}"));
    let port = url.port_or_known_default().unwrap_or(80);
    let addrs: Vec<SocketAddr> = match url.host() {
        Some(Host::Ipv4(ip)) => vec![(ip, port).into()],
        Some(Host::Ipv6(ip)) => vec![(ip, port).into()],
        Some(Host::Domain(name)) => tokio::net::lookup_host((name, port))
            .await
            .map_err(|e| cannot(format!("dns error: {e}")))?
            .collect(),
        None => return Err(cannot("the URL has no host".into())),
    };
    let mut last = String::from("the host name resolves to no address");
    for addr in addrs {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()),
        }
    }
    Err(cannot(last))
}

/// Why an exchange failed: the server had closed the connection before any byte of an
/// answer (a kept connection it let go: try a fresh one), or anything else. On a kept
/// connection every failure before the first byte counts as closed: it may also be one
/// whose runtime has gone (a library caller's), and the fresh attempt says what is wrong.
enum Failed {
    Closed,
    Other(ProbeFailure),
}

fn broken(kind: std::io::ErrorKind) -> bool {
    use std::io::ErrorKind::*;
    matches!(kind, ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof)
}

async fn exchange(
    mut stream: TcpStream,
    opened: Instant,
    request: &[u8],
    kept: bool,
) -> Result<(Conn, Head), Failed> {
    if let Err(e) = stream.write_all(request).await {
        return Err(if kept || broken(e.kind()) {
            Failed::Closed
        } else {
            Failed::Other(ProbeFailure::unreachable(format!("request failed: {e}")))
        });
    }
    let mut conn = Conn { stream, opened, buf: Vec::new() };
    let mut answered = false;
    loop {
        if !conn.buf.is_empty() {
            answered = true;
            match parse_head(&conn.buf).map_err(Failed::Other)? {
                Some((used, None)) => {
                    // An informational answer (100, 103): the real one follows.
                    conn.buf.drain(..used);
                    continue;
                }
                Some((used, Some(head))) => {
                    conn.buf.drain(..used);
                    return Ok((conn, head));
                }
                None if conn.buf.len() >= HEAD_MAX => {
                    return Err(Failed::Other(ProbeFailure::unreachable(format!(
                        "response head larger than {} KiB",
                        HEAD_MAX / 1024
                    ))));
                }
                None => {}
            }
        }
        match conn.read(HEAD_MAX - conn.buf.len()).await {
            Ok(0) if !answered => return Err(Failed::Closed),
            Ok(0) => {
                return Err(Failed::Other(ProbeFailure::unreachable(
                    "connection closed in the response head",
                )));
            }
            Ok(_) => {}
            Err(e) if !answered && (kept || broken(e.kind())) => return Err(Failed::Closed),
            Err(e) => {
                return Err(Failed::Other(ProbeFailure::unreachable(format!("reading the response: {e}"))));
            }
        }
    }
}

/// A connection and what has been read from it but not yet used.
struct Conn {
    stream: TcpStream,
    opened: Instant,
    buf: Vec<u8>,
}

impl Conn {
    /// Reads at most `most` more bytes onto the buffer; 0 at the end of the stream.
    async fn read(&mut self, most: usize) -> std::io::Result<usize> {
        let step = most.clamp(1, READ_STEP);
        let len = self.buf.len();
        self.buf.resize(len + step, 0);
        let got = self.stream.read(&mut self.buf[len..]).await;
        self.buf.truncate(len + *got.as_ref().unwrap_or(&0));
        got
    }
}

/// How a response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
    /// At the end of the stream (no length, or a transfer coding other than chunked).
    Close,
}

/// What the probe needs of a response head.
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) status: StatusCode,
    pub(crate) location: Option<String>,
    pub(crate) content_encoding: Option<Vec<u8>>,
    pub(crate) content_length: Option<u64>,
    framing: Framing,
    /// The connection may carry the next request after this response.
    reusable: bool,
}

/// Parses a response head at the start of `buf`: `None` while incomplete; the bytes used
/// and `None` for an informational (1xx) answer; the bytes used and the head.
fn parse_head(buf: &[u8]) -> Result<Option<(usize, Option<Head>)>, ProbeFailure> {
    let invalid = |why: String| ProbeFailure::unreachable(format!("invalid HTTP response: {why}"));
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut fields);
    let used = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(invalid(format!("more than {MAX_HEADERS} header fields")));
        }
        Err(e) => return Err(invalid(e.to_string())),
    };
    let code = resp.code.unwrap_or_default();
    let status = StatusCode::from_u16(code).map_err(|_| invalid(format!("status {code}")))?;
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return Err(invalid("101 Switching Protocols to a GET".into()));
    }
    if status.is_informational() {
        return Ok(Some((used, None)));
    }
    let mut lengths: Option<u64> = None;
    let mut length_conflict = false;
    let mut codings: Vec<&[u8]> = Vec::new();
    let (mut close, mut keep_alive) = (false, false);
    let mut location = None;
    let mut content_encoding = None;
    for f in resp.headers.iter() {
        let name = f.name;
        if name.eq_ignore_ascii_case("content-length") {
            for v in f.value.split(|&b| b == b',') {
                let v = v.trim_ascii();
                let n = (!v.is_empty() && v.len() <= 19 && v.iter().all(u8::is_ascii_digit))
                    .then(|| std::str::from_utf8(v).ok()?.parse::<u64>().ok())
                    .flatten()
                    .ok_or_else(|| invalid("a Content-Length that is not a number".into()))?;
                length_conflict |= lengths.is_some_and(|l| l != n);
                lengths = Some(n);
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            codings.extend(f.value.split(|&b| b == b',').map(<[u8]>::trim_ascii).filter(|c| !c.is_empty()));
        } else if name.eq_ignore_ascii_case("connection") {
            for token in f.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("location") && location.is_none() {
            // As `HeaderValue::to_str`: visible ASCII only, or not usable.
            if f.value.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b)) {
                location = std::str::from_utf8(f.value).ok().map(str::to_owned);
            }
        } else if name.eq_ignore_ascii_case("content-encoding") && content_encoding.is_none() {
            content_encoding = Some(f.value.to_vec());
        }
    }
    let framing = if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        Framing::Length(0)
    } else if let Some(last) = codings.last() {
        if last.eq_ignore_ascii_case(b"chunked") { Framing::Chunked } else { Framing::Close }
    } else if length_conflict {
        return Err(invalid("Content-Length fields that disagree".into()));
    } else {
        lengths.map_or(Framing::Close, Framing::Length)
    };
    let http11 = resp.version == Some(1);
    // A length beside a transfer coding is a smuggling shape: read this one, keep nothing.
    let smuggling = lengths.is_some() && !codings.is_empty();
    let persistent = !close && (http11 || keep_alive);
    let reusable = framing != Framing::Close && !smuggling && persistent;
    let content_length = if codings.is_empty() { lengths } else { None };
    Ok(Some((used, Some(Head { status, location, content_encoding, content_length, framing, reusable }))))
}

/// A response whose head has been read; its body is read by [`Response::body`], after
/// which the connection goes back to the pool when it can carry another request.
pub(crate) struct Response<'p> {
    pool: &'p Pool,
    origin: Origin,
    conn: Conn,
    pub(crate) head: Head,
}

impl Response<'_> {
    /// Done with a response whose body is not wanted (an error status, a redirect): its
    /// connection is kept when the body is empty and nothing else is pending on it.
    pub(crate) fn discard(self) {
        if self.head.reusable && self.head.framing == Framing::Length(0) && self.conn.buf.is_empty() {
            self.pool.put(self.origin, self.conn);
        }
    }

    /// The whole body, at most `cap` bytes (more is `invalid`).
    pub(crate) async fn body(mut self, cap: usize) -> Result<Vec<u8>, ProbeFailure> {
        let too_large = || ProbeFailure::invalid(format!("body larger than max_bytes ({cap} bytes)"));
        let closed = |e: std::io::Result<usize>| {
            ProbeFailure::unreachable(match e {
                Ok(_) => "reading the body: the connection closed before its end".to_owned(),
                Err(e) => format!("reading the body: {e}"),
            })
        };
        let body = match self.head.framing {
            Framing::Length(n) => {
                if n > cap as u64 {
                    return Err(too_large());
                }
                let n = n as usize;
                while self.conn.buf.len() < n {
                    match self.conn.read(n - self.conn.buf.len()).await {
                        Ok(0) => return Err(closed(Ok(0))),
                        Ok(_) => {}
                        Err(e) => return Err(closed(Err(e))),
                    }
                }
                let mut body = std::mem::take(&mut self.conn.buf);
                if body.len() > n {
                    // Bytes the server sent after the response: this connection is not kept.
                    body.truncate(n);
                    self.head.reusable = false;
                }
                body
            }
            Framing::Close => loop {
                if self.conn.buf.len() > cap {
                    return Err(too_large());
                }
                match self.conn.read(cap + 1 - self.conn.buf.len()).await {
                    Ok(0) => break std::mem::take(&mut self.conn.buf),
                    Ok(_) => {}
                    Err(e) => return Err(closed(Err(e))),
                }
            },
            Framing::Chunked => self.dechunk(cap).await?,
        };
        if self.head.reusable {
            self.pool.put(self.origin, self.conn);
        }
        Ok(body)
    }

    /// Decodes a chunked body, at most `cap` bytes of it; trailers are read and ignored.
    async fn dechunk(&mut self, cap: usize) -> Result<Vec<u8>, ProbeFailure> {
        let bad = |why: &str| ProbeFailure::unreachable(format!("invalid chunked body: {why}"));
        let mut body = Vec::new();
        loop {
            let size = loop {
                match httparse::parse_chunk_size(&self.conn.buf) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        self.conn.buf.drain(..used);
                        break size;
                    }
                    Ok(httparse::Status::Partial) if self.conn.buf.len() < CHUNK_LINE_MAX => {
                        self.more(CHUNK_LINE_MAX - self.conn.buf.len()).await?;
                    }
                    Ok(httparse::Status::Partial) => return Err(bad("a chunk-size line too long")),
                    Err(_) => return Err(bad("not a chunk size")),
                }
            };
            if size == 0 {
                break;
            }
            if size > (cap - body.len()) as u64 {
                return Err(ProbeFailure::invalid(format!("body larger than max_bytes ({cap} bytes)")));
            }
            let mut left = size as usize;
            while left > 0 {
                if self.conn.buf.is_empty() {
                    self.more(left.saturating_add(2)).await?;
                }
                let take = left.min(self.conn.buf.len());
                body.extend_from_slice(&self.conn.buf[..take]);
                self.conn.buf.drain(..take);
                left -= take;
            }
            while self.conn.buf.len() < 2 {
                self.more(2 - self.conn.buf.len()).await?;
            }
            if &self.conn.buf[..2] != b"\r\n" {
                return Err(bad("a chunk not followed by CRLF"));
            }
            self.conn.buf.drain(..2);
        }
        // Trailer fields, then an empty line.
        let mut seen = 0;
        loop {
            if let Some(end) = self.conn.buf.windows(2).position(|w| w == b"\r\n") {
                self.conn.buf.drain(..end + 2);
                seen += end + 2;
                if end == 0 {
                    break;
                }
                continue;
            }
            if seen + self.conn.buf.len() >= HEAD_MAX {
                return Err(bad("trailers larger than 64 KiB"));
            }
            self.more(HEAD_MAX - seen - self.conn.buf.len()).await?;
        }
        if !self.conn.buf.is_empty() {
            self.head.reusable = false;
        }
        Ok(body)
    }

    /// Reads more of a chunked body; its end before the last chunk is a failure.
    async fn more(&mut self, most: usize) -> Result<(), ProbeFailure> {
        match self.conn.read(most).await {
            Ok(0) => Err(ProbeFailure::unreachable("reading the body: the connection closed before its end")),
            Ok(_) => Ok(()),
            Err(e) => Err(ProbeFailure::unreachable(format!("reading the body: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Head {
        parse_head(raw.as_bytes()).unwrap().unwrap().1.unwrap()
    }

    fn refused(raw: &[u8]) -> String {
        parse_head(raw).map(|_| ()).unwrap_err().message
    }

    #[test]
    fn framing_and_reuse() {
        let h = head("HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n");
        assert_eq!((h.framing, h.reusable, h.content_length), (Framing::Length(12), true, Some(12)));
        let h = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
        assert_eq!((h.framing, h.reusable, h.content_length), (Framing::Chunked, true, None));
        let h = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n");
        assert_eq!((h.framing, h.reusable), (Framing::Chunked, false), "smuggling shape");
        let h = head("HTTP/1.1 200 OK\r\nConnection: Keep-Alive, close\r\nContent-Length: 1\r\n\r\n");
        assert!(!h.reusable);
        let h = head("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n");
        assert!(!h.reusable, "HTTP/1.0 without keep-alive");
        let h = head("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n");
        assert!(h.reusable);
        let h = head("HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!((h.framing, h.reusable), (Framing::Close, false));
        let h = head("HTTP/1.1 204 No Content\r\nContent-Length: 99\r\n\r\n");
        assert_eq!(h.framing, Framing::Length(0));
        let h = head("HTTP/1.1 200 OK\r\nContent-Length: 7, 7\r\n\r\n");
        assert_eq!(h.framing, Framing::Length(7));
    }

    #[test]
    fn informational_answers_are_skipped_and_bad_heads_refused() {
        let raw = b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\n";
        let (used, h) = parse_head(raw).unwrap().unwrap();
        assert!(h.is_none());
        assert_eq!(&raw[used..], b"HTTP/1.1 200 OK\r\n");
        assert!(parse_head(&raw[used..]).unwrap().is_none(), "incomplete");
        assert!(
            refused(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
                .contains("disagree")
        );
        assert!(refused(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n").contains("not a number"));
        assert!(
            refused(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n")
                .contains("not a number")
        );
        assert!(refused(b"HTTP/1.1 101 Switching Protocols\r\n\r\n").contains("101"));
        assert!(refused(b"0123456789abcdef\n").contains("invalid HTTP response"));
        let many = format!("HTTP/1.1 200 OK\r\n{}\r\n", "X: y\r\n".repeat(MAX_HEADERS + 1));
        assert!(refused(many.as_bytes()).contains("more than 100"));
    }

    #[test]
    fn connections_are_kept_for_five_minutes_at_most() {
        let opened = Instant::now();
        assert!(young(opened, opened));
        assert!(young(opened, opened + Duration::from_secs(299)));
        assert!(!young(opened, opened + MAX_AGE));
        assert!(!young(opened, opened + Duration::from_secs(3600)));
    }

    #[test]
    fn requests_name_the_host_and_let_configured_headers_win() {
        let url: Url = "http://deploy.example:8080/.well-known/x.json?token=a".parse().unwrap();
        let r = String::from_utf8(request(&url, b"", "gitstate/0", true)).unwrap();
        assert_eq!(
            r,
            "GET /.well-known/x.json?token=a HTTP/1.1\r\nHost: deploy.example:8080\r\nUser-Agent: gitstate/0\r\nAccept: */*\r\n\r\n"
        );
        let url: Url = "http://[::1]/".parse().unwrap();
        let r = String::from_utf8(request(&url, b"accept: text/plain\r\nX-Acceptable: 1\r\n", "ua", false))
            .unwrap();
        assert_eq!(
            r,
            "GET / HTTP/1.1\r\nHost: [::1]\r\nUser-Agent: ua\r\nConnection: close\r\naccept: text/plain\r\nX-Acceptable: 1\r\n\r\n"
        );
    }
}
