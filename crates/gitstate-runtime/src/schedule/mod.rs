//! The timing of `watch`, independent of what a pass does: a full pass every `interval`
//! ± jitter, a ref poll every `ref_poll` (or at once on a file-system event), a pass of an
//! environment as soon as its ref moves, a pass when a decision's requeue time comes (and
//! when a remediation ends and its settle time has passed), at most one pass or
//! remediation in flight per environment, and a bounded drain on
//! shutdown. Nothing a driver does can stall the loop: a ref poll runs as a task of its
//! own (a hung one only delays the next poll), and a pass or remediation that panics is
//! caught, reported to the driver, and frees its environments. Entry: [`run`] over a
//! [`Driver`]; tested with tokio's paused clock.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use std::panic::AssertUnwindSafe;

use async_trait::async_trait;
use futures::FutureExt;
use gitstate_core::EnvName;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

mod requeue;
use requeue::Requeues;

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
    /// Runs the remediation the last pass of `env` decided; returns when to look at `env`
    /// again (once the remediation's settle time has passed: at once when it already has).
    async fn remediate(&self, env: EnvName) -> Option<Duration>;
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
    /// A generator started from `seed` (the caller's: time and pid in `watch`).
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
    /// A remediation, and when to look again.
    Remediation(EnvName, Option<Duration>),
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
                            d.pass_panicked(&ready, &gitstate_core::panic_message(panic.as_ref()));
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
                                match AssertUnwindSafe(d.remediate(e.clone())).catch_unwind().await {
                                    Ok(again) => Done::Remediation(e, again),
                                    Err(panic) => {
                                        let message = gitstate_core::panic_message(panic.as_ref());
                                        tracing::error!(environment = %e, panic = %message, "remediation task panicked");
                                        Done::Remediation(e, None)
                                    }
                                }
                            });
                        }
                        if full {
                            on_full_pass();
                        }
                    }
                    Ok(Done::Remediation(e, again)) => {
                        busy.remove(&e);
                        remediating.remove(&e);
                        // Its settle time over, the deploy is judged at once, not at the next pass.
                        if let Some(after) = again {
                            due.schedule(e, Instant::now() + after);
                        }
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

/// Waits up to `limit` for every task; false when some are still running.
async fn drain(tasks: &mut JoinSet<Done>, remediating: &mut BTreeSet<EnvName>, limit: Duration) -> bool {
    tokio::time::timeout(limit, async {
        while let Some(joined) = tasks.join_next().await {
            if let Ok(Done::Remediation(e, _)) = joined {
                remediating.remove(&e);
            }
        }
    })
    .await
    .is_ok()
}

#[cfg(test)]
mod tests;
