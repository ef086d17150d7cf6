//! The command line as clap parses it. Validation into typed settings happens in the
//! commands (`config::load`), not here.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Git is the source of truth for what runs where.
///
/// A ref such as refs/heads/environments/production says which commit production should
/// run; gitstate compares it with what every target reports and explains the difference.
#[derive(Debug, Parser)]
#[command(name = "gitstate", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Log formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object a line.
    Json,
}

/// Report formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// A table for people.
    Text,
    /// Stable JSON (schema 1) for programs.
    Json,
    /// The dashboard as one static HTML page (check, status, reconcile, fleet, dora).
    Html,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// What each environment should run now: ref -> commit.
    Expected(Select),
    /// One-shot report of every target against its expected commit; stateless, never acts.
    Check(Check),
    /// One pass of the closed loop: check, then remediate and alarm as the policy says.
    Reconcile(Reconcile),
    /// The closed loop, forever: passes on an interval and whenever a ref moves.
    Watch(Watch),
    /// What the state dir holds: phases, incidents, alarms, convergence lag.
    Status(Status),
    /// Write deployment-meta.json for a repository and revision.
    Stamp(Stamp),
    /// Stop acting on environments: still probed and reported, never remediated.
    Suspend(Suspend),
    /// Act on suspended environments again.
    Resume(Reasoned),
    /// A fresh set of remediation attempts for environments, at once.
    Retry(Reasoned),
    /// Move an environment's ref back to a good commit in Git, and veto the bad one.
    Rollback(Rollback),
    /// Never deploy a commit to an environment while its ref points at it.
    Veto(VetoArgs),
    /// Lift a veto.
    Unveto(VetoArgs),
    /// Make the commit every instance runs (a hotfix deployed by hand) the expected one.
    Adopt(Adopt),
    /// Which environments run a commit (or one containing it), and since when.
    Where(Where),
    /// Every environment × the commits its instances run.
    Fleet(Fleet),
    /// Commits in A's expected (or running) commit and not in B's, and the other way.
    Diff(Diff),
    /// DORA's four keys, from the event log and the history.
    Dora(Dora),
    /// Parse and check the configuration, touch nothing.
    Validate(ConfigArg),
    /// A self-contained sandbox showing drift detected, explained and fixed.
    Demo,
    /// Print shell completions.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// `-c FILE`.
#[derive(Debug, Args)]
pub struct ConfigArg {
    /// The configuration file [default: $GITSTATE_CONFIG, else ./gitstate.toml].
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Which environments, and how to report.
#[derive(Debug, Args)]
pub struct Select {
    /// The configuration file.
    #[command(flatten)]
    pub config: ConfigArg,
    /// Only this environment (repeatable).
    #[arg(short, long = "environment", value_name = "ENV")]
    pub environments: Vec<String>,
    /// Report format.
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// `gitstate check`.
#[derive(Debug, Args)]
pub struct Check {
    /// Which environments, and how to report.
    #[command(flatten)]
    pub select: Select,
    /// Also name the commits each instance lacks or has beyond the expected one.
    #[arg(short, long)]
    pub verbose: bool,
}

/// `gitstate resume` / `gitstate retry`: environments by name.
#[derive(Debug, Args)]
pub struct Control {
    /// The configuration file.
    #[command(flatten)]
    pub config: ConfigArg,
    /// The environments (explicit or discovered).
    #[arg(value_name = "ENV", required = true)]
    pub environments: Vec<String>,
}

/// `gitstate resume` and `gitstate retry`.
#[derive(Debug, Args)]
pub struct Reasoned {
    /// Which environments.
    #[command(flatten)]
    pub control: Control,
    /// Why, for the events.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

/// `gitstate suspend`.
#[derive(Debug, Args)]
pub struct Suspend {
    /// Which environments.
    #[command(flatten)]
    pub control: Control,
    /// Why, for whoever reads `status` next.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// When the suspension ends by itself: a duration ("2h") or an RFC 3339 time.
    #[arg(long, value_name = "DURATION|RFC3339")]
    pub until: Option<String>,
}

/// `gitstate rollback`.
#[derive(Debug, Args)]
pub struct Rollback {
    /// The configuration file.
    #[command(flatten)]
    pub config: ConfigArg,
    /// The environment.
    #[arg(value_name = "ENV")]
    pub environment: String,
    /// The commit to go back to (a full id, a branch or a tag) [default: the last
    /// verified commit, else the one the environment converged on before].
    #[arg(long, value_name = "REV")]
    pub to: Option<String>,
    /// Why, for the reflog, the events and whoever reads `status` next.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

/// `gitstate where`.
#[derive(Debug, Args)]
pub struct Where {
    /// The commit: a full or abbreviated id, a branch, a tag (what git rev-parse takes).
    #[arg(value_name = "REV")]
    pub rev: String,
    /// Which environments, and how to report.
    #[command(flatten)]
    pub select: Select,
}

/// `gitstate dora`.
#[derive(Debug, Args)]
pub struct Dora {
    /// Which environments, and how to report.
    #[command(flatten)]
    pub select: Select,
    /// The window's start: a duration back from now ("30d", the default) or an RFC 3339 time.
    #[arg(long, value_name = "30d|RFC3339")]
    pub since: Option<String>,
}

/// `gitstate diff`.
#[derive(Debug, Args)]
pub struct Diff {
    /// The configuration file.
    #[command(flatten)]
    pub config: ConfigArg,
    /// One environment.
    #[arg(value_name = "A")]
    pub a: String,
    /// The other.
    #[arg(value_name = "B")]
    pub b: String,
    /// Compare what runs (the commit most instances run) instead of what is expected.
    #[arg(long)]
    pub running: bool,
    /// Report format.
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// `gitstate fleet`.
#[derive(Debug, Args)]
pub struct Fleet {
    /// Which environments, and how to report.
    #[command(flatten)]
    pub select: Select,
}

/// `gitstate adopt`.
#[derive(Debug, Args)]
pub struct Adopt {
    /// The configuration file.
    #[command(flatten)]
    pub config: ConfigArg,
    /// The environment.
    #[arg(value_name = "ENV")]
    pub environment: String,
    /// Why, for the reflog and the events.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

/// `gitstate veto` / `gitstate unveto`.
#[derive(Debug, Args)]
pub struct VetoArgs {
    /// The configuration file.
    #[command(flatten)]
    pub config: ConfigArg,
    /// The environment.
    #[arg(value_name = "ENV")]
    pub environment: String,
    /// The commit (a full id, a branch or a tag).
    #[arg(value_name = "REV")]
    pub rev: String,
    /// Why.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

/// `gitstate stamp`.
#[derive(Debug, Args)]
pub struct Stamp {
    /// The repository.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub repo: PathBuf,
    /// The revision: a ref, a commit id, or anything git rev-parse takes.
    #[arg(long, value_name = "REV", default_value = "HEAD")]
    pub rev: String,
    /// The environment to name in the file.
    #[arg(long, value_name = "NAME")]
    pub environment: Option<String>,
    /// Where to write it; `-` for stdout.
    #[arg(short, long, value_name = "FILE", default_value = "-")]
    pub output: PathBuf,
}

/// `gitstate reconcile`.
#[derive(Debug, Args)]
pub struct Reconcile {
    /// Which environments, and how to report.
    #[command(flatten)]
    pub select: Select,
    /// Decide and report the actions without running them; take no lock, write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `gitstate watch`.
#[derive(Debug, Args)]
pub struct Watch {
    /// The configuration file.
    #[command(flatten)]
    pub config: ConfigArg,
    /// Serve /metrics, /healthz, /readyz and /status here [default: watch.listen].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
}

/// `gitstate status`.
#[derive(Debug, Args)]
pub struct Status {
    /// The configuration file.
    #[command(flatten)]
    pub config: ConfigArg,
    /// Report format.
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}
