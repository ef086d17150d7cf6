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
    let mut memo: BTreeMap<String, Option<bool>> = BTreeMap::new();
    let mut environments = Vec::new();
    for (name, s) in states {
        let mut running = 0;
        let mut unknown = 0;
        for r in &s.running {
            let answer = match memo.get(&r.sha) {
                Some(a) => *a,
                None => {
                    let a = match CommitId::parse(&r.sha) {
                        Ok(c) => contains(source, &c, &rev).await,
                        Err(_) => None,
                    };
                    memo.insert(r.sha.clone(), a);
                    a
                }
            };
            match answer {
                Some(true) => running += 1,
                Some(false) => {}
                None => unknown += 1,
            }
        }
        let of = s.running.len();
        let expected = match s.expected.as_ref() {
            Some(e) => contains(source, &e.commit, &rev).await,
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
            for e in events.iter().filter(|e| &e.environment == name) {
                if let EventKind::Converged { expected, .. } = &e.kind
                    && contains(source, expected, &rev).await == Some(true)
                {
                    since = Some(e.at);
                    break;
                }
            }
        }
        environments.push(WhereRow { name: name.clone(), state, since, instances: Counted { running, of } });
    }
    WhereReport { schema: 1, rev: rev.to_string(), environments }
}
