//! `gitstate rollback`, `veto`, `unveto` and `adopt` (SPEC §15): the runtime's actions
//! ([`gitstate_runtime::actions`]) for one environment, by whoever runs them, with or
//! without a running `watch`. A refusal (the ref moved, nothing to roll back to, a commit
//! not vetoed) exits 2 with the reason.

use gitstate_core::{CommitId, EnvName, ExpectedState};
use gitstate_runtime::actions::{self, Actor};
use gitstate_runtime::controls::os_user;
use jiff::Timestamp;

use crate::cli::{Adopt, Rollback, VetoArgs};
use crate::{exit, plan, stores};

/// The environment named, known to the configuration, with its ref and the source.
async fn known(
    config_arg: Option<&std::path::Path>,
    env: &str,
) -> anyhow::Result<(crate::config::Config, gitstate_core::git::GitSource, EnvName, String)> {
    let config = super::load_config(config_arg)?;
    let source = plan::source(&config)?;
    let (envs, _) = plan::environments(&config, &source, &[env.to_owned()]).await?;
    let planned = envs.into_iter().next().ok_or_else(|| anyhow::anyhow!("unknown environment {env:?}"))?;
    Ok((config, source, planned.config.name, planned.config.reference))
}

/// A revision: a full commit id, or a ref or tag the source resolves.
async fn commit_of(source: &dyn ExpectedState, rev: &str) -> anyhow::Result<CommitId> {
    if let Ok(c) = CommitId::parse(rev) {
        return Ok(c);
    }
    let resolved = source.resolve(&[rev.to_owned()]).await?;
    match resolved.into_iter().next() {
        Some(Ok(e)) => Ok(e.commit),
        Some(Err(e)) => anyhow::bail!("{rev:?}: {e} (give a full commit id, a branch or a tag)"),
        None => anyhow::bail!("{rev:?} not resolved"),
    }
}

fn refused(e: actions::ActionError) -> anyhow::Result<i32> {
    match e {
        actions::ActionError::Refused(why) => {
            eprintln!("gitstate: refused: {why}");
            Ok(exit::ERROR)
        }
        other => Err(other.into()),
    }
}

/// Runs `rollback`.
pub async fn rollback(args: Rollback) -> anyhow::Result<i32> {
    let (config, source, env, reference) = known(args.config.config.as_deref(), &args.environment).await?;
    let to = match &args.to {
        Some(rev) => Some(commit_of(&source, rev).await?),
        None => None,
    };
    let store = stores::for_control(&config).await?;
    let user = os_user();
    let actor = Actor { by: &user, via: "cli" };
    match actions::rollback(
        &source,
        &*store,
        &env,
        &reference,
        to,
        actor,
        args.reason.as_deref(),
        config.source.trust.as_ref().map(|t| &t.policy),
        Timestamp::now(),
    )
    .await
    {
        Ok(done) => {
            crate::output::say!(
                "{env}: {reference} rolled back from {} to {}; {} is vetoed here (gitstate unveto {env} {} to allow it again)",
                done.from.short(12),
                done.to.short(12),
                done.from.short(12),
                done.from.short(12),
            )?;
            Ok(exit::IN_SYNC)
        }
        Err(e) => refused(e),
    }
}

/// Runs `adopt`: probes the environment now (as `check` does), then adopts what every
/// instance runs.
pub async fn adopt(args: Adopt) -> anyhow::Result<i32> {
    let config = super::load_config(args.config.config.as_deref())?;
    let mut plan =
        plan::build(&config, std::slice::from_ref(&args.environment), gitstate_http::KeepAlive::Shared)
            .await?;
    let engine = plan.check_engine(&config);
    let specs = &mut plan.specs;
    let Some(env) = specs.first().map(|s| s.name.clone()) else {
        anyhow::bail!("unknown environment {:?}", args.environment);
    };
    let now = Timestamp::now();
    let out = engine.run_pass(specs, &Default::default(), gitstate_core::PassMode::Check, now).await;
    let report = &out.report.environments[0];
    let source = plan::source(&config)?;
    let store = stores::for_control(&config).await?;
    let user = os_user();
    let actor = Actor { by: &user, via: "cli" };
    let trust = config.source.trust.as_ref().map(|t| &t.policy);
    match actions::adopt(&source, &*store, &env, report, actor, args.reason.as_deref(), trust, now).await {
        Ok(done) => {
            crate::output::say!(
                "{env}: {} moved from {} to {}, the commit every instance runs",
                report.reference,
                done.from.short(12),
                done.to.short(12)
            )?;
            Ok(exit::IN_SYNC)
        }
        Err(e) => refused(e),
    }
}

/// Runs `veto`.
pub async fn veto(args: VetoArgs) -> anyhow::Result<i32> {
    let (config, source, env, _) = known(args.config.config.as_deref(), &args.environment).await?;
    let sha = commit_of(&source, &args.rev).await?;
    let store = stores::for_control(&config).await?;
    let user = os_user();
    actions::veto(
        &*store,
        &env,
        sha,
        Actor { by: &user, via: "cli" },
        args.reason.as_deref(),
        Timestamp::now(),
    )
    .await?;
    crate::output::say!(
        "{env}: {} vetoed; it is not deployed here while the ref points at it",
        sha.short(12)
    )?;
    Ok(exit::IN_SYNC)
}

/// Runs `unveto`.
pub async fn unveto(args: VetoArgs) -> anyhow::Result<i32> {
    let (config, source, env, _) = known(args.config.config.as_deref(), &args.environment).await?;
    let sha = commit_of(&source, &args.rev).await?;
    let store = stores::for_control(&config).await?;
    let user = os_user();
    match actions::unveto(
        &*store,
        &env,
        sha,
        Actor { by: &user, via: "cli" },
        args.reason.as_deref(),
        Timestamp::now(),
    )
    .await
    {
        Ok(()) => {
            crate::output::say!("{env}: {} no longer vetoed", sha.short(12))?;
            Ok(exit::IN_SYNC)
        }
        Err(e) => refused(e),
    }
}
