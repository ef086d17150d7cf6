//! What a pass is given: each environment ([`EnvironmentSpec`]) with its targets
//! ([`TargetSpec`], each bounded by [`DEFAULT_PROBE_TIMEOUT`] unless it says otherwise),
//! and what kind of pass it is ([`PassMode`]).

use std::sync::Arc;
use std::time::Duration;

use crate::name::EnvName;
use crate::plugin::{ActualStateProbe, Remediator};
use crate::policy::{Mode, Policy};
use crate::reconcile::Controls;
use crate::verify::Check;

/// How long the engine waits for a probe when its target says nothing else (SPEC §8).
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// One target of an environment and the probe that reads it.
#[derive(Clone)]
pub struct TargetSpec {
    /// The target's name.
    pub name: String,
    /// Its probe.
    pub probe: Arc<dyn ActualStateProbe>,
    /// The engine's own bound on one `observe` call: a probe that has not answered by then
    /// makes the target `unreachable` ("no answer within 30s"), and the pass goes on.
    pub timeout: Duration,
}

impl TargetSpec {
    /// A target bounded by [`DEFAULT_PROBE_TIMEOUT`].
    pub fn new(name: impl Into<String>, probe: Arc<dyn ActualStateProbe>) -> Self {
        Self { name: name.into(), probe, timeout: DEFAULT_PROBE_TIMEOUT }
    }

    /// Sets the engine's bound on this target's probe.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// One environment as the engine sees it.
#[derive(Clone)]
pub struct EnvironmentSpec {
    /// Its name.
    pub name: EnvName,
    /// Its ref (full or short).
    pub reference: String,
    /// Its targets.
    pub targets: Vec<TargetSpec>,
    /// How to redeploy it; none means the environment is only observed.
    pub remediator: Option<Arc<dyn Remediator>>,
    /// Its policy (shared: every environment a `[[discover]]` block finds has the same).
    pub policy: Arc<Policy>,
    /// What an operator (or a freeze window) says about acting on it now.
    pub controls: Controls,
    /// The checks of its `[policy.verify]` soak (SPEC §15), in order; each bounded by the
    /// engine to the policy's `every`.
    pub checks: Vec<Arc<dyn Check>>,
}

impl EnvironmentSpec {
    /// The policy in force: observe mode when there is nothing to remediate with.
    pub fn effective_policy(&self) -> Policy {
        let mut p = (*self.policy).clone();
        if self.remediator.is_none() {
            p.mode = Mode::Observe;
        }
        p
    }
}

/// What kind of pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassMode {
    /// Observe and report; no state, no decision, no action (`gitstate check`).
    Check,
    /// The closed loop. In a dry run the actions are decided and reported, not carried out,
    /// and nothing is persisted.
    Reconcile {
        /// Decide without acting.
        dry_run: bool,
    },
}
