//! Which idle connections are kept for the next request: [`KeepAlive`] (the mode a caller
//! chooses) and [`Origins`] (how many configured URLs name each origin).
//!
//! By default, connections are kept only to an origin (scheme, host, port) that more than
//! one URL names, where the next request of the pass can reuse them; a request to any
//! other origin says `Connection: close`, so a one-shot pass over thousands of hosts holds
//! no more sockets than the requests in flight. A loop that polls the same hosts again
//! ([`KeepAlive::Every`], what `watch` uses) keeps one to every plain-HTTP origin, so that
//! a pass costs no handshakes. Connections of reqwest (TLS, proxies, credentials in the
//! URL) cost some 15 KB each: those are kept to shared origins only, whatever the mode.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use url::Url;

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
pub(crate) struct Origins(Arc<Mutex<HashMap<url::Origin, usize>>>);

impl Origins {
    pub(crate) fn add(&self, urls: &[Url]) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for u in urls {
            *map.entry(u.origin()).or_default() += 1;
        }
    }

    /// Forgets a dropped probe's URLs: watch rebuilds probes when discovered environments
    /// change, and must not count an origin twice. Answers the origins no URL names now.
    pub(crate) fn remove(&self, urls: &[Url]) -> Vec<url::Origin> {
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

    pub(crate) fn shared(&self, url: &Url) -> bool {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&url.origin()).is_some_and(|&n| n > 1)
    }
}
