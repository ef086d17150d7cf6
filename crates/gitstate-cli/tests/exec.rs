//! The exec probe (SPEC §10) with real processes: every outcome a script can give, with
//! the exact status and error.

mod common;

use common::*;
use serde_json::Value;

/// A repository (production at c3), and scripts in its directory.
struct World {
    repo: Repo,
    c: Vec<String>,
}

fn world() -> World {
    let repo = Repo::new();
    let c = repo.commits(4, "c");
    repo.update_ref(REF, &c[3]);
    World { repo, c }
}

impl World {
    fn script(&self, name: &str, body: &str) {
        let p = self.repo.path().join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// One environment per (name, exec table) and a check's JSON.
    fn check(&self, targets: &[(&str, &str)]) -> Value {
        let mut cfg = String::from("[source]\nrepo = \".\"\n\n[[environments]]\nname = \"production\"\n");
        for (name, table) in targets {
            cfg.push_str(&format!(
                "  [[environments.targets]]\n  name = \"{name}\"\n  [environments.targets.exec]\n{table}\n"
            ));
        }
        let path = write_config(self.repo.path(), &cfg);
        let r = with_config(&path, &["check", "-o", "json"]);
        assert!(r.code == 0 || r.code == 1, "{}", r.stderr);
        r.json()
    }
}

fn target<'a>(j: &'a Value, name: &str) -> &'a Value {
    j["environments"][0]["targets"].as_array().unwrap().iter().find(|t| t["name"] == name).unwrap()
}

#[test]
fn reports_in_every_format_are_read_like_http_bodies() {
    let w = world();
    w.script(
        "plain.sh",
        &format!(
            "echo '  {}  '; echo \"env=$GITSTATE_ENVIRONMENT target=$GITSTATE_TARGET\" >&2",
            &w.c[3][..8]
        ),
    );
    w.script("json.sh", &format!("printf '{{\"build\": {{\"sha\": \"{}\"}}}}'", w.c[1]));
    w.script(
        "lines.sh",
        &format!("echo 'i-1 {}'; echo; echo 'i-2 {}'; echo 'i-3 {}'", w.c[3], w.c[3], w.c[2]),
    );
    w.script("args.sh", "echo \"$1\" | grep -q '^production$' && git rev-parse HEAD");
    w.script("stdin.sh", &format!("if read line; then echo stdin-open; else echo {}; fi", w.c[3]));
    let j = w.check(&[
        ("plain", "  command = [\"./plain.sh\"]"),
        ("json", "  command = [\"./json.sh\"]\n  sha_pointer = \"/build/sha\""),
        ("lines", "  command = [\"./lines.sh\"]\n  format = \"lines\""),
        ("args", "  command = [\"./args.sh\", \"{environment}\"]"),
        ("stdin", "  command = [\"./stdin.sh\"]"),
    ]);
    let plain = target(&j, "plain");
    assert_eq!(
        (plain["kind"].as_str(), plain["status"].as_str()),
        (Some("exec"), Some("in_sync")),
        "{plain}"
    );
    assert_eq!(plain["instances"][0]["id"], "plain", "with report, the instance is the target");
    let json = target(&j, "json");
    assert_eq!(
        (json["status"].as_str(), json["instances"][0]["commits_behind"].as_u64()),
        (Some("behind"), Some(2))
    );
    let lines = target(&j, "lines");
    let got: Vec<(&str, &str)> = lines["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["id"].as_str().unwrap(), i["status"].as_str().unwrap()))
        .collect();
    assert_eq!(got, [("i-1", "in_sync"), ("i-2", "in_sync"), ("i-3", "behind")]);
    assert_eq!(
        target(&j, "args")["status"],
        "in_sync",
        "{{environment}} is substituted: {}",
        target(&j, "args")
    );
    assert_eq!(target(&j, "stdin")["status"], "in_sync", "stdin is closed");
}

#[test]
fn failures_are_unreachable_or_invalid_with_the_reason() {
    let w = world();
    let pidfile = w.repo.path().join("grandchild.pid");
    w.script("slow.sh", &format!("sleep 600 & echo $! > {}; sleep 600", pidfile.display()));
    w.script("huge.sh", "head -c 10000000 /dev/zero | tr '\\0' 'a'");
    w.script("bytes.sh", "printf 'i-1 \\377\\376\\n'");
    w.script(
        "fails.sh",
        "echo 'cannot reach https://bot:s3cret@git.example.com/r.git?token=abc' >&2; exit 3",
    );
    w.script("garbage.sh", "echo 'not a commit'");
    let j = w.check(&[
        ("slow", "  command = [\"./slow.sh\"]\n  timeout = \"1s\""),
        ("huge", "  command = [\"./huge.sh\"]"),
        ("bytes", "  command = [\"./bytes.sh\"]\n  format = \"lines\""),
        ("fails", "  command = [\"./fails.sh\"]"),
        ("garbage", "  command = [\"./garbage.sh\"]"),
        ("missing", "  command = [\"./no-such-script\"]"),
    ]);
    let err = |name: &str| -> (String, String) {
        let t = target(&j, name);
        let e = t["error"].as_str().or(t["instances"][0]["error"].as_str()).unwrap_or_default().to_owned();
        (t["status"].as_str().unwrap().to_owned(), e)
    };
    assert_eq!(
        err("slow"),
        ("unreachable".into(), "./slow.sh: no answer within 1s; killed with its process group".into())
    );
    let pid = std::fs::read_to_string(&pidfile).unwrap().trim().to_owned();
    let gone = (0..100).any(|_| {
        let alive = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "));
        if alive {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        !alive
    });
    assert!(gone, "the grandchild {pid} was killed with the group");
    assert_eq!(
        err("huge"),
        ("invalid".into(), "./huge.sh printed more than 65536 bytes; read no further".into())
    );
    assert_eq!(err("bytes"), ("invalid".into(), "output is not UTF-8 (at byte 4)".into()));
    let (status, e) = err("fails");
    assert_eq!(status, "unreachable");
    assert_eq!(e, "./fails.sh exited 3: cannot reach https://***@git.example.com/r.git?token=***");
    assert_eq!(err("garbage").0, "invalid");
    let (status, e) = err("missing");
    assert_eq!(status, "unreachable");
    assert!(e.starts_with("cannot run ./no-such-script: "), "{e}");
}

/// `[[discover]]`: `{environment}` in an exec command is each discovered environment.
#[test]
fn discovered_environments_substitute_their_name() {
    let w = world();
    w.repo.update_ref("refs/heads/environments/staging", &w.c[2]);
    w.script("which.sh", "git rev-parse \"environments/$1\"");
    let cfg = write_config(
        w.repo.path(),
        "[source]\nrepo = \".\"\n[[discover]]\n  [[discover.targets]]\n  name = \"api\"\n  [discover.targets.exec]\n  command = [\"./which.sh\", \"{environment}\"]\n",
    );
    let r = with_config(&cfg, &["check", "-o", "json"]);
    assert_eq!(r.code, 0, "each runs what its own ref says: {}", r.stdout);
}
