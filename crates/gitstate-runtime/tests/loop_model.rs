//! The real loop — a [`Controller`] with its scheduler, driver, engine, `reconcile`,
//! deferred remediations, requeues and `converging_poll`, over a [`FileStore`] in a
//! temporary directory — driven under tokio's paused clock through random histories of a
//! world (the ref moving, targets flapping, probes failing, deploys taking their time), and
//! checked against the independent model of SPEC §7 in `gitstate_testkit::model`: every
//! pass the loop ran (as its [`Observer`] saw it) is replayed through the model with what
//! that pass's probe reported, and what the loop did (deploys, alarm changes,
//! convergences, phases) must be what the model says. What reached the scripted
//! remediator and alarm sink must be what the passes decided, and the loop must look
//! again as SPEC §7 "watch" says: within `converging_poll` while not in sync, within a
//! ref poll of the ref moving, at least every `interval` ± jitter.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use gitstate_core::{
    ActualStateProbe, AlarmChange, AlarmEvent, AlarmKind, AlarmNotification, AlarmSink, CommitId, EnvName,
    EnvironmentSpec, EventKind, Expected, ExpectedError, ExpectedState, PassOutcome, Phase, Policy,
    ProbeContext, ProbeFailure, Reading, Relation, RemediationOutcome, RemediationRequest, Remediator,
    ReportedCommit, SinkError, Status, TargetSpec,
};
use gitstate_runtime::{Controller, FileStore, Observer, Options};
use gitstate_testkit::model::{self, Expect, KEEP, Model, Pass, commit};
use jiff::Timestamp;
use proptest::prelude::*;
use tokio::time::Instant;

const ENV: &str = "production";
const CONVERGING_POLL: Duration = Duration::from_secs(5);
/// Ref polls every 10 s of simulated time: histories run to some 300,000 s, and a poll a
/// second made the property a minute and a half of the suite; the bound checked scales.
const REF_POLL: Duration = Duration::from_secs(10);
const JITTER: f64 = 0.1;
/// Paused timers fire on whole milliseconds.
const SLACK: Duration = Duration::from_millis(1);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap()
}

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

    fn since_start(&self) -> Duration {
        self.start.elapsed()
    }

    fn at(&self, t: Duration) -> (usize, Vec<Status>) {
        let seg = self.segments.iter().rev().find(|s| s.0 <= t).unwrap_or(&self.segments[0]);
        (seg.1, seg.2.clone())
    }

    fn now(&self) -> (usize, Vec<Status>) {
        self.at(self.since_start())
    }

    /// When the loop is stopped: a while after the last change.
    fn end(&self) -> Duration {
        self.segments.last().map_or(Duration::ZERO, |s| s.0) + Duration::from_secs(600)
    }

    /// The times the ref moves to another commit (as the loop can see it: of changes in
    /// the same instant, the last).
    /// The commits the ref points at some time in `[from, to)`.
    fn commits_between(&self, from: Duration, to: Duration) -> Vec<usize> {
        let mut out = vec![self.at(from).0];
        out.extend(self.segments.iter().filter(|s| s.0 > from && s.0 < to).map(|s| self.at(s.0).0));
        out
    }

    /// The moves a ref poll every `poll` must see: the new commit stays at least a poll
    /// long, and the ref did not point at it at any time in the poll before the move (a
    /// move undone before a poll, or back to a commit the last poll may have read, is not
    /// one the loop can be held to).
    fn seen_moves(&self, poll: Duration) -> Vec<Duration> {
        let moves = self.moves();
        moves
            .iter()
            .enumerate()
            .filter(|(i, m)| {
                let c = self.at(**m).0;
                let held = moves.get(i + 1).is_none_or(|next| *next >= **m + poll);
                held && !self.commits_between(m.saturating_sub(poll), **m).contains(&c)
            })
            .map(|(_, m)| *m)
            .collect()
    }

    fn moves(&self) -> Vec<Duration> {
        let mut moves = Vec::new();
        let mut last = self.at(Duration::ZERO).0;
        for (from, _, _) in &self.segments {
            let (c, _) = self.at(*from);
            if c != last {
                moves.push(*from);
                last = c;
            }
        }
        moves
    }
}

/// The ref's commit, as the world says at the time asked.
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
        Ok(reported.iter().map(gitstate_testkit::model::relation).collect())
    }
    async fn list(&self, _: &str) -> Result<Vec<Expected>, ExpectedError> {
        Ok(Vec::new())
    }
}

/// What one probe call saw: when, the world's commit and statuses then, and the commit
/// the loop asked about.
#[derive(Debug, Clone)]
struct Probed {
    at: Duration,
    commit: usize,
    statuses: Vec<Status>,
    asked: CommitId,
}

/// The target's instances, reporting what the world says, every call recorded.
struct Probe {
    world: Arc<World>,
    calls: Mutex<Vec<Probed>>,
}

#[async_trait]
impl ActualStateProbe for Probe {
    fn name(&self) -> &str {
        "world"
    }
    async fn observe(&self, cx: &ProbeContext<'_>) -> Result<Vec<Reading>, ProbeFailure> {
        let at = self.world.since_start();
        let (commit, statuses) = self.world.at(at);
        lock(&self.calls).push(Probed { at, commit, statuses: statuses.clone(), asked: *cx.expected });
        Ok(gitstate_testkit::model::readings(statuses, cx.expected))
    }
}

/// One deploy: what was asked, when it started and ended.
#[derive(Debug, Clone)]
struct Deployed {
    environment: EnvName,
    expected: CommitId,
    attempt: u32,
    started: Duration,
    ended: Duration,
}

/// A deploy that takes `took` and triggers fine, every call recorded.
struct Deploy {
    world: Arc<World>,
    took: Duration,
    calls: Mutex<Vec<Deployed>>,
}

#[async_trait]
impl Remediator for Deploy {
    fn name(&self) -> &str {
        "deploy"
    }
    async fn remediate(&self, req: &RemediationRequest) -> RemediationOutcome {
        let started = self.world.since_start();
        tokio::time::sleep(self.took).await;
        lock(&self.calls).push(Deployed {
            environment: req.environment.clone(),
            expected: req.expected,
            attempt: req.attempt,
            started,
            ended: self.world.since_start(),
        });
        RemediationOutcome { ok: true, detail: "triggered".into(), exit_code: Some(0), output_tail: None }
    }
}

/// One notification that reached the sink: when, about what, which change.
type Alarmed = (Duration, EnvName, CommitId, AlarmChange, AlarmKind);

/// An alarm sink that takes everything and records what matters to people (not the
/// `firing` re-posts Alertmanager needs).
struct Sink {
    world: Arc<World>,
    got: Mutex<Vec<Alarmed>>,
}

#[async_trait]
impl AlarmSink for Sink {
    fn name(&self) -> &str {
        "record"
    }
    async fn notify(&self, n: &AlarmNotification) -> Result<(), SinkError> {
        let change = match n.event {
            AlarmEvent::AlarmRaised => AlarmChange::Raised,
            AlarmEvent::AlarmRepeated => AlarmChange::Repeated,
            AlarmEvent::AlarmResolved => AlarmChange::Resolved(n.resolution.expect("a resolution")),
            _ => return Ok(()),
        };
        let at = self.world.since_start();
        lock(&self.got).push((at, n.environment.clone(), n.expected_sha, change, n.alarm));
        Ok(())
    }
}

/// One pass the loop ran, as its observer was told: when, the time it decided at, and
/// what it did.
struct Seen {
    at: Duration,
    now: Timestamp,
    expected: Option<CommitId>,
    did: Expect,
}

struct Passes {
    world: Arc<World>,
    seen: Mutex<Vec<Seen>>,
}

impl Observer for Passes {
    fn pass(&self, specs: &[EnvironmentSpec], out: &PassOutcome, _took: Duration) {
        assert_eq!(specs.len(), 1, "one environment");
        let env = &out.report.environments[0];
        let mut did = Expect { deploy: None, alarms: Vec::new(), converged: None, phase: env.phase.unwrap() };
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
        lock(&self.seen).push(Seen {
            at: self.world.since_start(),
            now: out.report.checked_at,
            expected: env.expected,
            did,
        });
    }
}

/// What a run of the loop left behind.
struct Run {
    world: Arc<World>,
    base: Timestamp,
    seen: Vec<Seen>,
    probed: Vec<Probed>,
    deployed: Vec<Deployed>,
    alarmed: Vec<Alarmed>,
}

/// Runs the [`Controller`] over the world of `passes` until a while after its last change.
fn run_loop(policy: &Policy, passes: &[Pass], deploy_s: u64, interval_s: u64) -> Run {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let _lock = FileStore::lock(dir.path()).unwrap();
        let store = Arc::new(FileStore::open(dir.path()).unwrap());
        let world = Arc::new(World::new(passes));
        let probe = Arc::new(Probe { world: world.clone(), calls: Mutex::default() });
        let deploy = Arc::new(Deploy {
            world: world.clone(),
            took: Duration::from_secs(deploy_s),
            calls: Mutex::default(),
        });
        let sink = Arc::new(Sink { world: world.clone(), got: Mutex::default() });
        let observer = Arc::new(Passes { world: world.clone(), seen: Mutex::default() });
        let spec = EnvironmentSpec {
            name: EnvName::new(ENV).unwrap(),
            reference: "refs/heads/environments/production".into(),
            targets: vec![TargetSpec::new("web", probe.clone())],
            remediator: Some(deploy.clone()),
            policy: Arc::new(policy.clone()),
            controls: gitstate_core::Controls::default(),
            checks: Vec::new(),
        };
        let mut options = Options::default();
        options.interval = Duration::from_secs(interval_s);
        options.jitter = JITTER;
        options.ref_poll = REF_POLL;
        options.converging_poll = CONVERGING_POLL;
        options.seed = Some(7);
        let base = Timestamp::from_second(1_800_000_000).unwrap();
        let clock = world.clone();
        let controller = Controller::builder(Arc::new(Source(world.clone())), store)
            .environment(spec)
            .sink(sink.clone())
            .observer(observer.clone())
            .options(options)
            .clock(move || model::plus(base, clock.since_start()))
            .build();
        let end = world.start + world.end();
        controller.run(tokio::time::sleep_until(end)).await.unwrap();
        Run {
            world,
            base,
            seen: std::mem::take(&mut *lock(&observer.seen)),
            probed: std::mem::take(&mut *lock(&probe.calls)),
            deployed: std::mem::take(&mut *lock(&deploy.calls)),
            alarmed: std::mem::take(&mut *lock(&sink.got)),
        }
    })
}

fn sorted(mut v: Vec<(AlarmChange, AlarmKind)>) -> Vec<String> {
    v.sort_by_key(|(c, k)| format!("{c:?}{k:?}"));
    v.into_iter().map(|(c, k)| format!("{c:?} {k:?}")).collect()
}

/// Phases in which SPEC §7 "watch" probes again every `converging_poll`.
fn pending(phase: Phase) -> bool {
    matches!(phase, Phase::Converging | Phase::Remediating | Phase::BackingOff | Phase::Observing)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(gitstate_testkit::proptest_cases(24)))]

    /// Every pass the loop ran did what the model says, given what that pass saw; however
    /// the world flapped, no expected commit got more than `max_attempts` deploys; the
    /// remediator and the sink got exactly what the passes decided; and the loop looked
    /// again when SPEC §7 "watch" says it must.
    #[test]
    fn the_loop_matches_the_model(
        policy in model::policy(),
        passes in prop::collection::vec(model::pass(), 1..60),
        deploy_s in 0u64..40,
        interval_s in prop_oneof![Just(60u64), 5u64..300],
    ) {
        let run = run_loop(&policy, &passes, deploy_s, interval_s);
        let seen = &run.seen;
        prop_assert!(!seen.is_empty());
        // One probe call per pass, at the pass's instant: what that pass saw.
        prop_assert_eq!(run.probed.len(), seen.len(), "one probe call per pass");

        let mut m = Model::default();
        let mut deploys: BTreeMap<(usize, usize), u32> = BTreeMap::new();
        let mut epoch = 0;
        let mut last = None;
        let mut wanted_deploys = Vec::new();
        let mut wanted_alarms: BTreeMap<Duration, Vec<(AlarmChange, AlarmKind)>> = BTreeMap::new();
        for (i, (s, p)) in seen.iter().zip(&run.probed).enumerate() {
            prop_assert_eq!(s.at, p.at, "pass {}: probed at another instant", i);
            prop_assert_eq!(s.now, model::plus(run.base, s.at), "pass {}: decided on another clock", i);
            prop_assert_eq!(p.asked, commit(p.commit), "pass {} at {}: probed for another commit", i, s.now);
            prop_assert_eq!(s.expected, Some(commit(p.commit)), "pass {} at {}: reported another commit", i, s.now);
            if last != Some(p.commit) {
                epoch += 1;
                last = Some(p.commit);
            }
            let pass = Pass { dt: 0, commit: p.commit, reflog_ago: None, statuses: p.statuses.clone(), policy: 0 };
            let want = m.pass(&pass, None, &policy, s.now);
            prop_assert_eq!(s.did.deploy, want.deploy, "pass {} at {}: deploys differ", i, s.now);
            prop_assert_eq!(sorted(s.did.alarms.clone()), sorted(want.alarms.clone()), "pass {} at {}: alarms differ", i, s.now);
            prop_assert_eq!(s.did.converged, want.converged, "pass {} at {}: convergence differs", i, s.now);
            prop_assert_eq!(s.did.phase, want.phase, "pass {} at {}: phase differs", i, s.now);
            if let Some(attempt) = s.did.deploy {
                let n = deploys.entry((epoch, p.commit)).or_default();
                *n += 1;
                prop_assert!(*n <= policy.max_attempts, "more than max_attempts deploys of one expected commit");
                wanted_deploys.push((s.at, commit(p.commit), attempt));
            }
            wanted_alarms.entry(s.at).or_default().extend(want.alarms);
        }

        // The remediator ran every deploy a pass decided, at once, one at a time.
        let env = EnvName::new(ENV).unwrap();
        let got: Vec<_> = run.deployed.iter().map(|d| (d.started, d.expected, d.attempt)).collect();
        prop_assert_eq!(got, wanted_deploys, "the remediator's calls differ from the deploys decided");
        for (i, d) in run.deployed.iter().enumerate() {
            prop_assert_eq!(&d.environment, &env);
            if let Some(next) = run.deployed.get(i + 1) {
                prop_assert!(next.started >= d.ended, "two remediations of one environment in flight");
            }
        }

        // The sink was told every alarm change, on the pass that made it.
        let mut delivered: BTreeMap<Duration, Vec<(AlarmChange, AlarmKind)>> = BTreeMap::new();
        for (at, e, expected, change, kind) in &run.alarmed {
            prop_assert_eq!(e, &env);
            let now = model::plus(run.base, *at);
            let (c, _) = run.world.at(*at);
            // A superseded alarm names the commit it was about; every other the current one.
            if !matches!(change, AlarmChange::Resolved(gitstate_core::Resolution::Superseded)) {
                prop_assert_eq!(*expected, commit(c), "alarm at {} names another commit", now);
            }
            delivered.entry(*at).or_default().push((*change, *kind));
        }
        wanted_alarms.retain(|_, v| !v.is_empty());
        let delivered: BTreeMap<_, _> = delivered.into_iter().map(|(k, v)| (k, sorted(v))).collect();
        let wanted: BTreeMap<_, _> = wanted_alarms.into_iter().map(|(k, v)| (k, sorted(v))).collect();
        prop_assert_eq!(delivered, wanted, "the sink's deliveries differ from the alarm changes");

        // Looked at again in time (SPEC §7 "watch"). The deploy a pass started delays the
        // next pass until it ends (one thing in flight per environment).
        let end = run.world.end();
        let interval = Duration::from_secs(interval_s);
        let deploy = Duration::from_secs(deploy_s);
        let deploy_end = |at: Duration| run.deployed.iter().find(|d| d.started == at).map_or(at, |d| d.ended);
        for (i, s) in seen.iter().enumerate() {
            let next = seen.get(i + 1).map_or(end, |n| n.at);
            if pending(s.did.phase) {
                let due = (s.at + CONVERGING_POLL).max(deploy_end(s.at));
                prop_assert!(
                    next <= due + SLACK,
                    "pass {} at {}: {:?}, next pass {:?} later, not within converging_poll",
                    i, s.now, s.did.phase, next - s.at
                );
            }
            let full = interval.mul_f64(1.0 + JITTER) + deploy;
            prop_assert!(next <= s.at + full + SLACK, "pass {} at {}: no pass for {:?}", i, s.now, next - s.at);
        }
        for moved in run.world.seen_moves(REF_POLL) {
            let by = moved + REF_POLL + deploy;
            if by < end {
                prop_assert!(
                    seen.iter().any(|s| s.at >= moved && s.at <= by + SLACK),
                    "the ref moved at {:?}: no pass within a ref poll", moved
                );
            }
        }
    }
}
