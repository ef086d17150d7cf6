//! The validated configuration as the rest of gitstate sees it: [`Config`] and its parts,
//! every one whose `Debug` could show a secret redacting it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use gitstate_aws::AwsTarget;
use gitstate_core::{EnvName, Policy};
use gitstate_http::{Header, HttpTarget, WebhookFormat};
use url::Url;

use super::*;

/// The default ref prefix (SPEC §5).
pub const DEFAULT_REF_PREFIX: &str = "refs/heads/environments/";

/// A configuration error: where, and what.
#[derive(Debug)]
pub struct ConfigError {
    /// The file, as given.
    pub file: String,
    /// 1-based line and column, when known.
    pub at: Option<(usize, usize)>,
    /// What is wrong and what to do.
    pub message: String,
}

impl std::error::Error for ConfigError {}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.at {
            Some((l, c)) => write!(f, "{}:{l}:{c}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// Where the expected state lives.
#[derive(Clone, PartialEq, Eq)]
pub enum RepoLocation {
    /// A repository on this machine.
    Local(PathBuf),
    /// A URL (credentials never shown).
    Remote(String),
}

/// `[source]`.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// The repository.
    pub repo: RepoLocation,
    /// Environments' refs default to this + name.
    pub ref_prefix: String,
    /// Keep a bare mirror of a remote under the state dir (default for a remote; `false`
    /// is the explicit refs-only mode, where every difference is `drifted`).
    pub mirror: bool,
    /// A remote's whole ref listing or fetch may take this long (`[source] timeout`).
    pub timeout: Duration,
    /// `commit_url` / `compare_url` as configured (unset: derived from the repository's
    /// github.com / gitlab.com / codeberg.org remote when the plan is made).
    pub links: gitstate_core::Links,
    /// `[source.trust]`: deploy only commits signed by these keys (SPEC §18).
    pub trust: Option<TrustConfig>,
}

/// `[source.trust]`, its files read and checked.
#[derive(Clone)]
pub struct TrustConfig {
    /// The keys and the policy, ready for the controller.
    pub policy: gitstate_runtime::trust::TrustPolicy,
}

impl std::fmt::Debug for TrustConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustConfig")
            .field("require", &self.policy.require)
            .field("block", &self.policy.block)
            .field("keys", &self.policy.trust.digest())
            .finish()
    }
}

/// What a target is.
#[derive(Debug, Clone)]
pub enum TargetKind {
    /// `[environments.targets.http]`.
    Http(HttpTarget),
    /// `[environments.targets.aws]`.
    Aws(AwsTarget),
    /// `[environments.targets.exec]`.
    Exec(gitstate_process::ExecTarget),
}

/// A target.
#[derive(Debug, Clone)]
pub struct TargetConfig {
    /// Its name, unique in the environment.
    pub name: String,
    /// Its kind and settings.
    pub kind: TargetKind,
}

/// `[environments.remediate]`.
#[derive(Clone)]
pub enum RemediateConfig {
    /// Run argv (never a shell) in the config's directory.
    Command {
        /// Program and arguments.
        argv: Vec<String>,
        /// Killed (process group) after this long.
        timeout: Duration,
    },
    /// POST to a URL.
    Webhook {
        /// The URL to POST to.
        url: Url,
        /// Extra headers (secret values).
        headers: Headers,
        /// A body template (`${GITSTATE_…}` filled at remediation time); the default JSON when absent.
        body: Option<String>,
        /// Whole request.
        timeout: Duration,
    },
}

/// One environment.
#[derive(Debug, Clone)]
pub struct EnvironmentConfig {
    /// Its name.
    pub name: EnvName,
    /// Its ref, full or short.
    pub reference: String,
    /// Its targets.
    pub targets: Vec<TargetConfig>,
    /// How to redeploy it.
    pub remediate: Option<RemediateConfig>,
    /// Its policy (global `[policy]` with its own overrides).
    pub policy: Policy,
    /// Its freeze windows (`[[policy.windows]]`, or its own).
    pub windows: Vec<gitstate_runtime::controls::FreezeWindow>,
}

/// Request headers; values may be secrets and are never shown.
pub type Headers = Vec<Header>;

// `Debug` of what may hold a secret shows it redacted (SPEC §8): URLs through
// `redact_url`, header values and body templates as `***`.
use gitstate_core::{Redacted, RedactedUrl};

impl std::fmt::Debug for RepoLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local(p) => f.debug_tuple("Local").field(p).finish(),
            Self::Remote(u) => f.debug_tuple("Remote").field(&RedactedUrl(u)).finish(),
        }
    }
}

impl std::fmt::Debug for RemediateConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Command { argv, timeout } => {
                f.debug_struct("Command").field("argv", argv).field("timeout", timeout).finish()
            }
            Self::Webhook { url, headers, body, timeout } => f
                .debug_struct("Webhook")
                .field("url", &RedactedUrl(url.as_str()))
                .field("headers", headers)
                .field("body", &body.as_ref().map(|_| Redacted))
                .field("timeout", timeout)
                .finish(),
        }
    }
}

impl std::fmt::Debug for AlertmanagerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertmanagerConfig")
            .field("url", &RedactedUrl(self.url.as_str()))
            .field("headers", &self.headers)
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl std::fmt::Debug for AlertWebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A chat webhook's path is its secret (Slack's /services/T0/B0/XXXX): the origin only.
        let origin = format!("{}/***", self.url.origin().ascii_serialization());
        f.debug_struct("AlertWebhookConfig")
            .field("url", &origin)
            .field("format", &self.format)
            .field("headers", &self.headers)
            .finish()
    }
}

/// `[alerts.alertmanager]`.
#[derive(Clone)]
pub struct AlertmanagerConfig {
    /// Base URL (`/api/v2/alerts` is appended).
    pub url: Url,
    /// Extra headers.
    pub headers: Headers,
    /// How long each post keeps an open alarm firing (`endsAt` = now + ttl); unset: 4 ×
    /// `watch.interval` under `watch`, one hour for `reconcile` (which may run from cron).
    pub ttl: Option<std::time::Duration>,
}

/// `[alerts.webhook]`, or each `[[alerts.webhook]]`.
#[derive(Clone)]
pub struct AlertWebhookConfig {
    /// Its name in metrics, logs and the outbox: `name`, else `webhook` for the first and
    /// `webhook-2`, `webhook-3`… for the others.
    pub name: String,
    /// Where to POST.
    pub url: Url,
    /// `json` or `slack`.
    pub format: WebhookFormat,
    /// Extra headers.
    pub headers: Headers,
}

/// `[alerts]`.
#[derive(Debug, Clone, Default)]
pub struct AlertsConfig {
    /// Alertmanager, if configured.
    pub alertmanager: Option<AlertmanagerConfig>,
    /// The webhooks (`[alerts.webhook]` or `[[alerts.webhook]]`), in order.
    pub webhooks: Vec<AlertWebhookConfig>,
    /// How long a cause shared by several environments may form before its first
    /// notification (SPEC §17; default 0s).
    pub group_wait: std::time::Duration,
}

/// `[watch.webhook]`: push events from the forge (SPEC §13).
#[derive(Clone)]
pub struct WebhookConfig {
    /// Its own listener.
    pub listen: SocketAddr,
    /// The shared secret (HMAC key, or GitLab's token).
    pub secret: String,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig").field("listen", &self.listen).field("secret", &Redacted).finish()
    }
}

/// `[watch]`.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    /// Full pass period.
    pub interval: Duration,
    /// ± this fraction of the interval.
    pub jitter: f64,
    /// Ref poll period.
    pub ref_poll: Duration,
    /// How often an environment that is not in sync (converging, remediating, backing
    /// off) is probed again, so convergence and its lag are seen within seconds.
    pub converging_poll: Duration,
    /// Probes in flight.
    pub concurrency: usize,
    /// Metrics and status listener.
    pub listen: SocketAddr,
    /// Push webhooks, when configured.
    pub webhook: Option<WebhookConfig>,
    /// `[watch.tls]`: HTTPS on both listeners (SPEC §20).
    pub tls: Option<TlsConfig>,
    /// `[watch.auth]`: who may read and act on the `listen` listener (SPEC §20).
    pub auth: Option<AuthConfig>,
}

/// `[watch.tls]`.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// The certificate chain (PEM), relative paths resolved.
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// `Strict-Transport-Security: max-age`, when set.
    pub hsts: Option<Duration>,
}

/// What a user may do on the dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Reads everything.
    Viewer,
    /// Reads and acts.
    Operator,
}

impl Role {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            _ => None,
        }
    }

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
        }
    }
}

/// One `[watch.auth] users` entry.
#[derive(Clone)]
pub struct User {
    /// The name.
    pub name: String,
    /// The bcrypt hash (`$2y$…`, `$2b$…`).
    pub password_hash: String,
    /// The role.
    pub role: Role,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User").field("name", &self.name).field("role", &self.role).finish_non_exhaustive()
    }
}

/// `[watch.auth]`.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Basic-auth users.
    pub users: Vec<User>,
    /// The header a reverse proxy names the user in.
    pub trusted_header: Option<String>,
    /// Where that header is believed from.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The role of header-authenticated users…
    pub header_role: Role,
    /// …except these, who are operators.
    pub header_operators: Vec<String>,
    /// `/metrics` needs no user.
    pub metrics_public: bool,
}

impl AuthConfig {
    pub(super) fn parse(ctx: &Ctx, raw: &toml::Spanned<super::raw::RawAuth>) -> Result<Self, ConfigError> {
        let a = raw.get_ref();
        let mut users: Vec<User> = Vec::new();
        for u in &a.users {
            let r = u.get_ref();
            let name = r.name.get_ref().trim().to_owned();
            if name.is_empty() || name.contains(':') || name.chars().any(char::is_control) {
                return Err(
                    ctx.at(&r.name, "watch.auth.users.name: a name without ':' or control characters")
                );
            }
            if users.iter().any(|x| x.name == name) {
                return Err(ctx.at(&r.name, format!("watch.auth.users: {name:?} is listed twice")));
            }
            let hash = r.password_hash.get_ref().trim().to_owned();
            if !hash.starts_with("$2") || hash.parse::<bcrypt::HashParts>().is_err() {
                return Err(ctx.at(
                    &r.password_hash,
                    "watch.auth.users.password_hash: a bcrypt hash ($2y$ or $2b$, as htpasswd -nBC 10 makes)",
                ));
            }
            let role = Role::parse(r.role.get_ref())
                .ok_or_else(|| ctx.at(&r.role, "watch.auth.users.role: \"viewer\" or \"operator\""))?;
            users.push(User { name, password_hash: hash, role });
        }
        let trusted_header = match &a.trusted_header {
            Some(h) => {
                let name = h.get_ref().trim();
                if hyper::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    return Err(ctx.at(h, format!("watch.auth.trusted_header {name:?} is not a header name")));
                }
                Some(name.to_ascii_lowercase())
            }
            None => None,
        };
        let mut trusted_proxies = Vec::new();
        for p in a.trusted_proxies.iter().flatten() {
            let text = p.get_ref().trim();
            let net = text
                .parse::<ipnet::IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    ctx.at(p, format!("watch.auth.trusted_proxies: {text:?} is not an address or CIDR block"))
                })?;
            trusted_proxies.push(net);
        }
        if trusted_header.is_some() && trusted_proxies.is_empty() {
            return Err(ctx.at(
                raw,
                "watch.auth.trusted_header needs trusted_proxies: the addresses of the proxies that set it",
            ));
        }
        if trusted_header.is_none() && users.is_empty() {
            return Err(ctx.at(raw, "watch.auth: give users, or trusted_header with trusted_proxies"));
        }
        let header_role = match &a.header_role {
            Some(r) => Role::parse(r.get_ref())
                .ok_or_else(|| ctx.at(r, "watch.auth.header_role: \"viewer\" or \"operator\""))?,
            None => Role::Viewer,
        };
        Ok(Self {
            users,
            trusted_header,
            trusted_proxies,
            header_role,
            header_operators: a.header_operators.clone(),
            metrics_public: a.metrics_public,
        })
    }
}

/// The whole configuration, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from.
    pub path: PathBuf,
    /// Its directory: relative paths resolve from here.
    pub dir: PathBuf,
    /// `[source]`.
    pub source: SourceConfig,
    /// `[[environments]]`.
    pub environments: Vec<EnvironmentConfig>,
    /// `[[discover]]`.
    pub discover: Vec<discover::DiscoverConfig>,
    /// `[alerts]`.
    pub alerts: AlertsConfig,
    /// `[watch]`.
    pub watch: WatchConfig,
    /// `[state] dir`, resolved.
    pub state_dir: PathBuf,
    /// How `events.jsonl` is rotated (`[state] events_max_bytes`, `events_keep`).
    pub events: gitstate_runtime::store::Rotation,
    /// `[state] postgres`: state, events, overrides and leadership in PostgreSQL (SPEC §14)
    /// instead of the files of `state_dir`.
    pub postgres: Option<gitstate_postgres::PgOptions>,
    /// `[output] max_commits`: the commits at stake named per instance and side.
    pub max_commits: usize,
}
