//! `gitstate reconcile`: one pass of the closed loop with durable state. It takes the
//! state lock, probes, decides with the pure `reconcile`, persists the attempt before any
//! remediation starts, runs remediations and alarm notifications, writes `state.json`
//! and `events.jsonl`, and exits with what the pass observed (no re-probe).
//! `--dry-run` decides and reports only: no lock, no state, no event, `"ok": null`.

use std::sync::Arc;

use gitstate_core::PassMode;

use crate::cli::{Output, Reconcile};
use crate::output::progress::Progress;
use crate::output::{self, Paint, report};
use crate::state::StateStore;
use crate::state::overrides::Overrides;
use crate::{exit, plan};

/// Runs the command.
pub async fn run(args: Reconcile) -> anyhow::Result<i32> {
    let config = super::load_config(args.select.config.config.as_deref())?;
    let dry_run = args.dry_run;
    let (_lock, store) = if dry_run {
        (None, None)
    } else {
        let lock = StateStore::lock(&config.state_dir)?;
        (Some(lock), Some(Arc::new(StateStore::open(&config.state_dir)?.with_rotation(config.events))))
    };
    let prior = match &store {
        Some(s) => s.environments(),
        None => StateStore::read(&config.state_dir)?.environments,
    };
    let mut plan = plan::build(&config, &args.select.environments).await?;
    let mut engine = plan.engine(&config, true)?;
    if let Some(s) = &store {
        engine = engine.with_journal(s.clone());
    }
    // What operators said (suspend, retry) and the freeze windows: applied to this pass.
    let now = jiff::Timestamp::now();
    plan.apply_controls(&Overrides::read(&config.state_dir)?, now);
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
        && let Err(e) = store.flush()
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
