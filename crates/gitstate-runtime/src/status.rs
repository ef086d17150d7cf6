//! The status document (`status -o json`, `/status` of `watch`) and its table: what the
//! state holds per environment — phase, expected commit and since when, the open incident,
//! the open alarm, the last in-sync time and convergence lag. Entry: [`document`]; the
//! CLI renders it as a table, `/status` serves it as JSON.

use std::collections::BTreeMap;

use gitstate_core::{Cause, CauseRecord, EnvName, EnvState, Phase};
use jiff::Timestamp;
use serde::Serialize;

use crate::controls::{Overrides, Suspension, Windows, frozen_until};

/// `status -o json`, schema 1.
#[derive(Debug, Serialize)]
pub struct StatusReport {
    /// Format version: 1.
    pub schema: u32,
    /// Per environment.
    pub environments: Vec<EnvironmentStatus>,
    /// With shards (SPEC §19): this replica, the slots it holds, and the cluster's share.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<crate::leadership::Shard>,
}

/// One environment's remembered state.
#[derive(Debug, Serialize)]
pub struct EnvironmentStatus {
    /// The environment.
    pub name: EnvName,
    #[serde(rename = "ref")]
    /// Its ref, as last resolved.
    pub reference: Option<String>,
    /// The commit it should run (40 hex).
    pub expected: Option<String>,
    /// When that commit was first expected.
    pub expected_since: Option<Timestamp>,
    /// The phase of its last pass.
    pub phase: Option<Phase>,
    /// The open incident, while it is not in sync.
    pub incident: Option<IncidentStatus>,
    /// The first open alarm.
    pub alarm: Option<AlarmStatus>,
    /// When it was last seen in sync.
    pub last_in_sync_at: Option<Timestamp>,
    /// Seconds from the last ref move to in sync.
    pub last_convergence_lag_s: Option<f64>,
    /// Set while an operator has it suspended (SPEC §9).
    pub suspension: Option<Suspension>,
    /// Set while a freeze window is open.
    pub window: Option<WindowStatus>,
    /// The soak of the expected commit (or the last one soaked), SPEC §15.
    pub verification: Option<VerificationStatus>,
    /// The last commit verified in this environment.
    pub last_verified_sha: Option<String>,
    /// Commits not to deploy here.
    pub vetoes: Vec<crate::controls::Veto>,
    /// Who signed the expected commit, or why it is not trusted (SPEC §18).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trust: Option<gitstate_core::TrustRecord>,
    /// The cause whose page holds its own alarms back (SPEC §17: `source`, while the
    /// expected-state source cannot be read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inhibited_by: Option<String>,
}

/// A soak (SPEC §15).
#[derive(Debug, Serialize)]
pub struct VerificationStatus {
    /// The commit.
    pub sha: String,
    /// `verifying`, `verified` or `degraded`.
    pub state: &'static str,
    /// When the soak began.
    pub since: Timestamp,
    /// When it ends (or ended).
    pub until: Timestamp,
    /// Failed check runs.
    pub failures: Vec<gitstate_core::verify::CheckFailure>,
}

/// A freeze window open now.
#[derive(Debug, Serialize)]
pub struct WindowStatus {
    /// When the open window ends.
    pub until: Timestamp,
}

/// An open incident.
#[derive(Debug, Serialize)]
pub struct IncidentStatus {
    /// When it opened.
    pub since: Timestamp,
    /// Remediations tried for this expected commit.
    pub attempts: u32,
    /// The earliest next attempt.
    pub next_attempt_at: Option<Timestamp>,
}

/// An open alarm.
#[derive(Debug, Serialize)]
pub struct AlarmStatus {
    /// Which alarm.
    pub kind: gitstate_core::AlarmKind,
    /// When it was raised.
    pub since: Timestamp,
    /// When a sink was last told.
    pub last_notified_at: Option<Timestamp>,
    /// What it was given as its cause when raised (SPEC §17).
    pub cause: String,
}

/// The status document of a set of environment records at `now`, with the suspensions
/// and freeze windows in force and the causes shared by alarms (the engine's, or the
/// store's outbox).
pub fn document(
    states: &BTreeMap<EnvName, EnvState>,
    overrides: &Overrides,
    windows: &Windows,
    causes: &[CauseRecord],
    now: Timestamp,
) -> StatusReport {
    let inhibited: BTreeMap<&EnvName, String> = causes
        .iter()
        .filter(|c| c.cause == Cause::Source)
        .flat_map(|c| c.members.iter().map(|m| (&m.environment, c.cause.to_string())))
        .collect();
    StatusReport {
        schema: 1,
        environments: states
            .iter()
            .map(|(name, s)| EnvironmentStatus {
                name: name.clone(),
                reference: s.reference.clone(),
                expected: s.expected.as_ref().map(|e| e.commit.to_string()),
                expected_since: s.expected.as_ref().map(|e| e.since),
                phase: s.phase,
                incident: s.open_incident().map(|i| IncidentStatus {
                    since: i.since,
                    attempts: i.attempts,
                    next_attempt_at: i.next_attempt_at,
                }),
                alarm: s.primary_alarm().map(|a| AlarmStatus {
                    kind: a.kind,
                    since: a.since,
                    last_notified_at: a.last_notified_at,
                    cause: a.cause.clone().unwrap_or_else(|| Cause::Environment(name.clone())).to_string(),
                }),
                last_in_sync_at: s.last_in_sync_at,
                last_convergence_lag_s: s.last_convergence_lag_s,
                suspension: overrides.suspension(name, now).cloned(),
                window: windows
                    .get(name)
                    .and_then(|w| frozen_until(w, now))
                    .map(|until| WindowStatus { until }),
                verification: s.verification.as_ref().map(|v| VerificationStatus {
                    sha: v.sha.to_string(),
                    state: v.state.as_str(),
                    since: v.since,
                    until: v.until,
                    failures: v.failures.clone(),
                }),
                last_verified_sha: s.verified.last().map(ToString::to_string),
                vetoes: overrides.vetoes(name).to_vec(),
                inhibited_by: inhibited.get(name).cloned(),
                trust: s.trust.as_deref().cloned(),
            })
            .collect(),
        shard: None,
    }
}

impl StatusReport {
    /// Whether every environment's last phase is `in_sync` or `verifying` (SPEC §6: a soak
    /// counts as in sync), and there is one at least.
    pub fn all_in_sync(&self) -> bool {
        !self.environments.is_empty()
            && self.environments.iter().all(|e| matches!(e.phase, Some(Phase::InSync | Phase::Verifying)))
    }
}
