//! A deploy tool's program with gitstate's whole closed loop inside: a local repository
//! says what `production` should run, one HTTP target reports what it runs, a command
//! deploys, and a state directory remembers.
//!
//! ```text
//! embed_loop REPO REF URL STATE_DIR -- COMMAND [ARGS...]
//! ```
//!
//! - REPO: a local repository (a path); REF: a full ref name in it, such as
//!   `refs/heads/environments/production`: the commit `production` should run.
//! - URL: the target's well-known file (`deployment-meta.json`, SPEC §4).
//! - STATE_DIR: the loop's state, events and lock (SPEC §7).
//! - COMMAND [ARGS...]: the deploy, run in the current directory with
//!   `GITSTATE_ENVIRONMENT`, `GITSTATE_REF`, `GITSTATE_EXPECTED_SHA`, `GITSTATE_ATTEMPT`
//!   and `GITSTATE_DRIFTED` set; exit 0 means triggered.
//!
//! The library's default policy except `grace = "0s"`, `settle = "0s"`, `max_attempts = 3`;
//! refs read every second, a drifted target probed again every second, a full pass every
//! 10 s. Logs go to stderr. SIGINT or SIGTERM stops it: work in flight finishes, the state
//! is written, exit 0.
//!
//! Builds with the facade's `runtime`, `http` and `process` features, tokio and
//! tracing-subscriber, nothing else.

use std::sync::Arc;
use std::time::Duration;

use gitstate::core::git::GitSource;
use gitstate::core::{EnvName, EnvironmentSpec, Policy, TargetSpec};
use gitstate::http::{HttpClients, HttpProbe, HttpTarget};
use gitstate::process::{CancellationToken, CommandRemediator};
use gitstate::runtime::{Controller, FileStore, Options};
use tokio::signal::unix::{SignalKind, signal};

const USAGE: &str = "usage: embed_loop REPO REF URL STATE_DIR -- COMMAND [ARGS...]";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [repo, reference, url, state, dashes, command @ ..] = args.as_slice() else {
        return Err(USAGE.into());
    };
    if dashes != "--" || command.is_empty() {
        return Err(USAGE.into());
    }
    // One loop per state directory: the lock is held until the program ends.
    let _lock = FileStore::lock(state.as_ref())?;
    let store = Arc::new(FileStore::open(state.as_ref())?);
    let probe = HttpProbe::new(&HttpClients::new(16)?, HttpTarget::new(vec![url.parse()?]))?;
    let stop = CancellationToken::new();
    let deploy = CommandRemediator::new(
        command.to_vec(),
        std::env::current_dir()?,
        Duration::from_secs(600),
        stop.clone(),
    );
    let policy =
        Policy { grace: Duration::ZERO, settle: Duration::ZERO, max_attempts: 3, ..Policy::default() };
    let production = EnvironmentSpec {
        name: EnvName::new("production")?,
        reference: reference.clone(),
        targets: vec![TargetSpec::new("web", Arc::new(probe))],
        remediator: Some(Arc::new(deploy)),
        policy: Arc::new(policy),
        controls: Default::default(),
        checks: Vec::new(),
    };
    let mut options = Options::default();
    (options.interval, options.ref_poll, options.converging_poll) =
        (Duration::from_secs(10), Duration::from_secs(1), Duration::from_secs(1));
    let controller = Controller::builder(Arc::new(GitSource::local(repo)?), store)
        .environment(production)
        .options(options)
        .stop_token(stop)
        .build();
    let mut term = signal(SignalKind::terminate())?;
    let shutdown = async move {
        tokio::select! { _ = term.recv() => {}, _ = tokio::signal::ctrl_c() => {} }
    };
    controller.run(shutdown).await?;
    Ok(())
}
