//! The timing of `watch`, independent of what a pass does: a full pass every `interval`
//! ± jitter, a ref poll every `ref_poll` (or at once on a file-system event), a pass of an
//! environment as soon as its ref moves, a pass when a decision's requeue time comes, at
//! most one pass or remediation in flight per environment, and a bounded drain on
//! shutdown. Nothing a driver does can stall the loop: a ref poll runs as a task of its
//! own (a hung one only delays the next poll), and a pass or remediation that panics is
//! caught, reported to the driver, and frees its environments. Entry: [`run`] over a
//! [`Driver`]; tested with tokio's paused clock.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use std::panic::AssertUnwindSafe;

use async_trait::async_trait;
use futures::FutureExt;
use gitstate_core::EnvName;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// What a pass asks of the loop afterwards.
#[derive(Debug, Default)]
pub struct PassDone {
    /// Environments to look at again after a delay (grace, settle, backoff ends).
    pub requeue: Vec<(EnvName, Duration)>,
    /// Remediations to run in the background, one per environment.
    pub remediations: Vec<EnvName>,
}

/// What the loop drives: the real one probes and deploys; tests count calls.
#[async_trait]
pub trait Driver: Send + Sync + 'static {
    /// Re-reads the expected refs; returns the environments whose commit changed (or that
    /// appeared) since the last poll.
    async fn poll(&self) -> Vec<EnvName>;
    /// Every environment currently configured.
    fn environments(&self) -> Vec<EnvName>;
    /// One pass over `envs`; `full` for the interval pass.
    async fn pass(&self, envs: Vec<EnvName>, full: bool) -> PassDone;
    /// Runs the remediation the last pass of `env` decided.
    async fn remediate(&self, env: EnvName);
    /// A pass over `envs` panicked with `message` (its environments are free again).
    fn pass_panicked(&self, envs: &[EnvName], message: &str);
    /// The drain limit passed with remediations still running: stop them now (their
    /// process groups get SIGTERM, then SIGKILL); each still reports how it ended.
    fn stop_remediations(&self);
    /// Shutdown took too long even after [`Driver::stop_remediations`]: `env`'s
    /// remediation was abandoned.
    async fn abandoned(&self, env: EnvName);
}

/// Loop settings.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Full pass period.
    pub interval: Duration,
    /// Fraction of `interval` to spread passes by, ±.
    pub jitter: f64,
    /// Ref poll period.
    pub ref_poll: Duration,
    /// How long shutdown waits for work in flight.
    pub drain: Duration,
    /// How long stopped remediations get to report how they ended after the drain.
    pub stop_grace: Duration,
}

/// A small deterministic generator for jitter (no global randomness in libraries; the
/// seed comes from the caller).
#[derive(Debug, Clone)]
pub struct Jitter(u64);

impl Jitter {
    /// Seeded.
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    /// `interval` ± `fraction`, uniformly.
    pub fn apply(&mut self, interval: Duration, fraction: f64) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let unit = (self.0 >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
        let factor = 1.0 + fraction * (2.0 * unit - 1.0);
        interval.mul_f64(factor.max(0.0))
    }
}

enum Done {
    /// A pass; `None` when it panicked.
    Pass(Vec<EnvName>, Option<PassDone>, bool),
    Remediation(EnvName),
}

/// Runs the loop until `shutdown` resolves; then drains for at most `timing.drain`.
/// `fs_events` wakes a ref poll at once. `on_full_pass` is called after every full pass.
pub async fn run<D: Driver>(
    driver: Arc<D>,
    timing: Timing,
    mut jitter: Jitter,
    mut fs_events: mpsc::Receiver<()>,
    shutdown: impl std::future::Future<Output = ()>,
    on_full_pass: impl Fn(),
) {
    let mut tasks: JoinSet<Done> = JoinSet::new();
    let mut busy: BTreeSet<EnvName> = BTreeSet::new();
    let mut wanted: BTreeSet<EnvName> = BTreeSet::new();
    let mut wanted_full = false;
    let mut due = Requeues::default();
    let mut next_full = Instant::now();
    let mut next_poll = Instant::now() + timing.ref_poll;
    let mut remediating: BTreeSet<EnvName> = BTreeSet::new();
    // At most one ref poll at a time, never awaited inline: aborted at shutdown.
    let mut polls: JoinSet<Vec<EnvName>> = JoinSet::new();
    // A file-system event that came while a poll was running asks for another at once.
    let mut poll_again = false;
    tokio::pin!(shutdown);

    loop {
        // Start what is wanted and not busy.
        if !wanted.is_empty() || wanted_full {
            let ready: Vec<EnvName> = wanted.iter().filter(|e| !busy.contains(*e)).cloned().collect();
            let full = wanted_full && !ready.is_empty();
            if !ready.is_empty() {
                for e in &ready {
                    wanted.remove(e);
                    busy.insert(e.clone());
                }
                wanted_full = false;
                let d = driver.clone();
                tasks.spawn(async move {
                    match AssertUnwindSafe(d.pass(ready.clone(), full)).catch_unwind().await {
                        Ok(done) => Done::Pass(ready, Some(done), full),
                        Err(panic) => {
                            d.pass_panicked(&ready, &gitstate_core::panic::message(panic.as_ref()));
                            Done::Pass(ready, None, full)
                        }
                    }
                });
            }
        }
        let next_due = due.next();
        let poll_at = polls.is_empty().then_some(next_poll);
        let wake = [Some(next_full), poll_at, next_due].into_iter().flatten().min().unwrap_or(next_full);
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                match joined {
                    Ok(Done::Pass(envs, done, full)) => {
                        for e in &envs {
                            busy.remove(e);
                        }
                        let Some(done) = done else { continue };
                        for (e, after) in done.requeue {
                            due.schedule(e, Instant::now() + after);
                        }
                        for e in done.remediations {
                            busy.insert(e.clone());
                            remediating.insert(e.clone());
                            let d = driver.clone();
                            tasks.spawn(async move {
                                if let Err(panic) = AssertUnwindSafe(d.remediate(e.clone())).catch_unwind().await {
                                    let message = gitstate_core::panic::message(panic.as_ref());
                                    tracing::error!(environment = %e, panic = %message, "remediation task panicked");
                                }
                                Done::Remediation(e)
                            });
                        }
                        if full {
                            on_full_pass();
                        }
                    }
                    Ok(Done::Remediation(e)) => {
                        busy.remove(&e);
                        remediating.remove(&e);
                    }
                    Err(e) => tracing::error!(error = %e, "a watch task failed"),
                }
            }
            Some(polled) = polls.join_next(), if !polls.is_empty() => {
                match polled {
                    Ok(changed) => wanted.extend(changed),
                    Err(e) => tracing::error!(error = %e, "ref poll failed"),
                }
                next_poll = if std::mem::take(&mut poll_again) { Instant::now() } else { Instant::now() + timing.ref_poll };
            }
            Some(()) = fs_events.recv() => {
                next_poll = Instant::now();
                poll_again = !polls.is_empty();
            }
            () = tokio::time::sleep_until(wake) => {
                let now = Instant::now();
                if now >= next_full {
                    wanted.extend(driver.environments());
                    wanted_full = true;
                    next_full = now + jitter.apply(timing.interval, timing.jitter);
                }
                if now >= next_poll && polls.is_empty() {
                    let d = driver.clone();
                    polls.spawn(async move { d.poll().await });
                }
                wanted.extend(due.take_due(now));
            }
        }
    }

    // Drain: no new work; let what runs finish, within the limit; then stop remediations
    // (they report how they ended) and give them `stop_grace` to do so.
    polls.abort_all();
    let mut drained = drain(&mut tasks, &mut remediating, timing.drain).await;
    if !drained && !remediating.is_empty() {
        tracing::warn!(count = remediating.len(), "shutdown: stopping remediations still running");
        driver.stop_remediations();
        drained = drain(&mut tasks, &mut remediating, timing.stop_grace).await;
    }
    if !drained {
        tasks.abort_all();
        for e in remediating {
            tracing::error!(environment = %e, "shutdown: remediation still running after the drain limit; killed");
            driver.abandoned(e).await;
        }
    }
}

/// When to look at each environment again: at most one time per environment, the earliest
/// asked for (as kube-runtime's scheduler keeps one entry per object), so an environment
/// whose every pass asks to be looked at in four hours has one timer, not one per pass.
#[derive(Default)]
struct Requeues {
    by_time: BTreeMap<Instant, BTreeSet<EnvName>>,
    by_env: std::collections::HashMap<EnvName, Instant>,
}

impl Requeues {
    fn schedule(&mut self, env: EnvName, at: Instant) {
        match self.by_env.get(&env) {
            Some(&known) if known <= at => return,
            Some(&known) => {
                if let Some(set) = self.by_time.get_mut(&known) {
                    set.remove(&env);
                    if set.is_empty() {
                        self.by_time.remove(&known);
                    }
                }
            }
            None => {}
        }
        self.by_time.entry(at).or_default().insert(env.clone());
        self.by_env.insert(env, at);
    }

    fn next(&self) -> Option<Instant> {
        self.by_time.keys().next().copied()
    }

    /// The environments due by `now`, no longer scheduled.
    fn take_due(&mut self, now: Instant) -> Vec<EnvName> {
        let mut out = Vec::new();
        while let Some(entry) = self.by_time.first_entry() {
            if *entry.key() > now {
                break;
            }
            out.extend(entry.remove());
        }
        for e in &out {
            self.by_env.remove(e);
        }
        out
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_env.len()
    }
}

/// Waits up to `limit` for every task; false when some are still running.
async fn drain(tasks: &mut JoinSet<Done>, remediating: &mut BTreeSet<EnvName>, limit: Duration) -> bool {
    tokio::time::timeout(limit, async {
        while let Some(joined) = tasks.join_next().await {
            if let Ok(Done::Remediation(e)) = joined {
                remediating.remove(&e);
            }
        }
    })
    .await
    .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Fake {
        log: Mutex<Vec<(u64, String)>>,
        start: Mutex<Option<Instant>>,
        moved: Mutex<Vec<EnvName>>,
        remediate_next: Mutex<Vec<EnvName>>,
        remediation_time: Duration,
        /// Every pass asks to look at each of its environments again after this long.
        requeue_every: Option<Duration>,
        /// Passes that panic, counted down.
        panics: Mutex<u32>,
        /// Polls that never return, counted down.
        hung_polls: Mutex<u32>,
        stopped: std::sync::atomic::AtomicBool,
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
            tokio::time::sleep(Duration::from_millis(100)).await;
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
        async fn remediate(&self, env: EnvName) {
            self.note(format!("remediate {env}"));
            let stopped = async {
                while !self.stopped.load(std::sync::atomic::Ordering::SeqCst) {
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
    fn requeues_deduplicate_and_keep_the_earliest() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut r = Requeues::default();
        for s in [50, 40, 60, 40] {
            r.schedule(n("a"), at(s));
        }
        r.schedule(n("b"), at(45));
        assert_eq!((r.len(), r.next()), (2, Some(at(40))));
        assert_eq!(r.take_due(at(44)), [n("a")]);
        assert_eq!(r.take_due(at(44)), Vec::<EnvName>::new());
        r.schedule(n("a"), at(100));
        assert_eq!(r.take_due(at(1000)), [n("b"), n("a")]);
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn jitter_stays_within_bounds_and_varies() {
        let mut j = Jitter::new(42);
        let got: Vec<Duration> = (0..1000).map(|_| j.apply(Duration::from_secs(60), 0.1)).collect();
        assert!(got.iter().all(|d| *d >= Duration::from_secs(54) && *d <= Duration::from_secs(66)));
        assert!(
            got.iter().any(|d| *d < Duration::from_secs(57))
                && got.iter().any(|d| *d > Duration::from_secs(63))
        );
        assert_eq!(Jitter::new(7).apply(Duration::from_secs(60), 0.0), Duration::from_secs(60));
    }
}
