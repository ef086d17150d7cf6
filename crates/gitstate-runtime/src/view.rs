//! What the loop shows, read-only: [`View`] (the latest report of each environment, its
//! records in the store, the freeze windows, a version that grows on every change) and
//! [`Observer`] (called as passes, remediations and leadership changes happen: the CLI's
//! metrics are one). Dashboards, `/status` and `/metrics` read these; none decides.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gitstate_core::{CauseRecord, EnvName, EnvironmentReport, EnvironmentSpec, PassOutcome, Symptoms};
use jiff::Timestamp;
use tokio::sync::watch;

use crate::controls::Windows;
use crate::leadership::Leadership;
use crate::status::{self, StatusReport};
use crate::store::Store;

/// Told what the loop does, as it does it. Every method has a default that ignores it.
/// Called from the loop's own task: keep each call short (count, set a gauge).
pub trait Observer: Send + Sync {
    /// A pass over `specs` ended with `outcome` after `took`.
    fn pass(&self, specs: &[EnvironmentSpec], outcome: &PassOutcome, took: Duration) {
        let _ = (specs, outcome, took);
    }
    /// A full pass (every environment, every `interval`) completed at `at`.
    fn full_pass(&self, at: Timestamp) {
        let _ = at;
    }
    /// A pass panicked (caught; the next one runs as scheduled).
    fn pass_panicked(&self) {}
    /// A remediation of `env` ended, triggered or not.
    fn remediation(&self, env: &EnvName, ok: bool) {
        let _ = (env, ok);
    }
    /// `env` is gone from the environments: its series, if any, can go too.
    fn removed(&self, env: &EnvName) {
        let _ = env;
    }
    /// Whether this process leads, after each leadership check and each pass.
    fn leader(&self, leading: bool) {
        let _ = leading;
    }
    /// What this replica holds of a sharded cluster, after each round of leases.
    fn shard(&self, shard: &crate::leadership::Shard) {
        let _ = shard;
    }
    /// A ref poll (every `ref_poll`, a file-system event or a push) read the refs and
    /// what operators said; `changed` are the environments it passes at once (none: the
    /// poll changed nothing).
    fn ref_polled(&self, changed: &[EnvName]) {
        let _ = changed;
    }
    /// What a pass's events mean for DORA's four keys (SPEC §16): deployments with their
    /// lead times, failures, restores.
    fn dora(&self, observed: &[crate::dora::Observed]) {
        let _ = observed;
    }
}

/// An observer that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct Unobserved;

impl Observer for Unobserved {}

/// What the fleet's last passes saw, for the cause of an alarm raised now (SPEC §17).
impl gitstate_core::Fleet for View {
    fn symptoms(&self) -> Vec<Symptoms> {
        self.with_reports(|reports| reports.values().map(Symptoms::of_report).collect())
    }

    fn environments(&self) -> Vec<(EnvName, gitstate_core::Policy)> {
        let policies = lock(&self.policies).clone();
        policies.iter().map(|(n, p)| (n.clone(), (**p).clone())).collect()
    }
}

/// The loop as it stands, for views: shared by the controller (which writes it) and any
/// number of readers.
pub struct View {
    store: Arc<dyn Store>,
    leadership: Arc<dyn Leadership>,
    reports: Mutex<BTreeMap<EnvName, EnvironmentReport>>,
    windows: Mutex<Arc<Windows>>,
    /// The causes shared by alarms, as the last pass that acted left them.
    causes: Mutex<Arc<Vec<CauseRecord>>>,
    shard: Mutex<Option<crate::leadership::Shard>>,
    /// Each environment's policy in force, for causes that hold them all; environments
    /// with the same policy share one (one per `[[discover]]` block, not a copy each:
    /// SPEC §19).
    policies: Mutex<Arc<PolicyTable>>,
    version: watch::Sender<u64>,
}

/// Each environment with its policy in force, the policy shared where it is the same.
type PolicyTable = Vec<(EnvName, Arc<gitstate_core::Policy>)>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl View {
    pub(crate) fn new(store: Arc<dyn Store>, leadership: Arc<dyn Leadership>) -> Self {
        Self {
            store,
            leadership,
            reports: Mutex::default(),
            windows: Mutex::default(),
            causes: Mutex::default(),
            shard: Mutex::default(),
            policies: Mutex::default(),
            version: watch::Sender::new(0),
        }
    }

    /// The store: every environment's record, the latest events, what operators said.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Whether this process leads (a standby serves the same views).
    pub fn leading(&self) -> bool {
        self.leadership.leading()
    }

    /// The latest report of each environment (what its last pass saw), copied.
    pub fn reports(&self) -> BTreeMap<EnvName, EnvironmentReport> {
        lock(&self.reports).clone()
    }

    /// Calls `f` with the latest reports, without copying them.
    pub fn with_reports<T>(&self, f: impl FnOnce(&BTreeMap<EnvName, EnvironmentReport>) -> T) -> T {
        f(&lock(&self.reports))
    }

    /// Each environment's freeze windows (those without any are absent).
    pub fn windows(&self) -> Arc<Windows> {
        lock(&self.windows).clone()
    }

    /// The status document (`status -o json`) at `now`.
    pub fn status(&self, now: Timestamp) -> StatusReport {
        let overrides = self.store.overrides().unwrap_or_default();
        let mut doc =
            status::document(&self.store.environments(), &overrides, &self.windows(), &self.causes(), now);
        doc.shard = lock(&self.shard).clone();
        doc
    }

    /// What this replica holds of a sharded cluster (SPEC §19), as `/status` shows it.
    pub fn set_shard(&self, shard: Option<crate::leadership::Shard>) {
        *lock(&self.shard) = shard;
    }

    /// The causes shared by alarms of several environments (SPEC §17), open or still to be
    /// told, as the last pass that acted left them.
    pub fn causes(&self) -> Arc<Vec<CauseRecord>> {
        lock(&self.causes).clone()
    }

    pub(crate) fn set_causes(&self, causes: Vec<CauseRecord>) {
        let mut kept = lock(&self.causes);
        if **kept != causes {
            *kept = Arc::new(causes);
        }
    }

    /// A receiver of the version, which changes whenever what the views show changes (a
    /// pass ended, a remediation ended, an environment left).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    pub(crate) fn record(&self, reports: Vec<EnvironmentReport>) {
        {
            let mut known = lock(&self.reports);
            let mut fresh = Vec::new();
            for r in reports {
                // The name is copied only for an environment not seen before.
                match known.get_mut(&r.name) {
                    Some(kept) => *kept = r,
                    None => fresh.push((r.name.clone(), r)),
                }
            }
            crate::store::merge_new(&mut known, fresh);
        }
        self.changed();
    }

    /// Keeps the policy in force of each of `specs` (its own, observing when it has no
    /// remediator), one copy per distinct policy.
    pub(crate) fn set_policies<'a>(&self, specs: impl Iterator<Item = &'a EnvironmentSpec>) {
        // Effective policies by the spec's policy they come from (its address: the specs
        // hold it while this runs) and whether the environment only observes.
        let mut made: std::collections::HashMap<(usize, bool), Arc<gitstate_core::Policy>> =
            Default::default();
        let policies = specs
            .map(|s| {
                let observes = s.remediator.is_none();
                let p = made
                    .entry((Arc::as_ptr(&s.policy) as usize, observes))
                    .or_insert_with(
                        || if observes { Arc::new(s.effective_policy()) } else { s.policy.clone() },
                    )
                    .clone();
                (s.name.clone(), p)
            })
            .collect();
        *lock(&self.policies) = Arc::new(policies);
    }

    pub(crate) fn set_windows(&self, windows: Arc<Windows>) {
        *lock(&self.windows) = windows;
    }

    pub(crate) fn forget(&self, names: &[EnvName]) {
        lock(&self.reports).retain(|n, _| !names.contains(n));
        self.changed();
    }

    pub(crate) fn changed(&self) {
        self.version.send_modify(|v| *v += 1);
    }
}
