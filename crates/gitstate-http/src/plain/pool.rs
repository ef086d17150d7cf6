//! The idle connections of a process: [`Pool`] keeps them by origin, [`Pool::get`] sends a
//! request on a kept one (or a fresh one), and the [`Response`] it answers puts its
//! connection back once the body has been read — only when it can carry another request.
//! Which connections are kept at all, and for how long: [`IDLE_TIMEOUT`], [`MAX_AGE`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use gitstate_core::ProbeFailure;
use tokio::net::TcpStream;
use url::{Origin, Url};

use super::conn::{Conn, connect};
use super::exchange::{Failed, exchange, request};
use super::head::{Framing, Head};
use crate::timeouts::IDLE_TIMEOUT;

/// A connection is not kept past this age: a URL behind a balancer that routes whole
/// connections (a Kubernetes Service, a TCP load balancer) then reaches its other
/// instances now and then, as it did with a connection per request, at the cost of one
/// handshake every few minutes.
const MAX_AGE: Duration = Duration::from_secs(300);

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
        let body = super::body::read(&mut self.conn, &mut self.head, cap).await?;
        if self.head.reusable {
            self.pool.put(self.origin, self.conn);
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_kept_for_five_minutes_at_most() {
        let opened = Instant::now();
        assert!(young(opened, opened));
        assert!(young(opened, opened + Duration::from_secs(299)));
        assert!(!young(opened, opened + MAX_AGE));
        assert!(!young(opened, opened + Duration::from_secs(3600)));
    }
}
