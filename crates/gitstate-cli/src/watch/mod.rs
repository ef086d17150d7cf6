//! `gitstate watch`: the closed loop, forever. [`schedule`] decides when (interval ±
//! jitter, ref polls and file-system notification, requeues, one pass or remediation in
//! flight per environment); [`Live`] is what a pass does (probe, decide, persist, notify,
//! hand remediations to background tasks); [`metrics`] and [`server`] expose it.

pub mod dashboard;
pub mod metrics;
pub mod schedule;
pub mod server;
pub mod webhook;

#[cfg(test)]
mod model_tests;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use gitstate_core::git::GitSource;
use gitstate_core::{
    CommitId, Engine, EnvName, EnvironmentSpec, ExpectedState, PassMode, PassOutcome, Phase,
    RemediationRequest,
};

use crate::config::Config;
use crate::plan;
use crate::state::Store;
use crate::state::overrides::Overrides;
use metrics::Metrics;
use schedule::{Driver, PassDone};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The real driver of the loop.
pub struct Live {
    config: Config,
    engine: Engine,
    /// Probes and reports, nothing more: the passes of a standby (SPEC §14).
    observer: Engine,
    store: Arc<dyn Store>,
    /// What runs: re-planned when `[[discover]]` finds a different set of environments.
    plan: tokio::sync::Mutex<plan::Plan>,
    source: GitSource,
    /// Cancelled to stop remediations at shutdown.
    stop: tokio_util::sync::CancellationToken,
    metrics: Arc<Metrics>,
    dashboard: Arc<dashboard::Dashboard>,
    specs: Mutex<BTreeMap<EnvName, EnvironmentSpec>>,
    refs: Mutex<HashMap<EnvName, CommitId>>,
    deferred: Mutex<HashMap<EnvName, RemediationRequest>>,
    /// `overrides.json` as last read.
    overrides: Mutex<Overrides>,
    /// Refs named by push webhooks since the last poll (`None`: every ref).
    pushed: Mutex<Vec<Option<String>>>,
    /// Whether this replica led at the last poll: one that has just taken over passes
    /// every environment at once (SPEC §14), not at the next full pass.
    led: std::sync::atomic::AtomicBool,
    /// The `[[discover]]` listing the last ref poll read.
    last_listed: Mutex<Option<Arc<plan::Listed>>>,
}

impl Live {
    /// Builds the driver over `plan` and reads the refs once (that first reading reports no
    /// change).
    pub async fn new(
        config: Config,
        engine: Engine,
        store: Arc<dyn Store>,
        mut plan: plan::Plan,
        metrics: Arc<Metrics>,
        dashboard: Arc<dashboard::Dashboard>,
    ) -> anyhow::Result<Self> {
        // The specs move to the driver: one copy of 10,000, not two.
        let specs = std::mem::take(&mut plan.specs).into_iter().map(|s| (s.name.clone(), s)).collect();
        // The windows live with the dashboard, which also serves them in /status.
        dashboard.set_windows(plan.windows());
        let observer = plan.observer_engine(&config);
        let store_leads = store.is_leader();
        let live = Self {
            config,
            engine,
            observer,
            store,
            source: plan.source().clone(),
            stop: plan.clients.stop.clone(),
            plan: tokio::sync::Mutex::new(plan),
            metrics,
            dashboard,
            specs: Mutex::new(specs),
            refs: Mutex::default(),
            deferred: Mutex::default(),
            overrides: Mutex::default(),
            pushed: Mutex::default(),
            led: std::sync::atomic::AtomicBool::new(store_leads),
            last_listed: Mutex::default(),
        };
        live.poll_overrides();
        live.poll_refs(&Arc::default()).await;
        Ok(live)
    }

    /// Re-plans the environments when `[[discover]]` finds a different set of names;
    /// returns every ref listed with its commit.
    async fn refresh_environments(&self) -> anyhow::Result<Arc<plan::Listed>> {
        let mut plan = self.plan.lock().await;
        let replanned = plan.replan(&self.config).await?;
        if replanned.changed {
            *lock(&self.specs) =
                std::mem::take(&mut plan.specs).into_iter().map(|s| (s.name.clone(), s)).collect();
            self.dashboard.set_windows(plan.windows());
        }
        Ok(replanned.listed)
    }

    /// Reads `overrides.json` again; returns the environments whose overrides changed (a
    /// suspension, a resume, a retry), so that they are passed at once.
    fn poll_overrides(&self) -> Vec<EnvName> {
        let read = match self.store.overrides() {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(error = %e, "overrides not read; keeping the last ones");
                return Vec::new();
            }
        };
        let mut known = lock(&self.overrides);
        if *known == read {
            return Vec::new();
        }
        let names: std::collections::BTreeSet<&EnvName> =
            known.environments.keys().chain(read.environments.keys()).collect();
        let changed = names
            .into_iter()
            .filter(|n| known.environments.get(*n) != read.environments.get(*n))
            .cloned()
            .collect();
        *known = read;
        changed
    }

    /// Resolves every environment's ref; returns those whose commit changed. The refs in
    /// `listed` (a `[[discover]]` listing just made) are not looked up again: at 10,000
    /// discovered environments that would be 10,000 loose-ref lookups a second. When the
    /// listing is the one the last poll read (the same `Arc`), its refs are not even
    /// compared again: nothing under them moved.
    async fn poll_refs(&self, listed: &Arc<plan::Listed>) -> Vec<EnvName> {
        let seen = {
            let mut last = lock(&self.last_listed);
            let seen = last.as_ref().is_some_and(|l| Arc::ptr_eq(l, listed));
            *last = Some(listed.clone());
            seen
        };
        // After a push webhook that named its refs, only the environments on those refs.
        let pushed: Vec<Option<String>> = std::mem::take(&mut *lock(&self.pushed));
        let only: Option<Vec<String>> = (!pushed.is_empty() && pushed.iter().all(Option::is_some))
            .then(|| pushed.into_iter().flatten().collect());
        let on_pushed = |reference: &str| {
            only.as_ref().is_none_or(|refs| {
                refs.iter().any(|r| {
                    r == reference
                        || r.strip_prefix("refs/heads/") == Some(reference)
                        || r.strip_prefix("refs/") == Some(reference)
                })
            })
        };
        let specs: Vec<(EnvName, String)> = lock(&self.specs)
            .values()
            .filter(|s| on_pushed(&s.reference) && !(seen && listed.contains_key(&s.reference)))
            .map(|s| (s.name.clone(), s.reference.clone()))
            .collect();
        let (known_now, lookup): (Vec<_>, Vec<_>) =
            specs.into_iter().partition(|(_, r)| listed.contains_key(r));
        let mut found: Vec<(EnvName, CommitId)> =
            known_now.into_iter().map(|(name, r)| (name, listed[&r])).collect();
        if !lookup.is_empty() {
            let refs: Vec<String> = lookup.iter().map(|(_, r)| r.clone()).collect();
            match self.source.resolve(&refs).await {
                Ok(resolved) => found.extend(
                    lookup
                        .into_iter()
                        .zip(resolved)
                        .filter_map(|((name, _), r)| Some((name, r.ok()?.commit))),
                ),
                Err(e) => tracing::warn!(error = %e, "ref poll failed"),
            }
        }
        let mut known = lock(&self.refs);
        let mut changed = Vec::new();
        for (name, commit) in found {
            if known.insert(name.clone(), commit).as_ref() != Some(&commit) {
                changed.push(name);
            }
        }
        changed
    }
}

impl Live {
    /// A push webhook arrived for `reference` (every ref when `None`): the next poll, which
    /// the caller starts at once, reads only the environments on the pushed refs.
    pub fn pushed(&self, reference: Option<String>) {
        lock(&self.pushed).push(reference);
    }

    /// Retires the environments a whole pass no longer has (gone from the configuration or
    /// no longer discovered): alarms resolved as `removed`, state pruned, series dropped.
    async fn remove_gone(&self) {
        let gone: Vec<_> = {
            let specs = lock(&self.specs);
            let names: Vec<EnvName> =
                self.store.names().into_iter().filter(|n| !specs.contains_key(n)).collect();
            self.store.environments_among(&names).into_iter().collect()
        };
        if gone.is_empty() {
            return;
        }
        for (name, _) in &gone {
            tracing::info!(environment = %name, "environment removed; its state is pruned");
            self.metrics.forget(name.as_str());
            lock(&self.refs).remove(name);
        }
        let names: Vec<EnvName> = gone.iter().map(|(n, _)| n.clone()).collect();
        self.engine.remove(gone, jiff::Timestamp::now()).await;
        self.dashboard.forget(&names);
    }
}

#[async_trait]
impl Driver for Live {
    async fn poll(&self) -> Vec<EnvName> {
        // What operators said, read anew.
        if let Err(e) = self.store.refresh().await {
            tracing::warn!(error = %e, "state not read anew; keeping what is known");
        }
        let mut listed = Arc::default();
        if !self.config.discover.is_empty() {
            match self.refresh_environments().await {
                Ok(l) => listed = l,
                Err(e) => {
                    tracing::warn!(error = %crate::output::chain(&e), "discover failed; keeping the known environments")
                }
            }
        }
        let mut changed = self.poll_refs(&listed).await;
        for env in self.poll_overrides() {
            if !changed.contains(&env) && lock(&self.specs).contains_key(&env) {
                tracing::info!(environment = %env, "an operator's override changed");
                changed.push(env);
            }
        }
        if !changed.is_empty() {
            tracing::info!(environments = ?changed.iter().map(EnvName::as_str).collect::<Vec<_>>(), "expected commit changed");
        }
        let leading = self.store.is_leader();
        if leading && !self.led.swap(leading, std::sync::atomic::Ordering::SeqCst) {
            tracing::info!("took over as leader: passing every environment now");
            // The notifications another leader kept or sent since, read from the database.
            self.engine.reload_outbox();
            return self.environments();
        }
        self.led.store(leading, std::sync::atomic::Ordering::SeqCst);
        changed
    }

    fn environments(&self) -> Vec<EnvName> {
        lock(&self.specs).keys().cloned().collect()
    }

    async fn pass(&self, envs: Vec<EnvName>, full: bool) -> PassDone {
        let now = jiff::Timestamp::now();
        let specs: Vec<EnvironmentSpec> = {
            let all = lock(&self.specs);
            let overrides = lock(&self.overrides);
            let windows = self.dashboard.windows();
            envs.iter()
                .filter_map(|e| all.get(e).cloned())
                .map(|mut s| {
                    s.controls = plan::controls(&overrides, windows.get(&s.name), &s.name, now);
                    s
                })
                .collect()
        };
        if specs.is_empty() {
            return PassDone::default();
        }
        let names: Vec<EnvName> = specs.iter().map(|s| s.name.clone()).collect();
        let prior = self.store.environments_among(&names);
        let start = Instant::now();
        let leading = self.store.is_leader();
        self.metrics.set_leader(leading);
        let mut out = if leading {
            self.engine.run_pass(&specs, &prior, PassMode::Reconcile { dry_run: false }, now).await
        } else {
            self.observer.run_pass(&specs, &prior, PassMode::Check, now).await
        };
        self.metrics.observe_pass(&out, start.elapsed());
        self.metrics.suspended(&specs);
        if full && leading {
            self.remove_gone().await;
        }
        for env in out.report.environments.iter().filter(|e| e.error.is_some()) {
            tracing::error!(environment = %env.name, error = env.error.as_deref().unwrap_or(""), "environment not checked");
        }
        for (name, reason, again) in &out.decisions {
            tracing::info!(environment = %name, %reason, requeue_s = again.map(|d| d.as_secs_f64()), full, "decided");
        }
        let requeue = requeues(&out, self.config.watch.converging_poll);
        // The reports move to the dashboard (the one copy kept), after the last reader.
        self.dashboard.record(std::mem::take(&mut out.report.environments));
        let mut deferred = lock(&self.deferred);
        let remediations = out
            .deferred
            .into_iter()
            .map(|(name, req)| {
                deferred.insert(name.clone(), req);
                name
            })
            .collect();
        PassDone { requeue, remediations }
    }

    async fn remediate(&self, env: EnvName) -> Option<Duration> {
        let started = Instant::now();
        let req = lock(&self.deferred).get(&env).cloned();
        let spec = lock(&self.specs).get(&env).cloned();
        let (Some(req), Some(spec)) = (req, spec) else { return None };
        if !self.store.is_leader() {
            // Leadership was lost between the pass that persisted the attempt and now: the
            // new leader, which reads that attempt, decides what happens next.
            lock(&self.deferred).remove(&env);
            tracing::warn!(environment = %env, attempt = req.attempt, "not remediating: no longer the leader");
            return None;
        }
        tracing::info!(environment = %env, attempt = req.attempt, expected = %req.expected, "remediation started");
        let outcome = self.engine.remediate(&spec, &req, jiff::Timestamp::now).await;
        lock(&self.deferred).remove(&env);
        self.metrics.remediation(env.as_str(), outcome.ok);
        tracing::info!(environment = %env, attempt = req.attempt, ok = outcome.ok, detail = %outcome.detail, "remediation finished");
        self.dashboard.changed();
        Some(spec.effective_policy().settle.saturating_sub(started.elapsed()))
    }

    fn pass_panicked(&self, envs: &[EnvName], message: &str) {
        let names: Vec<&str> = envs.iter().map(EnvName::as_str).collect();
        tracing::error!(environments = ?names, panic = %message, "a pass panicked; the next one runs as scheduled");
        self.metrics.pass_panicked();
    }

    fn stop_remediations(&self) {
        self.stop.cancel();
    }

    async fn abandoned(&self, env: EnvName) {
        let Some(req) = lock(&self.deferred).remove(&env) else { return };
        self.metrics.remediation(env.as_str(), false);
        let detail = "abandoned: watch shut down and the remediation did not end after being stopped";
        self.engine.abandon(&env, &req, detail, jiff::Timestamp::now()).await;
    }
}

/// When to look at each environment of a pass again: when its decision asks (grace, settle,
/// backoff, renotify ends), and — when it is not in sync and something is pending
/// (converging, remediating, backing off, observing) — every `converging_poll` at least, so
/// convergence and its lag are seen within seconds, not at the next full pass.
pub fn requeues(out: &PassOutcome, converging_poll: Duration) -> Vec<(EnvName, Duration)> {
    let converging: std::collections::HashSet<&EnvName> = out
        .report
        .environments
        .iter()
        .filter(|e| {
            matches!(
                e.phase,
                Some(Phase::Converging | Phase::Remediating | Phase::BackingOff | Phase::Observing)
            )
        })
        .map(|e| &e.name)
        .collect();
    out.decisions
        .iter()
        .filter_map(|(n, _, again)| {
            let poll = converging.contains(n).then_some(converging_poll);
            let at = match (*again, poll) {
                (Some(a), Some(p)) => Some(a.min(p)),
                (a, p) => a.or(p),
            };
            at.map(|d| (n.clone(), d))
        })
        .collect()
}

/// The git directory of a local repository (for file-system notification).
pub fn git_dir(repo: &Path) -> PathBuf {
    let dotgit = repo.join(".git");
    if dotgit.is_dir() { dotgit } else { repo.to_path_buf() }
}
