//! From a [`Config`] to what the runtime runs: the Git source, the environments (explicit
//! and discovered, filtered by `-e`) with a probe per target sharing one HTTP pool, the
//! alarm sinks, the controller's options — and [`Discovery`], the `[[discover]]` prefixes
//! listed again on every ref poll of `watch`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
#[cfg(feature = "aws")]
use gitstate_aws::{AwsClients, AwsProbe};
use gitstate_core::git::GitSource;
use gitstate_core::{ActualStateProbe, EnvironmentSpec, Expected, ExpectedState as _, TargetSpec};
use gitstate_http::{HttpClients, HttpProbe, KeepAlive};

use gitstate_runtime::controls::Windows;
use gitstate_runtime::{Environment, Environments, Options, Prefetched, Refreshed};

use crate::config::discover::{self, Planned, Skipped};
use crate::config::{Config, TargetKind};
use crate::output;

mod git_source;

pub use git_source::{links, source};

/// Lists each `[[discover]]` prefix once.
pub async fn listings(config: &Config, source: &GitSource) -> anyhow::Result<Vec<Vec<Expected>>> {
    let mut listed = Vec::new();
    for d in &config.discover {
        let refs = source
            .list(&d.ref_prefix)
            .await
            .with_context(|| format!("listing refs under {}", d.ref_prefix))?;
        listed.push(refs);
    }
    Ok(listed)
}

/// Logs the refs `[[discover]]` had to skip.
pub fn warn_skipped(skipped: &[Skipped]) {
    for s in skipped {
        tracing::warn!(reference = %s.reference, reason = %s.reason, "discover: skipping a ref");
    }
}

/// `-e` names that match no environment are a usage error naming the known ones.
pub fn check_selection<'a>(known: impl Iterator<Item = &'a str>, only: &[String]) -> anyhow::Result<()> {
    if only.is_empty() {
        return Ok(());
    }
    let known: std::collections::BTreeSet<&str> = known.collect();
    for name in only {
        if !known.contains(name.as_str()) {
            let list: Vec<&str> = known.iter().copied().collect();
            bail!(
                "no environment named {name:?} (known: {})",
                if list.is_empty() { "none".into() } else { list.join(", ") }
            );
        }
    }
    Ok(())
}

/// The environments to work on: explicit ones and those `[[discover]]` finds (each prefix
/// listed once), narrowed to `only` when given. Discovered ones carry their commit.
pub async fn environments(
    config: &Config,
    source: &GitSource,
    only: &[String],
) -> anyhow::Result<(Vec<Planned>, Vec<Skipped>)> {
    let listed = listings(config, source).await?;
    let (mut envs, skipped) = discover::environments(config, &listed, &|k| std::env::var(k).ok())?;
    warn_skipped(&skipped);
    if !only.is_empty() {
        check_selection(envs.iter().map(|p| p.config.name.as_str()), only)?;
        let only: std::collections::HashSet<&str> = only.iter().map(String::as_str).collect();
        envs.retain(|p| only.contains(p.config.name.as_str()));
    }
    Ok((envs, skipped))
}

/// The clients every probe, remediator and alarm sink of a process shares.
#[derive(Clone)]
pub struct Clients {
    /// One HTTP connection pool and in-flight limit.
    pub http: HttpClients,
    /// One AWS SDK client per region, profile, endpoint and timeout.
    #[cfg(feature = "aws")]
    pub aws: AwsClients,
    /// Cancelled when `watch` gives up waiting for remediations at shutdown: command
    /// remediators stop their process groups.
    pub stop: tokio_util::sync::CancellationToken,
}

impl Clients {
    /// Clients allowing `concurrency` HTTP requests in flight, keeping connections as
    /// `keep` says.
    pub fn new(concurrency: usize, keep: KeepAlive) -> anyhow::Result<Self> {
        Ok(Self {
            http: HttpClients::new(concurrency)?.with_keep_alive(keep),
            #[cfg(feature = "aws")]
            aws: AwsClients::new(),
            stop: tokio_util::sync::CancellationToken::new(),
        })
    }
}

/// How far past a built-in probe's own timeout the engine's bound on it lies.
const PROBE_BOUND_SLACK: Duration = Duration::from_secs(5);

/// Rounds of `slots` requests needed for `n` URLs (at least one).
fn rounds(n: usize, slots: usize) -> u32 {
    u32::try_from(n.div_ceil(slots.max(1)).max(1)).unwrap_or(u32::MAX)
}

/// Engine specs: a probe for each target (sharing `clients`) and the configured remediator.
pub fn specs(config: &Config, envs: &[Planned], clients: &Clients) -> anyhow::Result<Vec<EnvironmentSpec>> {
    // Environments with the same command (every one a `[[discover]]` block finds) share
    // one remediator: it learns the environment from each request.
    type Shared = Vec<(Vec<String>, Duration, Arc<dyn gitstate_core::Remediator>)>;
    let shared: std::cell::RefCell<Shared> = Default::default();
    let remediator = |r: &crate::config::RemediateConfig| -> Arc<dyn gitstate_core::Remediator> {
        let crate::config::RemediateConfig::Command { argv, timeout } = r else {
            return crate::remediate::remediator(r, &config.dir, &clients.http, &clients.stop);
        };
        let mut shared = shared.borrow_mut();
        if let Some((_, _, r)) = shared.iter().find(|(a, t, _)| a == argv && t == timeout) {
            return r.clone();
        }
        let made = crate::remediate::remediator(r, &config.dir, &clients.http, &clients.stop);
        shared.push((argv.clone(), *timeout, made.clone()));
        made
    };
    // And the same policy (every one of a `[[discover]]` block has its block's).
    let policies: std::cell::RefCell<Vec<Arc<gitstate_core::Policy>>> = Default::default();
    let policy = |p: &gitstate_core::Policy| {
        let mut policies = policies.borrow_mut();
        if let Some(shared) = policies.iter().find(|s| ***s == *p) {
            return shared.clone();
        }
        let made = Arc::new(p.clone());
        policies.push(made.clone());
        made
    };
    envs.iter()
        .map(|Planned { config: e, .. }| {
            let targets = e
                .targets
                .iter()
                .map(|t| {
                    let (probe, bound): (Arc<dyn ActualStateProbe>, Duration) = match &t.kind {
                        TargetKind::Http(h) => (
                            Arc::new(
                                HttpProbe::new(&clients.http, h.clone())
                                    .with_context(|| format!("environment {}, target {}", e.name, t.name))?,
                            ),
                            // Each URL has `timeout` once it holds one of the `concurrency`
                            // request slots; a target of many URLs takes that many rounds.
                            h.timeout.saturating_mul(rounds(h.urls.len(), config.watch.concurrency)),
                        ),
                        #[cfg(feature = "aws")]
                        TargetKind::Aws(a) => {
                            (Arc::new(AwsProbe::shared(&clients.aws, a.clone())), a.timeout)
                        }
                        #[cfg(not(feature = "aws"))]
                        TargetKind::Aws(_) => anyhow::bail!(
                            "environment {}, target {}: this gitstate was built without the AWS probe \
                             (cargo feature `aws` of gitstate-cli, on by default)",
                            e.name,
                            t.name
                        ),
                        TargetKind::Exec(x) => {
                            let probe = gitstate_process::ExecProbe::new(x.clone(), config.dir.clone());
                            (Arc::new(probe), x.timeout)
                        }
                    };
                    // The engine's own bound sits past the probe's, so that the probe's more
                    // precise error ("timed out after 10s" for one URL) wins when it works.
                    Ok(TargetSpec::new(t.name.clone(), probe).with_timeout(bound + PROBE_BOUND_SLACK))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let mut targets = targets;
            targets.shrink_to_fit();
            Ok(EnvironmentSpec {
                name: e.name.clone(),
                reference: e.reference.clone(),
                targets,
                remediator: e.remediate.as_ref().map(remediator),
                checks: checks(e.policy.verify.as_ref(), clients, &config.dir)
                    .with_context(|| format!("environment {}, [policy.verify]", e.name))?,
                policy: policy(&e.policy),
                controls: gitstate_core::Controls::default(),
            })
        })
        .collect()
}

/// The soak checks of `[policy.verify]` (SPEC §15): HTTP and Prometheus sharing the
/// probes' connection pool, commands run in the config's directory.
fn checks(
    verify: Option<&gitstate_core::verify::Verify>,
    clients: &Clients,
    dir: &std::path::Path,
) -> anyhow::Result<Vec<Arc<dyn gitstate_core::verify::Check>>> {
    let Some(v) = verify else { return Ok(Vec::new()) };
    v.checks
        .iter()
        .map(|c| -> anyhow::Result<Arc<dyn gitstate_core::verify::Check>> {
            Ok(match (&c.http, &c.prometheus, &c.exec) {
                (Some(h), _, _) => Arc::new(
                    gitstate_http::HttpCheck::new(&clients.http, &c.name, h.clone())
                        .with_context(|| format!("check {}", c.name))?,
                ),
                (_, Some(p), _) => Arc::new(gitstate_http::PrometheusCheck::new(
                    &clients.http,
                    &c.name,
                    p.clone(),
                    v.no_data,
                )),
                (_, _, Some(argv)) => Arc::new(gitstate_process::ExecCheck::new(
                    &c.name,
                    argv.clone(),
                    dir.to_path_buf(),
                    c.timeout,
                )),
                (None, None, None) => anyhow::bail!("check {}: give one of http, prometheus or exec", c.name),
            })
        })
        .collect()
}

/// Every ref a `[[discover]]` listing found, with its commit.
pub type Listed = gitstate_runtime::environments::Listed;

/// What a command runs: the environments selected (explicit and discovered), their
/// engine specs and freeze windows, and the clients they share. Built by [`build`].
pub struct Plan {
    /// The environments, in order (taken by the controller: one copy of 10,000, not two).
    pub specs: Vec<EnvironmentSpec>,
    /// The clients the specs' probes share (and the sinks).
    pub clients: Clients,
    source: GitSource,
    /// Every planned environment's name: what a new listing is compared with.
    names: BTreeSet<gitstate_core::EnvName>,
    /// The freeze windows of the environments that have any.
    windows: Windows,
    /// What `[[discover]]` listed (for a one-shot pass's [`Prefetched`]). The planned
    /// configurations themselves are not kept: the specs hold what a pass needs.
    listed: Vec<Expected>,
    /// The last `[[discover]]` listing and its map: a listing equal to it (the usual case,
    /// every second of a quiet watch) is answered without building anything again.
    last_listing: Option<Arc<Listed>>,
}

/// Plans a pass: opens the source, lists `[[discover]]` prefixes once, selects `only`
/// (all when empty), and builds a probe and a remediator for each environment. `keep`:
/// which HTTP connections outlive a request (every one for `watch`, which polls again).
pub async fn build(config: &Config, only: &[String], keep: KeepAlive) -> anyhow::Result<Plan> {
    let source = self::source(config)?;
    let (envs, _) = environments(config, &source, only).await?;
    let clients = Clients::new(config.watch.concurrency, keep)?;
    let specs = specs(config, &envs, &clients)?;
    let mut plan = Plan {
        specs,
        clients,
        source,
        names: Default::default(),
        windows: Windows::new(),
        listed: Vec::new(),
        last_listing: None,
    };
    plan.keep(envs);
    Ok(plan)
}

impl Plan {
    /// An engine for `check` (observe and report, nothing more), its discovered refs
    /// answered from their listing.
    pub fn check_engine(&self, config: &Config) -> gitstate_core::Engine {
        gitstate_core::Engine::new(self.one_shot_source())
            .with_timer(gitstate_core::Timer::new(|d| Box::pin(tokio::time::sleep(d))))
            .with_concurrency(config.watch.concurrency)
            .with_max_commits(config.max_commits)
            .with_links(self.links(config))
    }

    /// The source for one pass: discovered refs answered from the listing just made.
    pub fn one_shot_source(&self) -> Arc<dyn gitstate_core::ExpectedState> {
        Arc::new(Prefetched::new(Arc::new(self.source.clone()), &self.listed))
    }

    /// The controller's options from `[watch]` and `[output]`.
    pub fn options(&self, config: &Config) -> Options {
        let mut o = Options::default();
        o.interval = config.watch.interval;
        o.jitter = config.watch.jitter;
        o.ref_poll = config.watch.ref_poll;
        o.converging_poll = config.watch.converging_poll;
        o.concurrency = config.watch.concurrency;
        o.max_commits = config.max_commits;
        o.links = self.links(config);
        o.group_wait = config.alerts.group_wait;
        o.failover = config.postgres.as_ref().map_or(std::time::Duration::ZERO, |p| p.failover);
        o
    }

    /// The alarm sinks `[alerts]` describes, an open alarm staying firing in Alertmanager
    /// for `ttl` per post unless its config says otherwise.
    pub fn sinks(
        &self,
        config: &Config,
        ttl: Duration,
    ) -> anyhow::Result<Vec<Arc<dyn gitstate_core::AlarmSink>>> {
        crate::remediate::sinks(&config.alerts, &self.clients.http, ttl)
    }

    /// A controller builder over `source`, `store` and these environments, with the
    /// sinks (when `ttl` is given) and the options of `config`.
    pub fn controller(
        &mut self,
        config: &Config,
        source: Arc<dyn gitstate_core::ExpectedState>,
        store: Arc<dyn gitstate_runtime::Store>,
        ttl: Option<Duration>,
    ) -> anyhow::Result<gitstate_runtime::Builder> {
        let mut builder = gitstate_runtime::Controller::builder(source, store)
            .environments(self.take_environments())
            .options(self.options(config))
            .stop_token(self.clients.stop.clone());
        if let Some(t) = &config.source.trust {
            builder = builder.trust(t.policy.clone());
        }
        if let Some(ttl) = ttl {
            for sink in self.sinks(config, ttl)? {
                builder = builder.sink(sink);
            }
        }
        Ok(builder)
    }

    /// The environments (specs and freeze windows), taken from the plan.
    pub fn take_environments(&mut self) -> Vec<Environment> {
        std::mem::take(&mut self.specs)
            .into_iter()
            .map(|s| {
                let windows = self.windows.get(&s.name).cloned().unwrap_or_default();
                Environment::new(s).with_windows(windows)
            })
            .collect()
    }

    /// Where commits and comparisons can be read: `[source] commit_url` / `compare_url`,
    /// else derived from the repository's forge remote.
    pub fn links(&self, config: &Config) -> gitstate_core::Links {
        links(config, &self.source)
    }

    /// Lists `[[discover]]` prefixes again and rebuilds the specs when the set of names
    /// changed (the cheap listing is compared first).
    async fn replan(&mut self, config: &Config) -> anyhow::Result<Refreshed> {
        if config.discover.is_empty() {
            return Ok(Refreshed::unchanged());
        }
        let listed = listings(config, &self.source).await?;
        if let Some(map) = &self.last_listing
            && same_listing(&listed, map)
        {
            return Ok(Refreshed::unchanged().with_listed(map.clone()));
        }
        // Only commits moved (the same refs): the same environments, without working
        // them out again.
        let same_refs = self.last_listing.as_ref().is_some_and(|map| {
            let mut n = 0;
            listed.iter().flatten().all(|e| {
                n += 1;
                map.contains_key(&e.reference)
            }) && n == map.len()
        });
        let same = same_refs || {
            let (found, _) = discover::discovered(config, &listed);
            let names: BTreeSet<&gitstate_core::EnvName> =
                config.environments.iter().map(|e| &e.name).chain(found.iter().map(|(_, n, _)| n)).collect();
            self.names.len() == names.len() && self.names.iter().all(|n| names.contains(n))
        };
        let map: Arc<Listed> =
            Arc::new(listed.iter().flatten().map(|e| (e.reference.clone(), e.commit)).collect());
        let mut refreshed = Refreshed::unchanged();
        if !same {
            let (envs, _) = environments(config, &self.source, &[]).await?;
            self.specs = specs(config, &envs, &self.clients)?;
            self.keep(envs);
            // What a one-shot pass prefetches: `watch` reads the refs itself.
            self.listed = Vec::new();
            refreshed = Refreshed::changed(self.take_environments());
        }
        self.last_listing = Some(map.clone());
        Ok(refreshed.with_listed(map))
    }

    /// The Git source.
    pub fn source(&self) -> &GitSource {
        &self.source
    }

    /// What the planned environments leave behind once their specs are built: names,
    /// freeze windows and listed refs (at 10,000 discovered environments the configurations
    /// themselves were some 15 MB, their every part copied into the specs already).
    fn keep(&mut self, envs: Vec<Planned>) {
        self.names = envs.iter().map(|p| p.config.name.clone()).collect();
        self.windows = envs
            .iter()
            .filter(|p| !p.config.windows.is_empty())
            .map(|p| (p.config.name.clone(), p.config.windows.clone()))
            .collect();
        // A new vector, exactly sized (collected in place it would keep the planned
        // environments' much larger buffer).
        let mut listed = Vec::with_capacity(envs.iter().filter(|p| p.listed.is_some()).count());
        listed.extend(envs.into_iter().filter_map(|p| p.listed));
        self.listed = listed;
    }

    /// Each environment's freeze windows (those without any are absent).
    pub fn windows(&self) -> &Windows {
        &self.windows
    }
}

/// Whether `listed` says what `map` (the last listing, ref → commit) says: the same refs
/// at the same commits, nothing more (the listing itself is not kept: the map is).
fn same_listing(listed: &[Vec<Expected>], map: &Listed) -> bool {
    let mut n = 0;
    for e in listed.iter().flatten() {
        n += 1;
        if map.get(&e.reference) != Some(&e.commit) {
            return false;
        }
    }
    n == map.len()
}

/// `watch`'s environments: the `[[discover]]` prefixes listed again before every ref
/// poll, the specs rebuilt when the set of names changed.
pub struct Discovery {
    config: Config,
    plan: tokio::sync::Mutex<Plan>,
    /// What file-system notification saw change in a local repository since the last
    /// listing, when it watches one.
    changes: Option<Arc<gitstate_runtime::refwatch::RefChanges>>,
    /// When the refs were last listed whole.
    listed_at: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Discovery {
    /// Discovery over `plan` (whose environments the controller already took).
    pub fn new(config: Config, mut plan: Plan) -> Self {
        // What a one-shot pass prefetches: `watch` reads the refs itself.
        plan.listed = Vec::new();
        Self { config, plan: tokio::sync::Mutex::new(plan), changes: None, listed_at: Default::default() }
    }

    /// Lists the refs again only when `changes` says something under them may have
    /// changed (or the last whole listing is older than the interval, a minute at most).
    pub fn with_changes(mut self, changes: Arc<gitstate_runtime::refwatch::RefChanges>) -> Self {
        self.changes = Some(changes);
        self
    }

    /// Whether the last listing still holds: notification is watching, it saw nothing
    /// but loose refs that the last listing has, rewritten (moved, not made or deleted;
    /// those the ref poll reads one by one), and the listing is recent.
    fn listing_holds(&self, plan: &Plan) -> bool {
        let (Some(changes), Some(map)) = (&self.changes, &plan.last_listing) else { return false };
        let every = self.config.watch.interval.clamp(Duration::from_secs(1), Duration::from_secs(60));
        let recent =
            self.listed_at.lock().unwrap_or_else(|p| p.into_inner()).is_some_and(|t| t.elapsed() < every);
        recent && changes.only_moved(map)
    }
}

#[async_trait::async_trait]
impl Environments for Discovery {
    async fn refresh(&self) -> Result<Refreshed, gitstate_runtime::environments::BoxError> {
        let mut plan = self.plan.lock().await;
        if self.listing_holds(&plan)
            && let Some(map) = &plan.last_listing
        {
            return Ok(Refreshed::unchanged().with_listed(map.clone()));
        }
        // Changes from now on are seen by the next refresh (this listing may miss them).
        if let Some(changes) = &self.changes {
            changes.clear();
        }
        let refreshed = plan.replan(&self.config).await.map_err(|e| output::chain(&e))?;
        *self.listed_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(std::time::Instant::now());
        Ok(refreshed)
    }
}
