//! `[watch.auth]` (SPEC §20): who is asking. HTTP basic against bcrypt hashes (checked on
//! a bounded blocking pool; a success remembered under a salted SHA-256 of the
//! credentials, so polling clients cost nothing; an unknown user checked against a dummy
//! hash, so the time does not tell), or a reverse proxy's header from `trusted_proxies`
//! only. Wrong credentials are limited: 5 a minute per (address, user), 30 per address
//! (IPv6 per /64), then `429` without checking anything.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use sha2::Digest as _;

use crate::config::{AuthConfig, Role};
use crate::serve::Request;

/// Wrong credentials a minute from one address for one user, then `429`.
pub const PER_USER: usize = 5;
/// Wrong credentials a minute from one address, whatever the user.
pub const PER_ADDRESS: usize = 30;
const WINDOW: Duration = Duration::from_secs(60);
/// bcrypt checks at once.
const CHECKS: usize = 2;
/// Successful checks remembered (then forgotten all at once).
const REMEMBERED: usize = 4096;
/// Longest user name a trusted header may carry.
const MAX_HEADER_USER: usize = 128;

/// Someone authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Who {
    /// The user's name.
    pub name: String,
    /// What they may do.
    pub role: Role,
}

/// Why a request is not let in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No or wrong credentials: `401`.
    Unauthorized,
    /// Too many wrong credentials: `429`, and when to try again.
    TooMany(Duration),
}

/// The gate of a listener with `[watch.auth]`.
pub struct Gate {
    config: AuthConfig,
    salt: [u8; 32],
    dummy: String,
    remembered: Mutex<HashMap<[u8; 32], Who>>,
    failures: Mutex<Failures>,
    checks: Arc<tokio::sync::Semaphore>,
}

#[derive(Default)]
struct Failures {
    by_user: HashMap<(IpKey, String), VecDeque<Instant>>,
    by_address: HashMap<IpKey, VecDeque<Instant>>,
}

/// An address as limits count it: IPv4 whole, IPv6 by its /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpKey(u128);

impl IpKey {
    /// `ip`'s key.
    pub fn of(ip: IpAddr) -> Self {
        match normalise(ip) {
            IpAddr::V4(v4) => IpKey(u32::from(v4) as u128),
            IpAddr::V6(v6) => IpKey((u128::from(v6) >> 64) << 64 | 1),
        }
    }
}

/// IPv4-mapped IPv6 addresses as the IPv4 address they are.
pub fn normalise(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl Gate {
    /// The gate `config` describes.
    pub fn new(config: AuthConfig) -> Self {
        let mut salt = [0u8; 32];
        getrandom::fill(&mut salt).expect("the system's random numbers");
        // A hash of a password nobody has, at the cost of the first user's (or 10).
        let cost = config.users.first().and_then(|u| u.password_hash.get(4..6)?.parse().ok()).unwrap_or(10);
        let dummy = bcrypt::hash("gitstate: not a user", cost).expect("bcrypt of a fixed password");
        Self {
            config,
            salt,
            dummy,
            remembered: Mutex::default(),
            failures: Mutex::default(),
            checks: Arc::new(tokio::sync::Semaphore::new(CHECKS)),
        }
    }

    /// Whether `/metrics` is open.
    pub fn metrics_public(&self) -> bool {
        self.config.metrics_public
    }

    /// Whether `peer` is one of the trusted proxies.
    fn trusted(&self, peer: IpAddr) -> bool {
        let peer = normalise(peer);
        self.config.trusted_proxies.iter().any(|n| n.contains(&peer))
    }

    /// The client's address for limits: behind a trusted proxy, the last address of its
    /// `X-Forwarded-For`.
    pub fn client(&self, r: &Request) -> IpAddr {
        let peer = normalise(r.peer.ip());
        if !self.trusted(peer) {
            return peer;
        }
        r.headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|a| a.trim().parse::<IpAddr>().ok())
            .next_back()
            .map_or(peer, normalise)
    }

    /// Who sent `r`, or why they are not let in.
    pub async fn check(&self, r: &Request) -> Result<Who, Denied> {
        if let Some(header) = &self.config.trusted_header
            && self.trusted(r.peer.ip())
        {
            let values: Vec<_> = r.headers.get_all(header.as_str()).iter().collect();
            if !values.is_empty() {
                if values.len() > 1 {
                    return Err(Denied::Unauthorized);
                }
                let name = values[0].to_str().map_err(|_| Denied::Unauthorized)?.trim();
                if name.is_empty() || name.len() > MAX_HEADER_USER || name.chars().any(char::is_control) {
                    return Err(Denied::Unauthorized);
                }
                let role = if self.config.header_operators.iter().any(|o| o == name) {
                    Role::Operator
                } else {
                    self.config.header_role
                };
                return Ok(Who { name: name.to_owned(), role });
            }
        }
        if self.config.users.is_empty() {
            return Err(Denied::Unauthorized);
        }
        let (user, password) = basic(r).ok_or(Denied::Unauthorized)?;
        let key = self.remember_key(&user, &password);
        if let Some(who) = self.remembered.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok(who.clone());
        }
        let client = IpKey::of(self.client(r));
        if let Some(wait) = self.limited(client, &user) {
            tracing::warn!(address = %self.client(r), user = self.known(&user), "login refused: too many wrong credentials");
            return Err(Denied::TooMany(wait));
        }
        let found = self.config.users.iter().find(|u| u.name == user);
        let hash = found.map_or(self.dummy.clone(), |u| u.password_hash.clone());
        let permit = self.checks.clone().acquire_owned().await.map_err(|_| Denied::Unauthorized)?;
        let ok = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            bcrypt::verify(password, &hash).unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        match found {
            Some(u) if ok => {
                let who = Who { name: u.name.clone(), role: u.role };
                let mut remembered = self.remembered.lock().unwrap_or_else(|p| p.into_inner());
                if remembered.len() >= REMEMBERED {
                    remembered.clear();
                }
                remembered.insert(key, who.clone());
                Ok(who)
            }
            _ => {
                tracing::warn!(address = %self.client(r), user = self.known(&user), "login failed: wrong credentials");
                self.failed(client, &user);
                Err(Denied::Unauthorized)
            }
        }
    }

    /// A user name fit for the log: a configured user's, never what a stranger typed.
    fn known<'a>(&self, user: &'a str) -> &'a str {
        if self.config.users.iter().any(|u| u.name == user) { user } else { "(not a user)" }
    }

    fn remember_key(&self, user: &str, password: &str) -> [u8; 32] {
        let mut h = sha2::Sha256::new();
        h.update(self.salt);
        h.update(user.as_bytes());
        h.update([0]);
        h.update(password.as_bytes());
        h.finalize().into()
    }

    /// How long until `client` may try again, when it is over a limit.
    fn limited(&self, client: IpKey, user: &str) -> Option<Duration> {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let over = |q: &mut VecDeque<Instant>, limit: usize| {
            while q.front().is_some_and(|t| now.duration_since(*t) >= WINDOW) {
                q.pop_front();
            }
            (q.len() >= limit).then(|| WINDOW.saturating_sub(now.duration_since(q[0])))
        };
        let by_user = f.by_user.get_mut(&(client, user.to_owned())).and_then(|q| over(q, PER_USER));
        let by_address = f.by_address.get_mut(&client).and_then(|q| over(q, PER_ADDRESS));
        by_user.into_iter().chain(by_address).max()
    }

    fn failed(&self, client: IpKey, user: &str) {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        // Old entries go when the maps grow (a scan of addresses that stopped trying).
        if f.by_address.len() > 10_000 {
            f.by_address.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < WINDOW));
            f.by_user.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < WINDOW));
        }
        f.by_user.entry((client, user.to_owned())).or_default().push_back(now);
        f.by_address.entry(client).or_default().push_back(now);
    }
}

/// The user and password of an `Authorization: Basic` header.
fn basic(r: &Request) -> Option<(String, String)> {
    let value = r.headers.get("authorization")?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate() -> Gate {
        Gate::new(AuthConfig {
            users: Vec::new(),
            trusted_header: Some("x-forwarded-user".into()),
            trusted_proxies: vec!["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()],
            header_role: Role::Viewer,
            header_operators: vec!["ada@example.com".into()],
            metrics_public: false,
        })
    }

    fn from(peer: &str, headers: &[(&str, &str)]) -> Request {
        let mut map = hyper::HeaderMap::new();
        for (k, v) in headers {
            map.append(hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        Request {
            method: "GET".into(),
            path: "/".into(),
            query: None,
            headers: map,
            body: Default::default(),
            peer: std::net::SocketAddr::new(peer.parse().unwrap(), 40000),
            tls: false,
        }
    }

    #[tokio::test]
    async fn a_trusted_proxy_names_the_user_and_nobody_else_can() {
        let g = gate();
        let who = |peer: &str, headers: &[(&str, &str)]| {
            let r = from(peer, headers);
            let g = &g;
            async move { g.check(&r).await }
        };
        let ada = [("x-forwarded-user", "ada@example.com")];
        assert_eq!(
            who("10.1.2.3", &ada).await,
            Ok(Who { name: "ada@example.com".into(), role: Role::Operator })
        );
        // IPv4-mapped IPv6 is the IPv4 address.
        assert_eq!(who("::ffff:10.1.2.3", &ada).await.map(|w| w.role), Ok(Role::Operator));
        let bob = [("x-forwarded-user", "bob@example.com")];
        assert_eq!(who("fd00::1", &bob).await.map(|w| w.role), Ok(Role::Viewer));
        // From outside trusted_proxies: ignored (no users: nobody else gets in).
        assert_eq!(who("192.0.2.1", &ada).await, Err(Denied::Unauthorized));
        // Duplicated, empty, too long or with control characters: refused.
        let twice = [("x-forwarded-user", "ada@example.com"), ("x-forwarded-user", "eve")];
        assert_eq!(who("10.0.0.1", &twice).await, Err(Denied::Unauthorized));
        assert_eq!(who("10.0.0.1", &[("x-forwarded-user", " ")]).await, Err(Denied::Unauthorized));
        let long = "a".repeat(129);
        assert_eq!(who("10.0.0.1", &[("x-forwarded-user", &long)]).await, Err(Denied::Unauthorized));
        assert_eq!(who("10.0.0.1", &[("x-forwarded-user", "ada\tx")]).await, Err(Denied::Unauthorized));
        // Limits count the client behind the proxy.
        let r = from("10.0.0.1", &[("x-forwarded-for", "198.51.100.7, 203.0.113.9")]);
        assert_eq!(g.client(&r), "203.0.113.9".parse::<IpAddr>().unwrap());
        let r = from("192.0.2.1", &[("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(g.client(&r), "192.0.2.1".parse::<IpAddr>().unwrap(), "only a trusted proxy's");
    }

    #[test]
    fn ipv6_addresses_count_by_their_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(IpKey::of(a), IpKey::of(b));
        assert_ne!(IpKey::of(a), IpKey::of(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(IpKey::of(mapped), IpKey::of("10.0.0.1".parse().unwrap()));
        assert_eq!(normalise(mapped), "10.0.0.1".parse::<IpAddr>().unwrap());
    }
}
