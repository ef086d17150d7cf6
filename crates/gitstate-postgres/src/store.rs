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

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
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
    /// How soon a standby takes over once the leader's session ends (default 15 s); with
    /// shards, how long a slot's lease lasts unrenewed.
    pub failover: Duration,
    /// SPEC §19: replicas share the environments (slot leases), rather than one leading
    /// them all (default false: §14's single leader).
    pub shards: bool,
    /// This replica's name among the cluster's (default: host name and process id).
    pub replica: String,
}

impl PgOptions {
    /// The options for `url`, cluster `default`, failover 15 s.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            cluster: "default".into(),
            failover: Duration::from_secs(15),
            shards: false,
            replica: format!("{}-{}", crate::leader::host_name(), std::process::id()),
        }
    }

    /// Shares the environments among replicas by slot leases (`shards = "auto"`).
    pub fn with_shards(mut self, shards: bool) -> Self {
        self.shards = shards;
        self
    }

    /// Sets this replica's name.
    pub fn with_replica(mut self, replica: impl Into<String>) -> Self {
        self.replica = replica.into();
        self
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
    /// With shards: the slots this replica holds.
    pub(crate) leases: Mutex<crate::shards::Leases>,
    /// The last change (of the cluster's sequence) read into the cache.
    seq: AtomicI64,
    /// Changes this process wrote itself since the last catch-up (not read back).
    own: Mutex<BTreeSet<i64>>,
    /// Rows read from the database into the cache, all told (a standby's catch-up reads
    /// only what changed: this counts it).
    rows_read: AtomicU64,
}

/// How a write proves this process may make it, checked in the write's own transaction.
#[derive(Debug)]
pub(crate) enum Fencing {
    /// The session holds the cluster's leader lock (SPEC §14).
    Leader,
    /// Each `(slot, token)` is leased to this replica's session, unexpired (SPEC §19).
    Slots(Vec<(i32, i64)>),
    /// This replica is alive in `gitstate_replicas` with this session (its own outbox).
    Replica,
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
            leases: Mutex::default(),
            seq: AtomicI64::new(0),
            own: Mutex::default(),
            rows_read: AtomicU64::new(0),
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

    /// Reads everything of the cluster into memory: once, as the store opens. After that,
    /// [`Self::catch_up`] reads only what changed.
    pub async fn reload(&self) -> Result<(), StoreError> {
        let cluster = self.config.cluster.clone();
        let replica = self.config.replica.clone();
        let shards = self.config.shards;
        let (file, overrides, events, head, read) = self
            .with_session(async |c| {
                let tx = snapshot(c, "reading state").await?;
                let head = head(&tx, &cluster).await?;
                let rows = tx
                    .query(
                        "SELECT name, state FROM gitstate_environments WHERE cluster = $1 AND NOT deleted",
                        &[&cluster],
                    )
                    .await
                    .map_err(|e| db_error("reading state", &e))?;
                let mut read = rows.len() as u64;
                let mut file = StateFile::new();
                for row in rows {
                    let (env, state) = env_row(&cluster, row.get(0), row.get(1))?;
                    file.environments.insert(env, state);
                }
                file.outbox = read_outbox(&tx, &cluster, shards.then_some(replica.as_str())).await?;
                let overrides = read_overrides(&tx, &cluster).await?;
                let rows = tx
                    .query(
                        "SELECT event FROM (SELECT id, event FROM gitstate_events WHERE cluster = $1
                         ORDER BY id DESC LIMIT $2) last ORDER BY id",
                        &[&cluster, &(RECENT as i64)],
                    )
                    .await
                    .map_err(|e| db_error("reading events", &e))?;
                read += rows.len() as u64;
                // An event this gitstate cannot read (a newer kind) is skipped, as in files.
                let events: Vec<Event> =
                    rows.into_iter().filter_map(|r| serde_json::from_value(r.get(0)).ok()).collect();
                tx.commit().await.map_err(|e| db_error("reading state", &e))?;
                Ok((file, overrides, events, head, read))
            })
            .await?;
        let mut cache = self.cache();
        cache.file = file;
        cache.overrides = overrides;
        cache.recent = events.into();
        self.seq.store(head, Ordering::SeqCst);
        self.rows_read.fetch_add(read, Ordering::Relaxed);
        Ok(())
    }

    /// Reads what other writers changed since the last read (SPEC §19: a standby, or a
    /// slot's new owner, never reads the whole state again): the environment rows and
    /// events written after the last change read, in one snapshot. The records of the
    /// environments this process acts for are its own and are kept as they are.
    pub async fn catch_up(&self) -> Result<(), StoreError> {
        let cluster = self.config.cluster.clone();
        let last = self.seq.load(Ordering::SeqCst);
        let own: Vec<i64> = self.own.lock().unwrap_or_else(|p| p.into_inner()).iter().copied().collect();
        let caught = self
            .with_session(async |c| {
                let tx = snapshot(c, "reading changes").await?;
                let head = head(&tx, &cluster).await?;
                if head <= last {
                    return Ok(None);
                }
                let rows = tx
                    .query(
                        "SELECT name, state, deleted FROM gitstate_environments
                         WHERE cluster = $1 AND seq > $2 AND seq <= $3 AND NOT (seq = ANY($4))",
                        &[&cluster, &last, &head, &own],
                    )
                    .await
                    .map_err(|e| db_error("reading changes", &e))?;
                let mut envs = Vec::with_capacity(rows.len());
                for row in &rows {
                    let (env, state) = env_row(&cluster, row.get(0), row.get(1))?;
                    envs.push((env, row.get::<_, bool>(2).then_some(()).map_or(Some(state), |()| None)));
                }
                let events = tx
                    .query(
                        "SELECT event FROM gitstate_events
                         WHERE cluster = $1 AND seq > $2 AND seq <= $3 AND NOT (seq = ANY($4)) ORDER BY id",
                        &[&cluster, &last, &head, &own],
                    )
                    .await
                    .map_err(|e| db_error("reading changes", &e))?;
                let read = (rows.len() + events.len()) as u64;
                let events: Vec<Event> =
                    events.into_iter().filter_map(|r| serde_json::from_value(r.get(0)).ok()).collect();
                tx.commit().await.map_err(|e| db_error("reading changes", &e))?;
                Ok(Some((head, envs, events, read)))
            })
            .await?;
        let Some((head, envs, events, read)) = caught else { return Ok(()) };
        {
            let mut cache = self.cache();
            for (env, state) in envs {
                if self.acts_for(&env) {
                    continue;
                }
                match state {
                    Some(state) => cache.file.environments.insert(env, state),
                    None => cache.file.environments.remove(&env),
                };
            }
            cache.recent.extend(events);
            let over = cache.recent.len().saturating_sub(RECENT);
            cache.recent.drain(..over);
        }
        self.own.lock().unwrap_or_else(|p| p.into_inner()).retain(|s| *s > head);
        self.seq.store(head, Ordering::SeqCst);
        self.rows_read.fetch_add(read, Ordering::Relaxed);
        Ok(())
    }

    /// Reads this process's outbox anew (a new leader's: what the last one kept).
    pub(crate) async fn reload_outbox(&self) -> Result<(), StoreError> {
        let cluster = self.config.cluster.clone();
        let replica = self.config.replica.clone();
        let shards = self.config.shards;
        let outbox = self
            .with_session(async |c| read_outbox(&*c, &cluster, shards.then_some(replica.as_str())).await)
            .await?;
        self.cache().file.outbox = outbox;
        Ok(())
    }

    /// Rows read from the database into memory so far (the whole state once as the store
    /// opens, then only changes).
    pub fn rows_read(&self) -> u64 {
        self.rows_read.load(Ordering::Relaxed)
    }

    /// Whether this process writes `env`'s record itself now (the leader; with shards,
    /// the holder of its slot): its cached record is the newest.
    fn acts_for(&self, env: &EnvName) -> bool {
        if self.config.shards { self.slot_fence(env.as_str()).is_some() } else { self.is_leader() }
    }

    /// The fencing of a write of `envs`' records or events: the leader lock, or (with
    /// shards) the leases of their slots, refused here when one is not held.
    pub(crate) fn fencing<'a>(&self, envs: impl Iterator<Item = &'a str>) -> Result<Fencing, StoreError> {
        if !self.config.shards {
            return Ok(Fencing::Leader);
        }
        let mut pairs = Vec::new();
        for env in envs {
            match self.slot_fence(env) {
                Some(p) => {
                    if !pairs.contains(&p) {
                        pairs.push(p);
                    }
                }
                None => {
                    return Err(StoreError::NotOwner {
                        cluster: self.config.cluster.clone(),
                        environment: env.to_owned(),
                    });
                }
            }
        }
        Ok(Fencing::Slots(pairs))
    }

    /// Runs `write` in a transaction that first checks, holding what it checks, that this
    /// process may write (`fencing`), then takes the cluster's next change number (given
    /// to `write`): a replica that lost the lock or its slots writes nothing (a leader
    /// steps down; a replica forgets the slots).
    pub(crate) async fn fenced(
        &self,
        what: &str,
        fencing: Fencing,
        write: impl AsyncFnOnce(&tokio_postgres::Transaction<'_>, i64) -> Result<(), tokio_postgres::Error>,
    ) -> Result<(), StoreError> {
        if matches!(fencing, Fencing::Leader) && !self.is_leader() {
            return Err(StoreError::NotLeader { cluster: self.config.cluster.clone() });
        }
        let key = self.key;
        let cluster = self.config.cluster.clone();
        let replica = self.config.replica.clone();
        let result = self
            .with_session(async |c| {
                if matches!(fencing, Fencing::Leader) && !self.is_leader() {
                    // The session was replaced: its lock went with the old one.
                    return Ok(None);
                }
                let tx = c.transaction().await.map_err(|e| db_error(what, &e))?;
                let may = match &fencing {
                    Fencing::Leader => holds_lock(&tx, key).await?,
                    Fencing::Slots(pairs) => {
                        let slots: Vec<i32> = pairs.iter().map(|p| p.0).collect();
                        let tokens: Vec<i64> = pairs.iter().map(|p| p.1).collect();
                        let rows = tx
                            .query(
                                "SELECT slot FROM gitstate_slots WHERE cluster = $1 AND owner = $2
                                 AND backend = pg_backend_pid() AND expires_at > now()
                                 AND (slot, token) IN (SELECT * FROM unnest($3::integer[], $4::bigint[]))
                                 FOR SHARE",
                                &[&cluster, &replica, &slots, &tokens],
                            )
                            .await
                            .map_err(|e| db_error(what, &e))?;
                        rows.len() == pairs.len()
                    }
                    Fencing::Replica => tx
                        .query_opt(
                            "SELECT 1 FROM gitstate_replicas WHERE cluster = $1 AND replica = $2
                             AND backend = pg_backend_pid() AND expires_at > now() FOR SHARE",
                            &[&cluster, &replica],
                        )
                        .await
                        .map_err(|e| db_error(what, &e))?
                        .is_some(),
                };
                if !may {
                    return Ok(None);
                }
                let seq = next_change(&tx, &cluster, what).await?;
                write(&tx, seq).await.map_err(|e| db_error(what, &e))?;
                tx.commit().await.map_err(|e| db_error(what, &e))?;
                Ok(Some(seq))
            })
            .await;
        match result {
            Ok(Some(seq)) => {
                self.own.lock().unwrap_or_else(|p| p.into_inner()).insert(seq);
                Ok(())
            }
            Ok(None) => match fencing {
                Fencing::Leader => {
                    self.step_down("fenced: a write found the leader lock gone");
                    Err(StoreError::NotLeader { cluster: self.config.cluster.clone() })
                }
                Fencing::Slots(pairs) => {
                    tracing::warn!(cluster = %self.config.cluster, replica = %self.config.replica, "fenced: a write found a slot no longer leased to this replica; its slots are dropped until the next round");
                    let mut leases = self.leases();
                    for (slot, _) in &pairs {
                        leases.slots.remove(slot);
                    }
                    Err(StoreError::NotOwner {
                        cluster: self.config.cluster.clone(),
                        environment: format!("slot {}", pairs.first().map_or(0, |p| p.0)),
                    })
                }
                Fencing::Replica => Err(StoreError::NotOwner {
                    cluster: self.config.cluster.clone(),
                    environment: format!("the outbox of replica {}", self.config.replica),
                }),
            },
            // A connection that failed may have cost the lock: checked on the next write.
            Err(e) => Err(e),
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
        let fencing = self.fencing(rows.iter().map(|r| r.0.as_str()))?;
        self.fenced("writing state", fencing, async |tx, seq| {
            let stmt = tx
                .prepare(
                    "INSERT INTO gitstate_environments (cluster, name, state, updated_at, seq, slot, deleted)
                     VALUES ($1, $2, $3, now(), $4, $5, false)
                     ON CONFLICT (cluster, name) DO UPDATE
                     SET state = $3, updated_at = now(), seq = $4, slot = $5, deleted = false",
                )
                .await?;
            for (name, state) in &rows {
                tx.execute(&stmt, &[&cluster, name, state, &seq, &crate::shards::slot_of(name)]).await?;
            }
            Ok(())
        })
        .await
    }

    /// The 32-byte key named `name` that every replica of the cluster shares, made from
    /// `fresh` by the first replica to ask (SPEC §20: the dashboard's CSRF tokens).
    pub async fn shared_key(&self, name: &str, fresh: [u8; 32]) -> Result<[u8; 32], StoreError> {
        let cluster = self.config.cluster.clone();
        let name = name.to_owned();
        self.with_session(async |c| {
            c.execute(
                "INSERT INTO gitstate_keys (cluster, name, key) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[&cluster, &name, &fresh.as_slice()],
            )
            .await
            .map_err(|e| db_error("making a shared key", &e))?;
            let row = c
                .query_one(
                    "SELECT key FROM gitstate_keys WHERE cluster = $1 AND name = $2",
                    &[&cluster, &name],
                )
                .await
                .map_err(|e| db_error("reading a shared key", &e))?;
            let key: Vec<u8> = row.get(0);
            key.try_into().map_err(|_| StoreError::Corrupt {
                path: std::path::PathBuf::from(format!("gitstate_keys row {name:?} (cluster {cluster:?})")),
                message: "not a 32-byte key".into(),
            })
        })
        .await
    }

    /// The state as last read or written.
    pub fn state(&self) -> StateFile {
        self.cache().file.clone()
    }
}

/// A read-only transaction over one snapshot (what it reads is consistent).
async fn snapshot<'a>(c: &'a mut Client, what: &str) -> Result<tokio_postgres::Transaction<'a>, StoreError> {
    c.build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(|e| db_error(what, &e))
}

/// The cluster's outbox (with shards, `replica`'s own); empty when none was written.
async fn read_outbox(
    c: &impl tokio_postgres::GenericClient,
    cluster: &str,
    replica: Option<&str>,
) -> Result<gitstate_core::Outbox, StoreError> {
    let row = match replica {
        Some(r) => {
            c.query_opt(
                "SELECT outbox FROM gitstate_replica_outbox WHERE cluster = $1 AND replica = $2",
                &[&cluster, &r],
            )
            .await
        }
        None => c.query_opt("SELECT outbox FROM gitstate_outbox WHERE cluster = $1", &[&cluster]).await,
    }
    .map_err(|e| db_error("reading the outbox", &e))?;
    match row {
        Some(row) => serde_json::from_value(row.get(0))
            .map_err(|e| corrupt(format!("the outbox row of cluster {cluster:?}"), e)),
        None => Ok(gitstate_core::Outbox::default()),
    }
}

/// Takes the cluster's next change number for the writing transaction `tx`: the counter
/// row stays locked until it commits, so numbers become visible in the order they were
/// taken (what [`PgStore::catch_up`] relies on).
async fn next_change(
    tx: &tokio_postgres::Transaction<'_>,
    cluster: &str,
    what: &str,
) -> Result<i64, StoreError> {
    Ok(tx
        .query_one(
            "INSERT INTO gitstate_changes (cluster, seq) VALUES ($1, 1)
             ON CONFLICT (cluster) DO UPDATE SET seq = gitstate_changes.seq + 1 RETURNING seq",
            &[&cluster],
        )
        .await
        .map_err(|e| db_error(what, &e))?
        .get(0))
}

/// The cluster's change number now (0 before any write).
async fn head(c: &impl tokio_postgres::GenericClient, cluster: &str) -> Result<i64, StoreError> {
    Ok(c.query_opt("SELECT seq FROM gitstate_changes WHERE cluster = $1", &[&cluster])
        .await
        .map_err(|e| db_error("reading the change number", &e))?
        .map_or(0, |r| r.get(0)))
}

/// An environment's row, read: named when it cannot be.
fn env_row(cluster: &str, name: String, value: serde_json::Value) -> Result<(EnvName, EnvState), StoreError> {
    let what = format!("gitstate_environments row (cluster {cluster:?}, name {name:?})");
    let env = EnvName::new(&name)
        .map_err(|e| StoreError::Corrupt { path: what.clone().into(), message: e.to_string() })?;
    let state: EnvState = serde_json::from_value(value).map_err(|e| corrupt(what, e))?;
    Ok((env, state))
}

async fn read_overrides(
    c: &impl tokio_postgres::GenericClient,
    cluster: &str,
) -> Result<Overrides, StoreError> {
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

    /// What the other writers changed since the last read (every `failover / 3`).
    async fn reload(&self) -> Result<(), StoreError> {
        self.catch_up().await
    }

    /// The leader (or each shard's holder) writes the in-sync times it held back (when
    /// `watch` stops).
    async fn flush(&self) -> Result<(), StoreError> {
        let rows: Vec<(String, serde_json::Value)> = self
            .cache()
            .file
            .environments
            .iter()
            .filter(|(n, _)| self.acts_for(n))
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
            let tx = c.transaction().await.map_err(|e| db_error("appending events", &e))?;
            let seq = next_change(&tx, &cluster, "appending events").await?;
            for event in &rows {
                tx.execute(
                    "INSERT INTO gitstate_events (cluster, event, seq) VALUES ($1, $2, $3)",
                    &[&cluster, event, &seq],
                )
                .await
                .map_err(|e| db_error("appending events", &e))?;
            }
            tx.commit().await.map_err(|e| db_error("appending events", &e))
        })
        .await
    }
}
