//! # gitstate-core
//!
//! The small, stable core of gitstate: Git holds the expected state of every
//! environment, probes report the actual state, and [`reconcile()`] decides what to do.
//!
//! - Types: [`CommitId`], [`ReportedCommit`], [`EnvName`], [`Status`], [`Policy`],
//!   [`EnvState`], [`Decision`].
//! - Plugin traits, one per role: [`ExpectedState`], [`ActualStateProbe`], [`Remediator`],
//!   [`AlarmSink`], [`Journal`]. Implement them with `#[async_trait]` and store them as
//!   `Arc<dyn …>`.
//! - The pure decision function [`reconcile()`] (no clock, no I/O).
//! - The runtime-agnostic pass [`Engine`]: resolve, probe, classify, decide, act.
//! - [`git`] (feature `git`, on by default): Git repositories, local or remote, as the
//!   expected state.
//! - [`child`] (feature `child`, part of `git`): the rules a child process follows (own
//!   process group, killed on drop, a bounded output tail), runtime-agnostic.
//! - [`probe`]: everything a probe author needs, in one import.
//!
//! Every other item has one path, at the root; the modules behind them are private.
//!
//! No async runtime, HTTP client or cloud SDK is a dependency of this crate (the
//! `git-https` feature, off by default, adds gix's HTTP transport).
//!
//! The smallest complete use: what to do about an environment whose one instance runs
//! the commit before the expected one, past its grace, never remediated before.
//!
//! ```
//! use gitstate_core::{Action, Assessment, CommitId, Policy, Status, reconcile};
//!
//! let expected = CommitId::parse(&"a".repeat(40)).unwrap();
//! let now = jiff::Timestamp::from_second(1_800_000_000).unwrap();
//! let seen = Assessment::of_statuses([Status::Behind]);
//! let policy = Policy { grace: std::time::Duration::ZERO, ..Policy::default() };
//! let decision = reconcile(&expected, &seen, None, &policy, now);
//! assert!(decision.actions.iter().any(|a| matches!(a, Action::Remediate { .. })));
//! ```
//!
//! The gitstate book explains the whole: `docs/` in the repository (`mdbook serve docs`):
//! *Concepts* (`docs/src/concepts.md`) for the words, *The loop* (`docs/src/loop.md`) for
//! what `reconcile` decides, *Writing your own probe* (`docs/src/probes/custom.md`).
// The workspace denies `unsafe`; libraries forbid it outright (only the binary's
// allocator tuning, `gitstate-cli/src/memory.rs`, allows it).
#![forbid(unsafe_code)]

mod alarm;
mod cause;
#[cfg(feature = "child")]
pub mod child;
mod commit;
mod engine;
mod error;
mod event;
#[cfg(feature = "git")]
pub mod git;
mod links;
mod meta;
mod name;
mod observation;
mod panic;
mod plugin;
mod policy;
mod reconcile;
mod redact;
mod report;
mod signed;
mod state;
mod text;
pub mod verify;

/// Everything a probe author needs, in one import (`use gitstate_core::probe::*;`): the
/// trait and what it is given and returns, commit parsing, and what it takes to run the
/// probe in a pass of the engine.
pub mod probe {
    pub use crate::commit::{CommitId, ReportedCommit};
    pub use crate::engine::{Engine, EnvironmentSpec, PassMode, TargetSpec};
    #[cfg(feature = "git")]
    pub use crate::git::GitSource;
    pub use crate::name::EnvName;
    pub use crate::observation::{FailureKind, ProbeFailure, Reading, Status};
    pub use crate::plugin::{ActualStateProbe, ProbeContext};
    pub use crate::policy::Policy;
    pub use async_trait::async_trait;
}

pub use alarm::{
    AlarmChange, AlarmEvent, AlarmKind, AlarmNotification, AlarmTarget, CauseEvent, CauseNotification,
    Resolution,
};
pub use async_trait::async_trait;
pub use cause::{
    Cause, CauseError, CauseMember, CauseRecord, Symptoms, Told, assign as assign_cause, instance_origin,
};
pub use commit::{CommitId, CommitIdError, MIN_ABBREV, ReportedCommit};
pub use engine::{
    DEFAULT_MAX_COMMITS, DEFAULT_PROBE_TIMEOUT, Delivery, Engine, EnvironmentSpec, Fleet, PassMode,
    PassOutcome, TargetSpec, Timer,
};
pub use error::{
    ExpectedError, JournalError, SinkError, chain as error_chain, chain_after as error_chain_after,
};
pub use event::{Event, EventKind, LagFrom};
pub use links::Links;
pub use meta::{AUTO_POINTERS, parse_report};
pub use name::{EnvName, EnvNameError};
pub use observation::{
    Assessment, CommitInfo, FailureKind, InstanceObservation, ProbeFailure, Reading, Related, Relation,
    Status, TargetObservation,
};
pub use panic::message as panic_message;
pub use plugin::{
    ActualStateProbe, AlarmSink, Expected, ExpectedState, Grouping, Journal, ProbeContext,
    RemediationOutcome, RemediationRequest, Remediator,
};
pub use policy::{MAX_DURATION, Mode, OnDiverged, Policy, Severity, parse_duration};
pub use reconcile::{
    Action, Controls, Decision, ExpectedCommit, Reason, TrustGate, reconcile, reconcile_with,
};
pub use redact::{Redacted, RedactedUrl, redact_text, redact_url};
pub use report::{ActionReport, EnvironmentReport, Report};
pub use signed::{SignedCommit, split_signature};
pub use state::{
    EnvState, ExpectedRecord, Incident, OpenAlarm, Outbox, Phase, Running, StateFile, TrustRecord,
    Undelivered,
};
pub use text::escape_control;
