//! What a pass comes to: [`PassOutcome`] for the caller (the report, the decided states,
//! the events, what became of each remediation and notification), and, while the pass
//! runs, an `EnvOutcome` per environment from which the report is built.

use std::time::Duration;

use jiff::Timestamp;

use crate::commit::CommitId;
use crate::event::Event;
use crate::name::EnvName;
use crate::observation::{Assessment, TargetObservation};
use crate::plugin::{RemediationOutcome, RemediationRequest};
use crate::reconcile::{Decision, Reason};
use crate::report::{ActionReport, EnvironmentReport, Report};
use crate::state::{EnvState, Phase};

use super::spec::EnvironmentSpec;

/// The result of a pass.
#[derive(Debug, Clone)]
pub struct PassOutcome {
    /// The report (SPEC §6 JSON).
    pub report: Report,
    /// The next state of every environment that was decided (reconcile only), already
    /// given to the journal unless dry run.
    pub states: Vec<(EnvName, EnvState)>,
    /// The audit events of the pass (already given to the journal, unless dry run).
    pub events: Vec<Event>,
    /// Per decided environment: why, and when to look again.
    pub decisions: Vec<(EnvName, Reason, Option<Duration>)>,
    /// Remediation outcomes, per environment (not in a dry run).
    pub remediations: Vec<(EnvName, RemediationOutcome)>,
    /// Notifications attempted: `(sink, what became of it)`.
    pub deliveries: Vec<(String, Delivery)>,
    /// Persisting failed: the error, rendered. Remediations were not run when this is set.
    pub journal_error: Option<String>,
    /// Remediations decided and persisted but not run (engines built with
    /// [`Engine::with_deferred_remediations`](crate::Engine::with_deferred_remediations)): run each with [`Engine::remediate`](crate::Engine::remediate).
    pub deferred: Vec<(EnvName, RemediationRequest)>,
}

impl PassOutcome {
    pub(super) fn new(now: Timestamp) -> Self {
        Self {
            report: Report { schema: 1, checked_at: now, in_sync: true, environments: Vec::new() },
            states: Vec::new(),
            events: Vec::new(),
            decisions: Vec::new(),
            remediations: Vec::new(),
            deliveries: Vec::new(),
            journal_error: None,
            deferred: Vec::new(),
        }
    }
}

/// What became of one notification to one sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Delivery {
    /// The sink accepted it.
    Delivered,
    /// It failed and is kept for a later pass.
    Failed,
    /// The sink refused it for good (HTTP 4xx); it is not retried.
    Rejected,
}

impl Delivery {
    /// The `outcome` label of `gitstate_notifications_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Delivered => "ok",
            Delivery::Failed => "failed",
            Delivery::Rejected => "rejected",
        }
    }
}

/// What one environment's pass came to: what was resolved and observed, what was decided,
/// and the actions taken, until the report is built from it.
pub(super) struct EnvOutcome {
    /// The full ref name (as configured when it could not be resolved).
    pub(super) reference: String,
    /// The expected commit, or why the ref could not be resolved.
    pub(super) expected: Result<CommitId, String>,
    pub(super) targets: Vec<TargetObservation>,
    /// The targets summed up, when the ref was resolved.
    pub(super) assessment: Option<Assessment>,
    pub(super) phase: Option<Phase>,
    /// The decision, until `act` takes its state.
    pub(super) decision: Option<Decision>,
    pub(super) actions: Vec<ActionReport>,
}

impl EnvOutcome {
    pub(super) fn failed(reference: String, error: String) -> Self {
        Self::new(reference, Err(error), Vec::new(), None)
    }

    pub(super) fn observed(reference: String, commit: CommitId, targets: Vec<TargetObservation>) -> Self {
        let assessment = Assessment::of(&targets);
        Self::new(reference, Ok(commit), targets, Some(assessment))
    }

    fn new(
        reference: String,
        expected: Result<CommitId, String>,
        targets: Vec<TargetObservation>,
        assessment: Option<Assessment>,
    ) -> Self {
        Self { reference, expected, targets, assessment, phase: None, decision: None, actions: Vec::new() }
    }

    pub(super) fn report(self, env: &EnvironmentSpec) -> EnvironmentReport {
        let (expected, error) = match self.expected {
            Ok(c) => (Some(c), None),
            Err(e) => (None, Some(e)),
        };
        EnvironmentReport {
            name: env.name.clone(),
            reference: self.reference,
            expected,
            // SPEC §6: `verifying` counts as in sync; `degraded`, `vetoed` and `untrusted` do not.
            in_sync: self.assessment.is_some_and(|a| a.in_sync)
                && !matches!(
                    self.phase,
                    Some(
                        crate::state::Phase::Degraded
                            | crate::state::Phase::Vetoed
                            | crate::state::Phase::Untrusted
                    )
                ),
            error,
            phase: self.phase,
            actions: self.actions,
            targets: self.targets,
            trust: env
                .controls
                .trust
                .as_ref()
                .filter(|g| Some(g.commit) == expected)
                .map(|g| Box::new(g.record.clone())),
        }
    }
}
