//! The `gitstate` command-line tool: parses flags, loads the configuration, drives the
//! `gitstate-core` engine and prints reports. Entry point: [`run`].

use clap::Parser;

/// Exit codes (SPEC §6), as `diff`, Argo CD and Flux use them.
pub mod exit {
    /// Every target is in sync.
    pub const IN_SYNC: i32 = 0;
    /// Some target is not in sync.
    pub const DRIFT: i32 = 1;
    /// gitstate could not do its job.
    pub const ERROR: i32 = 2;
}

/// Git is the source of truth for what runs where.
#[derive(Debug, Parser)]
#[command(name = "gitstate", version, about, long_about = None)]
struct Cli {}

/// Runs the command line and returns the process exit code.
pub fn run() -> i32 {
    match Cli::try_parse() {
        Ok(_) => exit::IN_SYNC,
        Err(e) => {
            let _ = e.print();
            if e.use_stderr() { exit::ERROR } else { exit::IN_SYNC }
        }
    }
}
