//! The loop's timing under tokio's paused clock, with a driver that only counts.

use super::*;
use std::sync::Mutex;

#[derive(Default)]
struct Fake {
    log: Mutex<Vec<(u64, String)>>,
    start: Mutex<Option<Instant>>,
    moved: Mutex<Vec<EnvName>>,
    remediate_next: Mutex<Vec<EnvName>>,
    remediation_time: Duration,
    /// What each remediation answers: when to look at its environment again.
    look_again: Option<Duration>,
    /// Every pass asks to look at each of its environments again after this long.
    requeue_every: Option<Duration>,
    /// Passes that panic, counted down.
    panics: Mutex<u32>,
    /// Polls that never return, counted down.
    hung_polls: Mutex<u32>,
    stopped: std::sync::atomic::AtomicBool,
    /// Remediations that go on even after being stopped.
    ignores_stop: bool,
    /// How long a pass takes (at least 100 ms).
    pass_time: Duration,
}

impl Fake {
    fn t(&self) -> u64 {
        let start = *self.start.lock().unwrap().get_or_insert_with(Instant::now);
        (Instant::now() - start).as_millis() as u64
    }
    fn note(&self, s: String) {
        let t = self.t();
        self.log.lock().unwrap().push((t, s));
    }
}

fn n(s: &str) -> EnvName {
    EnvName::new(s).unwrap()
}

#[async_trait]
impl Driver for Fake {
    async fn poll(&self) -> Vec<EnvName> {
        let hang = {
            let mut h = self.hung_polls.lock().unwrap();
            let hang = *h > 0;
            *h = h.saturating_sub(1);
            hang
        };
        if hang {
            self.note("poll hangs".into());
            std::future::pending::<()>().await;
        }
        std::mem::take(&mut *self.moved.lock().unwrap())
    }
    fn environments(&self) -> Vec<EnvName> {
        vec![n("a"), n("b")]
    }
    async fn pass(&self, envs: Vec<EnvName>, full: bool) -> PassDone {
        let names: Vec<&str> = envs.iter().map(EnvName::as_str).collect();
        self.note(format!("pass {}{}", names.join(","), if full { " full" } else { "" }));
        tokio::time::sleep(self.pass_time.max(Duration::from_millis(100))).await;
        let panic = {
            let mut p = self.panics.lock().unwrap();
            let panic = *p > 0;
            *p = p.saturating_sub(1);
            panic
        };
        if panic {
            panic!("a bug in a pass");
        }
        let rem = std::mem::take(&mut *self.remediate_next.lock().unwrap());
        let mut requeue: Vec<(EnvName, Duration)> =
            rem.iter().map(|e| (e.clone(), Duration::from_secs(5))).collect();
        if let Some(after) = self.requeue_every {
            requeue.extend(envs.iter().map(|e| (e.clone(), after)));
        }
        PassDone { requeue, remediations: rem }
    }
    async fn remediate(&self, env: EnvName) -> Option<Duration> {
        self.note(format!("remediate {env}"));
        let stopped = async {
            while self.ignores_stop || !self.stopped.load(std::sync::atomic::Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::select! {
            () = tokio::time::sleep(self.remediation_time) => self.note(format!("remediated {env}")),
            () = stopped => {
                // As a process group does: it takes a moment to go after SIGTERM.
                tokio::time::sleep(Duration::from_secs(2)).await;
                self.note(format!("stopped {env}"));
            }
        }
        self.look_again
    }
    fn pass_panicked(&self, envs: &[EnvName], message: &str) {
        let names: Vec<&str> = envs.iter().map(EnvName::as_str).collect();
        self.note(format!("panicked {}: {message}", names.join(",")));
    }
    fn stop_remediations(&self) {
        self.note("stop remediations".into());
        self.stopped.store(true, std::sync::atomic::Ordering::SeqCst);
    }
    async fn abandoned(&self, env: EnvName) {
        self.note(format!("abandoned {env}"));
    }
}

fn timing() -> Timing {
    Timing {
        interval: Duration::from_secs(60),
        jitter: 0.0,
        ref_poll: Duration::from_secs(1),
        drain: Duration::from_secs(30),
        stop_grace: Duration::from_secs(15),
    }
}

#[tokio::test(start_paused = true)]
async fn full_passes_on_the_interval_and_a_moved_ref_at_once() {
    let fake = Arc::new(Fake { remediation_time: Duration::from_secs(1), ..Fake::default() });
    fake.t();
    let (_tx, rx) = mpsc::channel(1);
    let f = fake.clone();
    let stop = async move {
        tokio::time::sleep(Duration::from_millis(30_500)).await;
        f.moved.lock().unwrap().push(n("b"));
        tokio::time::sleep(Duration::from_secs(100)).await;
    };
    run(fake.clone(), timing(), Jitter::new(1), rx, stop, || {}).await;
    let log = fake.log.lock().unwrap().clone();
    assert_eq!(log[0], (0, "pass a,b full".into()));
    // The ref moved at 30.5 s is seen by the next poll (31 s) and passed at once.
    assert!(log.contains(&(31_000, "pass b".into())), "{log:?}");
    assert!(log.contains(&(60_000, "pass a,b full".into())), "{log:?}");
    assert!(log.contains(&(120_000, "pass a,b full".into())), "{log:?}");
    assert_eq!(log.iter().filter(|(_, s)| s.ends_with("full")).count(), 3);
}

#[tokio::test(start_paused = true)]
async fn file_system_events_poll_at_once() {
    let fake = Arc::new(Fake::default());
    fake.t();
    let (tx, rx) = mpsc::channel(1);
    let f = fake.clone();
    let stop = async move {
        tokio::time::sleep(Duration::from_millis(10_250)).await;
        f.moved.lock().unwrap().push(n("a"));
        tx.send(()).await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
    };
    run(fake.clone(), timing(), Jitter::new(1), rx, stop, || {}).await;
    let log = fake.log.lock().unwrap().clone();
    assert!(log.contains(&(10_250, "pass a".into())), "no wait for the next poll tick: {log:?}");
}

#[tokio::test(start_paused = true)]
async fn remediations_run_in_the_background_one_per_environment_and_requeue() {
    let fake = Arc::new(Fake { remediation_time: Duration::from_secs(20), ..Fake::default() });
    fake.t();
    fake.remediate_next.lock().unwrap().push(n("a"));
    let (_tx, rx) = mpsc::channel(1);
    let f = fake.clone();
    let stop = async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        // b's ref moves while a deploys: b is passed at once, a waits for its deploy.
        f.moved.lock().unwrap().extend([n("a"), n("b")]);
        tokio::time::sleep(Duration::from_secs(40)).await;
    };
    run(fake.clone(), timing(), Jitter::new(1), rx, stop, || {}).await;
    let log = fake.log.lock().unwrap().clone();
    assert!(log.contains(&(100, "remediate a".into())), "{log:?}");
    assert!(log.contains(&(2_000, "pass b".into())), "{log:?}");
    assert!(log.contains(&(20_100, "remediated a".into())), "{log:?}");
    // a's pass waited for the remediation, then ran (its requeue at 5.1 s was held too).
    assert!(log.contains(&(20_100, "pass a".into())), "{log:?}");
    assert!(!log.iter().any(|(t, s)| s == "pass a" && *t < 20_100), "{log:?}");
}

#[tokio::test(start_paused = true)]
async fn shutdown_drains_then_stops_remediations() {
    let fake = Arc::new(Fake { remediation_time: Duration::from_secs(3600), ..Fake::default() });
    fake.t();
    fake.remediate_next.lock().unwrap().push(n("b"));
    let (_tx, rx) = mpsc::channel(1);
    let stop = tokio::time::sleep(Duration::from_secs(1));
    run(fake.clone(), timing(), Jitter::new(1), rx, stop, || {}).await;
    let log = fake.log.lock().unwrap().clone();
    assert!(log.contains(&(31_000, "stop remediations".to_owned())), "{log:?}");
    // The remediation reported how it ended; nothing had to be abandoned.
    assert!(log.iter().any(|(t, s)| s == "stopped b" && (33_000..33_100).contains(t)), "{log:?}");
    assert!(!log.iter().any(|(_, s)| s.starts_with("abandoned")), "{log:?}");
}

#[tokio::test(start_paused = true)]
async fn a_pass_that_panics_frees_its_environments_and_the_loop_goes_on() {
    let fake = Arc::new(Fake { panics: Mutex::new(1), ..Fake::default() });
    fake.t();
    let (_tx, rx) = mpsc::channel(1);
    let f = fake.clone();
    let stop = async move {
        tokio::time::sleep(Duration::from_millis(5_500)).await;
        f.moved.lock().unwrap().push(n("a"));
        tokio::time::sleep(Duration::from_secs(60)).await;
    };
    let full_passes = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counted = full_passes.clone();
    run(fake.clone(), timing(), Jitter::new(1), rx, stop, move || {
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    })
    .await;
    let log = fake.log.lock().unwrap().clone();
    assert_eq!(log[1], (100, "panicked a,b: a bug in a pass".into()), "{log:?}");
    // a is not left busy: its moved ref is passed at once, and the next full pass runs.
    assert!(log.contains(&(6_000, "pass a".into())), "{log:?}");
    assert!(log.contains(&(60_000, "pass a,b full".into())), "{log:?}");
    // The panicked full pass did not count as completed (liveness), the next one did.
    assert_eq!(full_passes.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_hung_ref_poll_delays_nothing_else_and_shutdown_still_ends() {
    let fake = Arc::new(Fake { hung_polls: Mutex::new(u32::MAX), ..Fake::default() });
    fake.t();
    let (_tx, rx) = mpsc::channel(1);
    let stop = tokio::time::sleep(Duration::from_secs(200));
    run(fake.clone(), timing(), Jitter::new(1), rx, stop, || {}).await;
    let log = fake.log.lock().unwrap().clone();
    // One poll, hung for good; full passes keep their interval; run() returned.
    assert_eq!(log.iter().filter(|(_, s)| s == "poll hangs").count(), 1, "{log:?}");
    for t in [0, 60_000, 120_000, 180_000] {
        assert!(log.contains(&(t, "pass a,b full".into())), "{log:?}");
    }
}

/// Environments in alarm ask every pass to be looked at again much later (renotify):
/// one timer each, not one per pass, so passes do not multiply.
#[tokio::test(start_paused = true)]
async fn requeues_keep_one_timer_per_environment() {
    let fake = Arc::new(Fake { requeue_every: Some(Duration::from_secs(300)), ..Fake::default() });
    fake.t();
    let (_tx, rx) = mpsc::channel(1);
    let stop = tokio::time::sleep(Duration::from_secs(610));
    run(fake.clone(), timing(), Jitter::new(1), rx, stop, || {}).await;
    let log = fake.log.lock().unwrap().clone();
    let requeued: Vec<&(u64, String)> = log.iter().filter(|(_, s)| s == "pass a,b").collect();
    // Full passes at 0, 60, … each ask for +300 s; the earliest timer wins: 300, 600.
    assert_eq!(requeued.len(), 2, "{log:?}");
    assert_eq!(requeued[0].0, 300_100, "{log:?}");
}

#[test]
fn jitter_stays_within_bounds_and_varies() {
    let mut j = Jitter::new(42);
    let got: Vec<Duration> = (0..1000).map(|_| j.apply(Duration::from_secs(60), 0.1)).collect();
    assert!(got.iter().all(|d| *d >= Duration::from_secs(54) && *d <= Duration::from_secs(66)));
    assert!(
        got.iter().any(|d| *d < Duration::from_secs(57)) && got.iter().any(|d| *d > Duration::from_secs(63))
    );
    assert_eq!(Jitter::new(7).apply(Duration::from_secs(60), 0.0), Duration::from_secs(60));
}

/// SPEC §7 watch: when a remediation ends and its settle time has passed, the environment
/// is looked at again at once, not at its next requeue or full pass.
#[tokio::test(start_paused = true)]
async fn a_finished_remediation_past_its_settle_time_is_judged_at_once() {
    let fake = Arc::new(Fake {
        remediation_time: Duration::from_secs(1),
        look_again: Some(Duration::ZERO),
        ..Fake::default()
    });
    fake.t();
    fake.remediate_next.lock().unwrap().push(n("a"));
    let (_tx, rx) = mpsc::channel(1);
    run(fake.clone(), timing(), Jitter::new(1), rx, tokio::time::sleep(Duration::from_secs(4)), || {}).await;
    let log = fake.log.lock().unwrap().clone();
    // The pass (100 ms) decides it, the remediation runs 1 s, and the pass follows it.
    assert!(log.contains(&(1_100, "remediated a".into())), "{log:?}");
    assert!(log.contains(&(1_100, "pass a".into())), "{log:?}");
}

/// A remediation that goes on after being stopped is abandoned once the stop grace is
/// over (and recorded as such), and the loop ends.
#[tokio::test(start_paused = true)]
async fn a_remediation_that_ignores_its_stop_is_abandoned_after_the_grace() {
    let fake =
        Arc::new(Fake { remediation_time: Duration::from_secs(3600), ignores_stop: true, ..Fake::default() });
    fake.t();
    fake.remediate_next.lock().unwrap().push(n("b"));
    let (_tx, rx) = mpsc::channel(1);
    let stop = tokio::time::sleep(Duration::from_secs(1));
    run(fake.clone(), timing(), Jitter::new(1), rx, stop, || {}).await;
    let log = fake.log.lock().unwrap().clone();
    assert!(log.contains(&(31_000, "stop remediations".to_owned())), "{log:?}");
    assert!(log.contains(&(46_000, "abandoned b".to_owned())), "{log:?}");
    assert_eq!(fake.t(), 46_000, "the loop ends with the abandonment");
}

/// A pass still running when the drain limit passes, with no remediation running: the
/// loop ends then; there are no remediations to stop and no stop grace to wait for.
#[tokio::test(start_paused = true)]
async fn a_hung_pass_at_shutdown_ends_at_the_drain_limit_without_stopping_remediations() {
    let fake = Arc::new(Fake { pass_time: Duration::from_secs(3600), ..Fake::default() });
    fake.t();
    let (_tx, rx) = mpsc::channel(1);
    let stop = tokio::time::sleep(Duration::from_secs(1));
    run(fake.clone(), timing(), Jitter::new(1), rx, stop, || {}).await;
    let log = fake.log.lock().unwrap().clone();
    assert!(!log.iter().any(|(_, s)| s == "stop remediations"), "{log:?}");
    assert_eq!(fake.t(), 31_000, "the drain limit, not the stop grace after it");
}
