//! Verify after a deploy (SPEC §15): `[policy.verify]` ([`Verify`]), its checks
//! ([`CheckSpec`], run by a [`Check`] plugin), and what the state keeps of a soak
//! ([`Verification`]). Once an environment is in sync on a commit it has not verified
//! before, the commit is watched for `soak`: the checks run every `every`, and
//! `failures` failed runs make it `degraded` (an alarm, and with `on_degraded =
//! "rollback"` the ref moved back to the last verified commit). The decision is part of
//! the pure [`crate::reconcile()`]; the checks are I/O, run by the engine before it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::commit::CommitId;
use crate::name::EnvName;

/// What to do when a soak ends degraded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnDegraded {
    /// Raise the `degraded` alarm; a person decides.
    #[default]
    Alarm,
    /// Raise it and move the ref back to the last verified commit (vetoing the bad one).
    Rollback,
}

/// What a Prometheus query with no sample counts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoData {
    /// A failed run.
    #[default]
    Fail,
    /// A passed run.
    Pass,
}

/// A bound of a Prometheus check (compared bit for bit, so a policy stays `Eq`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Bound(pub f64);

impl PartialEq for Bound {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}
impl Eq for Bound {}
impl std::hash::Hash for Bound {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.to_bits().hash(state);
    }
}

/// `http = { url, status, body_contains, timeout, headers, ca_file }`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpCheck {
    /// The URL (`{environment}` is replaced by the environment's name).
    pub url: String,
    /// The statuses that pass (default `[200]`).
    #[serde(default = "ok_status")]
    pub status: Vec<u16>,
    /// Text the body must contain.
    #[serde(default)]
    pub body_contains: Option<String>,
    /// Bound on the whole request (default 10 s).
    #[serde(default = "ten_seconds", with = "crate::policy::duration")]
    pub timeout: Duration,
    /// Request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A CA (or the server's own certificate) to trust for this check.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// `prometheus = { url, query, min, max, timeout }`: an instant query through the HTTP API.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusCheck {
    /// Prometheus's base URL.
    pub url: String,
    /// The PromQL instant query (`{environment}` replaced).
    pub query: String,
    /// Every sample at least this (inclusive).
    #[serde(default)]
    pub min: Option<Bound>,
    /// Every sample at most this (inclusive).
    #[serde(default)]
    pub max: Option<Bound>,
    /// Bound on the query (default 10 s).
    #[serde(default = "ten_seconds", with = "crate::policy::duration")]
    pub timeout: Duration,
}

fn ok_status() -> Vec<u16> {
    vec![200]
}

fn ten_seconds() -> Duration {
    Duration::from_secs(10)
}

/// One `[[policy.verify.checks]]`: a name and exactly one of `http`, `prometheus`, `exec`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckSpec {
    /// Its name, in status, events and metrics.
    pub name: String,
    /// An HTTP check.
    #[serde(default)]
    pub http: Option<HttpCheck>,
    /// A Prometheus query.
    #[serde(default)]
    pub prometheus: Option<PrometheusCheck>,
    /// A command (argv, `{environment}` replaced); exit 0 passes.
    #[serde(default)]
    pub exec: Option<Vec<String>>,
    /// Bound on an `exec` check (default 30 s).
    #[serde(default = "thirty_seconds", with = "crate::policy::duration")]
    pub timeout: Duration,
}

fn thirty_seconds() -> Duration {
    Duration::from_secs(30)
}

/// `[policy.verify]` (SPEC §15).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Verify {
    /// How long a new commit is watched once every instance runs it.
    #[serde(with = "crate::policy::duration")]
    pub soak: Duration,
    /// How often the checks run during the soak.
    #[serde(with = "crate::policy::duration")]
    pub every: Duration,
    /// Failed runs (all checks counted together) within the soak that make it degraded.
    pub failures: u32,
    /// `alarm` or `rollback`.
    pub on_degraded: OnDegraded,
    /// What a Prometheus query with no sample counts as.
    pub no_data: NoData,
    /// The checks.
    pub checks: Vec<CheckSpec>,
}

impl Default for Verify {
    fn default() -> Self {
        Self {
            soak: Duration::from_secs(600),
            every: Duration::from_secs(30),
            failures: 3,
            on_degraded: OnDegraded::Alarm,
            no_data: NoData::Fail,
            checks: Vec::new(),
        }
    }
}

impl Verify {
    /// Checks the relations between keys; a message for the config error otherwise.
    pub fn validate(&self) -> Result<(), String> {
        if self.failures == 0 {
            return Err("verify.failures must be at least 1".into());
        }
        if self.every.is_zero() {
            return Err("verify.every must be longer than 0s".into());
        }
        for c in &self.checks {
            let kinds = usize::from(c.http.is_some())
                + usize::from(c.prometheus.is_some())
                + usize::from(c.exec.is_some());
            if kinds != 1 {
                return Err(format!("check {:?}: give exactly one of http, prometheus or exec", c.name));
            }
            if c.exec.as_ref().is_some_and(Vec::is_empty) {
                return Err(format!("check {:?}: exec needs a command", c.name));
            }
        }
        Ok(())
    }
}

/// What a check is told.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct CheckContext<'a> {
    /// The environment soaking.
    pub environment: &'a EnvName,
    /// The commit it runs.
    pub expected: &'a CommitId,
}

impl<'a> CheckContext<'a> {
    /// A context.
    pub fn new(environment: &'a EnvName, expected: &'a CommitId) -> Self {
        Self { environment, expected }
    }
}

/// A check run during a soak (`gitstate-http` has `http` and `prometheus`,
/// `gitstate-process` has `exec`; a downstream team may write its own).
#[async_trait]
pub trait Check: Send + Sync {
    /// Its name.
    fn name(&self) -> &str;
    /// Runs once: `Err` says why it failed. The engine bounds it by its own timeout too.
    async fn run(&self, cx: &CheckContext<'_>) -> Result<(), String>;
}

/// One check's run on a pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckRun {
    /// The check's name.
    pub check: String,
    /// Passed, or why not.
    pub result: Result<(), String>,
}

/// Where a soak stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerificationState {
    /// Watched: the checks run.
    Verifying,
    /// The soak ended with fewer than `failures` failed runs.
    Verified,
    /// `failures` failed runs within the soak.
    Degraded,
}

impl VerificationState {
    /// The name in JSON and text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Verifying => "verifying",
            Self::Verified => "verified",
            Self::Degraded => "degraded",
        }
    }
}

/// One failed run of a check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckFailure {
    /// The check.
    pub check: String,
    /// When it ran.
    pub at: Timestamp,
    /// Why it failed.
    pub reason: String,
}

/// The soak of one commit in one environment, as the state keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    /// The commit.
    pub sha: CommitId,
    /// Where it stands.
    pub state: VerificationState,
    /// When the soak began.
    pub since: Timestamp,
    /// When it ends.
    pub until: Timestamp,
    /// When the checks run next (while verifying).
    #[serde(default)]
    pub next_check_at: Option<Timestamp>,
    /// Failed runs so far.
    #[serde(default)]
    pub failures: Vec<CheckFailure>,
}

/// How many verified commits an environment remembers (the newest last).
pub const VERIFIED_KEPT: usize = 16;

/// Whether a pass at `now` runs the checks of `verify` for `commit`: the environment is
/// in sync, the commit has not been verified there, and its soak is starting, or running
/// with a run due.
pub fn checks_due(
    verification: Option<&Verification>,
    verified: &[CommitId],
    commit: &CommitId,
    in_sync: bool,
    verify: Option<&Verify>,
    now: Timestamp,
) -> bool {
    if verify.is_none() {
        return false;
    }
    if !in_sync || verified.contains(commit) {
        return false;
    }
    match verification.filter(|v| v.sha == *commit) {
        None => true,
        Some(v) => v.state == VerificationState::Verifying && v.next_check_at.is_none_or(|t| now >= t),
    }
}
