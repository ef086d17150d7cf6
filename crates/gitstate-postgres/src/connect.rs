//! Sessions with the database: TLS as the URL's `sslmode` says, an idle timeout so that a
//! vanished replica loses its lock, and errors a person can read.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gitstate_runtime::StoreError;
use tokio_postgres::Client;

/// What a PostgreSQL error says, for a person.
pub(crate) fn pg_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => gitstate_core::error_chain(e),
    }
}

pub(crate) fn db_error(what: &str, e: &tokio_postgres::Error) -> StoreError {
    StoreError::Database { message: format!("{what}: {}", pg_message(e)) }
}

/// A session with the database, and whether it is still open.
pub(crate) struct Session {
    pub(crate) client: Client,
    pub(crate) open: Arc<AtomicBool>,
}

/// Connects with TLS offered (rustls, the platform's roots) as the URL's `sslmode` says.
/// With `idle_timeout`, the server ends the session after that long without a statement
/// (`idle_session_timeout`, PostgreSQL 14+): a replica whose host froze or vanished
/// without closing its socket loses its lock within that time, not at the server's TCP
/// keepalive hours later; TCP keepalives are on from this side too.
pub(crate) async fn connect(url: &str, idle_timeout: Option<Duration>) -> Result<Session, StoreError> {
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| StoreError::Database { message: format!("TLS: {e}") })?;
    let config = rustls_platform_verifier::BuilderVerifierExt::with_platform_verifier(config)
        .map_err(|e| StoreError::Database { message: format!("TLS: {e}") })?
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
        .map_err(|_| StoreError::Database { message: "connecting: no answer within 10s".into() })?
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
