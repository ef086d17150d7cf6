//! The pass [`Engine`]: one pass of resolve → probe → classify → decide → act, shared by
//! the CLI (`check`, `reconcile`, `watch`) and by any deploy tool that embeds gitstate.
//!
//! Runtime-agnostic: it uses `futures` only. Probes of every target of every environment
//! run concurrently up to [`Engine::concurrency`]; remediations of different environments
//! run concurrently, at most one per environment. Before any remediation starts, the
//! decided states go through [`Journal::checkpoint`], so a crash never forgets an attempt.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{self, StreamExt};
use jiff::Timestamp;

use crate::commit::{CommitId, ReportedCommit};
use crate::event::{Event, EventKind, Resolution};
use crate::name::EnvName;
use crate::observation::{Assessment, InstanceObservation, Reading, Relation, Status, TargetObservation};
use crate::plugin::{
    ActualStateProbe, AlarmEvent, AlarmNotification, AlarmSink, ExpectedState, Journal, ProbeContext,
    RemediationOutcome, RemediationRequest, Remediator, alarm_targets,
};
use crate::policy::{Mode, Policy};
use crate::reconcile::{Action, AlarmChange, Decision, Reason, reconcile};
use crate::report::{ActionReport, EnvironmentReport, Report};
use crate::state::{AlarmKind, EnvState, Undelivered};

/// Undelivered notifications kept per environment; the oldest are dropped beyond this.
const MAX_UNDELIVERED: usize = 64;

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

/// The result of a pass.
#[derive(Debug, Clone)]
pub struct PassOutcome {
    /// The report (SPEC §6 JSON).
    pub report: Report,
    /// The next state of every environment that was decided (reconcile only).
    pub states: Vec<(EnvName, EnvState)>,
    /// The audit events of the pass (already given to the journal, unless dry run).
    pub events: Vec<Event>,
    /// Per decided environment: why, and when to look again.
    pub decisions: Vec<(EnvName, Reason, Option<Duration>)>,
    /// Remediation outcomes, per environment (not in a dry run).
    pub remediations: Vec<(EnvName, RemediationOutcome)>,
    /// Notifications attempted: `(sink, delivered)`.
    pub deliveries: Vec<(String, bool)>,
    /// Persisting failed: the error, rendered. Remediations were not run when this is set.
    pub journal_error: Option<String>,
    /// Remediations decided and persisted but not run (engines built with
    /// [`Engine::with_deferred_remediations`]): run each with [`Engine::remediate`].
    pub deferred: Vec<(EnvName, RemediationRequest)>,
}

/// Drives passes. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    source: Arc<dyn ExpectedState>,
    sinks: Vec<Arc<dyn AlarmSink>>,
    journal: Option<Arc<dyn Journal>>,
    concurrency: usize,
    defer_remediations: bool,
}

struct Decided {
    decision: Decision,
    targets: Vec<TargetObservation>,
    expected: CommitId,
}

struct Probed {
    env: usize,
    target: usize,
    result: Result<Vec<Reading>, crate::observation::ProbeFailure>,
}

impl Engine {
    /// An engine reading expected commits from `source`, probing 64 targets at a time.
    pub fn new(source: Arc<dyn ExpectedState>) -> Self {
        Self { source, sinks: Vec::new(), journal: None, concurrency: 64, defer_remediations: false }
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
        if let Some(j) = &self.journal
            && let Err(e) = j.record(&[finished_event(&env.name, req, &outcome, clock())]).await
        {
            tracing::error!(error = %e, "audit event could not be appended");
        }
        outcome
    }

    /// The probes-in-flight limit.
    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    /// The expected-state source.
    pub fn source(&self) -> &Arc<dyn ExpectedState> {
        &self.source
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
        let expected = self.resolve(envs).await;
        let targets = self.observe(envs, &expected).await;

        let mut out = PassOutcome {
            report: Report { schema: 1, checked_at: now, in_sync: true, environments: Vec::new() },
            states: Vec::new(),
            events: Vec::new(),
            decisions: Vec::new(),
            remediations: Vec::new(),
            deliveries: Vec::new(),
            journal_error: None,
            deferred: Vec::new(),
        };
        let mut decided: Vec<Option<Decided>> = Vec::new();
        for ((env, exp), targets) in envs.iter().zip(&expected).zip(targets) {
            let mut rep = EnvironmentReport {
                name: env.name.clone(),
                reference: env.reference.clone(),
                expected: None,
                in_sync: false,
                error: None,
                phase: None,
                actions: Vec::new(),
                targets: Vec::new(),
            };
            match exp {
                Err(e) => {
                    rep.error = Some(e.clone());
                    decided.push(None);
                }
                Ok((reference, commit)) => {
                    rep.reference = reference.clone();
                    rep.expected = Some(*commit);
                    let assessment = Assessment::of(&targets);
                    rep.in_sync = assessment.in_sync;
                    if let PassMode::Reconcile { .. } = mode {
                        let d = reconcile(
                            commit,
                            &assessment,
                            prior.get(&env.name),
                            &env.effective_policy(),
                            now,
                        );
                        rep.phase = Some(d.phase);
                        decided.push(Some(Decided {
                            decision: d,
                            targets: targets.clone(),
                            expected: *commit,
                        }));
                    } else {
                        decided.push(None);
                    }
                    rep.targets = targets;
                }
            }
            out.report.in_sync &= rep.in_sync;
            out.report.environments.push(rep);
        }
        let PassMode::Reconcile { dry_run } = mode else {
            return out;
        };
        self.act(envs, prior, decided, dry_run, now, &mut out).await;
        out
    }

    /// Resolves every environment's ref in one call to the source.
    async fn resolve(&self, envs: &[EnvironmentSpec]) -> Vec<Result<(String, CommitId), String>> {
        let refs: Vec<String> = envs.iter().map(|e| e.reference.clone()).collect();
        match self.source.resolve(&refs).await {
            Ok(list) if list.len() == envs.len() => list
                .into_iter()
                .zip(envs)
                .map(|(r, env)| {
                    r.map(|e| (e.reference, e.commit)).map_err(|e| format!("environment {}: {e}", env.name))
                })
                .collect(),
            Ok(list) => {
                let msg = format!(
                    "expected-state source {} answered {} refs for {} asked",
                    self.source.name(),
                    list.len(),
                    envs.len()
                );
                envs.iter().map(|_| Err(msg.clone())).collect()
            }
            Err(e) => envs.iter().map(|env| Err(format!("environment {}: {e}", env.name))).collect(),
        }
    }

    /// Probes every target concurrently, then classifies each environment's readings.
    async fn observe(
        &self,
        envs: &[EnvironmentSpec],
        expected: &[Result<(String, CommitId), String>],
    ) -> Vec<Vec<TargetObservation>> {
        // Boxed, concretely typed futures: closures over borrowed data in iterator chains make
        // the pass future fail the `Send` check in generic callers (rust-lang/rust#102211).
        let mut jobs: Vec<BoxFuture<'_, Probed>> = Vec::new();
        for (ei, env) in envs.iter().enumerate() {
            let Ok((_, commit)) = &expected[ei] else { continue };
            for (ti, t) in env.targets.iter().enumerate() {
                jobs.push(Box::pin(async move {
                    let cx = ProbeContext { environment: &env.name, target: &t.name, expected: commit };
                    Probed { env: ei, target: ti, result: bounded_probe(t, &cx).await }
                }));
            }
        }
        let mut probed: Vec<Probed> = stream::iter(jobs).buffer_unordered(self.concurrency).collect().await;
        probed.sort_by_key(|p| (p.env, p.target));

        let mut per_env: Vec<Vec<Probed>> = envs.iter().map(|_| Vec::new()).collect();
        for p in probed {
            let e = p.env;
            per_env[e].push(p);
        }
        let mut classify: Vec<BoxFuture<'_, Vec<TargetObservation>>> = Vec::new();
        for (ei, probed) in per_env.into_iter().enumerate() {
            let env = &envs[ei];
            let commit = expected[ei].as_ref().ok().map(|(_, c)| *c);
            classify.push(Box::pin(async move {
                match commit {
                    Some(commit) => self.classify(env, &commit, probed).await,
                    None => Vec::new(),
                }
            }));
        }
        stream::iter(classify).buffered(self.concurrency).collect().await
    }

    async fn classify(
        &self,
        env: &EnvironmentSpec,
        expected: &CommitId,
        probed: Vec<Probed>,
    ) -> Vec<TargetObservation> {
        // Ask the source once per distinct reported commit that is not trivially in sync.
        let mut unknown: Vec<ReportedCommit> = probed
            .iter()
            .filter_map(|p| p.result.as_ref().ok())
            .flatten()
            .filter_map(|r| r.result.as_ref().ok())
            .filter(|c| !c.matches(expected))
            .cloned()
            .collect();
        unknown.sort();
        unknown.dedup();
        let relations: HashMap<ReportedCommit, Result<Relation, String>> = if unknown.is_empty() {
            HashMap::new()
        } else {
            match self.source.relate(expected, &unknown).await {
                Ok(rels) if rels.len() == unknown.len() => {
                    unknown.into_iter().zip(rels.into_iter().map(Ok)).collect()
                }
                Ok(_) => {
                    let msg = "expected-state source answered a wrong number of relations".to_owned();
                    unknown.into_iter().map(|c| (c, Err(msg.clone()))).collect()
                }
                Err(e) => {
                    let msg = e.to_string();
                    unknown.into_iter().map(|c| (c, Err(msg.clone()))).collect()
                }
            }
        };

        probed
            .into_iter()
            .map(|p| {
                let t = &env.targets[p.target];
                let kind = t.probe.name().to_owned();
                match p.result {
                    Err(failure) => TargetObservation::failed(t.name.clone(), kind, failure),
                    Ok(readings) => {
                        let instances = readings
                            .into_iter()
                            .map(|r| match r.result {
                                Err(f) => InstanceObservation::failed(r.instance, f, r.elapsed),
                                Ok(c) if c.matches(expected) => InstanceObservation::classified(
                                    r.instance,
                                    &c,
                                    Relation::InSync,
                                    r.elapsed,
                                ),
                                Ok(c) => match relations.get(&c) {
                                    Some(Ok(rel)) => {
                                        InstanceObservation::classified(r.instance, &c, *rel, r.elapsed)
                                    }
                                    // The relation could not be computed, but the commit differs.
                                    Some(Err(msg)) => {
                                        let mut o = InstanceObservation::classified(
                                            r.instance,
                                            &c,
                                            Relation::Drifted,
                                            r.elapsed,
                                        );
                                        o.error = Some(msg.clone());
                                        o
                                    }
                                    None => InstanceObservation::classified(
                                        r.instance,
                                        &c,
                                        Relation::Drifted,
                                        r.elapsed,
                                    ),
                                },
                            })
                            .collect();
                        TargetObservation::from_instances(t.name.clone(), kind, instances)
                    }
                }
            })
            .collect()
    }

    /// Carries out (or, in a dry run, only reports) what was decided.
    async fn act(
        &self,
        envs: &[EnvironmentSpec],
        prior: &BTreeMap<EnvName, EnvState>,
        decided: Vec<Option<Decided>>,
        dry_run: bool,
        now: Timestamp,
        out: &mut PassOutcome,
    ) {
        let mut remediate: Vec<(usize, RemediationRequest)> = Vec::new();
        let mut notes: Vec<(usize, AlarmNotification)> = Vec::new();
        for (i, (env, d)) in envs.iter().zip(&decided).enumerate() {
            let Some(Decided { decision: d, targets, expected }) = d else { continue };
            let rep = &mut out.report.environments[i];
            let ev = |kind| Event { at: now, environment: env.name.clone(), kind };
            out.events.extend(d.events.iter().cloned().map(ev));
            for action in &d.actions {
                match *action {
                    Action::Remediate { attempt } => {
                        rep.actions.push(ActionReport::Remediate {
                            attempt,
                            ok: None,
                            detail: if dry_run { "dry run: not started".into() } else { String::new() },
                        });
                        remediate.push((
                            i,
                            RemediationRequest {
                                environment: env.name.clone(),
                                reference: rep.reference.clone(),
                                expected: *expected,
                                attempt,
                                drifted: drifted(targets),
                            },
                        ));
                    }
                    Action::Alarm { change, kind, since } => {
                        let (report, event, note_event) = match change {
                            AlarmChange::Raised => (
                                ActionReport::AlarmRaised { alarm: kind },
                                EventKind::AlarmRaised { alarm: kind, expected: *expected },
                                AlarmEvent::AlarmRaised,
                            ),
                            AlarmChange::Repeated => (
                                ActionReport::AlarmRepeated { alarm: kind },
                                EventKind::AlarmRepeated { alarm: kind, expected: *expected },
                                AlarmEvent::AlarmRepeated,
                            ),
                            AlarmChange::Resolved(why) => (
                                ActionReport::AlarmResolved { alarm: kind },
                                EventKind::AlarmResolved { alarm: kind, reason: why },
                                AlarmEvent::AlarmResolved,
                            ),
                        };
                        rep.actions.push(report);
                        out.events.push(ev(event));
                        let resolution = match change {
                            AlarmChange::Resolved(r) => Some(r),
                            _ => None,
                        };
                        // A superseded alarm belongs to the previous expected commit.
                        let alarm_expected = match resolution {
                            Some(Resolution::Superseded) => prior
                                .get(&env.name)
                                .and_then(|s| s.expected.as_ref())
                                .map_or(*expected, |e| e.commit),
                            _ => *expected,
                        };
                        notes.push((
                            i,
                            notification(
                                env,
                                &rep.reference,
                                alarm_expected,
                                kind,
                                since,
                                note_event,
                                resolution,
                                now,
                                targets,
                            ),
                        ));
                    }
                }
            }
            // Alarms still open and not announced this pass: refresh sinks that expire silence.
            for alarm in &d.state.alarms {
                let touched =
                    d.actions.iter().any(|a| matches!(a, Action::Alarm { kind, .. } if *kind == alarm.kind));
                if !touched {
                    notes.push((
                        i,
                        notification(
                            env,
                            &rep.reference,
                            *expected,
                            alarm.kind,
                            alarm.since,
                            AlarmEvent::AlarmFiring,
                            None,
                            now,
                            targets,
                        ),
                    ));
                }
            }
            out.decisions.push((env.name.clone(), d.reason, d.requeue_after));
        }

        let mut states: Vec<(EnvName, EnvState)> = decided
            .into_iter()
            .zip(envs)
            .filter_map(|(d, env)| d.map(|d| (env.name.clone(), d.decision.state)))
            .collect();

        if dry_run {
            out.states = states;
            return;
        }

        let mut recorded = 0;
        if !remediate.is_empty() {
            for (i, req) in &remediate {
                out.events.push(Event {
                    at: now,
                    environment: envs[*i].name.clone(),
                    kind: EventKind::RemediationStarted { expected: req.expected, attempt: req.attempt },
                });
            }
            if let Some(j) = &self.journal {
                let persisted = async {
                    j.checkpoint(&states).await?;
                    j.record(&out.events).await
                };
                if let Err(e) = persisted.await {
                    tracing::error!(error = %e, "not remediating: state could not be persisted first");
                    out.journal_error = Some(e.to_string());
                }
                recorded = out.events.len();
            }
            if out.journal_error.is_none() && self.defer_remediations {
                for (i, req) in remediate {
                    for a in &mut out.report.environments[i].actions {
                        if let ActionReport::Remediate { attempt, detail, .. } = a
                            && *attempt == req.attempt
                        {
                            *detail = "started in the background".into();
                        }
                    }
                    out.deferred.push((envs[i].name.clone(), req));
                }
            } else if out.journal_error.is_none() {
                let mut runs: Vec<BoxFuture<'_, (usize, &RemediationRequest, RemediationOutcome)>> =
                    Vec::new();
                for (i, req) in &remediate {
                    let r = envs[*i].remediator.clone();
                    runs.push(Box::pin(async move { (*i, req, run_remediator(r.as_deref(), req).await) }));
                }
                let done: Vec<_> = stream::iter(runs).buffer_unordered(self.concurrency).collect().await;
                for (i, req, outcome) in done {
                    let env = &envs[i];
                    for a in &mut out.report.environments[i].actions {
                        if let ActionReport::Remediate { attempt, ok, detail } = a
                            && *attempt == req.attempt
                        {
                            *ok = Some(outcome.ok);
                            *detail = outcome.detail.clone();
                        }
                    }
                    out.events.push(finished_event(&env.name, req, &outcome, now));
                    out.remediations.push((env.name.clone(), outcome));
                }
            } else {
                for rep in &mut out.report.environments {
                    for a in &mut rep.actions {
                        if let ActionReport::Remediate { ok, detail, .. } = a {
                            *ok = Some(false);
                            *detail = "not started: state could not be persisted".into();
                        }
                    }
                }
            }
        }

        self.deliver(envs, &mut states, notes, now, out).await;

        if let Some(j) = &self.journal
            && let Err(e) = j.record(&out.events[recorded..]).await
        {
            tracing::error!(error = %e, "audit events could not be appended");
            out.journal_error.get_or_insert(e.to_string());
        }
        out.states = states;
    }

    /// Sends this pass's notifications and retries undelivered ones; failures are kept
    /// in the state for the next pass and never stop the pass.
    async fn deliver(
        &self,
        envs: &[EnvironmentSpec],
        states: &mut [(EnvName, EnvState)],
        notes: Vec<(usize, AlarmNotification)>,
        now: Timestamp,
        out: &mut PassOutcome,
    ) {
        let index: HashMap<EnvName, usize> =
            states.iter().enumerate().map(|(i, (n, _))| (n.clone(), i)).collect();
        let mut jobs: Vec<(usize, Arc<dyn AlarmSink>, AlarmNotification, u32)> = Vec::new();
        for (_, state) in states.iter_mut() {
            for u in std::mem::take(&mut state.undelivered) {
                let sink = self.sinks.iter().find(|s| s.name() == u.sink);
                match (sink, index.get(&u.notification.environment)) {
                    (Some(sink), Some(&si)) => jobs.push((si, sink.clone(), u.notification, u.failures)),
                    _ => {
                        tracing::warn!(sink = %u.sink, "dropping an undelivered notification for a sink no longer configured")
                    }
                }
            }
        }
        for (ei, note) in notes {
            let Some(&si) = index.get(&envs[ei].name) else { continue };
            for sink in &self.sinks {
                jobs.push((si, sink.clone(), note.clone(), 0));
            }
        }
        type Sent = (usize, Arc<dyn AlarmSink>, AlarmNotification, u32, Result<(), crate::error::SinkError>);
        let sends: Vec<BoxFuture<'static, Sent>> = jobs
            .into_iter()
            .map(|(si, sink, note, failures)| -> BoxFuture<'static, Sent> {
                Box::pin(async move {
                    let r = sink.notify(&note).await;
                    (si, sink, note, failures, r)
                })
            })
            .collect();
        let results: Vec<Sent> = stream::iter(sends).buffer_unordered(self.concurrency).collect().await;
        for (si, sink, note, failures, r) in results {
            out.deliveries.push((sink.name().to_owned(), r.is_ok()));
            let Err(err) = r else { continue };
            tracing::warn!(sink = sink.name(), environment = %note.environment, error = %err, "alarm notification failed; retrying next pass");
            let (name, state) = &mut states[si];
            out.events.push(Event {
                at: now,
                environment: name.clone(),
                kind: EventKind::NotificationFailed {
                    sink: sink.name().to_owned(),
                    alarm: note.alarm,
                    error: err.message,
                },
            });
            // Firing refreshes are re-sent every pass anyway.
            if note.event != AlarmEvent::AlarmFiring {
                state.undelivered.push(Undelivered {
                    sink: sink.name().to_owned(),
                    notification: note,
                    failures: failures + 1,
                });
                if state.undelivered.len() > MAX_UNDELIVERED {
                    let dropped = state.undelivered.len() - MAX_UNDELIVERED;
                    tracing::error!(environment = %name, dropped, "dropping the oldest undelivered alarm notifications");
                    state.undelivered.drain(..dropped);
                }
            }
        }
    }
}

/// Runs one probe within its target's timeout, a panic inside it caught: either way the
/// target is `unreachable` with the reason and the pass goes on.
async fn bounded_probe(
    t: &TargetSpec,
    cx: &ProbeContext<'_>,
) -> Result<Vec<Reading>, crate::observation::ProbeFailure> {
    use futures::FutureExt;
    let observe = std::panic::AssertUnwindSafe(t.probe.observe(cx)).catch_unwind();
    let deadline = futures_timer::Delay::new(t.timeout);
    match futures::future::select(Box::pin(observe), deadline).await {
        futures::future::Either::Left((Ok(result), _)) => result,
        futures::future::Either::Left((Err(panic), _)) => {
            let message = crate::panic::message(panic.as_ref());
            tracing::error!(target_name = %t.name, environment = %cx.environment, panic = %message, "probe panicked");
            Err(crate::observation::ProbeFailure::unreachable(format!("probe panicked: {message}")))
        }
        futures::future::Either::Right(_) => Err(crate::observation::ProbeFailure::unreachable(format!(
            "no answer within {}",
            humantime::format_duration(t.timeout)
        ))),
    }
}

async fn run_remediator(r: Option<&dyn Remediator>, req: &RemediationRequest) -> RemediationOutcome {
    match r {
        Some(r) => r.remediate(req).await,
        None => RemediationOutcome {
            ok: false,
            detail: "no remediator configured".into(),
            exit_code: None,
            output_tail: None,
        },
    }
}

fn finished_event(
    env: &EnvName,
    req: &RemediationRequest,
    outcome: &RemediationOutcome,
    at: Timestamp,
) -> Event {
    Event {
        at,
        environment: env.clone(),
        kind: EventKind::RemediationFinished {
            expected: req.expected,
            attempt: req.attempt,
            ok: outcome.ok,
            exit_code: outcome.exit_code,
            detail: outcome.detail.clone(),
            output_tail: outcome.output_tail.clone(),
        },
    }
}

fn drifted(targets: &[TargetObservation]) -> Vec<(String, String)> {
    targets
        .iter()
        .flat_map(|t| {
            let whole = (t.instances.is_empty() && t.status != Status::InSync)
                .then(|| (t.name.clone(), String::new()));
            whole.into_iter().chain(
                t.instances
                    .iter()
                    .filter(|i| i.status != Status::InSync)
                    .map(|i| (t.name.clone(), i.id.clone())),
            )
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn notification(
    env: &EnvironmentSpec,
    reference: &str,
    expected: CommitId,
    kind: AlarmKind,
    since: Timestamp,
    event: AlarmEvent,
    resolution: Option<Resolution>,
    now: Timestamp,
    targets: &[TargetObservation],
) -> AlarmNotification {
    let summary = match (event, kind) {
        (AlarmEvent::AlarmResolved, _) => format!(
            "{} alarm for {} resolved ({})",
            kind,
            env.name,
            match resolution {
                Some(Resolution::Converged) => "converged",
                Some(Resolution::Superseded) => "superseded by a new expected commit",
                _ => "cleared",
            }
        ),
        (_, AlarmKind::Drift) => {
            format!(
                "{} does not run {} ({}) and remediation did not fix it",
                env.name,
                expected.short(12),
                reference
            )
        }
        (_, AlarmKind::Diverged) => format!(
            "{} runs a commit that {} never led to (expected {}); not overwriting it",
            env.name,
            reference,
            expected.short(12)
        ),
        (_, AlarmKind::Unreachable) => format!("{}: probes cannot read what runs", env.name),
    };
    AlarmNotification {
        event,
        alarm: kind,
        environment: env.name.clone(),
        reference: reference.to_owned(),
        expected_sha: expected,
        since,
        ended_at: (event == AlarmEvent::AlarmResolved).then_some(now),
        resolution,
        summary,
        targets: alarm_targets(targets),
    }
}
