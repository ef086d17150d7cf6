//! The `gitstate` command-line tool: parses flags, loads the configuration, drives the
//! `gitstate-core` engine and prints reports. Entry point: [`run`].
//!
//! Layout: [`cli`] (flags), [`config`] (gitstate.toml), [`plan`] (configuration → engine:
//! sources, probes), [`commands`] (one module per subcommand), [`output`] (tables, JSON,
//! colour, progress).

pub mod cli;
pub mod commands;
pub mod config;
pub mod fsutil;
pub mod output;
pub mod plan;
pub mod remediate;
pub mod serve;
pub mod state;
pub mod watch;

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
    match commands::dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", output::chain(&e));
            exit::ERROR
        }
    }
}

fn init_logging(format: cli::LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("GITSTATE_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        cli::LogFormat::Json => builder.json().try_init(),
        cli::LogFormat::Text => builder.with_ansi(output::color_enabled_stderr()).try_init(),
    };
}
