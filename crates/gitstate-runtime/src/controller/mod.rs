//! [`Controller`]: the closed loop of SPEC §7, built from parts a deploy tool already has —
//! an expected-state source, environments (each with its probes, remediator and policy),
//! alarm sinks, a [`Store`] and, for replicas, a [`Leadership`] — and run until a shutdown
//! future completes ([`Controller::run`]), or for one pass ([`Controller::run_once`],
//! what `gitstate reconcile` does) with the same code.
//!
//! The timing lives in [`crate::schedule`] (a full pass every `interval` ± jitter, ref
//! polls, requeues, the converging re-probe, at most one pass or remediation in flight per
//! environment, a bounded drain); what a pass does lives in `controller/driver.rs` (read
//! the refs, apply operators' controls and freeze windows, probe and decide through
//! core's [`Engine`], persist, hand remediations to tasks of their own, retire
//! environments gone from the list). Views read [`View`]; an external trigger (a push
//! webhook, a file-system watcher) uses [`Trigger`].

mod driver;
mod refs;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use gitstate_core::{AlarmSink, Engine, ExpectedState, Links, PassMode, PassOutcome, Timer};
use tokio::sync::mpsc;

use crate::controls::Windows;
use crate::environments::{Environment, Environments};
use crate::leadership::{Leadership, Sole};
use crate::schedule::{self, Jitter, Timing};
use crate::store::{Store, StoreError};
use crate::view::{Observer, Unobserved, View};
use driver::Loop;
pub use driver::requeues;

/// How the loop runs. The defaults are the CLI's (`[watch]`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// A full pass every `interval` (default 60 s) …
    pub interval: Duration,
    /// … ± this fraction of it (default 0.1).
    pub jitter: f64,
    /// How often the refs are read (default 1 s); a moved ref starts a pass of its
    /// environments at once.
    pub ref_poll: Duration,
    /// How often an environment that is not in sync (converging, remediating, backing
    /// off, observing) is probed again (default 5 s).
    pub converging_poll: Duration,
    /// Probes in flight at most (default 64).
    pub concurrency: usize,
    /// Commits named per instance and side in reports (default 10).
    pub max_commits: usize,
    /// Where commits and comparisons can be read, for reports and alarms.
    pub links: Links,
    /// How long shutdown waits for passes and remediations in flight (default 30 s).
    pub drain: Duration,
    /// After the drain, how long stopped remediations get to report how they ended
    /// (default 15 s: a command's SIGTERM → SIGKILL grace and some).
    pub stop_grace: Duration,
    /// The jitter generator's seed (default: the clock and the process id).
    pub seed: Option<u64>,
    /// How long a cause shared by several environments may form before its first
    /// notification (SPEC §17, `[alerts] group_wait`; default 0).
    pub group_wait: Duration,
    /// How soon a standby or another replica takes over (`[state] failover`; default 0,
    /// one process): an environment not observed within 2 × `interval` + `failover` is
    /// stale (SPEC §19, `GitstateStale`).
    pub failover: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(60),
            jitter: 0.1,
            ref_poll: Duration::from_secs(1),
            converging_poll: Duration::from_secs(5),
            concurrency: 64,
            max_commits: gitstate_core::DEFAULT_MAX_COMMITS,
            links: Links::default(),
            drain: Duration::from_secs(30),
            stop_grace: Duration::from_secs(15),
            seed: None,
            group_wait: Duration::ZERO,
            failover: Duration::ZERO,
        }
    }
}

/// What time the loop's decisions are made at (SPEC §7, 9: time is an input).
#[derive(Clone)]
pub(crate) struct Clock(Arc<dyn Fn() -> jiff::Timestamp + Send + Sync>);

impl Clock {
    pub(crate) fn now(&self) -> jiff::Timestamp {
        (self.0)()
    }
}

/// Builds a [`Controller`]: [`Controller::builder`].
pub struct Builder {
    source: Arc<dyn ExpectedState>,
    store: Arc<dyn Store>,
    environments: Vec<Environment>,
    discovery: Option<Arc<dyn Environments>>,
    sinks: Vec<Arc<dyn AlarmSink>>,
    leadership: Arc<dyn Leadership>,
    observer: Arc<dyn Observer>,
    stop: tokio_util::sync::CancellationToken,
    options: Options,
    clock: Clock,
    trust: Option<crate::trust::TrustPolicy>,
}

impl Builder {
    /// Deploy only commits signed by allowed keys (SPEC §18, `[source.trust]`): each move
    /// is judged before its environment is passed.
    pub fn trust(mut self, policy: crate::trust::TrustPolicy) -> Self {
        self.trust = Some(policy);
        self
    }

    /// The environments to work on (replacing any given before).
    pub fn environments(mut self, environments: impl IntoIterator<Item = impl Into<Environment>>) -> Self {
        self.environments = environments.into_iter().map(Into::into).collect();
        self
    }

    /// One more environment.
    pub fn environment(mut self, environment: impl Into<Environment>) -> Self {
        self.environments.push(environment.into());
        self
    }

    /// Environments that change while the loop runs: refreshed before every ref poll
    /// (the ones given by [`Self::environments`] are the first set).
    pub fn discovery(mut self, discovery: Arc<dyn Environments>) -> Self {
        self.discovery = Some(discovery);
        self
    }

    /// An alarm sink (Alertmanager, a webhook, your own).
    pub fn sink(mut self, sink: Arc<dyn AlarmSink>) -> Self {
        self.sinks.push(sink);
        self
    }

    /// Who may act (default [`Sole`]: this process alone).
    pub fn leadership(mut self, leadership: Arc<dyn Leadership>) -> Self {
        self.leadership = leadership;
        self
    }

    /// Told what the loop does (metrics).
    pub fn observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = observer;
        self
    }

    /// The token the remediators were built with: cancelled when shutdown gives up waiting
    /// for them, so that command remediators stop their process groups.
    pub fn stop_token(mut self, stop: tokio_util::sync::CancellationToken) -> Self {
        self.stop = stop;
        self
    }

    /// How the loop runs.
    pub fn options(mut self, options: Options) -> Self {
        self.options = options;
        self
    }

    /// The clock the loop decides by (default the system's, [`jiff::Timestamp::now`]):
    /// grace, settle, backoff, renotify and convergence lags are measured on it, and
    /// state, events and reports are stamped with it. The loop's timing (intervals,
    /// polls, requeues) runs on tokio's clock, so a simulation under tokio's paused clock
    /// passes one that follows it, e.g. with `start = tokio::time::Instant::now()`:
    /// `move || base + start.elapsed()`.
    pub fn clock(mut self, clock: impl Fn() -> jiff::Timestamp + Send + Sync + 'static) -> Self {
        self.clock = Clock(Arc::new(clock));
        self
    }

    /// The controller. Builds nothing that runs yet: [`Controller::run`] starts it.
    pub fn build(self) -> Controller {
        let o = &self.options;
        let timer = Timer::new(|d| Box::pin(tokio::time::sleep(d)));
        let view = Arc::new(View::new(self.store.clone(), self.leadership.clone()));
        let engine = |acts: bool| {
            let mut e = Engine::new(self.source.clone())
                .with_timer(timer.clone())
                .with_concurrency(o.concurrency)
                .with_max_commits(o.max_commits)
                .with_links(o.links.clone());
            if acts {
                e = e.with_journal(self.store.clone()).with_group_wait(o.group_wait).with_fleet(view.clone());
                for s in &self.sinks {
                    e = e.with_sink(s.clone());
                }
            }
            e
        };
        let windows: Windows = self
            .environments
            .iter()
            .filter(|e| !e.windows.is_empty())
            .map(|e| (e.spec.name.clone(), e.windows.clone()))
            .collect();
        view.set_windows(Arc::new(windows));
        let (poke, pokes) = mpsc::channel(1);
        let trigger = Trigger { pushed: Arc::default(), poke };
        let driver = Loop::new(driver::Parts {
            engine: engine(true),
            once_engine: engine(true),
            observer_engine: engine(false),
            source: self.source,
            store: self.store,
            leadership: self.leadership,
            observer: self.observer,
            view: view.clone(),
            discovery: self.discovery,
            environments: self.environments,
            stop: self.stop,
            converging_poll: o.converging_poll,
            pushed: trigger.pushed.clone(),
            clock: self.clock.clone(),
            trust: self.trust,
        });
        Controller {
            driver: Arc::new(driver),
            view,
            trigger,
            pokes: Mutex::new(Some(pokes)),
            options: self.options,
            clock: self.clock,
        }
    }
}

/// Asks the loop to read the refs now: what a push webhook (with the refs it names) or a
/// file-system watcher of a local repository calls. Cheap to clone.
#[derive(Clone)]
pub struct Trigger {
    pushed: Arc<Mutex<Vec<Option<String>>>>,
    poke: mpsc::Sender<()>,
}

impl Trigger {
    /// A push to `reference` (every ref when `None`): the ref poll that starts at once
    /// reads only the environments on the pushed refs.
    pub fn pushed(&self, reference: Option<String>) {
        self.pushed.lock().unwrap_or_else(|p| p.into_inner()).push(reference);
        self.poke();
    }

    /// Reads every ref now (a full channel means a poll is already asked for).
    pub fn poke(&self) {
        let _ = self.poke.try_send(());
    }
}

/// What one pass ([`Controller::run_once`]) did.
#[derive(Debug)]
#[non_exhaustive]
pub struct OnePass {
    /// The pass: report, decisions, actions.
    pub outcome: PassOutcome,
    /// Environments the store knew that are no longer listed, retired (when pruning).
    pub removed: Vec<gitstate_core::EnvName>,
    /// Persisting failed (the pass's, the removal's or the final flush's error).
    pub store_error: Option<String>,
}

/// The closed loop: see the module docs. Build with [`Controller::builder`].
pub struct Controller {
    driver: Arc<Loop>,
    view: Arc<View>,
    trigger: Trigger,
    pokes: Mutex<Option<mpsc::Receiver<()>>>,
    options: Options,
    clock: Clock,
}

impl Controller {
    /// A controller reading expected commits from `source` and remembering in `store`.
    pub fn builder(source: Arc<dyn ExpectedState>, store: Arc<dyn Store>) -> Builder {
        Builder {
            source,
            store,
            environments: Vec::new(),
            discovery: None,
            sinks: Vec::new(),
            leadership: Arc::new(Sole),
            observer: Arc::new(Unobserved),
            stop: tokio_util::sync::CancellationToken::new(),
            options: Options::default(),
            clock: Clock(Arc::new(jiff::Timestamp::now)),
            trust: None,
        }
    }

    /// What the loop shows: reports, records, windows, changes.
    pub fn view(&self) -> Arc<View> {
        self.view.clone()
    }

    /// Carries out operators' requests (suspend, roll back, veto…) against this loop's
    /// store and source, recorded with who asked (SPEC §20).
    pub fn operator(&self) -> crate::operate::Operator {
        crate::operate::Operator {
            store: self.driver.store.clone(),
            source: self.driver.source.clone(),
            view: self.view.clone(),
            trust: self.driver.trust.clone(),
            trigger: self.trigger.clone(),
        }
    }

    /// A handle that asks for a ref poll now.
    pub fn trigger(&self) -> Trigger {
        self.trigger.clone()
    }

    /// Runs the loop until `shutdown` completes; then stops scheduling, lets work in
    /// flight finish (at most [`Options::drain`], then stops remediations and records
    /// them), and writes what the store holds back. Runs once per controller: a second
    /// call returns at once.
    pub async fn run(&self, shutdown: impl std::future::Future<Output = ()>) -> Result<(), StoreError> {
        let Some(pokes) = self.pokes.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return Ok(());
        };
        self.driver.start().await;
        let keeper = tokio::spawn(driver::keep_leadership(self.driver.clone()));
        let stale_after = self.options.interval.saturating_mul(2).saturating_add(self.options.failover);
        let watchdog = tokio::spawn(driver::watch_staleness(self.driver.clone(), stale_after));
        let o = &self.options;
        let timing = Timing {
            interval: o.interval,
            jitter: o.jitter,
            ref_poll: o.ref_poll,
            drain: o.drain,
            stop_grace: o.stop_grace,
        };
        let seed = o
            .seed
            .unwrap_or_else(|| jiff::Timestamp::now().as_nanosecond() as u64 ^ u64::from(std::process::id()));
        let observer = self.driver.observer();
        let clock = self.clock.clone();
        let leadership = self.driver.leadership();
        schedule::run(self.driver.clone(), timing, Jitter::new(seed), pokes, shutdown, move || {
            let at = clock.now();
            leadership.full_pass(at);
            observer.full_pass(at)
        })
        .await;
        keeper.abort();
        watchdog.abort();
        let flushed = self.driver.store().flush().await;
        // What this process led is left to the others at once, not when it lapses.
        self.driver.resign().await;
        flushed
    }

    /// One pass over every environment, with the same code as the loop's passes. With
    /// [`PassMode::Reconcile`] (`gitstate reconcile`): operators' controls and freeze
    /// windows applied, decisions persisted before any remediation starts, remediations
    /// run to their end, then — when `prune` — environments the store knows but the list
    /// no longer has are retired, and the store flushed; in a dry run nothing is acted on
    /// or written. With [`PassMode::Check`]: probed and reported only. The reports go to
    /// the [`View`] as a loop pass's do. Fails when what operators said cannot be read (a
    /// corrupt overrides file).
    pub async fn run_once(&self, mode: PassMode, prune: bool) -> Result<OnePass, StoreError> {
        self.driver.once(mode, prune).await
    }
}
