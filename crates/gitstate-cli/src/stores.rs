//! The configured store, opened for each kind of command: the files of `[state] dir`
//! (under their lock when the command acts) or PostgreSQL (`[state] postgres`).

use std::sync::Arc;

use gitstate_postgres::PgStore;
use gitstate_runtime::store::Lock;
use gitstate_runtime::{FileStore, Store};

use crate::config::Config;

/// To read only: no lock, nothing created (`status`, `reconcile --dry-run`).
pub async fn read_only(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match &config.postgres {
        Some(pg) => Arc::new(PgStore::open(pg).await?),
        None => Arc::new(FileStore::open_read_only(&config.state_dir)?),
    })
}

/// For an operator's command (`suspend`, `resume`, `retry`): writes what operators say and
/// their events, whether or not a loop runs.
pub async fn for_control(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match &config.postgres {
        Some(pg) => Arc::new(PgStore::open(pg).await?),
        None => Arc::new(FileStore::open(&config.state_dir)?.with_rotation(config.events)),
    })
}

/// For one pass that acts (`reconcile`), holding the state lock: in files, the lock file;
/// in PostgreSQL, the cluster's leader lock, or an error naming who holds it (a running
/// watch).
pub async fn for_pass(config: &Config) -> anyhow::Result<(Arc<dyn Store>, Option<Lock>)> {
    if let Some(pg) = &config.postgres {
        let store = PgStore::open(pg).await?;
        if !store.try_lead().await? {
            let holder = store.holder().await?.map_or("another replica".to_owned(), |h| h.to_string());
            anyhow::bail!(
                "the leader lock of cluster {:?} is held by {holder}: a watch leads it; reconcile acts only where nothing else does",
                pg.cluster
            );
        }
        return Ok((Arc::new(store), None));
    }
    let lock = FileStore::lock(&config.state_dir)?;
    let store = FileStore::open(&config.state_dir)?.with_rotation(config.events);
    Ok((Arc::new(store), Some(lock)))
}
