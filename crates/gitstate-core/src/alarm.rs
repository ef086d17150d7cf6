//! The alarm vocabulary, one place for every part of gitstate: the kinds of alarm
//! ([`AlarmKind`]), how the pure decision changes one ([`AlarmChange`]), why one was
//! resolved ([`Resolution`]), and what sinks are told ([`AlarmNotification`]). A leaf:
//! it depends on commits, names and observations only. Where alarms are raised, repeated,
//! deduplicated and resolved is `reconcile/`; how they are worded and delivered is
//! `engine/notify.rs`.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::commit::CommitId;
use crate::name::EnvName;
use crate::observation::{CommitInfo, Status, TargetObservation};

/// The kinds of alarm (SPEC §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AlarmKind {
    /// Attempts exhausted (or observe mode past grace) and still drifted.
    Drift,
    /// A target runs a commit Git never led to, and policy says not to overwrite it.
    Diverged,
    /// Probes failed `unreachable_after` passes in a row.
    Unreachable,
    /// The soak after a deploy failed its checks (SPEC §15).
    Degraded,
    /// The ref points at a vetoed commit: it is not deployed (SPEC §15).
    Vetoed,
    /// The expected commit, or one its move brings, is not signed by an allowed key (SPEC §18).
    Untrusted,
    /// An instance runs a commit that is not trusted (SPEC §18).
    UnsignedRunning,
    /// The environment has not been observed within 2 × `interval` + `failover` (SPEC
    /// §19): raised by the cluster's notifier as one page, `GitstateStale`, for all such.
    Stale,
}

impl AlarmKind {
    /// The name in JSON, events and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmKind::Drift => "drift",
            AlarmKind::Diverged => "diverged",
            AlarmKind::Unreachable => "unreachable",
            AlarmKind::Degraded => "degraded",
            AlarmKind::Vetoed => "vetoed",
            AlarmKind::Untrusted => "untrusted",
            AlarmKind::UnsignedRunning => "unsigned_running",
            AlarmKind::Stale => "stale",
        }
    }
}

impl std::fmt::Display for AlarmKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an alarm was resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// Every instance is in sync.
    Converged,
    /// The expected commit changed; the incident it belonged to is over.
    Superseded,
    /// The condition is gone (probes answer again, no diverged instance remains).
    Cleared,
    /// The environment is gone from the configuration (or no longer discovered).
    Removed,
}

/// How an alarm changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlarmChange {
    /// Opened now.
    Raised,
    /// Still open, `renotify` has passed since the last notification.
    Repeated,
    /// Closed now.
    Resolved(Resolution),
}

impl AlarmChange {
    /// What sinks are told of this change.
    pub fn event(self) -> AlarmEvent {
        match self {
            AlarmChange::Raised => AlarmEvent::AlarmRaised,
            AlarmChange::Repeated => AlarmEvent::AlarmRepeated,
            AlarmChange::Resolved(_) => AlarmEvent::AlarmResolved,
        }
    }

    /// Why the alarm was resolved, when it was.
    pub fn resolution(self) -> Option<Resolution> {
        match self {
            AlarmChange::Resolved(r) => Some(r),
            _ => None,
        }
    }
}

/// What happened to an alarm, as sinks are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmEvent {
    /// Opened on this pass.
    AlarmRaised,
    /// Still open, re-notified.
    AlarmRepeated,
    /// Closed on this pass (converged, superseded or cleared).
    AlarmResolved,
    /// Still open, nothing new: sent every pass for sinks that expire silent alerts
    /// (Alertmanager); other sinks ignore it.
    AlarmFiring,
}

impl AlarmEvent {
    /// The name in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmEvent::AlarmRaised => "alarm_raised",
            AlarmEvent::AlarmRepeated => "alarm_repeated",
            AlarmEvent::AlarmResolved => "alarm_resolved",
            AlarmEvent::AlarmFiring => "alarm_firing",
        }
    }
}

/// One target's part in an alarm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlarmTarget {
    /// The target.
    pub name: String,
    /// Its status.
    pub status: Status,
    /// What its instances report (distinct values).
    pub actual: Vec<String>,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// The newest commits a deploy brings (at most [`AlarmTarget::MAX_PENDING`], distinct
    /// across its instances, newest first).
    #[serde(default)]
    pub pending: Vec<CommitInfo>,
    /// A link comparing what runs with what should (the first instance that has one).
    #[serde(default)]
    pub compare_url: Option<String>,
}

impl AlarmTarget {
    /// The most pending commits an alarm names per target.
    pub const MAX_PENDING: usize = 5;
}

/// A notification for alarm sinks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlarmNotification {
    /// Raised, repeated, resolved, firing.
    pub event: AlarmEvent,
    /// Which alarm.
    pub alarm: AlarmKind,
    /// The environment.
    pub environment: EnvName,
    /// Its ref.
    pub reference: String,
    /// The expected commit.
    pub expected_sha: CommitId,
    /// When the alarm was raised.
    pub since: Timestamp,
    /// When it was resolved (resolved only).
    pub ended_at: Option<Timestamp>,
    /// Why it was resolved (resolved only).
    pub resolution: Option<Resolution>,
    /// One line for people.
    pub summary: String,
    /// The targets not in sync.
    pub targets: Vec<AlarmTarget>,
    /// How loudly it pages (SPEC §17, from the environment's policy).
    #[serde(default)]
    pub severity: crate::policy::Severity,
    /// The policy's labels.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
    /// The policy's runbook, `{alarm}` replaced by this alarm's kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook_url: Option<String>,
    /// What the alarm was given as its cause when it was raised (SPEC §17); `None` (an
    /// alarm raised before causes existed) is the environment's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<crate::cause::Cause>,
}

impl AlarmNotification {
    /// The alarm's cause: the one it was given, or the environment's own.
    pub fn cause(&self) -> crate::cause::Cause {
        self.cause.clone().unwrap_or_else(|| crate::cause::Cause::Environment(self.environment.clone()))
    }

    /// A stable fingerprint of the alarm this notification is about (SPEC §17): 16 hex
    /// digits of FNV-1a over its environment, kind and raise time — the same for its raise,
    /// repeats and resolution, in every process, replica and version (no per-process hash
    /// seed), and different for the next time the same alarm opens.
    pub fn id(&self) -> String {
        fingerprint(&format!(
            "{}\0{}\0{}",
            self.environment,
            self.alarm.as_str(),
            self.since.as_millisecond()
        ))
    }
}

/// 16 hex digits of FNV-1a over `key`: the same in every process and version.
fn fingerprint(key: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// What happened to a cause, as sinks are told (SPEC §17).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CauseEvent {
    /// Two environments or more (or the source) share it: the one page.
    CauseOpened,
    /// Members joined or left (at most every `group_wait`).
    CauseChanged,
    /// Its last member resolved.
    CauseResolved,
    /// Still open, nothing new: for sinks that expire silent alerts (Alertmanager).
    CauseFiring,
}

impl CauseEvent {
    /// The name in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            CauseEvent::CauseOpened => "cause_opened",
            CauseEvent::CauseChanged => "cause_changed",
            CauseEvent::CauseResolved => "cause_resolved",
            CauseEvent::CauseFiring => "cause_firing",
        }
    }
}

/// One notification for the alarms of several environments that share a cause, sent
/// instead of one per environment to sinks that group ([`crate::Grouping`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CauseNotification {
    /// Opened, changed, resolved, firing.
    pub event: CauseEvent,
    /// The cause.
    pub cause: crate::cause::Cause,
    /// The kind of its members' alarms (the first member's; `unreachable` for the source).
    pub alarm: AlarmKind,
    /// When the cause opened.
    pub since: Timestamp,
    /// When it resolved (resolved only).
    pub ended_at: Option<Timestamp>,
    /// The environments whose alarms it holds now, sorted.
    pub members: Vec<EnvName>,
    /// Those that joined since the sink was last told (changed only).
    pub joined: Vec<EnvName>,
    /// Those that left since the sink was last told (changed only).
    pub left: Vec<EnvName>,
    /// The loudest of its members' severities.
    pub severity: crate::policy::Severity,
    /// The labels every member has, with the same value.
    pub labels: std::collections::BTreeMap<String, String>,
    /// One line for people.
    pub summary: String,
}

impl CauseNotification {
    /// A stable fingerprint of the cause (SPEC §17): 16 hex digits of FNV-1a over the
    /// cause and when it opened — the same for its opening, changes and resolution, in
    /// every process and replica.
    pub fn id(&self) -> String {
        fingerprint(&format!("cause\0{}\0{}", self.cause, self.since.as_millisecond()))
    }
}

/// Keeps [`TargetObservation`] in this module's vocabulary for alarm summaries.
pub(crate) fn alarm_targets(targets: &[TargetObservation]) -> Vec<AlarmTarget> {
    targets
        .iter()
        .filter(|t| t.status != Status::InSync)
        .map(|t| {
            let mut actual: Vec<String> = t.instances.iter().filter_map(|i| i.actual.clone()).collect();
            actual.sort();
            actual.dedup();
            let mut pending: Vec<CommitInfo> =
                t.instances.iter().flat_map(|i| i.pending_commits.iter().flatten()).cloned().collect();
            pending.sort_by_key(|c| std::cmp::Reverse(c.at));
            let mut seen = std::collections::HashSet::new();
            pending.retain(|c| seen.insert(c.sha));
            pending.truncate(AlarmTarget::MAX_PENDING);
            let compare_url = t.instances.iter().find_map(|i| i.compare_url.clone());
            AlarmTarget {
                name: t.name.clone(),
                status: t.status,
                actual,
                error: t.error.clone(),
                pending,
                compare_url,
            }
        })
        .collect()
}
