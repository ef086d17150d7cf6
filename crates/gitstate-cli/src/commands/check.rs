//! `gitstate check`: one stateless pass that probes every target, classifies what it
//! runs against the expected commit with the Git history, reports, and never acts.
//! Exit 0 all in sync, 1 some drift, 2 an environment could not be checked.

use std::collections::BTreeMap;

use gitstate_core::PassMode;

use crate::cli::{Check, Output};
use crate::output::progress::Progress;
use crate::output::{self, Paint, report};
use crate::plan;

/// Runs the command.
pub async fn run(args: Check) -> anyhow::Result<i32> {
    let verbose = args.verbose;
    let args = args.select;
    let config = super::load_config(args.config.config.as_deref())?;
    let mut plan = plan::build(&config, &args.environments, gitstate_http::KeepAlive::Shared).await?;
    let engine = plan.check_engine(&config);
    let specs = &mut plan.specs;
    let progress = Progress::start(specs);
    let mut out = engine.run_pass(specs, &BTreeMap::new(), PassMode::Check, jiff::Timestamp::now()).await;
    drop(progress);
    // SPEC §18: who signed each expected commit (its own signature; `check` keeps no
    // state to judge a whole move from).
    if let Some(t) = &config.source.trust {
        let source = plan::source(&config)?;
        for env in &mut out.report.environments {
            if let Some(commit) = env.expected {
                let gate = t.policy.judge(&source, None, commit, jiff::Timestamp::now()).await;
                env.trust = Some(Box::new(gate.record));
            }
        }
    }
    match args.output {
        Output::Json => output::emit_json(&out.report)?,
        Output::Html => {
            let view = output::html::View::of_report(&out.report, plan.links(&config));
            output::emit(output::html::page(&view).as_bytes())?
        }
        Output::Text => {
            let p = Paint::new(output::color_enabled_stdout());
            let mut text = report::render(&out.report, &p);
            if verbose {
                text.push_str(&report::render_commits(&out.report, &p, jiff::Timestamp::now()));
            }
            output::emit(text.as_bytes())?
        }
    }
    Ok(super::exit_code(&out.report))
}
