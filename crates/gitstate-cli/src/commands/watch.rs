//! `gitstate watch`: the closed loop, forever, with `/metrics`, `/healthz`, `/readyz` and
//! `/status`. SIGINT/SIGTERM stop scheduling, let in-flight work finish (30 s at most,
//! then stop remediations — SIGTERM, SIGKILL 10 s later — and record it), persist, and
//! exit 0.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use notify::Watcher as _;
use tokio::sync::mpsc;

use crate::cli::Watch;
use crate::config::RepoLocation;
use crate::state::postgres::PgStore;
use crate::state::{StateStore, Store};
use crate::watch::dashboard::Dashboard;
use crate::watch::metrics::Metrics;
use crate::watch::schedule::{self, Jitter, Timing};
use crate::watch::{Live, git_dir, server};
use crate::{exit, plan};

/// How long shutdown waits for passes and remediations in flight.
pub const DRAIN: Duration = Duration::from_secs(30);

/// Runs the command.
pub async fn run(args: Watch) -> anyhow::Result<i32> {
    let config = super::load_config(args.config.config.as_deref())?;
    let metrics = Arc::new(Metrics::new());
    // The state in files (one watch at a time, by the lock) or in PostgreSQL (replicas,
    // one of them leading).
    let (store, _lock, pg): (Arc<dyn Store>, _, _) = match &config.postgres {
        Some(pg) => {
            let pg = Arc::new(PgStore::open_replica(pg).await?);
            pg.try_lead().await?;
            tokio::spawn(leadership(pg.clone(), metrics.clone()));
            (pg.clone(), None, Some(pg))
        }
        None => {
            let lock = StateStore::lock(&config.state_dir)?;
            (Arc::new(StateStore::open(&config.state_dir)?.with_rotation(config.events)), Some(lock), None)
        }
    };
    metrics.set_leader(store.is_leader());
    let plan = plan::build(&config, &[], gitstate_http::KeepAlive::Every).await?;
    let engine = plan.watch_engine(&config)?.with_journal(store.clone()).with_deferred_remediations();
    let dashboard = Arc::new(Dashboard::new(store.clone(), plan.links(&config)));
    let ready = Arc::new(AtomicBool::new(false));
    let listen = args.listen.unwrap_or(config.watch.listen);
    let bound = server::start(
        listen,
        server::Endpoint {
            metrics: metrics.clone(),
            store: store.clone(),
            ready: ready.clone(),
            stall_after: server::stall_window(config.watch.interval),
            dashboard: dashboard.clone(),
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    tracing::info!(listen = %bound, "serving the dashboard at http://{bound}/ and /metrics /healthz /readyz /status");

    // Local repositories are also watched by file-system notification: a moved ref starts
    // a pass without waiting for the next poll.
    let (fs_tx, fs_rx) = mpsc::channel(1);
    let _fs_watcher = match &config.source.repo {
        RepoLocation::Local(p) => {
            let dir = git_dir(p);
            let tx = fs_tx.clone();
            let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                if res.is_ok_and(|e| !e.kind.is_access()) {
                    let _ = tx.try_send(());
                }
            });
            match watcher {
                Ok(mut w) => {
                    let refs = w.watch(&dir.join("refs"), notify::RecursiveMode::Recursive);
                    let top = w.watch(&dir, notify::RecursiveMode::NonRecursive);
                    // A reftable repository writes its refs under reftable/.
                    let reftable = dir.join("reftable");
                    if reftable.is_dir()
                        && let Err(e) = w.watch(&reftable, notify::RecursiveMode::Recursive)
                    {
                        tracing::warn!(error = %e, "file-system notification unavailable for reftable/");
                    }
                    if let Err(e) = refs.and(top) {
                        tracing::warn!(error = %e, "file-system notification unavailable; polling refs only");
                    }
                    Some(w)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "file-system notification unavailable; polling refs only");
                    None
                }
            }
        }
        RepoLocation::Remote(_) => None,
    };

    let timing = Timing {
        interval: config.watch.interval,
        jitter: config.watch.jitter,
        ref_poll: config.watch.ref_poll,
        drain: DRAIN,
        // A stopped command gets KILL_GRACE between SIGTERM and SIGKILL, then reports.
        stop_grace: gitstate_process::KILL_GRACE + Duration::from_secs(5),
    };
    let webhook = config.watch.webhook.clone();
    let live = Arc::new(Live::new(config, engine, store.clone(), plan, metrics.clone(), dashboard).await?);
    if let Some(hook) = webhook {
        let (live, metrics, poke) = (live.clone(), metrics.clone(), fs_tx.clone());
        let bound = crate::serve::serve(hook.listen, crate::watch::webhook::MAX_BODY, move |r| {
            crate::watch::webhook::respond(r, &hook.secret, &metrics, |reference| {
                live.pushed(reference);
                // A poll at once (a full channel means one is already asked for).
                let _ = poke.try_send(());
            })
        })
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {} for webhooks: {e}", hook.listen))?;
        tracing::info!(listen = %bound, "push webhooks at POST /hooks/git");
    }
    let seed = jiff::Timestamp::now().as_nanosecond() as u64 ^ u64::from(std::process::id());
    let on_full = {
        let ready = ready.clone();
        move || {
            ready.store(true, Ordering::SeqCst);
            metrics.full_pass_completed(jiff::Timestamp::now());
        }
    };
    schedule::run(live, timing, Jitter::new(seed), fs_rx, shutdown_signal(), on_full).await;
    // The in-sync times held back from the log, written.
    store.flush().await?;
    drop(pg);
    tracing::info!("stopped; state persisted");
    Ok(exit::IN_SYNC)
}

/// A replica's part in its cluster's leadership (SPEC §14): every `failover / 3`, the
/// leader checks it still holds the lock (and steps down when not); a standby tries to
/// take it, and reads the leader's state to serve it.
async fn leadership(pg: Arc<PgStore>, metrics: Arc<Metrics>) {
    let tick = pg.failover() / 3;
    loop {
        tokio::time::sleep(tick).await;
        if pg.is_leader() {
            pg.check_leadership().await;
        } else {
            match pg.try_lead().await {
                Ok(true) => {}
                Ok(false) => {
                    if let Err(e) = pg.reload().await {
                        tracing::warn!(error = %e, "standby: the leader's state not read");
                    }
                }
                Err(e) => tracing::warn!(error = %e, cluster = pg.cluster(), "cannot reach the database"),
            }
        }
        metrics.set_leader(pg.is_leader());
    }
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
