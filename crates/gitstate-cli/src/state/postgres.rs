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
use gitstate_core::{EnvName, EnvState, Event, Journal, JournalError, Outbox, StateFile};
use tokio_postgres::Client;

use super::overrides::Overrides;
use super::{StateError, Store};
use crate::config::PostgresConfig;

/// The first key of every gitstate advisory lock ("gits").
const LOCK_CLASS: i32 = 0x6769_7473;

/// The schema, one migration a version; a database at version n gets n+1.. applied.
pub const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        "CREATE TABLE gitstate_environments (
            cluster text NOT NULL,
            name text NOT NULL,
            state jsonb NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (cluster, name));
         CREATE TABLE gitstate_events (
            id bigserial PRIMARY KEY,
            cluster text NOT NULL,
            event jsonb NOT NULL);
         CREATE TABLE gitstate_outbox (cluster text PRIMARY KEY, outbox jsonb NOT NULL);
         CREATE TABLE gitstate_overrides (cluster text PRIMARY KEY, overrides jsonb NOT NULL);",
    ),
    (
        2,
        "CREATE TABLE gitstate_leaders (
            cluster text PRIMARY KEY,
            host text NOT NULL,
            pid integer NOT NULL,
            since timestamptz NOT NULL DEFAULT now());
         CREATE INDEX gitstate_events_by_cluster ON gitstate_events (cluster, id);",
    ),
];

/// Events kept in memory for the dashboard.
const RECENT: usize = 500;

/// The second key of the cluster's advisory lock: a stable hash of its name (FNV-1a).
fn cluster_key(cluster: &str) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in cluster.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    (h & 0x7fff_ffff) as i32
}

/// What a PostgreSQL error says, for a person.
fn pg_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => gitstate_core::error_chain(e),
    }
}

fn db_error(what: &str, e: &tokio_postgres::Error) -> StateError {
    StateError::Database { message: format!("{what}: {}", pg_message(e)) }
}

/// A session with the database, and whether it is still open.
struct Session {
    client: Client,
    open: Arc<AtomicBool>,
}

/// Connects with TLS offered (rustls, the platform's roots) as the URL's `sslmode` says.
/// With `idle_timeout`, the server ends the session after that long without a statement
/// (`idle_session_timeout`, PostgreSQL 14+): a replica whose host froze or vanished
/// without closing its socket loses its lock within that time, not at the server's TCP
/// keepalive hours later; TCP keepalives are on from this side too.
async fn connect(url: &str, idle_timeout: Option<Duration>) -> Result<Session, StateError> {
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| StateError::Database { message: format!("TLS: {e}") })?;
    let config = rustls_platform_verifier::BuilderVerifierExt::with_platform_verifier(config)
        .map_err(|e| StateError::Database { message: format!("TLS: {e}") })?
        .with_no_client_auth();
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(config);
    let mut pg: tokio_postgres::Config = url.parse().map_err(|e| db_error("the connection string", &e))?;
    if pg.get_application_name().is_none() {
        // Which backend is whose, in pg_stat_activity.
        pg.application_name(format!("gitstate:{}", std::process::id()));
    }
    if let Some(t) = idle_timeout {
        pg.keepalives(true).keepalives_idle((t / 3).max(Duration::from_secs(1)));
    }
    let (client, connection) = tokio::time::timeout(Duration::from_secs(10), pg.connect(tls))
        .await
        .map_err(|_| StateError::Database { message: "connecting: no answer within 10s".into() })?
        .map_err(|e| db_error("connecting", &e))?;
    let open = Arc::new(AtomicBool::new(true));
    let flag = open.clone();
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %pg_message(&e), "database connection lost");
        }
        flag.store(false, Ordering::SeqCst);
    });
    if let Some(t) = idle_timeout {
        let set = format!("SET idle_session_timeout = {}", t.as_millis());
        if let Err(e) = client.batch_execute(&set).await {
            tracing::warn!(error = %pg_message(&e), "idle_session_timeout not set (PostgreSQL before 14?): a vanished leader holds its lock until TCP keepalive ends its session");
        }
    }
    Ok(Session { client, open })
}

/// Applies the migrations the database lacks, up to `upto` (all of them normally).
pub async fn migrate(client: &mut Client, upto: i32) -> Result<i32, StateError> {
    let tx = client.transaction().await.map_err(|e| db_error("migrating", &e))?;
    tx.execute("SELECT pg_advisory_xact_lock($1, 0)", &[&LOCK_CLASS])
        .await
        .map_err(|e| db_error("migrating", &e))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS gitstate_migrations (
            version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await
    .map_err(|e| db_error("migrating", &e))?;
    let row = tx
        .query_one("SELECT coalesce(max(version), 0) FROM gitstate_migrations", &[])
        .await
        .map_err(|e| db_error("migrating", &e))?;
    let current: i32 = row.get(0);
    let known = MIGRATIONS.last().map_or(0, |m| m.0);
    if current > known {
        return Err(StateError::Database {
            message: format!(
                "the database's gitstate schema is version {current}, newer than this gitstate knows ({known}): upgrade gitstate"
            ),
        });
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current && *v <= upto) {
        tx.batch_execute(sql).await.map_err(|e| db_error(&format!("migration {version}"), &e))?;
        tx.execute("INSERT INTO gitstate_migrations (version) VALUES ($1)", &[version])
            .await
            .map_err(|e| db_error(&format!("migration {version}"), &e))?;
        tracing::info!(version, "database migrated");
    }
    tx.commit().await.map_err(|e| db_error("migrating", &e))?;
    Ok(upto.min(known).max(current))
}

/// What the store holds in memory.
#[derive(Debug, Default)]
struct Cache {
    file: StateFile,
    overrides: Overrides,
    recent: VecDeque<Event>,
}

/// Who leads a cluster, as it wrote itself down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The host name.
    pub host: String,
    /// The process id.
    pub pid: i32,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "host {} pid {}", self.host, self.pid)
    }
}

/// The state of one cluster in PostgreSQL, and this process's part in its leadership.
pub struct PgStore {
    config: PostgresConfig,
    /// Sessions end after this long idle (a `watch` replica's: `failover`).
    idle_timeout: Option<Duration>,
    key: i32,
    session: tokio::sync::Mutex<Option<Session>>,
    /// Whether the current session is open: the moment it closes (the server went away,
    /// an administrator terminated it), this replica stops acting.
    alive: Mutex<Arc<AtomicBool>>,
    leader: AtomicBool,
    /// When this replica last stopped leading: it leaves the lock to the others for a
    /// `failover` after that, so that a leader cut from the database rejoins as standby.
    lost_at: Mutex<Option<std::time::Instant>>,
    /// When in-sync times were last written with the rest (see `checkpoint`).
    in_sync_written: Mutex<std::time::Instant>,
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

fn corrupt(what: String, e: serde_json::Error) -> StateError {
    StateError::Corrupt { path: std::path::PathBuf::from(what), message: e.to_string() }
}

impl PgStore {
    /// Connects, migrates, and reads the cluster's state. Not the leader yet: see
    /// [`Self::try_lead`].
    pub async fn open(config: &PostgresConfig) -> Result<Self, StateError> {
        Self::open_with(config, None).await
    }

    /// As [`Self::open`], for a `watch` replica: its sessions end after `failover` without
    /// a statement (it makes one every `failover / 3` while alive), so that a replica whose
    /// machine froze or vanished loses the lead within `failover`.
    pub async fn open_replica(config: &PostgresConfig) -> Result<Self, StateError> {
        Self::open_with(config, Some(config.failover)).await
    }

    async fn open_with(config: &PostgresConfig, idle_timeout: Option<Duration>) -> Result<Self, StateError> {
        let mut session = connect(&config.url, idle_timeout).await?;
        migrate(&mut session.client, i32::MAX).await?;
        let store = Self {
            key: cluster_key(&config.cluster),
            config: config.clone(),
            idle_timeout,
            alive: Mutex::new(session.open.clone()),
            session: tokio::sync::Mutex::new(Some(session)),
            leader: AtomicBool::new(false),
            lost_at: Mutex::new(None),
            in_sync_written: Mutex::new(std::time::Instant::now()),
            cache: Mutex::default(),
        };
        store.reload().await?;
        Ok(store)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
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
    async fn with_session<T>(
        &self,
        f: impl AsyncFnOnce(&mut Client) -> Result<T, StateError>,
    ) -> Result<T, StateError> {
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
    pub async fn reload(&self) -> Result<(), StateError> {
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
                    let env = EnvName::new(&name).map_err(|e| StateError::Corrupt {
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

    /// Whether this process leads its cluster (its session holds the lock, and is open).
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::SeqCst)
            && self.alive.lock().unwrap_or_else(|p| p.into_inner()).load(Ordering::SeqCst)
    }

    /// Takes the lock when free: true when this process leads (now or already). On taking
    /// it, writes itself down as the holder and reads the state the last leader left.
    pub async fn try_lead(&self) -> Result<bool, StateError> {
        let key = self.key;
        let cluster = self.config.cluster.clone();
        let host = crate::state::overrides::host_name();
        let pid = std::process::id() as i32;
        let was = self.is_leader();
        let recently_lost = self
            .lost_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|t| t.elapsed() < self.config.failover);
        if !was && recently_lost {
            // Reconnect all the same (a standby reads the state), but leave the lock alone.
            self.with_session(async |_| Ok(())).await?;
            return Ok(false);
        }
        let got = self
            .with_session(async |c| {
                let row = c
                    .query_one("SELECT pg_try_advisory_lock($1, $2)", &[&LOCK_CLASS, &key])
                    .await
                    .map_err(|e| db_error("taking the leader lock", &e))?;
                let got: bool = row.get(0);
                if got && !was {
                    c.execute(
                        "INSERT INTO gitstate_leaders (cluster, host, pid, since) VALUES ($1, $2, $3, now())
                         ON CONFLICT (cluster) DO UPDATE SET host = $2, pid = $3, since = now()",
                        &[&cluster, &host, &pid],
                    )
                    .await
                    .map_err(|e| db_error("writing the leader down", &e))?;
                }
                Ok(got)
            })
            .await?;
        if got && !was {
            self.reload().await?;
            self.leader.store(true, Ordering::SeqCst);
            tracing::info!(cluster = %self.config.cluster, "leading: this replica remediates and notifies");
        }
        Ok(got)
    }

    /// Checks that the session is alive and still holds the lock; steps down when not.
    pub async fn check_leadership(&self) -> bool {
        if !self.is_leader() {
            return false;
        }
        let key = self.key;
        let held = self.with_session(async |c| holds_lock(c, key).await).await.unwrap_or(false);
        if !held {
            self.step_down("the leader lock is no longer held");
        }
        held
    }

    fn step_down(&self, why: &str) {
        if self.leader.swap(false, Ordering::SeqCst) {
            *self.lost_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(std::time::Instant::now());
            tracing::warn!(cluster = %self.config.cluster, reason = why, "standing down: standby from now on");
        }
    }

    /// Who holds the cluster's lock now, as written down (None: nobody holds it).
    pub async fn holder(&self) -> Result<Option<Holder>, StateError> {
        let (key, cluster) = (self.key, self.config.cluster.clone());
        self.with_session(async |c| {
            let held = c
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted
                     AND classid = $1::integer::oid AND objid = $2::integer::oid AND objsubid = 2)",
                    &[&LOCK_CLASS, &key],
                )
                .await
                .map_err(|e| db_error("reading the lock", &e))?;
            if !held.get::<_, bool>(0) {
                return Ok(None);
            }
            let row = c
                .query_opt("SELECT host, pid FROM gitstate_leaders WHERE cluster = $1", &[&cluster])
                .await
                .map_err(|e| db_error("reading the leader", &e))?;
            Ok(Some(row.map_or(Holder { host: "unknown".into(), pid: 0 }, |r| Holder {
                host: r.get(0),
                pid: r.get(1),
            })))
        })
        .await
    }

    /// Runs `write` in a transaction that first checks this session holds the lock: a
    /// replica that lost it writes nothing and steps down.
    async fn fenced(
        &self,
        what: &str,
        write: impl AsyncFnOnce(&tokio_postgres::Transaction<'_>) -> Result<(), tokio_postgres::Error>,
    ) -> Result<(), StateError> {
        if !self.is_leader() {
            return Err(StateError::NotLeader { cluster: self.config.cluster.clone() });
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
                Err(StateError::NotLeader { cluster: self.config.cluster.clone() })
            }
            Err(e) => {
                // A connection that failed may have cost the lock: checked on the next write.
                Err(e)
            }
        }
    }

    /// The overrides of the cluster, changed by `change` in one transaction (the row
    /// locked), for `suspend`, `resume`, `retry`: operators' writes, not the leader's.
    pub async fn update_overrides<T: Send>(
        &self,
        change: impl FnOnce(&mut Overrides) -> T + Send,
    ) -> Result<T, StateError> {
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
            o.schema = 1;
            let out = change(&mut o);
            o.environments.retain(|_, v| *v != super::overrides::Override::default());
            let value = serde_json::to_value(&o).unwrap_or_default();
            tx.execute(
                "UPDATE gitstate_overrides SET overrides = $2 WHERE cluster = $1",
                &[&cluster, &value],
            )
            .await
            .map_err(|e| db_error("changing overrides", &e))?;
            tx.commit().await.map_err(|e| db_error("changing overrides", &e))?;
            Ok(out)
        })
        .await
    }

    /// Appends events whoever this process is (an operator's `suspend` writes its own).
    pub async fn append_unfenced(&self, events: &[Event]) -> Result<(), StateError> {
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

    /// The latest `limit` events (oldest first).
    pub async fn events(&self, limit: usize) -> Result<Vec<Event>, StateError> {
        self.reload().await?;
        let cache = self.cache();
        Ok(cache.recent.iter().skip(cache.recent.len().saturating_sub(limit)).cloned().collect())
    }

    /// Upserts environments' states (fenced); notes when in-sync times were last written
    /// with them all.
    async fn write_states(&self, rows: Vec<(String, serde_json::Value)>) -> Result<(), StateError> {
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

async fn holds_lock(c: &impl tokio_postgres::GenericClient, key: i32) -> Result<bool, StateError> {
    let row = c
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted
             AND pid = pg_backend_pid() AND classid = $1::integer::oid AND objid = $2::integer::oid
             AND objsubid = 2)",
            &[&LOCK_CLASS, &key],
        )
        .await
        .map_err(|e| db_error("checking the leader lock", &e))?;
    Ok(row.get(0))
}

async fn read_overrides(c: &Client, cluster: &str) -> Result<Overrides, StateError> {
    let row = c
        .query_opt("SELECT overrides FROM gitstate_overrides WHERE cluster = $1", &[&cluster])
        .await
        .map_err(|e| db_error("reading overrides", &e))?;
    match row {
        None => Ok(Overrides { schema: 1, ..Overrides::default() }),
        Some(r) => serde_json::from_value(r.get(0))
            .map_err(|e| corrupt(format!("gitstate_overrides row (cluster {cluster:?})"), e)),
    }
}

#[async_trait]
impl Journal for PgStore {
    /// Writes the environments that changed. As with the files, one whose only change is
    /// its `last_in_sync_at` is written at most every [`super::IN_SYNC_WRITTEN_EVERY`]: a
    /// quiet pass over 10,000 environments writes no row.
    async fn checkpoint(&self, states: &[(EnvName, EnvState)]) -> Result<(), JournalError> {
        let refresh_in_sync = self.in_sync_written.lock().unwrap_or_else(|p| p.into_inner()).elapsed()
            >= super::IN_SYNC_WRITTEN_EVERY;
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
        self.fenced("appending events", async |tx| {
            let stmt = tx.prepare("INSERT INTO gitstate_events (cluster, event) VALUES ($1, $2)").await?;
            for event in &rows {
                tx.execute(&stmt, &[&cluster, event]).await?;
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
        self.fenced("forgetting environments", async |tx| {
            tx.execute(
                "DELETE FROM gitstate_environments WHERE cluster = $1 AND name = ANY($2)",
                &[&cluster, &names],
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
        let value = serde_json::to_value(outbox).unwrap_or_default();
        self.fenced("writing the outbox", async |tx| {
            tx.execute(
                "INSERT INTO gitstate_outbox (cluster, outbox) VALUES ($1, $2)
                 ON CONFLICT (cluster) DO UPDATE SET outbox = $2",
                &[&cluster, &value],
            )
            .await?;
            Ok(())
        })
        .await?;
        self.cache().file.outbox = outbox.clone();
        Ok(())
    }
}

#[async_trait]
impl Store for PgStore {
    fn environments(&self) -> BTreeMap<EnvName, EnvState> {
        self.cache().file.environments.clone()
    }

    fn environments_among(&self, names: &[EnvName]) -> BTreeMap<EnvName, EnvState> {
        super::among(&self.cache().file.environments, names)
    }

    fn names(&self) -> Vec<EnvName> {
        self.cache().file.environments.keys().cloned().collect()
    }

    fn recent_events(&self, n: usize) -> Vec<Event> {
        let cache = self.cache();
        cache.recent.iter().skip(cache.recent.len().saturating_sub(n)).cloned().collect()
    }

    fn overrides(&self) -> Result<Overrides, StateError> {
        Ok(self.cache().overrides.clone())
    }

    /// What operators said, read anew (every ref poll). A standby's copy of the leader's
    /// state is read by its leadership loop, every `failover / 3`, not here.
    async fn refresh(&self) -> Result<(), StateError> {
        let cluster = self.config.cluster.clone();
        let overrides = self.with_session(async |c| read_overrides(c, &cluster).await).await?;
        self.cache().overrides = overrides;
        Ok(())
    }

    /// The leader writes the in-sync times it held back (when `watch` stops).
    async fn flush(&self) -> Result<(), StateError> {
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

    fn is_leader(&self) -> bool {
        PgStore::is_leader(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gitstate_testkit::Postgres;

    fn config(url: &str) -> PostgresConfig {
        PostgresConfig { url: url.to_owned(), cluster: "default".into(), failover: Duration::from_secs(3) }
    }

    fn state(failures: u32) -> Vec<(EnvName, EnvState)> {
        vec![(
            EnvName::new("production").unwrap(),
            EnvState { consecutive_probe_failures: failures, ..EnvState::default() },
        )]
    }

    async fn client(url: &str) -> Client {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        client
    }

    #[tokio::test]
    async fn migrations_apply_to_an_empty_database_and_to_the_previous_version() {
        let pg = Postgres::start();
        // Empty: every version, once, however many replicas start together.
        let url = pg.database("empty");
        let cfg = config(&url);
        let (a, b) = tokio::join!(PgStore::open(&cfg), PgStore::open(&cfg));
        a.unwrap();
        b.unwrap();
        assert_eq!(
            pg.sql(
                "empty",
                "SELECT string_agg(version::text, ',' ORDER BY version) FROM gitstate_migrations"
            ),
            "1,2"
        );

        // The previous version, with a state in it: migrated, the state kept.
        let url = pg.database("previous");
        migrate(&mut client(&url).await, 1).await.unwrap();
        pg.sql(
            "previous",
            r#"INSERT INTO gitstate_environments (cluster, name, state) VALUES ('default', 'production', '{"consecutive_probe_failures": 4}')"#,
        );
        let store = PgStore::open(&config(&url)).await.unwrap();
        assert_eq!(pg.sql("previous", "SELECT max(version) FROM gitstate_migrations"), "2");
        assert_eq!(
            store.state().environments[&EnvName::new("production").unwrap()].consecutive_probe_failures,
            4
        );
        assert!(store.try_lead().await.unwrap());
        assert_eq!(pg.sql("previous", "SELECT pid FROM gitstate_leaders"), std::process::id().to_string());

        // A database newer than this gitstate: refused, not touched.
        pg.sql("previous", "INSERT INTO gitstate_migrations (version) VALUES (99)");
        let e = PgStore::open(&config(&url)).await.unwrap_err().to_string();
        assert!(e.contains("version 99, newer than this gitstate knows"), "{e}");
    }

    #[tokio::test]
    async fn a_quiet_pass_writes_no_row_and_in_sync_times_are_written_later() {
        let pg = Postgres::start();
        let url = pg.database("quiet");
        let store = PgStore::open(&config(&url)).await.unwrap();
        assert!(store.try_lead().await.unwrap());
        let in_sync_at = |s: i64| {
            let mut st = state(0);
            st[0].1.last_in_sync_at = Some(jiff::Timestamp::from_second(1_800_000_000 + s).unwrap());
            st
        };
        let row =
            || pg.sql("quiet", "SELECT state->>'last_in_sync_at' || ' ' || xmin FROM gitstate_environments");
        store.checkpoint(&in_sync_at(0)).await.unwrap();
        let first = row();
        assert!(first.starts_with("2027-01-15T08:00:00Z "), "{first}");
        // Passes where only the in-sync time moves: the row is not rewritten (same xmin).
        store.checkpoint(&in_sync_at(10)).await.unwrap();
        store.checkpoint(&in_sync_at(20)).await.unwrap();
        assert_eq!(row(), first);
        assert_eq!(store.environments()[&EnvName::new("production").unwrap()], in_sync_at(20)[0].1);
        // Any other change is written at once; stopping writes the held-back time.
        let mut failing = in_sync_at(20);
        failing[0].1.consecutive_probe_failures = 1;
        store.checkpoint(&failing).await.unwrap();
        assert!(row().starts_with("2027-01-15T08:00:20Z "));
        failing[0].1.last_in_sync_at = in_sync_at(30)[0].1.last_in_sync_at;
        store.checkpoint(&failing).await.unwrap();
        assert!(row().starts_with("2027-01-15T08:00:20Z "), "held back");
        Store::flush(&store).await.unwrap();
        assert!(row().starts_with("2027-01-15T08:00:30Z "), "{}", row());
    }

    #[tokio::test]
    async fn a_corrupt_row_is_named() {
        let pg = Postgres::start();
        let url = pg.database("corrupt");
        PgStore::open(&config(&url)).await.unwrap();
        pg.sql(
            "corrupt",
            r#"INSERT INTO gitstate_environments (cluster, name, state) VALUES ('default', 'production', '{"phase": 7}')"#,
        );
        let e = PgStore::open(&config(&url)).await.unwrap_err().to_string();
        assert!(e.contains("gitstate_environments row (cluster \"default\", name \"production\")"), "{e}");
        assert_eq!(
            pg.sql("corrupt", "SELECT state->>'phase' FROM gitstate_environments"),
            "7",
            "kept as it was"
        );
    }

    #[tokio::test]
    async fn a_leader_whose_session_was_cut_writes_nothing_and_steps_down() {
        let pg = Postgres::start();
        let url = pg.database("fencing");
        let a = PgStore::open(&config(&url)).await.unwrap();
        let b = PgStore::open(&config(&url)).await.unwrap();
        assert!(a.try_lead().await.unwrap());
        assert!(!b.try_lead().await.unwrap(), "one leader");
        a.checkpoint(&state(1)).await.unwrap();

        // An administrator (or a network cut) ends the leader's session.
        let cut = pg.sql(
            "fencing",
            &format!(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'gitstate:{}' AND pid IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory')",
                std::process::id()
            ),
        );
        assert_eq!(cut, "1");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while a.is_leader() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!a.is_leader(), "a cut session is no leader");
        assert!(b.try_lead().await.unwrap(), "the standby takes over");
        b.checkpoint(&state(2)).await.unwrap();

        // The former leader writes nothing: not through its flag...
        assert!(a.checkpoint(&state(9)).await.is_err());
        // ...and not through the transaction's own check, even if it believed it led on a
        // new session (the fence is the lock held in the writing transaction itself).
        a.reload().await.unwrap();
        a.leader.store(true, Ordering::SeqCst);
        let e = a.checkpoint(&state(9)).await.unwrap_err().to_string();
        assert!(e.contains("not the leader"), "{e}");
        assert!(!a.is_leader(), "and it stepped down");
        assert_eq!(
            pg.sql("fencing", "SELECT state->>'consecutive_probe_failures' FROM gitstate_environments"),
            "2",
            "only the leader's write is there"
        );
        let holder = a.holder().await.unwrap().unwrap();
        assert_eq!(holder.pid, std::process::id() as i32);
    }

    #[test]
    fn cluster_keys_are_stable_and_positive() {
        assert_eq!(cluster_key("default"), cluster_key("default"));
        assert_ne!(cluster_key("default"), cluster_key("eu"));
        for name in ["", "default", "a-very-long-cluster-name-with-many-characters"] {
            assert!(cluster_key(name) >= 0);
        }
    }
}
