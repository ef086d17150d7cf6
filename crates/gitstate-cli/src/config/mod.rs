//! `gitstate.toml`: finding it, parsing it (every error names file:line:column),
//! expanding `${VAR}`, validating names, durations, URLs and refs, and turning it into a
//! typed [`Config`]. `[[discover]]` blocks become environments in [`discover`].

pub mod discover;
pub mod expand;
pub(crate) mod raw;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use gitstate_aws::AwsTarget;
use gitstate_core::git::is_remote_url;
use gitstate_core::{EnvName, Policy};
use gitstate_http::HttpTarget;
use gitstate_http::{HeaderName, HeaderValue};
use toml::Spanned;
use url::Url;

pub use gitstate_http::WebhookFormat;
use raw::{PolicyPatch, RawConfig, RawRemediate, RawTarget};

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
    /// Keep a bare mirror of a remote under the state dir.
    pub mirror: bool,
    /// A remote's whole ref listing or fetch may take this long (`[source] timeout`).
    pub timeout: Duration,
}

/// What a target is.
#[derive(Debug, Clone)]
pub enum TargetKind {
    /// `[environments.targets.http]`.
    Http(HttpTarget),
    /// `[environments.targets.aws]`.
    Aws(AwsTarget),
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
        /// Where.
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
}

/// Request headers; values may be secrets and are never shown.
pub type Headers = Vec<(HeaderName, HeaderValue)>;

// `Debug` of what may hold a secret shows it redacted (SPEC §8): URLs through
// `redact_url`, header values and body templates as `***`.
use gitstate_core::redact::{Redacted, RedactedUrl};

fn header_names(h: &Headers) -> Vec<(&HeaderName, Redacted)> {
    h.iter().map(|(k, _)| (k, Redacted)).collect()
}

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
                .field("headers", &header_names(headers))
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
            .field("headers", &header_names(&self.headers))
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
            .field("headers", &header_names(&self.headers))
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
}

/// `[alerts.webhook]`.
#[derive(Clone)]
pub struct AlertWebhookConfig {
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
    /// A webhook, if configured.
    pub webhook: Option<AlertWebhookConfig>,
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
    /// Probes in flight.
    pub concurrency: usize,
    /// Metrics and status listener.
    pub listen: SocketAddr,
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
}

/// Reads what positions mean in the file, for errors found after parsing.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    file: String,
    text: Arc<str>,
    dir: PathBuf,
}

impl Ctx {
    pub(crate) fn err(
        &self,
        span: Option<std::ops::Range<usize>>,
        message: impl Into<String>,
    ) -> ConfigError {
        let at = span.filter(|s| !(s.start == 0 && s.end == 0)).map(|s| line_col(&self.text, s.start));
        ConfigError { file: self.file.clone(), at, message: message.into() }
    }

    fn at<T>(&self, s: &Spanned<T>, message: impl Into<String>) -> ConfigError {
        self.err(Some(s.span()), message)
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map_or(offset, |i| offset - i - 1) + 1;
    (line, col)
}

/// The config file to use: `-c`, else `$GITSTATE_CONFIG`, else `./gitstate.toml`.
pub fn locate(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    match std::env::var_os("GITSTATE_CONFIG") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from("gitstate.toml"),
    }
}

/// Reads and validates a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: file.clone(),
        at: None,
        message: format!("cannot read the configuration: {e} (use -c FILE or $GITSTATE_CONFIG)"),
    })?;
    parse(path, &text, &|k| std::env::var(k).ok())
}

/// Parses configuration text; `lookup` answers `${VAR}`.
pub fn parse(
    path: &Path,
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let ctx = Ctx { file: file.clone(), text: Arc::from(text), dir: dir.clone() };
    let raw: RawConfig =
        toml::from_str(text).map_err(|e| ctx.err(e.span(), e.message().trim().to_owned()))?;

    let repo = raw.source.repo.get_ref().trim();
    if repo.is_empty() {
        return Err(ctx.at(&raw.source.repo, "source.repo is empty: give a path or a URL"));
    }
    let repo_loc = if is_remote_url(repo) {
        RepoLocation::Remote(expand_at(&ctx, &raw.source.repo, false, lookup)?)
    } else {
        RepoLocation::Local(dir.join(repo))
    };
    let source_timeout = match &raw.source.timeout {
        Some(t) if t.get_ref().0.is_zero() => return Err(ctx.at(t, "source.timeout must be more than 0s")),
        Some(t) => t.get_ref().0,
        None => gitstate_core::git::RemoteRepo::DEFAULT_TIMEOUT,
    };
    if raw.source.mirror && matches!(repo_loc, RepoLocation::Local(_)) {
        return Err(ctx.at(&raw.source.repo, "mirror = true needs a remote URL in source.repo"));
    }
    let ref_prefix = match &raw.source.ref_prefix {
        Some(p) => check_prefix(&ctx, p)?,
        None => DEFAULT_REF_PREFIX.to_owned(),
    };

    let base = apply(&ctx, Policy::default(), &raw.policy, None)?;

    let mut environments = Vec::new();
    let mut seen = BTreeSet::new();
    for e in &raw.environments {
        let name = e.name.get_ref().clone();
        if !seen.insert(name.clone()) {
            return Err(ctx.at(&e.name, format!("environment {name} is defined twice")));
        }
        let reference = match &e.reference {
            Some(r) => {
                check_ref(&ctx, r)?;
                r.get_ref().clone()
            }
            None => format!("{ref_prefix}{name}"),
        };
        let policy = match &e.policy {
            Some(p) => apply(&ctx, base.clone(), p.get_ref(), Some(p.span()))?,
            None => base.clone(),
        };
        environments.push(EnvironmentConfig {
            targets: targets(&ctx, &e.targets, name.as_str(), lookup)?,
            remediate: e.remediate.as_ref().map(|r| remediate(&ctx, r, name.as_str(), lookup)).transpose()?,
            name,
            reference,
            policy,
        });
    }

    let mut discover = Vec::new();
    for d in raw.discover {
        let prefix = match &d.ref_prefix {
            Some(p) => check_prefix(&ctx, p)?,
            None => ref_prefix.clone(),
        };
        let policy = match &d.policy {
            Some(p) => apply(&ctx, base.clone(), p.get_ref(), Some(p.span()))?,
            None => base.clone(),
        };
        // Check the templates now, with a sample name, so errors come at load time.
        targets(&ctx, &d.targets, "example", lookup)?;
        if let Some(r) = &d.remediate {
            remediate(&ctx, r, "example", lookup)?;
        }
        discover.push(discover::DiscoverConfig {
            ref_prefix: prefix,
            exclude: d.exclude.iter().map(|g| g.get_ref().clone()).collect(),
            targets: d.targets,
            remediate: d.remediate,
            policy,
            ctx: ctx.clone(),
        });
    }
    if environments.is_empty() && discover.is_empty() {
        return Err(ctx.err(None, "no [[environments]] and no [[discover]]: nothing to check"));
    }

    let alerts = AlertsConfig {
        alertmanager: raw
            .alerts
            .alertmanager
            .as_ref()
            .map(|a| {
                Ok::<_, ConfigError>(AlertmanagerConfig {
                    url: url_at(&ctx, &a.url, "", lookup)?,
                    headers: headers(&ctx, &a.headers, lookup)?,
                })
            })
            .transpose()?,
        webhook: raw
            .alerts
            .webhook
            .as_ref()
            .map(|w| {
                Ok::<_, ConfigError>(AlertWebhookConfig {
                    url: url_at(&ctx, &w.url, "", lookup)?,
                    format: w.format,
                    headers: headers(&ctx, &w.headers, lookup)?,
                })
            })
            .transpose()?,
    };

    let w = &raw.watch;
    if w.interval.0.is_zero() {
        return Err(ctx.err(None, "watch.interval must be more than 0s"));
    }
    if w.ref_poll.0.is_zero() {
        return Err(ctx.err(None, "watch.ref_poll must be more than 0s"));
    }
    if *w.concurrency.get_ref() == 0 {
        return Err(ctx.at(&w.concurrency, "watch.concurrency must be at least 1"));
    }
    let listen: SocketAddr = w.listen.get_ref().parse().map_err(|_| {
        ctx.at(
            &w.listen,
            format!("watch.listen {:?} is not an address like 127.0.0.1:9464", w.listen.get_ref()),
        )
    })?;
    let watch = WatchConfig {
        interval: w.interval.0,
        jitter: w.jitter.0,
        ref_poll: w.ref_poll.0,
        concurrency: *w.concurrency.get_ref(),
        listen,
    };

    Ok(Config {
        path: path.to_path_buf(),
        dir: dir.clone(),
        source: SourceConfig {
            repo: repo_loc,
            ref_prefix,
            mirror: raw.source.mirror,
            timeout: source_timeout,
        },
        environments,
        discover,
        alerts,
        watch,
        state_dir: dir.join(raw.state.dir.get_ref()),
    })
}

fn check_prefix(ctx: &Ctx, p: &Spanned<String>) -> Result<String, ConfigError> {
    let s = p.get_ref();
    if !s.starts_with("refs/") || !s.ends_with('/') {
        return Err(ctx.at(p, format!("ref_prefix {s:?} must start with \"refs/\" and end with \"/\"")));
    }
    check_ref_text(s.trim_end_matches('/')).map_err(|m| ctx.at(p, m))?;
    Ok(s.clone())
}

fn check_ref(ctx: &Ctx, r: &Spanned<String>) -> Result<(), ConfigError> {
    check_ref_text(r.get_ref()).map_err(|m| ctx.at(r, m))
}

/// git-check-ref-format's rules, enough to refuse what git would.
fn check_ref_text(s: &str) -> Result<(), String> {
    let bad = s.is_empty()
        || s.starts_with('/')
        || s.ends_with('/')
        || s.ends_with('.')
        || s.ends_with(".lock")
        || s.contains("..")
        || s.contains("//")
        || s.contains("@{")
        || s.split('/').any(|c| c.starts_with('.') || c.is_empty())
        || s.chars().any(|c| c.is_ascii_control() || " ~^:?*[\\".contains(c));
    if bad { Err(format!("{s:?} is not a valid Git ref name")) } else { Ok(()) }
}

fn apply(
    ctx: &Ctx,
    mut p: Policy,
    patch: &PolicyPatch,
    span: Option<std::ops::Range<usize>>,
) -> Result<Policy, ConfigError> {
    if let Some(v) = patch.mode {
        p.mode = v;
    }
    if let Some(v) = patch.grace {
        p.grace = v.0;
    }
    if let Some(v) = patch.settle {
        p.settle = v.0;
    }
    if let Some(v) = patch.max_attempts {
        p.max_attempts = v;
    }
    if let Some(v) = patch.backoff {
        p.backoff = v.0;
    }
    if let Some(v) = patch.backoff_max {
        p.backoff_max = v.0;
    }
    if let Some(v) = patch.unreachable_after {
        p.unreachable_after = v;
    }
    if let Some(v) = patch.on_diverged {
        p.on_diverged = v;
    }
    if let Some(v) = patch.renotify {
        p.renotify = v.0;
    }
    p.validate().map_err(|m| ctx.err(span, format!("policy: {m}")))?;
    Ok(p)
}

fn substitute(s: &str, env: &str) -> String {
    s.replace("{environment}", env)
}

fn expand_at(
    ctx: &Ctx,
    s: &Spanned<String>,
    keep_runtime: bool,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    expand::expand(s.get_ref(), keep_runtime, lookup).map_err(|m| ctx.at(s, m))
}

fn url_at(
    ctx: &Ctx,
    s: &Spanned<String>,
    env: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Url, ConfigError> {
    let text = substitute(&expand_at(ctx, s, false, lookup)?, env);
    let shown = gitstate_core::redact::redact_url(&text);
    let url = Url::parse(&text).map_err(|e| ctx.at(s, format!("invalid URL {shown:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ctx.at(s, format!("URL {shown:?} must be http:// or https://")));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ctx.at(s, format!("URL {shown:?} has no host")));
    }
    Ok(url)
}

fn headers(
    ctx: &Ctx,
    map: &BTreeMap<String, Spanned<String>>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Headers, ConfigError> {
    map.iter()
        .map(|(k, v)| {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| ctx.at(v, format!("invalid header name {k:?}")))?;
            let text = expand_at(ctx, v, false, lookup)?;
            // The value may be a secret: never echo it.
            let value =
                HeaderValue::from_str(&text).map_err(|_| ctx.at(v, format!("header {k}: invalid value")))?;
            Ok((name, value))
        })
        .collect()
}

pub(crate) fn targets(
    ctx: &Ctx,
    raw: &[RawTarget],
    env: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<TargetConfig>, ConfigError> {
    let mut names = BTreeSet::new();
    let mut out = Vec::new();
    for t in raw {
        let name = t.name.get_ref().trim();
        if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
            return Err(ctx.at(&t.name, format!("invalid target name {:?}", t.name.get_ref())));
        }
        if !names.insert(name.to_owned()) {
            return Err(ctx.at(&t.name, format!("target {name} is defined twice in environment {env}")));
        }
        let kind = match (&t.http, &t.aws) {
            (Some(h), None) => TargetKind::Http(http(ctx, h, env, lookup)?),
            (None, Some(a)) => TargetKind::Aws(aws(ctx, a, env, lookup)?),
            _ => {
                return Err(ctx.at(
                    &t.name,
                    format!("target {name}: give exactly one of [targets.http] or [targets.aws]"),
                ));
            }
        };
        out.push(TargetConfig { name: name.to_owned(), kind });
    }
    Ok(out)
}

fn http(
    ctx: &Ctx,
    h: &raw::RawHttp,
    env: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<HttpTarget, ConfigError> {
    if h.urls.get_ref().is_empty() {
        return Err(ctx.at(&h.urls, "urls is empty"));
    }
    let urls = h.urls.get_ref().iter().map(|u| url_at(ctx, u, env, lookup)).collect::<Result<Vec<_>, _>>()?;
    let mut t = HttpTarget::new(urls);
    if let Some(p) = &h.sha_pointer {
        if !p.get_ref().starts_with('/') {
            return Err(ctx
                .at(p, format!("sha_pointer {:?} must be a JSON pointer starting with \"/\"", p.get_ref())));
        }
        t.sha_pointer = Some(p.get_ref().clone());
    }
    if let Some(d) = h.timeout {
        if d.0.is_zero() {
            return Err(ctx.err(Some(h.urls.span()), "timeout must be more than 0s"));
        }
        t.timeout = d.0;
    }
    if let Some(n) = h.max_bytes {
        t.max_bytes = n;
    }
    t.headers = headers(ctx, &h.headers, lookup)?;
    if let Some(ca) = &h.ca_file {
        let p = ctx.dir.join(ca.get_ref());
        if !p.is_file() {
            return Err(ctx.at(ca, format!("ca_file {} does not exist", p.display())));
        }
        t.ca_file = Some(p);
    }
    if let Some(f) = h.follow_redirects {
        t.follow_redirects = f;
    }
    Ok(t)
}

fn aws(
    ctx: &Ctx,
    a: &raw::RawAws,
    env: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<AwsTarget, ConfigError> {
    let region = a.region.get_ref().trim();
    if region.is_empty() || !region.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(ctx.at(&a.region, format!("invalid AWS region {:?}", a.region.get_ref())));
    }
    if a.tags.get_ref().is_empty() {
        return Err(ctx.at(&a.tags, "tags is empty: give at least one tag filter"));
    }
    let tags = a
        .tags
        .get_ref()
        .iter()
        .map(|(k, v)| {
            let values = match v {
                raw::OneOrMany::One(s) => vec![substitute(s, env)],
                raw::OneOrMany::Many(l) => l.iter().map(|s| substitute(s, env)).collect(),
            };
            (k.clone(), values)
        })
        .collect();
    let endpoint_url = a.endpoint_url.as_ref().map(|u| url_at(ctx, u, env, lookup)).transpose()?;
    if let Some(t) = &a.sha_tag
        && t.trim().is_empty()
    {
        return Err(ctx.at(&a.region, "sha_tag is empty"));
    }
    let mut target = AwsTarget::new(region, tags);
    target.resource_types = a.resource_types.clone();
    if let Some(t) = &a.sha_tag {
        target.sha_tag = t.clone();
    }
    target.endpoint_url = endpoint_url.map(|u| u.to_string().trim_end_matches('/').to_owned());
    target.profile = a.profile.clone();
    if let Some(d) = a.timeout {
        target.timeout = d.0;
    }
    Ok(target)
}

pub(crate) fn remediate(
    ctx: &Ctx,
    r: &RawRemediate,
    env: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<RemediateConfig, ConfigError> {
    match (&r.command, &r.webhook) {
        (Some(cmd), None) => {
            let argv: Vec<String> = cmd.get_ref().iter().map(|a| substitute(a, env)).collect();
            if argv.first().is_none_or(|p| p.is_empty()) {
                return Err(ctx.at(cmd, "remediate.command is empty: give [\"program\", \"arg\", ...]"));
            }
            Ok(RemediateConfig::Command {
                argv,
                timeout: r.timeout.map_or(Duration::from_secs(900), |d| d.0),
            })
        }
        (None, Some(w)) => {
            let url = url_at(ctx, &w.url, env, lookup)?;
            let body = w
                .body
                .as_ref()
                .map(|b| expand_at(ctx, b, true, lookup).map(|s| substitute(&s, env)))
                .transpose()?;
            Ok(RemediateConfig::Webhook {
                url,
                headers: headers(ctx, &w.headers, lookup)?,
                body,
                timeout: w.timeout.or(r.timeout).map_or(Duration::from_secs(30), |d| d.0),
            })
        }
        _ => Err(ctx.err(
            r.command.as_ref().map(|c| c.span()).or(r.webhook.as_ref().map(|w| w.url.span())),
            "[remediate] needs exactly one of command = [...] or [remediate.webhook]",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_text(text: &str) -> Result<Config, ConfigError> {
        parse(Path::new("/etc/gitstate/gitstate.toml"), text, &|k| Some(format!("PLANTED-{k}")))
    }

    #[test]
    fn debug_of_the_configuration_redacts_every_secret() {
        let cfg = parse_text(
            r#"
[source]
repo = "https://user:${GIT_PASSWORD}@git.example.com/acme/shop.git?private_token=${GIT_TOKEN}"
[[environments]]
name = "production"
  [[environments.targets]]
  name = "web"
  [environments.targets.http]
  urls = ["https://u:${PASS}@eu.example.com/meta?token=${QUERY_TOKEN}"]
  headers = { Authorization = "Bearer ${STATUS_TOKEN}" }
  [environments.remediate.webhook]
  url = "https://api.example.com/deploy?key=${DEPLOY_KEY}"
  headers = { Authorization = "Bearer ${DEPLOY_TOKEN}" }
  body = '{"token":"${BODY_TOKEN}"}'
[alerts.alertmanager]
url = "https://am.example.com?auth=${AM_TOKEN}"
headers = { Authorization = "Bearer ${AM_HEADER}" }
[alerts.webhook]
url = "https://hooks.example.com/services/${HOOK_PATH}?sig=${HOOK_SIG}"
"#,
        )
        .unwrap();
        let shown = format!("{cfg:?}");
        for secret in [
            "GIT_PASSWORD",
            "GIT_TOKEN",
            "PASS",
            "QUERY_TOKEN",
            "STATUS_TOKEN",
            "DEPLOY_KEY",
            "DEPLOY_TOKEN",
            "BODY_TOKEN",
            "AM_TOKEN",
            "AM_HEADER",
            "HOOK_SIG",
        ] {
            assert!(!shown.contains(&format!("PLANTED-{secret}")), "{secret} leaks through Debug: {shown}");
        }
        assert!(shown.contains("token=***") && shown.contains("authorization"), "{shown}");
    }

    /// What any text gives: a configuration, or an error naming the file and, for what
    /// TOML locates, a line and column inside the text.
    fn check_any(text: &str) {
        if let Err(e) = parse_text(text) {
            assert_eq!(e.file, "/etc/gitstate/gitstate.toml");
            assert!(!e.message.is_empty());
            if let Some((line, col)) = e.at {
                assert!(line >= 1 && col >= 1 && line <= text.lines().count().max(1) + 1, "{e} in {text:?}");
            }
        }
    }

    fn any_value() -> impl Strategy<Value = String> {
        prop_oneof![
            "\"[^\"\\\\]{0,12}\"".prop_map(|s| s),
            Just("\"300000000000y\"".to_owned()),
            Just("\"18446744073709551615s\"".to_owned()),
            Just("\"0s\"".to_owned()),
            Just("\"NaN%\"".to_owned()),
            Just("\"${UNSET\"".to_owned()),
            Just("[\"http://h/x?t=1\", \"ftp://x\"]".to_owned()),
            Just("{ A = \"b\" }".to_owned()),
            any::<i64>().prop_map(|n| n.to_string()),
            Just("-0".to_owned()),
            Just("1e400".to_owned()),
            Just("true".to_owned()),
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_text_is_a_config_or_a_located_error(text in "\\PC{0,200}") {
            check_any(&text);
        }

        #[test]
        fn arbitrary_values_under_real_keys(
            values in prop::collection::vec(any_value(), 12),
            table in prop::sample::select(vec!["policy", "watch", "source", "state"]),
        ) {
            let keys = ["grace", "settle", "max_attempts", "backoff", "backoff_max", "interval", "jitter", "ref_poll", "concurrency", "listen", "timeout", "dir"];
            let mut text = String::from("[source]\nrepo = \".\"\n");
            if table != "source" {
                text.push_str(&format!("[{table}]\n"));
            }
            for (k, v) in keys.iter().zip(&values) {
                text.push_str(&format!("{k} = {v}\n"));
            }
            text.push_str("[[environments]]\nname = \"e\"\n  [[environments.targets]]\n  name = \"t\"\n  [environments.targets.http]\n");
            text.push_str(&format!("  urls = {}\n  timeout = {}\n  max_bytes = {}\n", values[6], values[0], values[8]));
            check_any(&text);
        }
    }

    /// Every configuration that ever crashed the loader, replayed.
    #[test]
    fn the_config_corpus_replays() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../corpus/config");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            check_any(&String::from_utf8_lossy(&bytes));
            n += 1;
        }
        assert!(n >= 4);
    }
}
