//! The pass itself, [`Engine::run_pass`]: resolve → probe → classify (`observe.rs`,
//! `classify.rs`) → decide (the pure [`crate::reconcile()`], here) → act (`act.rs`,
//! `notify.rs`) → the report.

use std::collections::BTreeMap;

use jiff::Timestamp;

use crate::name::EnvName;
use crate::plugin::Expected;
use crate::reconcile::{ExpectedCommit, reconcile_with};
use crate::state::EnvState;

use super::outcome::{EnvOutcome, PassOutcome};
use super::setup::Engine;
use super::spec::{EnvironmentSpec, PassMode};

impl Engine {
    /// Runs one pass over `envs`. `prior` is the remembered state (ignored by `Check`);
    /// `now` is the pass's time, given so that callers (and tests) own the clock.
    pub async fn run_pass(
        &self,
        envs: &[EnvironmentSpec],
        prior: &BTreeMap<EnvName, EnvState>,
        mode: PassMode,
        now: Timestamp,
    ) -> PassOutcome {
        let resolved = self.resolve(envs).await;
        let observed = self.observe(envs, &resolved).await;
        let mut outcomes: Vec<EnvOutcome> = envs
            .iter()
            .zip(resolved)
            .zip(observed)
            .map(|((env, resolved), targets)| match resolved {
                Err(e) => EnvOutcome::failed(env.reference.clone(), e),
                Ok((reference, commit)) => EnvOutcome::observed(reference, commit, targets),
            })
            .collect();
        let mut out = PassOutcome::new(now);
        if let PassMode::Reconcile { dry_run } = mode {
            let moved = self.moved_at(envs, &outcomes, prior).await;
            for ((env, o), moved_at) in envs.iter().zip(&mut outcomes).zip(moved) {
                if let (Ok(commit), Some(assessment)) = (&o.expected, &o.assessment) {
                    let expected = ExpectedCommit { commit: *commit, moved_at };
                    let policy = env.effective_policy();
                    let mut d = reconcile_with(
                        expected,
                        assessment,
                        prior.get(&env.name),
                        &policy,
                        env.controls,
                        now,
                    );
                    d.state.reference = Some(o.reference.clone());
                    o.phase = Some(d.phase);
                    o.decision = Some(d);
                }
            }
            self.act(envs, &mut outcomes, dry_run, now, &mut out).await;
        }
        // The report, built once from what each environment's pass came to.
        out.report.environments = envs.iter().zip(outcomes).map(|(env, o)| o.report(env)).collect();
        out.report.in_sync = out.report.environments.iter().all(|e| e.in_sync);
        out
    }

    /// When each environment's ref moved to its expected commit, asked of the source only
    /// for commits new to the state (the reflog is read once per move, not every pass).
    async fn moved_at(
        &self,
        envs: &[EnvironmentSpec],
        outcomes: &[EnvOutcome],
        prior: &BTreeMap<EnvName, EnvState>,
    ) -> Vec<Option<Timestamp>> {
        let mut asked: Vec<(usize, Expected)> = Vec::new();
        for (i, (env, o)) in envs.iter().zip(outcomes).enumerate() {
            let Ok(commit) = &o.expected else { continue };
            let known = prior.get(&env.name).and_then(|s| s.expected.as_ref()).map(|e| e.commit);
            if known != Some(*commit) {
                asked.push((i, Expected { reference: o.reference.clone(), commit: *commit }));
            }
        }
        let mut moved = vec![None; envs.len()];
        if asked.is_empty() {
            return moved;
        }
        let expected: Vec<Expected> = asked.iter().map(|(_, e)| e.clone()).collect();
        let answers = self.source.moved_at(&expected).await;
        // A source answering too few (a plugin's bug) leaves the rest unknown.
        for ((i, _), at) in asked.iter().zip(answers) {
            moved[*i] = at;
        }
        moved
    }
}
