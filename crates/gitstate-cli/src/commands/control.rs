//! `gitstate suspend`, `resume` and `retry` (SPEC §9): what an operator says about acting
//! on environments, written to `overrides.json` whether or not a `watch` runs (a running
//! one applies it within `ref_poll`), with an audit event each. An unknown environment is
//! an error (exit 2).

use gitstate_core::EnvName;
use gitstate_runtime::actions::Actor;
use gitstate_runtime::controls::{self, os_user};
use jiff::Timestamp;

use crate::cli::{Control, Reasoned, Suspend};
use crate::{exit, plan, stores};

/// The environments named, each known to the configuration (explicit or discovered).
async fn known(args: &Control) -> anyhow::Result<(crate::config::Config, Vec<EnvName>)> {
    let config = super::load_config(args.config.config.as_deref())?;
    let source = plan::source(&config)?;
    let (envs, _) = plan::environments(&config, &source, &args.environments).await?;
    let names = envs.into_iter().map(|p| p.config.name).collect();
    Ok((config, names))
}

/// `--until`: a duration from now, or a time.
pub(crate) fn until(text: &str, now: Timestamp) -> anyhow::Result<Timestamp> {
    if let Ok(d) = gitstate_core::parse_duration(text) {
        let d = jiff::SignedDuration::try_from(d)?;
        return Ok(now.checked_add(d)?);
    }
    text.parse::<Timestamp>()
        .map_err(|_| anyhow::anyhow!("--until {text:?}: give a duration (\"2h\") or an RFC 3339 time"))
}

/// Runs `suspend`.
pub async fn suspend(args: Suspend) -> anyhow::Result<i32> {
    let (config, names) = known(&args.control).await?;
    let now = Timestamp::now();
    let until = args.until.as_deref().map(|u| until(u, now)).transpose()?;
    if until.is_some_and(|u| u <= now) {
        anyhow::bail!("--until is in the past");
    }
    let store = stores::for_control(&config).await?;
    let user = os_user();
    let actor = Actor { by: &user, via: "cli" };
    controls::suspend(&*store, &names, actor, args.reason.as_deref(), until, now).await?;
    let till = until.map_or("until resumed".to_owned(), |u| {
        format!("until {}", u.round(jiff::Unit::Second).unwrap_or(u))
    });
    for n in &names {
        crate::output::say!("{n}: suspended {till}; still probed and reported, not acted on")?;
    }
    Ok(exit::IN_SYNC)
}

/// Runs `resume`.
pub async fn resume(args: Reasoned) -> anyhow::Result<i32> {
    let (config, names) = known(&args.control).await?;
    let store = stores::for_control(&config).await?;
    let user = os_user();
    let actor = Actor { by: &user, via: "cli" };
    controls::resume(&*store, &names, actor, args.reason.as_deref(), Timestamp::now()).await?;
    for n in &names {
        crate::output::say!("{n}: resumed")?;
    }
    Ok(exit::IN_SYNC)
}

/// Runs `retry`.
pub async fn retry(args: Reasoned) -> anyhow::Result<i32> {
    let (config, names) = known(&args.control).await?;
    let store = stores::for_control(&config).await?;
    let user = os_user();
    let actor = Actor { by: &user, via: "cli" };
    controls::retry(&*store, &names, actor, args.reason.as_deref(), Timestamp::now()).await?;
    for n in &names {
        crate::output::say!("{n}: a fresh set of attempts; the next pass may remediate at once")?;
    }
    Ok(exit::IN_SYNC)
}
