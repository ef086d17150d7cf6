//! The `watch` HTTP endpoint: `GET /` (the dashboard) and `/events` (its updates, as
//! server-sent events), `/metrics` (OpenMetrics), `/healthz`, `/readyz` (after the first
//! full pass) and `/status` (the `status -o json` document), over [`crate::serve`], all
//! read from the runtime's [`View`] and the metrics.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gitstate_runtime::View;

use super::metrics::Metrics;
use crate::serve::{Response, StatusCode, serve};

/// What the endpoint serves from.
pub struct Endpoint {
    /// The metrics (and whether a full pass has completed).
    pub metrics: Arc<Metrics>,
    /// The loop as it stands.
    pub view: Arc<View>,
    /// `/healthz` fails when no full pass completed within this long (SPEC §7: max(3 ×
    /// interval, 5 min)).
    pub stall_after: Duration,
    /// The dashboard at `/`, and its updates at `/events`.
    pub dashboard: Arc<super::dashboard::Dashboard>,
}

/// How long `watch` may go without completing a full pass before `/healthz` fails.
pub fn stall_window(interval: Duration) -> Duration {
    (interval.saturating_mul(3)).max(Duration::from_secs(300))
}

/// Binds `addr` (errors here are startup errors) and serves in the background.
pub async fn start(addr: SocketAddr, endpoint: Endpoint) -> std::io::Result<SocketAddr> {
    serve(addr, 0, move |r| endpoint.respond(r.method, r.path, r.query)).await
}

impl Endpoint {
    fn respond(&self, method: &str, path: &str, query: Option<&str>) -> Response {
        if method == "GET" {
            if let Some(r) = self.dashboard.respond(path, query) {
                return r;
            }
            if path == "/metrics" {
                let mut r = Response::new(
                    StatusCode::OK,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    "",
                );
                r.body = crate::serve::Body::Stream(self.metrics.exposition());
                return r;
            }
        }
        let (status, content_type, body) = self.route(method, path);
        Response::new(status, content_type, body)
    }

    fn route(&self, method: &str, path: &str) -> (StatusCode, &'static str, String) {
        const TEXT: &str = "text/plain; charset=utf-8";
        if method != "GET" {
            return (StatusCode::METHOD_NOT_ALLOWED, TEXT, "GET only\n".into());
        }
        match path {
            "/healthz" if self.metrics.stalled(jiff::Timestamp::now(), self.stall_after) => (
                StatusCode::SERVICE_UNAVAILABLE,
                TEXT,
                format!(
                    "stalled: no full pass completed in the last {}\n",
                    humantime::format_duration(self.stall_after)
                ),
            ),
            "/healthz" => (StatusCode::OK, TEXT, "ok\n".into()),
            // Ready once a full pass completed, saying this replica's role (SPEC §14): a
            // standby serves /status and the dashboard as well as the leader does.
            "/readyz" if self.metrics.ready() => {
                let role = if self.view.leading() { "leader" } else { "standby" };
                (StatusCode::OK, TEXT, format!("ready: {role}\n"))
            }
            "/readyz" => (StatusCode::SERVICE_UNAVAILABLE, TEXT, "waiting for the first full pass\n".into()),
            "/status" => {
                let doc = self.view.status(jiff::Timestamp::now());
                (StatusCode::OK, "application/json", serde_json::to_string_pretty(&doc).unwrap_or_default())
            }
            _ => (
                StatusCode::NOT_FOUND,
                TEXT,
                "not found: try /, /where?rev=REV, /events, /metrics, /healthz, /readyz, /status\n".into(),
            ),
        }
    }
}
