//! `gitstate watch`: the runtime's controller, forever, with `/metrics`, `/healthz`,
//! `/readyz`, `/status`, the dashboard and (when configured) push webhooks. This file only
//! wires: the state (files under their lock, or PostgreSQL with its leadership), the
//! controller from the configuration, the listener, a file-system watcher of a local
//! repository, and SIGINT/SIGTERM as the shutdown (in-flight work finishes, 30 s at most,
//! then remediations are stopped — SIGTERM, SIGKILL 10 s later — and recorded).

use std::sync::Arc;
use std::time::Duration;

use gitstate_postgres::PgStore;
use gitstate_runtime::{FileStore, Leadership, Sole, Store};

use crate::cli::Watch;
use crate::config::RepoLocation;
use crate::listener::dashboard::Dashboard;
use crate::listener::metrics::Metrics;
use crate::listener::{server, webhook};
use crate::{exit, plan};

/// How long shutdown waits for passes and remediations in flight.
pub const DRAIN: Duration = Duration::from_secs(30);

/// Runs the command.
pub async fn run(args: Watch) -> anyhow::Result<i32> {
    let config = super::load_config(args.config.config.as_deref())?;
    let listen = args.listen.unwrap_or(config.watch.listen);
    for warning in crate::commands::validate::listener_warnings(&config, listen) {
        tracing::warn!("{warning}");
    }
    // Bad certificate files are a startup error (exit 2), before anything runs.
    let tls = match &config.watch.tls {
        Some(t) => Some(crate::listener::tls::Certs::load(&t.cert, &t.key).map_err(|e| anyhow::anyhow!(e))?),
        None => None,
    };
    crate::memory::large_blocks_from_the_system();
    let metrics = Arc::new(Metrics::new());
    // The state in files (one watch at a time, by the lock) or in PostgreSQL (replicas,
    // one of them leading).
    // The dashboard's CSRF key is shared by every replica: in the database, or the
    // state directory.
    let (store, leadership, _lock, key): (Arc<dyn Store>, Arc<dyn Leadership>, _, _) = match &config.postgres
    {
        Some(pg) => {
            // Connected and migrated here (errors exit 2); the controller takes the lead, or
            // stands by, as it starts.
            let pg = Arc::new(PgStore::open_replica(pg).await?);
            let key = match &config.watch.auth {
                Some(_) => {
                    let mut fresh = [0u8; 32];
                    getrandom::fill(&mut fresh).map_err(|e| anyhow::anyhow!("random numbers: {e}"))?;
                    Some(pg.shared_key("dashboard-csrf", fresh).await?)
                }
                None => None,
            };
            (pg.clone(), pg, None, key)
        }
        None => {
            let lock = FileStore::lock(&config.state_dir)?;
            let store = FileStore::open(&config.state_dir)?.with_rotation(config.events);
            let key = config
                .watch
                .auth
                .as_ref()
                .map(|_| crate::listener::csrf::file_key(&config.state_dir))
                .transpose()?;
            (Arc::new(store), Arc::new(Sole), Some(lock), key)
        }
    };
    let mut plan = plan::build(&config, &[], gitstate_http::KeepAlive::Every).await?;
    let source: Arc<dyn gitstate_core::ExpectedState> = Arc::new(plan.source().clone());
    let history = source.clone();
    let mut options = plan.options(&config);
    options.drain = DRAIN;
    // A stopped command gets KILL_GRACE between SIGTERM and SIGKILL, then reports.
    options.stop_grace = gitstate_process::KILL_GRACE + Duration::from_secs(5);
    let ttl = config.watch.interval.saturating_mul(4);
    let mut builder = plan
        .controller(&config, source, store, Some(ttl))?
        .options(options)
        .leadership(leadership)
        .observer(metrics.clone());
    let links = plan.links(&config);
    // What file-system notification sees change in a local repository: a ref poll after
    // a loose ref moved reads that ref, not 50,000 (SPEC §19).
    let changes = Arc::new(gitstate_runtime::refwatch::RefChanges::default());
    if !config.discover.is_empty() {
        let discovery = plan::Discovery::new(config.clone(), plan).with_changes(changes.clone());
        builder = builder.discovery(Arc::new(discovery));
    }
    let controller = builder.build();
    let view = controller.view();
    let order = config.environments.iter().map(|e| e.name.clone()).collect();
    let dashboard = Arc::new(Dashboard::new(view.clone(), links).with_history(history, order));
    // The fleet's parts (matrix, promotions, DORA) are made once the first pass is done,
    // and remade in the background when a page finds them old.
    tokio::spawn(dashboard.clone().warm());
    // What a pass freed goes back to the system once it is done (see `crate::memory`), at
    // most once an interval: a second after the views changed.
    let mut passes = view.subscribe();
    let every = config.watch.interval.max(Duration::from_secs(1));
    tokio::spawn(async move {
        while passes.changed().await.is_ok() {
            tokio::time::sleep(Duration::from_secs(1)).await;
            passes.borrow_and_update();
            let _ = tokio::task::spawn_blocking(crate::memory::give_back).await;
            tokio::time::sleep(every).await;
        }
    });
    let guard = match (&config.watch.auth, key) {
        (Some(auth), Some(key)) => Some(server::Guard {
            gate: crate::listener::auth::Gate::new(auth.clone()),
            csrf: crate::listener::csrf::Csrf::new(key),
            operator: controller.operator(),
        }),
        _ => None,
    };
    let endpoint = server::Endpoint {
        metrics: metrics.clone(),
        view,
        stall_after: server::stall_window(config.watch.interval),
        dashboard,
        guard,
        hsts: config.watch.tls.as_ref().and_then(|t| t.hsts),
    };
    if let Some(certs) = &tls {
        certs.watch();
        metrics.tls_reloads(certs.clone());
    }
    let bound = server::start(listen, endpoint, tls.clone())
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(listen = %bound, "serving the dashboard at {scheme}://{bound}/ and /metrics /healthz /readyz /status");

    // Local repositories are also watched by file-system notification: a moved ref starts
    // a pass without waiting for the next poll.
    let trigger = controller.trigger();
    let _fs_watcher = match &config.source.repo {
        RepoLocation::Local(p) => gitstate_runtime::refwatch::watch(p, trigger.clone(), changes),
        RepoLocation::Remote(_) => None,
    };
    if let Some(hook) = config.watch.webhook.clone() {
        let metrics = metrics.clone();
        let options =
            crate::serve::Options { max_body: webhook::MAX_BODY, tls: tls.clone(), headers: Vec::new() };
        let bound = crate::serve::serve_with(hook.listen, options, move |r| {
            webhook::respond(r, &hook.secret, &metrics, |reference| trigger.pushed(reference)).into()
        })
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {} for webhooks: {e}", hook.listen))?;
        tracing::info!(listen = %bound, "push webhooks at POST /hooks/git");
    }
    // The in-sync times held back from the log are written when the loop stops.
    controller.run(shutdown_signal()).await?;
    tracing::info!("stopped; state persisted");
    Ok(exit::IN_SYNC)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: finishing work in flight"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: finishing work in flight"),
    }
}
