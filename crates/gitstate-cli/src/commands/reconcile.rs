//! `gitstate reconcile`: one pass of the closed loop with durable state. It takes the
//! state lock (the lock file, or with PostgreSQL the cluster's leader lock: exit 2 naming
//! the watch that holds it), probes, decides with the pure `reconcile`, persists the
//! attempt before any remediation starts, runs remediations and alarm notifications,
//! writes the state and the events, and exits with what the pass observed (no re-probe).
//! `--dry-run` decides and reports only: no lock, no state, no event, `"ok": null`.

use std::sync::Arc;

use gitstate_core::PassMode;

use crate::cli::{Output, Reconcile};
use crate::output::progress::Progress;
use crate::output::{self, Paint, report};
use crate::state::overrides::Overrides;
use crate::state::postgres::PgStore;
use crate::state::{Lock, StateStore, Store};
use crate::{exit, plan};

/// Runs the command.
pub async fn run(args: Reconcile) -> anyhow::Result<i32> {
    let config = super::load_config(args.select.config.config.as_deref())?;
    let dry_run = args.dry_run;
    let (_lock, store, prior, overrides) = open(&config, dry_run).await?;
    let mut plan = plan::build(&config, &args.select.environments, gitstate_http::KeepAlive::Shared).await?;
    let mut engine = plan.engine(&config, true)?;
    if let Some(s) = &store {
        engine = engine.with_journal(s.clone());
    }
    // What operators said (suspend, retry) and the freeze windows: applied to this pass.
    let now = jiff::Timestamp::now();
    plan.apply_controls(&overrides, now);
    let progress = Progress::start(&mut plan.specs);
    let out = engine.run_pass(&plan.specs, &prior, PassMode::Reconcile { dry_run }, now).await;
    drop(progress);
    let mut failed = out.journal_error.clone();
    // A whole pass (no -e) retires what the configuration no longer has.
    if let Some(store) = store.as_ref().filter(|_| args.select.environments.is_empty()) {
        let known: std::collections::BTreeSet<_> = plan.specs.iter().map(|s| &s.name).collect();
        let gone: Vec<_> = store.environments().into_iter().filter(|(n, _)| !known.contains(n)).collect();
        if !gone.is_empty() {
            for (name, _) in &gone {
                tracing::info!(environment = %name, "environment removed from the configuration; its state is pruned");
            }
            let removed = engine.remove(gone, jiff::Timestamp::now()).await;
            failed = failed.or(removed.journal_error);
        }
    }
    if let Some(store) = &store
        && let Err(e) = store.flush().await
    {
        failed = failed.or(Some(e.to_string()));
    }
    for (name, reason, _) in &out.decisions {
        tracing::info!(environment = %name, %reason, "decided");
    }
    match args.select.output {
        Output::Json => output::emit_json(&out.report)?,
        Output::Html => {
            let view = output::html::View::of_report(&out.report, plan.links(&config));
            output::emit(output::html::page(&view).as_bytes())?
        }
        Output::Text => {
            let p = Paint::new(output::color_enabled_stdout());
            let mut text = report::render(&out.report, &p);
            text.push_str(&report::render_decisions(&out.report, &out.decisions, &p));
            output::emit(text.as_bytes())?;
        }
    }
    if let Some(e) = failed {
        eprintln!("error: {e}");
        return Ok(exit::ERROR);
    }
    Ok(super::exit_code(&out.report))
}

/// What the state says before the pass, and the store to write the pass to (none in a
/// dry run), holding the state lock: in files, the lock file; in PostgreSQL, the cluster's
/// leader lock, or exit 2 naming who holds it (a running watch).
async fn open(
    config: &crate::config::Config,
    dry_run: bool,
) -> anyhow::Result<(Option<Lock>, Option<Arc<dyn Store>>, StateMap, Overrides)> {
    if let Some(pg) = &config.postgres {
        let store = PgStore::open(pg).await?;
        let (prior, overrides) = (store.state().environments, store.overrides()?);
        if dry_run {
            return Ok((None, None, prior, overrides));
        }
        if !store.try_lead().await? {
            let holder = store.holder().await?.map_or("another replica".to_owned(), |h| h.to_string());
            anyhow::bail!(
                "the leader lock of cluster {:?} is held by {holder}: a watch leads it; reconcile acts only where nothing else does",
                pg.cluster
            );
        }
        // Read again now that this process leads: what the last leader left.
        let (prior, overrides) = (store.state().environments, store.overrides()?);
        return Ok((None, Some(Arc::new(store)), prior, overrides));
    }
    let overrides = Overrides::read(&config.state_dir)?;
    if dry_run {
        return Ok((None, None, StateStore::read(&config.state_dir)?.environments, overrides));
    }
    let lock = StateStore::lock(&config.state_dir)?;
    let store = StateStore::open(&config.state_dir)?.with_rotation(config.events);
    let prior = StateStore::environments(&store);
    Ok((Some(lock), Some(Arc::new(store)), prior, overrides))
}

type StateMap = std::collections::BTreeMap<gitstate_core::EnvName, gitstate_core::EnvState>;
