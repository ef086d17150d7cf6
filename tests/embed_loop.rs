//! `examples/embed_loop.rs` as a deploy tool would build it: in a crate of its own outside
//! the workspace, depending on the facade by path with the `runtime`, `http` and `process`
//! features, tokio and tracing-subscriber, and nothing else (offline, sharing the
//! workspace's target dir and lock file, so that it costs seconds). Then run: the ref
//! moves, the deploy command runs with the new commit, the target converges, SIGTERM
//! ends it with exit 0.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gitstate_testkit::{Behavior, Repo, TestServer};

const REF: &str = "refs/heads/environments/production";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The workspace's target directory, as the running test found it.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from)
}

/// Builds the example in a crate outside the workspace; returns the binary.
fn build_outside(dir: &Path) -> PathBuf {
    let manifest = format!(
        r#"[package]
name = "embed-loop-outside"
version = "0.0.0"
edition = "2024"
publish = false

[[bin]]
name = "embed_loop"
path = "{example}"

[dependencies]
gitstate = {{ path = "{root}", features = ["runtime", "http", "process"] }}
tokio = {{ version = "1", features = ["macros", "rt-multi-thread", "signal"] }}
tracing-subscriber = "0.3"

[workspace]
"#,
        example = root().join("examples/embed_loop.rs").display(),
        root = root().display(),
    );
    std::fs::write(dir.join("Cargo.toml"), manifest).unwrap();
    std::fs::copy(root().join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(&cargo)
        .args(["build", "--offline", "--quiet"])
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "building outside the workspace failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // What the crate depends on: the facade, tokio and tracing-subscriber; no CLI, no
    // PostgreSQL client.
    let tree = Command::new(&cargo)
        .args(["tree", "--offline", "--prefix", "none", "--format", "{p}"])
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target_dir())
        .output()
        .unwrap();
    let tree = String::from_utf8_lossy(&tree.stdout);
    for absent in ["clap ", "tokio-postgres ", "gitstate-cli ", "gitstate-postgres "] {
        assert!(!tree.contains(absent), "{absent}in the embed example's tree:\n{tree}");
    }
    assert!(tree.contains("gitstate-runtime "), "{tree}");
    target_dir().join("debug/embed_loop")
}

/// Waits for `f`, or fails showing the program's log.
fn wait_for(what: &str, log: &Path, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        let log = || std::fs::read_to_string(log).unwrap_or_default();
        assert!(Instant::now() < deadline, "timed out waiting for {what}; its log:\n{}", log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_embed_example_builds_outside_the_workspace_and_runs_the_loop() {
    let outside = tempfile::tempdir().unwrap();
    let bin = build_outside(outside.path());

    let repo = Repo::new();
    let c = repo.commits(2, "release");
    repo.update_ref(REF, &c[0]);
    let work = tempfile::tempdir().unwrap();
    let served = work.path().join("served.json");
    std::fs::write(&served, format!("{{\"sha\":\"{}\"}}", c[0])).unwrap();
    let server = TestServer::start_background();
    server.route("/meta", Behavior::File(served.clone()));
    // The deploy: serve what it was asked to deploy, and note each call.
    let deploy = work.path().join("deploy.sh");
    std::fs::write(
        &deploy,
        "#!/bin/sh\necho \"$GITSTATE_EXPECTED_SHA $GITSTATE_ATTEMPT $GITSTATE_ENVIRONMENT\" >> calls\n\
         printf '{\"sha\":\"%s\"}' \"$GITSTATE_EXPECTED_SHA\" > served.tmp && mv served.tmp served.json\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&deploy, std::fs::Permissions::from_mode(0o755)).unwrap();

    let state = work.path().join("state");
    let log = work.path().join("embed_loop.log");
    let mut child = Command::new(&bin)
        .arg(repo.path())
        .arg(REF)
        .arg(server.url("/meta"))
        .arg(&state)
        .args(["--", "./deploy.sh"])
        .current_dir(work.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let events = state.join("events.jsonl");
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();

    // In sync from the start: nothing deployed. Then the ref moves.
    wait_for("the first pass", &log, Duration::from_secs(30), || server.hits("/meta") > 0);
    repo.update_ref(REF, &c[1]);
    wait_for("the deploy of the new commit", &log, Duration::from_secs(30), || {
        read(&work.path().join("calls")).contains(&format!("{} 1 production", c[1]))
    });
    wait_for("convergence", &log, Duration::from_secs(30), || {
        read(&events).lines().any(|l| l.contains("\"converged\"") && l.contains(&c[1]))
    });
    assert_eq!(read(&work.path().join("calls")).lines().count(), 1, "one deploy");
    assert!(read(&served).contains(&c[1]));

    sigterm(child.id());
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "still running 5 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0), "SIGTERM ends it cleanly");
    assert!(read(&events).contains("remediation_finished"), "{}", read(&events));
}

/// SIGTERM, through the `kill` command (the facade's tests depend on no signal crate).
fn sigterm(pid: u32) {
    let ok = Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap().success();
    assert!(ok);
}
