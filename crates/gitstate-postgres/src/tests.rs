//! The PostgreSQL store's own tests against a real server (the store contract suite runs
//! in `tests/contract.rs`).

use std::sync::atomic::Ordering;
use std::time::Duration;

use gitstate_core::{EnvName, EnvState, Journal};
use gitstate_runtime::Store;
use tokio_postgres::Client;

use crate::leader::cluster_key;
use crate::{PgOptions, PgStore, migrate};
use gitstate_testkit::Postgres;

fn config(url: &str) -> PgOptions {
    PgOptions::new(url).with_failover(Duration::from_secs(3))
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
        pg.sql("empty", "SELECT string_agg(version::text, ',' ORDER BY version) FROM gitstate_migrations"),
        "1,2,3,4"
    );

    // The previous version, with a state in it: migrated, the state kept.
    let url = pg.database("previous");
    migrate(&mut client(&url).await, 1).await.unwrap();
    pg.sql(
            "previous",
            r#"INSERT INTO gitstate_environments (cluster, name, state) VALUES ('default', 'production', '{"consecutive_probe_failures": 4}')"#,
        );
    let store = PgStore::open(&config(&url)).await.unwrap();
    assert_eq!(pg.sql("previous", "SELECT max(version) FROM gitstate_migrations"), "4");
    // SPEC §20: a key the first replica makes, every other one reads.
    assert_eq!(store.shared_key("dashboard-csrf", [1; 32]).await.unwrap(), [1; 32]);
    let other = PgStore::open(&config(&url)).await.unwrap();
    assert_eq!(other.shared_key("dashboard-csrf", [2; 32]).await.unwrap(), [1; 32]);
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
    assert_eq!(pg.sql("corrupt", "SELECT state->>'phase' FROM gitstate_environments"), "7", "kept as it was");
}

/// Overrides of a schema this gitstate does not know (written by a newer one) are an
/// error naming the row, never reset.
#[tokio::test]
async fn overrides_of_an_unknown_schema_are_named() {
    use gitstate_runtime::Store as _;
    let pg = Postgres::start();
    let url = pg.database("schema");
    let store = PgStore::open(&config(&url)).await.unwrap();
    pg.sql(
        "schema",
        r#"INSERT INTO gitstate_overrides (cluster, overrides) VALUES ('default', '{"schema":3,"environments":{}}')
           ON CONFLICT (cluster) DO UPDATE SET overrides = EXCLUDED.overrides"#,
    );
    store.refresh().await.ok();
    let e = PgStore::open(&config(&url)).await.and_then(|s| s.overrides()).unwrap_err().to_string();
    assert!(e.contains("unknown schema 3") && e.contains("gitstate_overrides row"), "{e}");
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
