//! The HTTP clients of a process, shared by every probe, remediator and sink: entry type
//! [`HttpClients`].
//!
//! Plain `http://` URLs are fetched by the small HTTP/1.1 client of this crate (`plain/`),
//! whose idle connection is a socket and a few hundred bytes (at most half the open-file
//! limit of them are kept). Everything else (TLS, a proxy from `http_proxy`/`all_proxy`,
//! credentials in the URL) goes through reqwest. Which connections either keeps is
//! `keep_alive.rs`'s; their timeouts are `timeouts.rs`'s.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use gitstate_core::error_chain as chain;
use tokio::sync::Semaphore;

use crate::error::HttpError;
use crate::keep_alive::{KeepAlive, Origins};
use crate::plain::Pool;
use crate::timeouts::{CONNECT_TIMEOUT, IDLE_TIMEOUT};

/// The HTTP clients of a process: one connection pool for the default trust store, one
/// per custom CA file, and a limit on requests in flight shared by every probe.
#[derive(Clone)]
pub struct HttpClients {
    pub(crate) default: reqwest::Client,
    custom: Arc<Mutex<HashMap<PathBuf, reqwest::Client>>>,
    pub(crate) in_flight: Arc<Semaphore>,
    pub(crate) origins: Origins,
    pub(crate) user_agent: String,
    /// Kept connections of the plain-HTTP client; `None` when a proxy is configured.
    pub(crate) plain: Option<Arc<Pool>>,
    pub(crate) keep_alive: KeepAlive,
    /// What probes of the same settings share (`probe.rs`), while any probe holds it.
    pub(crate) shared: Arc<Mutex<Vec<std::sync::Weak<crate::probe::Shared>>>>,
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
        .pool_idle_timeout(IDLE_TIMEOUT)
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
            shared: Arc::default(),
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
