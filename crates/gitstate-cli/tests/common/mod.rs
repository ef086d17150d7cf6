//! Helpers for end-to-end tests of the built `gitstate` binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub use gitstate_testkit::{Behavior, Repo, TestServer};

pub const REF: &str = "refs/heads/environments/production";

/// The binary under test.
pub fn gitstate() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gitstate"));
    c.env_remove("GITSTATE_CONFIG").env_remove("NO_COLOR").stdin(Stdio::null());
    c
}

/// A run's exit code, stdout and stderr.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}\nstderr: {}", self.stdout, self.stderr))
    }
}

pub fn run(cmd: &mut Command) -> Run {
    let Output { status, stdout, stderr } = cmd.output().expect("the gitstate binary runs");
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// Writes `gitstate.toml` into `dir`; returns its path.
pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("gitstate.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// `gitstate <args> -c <config>`.
pub fn with_config(config: &Path, args: &[&str]) -> Run {
    run(gitstate().args(args).arg("-c").arg(config))
}

/// deployment-meta.json reporting `sha`.
pub fn meta(sha: &str) -> Behavior {
    Behavior::Json(format!(
        r#"{{"schema":1,"sha":"{sha}","ref":"{REF}","environment":"production","built_at":"2026-11-24T06:00:00Z"}}"#
    ))
}

/// The instance of `env`/`target` with this id in a JSON report.
pub fn instance<'a>(
    report: &'a serde_json::Value,
    env: &str,
    target: &str,
    id: &str,
) -> &'a serde_json::Value {
    let e = report["environments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == env)
        .unwrap_or_else(|| panic!("no env {env}"));
    let t = e["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == target)
        .unwrap_or_else(|| panic!("no target {target}"));
    t["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == id)
        .unwrap_or_else(|| panic!("no instance {id} in {t}"))
}

/// Replaces the server port and the run-specific paths so that output can be snapshotted.
pub fn normalize(s: &str, server: &TestServer, dirs: &[&Path]) -> String {
    let mut out = s.replace(&format!("127.0.0.1:{}", server.port), "127.0.0.1:PORT");
    for d in dirs {
        out = out.replace(&d.display().to_string(), "[DIR]");
    }
    out
}

/// An `[[environments]]` block with one HTTP target over `urls`, plus `extra` target keys.
pub fn http_env(env: &str, target: &str, urls: &[String], extra: &str) -> String {
    let list = urls.iter().map(|u| format!("\"{u}\"")).collect::<Vec<_>>().join(", ");
    format!(
        "[[environments]]\nname = \"{env}\"\n  [[environments.targets]]\n  name = \"{target}\"\n  [environments.targets.http]\n  urls = [{list}]\n{extra}\n"
    )
}

/// The passes a `/metrics` exposition counts (`gitstate_reconcile_passes_total`, every
/// result): what "nothing more happens" waits for, instead of a fixed sleep.
pub fn passes_in(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("gitstate_reconcile_passes_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
