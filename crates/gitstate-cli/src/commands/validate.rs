//! `gitstate validate`: parse and check the configuration; touch nothing (no repository,
//! no network). Exit 0 when valid, 2 otherwise.

use crate::cli::ConfigArg;
use crate::config::{RemediateConfig, RepoLocation, TargetKind};
use crate::exit;

/// Runs the command.
pub fn run(args: ConfigArg) -> anyhow::Result<i32> {
    let config = super::load_config(args.config.as_deref())?;
    if let Some(t) = &config.watch.tls {
        crate::listener::tls::Certs::load(&t.cert, &t.key).map_err(|e| anyhow::anyhow!(e))?;
    }
    for warning in listener_warnings(&config, config.watch.listen) {
        eprintln!("gitstate: warning: {warning}");
    }
    let repo = match &config.source.repo {
        RepoLocation::Local(p) => p.display().to_string(),
        RepoLocation::Remote(u) => gitstate_core::redact_url(u),
    };
    crate::output::say!("{}: valid", config.path.display())?;
    crate::output::say!("  source: {repo} (ref prefix {})", config.source.ref_prefix)?;
    for e in &config.environments {
        let kinds: Vec<String> = e
            .targets
            .iter()
            .map(|t| match &t.kind {
                TargetKind::Http(h) => format!(
                    "{} (http, {} url{})",
                    t.name,
                    h.urls.len(),
                    if h.urls.len() == 1 { "" } else { "s" }
                ),
                TargetKind::Aws(a) => format!("{} (aws, {})", t.name, a.region),
                TargetKind::Exec(x) => format!("{} (exec, {})", t.name, x.command[0]),
            })
            .collect();
        let remediate = match &e.remediate {
            Some(RemediateConfig::Command { argv, .. }) => format!("command {}", argv[0]),
            Some(RemediateConfig::Webhook { url, .. }) => format!("webhook {}", url.host_str().unwrap_or("")),
            None => "none (observe only)".into(),
        };
        crate::output::say!(
            "  environment {} -> {}: {}; remediate: {remediate}",
            e.name,
            e.reference,
            kinds.join(", ")
        )?;
        print_windows(&e.windows)?;
    }
    for d in &config.discover {
        crate::output::say!(
            "  discover {}* (exclude: {})",
            d.ref_prefix,
            if d.exclude.is_empty() { "none".into() } else { d.exclude.join(", ") }
        )?;
        print_windows(&d.windows)?;
    }
    Ok(exit::IN_SYNC)
}

/// What SPEC §20 warns of for a listener on `listen`: anyone who can reach a
/// non-loopback address reads every environment without `[watch.auth]`, and passwords
/// cross the network in the clear without `[watch.tls]`.
pub fn listener_warnings(config: &crate::config::Config, listen: std::net::SocketAddr) -> Vec<String> {
    let mut out = Vec::new();
    if listen.ip().is_loopback() {
        return out;
    }
    match &config.watch.auth {
        None => out.push(format!(
            "watch.listen {listen} is not a loopback address and [watch.auth] is not set: anyone who can reach it reads every environment"
        )),
        Some(a) if !a.users.is_empty() && config.watch.tls.is_none() => out.push(format!(
            "watch.listen {listen} is not a loopback address and [watch.auth] users are set without [watch.tls]: passwords cross the network in the clear"
        )),
        Some(_) => {}
    }
    out
}

/// Each freeze window with its next start and end (the one open now, if one is).
fn print_windows(windows: &[gitstate_runtime::controls::FreezeWindow]) -> std::io::Result<()> {
    let now = jiff::Timestamp::now();
    for w in windows {
        let when = match w.next(now) {
            Some((start, end)) if start <= now => format!("open now, until {end}"),
            Some((start, end)) => format!("next {start} to {end}"),
            None => "never again".into(),
        };
        crate::output::say!(
            "    freeze window {:?} for {} ({}): {when}",
            w.schedule,
            humantime::format_duration(w.duration),
            w.timezone
        )?;
    }
    Ok(())
}
