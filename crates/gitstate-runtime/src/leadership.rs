//! Who may act: the [`Leadership`] trait. One process alone ([`Sole`], the file store's
//! lock makes it so) always may; replicas sharing a PostgreSQL store take turns
//! (`gitstate-postgres`'s leadership: an advisory lock, writes fenced in their own
//! transaction). The controller checks it before every pass that may act and before each
//! remediation starts, keeps it every [`Leadership::period`], and while it does not lead
//! reads what the leader wrote ([`crate::store::Store::reload`]).

use std::time::Duration;

use async_trait::async_trait;
use gitstate_core::EnvName;

/// The proof that this process may act, to be checked where it writes: a number that
/// grows each time the lead is taken (a write carrying an older one is refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fence(pub u64);

/// Answers "may I act for this environment now, and with which fencing token".
#[async_trait]
pub trait Leadership: Send + Sync + std::fmt::Debug {
    /// Whether this process may act for `env` now (remediate, notify, write its record),
    /// and the token its writes carry.
    fn may_act(&self, env: &EnvName) -> Option<Fence>;
    /// Whether this process leads any environment now (the `leader` metric, `/readyz`).
    fn leading(&self) -> bool;
    /// Keeps the lead, or tries to take it when free; returns [`Self::leading`] after.
    /// Called at the start of the loop and then every [`Self::period`]; never fails: a
    /// lost database is a lost lead, logged.
    async fn keep(&self) -> bool;
    /// How often [`Self::keep`] is called.
    fn period(&self) -> Duration;
    /// Whether this process probes `env` when it does not act for it: a standby of one
    /// leader does (it serves what it sees); a replica sharing environments by slots
    /// (SPEC §19) does not — their owner probes them, and every replica serves the
    /// owner's records from the store. Default: it does.
    fn observes(&self, _env: &EnvName) -> bool {
        true
    }
    /// A number that grows each time this process gains environments to act for (took
    /// the lead, or slots): the loop then passes them at once. Default: 0, never grows.
    fn generation(&self) -> u64 {
        0
    }
    /// Whether this process has the cluster's fleet-wide duties (SPEC §19: causes and
    /// `GitstateStale`, the notifier's). Default: while it leads.
    fn notifier(&self) -> bool {
        self.leading()
    }
    /// A full pass over what this process acts for completed at `at` (a sharded replica
    /// writes it down for its slots, for the notifier to read).
    fn full_pass(&self, at: jiff::Timestamp) {
        let _ = at;
    }
    /// When each of `envs` was last observed by whoever acts for it, where that is not
    /// this process (another replica's slots): `None` where this process observes it
    /// itself. Default: all `None`.
    async fn observed_elsewhere(&self, envs: &[EnvName]) -> Vec<Option<jiff::Timestamp>> {
        vec![None; envs.len()]
    }
    /// The slots this replica holds and how the cluster shares them (SPEC §19), for
    /// `/status` and `gitstate_shard_slots`; `None` where environments are not shared.
    fn shard(&self) -> Option<Shard> {
        None
    }
    /// This process stops: what it leads goes to the others now rather than when its
    /// lease lapses (called once the loop has drained). Default: nothing to give up.
    async fn resign(&self) {}
}

/// What a replica sharing environments by slots holds (SPEC §19), as `/status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Shard {
    /// This replica's name.
    pub replica: String,
    /// The slots it holds now (an environment's slot: FNV-1a of its name, modulo 1,024).
    pub slots: Vec<i32>,
    /// Whether it is the cluster's notifier (fleet-wide duties).
    pub notifier: bool,
    /// Slots held by each live replica, as the last round read them.
    pub replicas: Vec<(String, i64)>,
}

impl Shard {
    /// A replica's holding.
    pub fn new(replica: String, slots: Vec<i32>, notifier: bool, replicas: Vec<(String, i64)>) -> Self {
        Self { replica, slots, notifier, replicas }
    }
}

/// One process alone: it always leads (what makes it alone — the state directory's lock —
/// is held by whoever built it).
#[derive(Debug, Clone, Copy, Default)]
pub struct Sole;

#[async_trait]
impl Leadership for Sole {
    fn may_act(&self, _env: &EnvName) -> Option<Fence> {
        Some(Fence(0))
    }

    fn leading(&self) -> bool {
        true
    }

    async fn keep(&self) -> bool {
        true
    }

    /// Nothing to keep: an hour between calls that do nothing.
    fn period(&self) -> Duration {
        Duration::from_secs(3600)
    }
}
