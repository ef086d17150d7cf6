//! Embedding the closed loop in your own deploy tool: your probe, your remediator, your
//! clock and your storage; gitstate decides. Runs three passes against a repository.
//!
//! ```text
//! cargo run --example embed_engine -- <repo> <ref> <commit-the-target-runs>
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use gitstate::core::git::GitSource;
use gitstate::core::{
    ActualStateProbe, Engine, EnvName, EnvironmentSpec, PassMode, Policy, ProbeContext, ProbeFailure,
    Reading, RemediationOutcome, RemediationRequest, Remediator, ReportedCommit, TargetSpec, async_trait,
};

/// A target that always reports the same commit (stands in for your service).
struct Fixed(ReportedCommit);

#[async_trait]
impl ActualStateProbe for Fixed {
    fn name(&self) -> &str {
        "fixed"
    }
    async fn observe(&self, _cx: &ProbeContext<'_>) -> Result<Vec<Reading>, ProbeFailure> {
        Ok(vec![Reading { instance: "primary".into(), result: Ok(self.0.clone()), elapsed: Duration::ZERO }])
    }
}

/// Your deploy call goes here; this one just prints.
struct PrintDeploy;

#[async_trait]
impl Remediator for PrintDeploy {
    fn name(&self) -> &str {
        "print"
    }
    async fn remediate(&self, req: &RemediationRequest) -> RemediationOutcome {
        println!("deploy {} to {} (attempt {})", req.expected.short(12), req.environment, req.attempt);
        RemediationOutcome { ok: true, detail: "printed".into(), exit_code: None, output_tail: None }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [repo, reference, running] = &args[..] else {
        return Err("usage: embed_engine <repo> <ref> <commit-the-target-runs>".into());
    };
    let env = EnvironmentSpec {
        name: EnvName::new("embedded")?,
        reference: reference.clone(),
        targets: vec![TargetSpec::new("service", Arc::new(Fixed(ReportedCommit::parse(running)?)))],
        remediator: Some(Arc::new(PrintDeploy)),
        policy: Arc::new(Policy {
            grace: Duration::ZERO,
            settle: Duration::from_secs(60),
            ..Policy::default()
        }),
        controls: gitstate_core::Controls::default(),
        checks: Vec::new(),
    };
    let engine = Engine::new(Arc::new(GitSource::local(repo)?));
    let mut state = BTreeMap::new();
    let start = jiff::Timestamp::now();
    for minute in 0..3 {
        // Time is yours to give: here, one simulated minute per pass.
        let now = start + jiff::SignedDuration::from_secs(minute * 60);
        let mode = PassMode::Reconcile { dry_run: false };
        let out = futures::executor::block_on(engine.run_pass(std::slice::from_ref(&env), &state, mode, now));
        for (name, reason, again) in &out.decisions {
            println!("{name}: {reason} (look again in {again:?})");
        }
        state.extend(out.states);
    }
    Ok(())
}
