//! # gitstate
//!
//! Git as the source of truth for what runs where. This facade re-exports
//! [`gitstate_core`] as [`core`] always, and each other library crate behind a feature of
//! the same name: `http` (probe, remediator and alarm sinks over HTTP), `aws` (the
//! resource-tag probe), `runtime` (the closed loop as a library: controller, stores,
//! controls), `postgres` (the PostgreSQL store and leadership), `process` (the exec
//! probe and the command remediator) and `trust` (commit signatures, SSH and OpenPGP). The command-line tool is `gitstate-cli`.
//!
//! ```
//! use gitstate::core::{Assessment, CommitId, Policy, Status, reconcile};
//! let expected = CommitId::parse(&"a".repeat(40)).unwrap();
//! let now = jiff::Timestamp::from_second(1_800_000_000).unwrap();
//! let seen = Assessment::of_statuses([Status::InSync]);
//! let d = reconcile(&expected, &seen, None, &Policy::default(), now);
//! assert!(d.actions.is_empty());
//! ```
//!
//! The gitstate book explains the whole: `docs/` in the repository (`mdbook serve docs`);
//! the README is its front door.
// The workspace denies `unsafe`; libraries forbid it outright (only the binary's
// allocator tuning, `gitstate-cli/src/memory.rs`, allows it).
#![forbid(unsafe_code)]

#[cfg(feature = "aws")]
pub use gitstate_aws as aws;
pub use gitstate_core as core;
#[cfg(feature = "http")]
pub use gitstate_http as http;
#[cfg(feature = "postgres")]
pub use gitstate_postgres as postgres;
#[cfg(feature = "process")]
pub use gitstate_process as process;
#[cfg(feature = "runtime")]
pub use gitstate_runtime as runtime;
#[cfg(feature = "trust")]
pub use gitstate_trust as trust;
