//! Where drift is classified: [`Engine::classify`] relates each commit an environment's
//! instances report to its expected commit, with one call to the source for every distinct
//! commit that differs, and gives each instance its status — in sync, behind, ahead,
//! diverged, unknown, or drifted when the relation cannot be computed. The statuses, their
//! order and what they sum up to are `observation.rs`'s.

use std::collections::HashMap;

use crate::commit::{CommitId, ReportedCommit};
use crate::observation::{
    CommitInfo, InstanceObservation, ProbeFailure, Reading, Related, Relation, Status, TargetObservation,
};

use super::setup::Engine;
use super::spec::EnvironmentSpec;

/// What one target's probe came to, before classification.
pub(super) struct Probed {
    pub(super) env: usize,
    pub(super) target: usize,
    pub(super) result: Result<Vec<Reading>, ProbeFailure>,
}

impl Engine {
    /// Classifies the readings of one environment's targets against its `expected` commit.
    pub(super) async fn classify(
        &self,
        env: &EnvironmentSpec,
        expected: &CommitId,
        probed: Vec<Probed>,
    ) -> Vec<TargetObservation> {
        // Ask the source once per distinct reported commit that is not trivially in sync.
        let mut unknown: Vec<ReportedCommit> = probed
            .iter()
            .filter_map(|p| p.result.as_ref().ok())
            .flatten()
            .filter_map(|r| r.result.as_ref().ok())
            .filter(|c| !c.matches(expected))
            .cloned()
            .collect();
        unknown.sort();
        unknown.dedup();
        let relations: HashMap<ReportedCommit, Result<Related, String>> = if unknown.is_empty() {
            HashMap::new()
        } else {
            match self.source.relate_commits(expected, &unknown, self.max_commits).await {
                Ok(rels) if rels.len() == unknown.len() => {
                    unknown.into_iter().zip(rels.into_iter().map(Ok)).collect()
                }
                Ok(_) => {
                    let msg = "expected-state source answered a wrong number of relations".to_owned();
                    unknown.into_iter().map(|c| (c, Err(msg.clone()))).collect()
                }
                Err(e) => {
                    let msg = e.to_string();
                    unknown.into_iter().map(|c| (c, Err(msg.clone()))).collect()
                }
            }
        };

        probed
            .into_iter()
            .map(|p| {
                let t = &env.targets[p.target];
                let kind = t.probe.name().to_owned();
                let origin = t.probe.origin();
                let observed = match p.result {
                    Err(failure) => TargetObservation::failed(t.name.clone(), kind, failure),
                    Ok(readings) => {
                        let instances = readings
                            .into_iter()
                            .map(|r| match r.result {
                                Err(f) => InstanceObservation::failed(r.instance, f, r.elapsed),
                                Ok(c) if c.matches(expected) => InstanceObservation::classified(
                                    r.instance,
                                    &c,
                                    Relation::InSync,
                                    r.elapsed,
                                ),
                                Ok(c) => match relations.get(&c) {
                                    Some(Ok(rel)) => {
                                        let mut o = InstanceObservation::classified(
                                            r.instance,
                                            &c,
                                            rel.relation,
                                            r.elapsed,
                                        );
                                        // Named for now; described once per pass, after every environment.
                                        let named = |ids: &Option<Vec<CommitId>>| {
                                            ids.as_ref().map(|ids| {
                                                ids.iter().map(|sha| CommitInfo::named(*sha)).collect()
                                            })
                                        };
                                        if matches!(
                                            o.status,
                                            Status::Behind | Status::Ahead | Status::Diverged
                                        ) {
                                            o.pending_commits = named(&rel.pending);
                                            o.unexpected_commits = named(&rel.unexpected);
                                        }
                                        o
                                    }
                                    // The relation could not be computed, but the commit differs.
                                    Some(Err(msg)) => {
                                        let mut o = InstanceObservation::classified(
                                            r.instance,
                                            &c,
                                            Relation::Drifted,
                                            r.elapsed,
                                        );
                                        o.error = Some(msg.clone());
                                        o
                                    }
                                    None => InstanceObservation::classified(
                                        r.instance,
                                        &c,
                                        Relation::Drifted,
                                        r.elapsed,
                                    ),
                                },
                            })
                            .collect();
                        TargetObservation::from_instances(t.name.clone(), kind, instances)
                    }
                };
                observed.with_origin(origin)
            })
            .collect()
    }
}
