//! The `gitstate` command-line tool: parses flags, loads the configuration, wires the
//! library crates together (a `gitstate-runtime` controller over `gitstate-core`'s Git
//! source and the adapters' probes) and prints reports. It decides nothing itself. Entry
//! point: [`run`].
//!
//! Layout: [`cli`] (flags), [`config`] (gitstate.toml), [`plan`] (configuration → the
//! runtime: source, environments, probes, sinks, options), [`commands`] (one module per
//! subcommand), [`output`] (tables, JSON, HTML, colour, progress), [`listener`] (what
//! `watch` serves: metrics, status, dashboard, push webhooks).

pub mod cli;
pub mod commands;
pub mod config;
pub mod listener;
pub mod memory;
pub mod output;
pub mod plan;
pub mod remediate;
pub mod serve;
pub mod stores;

use clap::Parser;

/// Exit codes (SPEC §6), as `diff`, Argo CD and Flux use them.
pub mod exit {
    /// Every target is in sync.
    pub const IN_SYNC: i32 = 0;
    /// Some target is not in sync.
    pub const DRIFT: i32 = 1;
    /// gitstate could not do its job: usage, config, repository, ref not found.
    pub const ERROR: i32 = 2;
}

/// Runs the command line and returns the process exit code.
pub fn run() -> i32 {
    let cli = match cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { exit::ERROR } else { exit::IN_SYNC };
        }
    };
    init_logging(cli.log_format);
    raise_fd_limit();
    match commands::dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", output::chain(&e));
            exit::ERROR
        }
    }
}

/// Lifts the soft limit on open files towards the hard one, as Go's runtime does: the soft
/// default of 1024 is a relic of `select()`, and a pass over a fleet needs a socket per
/// request in flight plus the connections kept alive. Capped so that children (remediation
/// commands) do not inherit a limit in the millions, which some programs loop over.
fn raise_fd_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    const CAP: u64 = 65_536;
    let limit = getrlimit(Resource::Nofile);
    let want = limit.maximum.map_or(CAP, |max| max.min(CAP));
    if limit.current.is_some_and(|cur| cur < want) {
        let raised = rustix::process::Rlimit { current: Some(want), maximum: limit.maximum };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::debug!(error = %e, "could not raise the open-file limit");
        }
    }
}

/// Logs go to stderr. Without `GITSTATE_LOG`, a plain level filter (warnings and errors):
/// an `EnvFilter` costs a short command 0.1 ms and 17 page faults to build.
fn init_logging(format: cli::LogFormat) {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::filter::LevelFilter;
    macro_rules! init {
        ($builder:expr) => {{
            let builder = $builder.with_writer(std::io::stderr);
            let _ = match format {
                cli::LogFormat::Json => builder.json().try_init(),
                cli::LogFormat::Text => builder.with_ansi(output::color_enabled_stderr()).try_init(),
            };
        }};
    }
    if std::env::var_os("GITSTATE_LOG").is_some() {
        let filter = EnvFilter::try_from_env("GITSTATE_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
        init!(tracing_subscriber::fmt().with_env_filter(filter));
    } else {
        init!(tracing_subscriber::fmt().with_max_level(LevelFilter::WARN));
    }
}
