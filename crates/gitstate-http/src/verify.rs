//! Soak checks over HTTP (SPEC §15): [`HttpCheck`] (a status and, optionally, text in the
//! body) and [`PrometheusCheck`] (an instant query whose every sample must lie within
//! bounds). Each is bounded in time and size; what it reads never panics it.

use async_trait::async_trait;
use gitstate_core::verify::{self, Check, CheckContext, NoData};
use reqwest::header::HeaderMap;

use crate::clients::HttpClients;
use crate::error::HttpError;
use crate::header::{Header, header_map};

/// The most of a body a check reads.
const MAX_BODY: usize = 1024 * 1024;

fn secs(d: std::time::Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

fn fill(text: &str, cx: &CheckContext<'_>) -> String {
    text.replace("{environment}", cx.environment.as_str())
}

/// Reads at most [`MAX_BODY`] bytes of `resp` within `deadline`.
async fn body(mut resp: reqwest::Response, deadline: tokio::time::Instant) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, resp.chunk()).await {
            Err(_) => return Err("the body did not arrive in time".into()),
            Ok(Err(e)) => return Err(format!("reading the body: {}", crate::error::describe(&e))),
            Ok(Ok(None)) => return Ok(out),
            Ok(Ok(Some(c))) => {
                if out.len() + c.len() > MAX_BODY {
                    return Err(format!("the body is larger than {MAX_BODY} bytes"));
                }
                out.extend_from_slice(&c);
            }
        }
    }
}

/// `http = { url, status, body_contains, timeout, headers, ca_file }`.
pub struct HttpCheck {
    name: String,
    client: reqwest::Client,
    spec: verify::HttpCheck,
    headers: HeaderMap,
}

impl HttpCheck {
    /// A check named `name` from its configuration; `clients` gives the connection pool
    /// (and a client trusting `ca_file` when there is one).
    pub fn new(clients: &HttpClients, name: &str, spec: verify::HttpCheck) -> Result<Self, HttpError> {
        let client = match &spec.ca_file {
            Some(ca) => clients.with_ca_file(ca)?,
            None => clients.default_client().clone(),
        };
        let headers: Vec<Header> =
            spec.headers.iter().map(|(k, v)| Header::new(k, v)).collect::<Result<_, _>>()?;
        Ok(Self { name: name.to_owned(), client, headers: header_map(&headers), spec })
    }
}

#[async_trait]
impl Check for HttpCheck {
    fn name(&self) -> &str {
        &self.name
    }

    async fn run(&self, cx: &CheckContext<'_>) -> Result<(), String> {
        let url = fill(&self.spec.url, cx);
        let shown = gitstate_core::redact_text(&url);
        let deadline = tokio::time::Instant::now() + self.spec.timeout;
        let send = self.client.get(&url).headers(self.headers.clone()).timeout(self.spec.timeout).send();
        let resp = match tokio::time::timeout_at(deadline, send).await {
            Err(_) => return Err(format!("{shown}: no answer within {}", secs(self.spec.timeout))),
            Ok(Err(e)) => return Err(format!("{shown}: {}", crate::error::describe(&e))),
            Ok(Ok(r)) => r,
        };
        let status = resp.status().as_u16();
        if !self.spec.status.contains(&status) {
            return Err(format!("{shown} answered HTTP {status}, not {:?}", self.spec.status));
        }
        if let Some(want) = &self.spec.body_contains {
            let got = body(resp, deadline).await?;
            if !String::from_utf8_lossy(&got).contains(want.as_str()) {
                return Err(format!("{shown}: the body does not contain {want:?}"));
            }
        }
        Ok(())
    }
}

/// `prometheus = { url, query, min, max, timeout }`: Prometheus's HTTP API, an instant query.
pub struct PrometheusCheck {
    name: String,
    client: reqwest::Client,
    spec: verify::PrometheusCheck,
    no_data: NoData,
}

impl PrometheusCheck {
    /// A check named `name`; `no_data` says what an empty result counts as.
    pub fn new(clients: &HttpClients, name: &str, spec: verify::PrometheusCheck, no_data: NoData) -> Self {
        Self { name: name.to_owned(), client: clients.default_client().clone(), spec, no_data }
    }
}

/// The samples of an instant query's answer (`vector` or `scalar`); an error says what
/// is wrong with the answer.
pub fn samples(answer: &[u8]) -> Result<Vec<f64>, String> {
    let v: serde_json::Value =
        serde_json::from_slice(answer).map_err(|e| format!("the answer is not JSON: {e}"))?;
    if v["status"] != "success" {
        let error = v["error"].as_str().unwrap_or("no error given");
        return Err(format!("the query failed: {}", gitstate_core::escape_control(error)));
    }
    let value = |pair: &serde_json::Value| -> Result<f64, String> {
        let text = pair.get(1).and_then(|s| s.as_str()).ok_or("a sample without a value")?;
        text.parse::<f64>()
            .map_err(|_| format!("a sample that is not a number: {:?}", gitstate_core::escape_control(text)))
    };
    match v["data"]["resultType"].as_str() {
        Some("vector") => v["data"]["result"]
            .as_array()
            .ok_or("a vector without a result")?
            .iter()
            .map(|s| value(&s["value"]))
            .collect(),
        Some("scalar") => Ok(vec![value(&v["data"]["result"])?]),
        Some(other) => Err(format!(
            "a {:?} result; use an instant query giving a vector or a scalar",
            gitstate_core::escape_control(other)
        )),
        None => Err("an answer without data.resultType".into()),
    }
}

#[async_trait]
impl Check for PrometheusCheck {
    fn name(&self) -> &str {
        &self.name
    }

    async fn run(&self, cx: &CheckContext<'_>) -> Result<(), String> {
        let base = self.spec.url.trim_end_matches('/');
        let shown = gitstate_core::redact_text(base);
        let mut url = url::Url::parse(&format!("{base}/api/v1/query"))
            .map_err(|e| format!("{shown}: not a URL ({e})"))?;
        url.query_pairs_mut().append_pair("query", &fill(&self.spec.query, cx));
        let deadline = tokio::time::Instant::now() + self.spec.timeout;
        let send = self.client.get(url).timeout(self.spec.timeout).send();
        let resp = match tokio::time::timeout_at(deadline, send).await {
            Err(_) => return Err(format!("{shown}: no answer within {}", secs(self.spec.timeout))),
            Ok(Err(e)) => return Err(format!("{shown}: {}", crate::error::describe(&e))),
            Ok(Ok(r)) => r,
        };
        let status = resp.status().as_u16();
        let answer = body(resp, deadline).await?;
        if status != 200 && status != 400 && status != 422 {
            return Err(format!("{shown} answered HTTP {status}"));
        }
        let values = samples(&answer)?;
        if values.is_empty() {
            return match self.no_data {
                NoData::Pass => Ok(()),
                NoData::Fail => Err("the query returned no sample (no_data = \"fail\")".into()),
            };
        }
        for x in values {
            if x.is_nan() {
                return Err("a sample is NaN".into());
            }
            if let Some(min) = self.spec.min.filter(|m| x < m.0) {
                return Err(format!("a sample is {x}, below min {}", min.0));
            }
            if let Some(max) = self.spec.max.filter(|m| x > m.0) {
                return Err(format!("a sample is {x}, above max {}", max.0));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn vectors_and_scalars_read_and_errors_say_why() {
        let v = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"0.5"]},{"metric":{},"value":[1,"NaN"]}]}}"#;
        let got = samples(v).unwrap();
        assert_eq!(got[0], 0.5);
        assert!(got[1].is_nan());
        let s = br#"{"status":"success","data":{"resultType":"scalar","result":[1,"2"]}}"#;
        assert_eq!(samples(s).unwrap(), [2.0]);
        let empty = br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert!(samples(empty).unwrap().is_empty());
        let bad = br#"{"status":"error","errorType":"bad_data","error":"parse error"}"#;
        assert_eq!(samples(bad).unwrap_err(), "the query failed: parse error");
        assert!(samples(b"<html>").unwrap_err().starts_with("the answer is not JSON"));
        let matrix = br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert!(samples(matrix).unwrap_err().contains("instant query"));
    }

    proptest! {
        /// Whatever Prometheus (or something pretending to be it) answers, reading it ends
        /// in samples or an error that says something — never a panic.
        #[test]
        fn arbitrary_prometheus_answers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            match samples(&bytes) {
                Ok(_) => prop_assert!(serde_json::from_slice::<serde_json::Value>(&bytes).is_ok()),
                Err(e) => prop_assert!(!e.is_empty()),
            }
        }
    }
}
