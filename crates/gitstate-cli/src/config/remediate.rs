//! `[environments.remediate]`: a command (argv) or a webhook, checked and built.

use std::time::Duration;

use super::raw::RawRemediate;
use super::*;

pub(crate) fn remediate(
    ctx: &Ctx,
    r: &RawRemediate,
    env: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<RemediateConfig, ConfigError> {
    match (&r.command, &r.webhook) {
        (Some(cmd), None) => {
            let argv: Vec<String> = cmd.get_ref().iter().map(|a| substitute(a, env)).collect();
            if argv.first().is_none_or(|p| p.is_empty()) {
                return Err(ctx.at(cmd, "remediate.command is empty: give [\"program\", \"arg\", ...]"));
            }
            if r.timeout.is_some_and(|d| d.0.is_zero()) {
                return Err(ctx.at(cmd, "remediate.timeout must be more than 0s"));
            }
            Ok(RemediateConfig::Command {
                argv,
                timeout: r.timeout.map_or(Duration::from_secs(900), |d| d.0),
            })
        }
        (None, Some(w)) => {
            if w.timeout.or(r.timeout).is_some_and(|d| d.0.is_zero()) {
                return Err(ctx.at(&w.url, "remediate.webhook.timeout must be more than 0s"));
            }
            let url = url_at(ctx, &w.url, env, lookup)?;
            let body = w
                .body
                .as_ref()
                .map(|b| expand_at(ctx, b, true, lookup).map(|s| substitute(&s, env)))
                .transpose()?;
            Ok(RemediateConfig::Webhook {
                url,
                headers: headers(ctx, &w.headers, lookup)?,
                body,
                timeout: w.timeout.or(r.timeout).map_or(Duration::from_secs(30), |d| d.0),
            })
        }
        _ => Err(ctx.err(
            r.command.as_ref().map(|c| c.span()).or(r.webhook.as_ref().map(|w| w.url.span())),
            "[remediate] needs exactly one of command = [...] or [remediate.webhook]",
        )),
    }
}
