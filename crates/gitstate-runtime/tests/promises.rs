//! Promises of SPEC §7 and §9 that only the whole loop can keep, each through the runtime's
//! real `Controller` under tokio's paused clock, with a scripted source, probe and sink and
//! a `FileStore` in a temporary directory:
//!
//! - while an environment is suspended or frozen, an `unreachable` alarm still fires, no
//!   new `drift` or `diverged` alarm is raised, and the status shows the window's `until`;
//! - an open alarm reaches a sink again every `renotify` (`alarm_repeated`), and only then.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use gitstate_core::{
    ActualStateProbe, AlarmEvent, AlarmKind, AlarmNotification, AlarmSink, CommitId, EnvName,
    EnvironmentSpec, Expected, ExpectedError, ExpectedState, OnDiverged, Policy, ProbeContext, ProbeFailure,
    Reading, Relation, ReportedCommit, SinkError, Status, TargetSpec,
};
use gitstate_runtime::controls::FreezeWindow;
use gitstate_runtime::{Controller, Environment, FileStore, Options};
use tokio::time::Instant;

const REF: &str = "refs/heads/environments/production";
const SHA: &str = "1111111111111111111111111111111111111111";
const OTHER: &str = "2222222222222222222222222222222222222222";

/// The ref always points at SHA; every other commit is behind it.
struct Source;

#[async_trait]
impl ExpectedState for Source {
    fn name(&self) -> &str {
        "scripted"
    }
    async fn resolve(&self, refs: &[String]) -> Result<Vec<Result<Expected, ExpectedError>>, ExpectedError> {
        Ok(refs
            .iter()
            .map(|r| Ok(Expected { reference: r.clone(), commit: CommitId::parse(SHA).unwrap() }))
            .collect())
    }
    async fn relate(
        &self,
        expected: &CommitId,
        reported: &[ReportedCommit],
    ) -> Result<Vec<Relation>, ExpectedError> {
        Ok(reported
            .iter()
            .map(|r| if r.matches(expected) { Relation::InSync } else { Relation::Behind(1) })
            .collect())
    }
    async fn list(&self, _: &str) -> Result<Vec<Expected>, ExpectedError> {
        Ok(Vec::new())
    }
}

/// What the target answers, switchable while the loop runs.
#[derive(Clone, Copy, PartialEq)]
enum Answer {
    Runs(&'static str),
    Refused,
}

struct Probe(Arc<Mutex<Answer>>);

#[async_trait]
impl ActualStateProbe for Probe {
    fn name(&self) -> &str {
        "scripted"
    }
    async fn observe(&self, _cx: &ProbeContext<'_>) -> Result<Vec<Reading>, ProbeFailure> {
        let answer = *self.0.lock().unwrap();
        let result = match answer {
            Answer::Runs(sha) => Ok(ReportedCommit::parse(sha).unwrap()),
            Answer::Refused => Err(ProbeFailure::unreachable("connection refused")),
        };
        Ok(vec![Reading { instance: "eu".into(), result, elapsed: Duration::ZERO }])
    }
}

/// Every notification, with the paused clock's time since the start.
#[derive(Default)]
struct Sink(Mutex<Vec<(Duration, AlarmKind, String)>>, Mutex<Option<Instant>>);

#[async_trait]
impl AlarmSink for Sink {
    fn name(&self) -> &str {
        "recorder"
    }
    async fn notify(&self, n: &AlarmNotification) -> Result<(), SinkError> {
        let start = self.1.lock().unwrap().expect("started");
        let change = match n.event {
            AlarmEvent::AlarmRaised => "raised",
            AlarmEvent::AlarmRepeated => "repeated",
            AlarmEvent::AlarmResolved => "resolved",
            // Sent every pass for sinks that expire silent alerts; this one does not.
            _ => return Ok(()),
        };
        self.0.lock().unwrap().push((start.elapsed(), n.alarm, change.to_owned()));
        Ok(())
    }
}

struct World {
    answer: Arc<Mutex<Answer>>,
    sink: Arc<Sink>,
    store: Arc<FileStore>,
    _dir: tempfile::TempDir,
    _lock: gitstate_runtime::store::Lock,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let lock = FileStore::lock(dir.path()).unwrap();
    let store = Arc::new(FileStore::open(dir.path()).unwrap());
    World {
        answer: Arc::new(Mutex::new(Answer::Runs(SHA))),
        sink: Arc::default(),
        store,
        _dir: dir,
        _lock: lock,
    }
}

/// The paused clock as wall time, from a fixed base.
fn clock(start: Instant) -> impl Fn() -> jiff::Timestamp + Send + Sync + 'static {
    let base: jiff::Timestamp = "2026-11-27T12:00:00Z".parse().unwrap();
    move || base.checked_add(jiff::SignedDuration::try_from(start.elapsed()).unwrap()).unwrap()
}

fn controller(w: &World, policy: Policy, windows: Vec<FreezeWindow>, start: Instant) -> Controller {
    let spec = EnvironmentSpec {
        name: EnvName::new("production").unwrap(),
        reference: REF.into(),
        targets: vec![TargetSpec::new("web", Arc::new(Probe(w.answer.clone())))],
        remediator: None,
        policy: Arc::new(policy),
        controls: Default::default(),
        checks: Vec::new(),
    };
    let mut options = Options::default();
    (options.interval, options.jitter, options.ref_poll, options.converging_poll, options.seed) =
        (Duration::from_secs(10), 0.0, Duration::from_secs(1), Duration::from_secs(5), Some(1));
    *w.sink.1.lock().unwrap() = Some(start);
    Controller::builder(Arc::new(Source), w.store.clone())
        .environment(Environment::new(spec).with_windows(windows))
        .sink(w.sink.clone())
        .options(options)
        .clock(clock(start))
        .build()
}

fn kinds(sink: &Sink, change: &str) -> Vec<AlarmKind> {
    sink.0.lock().unwrap().iter().filter(|(_, _, c)| c == change).map(|(_, k, _)| *k).collect()
}

/// SPEC §9: suspended, an environment is still probed and reported; an `unreachable` alarm
/// still fires; drift raises nothing new.
#[tokio::test(start_paused = true)]
async fn suspended_an_unreachable_alarm_still_fires_and_drift_raises_nothing() {
    let w = world();
    let start = Instant::now();
    let now = clock(start)();
    let production = EnvName::new("production").unwrap();
    gitstate_runtime::controls::suspend(
        &*w.store,
        std::slice::from_ref(&production),
        gitstate_runtime::actions::Actor { by: "ada", via: "cli" },
        Some("incident"),
        None,
        now,
    )
    .await
    .unwrap();
    // Observe mode's drift alarm would come after grace: 0 s here, were it not suspended.
    let policy = Policy {
        grace: Duration::ZERO,
        unreachable_after: 2,
        on_diverged: OnDiverged::Alarm,
        ..Policy::default()
    };
    let c = controller(&w, policy, Vec::new(), start);
    let answer = w.answer.clone();
    let script = async move {
        *answer.lock().unwrap() = Answer::Runs(OTHER); // drifted while suspended
        tokio::time::sleep(Duration::from_secs(60)).await;
        *answer.lock().unwrap() = Answer::Refused; // and then unreachable
        tokio::time::sleep(Duration::from_secs(60)).await;
    };
    c.run(script).await.unwrap();
    assert_eq!(kinds(&w.sink, "raised"), [AlarmKind::Unreachable], "{:?}", w.sink.0.lock().unwrap());
    let status = c.view().status(clock(start)());
    let e = &status.environments[0];
    assert_eq!(e.phase, Some(gitstate_core::Phase::Suspended));
    assert_eq!(e.suspension.as_ref().map(|s| s.by.as_str()), Some("ada"));
    let report = c.view().reports()[&production].clone();
    assert_eq!(report.targets[0].status, Status::Unreachable, "still probed and reported");
}

/// SPEC §9: inside a freeze window the same holds, and the status names when it ends.
#[tokio::test(start_paused = true)]
async fn frozen_an_unreachable_alarm_still_fires_and_the_status_shows_until() {
    let w = world();
    let start = Instant::now();
    // Every day from 12:00 UTC for two hours: open from the loop's first instant.
    let window = FreezeWindow::new("0 12 * * *", Duration::from_secs(7200), "UTC").unwrap();
    let policy = Policy { grace: Duration::ZERO, unreachable_after: 2, ..Policy::default() };
    let c = controller(&w, policy, vec![window], start);
    let answer = w.answer.clone();
    let view = c.view();
    let script = async move {
        *answer.lock().unwrap() = Answer::Runs(OTHER);
        tokio::time::sleep(Duration::from_secs(60)).await;
        let e = &view.status(clock(start)()).environments[0];
        assert_eq!(e.phase, Some(gitstate_core::Phase::Frozen));
        let until: jiff::Timestamp = "2026-11-27T14:00:00Z".parse().unwrap();
        assert_eq!(e.window.as_ref().map(|w| w.until), Some(until), "the window's until");
        *answer.lock().unwrap() = Answer::Refused;
        tokio::time::sleep(Duration::from_secs(60)).await;
    };
    c.run(script).await.unwrap();
    assert_eq!(kinds(&w.sink, "raised"), [AlarmKind::Unreachable], "{:?}", w.sink.0.lock().unwrap());
}

/// SPEC §7 invariant 4: an open alarm is re-notified every `renotify`, not on every pass.
#[tokio::test(start_paused = true)]
async fn an_open_alarm_reaches_the_sink_again_every_renotify() {
    let w = world();
    let start = Instant::now();
    *w.answer.lock().unwrap() = Answer::Refused;
    let renotify = Duration::from_secs(60);
    let policy = Policy { grace: Duration::ZERO, unreachable_after: 1, renotify, ..Policy::default() };
    let c = controller(&w, policy, Vec::new(), start);
    c.run(tokio::time::sleep(Duration::from_secs(250))).await.unwrap();
    let got = w.sink.0.lock().unwrap().clone();
    let raised: Vec<Duration> = got.iter().filter(|g| g.2 == "raised").map(|g| g.0).collect();
    let repeated: Vec<Duration> = got.iter().filter(|g| g.2 == "repeated").map(|g| g.0).collect();
    assert_eq!(raised.len(), 1, "{got:?}");
    // Full passes every 10 s: each repeat at the first pass once renotify has run since the
    // last notification, never earlier and at most a pass later.
    assert_eq!(repeated.len(), 4, "{got:?}");
    let mut last = raised[0];
    for r in repeated {
        let gap = r - last;
        assert!(
            gap >= renotify && gap <= renotify + Duration::from_secs(10),
            "a repeat {gap:?} after the last: {got:?}"
        );
        last = r;
    }
}

/// Environments a test can change while the loop runs.
struct Listing(Mutex<Option<Vec<Environment>>>);

#[async_trait]
impl gitstate_runtime::Environments for Listing {
    async fn refresh(&self) -> Result<gitstate_runtime::Refreshed, gitstate_runtime::environments::BoxError> {
        Ok(match self.0.lock().unwrap().take() {
            Some(envs) => gitstate_runtime::Refreshed::changed(envs),
            None => gitstate_runtime::Refreshed::unchanged(),
        })
    }
}

/// What the loop told its observer: environments passed (with repeats) and retired.
#[derive(Default)]
struct Told {
    passed: Mutex<Vec<EnvName>>,
    removed: Mutex<Vec<EnvName>>,
    full_passes: Mutex<u32>,
}

impl gitstate_runtime::Observer for Told {
    fn pass(&self, specs: &[EnvironmentSpec], _: &gitstate_core::PassOutcome, _: Duration) {
        self.passed.lock().unwrap().extend(specs.iter().map(|s| s.name.clone()));
    }
    fn full_pass(&self, _: jiff::Timestamp) {
        *self.full_passes.lock().unwrap() += 1;
    }
    fn removed(&self, env: &EnvName) {
        self.removed.lock().unwrap().push(env.clone());
    }
}

/// SPEC §19: a pass over more environments than one chunk holds sees every one of them (each
/// once per full pass, persisted), and environments gone from the listing are retired once,
/// after the pass — not per chunk, not never.
#[tokio::test(start_paused = true)]
async fn a_full_pass_over_many_chunks_sees_every_environment_and_retires_the_gone_once() {
    let w = world();
    let start = Instant::now();
    let env = |i: usize| {
        Environment::new(EnvironmentSpec {
            name: EnvName::new(&format!("shop-{i:05}")).unwrap(),
            reference: format!("refs/heads/environments/shop-{i}"),
            targets: vec![TargetSpec::new("web", Arc::new(Probe(w.answer.clone())))],
            remediator: None,
            policy: Arc::new(Policy::default()),
            controls: Default::default(),
            checks: Vec::new(),
        })
    };
    const N: usize = 5000;
    const KEPT: usize = 3100;
    let listing = Arc::new(Listing(Mutex::new(Some((0..N).map(env).collect()))));
    let told = Arc::new(Told::default());
    let mut options = Options::default();
    (options.interval, options.jitter, options.ref_poll, options.seed) =
        (Duration::from_secs(10), 0.0, Duration::from_secs(1), Some(1));
    let c = Controller::builder(Arc::new(Source), w.store.clone())
        .discovery(listing.clone())
        .observer(told.clone())
        .options(options)
        .clock(clock(start))
        .build();
    let (store, seen) = (w.store.clone(), told.clone());
    let script = async move {
        // The first full pass: every environment passed once and recorded.
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(*seen.full_passes.lock().unwrap(), 1);
        let mut passed = seen.passed.lock().unwrap().clone();
        passed.sort();
        let all: Vec<EnvName> = (0..N).map(|i| env(i).spec.name).collect();
        assert!(
            passed == all,
            "each environment once in the first full pass: {} passed of {N}",
            passed.len()
        );
        assert_eq!(gitstate_runtime::Store::names(&*store).len(), N);
        // The listing loses all but KEPT: retired at the next full pass, once each.
        *listing.0.lock().unwrap() = Some((0..KEPT).map(env).collect());
        tokio::time::sleep(Duration::from_secs(20)).await;
    };
    c.run(script).await.unwrap();
    let mut removed = told.removed.lock().unwrap().clone();
    removed.sort();
    let gone: Vec<EnvName> = (KEPT..N).map(|i| env(i).spec.name).collect();
    assert!(removed == gone, "every environment gone retired, once: {} of {}", removed.len(), gone.len());
    let mut names = gitstate_runtime::Store::names(&*w.store);
    names.sort();
    assert!(names == (0..KEPT).map(|i| env(i).spec.name).collect::<Vec<_>>(), "{} records kept", names.len());
}
