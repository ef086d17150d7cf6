//! [`Policy`]: how the closed loop acts on drift (SPEC §5 `[policy]`), and the backoff rule.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Whether gitstate may act.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Re-trigger deployments, alarm when that does not help.
    #[default]
    Remediate,
    /// Never remediate; alarm when drift outlasts `grace`.
    Observe,
}

/// What to do when a target runs a commit Git never led to (`diverged`, `unknown_commit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnDiverged {
    /// Raise a `diverged` alarm, never overwrite (it may be a hotfix).
    #[default]
    Alarm,
    /// Treat it as drift and redeploy the expected commit.
    Remediate,
}

/// The longest duration a configuration may give (10 years): anything longer is a typo,
/// and would overflow the clock arithmetic it feeds (`Instant + timeout`).
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 86_400 + 2 * 86_400);

/// Parses a configured duration such as `"30s"`, `"5m"` or `"1h30m"` (humantime), at most
/// [`MAX_DURATION`]; the error says what was wrong and how to write one.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d <= MAX_DURATION => Ok(d),
        Ok(_) => Err(format!("duration {s:?} is longer than 10 years")),
        Err(e) => Err(format!("invalid duration {s:?} ({e}); use e.g. \"30s\", \"5m\", \"1h\"")),
    }
}

/// Policy durations in TOML and JSON: humantime text, checked by [`parse_duration`].
pub(crate) mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

/// How loudly an alarm pages (SPEC §17), set per policy tier: `info` alarms are recorded
/// and shown, never sent to a sink.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Severity {
    /// Pages someone now (the default).
    #[default]
    Critical,
    /// Wants attention in working hours.
    Warning,
    /// Recorded and shown; never sent.
    Info,
}

impl Severity {
    /// `critical`, `warning` or `info`: the label and field value sinks carry.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }

    fn is_critical(&self) -> bool {
        *self == Severity::Critical
    }
}

/// The `[policy]` table: every key with its SPEC default.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// `remediate` or `observe`.
    pub mode: Mode,
    /// After the expected commit changes, drift is `converging`, not acted on.
    #[serde(with = "duration")]
    pub grace: Duration,
    /// After a remediation was triggered, wait this long before judging it.
    #[serde(with = "duration")]
    pub settle: Duration,
    /// Remediations per incident.
    pub max_attempts: u32,
    /// Base of the exponential gap between attempts.
    #[serde(with = "duration")]
    pub backoff: Duration,
    /// Cap of the exponential gap.
    #[serde(with = "duration")]
    pub backoff_max: Duration,
    /// Consecutive passes with a failed probe before an `unreachable` alarm (at least 1).
    pub unreachable_after: u32,
    /// `alarm` or `remediate`.
    pub on_diverged: OnDiverged,
    /// Repeat an open alarm's notification at most this often; zero = never.
    #[serde(with = "duration")]
    pub renotify: Duration,
    /// A flapping environment's drift alarm resolves only after it has been in sync on every
    /// pass for this long (as Prometheus's `keep_firing_for`): one alarm, not one per flap.
    #[serde(with = "duration")]
    pub keep_firing_for: Duration,
    /// `[policy.verify]`: the soak after a deploy (SPEC §15); none, no soak.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify: Option<crate::verify::Verify>,
    /// SPEC §17: how loudly this tier's alarms page.
    #[serde(skip_serializing_if = "Severity::is_critical")]
    pub severity: Severity,
    /// SPEC §17: labels carried to every sink (Alertmanager labels, webhook `labels`),
    /// e.g. `{ team = "shop", tier = "prod" }`; merged key by key across the tiers.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
    /// SPEC §17: where to read what to do, `{alarm}` replaced by the alarm's kind
    /// (`drift`, `unreachable`…); carried to every sink.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runbook_url: Option<String>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            mode: Mode::Remediate,
            grace: Duration::from_secs(300),
            settle: Duration::from_secs(300),
            max_attempts: 3,
            backoff: Duration::from_secs(60),
            backoff_max: Duration::from_secs(1800),
            unreachable_after: 3,
            on_diverged: OnDiverged::Alarm,
            renotify: Duration::from_secs(4 * 3600),
            keep_firing_for: Duration::from_secs(600),
            verify: None,
            severity: Severity::Critical,
            labels: std::collections::BTreeMap::new(),
            runbook_url: None,
        }
    }
}

impl Policy {
    /// The least time between attempt `n` (1-based) and attempt `n + 1`:
    /// `max(settle, min(backoff * 2^(n-1), backoff_max))`. Saturates instead of overflowing.
    pub fn gap_after_attempt(&self, n: u32) -> Duration {
        let exp = n.saturating_sub(1).min(63);
        let factor = 1u64 << exp;
        let grown =
            u32::try_from(factor).ok().and_then(|f| self.backoff.checked_mul(f)).unwrap_or(Duration::MAX);
        self.settle.max(grown.min(self.backoff_max))
    }

    /// Checks the relations between keys; a message for the config error otherwise.
    pub fn validate(&self) -> Result<(), String> {
        if self.unreachable_after == 0 {
            return Err("unreachable_after must be at least 1".into());
        }
        if self.backoff_max < self.backoff {
            return Err(format!(
                "backoff_max ({}) is shorter than backoff ({})",
                humantime::format_duration(self.backoff_max),
                humantime::format_duration(self.backoff)
            ));
        }
        if let Some(v) = &self.verify {
            v.validate()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(settle: u64, backoff: u64, max: u64) -> Policy {
        Policy {
            settle: Duration::from_secs(settle),
            backoff: Duration::from_secs(backoff),
            backoff_max: Duration::from_secs(max),
            ..Policy::default()
        }
    }

    /// The relations between keys: each broken one refused with its own message, the
    /// defaults and equal backoffs accepted.
    #[test]
    fn validate_refuses_what_cannot_work() {
        assert_eq!(Policy::default().validate(), Ok(()));
        assert_eq!(p(0, 30, 30).validate(), Ok(()), "backoff_max may equal backoff");
        let e = p(0, 60, 30).validate().unwrap_err();
        assert_eq!(e, "backoff_max (30s) is shorter than backoff (1m)");
        let none = Policy { unreachable_after: 0, ..Policy::default() };
        assert_eq!(none.validate().unwrap_err(), "unreachable_after must be at least 1");
    }

    /// Ten years and the two leap days they hold, to the second: longer is refused.
    #[test]
    fn durations_are_accepted_up_to_ten_years_exactly() {
        assert_eq!(parse_duration("3652d"), Ok(Duration::from_secs(3652 * 86_400)));
        assert_eq!(MAX_DURATION, Duration::from_secs(3652 * 86_400));
        assert!(parse_duration("3652d 1s").unwrap_err().contains("longer than 10 years"));
    }

    #[test]
    fn gap_is_max_of_settle_and_capped_exponential() {
        let pol = p(10, 60, 1800);
        let gaps: Vec<u64> = (1..=7).map(|n| pol.gap_after_attempt(n).as_secs()).collect();
        assert_eq!(gaps, [60, 120, 240, 480, 960, 1800, 1800]);
        // settle dominates small backoffs
        let pol = p(300, 60, 1800);
        assert_eq!(pol.gap_after_attempt(1).as_secs(), 300);
        assert_eq!(pol.gap_after_attempt(3).as_secs(), 300);
        assert_eq!(pol.gap_after_attempt(4).as_secs(), 480);
    }

    #[test]
    fn gap_saturates() {
        let pol = p(0, 3600, u64::MAX / 4);
        assert_eq!(pol.gap_after_attempt(u32::MAX), Duration::from_secs(u64::MAX / 4));
        assert_eq!(pol.gap_after_attempt(0), Duration::from_secs(3600));
    }

    #[test]
    fn defaults_are_the_spec_defaults() {
        let d = Policy::default();
        assert_eq!(d.mode, Mode::Remediate);
        assert_eq!(d.grace, Duration::from_secs(300));
        assert_eq!(d.settle, Duration::from_secs(300));
        assert_eq!(d.max_attempts, 3);
        assert_eq!(d.backoff, Duration::from_secs(60));
        assert_eq!(d.backoff_max, Duration::from_secs(1800));
        assert_eq!(d.unreachable_after, 3);
        assert_eq!(d.on_diverged, OnDiverged::Alarm);
        assert_eq!(d.renotify, Duration::from_secs(14_400));
        assert!(d.validate().is_ok());
    }

    #[test]
    fn deserializes_humantime_and_rejects_unknown_keys() {
        let p: Policy = serde_json::from_str(r#"{"grace":"0s","mode":"observe","renotify":"0s"}"#).unwrap();
        assert_eq!(p.grace, Duration::ZERO);
        assert_eq!(p.mode, Mode::Observe);
        assert_eq!(p.settle, Duration::from_secs(300));
        assert!(serde_json::from_str::<Policy>(r#"{"gracee":"1s"}"#).is_err());
        assert!(serde_json::from_str::<Policy>(r#"{"grace":"soon"}"#).is_err());
    }
}
