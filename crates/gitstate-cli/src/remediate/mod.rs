//! Remediators and alarm sinks built from the configuration: the command remediator from
//! `gitstate-process`, and the webhook remediator, Alertmanager and webhook sinks from
//! `gitstate-http`.

use std::path::Path;
use std::sync::Arc;

use gitstate_core::{AlarmSink, Remediator};
use gitstate_http::{AlertmanagerSink, HttpClients, WebhookRemediator, WebhookSink};
use gitstate_process::CommandRemediator;
use tokio_util::sync::CancellationToken;

use crate::config::{AlertsConfig, RemediateConfig};

/// The remediator a `[remediate]` table describes; commands run in `config_dir` and are
/// stopped when `stop` is cancelled.
pub fn remediator(
    cfg: &RemediateConfig,
    config_dir: &Path,
    clients: &HttpClients,
    stop: &CancellationToken,
) -> Arc<dyn Remediator> {
    match cfg {
        RemediateConfig::Command { argv, timeout } => {
            Arc::new(CommandRemediator::new(argv.clone(), config_dir.to_path_buf(), *timeout, stop.clone()))
        }
        RemediateConfig::Webhook { url, headers, body, timeout } => {
            Arc::new(WebhookRemediator::new(clients, url.clone(), headers.clone(), body.clone(), *timeout))
        }
    }
}

/// The alarm sinks `[alerts]` describes. `ttl` is how long a post keeps an open alarm
/// firing in Alertmanager when its config does not say: longer than the time to the next pass.
pub fn sinks(
    cfg: &AlertsConfig,
    clients: &HttpClients,
    ttl: std::time::Duration,
) -> anyhow::Result<Vec<Arc<dyn AlarmSink>>> {
    let mut out: Vec<Arc<dyn AlarmSink>> = Vec::new();
    if let Some(am) = &cfg.alertmanager {
        let sink = AlertmanagerSink::new(clients, &am.url, am.headers.clone())?;
        out.push(Arc::new(sink.with_ttl(am.ttl.unwrap_or(ttl))));
    }
    for w in &cfg.webhooks {
        let sink = WebhookSink::new(clients, w.url.clone(), w.format, w.headers.clone()).named(&w.name);
        out.push(Arc::new(sink));
    }
    Ok(out)
}
