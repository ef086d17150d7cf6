//! Helpers for end-to-end tests of the built `gitstate` binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use gitstate_testkit::http_get;
use serde_json::Value;

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

// The closed loop's world, shared by the end-to-end tests of the loop.

/// A repository, a target serving `served.json` (which deploy.sh rewrites), and a config.
pub struct Loop {
    pub repo: Repo,
    pub c: Vec<String>,
    pub server: TestServer,
    pub dir: tempfile::TempDir,
}

impl Loop {
    pub fn new() -> Self {
        let repo = Repo::new();
        let c = repo.commits(4, "c");
        repo.update_ref(REF, &c[1]);
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start_background();
        server.route("/meta", Behavior::File(dir.path().join("served.json")));
        let l = Self { repo, c, server, dir };
        l.serve(&l.c[1].clone());
        l
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// What the target reports, as a deploy would leave it.
    pub fn serve(&self, sha: &str) {
        std::fs::write(self.path().join("served.json"), format!("{{\"sha\":\"{sha}\"}}")).unwrap();
    }

    /// deploy.sh: logs each attempt to attempts.log, then runs `body`.
    pub fn deploy_script(&self, body: &str) {
        let p = self.path().join("deploy.sh");
        std::fs::write(
            &p,
            format!("#!/bin/sh\necho \"$GITSTATE_ATTEMPT $GITSTATE_EXPECTED_SHA\" >> attempts.log\n{body}\n"),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    pub fn attempts(&self) -> Vec<String> {
        std::fs::read_to_string(self.path().join("attempts.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    pub fn config(&self, policy: &str, extra: &str) -> PathBuf {
        write_config(
            self.path(),
            &format!(
                r#"
[source]
repo = "{repo}"

[policy]
{policy}

[[environments]]
name = "production"
  [[environments.targets]]
  name = "web"
  [environments.targets.http]
  urls = ["{url}"]
  timeout = "2s"
  [environments.remediate]
  command = ["./deploy.sh"]
  timeout = "60s"

{extra}
"#,
                repo = self.repo.path().display(),
                url = self.server.url("/meta"),
            ),
        )
    }

    pub fn events(&self) -> Vec<Value> {
        std::fs::read_to_string(self.path().join(".gitstate/events.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    pub fn event_names(&self) -> Vec<String> {
        self.events().iter().map(|e| e["event"].as_str().unwrap().to_owned()).collect()
    }
}

/// Waits for `cond`, failing with `what` after `limit` (a condition, not a fixed sleep).
pub fn wait_for(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn status(cfg: &Path) -> Value {
    let r = with_config(cfg, &["status", "-o", "json"]);
    r.json()["environments"][0].clone()
}

/// A running `gitstate watch`, killed on drop.
pub struct Watching {
    pub child: Child,
    pub port: u16,
}

impl Watching {
    /// Sends SIGTERM and waits for the exit code, failing after `limit`.
    pub fn terminate(&mut self, limit: Duration) -> Option<i32> {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code();
            }
            assert!(start.elapsed() < limit, "watch did not stop within {limit:?} of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn watch(cfg: &Path) -> Watching {
    let port = gitstate_testkit::free_port();
    let child = gitstate()
        .args(["watch", "--listen", &format!("127.0.0.1:{port}"), "-c"])
        .arg(cfg)
        .stdout(Stdio::null())
        // GITSTATE_TEST_LOG=1 shows watch's log while debugging a test.
        .stderr(if std::env::var_os("GITSTATE_TEST_LOG").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .spawn()
        .unwrap();
    let w = Watching { child, port };
    wait_for(Duration::from_secs(30), "watch to be ready", || {
        matches!(http_get(port, "/readyz"), Ok((200, _)))
    });
    w
}

pub fn metrics(w: &Watching) -> String {
    let (status, body) = http_get(w.port, "/metrics").unwrap();
    assert_eq!(status, 200);
    body
}

/// The passes `watch` has run (its `gitstate_reconcile_passes_total`, every result).
pub fn passes(w: &Watching) -> f64 {
    passes_in(&metrics(w))
}

/// `POST` to 127.0.0.1:`port`: the status code.
pub fn http_post(port: u16, path: &str, headers: &[(&str, String)], body: &[u8]) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}
