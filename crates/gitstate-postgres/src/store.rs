//! State, events, overrides and leadership in PostgreSQL (SPEC §14): [`PgStore`].
//!
//! Every replica of `watch` connects; the **leader** is the one whose session holds the
//! session-level advisory lock of its cluster (`pg_try_advisory_lock(LOCK_CLASS, key)`).
//! Only the leader writes, and every write runs in a transaction that first checks, in
//! that transaction, that its session still holds the lock (**fencing**): a leader whose
//! connection was cut, even one that reconnected, writes nothing and steps down. When the
//! leader's session ends (its process died, its connection was cut), PostgreSQL releases
//! the lock at once and a standby, which tries every `failover / 3`, takes it.
//!
//! Tables (versioned migrations in [`MIGRATIONS`], applied by gitstate itself under a
//! transaction-level advisory lock, so that two replicas starting together migrate once):
//! `gitstate_environments` (one row per environment: its state as JSON),
//! `gitstate_events` (append-only), `gitstate_outbox`, `gitstate_overrides` (one row
//! each per cluster), `gitstate_leaders` (who leads, for messages).

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use gitstate_core::{EnvName, EnvState, Event, StateFile};
use gitstate_runtime::controls::{OVERRIDES_SCHEMA, Override, Overrides};
use gitstate_runtime::store::{OverridesChange, among};
use gitstate_runtime::{Store, StoreError};
use tokio_postgres::Client;

use crate::connect::{Session, connect, db_error};
use crate::leader::{cluster_key, holds_lock};
use crate::migrate::migrate;

/// Where the cluster's state lives and how replicas share it (`[state] postgres`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PgOptions {
    /// The connection string, as libpq takes it: a `postgresql://` URL or `key=value`
    /// pairs (`sslmode` honoured, TLS through rustls with the platform's roots).
    pub url: String,
    /// Replicas with the same cluster name share one leader and one state (default
    /// `"default"`).
    pub cluster: String,
    /// How soon a standby takes over once the leader's session ends (default 15 s).
    pub failover: Duration,
}

impl PgOptions {
    /// The options for `url`, cluster `default`, failover 15 s.
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into(), cluster: "default".into(), failover: Duration::from_secs(15) }
    }

    /// Sets the cluster name.
    pub fn with_cluster(mut self, cluster: impl Into<String>) -> Self {
        self.cluster = cluster.into();
        self
    }

    /// Sets the failover time.
    pub fn with_failover(mut self, failover: Duration) -> Self {
        self.failover = failover;
        self
    }
}

/// Events kept in memory for the dashboard.
pub(crate) const RECENT: usize = 500;

/// What the store holds in memory.
#[derive(Debug, Default)]
pub(crate) struct Cache {
    pub(crate) file: StateFile,
    pub(crate) overrides: Overrides,
    pub(crate) recent: VecDeque<Event>,
}

/// The state of one cluster in PostgreSQL, and this process's part in its leadership.
pub struct PgStore {
    pub(crate) config: PgOptions,
    /// Sessions end after this long idle (a `watch` replica's: `failover`).
    idle_timeout: Option<Duration>,
    pub(crate) key: i32,
    session: tokio::sync::Mutex<Option<Session>>,
    /// Whether the current session is open: the moment it closes (the server went away,
    /// an administrator terminated it), this replica stops acting.
    pub(crate) alive: Mutex<Arc<AtomicBool>>,
    pub(crate) leader: AtomicBool,
    /// Grows each time this replica takes the lead: the fencing token of its writes.
    pub(crate) epoch: std::sync::atomic::AtomicU64,
    /// When this replica last stopped leading: it leaves the lock to the others for a
    /// `failover` after that, so that a leader cut from the database rejoins as standby.
    pub(crate) lost_at: Mutex<Option<std::time::Instant>>,
    /// When in-sync times were last written with the rest (see `checkpoint`).
    pub(crate) in_sync_written: Mutex<std::time::Instant>,
    cache: Mutex<Cache>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("cluster", &self.config.cluster)
            .field("leader", &self.is_leader())
            .finish()
    }
}

fn corrupt(what: String, e: serde_json::Error) -> StoreError {
    StoreError::Corrupt { path: std::path::PathBuf::from(what), message: e.to_string() }
}

impl PgStore {
    /// Connects, migrates, and reads the cluster's state. Not the leader yet: see
    /// [`Self::try_lead`].
    pub async fn open(config: &PgOptions) -> Result<Self, StoreError> {
        Self::open_with(config, None).await
    }

    /// As [`Self::open`], for a `watch` replica: its sessions end after `failover` without
    /// a statement (it makes one every `failover / 3` while alive), so that a replica whose
    /// machine froze or vanished loses the lead within `failover`.
    pub async fn open_replica(config: &PgOptions) -> Result<Self, StoreError> {
        Self::open_with(config, Some(config.failover)).await
    }

    async fn open_with(config: &PgOptions, idle_timeout: Option<Duration>) -> Result<Self, StoreError> {
        let mut session = connect(&config.url, idle_timeout).await?;
        migrate(&mut session.client, i32::MAX).await?;
        let store = Self {
            key: cluster_key(&config.cluster),
            config: config.clone(),
            idle_timeout,
            alive: Mutex::new(session.open.clone()),
            session: tokio::sync::Mutex::new(Some(session)),
            leader: AtomicBool::new(false),
            epoch: std::sync::atomic::AtomicU64::new(0),
            lost_at: Mutex::new(None),
            in_sync_written: Mutex::new(std::time::Instant::now()),
            cache: Mutex::default(),
        };
        store.reload().await?;
        Ok(store)
    }

    pub(crate) fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cluster's name.
    pub fn cluster(&self) -> &str {
        &self.config.cluster
    }

    /// How soon a standby takes over.
    pub fn failover(&self) -> Duration {
        self.config.failover
    }

    /// Runs `f` with the open session, reconnecting first when it was lost.
    pub(crate) async fn with_session<T>(
        &self,
        f: impl AsyncFnOnce(&mut Client) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut guard = self.session.lock().await;
        if guard.as_ref().is_none_or(|s| !s.open.load(Ordering::SeqCst) || s.client.is_closed()) {
            // A new session holds no lock: whatever this process led, it leads no more.
            if self.leader.swap(false, Ordering::SeqCst) {
                *self.lost_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(std::time::Instant::now());
                tracing::warn!(cluster = %self.config.cluster, "the leader's session ended: standby from now on");
            }
            *guard = None;
            let session = connect(&self.config.url, self.idle_timeout).await?;
            *self.alive.lock().unwrap_or_else(|p| p.into_inner()) = session.open.clone();
            *guard = Some(session);
        }
        let session = guard.as_mut().expect("connected above");
        f(&mut session.client).await
    }

    /// Reads everything of the cluster into memory (a standby does so every poll; a new
    /// leader before its first pass).
    pub async fn reload(&self) -> Result<(), StoreError> {
        let cluster = self.config.cluster.clone();
        let (file, overrides, events) = self
            .with_session(async |c| {
                let rows = c
                    .query("SELECT name, state FROM gitstate_environments WHERE cluster = $1", &[&cluster])
                    .await
                    .map_err(|e| db_error("reading state", &e))?;
                let mut file = StateFile::new();
                for row in rows {
                    let name: String = row.get(0);
                    let value: serde_json::Value = row.get(1);
                    let what = format!("gitstate_environments row (cluster {cluster:?}, name {name:?})");
                    let env = EnvName::new(&name).map_err(|e| StoreError::Corrupt {
                        path: what.clone().into(),
                        message: e.to_string(),
                    })?;
                    let state: EnvState = serde_json::from_value(value).map_err(|e| corrupt(what, e))?;
                    file.environments.insert(env, state);
                }
                if let Some(row) = c
                    .query_opt("SELECT outbox FROM gitstate_outbox WHERE cluster = $1", &[&cluster])
                    .await
                    .map_err(|e| db_error("reading the outbox", &e))?
                {
                    let what = format!("gitstate_outbox row (cluster {cluster:?})");
                    file.outbox = serde_json::from_value(row.get(0)).map_err(|e| corrupt(what, e))?;
                }
                let overrides = read_overrides(c, &cluster).await?;
                let rows = c
                    .query(
                        "SELECT event FROM (SELECT id, event FROM gitstate_events WHERE cluster = $1
                         ORDER BY id DESC LIMIT $2) last ORDER BY id",
                        &[&cluster, &(RECENT as i64)],
                    )
                    .await
                    .map_err(|e| db_error("reading events", &e))?;
                // An event this gitstate cannot read (a newer kind) is skipped, as in files.
                let events: Vec<Event> =
                    rows.into_iter().filter_map(|r| serde_json::from_value(r.get(0)).ok()).collect();
                Ok((file, overrides, events))
            })
            .await?;
        let mut cache = self.cache();
        cache.file = file;
        cache.overrides = overrides;
        cache.recent = events.into();
        Ok(())
    }

    /// Runs `write` in a transaction that first checks this session holds the lock: a
    /// replica that lost it writes nothing and steps down.
    pub(crate) async fn fenced(
        &self,
        what: &str,
        write: impl AsyncFnOnce(&tokio_postgres::Transaction<'_>) -> Result<(), tokio_postgres::Error>,
    ) -> Result<(), StoreError> {
        if !self.is_leader() {
            return Err(StoreError::NotLeader { cluster: self.config.cluster.clone() });
        }
        let key = self.key;
        let result = self
            .with_session(async |c| {
                if !self.is_leader() {
                    // The session was replaced: its lock went with the old one.
                    return Ok(false);
                }
                let tx = c.transaction().await.map_err(|e| db_error(what, &e))?;
                if !holds_lock(&tx, key).await? {
                    return Ok(false);
                }
                write(&tx).await.map_err(|e| db_error(what, &e))?;
                tx.commit().await.map_err(|e| db_error(what, &e))?;
                Ok(true)
            })
            .await;
        match result {
            Ok(true) => Ok(()),
            Ok(false) => {
                self.step_down("fenced: a write found the leader lock gone");
                Err(StoreError::NotLeader { cluster: self.config.cluster.clone() })
            }
            Err(e) => {
                // A connection that failed may have cost the lock: checked on the next write.
                Err(e)
            }
        }
    }

    /// The latest `limit` events (oldest first).
    pub async fn events(&self, limit: usize) -> Result<Vec<Event>, StoreError> {
        self.reload().await?;
        let cache = self.cache();
        Ok(cache.recent.iter().skip(cache.recent.len().saturating_sub(limit)).cloned().collect())
    }

    /// Upserts environments' states (fenced); notes when in-sync times were last written
    /// with them all.
    pub(crate) async fn write_states(
        &self,
        rows: Vec<(String, serde_json::Value)>,
    ) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let cluster = self.config.cluster.clone();
        self.fenced("writing state", async |tx| {
            let stmt = tx
                .prepare(
                    "INSERT INTO gitstate_environments (cluster, name, state, updated_at)
                     VALUES ($1, $2, $3, now())
                     ON CONFLICT (cluster, name) DO UPDATE SET state = $3, updated_at = now()",
                )
                .await?;
            for (name, state) in &rows {
                tx.execute(&stmt, &[&cluster, name, state]).await?;
            }
            Ok(())
        })
        .await
    }

    /// The state as last read or written.
    pub fn state(&self) -> StateFile {
        self.cache().file.clone()
    }
}

async fn read_overrides(c: &Client, cluster: &str) -> Result<Overrides, StoreError> {
    let row = c
        .query_opt("SELECT overrides FROM gitstate_overrides WHERE cluster = $1", &[&cluster])
        .await
        .map_err(|e| db_error("reading overrides", &e))?;
    match row {
        None => Ok(Overrides { schema: OVERRIDES_SCHEMA, ..Overrides::default() }),
        Some(r) => {
            let what = || format!("gitstate_overrides row (cluster {cluster:?})");
            let o: Overrides = serde_json::from_value(r.get(0)).map_err(|e| corrupt(what(), e))?;
            if !(1..=OVERRIDES_SCHEMA).contains(&o.schema) {
                let e = format!("unknown schema {} (this gitstate reads 1 to {OVERRIDES_SCHEMA})", o.schema);
                return Err(StoreError::Corrupt { path: std::path::PathBuf::from(what()), message: e });
            }
            Ok(o)
        }
    }
}

#[async_trait]
impl Store for PgStore {
    fn environments(&self) -> BTreeMap<EnvName, EnvState> {
        self.cache().file.environments.clone()
    }

    fn environments_among(&self, names: &[EnvName]) -> BTreeMap<EnvName, EnvState> {
        among(&self.cache().file.environments, names)
    }

    fn names(&self) -> Vec<EnvName> {
        self.cache().file.environments.keys().cloned().collect()
    }

    fn recent_events(&self, n: usize) -> Vec<Event> {
        let cache = self.cache();
        cache.recent.iter().skip(cache.recent.len().saturating_sub(n)).cloned().collect()
    }

    /// Every event of the cluster from `since`, read from the database.
    async fn events_since(&self, since: jiff::Timestamp) -> Result<Vec<Event>, StoreError> {
        let cluster = self.config.cluster.clone();
        let rows = self
            .with_session(async |c| {
                c.query("SELECT event FROM gitstate_events WHERE cluster = $1 ORDER BY id", &[&cluster])
                    .await
                    .map_err(|e| db_error("reading events", &e))
            })
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| serde_json::from_value::<Event>(r.get(0)).ok())
            .filter(|e| e.at >= since)
            .collect())
    }

    fn overrides(&self) -> Result<Overrides, StoreError> {
        Ok(self.cache().overrides.clone())
    }

    /// What operators said, read anew (every ref poll). A standby's copy of the leader's
    /// state is read by its leadership loop, every `failover / 3`, not here.
    async fn refresh(&self) -> Result<(), StoreError> {
        let cluster = self.config.cluster.clone();
        let overrides = self.with_session(async |c| read_overrides(c, &cluster).await).await?;
        self.cache().overrides = overrides;
        Ok(())
    }

    /// Everything the leader wrote, read anew (a standby, every `failover / 3`).
    async fn reload(&self) -> Result<(), StoreError> {
        PgStore::reload(self).await
    }

    /// The leader writes the in-sync times it held back (when `watch` stops).
    async fn flush(&self) -> Result<(), StoreError> {
        if !self.is_leader() {
            return Ok(());
        }
        let rows = self
            .cache()
            .file
            .environments
            .iter()
            .filter_map(|(n, s)| Some((n.as_str().to_owned(), serde_json::to_value(s).ok()?)))
            .collect();
        self.write_states(rows).await
    }

    /// The overrides of the cluster, changed by `change` in one transaction (the row
    /// locked), for `suspend`, `resume`, `retry`: operators' writes, not the leader's.
    async fn update_overrides(&self, change: OverridesChange<'_>) -> Result<Overrides, StoreError> {
        let cluster = self.config.cluster.clone();
        self.with_session(async |c| {
            let tx = c.transaction().await.map_err(|e| db_error("changing overrides", &e))?;
            tx.execute(
                "INSERT INTO gitstate_overrides (cluster, overrides)
                 VALUES ($1, '{\"schema\":1,\"environments\":{}}') ON CONFLICT (cluster) DO NOTHING",
                &[&cluster],
            )
            .await
            .map_err(|e| db_error("changing overrides", &e))?;
            let row = tx
                .query_one(
                    "SELECT overrides FROM gitstate_overrides WHERE cluster = $1 FOR UPDATE",
                    &[&cluster],
                )
                .await
                .map_err(|e| db_error("changing overrides", &e))?;
            let mut o: Overrides = serde_json::from_value(row.get(0))
                .map_err(|e| corrupt(format!("gitstate_overrides row (cluster {cluster:?})"), e))?;
            o.schema = OVERRIDES_SCHEMA;
            change(&mut o);
            o.environments.retain(|_, v| *v != Override::default());
            let value = serde_json::to_value(&o).unwrap_or_default();
            tx.execute(
                "UPDATE gitstate_overrides SET overrides = $2 WHERE cluster = $1",
                &[&cluster, &value],
            )
            .await
            .map_err(|e| db_error("changing overrides", &e))?;
            tx.commit().await.map_err(|e| db_error("changing overrides", &e))?;
            Ok(o)
        })
        .await
    }

    /// Appends events whoever this process is (an operator's `suspend` writes its own).
    async fn append_unfenced(&self, events: &[Event]) -> Result<(), StoreError> {
        let cluster = self.config.cluster.clone();
        let rows: Vec<serde_json::Value> =
            events.iter().filter_map(|e| serde_json::to_value(e).ok()).collect();
        self.with_session(async |c| {
            for event in &rows {
                c.execute("INSERT INTO gitstate_events (cluster, event) VALUES ($1, $2)", &[&cluster, event])
                    .await
                    .map_err(|e| db_error("appending events", &e))?;
            }
            Ok(())
        })
        .await
    }
}
