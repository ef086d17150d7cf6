//! # gitstate
//!
//! Git as the source of truth for what runs where. This facade re-exports
//! [`gitstate_core`] as [`core`]; adapters live in `gitstate-http` and `gitstate-aws`,
//! the command-line tool in `gitstate-cli`.
//!
//! ```
//! use gitstate::core::{Assessment, CommitId, Policy, Status, reconcile};
//! let expected = CommitId::parse(&"a".repeat(40)).unwrap();
//! let now = jiff::Timestamp::from_second(1_800_000_000).unwrap();
//! let seen = Assessment::of_statuses([Status::InSync]);
//! let d = reconcile(&expected, &seen, None, &Policy::default(), now);
//! assert!(d.actions.is_empty());
//! ```

pub use gitstate_core as core;
