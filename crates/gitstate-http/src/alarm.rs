//! Alarm sinks: [`AlertmanagerSink`] (Alertmanager API v2; firing alerts are re-posted
//! every pass, a resolution is posted once with `endsAt`) and [`WebhookSink`] (gitstate
//! JSON, or `{"text": …}` for Slack-compatible hooks). Alarms that several environments
//! share a cause with are one message per cause for a webhook, and one `GitstateOutage`
//! beside every member's alert (each with the `cause` label) for Alertmanager (SPEC §17).

use std::time::Duration;

use async_trait::async_trait;
use gitstate_core::{
    AlarmEvent, AlarmKind, AlarmNotification, AlarmSink, CauseEvent, CauseNotification, Grouping, SinkError,
};
use reqwest::header::HeaderMap;
use serde::Deserialize;
use url::Url;

use crate::clients::HttpClients;
use crate::header::{Header, header_map};

const TIMEOUT: Duration = Duration::from_secs(10);

async fn post(
    client: &reqwest::Client,
    sink: &str,
    url: &Url,
    headers: &HeaderMap,
    body: &serde_json::Value,
) -> Result<(), SinkError> {
    let err = |message: String| SinkError::failed(sink, message);
    let resp = client
        .post(url.clone())
        .headers(headers.clone())
        .json(body)
        .timeout(TIMEOUT)
        .send()
        .await
        .map_err(|e| err(crate::error::describe(&e)))?;
    let status = resp.status();
    if status.is_success() {
        Ok(())
    } else {
        let text = crate::remediate::read_tail(resp, TIMEOUT).await;
        let message = format!("HTTP {status}: {}", text.chars().take(200).collect::<String>());
        // A 4xx says this request will never be accepted as it is (a revoked hook, a bad
        // token), except a timeout (408) and a rate limit (429), which are worth retrying.
        let code = status.as_u16();
        if status.is_client_error() && code != 408 && code != 429 {
            Err(SinkError::rejected(sink, message))
        } else {
            Err(err(message))
        }
    }
}

/// One commit on one line: short SHA, subject, author.
fn commit_line(c: &gitstate_core::CommitInfo) -> String {
    format!("{} {} ({})", c.sha.short(7), c.subject, c.author)
}

/// Text for a Slack message: `&`, `<` and `>` escaped, as Slack's formatting asks, so a
/// subject cannot make a link or a mention.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The Alertmanager `alertname` of an alarm kind (SPEC §7), in `CamelCase` as
/// Alertmanager's own conventions have it.
pub fn alertname(kind: AlarmKind) -> &'static str {
    match kind {
        AlarmKind::Drift => "GitstateDrift",
        AlarmKind::Diverged => "GitstateDiverged",
        AlarmKind::Unreachable => "GitstateUnreachable",
        AlarmKind::Degraded => "GitstateDegraded",
        AlarmKind::Vetoed => "GitstateVetoed",
        AlarmKind::Untrusted => "GitstateUntrusted",
        AlarmKind::UnsignedRunning => "GitstateUnsignedRunning",
        AlarmKind::Stale => STALE,
        _ => "GitstateAlarm",
    }
}

/// Posts alerts to Alertmanager's API v2.
///
/// An open alarm is posted with `endsAt` = now + [`AlertmanagerSink::with_ttl`] (default
/// [`AlertmanagerSink::DEFAULT_TTL`]) every time it is sent, so Alertmanager never resolves
/// it by its own `resolve_timeout` between two passes (a `reconcile` from cron, every 5
/// minutes, is exactly Alertmanager's default timeout); a resolution is posted with
/// `endsAt` = when it was resolved.
pub struct AlertmanagerSink {
    client: reqwest::Client,
    endpoint: Url,
    headers: HeaderMap,
    ttl: Duration,
}

impl AlertmanagerSink {
    /// A sink for the Alertmanager at `base` (e.g. `http://127.0.0.1:9093`).
    pub fn new(clients: &HttpClients, base: &Url, headers: Vec<Header>) -> Result<Self, url::ParseError> {
        let mut base = base.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        Ok(Self {
            client: clients.default_client().clone(),
            endpoint: base.join("api/v2/alerts")?,
            headers: header_map(&headers),
            ttl: Self::DEFAULT_TTL,
        })
    }

    /// How long an open alarm stays firing in Alertmanager when gitstate does not post it
    /// again, unless set: one hour (the `ttl` of a `reconcile` run from cron).
    pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);

    /// Sets how long each post of an open alarm keeps it firing (`endsAt` = now + `ttl`):
    /// longer than the time between two passes.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The alert posted for a notification at `now`.
    pub fn alert(&self, n: &AlarmNotification, now: jiff::Timestamp) -> serde_json::Value {
        let actual: Vec<String> = n.targets.iter().flat_map(|t| t.actual.iter().cloned()).collect();
        let mut alert = serde_json::json!({
            "labels": {
                "alertname": alertname(n.alarm),
                "environment": n.environment,
                "severity": n.severity.as_str(),
                "cause": n.cause().to_string(),
            },
            "annotations": {
                "summary": n.summary,
                "expected_sha": n.expected_sha,
                "ref": n.reference,
                "actual": actual.join(", "),
            },
            "startsAt": n.since.to_string(),
        });
        add_labels(&mut alert, &n.labels);
        if let Some(url) = &n.runbook_url {
            alert["annotations"]["runbook_url"] = serde_json::Value::String(url.clone());
        }
        // The commits a deploy brings, a line each, and where to compare (SPEC §11).
        let pending: Vec<String> = n.targets.iter().flat_map(|t| &t.pending).map(commit_line).collect();
        if !pending.is_empty() {
            alert["annotations"]["pending"] = serde_json::Value::String(pending.join("\n"));
        }
        if let Some(url) = n.targets.iter().find_map(|t| t.compare_url.clone()) {
            alert["annotations"]["compare_url"] = serde_json::Value::String(url);
        }
        let ends = match n.ended_at.filter(|_| n.event == AlarmEvent::AlarmResolved) {
            Some(end) => end,
            None => self.ends(now),
        };
        alert["endsAt"] = serde_json::Value::String(ends.to_string());
        alert
    }

    /// The `GitstateOutage` alert posted for a cause at `now` (SPEC §17): the `cause`
    /// label its members' alerts carry too, so that `group_by: [cause]` folds them and an
    /// inhibit rule can hold them back.
    pub fn outage(&self, n: &CauseNotification, now: jiff::Timestamp) -> serde_json::Value {
        let members: Vec<&str> = n.members.iter().map(|m| m.as_str()).collect();
        let mut alert = serde_json::json!({
            "labels": {
                "alertname": if n.cause == gitstate_core::Cause::Stale { STALE } else { OUTAGE },
                "cause": n.cause.to_string(),
                "severity": n.severity.as_str(),
            },
            "annotations": {
                "summary": n.summary,
                "members": members.join(", "),
                "alarm": n.alarm.as_str(),
            },
            "startsAt": n.since.to_string(),
        });
        add_labels(&mut alert, &n.labels);
        let ends = match n.ended_at.filter(|_| n.event == CauseEvent::CauseResolved) {
            Some(end) => end,
            None => self.ends(now),
        };
        alert["endsAt"] = serde_json::Value::String(ends.to_string());
        alert
    }

    fn ends(&self, now: jiff::Timestamp) -> jiff::Timestamp {
        jiff::SignedDuration::try_from(self.ttl)
            .ok()
            .and_then(|ttl| now.checked_add(ttl).ok())
            .unwrap_or(jiff::Timestamp::MAX)
    }
}

/// The `alertname` of a cause's own alert (SPEC §17).
pub const OUTAGE: &str = "GitstateOutage";

/// The `alertname` of the environments not observed in time (SPEC §19).
pub const STALE: &str = "GitstateStale";

/// SPEC §17: the policy's labels, never over the ones gitstate sets.
fn add_labels(alert: &mut serde_json::Value, labels: &std::collections::BTreeMap<String, String>) {
    for (k, v) in labels {
        if !matches!(k.as_str(), "alertname" | "environment" | "severity" | "cause") {
            alert["labels"][k] = serde_json::Value::String(v.clone());
        }
    }
}

#[async_trait]
impl AlarmSink for AlertmanagerSink {
    fn name(&self) -> &str {
        "alertmanager"
    }

    async fn notify(&self, n: &AlarmNotification) -> Result<(), SinkError> {
        let alert = self.alert(n, jiff::Timestamp::now());
        post(&self.client, self.name(), &self.endpoint, &self.headers, &serde_json::json!([alert])).await
    }

    /// Every member's alert and the cause's `GitstateOutage` (Alertmanager folds them).
    fn grouping(&self) -> Grouping {
        Grouping::Both
    }

    async fn notify_cause(&self, n: &CauseNotification) -> Result<(), SinkError> {
        let alert = self.outage(n, jiff::Timestamp::now());
        post(&self.client, self.name(), &self.endpoint, &self.headers, &serde_json::json!([alert])).await
    }
}

/// The body format of a [`WebhookSink`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// `{"event", "alarm", "environment", "ref", "expected_sha", "since", "targets", "summary"}`.
    #[default]
    Json,
    /// `{"text": "..."}` for Slack-compatible incoming webhooks.
    Slack,
}

/// Posts alarm changes to a webhook (raised, repeated, resolved; not the per-pass refresh),
/// one message per cause that several environments share (SPEC §17).
pub struct WebhookSink {
    client: reqwest::Client,
    url: Url,
    headers: HeaderMap,
    format: WebhookFormat,
    name: String,
}

impl WebhookSink {
    /// A sink posting to `url` in `format`.
    pub fn new(clients: &HttpClients, url: Url, format: WebhookFormat, headers: Vec<Header>) -> Self {
        Self {
            client: clients.default_client().clone(),
            url,
            headers: header_map(&headers),
            format,
            name: "webhook".into(),
        }
    }

    /// Names the sink (default `webhook`): in metrics, logs and the outbox, so each of
    /// several webhooks needs its own.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The body posted for a cause (SPEC §17).
    pub fn cause_body(&self, n: &CauseNotification) -> serde_json::Value {
        match self.format {
            WebhookFormat::Json => serde_json::json!({
                "id": n.id(),
                "event": n.event.as_str(),
                "cause": n.cause,
                "alarm": n.alarm,
                "severity": n.severity.as_str(),
                "labels": n.labels,
                "members": n.members,
                "joined": n.joined,
                "left": n.left,
                "since": n.since.to_string(),
                "ended_at": n.ended_at.map(|t| t.to_string()),
                "summary": n.summary,
            }),
            WebhookFormat::Slack => {
                let icon = match n.event {
                    CauseEvent::CauseResolved => ":white_check_mark:",
                    _ => ":rotating_light:",
                };
                let mut text = format!("{icon} [{}] {}", n.severity.as_str(), slack_escape(&n.summary));
                if n.event != CauseEvent::CauseResolved && n.members.len() > 5 {
                    let all: Vec<&str> = n.members.iter().map(|m| m.as_str()).collect();
                    text.push_str(&format!("\nEnvironments: {}", slack_escape(&all.join(", "))));
                }
                serde_json::json!({ "text": text })
            }
        }
    }

    /// The body posted for a notification.
    pub fn body(&self, n: &AlarmNotification) -> serde_json::Value {
        match self.format {
            WebhookFormat::Json => serde_json::json!({
                "id": n.id(),
                "event": n.event.as_str(),
                "alarm": n.alarm,
                "environment": n.environment,
                "ref": n.reference,
                "expected_sha": n.expected_sha,
                "since": n.since.to_string(),
                "summary": n.summary,
                "targets": n.targets,
                "severity": n.severity.as_str(),
                "labels": n.labels,
                "runbook_url": n.runbook_url,
                "cause": n.cause(),
            }),
            WebhookFormat::Slack => {
                let icon = match n.event {
                    AlarmEvent::AlarmResolved => ":white_check_mark:",
                    _ => ":rotating_light:",
                };
                let targets: Vec<String> =
                    n.targets.iter().map(|t| format!("{} is {}", t.name, t.status)).collect();
                let mut text = format!("{icon} [{}] [{}] {}", n.severity.as_str(), n.environment, n.summary);
                if !targets.is_empty() && n.event != AlarmEvent::AlarmResolved {
                    text.push_str(&format!(" ({})", targets.join("; ")));
                    // Up to five commits a deploy brings, and the compare link (SPEC §11).
                    let pending: Vec<String> =
                        n.targets.iter().flat_map(|t| &t.pending).take(5).map(commit_line).collect();
                    for line in pending {
                        text.push_str(&format!("\n• {}", slack_escape(&line)));
                    }
                    if let Some(url) = n.targets.iter().find_map(|t| t.compare_url.as_deref()) {
                        text.push_str(&format!("\n<{}|compare>", slack_escape(url)));
                    }
                    if let Some(url) = &n.runbook_url {
                        text.push_str(&format!("\n<{}|runbook>", slack_escape(url)));
                    }
                }
                serde_json::json!({ "text": text })
            }
        }
    }
}

#[async_trait]
impl AlarmSink for WebhookSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn notify(&self, n: &AlarmNotification) -> Result<(), SinkError> {
        if n.event == AlarmEvent::AlarmFiring {
            return Ok(());
        }
        post(&self.client, self.name(), &self.url, &self.headers, &self.body(n)).await
    }

    /// One message per cause instead of one per environment.
    fn grouping(&self) -> Grouping {
        Grouping::PerCause
    }

    async fn notify_cause(&self, n: &CauseNotification) -> Result<(), SinkError> {
        if n.event == CauseEvent::CauseFiring {
            return Ok(());
        }
        post(&self.client, self.name(), &self.url, &self.headers, &self.cause_body(n)).await
    }
}
