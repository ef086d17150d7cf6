//! The `watch` HTTP endpoint: `GET /` (the dashboard) and `/events` (its updates, as
//! server-sent events), `/metrics` (OpenMetrics), `/healthz`, `/readyz` (after the first
//! full pass) and `/status` (the `status -o json` document), over [`crate::serve`], all
//! read from the runtime's [`View`] and the metrics.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gitstate_runtime::View;

use super::metrics::Metrics;
use crate::output::html;
use crate::serve::{Answer, Request, Response, StatusCode, serve_with};

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
    /// `[watch.auth]`: who may read, and who may act (SPEC §20). Without it the listener
    /// is read-only and open.
    pub guard: Option<Guard>,
    /// `Strict-Transport-Security: max-age`, when `[watch.tls] hsts` is set.
    pub hsts: Option<Duration>,
}

/// What an authenticated listener checks and acts with.
pub struct Guard {
    /// Who is asking.
    pub gate: super::auth::Gate,
    /// The actions' CSRF tokens.
    pub csrf: super::csrf::Csrf,
    /// The loop's operator: the actions' library calls.
    pub operator: gitstate_runtime::operate::Operator,
}

/// How long `watch` may go without completing a full pass before `/healthz` fails.
pub fn stall_window(interval: Duration) -> Duration {
    (interval.saturating_mul(3)).max(Duration::from_secs(300))
}

/// Binds `addr` (errors here are startup errors) and serves in the background, over TLS
/// when `tls` is given.
pub async fn start(
    addr: SocketAddr,
    endpoint: Endpoint,
    tls: Option<Arc<super::tls::Certs>>,
) -> std::io::Result<SocketAddr> {
    let headers = security_headers(endpoint.hsts);
    let endpoint = Arc::new(endpoint);
    let options = crate::serve::Options { max_body: super::actions::MAX_BODY, tls, headers };
    serve_with(addr, options, move |r| endpoint.answer(r)).await
}

/// The headers every answer carries (SPEC §20); `Referrer-Policy: no-referrer` would make
/// browsers send `Origin: null` with the forms.
pub fn security_headers(hsts: Option<Duration>) -> Vec<(&'static str, String)> {
    let mut h = vec![
        ("content-security-policy", html::CSP.clone()),
        ("x-frame-options", "DENY".into()),
        ("referrer-policy", "same-origin".into()),
        ("x-content-type-options", "nosniff".into()),
    ];
    if let Some(age) = hsts {
        h.push(("strict-transport-security", format!("max-age={}", age.as_secs())));
    }
    h
}

const TEXT: &str = "text/plain; charset=utf-8";

impl Endpoint {
    /// Answers `r`: open paths at once; with `[watch.auth]`, the rest once the user is
    /// known (a password's hash is checked off the runtime's threads).
    fn answer(self: &Arc<Self>, r: &Request) -> Answer {
        let open = matches!(r.path.as_str(), "/healthz" | "/readyz")
            || (r.path == "/metrics" && self.guard.as_ref().is_some_and(|g| g.gate.metrics_public()));
        let Some(_) = &self.guard else {
            if r.path.starts_with("/actions/") {
                let why = "not found: actions need [watch.auth] (SPEC §20)\n";
                return Answer::Now(Response::new(StatusCode::NOT_FOUND, TEXT, why));
            }
            return Answer::Now(self.respond(&r.method, &r.path, r.query.as_deref(), None));
        };
        if open {
            return Answer::Now(self.respond(&r.method, &r.path, r.query.as_deref(), None));
        }
        let me = self.clone();
        let r = r.clone();
        Answer::Later(Box::pin(async move {
            let guard = me.guard.as_ref().expect("checked above");
            let who = match guard.gate.check(&r).await {
                Ok(who) => who,
                Err(super::auth::Denied::TooMany(wait)) => {
                    let mut resp = Response::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        TEXT,
                        "too many wrong credentials from this address; try again later\n",
                    );
                    resp.headers.push(("retry-after", wait.as_secs().max(1).to_string()));
                    return resp;
                }
                Err(super::auth::Denied::Unauthorized) => {
                    let mut resp = Response::new(StatusCode::UNAUTHORIZED, TEXT, "credentials required\n");
                    resp.headers
                        .push(("www-authenticate", "Basic realm=\"gitstate\", charset=\"UTF-8\"".into()));
                    return resp;
                }
            };
            if r.path.starts_with("/actions/") && r.method == "POST" {
                super::actions::respond(&r, &who, &guard.csrf, &guard.operator).await
            } else if r.path == "/actions/token" && r.method == "GET" {
                if who.role == crate::config::Role::Operator {
                    let token = guard.csrf.token(&who.name, jiff::Timestamp::now());
                    let mut resp = Response::new(
                        StatusCode::OK,
                        "application/json",
                        format!("{{\"token\":\"{token}\"}}\n"),
                    );
                    resp.headers.push(("cache-control", "no-store".into()));
                    resp
                } else {
                    Response::new(StatusCode::FORBIDDEN, TEXT, "only an operator may act\n")
                }
            } else if r.path.starts_with("/actions/") {
                Response::new(StatusCode::METHOD_NOT_ALLOWED, TEXT, "POST only\n")
            } else {
                // The page's forms carry a token when the user may act.
                let token = (who.role == crate::config::Role::Operator)
                    .then(|| guard.csrf.token(&who.name, jiff::Timestamp::now()));
                me.respond(&r.method, &r.path, r.query.as_deref(), token)
            }
        }))
    }

    fn respond(&self, method: &str, path: &str, query: Option<&str>, token: Option<String>) -> Response {
        if method == "GET" {
            if let Some(r) = self.dashboard.respond(path, query, token) {
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
