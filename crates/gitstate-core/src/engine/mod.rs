//! The pass [`Engine`]: one pass of resolve → probe → classify → decide → act, shared by
//! the CLI (`check`, `reconcile`, `watch`) and by any deploy tool that embeds gitstate.
//!
//! Read in pipeline order:
//! - `spec.rs`: what a pass is given ([`EnvironmentSpec`], [`TargetSpec`], [`PassMode`]);
//! - `setup.rs`: the [`Engine`], built from a source, sinks, a journal and options;
//! - `pass.rs`: the pass itself, [`Engine::run_pass`], which calls the steps below in
//!   order and the pure [`crate::reconcile()`] to decide;
//! - `observe.rs`: refs resolved, every target probed within its deadline ([`Timer`],
//!   `timer.rs`);
//! - `classify.rs`: each reported commit classified against the history (drift);
//! - `act.rs`: checkpoint, then remediate (inline, or deferred: [`Engine::remediate`]);
//! - `notify.rs`: alarm text, delivery and retries;
//! - `group.rs`: alarms folded into the causes they share, one page per cause;
//! - `outcome.rs`: what the pass returns ([`PassOutcome`], [`Delivery`]);
//! - `remove.rs`: retiring environments the configuration no longer has
//!   ([`Engine::remove`]).
//!
//! Runtime-agnostic: it uses `futures` only. Probes of every target of every environment
//! run concurrently up to [`Engine::with_concurrency`]; remediations of different environments
//! run concurrently, at most one per environment. The engine owns persistence: before any
//! remediation starts the decided states go through [`Journal::checkpoint`] (so a crash
//! never forgets an attempt), and at the end of the pass the final states and the pass's
//! events do; callers only read [`PassOutcome::states`].
//!
//! [`Journal::checkpoint`]: crate::Journal::checkpoint

mod act;
mod classify;
mod group;
mod notify;
mod observe;
mod outcome;
mod pass;
mod remove;
mod setup;
mod spec;
mod timer;

pub use outcome::{Delivery, PassOutcome};
pub use setup::{DEFAULT_MAX_COMMITS, Engine, Fleet};
pub use spec::{DEFAULT_PROBE_TIMEOUT, EnvironmentSpec, PassMode, TargetSpec};
pub use timer::Timer;
