//! Which environments the controller works on: a fixed list, or a source of them that
//! can change while the loop runs ([`Environments`], e.g. the CLI's `[[discover]]`
//! prefixes listed again every ref poll). An environment gone from a whole refresh is
//! retired by the controller: its open alarms resolved as `removed`, its record pruned.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use gitstate_core::{CommitId, EnvName, EnvironmentSpec};

use crate::controls::FreezeWindow;

/// A boxed error from a caller's [`Environments`] (a listing that failed): logged, and the
/// known environments kept.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Every ref a listing found, with its commit: what a ref poll need not look up again.
pub type Listed = HashMap<String, CommitId>;

/// One environment: what the engine runs (its ref, targets and their probes, remediator,
/// policy) and its freeze windows.
#[derive(Clone)]
pub struct Environment {
    /// The engine's spec of it.
    pub spec: EnvironmentSpec,
    /// Its freeze windows (SPEC §9); empty when it has none.
    pub windows: Vec<FreezeWindow>,
}

impl Environment {
    /// An environment with no freeze window.
    pub fn new(spec: EnvironmentSpec) -> Self {
        Self { spec, windows: Vec::new() }
    }

    /// Adds freeze windows.
    pub fn with_windows(mut self, windows: Vec<FreezeWindow>) -> Self {
        self.windows = windows;
        self
    }

    /// Its name.
    pub fn name(&self) -> &EnvName {
        &self.spec.name
    }
}

impl From<EnvironmentSpec> for Environment {
    fn from(spec: EnvironmentSpec) -> Self {
        Self::new(spec)
    }
}

/// What a refresh of the environments found.
#[derive(Default)]
#[non_exhaustive]
pub struct Refreshed {
    /// The whole new set, when it differs from the last one returned (`None`: unchanged).
    pub environments: Option<Vec<Environment>>,
    /// Refs the listing read, with their commits: a ref poll takes these as read. Return
    /// the very same `Arc` while the listing is unchanged: the poll then skips those refs.
    pub listed: Arc<Listed>,
}

impl Refreshed {
    /// Nothing changed, nothing listed.
    pub fn unchanged() -> Self {
        Self::default()
    }

    /// A new set of environments.
    pub fn changed(environments: Vec<Environment>) -> Self {
        Self { environments: Some(environments), listed: Arc::default() }
    }

    /// Sets the refs read while listing.
    pub fn with_listed(mut self, listed: Arc<Listed>) -> Self {
        self.listed = listed;
        self
    }
}

/// A set of environments that may change while the loop runs. The controller calls
/// [`Environments::refresh`] before every ref poll; an implementation answers from a
/// cache when nothing changed (the CLI compares a `[[discover]]` listing with the last).
#[async_trait]
pub trait Environments: Send + Sync {
    /// Lists the environments again.
    async fn refresh(&self) -> Result<Refreshed, BoxError>;
}
