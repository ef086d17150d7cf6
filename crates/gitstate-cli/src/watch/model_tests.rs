//! The real `watch` loop — the scheduler, the engine, `reconcile`, deferred remediations,
//! requeues and `converging_poll` — driven under tokio's paused clock through random
//! histories of a world (the ref moving, targets flapping, probes failing), and checked
//! against the independent model of SPEC §7 in `gitstate_testkit::model`: every pass the
//! loop ran is replayed through the model with what that pass saw, and what the loop did
//! (deploys, alarm changes, convergences, phases) must be what the model says.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use gitstate_core::{
    ActualStateProbe, AlarmChange, CommitId, Engine, EnvName, EnvironmentSpec, EventKind, Expected,
    ExpectedError, ExpectedState, PassMode, Policy, ProbeContext, ProbeFailure, Reading, Relation,
    RemediationOutcome, RemediationRequest, Remediator, ReportedCommit, Status, TargetSpec,
};
use gitstate_testkit::MemoryJournal;
use gitstate_testkit::model::{self, Expect, KEEP, Model, Pass, commit};
use jiff::Timestamp;
use proptest::prelude::*;
use tokio::time::Instant;

use super::requeues;
use super::schedule::{self, Driver, Jitter, PassDone, Timing};

/// What the world looks like over time: from each segment's start, the ref's commit and
/// what the target's instances report.
struct World {
    start: Instant,
    /// (from, commit index, statuses), in time order.
    segments: Vec<(Duration, usize, Vec<Status>)>,
}

impl World {
    fn new(passes: &[Pass]) -> Self {
        let mut at = Duration::ZERO;
        let mut current = 0;
        let mut segments = Vec::new();
        for (i, p) in passes.iter().enumerate() {
            at += Duration::from_secs(p.dt);
            if p.commit != KEEP || i == 0 {
                current = if p.commit == KEEP { 0 } else { p.commit };
            }
            segments.push((at, current, p.statuses.clone()));
        }
        segments[0].0 = Duration::ZERO;
        Self { start: Instant::now(), segments }
    }

    fn now(&self) -> (usize, Vec<Status>) {
        let t = self.start.elapsed();
        let seg = self.segments.iter().rev().find(|s| s.0 <= t).unwrap_or(&self.segments[0]);
        (seg.1, seg.2.clone())
    }

    fn end(&self) -> Duration {
        self.segments.last().map_or(Duration::ZERO, |s| s.0) + Duration::from_secs(600)
    }
}

/// A reported commit for each status that is a relation.
fn reported(status: Status) -> Option<String> {
    let c = match status {
        Status::Behind => 'b',
        Status::Ahead => 'a',
        Status::Diverged => 'd',
        Status::UnknownCommit => 'e',
        Status::Drifted => 'f',
        _ => return None,
    };
    Some(c.to_string().repeat(40))
}

struct Source(Arc<World>);

#[async_trait]
impl ExpectedState for Source {
    fn name(&self) -> &str {
        "world"
    }
    async fn resolve(&self, refs: &[String]) -> Result<Vec<Result<Expected, ExpectedError>>, ExpectedError> {
        let (c, _) = self.0.now();
        Ok(refs.iter().map(|r| Ok(Expected { reference: r.clone(), commit: commit(c) })).collect())
    }
    async fn relate(
        &self,
        _: &CommitId,
        reported: &[ReportedCommit],
    ) -> Result<Vec<Relation>, ExpectedError> {
        Ok(reported
            .iter()
            .map(|r| match r.as_str().as_bytes()[0] {
                b'b' => Relation::Behind(1),
                b'a' => Relation::Ahead(1),
                b'd' => Relation::Diverged { behind: 1, ahead: 1 },
                b'e' => Relation::UnknownCommit,
                _ => Relation::Drifted,
            })
            .collect())
    }
    async fn list(&self, _: &str) -> Result<Vec<Expected>, ExpectedError> {
        Ok(Vec::new())
    }
}

struct Probe(Arc<World>);

#[async_trait]
impl ActualStateProbe for Probe {
    fn name(&self) -> &str {
        "world"
    }
    async fn observe(&self, cx: &ProbeContext<'_>) -> Result<Vec<Reading>, ProbeFailure> {
        let (_, statuses) = self.0.now();
        Ok(statuses
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                let result = match s {
                    Status::InSync => Ok(ReportedCommit::parse(cx.expected.as_str()).unwrap()),
                    Status::Unreachable => Err(ProbeFailure::unreachable("down")),
                    Status::Invalid => Err(ProbeFailure::invalid("garbage")),
                    Status::Missing => Err(ProbeFailure::missing("gone")),
                    other => Ok(ReportedCommit::parse(&reported(other).unwrap()).unwrap()),
                };
                Reading { instance: format!("i{i}"), result, elapsed: Duration::ZERO }
            })
            .collect())
    }
}

/// A deploy that takes `took` and triggers fine.
struct Deploy {
    took: Duration,
}

#[async_trait]
impl Remediator for Deploy {
    fn name(&self) -> &str {
        "deploy"
    }
    async fn remediate(&self, _: &RemediationRequest) -> RemediationOutcome {
        tokio::time::sleep(self.took).await;
        RemediationOutcome { ok: true, detail: "triggered".into(), exit_code: Some(0), output_tail: None }
    }
}

/// One pass the loop ran: when, what it saw, what it did.
struct Seen {
    now: Timestamp,
    commit: usize,
    statuses: Vec<Status>,
    did: Expect,
}

/// A `watch` driver over the real engine, like `Live` but with the world above for git,
/// targets and deploys, and the engine's clock following tokio's.
struct Sim {
    engine: Engine,
    journal: Arc<MemoryJournal>,
    spec: EnvironmentSpec,
    world: Arc<World>,
    base: Timestamp,
    converging_poll: Duration,
    known: Mutex<Option<usize>>,
    deferred: Mutex<Option<RemediationRequest>>,
    seen: Mutex<Vec<Seen>>,
}

impl Sim {
    fn now(&self) -> Timestamp {
        model::plus(self.base, self.world.start.elapsed())
    }
}

#[async_trait]
impl Driver for Sim {
    async fn poll(&self) -> Vec<EnvName> {
        let (c, _) = self.world.now();
        let moved = self.known.lock().unwrap().replace(c) != Some(c);
        if moved { vec![self.spec.name.clone()] } else { Vec::new() }
    }
    fn environments(&self) -> Vec<EnvName> {
        vec![self.spec.name.clone()]
    }
    async fn pass(&self, _envs: Vec<EnvName>, _full: bool) -> PassDone {
        let prior = self.journal.states.lock().unwrap().clone();
        let now = self.now();
        let (commit, statuses) = self.world.now();
        let out = self
            .engine
            .run_pass(std::slice::from_ref(&self.spec), &prior, PassMode::Reconcile { dry_run: false }, now)
            .await;
        let mut did = Expect {
            deploy: None,
            alarms: Vec::new(),
            converged: None,
            phase: out.report.environments[0].phase.unwrap(),
        };
        for e in &out.events {
            match e.kind {
                EventKind::RemediationStarted { attempt, .. } => did.deploy = Some(attempt),
                EventKind::AlarmRaised { alarm, .. } => did.alarms.push((AlarmChange::Raised, alarm)),
                EventKind::AlarmRepeated { alarm, .. } => did.alarms.push((AlarmChange::Repeated, alarm)),
                EventKind::AlarmResolved { alarm, reason } => {
                    did.alarms.push((AlarmChange::Resolved(reason), alarm))
                }
                EventKind::Converged { lag_s, .. } => did.converged = Some(lag_s),
                _ => {}
            }
        }
        self.seen.lock().unwrap().push(Seen { now, commit, statuses, did });
        let requeue = requeues(&out, self.converging_poll);
        let remediations = out.deferred.into_iter().map(|(name, req)| {
            *self.deferred.lock().unwrap() = Some(req);
            name
        });
        PassDone { requeue, remediations: remediations.collect() }
    }
    async fn remediate(&self, _env: EnvName) -> Option<Duration> {
        let started = Instant::now();
        let req = self.deferred.lock().unwrap().take()?;
        self.engine.remediate(&self.spec, &req, || self.now()).await;
        Some(self.spec.effective_policy().settle.saturating_sub(started.elapsed()))
    }
    fn pass_panicked(&self, _: &[EnvName], message: &str) {
        panic!("a pass panicked: {message}");
    }
    fn stop_remediations(&self) {}
    async fn abandoned(&self, _: EnvName) {}
}

fn sorted(mut v: Vec<(AlarmChange, gitstate_core::AlarmKind)>) -> Vec<String> {
    v.sort_by_key(|(c, k)| format!("{c:?}{k:?}"));
    v.into_iter().map(|(c, k)| format!("{c:?} {k:?}")).collect()
}

/// Runs `watch` over the world of `passes` until a while after its last change; returns
/// every pass it ran.
fn run_watch(policy: &Policy, passes: &[Pass], deploy_s: u64, interval_s: u64) -> Vec<Seen> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
    rt.block_on(async {
        let world = Arc::new(World::new(passes));
        let journal = Arc::new(MemoryJournal::default());
        let engine = Engine::new(Arc::new(Source(world.clone())))
            .with_journal(journal.clone())
            .with_deferred_remediations();
        let spec = EnvironmentSpec {
            name: EnvName::new("production").unwrap(),
            reference: "refs/heads/environments/production".into(),
            targets: vec![TargetSpec::new("web", Arc::new(Probe(world.clone())))],
            remediator: Some(Arc::new(Deploy { took: Duration::from_secs(deploy_s) })),
            policy: policy.clone(),
            controls: gitstate_core::Controls::default(),
        };
        let sim = Arc::new(Sim {
            engine,
            journal,
            spec,
            world: world.clone(),
            base: Timestamp::from_second(1_800_000_000).unwrap(),
            converging_poll: Duration::from_secs(5),
            known: Mutex::default(),
            deferred: Mutex::default(),
            seen: Mutex::default(),
        });
        let timing = Timing {
            interval: Duration::from_secs(interval_s),
            jitter: 0.1,
            ref_poll: Duration::from_secs(1),
            drain: Duration::from_secs(30),
            stop_grace: Duration::from_secs(15),
        };
        let (_tx, rx) = tokio::sync::mpsc::channel(1);
        let end = world.end();
        schedule::run(sim.clone(), timing, Jitter::new(7), rx, tokio::time::sleep(end), || {}).await;
        std::mem::take(&mut *sim.seen.lock().unwrap())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(gitstate_testkit::proptest_cases(24)))]

    /// Every pass `watch` ran did what the model says, given what that pass saw; and
    /// however the world flapped, no expected commit got more than `max_attempts` deploys.
    #[test]
    fn watch_matches_the_model(
        policy in model::policy(),
        passes in prop::collection::vec(model::pass(), 1..60),
        deploy_s in 0u64..40,
        interval_s in prop_oneof![Just(60u64), 5u64..300],
    ) {
        let seen = run_watch(&policy, &passes, deploy_s, interval_s);
        prop_assert!(!seen.is_empty());
        let mut m = Model::default();
        let mut deploys: BTreeMap<(usize, usize), u32> = BTreeMap::new();
        let mut epoch = 0;
        let mut last = None;
        for (i, s) in seen.iter().enumerate() {
            if last != Some(s.commit) {
                epoch += 1;
                last = Some(s.commit);
            }
            let p = Pass { dt: 0, commit: s.commit, reflog_ago: None, statuses: s.statuses.clone(), policy: 0 };
            let want = m.pass(&p, None, &policy, s.now);
            prop_assert_eq!(s.did.deploy, want.deploy, "pass {} at {}: deploys differ", i, s.now);
            prop_assert_eq!(sorted(s.did.alarms.clone()), sorted(want.alarms.clone()), "pass {} at {}: alarms differ", i, s.now);
            prop_assert_eq!(s.did.converged, want.converged, "pass {} at {}: convergence differs", i, s.now);
            prop_assert_eq!(s.did.phase, want.phase, "pass {} at {}: phase differs", i, s.now);
            if s.did.deploy.is_some() {
                let n = deploys.entry((epoch, s.commit)).or_default();
                *n += 1;
                prop_assert!(*n <= policy.max_attempts, "more than max_attempts deploys of one expected commit");
            }
        }
    }
}
