//! `gitstate fleet` and `gitstate where` (SPEC §16): the runtime's fleet queries
//! ([`gitstate_runtime::fleet`]) over the store and the repository, printed. They never
//! probe and need no running watch.

use std::collections::BTreeMap;

use gitstate_core::{EnvName, EnvState, ExpectedState};
use gitstate_runtime::fleet;

use crate::cli::{Diff, Fleet, Output, Where};
use crate::exit;
use crate::output;

/// The store's environments, only those named when some are (`-e`).
fn selected(
    all: BTreeMap<EnvName, EnvState>,
    only: &[String],
) -> anyhow::Result<BTreeMap<EnvName, EnvState>> {
    if only.is_empty() {
        return Ok(all);
    }
    for name in only {
        if !all.keys().any(|n| n.as_str() == name) {
            anyhow::bail!("unknown environment {name:?} (none in the state)");
        }
    }
    Ok(all.into_iter().filter(|(n, _)| only.iter().any(|o| o == n.as_str())).collect())
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(7)]
}

/// Runs `fleet`.
pub async fn fleet(args: Fleet) -> anyhow::Result<i32> {
    let config = super::load_config(args.select.config.config.as_deref())?;
    let store = crate::stores::read_only(&config).await?;
    let states = selected(store.environments(), &args.select.environments)?;
    let report = fleet::fleet(&states);
    match args.select.output {
        Output::Json => output::emit_json(&report)?,
        Output::Html => {
            let source = crate::plan::source(&config)?;
            let links = crate::plan::links(&config, &source);
            let page = output::html::standalone("gitstate fleet", output::fleet::matrix(&report, &links));
            output::emit(page.as_bytes())?
        }
        _ => {
            let mut text = format!("{:<24} {:<9} RUNNING\n", "ENVIRONMENT", "EXPECTED");
            for row in &report.environments {
                let expected = row.expected_sha.as_deref().unwrap_or("-");
                let running: Vec<String> = row
                    .running
                    .iter()
                    .map(|s| {
                        let mark = if Some(s.sha.as_str()) == row.expected_sha.as_deref() {
                            " (expected)"
                        } else {
                            ""
                        };
                        format!("{} {}/{}{mark}", short(&s.sha), s.instances, s.of)
                    })
                    .collect();
                let running = if running.is_empty() { "-".to_owned() } else { running.join(", ") };
                text.push_str(&format!("{:<24} {:<9} {running}\n", row.name.as_str(), short(expected)));
            }
            output::emit(text.as_bytes())?
        }
    }
    Ok(exit::IN_SYNC)
}

/// Runs `where`: exit 0 when REV runs in every environment selected, 1 otherwise.
pub async fn where_is(args: Where) -> anyhow::Result<i32> {
    if matches!(args.select.output, Output::Html) {
        anyhow::bail!("-o html is for check, status, reconcile, fleet and dora; where prints text or json");
    }
    let config = super::load_config(args.select.config.config.as_deref())?;
    let source = crate::plan::source(&config)?;
    let rev = source.rev_parse(&args.rev).await.map_err(|e| anyhow::anyhow!("{:?}: {e}", args.rev))?;
    let store = crate::stores::read_only(&config).await?;
    let states = selected(store.environments(), &args.select.environments)?;
    let events = store.events_since(jiff::Timestamp::MIN).await?;
    let report = fleet::where_is(&source, &states, &events, rev).await;
    match args.select.output {
        Output::Json => output::emit_json(&report)?,
        _ => {
            let text = where_text(&report);
            output::emit(text.as_bytes())?
        }
    }
    Ok(if report.everywhere() { exit::IN_SYNC } else { exit::DRIFT })
}

/// `where`'s table.
pub fn where_text(report: &fleet::WhereReport) -> String {
    let mut text = format!(
        "{} {}\n{:<24} {:<13} {:<10} SINCE\n",
        "REV", report.rev, "ENVIRONMENT", "STATE", "INSTANCES"
    );
    for row in &report.environments {
        let state = serde_json::to_value(row.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let since =
            row.since.map_or("-".to_owned(), |t| t.round(jiff::Unit::Second).unwrap_or(t).to_string());
        let counted = format!("{}/{}", row.instances.running, row.instances.of);
        text.push_str(&format!("{:<24} {:<13} {:<10} {since}\n", row.name.as_str(), state, counted));
    }
    text
}

/// Runs `diff A B`.
pub async fn diff(args: Diff) -> anyhow::Result<i32> {
    if matches!(args.output, Output::Html) {
        anyhow::bail!("-o html is for check, status, reconcile, fleet and dora; diff prints text or json");
    }
    let config = super::load_config(args.config.config.as_deref())?;
    let source = crate::plan::source(&config)?;
    let links = crate::plan::links(&config, &source);
    let store = crate::stores::read_only(&config).await?;
    let states = store.environments();
    let pick = |name: &str| {
        states
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .ok_or_else(|| anyhow::anyhow!("unknown environment {name:?} (none in the state)"))
    };
    let (a, b) = (pick(&args.a)?, pick(&args.b)?);
    let report = match fleet::diff(&source, a, b, args.running, 50, &links).await {
        Ok(r) => r,
        Err(fleet::DiffError::Refused(why)) => {
            eprintln!("gitstate: {why}");
            return Ok(exit::ERROR);
        }
        Err(e) => return Err(e.into()),
    };
    match args.output {
        Output::Json => output::emit_json(&report)?,
        _ => {
            let count = |n: Option<u64>| n.map_or("?".to_owned(), |n| n.to_string());
            let mut text = format!(
                "{} ({}) has {} commit(s) {} ({}) lacks; {} has {}\n",
                report.a.name.as_str(),
                short(&report.a.sha),
                count(report.counts.only_in_a),
                report.b.name.as_str(),
                short(&report.b.sha),
                report.b.name.as_str(),
                count(report.counts.only_in_b),
            );
            for (title, list) in [(&report.a.name, &report.only_in_a), (&report.b.name, &report.only_in_b)] {
                if !list.is_empty() {
                    text.push_str(&format!("only in {}:\n", title.as_str()));
                    for c in list {
                        text.push_str(&format!(
                            "  {}  {}  ({}, {})\n",
                            c.sha.short(7),
                            c.subject,
                            c.author,
                            c.at.round(jiff::Unit::Second).unwrap_or(c.at)
                        ));
                    }
                }
            }
            if let Some(url) = &report.compare_url {
                text.push_str(&format!("compare: {url}\n"));
            }
            output::emit(text.as_bytes())?
        }
    }
    Ok(exit::IN_SYNC)
}

/// Runs `dora`: the runtime's [`gitstate_runtime::dora::report`] over the store's event
/// log and the refs' reflogs, printed.
pub async fn dora(args: crate::cli::Dora) -> anyhow::Result<i32> {
    let config = super::load_config(args.select.config.config.as_deref())?;
    let source = crate::plan::source(&config)?;
    let store = crate::stores::read_only(&config).await?;
    let until = jiff::Timestamp::now();
    let since = match args.since.as_deref() {
        None => until.checked_sub(jiff::SignedDuration::from_hours(30 * 24))?,
        Some(text) => match gitstate_core::parse_duration(text) {
            Ok(d) => until.checked_sub(jiff::SignedDuration::try_from(d)?)?,
            Err(_) => text.parse().map_err(|_| {
                anyhow::anyhow!("--since {text:?}: give a duration (\"30d\") or an RFC 3339 time")
            })?,
        },
    };
    let report =
        gitstate_runtime::dora::from_store(&source, &*store, &args.select.environments, since, until).await?;
    match args.select.output {
        Output::Json => output::emit_json(&report)?,
        Output::Html => {
            let page = output::html::standalone("gitstate dora", output::fleet::dora(&report));
            output::emit(page.as_bytes())?
        }
        _ => {
            let text = dora_text(&report)?;
            output::emit(text.as_bytes())?
        }
    }
    Ok(exit::IN_SYNC)
}

/// `dora`'s text: the window, then a line per environment and one for the selection.
pub fn dora_text(report: &gitstate_runtime::dora::Report) -> anyhow::Result<String> {
    let fmt = |s: &gitstate_runtime::dora::Summary| {
        s.median
            .map_or("-".to_owned(), |m| format!("{m:.0}s (p90 {:.0}s, n={})", s.p90.unwrap_or(m), s.count))
    };
    let band = |b: Option<gitstate_runtime::dora::Band>| {
        b.map_or("-".to_owned(), |b| format!("{b:?}").to_lowercase())
    };
    let mut text = format!(
        "DORA from {} to {}\n",
        report.since.round(jiff::Unit::Second)?,
        report.until.round(jiff::Unit::Second)?
    );
    for (name, k) in
        report.environments.iter().map(|r| (r.name.as_str(), &r.keys)).chain([("all", &report.all)])
    {
        text.push_str(&format!(
            "{name}: {} deployments ({:.2}/day, {}); lead time {} ({}); change failure rate {}/{} ({}); time to restore {} ({})\n",
            k.deployments,
            k.deployments_per_day,
            band(k.bands.deployment_frequency),
            fmt(&k.lead_time_s),
            band(k.bands.lead_time),
            k.change_failure_rate.failed,
            k.change_failure_rate.deployments,
            band(k.bands.change_failure_rate),
            fmt(&k.time_to_restore_s),
            band(k.bands.time_to_restore),
        ));
    }
    Ok(text)
}
