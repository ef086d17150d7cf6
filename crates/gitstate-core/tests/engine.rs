//! The pass engine end to end over a real repository, with probes, a remediator, a sink
//! and a journal written as a downstream team would write them.

mod common;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::executor::block_on;
use gitstate_core::git::GitSource;
use gitstate_core::*;
use gitstate_testkit::{MemoryJournal as Memory, Repo};
use jiff::Timestamp;

/// Reports fixed answers per instance; yields a few times to overlap with other probes.
struct Scripted {
    answers: Mutex<Vec<(String, Result<String, ProbeFailure>)>>,
    in_flight: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

struct YieldTimes(u32);
impl Future for YieldTimes {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 == 0 {
            return Poll::Ready(());
        }
        self.0 -= 1;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[async_trait]
impl ActualStateProbe for Scripted {
    fn name(&self) -> &str {
        "scripted"
    }
    async fn observe(&self, _cx: &ProbeContext<'_>) -> Result<Vec<Reading>, ProbeFailure> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        YieldTimes(5).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        let answers = self.answers.lock().unwrap().clone();
        Ok(answers
            .into_iter()
            .map(|(instance, r)| Reading {
                instance,
                result: r.and_then(|s| {
                    ReportedCommit::parse(&s).map_err(|e| ProbeFailure::invalid(e.to_string()))
                }),
                elapsed: Duration::from_millis(3),
            })
            .collect())
    }
}

fn scripted(answers: Vec<(&str, Result<String, ProbeFailure>)>) -> Arc<Scripted> {
    Arc::new(Scripted {
        answers: Mutex::new(answers.into_iter().map(|(i, r)| (i.to_owned(), r)).collect()),
        in_flight: Arc::default(),
        peak: Arc::default(),
    })
}

/// Records calls; each call checks that the journal already holds the attempt.
struct Deploy {
    calls: Mutex<Vec<RemediationRequest>>,
    ok: bool,
    journal: Arc<Memory>,
}

#[async_trait]
impl Remediator for Deploy {
    fn name(&self) -> &str {
        "deploy"
    }
    async fn remediate(&self, req: &RemediationRequest) -> RemediationOutcome {
        let persisted =
            self.journal.states.lock().unwrap().get(&req.environment).and_then(|s| s.incident.clone());
        assert_eq!(
            persisted.map(|i| i.attempts),
            Some(req.attempt),
            "state persisted before the remediation"
        );
        self.calls.lock().unwrap().push(req.clone());
        RemediationOutcome {
            ok: self.ok,
            detail: if self.ok { "triggered".into() } else { "exit 1".into() },
            exit_code: Some(if self.ok { 0 } else { 1 }),
            output_tail: None,
        }
    }
}

struct Sink {
    fail: std::sync::atomic::AtomicBool,
    got: Mutex<Vec<AlarmNotification>>,
}

#[async_trait]
impl AlarmSink for Sink {
    fn name(&self) -> &str {
        "test-sink"
    }
    async fn notify(&self, n: &AlarmNotification) -> Result<(), SinkError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(SinkError::failed("test-sink", "503"));
        }
        self.got.lock().unwrap().push(n.clone());
        Ok(())
    }
}

fn at(s: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + s).unwrap()
}

fn env(
    name: &str,
    targets: Vec<TargetSpec>,
    remediator: Option<Arc<dyn Remediator>>,
    policy: Policy,
) -> EnvironmentSpec {
    EnvironmentSpec {
        name: EnvName::new(name).unwrap(),
        reference: format!("environments/{name}"),
        targets,
        remediator,
        policy: Arc::new(policy),
        controls: Controls::default(),
        checks: Vec::new(),
    }
}

#[test]
fn check_classifies_every_instance_against_history() {
    let r = Repo::new();
    let c = r.commits(5, "c");
    r.git(&["checkout", "-q", "-b", "hotfix", &c[2]]);
    let h = r.commits(1, "hotfix");
    r.update_ref("refs/heads/environments/production", &c[4]);
    let src = Arc::new(GitSource::local(r.path()).unwrap());
    let probe = scripted(vec![
        ("eu", Ok(c[4].clone())),
        ("us", Ok(c[1][..7].to_owned())),
        ("ap", Ok(h[0].clone())),
        ("sa", Ok("f".repeat(40))),
        ("af", Err(ProbeFailure::unreachable("connection refused"))),
    ]);
    let e = env("production", vec![TargetSpec::new("web", probe)], None, Policy::default());
    let engine = Engine::new(src);
    let out = block_on(engine.run_pass(&[e], &BTreeMap::new(), PassMode::Check, at(0)));
    let rep = &out.report.environments[0];
    assert_eq!(rep.expected.as_ref().unwrap().as_str(), c[4]);
    assert_eq!(rep.reference, "refs/heads/environments/production");
    assert!(!rep.in_sync && !out.report.in_sync);
    assert_eq!(rep.phase, None);
    assert!(rep.actions.is_empty() && out.states.is_empty());
    let t = &rep.targets[0];
    assert_eq!(t.status, Status::Unreachable);
    let row = |id: &str| t.instances.iter().find(|i| i.id == id).unwrap().clone();
    assert_eq!(row("eu").status, Status::InSync);
    assert_eq!((row("us").status, row("us").commits_behind), (Status::Behind, Some(3)));
    assert_eq!(row("us").actual.as_deref(), Some(&c[1][..7]));
    assert_eq!((row("ap").commits_behind, row("ap").commits_ahead), (Some(2), Some(1)));
    assert_eq!(row("ap").status, Status::Diverged);
    assert_eq!(row("sa").status, Status::UnknownCommit);
    assert_eq!(row("af").error.as_deref(), Some("connection refused"));
    assert_eq!(row("af").elapsed_ms, 3);

    let json = serde_json::to_value(&out.report).unwrap();
    assert_eq!(json["schema"], 1);
    assert_eq!(json["environments"][0]["ref"], "refs/heads/environments/production");
    assert_eq!(json["environments"][0]["targets"][0]["kind"], "scripted");
}

#[test]
fn missing_ref_is_an_environment_error() {
    let r = Repo::new();
    r.commits(1, "c");
    let engine = Engine::new(Arc::new(GitSource::local(r.path()).unwrap()));
    let e = env("ghost", vec![], None, Policy::default());
    let out = block_on(engine.run_pass(&[e], &BTreeMap::new(), PassMode::Check, at(0)));
    assert!(out.report.has_errors());
    let err = out.report.environments[0].error.clone().unwrap();
    assert!(err.contains("ghost") && err.contains("environments/ghost"), "{err}");
}

#[test]
fn probes_run_concurrently_up_to_the_limit() {
    let r = Repo::new();
    let c = r.commits(1, "c");
    r.update_ref("refs/heads/environments/a", &c[0]);
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let targets: Vec<TargetSpec> = (0..40)
        .map(|i| {
            let probe = Arc::new(Scripted {
                answers: Mutex::new(vec![("x".into(), Ok(c[0].clone()))]),
                in_flight: in_flight.clone(),
                peak: peak.clone(),
            });
            TargetSpec::new(format!("t{i}"), probe)
        })
        .collect();
    let engine = Engine::new(Arc::new(GitSource::local(r.path()).unwrap())).with_concurrency(7);
    let out = block_on(engine.run_pass(
        &[env("a", targets, None, Policy::default())],
        &BTreeMap::new(),
        PassMode::Check,
        at(0),
    ));
    assert!(out.report.in_sync);
    assert_eq!(peak.load(Ordering::SeqCst), 7);
}

#[test]
fn reconcile_persists_before_remediating_counts_failures_and_alarms() {
    let r = Repo::new();
    let c = r.commits(3, "c");
    r.update_ref("refs/heads/environments/production", &c[1]);
    let src = Arc::new(GitSource::local(r.path()).unwrap());
    let journal = Arc::new(Memory::default());
    let deploy = Arc::new(Deploy { calls: Mutex::default(), ok: false, journal: journal.clone() });
    let sink = Arc::new(Sink { fail: false.into(), got: Mutex::default() });
    let probe = scripted(vec![("eu", Ok(c[1].clone()))]);
    let policy = Policy {
        grace: Duration::ZERO,
        settle: Duration::from_secs(10),
        backoff: Duration::from_secs(10),
        max_attempts: 2,
        ..Policy::default()
    };
    let e = env("production", vec![TargetSpec::new("web", probe.clone())], Some(deploy.clone()), policy);
    let engine = Engine::new(src).with_journal(journal.clone()).with_sink(sink.clone());
    let state = std::cell::RefCell::new(BTreeMap::new());
    let pass = |t: i64, dry: bool| {
        let prior = state.borrow().clone();
        let out = block_on(engine.run_pass(
            std::slice::from_ref(&e),
            &prior,
            PassMode::Reconcile { dry_run: dry },
            at(t),
        ));
        if !dry {
            state.borrow_mut().extend(out.states.clone());
        }
        out
    };

    let first = pass(0, false);
    assert_eq!(first.report.environments[0].phase, Some(Phase::InSync));
    // The repository keeps a reflog: even gitstate's first pass knows when the ref moved.
    let events = journal.events.lock().unwrap().clone();
    assert!(
        matches!(&events[..], [ev] if matches!(ev.kind, EventKind::Converged { lag_s: Some(_), lag_from: LagFrom::Reflog, .. })),
        "{events:?}"
    );
    // The engine persists the pass's states itself.
    let persisted = journal.states.lock().unwrap().clone();
    assert_eq!(persisted, first.states.iter().cloned().collect::<BTreeMap<_, _>>());
    // The ref moves; the target stays behind.
    r.update_ref("refs/heads/environments/production", &c[2]);

    let dry = pass(5, true);
    assert_eq!(
        dry.report.environments[0].actions,
        [ActionReport::Remediate { attempt: 1, ok: None, detail: "dry run: not started".into() }]
    );
    assert!(deploy.calls.lock().unwrap().is_empty(), "a dry run runs nothing");
    assert_eq!(*journal.events.lock().unwrap(), events, "a dry run records nothing");
    assert_eq!(*journal.states.lock().unwrap(), persisted, "a dry run persists nothing");

    let p1 = pass(10, false);
    assert_eq!(
        p1.report.environments[0].actions,
        [ActionReport::Remediate { attempt: 1, ok: Some(false), detail: "exit 1".into() }]
    );
    let req = deploy.calls.lock().unwrap()[0].clone();
    assert_eq!((req.attempt, req.expected.as_str()), (1, c[2].as_str()));
    assert_eq!(req.drifted, [("web".to_owned(), "eu".to_owned())]);
    assert_eq!(req.reference, "refs/heads/environments/production");
    let kinds: Vec<String> = journal
        .events
        .lock()
        .unwrap()
        .iter()
        .map(|e| serde_json::to_value(e).unwrap()["event"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        kinds,
        ["converged", "expected_changed", "drift_detected", "remediation_started", "remediation_finished"]
    );

    pass(15, false); // settling
    let p2 = pass(21, false);
    assert!(matches!(p2.report.environments[0].actions[..], [ActionReport::Remediate { attempt: 2, .. }]));
    let p3 = pass(40, false);
    assert_eq!(p3.report.environments[0].actions, [ActionReport::AlarmRaised { alarm: AlarmKind::Drift }]);
    assert_eq!(p3.report.environments[0].phase, Some(Phase::Alarm));
    assert_eq!(deploy.calls.lock().unwrap().len(), 2, "failed attempts count");

    // The sink fails: the next notification is kept and retried.
    sink.fail.store(true, Ordering::SeqCst);
    *probe.answers.lock().unwrap() = vec![("eu".into(), Ok(c[2].clone()))];
    let p4 = pass(50, false);
    assert_eq!(p4.report.environments[0].actions, [ActionReport::AlarmResolved { alarm: AlarmKind::Drift }]);
    let undelivered = journal.outbox.lock().unwrap().pending.clone();
    assert_eq!(undelivered.len(), 1);
    assert_eq!(undelivered[0].notification.event, AlarmEvent::AlarmResolved);
    assert!(p4.events.iter().any(|e| matches!(e.kind, EventKind::NotificationFailed { .. })));
    assert!(
        p4.events.iter().any(|e| matches!(
            e.kind,
            EventKind::Converged { lag_s: Some(_), lag_from: LagFrom::Reflog, .. }
        )),
        "measured from the reflog's time of the move"
    );

    // Another process (a replica that led meanwhile) delivered what was kept: after
    // `reload_outbox` the engine reads the journal's outbox, not its own stale copy.
    let kept = std::mem::take(&mut *journal.outbox.lock().unwrap());
    engine.reload_outbox();
    sink.fail.store(false, Ordering::SeqCst);
    pass(55, false);
    assert_eq!(sink.got.lock().unwrap().len(), 1, "nothing re-sent from a stale copy");
    *journal.outbox.lock().unwrap() = kept;
    engine.reload_outbox();
    pass(60, false);
    let got: Vec<AlarmEvent> = sink.got.lock().unwrap().iter().map(|n| n.event).collect();
    assert_eq!(got, [AlarmEvent::AlarmRaised, AlarmEvent::AlarmResolved]);
    assert!(journal.outbox.lock().unwrap().pending.is_empty());
    let resolved = sink.got.lock().unwrap()[1].clone();
    assert_eq!(resolved.ended_at, Some(at(50)));
    assert_eq!(resolved.expected_sha.as_str(), c[2]);
}

#[test]
fn environments_without_a_remediator_are_observed() {
    let r = Repo::new();
    let c = r.commits(2, "c");
    r.update_ref("refs/heads/environments/qa", &c[1]);
    let engine = Engine::new(Arc::new(GitSource::local(r.path()).unwrap()));
    let probe = scripted(vec![("x", Ok(c[0].clone()))]);
    let e = env(
        "qa",
        vec![TargetSpec::new("web", probe)],
        None,
        Policy { grace: Duration::ZERO, ..Policy::default() },
    );
    let out =
        block_on(engine.run_pass(&[e], &BTreeMap::new(), PassMode::Reconcile { dry_run: false }, at(0)));
    assert_eq!(out.report.environments[0].actions, [ActionReport::AlarmRaised { alarm: AlarmKind::Drift }]);
}

/// Regression: the pass future must be `Send` where callers are generic over lifetimes
/// (`#[async_trait]` impls, `tokio::spawn`), which closures in iterator chains broke.
#[async_trait]
trait RunsPasses {
    async fn go(&self, engine: &Engine, envs: Vec<EnvironmentSpec>) -> Report;
}

struct Runner;

#[async_trait]
impl RunsPasses for Runner {
    async fn go(&self, engine: &Engine, envs: Vec<EnvironmentSpec>) -> Report {
        engine.run_pass(&envs, &BTreeMap::new(), PassMode::Reconcile { dry_run: true }, at(0)).await.report
    }
}

#[test]
fn the_pass_future_is_send_in_generic_callers() {
    let r = Repo::new();
    let c = r.commits(1, "c");
    r.update_ref("refs/heads/environments/a", &c[0]);
    let engine = Engine::new(Arc::new(GitSource::local(r.path()).unwrap()));
    let probe = scripted(vec![("x", Ok(c[0].clone()))]);
    let e = env("a", vec![TargetSpec::new("t", probe)], None, Policy::default());
    let report = block_on(Runner.go(&engine, vec![e]));
    assert!(report.in_sync);
}

/// A probe as a careless downstream team might write one.
struct Broken(&'static str);

#[async_trait]
impl ActualStateProbe for Broken {
    fn name(&self) -> &str {
        "broken"
    }
    async fn observe(&self, _cx: &ProbeContext<'_>) -> Result<Vec<Reading>, ProbeFailure> {
        match self.0 {
            "hang" => futures::future::pending().await,
            _ => panic!("byte index 33 is not a char boundary"),
        }
    }
}

#[test]
fn a_hung_or_panicking_probe_is_unreachable_and_the_pass_goes_on() {
    let r = Repo::new();
    let c = r.commits(1, "c");
    r.update_ref("refs/heads/environments/a", &c[0]);
    let good = scripted(vec![("eu", Ok(c[0].clone()))]);
    let targets = vec![
        TargetSpec::new("hung", Arc::new(Broken("hang"))).with_timeout(Duration::from_millis(300)),
        TargetSpec::new("panics", Arc::new(Broken("panic"))),
        TargetSpec::new("good", good),
    ];
    let engine = Engine::new(Arc::new(GitSource::local(r.path()).unwrap()));
    let envs = [env("a", targets, None, Policy::default())];
    let out = common::within(Duration::from_secs(30), move || {
        block_on(engine.run_pass(&envs, &BTreeMap::new(), PassMode::Check, at(0)))
    });
    let t = &out.report.environments[0].targets;
    assert_eq!(t[0].status, Status::Unreachable);
    assert_eq!(t[0].error.as_deref(), Some("no answer within 300ms"));
    assert_eq!(t[1].status, Status::Unreachable);
    assert_eq!(t[1].error.as_deref(), Some("probe panicked: byte index 33 is not a char boundary"));
    assert_eq!(t[2].status, Status::InSync);
    assert_eq!(TargetSpec::new("x", Arc::new(Broken("hang"))).timeout, DEFAULT_PROBE_TIMEOUT);
}

/// A sink that answers from a plan (`None` = accept), and records what it was sent.
#[derive(Default)]
struct Planned {
    plan: Mutex<std::collections::VecDeque<Option<SinkError>>>,
    calls: Mutex<Vec<(AlarmEvent, bool)>>,
}

#[async_trait]
impl AlarmSink for Planned {
    fn name(&self) -> &str {
        "planned"
    }
    async fn notify(&self, n: &AlarmNotification) -> Result<(), SinkError> {
        if n.event == AlarmEvent::AlarmFiring {
            return Ok(());
        }
        let answer = self.plan.lock().unwrap().pop_front().flatten();
        self.calls.lock().unwrap().push((n.event, answer.is_none()));
        answer.map_or(Ok(()), Err)
    }
}

/// SPEC §7 Alarms: deliveries of one alarm are ordered (a resolve never overtakes the raise
/// it follows), kept ones are retried with backoff (next pass, then every 2nd, 4th …), a
/// rejection (4xx) is never retried, and `notification_failed` is written at most once per
/// alarm, sink and hour.
#[test]
fn deliveries_are_ordered_retried_with_backoff_and_rejections_dropped() {
    let r = Repo::new();
    let c = r.commits(2, "c");
    r.update_ref("refs/heads/environments/production", &c[1]);
    let src = Arc::new(GitSource::local(r.path()).unwrap());
    let journal = Arc::new(Memory::default());
    let sink = Arc::new(Planned::default());
    let probe = scripted(vec![("eu", Ok(c[0].clone()))]);
    let policy =
        Policy { mode: Mode::Observe, grace: Duration::ZERO, renotify: Duration::ZERO, ..Policy::default() };
    let e = env("production", vec![TargetSpec::new("web", probe.clone())], None, policy);
    let engine = Engine::new(src).with_journal(journal.clone()).with_sink(sink.clone());
    let state = std::cell::RefCell::new(BTreeMap::new());
    let pass = |t: i64| {
        let prior = state.borrow().clone();
        let out = block_on(engine.run_pass(
            std::slice::from_ref(&e),
            &prior,
            PassMode::Reconcile { dry_run: false },
            at(t),
        ));
        state.borrow_mut().extend(out.states.clone());
        out
    };
    let plan = |answers: Vec<Option<SinkError>>| sink.plan.lock().unwrap().extend(answers);
    let calls = || sink.calls.lock().unwrap().clone();
    let failed_events = || {
        journal
            .events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| matches!(e.kind, EventKind::NotificationFailed { .. }))
            .count()
    };
    use AlarmEvent::{AlarmRaised as Raised, AlarmResolved as Resolved};

    // The raise fails, and fails again when retried on the next pass, where the alarm
    // resolves: the resolve waits behind the raise instead of overtaking it.
    plan(vec![Some(SinkError::failed("planned", "503")), Some(SinkError::failed("planned", "503"))]);
    let p0 = pass(0);
    assert_eq!(p0.deliveries, [("planned".to_owned(), Delivery::Failed)]);
    *probe.answers.lock().unwrap() = vec![("eu".into(), Ok(c[1].clone()))];
    pass(60);
    assert_eq!(calls(), [(Raised, false), (Raised, false)]);
    assert_eq!(failed_events(), 1, "one notification_failed per alarm, sink and hour");
    // Two failures: one pass is skipped, then both go, in order.
    pass(120);
    assert_eq!(calls().len(), 2, "backing off");
    pass(180);
    assert_eq!(calls()[2..], [(Raised, true), (Resolved, true)]);
    assert!(journal.outbox.lock().unwrap().pending.is_empty());

    // It drifts again and the sink now refuses (a revoked hook): dropped, never retried.
    plan(vec![Some(SinkError::rejected("planned", "HTTP 403 Forbidden"))]);
    *probe.answers.lock().unwrap() = vec![("eu".into(), Ok(c[0].clone()))];
    let p4 = pass(240);
    assert_eq!(p4.deliveries, [("planned".to_owned(), Delivery::Rejected)]);
    for t in [300, 360, 420] {
        let p = pass(t);
        assert!(p.deliveries.iter().all(|(_, d)| *d == Delivery::Delivered), "{:?}", p.deliveries);
    }
    assert_eq!(calls().len(), 5, "the rejected raise was sent once");
    assert!(journal.outbox.lock().unwrap().pending.is_empty());
    assert_eq!(failed_events(), 1, "still within the hour of the first for this alarm and sink");
}

/// Git, counting what the engine asks of its reflogs.
struct CountingSource {
    git: GitSource,
    moved_at_asks: Mutex<Vec<Vec<String>>>,
}

#[async_trait::async_trait]
impl ExpectedState for CountingSource {
    fn name(&self) -> &str {
        "git"
    }
    async fn resolve(&self, refs: &[String]) -> Result<Vec<Result<Expected, ExpectedError>>, ExpectedError> {
        self.git.resolve(refs).await
    }
    async fn relate(
        &self,
        expected: &CommitId,
        reported: &[ReportedCommit],
    ) -> Result<Vec<Relation>, ExpectedError> {
        self.git.relate(expected, reported).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<Expected>, ExpectedError> {
        self.git.list(prefix).await
    }
    async fn moved_at(&self, expected: &[Expected]) -> Vec<Option<Timestamp>> {
        self.moved_at_asks.lock().unwrap().push(expected.iter().map(|e| e.reference.clone()).collect());
        self.git.moved_at(expected).await
    }
}

/// A pass asks the source when refs moved once, for exactly the environments whose
/// expected commit is new to the state (a first pass over 10,000 environments used to
/// ask 10,000 times, each a job on the blocking pool, which then kept a hundred threads),
/// and the answers land on the right environments.
#[test]
fn reflog_times_are_asked_once_a_pass_for_the_environments_whose_commit_is_new() {
    let r = Repo::new();
    let c = r.commits(3, "c");
    let names = ["a", "b", "c", "d"];
    for n in names {
        r.update_ref(&format!("refs/heads/environments/{n}"), &c[0]);
    }
    let src = Arc::new(CountingSource {
        git: GitSource::local(r.path()).unwrap(),
        moved_at_asks: Mutex::default(),
    });
    let engine = Engine::new(src.clone());
    let specs: Vec<EnvironmentSpec> = names
        .iter()
        .map(|n| {
            let probe = scripted(vec![("i", Ok(c[0].clone()))]);
            env(n, vec![TargetSpec::new("web", probe)], None, Policy::default())
        })
        .collect();
    let mut state: BTreeMap<EnvName, EnvState> = BTreeMap::new();
    let mut pass = |t: i64| {
        let out = block_on(engine.run_pass(&specs, &state, PassMode::Reconcile { dry_run: false }, at(t)));
        state.extend(out.states.clone());
        out
    };
    let asks = || std::mem::take(&mut *src.moved_at_asks.lock().unwrap());
    let refs = |ns: &[&str]| -> Vec<Vec<String>> {
        vec![ns.iter().map(|n| format!("refs/heads/environments/{n}")).collect()]
    };

    pass(0);
    assert_eq!(asks(), refs(&names), "a first pass: every environment, in one question");
    pass(10);
    assert!(asks().is_empty(), "nothing new: nothing asked");
    r.update_ref("refs/heads/environments/b", &c[1]);
    r.update_ref("refs/heads/environments/d", &c[2]);
    // b's reflog is gone: its answer is "not known", d's a time. Swapped answers show.
    std::fs::remove_file(r.path().join(".git/logs/refs/heads/environments/b")).unwrap();
    let out = pass(20);
    assert_eq!(asks(), refs(&["b", "d"]), "only the environments whose commit moved");
    let from_reflog = |n: &str| {
        let s = &out.states.iter().find(|(e, _)| e.as_str() == n).unwrap().1;
        s.expected.as_ref().map(|e| (e.commit.to_string(), e.from_reflog))
    };
    assert_eq!(from_reflog("b"), Some((c[1].clone(), false)));
    assert_eq!(from_reflog("d"), Some((c[2].clone(), true)));
}

/// Everything a run of passes produced, in an order that does not depend on the order the
/// environments were given in: reports, records, events, decisions, deploys, journal.
fn whole_outputs(
    specs: &[EnvironmentSpec],
    repo: &Repo,
    calls: &Mutex<Vec<RemediationRequest>>,
) -> Vec<String> {
    let journal = Arc::new(Memory::default());
    let sink = Arc::new(Sink { fail: false.into(), got: Mutex::default() });
    let src = Arc::new(GitSource::local(repo.path()).unwrap());
    let engine = Engine::new(src).with_journal(journal.clone()).with_sink(sink.clone());
    let mut state = BTreeMap::new();
    let mut out = Vec::new();
    for t in [0, 30, 200, 900, 4000] {
        let pass = block_on(engine.run_pass(specs, &state, PassMode::Reconcile { dry_run: false }, at(t)));
        state.extend(pass.states.clone());
        let mut report = pass.report.environments.clone();
        report.sort_by(|a, b| a.name.cmp(&b.name));
        let mut events = pass.events.clone();
        events.sort_by(|a, b| {
            (a.environment.as_str(), format!("{:?}", a.kind))
                .cmp(&(b.environment.as_str(), format!("{:?}", b.kind)))
        });
        let mut decisions = pass.decisions.clone();
        decisions.sort_by(|a, b| a.0.cmp(&b.0));
        let mut states = pass.states.clone();
        states.sort_by(|a, b| a.0.cmp(&b.0));
        out.push(format!(
            "t={t} in_sync={} report={} states={states:?} events={} decisions={decisions:?}",
            pass.report.in_sync,
            serde_json::to_string(&report).unwrap(),
            serde_json::to_string(&events).unwrap(),
        ));
    }
    let mut deploys: Vec<String> = calls.lock().unwrap().drain(..).map(|r| format!("{r:?}")).collect();
    deploys.sort();
    out.push(format!("deploys={deploys:?}"));
    let mut got: Vec<String> = sink.got.lock().unwrap().iter().map(|n| format!("{n:?}")).collect();
    got.sort();
    out.push(format!("notifications={got:?}"));
    out.push(format!(
        "journal={:?} outbox={:?}",
        journal.states.lock().unwrap(),
        journal.outbox.lock().unwrap()
    ));
    out
}

/// Invariant 9 over whole outputs: the same passes over the same inputs give the same
/// reports, records, events, decisions, deploys and notifications — run twice, and with
/// the environments given in the other order.
#[test]
fn passes_are_deterministic_whatever_the_order_of_environments() {
    let r = Repo::new();
    let c = r.commits(3, "c");
    for (name, at) in [("production", 2), ("staging", 2), ("dev", 1)] {
        r.update_ref(&format!("refs/heads/environments/{name}"), &c[at]);
    }
    let journal_for_deploy = Arc::new(Memory::default());
    // The deploy never lands: attempts, backoff and an alarm follow.
    let deploy = Arc::new(Deploy { calls: Mutex::default(), ok: false, journal: journal_for_deploy });
    let policy = Policy {
        grace: Duration::ZERO,
        settle: Duration::from_secs(10),
        backoff: Duration::from_secs(60),
        max_attempts: 2,
        ..Policy::default()
    };
    let specs = vec![
        env(
            "production",
            vec![TargetSpec::new("web", scripted(vec![("eu", Ok(c[2].clone()))]))],
            None,
            policy.clone(),
        ),
        env(
            "staging",
            vec![TargetSpec::new("web", scripted(vec![("a", Ok(c[0].clone())), ("b", Ok(c[2].clone()))]))],
            None,
            policy.clone(),
        ),
        env(
            "dev",
            vec![TargetSpec::new("web", scripted(vec![("x", Err(ProbeFailure::unreachable("refused")))]))],
            None,
            policy.clone(),
        ),
    ];
    // Staging remediates through the deploy (which checks nothing of its own journal here).
    let mut specs = specs;
    specs[1].remediator = Some(Arc::new(Recorder(deploy.clone())));
    let once = whole_outputs(&specs, &r, &deploy.calls);
    let twice = whole_outputs(&specs, &r, &deploy.calls);
    assert_eq!(once, twice, "the same inputs twice");
    specs.reverse();
    let reversed = whole_outputs(&specs, &r, &deploy.calls);
    assert_eq!(once, reversed, "the environments in another order");
    assert!(once.last().unwrap().contains("staging"), "something happened: {once:#?}");
    assert!(once.iter().any(|l| l.contains("deploys=[") && l.contains("attempt: 2")), "{once:#?}");
}

/// A remediator that records the request and fails, without [`Deploy`]'s journal check.
struct Recorder(Arc<Deploy>);

#[async_trait]
impl Remediator for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }
    async fn remediate(&self, req: &RemediationRequest) -> RemediationOutcome {
        self.0.calls.lock().unwrap().push(req.clone());
        RemediationOutcome { ok: false, detail: "exit 1".into(), exit_code: Some(1), output_tail: None }
    }
}

/// SPEC §17: an `info` tier's alarms are recorded (events, state) and never sent; a
/// `warning` tier's reach the sink with their severity, labels and runbook.
#[test]
fn info_alarms_are_recorded_never_sent_and_others_carry_the_policy() {
    let r = Repo::new();
    let c = r.commits(2, "c");
    r.update_ref("refs/heads/environments/quiet", &c[1]);
    r.update_ref("refs/heads/environments/loud", &c[1]);
    let src = Arc::new(GitSource::local(r.path()).unwrap());
    let journal = Arc::new(Memory::default());
    let sink = Arc::new(Sink { fail: false.into(), got: Mutex::default() });
    let base = Policy { mode: Mode::Observe, grace: Duration::ZERO, ..Policy::default() };
    let quiet = Policy { severity: gitstate_core::Severity::Info, ..base.clone() };
    let loud = Policy {
        severity: gitstate_core::Severity::Warning,
        labels: [("team".to_owned(), "shop".to_owned())].into(),
        runbook_url: Some("https://wiki.example/{alarm}".into()),
        ..base
    };
    let envs = [
        env("quiet", vec![TargetSpec::new("web", scripted(vec![("eu", Ok(c[0].clone()))]))], None, quiet),
        env("loud", vec![TargetSpec::new("web", scripted(vec![("eu", Ok(c[0].clone()))]))], None, loud),
    ];
    let engine = Engine::new(src).with_journal(journal.clone()).with_sink(sink.clone());
    let out =
        block_on(engine.run_pass(&envs, &BTreeMap::new(), PassMode::Reconcile { dry_run: false }, at(0)));
    let raised: Vec<String> = journal
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e.kind, EventKind::AlarmRaised { .. }))
        .map(|e| e.environment.to_string())
        .collect();
    assert_eq!(raised.len(), 2, "both alarms are recorded: {raised:?}");
    let quiet_state = out.states.iter().find(|(n, _)| n.as_str() == "quiet").unwrap();
    assert_eq!(quiet_state.1.alarms.len(), 1, "and open in the state");
    let got = sink.got.lock().unwrap().clone();
    assert_eq!(
        got.iter().map(|n| n.environment.as_str()).collect::<Vec<_>>(),
        ["loud"],
        "info is never sent"
    );
    assert_eq!(got[0].severity, gitstate_core::Severity::Warning);
    assert_eq!(got[0].labels.get("team").map(String::as_str), Some("shop"));
    assert_eq!(got[0].runbook_url.as_deref(), Some("https://wiki.example/drift"));
}
