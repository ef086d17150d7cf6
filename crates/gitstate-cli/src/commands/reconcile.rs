//! `gitstate reconcile`: one pass of the runtime's controller with durable state. It takes
//! the state lock (the lock file, or with PostgreSQL the cluster's leader lock: exit 2
//! naming the watch that holds it), runs [`gitstate_runtime::Controller::run_once`] —
//! probe, decide, persist the attempt before any remediation starts, remediate, notify,
//! retire what the configuration no longer has (a whole pass, no `-e`) — prints the
//! report, and exits with what the pass observed (no re-probe). `--dry-run` decides and
//! reports only: no lock, no state, no event, `"ok": null`.

use gitstate_core::PassMode;

use crate::cli::{Output, Reconcile};
use crate::output::progress::Progress;
use crate::output::{self, Paint, report};
use crate::{exit, plan, stores};

/// Runs the command.
pub async fn run(args: Reconcile) -> anyhow::Result<i32> {
    let config = super::load_config(args.select.config.config.as_deref())?;
    let dry_run = args.dry_run;
    let (store, _lock) =
        if dry_run { (stores::read_only(&config).await?, None) } else { stores::for_pass(&config).await? };
    let mut plan = plan::build(&config, &args.select.environments, gitstate_http::KeepAlive::Shared).await?;
    let progress = Progress::start(&mut plan.specs);
    let source = plan.one_shot_source();
    // An open alarm stays firing in Alertmanager for an hour per run: reconcile may run
    // from cron.
    let ttl = gitstate_http::AlertmanagerSink::DEFAULT_TTL;
    let controller = plan.controller(&config, source, store, Some(ttl))?.build();
    let prune = args.select.environments.is_empty();
    let once = controller.run_once(PassMode::Reconcile { dry_run }, prune).await?;
    drop(progress);
    let out = &once.outcome;
    for name in &once.removed {
        tracing::info!(environment = %name, "environment removed from the configuration; its state is pruned");
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
    if let Some(e) = &once.store_error {
        eprintln!("error: {e}");
        return Ok(exit::ERROR);
    }
    Ok(super::exit_code(&out.report))
}
