//! `gitstate status`: what the state dir holds — per environment the phase, the expected
//! commit and since when, the open incident (attempts, next attempt), the open alarm, the
//! last in-sync time and the last convergence lag. Reads the state (files, or PostgreSQL);
//! takes no lock.
//! Exit 0 when every environment's last phase is `in_sync`, else 1 (2 on errors).

use crate::cli::{Output, Status};
use crate::exit;
use crate::output::{self, Paint};

/// Runs the command.
pub async fn run(args: Status) -> anyhow::Result<i32> {
    let config = super::load_config(args.config.config.as_deref())?;
    let store = crate::stores::read_only(&config).await?;
    let (environments, overrides) = (store.environments(), store.overrides()?);
    // Freeze windows of the configured environments (discovered ones: their block's).
    let windows: gitstate_runtime::controls::Windows = environments
        .keys()
        .filter_map(|n| {
            let w = config.environments.iter().find(|e| e.name == *n).map(|e| e.windows.clone());
            w.or_else(|| config.discover.first().map(|d| d.windows.clone())).map(|w| (n.clone(), w))
        })
        .collect();
    // The causes shared by alarms (SPEC §17), as the loop last stored them.
    let causes: Vec<gitstate_core::CauseRecord> = match gitstate_core::Journal::outbox(&*store).await {
        Ok(o) => o.causes.into_values().collect(),
        Err(e) => {
            tracing::warn!(error = %e, "the causes of open alarms could not be read");
            Vec::new()
        }
    };
    let doc = gitstate_runtime::status::document(
        &environments,
        &overrides,
        &windows,
        &causes,
        jiff::Timestamp::now(),
    );
    match args.output {
        Output::Json => output::emit_json(&doc)?,
        Output::Html => {
            let links =
                crate::plan::source(&config).map(|s| crate::plan::links(&config, &s)).unwrap_or_default();
            let events = store.recent_events(500);
            let view = output::html::View::of_states(&environments, events, links, &overrides, &windows);
            output::emit(output::html::page(&view).as_bytes())?
        }
        Output::Text => {
            let p = Paint::new(output::color_enabled_stdout());
            if doc.environments.is_empty() {
                let place = match &config.postgres {
                    Some(pg) => format!("cluster {:?} in PostgreSQL", pg.cluster),
                    None => format!("state dir {}", config.state_dir.display()),
                };
                let note = format!("no reconcile pass has run yet ({place})\n");
                output::emit(note.as_bytes())?;
            } else {
                output::emit(output::status::render(&doc, &p).as_bytes())?;
            }
        }
    }
    Ok(if doc.all_in_sync() { exit::IN_SYNC } else { exit::DRIFT })
}
