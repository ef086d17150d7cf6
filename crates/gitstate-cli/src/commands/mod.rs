//! One module per subcommand; [`dispatch`] runs the chosen one and returns its exit code.

pub mod check;
pub mod control;
pub mod demo;
pub mod expected;
pub mod fix;
pub mod fleet;
pub mod reconcile;
pub mod stamp;
pub mod status;
pub mod validate;
pub mod watch;

use std::path::Path;

use crate::cli::Command;
use crate::config::{self, Config};

/// Runs a subcommand.
pub fn dispatch(command: Command) -> anyhow::Result<i32> {
    match command {
        // Nothing in `expected` needs tokio (the Git source runs on its own pool): no
        // runtime, no worker threads to start for a command that answers in milliseconds.
        Command::Expected(a) => futures::executor::block_on(expected::run(a)),
        Command::Check(a) => runtime()?.block_on(check::run(a)),
        Command::Reconcile(a) => runtime()?.block_on(reconcile::run(a)),
        Command::Watch(a) => watch_runtime()?.block_on(watch::run(a)),
        Command::Status(a) => runtime()?.block_on(status::run(a)),
        Command::Stamp(a) => stamp::run(a),
        Command::Suspend(a) => runtime()?.block_on(control::suspend(a)),
        Command::Resume(a) => runtime()?.block_on(control::resume(a)),
        Command::Retry(a) => runtime()?.block_on(control::retry(a)),
        Command::Rollback(a) => runtime()?.block_on(fix::rollback(a)),
        Command::Veto(a) => runtime()?.block_on(fix::veto(a)),
        Command::Unveto(a) => runtime()?.block_on(fix::unveto(a)),
        Command::Adopt(a) => runtime()?.block_on(fix::adopt(a)),
        Command::Where(a) => runtime()?.block_on(fleet::where_is(a)),
        Command::Fleet(a) => runtime()?.block_on(fleet::fleet(a)),
        Command::Diff(a) => runtime()?.block_on(fleet::diff(a)),
        Command::Dora(a) => runtime()?.block_on(fleet::dora(a)),
        Command::Validate(a) => validate::run(a),
        Command::Demo => runtime()?.block_on(demo::run()),
        Command::Completions { shell } => {
            let mut cmd = <crate::cli::Cli as clap::CommandFactory>::command();
            // Written whole, then emitted: `completions bash | head` is no panic.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "gitstate", &mut script);
            crate::output::emit(&script)?;
            Ok(crate::exit::IN_SYNC)
        }
    }
}

/// The binary owns the runtime; libraries never start one.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

/// `watch`'s runtime: one thread. Its work is waiting — on probes, timers, sockets, the
/// database — and what blocks for long runs elsewhere (Git on the blocking pool); a second
/// worker only added wake-ups between threads and more of the allocator's per-thread
/// caches. The state's file writes (an append and an `fdatasync` after a pass that changed
/// something; a quiet pass writes nothing) run in place, as they did on a worker before. Measured at 10,000 discovered
/// environments (`BENCH_ONLY=scale`, the README's Performance section): CPU a minute 5.0 →
/// 4.5 s, peak RSS 124 → 100 MB, a pass 600 → 700 ms (the goal is 2 s).
fn watch_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

/// Loads the configuration named by `-c` / `$GITSTATE_CONFIG` / `./gitstate.toml`.
pub fn load_config(flag: Option<&Path>) -> anyhow::Result<Config> {
    Ok(config::load(&config::locate(flag))?)
}

/// The exit code of a pass (SPEC §6): 2 when an environment could not be checked (its
/// errors go to stderr), else 0 when everything is in sync, else 1.
pub fn exit_code(report: &gitstate_core::Report) -> i32 {
    if report.has_errors() {
        for e in report.environments.iter().filter_map(|e| e.error.as_ref()) {
            eprintln!("error: {e}");
        }
        crate::exit::ERROR
    } else if report.in_sync {
        crate::exit::IN_SYNC
    } else {
        crate::exit::DRIFT
    }
}
