//! Resolve → probe: every environment's ref resolved in one call, every target probed
//! concurrently within its deadline (`bounded_probe`: a hung or panicking probe is
//! `unreachable`); each environment's readings then go to `classify.rs`, and the commits
//! at stake are described once per pass. Entry: `Engine::observe`, called by the pass.

use std::collections::HashMap;

use futures::future::BoxFuture;
use futures::stream::{self, StreamExt};

use crate::commit::CommitId;
use crate::observation::{CommitInfo, ProbeFailure, Reading, Status, TargetObservation};
use crate::plugin::ProbeContext;

use super::classify::Probed;
use super::group::SourceSeen;
use super::setup::Engine;
use super::spec::{EnvironmentSpec, TargetSpec};
use super::timer::Timer;

impl Engine {
    /// Resolves every environment's ref in one call to the source; says whether the
    /// source could be read at all (a ref it lacks is its environment's own error).
    pub(super) async fn resolve(
        &self,
        envs: &[EnvironmentSpec],
    ) -> (Vec<Result<(String, CommitId), String>>, SourceSeen) {
        let refs: Vec<String> = envs.iter().map(|e| e.reference.clone()).collect();
        match self.source.resolve(&refs).await {
            Ok(list) if list.len() == envs.len() => (
                list.into_iter()
                    .zip(envs)
                    .map(|(r, env)| {
                        r.map(|e| (e.reference, e.commit))
                            .map_err(|e| format!("environment {}: {e}", env.name))
                    })
                    .collect(),
                SourceSeen::Read,
            ),
            Ok(list) => {
                let msg = format!(
                    "expected-state source {} answered {} refs for {} asked",
                    self.source.name(),
                    list.len(),
                    envs.len()
                );
                (envs.iter().map(|_| Err(msg.clone())).collect(), SourceSeen::Failed)
            }
            Err(e) => (
                envs.iter().map(|env| Err(format!("environment {}: {e}", env.name))).collect(),
                SourceSeen::Failed,
            ),
        }
    }

    /// Probes every target concurrently, then classifies each environment's readings.
    pub(super) async fn observe(
        &self,
        envs: &[EnvironmentSpec],
        expected: &[Result<(String, CommitId), String>],
    ) -> Vec<Vec<TargetObservation>> {
        // Boxed, concretely typed futures: closures over borrowed data in iterator chains make
        // the pass future fail the `Send` check in generic callers (rust-lang/rust#102211).
        let mut jobs: Vec<BoxFuture<'_, Probed>> = Vec::new();
        for (ei, env) in envs.iter().enumerate() {
            let Ok((_, commit)) = &expected[ei] else { continue };
            for (ti, t) in env.targets.iter().enumerate() {
                let timer = &self.timer;
                jobs.push(Box::pin(async move {
                    let cx = ProbeContext { environment: &env.name, target: &t.name, expected: commit };
                    Probed { env: ei, target: ti, result: bounded_probe(t, &cx, timer).await }
                }));
            }
        }
        let mut probed: Vec<Probed> = stream::iter(jobs).buffer_unordered(self.concurrency).collect().await;
        probed.sort_by_key(|p| (p.env, p.target));

        let mut per_env: Vec<Vec<Probed>> = envs.iter().map(|_| Vec::new()).collect();
        for p in probed {
            let e = p.env;
            per_env[e].push(p);
        }
        let mut classify: Vec<BoxFuture<'_, Vec<TargetObservation>>> = Vec::new();
        for (ei, probed) in per_env.into_iter().enumerate() {
            let env = &envs[ei];
            let commit = expected[ei].as_ref().ok().map(|(_, c)| *c);
            classify.push(Box::pin(async move {
                match commit {
                    Some(commit) => self.classify(env, &commit, probed).await,
                    None => Vec::new(),
                }
            }));
        }
        let mut observed: Vec<Vec<TargetObservation>> =
            stream::iter(classify).buffered(self.concurrency).collect().await;
        self.describe_commits(&mut observed, expected).await;
        observed
    }

    /// Fills in who wrote the commits at stake, what and when: every distinct commit any
    /// instance names is looked up once per pass, however many instances share it; and
    /// the compare link of each instance that differs.
    async fn describe_commits(
        &self,
        observed: &mut [Vec<TargetObservation>],
        expected: &[Result<(String, CommitId), String>],
    ) {
        let mut wanted: Vec<CommitId> = observed
            .iter()
            .flatten()
            .flat_map(|t| &t.instances)
            .flat_map(|i| i.pending_commits.iter().chain(&i.unexpected_commits).flatten())
            .map(|c| c.sha)
            .collect();
        wanted.sort();
        wanted.dedup();
        let known: HashMap<CommitId, CommitInfo> = if wanted.is_empty() {
            HashMap::new()
        } else {
            match self.source.describe(&wanted).await {
                Ok(infos) => infos.into_iter().map(|c| (c.sha, c)).collect(),
                Err(e) => {
                    tracing::warn!(error = %e, "commits could not be described");
                    HashMap::new()
                }
            }
        };
        let fill = |list: &mut Option<Vec<CommitInfo>>| {
            if let Some(commits) = list.take() {
                // Unreadable history names nothing rather than half-described commits.
                let all: Option<Vec<CommitInfo>> =
                    commits.iter().map(|c| known.get(&c.sha).cloned()).collect();
                *list = all;
            }
        };
        for (targets, exp) in observed.iter_mut().zip(expected) {
            let Ok((_, exp)) = exp else { continue };
            for i in targets.iter_mut().flat_map(|t| t.instances.iter_mut()) {
                fill(&mut i.pending_commits);
                fill(&mut i.unexpected_commits);
                if matches!(i.status, Status::Behind | Status::Ahead | Status::Diverged)
                    && let Some(actual) = &i.actual
                {
                    i.compare_url = self.links.compare(actual, exp.as_str());
                }
            }
        }
    }
}

/// Runs one probe within its target's timeout, a panic inside it caught: either way the
/// target is `unreachable` with the reason and the pass goes on.
async fn bounded_probe(
    t: &TargetSpec,
    cx: &ProbeContext<'_>,
    timer: &Timer,
) -> Result<Vec<Reading>, ProbeFailure> {
    use futures::FutureExt;
    let observe = std::panic::AssertUnwindSafe(t.probe.observe(cx)).catch_unwind();
    let deadline = timer.sleep(t.timeout);
    match futures::future::select(Box::pin(observe), deadline).await {
        futures::future::Either::Left((Ok(result), _)) => result,
        futures::future::Either::Left((Err(panic), _)) => {
            let message = crate::panic::message(panic.as_ref());
            tracing::error!(target_name = %t.name, environment = %cx.environment, panic = %message, "probe panicked");
            Err(ProbeFailure::unreachable(format!("probe panicked: {message}")))
        }
        futures::future::Either::Right(_) => Err(ProbeFailure::unreachable(format!(
            "no answer within {}",
            humantime::format_duration(t.timeout)
        ))),
    }
}
