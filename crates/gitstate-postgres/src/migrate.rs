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
    (
        3,
        // SPEC §19: a change sequence (every write takes the next number of its cluster's
        // counter, whose row lock orders the writers: numbers become visible in order), so
        // a standby reads only what changed; slot leases and replicas for shards; an
        // outbox per replica.
        "CREATE TABLE gitstate_changes (cluster text PRIMARY KEY, seq bigint NOT NULL);
         ALTER TABLE gitstate_environments
            ADD COLUMN seq bigint NOT NULL DEFAULT 0,
            ADD COLUMN slot integer,
            ADD COLUMN deleted boolean NOT NULL DEFAULT false;
         CREATE INDEX gitstate_environments_by_seq ON gitstate_environments (cluster, seq);
         ALTER TABLE gitstate_events ADD COLUMN seq bigint NOT NULL DEFAULT 0;
         CREATE INDEX gitstate_events_by_seq ON gitstate_events (cluster, seq);
         CREATE TABLE gitstate_slots (
            cluster text NOT NULL,
            slot integer NOT NULL,
            owner text,
            backend integer,
            token bigint NOT NULL DEFAULT 0,
            expires_at timestamptz,
            observed_at timestamptz,
            PRIMARY KEY (cluster, slot));
         CREATE TABLE gitstate_replicas (
            cluster text NOT NULL,
            replica text NOT NULL,
            backend integer NOT NULL,
            expires_at timestamptz NOT NULL,
            PRIMARY KEY (cluster, replica));
         CREATE TABLE gitstate_replica_outbox (
            cluster text NOT NULL,
            replica text NOT NULL,
            outbox jsonb NOT NULL,
            PRIMARY KEY (cluster, replica));",
    ),
    (
        4,
        // SPEC §20: keys every replica shares (the dashboard's CSRF tokens).
        "CREATE TABLE gitstate_keys (
            cluster text NOT NULL,
            name text NOT NULL,
            key bytea NOT NULL,
            PRIMARY KEY (cluster, name));",
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
