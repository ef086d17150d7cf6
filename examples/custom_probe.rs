//! A custom probe in a few lines: Capistrano-style releases write the deployed commit to
//! `<dir>/REVISION`; this probe reads it from each directory and `gitstate-core` does the rest.
//!
//! ```text
//! cargo run --example custom_probe -- <repo> <ref> <release-dir>...
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

// ANCHOR: probe
use gitstate::core::probe::*;

/// Reads `REVISION` from each release directory.
struct RevisionFile {
    dirs: Vec<std::path::PathBuf>,
}

#[async_trait]
impl ActualStateProbe for RevisionFile {
    fn name(&self) -> &str {
        "revision-file"
    }

    async fn observe(&self, _cx: &ProbeContext<'_>) -> Result<Vec<Reading>, ProbeFailure> {
        Ok(self
            .dirs
            .iter()
            .map(|dir| {
                let start = Instant::now();
                let result = match std::fs::read_to_string(dir.join("REVISION")) {
                    Err(e) => Err(ProbeFailure::missing(format!("{}: {e}", dir.display()))),
                    Ok(text) => ReportedCommit::parse(&text)
                        .map_err(|e| ProbeFailure::invalid(e.to_string()).with_actual(text.trim())),
                };
                Reading { instance: dir.display().to_string(), result, elapsed: start.elapsed() }
            })
            .collect())
    }
}
// ANCHOR_END: probe

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(repo), Some(reference)) = (args.next(), args.next()) else {
        return Err("usage: custom_probe <repo> <ref> <release-dir>...".into());
    };
    let probe = Arc::new(RevisionFile { dirs: args.map(Into::into).collect() });
    let env = EnvironmentSpec {
        name: EnvName::new("example")?,
        reference,
        targets: vec![TargetSpec::new("releases", probe)],
        remediator: None,
        policy: Arc::new(Policy::default()),
        controls: gitstate_core::Controls::default(),
        checks: Vec::new(),
    };
    let engine = Engine::new(Arc::new(GitSource::local(repo)?));
    let now = jiff::Timestamp::now();
    let out = futures::executor::block_on(engine.run_pass(&[env], &BTreeMap::new(), PassMode::Check, now));
    println!("{}", serde_json::to_string_pretty(&out.report)?);
    std::process::exit(if out.report.in_sync { 0 } else { 1 });
}
