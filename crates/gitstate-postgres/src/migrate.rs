//! The schema, one migration a version, applied by gitstate itself under a
//! transaction-level advisory lock, so that two replicas starting together migrate once
//! (as sqlx's `migrate` does).

use gitstate_runtime::StoreError;
use tokio_postgres::Client;

use crate::connect::db_error;
use crate::leader::LOCK_CLASS;

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

/// Applies the migrations the database lacks, up to `upto` (all of them normally).
pub async fn migrate(client: &mut Client, upto: i32) -> Result<i32, StoreError> {
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
        return Err(StoreError::Database {
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
