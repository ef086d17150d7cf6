//! # gitstate-postgres
//!
//! Replicas of gitstate's loop sharing one state in PostgreSQL (SPEC §14): [`PgStore`] is
//! both the [`Store`](gitstate_runtime::Store) (environment records, events, the outbox,
//! what operators said) and the [`Leadership`](gitstate_runtime::Leadership) of a
//! cluster. The leader is the replica whose session holds the cluster's advisory lock;
//! every write it makes runs in a transaction that first checks, in that transaction,
//! that its session still holds the lock (fencing), so a leader cut off from the database
//! writes nothing. Migrations are versioned and applied by the program itself.
//!
//! With [`PgOptions::with_shards`] (SPEC §19) replicas share the environments instead:
//! each leases a fair share of [`SLOTS`] slots ([`slot_of`] an environment's), acts and
//! probes only for its own, and fences every write by its slots' leases (the leader lock
//! is then the cluster's notifier's). Every write takes the cluster's next change number,
//! so a standby or a slot's new owner reads only what changed ([`PgStore::catch_up`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), gitstate_runtime::StoreError> {
//! use std::sync::Arc;
//! use gitstate_postgres::{PgOptions, PgStore};
//!
//! let pg = Arc::new(PgStore::open_replica(&PgOptions::new("postgresql://gitstate@db/gitstate")).await?);
//! // Controller::builder(source, pg.clone()).leadership(pg.clone()) …
//! # Ok(()) }
//! ```
//!
//! The gitstate book explains the whole: `docs/` in the repository (`mdbook serve docs`):
//! *High availability and shards* (`docs/src/operating/high-availability.md`).
// The workspace denies `unsafe`; libraries forbid it outright (only the binary's
// allocator tuning, `gitstate-cli/src/memory.rs`, allows it).
#![forbid(unsafe_code)]

mod connect;
mod journal;
mod leader;
mod migrate;
mod shards;
mod store;

pub use leader::Holder;
pub use migrate::{MIGRATIONS, migrate};
pub use shards::{Round, SLOTS, fair_share, slot_of};
pub use store::{PgOptions, PgStore};

#[cfg(test)]
mod tests;
