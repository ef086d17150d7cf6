//! Shards (SPEC §19) against a real PostgreSQL: slot leases shared fairly, never held
//! twice, moved when a replica dies, joins or is cut off (a proxy the test controls),
//! writes fenced by their slot's lease in the write's own transaction, and a standby's
//! catch-up reading only what changed. The last test drives random join / leave / kill /
//! partition sequences against a small model of leases.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use gitstate_core::{EnvName, EnvState, Journal};
use gitstate_postgres::{PgOptions, PgStore, SLOTS, fair_share, slot_of};
use gitstate_runtime::{Leadership, Store};
use gitstate_testkit::{Postgres, Proxy};

const FAILOVER: Duration = Duration::from_millis(1500);

fn options(url: &str, replica: &str) -> PgOptions {
    PgOptions::new(url).with_failover(FAILOVER).with_shards(true).with_replica(replica)
}

fn env(i: usize) -> EnvName {
    EnvName::new(&format!("svc-{i:05}")).unwrap()
}

fn record(failures: u32) -> EnvState {
    EnvState { consecutive_probe_failures: failures, ..EnvState::default() }
}

/// Slot → the replicas that may act for it now, by each one's own account.
fn claims(replicas: &[(&str, &PgStore)]) -> BTreeMap<i32, Vec<String>> {
    let mut out: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    for (name, r) in replicas {
        for (slot, _) in r.slots() {
            out.entry(slot).or_default().push((*name).to_owned());
        }
    }
    out
}

fn assert_exclusive(replicas: &[(&str, &PgStore)]) {
    for (slot, who) in claims(replicas) {
        assert!(who.len() == 1, "slot {slot} claimed by {who:?}");
    }
}

fn url_via(pg: &Postgres, db: &str, port: u16) -> String {
    pg.url(db).replace(&format!(":{}/", pg_port(pg, db)), &format!(":{port}/"))
}

fn pg_port(pg: &Postgres, db: &str) -> u16 {
    let url = pg.url(db);
    let after = url.split("127.0.0.1:").nth(1).unwrap();
    after.split('/').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn three_replicas_share_the_slots_a_killed_one_is_replaced_and_a_fourth_rebalances() {
    let pg = Postgres::start();
    let url = pg.database("shards");
    let a = PgStore::open_replica(&options(&url, "a")).await.unwrap();
    let b = PgStore::open_replica(&options(&url, "b")).await.unwrap();
    let c = PgStore::open_replica(&options(&url, "c")).await.unwrap();
    // Rounds until each holds its fair share of three.
    for _ in 0..3 {
        for r in [&a, &b, &c] {
            r.keep_slots().await.unwrap();
        }
    }
    assert_exclusive(&[("a", &a), ("b", &b), ("c", &c)]);
    let held: Vec<usize> = [&a, &b, &c].iter().map(|r| r.slots().len()).collect();
    assert_eq!(held.iter().sum::<usize>(), SLOTS as usize, "{held:?}");
    for h in &held {
        assert!(
            h.abs_diff(SLOTS as usize / 3) <= SLOTS as usize / 30,
            "{held:?} not within 10% of a fair share"
        );
    }
    // Each environment's owner acts for it, and only its owner.
    for i in 0..300 {
        let e = env(i);
        let acting = [&a, &b, &c].iter().filter(|r| r.may_act(&e).is_some()).count();
        assert_eq!(acting, 1, "{e}");
    }

    // c dies (its session ends): its slots go to a and b within a round.
    let c_slots: BTreeSet<i32> = c.slots().into_iter().map(|s| s.0).collect();
    drop(c);
    let killed = Instant::now();
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..2 {
        for r in [&a, &b] {
            r.keep_slots().await.unwrap();
        }
    }
    assert_exclusive(&[("a", &a), ("b", &b)]);
    assert_eq!(a.slots().len() + b.slots().len(), SLOTS as usize, "every slot of the dead one taken");
    assert!(killed.elapsed() < FAILOVER, "moved before its lease would have lapsed: {:?}", killed.elapsed());
    let now_held: BTreeSet<i32> = a.slots().into_iter().chain(b.slots()).map(|s| s.0).collect();
    assert!(c_slots.is_subset(&now_held));

    // d joins: within two rounds each holds about half... of three shares now.
    let d = PgStore::open_replica(&options(&url, "d")).await.unwrap();
    for _ in 0..3 {
        for r in [&d, &a, &b] {
            r.keep_slots().await.unwrap();
            assert_exclusive(&[("a", &a), ("b", &b), ("d", &d)]);
        }
    }
    let held: Vec<usize> = [&a, &b, &d].iter().map(|r| r.slots().len()).collect();
    assert_eq!(held.iter().sum::<usize>(), SLOTS as usize, "{held:?}");
    assert!(held.iter().all(|h| *h <= fair_share(3)), "{held:?}");
    assert_eq!(a.slot_counts().await.unwrap().len(), 3);

    // A replica that leaves frees its slots at once.
    a.release_slots().await.unwrap();
    assert!(a.slots().is_empty());
    for r in [&b, &d] {
        r.keep_slots().await.unwrap();
    }
    assert_eq!(b.slots().len() + d.slots().len(), SLOTS as usize);
}

#[tokio::test]
async fn a_partitioned_replica_keeps_no_slot_past_its_lease_and_its_late_write_is_fenced() {
    let pg = Postgres::start();
    let url = pg.database("partition");
    let proxy = Proxy::start(&format!("127.0.0.1:{}", pg_port(&pg, "partition")));
    let a = PgStore::open_replica(&options(&url, "a")).await.unwrap();
    // No idle timeout for c: its session stays open on the server through the cut, so
    // that what it sends after is refused by the fence, not by a closed connection.
    let c = PgStore::open(&options(&url_via(&pg, "partition", proxy.port()), "c")).await.unwrap();
    for _ in 0..2 {
        a.keep_slots().await.unwrap();
        c.keep_slots().await.unwrap();
    }
    let (slot, _) = c.slots()[0];
    let e = (0..).map(env).find(|e| slot_of(e.as_str()) == slot).unwrap();
    c.checkpoint(&[(e.clone(), record(1))]).await.unwrap();

    // The cut: c's write leaves while its lease still counts, and hangs.
    proxy.cut();
    let cut_at = Instant::now();
    assert!(c.may_act(&e).is_some());
    let late = tokio::spawn(async move {
        let r = c.checkpoint(&[(e.clone(), record(9))]).await;
        (c, r)
    });
    // c counts its leases until it sent its last renewal plus failover: never later than
    // the database's expiry.
    tokio::time::sleep(FAILOVER + Duration::from_millis(200)).await;
    // a takes every slot once c's leases expire.
    let deadline = Instant::now() + FAILOVER * 4;
    while a.slots().len() < SLOTS as usize && Instant::now() < deadline {
        a.keep_slots().await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(a.slots().len(), SLOTS as usize, "a took c's slots after {:?}", cut_at.elapsed());
    let e = (0..).map(env).find(|e| slot_of(e.as_str()) == slot).unwrap();
    a.checkpoint(&[(e.clone(), record(2))]).await.unwrap();

    // Healed: c's held write arrives, and its own transaction refuses it.
    proxy.heal();
    let (c, result) = tokio::time::timeout(Duration::from_secs(30), late).await.unwrap().unwrap();
    let err = result.unwrap_err().to_string();
    assert!(err.contains("not leased to this replica"), "{err}");
    assert!(c.may_act(&e).is_none(), "c acts for nothing it lost");
    assert_eq!(
        pg.sql(
            "partition",
            &format!(
                "SELECT state->>'consecutive_probe_failures' FROM gitstate_environments WHERE name = '{e}'"
            )
        ),
        "2",
        "only the owner's write is there"
    );
}

#[tokio::test]
async fn a_standby_catching_up_reads_only_what_changed() {
    let pg = Postgres::start();
    let url = pg.database("catchup");
    let opts = PgOptions::new(&url).with_failover(FAILOVER);
    let leader = PgStore::open_replica(&opts).await.unwrap();
    assert!(leader.try_lead().await.unwrap());
    let all: Vec<(EnvName, EnvState)> = (0..3000).map(|i| (env(i), record(1))).collect();
    leader.checkpoint(&all).await.unwrap();
    let standby = PgStore::open_replica(&opts).await.unwrap();
    assert_eq!(standby.environments().len(), 3000);
    let before = standby.rows_read();
    assert_eq!(before, 3000, "opening reads the whole state once");
    // Nothing changed: nothing read.
    standby.catch_up().await.unwrap();
    assert_eq!(standby.rows_read(), before);
    // 1,000 changes, in 10 writes; one environment forgotten.
    for chunk in all[..1000].chunks(100) {
        let changed: Vec<_> = chunk.iter().map(|(n, _)| (n.clone(), record(2))).collect();
        leader.checkpoint(&changed).await.unwrap();
    }
    leader.forget(&[env(2999)]).await.unwrap();
    standby.catch_up().await.unwrap();
    assert_eq!(standby.rows_read() - before, 1001, "the 1,000 changed rows and the tombstone");
    let seen = standby.environments();
    assert_eq!(seen.len(), 2999);
    assert_eq!(seen[&env(999)].consecutive_probe_failures, 2);
    assert_eq!(seen[&env(1000)].consecutive_probe_failures, 1);
}

/// Random joins, leaves, kills, cuts and heals of up to four replicas; after each step
/// every replica runs a round. Checked against a model that knows only who is up and
/// connected: no slot is ever claimed by two replicas; a cut replica claims nothing once
/// its lease time has passed; and once the cluster is quiet for a lease time, the
/// connected replicas hold every slot, each at most a fair share of them.
#[tokio::test]
async fn random_membership_never_shares_a_slot_and_settles_on_fair_shares() {
    let pg = Postgres::start();
    let cases = gitstate_testkit::proptest_cases(2);
    for case in 0..cases {
        let db = format!("random{case}");
        let url = pg.database(&db);
        let port = pg_port(&pg, &db);
        let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(case);
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        // Model: per replica, whether it is up, and when it was cut (None: connected).
        struct Member {
            store: Option<PgStore>,
            proxy: Proxy,
            cut_at: Option<Instant>,
        }
        let mut members: Vec<Member> = (0..4)
            .map(|_| Member { store: None, proxy: Proxy::start(&format!("127.0.0.1:{port}")), cut_at: None })
            .collect();
        for step in 0..14 {
            let i = next(4) as usize;
            let m = &mut members[i];
            match (next(5), m.store.is_some()) {
                (_, false) => {
                    let url = url.replace(&format!(":{port}/"), &format!(":{}/", m.proxy.port()));
                    m.proxy.heal();
                    m.cut_at = None;
                    m.store = Some(PgStore::open(&options(&url, &format!("r{i}"))).await.unwrap());
                }
                (0, true) => {
                    if m.cut_at.is_none() {
                        m.store.as_ref().unwrap().release_slots().await.unwrap();
                    }
                    m.store = None;
                }
                (1, true) => {
                    m.store = None; // killed: its connection closes
                }
                (2, true) if m.cut_at.is_none() => {
                    m.proxy.cut();
                    m.cut_at = Some(Instant::now());
                }
                (3, true) if m.cut_at.is_some() => {
                    m.proxy.heal();
                    m.cut_at = None;
                }
                _ => {}
            }
            // A round for every connected replica (a cut one's would hang: it has none).
            for m in members.iter().filter(|m| m.cut_at.is_none()) {
                if let Some(s) = &m.store {
                    let _ = s.keep_slots().await;
                }
            }
            let view: Vec<(String, &PgStore)> = members
                .iter()
                .enumerate()
                .filter_map(|(i, m)| Some((format!("r{i}"), m.store.as_ref()?)))
                .collect();
            let view: Vec<(&str, &PgStore)> = view.iter().map(|(n, s)| (n.as_str(), *s)).collect();
            assert_exclusive(&view);
            for m in &members {
                if let (Some(s), Some(at)) = (&m.store, m.cut_at)
                    && at.elapsed() > FAILOVER
                {
                    assert!(
                        s.slots().is_empty(),
                        "case {case} step {step}: a cut replica still claims slots"
                    );
                }
            }
        }
        // Quiet: every cut replica is left cut, rounds run past a lease time.
        let quiet = Instant::now();
        while quiet.elapsed() < FAILOVER * 2 {
            for m in members.iter().filter(|m| m.cut_at.is_none()) {
                if let Some(s) = &m.store {
                    let _ = s.keep_slots().await;
                }
            }
            tokio::time::sleep(FAILOVER / 3).await;
        }
        let connected: Vec<&PgStore> =
            members.iter().filter(|m| m.cut_at.is_none()).filter_map(|m| m.store.as_ref()).collect();
        if connected.is_empty() {
            continue;
        }
        let total: usize = connected.iter().map(|s| s.slots().len()).sum();
        assert_eq!(total, SLOTS as usize, "case {case}: connected replicas hold every slot");
        for s in &connected {
            assert!(s.slots().len() <= fair_share(connected.len()), "case {case}: more than a fair share");
        }
        for m in &members {
            m.proxy.heal();
        }
    }
}

/// SPEC §19: each replica writes its last full pass down for its slots; another replica
/// (the notifier) reads it for the environments it does not hold, nothing for its own.
#[tokio::test]
async fn the_notifier_reads_when_each_slot_was_last_observed() {
    let pg = Postgres::start();
    let url = pg.database("observed");
    let a = PgStore::open_replica(&options(&url, "a")).await.unwrap();
    let b = PgStore::open_replica(&options(&url, "b")).await.unwrap();
    for _ in 0..2 {
        a.keep_slots().await.unwrap();
        b.keep_slots().await.unwrap();
    }
    let at: jiff::Timestamp = "2026-12-07T00:00:01.5Z".parse().unwrap();
    a.full_pass(at);
    a.keep_slots().await.unwrap();
    let envs: Vec<EnvName> = (0..200).map(env).collect();
    let seen = b.observed_elsewhere(&envs).await;
    for (e, t) in envs.iter().zip(&seen) {
        if a.may_act(e).is_some() {
            assert_eq!(*t, Some(at), "{e}: a's slot, as a wrote it");
        } else {
            assert_eq!(*t, None, "{e}: b's own (b observes it itself)");
        }
    }
    assert!(seen.iter().any(Option::is_some) && seen.iter().any(Option::is_none));
}
