//! # gitstate-process
//!
//! Child processes done once, for gitstate: the exec probe ([`ExecProbe`], SPEC §10) reads
//! what a command prints as a target's actual state, and the command remediator
//! ([`CommandRemediator`]) runs a deploy command. Both run argv (never a shell) with stdin
//! closed, in a process group of their own that is stopped as a whole at a deadline or
//! when the run is dropped, and keep a bounded part of the output: one module does that
//! for both, on the runtime-agnostic rules of [`gitstate_core::child`].
//!
//! Runs on tokio (process, pipes, timers); emits `tracing` events, installs nothing.
// The workspace denies `unsafe`; libraries forbid it outright (only the binary's
// allocator tuning, `gitstate-cli/src/memory.rs`, allows it).
#![forbid(unsafe_code)]

mod check;
mod child;
mod command;
mod exec;

pub use check::ExecCheck;
pub use child::OUTPUT_GRACE;
pub use command::{CommandRemediator, KILL_GRACE, TAIL_BYTES};
pub use exec::{ExecFormat, ExecProbe, ExecTarget, parse_lines};
/// What stops a [`CommandRemediator`]'s runs (a loop shutting down cancels it: SIGTERM to
/// the process group, SIGKILL [`KILL_GRACE`] later); give the same token to the
/// runtime's controller (`Builder::stop_token`).
pub use tokio_util::sync::CancellationToken;
