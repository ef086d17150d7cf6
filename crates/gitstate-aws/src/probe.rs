//! [`AwsProbe`]: `GetResources` with tag and resource-type filters, all pages, within a
//! total deadline. No match is `missing` (saying which filters matched nothing); an API,
//! credential or connection failure is `unreachable` with the AWS error code and message.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_resourcegroupstagging::Client;
use aws_sdk_resourcegroupstagging::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_resourcegroupstagging::types::TagFilter;
use gitstate_core::{ActualStateProbe, ProbeContext, ProbeFailure, Reading};
use tokio::sync::OnceCell;

use crate::tags::reading_from_tags;
use crate::target::AwsTarget;

/// SDK clients shared by AWS probes, one per (region, profile, endpoint, timeout): a fleet
/// of AWS targets then reads the shared config files, resolves credentials and keeps a
/// connection pool once, not once per target. Cheap to clone.
#[derive(Clone, Default)]
pub struct AwsClients {
    clients: Arc<Mutex<HashMap<ClientKey, Arc<OnceCell<Client>>>>>,
}

/// The target settings a client is built from.
#[derive(Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    region: String,
    profile: Option<String>,
    endpoint_url: Option<String>,
    timeout: Duration,
}

impl ClientKey {
    fn of(t: &AwsTarget) -> Self {
        Self {
            region: t.region.clone(),
            profile: t.profile.clone(),
            endpoint_url: t.endpoint_url.clone(),
            timeout: t.timeout,
        }
    }
}

impl AwsClients {
    /// No client yet; each is built on first use.
    pub fn new() -> Self {
        Self::default()
    }

    fn cell(&self, target: &AwsTarget) -> Arc<OnceCell<Client>> {
        let mut map = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(ClientKey::of(target)).or_default().clone()
    }
}

/// Reads the commit tag of every matching resource.
pub struct AwsProbe {
    target: AwsTarget,
    client: Arc<OnceCell<Client>>,
}

impl AwsProbe {
    /// A probe with a client of its own, built on first use.
    pub fn new(target: AwsTarget) -> Self {
        Self { target, client: Arc::default() }
    }

    /// A probe sharing the client of every other target with the same region, profile,
    /// endpoint and timeout.
    pub fn shared(clients: &AwsClients, target: AwsTarget) -> Self {
        Self { client: clients.cell(&target), target }
    }

    async fn client(&self) -> &Client {
        self.client
            .get_or_init(|| async {
                let t = &self.target;
                let mut loader = aws_config::defaults(BehaviorVersion::latest())
                    .region(aws_config::Region::new(t.region.clone()))
                    .timeout_config(
                        TimeoutConfig::builder()
                            .connect_timeout(Duration::from_secs(3))
                            .operation_attempt_timeout(t.timeout)
                            .operation_timeout(t.timeout)
                            .build(),
                    );
                if let Some(p) = &t.profile {
                    loader = loader.profile_name(p);
                }
                if let Some(u) = &t.endpoint_url {
                    loader = loader.endpoint_url(u);
                }
                Client::new(&loader.load().await)
            })
            .await
    }

    async fn read_all(&self) -> Result<Vec<Reading>, ProbeFailure> {
        let t = &self.target;
        let client = self.client().await;
        let mut req = client.get_resources().resources_per_page(100);
        for (k, values) in &t.tags {
            req = req.tag_filters(TagFilter::builder().key(k).set_values(Some(values.clone())).build());
        }
        for rt in &t.resource_types {
            req = req.resource_type_filters(rt);
        }
        let mut pages = req.into_paginator().send();
        let mut out = Vec::new();
        let start = Instant::now();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| ProbeFailure::unreachable(describe(&e)))?;
            let elapsed = start.elapsed();
            for m in page.resource_tag_mapping_list() {
                let Some(arn) = m.resource_arn() else { continue };
                let tags = m.tags().iter().map(|tag| (tag.key(), tag.value()));
                out.push(reading_from_tags(arn, tags, &t.sha_tag, elapsed));
            }
        }
        if out.is_empty() {
            return Err(ProbeFailure::missing(format!("no resource matched {}", t.filters())));
        }
        Ok(out)
    }
}

/// `AWS <code>: <message>` for service errors, the whole chain otherwise.
fn describe<E, R>(e: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match e.as_service_error() {
        Some(se) => format!(
            "AWS GetResources: {}: {}",
            se.code().unwrap_or("error"),
            se.message().unwrap_or("no message")
        ),
        None => format!("AWS GetResources: {}", DisplayErrorContext(e)),
    }
}

#[async_trait]
impl ActualStateProbe for AwsProbe {
    fn name(&self) -> &str {
        "aws"
    }

    fn origin(&self) -> Option<String> {
        Some(format!("aws:{}", self.target.region))
    }

    async fn observe(&self, _cx: &ProbeContext<'_>) -> Result<Vec<Reading>, ProbeFailure> {
        let limit = self.target.timeout;
        match tokio::time::timeout(limit, self.read_all()).await {
            Ok(r) => r,
            Err(_) => Err(ProbeFailure::unreachable(format!(
                "AWS GetResources: timed out after {}s ({})",
                limit.as_secs(),
                self.target.filters()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn targets_with_the_same_settings_share_one_client() {
        let clients = AwsClients::new();
        let tags = |env: &str| BTreeMap::from([("environment".to_owned(), vec![env.to_owned()])]);
        let a = AwsTarget::new("eu-west-1", tags("a"));
        let b = AwsTarget::new("eu-west-1", tags("b"));
        let other_region = AwsTarget::new("us-east-1", tags("a"));
        let mut other_endpoint = AwsTarget::new("eu-west-1", tags("a"));
        other_endpoint.endpoint_url = Some("http://127.0.0.1:5000".into());

        // Tags and resource types are per request; region, profile, endpoint and timeout
        // are the client's.
        assert!(Arc::ptr_eq(&clients.cell(&a), &clients.cell(&b)));
        assert!(!Arc::ptr_eq(&clients.cell(&a), &clients.cell(&other_region)));
        assert!(!Arc::ptr_eq(&clients.cell(&a), &clients.cell(&other_endpoint)));
        assert!(!Arc::ptr_eq(&AwsProbe::new(a.clone()).client, &AwsProbe::new(a).client));
    }
}
