//! What the closed loop remembers between passes ([`EnvState`] per environment,
//! [`StateFile`] for all), serialised as `state.json` by whoever stores it.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::alarm::AlarmKind;
use crate::commit::CommitId;
use crate::event::LagFrom;
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
    /// An operator suspended it: probed, never acted on.
    Suspended,
    /// Inside a freeze window: probed, not acted on until it ends.
    Frozen,
    /// In sync on a commit not verified yet: the soak's checks run (SPEC §15).
    Verifying,
    /// The soak failed: the `degraded` alarm is open.
    Degraded,
    /// The expected commit is vetoed: never deployed (SPEC §15).
    Vetoed,
    /// The expected commit (or a commit its move brings) is not signed by an allowed key,
    /// and `on_untrusted = "block"`: never deployed (SPEC §18).
    Untrusted,
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
            Phase::Suspended => "suspended",
            Phase::Frozen => "frozen",
            Phase::Verifying => "verifying",
            Phase::Degraded => "degraded",
            Phase::Vetoed => "vetoed",
            Phase::Untrusted => "untrusted",
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
    /// When the ref moved to it: its reflog entry's time when the repository keeps one,
    /// else the pass that first saw it.
    pub since: Timestamp,
    /// Whether `since` is when the ref moved (false on the first pass of a new state without
    /// a reflog, when gitstate cannot know): no convergence lag is measured from an unknown start.
    pub since_known: bool,
    /// `since` comes from the ref's reflog.
    #[serde(default)]
    pub from_reflog: bool,
    /// The environment has been in sync with this commit (the lag is recorded once per
    /// expected commit; drift after this is flapping).
    pub converged: bool,
}

impl ExpectedRecord {
    /// Where the convergence lag of this commit is measured from.
    pub fn lag_from(&self) -> LagFrom {
        if self.from_reflog { LagFrom::Reflog } else { LagFrom::FirstSeen }
    }
}

/// An environment out of sync for one expected commit, with its remediation attempts.
///
/// It belongs to the expected commit (SPEC §7): an in-sync pass closes it (`in_sync_since`
/// set) but keeps its attempts and backoff, and renewed drift of the same commit reopens it.
/// Only a new expected commit (or an operator's retry) ends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    /// When the drift was first observed.
    pub since: Timestamp,
    /// Remediations triggered (or tried) for this expected commit.
    pub attempts: u32,
    /// When the last attempt started.
    pub last_attempt_at: Option<Timestamp>,
    /// Earliest time of the next attempt.
    pub next_attempt_at: Option<Timestamp>,
    /// Closed: in sync on every pass since then.
    #[serde(default)]
    pub in_sync_since: Option<Timestamp>,
    /// The expected commit had been in sync before this drift (flapping): its drift alarm
    /// resolves only after `keep_firing_for` in sync.
    #[serde(default)]
    pub flapping: bool,
}

impl Incident {
    /// Whether the environment is out of sync (the incident is not closed).
    pub fn is_open(&self) -> bool {
        self.in_sync_since.is_none()
    }
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
    /// What it was given as its cause when raised (SPEC §17); `None`: its environment's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<crate::cause::Cause>,
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
    /// The incident of the expected commit: open while not in sync, closed but kept
    /// (with its attempts) after an in-sync pass.
    pub incident: Option<Box<Incident>>,
    /// Open alarms, at most one per kind.
    pub alarms: Vec<OpenAlarm>,
    /// Consecutive passes with a failed probe.
    pub consecutive_probe_failures: u32,
    /// The last pass that saw every instance in sync.
    pub last_in_sync_at: Option<Timestamp>,
    /// The last `gitstate retry` applied (each request once).
    pub last_retry: Option<Timestamp>,
    /// Seconds from the ref's move (or the commit being first seen) to in sync, for the
    /// last commit whose lag is known.
    pub last_convergence_lag_s: Option<f64>,
    /// The soak of the expected commit, or of the last one soaked (SPEC §15).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Box<crate::verify::Verification>>,
    /// Commits verified in this environment, the newest last (at most
    /// [`crate::verify::VERIFIED_KEPT`]): a rollback goes to the last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verified: Vec<CommitId>,
    /// Commits the environment converged on, the newest last (at most
    /// [`crate::verify::VERIFIED_KEPT`]): `gitstate rollback` without `[policy.verify]`
    /// goes back to the one before the expected commit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub converged_on: Vec<CommitId>,
    /// What each instance was last seen running, and since when (SPEC §16): changed
    /// only when an instance reports another commit, so a quiet pass writes nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub running: Vec<Running>,
    /// The last expected commit whose move was trusted (SPEC §18): the next move's
    /// commits are judged from it (`last_trusted..new`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_trusted: Option<CommitId>,
    /// The trust verdict on the expected commit, as `status` shows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<Box<TrustRecord>>,
}

/// A trust verdict as it is recorded and shown (SPEC §18, `status`'s `trust`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TrustRecord {
    /// The expected commit judged.
    pub sha: CommitId,
    /// `trusted` or `untrusted`.
    pub state: String,
    /// Who signed it, when someone allowed did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// The signing key's fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Why it is not trusted: the first offending commit and what is wrong with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A first expected commit with no trusted predecessor: judged by its tip alone.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tip_only: bool,
}

impl TrustRecord {
    /// A verdict on `sha`.
    pub fn new(sha: CommitId, trusted: bool) -> Self {
        Self {
            sha,
            state: if trusted { "trusted" } else { "untrusted" }.to_owned(),
            signer: None,
            key: None,
            reason: None,
            tip_only: false,
        }
    }
}

/// One instance's last reported commit (SPEC §16).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Running {
    /// The target.
    pub target: String,
    /// The instance.
    pub instance: String,
    /// The commit as reported (the full id when it is the expected one).
    pub sha: String,
    /// When it was first seen running it.
    pub since: Timestamp,
}

impl Running {
    /// What `targets` say runs where at `now`, `prior` giving each unchanged instance its
    /// `since`. An instance whose probe failed keeps what it last reported.
    pub fn observed(
        prior: &[Running],
        targets: &[crate::observation::TargetObservation],
        expected: &CommitId,
        now: Timestamp,
    ) -> Vec<Running> {
        let mut out = Vec::new();
        for t in targets {
            for i in &t.instances {
                let last = prior.iter().find(|r| r.target == t.name && r.instance == i.id);
                let sha = match (i.status, &i.actual) {
                    (crate::observation::Status::InSync, _) => expected.to_string(),
                    (s, Some(actual)) if !s.is_probe_failure() => actual.clone(),
                    _ => match last {
                        Some(r) => r.sha.clone(),
                        None => continue,
                    },
                };
                let since = last.filter(|r| r.sha == sha).map_or(now, |r| r.since);
                out.push(Running { target: t.name.clone(), instance: i.id.clone(), sha, since });
            }
        }
        out
    }
}

impl EnvState {
    /// The open alarm of this kind.
    pub fn alarm(&self, kind: AlarmKind) -> Option<&OpenAlarm> {
        self.alarms.iter().find(|a| a.kind == kind)
    }

    /// The incident, when it is open (the environment is out of sync).
    pub fn open_incident(&self) -> Option<&Incident> {
        self.incident.as_deref().filter(|i| i.is_open())
    }

    /// Whether `other` differs from this state in nothing but `last_in_sync_at`: the one
    /// field every in-sync pass changes, which a store may write less often.
    pub fn same_but_in_sync_time(&self, other: &EnvState) -> bool {
        // Every field named, so that a new one is compared (or exempted) on purpose.
        let EnvState {
            reference,
            expected,
            phase,
            incident,
            alarms,
            consecutive_probe_failures,
            last_in_sync_at: _,
            last_retry,
            last_convergence_lag_s,
            verification,
            verified,
            converged_on,
            running,
            last_trusted,
            trust,
        } = self;
        *reference == other.reference
            && *expected == other.expected
            && *phase == other.phase
            && *incident == other.incident
            && *alarms == other.alarms
            && *consecutive_probe_failures == other.consecutive_probe_failures
            && *last_retry == other.last_retry
            && *last_convergence_lag_s == other.last_convergence_lag_s
            && *verification == other.verification
            && *verified == other.verified
            && *converged_on == other.converged_on
            && *running == other.running
            && *last_trusted == other.last_trusted
            && *trust == other.trust
    }

    /// The alarm shown in `status` when several are open: untrusted, unsigned_running,
    /// vetoed, degraded, diverged, drift, then unreachable.
    pub fn primary_alarm(&self) -> Option<&OpenAlarm> {
        [
            AlarmKind::Untrusted,
            AlarmKind::UnsignedRunning,
            AlarmKind::Vetoed,
            AlarmKind::Degraded,
            AlarmKind::Diverged,
            AlarmKind::Drift,
            AlarmKind::Unreachable,
        ]
        .into_iter()
        .find_map(|k| self.alarm(k))
    }
}

/// A notification that some sink did not accept (or that waits behind one of the same
/// alarm that did not), retried on a later pass with exponential backoff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Undelivered {
    /// The sink's name.
    pub sink: String,
    /// The notification, as it was built.
    pub notification: crate::alarm::AlarmNotification,
    /// Failed deliveries so far.
    pub failures: u32,
    /// When it was last tried.
    #[serde(default)]
    pub last_try: Option<Timestamp>,
    /// Passes it has waited since then.
    #[serde(default)]
    pub skipped: u32,
}

impl Undelivered {
    /// A notification not tried yet.
    pub fn new(sink: &str, notification: crate::alarm::AlarmNotification) -> Self {
        Self { sink: sink.to_owned(), notification, failures: 0, last_try: None, skipped: 0 }
    }

    /// Whether it is tried on a pass at `now`: after `n` failures, once `2^(n-1) - 1`
    /// passes have gone by without it (the next pass, then every 2nd, 4th, … pass), or
    /// once `cap` has passed since the last try, whichever comes first.
    pub fn due(&self, now: Timestamp, cap: Duration) -> bool {
        retry_due(self.failures, self.skipped, self.last_try, now, cap)
    }
}

/// Whether something that failed `failures` times, last at `last_try`, and has waited
/// `skipped` passes since, is tried at `now` ([`Undelivered::due`]).
pub(crate) fn retry_due(
    failures: u32,
    skipped: u32,
    last_try: Option<Timestamp>,
    now: Timestamp,
    cap: Duration,
) -> bool {
    let Some(n) = failures.checked_sub(1) else { return true };
    let wait = (1u64 << n.min(32)) - 1;
    u64::from(skipped) >= wait || last_try.is_none_or(|t| now >= after(t, cap))
}

/// Alarm notifications kept for a later pass — the engine's, not any environment's: what
/// a sink did not accept (or what waits behind it for the same alarm), and when each
/// `notification_failed` event was last written.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Outbox {
    /// Notifications to deliver, oldest first.
    pub pending: Vec<Undelivered>,
    /// When a `notification_failed` event was last written, per `environment/sink/alarm`
    /// (at most one an hour).
    pub failure_noted: BTreeMap<String, Timestamp>,
    /// The causes shared by alarms of several environments (SPEC §17), by cause: open ones,
    /// and closed ones some sink has not been told of yet.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub causes: BTreeMap<String, crate::cause::CauseRecord>,
    /// Passes in a row that could not read the expected-state source.
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub source_failures: u32,
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

impl Outbox {
    /// Nothing pending and nothing remembered.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
            && self.failure_noted.is_empty()
            && self.causes.is_empty()
            && self.source_failures == 0
    }
}

/// Every environment's state: the content of `state.json`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateFile {
    /// Format version; 1.
    pub schema: u32,
    /// Per environment.
    pub environments: BTreeMap<EnvName, EnvState>,
    /// Notifications kept for a later pass.
    #[serde(default, skip_serializing_if = "Outbox::is_empty")]
    pub outbox: Outbox,
    /// For a store that writes a snapshot and then a log of changes to it: which log
    /// continues this snapshot (0 when the store keeps none). A log of another generation
    /// is not applied to it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub generation: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl StateFile {
    /// The current format version.
    pub const SCHEMA: u32 = 1;

    /// An empty state.
    pub fn new() -> Self {
        Self { schema: Self::SCHEMA, environments: BTreeMap::new(), outbox: Outbox::default(), generation: 0 }
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
