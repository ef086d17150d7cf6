//! [`Loop`]: what a pass of the controller does — the [`Driver`] that
//! [`crate::schedule::run`] drives. A pass applies operators' controls and freeze windows
//! to the specs, probes and decides through core's [`Engine`] (acting only where this
//! process leads, observing elsewhere), publishes the reports to the [`View`], and hands
//! decided remediations back to the scheduler, which runs each in a task of its own. A
//! full pass also retires the environments gone from the list.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use gitstate_core::{
    CommitId, Engine, EnvName, EnvironmentSpec, ExpectedState, PassMode, PassOutcome, Phase,
    RemediationRequest,
};
use tokio::time::Instant;

use super::{Clock, OnePass};
use crate::controls::{Overrides, Windows, controls_at};
use crate::environments::{Environment, Environments, Listed};
use crate::leadership::Leadership;
use crate::schedule::{Driver, PassDone};
use crate::store::Store;
use crate::view::{Observer, View};

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the builder hands the loop.
pub(super) struct Parts {
    pub engine: Engine,
    pub once_engine: Engine,
    pub observer_engine: Engine,
    pub source: Arc<dyn ExpectedState>,
    pub store: Arc<dyn Store>,
    pub leadership: Arc<dyn Leadership>,
    pub observer: Arc<dyn Observer>,
    pub view: Arc<View>,
    pub discovery: Option<Arc<dyn Environments>>,
    pub environments: Vec<Environment>,
    pub stop: tokio_util::sync::CancellationToken,
    pub converging_poll: Duration,
    pub pushed: Arc<Mutex<Vec<Option<String>>>>,
    pub clock: Clock,
    pub trust: Option<crate::trust::TrustPolicy>,
}

/// The controller's driver.
/// How many environments one pass takes at a time (see [`Loop::pass`]): at 50,000
/// environments a pass held some 6 KB of temporaries for each at once (a heap profile
/// showed the resident size following that peak, not what is live).
const CHUNK: usize = 2048;

pub(crate) struct Loop {
    /// Acts, remediations deferred to tasks of their own (the loop's passes).
    engine: Engine,
    /// Acts, remediations awaited within the pass ([`super::Controller::run_once`]).
    once_engine: Engine,
    /// Probes and reports, nothing more: the passes of a standby (SPEC §14).
    observer_engine: Engine,
    pub(super) source: Arc<dyn ExpectedState>,
    pub(super) store: Arc<dyn Store>,
    leadership: Arc<dyn Leadership>,
    observer: Arc<dyn Observer>,
    view: Arc<View>,
    pub(super) discovery: Option<Arc<dyn Environments>>,
    /// Cancelled to stop remediations at shutdown.
    stop: tokio_util::sync::CancellationToken,
    converging_poll: Duration,
    pub(super) specs: Mutex<BTreeMap<EnvName, EnvironmentSpec>>,
    pub(super) refs: Mutex<HashMap<EnvName, CommitId>>,
    deferred: Mutex<HashMap<EnvName, RemediationRequest>>,
    /// What operators said, as last read.
    pub(super) overrides: Mutex<Overrides>,
    /// Refs named by push webhooks since the last poll (`None`: every ref).
    pub(super) pushed: Arc<Mutex<Vec<Option<String>>>>,
    /// Whether this process led at the last poll.
    led: AtomicBool,
    /// The leadership's generation at the last poll: one that has just taken over (the
    /// lead, or slots) passes its environments at once (SPEC §14, §19), not at the next
    /// full pass.
    generation: AtomicU64,
    /// The listing the last ref poll read.
    pub(super) last_listed: Mutex<Option<Arc<Listed>>>,
    /// The environments whose refs that listing does not have (named refs, read each
    /// poll), as the last poll of a new listing found them.
    /// `None` once the environments change.
    pub(super) unlisted: Mutex<Option<Vec<(EnvName, String)>>>,
    /// What time the decisions are made at.
    pub(super) clock: Clock,
    /// DORA's facts from each pass's events, for the observer's metrics.
    dora: crate::dora::Live,
    /// SPEC §18: whose signatures count, and the verdict on each environment's move.
    pub(super) trust: Option<crate::trust::TrustPolicy>,
    gates: Mutex<HashMap<EnvName, gitstate_core::TrustGate>>,
    /// Per environment, the untrusted commits its instances ran at its last pass.
    unsigned: Mutex<HashMap<EnvName, Vec<CommitId>>>,
    /// When this process last passed each environment (SPEC §19: stale past
    /// 2 × `interval` + `failover`), and when it started (the time of those never passed).
    observed: Mutex<HashMap<EnvName, jiff::Timestamp>>,
    started: jiff::Timestamp,
}

impl Loop {
    pub(super) fn new(p: Parts) -> Self {
        let generation = p.leadership.generation();
        let started = p.clock.now();
        let led = p.leadership.leading();
        let me = Self {
            engine: p.engine.with_deferred_remediations(),
            once_engine: p.once_engine,
            observer_engine: p.observer_engine,
            source: p.source,
            store: p.store,
            leadership: p.leadership,
            observer: p.observer,
            view: p.view,
            discovery: p.discovery,
            stop: p.stop,
            converging_poll: p.converging_poll,
            specs: Mutex::default(),
            refs: Mutex::default(),
            deferred: Mutex::default(),
            overrides: Mutex::default(),
            pushed: p.pushed,
            generation: AtomicU64::new(generation),
            led: AtomicBool::new(led),
            last_listed: Mutex::default(),
            unlisted: Mutex::default(),
            clock: p.clock,
            dora: crate::dora::Live::new(),
            trust: p.trust,
            gates: Mutex::default(),
            unsigned: Mutex::default(),
            observed: Mutex::default(),
            started,
        };
        me.set_environments(p.environments);
        me
    }

    /// Reads what operators said and the refs once (that first reading reports no change).
    pub(super) async fn start(&self) {
        let leading = self.leadership.keep().await;
        self.generation.store(self.leadership.generation(), Ordering::SeqCst);
        self.led.store(leading, Ordering::SeqCst);
        self.observer.leader(leading);
        self.poll_overrides();
        let listed = self.refresh_environments().await;
        self.poll_refs(&listed).await;
    }

    pub(super) fn leadership(&self) -> Arc<dyn Leadership> {
        self.leadership.clone()
    }

    pub(super) async fn resign(&self) {
        self.leadership.resign().await;
    }

    pub(super) fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub(super) fn observer(&self) -> Arc<dyn Observer> {
        self.observer.clone()
    }

    /// Replaces the specs and the windows (the view serves the windows in `/status`).
    pub(super) fn set_environments(&self, envs: Vec<Environment>) {
        let mut windows = Windows::new();
        // Collected, not inserted one by one: the map is built in bulk, its nodes full.
        let specs: BTreeMap<EnvName, EnvironmentSpec> = envs
            .into_iter()
            .map(|e| {
                if !e.windows.is_empty() {
                    windows.insert(e.spec.name.clone(), e.windows);
                }
                (e.spec.name.clone(), e.spec)
            })
            .collect();
        self.view.set_policies(specs.values());
        // The refs read one by one are worked out again at the next poll.
        *lock(&self.unlisted) = None;
        *lock(&self.specs) = specs;
        self.view.set_windows(Arc::new(windows));
    }

    /// The specs of `envs` (those known), with what operators and the calendar say at `now`.
    fn controlled(&self, envs: Option<&[EnvName]>, now: jiff::Timestamp) -> Vec<EnvironmentSpec> {
        let all = lock(&self.specs);
        let overrides = lock(&self.overrides);
        let windows = self.view.windows();
        let gates = lock(&self.gates);
        let unsigned = lock(&self.unsigned);
        let control = |s: &EnvironmentSpec| {
            let mut s = s.clone();
            s.controls = controls_at(&overrides, windows.get(&s.name), &s.name, now);
            if let Some(policy) = &self.trust {
                s.controls.trust = Some(Box::new(
                    gates.get(&s.name).cloned().unwrap_or_else(|| crate::trust::not_judged(policy.block)),
                ));
                s.controls.unsigned_running = unsigned.get(&s.name).cloned().unwrap_or_default();
            }
            s
        };
        match envs {
            Some(envs) => envs.iter().filter_map(|e| all.get(e)).map(control).collect(),
            None => all.values().map(control).collect(),
        }
    }

    /// Retires the environments the store knows but the list no longer has: alarms
    /// resolved as `removed`, records pruned, views told.
    async fn remove_gone(&self, now: jiff::Timestamp) -> (Vec<EnvName>, Option<String>) {
        let gone: Vec<_> = {
            let specs = lock(&self.specs);
            let names: Vec<EnvName> = self
                .store
                .names()
                .into_iter()
                .filter(|n| !specs.contains_key(n) && self.leadership.may_act(n).is_some())
                .collect();
            self.store.environments_among(&names).into_iter().collect()
        };
        if gone.is_empty() {
            return (Vec::new(), None);
        }
        let names: Vec<EnvName> = gone.iter().map(|(n, _)| n.clone()).collect();
        for name in &names {
            tracing::info!(environment = %name, "environment removed; its state is pruned");
            self.observer.removed(name);
            self.dora.forget(name);
            lock(&self.refs).remove(name);
            lock(&self.observed).remove(name);
        }
        let removed = self.engine.remove(gone, now).await;
        self.view.forget(&names);
        (names, removed.journal_error)
    }

    /// One pass over every environment, remediations awaited (`reconcile`).
    pub(super) async fn once(
        &self,
        mode: PassMode,
        prune: bool,
    ) -> Result<OnePass, crate::store::StoreError> {
        *lock(&self.overrides) = self.store.overrides()?;
        let now = self.clock.now();
        if self.trust.is_some() {
            let refs: Vec<(EnvName, String)> =
                lock(&self.specs).values().map(|s| (s.name.clone(), s.reference.clone())).collect();
            let names: Vec<String> = refs.iter().map(|(_, r)| r.clone()).collect();
            if let Ok(resolved) = self.source.resolve(&names).await {
                let found: Vec<(EnvName, CommitId)> = refs
                    .into_iter()
                    .zip(resolved)
                    .filter_map(|((n, _), r)| Some((n, r.ok()?.commit)))
                    .collect();
                self.judge(&found, now).await;
            }
        }
        let specs = self.controlled(None, now);
        let prior = self.store.environments();
        let out = self.once_engine.run_pass(&specs, &prior, mode, now).await;
        self.veto_rolled_back(&out, now).await;
        if mode == (PassMode::Reconcile { dry_run: false }) {
            self.check_running(&out.report.environments, &prior, now).await;
        }
        self.view.record(out.report.environments.clone());
        let mut store_error = out.journal_error.clone();
        let mut removed = Vec::new();
        if prune && mode == (PassMode::Reconcile { dry_run: false }) {
            let (names, error) = self.remove_gone(self.clock.now()).await;
            removed = names;
            store_error = store_error.or(error);
        }
        if mode == (PassMode::Reconcile { dry_run: false })
            && let Err(e) = self.store.flush().await
        {
            store_error = store_error.or(Some(e.to_string()));
        }
        Ok(OnePass { outcome: out, removed, store_error })
    }
}

impl Loop {
    /// SPEC §18: judges the move of each environment whose expected commit is new to its
    /// gate, from its last trusted commit (the store's).
    pub(super) async fn judge(&self, found: &[(EnvName, CommitId)], now: jiff::Timestamp) {
        let Some(policy) = &self.trust else { return };
        let todo: Vec<(EnvName, CommitId)> = {
            let gates = lock(&self.gates);
            found.iter().filter(|(n, c)| gates.get(n).is_none_or(|g| g.commit != *c)).cloned().collect()
        };
        if todo.is_empty() {
            return;
        }
        let names: Vec<EnvName> = todo.iter().map(|(n, _)| n.clone()).collect();
        let states = self.store.environments_among(&names);
        for (name, commit) in todo {
            let from = states.get(&name).and_then(|s| s.last_trusted);
            let gate = policy.judge(&*self.source, from, commit, now).await;
            if !gate.trusted {
                tracing::warn!(environment = %name, commit = %commit, reason = gate.record.reason.as_deref().unwrap_or(""), "untrusted expected commit");
            }
            lock(&self.gates).insert(name, gate);
        }
    }

    /// SPEC §18: the commits the pass saw running that are neither signed by an allowed
    /// key nor the environment's last trusted expected commit; its next pass raises (or
    /// resolves) `unsigned_running`. Instances reporting a commit the repository lacks
    /// cannot be judged and count for nothing.
    async fn check_running(
        &self,
        reports: &[gitstate_core::EnvironmentReport],
        prior: &BTreeMap<EnvName, gitstate_core::EnvState>,
        now: jiff::Timestamp,
    ) {
        let Some(policy) = &self.trust else { return };
        for r in reports {
            let trusted_expected = prior.get(&r.name).and_then(|s| s.last_trusted);
            let mut running: Vec<CommitId> = Vec::new();
            for i in r.targets.iter().flat_map(|t| &t.instances) {
                use gitstate_core::Status;
                if matches!(
                    i.status,
                    Status::UnknownCommit | Status::Unreachable | Status::Invalid | Status::Missing
                ) {
                    continue;
                }
                let Some(c) = i.actual.as_deref().and_then(|a| CommitId::parse(a).ok()) else { continue };
                if Some(c) != trusted_expected && !running.contains(&c) {
                    running.push(c);
                }
            }
            let mut unsigned = Vec::new();
            for c in running {
                // A verdict that cannot change needs no read of the commit.
                if let Some(v) = policy.trust.cached(&c) {
                    if !v.trusted {
                        unsigned.push(c);
                    }
                    continue;
                }
                let judged = match self.source.signed_commits(None, &c, 1).await {
                    Ok(list) => list.first().map(|s| policy.trust.verify(s, now).trusted),
                    Err(_) => None,
                };
                if judged == Some(false) {
                    unsigned.push(c);
                }
            }
            let mut known = lock(&self.unsigned);
            if unsigned.is_empty() {
                known.remove(&r.name);
            } else {
                let shas: Vec<String> = unsigned.iter().map(|c| c.short(12).to_string()).collect();
                tracing::warn!(environment = %r.name, commits = ?shas, "unsigned code running");
                known.insert(r.name.clone(), unsigned);
            }
        }
    }

    /// SPEC §15: a commit the loop rolled back from is vetoed, kept with the controls.
    async fn veto_rolled_back(&self, out: &PassOutcome, now: jiff::Timestamp) {
        for e in &out.events {
            if let gitstate_core::EventKind::RolledBack { from, to, reason, .. } = &e.kind {
                let actor = crate::actions::Actor { by: "gitstate", via: "loop" };
                let recorded = crate::actions::record_rollback(
                    &*self.store,
                    &e.environment,
                    *from,
                    *to,
                    actor,
                    reason.as_deref(),
                    now,
                );
                if let Err(err) = recorded.await {
                    tracing::error!(environment = %e.environment, error = %err, "the rolled-back commit could not be vetoed");
                }
            }
        }
    }
}

/// SPEC §19, the notifier's duty: every quarter of `limit` (a second at least), the
/// environments nobody observed within `limit` (2 × `interval` + `failover`) — by this
/// process's passes, or by the replica holding their slot — are the `stale` cause's
/// members; the engine opens, changes or resolves its page (`GitstateStale`).
pub(super) async fn watch_staleness(me: Arc<Loop>, limit: Duration) {
    let every = (limit / 4).max(Duration::from_secs(1));
    let limit = jiff::SignedDuration::try_from(limit).unwrap_or(jiff::SignedDuration::MAX);
    loop {
        tokio::time::sleep(every).await;
        if !me.leadership.notifier() {
            continue;
        }
        let names: Vec<EnvName> = lock(&me.specs).keys().cloned().collect();
        let elsewhere = me.leadership.observed_elsewhere(&names).await;
        let now = me.clock.now();
        let stale: Vec<EnvName> = {
            let observed = lock(&me.observed);
            names
                .into_iter()
                .zip(elsewhere)
                .filter(|(name, there)| {
                    let seen = there.or_else(|| observed.get(name).copied()).unwrap_or(me.started);
                    now.duration_since(seen) > limit
                })
                .map(|(name, _)| name)
                .collect()
        };
        // Policies (severity, labels) for the stale ones only: at 50,000 environments a
        // copy of every policy every few seconds would be the watchdog's whole cost.
        let stale: Vec<(EnvName, gitstate_core::Policy)> = {
            let specs = lock(&me.specs);
            stale.into_iter().filter_map(|n| Some((n.clone(), specs.get(&n)?.effective_policy()))).collect()
        };
        if !stale.is_empty() {
            tracing::warn!(environments = stale.len(), first = %stale[0].0, "not observed in time: stale");
        }
        let deliveries = me.engine.note_stale(stale, now).await;
        if !deliveries.is_empty() {
            me.view.set_causes(me.engine.causes());
        }
    }
}

/// Keeps (or takes) the lead every [`Leadership::period`]; while not leading, reads what
/// the leader wrote, to serve it.
pub(super) async fn keep_leadership(me: Arc<Loop>) {
    let period = me.leadership.period();
    loop {
        tokio::time::sleep(period).await;
        let leading = me.leadership.keep().await;
        // What the other writers changed (the leader's records for a standby; the other
        // shards' for a replica), so that every replica serves the whole fleet.
        if let Err(e) = me.store.reload().await {
            tracing::warn!(error = %e, "the other writers' changes not read");
        }
        me.observer.leader(leading);
        let shard = me.leadership.shard();
        if let Some(s) = &shard {
            me.observer.shard(s);
        }
        me.view.set_shard(shard);
    }
}

#[async_trait]
impl Driver for Loop {
    async fn poll(&self) -> Vec<EnvName> {
        // A push webhook: the source may fetch what it brought while the refs are read
        // (a remote's mirror), so that the pass after does not wait for its own fetch.
        let pushed: Vec<Option<String>> = lock(&self.pushed).clone();
        if !pushed.is_empty() {
            let refs: Vec<String> = pushed.into_iter().flatten().collect();
            self.source.pushed(&refs);
            let source = self.source.clone();
            tokio::spawn(async move { source.prefetch().await });
        }
        // What operators said, read anew.
        if let Err(e) = self.store.refresh().await {
            tracing::warn!(error = %e, "state not read anew; keeping what is known");
        }
        let listed = self.refresh_environments().await;
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
        let leading = self.leadership.leading();
        let generation = self.leadership.generation();
        let grew = self.generation.swap(generation, Ordering::SeqCst) != generation;
        if leading && (!self.led.swap(leading, Ordering::SeqCst) || grew) {
            tracing::info!("took over (the lead, or slots): passing those environments now");
            // The notifications another leader kept or sent since, read from the store.
            self.engine.reload_outbox();
            let all: Vec<EnvName> =
                self.environments().into_iter().filter(|e| self.leadership.may_act(e).is_some()).collect();
            self.observer.ref_polled(&all);
            return all;
        }
        self.led.store(leading, Ordering::SeqCst);
        self.observer.ref_polled(&changed);
        changed
    }

    fn environments(&self) -> Vec<EnvName> {
        lock(&self.specs).keys().cloned().collect()
    }

    /// Passes `envs`, [`CHUNK`] at a time: each chunk is a pass of its own (probed,
    /// decided, persisted, shown), so what a pass holds at once — spec copies, prior
    /// states, observations, outcomes — is a chunk's, not 50,000 environments'. A full pass
    /// retires the environments gone once its last chunk is done.
    async fn pass(&self, envs: Vec<EnvName>, full: bool) -> PassDone {
        let now = self.clock.now();
        let mut done = PassDone::default();
        let mut acted = false;
        for names in envs.chunks(CHUNK) {
            let specs = self.controlled(Some(names), now);
            if specs.is_empty() {
                continue;
            }
            let leading = self.leadership.leading();
            self.observer.leader(leading);
            // Acted for where this process may; observed where it only watches; left to
            // their owner where another replica holds them (SPEC §19).
            let (acting, watched): (Vec<_>, Vec<_>) =
                specs.into_iter().partition(|s| self.leadership.may_act(&s.name).is_some());
            let watched: Vec<_> = watched.into_iter().filter(|s| self.leadership.observes(&s.name)).collect();
            for (specs, acts) in [(acting, true), (watched, false)] {
                if !specs.is_empty() {
                    acted |= acts;
                    let part = self.pass_of(specs, acts, full, now).await;
                    done.requeue.extend(part.requeue);
                    done.remediations.extend(part.remediations);
                }
            }
        }
        if full && acted {
            self.remove_gone(self.clock.now()).await;
        }
        done
    }

    async fn remediate(&self, env: EnvName) -> Option<Duration> {
        self.remediate_one(env).await
    }

    fn pass_panicked(&self, envs: &[EnvName], message: &str) {
        let names: Vec<&str> = envs.iter().map(EnvName::as_str).collect();
        tracing::error!(environments = ?names, panic = %message, "a pass panicked; the next one runs as scheduled");
        self.observer.pass_panicked();
    }

    fn stop_remediations(&self) {
        self.stop.cancel();
    }

    async fn abandoned(&self, env: EnvName) {
        let Some(req) = lock(&self.deferred).remove(&env) else { return };
        self.observer.remediation(&env, false);
        let detail = "abandoned: watch shut down and the remediation did not end after being stopped";
        self.engine.abandon(&env, &req, detail, self.clock.now()).await;
    }
}

impl Loop {
    /// A pass over `specs`: acting for them (`leading`), or only probing and reporting.
    async fn pass_of(
        &self,
        specs: Vec<EnvironmentSpec>,
        leading: bool,
        full: bool,
        now: jiff::Timestamp,
    ) -> PassDone {
        let names: Vec<EnvName> = specs.iter().map(|s| s.name.clone()).collect();
        let prior = self.store.environments_among(&names);
        let start = Instant::now();
        let mut out = if leading {
            self.engine.run_pass(&specs, &prior, PassMode::Reconcile { dry_run: false }, now).await
        } else {
            self.observer_engine.run_pass(&specs, &prior, PassMode::Check, now).await
        };
        self.observer.pass(&specs, &out, start.elapsed());
        {
            // Observed: the pass is over (a pass that hangs leaves them unobserved).
            let mut observed = lock(&self.observed);
            let at = self.clock.now();
            for n in names {
                observed.insert(n, at);
            }
        }
        if leading && !out.events.is_empty() {
            let observed = self.dora.observe(&*self.source, &prior, &out.events).await;
            if !observed.is_empty() {
                self.observer.dora(&observed);
            }
        }
        for env in out.report.environments.iter().filter(|e| e.error.is_some()) {
            tracing::error!(environment = %env.name, error = env.error.as_deref().unwrap_or(""), "environment not checked");
        }
        for (name, reason, again) in &out.decisions {
            tracing::info!(environment = %name, %reason, requeue_s = again.map(|d| d.as_secs_f64()), full, "decided");
        }
        self.veto_rolled_back(&out, now).await;
        if leading {
            self.view.set_causes(self.engine.causes());
            self.check_running(&out.report.environments, &prior, now).await;
        }
        let requeue = requeues(&out, self.converging_poll);
        // The reports move to the view (the one copy kept), after the last reader.
        self.view.record(std::mem::take(&mut out.report.environments));
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

    async fn remediate_one(&self, env: EnvName) -> Option<Duration> {
        let started = Instant::now();
        let req = lock(&self.deferred).get(&env).cloned();
        let spec = lock(&self.specs).get(&env).cloned();
        let (Some(req), Some(spec)) = (req, spec) else { return None };
        if self.leadership.may_act(&env).is_none() {
            // Leadership was lost between the pass that persisted the attempt and now: the
            // new leader, which reads that attempt, decides what happens next.
            lock(&self.deferred).remove(&env);
            tracing::warn!(environment = %env, attempt = req.attempt, "not remediating: no longer the leader");
            return None;
        }
        tracing::info!(environment = %env, attempt = req.attempt, expected = %req.expected, "remediation started");
        let outcome = self.engine.remediate(&spec, &req, || self.clock.now()).await;
        lock(&self.deferred).remove(&env);
        self.observer.remediation(&env, outcome.ok);
        tracing::info!(environment = %env, attempt = req.attempt, ok = outcome.ok, detail = %outcome.detail, "remediation finished");
        self.view.changed();
        Some(spec.effective_policy().settle.saturating_sub(started.elapsed()))
    }
}

/// When to look at each environment of a pass again: when its decision asks (grace,
/// settle, backoff, renotify ends), and — when it is not in sync and something is pending
/// (converging, remediating, backing off, observing) — every `converging_poll` at least,
/// so convergence and its lag are seen within seconds, not at the next full pass.
pub fn requeues(out: &PassOutcome, converging_poll: Duration) -> Vec<(EnvName, Duration)> {
    let converging: HashSet<&EnvName> = out
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
