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
//!
//! No async runtime, HTTP client or cloud SDK is a dependency of this crate (the
//! `git-https` feature, off by default, adds gix's HTTP transport).

pub mod alarm;
pub mod commit;
pub mod engine;
pub mod error;
pub mod event;
#[cfg(feature = "git")]
pub mod git;
pub mod name;
pub mod observation;
pub mod panic;
pub mod plugin;
pub mod policy;
pub mod reconcile;
pub mod redact;
pub mod report;
pub mod state;
pub mod text;

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

pub use alarm::{AlarmChange, AlarmEvent, AlarmKind, AlarmNotification, AlarmTarget, Resolution};
pub use async_trait::async_trait;
pub use commit::{CommitId, CommitIdError, ReportedCommit};
pub use engine::{DEFAULT_PROBE_TIMEOUT, Engine, EnvironmentSpec, PassMode, PassOutcome, TargetSpec};
pub use error::{ExpectedError, JournalError, SinkError};
pub use event::{Event, EventKind};
pub use name::{EnvName, EnvNameError};
pub use observation::{
    Assessment, FailureKind, InstanceObservation, ProbeFailure, Reading, Relation, Status, TargetObservation,
};
pub use plugin::{
    ActualStateProbe, AlarmSink, Expected, ExpectedState, Journal, ProbeContext, RemediationOutcome,
    RemediationRequest, Remediator,
};
pub use policy::{Mode, OnDiverged, Policy};
pub use reconcile::{Action, Decision, Reason, reconcile};
pub use report::{ActionReport, EnvironmentReport, Report};
pub use state::{EnvState, Incident, OpenAlarm, Phase, StateFile};
