//! What one HTTP target asks of the probe: [`HttpTarget`], its URLs and bounds.

use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use crate::header::Header;
use crate::redirect::FollowRedirects;
use crate::timeouts::DEFAULT_TIMEOUT;

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
    pub headers: Vec<Header>,
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
            timeout: DEFAULT_TIMEOUT,
            max_bytes: 65_536,
            headers: Vec::new(),
            ca_file: None,
            follow_redirects: FollowRedirects::SameHost,
        }
    }
}
