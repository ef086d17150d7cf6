//! Finding and parsing `gitstate.toml`: [`locate`], [`load`], [`parse`] (every error at
//! file:line:column), `${VAR}` expansion, and the checks on names, refs, URLs and headers.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use gitstate_core::git::is_remote_url;
use gitstate_http::Header;
use toml::Spanned;
use url::Url;

use super::raw::RawConfig;
use super::*;

/// Reads what positions mean in the file, for errors found after parsing.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub(super) file: String,
    pub(super) text: Arc<str>,
    pub(super) dir: PathBuf,
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

    pub(crate) fn at<T>(&self, s: &Spanned<T>, message: impl Into<String>) -> ConfigError {
        self.err(Some(s.span()), message)
    }
}

pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
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

/// The text as the schema's tables, or where it fails: a text that is not TOML at all says
/// so (`invalid TOML:`), apart from a key or value the schema refuses.
fn read_raw(ctx: &Ctx, text: &str) -> Result<RawConfig, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let message = e.message().trim();
        match text.parse::<toml::Table>() {
            Err(_) => ctx.err(e.span(), format!("invalid TOML: {message}")),
            Ok(_) => ctx.err(e.span(), message.to_owned()),
        }
    })
}

/// Checks configuration text against the schema alone: every key known, every value of
/// its type, every `[policy]` table readable (its own keys over the global ones) — without
/// expanding `${VAR}`, reading the files it names or opening the repository. What the
/// book's examples are held to (SPEC §21); [`parse`] does all of this and the rest.
pub fn check_schema(path: &Path, text: &str) -> Result<(), ConfigError> {
    let ctx = Ctx { file: path.display().to_string(), text: Arc::from(text), dir: PathBuf::from(".") };
    let raw = read_raw(&ctx, text)?;
    resolve(&ctx, &[&raw.policy], None)?;
    let own = raw.environments.iter().map(|e| &e.policy).chain(raw.discover.iter().map(|d| &d.policy));
    for p in own.flatten() {
        resolve(&ctx, &[&raw.policy, p.get_ref()], Some(p.span()))?;
    }
    Ok(())
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
    let raw = read_raw(&ctx, text)?;

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
    // A remote keeps a mirror unless told not to: without history every difference is
    // `drifted`, and a hotfix cannot be told from a pending deploy.
    let mirror = match (&raw.source.mirror, &repo_loc) {
        (Some(m), RepoLocation::Local(_)) if *m.get_ref() => {
            return Err(ctx.at(
                m,
                "mirror = true needs a remote URL in source.repo (a local repository has its history)",
            ));
        }
        (Some(m), _) => *m.get_ref(),
        (None, RepoLocation::Local(_)) => false,
        (None, RepoLocation::Remote(_)) => true,
    };
    let trust = match &raw.source.trust {
        None => None,
        Some(t) => Some(trust_config(&ctx, t, mirror, matches!(repo_loc, RepoLocation::Remote(_)))?),
    };
    let ref_prefix = match &raw.source.ref_prefix {
        Some(p) => check_prefix(&ctx, p)?,
        None => DEFAULT_REF_PREFIX.to_owned(),
    };
    let template =
        |t: &Option<Spanned<String>>, key: &str, holes: &[&str]| -> Result<Option<String>, ConfigError> {
            let Some(t) = t else { return Ok(None) };
            let url = t.get_ref();
            if !(url.starts_with("https://") || url.starts_with("http://"))
                || holes.iter().any(|h| !url.contains(h))
            {
                return Err(
                    ctx.at(t, format!("source.{key} must be an http(s) URL with {}", holes.join(" and ")))
                );
            }
            Ok(Some(url.clone()))
        };
    let links = gitstate_core::Links {
        commit: template(&raw.source.commit_url, "commit_url", &["{sha}"])?,
        compare: template(&raw.source.compare_url, "compare_url", &["{from}", "{to}"])?,
    };

    let (base, base_windows) = resolve(&ctx, &[&raw.policy], None)?;

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
        let (policy, windows) = match &e.policy {
            Some(p) => resolve(&ctx, &[&raw.policy, p.get_ref()], Some(p.span()))?,
            None => (base.clone(), base_windows.clone()),
        };
        environments.push(EnvironmentConfig {
            windows,
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
        let (policy, windows) = match &d.policy {
            Some(p) => resolve(&ctx, &[&raw.policy, p.get_ref()], Some(p.span()))?,
            None => (base.clone(), base_windows.clone()),
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
            windows,
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
                    url: sink_url_at(&ctx, &a.url, lookup)?,
                    headers: headers(&ctx, &a.headers, lookup)?,
                    ttl: a.ttl.as_ref().map(|d| d.0),
                })
            })
            .transpose()?,
        webhooks: {
            let mut hooks: Vec<AlertWebhookConfig> = Vec::new();
            for (i, w) in raw.alerts.webhook.0.iter().enumerate() {
                let name = match &w.name {
                    Some(n)
                        if n.get_ref().is_empty()
                            || n.get_ref().chars().any(|c| c.is_whitespace() || c.is_control()) =>
                    {
                        return Err(ctx.err(Some(n.span()), "alerts.webhook.name: a word without spaces"));
                    }
                    Some(n) => n.get_ref().clone(),
                    None if i == 0 => "webhook".to_owned(),
                    None => format!("webhook-{}", i + 1),
                };
                if hooks.iter().any(|h| h.name == name) || name == "alertmanager" {
                    let at = w.name.as_ref().map(|n| n.span()).unwrap_or(w.url.span());
                    return Err(ctx.err(
                        Some(at),
                        format!("alerts.webhook: two sinks named {name:?} (give each a name = \"…\")"),
                    ));
                }
                hooks.push(AlertWebhookConfig {
                    name,
                    url: sink_url_at(&ctx, &w.url, lookup)?,
                    format: w.format,
                    headers: headers(&ctx, &w.headers, lookup)?,
                });
            }
            hooks
        },
        group_wait: raw.alerts.group_wait.as_ref().map_or(std::time::Duration::ZERO, |d| d.0),
    };

    let w = &raw.watch;
    if w.interval.0.is_zero() {
        return Err(ctx.err(None, "watch.interval must be more than 0s"));
    }
    if w.ref_poll.0.is_zero() {
        return Err(ctx.err(None, "watch.ref_poll must be more than 0s"));
    }
    if w.converging_poll.0.is_zero() {
        return Err(ctx.err(None, "watch.converging_poll must be more than 0s"));
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
    let webhook = match &w.webhook {
        Some(h) => {
            let listen: SocketAddr = h.listen.get_ref().parse().map_err(|_| {
                ctx.at(
                    &h.listen,
                    format!(
                        "watch.webhook.listen {:?} is not an address like 0.0.0.0:9465",
                        h.listen.get_ref()
                    ),
                )
            })?;
            let secret = expand_at(&ctx, &h.secret, false, lookup)?;
            if secret.len() < 16 {
                return Err(ctx.at(
                    &h.secret,
                    "watch.webhook.secret: at least 16 characters (use ${VAR} for a generated one)",
                ));
            }
            Some(WebhookConfig { listen, secret })
        }
        None => None,
    };
    let tls = w.tls.as_ref().map(|t| TlsConfig {
        cert: dir.join(t.cert.get_ref()),
        key: dir.join(t.key.get_ref()),
        hsts: t.hsts.as_ref().map(|d| d.0),
    });
    let auth = w.auth.as_ref().map(|a| AuthConfig::parse(&ctx, a)).transpose()?;
    let watch = WatchConfig {
        webhook,
        tls,
        auth,
        interval: w.interval.0,
        jitter: w.jitter.0,
        ref_poll: w.ref_poll.0,
        converging_poll: w.converging_poll.0,
        concurrency: *w.concurrency.get_ref(),
        listen,
    };

    Ok(Config {
        path: path.to_path_buf(),
        dir: dir.clone(),
        source: SourceConfig { repo: repo_loc, ref_prefix, mirror, timeout: source_timeout, links, trust },
        max_commits: match &raw.output.max_commits {
            Some(n) if *n.get_ref() > 1000 => return Err(ctx.at(n, "output.max_commits is at most 1000")),
            Some(n) => *n.get_ref(),
            None => gitstate_core::DEFAULT_MAX_COMMITS,
        },
        environments,
        discover,
        alerts,
        watch,
        state_dir: dir.join(raw.state.dir.get_ref()),
        events: {
            let default = gitstate_runtime::store::Rotation::default();
            let max_bytes = match &raw.state.events_max_bytes {
                Some(n) if *n.get_ref() < gitstate_runtime::store::Rotation::MIN_BYTES => {
                    return Err(ctx.err(
                        Some(n.span()),
                        format!(
                            "events_max_bytes must be at least {} (one event is up to a few KiB)",
                            gitstate_runtime::store::Rotation::MIN_BYTES
                        ),
                    ));
                }
                Some(n) => *n.get_ref(),
                None => default.max_bytes,
            };
            gitstate_runtime::store::Rotation {
                max_bytes,
                keep: raw.state.events_keep.unwrap_or(default.keep),
            }
        },
        postgres: postgres(&ctx, &raw.state, lookup)?,
    })
}

fn postgres(
    ctx: &Ctx,
    state: &raw::RawState,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<gitstate_postgres::PgOptions>, ConfigError> {
    let Some(url) = &state.postgres else {
        if let Some(c) = &state.cluster {
            return Err(ctx.at(c, "state.cluster needs state.postgres"));
        }
        if let Some(c) = &state.shards {
            return Err(ctx.at(c, "state.shards needs state.postgres"));
        }
        if let Some(c) = &state.replica {
            return Err(ctx.at(c, "state.replica needs state.postgres"));
        }
        return Ok(None);
    };
    let expanded = expand_at(ctx, url, false, lookup)?;
    if expanded.trim().is_empty() {
        return Err(ctx.at(url, "state.postgres is empty"));
    }
    let cluster = state.cluster.as_ref().map_or("default", |c| c.get_ref().as_str());
    if cluster.is_empty()
        || cluster.len() > 63
        || !cluster.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        let at = state.cluster.as_ref().expect("the default is valid");
        return Err(ctx.at(at, format!("state.cluster {cluster:?} must be 1 to 63 of A-Z a-z 0-9 . _ -")));
    }
    let failover = match &state.failover {
        Some(f) if f.get_ref().0 < std::time::Duration::from_secs(1) => {
            return Err(ctx.at(f, "state.failover must be at least 1s"));
        }
        Some(f) => f.get_ref().0,
        None => std::time::Duration::from_secs(15),
    };
    let shards = match &state.shards {
        None => false,
        Some(v) => match v.get_ref().as_str() {
            "auto" => true,
            "off" => false,
            other => return Err(ctx.at(v, format!("state.shards {other:?} must be \"auto\" or \"off\""))),
        },
    };
    let mut options = gitstate_postgres::PgOptions::new(expanded)
        .with_cluster(cluster)
        .with_failover(failover)
        .with_shards(shards);
    if let Some(r) = &state.replica {
        let name = expand_at(ctx, r, false, lookup)?;
        if name.is_empty() || name.len() > 253 || name.chars().any(char::is_control) {
            return Err(ctx.at(r, format!("state.replica {name:?} must be 1 to 253 printable characters")));
        }
        options = options.with_replica(name);
    }
    Ok(Some(options))
}

pub(super) fn check_prefix(ctx: &Ctx, p: &Spanned<String>) -> Result<String, ConfigError> {
    let s = p.get_ref();
    if !s.starts_with("refs/") || !s.ends_with('/') {
        return Err(ctx.at(p, format!("ref_prefix {s:?} must start with \"refs/\" and end with \"/\"")));
    }
    check_ref_text(s.trim_end_matches('/')).map_err(|m| ctx.at(p, m))?;
    Ok(s.clone())
}

pub(super) fn check_ref(ctx: &Ctx, r: &Spanned<String>) -> Result<(), ConfigError> {
    check_ref_text(r.get_ref()).map_err(|m| ctx.at(r, m))
}

/// git-check-ref-format's rules, as gix validates a (possibly short) ref name.
pub(super) fn check_ref_text(s: &str) -> Result<(), String> {
    gix::validate::reference::name_partial(s.into())
        .map(|_| ())
        .map_err(|e| format!("{s:?} is not a valid Git ref name ({e})"))
}

pub(super) fn substitute(s: &str, env: &str) -> String {
    s.replace("{environment}", env)
}

pub(super) fn expand_at(
    ctx: &Ctx,
    s: &Spanned<String>,
    keep_runtime: bool,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    expand::expand(s.get_ref(), keep_runtime, lookup).map_err(|m| ctx.at(s, m))
}

/// An alarm sink's URL: it serves every environment, so `{environment}` has no value in it
/// (it was replaced by nothing).
fn sink_url_at(
    ctx: &Ctx,
    s: &Spanned<String>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Url, ConfigError> {
    if s.get_ref().contains("{environment}") {
        return Err(ctx.at(
            s,
            "{environment} has no value in an alarm sink's URL: one sink serves every environment (alarms carry it in their body and labels)",
        ));
    }
    url_at(ctx, s, "", lookup)
}

pub(super) fn url_at(
    ctx: &Ctx,
    s: &Spanned<String>,
    env: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Url, ConfigError> {
    let text = substitute(&expand_at(ctx, s, false, lookup)?, env);
    let shown = gitstate_core::redact_url(&text);
    let url = Url::parse(&text).map_err(|e| ctx.at(s, format!("invalid URL {shown:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ctx.at(s, format!("URL {shown:?} must be http:// or https://")));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ctx.at(s, format!("URL {shown:?} has no host")));
    }
    Ok(url)
}

pub(super) fn headers(
    ctx: &Ctx,
    map: &BTreeMap<String, Spanned<String>>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Headers, ConfigError> {
    map.iter()
        .map(|(k, v)| {
            let text = expand_at(ctx, v, false, lookup)?;
            // The value may be a secret: the error never echoes it.
            Header::new(k, &text).map_err(|e| ctx.at(v, e.to_string()))
        })
        .collect()
}

/// `[source.trust]` (SPEC §18): its files read (relative to the config) and parsed, each
/// error at its line; a remote read without a mirror cannot verify anything.
fn trust_config(
    ctx: &Ctx,
    t: &Spanned<super::raw::RawTrust>,
    mirror: bool,
    remote: bool,
) -> Result<TrustConfig, ConfigError> {
    let raw = t.get_ref();
    if remote && !mirror {
        return Err(ctx.at(t, "source.trust needs the repository's history: a remote with mirror = false cannot verify signatures"));
    }
    if raw.allowed_signers.is_none() && raw.openpgp_keys.is_none() {
        return Err(ctx.at(t, "source.trust: give allowed_signers, openpgp_keys, or both"));
    }
    let read = |f: &Option<Spanned<String>>| -> Result<Option<(String, String)>, ConfigError> {
        let Some(f) = f else { return Ok(None) };
        let path = ctx.dir.join(f.get_ref());
        let text =
            std::fs::read_to_string(&path).map_err(|e| ctx.at(f, format!("{}: {e}", path.display())))?;
        Ok(Some((path.display().to_string(), text)))
    };
    let ssh = read(&raw.allowed_signers)?;
    let pgp = read(&raw.openpgp_keys)?;
    let trust = gitstate_trust::Trust::new(
        ssh.as_ref().map(|(n, t)| (n.as_str(), t.as_str())),
        pgp.as_ref().map(|(n, t)| (n.as_str(), t.as_str())),
    )
    .map_err(|e| ctx.at(t, e.to_string()))?;
    let block = match raw.on_untrusted.as_ref().map(|s| s.get_ref().as_str()) {
        None | Some("block") => true,
        Some("alarm") => false,
        Some(other) => {
            let at = raw.on_untrusted.as_ref().unwrap_or_else(|| unreachable!());
            return Err(ctx.at(at, format!("source.trust.on_untrusted = {other:?}: \"block\" or \"alarm\"")));
        }
    };
    Ok(TrustConfig {
        policy: gitstate_runtime::trust::TrustPolicy::new(std::sync::Arc::new(trust), raw.require, block),
    })
}
