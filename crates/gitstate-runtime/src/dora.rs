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
/// convergence restored it. `before` is what ran before the first event, when known (the
/// reflog's last commit): a first convergence on it is not a new deployment, and one on
/// another commit brought what lies between. `brought(previous, commit)` gives the
/// committer times of the commits a deployment brought (none for the first one gitstate
/// knows when `before` is `None`: what ran before is not known).
pub async fn deployments<F, Fut>(
    events: &[gitstate_core::Event],
    before: Option<gitstate_core::CommitId>,
    mut brought: F,
) -> Vec<Deployment>
where
    F: FnMut(gitstate_core::CommitId, gitstate_core::CommitId) -> Fut,
    Fut: std::future::Future<Output = Vec<Timestamp>>,
{
    use gitstate_core::{AlarmKind, EventKind, Status};
    let mut out: Vec<Deployment> = Vec::new();
    let mut last: Option<gitstate_core::CommitId> = before;
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

/// The deployments a ref's reflog records before `first` (the environment's first event;
/// the whole reflog when it has none), oldest first: each move to a commit other than the
/// previous one counts, with what it brought (SPEC §16, method `reflog`). A reflog shows
/// neither failures nor restores: those come from events only.
pub async fn reflog_deployments<F, Fut>(
    moves: &[(gitstate_core::CommitId, Timestamp)],
    first: Option<Timestamp>,
    mut brought: F,
) -> (Vec<Deployment>, Option<gitstate_core::CommitId>)
where
    F: FnMut(gitstate_core::CommitId, gitstate_core::CommitId) -> Fut,
    Fut: std::future::Future<Output = Vec<Timestamp>>,
{
    let mut out = Vec::new();
    let mut last = None;
    for (commit, at) in moves {
        if first.is_some_and(|f| *at >= f) {
            break;
        }
        if last == Some(*commit) {
            continue;
        }
        let commit_times = match last {
            Some(prev) => brought(prev, *commit).await,
            None => Vec::new(),
        };
        out.push(Deployment { at: *at, commit_times, failed_at: None, restored_at: None });
        last = Some(*commit);
    }
    (out, last)
}

/// Where an environment's deployments were read from (SPEC §16: the JSON names it).
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Method {
    /// gitstate's event log only.
    Events,
    /// The ref's reflog only (gitstate has recorded nothing for it).
    Reflog,
    /// The reflog up to the first event, the events from then on.
    ReflogAndEvents,
    /// Neither holds anything.
    None,
}

/// An environment asked about: its name and its ref, whose reflog is read when known.
#[derive(Debug, Clone)]
pub struct Subject {
    /// The environment.
    pub name: gitstate_core::EnvName,
    /// Its ref (`refs/heads/…`), when known.
    pub reference: Option<String>,
}

/// One environment's keys.
#[derive(Debug, Clone, Serialize)]
pub struct EnvironmentKeys {
    /// The environment.
    pub name: gitstate_core::EnvName,
    /// Its four keys.
    #[serde(flatten)]
    pub keys: Keys,
    /// Where its deployments were read from.
    pub method: Method,
}

/// `dora -o json`, schema 1 (SPEC §16).
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Report {
    /// Format version: 1.
    pub schema: u32,
    /// The window's start.
    pub since: Timestamp,
    /// The window's end.
    pub until: Timestamp,
    /// Per environment, in name order.
    pub environments: Vec<EnvironmentKeys>,
    /// The same over every deployment of the selection.
    pub all: Keys,
    /// The selection's keys week by week, oldest first: seven-day periods ending at
    /// `until` (the first may be shorter), for a chart of each key.
    pub weeks: Vec<Period>,
}

/// DORA's four keys over one period of a [`Report`].
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Period {
    /// The period's start.
    pub since: Timestamp,
    /// The period's end (excluded).
    pub until: Timestamp,
    /// The keys of the deployments in it.
    pub keys: Keys,
}

/// The keys of `deployments` per seven days, the last period ending at `until`, oldest
/// first; the first period starts at `since` and may be shorter. At most 60 periods.
pub fn weekly(deployments: &[Deployment], since: Timestamp, until: Timestamp) -> Vec<Period> {
    const WEEK: i64 = 7 * 86_400;
    let mut periods = Vec::new();
    let mut end = until;
    while end > since && periods.len() < 60 {
        let start =
            Timestamp::from_second(end.as_second().saturating_sub(WEEK)).unwrap_or(Timestamp::MIN).max(since);
        periods.push(Period { since: start, until: end, keys: keys(deployments, start, end) });
        end = start;
    }
    periods.reverse();
    periods
}

/// The environments `dora` covers: every one in the store (`states`, with its ref) and
/// every one the event log names, in name order — or only those in `only`, each of
/// which must be one of them (the error names the first that is not).
pub fn subjects(
    states: &std::collections::BTreeMap<gitstate_core::EnvName, gitstate_core::EnvState>,
    events: &[gitstate_core::Event],
    only: &[String],
) -> Result<Vec<Subject>, String> {
    let mut all: std::collections::BTreeMap<gitstate_core::EnvName, Option<String>> =
        states.iter().map(|(n, s)| (n.clone(), s.reference.clone())).collect();
    for e in events {
        all.entry(e.environment.clone()).or_default();
    }
    if let Some(unknown) = only.iter().find(|o| !all.keys().any(|n| n.as_str() == o.as_str())) {
        return Err(unknown.clone());
    }
    Ok(all
        .into_iter()
        .filter(|(n, _)| only.is_empty() || only.iter().any(|o| o == n.as_str()))
        .map(|(name, reference)| Subject { name, reference })
        .collect())
}

/// DORA's four keys for `subjects` over `[since, until)`, from `events` (the whole log,
/// oldest first: a deployment's predecessor may lie before the window) and each
/// subject's reflog in `source`, with the commits each deployment brought read from
/// the repository.
pub async fn report<S: gitstate_core::ExpectedState + ?Sized>(
    source: &S,
    events: &[gitstate_core::Event],
    subjects: &[Subject],
    since: Timestamp,
    until: Timestamp,
) -> Report {
    let brought = |prev, new| brought_times(source, prev, new);
    let mut by_env: std::collections::HashMap<&gitstate_core::EnvName, Vec<gitstate_core::Event>> =
        std::collections::HashMap::new();
    for e in events {
        by_env.entry(&e.environment).or_default().push(e.clone());
    }
    let mut all = Vec::new();
    let mut environments = Vec::new();
    for subject in subjects {
        let mine = by_env.remove(&subject.name).unwrap_or_default();
        let moves = match &subject.reference {
            Some(r) => source.ref_history(r).await,
            None => Vec::new(),
        };
        let (mut history, before) = reflog_deployments(&moves, mine.first().map(|e| e.at), brought).await;
        let from_reflog = !history.is_empty();
        let from_events = deployments(&mine, before, brought).await;
        let method = match (from_reflog, !mine.is_empty()) {
            (true, true) => Method::ReflogAndEvents,
            (true, false) => Method::Reflog,
            (false, true) => Method::Events,
            (false, false) => Method::None,
        };
        history.extend(from_events);
        let keys = keys(&history, since, until);
        all.extend(history);
        environments.push(EnvironmentKeys { name: subject.name.clone(), keys, method });
    }
    let weeks = weekly(&all, since, until);
    Report { schema: 1, since, until, all: keys(&all, since, until), environments, weeks }
}

/// Why [`from_store`] could not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DoraError {
    /// The event log could not be read.
    #[error(transparent)]
    Store(#[from] crate::StoreError),
    /// An environment asked for is neither in the store nor in the event log.
    #[error("unknown environment {0:?}")]
    UnknownEnvironment(String),
}

/// [`report`] over everything `store` holds — its environments and its whole event log —
/// for `only` (every environment when empty): what `gitstate dora` prints.
pub async fn from_store<S: gitstate_core::ExpectedState + ?Sized>(
    source: &S,
    store: &dyn crate::Store,
    only: &[String],
    since: Timestamp,
    until: Timestamp,
) -> Result<Report, DoraError> {
    let events = store.events_since(Timestamp::MIN).await?;
    let subjects = subjects(&store.environments(), &events, only).map_err(DoraError::UnknownEnvironment)?;
    Ok(report(source, &events, &subjects, since, until).await)
}

/// What the loop's events mean for DORA's metrics (SPEC §16), as they happen.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Observed {
    /// `environment` converged on a new expected commit; `lead_times_s` holds, per commit
    /// it brought, committer time → now (empty when what ran before is not known).
    Deployed {
        /// The environment.
        environment: gitstate_core::EnvName,
        /// Seconds from each brought commit's committer time to the convergence.
        lead_times_s: Vec<f64>,
    },
    /// The latest deployment of `environment` failed (degraded, rolled back, a hotfix
    /// adopted or detected, a drift alarm); said once per deployment, and only for a
    /// deployment known (seen here, or in the state's `converged_on`).
    Failed {
        /// The environment.
        environment: gitstate_core::EnvName,
    },
    /// Service was restored after a failure, `seconds` after it began.
    Restored {
        /// The environment.
        environment: gitstate_core::EnvName,
        /// Failure → the next in-sync or verified convergence.
        seconds: f64,
    },
}

/// Turns the loop's events into [`Observed`] DORA facts as passes end — the same rules
/// as [`deployments`], kept per environment in memory (a restart forgets a failure still
/// open: counters start again with the process, as Prometheus expects of them).
#[derive(Debug, Default)]
pub struct Live {
    open: std::sync::Mutex<std::collections::HashMap<gitstate_core::EnvName, LiveEnv>>,
}

#[derive(Debug, Default, Clone, Copy)]
struct LiveEnv {
    /// The last deployment's failure, once seen: when it began, and whether it was
    /// restored.
    failed_at: Option<Timestamp>,
    restored: bool,
}

impl Live {
    /// A tracker that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// What `events` (one pass's, oldest first) mean, given each environment's state
    /// before the pass (`prior`: its `converged_on` names the commit deployed before).
    /// Reads the commits a deployment brought from `source`.
    pub async fn observe<S: gitstate_core::ExpectedState + ?Sized>(
        &self,
        source: &S,
        prior: &std::collections::BTreeMap<gitstate_core::EnvName, gitstate_core::EnvState>,
        events: &[gitstate_core::Event],
    ) -> Vec<Observed> {
        use gitstate_core::{AlarmKind, EventKind, Status};
        let mut out = Vec::new();
        let mut last: std::collections::HashMap<&gitstate_core::EnvName, gitstate_core::CommitId> =
            prior.iter().filter_map(|(n, s)| Some((n, *s.converged_on.last()?))).collect();
        for e in events {
            let env = &e.environment;
            match &e.kind {
                EventKind::Converged { expected, .. } | EventKind::Verified { expected } => {
                    let restored = {
                        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
                        let state = open.entry(env.clone()).or_default();
                        let restored = match state.failed_at {
                            Some(f) if !state.restored => {
                                state.restored = true;
                                Some((e.at.as_millisecond() - f.as_millisecond()).max(0) as f64 / 1000.0)
                            }
                            _ => None,
                        };
                        if matches!(e.kind, EventKind::Converged { .. }) && last.get(env) != Some(expected) {
                            *state = LiveEnv::default();
                        }
                        restored
                    };
                    if let Some(seconds) = restored {
                        out.push(Observed::Restored { environment: env.clone(), seconds });
                    }
                    if matches!(e.kind, EventKind::Converged { .. }) && last.get(env) != Some(expected) {
                        let lead_times_s = match last.get(env) {
                            Some(prev) => brought_times(source, *prev, *expected)
                                .await
                                .into_iter()
                                .map(|t| (e.at.as_millisecond() - t.as_millisecond()).max(0) as f64 / 1000.0)
                                .collect(),
                            None => Vec::new(),
                        };
                        out.push(Observed::Deployed { environment: env.clone(), lead_times_s });
                        last.insert(env, *expected);
                    }
                }
                kind => {
                    let failure = match kind {
                        EventKind::Degraded { .. }
                        | EventKind::RolledBack { .. }
                        | EventKind::Adopted { .. } => true,
                        EventKind::DriftDetected { status, .. } => {
                            matches!(status, Status::Diverged | Status::UnknownCommit | Status::Drifted)
                        }
                        EventKind::AlarmRaised { alarm, .. } => *alarm == AlarmKind::Drift,
                        _ => false,
                    };
                    let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
                    let state = open.entry(env.clone()).or_default();
                    // A failure counts against a deployment: none known, nothing failed.
                    if failure && state.failed_at.is_none() && last.contains_key(env) {
                        state.failed_at = Some(e.at);
                        out.push(Observed::Failed { environment: env.clone() });
                    }
                }
            }
        }
        out
    }

    /// Forgets `env` (it is gone from the environments).
    pub fn forget(&self, env: &gitstate_core::EnvName) {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).remove(env);
    }
}

/// The committer times of the commits in `new` and not in `prev` (at most 10,000).
async fn brought_times<S: gitstate_core::ExpectedState + ?Sized>(
    source: &S,
    prev: gitstate_core::CommitId,
    new: gitstate_core::CommitId,
) -> Vec<Timestamp> {
    let Ok(reported) = gitstate_core::ReportedCommit::parse(prev.as_str()) else { return Vec::new() };
    let Ok(mut related) = source.relate_commits(&new, &[reported], 10_000).await else {
        return Vec::new();
    };
    let ids = related.pop().and_then(|r| r.pending).unwrap_or_default();
    source.describe(&ids).await.unwrap_or_default().into_iter().map(|c| c.at).collect()
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

    /// The weeks tile the window without gap or overlap, the last ending at `until`, and
    /// every deployment in the window is in exactly one of them.
    #[test]
    fn weeks_tile_the_window() {
        let d = |t: i64| Deployment { at: at(t), commit_times: vec![], failed_at: None, restored_at: None };
        let history: Vec<Deployment> =
            [0, 10, 7 * 86_400 - 1, 7 * 86_400, 20 * 86_400, 29 * 86_400].map(d).into();
        let weeks = weekly(&history, at(0), at(30 * 86_400));
        assert_eq!(weeks.len(), 5, "2 days, then four weeks");
        assert_eq!(weeks[0].since, at(0));
        assert_eq!(weeks[0].until, at(2 * 86_400));
        assert_eq!(weeks.last().unwrap().until, at(30 * 86_400));
        assert!(weeks.windows(2).all(|w| w[0].until == w[1].since));
        let counts: Vec<usize> = weeks.iter().map(|w| w.keys.deployments).collect();
        assert_eq!(counts, [2, 2, 0, 1, 1]);
        assert!(weekly(&history, at(5), at(5)).is_empty());
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

    /// A source that knows no history: deployments bring no commits.
    struct NoHistory;

    #[async_trait::async_trait]
    impl gitstate_core::ExpectedState for NoHistory {
        fn name(&self) -> &str {
            "none"
        }
        async fn resolve(
            &self,
            _: &[String],
        ) -> Result<
            Vec<Result<gitstate_core::Expected, gitstate_core::ExpectedError>>,
            gitstate_core::ExpectedError,
        > {
            Ok(Vec::new())
        }
        async fn relate(
            &self,
            _: &gitstate_core::CommitId,
            _: &[gitstate_core::ReportedCommit],
        ) -> Result<Vec<gitstate_core::Relation>, gitstate_core::ExpectedError> {
            Ok(Vec::new())
        }
        async fn list(&self, _: &str) -> Result<Vec<gitstate_core::Expected>, gitstate_core::ExpectedError> {
            Ok(Vec::new())
        }
    }

    fn event(kind: u8, commit: u8, t: i64) -> gitstate_core::Event {
        use gitstate_core::{AlarmKind, CommitId, EventKind, LagFrom, Status};
        let c = CommitId::parse(&format!("{commit}").repeat(40)).unwrap();
        let kind = match kind {
            0 | 1 => EventKind::Converged { expected: c, lag_s: None, lag_from: LagFrom::FirstSeen },
            2 => EventKind::Verified { expected: c },
            3 => EventKind::Degraded { expected: c, failures: 1 },
            4 => EventKind::DriftDetected { status: Status::Drifted, expected: c },
            5 => EventKind::AlarmRaised { alarm: AlarmKind::Drift, expected: c },
            _ => EventKind::AlarmRaised { alarm: AlarmKind::Unreachable, expected: c },
        };
        gitstate_core::Event { at: at(t), environment: "production".parse().unwrap(), kind }
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

        /// The live metrics' facts, however the events fall into passes, say what the
        /// batch reading of the same log says: as many deployments, as many failed, the
        /// same restore times.
        #[test]
        fn live_facts_agree_with_the_event_log(
            raw in prop::collection::vec((0u8..7, 1u8..4, 1i64..1000), 0..40),
            cuts in prop::collection::vec(any::<bool>(), 40),
        ) {
            let mut t = 0;
            let events: Vec<gitstate_core::Event> = raw.iter().map(|(k, c, dt)| { t += dt; event(*k, *c, t) }).collect();
            let batch = futures::executor::block_on(deployments(&events, None, |_, _| async { Vec::new() }));
            let live = Live::new();
            let mut observed = Vec::new();
            let mut prior = std::collections::BTreeMap::new();
            let mut pass = Vec::new();
            for (i, e) in events.iter().enumerate() {
                pass.push(e.clone());
                if cuts[i] || i + 1 == events.len() {
                    observed.extend(futures::executor::block_on(live.observe(&NoHistory, &prior, &pass)));
                    // What the store would hold after the pass: the last commit converged on.
                    for e in &pass {
                        if let gitstate_core::EventKind::Converged { expected, .. } = e.kind {
                            let s: &mut gitstate_core::EnvState = prior.entry(e.environment.clone()).or_default();
                            s.converged_on = vec![expected];
                        }
                    }
                    pass.clear();
                }
            }
            let deployed = observed.iter().filter(|o| matches!(o, Observed::Deployed { .. })).count();
            let failed = observed.iter().filter(|o| matches!(o, Observed::Failed { .. })).count();
            let restored: Vec<f64> = observed.iter().filter_map(|o| match o { Observed::Restored { seconds, .. } => Some(*seconds), _ => None }).collect();
            let batch_restored: Vec<f64> = batch.iter().filter_map(|d| Some((d.restored_at?.as_millisecond() - d.failed_at?.as_millisecond()) as f64 / 1000.0)).collect();
            prop_assert_eq!(deployed, batch.len());
            prop_assert_eq!(failed, batch.iter().filter(|d| d.failed_at.is_some()).count());
            prop_assert_eq!(restored, batch_restored);
        }
    }
}
