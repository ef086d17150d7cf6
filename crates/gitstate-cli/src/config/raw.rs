//! The TOML schema of `gitstate.toml` (SPEC §5) as serde sees it: every table denies
//! unknown keys, and the values later checks refer to keep their position in the file.

use std::collections::BTreeMap;
use std::time::Duration;

use gitstate_core::{EnvName, Mode, OnDiverged};
use gitstate_http::{FollowRedirects, WebhookFormat};
use serde::{Deserialize, Deserializer};
use toml::Spanned;

/// A humantime duration such as `"5m"` or `"1h30m"`, at most [`MAX_DURATION`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

/// The longest duration a configuration may give (10 years): anything longer is a typo,
/// and would overflow the clock arithmetic it feeds (`Instant + timeout`).
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 86_400 + 2 * 86_400);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match humantime::parse_duration(&s) {
            Ok(d) if d <= MAX_DURATION => Ok(Dur(d)),
            Ok(_) => Err(serde::de::Error::custom(format!("duration {s:?} is longer than 10 years"))),
            Err(e) => Err(serde::de::Error::custom(format!(
                "invalid duration {s:?} ({e}); use e.g. \"30s\", \"5m\", \"1h\""
            ))),
        }
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
    pub policy: PolicyPatch,
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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    pub repo: Spanned<String>,
    pub ref_prefix: Option<Spanned<String>>,
    #[serde(default)]
    pub mirror: bool,
    pub timeout: Option<Spanned<Dur>>,
}

/// `[policy]` keys, each optional so that a per-environment table overrides only what it names.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyPatch {
    pub mode: Option<Mode>,
    pub grace: Option<Dur>,
    pub settle: Option<Dur>,
    pub max_attempts: Option<u32>,
    pub backoff: Option<Dur>,
    pub backoff_max: Option<Dur>,
    pub unreachable_after: Option<u32>,
    pub on_diverged: Option<OnDiverged>,
    pub renotify: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEnvironment {
    pub name: Spanned<EnvName>,
    #[serde(rename = "ref")]
    pub reference: Option<Spanned<String>>,
    #[serde(default)]
    pub targets: Vec<RawTarget>,
    pub remediate: Option<RawRemediate>,
    pub policy: Option<Spanned<PolicyPatch>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    pub name: Spanned<String>,
    pub http: Option<RawHttp>,
    pub aws: Option<RawAws>,
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
    pub policy: Option<Spanned<PolicyPatch>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlerts {
    pub alertmanager: Option<RawAlertmanager>,
    pub webhook: Option<RawAlertWebhook>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlertmanager {
    pub url: Spanned<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlertWebhook {
    pub url: Spanned<String>,
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
    #[serde(default = "default_concurrency")]
    pub concurrency: Spanned<usize>,
    #[serde(default = "default_listen")]
    pub listen: Spanned<String>,
}

impl Default for RawWatch {
    fn default() -> Self {
        Self {
            interval: default_interval(),
            jitter: default_jitter(),
            ref_poll: default_ref_poll(),
            concurrency: default_concurrency(),
            listen: default_listen(),
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
}

impl Default for RawState {
    fn default() -> Self {
        Self { dir: default_state_dir() }
    }
}

fn default_state_dir() -> Spanned<String> {
    Spanned::new(0..0, ".gitstate".to_owned())
}
