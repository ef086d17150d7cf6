//! # gitstate-runtime
//!
//! The closed loop of gitstate as a library, for deploy tools that link it: the
//! [`Controller`] watches what Git says each environment should run, probes what runs,
//! re-triggers deployments that drifted, raises and resolves alarms, and remembers it all
//! in a [`Store`] — the same code `gitstate watch` and `gitstate reconcile` run.
//!
//! Used whole or à la carte (as kube-runtime's `Controller`, `scheduler` and `reflector`):
//!
//! - [`controller`]: [`Controller`] and its [`Options`]; [`Trigger`] for push webhooks.
//! - [`schedule`]: the timing alone — full passes with jitter, ref polls, requeues, one
//!   pass or remediation in flight per environment, a bounded drain — over any
//!   [`schedule::Driver`].
//! - [`store`]: the [`Store`] trait and the [`FileStore`] (a state directory); the
//!   PostgreSQL store is in `gitstate-postgres`.
//! - [`leadership`]: who may act ([`Leadership`], [`Sole`]).
//! - [`controls`]: suspend, resume, retry, freeze windows.
//! - [`operate`]: an operator's requests to a running loop ([`operate::Operator`]), as
//!   the dashboard's buttons make them.
//! - [`view`]: what dashboards, `/status` and metrics read ([`View`], [`Observer`]).
//! - [`environments`]: fixed or discovered environments ([`Environments`]).
//! - [`refwatch`]: file-system notification of a local repository's refs.
//! - [`trust`]: signed commits (SPEC §18): the verdict on each move, before it is deployed.
//!
//! ```no_run
//! # async fn demo(
//! #     source: std::sync::Arc<dyn gitstate_core::ExpectedState>,
//! #     spec: gitstate_core::EnvironmentSpec,
//! #     shutdown: impl std::future::Future<Output = ()>,
//! # ) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use gitstate_runtime::{Controller, FileStore};
//!
//! // One process per state directory: hold its lock while the loop runs.
//! let _lock = FileStore::lock("state".as_ref())?;
//! let store = Arc::new(FileStore::open("state".as_ref())?);
//! // `source`: e.g. `gitstate_core::git::GitSource::local("/srv/repo")?`.
//! let controller = Controller::builder(source, store).environment(spec).build();
//! controller.run(shutdown).await?;
//! # Ok(()) }
//! ```
//!
//! A whole program — a local repository, one HTTP target, a deploy command, a state
//! directory — is `examples/embed_loop.rs` in the repository.
//!
//! The gitstate book explains the whole: `docs/` in the repository (`mdbook serve docs`):
//! *Embedding the library* (`docs/src/embedding.md`), *The loop* (`docs/src/loop.md`),
//! *Operator controls* (`docs/src/operating/controls.md`).
// The workspace denies `unsafe`; libraries forbid it outright (only the binary's
// allocator tuning, `gitstate-cli/src/memory.rs`, allows it).
#![forbid(unsafe_code)]

pub mod actions;
pub mod controller;
pub mod controls;
pub mod dora;
pub mod environments;
pub mod fleet;
pub mod fs;
pub mod leadership;
pub mod operate;
mod overrides;
mod prefetched;
pub mod refwatch;
pub mod schedule;
pub mod status;
pub mod store;
pub mod trust;
pub mod view;

pub use controller::{Builder, Controller, OnePass, Options, Trigger};
pub use environments::{Environment, Environments, Refreshed};
pub use leadership::{Fence, Leadership, Shard, Sole};
pub use prefetched::Prefetched;
pub use store::{FileStore, Store, StoreError};
pub use view::{Observer, View};
