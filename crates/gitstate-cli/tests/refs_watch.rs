//! SPEC §19: what `watch` reads when refs move. With refs polled only every ten minutes,
//! file-system notification on a local repository names the loose ref that moved (the
//! poll reads that ref, not every ref) and asks for a whole listing for anything else — a
//! new ref, packed refs; a push webhook naming one ref of a remote does not
//! hide another that moved beside it.

mod common;

use std::time::Duration;

use common::*;
use gitstate_testkit::http_get;
use serde_json::Value;

const SLOW_POLLS: &str = "[watch]\ninterval = \"10m\"\nref_poll = \"10m\"\njitter = \"0%\"";

fn status_of(w: &Watching) -> Value {
    let (code, body) = http_get(w.port, "/status").unwrap();
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn names(w: &Watching) -> Vec<String> {
    status_of(w)["environments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect()
}

/// A deploy script that appends the environment it deploys to `deploys.log`.
fn recording_deploy(dir: &std::path::Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let log = dir.join("deploys.log");
    let p = dir.join("deploy.sh");
    std::fs::write(&p, format!("#!/bin/sh\necho \"$GITSTATE_ENVIRONMENT\" >> {}\n", log.display())).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    log
}

fn deployed(log: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_to_string(log).unwrap_or_default().lines().map(str::to_owned).collect();
    v.sort();
    v
}

fn discover_config(repo: &str, url: &str, extra: &str) -> String {
    format!(
        r#"
[source]
repo = "{repo}"
[policy]
grace = "0s"
settle = "1h"
backoff = "1h"
backoff_max = "1h"
max_attempts = 1
[[discover]]
ref_prefix = "refs/heads/shop/"
  [[discover.targets]]
  name = "web"
  [discover.targets.http]
  urls = ["{url}"]
  [discover.remediate]
  command = ["./deploy.sh"]
{SLOW_POLLS}
{extra}
"#
    )
}

#[test]
fn a_moved_loose_ref_is_read_alone_and_anything_else_is_a_whole_listing() {
    let repo = Repo::new();
    let c = repo.commits(3, "c");
    let targets = TestServer::start_background();
    for n in ["a", "b", "c", "d"] {
        targets.route(&format!("/{n}/meta"), meta(&c[1]));
    }
    for n in ["a", "b", "c"] {
        repo.update_ref(&format!("refs/heads/shop/{n}"), &c[1]);
    }
    let dir = tempfile::tempdir().unwrap();
    let log = recording_deploy(dir.path());
    let cfg = write_config(
        dir.path(),
        &discover_config(&repo.path().display().to_string(), &targets.url("/{environment}/meta"), ""),
    );
    let w = watch(&cfg);
    assert_eq!(names(&w), ["a", "b", "c"]);

    // A loose ref moves: its environment is remediated, no other.
    repo.update_ref("refs/heads/shop/b", &c[2]);
    wait_for(Duration::from_secs(20), "b's deploy", || deployed(&log) == ["b"]);

    // A new ref: a whole listing finds its environment.
    repo.update_ref("refs/heads/shop/d", &c[1]);
    wait_for(Duration::from_secs(20), "d discovered", || names(&w).len() == 4);

    // Packed: the refs move inside packed-refs (no loose file), seen by a whole listing.
    repo.git(&["pack-refs", "--all"]);
    let packed = std::fs::read_to_string(repo.path().join(".git/packed-refs")).unwrap();
    let moved =
        packed.replace(&format!("{} refs/heads/shop/c", c[1]), &format!("{} refs/heads/shop/c", c[2]));
    assert_ne!(moved, packed);
    let tmp = repo.path().join(".git/packed-refs.new");
    std::fs::write(&tmp, moved).unwrap();
    std::fs::rename(&tmp, repo.path().join(".git/packed-refs")).unwrap();
    wait_for(Duration::from_secs(20), "c's deploy", || deployed(&log) == ["b", "c"]);

    // Loose again after packing: read alone, like the first.
    repo.update_ref("refs/heads/shop/a", &c[2]);
    wait_for(Duration::from_secs(20), "a's deploy", || deployed(&log) == ["a", "b", "c"]);
}

/// A push webhook names one ref; another moved in the same push (or before it, unseen):
/// the listing the webhook's poll reads is compared whole, so both are remediated. Before,
/// the poll looked only at the named ref and kept the listing as seen: the other's move
/// was lost until it moved again.
#[test]
fn a_push_naming_one_ref_does_not_hide_another_that_moved() {
    let repo = Repo::new();
    let c = repo.commits(3, "c");
    let targets = TestServer::start_background();
    for n in ["a", "b"] {
        targets.route(&format!("/{n}/meta"), meta(&c[1]));
        repo.update_ref(&format!("refs/heads/shop/{n}"), &c[1]);
    }
    let base = tempfile::tempdir().unwrap();
    gitstate_testkit::git(base.path(), &["init", "-q", "--bare", "repo.git"]);
    let bare = base.path().join("repo.git").display().to_string();
    let push = || repo.git(&["push", "-q", "-f", &bare, "refs/heads/*:refs/heads/*"]);
    push();
    let daemon = gitstate_testkit::git_daemon(base.path());
    let dir = tempfile::tempdir().unwrap();
    let log = recording_deploy(dir.path());
    let hook_port = gitstate_testkit::free_port();
    let secret = "a-webhook-secret-of-some-length";
    let cfg = write_config(
        dir.path(),
        &discover_config(
            &format!("git://127.0.0.1:{}/repo.git", daemon.port),
            &targets.url("/{environment}/meta"),
            &format!("[watch.webhook]\nlisten = \"127.0.0.1:{hook_port}\"\nsecret = \"{secret}\"\n"),
        ),
    );
    let w = watch(&cfg);
    wait_for(Duration::from_secs(20), "a and b", || names(&w) == ["a", "b"]);

    for n in ["a", "b"] {
        repo.update_ref(&format!("refs/heads/shop/{n}"), &c[2]);
    }
    push();
    let body = format!(
        r#"{{"ref":"refs/heads/shop/a","before":"{}","after":"{}","repository":{{"full_name":"acme/shop"}},"commits":[]}}"#,
        c[1], c[2]
    )
    .into_bytes();
    let sig = gitstate_cli::listener::webhook::sign(secret, &body);
    let headers = [("X-GitHub-Event", "push".to_owned()), ("X-Hub-Signature-256", format!("sha256={sig}"))];
    assert_eq!(http_post(hook_port, "/hooks/git", &headers, &body), 202);
    wait_for(Duration::from_secs(20), "both deploys", || deployed(&log) == ["a", "b"]);
}
