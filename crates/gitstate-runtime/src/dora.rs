//! DORA's four keys (SPEC §16), computed from what gitstate recorded: each environment's
//! deployments (convergences on a new expected commit), the commits each brought with
//! their committer times, and what followed each deployment (degraded, rolled back,
//! a hotfix adopted or detected, a drift alarm). Pure: [`keys`] takes the history already
//! read, so the figures are a function of it; every figure carries its count.

use jiff::Timestamp;
use serde::Serialize;

/// One deployment: the environment converged on a new expected commit.
#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    /// When every instance ran it.
    pub at: Timestamp,
    /// The committer times of the commits it brought (those in its commit and not in the
    /// previous deployment's).
    pub commit_times: Vec<Timestamp>,
    /// When something showed it failed (degraded, rolled back, a hotfix adopted or
    /// detected, a drift alarm) before the next deployment, if anything did.
    pub failed_at: Option<Timestamp>,
    /// When service was restored after that failure: the next in-sync convergence (or
    /// verification), if it came.
    pub restored_at: Option<Timestamp>,
}

/// A distribution's summary: how many, the median and the 90th percentile (seconds).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    /// How many values.
    pub count: usize,
    /// The median (nearest rank), `null` without values.
    pub median: Option<f64>,
    /// The 90th percentile (nearest rank), `null` without values.
    pub p90: Option<f64>,
}

impl Summary {
    /// The summary of `values`.
    pub fn of(mut values: Vec<f64>) -> Self {
        values.sort_by(f64::total_cmp);
        let rank = |q: f64| -> Option<f64> {
            if values.is_empty() {
                return None;
            }
            // Nearest rank: the smallest value with at least q of the values at or below it.
            let k = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
            Some(values[k - 1])
        };
        Self { count: values.len(), median: rank(0.5), p90: rank(0.9) }
    }
}

/// `{"failed", "deployments", "rate"}`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FailureRate {
    /// Deployments that failed.
    pub failed: usize,
    /// Deployments.
    pub deployments: usize,
    /// `failed / deployments`, `null` without deployments.
    pub rate: Option<f64>,
}

/// A band of the 2021 State of DevOps report's table, made contiguous.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Band {
    /// The best.
    Elite,
    /// Good.
    High,
    /// Middling.
    Medium,
    /// The rest.
    Low,
}

const HOUR: f64 = 3600.0;
const DAY: f64 = 86_400.0;

/// The bands, one table: per key, the bound each band must beat.
pub mod bands {
    use super::{Band, DAY, HOUR};

    /// Deployments a day: elite ≥ 1 a day, high ≥ 1 a week, medium ≥ 1 a month.
    pub fn deployment_frequency(per_day: f64) -> Band {
        match per_day {
            d if d >= 1.0 => Band::Elite,
            d if d >= 1.0 / 7.0 => Band::High,
            d if d >= 1.0 / 30.0 => Band::Medium,
            _ => Band::Low,
        }
    }

    /// Lead time (seconds, the median): elite < 1 hour, high < 1 week, medium < 6 months.
    pub fn lead_time(median_s: f64) -> Band {
        match median_s {
            s if s < HOUR => Band::Elite,
            s if s < 7.0 * DAY => Band::High,
            s if s < 182.0 * DAY => Band::Medium,
            _ => Band::Low,
        }
    }

    /// Change failure rate: elite ≤ 15 %, high and medium ≤ 30 %.
    pub fn change_failure_rate(rate: f64) -> Band {
        match rate {
            r if r <= 0.15 => Band::Elite,
            r if r <= 0.30 => Band::High,
            _ => Band::Low,
        }
    }

    /// Time to restore (seconds, the median): elite < 1 hour, high < 1 day, medium < 1 week.
    pub fn time_to_restore(median_s: f64) -> Band {
        match median_s {
            s if s < HOUR => Band::Elite,
            s if s < DAY => Band::High,
            s if s < 7.0 * DAY => Band::Medium,
            _ => Band::Low,
        }
    }
}

/// The four keys' bands (`null` where a key has no data).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Bands {
    /// Deployment frequency.
    pub deployment_frequency: Option<Band>,
    /// Lead time for changes.
    pub lead_time: Option<Band>,
    /// Change failure rate.
    pub change_failure_rate: Option<Band>,
    /// Time to restore.
    pub time_to_restore: Option<Band>,
}

/// The four keys over a window.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Keys {
    /// Deployments in the window.
    pub deployments: usize,
    /// Deployments per day of the window.
    pub deployments_per_day: f64,
    /// Committer time → deployed, per commit brought (seconds).
    pub lead_time_s: Summary,
    /// Deployments followed by a failure before the next one.
    pub change_failure_rate: FailureRate,
    /// Failure → restored (seconds).
    pub time_to_restore_s: Summary,
    /// Each key's band.
    pub bands: Bands,
}

/// The four keys of `deployments` in `[since, until)`.
pub fn keys(deployments: &[Deployment], since: Timestamp, until: Timestamp) -> Keys {
    let inside: Vec<&Deployment> = deployments.iter().filter(|d| d.at >= since && d.at < until).collect();
    let days = (until.as_second() - since.as_second()).max(1) as f64 / DAY;
    let per_day = inside.len() as f64 / days;
    let lead = Summary::of(
        inside
            .iter()
            .flat_map(|d| {
                d.commit_times
                    .iter()
                    .map(move |t| (d.at.as_millisecond() - t.as_millisecond()).max(0) as f64 / 1000.0)
            })
            .collect(),
    );
    let failed = inside.iter().filter(|d| d.failed_at.is_some()).count();
    let rate = (!inside.is_empty()).then(|| failed as f64 / inside.len() as f64);
    let restore = Summary::of(
        inside
            .iter()
            .filter_map(|d| {
                Some((d.restored_at?.as_millisecond() - d.failed_at?.as_millisecond()).max(0) as f64 / 1000.0)
            })
            .collect(),
    );
    let bands = Bands {
        deployment_frequency: Some(bands::deployment_frequency(per_day)),
        lead_time: lead.median.map(bands::lead_time),
        change_failure_rate: rate.map(bands::change_failure_rate),
        time_to_restore: restore.median.map(bands::time_to_restore),
    };
    Keys {
        deployments: inside.len(),
        deployments_per_day: per_day,
        lead_time_s: lead,
        change_failure_rate: FailureRate { failed, deployments: inside.len(), rate },
        time_to_restore_s: restore,
        bands,
    }
}

/// The deployments an environment's events record, oldest first: each convergence on a
/// new expected commit, with what failed after it (before the next: `degraded`, a
/// rollback from it, a hotfix adopted or detected, a drift alarm) and when the next
/// convergence restored it. `brought(previous, commit)` gives the committer times of the
/// commits a deployment brought (none for the first one gitstate saw: what ran before is
/// not known).
pub async fn deployments<F, Fut>(events: &[gitstate_core::Event], mut brought: F) -> Vec<Deployment>
where
    F: FnMut(gitstate_core::CommitId, gitstate_core::CommitId) -> Fut,
    Fut: std::future::Future<Output = Vec<Timestamp>>,
{
    use gitstate_core::{AlarmKind, EventKind, Status};
    let mut out: Vec<Deployment> = Vec::new();
    let mut last: Option<gitstate_core::CommitId> = None;
    for e in events {
        let failure = match &e.kind {
            EventKind::Converged { expected, .. } | EventKind::Verified { expected } => {
                if let Some(d) = out.last_mut()
                    && d.failed_at.is_some()
                    && d.restored_at.is_none()
                {
                    d.restored_at = Some(e.at);
                }
                if matches!(e.kind, EventKind::Converged { .. }) && last != Some(*expected) {
                    let commit_times = match last {
                        Some(prev) => brought(prev, *expected).await,
                        None => Vec::new(),
                    };
                    out.push(Deployment { at: e.at, commit_times, failed_at: None, restored_at: None });
                    last = Some(*expected);
                }
                false
            }
            EventKind::Degraded { .. } | EventKind::RolledBack { .. } | EventKind::Adopted { .. } => true,
            EventKind::DriftDetected { status, .. } => {
                matches!(status, Status::Diverged | Status::UnknownCommit | Status::Drifted)
            }
            EventKind::AlarmRaised { alarm, .. } => *alarm == AlarmKind::Drift,
            _ => false,
        };
        if failure
            && let Some(d) = out.last_mut()
            && d.failed_at.is_none()
        {
            d.failed_at = Some(e.at);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    #[test]
    fn nearest_rank_median_and_p90() {
        let s = Summary::of(vec![5.0, 1.0, 3.0, 2.0, 4.0, 10.0, 9.0, 8.0, 7.0, 6.0]);
        assert_eq!((s.count, s.median, s.p90), (10, Some(5.0), Some(9.0)));
        assert_eq!(Summary::of(vec![]).median, None);
        assert_eq!(Summary::of(vec![7.0]).p90, Some(7.0));
    }

    #[test]
    fn bands_follow_the_table() {
        assert_eq!(bands::deployment_frequency(1.0), Band::Elite);
        assert_eq!(bands::deployment_frequency(0.99), Band::High);
        assert_eq!(bands::deployment_frequency(1.0 / 7.0), Band::High);
        assert_eq!(bands::deployment_frequency(0.1), Band::Medium);
        assert_eq!(bands::deployment_frequency(0.01), Band::Low);
        assert_eq!(bands::lead_time(3599.0), Band::Elite);
        assert_eq!(bands::lead_time(3600.0), Band::High);
        assert_eq!(bands::lead_time(8.0 * DAY), Band::Medium);
        assert_eq!(bands::lead_time(200.0 * DAY), Band::Low);
        assert_eq!(bands::change_failure_rate(0.15), Band::Elite);
        assert_eq!(bands::change_failure_rate(0.3), Band::High);
        assert_eq!(bands::change_failure_rate(0.31), Band::Low);
        assert_eq!(bands::time_to_restore(HOUR - 1.0), Band::Elite);
        assert_eq!(bands::time_to_restore(DAY - 1.0), Band::High);
        assert_eq!(bands::time_to_restore(DAY), Band::Medium);
        assert_eq!(bands::time_to_restore(7.0 * DAY), Band::Low);
    }

    /// A week of four deployments, one failed and restored in 3.2 s: the figures of SPEC
    /// §16's example.
    #[test]
    fn four_deployments_one_failed() {
        let d = |t: i64, lead: &[i64], failed: Option<(i64, i64)>| Deployment {
            at: at(t),
            commit_times: lead.iter().map(|l| at(t - l)).collect(),
            failed_at: failed.map(|(f, _)| at(f)),
            restored_at: failed.map(|(_, r)| at(r)),
        };
        let history = [
            d(0, &[900], None),
            d(86_400, &[600, 900], Some((86_500, 86_503))),
            d(2 * 86_400, &[3600], None),
            d(3 * 86_400, &[300], None),
            d(40 * 86_400, &[1], None), // outside the window
        ];
        let k = keys(&history, at(0), at(30 * 86_400));
        assert_eq!(k.deployments, 4);
        assert!((k.deployments_per_day - 4.0 / 30.0).abs() < 1e-9);
        assert_eq!(k.lead_time_s, Summary { count: 5, median: Some(900.0), p90: Some(3600.0) });
        assert_eq!(k.change_failure_rate, FailureRate { failed: 1, deployments: 4, rate: Some(0.25) });
        assert_eq!(k.time_to_restore_s, Summary { count: 1, median: Some(3.0), p90: Some(3.0) });
        assert_eq!(k.bands.deployment_frequency, Some(Band::Medium));
        assert_eq!(k.bands.lead_time, Some(Band::Elite));
        assert_eq!(k.bands.change_failure_rate, Some(Band::High));
    }

    proptest! {
        /// Over any history: the counts add up, rates lie in [0, 1], medians lie between
        /// the extremes, p90 ≥ median, and a deployment outside the window changes nothing.
        #[test]
        fn figures_are_consistent(
            raw in prop::collection::vec((0i64..60 * 86_400, prop::collection::vec(0i64..100_000, 0..4), prop::option::of((0i64..1000, 0i64..10_000))), 0..30),
        ) {
            let history: Vec<Deployment> = raw.iter().map(|(t, leads, f)| Deployment {
                at: at(*t),
                commit_times: leads.iter().map(|l| at(t - l)).collect(),
                failed_at: f.map(|(a, _)| at(t + a)),
                restored_at: f.map(|(a, r)| at(t + a + r)),
            }).collect();
            let (since, until) = (at(0), at(30 * 86_400));
            let k = keys(&history, since, until);
            let inside: Vec<_> = history.iter().filter(|d| d.at >= since && d.at < until).collect();
            prop_assert_eq!(k.deployments, inside.len());
            prop_assert_eq!(k.lead_time_s.count, inside.iter().map(|d| d.commit_times.len()).sum::<usize>());
            prop_assert_eq!(k.change_failure_rate.failed, inside.iter().filter(|d| d.failed_at.is_some()).count());
            if let Some(r) = k.change_failure_rate.rate { prop_assert!((0.0..=1.0).contains(&r)); }
            if let (Some(m), Some(p)) = (k.lead_time_s.median, k.lead_time_s.p90) { prop_assert!(p >= m && m >= 0.0); }
            let mut more = history.clone();
            more.push(Deployment { at: until, commit_times: vec![at(0)], failed_at: Some(until), restored_at: None });
            prop_assert_eq!(keys(&more, since, until), k);
        }
    }
}
