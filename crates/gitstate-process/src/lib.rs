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
//!
//! The smallest complete use: a command that prints the commit it finds, read as one
//! instance, as a pass of the loop would ask it.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use gitstate_core::{ActualStateProbe, CommitId, EnvName, ProbeContext};
//! use gitstate_process::{ExecFormat, ExecProbe, ExecTarget};
//!
//! let sha = "4e69ed0b2a6b9a5d4e1c0f8a7b6c5d4e3f2a1b0c";
//! let probe = ExecProbe::new(
//!     ExecTarget {
//!         command: vec!["echo".into(), sha.into()], // argv, never a shell
//!         format: ExecFormat::Report,
//!         sha_pointer: None,
//!         timeout: ExecTarget::DEFAULT_TIMEOUT,
//!         max_bytes: ExecTarget::DEFAULT_MAX_BYTES,
//!     },
//!     std::env::temp_dir(),
//! );
//! let env = EnvName::new("production").unwrap();
//! let expected = CommitId::parse(sha).unwrap();
//! let readings = probe
//!     .observe(&ProbeContext { environment: &env, target: "api", expected: &expected })
//!     .await
//!     .unwrap();
//! assert_eq!(readings[0].result.as_ref().unwrap().to_string(), sha);
//! # }
//! ```
//!
//! The gitstate book explains the whole: `docs/` in the repository (`mdbook serve docs`):
//! *Exec: anything with a command line* (`docs/src/probes/exec.md`), and remediation in
//! *The loop* (`docs/src/loop.md`).
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
