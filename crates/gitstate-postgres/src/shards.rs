//! Shards (SPEC §19, `[state] shards = "auto"`): environments hash into [`SLOTS`] slots
//! ([`slot_of`], part of the database format); each replica leases a fair share of them
//! in `gitstate_slots` and acts only for the environments of its own.
//!
//! A lease row names its owner (the replica and the backend of its session), a token that
//! grows at every change of owner, and an expiry. Every `failover / 3` a replica, in one
//! transaction: says it is alive (`gitstate_replicas`), renews its leases, releases those
//! past its fair share (`⌈1024 / live replicas⌉`) and takes free ones up to it — free
//! meaning unowned, expired, or owned by a session that is gone (a replica killed loses
//! its slots as soon as PostgreSQL sees its connection close; one cut off, when its lease
//! expires). A replica counts a lease as its own until the moment it *sent* the renewal
//! plus `failover`, which is never later than the database's expiry, so it stops acting
//! before anyone may take over; and every write it makes checks, in its own transaction
//! and holding the rows (`FOR SHARE`), that the slots it writes are still leased to it
//! with the tokens it knows (fencing). A slot is never acted for by two replicas.

use std::collections::BTreeMap;
use std::time::Instant;

use gitstate_runtime::StoreError;

use crate::PgStore;
use crate::connect::db_error;

/// How many slots environments hash into. Part of the database format: never changed.
pub const SLOTS: i32 = 1024;

/// The slot of an environment: FNV-1a (32 bits) of its name's bytes, modulo [`SLOTS`].
/// Part of the database format: the function never changes across upgrades.
pub fn slot_of(environment: &str) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in environment.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    (h % SLOTS as u32) as i32
}

/// Slots held by each replica whose lease counts, by replica.
const OWNERS: &str = "SELECT owner, count(*) FROM gitstate_slots WHERE cluster = $1 AND owner IS NOT NULL
     AND expires_at > now() GROUP BY owner ORDER BY owner";

/// The fair share of each of `live` replicas: `⌈SLOTS / live⌉`.
pub fn fair_share(live: usize) -> usize {
    (SLOTS as usize).div_ceil(live.max(1))
}

/// The slots this replica holds, as it knows them.
#[derive(Debug, Default)]
pub(crate) struct Leases {
    /// Slot → the token of this replica's lease on it.
    pub(crate) slots: BTreeMap<i32, i64>,
    /// Until when the leases count, by this process's clock.
    pub(crate) valid_until: Option<Instant>,
    /// Grows each time a slot is taken: the loop passes its new environments at once.
    pub(crate) generation: u64,
    /// Slots held by each live replica, as the last round read them.
    pub(crate) replicas: Vec<(String, i64)>,
    /// When this replica's last full pass completed: written to its slots' `observed_at`
    /// at each round, for the notifier (SPEC §19, `GitstateStale`).
    pub(crate) passed_at: std::sync::Arc<std::sync::Mutex<Option<jiff::Timestamp>>>,
}

impl Leases {
    /// The token of `slot`'s lease, while it counts.
    pub(crate) fn token(&self, slot: i32, now: Instant) -> Option<i64> {
        if self.valid_until.is_some_and(|u| now < u) { self.slots.get(&slot).copied() } else { None }
    }
}

/// What a round of [`PgStore::keep_slots`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Round {
    /// Live replicas, this one included.
    pub live: usize,
    /// Slots held after the round.
    pub held: usize,
    /// Slots taken in the round.
    pub taken: Vec<i32>,
    /// Slots released in the round.
    pub released: Vec<i32>,
    /// Slots held by each replica after the round.
    pub replicas: Vec<(String, i64)>,
}

impl PgStore {
    /// One round of leases (see the module's documentation): says this replica is alive,
    /// renews, releases past the fair share, takes free slots up to it. On failure the
    /// leases are left to expire by the local clock.
    pub async fn keep_slots(&self) -> Result<Round, StoreError> {
        let sent = Instant::now();
        let cluster = self.config.cluster.clone();
        let replica = self.config.replica.clone();
        let failover = self.config.failover.as_millis() as i64;
        let mine_before: Vec<i32> = self.leases().slots.keys().copied().collect();
        let passed_at: Option<String> =
            self.leases().passed_at.lock().unwrap_or_else(|p| p.into_inner()).map(|t| t.to_string());
        let round = self
            .with_session(async |c| {
                let tx = c.transaction().await.map_err(|e| db_error("leasing slots", &e))?;
                let q = |e: tokio_postgres::Error| db_error("leasing slots", &e);
                tx.execute(
                    "INSERT INTO gitstate_slots (cluster, slot)
                     SELECT $1, s FROM generate_series(0, $2 - 1) s ON CONFLICT DO NOTHING",
                    &[&cluster, &SLOTS],
                )
                .await
                .map_err(q)?;
                tx.execute(
                    "INSERT INTO gitstate_replicas (cluster, replica, backend, expires_at)
                     VALUES ($1, $2, pg_backend_pid(), now() + $3::bigint * interval '1 millisecond')
                     ON CONFLICT (cluster, replica) DO UPDATE
                     SET backend = pg_backend_pid(), expires_at = now() + $3::bigint * interval '1 millisecond'",
                    &[&cluster, &replica, &failover],
                )
                .await
                .map_err(q)?;
                let live: i64 = tx
                    .query_one(
                        "SELECT count(*) FROM gitstate_replicas r WHERE r.cluster = $1 AND r.expires_at > now()
                         AND EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = r.backend)",
                        &[&cluster],
                    )
                    .await
                    .map_err(q)?
                    .get(0);
                let renewed = tx
                    .query(
                        "UPDATE gitstate_slots SET expires_at = now() + $3::bigint * interval '1 millisecond'
                         WHERE cluster = $1 AND owner = $2 AND backend = pg_backend_pid() AND expires_at > now()
                         RETURNING slot, token",
                        &[&cluster, &replica, &failover],
                    )
                    .await
                    .map_err(q)?;
                let mut held: BTreeMap<i32, i64> = renewed.iter().map(|r| (r.get(0), r.get(1))).collect();
                if let Some(at) = &passed_at {
                    tx.execute(
                        "UPDATE gitstate_slots SET observed_at = $3::text::timestamptz
                         WHERE cluster = $1 AND owner = $2 AND backend = pg_backend_pid()",
                        &[&cluster, &replica, at],
                    )
                    .await
                    .map_err(q)?;
                }
                let fair = fair_share(live as usize);
                let mut released = Vec::new();
                if held.len() > fair {
                    // The highest slots go: any choice is fair, this one is stable.
                    released = held.keys().rev().take(held.len() - fair).copied().collect::<Vec<_>>();
                    tx.execute(
                        "UPDATE gitstate_slots SET owner = NULL, backend = NULL, expires_at = NULL
                         WHERE cluster = $1 AND owner = $2 AND slot = ANY($3)",
                        &[&cluster, &replica, &released],
                    )
                    .await
                    .map_err(q)?;
                    for s in &released {
                        held.remove(s);
                    }
                }
                let mut taken = Vec::new();
                if held.len() < fair {
                    let want = (fair - held.len()) as i64;
                    let rows = tx
                        .query(
                            "UPDATE gitstate_slots SET owner = $2, backend = pg_backend_pid(), token = token + 1,
                                    expires_at = now() + $3::bigint * interval '1 millisecond'
                             WHERE cluster = $1 AND slot IN (
                                SELECT slot FROM gitstate_slots s WHERE s.cluster = $1
                                AND (s.owner IS NULL OR s.expires_at <= now()
                                     OR NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = s.backend))
                                ORDER BY slot LIMIT $4 FOR UPDATE SKIP LOCKED)
                             RETURNING slot, token",
                            &[&cluster, &replica, &failover, &want],
                        )
                        .await
                        .map_err(q)?;
                    for r in rows {
                        taken.push(r.get::<_, i32>(0));
                        held.insert(r.get(0), r.get(1));
                    }
                    taken.sort_unstable();
                }
                let replicas = tx
                    .query(
                        OWNERS,
                        &[&cluster],
                    )
                    .await
                    .map_err(q)?
                    .into_iter()
                    .map(|r| (r.get(0), r.get(1)))
                    .collect();
                tx.commit().await.map_err(q)?;
                Ok((Round { live: live as usize, held: held.len(), taken, released, replicas }, held))
            })
            .await;
        match round {
            Ok((round, held)) => {
                if !round.taken.is_empty() {
                    // What the slots' last owners wrote, before acting for them.
                    self.catch_up().await?;
                }
                let mut leases = self.leases();
                leases.slots = held;
                leases.valid_until = Some(sent + self.config.failover);
                leases.replicas = round.replicas.clone();
                if !round.taken.is_empty() {
                    leases.generation += 1;
                }
                drop(leases);
                let lost = mine_before.iter().filter(|s| !self.leases().slots.contains_key(s)).count();
                if !round.taken.is_empty() || lost > 0 {
                    tracing::info!(cluster = %self.config.cluster, replica = %self.config.replica, live = round.live,
                        held = round.held, taken = round.taken.len(), released = round.released.len(), lost,
                        "slots leased");
                }
                Ok(round)
            }
            Err(e) => Err(e),
        }
    }

    pub(crate) fn leases(&self) -> std::sync::MutexGuard<'_, Leases> {
        self.leases.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The slots this replica holds now, with their tokens (none once its leases lapsed).
    pub fn slots(&self) -> Vec<(i32, i64)> {
        let leases = self.leases();
        let now = Instant::now();
        leases.slots.keys().filter_map(|s| Some((*s, leases.token(*s, now)?))).collect()
    }

    /// The slot and token of `environment`, when this replica holds its slot now.
    pub(crate) fn slot_fence(&self, environment: &str) -> Option<(i32, i64)> {
        let slot = slot_of(environment);
        self.leases().token(slot, Instant::now()).map(|t| (slot, t))
    }

    /// Says this replica leaves: its slots freed at once for the others.
    pub async fn release_slots(&self) -> Result<(), StoreError> {
        let cluster = self.config.cluster.clone();
        let replica = self.config.replica.clone();
        *self.leases() = Leases::default();
        self.with_session(async |c| {
            c.execute(
                "UPDATE gitstate_slots SET owner = NULL, backend = NULL, expires_at = NULL
                 WHERE cluster = $1 AND owner = $2",
                &[&cluster, &replica],
            )
            .await
            .map_err(|e| db_error("releasing slots", &e))?;
            c.execute(
                "DELETE FROM gitstate_replicas WHERE cluster = $1 AND replica = $2",
                &[&cluster, &replica],
            )
            .await
            .map_err(|e| db_error("releasing slots", &e))?;
            Ok(())
        })
        .await
    }

    /// When each slot was last observed by its holder (its last full pass), as written.
    pub(crate) async fn slot_times(
        &self,
    ) -> Result<std::collections::HashMap<i32, Option<jiff::Timestamp>>, StoreError> {
        let cluster = self.config.cluster.clone();
        self.with_session(async |c| {
            let rows = c
                .query(
                    "SELECT slot, to_char(observed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')
                     FROM gitstate_slots WHERE cluster = $1",
                    &[&cluster],
                )
                .await
                .map_err(|e| db_error("reading slots", &e))?;
            Ok(rows
                .into_iter()
                .map(|r| (r.get::<_, i32>(0), r.get::<_, Option<String>>(1).and_then(|t| t.parse().ok())))
                .collect())
        })
        .await
    }

    /// How many slots each live replica holds, from the database (`gitstate_shard_slots`).
    pub async fn slot_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let cluster = self.config.cluster.clone();
        self.with_session(async |c| {
            let rows = c.query(OWNERS, &[&cluster]).await.map_err(|e| db_error("reading slots", &e))?;
            Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_stable_and_spread() {
        // Pinned: the function is part of the database format.
        assert_eq!(slot_of(""), (0x811c_9dc5u32 % 1024) as i32);
        assert_eq!(slot_of("production"), slot_of("production"));
        let mut counts = vec![0u32; SLOTS as usize];
        for i in 0..102_400 {
            counts[slot_of(&format!("svc-{i:05}")) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| (50..=150).contains(&c)), "{:?}", counts.iter().max());
        assert_eq!(fair_share(3), 342);
        assert_eq!(fair_share(4), 256);
        assert_eq!(fair_share(0), 1024);
    }
}
