//! The report of a pass: the stable JSON of `check` and `reconcile` (`-o json`, schema 1,
//! SPEC §6). Entry type: [`Report`].

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::alarm::{AlarmChange, AlarmKind};
use crate::commit::CommitId;
use crate::name::EnvName;
use crate::observation::TargetObservation;
use crate::state::Phase;

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Format version: 1.
    pub schema: u32,
    /// When the pass started.
    pub checked_at: Timestamp,
    /// Every environment is in sync.
    pub in_sync: bool,
    /// Per environment, in the order given.
    pub environments: Vec<EnvironmentReport>,
}

impl Report {
    /// Some environment could not be checked at all (its ref did not resolve): exit code 2.
    pub fn has_errors(&self) -> bool {
        self.environments.iter().any(|e| e.error.is_some())
    }
}

/// One environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvironmentReport {
    /// Its name.
    pub name: EnvName,
    /// Its ref.
    #[serde(rename = "ref")]
    pub reference: String,
    /// The expected commit, when the ref resolved.
    pub expected: Option<CommitId>,
    /// Every instance of every target is in sync.
    pub in_sync: bool,
    /// Why the environment could not be checked.
    pub error: Option<String>,
    /// The phase (`reconcile` only).
    pub phase: Option<Phase>,
    /// What the pass did (`reconcile` only).
    pub actions: Vec<ActionReport>,
    /// Per target.
    pub targets: Vec<TargetObservation>,
    /// Who signed the expected commit, or why it is not trusted (SPEC §18; only with
    /// `[source.trust]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<Box<crate::state::TrustRecord>>,
}

/// An action in the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ActionReport {
    /// A remediation.
    Remediate {
        /// 1-based attempt.
        attempt: u32,
        /// Triggered; `null` in a dry run.
        ok: Option<bool>,
        /// What happened.
        detail: String,
    },
    /// An alarm opened.
    AlarmRaised {
        /// The kind of alarm.
        alarm: AlarmKind,
    },
    /// An alarm closed.
    AlarmResolved {
        /// The kind of alarm.
        alarm: AlarmKind,
    },
    /// An open alarm re-notified.
    AlarmRepeated {
        /// The kind of alarm.
        alarm: AlarmKind,
    },
    /// The ref moved back from a degraded commit (SPEC §15).
    Rollback {
        /// The degraded commit.
        from: crate::commit::CommitId,
        /// The last verified commit.
        to: crate::commit::CommitId,
        /// Done; `null` in a dry run.
        ok: Option<bool>,
        /// What happened.
        detail: String,
    },
}

impl ActionReport {
    /// How the report shows an alarm's `change`.
    pub fn of_alarm(change: AlarmChange, alarm: AlarmKind) -> Self {
        match change {
            AlarmChange::Raised => ActionReport::AlarmRaised { alarm },
            AlarmChange::Repeated => ActionReport::AlarmRepeated { alarm },
            AlarmChange::Resolved(_) => ActionReport::AlarmResolved { alarm },
        }
    }
}
