//! The webhook remediator: re-triggers a deployment by POSTing JSON (a CI/CD API, a
//! GitHub `workflow_dispatch`, a deploy service). 2xx means triggered. Entry:
//! [`WebhookRemediator`].

use std::time::Duration;

use async_trait::async_trait;
use gitstate_core::{RemediationOutcome, RemediationRequest, Remediator};
use reqwest::header::{CONTENT_TYPE, HeaderMap};

use crate::header::{Header, header_map};
use url::Url;

use crate::clients::HttpClients;

/// Variables a webhook body template may use; filled in for each attempt.
pub const RUNTIME_VARS: [&str; 4] =
    ["GITSTATE_ENVIRONMENT", "GITSTATE_REF", "GITSTATE_EXPECTED_SHA", "GITSTATE_ATTEMPT"];

/// Bytes of the response kept as the output tail.
const TAIL: usize = 8 * 1024;

/// POSTs to a URL to re-trigger a deployment.
pub struct WebhookRemediator {
    client: reqwest::Client,
    url: Url,
    headers: HeaderMap,
    body: Option<String>,
    timeout: Duration,
}

impl WebhookRemediator {
    /// A remediator POSTing `body` (a template with [`RUNTIME_VARS`]) or, when `None`, the
    /// default JSON `{"environment","ref","expected_sha","attempt","drifted":[...]}`.
    pub fn new(
        clients: &HttpClients,
        url: Url,
        headers: Vec<Header>,
        body: Option<String>,
        timeout: Duration,
    ) -> Self {
        Self { client: clients.default_client().clone(), url, headers: header_map(&headers), body, timeout }
    }

    /// The body sent for `req`.
    pub fn body_for(&self, req: &RemediationRequest) -> String {
        match &self.body {
            Some(t) => fill(t, req),
            None => default_body(req).to_string(),
        }
    }
}

/// The default JSON body.
pub fn default_body(req: &RemediationRequest) -> serde_json::Value {
    serde_json::json!({
        "environment": req.environment,
        "ref": req.reference,
        "expected_sha": req.expected,
        "attempt": req.attempt,
        "drifted": req.drifted.iter().map(|(t, i)| serde_json::json!({"target": t, "instance": i})).collect::<Vec<_>>(),
    })
}

/// Fills [`RUNTIME_VARS`] into a template. The values are a validated name, a ref name,
/// hex and a number: nothing that needs escaping in JSON.
pub fn fill(template: &str, req: &RemediationRequest) -> String {
    let attempt = req.attempt.to_string();
    let vals = [req.environment.as_str(), req.reference.as_str(), req.expected.as_str(), attempt.as_str()];
    let mut out = template.to_owned();
    for (k, v) in RUNTIME_VARS.iter().zip(vals) {
        out = out.replace(&format!("${{{k}}}"), v);
    }
    out
}

#[async_trait]
impl Remediator for WebhookRemediator {
    fn name(&self) -> &str {
        "webhook"
    }

    async fn remediate(&self, req: &RemediationRequest) -> RemediationOutcome {
        let send = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(self.body_for(req))
            .timeout(self.timeout)
            .send();
        let fail =
            |detail: String| RemediationOutcome { ok: false, detail, exit_code: None, output_tail: None };
        let resp = match tokio::time::timeout(self.timeout, send).await {
            Err(_) => return fail(format!("webhook timed out after {}s", self.timeout.as_secs())),
            Ok(Err(e)) => return fail(format!("webhook failed: {}", crate::error::describe(&e))),
            Ok(Ok(r)) => r,
        };
        let status = resp.status();
        let tail = read_tail(resp, self.timeout).await;
        RemediationOutcome {
            ok: status.is_success(),
            detail: format!("webhook answered HTTP {status}"),
            exit_code: None,
            output_tail: (!tail.is_empty()).then_some(tail),
        }
    }
}

/// The first [`TAIL`] bytes of a response, within `timeout`, lossily decoded.
pub(crate) async fn read_tail(mut resp: reqwest::Response, timeout: Duration) -> String {
    let mut body = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while body.len() < TAIL {
        match tokio::time::timeout_at(deadline, resp.chunk()).await {
            Ok(Ok(Some(c))) => body.extend_from_slice(&c[..c.len().min(TAIL - body.len())]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use gitstate_core::{CommitId, EnvName};

    fn req() -> RemediationRequest {
        RemediationRequest {
            environment: EnvName::new("production").unwrap(),
            reference: "refs/heads/environments/production".into(),
            expected: CommitId::parse(&"a".repeat(40)).unwrap(),
            attempt: 2,
            drifted: vec![("web".into(), "https://eu/x".into())],
        }
    }

    #[test]
    fn templates_and_default_body() {
        let t = r#"{"ref":"main","inputs":{"sha":"${GITSTATE_EXPECTED_SHA}","env":"${GITSTATE_ENVIRONMENT}","n":${GITSTATE_ATTEMPT}}}"#;
        let v: serde_json::Value = serde_json::from_str(&fill(t, &req())).unwrap();
        assert_eq!(v["inputs"]["sha"], "a".repeat(40));
        assert_eq!(v["inputs"]["env"], "production");
        assert_eq!(v["inputs"]["n"], 2);
        let d = default_body(&req());
        assert_eq!(d["expected_sha"], "a".repeat(40));
        assert_eq!(d["ref"], "refs/heads/environments/production");
        assert_eq!(d["drifted"][0]["instance"], "https://eu/x");
    }
}
