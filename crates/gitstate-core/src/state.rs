//! What the closed loop remembers between passes ([`EnvState`] per environment,
//! [`StateFile`] for all), serialised as `state.json` by whoever stores it.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::alarm::AlarmKind;
use crate::commit::CommitId;
use crate::name::EnvName;

/// Where an environment stands after a pass (SPEC §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Phase {
    /// Every instance runs the expected commit.
    InSync,
    /// Not in sync and nothing to act on yet: within grace of a new expected commit, or
    /// probes failing fewer than `unreachable_after` passes.
    Converging,
    /// A remediation was triggered and is settling.
    Remediating,
    /// Waiting for the backoff before the next attempt.
    BackingOff,
    /// An alarm is open.
    Alarm,
    /// Observe mode, drift within grace.
    Observing,
}

impl Phase {
    /// The name in JSON and text output.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::InSync => "in_sync",
            Phase::Converging => "converging",
            Phase::Remediating => "remediating",
            Phase::BackingOff => "backing_off",
            Phase::Alarm => "alarm",
            Phase::Observing => "observing",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The expected commit of an environment and when gitstate first saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectedRecord {
    /// The commit.
    pub commit: CommitId,
    /// The pass that first saw it.
    pub since: Timestamp,
    /// Whether `since` is when the ref moved (false on the first pass of a new state, when
    /// gitstate cannot know): no convergence lag is measured from an unknown start.
    pub since_known: bool,
    /// The convergence lag for this commit has been recorded (once per expected commit).
    pub converged: bool,
}

/// An environment out of sync for one expected commit, with its remediation attempts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    /// When the drift was first observed.
    pub since: Timestamp,
    /// Remediations triggered (or tried) in this incident.
    pub attempts: u32,
    /// When the last attempt started.
    pub last_attempt_at: Option<Timestamp>,
    /// Earliest time of the next attempt.
    pub next_attempt_at: Option<Timestamp>,
}

/// An alarm that is open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenAlarm {
    /// Its kind.
    pub kind: AlarmKind,
    /// When it was raised.
    pub since: Timestamp,
    /// When its notification was last sent (raise or repeat).
    pub last_notified_at: Option<Timestamp>,
}

/// What gitstate remembers of one environment.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct EnvState {
    /// The ref, as last resolved.
    pub reference: Option<String>,
    /// The expected commit and when first seen.
    pub expected: Option<ExpectedRecord>,
    /// The phase the last pass decided.
    pub phase: Option<Phase>,
    /// The open incident, if the environment is not in sync.
    pub incident: Option<Incident>,
    /// Open alarms, at most one per kind.
    pub alarms: Vec<OpenAlarm>,
    /// Consecutive passes with a failed probe.
    pub consecutive_probe_failures: u32,
    /// The last pass that saw every instance in sync.
    pub last_in_sync_at: Option<Timestamp>,
    /// Seconds from the expected commit being first seen to in sync, for the last commit that converged.
    pub last_convergence_lag_s: Option<f64>,
    /// Notifications whose delivery failed, retried on the next pass.
    pub undelivered: Vec<Undelivered>,
}

impl EnvState {
    /// The open alarm of this kind.
    pub fn alarm(&self, kind: AlarmKind) -> Option<&OpenAlarm> {
        self.alarms.iter().find(|a| a.kind == kind)
    }

    /// The alarm shown in `status` when several are open: diverged, then drift, then unreachable.
    pub fn primary_alarm(&self) -> Option<&OpenAlarm> {
        [AlarmKind::Diverged, AlarmKind::Drift, AlarmKind::Unreachable]
            .into_iter()
            .find_map(|k| self.alarm(k))
    }
}

/// A notification that some sink did not accept; retried on the next pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Undelivered {
    /// The sink's name.
    pub sink: String,
    /// The notification, as it was built.
    pub notification: crate::alarm::AlarmNotification,
    /// Failed deliveries so far.
    pub failures: u32,
}

/// Every environment's state: the content of `state.json`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateFile {
    /// Format version; 1.
    pub schema: u32,
    /// Per environment.
    pub environments: BTreeMap<EnvName, EnvState>,
}

impl StateFile {
    /// The current format version.
    pub const SCHEMA: u32 = 1;

    /// An empty state.
    pub fn new() -> Self {
        Self { schema: Self::SCHEMA, environments: BTreeMap::new() }
    }
}

/// `t + d`, saturating at the largest timestamp.
pub(crate) fn after(t: Timestamp, d: Duration) -> Timestamp {
    jiff::SignedDuration::try_from(d).ok().and_then(|sd| t.checked_add(sd).ok()).unwrap_or(Timestamp::MAX)
}

/// `later - earlier`, zero when `later` is earlier.
pub(crate) fn elapsed(earlier: Timestamp, later: Timestamp) -> Duration {
    Duration::try_from(later.duration_since(earlier)).unwrap_or(Duration::ZERO)
}
