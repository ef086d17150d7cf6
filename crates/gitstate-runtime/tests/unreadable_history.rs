//! SPEC §7: a history that cannot be read gives `drifted` (the relation is unknown: fail
//! closed) and, under `on_diverged = "alarm"`, a `diverged` alarm and never a remediation —
//! through the runtime's real `Controller` over real Git: a local repository with a commit
//! object missing, and a remote read without a mirror (refs only, no history).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use gitstate_core::git::{GitSource, RemoteRepo};
use gitstate_core::{
    ActualStateProbe, AlarmEvent, AlarmKind, AlarmNotification, AlarmSink, EnvName, EnvironmentSpec,
    ExpectedState, OnDiverged, PassOutcome, Policy, ProbeContext, ProbeFailure, Reading, RemediationOutcome,
    RemediationRequest, Remediator, ReportedCommit, SinkError, Status, TargetSpec,
};
use gitstate_runtime::{Controller, FileStore, Observer, Options};
use gitstate_testkit::Repo;

const REF: &str = "refs/heads/environments/production";

struct Runs(String);

#[async_trait]
impl ActualStateProbe for Runs {
    fn name(&self) -> &str {
        "fixed"
    }
    async fn observe(&self, _cx: &ProbeContext<'_>) -> Result<Vec<Reading>, ProbeFailure> {
        Ok(vec![Reading {
            instance: "eu".into(),
            result: Ok(ReportedCommit::parse(&self.0).unwrap()),
            elapsed: Duration::ZERO,
        }])
    }
}

#[derive(Default)]
struct Deploys(AtomicUsize);

#[async_trait]
impl Remediator for Deploys {
    fn name(&self) -> &str {
        "counted"
    }
    async fn remediate(&self, _req: &RemediationRequest) -> RemediationOutcome {
        self.0.fetch_add(1, Ordering::SeqCst);
        RemediationOutcome { ok: true, detail: "deployed".into(), exit_code: Some(0), output_tail: None }
    }
}

#[derive(Default)]
struct Raised(Mutex<Vec<AlarmKind>>);

#[async_trait]
impl AlarmSink for Raised {
    fn name(&self) -> &str {
        "recorder"
    }
    async fn notify(&self, n: &AlarmNotification) -> Result<(), SinkError> {
        if n.event == AlarmEvent::AlarmRaised {
            self.0.lock().unwrap().push(n.alarm);
        }
        Ok(())
    }
}

/// The statuses each pass reported.
#[derive(Default)]
struct Passes(Mutex<Vec<Vec<Status>>>);

impl Observer for Passes {
    fn pass(&self, _specs: &[EnvironmentSpec], out: &PassOutcome, _took: Duration) {
        let statuses =
            out.report.environments.iter().flat_map(|e| e.targets.iter().map(|t| t.status)).collect();
        self.0.lock().unwrap().push(statuses);
    }
}

/// Runs the loop over `source` until it has passed five times, the target reporting `runs`;
/// returns the statuses seen, the deploys made and the alarms raised.
async fn loop_over(source: Arc<dyn ExpectedState>, runs: &str) -> (Vec<Vec<Status>>, usize, Vec<AlarmKind>) {
    let dir = tempfile::tempdir().unwrap();
    let _lock = FileStore::lock(dir.path()).unwrap();
    let store = Arc::new(FileStore::open(dir.path()).unwrap());
    let deploys = Arc::new(Deploys::default());
    let raised = Arc::new(Raised::default());
    let passes = Arc::new(Passes::default());
    let policy = Policy { grace: Duration::ZERO, on_diverged: OnDiverged::Alarm, ..Policy::default() };
    let spec = EnvironmentSpec {
        name: EnvName::new("production").unwrap(),
        reference: REF.into(),
        targets: vec![TargetSpec::new("web", Arc::new(Runs(runs.to_owned())))],
        remediator: Some(deploys.clone()),
        policy: Arc::new(policy),
        controls: Default::default(),
        checks: Vec::new(),
    };
    let mut options = Options::default();
    (options.interval, options.ref_poll, options.converging_poll) =
        (Duration::from_millis(300), Duration::from_millis(100), Duration::from_millis(100));
    let controller = Controller::builder(source, store)
        .environment(spec)
        .sink(raised.clone())
        .observer(passes.clone())
        .options(options)
        .build();
    let seen = passes.clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    let five_passes = async move {
        while seen.0.lock().unwrap().len() < 5 {
            assert!(Instant::now() < deadline, "five passes within 30 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    controller.run(five_passes).await.unwrap();
    let statuses = passes.0.lock().unwrap().clone();
    let raised = raised.0.lock().unwrap().clone();
    (statuses, deploys.0.load(Ordering::SeqCst), raised)
}

fn assert_fails_closed(statuses: &[Vec<Status>], deploys: usize, raised: &[AlarmKind]) {
    assert!(statuses.len() >= 5, "{statuses:?}");
    assert!(statuses.iter().all(|s| s == &[Status::Drifted]), "drifted on every pass: {statuses:?}");
    assert_eq!(deploys, 0, "never a remediation");
    assert_eq!(raised, [AlarmKind::Diverged], "one diverged alarm");
}

#[tokio::test]
async fn a_local_repository_with_a_commit_missing_fails_closed() {
    let repo = Repo::new();
    let c = repo.commits(3, "release");
    repo.update_ref(REF, &c[2]);
    // The middle commit's object is lost: the history between what runs (c0) and what
    // should (c2) cannot be walked.
    let object = repo.path().join(".git/objects").join(&c[1][..2]).join(&c[1][2..]);
    std::fs::remove_file(&object).unwrap();
    let (statuses, deploys, raised) =
        loop_over(Arc::new(GitSource::local(repo.path()).unwrap()), &c[0]).await;
    assert_fails_closed(&statuses, deploys, &raised);
}

#[tokio::test]
async fn a_remote_read_without_a_mirror_fails_closed() {
    let repo = Repo::new();
    let c = repo.commits(3, "release");
    repo.update_ref(REF, &c[2]);
    // Refs only: without a mirror there is no history to relate the running commit to.
    let url = format!("file://{}", repo.path().display());
    let source = GitSource::from_remote(RemoteRepo::new(&url).unwrap());
    let (statuses, deploys, raised) = loop_over(Arc::new(source), &c[0]).await;
    assert_fails_closed(&statuses, deploys, &raised);
}
