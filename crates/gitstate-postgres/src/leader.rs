//! Leadership of a cluster (SPEC §14): the replica whose session holds the session-level
//! advisory lock `(LOCK_CLASS, cluster_key(cluster))` leads; [`PgStore`] is the runtime's
//! [`Leadership`]: the controller keeps the lead (or tries to take it) every
//! `failover / 3`, and every write checks the lock in its own transaction (`fenced` in
//! `store.rs`).

use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use gitstate_core::EnvName;
use gitstate_runtime::{Fence, Leadership, StoreError};

use crate::PgStore;
use crate::connect::db_error;

/// The first key of every gitstate advisory lock ("gits").
pub(crate) const LOCK_CLASS: i32 = 0x6769_7473;

/// The second key of the cluster's advisory lock: a stable hash of its name (FNV-1a).
pub(crate) fn cluster_key(cluster: &str) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in cluster.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    (h & 0x7fff_ffff) as i32
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

impl PgStore {
    /// Whether this process leads its cluster (its session holds the lock, and is open).
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::SeqCst)
            && self.alive.lock().unwrap_or_else(|p| p.into_inner()).load(Ordering::SeqCst)
    }

    /// Takes the lock when free: true when this process leads (now or already). On taking
    /// it, writes itself down as the holder and reads the state the last leader left.
    pub async fn try_lead(&self) -> Result<bool, StoreError> {
        let key = self.key;
        let cluster = self.config.cluster.clone();
        let host = host_name();
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
            // What the last leader wrote since this replica last read, and the outbox.
            self.catch_up().await?;
            self.reload_outbox().await?;
            self.epoch.fetch_add(1, Ordering::SeqCst);
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

    pub(crate) fn step_down(&self, why: &str) {
        if self.leader.swap(false, Ordering::SeqCst) {
            *self.lost_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(std::time::Instant::now());
            tracing::warn!(cluster = %self.config.cluster, reason = why, "standing down: standby from now on");
        }
    }

    /// Who holds the cluster's lock now, as written down (None: nobody holds it).
    pub async fn holder(&self) -> Result<Option<Holder>, StoreError> {
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
}

pub(crate) async fn holds_lock(c: &impl tokio_postgres::GenericClient, key: i32) -> Result<bool, StoreError> {
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

/// This machine's name (a pod's name in Kubernetes), to say who leads.
pub(crate) fn host_name() -> String {
    rustix::system::uname().nodename().to_string_lossy().into_owned()
}

/// The leader acts for every environment of its cluster; a standby for none. With shards
/// (SPEC §19), each replica acts for the environments of the slots it holds, and the
/// holder of the leader lock is the cluster's notifier (fleet-wide duties).
#[async_trait]
impl Leadership for PgStore {
    fn may_act(&self, env: &EnvName) -> Option<Fence> {
        if self.config.shards {
            return self.slot_fence(env.as_str()).map(|(_, token)| Fence(token as u64));
        }
        self.is_leader().then(|| Fence(self.epoch.load(Ordering::SeqCst)))
    }

    fn leading(&self) -> bool {
        if self.config.shards {
            return !self.slots().is_empty();
        }
        self.is_leader()
    }

    fn observes(&self, _env: &EnvName) -> bool {
        !self.config.shards
    }

    fn generation(&self) -> u64 {
        if self.config.shards {
            return self.leases().generation;
        }
        self.epoch.load(Ordering::SeqCst)
    }

    /// The leader checks it still holds the lock (and steps down when not); a standby
    /// tries to take it. With shards, every replica also renews, gives up and takes
    /// slots. A database that cannot be reached is logged: no lead.
    async fn keep(&self) -> bool {
        if self.config.shards {
            if let Err(e) = self.keep_slots().await {
                tracing::warn!(error = %e, cluster = self.cluster(), "slots not renewed: they lapse unless the next round succeeds");
            }
            // The notifier's lock, kept for fleet-wide duties.
            if self.is_leader() {
                self.check_leadership().await;
            } else if let Err(e) = self.try_lead().await {
                tracing::warn!(error = %e, cluster = self.cluster(), "cannot reach the database");
            }
            return self.leading();
        }
        if self.is_leader() {
            return self.check_leadership().await;
        }
        match self.try_lead().await {
            Ok(leading) => leading,
            Err(e) => {
                tracing::warn!(error = %e, cluster = self.cluster(), "cannot reach the database");
                false
            }
        }
    }

    /// With shards, the holder of the leader lock; without, the leader.
    fn notifier(&self) -> bool {
        self.is_leader()
    }

    fn full_pass(&self, at: jiff::Timestamp) {
        *self.leases().passed_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(at);
    }

    /// With shards: the last full pass of the replica holding each environment's slot,
    /// as it wrote it down (`None` for this replica's own slots, and without shards).
    async fn observed_elsewhere(&self, envs: &[EnvName]) -> Vec<Option<jiff::Timestamp>> {
        if !self.config.shards {
            return vec![None; envs.len()];
        }
        let times = match self.slot_times().await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "slots' observation times not read");
                return vec![None; envs.len()];
            }
        };
        envs.iter()
            .map(|e| match self.slot_fence(e.as_str()) {
                Some(_) => None,
                None => times.get(&crate::shards::slot_of(e.as_str())).copied().flatten(),
            })
            .collect()
    }

    fn shard(&self) -> Option<gitstate_runtime::Shard> {
        if !self.config.shards {
            return None;
        }
        let slots = self.slots().into_iter().map(|s| s.0).collect();
        let replicas = self.leases().replicas.clone();
        Some(gitstate_runtime::Shard::new(self.config.replica.clone(), slots, self.is_leader(), replicas))
    }

    /// With shards, the slots are freed for the others' next round; the notifier's lock
    /// goes with the session, as the process ends.
    async fn resign(&self) {
        if self.config.shards
            && let Err(e) = self.release_slots().await
        {
            tracing::warn!(error = %e, cluster = self.cluster(), "slots not released: they lapse within failover");
        }
    }

    /// A third of `failover`: a standby takes over within it.
    fn period(&self) -> Duration {
        self.failover() / 3
    }
}
