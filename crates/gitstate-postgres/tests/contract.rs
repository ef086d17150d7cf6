//! The store contract suite ([`gitstate_runtime::store::contract`]) against the
//! PostgreSQL store: one throw-away server, a database per test.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use gitstate_core::EnvName;
use gitstate_postgres::{PgOptions, PgStore};
use gitstate_runtime::StoreError;
use gitstate_runtime::store::contract::{self, Harness};
use gitstate_testkit::Postgres;

struct Pg {
    server: Postgres,
    databases: AtomicUsize,
}

/// A database of the server.
struct Database {
    name: String,
    url: String,
}

impl Pg {
    fn options(db: &Database) -> PgOptions {
        PgOptions::new(&db.url).with_failover(Duration::from_secs(3))
    }

    /// `SELECT`s one value with a new session of the test's own.
    fn sql(&self, db: &Database, sql: &str) -> String {
        self.server.sql(&db.name, sql)
    }
}

#[async_trait]
impl Harness for Pg {
    type Store = PgStore;
    type Place = Database;

    async fn place(&self, test: &str) -> Database {
        let name = format!("{test}_{}", self.databases.fetch_add(1, Ordering::SeqCst));
        Database { url: self.server.database(&name), name }
    }

    /// Opens and takes the lead, waiting (10 s at most) for the server to see that the
    /// last leader's session ended.
    async fn open(&self, db: &Database) -> Result<PgStore, StoreError> {
        let store = PgStore::open(&Self::options(db)).await?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !store.try_lead().await? {
            assert!(Instant::now() < deadline, "the lead was not free within 10 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(store)
    }

    /// Dropped: its connection closes, and with its session the lock goes.
    async fn crash(&self, store: PgStore) {
        drop(store);
    }

    async fn torn_write(&self, db: &Database, store: PgStore, env: &EnvName) {
        let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls).await.unwrap();
        let connection = tokio::spawn(connection);
        client
            .batch_execute(&format!(
                r#"BEGIN;
                UPDATE gitstate_environments SET state = state || '{{"consecutive_probe_failures": 9}}'
                    WHERE cluster = 'default' AND name = '{env}';
                INSERT INTO gitstate_events (cluster, event) VALUES ('default',
                    '{{"at": "2027-01-15T08:00:09Z", "environment": "{env}", "event": "drift_detected",
                       "expected": "{sha}", "status": "behind"}}');"#,
                sha = "b".repeat(40)
            ))
            .await
            .unwrap();
        // The process dies before the commit: its connection goes, and the transaction.
        drop(client);
        connection.await.unwrap().unwrap();
        self.crash(store).await;
    }

    async fn corrupt(&self, db: &Database, env: &EnvName) -> String {
        let changed = self.sql(
            db,
            &format!(
                r#"WITH c AS (UPDATE gitstate_environments SET state = state || '{{"phase": 7}}'
                   WHERE cluster = 'default' AND name = '{env}' RETURNING 1) SELECT count(*) FROM c"#
            ),
        );
        assert_eq!(changed, "1", "no row of {env} to corrupt");
        format!("gitstate_environments row (cluster \"default\", name \"{env}\")")
    }

    async fn stored(&self, db: &Database) -> Vec<u8> {
        self.sql(
            db,
            "SELECT string_agg(cluster || ' ' || name || ' ' || state::text || ' ' || xmin, E'\\n' ORDER BY cluster, name)
             FROM gitstate_environments",
        )
        .into_bytes()
    }

    /// Opens; must not get the lead.
    async fn second_writer(&self, db: &Database) -> Result<PgStore, StoreError> {
        let store = PgStore::open(&Self::options(db)).await?;
        assert!(!store.try_lead().await?, "a second replica took the lead the first holds");
        Ok(store)
    }

    /// Terminates the sessions of `store`'s process that hold an advisory lock in this
    /// database (the leader's), then waits until the store has seen its session end.
    async fn cut(&self, db: &Database, store: &PgStore) -> bool {
        let cut = self.sql(
            db,
            &format!(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                 WHERE application_name = 'gitstate:{}' AND pid IN (SELECT pid FROM pg_locks
                 WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))",
                std::process::id()
            ),
        );
        assert_eq!(cut, "1", "one leader's session");
        let deadline = Instant::now() + Duration::from_secs(10);
        while store.is_leader() {
            assert!(Instant::now() < deadline, "the store did not see its session end within 10 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }
}

#[tokio::test]
async fn the_postgres_store_keeps_the_store_contract() {
    let pg = Pg { server: Postgres::start(), databases: AtomicUsize::new(0) };
    contract::all(&pg).await;
}
