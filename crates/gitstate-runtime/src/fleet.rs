//! The fleet at a glance (SPEC §16), as queries over the store and the repository that
//! never probe and need no running loop: [`fleet`] (every environment × the commits its
//! instances run) and [`where_is`] (which environments run a commit, or one containing
//! it). The CLI's `gitstate fleet` and `gitstate where` print them; a program linking the
//! runtime calls the same functions.

use std::collections::BTreeMap;

use gitstate_core::{CommitId, EnvName, EnvState, Event, EventKind, ExpectedState, Relation, ReportedCommit};
use jiff::Timestamp;
use serde::Serialize;

/// `fleet -o json`, schema 1.
#[derive(Debug, Serialize)]
pub struct FleetReport {
    /// Format version: 1.
    pub schema: u32,
    /// Per environment, in name order.
    pub environments: Vec<FleetRow>,
}

/// One environment's row.
#[derive(Debug, Serialize)]
pub struct FleetRow {
    /// The environment.
    pub name: EnvName,
    /// The commit it should run.
    pub expected_sha: Option<String>,
    /// Each commit its instances run, the most run first.
    pub running: Vec<Share>,
}

/// How many of an environment's instances run one commit.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Share {
    /// The commit, as reported.
    pub sha: String,
    /// Instances running it.
    pub instances: usize,
    /// Instances in the environment.
    pub of: usize,
}

/// Every environment × the commits its instances were last seen running.
pub fn fleet(states: &BTreeMap<EnvName, EnvState>) -> FleetReport {
    let environments = states
        .iter()
        .map(|(name, s)| {
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for r in &s.running {
                *counts.entry(r.sha.as_str()).or_default() += 1;
            }
            let of = s.running.len();
            let mut running: Vec<Share> = counts
                .into_iter()
                .map(|(sha, instances)| Share { sha: sha.to_owned(), instances, of })
                .collect();
            running.sort_by(|a, b| b.instances.cmp(&a.instances).then_with(|| a.sha.cmp(&b.sha)));
            FleetRow {
                name: name.clone(),
                expected_sha: s.expected.as_ref().map(|e| e.commit.to_string()),
                running,
            }
        })
        .collect();
    FleetReport { schema: 1, environments }
}

/// Where a commit stands in one environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    /// Every instance runs it, or a commit containing it: deployed.
    Running,
    /// Some instances do.
    Partial,
    /// The expected commit contains it; no instance runs it yet.
    Pending,
    /// Neither the expected commit nor any instance contains it.
    NotIncluded,
    /// The history needed to tell could not be read, or nothing is known of the instances.
    Unknown,
}

/// `where REV -o json`, schema 1.
#[derive(Debug, Serialize)]
pub struct WhereReport {
    /// Format version: 1.
    pub schema: u32,
    /// The commit asked about (40 hex).
    pub rev: String,
    /// Per environment.
    pub environments: Vec<WhereRow>,
}

/// One environment's answer.
#[derive(Debug, Serialize)]
pub struct WhereRow {
    /// The environment.
    pub name: EnvName,
    /// Where the commit stands.
    pub state: Presence,
    /// When it first ran there: the first `converged` event on a commit containing it.
    pub since: Option<Timestamp>,
    /// How many instances run it (or a commit containing it), of how many.
    pub instances: Counted,
}

/// `{"running", "of"}`.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Counted {
    /// Instances running the commit or a descendant.
    pub running: usize,
    /// Instances known.
    pub of: usize,
}

impl WhereReport {
    /// Whether the commit runs in every environment of the report (and there is one).
    pub fn everywhere(&self) -> bool {
        !self.environments.is_empty() && self.environments.iter().all(|e| e.state == Presence::Running)
    }
}

/// Whether `commit` contains `rev` (is it, or descends from it), asked of `source`;
/// `None` when the history cannot tell.
async fn contains(source: &dyn ExpectedState, commit: &CommitId, rev: &CommitId) -> Option<bool> {
    if commit == rev {
        return Some(true);
    }
    let reported = ReportedCommit::parse(rev.as_str()).ok()?;
    match source.relate(commit, &[reported]).await.ok()?.first()? {
        Relation::InSync | Relation::Behind(_) => Some(true),
        Relation::Ahead(_) | Relation::Diverged { .. } => Some(false),
        _ => None,
    }
}

/// Which environments of `states` run `rev`, or a commit containing it, since when
/// (`events`: the event log, oldest first). Reads the history through `source`; probes
/// nothing.
pub async fn where_is(
    source: &dyn ExpectedState,
    states: &BTreeMap<EnvName, EnvState>,
    events: &[Event],
    rev: CommitId,
) -> WhereReport {
    // Whether a commit contains `rev` is asked once per distinct commit, however many
    // environments, instances and events name it; the event log is read once.
    let mut memo: std::collections::HashMap<CommitId, Option<bool>> = std::collections::HashMap::new();
    let mut converged: std::collections::HashMap<&EnvName, Vec<(&CommitId, Timestamp)>> =
        std::collections::HashMap::new();
    for e in events {
        if let EventKind::Converged { expected, .. } = &e.kind {
            converged.entry(&e.environment).or_default().push((expected, e.at));
        }
    }
    let mut environments = Vec::new();
    for (name, s) in states {
        let mut running = 0;
        let mut unknown = 0;
        for r in &s.running {
            let answer = match CommitId::parse(&r.sha) {
                Ok(c) => contains_memo(source, &mut memo, c, &rev).await,
                Err(_) => None,
            };
            match answer {
                Some(true) => running += 1,
                Some(false) => {}
                None => unknown += 1,
            }
        }
        let of = s.running.len();
        let expected = match s.expected.as_ref() {
            Some(e) => contains_memo(source, &mut memo, e.commit, &rev).await,
            None => None,
        };
        let state = match (running, of, expected) {
            (r, n, _) if n > 0 && r == n => Presence::Running,
            (r, _, _) if r > 0 => Presence::Partial,
            (_, _, Some(true)) => Presence::Pending,
            (_, n, Some(false)) if unknown == 0 && n > 0 => Presence::NotIncluded,
            (_, 0, Some(false)) => Presence::NotIncluded,
            _ => Presence::Unknown,
        };
        let mut since = None;
        if state == Presence::Running || state == Presence::Partial {
            for (expected, at) in converged.get(name).map_or(&[][..], Vec::as_slice) {
                if contains_memo(source, &mut memo, **expected, &rev).await == Some(true) {
                    since = Some(*at);
                    break;
                }
            }
        }
        environments.push(WhereRow { name: name.clone(), state, since, instances: Counted { running, of } });
    }
    WhereReport { schema: 1, rev: rev.to_string(), environments }
}

async fn contains_memo(
    source: &dyn ExpectedState,
    memo: &mut std::collections::HashMap<CommitId, Option<bool>>,
    commit: CommitId,
    rev: &CommitId,
) -> Option<bool> {
    if let Some(a) = memo.get(&commit) {
        return *a;
    }
    let a = contains(source, &commit, rev).await;
    memo.insert(commit, a);
    a
}

/// One side of a [`diff`].
#[derive(Debug, Serialize)]
pub struct Side {
    /// The environment.
    pub name: EnvName,
    /// The commit compared: expected, or the one most of its instances run.
    pub sha: String,
}

/// `diff A B -o json`, schema 1.
#[derive(Debug, Serialize)]
pub struct DiffReport {
    /// Format version: 1.
    pub schema: u32,
    /// A.
    pub a: Side,
    /// B.
    pub b: Side,
    /// Commits in A's commit and not in B's, newest first.
    pub only_in_a: Vec<gitstate_core::CommitInfo>,
    /// Commits in B's and not in A's.
    pub only_in_b: Vec<gitstate_core::CommitInfo>,
    /// How many commits each side has that the other lacks (the lists stop at `max`).
    pub counts: Counts,
    /// Where the comparison can be read, when the repository is on a known host.
    pub compare_url: Option<String>,
}

/// `{"only_in_a", "only_in_b"}`: `null` when the history could not tell.
#[derive(Debug, Serialize)]
pub struct Counts {
    /// Commits in A and not in B.
    pub only_in_a: Option<u64>,
    /// Commits in B and not in A.
    pub only_in_b: Option<u64>,
}

/// Why a [`diff`] could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiffError {
    /// An environment with nothing to compare, or running commits tied.
    #[error("{0}")]
    Refused(String),
    /// The history could not be read.
    #[error(transparent)]
    Source(#[from] gitstate_core::ExpectedError),
}

/// The commit `state` is compared on: its expected one, or (`running`) the one most of
/// its instances run — a tie is refused, naming the commits.
fn side(name: &EnvName, state: &EnvState, running: bool) -> Result<CommitId, DiffError> {
    if !running {
        return state
            .expected
            .as_ref()
            .map(|e| e.commit)
            .ok_or_else(|| DiffError::Refused(format!("{name} has no expected commit yet")));
    }
    let report = fleet(&BTreeMap::from([(name.clone(), state.clone())]));
    let shares = &report.environments[0].running;
    let Some(top) = shares.first() else {
        return Err(DiffError::Refused(format!("{name}: no instance has reported a commit yet")));
    };
    let tied: Vec<&str> =
        shares.iter().filter(|s| s.instances == top.instances).map(|s| s.sha.as_str()).collect();
    if tied.len() > 1 {
        return Err(DiffError::Refused(format!(
            "{name}: as many instances run each of {}; no commit runs there",
            tied.join(", ")
        )));
    }
    CommitId::parse(&top.sha)
        .map_err(|_| DiffError::Refused(format!("{name} runs {:?}, not a full commit id", top.sha)))
}

/// The commits in A's commit and not in B's, and the other way (`max` of each side),
/// described; `running` compares what runs instead of what is expected.
pub async fn diff(
    source: &dyn ExpectedState,
    a: (&EnvName, &EnvState),
    b: (&EnvName, &EnvState),
    running: bool,
    max: usize,
    links: &gitstate_core::Links,
) -> Result<DiffReport, DiffError> {
    let (ca, cb) = (side(a.0, a.1, running)?, side(b.0, b.1, running)?);
    let reported = ReportedCommit::parse(cb.as_str()).map_err(|e| DiffError::Refused(e.to_string()))?;
    let related = source.relate_commits(&ca, &[reported], max).await?.pop();
    let counts = match related.as_ref().map(|r| r.relation) {
        Some(Relation::InSync) => Counts { only_in_a: Some(0), only_in_b: Some(0) },
        Some(Relation::Behind(n)) => Counts { only_in_a: Some(n), only_in_b: Some(0) },
        Some(Relation::Ahead(n)) => Counts { only_in_a: Some(0), only_in_b: Some(n) },
        Some(Relation::Diverged { behind, ahead }) => {
            Counts { only_in_a: Some(behind), only_in_b: Some(ahead) }
        }
        _ => Counts { only_in_a: None, only_in_b: None },
    };
    let (only_a, only_b) = match related {
        Some(r) => (r.pending.unwrap_or_default(), r.unexpected.unwrap_or_default()),
        None => (Vec::new(), Vec::new()),
    };
    let mut wanted: Vec<CommitId> = only_a.iter().chain(&only_b).copied().collect();
    wanted.dedup();
    let described = source.describe(&wanted).await.unwrap_or_default();
    let info = |ids: &[CommitId]| -> Vec<gitstate_core::CommitInfo> {
        ids.iter().filter_map(|id| described.iter().find(|d| d.sha == *id).cloned()).collect()
    };
    Ok(DiffReport {
        schema: 1,
        a: Side { name: a.0.clone(), sha: ca.to_string() },
        b: Side { name: b.0.clone(), sha: cb.to_string() },
        only_in_a: info(&only_a),
        only_in_b: info(&only_b),
        counts,
        compare_url: links.compare(cb.as_str(), ca.as_str()),
    })
}

/// What promoting each environment to the next in `order` would bring (the dashboard's
/// compare, SPEC §16): [`diff`] of every adjacent pair whose both sides are in `states`,
/// earlier first — `only_in_a` is what the promotion brings, `only_in_b` what it would
/// drop. At most `pairs` pairs, `max` commits each side.
pub async fn compare_adjacent(
    source: &dyn ExpectedState,
    states: &BTreeMap<EnvName, EnvState>,
    order: &[EnvName],
    pairs: usize,
    max: usize,
    links: &gitstate_core::Links,
) -> Vec<(EnvName, EnvName, Result<DiffReport, DiffError>)> {
    let present: Vec<(&EnvName, &EnvState)> = order.iter().filter_map(|n| states.get_key_value(n)).collect();
    let mut out = Vec::new();
    for w in present.windows(2).take(pairs) {
        let (a, b) = (w[0], w[1]);
        out.push((a.0.clone(), b.0.clone(), diff(source, a, b, false, max, links).await));
    }
    out
}
