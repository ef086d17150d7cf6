//! Where the loop's memory lives: the [`Store`] trait, its error [`StoreError`], and the
//! store in files ([`FileStore`], SPEC §7 "State"). The PostgreSQL store of replicas is in
//! the `gitstate-postgres` crate; both pass the same contract suite
//! ([`contract`], feature `contract-tests`).
//!
//! "State" here is what the loop remembers of every environment (core's
//! `EnvState`, one record per environment); the store is where
//! those records, the events, the outbox and what operators said are kept.

use std::collections::BTreeMap;
use std::path::PathBuf;

use async_trait::async_trait;
use gitstate_core::{EnvName, EnvState, Event, Journal, JournalError};

use crate::overrides::Overrides;

// Documented whatever the features, so that the links to it resolve.
#[cfg(any(feature = "contract-tests", doc))]
pub mod contract;
mod file;

pub use file::{FileStore, IN_SYNC_WRITTEN_EVERY, Lock, Rotation};

/// Why a store could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another process holds the lock.
    #[error("the state lock {path} is held by {holder}: another gitstate reconcile or watch is running")]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// Who holds it, e.g. `pid 1234`.
        holder: String,
    },
    /// A stored record cannot be read as gitstate state; it is left untouched.
    #[error(
        "corrupt state file {path}: {message}; it was left untouched: fix it, or move it away to start with no memory"
    )]
    Corrupt {
        /// The file (or, in a database, the row), with the line when known.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The database could not be used.
    #[error("PostgreSQL: {message}")]
    Database {
        /// What failed, and the server's code and message.
        message: String,
    },
    /// This replica does not hold its cluster's leader lock (any longer): it writes nothing.
    #[error("not the leader of cluster {cluster:?}: this replica writes nothing")]
    NotLeader {
        /// The cluster.
        cluster: String,
    },
    /// With shards (SPEC §19): this replica does not hold the slot of the environment it
    /// would write for (any longer): it writes nothing for it.
    #[error(
        "cluster {cluster:?}: {environment} is not leased to this replica (any longer): it writes nothing for it"
    )]
    NotOwner {
        /// The cluster.
        cluster: String,
        /// The environment (or slot) written for.
        environment: String,
    },
    /// An I/O error on a state file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl From<StoreError> for JournalError {
    fn from(e: StoreError) -> Self {
        let (path, message) = match e {
            StoreError::Io { path, source } => (path, source.to_string()),
            StoreError::Corrupt { path, message } => (path, message),
            StoreError::Locked { path, holder } => (path, format!("held by {holder}")),
            e
            @ (StoreError::Database { .. } | StoreError::NotLeader { .. } | StoreError::NotOwner { .. }) => {
                (PathBuf::from("postgres"), e.to_string())
            }
        };
        JournalError { path: path.display().to_string(), message }
    }
}

/// A change to what operators said, applied under the store's own lock.
pub type OverridesChange<'a> = Box<dyn FnOnce(&mut Overrides) + Send + 'a>;

/// Where the loop's memory lives, as the controller, its views and the operator commands
/// see it. The engine writes through the [`Journal`] half (environment records before each
/// remediation and after each pass, events, the outbox); the rest reads it, and carries
/// what operators say (`suspend`, `resume`, `retry`) to a running loop.
///
/// Implementations: [`FileStore`] (one process, under a lock file) and the PostgreSQL
/// store of `gitstate-postgres` (replicas; writes fenced by its leadership). Both run the
/// contract suite ([`contract`], feature `contract-tests`).
#[async_trait]
pub trait Store: Journal + std::fmt::Debug {
    /// Every environment's record as this process knows it.
    fn environments(&self) -> BTreeMap<EnvName, EnvState>;
    /// The records of `names` only (those known): what a pass of a few environments
    /// needs, without a copy of every other one.
    fn environments_among(&self, names: &[EnvName]) -> BTreeMap<EnvName, EnvState>;
    /// The names of the environments with a record.
    fn names(&self) -> Vec<EnvName>;
    /// The latest `n` events (oldest first), from memory.
    fn recent_events(&self, n: usize) -> Vec<Event>;
    /// Every event at or after `since` (oldest first), read from where they are kept
    /// (`gitstate dora`, `where`'s `since`). The default: those in memory.
    async fn events_since(&self, since: jiff::Timestamp) -> Result<Vec<Event>, StoreError> {
        Ok(self.recent_events(usize::MAX).into_iter().filter(|e| e.at >= since).collect())
    }
    /// What operators said (`suspend`, `resume`, `retry`), as last read.
    fn overrides(&self) -> Result<Overrides, StoreError>;
    /// Changes what operators said, atomically against other writers (another operator's
    /// command, a running loop); returns the overrides as written.
    async fn update_overrides(&self, change: OverridesChange<'_>) -> Result<Overrides, StoreError>;
    /// Appends events written by an operator's command: whoever this process is, leader
    /// or not (the loop's own events go through [`Journal::record`], fenced).
    async fn append_unfenced(&self, events: &[Event]) -> Result<(), StoreError>;
    /// Reads what operators wrote since the last call (every ref poll).
    async fn refresh(&self) -> Result<(), StoreError>;
    /// Reads everything another writer may have written (a standby replica does so while
    /// it does not lead; a no-op where only one process writes).
    async fn reload(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Writes what is held back (in-sync times written lazily): at shutdown, and after a
    /// one-shot pass.
    async fn flush(&self) -> Result<(), StoreError>;
}

/// Adds `fresh` (keys `map` lacks) to `map`: one at a time when they are few, else by
/// building the map anew in bulk, which leaves its nodes full (inserting keys in order
/// one after another leaves them about half full: at 50,000 records, megabytes).
pub fn merge_new<K: Ord, V>(map: &mut BTreeMap<K, V>, fresh: Vec<(K, V)>) {
    if fresh.len() < 64 {
        map.extend(fresh);
        return;
    }
    let old = std::mem::take(map);
    *map = old.into_iter().chain(fresh).collect();
}

/// The entries of `all` named in `names`, copied.
pub fn among(all: &BTreeMap<EnvName, EnvState>, names: &[EnvName]) -> BTreeMap<EnvName, EnvState> {
    names.iter().filter_map(|n| Some((n.clone(), all.get(n)?.clone()))).collect()
}
