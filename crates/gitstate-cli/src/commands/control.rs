//! `gitstate suspend`, `resume` and `retry` (SPEC §9): what an operator says about acting
//! on environments, written to `overrides.json` whether or not a `watch` runs (a running
//! one applies it within `ref_poll`), with an audit event each. An unknown environment is
//! an error (exit 2).

use gitstate_core::{EnvName, Event, EventKind};
use jiff::Timestamp;

use crate::cli::{Control, Suspend};
use crate::state::StateStore;
use crate::state::overrides::{Overrides, Suspension, operator};
use crate::state::postgres::PgStore;
use crate::{exit, plan};

/// The environments named, each known to the configuration (explicit or discovered).
async fn known(args: &Control) -> anyhow::Result<(crate::config::Config, Vec<EnvName>)> {
    let config = super::load_config(args.config.config.as_deref())?;
    let source = plan::source(&config)?;
    let (envs, _) = plan::environments(&config, &source, &args.environments).await?;
    let names = envs.into_iter().map(|p| p.config.name).collect();
    Ok((config, names))
}

/// `--until`: a duration from now, or a time.
fn until(text: &str, now: Timestamp) -> anyhow::Result<Timestamp> {
    if let Ok(d) = gitstate_core::parse_duration(text) {
        let d = jiff::SignedDuration::try_from(d)?;
        return Ok(now.checked_add(d)?);
    }
    text.parse::<Timestamp>()
        .map_err(|_| anyhow::anyhow!("--until {text:?}: give a duration (\"2h\") or an RFC 3339 time"))
}

async fn record(
    config: &crate::config::Config,
    names: &[EnvName],
    kind: impl Fn() -> EventKind,
) -> anyhow::Result<()> {
    let at = Timestamp::now();
    let events: Vec<Event> =
        names.iter().map(|n| Event { at, environment: n.clone(), kind: kind() }).collect();
    match &config.postgres {
        Some(pg) => PgStore::open(pg).await?.append_unfenced(&events).await?,
        None => StateStore::open(&config.state_dir)?.with_rotation(config.events).append(&events)?,
    }
    Ok(())
}

/// Changes what operators said, where the state lives.
async fn update<T: Send>(
    config: &crate::config::Config,
    change: impl FnOnce(&mut Overrides) -> T + Send,
) -> anyhow::Result<T> {
    Ok(match &config.postgres {
        Some(pg) => PgStore::open(pg).await?.update_overrides(change).await?,
        None => Overrides::update(&config.state_dir, change)?,
    })
}

/// Runs `suspend`.
pub async fn suspend(args: Suspend) -> anyhow::Result<i32> {
    let (config, names) = known(&args.control).await?;
    let now = Timestamp::now();
    let until = args.until.as_deref().map(|u| until(u, now)).transpose()?;
    if until.is_some_and(|u| u <= now) {
        anyhow::bail!("--until is in the past");
    }
    let by = operator();
    let reason = args.reason.map(|r| gitstate_core::escape_control(&r).into_owned());
    update(&config, |o| {
        for n in &names {
            o.environments.entry(n.clone()).or_default().suspension =
                Some(Suspension { reason: reason.clone(), by: by.clone(), since: now, until });
        }
    })
    .await?;
    record(&config, &names, || EventKind::Suspended { reason: reason.clone(), by: by.clone(), until })
        .await?;
    let till = until.map_or("until resumed".to_owned(), |u| {
        format!("until {}", u.round(jiff::Unit::Second).unwrap_or(u))
    });
    for n in &names {
        println!("{n}: suspended {till}; still probed and reported, not acted on");
    }
    Ok(exit::IN_SYNC)
}

/// Runs `resume`.
pub async fn resume(args: Control) -> anyhow::Result<i32> {
    let (config, names) = known(&args).await?;
    update(&config, |o| {
        for n in &names {
            if let Some(e) = o.environments.get_mut(n) {
                e.suspension = None;
            }
        }
    })
    .await?;
    let by = operator();
    record(&config, &names, || EventKind::Resumed { by: by.clone() }).await?;
    for n in &names {
        println!("{n}: resumed");
    }
    Ok(exit::IN_SYNC)
}

/// Runs `retry`.
pub async fn retry(args: Control) -> anyhow::Result<i32> {
    let (config, names) = known(&args).await?;
    let now = Timestamp::now();
    update(&config, |o| {
        for n in &names {
            o.environments.entry(n.clone()).or_default().retry_requested_at = Some(now);
        }
    })
    .await?;
    let by = operator();
    record(&config, &names, || EventKind::RetryRequested { by: by.clone() }).await?;
    for n in &names {
        println!("{n}: a fresh set of attempts; the next pass may remediate at once");
    }
    Ok(exit::IN_SYNC)
}
