//! The TOML schema of `gitstate.toml` (SPEC §5) as serde sees it: every table denies
//! unknown keys, and the values later checks refer to keep their position in the file.

use std::collections::BTreeMap;
use std::time::Duration;

use gitstate_core::EnvName;
use gitstate_http::{FollowRedirects, WebhookFormat};
use serde::{Deserialize, Deserializer};
use toml::Spanned;

/// A humantime duration such as `"5m"` or `"1h30m"`, at most 10 years
/// ([`gitstate_core::parse_duration`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        gitstate_core::parse_duration(&s).map(Dur).map_err(serde::de::Error::custom)
    }
}

/// A percentage such as `"10%"`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percent(pub f64);

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let n = s.strip_suffix('%').and_then(|n| n.trim().parse::<f64>().ok());
        match n {
            Some(n) if (0.0..=100.0).contains(&n) => Ok(Percent(n / 100.0)),
            _ => Err(serde::de::Error::custom(format!(
                "invalid percentage {s:?}; use e.g. \"10%\" (0% to 100%)"
            ))),
        }
    }
}

/// A string or a list of strings (AWS tag values).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One value.
    One(String),
    /// Any of these values.
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub source: RawSource,
    #[serde(default)]
    pub policy: PolicyTable,
    #[serde(default)]
    pub environments: Vec<RawEnvironment>,
    #[serde(default)]
    pub discover: Vec<RawDiscover>,
    #[serde(default)]
    pub alerts: RawAlerts,
    #[serde(default)]
    pub watch: RawWatch,
    #[serde(default)]
    pub state: RawState,
    #[serde(default)]
    pub output: RawOutput,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutput {
    pub max_commits: Option<Spanned<usize>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    pub repo: Spanned<String>,
    pub ref_prefix: Option<Spanned<String>>,
    pub mirror: Option<Spanned<bool>>,
    pub timeout: Option<Spanned<Dur>>,
    pub commit_url: Option<Spanned<String>>,
    pub compare_url: Option<Spanned<String>>,
    pub trust: Option<Spanned<RawTrust>>,
}

/// `[source.trust]` (SPEC §18).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrust {
    pub allowed_signers: Option<Spanned<String>>,
    pub openpgp_keys: Option<Spanned<String>>,
    #[serde(default)]
    pub require: gitstate_trust::Require,
    pub on_untrusted: Option<Spanned<String>>,
}

/// A `[policy]` table as written: each key with where it stands, its value read later, once
/// the tables that apply are merged (`config/policy.rs`).
pub type PolicyTable = BTreeMap<Spanned<String>, Spanned<toml::Value>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEnvironment {
    pub name: Spanned<EnvName>,
    #[serde(rename = "ref")]
    pub reference: Option<Spanned<String>>,
    #[serde(default)]
    pub targets: Vec<RawTarget>,
    pub remediate: Option<RawRemediate>,
    pub policy: Option<Spanned<PolicyTable>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    pub name: Spanned<String>,
    pub http: Option<RawHttp>,
    pub aws: Option<RawAws>,
    pub exec: Option<RawExec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExec {
    pub command: Spanned<Vec<String>>,
    #[serde(default)]
    pub format: gitstate_process::ExecFormat,
    pub sha_pointer: Option<Spanned<String>>,
    pub timeout: Option<Dur>,
    pub max_bytes: Option<usize>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    pub urls: Spanned<Vec<Spanned<String>>>,
    pub sha_pointer: Option<Spanned<String>>,
    pub timeout: Option<Dur>,
    pub max_bytes: Option<usize>,
    #[serde(default)]
    pub headers: BTreeMap<String, Spanned<String>>,
    pub ca_file: Option<Spanned<String>>,
    pub follow_redirects: Option<FollowRedirects>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAws {
    pub region: Spanned<String>,
    pub tags: Spanned<BTreeMap<String, OneOrMany>>,
    #[serde(default)]
    pub resource_types: Vec<String>,
    pub sha_tag: Option<String>,
    pub endpoint_url: Option<Spanned<String>>,
    pub profile: Option<String>,
    pub timeout: Option<Dur>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRemediate {
    pub command: Option<Spanned<Vec<String>>>,
    pub timeout: Option<Dur>,
    pub webhook: Option<RawWebhook>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    pub url: Spanned<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, Spanned<String>>,
    pub body: Option<Spanned<String>>,
    pub timeout: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDiscover {
    pub ref_prefix: Option<Spanned<String>>,
    #[serde(default)]
    pub exclude: Vec<Spanned<String>>,
    #[serde(default)]
    pub targets: Vec<RawTarget>,
    pub remediate: Option<RawRemediate>,
    pub policy: Option<Spanned<PolicyTable>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlerts {
    pub alertmanager: Option<RawAlertmanager>,
    /// `[alerts.webhook]` (one) or `[[alerts.webhook]]` (several).
    #[serde(default)]
    pub webhook: Tables<RawAlertWebhook>,
    pub group_wait: Option<Dur>,
}

/// A table written once (`[x]`) or as an array of tables (`[[x]]`); a table's own errors
/// (an unknown key, a missing one) keep their place.
#[derive(Debug)]
pub struct Tables<T>(pub Vec<T>);

impl<T> Default for Tables<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Tables<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Visit<T> {
            type Value = Tables<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a table or an array of tables")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(|t| Tables(vec![t]))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                Vec::<T>::deserialize(serde::de::value::SeqAccessDeserializer::new(seq)).map(Tables)
            }
        }
        d.deserialize_any(Visit(std::marker::PhantomData))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlertmanager {
    pub url: Spanned<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, Spanned<String>>,
    pub ttl: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlertWebhook {
    pub url: Spanned<String>,
    pub name: Option<Spanned<String>>,
    #[serde(default)]
    pub format: WebhookFormat,
    #[serde(default)]
    pub headers: BTreeMap<String, Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWatch {
    #[serde(default = "default_interval")]
    pub interval: Dur,
    #[serde(default = "default_jitter")]
    pub jitter: Percent,
    #[serde(default = "default_ref_poll")]
    pub ref_poll: Dur,
    #[serde(default = "default_converging_poll")]
    pub converging_poll: Dur,
    #[serde(default = "default_concurrency")]
    pub concurrency: Spanned<usize>,
    #[serde(default = "default_listen")]
    pub listen: Spanned<String>,
    pub webhook: Option<RawPushWebhook>,
    pub tls: Option<RawTls>,
    pub auth: Option<Spanned<RawAuth>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert: Spanned<String>,
    pub key: Spanned<String>,
    pub hsts: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    #[serde(default)]
    pub users: Vec<Spanned<RawUser>>,
    pub trusted_header: Option<Spanned<String>>,
    pub trusted_proxies: Option<Vec<Spanned<String>>>,
    pub header_role: Option<Spanned<String>>,
    #[serde(default)]
    pub header_operators: Vec<String>,
    #[serde(default)]
    pub metrics_public: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUser {
    pub name: Spanned<String>,
    pub password_hash: Spanned<String>,
    pub role: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPushWebhook {
    pub listen: Spanned<String>,
    pub secret: Spanned<String>,
}

impl Default for RawWatch {
    fn default() -> Self {
        Self {
            interval: default_interval(),
            jitter: default_jitter(),
            ref_poll: default_ref_poll(),
            converging_poll: default_converging_poll(),
            concurrency: default_concurrency(),
            listen: default_listen(),
            webhook: None,
            tls: None,
            auth: None,
        }
    }
}

fn default_interval() -> Dur {
    Dur(Duration::from_secs(60))
}
fn default_jitter() -> Percent {
    Percent(0.10)
}
fn default_ref_poll() -> Dur {
    Dur(Duration::from_secs(1))
}
fn default_converging_poll() -> Dur {
    Dur(Duration::from_secs(5))
}
fn default_concurrency() -> Spanned<usize> {
    Spanned::new(0..0, 64)
}
fn default_listen() -> Spanned<String> {
    Spanned::new(0..0, "127.0.0.1:9464".to_owned())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    #[serde(default = "default_state_dir")]
    pub dir: Spanned<String>,
    pub events_max_bytes: Option<Spanned<u64>>,
    pub events_keep: Option<u32>,
    pub postgres: Option<Spanned<String>>,
    pub cluster: Option<Spanned<String>>,
    pub failover: Option<Spanned<Dur>>,
    pub shards: Option<Spanned<String>>,
    pub replica: Option<Spanned<String>>,
}

impl Default for RawState {
    fn default() -> Self {
        Self {
            dir: default_state_dir(),
            events_max_bytes: None,
            events_keep: None,
            postgres: None,
            cluster: None,
            failover: None,
            shards: None,
            replica: None,
        }
    }
}

fn default_state_dir() -> Spanned<String> {
    Spanned::new(0..0, ".gitstate".to_owned())
}
