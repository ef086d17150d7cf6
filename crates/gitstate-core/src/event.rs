//! The audit trail: [`Event`]s as one JSON object a line in `events.jsonl` (SPEC §7).

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::alarm::{AlarmChange, AlarmKind, Resolution};
use crate::commit::CommitId;
use crate::name::EnvName;
use crate::observation::Status;

/// Something that happened to an environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// The environment's ref points at a new commit.
    ExpectedChanged {
        /// The previous expected commit.
        from: Option<CommitId>,
        /// The new one.
        to: CommitId,
    },
    /// An incident started: the environment is not in sync.
    DriftDetected {
        /// The expected commit.
        expected: CommitId,
        /// The worst status observed.
        status: Status,
    },
    /// A remediation is about to run (state was persisted first).
    RemediationStarted {
        /// The expected commit being deployed.
        expected: CommitId,
        /// 1-based attempt in this incident.
        attempt: u32,
    },
    /// A remediation returned.
    RemediationFinished {
        /// The expected commit.
        expected: CommitId,
        /// 1-based attempt.
        attempt: u32,
        /// Whether the deploy was triggered.
        ok: bool,
        /// The command's exit code, when there was one.
        exit_code: Option<i32>,
        /// What happened, in a line.
        detail: String,
        /// The end of the command's output.
        output_tail: Option<String>,
    },
    /// An alarm opened.
    AlarmRaised {
        /// Its kind.
        alarm: AlarmKind,
        /// The expected commit.
        expected: CommitId,
    },
    /// An open alarm was notified again.
    AlarmRepeated {
        /// Its kind.
        alarm: AlarmKind,
        /// The expected commit.
        expected: CommitId,
    },
    /// An alarm closed.
    AlarmResolved {
        /// Its kind.
        alarm: AlarmKind,
        /// Why it was resolved: converged, superseded by a new expected commit, or cleared.
        reason: Resolution,
    },
    /// The environment reached its expected commit.
    Converged {
        /// The commit.
        expected: CommitId,
        /// Seconds from the ref's move to in sync; `None` when unknown (the commit was first
        /// seen on gitstate's very first pass without a reflog, or it converged again after
        /// flapping: the lag is recorded once per expected commit).
        lag_s: Option<f64>,
        /// Where the lag is measured from.
        lag_from: LagFrom,
    },
    /// An operator suspended it (`gitstate suspend`, or the dashboard).
    Suspended {
        /// Why, as given.
        reason: Option<String>,
        /// Who (the OS user, or the dashboard's user).
        by: String,
        /// How: `cli` or `dashboard` (records before SPEC §20 read as `cli`).
        #[serde(default = "via_cli")]
        via: String,
        /// When it ends by itself, if it does.
        until: Option<Timestamp>,
    },
    /// An operator resumed it (`gitstate resume`, or the dashboard).
    Resumed {
        /// Who.
        by: String,
        /// How: `cli` or `dashboard`.
        #[serde(default = "via_cli")]
        via: String,
        /// Why, as given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// An operator asked for a fresh set of attempts (`gitstate retry`, or the dashboard).
    RetryRequested {
        /// Who.
        by: String,
        /// How: `cli` or `dashboard`.
        #[serde(default = "via_cli")]
        via: String,
        /// Why, as given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The environment is gone from the configuration (or no longer discovered) on a whole
    /// pass: its open alarms were resolved (`removed`) and its state pruned.
    EnvironmentRemoved {
        /// The expected commit it had, if any.
        expected: Option<CommitId>,
    },
    /// A soak began: the environment is in sync on a commit not verified in it before.
    VerificationStarted {
        /// The commit.
        expected: CommitId,
        /// When the soak ends.
        until: Timestamp,
    },
    /// A check failed during a soak.
    CheckFailed {
        /// The commit soaking.
        expected: CommitId,
        /// The check.
        check: String,
        /// Why it failed.
        reason: String,
    },
    /// The soak ended well: the commit is good.
    Verified {
        /// The commit.
        expected: CommitId,
    },
    /// The soak failed: `failures` failed runs.
    Degraded {
        /// The commit.
        expected: CommitId,
        /// Failed runs within the soak.
        failures: u32,
    },
    /// The ref was moved back from a bad commit (by gitstate or `gitstate rollback`).
    RolledBack {
        /// The commit rolled back from (now vetoed).
        from: CommitId,
        /// The commit the ref points at now.
        to: CommitId,
        /// Why.
        reason: Option<String>,
        /// Who (`gitstate`, or the OS user).
        by: String,
        /// How: `loop`, `cli` or `dashboard`.
        via: String,
    },
    /// A rollback was not done: the ref moved meanwhile, or moving it failed.
    RollbackRefused {
        /// The commit that was to be rolled back from.
        from: CommitId,
        /// The commit it was to go to.
        to: CommitId,
        /// Why it was not done.
        error: String,
    },
    /// A commit was vetoed in the environment.
    VetoAdded {
        /// The commit.
        sha: CommitId,
        /// Who.
        by: String,
        /// How.
        via: String,
        /// Why.
        reason: Option<String>,
    },
    /// A veto was lifted.
    VetoRemoved {
        /// The commit.
        sha: CommitId,
        /// Who.
        by: String,
        /// How.
        via: String,
        /// Why.
        reason: Option<String>,
    },
    /// A hotfix running on every instance became the expected commit (`gitstate adopt`).
    Adopted {
        /// The commit the ref pointed at.
        from: CommitId,
        /// The hotfix.
        to: CommitId,
        /// Who.
        by: String,
        /// How.
        via: String,
        /// Why.
        reason: Option<String>,
    },
    /// An alarm sink did not accept a notification (kept and retried with backoff, or
    /// rejected for good); written at most once per alarm, sink and hour.
    NotificationFailed {
        /// The sink.
        sink: String,
        /// The alarm.
        alarm: AlarmKind,
        /// The sink's error, rendered (never a secret).
        error: String,
    },
}

impl EventKind {
    /// The audit event of an alarm's `change` (`expected`: the commit it is about).
    pub fn of_alarm(change: AlarmChange, alarm: AlarmKind, expected: CommitId) -> Self {
        match change {
            AlarmChange::Raised => EventKind::AlarmRaised { alarm, expected },
            AlarmChange::Repeated => EventKind::AlarmRepeated { alarm, expected },
            AlarmChange::Resolved(reason) => EventKind::AlarmResolved { alarm, reason },
        }
    }
}

/// Where a convergence lag is measured from (SPEC §7 invariant 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LagFrom {
    /// The time of the ref's reflog entry that set the expected commit.
    Reflog,
    /// The pass that first saw the expected commit.
    FirstSeen,
}

/// One line of `events.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// When it happened (RFC 3339 in `events.jsonl`).
    pub at: Timestamp,
    /// Which environment.
    pub environment: EnvName,
    /// What happened: the `event` field and its own fields, flattened into the line.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// How controls recorded before the dashboard could act were made.
fn via_cli() -> String {
    "cli".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_flat_json_lines_with_at_event_environment() {
        let e = Event {
            at: "2026-11-24T06:00:00Z".parse().unwrap(),
            environment: EnvName::new("production").unwrap(),
            kind: EventKind::Converged {
                expected: CommitId::parse(&"a".repeat(40)).unwrap(),
                lag_s: Some(1.5),
                lag_from: LagFrom::Reflog,
            },
        };
        let v: serde_json::Value = serde_json::to_value(&e).unwrap();
        assert_eq!(v["at"], "2026-11-24T06:00:00Z");
        assert_eq!(v["event"], "converged");
        assert_eq!(v["environment"], "production");
        assert_eq!(v["lag_s"], 1.5);
        assert_eq!(v["lag_from"], "reflog");
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
    }
}
