//! What [`reconcile()`](super::reconcile) decides and why: [`Decision`] (the next state,
//! phase, actions, events, when to look again), [`Action`], [`Reason`] (which reads well in
//! a log line and an alarm), and what it is given besides the observation: the
//! [`ExpectedCommit`] and an operator's [`Controls`].

use std::fmt;
use std::time::Duration;

use jiff::Timestamp;

use crate::alarm::{AlarmChange, AlarmKind};
use crate::commit::CommitId;
use crate::event::EventKind;
use crate::state::{EnvState, Phase};

/// Something the pass must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Action {
    /// Run the environment's remediator; `attempt` is 1-based within the incident.
    Remediate {
        /// The attempt number.
        attempt: u32,
    },
    /// Notify the alarm sinks.
    Alarm {
        /// Raised, repeated or resolved.
        change: AlarmChange,
        /// Which alarm.
        kind: AlarmKind,
        /// When the alarm was raised.
        since: Timestamp,
        /// The expected commit the alarm is about: for one resolved as superseded, the
        /// previous one.
        expected: CommitId,
    },
    /// Move the environment's ref back from `from` (degraded, then vetoed) to `to` (the
    /// last verified commit): SPEC §15's `on_degraded = "rollback"`.
    Rollback {
        /// The bad commit (the ref must still point at it: compare-and-swap).
        from: CommitId,
        /// The last verified commit.
        to: CommitId,
    },
}

/// Why the decision is what it is: reads well in a log line and an alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// Every instance reports the expected commit.
    InSync,
    /// Drift within grace of the expected commit's arrival.
    WithinGrace {
        /// When grace ends.
        until: Timestamp,
    },
    /// A remediation was started and is settling.
    Settling {
        /// Attempts so far.
        attempt: u32,
        /// When the settle time ends.
        until: Timestamp,
    },
    /// Waiting before the next attempt.
    BackingOff {
        /// Attempts so far.
        attempt: u32,
        /// When the next may start.
        until: Timestamp,
    },
    /// A remediation is started now.
    Remediating {
        /// Its number.
        attempt: u32,
    },
    /// Every attempt was used and the environment is still drifted.
    AttemptsExhausted {
        /// Attempts made.
        attempts: u32,
    },
    /// Observe mode: drift is reported, never remediated.
    Observing,
    /// A target runs a commit Git never led to (or one whose relation to the ref is
    /// unknown); policy holds deploys back.
    DivergedHeld,
    /// Probes fail; the count of consecutive failing passes.
    ProbeFailing {
        /// Consecutive failing passes.
        passes: u32,
    },
    /// In sync again after flapping: the drift alarm stays open until `keep_firing_for` of
    /// unbroken in-sync passes has passed.
    KeepFiring {
        /// When the alarm resolves if every pass until then is in sync.
        until: Timestamp,
    },
    /// An operator suspended it.
    Suspended {
        /// When the suspension ends by itself, if it does.
        until: Option<Timestamp>,
    },
    /// Inside a freeze window.
    Frozen {
        /// When the window ends.
        until: Timestamp,
    },
    /// In sync on a commit not verified yet: its soak runs until then.
    Verifying {
        /// When the soak ends.
        until: Timestamp,
    },
    /// The soak failed its checks.
    Degraded {
        /// Failed runs within the soak.
        failures: u32,
        /// Whether a rollback was decided (or only advised: observe mode, suspended,
        /// frozen, `on_degraded = "alarm"`, or no verified commit to go back to).
        rollback: bool,
    },
    /// The expected commit is vetoed in this environment.
    Vetoed,
    /// The expected commit is not trusted (SPEC §18) and `on_untrusted = "block"`.
    Untrusted,
}

/// A time for people: to the second.
fn when(t: Timestamp) -> Timestamp {
    t.round(jiff::Unit::Second).unwrap_or(t)
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Reason::InSync => f.write_str("every instance runs the expected commit"),
            Reason::WithinGrace { until } => write!(f, "drift within grace until {}", when(until)),
            Reason::Settling { attempt, until } => {
                write!(f, "remediation attempt {attempt} settling until {}", when(until))
            }
            Reason::BackingOff { attempt, until } => {
                write!(f, "after attempt {attempt}, next attempt not before {}", when(until))
            }
            Reason::Remediating { attempt } => write!(f, "drift: starting remediation attempt {attempt}"),
            Reason::AttemptsExhausted { attempts } => {
                write!(f, "still drifted after {attempts} remediation attempt(s)")
            }
            Reason::Observing => f.write_str("drift observed; observe mode never remediates"),
            Reason::DivergedHeld => f.write_str(
                "a target runs a commit the ref never led to, or one whose relation to it is unknown; \
                 not overwriting it (on_diverged = \"alarm\")",
            ),
            Reason::ProbeFailing { passes } => write!(f, "probes failing for {passes} consecutive pass(es)"),
            Reason::Suspended { until: Some(until) } => {
                write!(f, "suspended by an operator until {}: not acting", when(until))
            }
            Reason::Suspended { until: None } => {
                f.write_str("suspended by an operator: not acting until resumed")
            }
            Reason::Frozen { until } => write!(f, "inside a freeze window until {}: not acting", when(until)),
            Reason::Verifying { until } => {
                write!(f, "in sync on a commit not verified yet; soaking until {}", when(until))
            }
            Reason::Degraded { failures, rollback: true } => {
                write!(f, "degraded: {failures} failed check run(s) during the soak; rolling back")
            }
            Reason::Degraded { failures, rollback: false } => {
                write!(f, "degraded: {failures} failed check run(s) during the soak; a rollback is advised")
            }
            Reason::Vetoed => f.write_str("the expected commit is vetoed here: not deploying it"),
            Reason::Untrusted => {
                f.write_str("the expected commit is not signed by an allowed key: not deploying it")
            }
            Reason::KeepFiring { until } => write!(
                f,
                "in sync again after flapping; the drift alarm stays open until {} (keep_firing_for)",
                when(until)
            ),
        }
    }
}

/// What [`reconcile()`](super::reconcile) decided for one environment.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The state to remember (attempts already counted for a remediation decided here).
    pub state: EnvState,
    /// The phase.
    pub phase: Phase,
    /// What to do now.
    pub actions: Vec<Action>,
    /// Audit events the observation itself caused (expected changed, drift detected, converged).
    pub events: Vec<EventKind>,
    /// Why the decision is what it is, for log lines and alarms.
    pub reason: Reason,
    /// When something may change without a new observation (grace, settle, backoff, renotify ends).
    pub requeue_after: Option<Duration>,
}

/// What the operator (and the calendar) say about acting on an environment now (SPEC §9).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Controls {
    /// Suspended by an operator: still probed and reported, never remediated, no new
    /// `drift`/`diverged` alarm. `Some(until)` ends by itself then (`None` inside: until resumed).
    pub suspended: Option<Option<Timestamp>>,
    /// Inside a freeze window that ends then: no remediation and no attempt consumed.
    pub frozen_until: Option<Timestamp>,
    /// An operator asked for a fresh set of attempts at this time (`gitstate retry`):
    /// applied once (the state remembers it), the incident's attempts go to zero.
    pub retry_requested_at: Option<Timestamp>,
    /// The commits vetoed in this environment (SPEC §15): while the ref points at one,
    /// nothing is remediated to it (phase `vetoed`, alarm `vetoed`).
    pub vetoed: Vec<CommitId>,
    /// SPEC §18, when `[source.trust]` is configured: the verdict on the move to the
    /// commit it names. A pass whose expected commit is not the one judged is not trusted
    /// yet (fail closed: nothing deployed until it is judged).
    pub trust: Option<Box<TrustGate>>,
    /// SPEC §18: commits instances run that are neither signed by an allowed key nor a
    /// trusted expected commit of this environment: alarm `unsigned_running` while any
    /// runs, whatever the phase.
    pub unsigned_running: Vec<CommitId>,
}

/// The trust verdict a pass is given (SPEC §18): reached by the runtime, applied by the
/// pure decision.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TrustGate {
    /// The expected commit judged.
    pub commit: CommitId,
    /// Whether the move to it is trusted.
    pub trusted: bool,
    /// `on_untrusted = "block"` (the default): an untrusted commit is never deployed;
    /// `false` (`"alarm"`): the alarm is raised and it is deployed anyway.
    pub block: bool,
    /// What is recorded and shown (`status`'s `trust`).
    pub record: crate::state::TrustRecord,
}

impl TrustGate {
    /// A verdict on `commit`.
    pub fn new(commit: CommitId, trusted: bool, block: bool, record: crate::state::TrustRecord) -> Self {
        Self { commit, trusted, block, record }
    }
}

/// What the environment's ref points at on a pass, and when it moved there if Git knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpectedCommit {
    /// The commit.
    pub commit: CommitId,
    /// The time of the ref's reflog entry that set `commit`, when the repository keeps a
    /// reflog: the convergence lag is measured from it (else from the pass that first saw it).
    pub moved_at: Option<Timestamp>,
}

impl From<CommitId> for ExpectedCommit {
    fn from(commit: CommitId) -> Self {
        Self { commit, moved_at: None }
    }
}

impl From<&CommitId> for ExpectedCommit {
    fn from(commit: &CommitId) -> Self {
        Self::from(*commit)
    }
}
