//! The pass itself, [`Engine::run_pass`]: resolve → probe → classify (`observe.rs`,
//! `classify.rs`) → decide (the pure [`crate::reconcile()`], here) → act (`act.rs`,
//! `notify.rs`) → the report.

use std::collections::BTreeMap;

use jiff::Timestamp;

use crate::name::EnvName;
use crate::plugin::Expected;
use crate::reconcile::{ExpectedCommit, reconcile_checked};
use crate::state::EnvState;
use crate::verify::{CheckContext, CheckRun, checks_due};

use super::outcome::{EnvOutcome, PassOutcome};
use super::setup::Engine;
use super::spec::{EnvironmentSpec, PassMode};

/// The engine's own bound on one run of a soak check.
pub const CHECK_BOUND: std::time::Duration = std::time::Duration::from_secs(120);

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
        let (resolved, source) = if envs.is_empty() {
            (Vec::new(), super::group::SourceSeen::NotAsked)
        } else {
            self.resolve(envs).await
        };
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
                    let prior_state = prior.get(&env.name);
                    let due = !env.controls.vetoed.contains(commit)
                        && checks_due(
                            prior_state.and_then(|s| s.verification.as_deref()),
                            prior_state.map_or(&[][..], |s| &s.verified[..]),
                            commit,
                            assessment.in_sync,
                            policy.verify.as_ref(),
                            now,
                        );
                    let runs = if due && !env.checks.is_empty() {
                        self.run_checks(env, commit).await
                    } else {
                        Vec::new()
                    };
                    let mut d = reconcile_checked(
                        expected,
                        assessment,
                        prior_state,
                        &policy,
                        env.controls.clone(),
                        &runs,
                        now,
                    );
                    d.state.reference = Some(o.reference.clone());
                    let seen = prior_state.map_or(&[][..], |s| &s.running[..]);
                    d.state.running = crate::state::Running::observed(seen, &o.targets, commit, now);
                    o.phase = Some(d.phase);
                    o.decision = Some(d);
                }
            }
            let source = if dry_run { super::group::SourceSeen::NotAsked } else { source };
            self.act(envs, &mut outcomes, prior, source, dry_run, now, &mut out).await;
        }
        // The report, built once from what each environment's pass came to.
        out.report.environments = envs.iter().zip(outcomes).map(|(env, o)| o.report(env)).collect();
        out.report.in_sync = out.report.environments.iter().all(|e| e.in_sync);
        out
    }

    /// Runs `env`'s soak checks once, concurrently. Each bounds itself (its `timeout`);
    /// the engine bounds it too, by [`CHECK_BOUND`]: a check that hangs or panics fails,
    /// and the pass goes on.
    async fn run_checks(&self, env: &EnvironmentSpec, commit: &crate::commit::CommitId) -> Vec<CheckRun> {
        use futures::FutureExt;
        let bound = CHECK_BOUND;
        let cx = CheckContext::new(&env.name, commit);
        let runs = env.checks.iter().map(|c| {
            let timer = self.timer.sleep(bound);
            async move {
                let run = std::panic::AssertUnwindSafe(c.run(&cx)).catch_unwind();
                let result = match futures::future::select(Box::pin(run), timer).await {
                    futures::future::Either::Left((Ok(r), _)) => r,
                    futures::future::Either::Left((Err(panic), _)) => {
                        Err(format!("check panicked: {}", crate::panic::message(panic.as_ref())))
                    }
                    futures::future::Either::Right(_) => {
                        Err(format!("no answer within {}", humantime::format_duration(bound)))
                    }
                };
                CheckRun { check: c.name().to_owned(), result }
            }
        });
        futures::future::join_all(runs).await
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
