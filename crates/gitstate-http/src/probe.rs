//! The well-known-file probe: GET each URL of a target and read the commit from the body.
//! Entry type: [`HttpProbe`], made from an [`HttpTarget`] (`target.rs`) and the shared
//! [`HttpClients`] (`clients.rs`).
//!
//! Every read is bounded: a total deadline per instance (across redirects and the body,
//! `timeouts.rs`), a connect timeout, a body cap (`max_bytes`, checked against
//! `Content-Length` and while streaming), at most three redirects (`redirect.rs`).
//! Whatever a target does, the outcome is a reading: `unreachable` or `invalid` with a
//! clear error, never a hang, a crash or `in_sync`.
//!
//! A URL goes to the plain-HTTP client of this crate when it serves it, to reqwest
//! otherwise (`clients.rs`); either answers an `Answer` (`answer.rs`). Which connections
//! are kept for the next request is `keep_alive.rs`'s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use gitstate_core::redact_url;
use gitstate_core::{ActualStateProbe, ProbeContext, ProbeFailure, Reading};
use reqwest::header::{CONNECTION, HeaderMap};
use tokio::sync::Semaphore;
use url::Url;

use crate::answer::Answer;
use crate::body::parse_body;
use crate::error::{HttpError, describe};
use crate::keep_alive::Origins;
use crate::plain::Pool;
use crate::redirect::{MAX_REDIRECTS, allowed};
use crate::timeouts::{Deadline, TIMED_OUT};

// Where these were declared before `clients.rs`, `keep_alive.rs`, `target.rs` and
// `timeouts.rs` were split off: `gitstate_http::probe::…` paths keep working.
pub use crate::clients::HttpClients;
pub use crate::keep_alive::KeepAlive;
pub use crate::target::HttpTarget;
pub use crate::timeouts::CONNECT_TIMEOUT;

/// Reads the commit of every URL of one target.
///
/// What is not its URLs — settings, headers, clients — is shared by every probe made
/// from the same [`HttpClients`] with the same settings: 50,000 environments a
/// `[[discover]]` block finds hold one copy, not 50,000 (SPEC §19).
pub struct HttpProbe {
    urls: Vec<Url>,
    shared: Arc<Shared>,
}

/// What probes of the same settings share.
pub(crate) struct Shared {
    /// The settings (its `urls` empty: each probe has its own).
    target: HttpTarget,
    client: reqwest::Client,
    in_flight: Arc<Semaphore>,
    origins: Origins,
    /// The configured headers for reqwest, and as lines for the plain-HTTP client.
    headers: HeaderMap,
    header_lines: Vec<u8>,
    plain: Option<Arc<Pool>>,
    keep_alive: KeepAlive,
    user_agent: String,
}

/// Whether two targets' settings other than their URLs are the same.
fn same_settings(a: &HttpTarget, b: &HttpTarget) -> bool {
    a.sha_pointer == b.sha_pointer
        && a.timeout == b.timeout
        && a.max_bytes == b.max_bytes
        && a.headers == b.headers
        && a.ca_file == b.ca_file
        && a.follow_redirects == b.follow_redirects
}

impl HttpProbe {
    /// A probe using the shared `clients`.
    pub fn new(clients: &HttpClients, mut target: HttpTarget) -> Result<Self, HttpError> {
        let urls = std::mem::take(&mut target.urls);
        clients.origins.add(&urls);
        let mut made = clients.shared.lock().unwrap_or_else(|p| p.into_inner());
        made.retain(|w| w.strong_count() > 0);
        if let Some(shared) = made
            .iter()
            .filter_map(std::sync::Weak::upgrade)
            .find(|s| s.keep_alive == clients.keep_alive && same_settings(&s.target, &target))
        {
            return Ok(Self { urls, shared });
        }
        let client = match &target.ca_file {
            Some(ca) => clients.with_ca_file(ca)?,
            None => clients.default.clone(),
        };
        let headers = crate::header::header_map(&target.headers);
        let header_lines = crate::header::header_lines(&target.headers);
        let shared = Arc::new(Shared {
            target,
            client,
            in_flight: clients.in_flight.clone(),
            origins: clients.origins.clone(),
            headers,
            header_lines,
            plain: clients.plain.clone(),
            keep_alive: clients.keep_alive,
            user_agent: clients.user_agent.clone(),
        });
        made.push(Arc::downgrade(&shared));
        Ok(Self { urls, shared })
    }
}

impl Shared {
    /// Sends `GET url`, with the configured headers when `credentials` (not after a
    /// redirect to another host), through the plain-HTTP client when it serves the URL.
    async fn send(&self, url: &Url, credentials: bool, left: Duration) -> Result<Answer<'_>, ProbeFailure> {
        if let Some(pool) = &self.plain
            && Pool::serves(url)
        {
            let lines: &[u8] = if credentials { &self.header_lines } else { b"" };
            let keep = self.keep_alive == KeepAlive::Every || self.origins.shared(url);
            return pool.get(url, lines, &self.user_agent, keep).await.map(Answer::Plain);
        }
        let headers = if credentials { self.headers.clone() } else { HeaderMap::new() };
        let mut request = self.client.get(url.clone()).headers(headers).timeout(left);
        if !self.origins.shared(url) {
            request = request.header(CONNECTION, "close");
        }
        match request.send().await {
            Ok(r) => Ok(Answer::Reqwest(r)),
            Err(e) if e.is_timeout() => Err(ProbeFailure::unreachable(TIMED_OUT)),
            Err(e) => Err(ProbeFailure::unreachable(describe(&e))),
        }
    }

    async fn read(&self, url: &Url) -> Reading {
        // The deadline starts when the request may start, not while it waits for a slot.
        let permit = self.in_flight.acquire().await;
        let start = Instant::now();
        let result = match permit {
            Ok(_permit) => self.fetch(url, Deadline::new(start, self.target.timeout)).await,
            Err(_) => Err(ProbeFailure::unreachable("probe shut down")),
        };
        Reading { instance: redact_url(url.as_str()), result, elapsed: start.elapsed() }
    }

    async fn fetch(
        &self,
        first: &Url,
        deadline: Deadline,
    ) -> Result<gitstate_core::ReportedCommit, ProbeFailure> {
        let mut url = first.clone();
        let mut credentials = true;
        let mut redirects = 0;
        loop {
            let left = deadline.left();
            if left.is_zero() {
                return Err(deadline.timed_out());
            }
            let answer = deadline.within(left, self.send(&url, credentials, left)).await?;
            let status = answer.status();
            if status.is_redirection() {
                let next = answer.location().and_then(|l| url.join(l).ok());
                answer.discard();
                let Some(next) = next else {
                    return Err(ProbeFailure::unreachable(format!(
                        "HTTP {status} without a usable Location"
                    )));
                };
                allowed(self.target.follow_redirects, &url, &next)
                    .map_err(|why| ProbeFailure::unreachable(format!("HTTP {status}: {why}")))?;
                redirects += 1;
                if redirects > MAX_REDIRECTS {
                    return Err(ProbeFailure::unreachable(format!("more than {MAX_REDIRECTS} redirects")));
                }
                if next.host_str() != url.host_str() {
                    // Credentials are for the configured host only.
                    credentials = false;
                }
                url = next;
                continue;
            }
            if !status.is_success() {
                answer.discard();
                return Err(ProbeFailure::unreachable(format!("HTTP {status}")));
            }
            // gitstate asks for no encoding and decodes none: a body that says it is
            // encoded is not what it looks like (a gzip bomb, or plain text that lies).
            if let Some(enc) = answer.content_encoding()
                && !enc.eq_ignore_ascii_case(b"identity")
            {
                let shown: String = String::from_utf8_lossy(enc).chars().take(40).collect();
                return Err(ProbeFailure::invalid(format!(
                    "Content-Encoding {shown:?}: gitstate asked for none and decodes none"
                )));
            }
            let cap = self.target.max_bytes;
            if answer.content_length().is_some_and(|n| n > cap as u64) {
                return Err(ProbeFailure::invalid(format!("body larger than max_bytes ({cap} bytes)")));
            }
            let body = deadline.within(deadline.left(), answer.body(cap)).await?;
            return parse_body(&body, self.target.sha_pointer.as_deref());
        }
    }
}

impl Drop for HttpProbe {
    fn drop(&mut self) {
        let gone = self.shared.origins.remove(&self.urls);
        if let Some(pool) = &self.shared.plain {
            gone.iter().for_each(|o| pool.forget(o));
        }
    }
}

#[async_trait]
impl ActualStateProbe for HttpProbe {
    fn name(&self) -> &str {
        "http"
    }

    async fn observe(&self, _cx: &ProbeContext<'_>) -> Result<Vec<Reading>, ProbeFailure> {
        Ok(futures::future::join_all(self.urls.iter().map(|u| self.shared.read(u))).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::Header;

    fn target(url: &str, headers: Vec<Header>) -> HttpTarget {
        let mut t = HttpTarget::new(vec![Url::parse(url).unwrap()]);
        t.headers = headers;
        t
    }

    /// Probes of the same settings share one copy of them (one per discover block at
    /// 50,000 environments); other headers — secrets — or another keep-alive never do.
    #[test]
    fn probes_share_their_settings_only_when_they_are_the_same() {
        let clients = HttpClients::new(4).unwrap();
        let token = |v: &str| vec![Header::new("Authorization", v).unwrap()];
        let a = HttpProbe::new(&clients, target("http://127.0.0.1:1/a", token("Bearer x"))).unwrap();
        let b = HttpProbe::new(&clients, target("http://127.0.0.1:1/b", token("Bearer x"))).unwrap();
        let c = HttpProbe::new(&clients, target("http://127.0.0.1:1/c", token("Bearer y"))).unwrap();
        assert!(Arc::ptr_eq(&a.shared, &b.shared));
        assert!(!Arc::ptr_eq(&a.shared, &c.shared));
        assert_eq!(b.urls[0].path(), "/b");
        let other = clients.clone().with_keep_alive(KeepAlive::Every);
        let d = HttpProbe::new(&other, target("http://127.0.0.1:1/d", token("Bearer x"))).unwrap();
        assert!(!Arc::ptr_eq(&a.shared, &d.shared));
        // Gone with its last probe: a new one makes its own again.
        let weak = Arc::downgrade(&c.shared);
        drop(c);
        assert!(weak.upgrade().is_none());
    }
}
