//! The pass [`Engine`]: one pass of resolve → probe → classify → decide → act, shared by
//! the CLI (`check`, `reconcile`, `watch`) and by any deploy tool that embeds gitstate.
//! Read in pipeline order: `engine/observe.rs` (resolve refs, probe within each target's
//! deadline, classify drift against the history), the pure [`crate::reconcile()`] called
//! from [`Engine::run_pass`], `engine/act.rs` (checkpoint, then remediate),
//! `engine/notify.rs` (alarm text, delivery and retries).
//!
//! Runtime-agnostic: it uses `futures` only. Probes of every target of every environment
//! run concurrently up to [`Engine::with_concurrency`]; remediations of different environments
//! run concurrently, at most one per environment. The engine owns persistence: before any
//! remediation starts the decided states go through [`Journal::checkpoint`] (so a crash
//! never forgets an attempt), and at the end of the pass the final states and the pass's
//! events do; callers only read [`PassOutcome::states`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;

use crate::alarm::{AlarmChange, Resolution};
use crate::commit::CommitId;
use crate::event::{Event, EventKind};
use crate::name::EnvName;
use crate::observation::{Assessment, Reading, TargetObservation};
use crate::plugin::{
    ActualStateProbe, AlarmSink, Expected, ExpectedState, Journal, RemediationOutcome, RemediationRequest,
    Remediator,
};
use crate::policy::{Mode, Policy};
use crate::reconcile::{Controls, Decision, ExpectedCommit, Reason, reconcile_with};
use crate::report::{ActionReport, EnvironmentReport, Report};
use crate::state::{EnvState, Phase};

mod act;
mod notify;
mod observe;
use act::{finished_event, run_remediator};
pub use notify::Delivery;

/// How long the engine waits for a probe when its target says nothing else (SPEC §8).
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// One target of an environment and the probe that reads it.
#[derive(Clone)]
pub struct TargetSpec {
    /// The target's name.
    pub name: String,
    /// Its probe.
    pub probe: Arc<dyn ActualStateProbe>,
    /// The engine's own bound on one `observe` call: a probe that has not answered by then
    /// makes the target `unreachable` ("no answer within 30s"), and the pass goes on.
    pub timeout: Duration,
}

impl TargetSpec {
    /// A target bounded by [`DEFAULT_PROBE_TIMEOUT`].
    pub fn new(name: impl Into<String>, probe: Arc<dyn ActualStateProbe>) -> Self {
        Self { name: name.into(), probe, timeout: DEFAULT_PROBE_TIMEOUT }
    }

    /// Sets the engine's bound on this target's probe.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// One environment as the engine sees it.
#[derive(Clone)]
pub struct EnvironmentSpec {
    /// Its name.
    pub name: EnvName,
    /// Its ref (full or short).
    pub reference: String,
    /// Its targets.
    pub targets: Vec<TargetSpec>,
    /// How to redeploy it; none means the environment is only observed.
    pub remediator: Option<Arc<dyn Remediator>>,
    /// Its policy.
    pub policy: Policy,
    /// What an operator (or a freeze window) says about acting on it now.
    pub controls: Controls,
}

impl EnvironmentSpec {
    /// The policy in force: observe mode when there is nothing to remediate with.
    pub fn effective_policy(&self) -> Policy {
        let mut p = self.policy.clone();
        if self.remediator.is_none() {
            p.mode = Mode::Observe;
        }
        p
    }
}

/// What kind of pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassMode {
    /// Observe and report; no state, no decision, no action (`gitstate check`).
    Check,
    /// The closed loop. In a dry run the actions are decided and reported, not carried out,
    /// and nothing is persisted.
    Reconcile {
        /// Decide without acting.
        dry_run: bool,
    },
}

/// How many of the commits at stake an instance names per side unless told otherwise.
pub const DEFAULT_MAX_COMMITS: usize = 10;

/// The result of a pass.
#[derive(Debug, Clone)]
pub struct PassOutcome {
    /// The report (SPEC §6 JSON).
    pub report: Report,
    /// The next state of every environment that was decided (reconcile only), already
    /// given to the journal unless dry run.
    pub states: Vec<(EnvName, EnvState)>,
    /// The audit events of the pass (already given to the journal, unless dry run).
    pub events: Vec<Event>,
    /// Per decided environment: why, and when to look again.
    pub decisions: Vec<(EnvName, Reason, Option<Duration>)>,
    /// Remediation outcomes, per environment (not in a dry run).
    pub remediations: Vec<(EnvName, RemediationOutcome)>,
    /// Notifications attempted: `(sink, what became of it)`.
    pub deliveries: Vec<(String, Delivery)>,
    /// Persisting failed: the error, rendered. Remediations were not run when this is set.
    pub journal_error: Option<String>,
    /// Remediations decided and persisted but not run (engines built with
    /// [`Engine::with_deferred_remediations`]): run each with [`Engine::remediate`].
    pub deferred: Vec<(EnvName, RemediationRequest)>,
}

impl PassOutcome {
    fn new(now: Timestamp) -> Self {
        Self {
            report: Report { schema: 1, checked_at: now, in_sync: true, environments: Vec::new() },
            states: Vec::new(),
            events: Vec::new(),
            decisions: Vec::new(),
            remediations: Vec::new(),
            deliveries: Vec::new(),
            journal_error: None,
            deferred: Vec::new(),
        }
    }
}

/// Drives passes. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    source: Arc<dyn ExpectedState>,
    sinks: Vec<Arc<dyn AlarmSink>>,
    journal: Option<Arc<dyn Journal>>,
    concurrency: usize,
    defer_remediations: bool,
    /// The notifications kept for later passes, loaded from the journal on first use.
    outbox: Arc<std::sync::Mutex<Option<crate::state::Outbox>>>,
    /// The commits at stake named per instance and side (SPEC §11).
    max_commits: usize,
    /// Where commits and comparisons can be read.
    links: crate::links::Links,
    /// The clock that bounds each probe.
    timer: Timer,
}

/// How the engine waits out a probe's timeout: by default a `futures-timer` delay (its own
/// thread, any executor); a host with a runtime gives its own, which at thousands of
/// probes a pass costs far less (no cross-thread wake-up per probe).
#[derive(Clone)]
pub struct Timer(
    Option<Arc<dyn Fn(std::time::Duration) -> futures::future::BoxFuture<'static, ()> + Send + Sync>>,
);

impl Timer {
    /// A timer from a function returning a future that completes after the duration,
    /// such as `|d| Box::pin(tokio::time::sleep(d))`.
    pub fn new(
        sleep: impl Fn(std::time::Duration) -> futures::future::BoxFuture<'static, ()> + Send + Sync + 'static,
    ) -> Self {
        Self(Some(Arc::new(sleep)))
    }

    fn sleep(&self, d: std::time::Duration) -> futures::future::BoxFuture<'static, ()> {
        match &self.0 {
            Some(f) => f(d),
            None => Box::pin(futures_timer::Delay::new(d)),
        }
    }
}

impl Default for Timer {
    /// `futures-timer`.
    fn default() -> Self {
        Self(None)
    }
}

impl std::fmt::Debug for Timer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Timer(host)" } else { "Timer(futures-timer)" })
    }
}

struct Probed {
    env: usize,
    target: usize,
    result: Result<Vec<Reading>, crate::observation::ProbeFailure>,
}

impl Engine {
    /// An engine reading expected commits from `source`, probing 64 targets at a time.
    pub fn new(source: Arc<dyn ExpectedState>) -> Self {
        Self {
            source,
            sinks: Vec::new(),
            journal: None,
            concurrency: 64,
            defer_remediations: false,
            outbox: Arc::default(),
            max_commits: DEFAULT_MAX_COMMITS,
            links: crate::links::Links::default(),
            timer: Timer::default(),
        }
    }

    /// Sets how many of the commits at stake each instance names per side (SPEC §11,
    /// `[output] max_commits`; default 10, 0 names none).
    pub fn with_max_commits(mut self, n: usize) -> Self {
        self.max_commits = n;
        self
    }

    /// Sets where commits and comparisons can be read (`compare_url` of each instance that
    /// differs).
    pub fn with_links(mut self, links: crate::links::Links) -> Self {
        self.links = links;
        self
    }

    /// Adds an alarm sink.
    pub fn with_sink(mut self, sink: Arc<dyn AlarmSink>) -> Self {
        self.sinks.push(sink);
        self
    }

    /// Sets where state and events are persisted during a pass.
    pub fn with_journal(mut self, journal: Arc<dyn Journal>) -> Self {
        self.journal = Some(journal);
        self
    }

    /// Forgets the notifications kept in memory: the next pass reads them from the journal
    /// again. For a host whose journal another process wrote meanwhile (a replica that
    /// takes over from another leader).
    pub fn reload_outbox(&self) {
        *self.outbox.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Bounds probes with `timer` instead of `futures-timer`.
    pub fn with_timer(mut self, timer: Timer) -> Self {
        self.timer = timer;
        self
    }

    /// Sets the number of probes in flight (at least 1).
    pub fn with_concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Hands remediations back in [`PassOutcome::deferred`] instead of awaiting them in the
    /// pass, so that a long deploy of one environment never delays the probes of others
    /// (the `watch` loop runs each with [`Engine::remediate`] in its own task). The attempt
    /// is counted and persisted before the pass returns, as for inline remediations.
    pub fn with_deferred_remediations(mut self) -> Self {
        self.defer_remediations = true;
        self
    }

    /// Runs one deferred remediation and records its `remediation_finished` event, stamped
    /// by `clock` when it returns.
    pub async fn remediate(
        &self,
        env: &EnvironmentSpec,
        req: &RemediationRequest,
        clock: impl Fn() -> Timestamp + Send,
    ) -> RemediationOutcome {
        let outcome = run_remediator(env.remediator.as_deref(), req).await;
        self.finished(&env.name, req, &outcome, clock()).await;
        outcome
    }

    /// Records that a deferred remediation was given up (its task ended without an
    /// outcome, as at shutdown): a failed `remediation_finished` saying `detail`.
    pub async fn abandon(&self, env: &EnvName, req: &RemediationRequest, detail: &str, at: Timestamp) {
        let outcome =
            RemediationOutcome { ok: false, detail: detail.to_owned(), exit_code: None, output_tail: None };
        self.finished(env, req, &outcome, at).await;
    }

    async fn finished(
        &self,
        env: &EnvName,
        req: &RemediationRequest,
        outcome: &RemediationOutcome,
        at: Timestamp,
    ) {
        if let Some(j) = &self.journal
            && let Err(e) = j.record(&[finished_event(env, req, outcome, at)]).await
        {
            tracing::error!(error = %e, "audit event could not be appended");
        }
    }

    /// Retires environments that a whole pass no longer has (gone from the configuration, or
    /// no longer discovered): each open alarm is resolved as `removed` and delivered like any
    /// resolve, an `environment_removed` event is written, and the journal forgets the
    /// state. `gone` are the states remembered for them. The outcome has no report.
    pub async fn remove(&self, gone: Vec<(EnvName, EnvState)>, now: Timestamp) -> PassOutcome {
        let mut out = PassOutcome::new(now);
        let mut states = gone;
        let mut notes = Vec::new();
        for (name, state) in &mut states {
            let expected = state.expected.as_ref().map(|e| e.commit);
            let reference = state.reference.clone().unwrap_or_default();
            for alarm in std::mem::take(&mut state.alarms) {
                let Some(about) = expected else { continue };
                let change = AlarmChange::Resolved(Resolution::Removed);
                let kind = EventKind::of_alarm(change, alarm.kind, about);
                out.events.push(Event { at: now, environment: name.clone(), kind });
                notes.push(notify::notification(
                    name,
                    &reference,
                    about,
                    alarm.kind,
                    alarm.since,
                    change.event(),
                    change.resolution(),
                    now,
                    &[],
                ));
            }
            let kind = EventKind::EnvironmentRemoved { expected };
            out.events.push(Event { at: now, environment: name.clone(), kind });
        }
        let names: Vec<EnvName> = states.iter().map(|(n, _)| n.clone()).collect();
        // One last try for what they had kept; what still fails is dropped with them.
        self.deliver(&[], &names, notes, now, &mut out).await;
        self.drop_outbox(&names).await;
        if let Some(j) = &self.journal {
            let persisted = async {
                j.record(&out.events).await?;
                j.forget(&names).await
            };
            if let Err(e) = persisted.await {
                tracing::error!(error = %e, "removed environments could not be forgotten");
                out.journal_error = Some(e.to_string());
            }
        }
        out
    }

    /// Runs one pass over `envs`. `prior` is the remembered state (ignored by `Check`);
    /// `now` is the pass's time, given so that callers (and tests) own the clock.
    pub async fn run_pass(
        &self,
        envs: &[EnvironmentSpec],
        prior: &BTreeMap<EnvName, EnvState>,
        mode: PassMode,
        now: Timestamp,
    ) -> PassOutcome {
        let resolved = self.resolve(envs).await;
        let observed = self.observe(envs, &resolved).await;
        let mut outcomes: Vec<EnvOutcome> = envs
            .iter()
            .zip(resolved)
            .zip(observed)
            .map(|((env, resolved), targets)| match resolved {
                Err(e) => EnvOutcome::failed(env.reference.clone(), e),
                Ok((reference, commit)) => EnvOutcome::observed(reference, commit, targets),
            })
            .collect();
        let mut out = PassOutcome::new(now);
        if let PassMode::Reconcile { dry_run } = mode {
            let moved = self.moved_at(envs, &outcomes, prior).await;
            for ((env, o), moved_at) in envs.iter().zip(&mut outcomes).zip(moved) {
                if let (Ok(commit), Some(assessment)) = (&o.expected, &o.assessment) {
                    let expected = ExpectedCommit { commit: *commit, moved_at };
                    let policy = env.effective_policy();
                    let mut d = reconcile_with(
                        expected,
                        assessment,
                        prior.get(&env.name),
                        &policy,
                        env.controls,
                        now,
                    );
                    d.state.reference = Some(o.reference.clone());
                    o.phase = Some(d.phase);
                    o.decision = Some(d);
                }
            }
            self.act(envs, &mut outcomes, dry_run, now, &mut out).await;
        }
        // The report, built once from what each environment's pass came to.
        out.report.environments = envs.iter().zip(outcomes).map(|(env, o)| o.report(env)).collect();
        out.report.in_sync = out.report.environments.iter().all(|e| e.in_sync);
        out
    }
}

impl Engine {
    /// When each environment's ref moved to its expected commit, asked of the source only
    /// for commits new to the state (the reflog is read once per move, not every pass).
    async fn moved_at(
        &self,
        envs: &[EnvironmentSpec],
        outcomes: &[EnvOutcome],
        prior: &BTreeMap<EnvName, EnvState>,
    ) -> Vec<Option<Timestamp>> {
        let mut asked: Vec<(usize, Expected)> = Vec::new();
        for (i, (env, o)) in envs.iter().zip(outcomes).enumerate() {
            let Ok(commit) = &o.expected else { continue };
            let known = prior.get(&env.name).and_then(|s| s.expected.as_ref()).map(|e| e.commit);
            if known != Some(*commit) {
                asked.push((i, Expected { reference: o.reference.clone(), commit: *commit }));
            }
        }
        let mut moved = vec![None; envs.len()];
        if asked.is_empty() {
            return moved;
        }
        let expected: Vec<Expected> = asked.iter().map(|(_, e)| e.clone()).collect();
        let answers = self.source.moved_at(&expected).await;
        // A source answering too few (a plugin's bug) leaves the rest unknown.
        for ((i, _), at) in asked.iter().zip(answers) {
            moved[*i] = at;
        }
        moved
    }
}

/// What one environment's pass came to: what was resolved and observed, what was decided,
/// and the actions taken, until the report is built from it.
pub(super) struct EnvOutcome {
    /// The full ref name (as configured when it could not be resolved).
    pub(super) reference: String,
    /// The expected commit, or why the ref could not be resolved.
    pub(super) expected: Result<CommitId, String>,
    pub(super) targets: Vec<TargetObservation>,
    /// The targets summed up, when the ref was resolved.
    assessment: Option<Assessment>,
    pub(super) phase: Option<Phase>,
    /// The decision, until `act` takes its state.
    pub(super) decision: Option<Decision>,
    pub(super) actions: Vec<ActionReport>,
}

impl EnvOutcome {
    fn failed(reference: String, error: String) -> Self {
        Self::new(reference, Err(error), Vec::new(), None)
    }

    fn observed(reference: String, commit: CommitId, targets: Vec<TargetObservation>) -> Self {
        let assessment = Assessment::of(&targets);
        Self::new(reference, Ok(commit), targets, Some(assessment))
    }

    fn new(
        reference: String,
        expected: Result<CommitId, String>,
        targets: Vec<TargetObservation>,
        assessment: Option<Assessment>,
    ) -> Self {
        Self { reference, expected, targets, assessment, phase: None, decision: None, actions: Vec::new() }
    }

    fn report(self, env: &EnvironmentSpec) -> EnvironmentReport {
        let (expected, error) = match self.expected {
            Ok(c) => (Some(c), None),
            Err(e) => (None, Some(e)),
        };
        EnvironmentReport {
            name: env.name.clone(),
            reference: self.reference,
            expected,
            in_sync: self.assessment.is_some_and(|a| a.in_sync),
            error,
            phase: self.phase,
            actions: self.actions,
            targets: self.targets,
        }
    }
}
