//! The leader's writes ([`Journal`], what the engine calls): environment records,
//! events and the outbox, each in a transaction fenced by the leader lock
//! (`PgStore::fenced`), an environment whose only change is its in-sync time written at
//! most every [`IN_SYNC_WRITTEN_EVERY`].

use async_trait::async_trait;
use gitstate_core::{EnvName, EnvState, Event, Journal, JournalError, Outbox};
use gitstate_runtime::store::IN_SYNC_WRITTEN_EVERY;

use crate::PgStore;
use crate::store::{Fencing, RECENT};

#[async_trait]
impl Journal for PgStore {
    /// Writes the environments that changed. As with the files, one whose only change is
    /// its `last_in_sync_at` is written at most every [`IN_SYNC_WRITTEN_EVERY`]: a
    /// quiet pass over 10,000 environments writes no row.
    async fn checkpoint(&self, states: &[(EnvName, EnvState)]) -> Result<(), JournalError> {
        let refresh_in_sync =
            self.in_sync_written.lock().unwrap_or_else(|p| p.into_inner()).elapsed() >= IN_SYNC_WRITTEN_EVERY;
        let changed: Vec<(String, serde_json::Value)> = {
            let cache = self.cache();
            states
                .iter()
                .filter(|(n, s)| match cache.file.environments.get(n) {
                    Some(old) if old == s => false,
                    Some(old) if old.same_but_in_sync_time(s) => refresh_in_sync,
                    _ => true,
                })
                .filter_map(|(n, s)| Some((n.as_str().to_owned(), serde_json::to_value(s).ok()?)))
                .collect()
        };
        self.write_states(changed).await?;
        if refresh_in_sync {
            *self.in_sync_written.lock().unwrap_or_else(|p| p.into_inner()) = std::time::Instant::now();
        }
        let mut cache = self.cache();
        for (n, s) in states {
            cache.file.environments.insert(n.clone(), s.clone());
        }
        Ok(())
    }

    async fn record(&self, events: &[Event]) -> Result<(), JournalError> {
        if events.is_empty() {
            return Ok(());
        }
        let cluster = self.config.cluster.clone();
        let rows: Vec<serde_json::Value> =
            events.iter().filter_map(|e| serde_json::to_value(e).ok()).collect();
        let fencing = self.fencing(events.iter().map(|e| e.environment.as_str()))?;
        self.fenced("appending events", fencing, async |tx, seq| {
            let stmt =
                tx.prepare("INSERT INTO gitstate_events (cluster, event, seq) VALUES ($1, $2, $3)").await?;
            for event in &rows {
                tx.execute(&stmt, &[&cluster, event, &seq]).await?;
            }
            Ok(())
        })
        .await?;
        let mut cache = self.cache();
        cache.recent.extend(events.iter().cloned());
        let over = cache.recent.len().saturating_sub(RECENT);
        cache.recent.drain(..over);
        Ok(())
    }

    async fn forget(&self, environments: &[EnvName]) -> Result<(), JournalError> {
        let cluster = self.config.cluster.clone();
        let names: Vec<String> = environments.iter().map(|n| n.as_str().to_owned()).collect();
        let fencing = self.fencing(names.iter().map(String::as_str))?;
        // Kept as a tombstone with its change number, so that other replicas' catch-up
        // sees it go; a full read skips it.
        self.fenced("forgetting environments", fencing, async |tx, seq| {
            tx.execute(
                "UPDATE gitstate_environments SET deleted = true, state = '{}', seq = $3, updated_at = now()
                 WHERE cluster = $1 AND name = ANY($2)",
                &[&cluster, &names, &seq],
            )
            .await?;
            Ok(())
        })
        .await?;
        let mut cache = self.cache();
        for n in environments {
            cache.file.environments.remove(n);
        }
        Ok(())
    }

    async fn outbox(&self) -> Result<Outbox, JournalError> {
        Ok(self.cache().file.outbox.clone())
    }

    async fn save_outbox(&self, outbox: &Outbox) -> Result<(), JournalError> {
        if self.cache().file.outbox == *outbox {
            return Ok(());
        }
        let cluster = self.config.cluster.clone();
        let replica = self.config.replica.clone();
        let value = serde_json::to_value(outbox).unwrap_or_default();
        if self.config.shards {
            // Each replica notifies for its own slots: its own outbox.
            self.fenced("writing the outbox", Fencing::Replica, async |tx, _| {
                tx.execute(
                    "INSERT INTO gitstate_replica_outbox (cluster, replica, outbox) VALUES ($1, $2, $3)
                     ON CONFLICT (cluster, replica) DO UPDATE SET outbox = $3",
                    &[&cluster, &replica, &value],
                )
                .await?;
                Ok(())
            })
            .await?;
        } else {
            self.fenced("writing the outbox", Fencing::Leader, async |tx, _| {
                tx.execute(
                    "INSERT INTO gitstate_outbox (cluster, outbox) VALUES ($1, $2)
                     ON CONFLICT (cluster) DO UPDATE SET outbox = $2",
                    &[&cluster, &value],
                )
                .await?;
                Ok(())
            })
            .await?;
        }
        self.cache().file.outbox = outbox.clone();
        Ok(())
    }
}
