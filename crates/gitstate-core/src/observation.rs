//! The vocabulary of observation: what probes read, the statuses it is classified into,
//! and what an environment's observations sum up to.
//!
//! A probe returns [`Reading`]s (raw, per instance); the engine classifies each into an
//! [`InstanceObservation`] with a [`Status`] using the [`Relation`] the expected-state
//! source computes (that step is `engine/classify.rs`). [`Status`] also fixes which
//! status is worse than which; [`Assessment`] sums an environment up for
//! [`crate::reconcile()`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::commit::{CommitId, ReportedCommit};

/// The status of one instance (and, as its worst instance, of a target). SPEC §3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Status {
    /// Reports the expected commit.
    InSync,
    /// Reports an ancestor of the expected commit: a deploy is pending.
    Behind,
    /// Reports a descendant of the expected commit: a rollback is pending.
    Ahead,
    /// Differs, and the relation cannot be computed (a remote source without objects).
    Drifted,
    /// Reports a well-formed id the repository does not contain (or an ambiguous abbreviation).
    UnknownCommit,
    /// Neither ancestor nor descendant: something Git's ref never led to (a hotfix?).
    Diverged,
    /// No resource matched, or a resource lacks the commit tag.
    Missing,
    /// Answered, but no commit id could be read from the answer.
    Invalid,
    /// The probe failed: connect, TLS, timeout, non-2xx, API error.
    Unreachable,
}

impl Status {
    /// Every status, from best to worst.
    pub const ALL: [Status; 9] = [
        Status::InSync,
        Status::Behind,
        Status::Ahead,
        Status::Drifted,
        Status::UnknownCommit,
        Status::Diverged,
        Status::Missing,
        Status::Invalid,
        Status::Unreachable,
    ];

    /// The name used in JSON, text output and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::InSync => "in_sync",
            Status::Behind => "behind",
            Status::Ahead => "ahead",
            Status::Drifted => "drifted",
            Status::UnknownCommit => "unknown_commit",
            Status::Diverged => "diverged",
            Status::Missing => "missing",
            Status::Invalid => "invalid",
            Status::Unreachable => "unreachable",
        }
    }

    /// The probe could not tell what runs (`unreachable`, `invalid`, `missing`).
    pub fn is_probe_failure(self) -> bool {
        matches!(self, Status::Unreachable | Status::Invalid | Status::Missing)
    }

    /// Drift that a deploy of the expected commit fixes (`behind`, `ahead`).
    pub fn is_remediable_drift(self) -> bool {
        matches!(self, Status::Behind | Status::Ahead)
    }

    /// Something Git never led to (`diverged`, `unknown_commit`), or a difference whose
    /// relation to the ref is unknown (`drifted`: it may be a hotfix, so it fails closed):
    /// governed by `on_diverged`.
    pub fn is_divergence(self) -> bool {
        matches!(self, Status::Diverged | Status::UnknownCommit | Status::Drifted)
    }

    /// The worst of several statuses; `in_sync` for none.
    pub fn worst(statuses: impl IntoIterator<Item = Status>) -> Status {
        statuses.into_iter().max().unwrap_or(Status::InSync)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a reported commit relates to the expected one in the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Relation {
    /// The same commit.
    InSync,
    /// An ancestor, this many commits behind.
    Behind(u64),
    /// A descendant, this many commits ahead.
    Ahead(u64),
    /// Neither: commits only the expected side has (`behind`) and only the reported side has (`ahead`).
    Diverged {
        /// Commits reachable from the expected commit but not from the reported one.
        behind: u64,
        /// Commits reachable from the reported commit but not from the expected one.
        ahead: u64,
    },
    /// The repository does not contain it, or the abbreviation is ambiguous.
    UnknownCommit,
    /// Different, relation not computable.
    Drifted,
}

impl Relation {
    /// The status this relation gives an instance.
    pub fn status(self) -> Status {
        match self {
            Relation::InSync => Status::InSync,
            Relation::Behind(_) => Status::Behind,
            Relation::Ahead(_) => Status::Ahead,
            Relation::Diverged { .. } => Status::Diverged,
            Relation::UnknownCommit => Status::UnknownCommit,
            Relation::Drifted => Status::Drifted,
        }
    }

    /// `(commits_behind, commits_ahead)` as the JSON report shows them.
    pub fn counts(self) -> (Option<u64>, Option<u64>) {
        match self {
            Relation::Behind(n) => (Some(n), None),
            Relation::Ahead(n) => (None, Some(n)),
            Relation::Diverged { behind, ahead } => (Some(behind), Some(ahead)),
            _ => (None, None),
        }
    }
}

/// A relation, with the commits at stake (SPEC §11), newest first, at most as many as asked
/// for: `None` when the source cannot name them (no history).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Related {
    /// How the reported commit relates to the expected one.
    pub relation: Relation,
    /// In the expected commit, not in the reported one (what a deploy brings).
    pub pending: Option<Vec<CommitId>>,
    /// In the reported commit, not in the expected one (a rollback's commits, a hotfix).
    pub unexpected: Option<Vec<CommitId>>,
}

impl From<Relation> for Related {
    fn from(relation: Relation) -> Self {
        Self { relation, pending: None, unexpected: None }
    }
}

/// One commit as people read it: who wrote what, when (SPEC §11).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitInfo {
    /// The commit.
    pub sha: CommitId,
    /// The first line of its message: one line, control characters removed, at most 200
    /// characters (outside text: escape it wherever HTML is written).
    pub subject: String,
    /// Its author's name, cleaned the same way.
    pub author: String,
    /// When it was committed.
    pub at: jiff::Timestamp,
}

impl CommitInfo {
    /// The longest subject kept, in characters.
    pub const MAX_SUBJECT: usize = 200;

    /// A commit known by its id only, until it is described.
    pub(crate) fn named(sha: CommitId) -> Self {
        Self { sha, subject: String::new(), author: String::new(), at: jiff::Timestamp::UNIX_EPOCH }
    }

    /// `text` as one safe line of at most `max` characters: the first line, control
    /// characters removed, whitespace trimmed, an ellipsis where it was cut.
    pub fn clean(text: &str, max: usize) -> String {
        let line = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
        let clean: String = line.chars().filter(|c| !c.is_control()).collect();
        let clean = clean.trim();
        if clean.chars().count() <= max {
            return clean.to_owned();
        }
        let mut cut: String = clean.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

/// The status a failed reading gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// Nothing to read: no resource, no tag.
    Missing,
    /// Answered, but not with a commit id.
    Invalid,
    /// No usable answer at all.
    Unreachable,
}

impl FailureKind {
    /// The matching [`Status`].
    pub fn status(self) -> Status {
        match self {
            FailureKind::Missing => Status::Missing,
            FailureKind::Invalid => Status::Invalid,
            FailureKind::Unreachable => Status::Unreachable,
        }
    }
}

/// A probe could not read a commit: the kind of failure and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ProbeFailure {
    /// Which status this failure gives.
    pub kind: FailureKind,
    /// What went wrong and where (never a secret).
    pub message: String,
    /// What the target reported, when it reported something unusable (bounded in length).
    pub actual: Option<String>,
}

impl ProbeFailure {
    /// An `unreachable` failure.
    pub fn unreachable(message: impl Into<String>) -> Self {
        Self { kind: FailureKind::Unreachable, message: message.into(), actual: None }
    }
    /// An `invalid` failure.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self { kind: FailureKind::Invalid, message: message.into(), actual: None }
    }
    /// A `missing` failure.
    pub fn missing(message: impl Into<String>) -> Self {
        Self { kind: FailureKind::Missing, message: message.into(), actual: None }
    }
    /// Attaches what was reported.
    pub fn with_actual(mut self, actual: impl Into<String>) -> Self {
        let mut a: String = actual.into();
        if a.len() > 128 {
            let mut end = 128;
            while !a.is_char_boundary(end) {
                end -= 1;
            }
            a.truncate(end);
            a.push('…');
        }
        self.actual = Some(a);
        self
    }
}

/// What a probe read from one instance, before classification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    /// The instance id: a URL (secrets redacted), a resource ARN, or what a custom probe names.
    pub instance: String,
    /// The commit read, or why none could be.
    pub result: Result<ReportedCommit, ProbeFailure>,
    /// How long the read took.
    pub elapsed: Duration,
}

/// One classified instance: a row of the JSON report (SPEC §6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceObservation {
    /// The instance id.
    pub id: String,
    /// Its status.
    pub status: Status,
    /// The commit as reported (or the unusable value), if any.
    pub actual: Option<String>,
    /// Commits the instance lacks (behind, diverged).
    pub commits_behind: Option<u64>,
    /// Commits the instance has beyond the expected one (ahead, diverged).
    pub commits_ahead: Option<u64>,
    /// Why the probe failed, for failures.
    pub error: Option<String>,
    /// Time the read took, in milliseconds.
    pub elapsed_ms: u64,
    /// For `behind`/`ahead`/`diverged`: the commits a deploy brings, newest first, at most
    /// `max_commits` (`null` when the history cannot name them).
    #[serde(default)]
    pub pending_commits: Option<Vec<CommitInfo>>,
    /// For `ahead`/`diverged`: the commits it runs that the expected commit lacks.
    #[serde(default)]
    pub unexpected_commits: Option<Vec<CommitInfo>>,
    /// A link comparing what runs with what should (`[source] compare_url`).
    #[serde(default)]
    pub compare_url: Option<String>,
}

impl InstanceObservation {
    /// Classifies a successful reading with its relation.
    pub fn classified(
        instance: String,
        actual: &ReportedCommit,
        relation: Relation,
        elapsed: Duration,
    ) -> Self {
        let (commits_behind, commits_ahead) = relation.counts();
        Self {
            id: instance,
            status: relation.status(),
            actual: Some(actual.to_string()),
            commits_behind,
            commits_ahead,
            error: None,
            elapsed_ms: millis(elapsed),
            pending_commits: None,
            unexpected_commits: None,
            compare_url: None,
        }
    }

    /// A failed reading.
    pub fn failed(instance: String, failure: ProbeFailure, elapsed: Duration) -> Self {
        Self {
            id: instance,
            status: failure.kind.status(),
            actual: failure.actual,
            commits_behind: None,
            commits_ahead: None,
            error: Some(failure.message),
            elapsed_ms: millis(elapsed),
            pending_commits: None,
            unexpected_commits: None,
            compare_url: None,
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// One classified target: its worst status and its instances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetObservation {
    /// The target's name.
    pub name: String,
    /// The probe kind (`http`, `aws`, or a custom probe's name).
    pub kind: String,
    /// The worst instance's status, or the whole-target failure's.
    pub status: Status,
    /// Set when the target failed as a whole (then `instances` is empty).
    pub error: Option<String>,
    /// Every instance.
    pub instances: Vec<InstanceObservation>,
    /// Where the probe's answers come from when its instance ids do not say (its
    /// [`ActualStateProbe::origin`](crate::ActualStateProbe::origin), e.g. `aws:eu-west-1`):
    /// what alarm causes are grouped by (SPEC §17). Not in the report.
    #[serde(skip)]
    pub origin: Option<String>,
}

impl TargetObservation {
    /// The same target, answering from `origin` (see [`TargetObservation::origin`]).
    pub fn with_origin(mut self, origin: Option<String>) -> Self {
        self.origin = origin;
        self
    }

    /// A target from its classified instances. A target with no instance at all is `missing`.
    pub fn from_instances(name: String, kind: String, instances: Vec<InstanceObservation>) -> Self {
        if instances.is_empty() {
            return Self::failed(name, kind, ProbeFailure::missing("the probe reported no instance"));
        }
        let status = Status::worst(instances.iter().map(|i| i.status));
        Self { name, kind, status, error: None, instances, origin: None }
    }

    /// What counts for this target: `(instance id, status)` of each instance, or
    /// `("", status)` once for the whole target when it failed as a whole (no instances).
    /// Sync, alarms, `GITSTATE_DRIFTED` and the `instances` metric all count from here.
    pub fn statuses(&self) -> impl Iterator<Item = (&str, Status)> + '_ {
        let whole = self.instances.is_empty().then_some(("", self.status));
        whole.into_iter().chain(self.instances.iter().map(|i| (i.id.as_str(), i.status)))
    }

    /// A target that failed as a whole.
    pub fn failed(name: String, kind: String, failure: ProbeFailure) -> Self {
        Self {
            name,
            kind,
            status: failure.kind.status(),
            error: Some(failure.message),
            instances: Vec::new(),
            origin: None,
        }
    }
}

/// An environment's observations summed up: all the pure decision needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Assessment {
    /// Every instance of every target is in sync (and there is at least one).
    pub in_sync: bool,
    /// Some instance is `behind` or `ahead`.
    pub remediable: bool,
    /// Some instance is `diverged`, `unknown_commit` or `drifted`.
    pub diverged: bool,
    /// Some probe failed (`unreachable`, `invalid`, `missing`).
    pub probe_failure: bool,
    /// The worst status seen (`missing` when nothing was observed).
    pub worst: Status,
}

impl Assessment {
    /// Sums up a set of instance (or whole-target) statuses. No status at all is `missing`:
    /// an environment nobody reported on is never in sync.
    pub fn of_statuses(statuses: impl IntoIterator<Item = Status>) -> Self {
        let mut a = Assessment {
            in_sync: false,
            remediable: false,
            diverged: false,
            probe_failure: false,
            worst: Status::InSync,
        };
        let mut any = false;
        for s in statuses {
            any = true;
            a.remediable |= s.is_remediable_drift();
            a.diverged |= s.is_divergence();
            a.probe_failure |= s.is_probe_failure();
            a.worst = a.worst.max(s);
        }
        if !any {
            a.probe_failure = true;
            a.worst = Status::Missing;
        }
        a.in_sync = !a.remediable && !a.diverged && !a.probe_failure;
        a
    }

    /// Sums up the targets of one environment.
    pub fn of(targets: &[TargetObservation]) -> Self {
        Self::of_statuses(targets.iter().flat_map(|t| t.statuses().map(|(_, s)| s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worst_follows_the_spec_order() {
        // SPEC §3: unreachable, invalid, missing, diverged, unknown_commit, drifted, ahead, behind, in_sync.
        let order = [
            Status::Unreachable,
            Status::Invalid,
            Status::Missing,
            Status::Diverged,
            Status::UnknownCommit,
            Status::Drifted,
            Status::Ahead,
            Status::Behind,
            Status::InSync,
        ];
        for w in order.windows(2) {
            assert_eq!(Status::worst([w[0], w[1]]), w[0]);
            assert_eq!(Status::worst([w[1], w[0]]), w[0]);
        }
        assert_eq!(Status::worst([]), Status::InSync);
    }

    #[test]
    fn statuses_serialize_as_the_spec_names() {
        for s in Status::ALL {
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{}\"", s.as_str()));
        }
    }

    fn inst(status: Status) -> InstanceObservation {
        InstanceObservation {
            id: "i".into(),
            status,
            actual: None,
            commits_behind: None,
            commits_ahead: None,
            error: None,
            pending_commits: None,
            unexpected_commits: None,
            compare_url: None,
            elapsed_ms: 0,
        }
    }

    #[test]
    fn assessment_never_calls_failures_or_emptiness_in_sync() {
        let none = Assessment::of(&[]);
        assert!(!none.in_sync && none.probe_failure);
        assert_eq!(none.worst, Status::Missing);
        let t = |s: Vec<Status>| {
            TargetObservation::from_instances("t".into(), "http".into(), s.into_iter().map(inst).collect())
        };
        assert!(Assessment::of(&[t(vec![Status::InSync, Status::InSync])]).in_sync);
        let a = Assessment::of(&[t(vec![Status::InSync]), t(vec![Status::Unreachable])]);
        assert!(!a.in_sync && a.probe_failure && !a.remediable);
        let a = Assessment::of(&[t(vec![Status::Behind, Status::Diverged])]);
        assert!(a.remediable && a.diverged && !a.in_sync);
        assert_eq!(a.worst, Status::Diverged);
        let failed = TargetObservation::failed("t".into(), "aws".into(), ProbeFailure::missing("no match"));
        assert_eq!(failed.status, Status::Missing);
        assert!(Assessment::of(&[failed]).probe_failure);
        assert_eq!(t(vec![]).status, Status::Missing);
    }
}
