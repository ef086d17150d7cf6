//! The [`Engine`] and what it is built from: an expected-state source, alarm sinks, a
//! journal, and its options (`with_…`). The pass itself is `pass.rs`.

use std::sync::Arc;

use crate::links::Links;
use crate::plugin::{AlarmSink, ExpectedState, Journal};
use crate::state::Outbox;

use super::timer::Timer;

/// How many of the commits at stake an instance names per side unless told otherwise.
pub const DEFAULT_MAX_COMMITS: usize = 10;

/// Drives passes. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    pub(super) source: Arc<dyn ExpectedState>,
    pub(super) sinks: Vec<Arc<dyn AlarmSink>>,
    pub(super) journal: Option<Arc<dyn Journal>>,
    pub(super) concurrency: usize,
    pub(super) defer_remediations: bool,
    /// The notifications kept for later passes, loaded from the journal on first use.
    pub(super) outbox: Arc<std::sync::Mutex<Option<Outbox>>>,
    /// The commits at stake named per instance and side (SPEC §11).
    pub(super) max_commits: usize,
    /// Where commits and comparisons can be read.
    pub(super) links: Links,
    /// The clock that bounds each probe.
    pub(super) timer: Timer,
    /// How long a cause may form before its first notification (SPEC §17).
    pub(super) group_wait: std::time::Duration,
    /// What the rest of the fleet's last passes saw, for causes (SPEC §17).
    pub(super) fleet: Option<Arc<dyn Fleet>>,
}

/// What the rest of the fleet's last passes saw, for working out an alarm's cause when it
/// is raised (SPEC §17). The runtime's view is one; an engine without one sees only the
/// environments of the pass.
pub trait Fleet: Send + Sync {
    /// The symptoms of every environment's last pass (those of the pass at hand win).
    fn symptoms(&self) -> Vec<crate::cause::Symptoms>;

    /// Every environment and its policy in force: the members of a cause that holds them
    /// all (the source, which one pass of a few environments finds unreadable for every
    /// one). The default knows none: only the pass's environments join.
    fn environments(&self) -> Vec<(crate::name::EnvName, crate::Policy)> {
        Vec::new()
    }
}

impl Engine {
    /// An engine reading expected commits from `source`, probing 64 targets at a time.
    pub fn new(source: Arc<dyn ExpectedState>) -> Self {
        Self {
            source,
            sinks: Vec::new(),
            journal: None,
            concurrency: 64,
            defer_remediations: false,
            outbox: Arc::default(),
            max_commits: DEFAULT_MAX_COMMITS,
            links: Links::default(),
            timer: Timer::default(),
            group_wait: std::time::Duration::ZERO,
            fleet: None,
        }
    }

    /// Sets how long a shared cause may form before its first notification (`[alerts]
    /// group_wait`; default 0: at the pass that raises it). Grouping sinks get the
    /// members' raises after this wait, as one `cause_opened` when two environments or
    /// more share the cause; `cause_changed` at most this often.
    pub fn with_group_wait(mut self, wait: std::time::Duration) -> Self {
        self.group_wait = wait;
        self
    }

    /// Sets what the rest of the fleet saw, for alarm causes (SPEC §17).
    pub fn with_fleet(mut self, fleet: Arc<dyn Fleet>) -> Self {
        self.fleet = Some(fleet);
        self
    }

    /// The causes shared by alarms of several environments, as this engine last knew
    /// them (empty before its first delivery): for `status`'s `inhibited_by` and views.
    pub fn causes(&self) -> Vec<crate::cause::CauseRecord> {
        let guard = self.outbox.lock().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().map(|o| o.causes.values().cloned().collect()).unwrap_or_default()
    }

    /// Sets how many of the commits at stake each instance names per side (SPEC §11,
    /// `[output] max_commits`; default 10, 0 names none).
    pub fn with_max_commits(mut self, n: usize) -> Self {
        self.max_commits = n;
        self
    }

    /// Sets where commits and comparisons can be read (`compare_url` of each instance that
    /// differs).
    pub fn with_links(mut self, links: Links) -> Self {
        self.links = links;
        self
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

    /// Forgets the notifications kept in memory: the next pass reads them from the journal
    /// again. For a host whose journal another process wrote meanwhile (a replica that
    /// takes over from another leader).
    pub fn reload_outbox(&self) {
        *self.outbox.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Bounds probes with `timer` instead of `futures-timer`.
    pub fn with_timer(mut self, timer: Timer) -> Self {
        self.timer = timer;
        self
    }

    /// Sets the number of probes in flight (at least 1).
    pub fn with_concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Hands remediations back in [`PassOutcome::deferred`](crate::PassOutcome::deferred) instead of awaiting them in the
    /// pass, so that a long deploy of one environment never delays the probes of others
    /// (the `watch` loop runs each with [`Engine::remediate`] in its own task). The attempt
    /// is counted and persisted before the pass returns, as for inline remediations.
    pub fn with_deferred_remediations(mut self) -> Self {
        self.defer_remediations = true;
        self
    }
}
