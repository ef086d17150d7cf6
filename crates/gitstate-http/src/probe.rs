//! The well-known-file probe: GET each URL of a target and read the commit from the body.
//! Entry types: [`HttpProbe`] (one target) and [`HttpClients`] (the shared connection pool
//! and in-flight limit every probe uses).
//!
//! Every read is bounded: a total deadline per instance (across redirects and the body),
//! a connect timeout, a body cap (`max_bytes`, checked against `Content-Length` and while
//! streaming), at most three redirects. Whatever a target does, the outcome is a reading:
//! `unreachable` or `invalid` with a clear error, never a hang, a crash or `in_sync`.
//!
//! Which connections are kept: by default, only to an origin (scheme, host, port) that
//! more than one URL names, where the next request of the pass can reuse them; a request
//! to any other origin says `Connection: close`, so a one-shot pass over thousands of
//! hosts holds no more sockets than the requests in flight. A loop that polls the same
//! hosts again ([`KeepAlive::Every`], what `watch` uses) keeps one to every plain-HTTP
//! origin, so that a pass costs no handshakes.
//!
//! Plain `http://` URLs are fetched by a small HTTP/1.1 client of this crate whose idle
//! connection is a socket and a few hundred bytes (at most half the open-file limit of
//! them are kept). Everything else (TLS, a proxy from `http_proxy`/`all_proxy`,
//! credentials in the URL) goes through reqwest, whose idle connections cost some 15 KB
//! each: those are kept to shared origins only, whatever the mode.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use gitstate_core::redact_url;
use gitstate_core::{ActualStateProbe, ProbeContext, ProbeFailure, Reading};
use gitstate_core::{error_chain as chain, error_chain_after as chain_after};
use reqwest::header::{CONNECTION, CONTENT_ENCODING, HeaderMap, LOCATION};
use tokio::sync::Semaphore;
use url::Url;

use crate::body::parse_body;
use crate::error::HttpError;
use crate::plain::Pool;
use crate::redirect::{FollowRedirects, MAX_REDIRECTS, allowed};

/// Connect timeout of every request (SPEC §5).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The HTTP clients of a process: one connection pool for the default trust store, one
/// per custom CA file, and a limit on requests in flight shared by every probe.
#[derive(Clone)]
pub struct HttpClients {
    default: reqwest::Client,
    custom: Arc<Mutex<HashMap<PathBuf, reqwest::Client>>>,
    in_flight: Arc<Semaphore>,
    origins: Origins,
    user_agent: String,
    /// Kept connections of the plain-HTTP client; `None` when a proxy is configured.
    plain: Option<Arc<Pool>>,
    keep_alive: KeepAlive,
}

/// Which idle connections are kept for the next request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeepAlive {
    /// Only to an origin more than one URL names (the default): for a one-shot pass.
    #[default]
    Shared,
    /// To every plain-HTTP origin too: for a loop that polls the same hosts again.
    Every,
}

/// How many configured URLs name each origin: keep-alive pays only where it is above one.
#[derive(Clone, Default)]
struct Origins(Arc<Mutex<HashMap<url::Origin, usize>>>);

impl Origins {
    fn add(&self, urls: &[Url]) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for u in urls {
            *map.entry(u.origin()).or_default() += 1;
        }
    }

    /// Forgets a dropped probe's URLs: watch rebuilds probes when discovered environments
    /// change, and must not count an origin twice. Answers the origins no URL names now.
    fn remove(&self, urls: &[Url]) -> Vec<url::Origin> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut gone = Vec::new();
        for u in urls {
            if let std::collections::hash_map::Entry::Occupied(mut n) = map.entry(u.origin()) {
                *n.get_mut() -= 1;
                if *n.get() == 0 {
                    gone.push(n.remove_entry().0);
                }
            }
        }
        gone
    }

    fn shared(&self, url: &Url) -> bool {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&url.origin()).is_some_and(|&n| n > 1)
    }
}

/// Whether reqwest would send plain-HTTP requests through a proxy (it reads these).
fn proxied() -> bool {
    ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"]
        .iter()
        .any(|k| std::env::var_os(k).is_some_and(|v| !v.is_empty()))
}

/// Idle plain-HTTP connections kept at most: half the open-file limit, the other half
/// left for requests in flight, Git, state files and remediation commands.
fn idle_cap() -> usize {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    usize::try_from(soft.unwrap_or(65_536) / 2).unwrap_or(usize::MAX)
}

fn builder(user_agent: &str) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        // Redirects are followed by hand, with the rules of SPEC §8.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(user_agent)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
}

impl HttpClients {
    /// Clients allowing `concurrency` requests in flight across all probes.
    pub fn new(concurrency: usize) -> Result<Self, HttpError> {
        let user_agent = format!("gitstate/{}", env!("CARGO_PKG_VERSION"));
        let default = builder(&user_agent).build().map_err(|e| HttpError::Client { message: chain(&e) })?;
        Ok(Self {
            default,
            custom: Arc::default(),
            in_flight: Arc::new(Semaphore::new(concurrency.max(1))),
            origins: Origins::default(),
            user_agent,
            plain: (!proxied()).then(|| Arc::new(Pool::new(idle_cap()))),
            keep_alive: KeepAlive::Shared,
        })
    }

    /// The same clients, keeping connections as `mode` says (for probes made after).
    pub fn with_keep_alive(mut self, mode: KeepAlive) -> Self {
        self.keep_alive = mode;
        self
    }

    /// The client trusting only the CAs in `ca_file` (PEM), built once per file.
    pub(crate) fn with_ca_file(&self, ca_file: &Path) -> Result<reqwest::Client, HttpError> {
        let mut map = self.custom.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(ca_file) {
            return Ok(c.clone());
        }
        let pem = std::fs::read(ca_file)
            .map_err(|e| HttpError::CaFile { path: ca_file.to_path_buf(), message: e.to_string() })?;
        let bad = |message: String| HttpError::CaFile { path: ca_file.to_path_buf(), message };
        let tls = crate::tls::ca_file_config(&pem).map_err(bad)?;
        let client = builder(&self.user_agent)
            .tls_backend_preconfigured(tls)
            .build()
            .map_err(|e| HttpError::CaFile { path: ca_file.to_path_buf(), message: chain(&e) })?;
        map.insert(ca_file.to_path_buf(), client.clone());
        Ok(client)
    }

    /// The client for the default trust store.
    pub(crate) fn default_client(&self) -> &reqwest::Client {
        &self.default
    }
}

/// One HTTP target's settings (SPEC §5 `[environments.targets.http]`), validated. Its
/// `Debug` redacts URL credentials, query values and header values.
#[derive(Clone)]
pub struct HttpTarget {
    /// The URLs, one instance each.
    pub urls: Vec<Url>,
    /// Where the commit is in the JSON body; auto-detected when `None`.
    pub sha_pointer: Option<String>,
    /// Total time per instance, redirects and body included.
    pub timeout: Duration,
    /// Larger bodies are `invalid`, read no further.
    pub max_bytes: usize,
    /// Extra request headers (values are secrets: never shown).
    pub headers: Vec<crate::Header>,
    /// A PEM file of CAs to trust instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// Which redirects to follow.
    pub follow_redirects: FollowRedirects,
}

impl std::fmt::Debug for HttpTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use gitstate_core::RedactedUrl;
        f.debug_struct("HttpTarget")
            .field("urls", &self.urls.iter().map(|u| RedactedUrl(u.as_str())).collect::<Vec<_>>())
            .field("sha_pointer", &self.sha_pointer)
            .field("timeout", &self.timeout)
            .field("max_bytes", &self.max_bytes)
            .field("headers", &self.headers)
            .field("ca_file", &self.ca_file)
            .field("follow_redirects", &self.follow_redirects)
            .finish()
    }
}

impl HttpTarget {
    /// Defaults: 10 s timeout, 64 KiB cap, same-host redirects.
    pub fn new(urls: Vec<Url>) -> Self {
        Self {
            urls,
            sha_pointer: None,
            timeout: Duration::from_secs(10),
            max_bytes: 65_536,
            headers: Vec::new(),
            ca_file: None,
            follow_redirects: FollowRedirects::SameHost,
        }
    }
}

/// Reads the commit of every URL of one target.
pub struct HttpProbe {
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

/// A response from either client.
enum Answer<'p> {
    Plain(crate::plain::Response<'p>),
    Reqwest(reqwest::Response),
}

impl Answer<'_> {
    fn status(&self) -> reqwest::StatusCode {
        match self {
            Answer::Plain(r) => r.head.status,
            Answer::Reqwest(r) => r.status(),
        }
    }

    fn location(&self) -> Option<&str> {
        match self {
            Answer::Plain(r) => r.head.location.as_deref(),
            Answer::Reqwest(r) => r.headers().get(LOCATION).and_then(|l| l.to_str().ok()),
        }
    }

    fn content_encoding(&self) -> Option<&[u8]> {
        match self {
            Answer::Plain(r) => r.head.content_encoding.as_deref(),
            Answer::Reqwest(r) => r.headers().get(CONTENT_ENCODING).map(|v| v.as_bytes()),
        }
    }

    /// Done with an answer whose body is not read.
    fn discard(self) {
        if let Answer::Plain(r) = self {
            r.discard();
        }
    }

    fn content_length(&self) -> Option<u64> {
        match self {
            Answer::Plain(r) => r.head.content_length,
            Answer::Reqwest(r) => r.content_length(),
        }
    }

    /// The body, at most `cap` bytes; the caller bounds the time.
    async fn body(self, cap: usize) -> Result<Vec<u8>, ProbeFailure> {
        let mut resp = match self {
            Answer::Plain(r) => return r.body(cap).await,
            Answer::Reqwest(r) => r,
        };
        let mut body = Vec::new();
        loop {
            match resp.chunk().await {
                Err(e) if e.is_timeout() => return Err(ProbeFailure::unreachable("timed out")),
                Err(e) => {
                    return Err(ProbeFailure::unreachable(format!("reading the body: {}", describe(&e))));
                }
                Ok(None) => return Ok(body),
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > cap {
                        return Err(ProbeFailure::invalid(format!(
                            "body larger than max_bytes ({cap} bytes)"
                        )));
                    }
                    body.extend_from_slice(&chunk);
                }
            }
        }
    }
}

impl HttpProbe {
    /// A probe using the shared `clients`.
    pub fn new(clients: &HttpClients, target: HttpTarget) -> Result<Self, HttpError> {
        let client = match &target.ca_file {
            Some(ca) => clients.with_ca_file(ca)?,
            None => clients.default.clone(),
        };
        let headers = crate::header::header_map(&target.headers);
        let header_lines = crate::header::header_lines(&target.headers);
        clients.origins.add(&target.urls);
        Ok(Self {
            target,
            client,
            in_flight: clients.in_flight.clone(),
            origins: clients.origins.clone(),
            headers,
            header_lines,
            plain: clients.plain.clone(),
            keep_alive: clients.keep_alive,
            user_agent: clients.user_agent.clone(),
        })
    }

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
            Err(e) if e.is_timeout() => Err(ProbeFailure::unreachable("timed out")),
            Err(e) => Err(ProbeFailure::unreachable(describe(&e))),
        }
    }

    async fn read(&self, url: &Url) -> Reading {
        // The deadline starts when the request may start, not while it waits for a slot.
        let permit = self.in_flight.acquire().await;
        let start = Instant::now();
        let result = match permit {
            Ok(_permit) => self.fetch(url, start + self.target.timeout).await,
            Err(_) => Err(ProbeFailure::unreachable("probe shut down")),
        };
        Reading { instance: redact_url(url.as_str()), result, elapsed: start.elapsed() }
    }

    async fn fetch(
        &self,
        first: &Url,
        deadline: Instant,
    ) -> Result<gitstate_core::ReportedCommit, ProbeFailure> {
        let timeout = self.target.timeout;
        let timed_out = || ProbeFailure::unreachable(format!("timed out after {}", humanize(timeout)));
        let mut url = first.clone();
        let mut credentials = true;
        let mut redirects = 0;
        // A reqwest timeout inside the deadline reads "timed out": say after how long.
        fn bounded<T>(
            r: Result<T, ProbeFailure>,
            timed_out: impl Fn() -> ProbeFailure,
        ) -> Result<T, ProbeFailure> {
            r.map_err(|f| if f.message == "timed out" { timed_out() } else { f })
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(timed_out());
            }
            let answer = match tokio::time::timeout(left, self.send(&url, credentials, left)).await {
                Err(_) => return Err(timed_out()),
                Ok(r) => bounded(r, timed_out)?,
            };
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
            let left = deadline.saturating_duration_since(Instant::now());
            let body = match tokio::time::timeout(left, answer.body(cap)).await {
                Err(_) => return Err(timed_out()),
                Ok(r) => bounded(r, timed_out)?,
            };
            return parse_body(&body, self.target.sha_pointer.as_deref());
        }
    }
}

impl Drop for HttpProbe {
    fn drop(&mut self) {
        let gone = self.origins.remove(&self.target.urls);
        if let Some(pool) = &self.plain {
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
        Ok(futures::future::join_all(self.target.urls.iter().map(|u| self.read(u))).await)
    }
}

/// A reqwest error and its causes on one line, without the URL (it may hold secrets and
/// is the instance id anyway).
pub(crate) fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_connect() {
        "cannot connect"
    } else if e.is_request() {
        "request failed"
    } else if e.is_body() || e.is_decode() {
        "bad response body"
    } else {
        "HTTP error"
    };
    chain_after(kind.to_owned(), std::error::Error::source(e))
}

fn humanize(d: Duration) -> String {
    if d.subsec_millis() == 0 { format!("{}s", d.as_secs()) } else { format!("{}ms", d.as_millis()) }
}
