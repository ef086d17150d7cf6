//! The other one-shot commands end to end: configuration errors (file:line:column),
//! `${VAR}` expansion and secrets, `validate`, `expected`, `stamp`, `completions`, `--help`.

mod common;

use common::*;
use std::process::Command;

fn repo_with_env() -> (Repo, Vec<String>) {
    let repo = Repo::new();
    let c = repo.commits(3, "c");
    repo.update_ref(REF, &c[2]);
    (repo, c)
}

const ENV: &str = r#"
[[environments]]
name = "production"
  [[environments.targets]]
  name = "web"
  [environments.targets.http]
  urls = ["http://127.0.0.1:9/meta"]
"#;

#[test]
fn unknown_keys_name_file_line_and_column() {
    let (repo, _) = repo_with_env();
    let cfg = write_config(
        repo.path(),
        &format!("[source]\nrepo = \".\"\n\n[policy]\ngrace = \"1m\"\ngracee = \"2m\"\n{ENV}"),
    );
    let r = with_config(&cfg, &["validate"]);
    assert_eq!(r.code, 2);
    let want = format!("{}:6:1: unknown field `gracee`", cfg.display());
    assert!(r.stderr.contains(&want), "{}", r.stderr);
    // Nothing was touched: no state dir appeared.
    assert!(!repo.path().join(".gitstate").exists());
}

#[test]
fn bad_values_are_located_too() {
    let (repo, _) = repo_with_env();
    let cases = [
        ("[policy]\ngrace = \"soon\"\n", 2, "invalid duration \"soon\""),
        ("[policy]\nmode = \"yolo\"\n", 2, "unknown variant `yolo`"),
        // A rule between keys points at the key it names (here the longer one).
        (
            "[policy]\nbackoff = \"10m\"\nbackoff_max = \"1m\"\n",
            3,
            "backoff_max (1m) is shorter than backoff",
        ),
        ("[policy]\nbackoff = \"1h\"\n", 2, "backoff_max (30m) is shorter than backoff (1h)"),
        ("[[environments]]\nname = \"bad/name\"\n", 2, "invalid environment name \"bad/name\""),
        ("[[environments]]\nname = \"x\"\nref = \"refs/heads/a..b\"\n", 3, "not a valid Git ref name"),
        (
            "[[environments]]\nname = \"x\"\n  [[environments.targets]]\n  name = \"t\"\n  [environments.targets.http]\n  urls = [\"ftp://h/x\"]\n",
            6,
            "must be http:// or https://",
        ),
        ("[[environments]]\nname = \"x\"\n  [[environments.targets]]\n  name = \"t\"\n", 4, "exactly one of"),
        ("[watch]\nlisten = \"everywhere\"\n", 2, "not an address"),
        // Would overflow `Instant + timeout` (a panic) if let through.
        (
            "[[environments]]\nname = \"x\"\n  [[environments.targets]]\n  name = \"t\"\n  [environments.targets.http]\n  urls = [\"http://h/x\"]\n  timeout = \"300000000000y\"\n",
            7,
            "longer than 10 years",
        ),
        ("[policy]\nsettle = \"11y\"\n", 2, "duration \"11y\" is longer than 10 years"),
        // An environment's policy is merged over [policy]; errors still point at the key.
        (
            "[[environments]]\nname = \"x\"\n  [environments.policy]\n  settle = \"soon\"\n",
            4,
            "invalid duration \"soon\"",
        ),
        (
            "[[environments]]\nname = \"x\"\n  [environments.policy]\n  gracee = \"1m\"\n",
            4,
            "unknown field `gracee`",
        ),
        ("[[environments]]\nname = \"x\"\n  [environments.policy]\n  max_attempts = -1\n", 4, "max_attempts"),
    ];
    for (body, line, needle) in cases {
        let cfg = write_config(repo.path(), &format!("[source]\nrepo = \".\"\n{body}{ENV}"));
        let r = with_config(&cfg, &["validate"]);
        assert_eq!(r.code, 2, "{body}");
        assert!(r.stderr.contains(needle), "{body}: {}", r.stderr);
        if line > 0 {
            let at = format!("{}:{}:", cfg.display(), line + 2);
            assert!(r.stderr.contains(&at), "{body}: expected {at} in {}", r.stderr);
        }
    }
}

#[test]
fn variables_expand_and_secrets_never_come_back() {
    let (repo, c) = repo_with_env();
    let server = TestServer::start_background();
    server.route("/meta", meta(&c[2]));
    let cfg = write_config(
        repo.path(),
        "[source]\nrepo = \".\"\n[[environments]]\nname = \"production\"\n  [[environments.targets]]\n  name = \"web\"\n  [environments.targets.http]\n  urls = [\"http://user:pa55word@127.0.0.1:${META_PORT}/meta\"]\n  headers = { Authorization = \"Bearer ${STATUS_TOKEN}\" }\n",
    );
    // Unset: an error naming the variable, never an empty string.
    let r = run(gitstate()
        .args(["check", "-o", "json", "-c"])
        .arg(&cfg)
        .env_remove("STATUS_TOKEN")
        .env("META_PORT", server.port.to_string()));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("STATUS_TOKEN is not set"), "{}", r.stderr);
    assert!(r.stderr.contains(&format!("{}:9:31:", cfg.display())), "{}", r.stderr);

    let r = run(gitstate()
        .args(["check", "-o", "json", "-c"])
        .arg(&cfg)
        .env("STATUS_TOKEN", "t0psecret")
        .env("META_PORT", server.port.to_string()));
    assert_eq!(r.code, 0, "{}", r.stderr);
    for out in [&r.stdout, &r.stderr] {
        assert!(!out.contains("t0psecret") && !out.contains("pa55word"), "secret leaked: {out}");
    }
    assert!(r.stdout.contains("http://***@127.0.0.1"), "{}", r.stdout);
    let v = run(gitstate()
        .args(["validate", "-c"])
        .arg(&cfg)
        .env("STATUS_TOKEN", "t0psecret")
        .env("META_PORT", "1"));
    assert_eq!(v.code, 0, "{}", v.stderr);
    assert!(!v.stdout.contains("t0psecret"));
}

#[test]
fn config_is_found_by_flag_env_or_cwd() {
    let (repo, c) = repo_with_env();
    let cfg = write_config(repo.path(), &format!("[source]\nrepo = \".\"\n{ENV}"));
    let r = run(gitstate().args(["expected", "-o", "json"]).env("GITSTATE_CONFIG", &cfg));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["environments"][0]["expected"], c[2]);
    let r = run(gitstate().args(["expected"]).current_dir(repo.path()));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains(&c[2]) && r.stdout.contains(REF), "{}", r.stdout);
    let r = run(gitstate().args(["expected"]).current_dir(std::env::temp_dir()));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("gitstate.toml") && r.stderr.contains("cannot read"), "{}", r.stderr);
}

#[test]
fn validate_accepts_the_full_schema() {
    let (repo, _) = repo_with_env();
    std::fs::write(repo.path().join("ca.pem"), "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
        .unwrap();
    let cfg = write_config(
        repo.path(),
        r#"
[source]
repo = "."
ref_prefix = "refs/heads/environments/"

[policy]
mode = "remediate"
grace = "5m"
settle = "5m"
max_attempts = 3
backoff = "1m"
backoff_max = "30m"
unreachable_after = 3
on_diverged = "alarm"
renotify = "4h"

[[environments]]
name = "production"
ref = "environments/production"
  [environments.policy]
  grace = "0s"
  [[environments.targets]]
  name = "web"
  [environments.targets.http]
  urls = ["https://eu.example.com/.well-known/deployment-meta.json", "https://us.example.com/.well-known/deployment-meta.json"]
  sha_pointer = "/git/commit/id"
  timeout = "10s"
  max_bytes = 65536
  headers = { Authorization = "Bearer x" }
  ca_file = "ca.pem"
  follow_redirects = "same-host"
  [[environments.targets]]
  name = "workers"
  [environments.targets.aws]
  region = "eu-west-1"
  tags = { service = "workers", environment = ["production", "prod"] }
  resource_types = ["lambda:function", "ec2:instance"]
  sha_tag = "gitstate:sha"
  endpoint_url = "http://127.0.0.1:5000"
  [environments.remediate]
  command = ["./deploy.sh", "production"]
  timeout = "15m"

[[environments]]
name = "staging"
  [environments.remediate.webhook]
  url = "https://api.example.com/deploy"
  headers = { Authorization = "Bearer y" }
  body = '{"ref":"main","inputs":{"sha":"${GITSTATE_EXPECTED_SHA}"}}'

[[discover]]
ref_prefix = "refs/heads/previews/"
exclude = ["legacy-*"]
  [[discover.targets]]
  name = "web"
  [discover.targets.http]
  urls = ["https://{environment}.example.com/.well-known/deployment-meta.json"]
  [discover.remediate]
  command = ["./deploy.sh", "{environment}"]

[alerts]
[alerts.alertmanager]
url = "http://127.0.0.1:9093"
[alerts.webhook]
url = "https://hooks.example.com/services/T0/B0"
format = "slack"

[watch]
interval = "60s"
jitter = "10%"
ref_poll = "1s"
concurrency = 64
listen = "127.0.0.1:9464"

[state]
dir = ".gitstate"
"#,
    );
    let r = with_config(&cfg, &["validate"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("environment production -> environments/production"), "{}", r.stdout);
    assert!(r.stdout.contains("discover refs/heads/previews/*"), "{}", r.stdout);
}

#[test]
fn stamp_writes_deployment_meta() {
    let (repo, c) = repo_with_env();
    let r = run(gitstate().args(["stamp", "--repo"]).arg(repo.path()).args(["--environment", "production"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let j = r.json();
    assert_eq!(j["schema"], 1);
    assert_eq!(j["sha"], c[2]);
    assert_eq!(j["ref"], "refs/heads/main");
    assert_eq!(j["environment"], "production");
    j["built_at"].as_str().unwrap().parse::<jiff::Timestamp>().unwrap();

    let r = run(gitstate().args(["stamp", "--repo"]).arg(repo.path()).args([
        "--rev",
        "environments/production",
        "-o",
        "-",
    ]));
    assert_eq!(r.json()["ref"], REF);

    let r = run(gitstate().args(["stamp", "--repo"]).arg(repo.path()).args(["--rev", &c[0]]));
    let j = r.json();
    assert_eq!(
        (j["sha"].as_str(), j["ref"].is_null(), j["environment"].is_null()),
        (Some(c[0].as_str()), true, true)
    );

    let out = repo.path().join("public/.well-known");
    std::fs::create_dir_all(&out).unwrap();
    let file = out.join("deployment-meta.json");
    let stamp = |umask: &str| {
        run(Command::new("sh")
            .args(["-c", "umask $3 && exec \"$0\" stamp --repo \"$1\" -o \"$2\""])
            .arg(env!("CARGO_BIN_EXE_gitstate"))
            .arg(repo.path())
            .arg(&file)
            .arg(umask))
    };
    let r = stamp("022");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let written: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(written["sha"], c[2]);
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1, "no temporary file left behind");
    // Written for a web server running as another user to serve: 0644 less the umask.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o644);
    let r = stamp("027");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o640, "the umask applies");

    let r = run(gitstate().args(["stamp", "--repo"]).arg(repo.path()).args(["--rev", "no-such-rev"]));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("no-such-rev"), "{}", r.stderr);
    let r = run(gitstate().args(["stamp", "--repo"]).arg(repo.path()).args(["--environment", "bad name"]));
    assert_eq!(r.code, 2);
}

#[test]
fn completions_and_usage_errors() {
    let r = run(gitstate().args(["completions", "bash"]));
    assert_eq!(r.code, 0);
    assert!(
        r.stdout.contains("_gitstate()") && r.stdout.contains("check"),
        "{}",
        &r.stdout[..200.min(r.stdout.len())]
    );
    let r = run(gitstate().args(["check", "--bogus"]));
    assert_eq!(r.code, 2);
    let r = run(gitstate().args(["check", "-o", "yaml"]));
    assert_eq!(r.code, 2);
}

#[test]
fn help_snapshots() {
    let top = run(gitstate().arg("--help"));
    assert_eq!(top.code, 0);
    insta::assert_snapshot!("help", top.stdout);
    let check = run(gitstate().args(["check", "--help"]));
    insta::assert_snapshot!("help_check", check.stdout);
    let stamp = run(gitstate().args(["stamp", "--help"]));
    insta::assert_snapshot!("help_stamp", stamp.stdout);
}

#[test]
fn demo_shows_the_whole_story() {
    let r = run(gitstate().arg("demo"));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    for needle in [
        "in_sync",
        "3 commits behind: deploy pending",
        "deploy attempt 1: triggered",
        "convergence lag",
        "diverged",
        "ALARM diverged alarm",
        "deploy attempt 2: failed",
        "ALARM drift alarm",
        "$ gitstate retry production",
        "RESOLVED drift alarm for production resolved (converged)",
        "Watch it on the dashboard: http://127.0.0.1:",
        "ALARM degraded alarm",
        "gitstate: roll back ",
        "(degraded: 2 failed check run(s) during the soak; rolling back)",
        "by gitstate (loop): rolled back to ",
        "gitstate: adopt ",
        "nothing was redeployed",
        "production               running       1/1",
        "runs everywhere; the keys come from",
        "change failure rate 3/8",
    ] {
        assert!(r.stdout.contains(needle), "demo output lacks {needle:?}:\n{}", r.stdout);
    }
}

#[test]
fn the_example_configurations_are_valid() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let vars = [
        ("STATUS_TOKEN", "x"),
        ("DEPLOY_TOKEN", "y"),
        ("SLACK_WEBHOOK_URL", "https://hooks.example.com/T0/B0"),
    ];
    let r = run(gitstate().args(["validate", "-c"]).arg(root.join("examples/gitstate.toml")).envs(vars));
    assert_eq!(r.code, 0, "{}", r.stderr);
    // The ConfigMaps in the Kubernetes examples hold valid gitstate.toml files too.
    for example in ["deployment.yaml", "deployment-ha.yaml"] {
        let yaml = std::fs::read_to_string(root.join("examples/kubernetes").join(example)).unwrap();
        let start = yaml.find("gitstate.toml: |\n").unwrap() + "gitstate.toml: |\n".len();
        let body: String = yaml[start..]
            .lines()
            .take_while(|l| l.starts_with("    ") || l.is_empty())
            .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let cfg = write_config(dir.path(), &body);
        // The Secret the example mounts: a certificate and its key under tls/.
        let (cert, key) = gitstate_testkit::tls::self_signed_pem(&["gitstate.example.com"]);
        std::fs::create_dir_all(dir.path().join("tls")).unwrap();
        std::fs::write(dir.path().join("tls/tls.crt"), cert).unwrap();
        std::fs::write(dir.path().join("tls/tls.key"), key).unwrap();
        let r = run(gitstate()
            .args(["validate", "-c"])
            .arg(&cfg)
            .envs(vars)
            .env("DATABASE_URL", "postgresql://gitstate@db/gitstate"));
        assert_eq!(r.code, 0, "{example}: {}\n{body}", r.stderr);
        // Listening beyond loopback, with TLS and users: nothing to warn of (SPEC §20).
        assert!(!r.stderr.contains("warning"), "{example}: {}", r.stderr);
    }
}

#[test]
fn the_postgres_settings_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let base = "[source]\nrepo = \".\"\n[[environments]]\nname = \"production\"\n  [[environments.targets]]\n  name = \"web\"\n  [environments.targets.http]\n  urls = [\"http://127.0.0.1:9/meta\"]\n";
    for (state, error) in [
        ("cluster = \"eu\"", "state.cluster needs state.postgres"),
        ("postgres = \"${NOPE_DATABASE_URL}\"", "NOPE_DATABASE_URL is not set"),
        ("postgres = \"postgresql://db/x\"\ncluster = \"eu west\"", "must be 1 to 63 of"),
        ("postgres = \"postgresql://db/x\"\nfailover = \"100ms\"", "state.failover must be at least 1s"),
        ("shards = \"auto\"", "state.shards needs state.postgres"),
        ("postgres = \"postgresql://db/x\"\nshards = \"on\"", "must be \"auto\" or \"off\""),
        ("postgres = \"postgresql://db/x\"\nreplica = \"\"", "state.replica \"\" must be 1 to 253"),
    ] {
        let cfg = write_config(dir.path(), &format!("{base}[state]\n{state}\n"));
        let r = run(gitstate().args(["validate", "-c"]).arg(&cfg).env_remove("NOPE_DATABASE_URL"));
        assert_eq!(r.code, 2, "{state}");
        assert!(r.stderr.contains(error) && r.stderr.contains("gitstate.toml:"), "{state}: {}", r.stderr);
    }
}

/// An `ssh://` source logs in with `GIT_SSH_COMMAND` (or `GIT_SSH`), as git does.
#[test]
fn expected_from_an_ssh_remote_uses_git_ssh_command() {
    let (repo, c) = repo_with_env();
    let bare = tempfile::tempdir().unwrap();
    let served = bare.path().join("deploy.git");
    gitstate_testkit::git(
        bare.path(),
        &["clone", "-q", "--bare", &repo.path().display().to_string(), "deploy.git"],
    );
    repo.git(&["push", "-q", &served.display().to_string(), &format!("{REF}:{REF}")]);
    let sshd = gitstate_testkit::SshServer::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &format!("[source]\nrepo = \"{}\"\n{ENV}", sshd.url(&served)));

    let r = run(gitstate()
        .args(["expected", "-o", "json", "-c"])
        .arg(&cfg)
        .env("GIT_SSH_COMMAND", sshd.ssh_command()));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["environments"][0]["expected"], c[2]);

    // GIT_SSH names a program, not a shell command: a wrapper script with the options.
    let wrapper = dir.path().join("my ssh");
    std::fs::write(&wrapper, format!("#!/bin/sh\nexec {} \"$@\"\n", sshd.ssh_command())).unwrap();
    std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let r = run(gitstate().args(["expected", "-o", "json", "-c"]).arg(&cfg).env("GIT_SSH", &wrapper));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["environments"][0]["expected"], c[2]);
}

/// A `file://` source run from a git hook or under `git -c`: variables meant for the outer
/// repository (`GIT_DIR`, `GIT_CONFIG_PARAMETERS`, ...) must not reach the spawned
/// `git upload-pack`, as git itself clears them for a local transport. Here they would
/// hide the environment refs.
#[test]
fn a_file_url_source_ignores_the_outer_repositorys_environment() {
    let (repo, c) = repo_with_env();
    let other = Repo::new();
    other.commits(1, "other");
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", repo.path().display());
    let cfg = write_config(dir.path(), &format!("[source]\nrepo = \"{url}\"\n{ENV}"));
    let r = run(gitstate()
        .args(["expected", "-o", "json", "-c"])
        .arg(&cfg)
        .env("GIT_DIR", other.path().join(".git"))
        .env("GIT_CONFIG_PARAMETERS", "'uploadpack.hiderefs'='refs/heads'"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["environments"][0]["expected"], c[2]);
}

/// `expected -o json` over explicit environments (one with a missing ref) and a
/// `[[discover]]` block, against a model made from `git for-each-ref`: explicit rows
/// first, then every listed ref whose rest is a valid name and not an explicit one, in
/// ref order; a missing ref is a row with an error, and exit 2.
#[test]
fn expected_json_is_what_git_lists() {
    let repo = Repo::new();
    let c = repo.commits(4, "c");
    for (i, name) in
        ["a1", "b.2", "c_3", "production", "x+y", "nested/deep", "_lead", "z-9"].iter().enumerate()
    {
        repo.update_ref(&format!("refs/heads/environments/{name}"), &c[i % 4]);
    }
    repo.git(&["pack-refs", "--all"]);
    // Loose refs over packed ones, and one only loose.
    repo.update_ref("refs/heads/environments/a1", &c[3]);
    repo.update_ref("refs/heads/environments/m", &c[2]);
    repo.update_ref("refs/heads/environmentsX", &c[1]);
    let cfg = write_config(
        repo.path(),
        &format!(
            "[source]\nrepo = \".\"\n{ENV}\n[[environments]]\nname = \"gone\"\nref = \"refs/heads/nope\"\n\
             [[discover]]\n  [[discover.targets]]\n  name = \"web\"\n  [discover.targets.http]\n  urls = [\"http://127.0.0.1:9/{{environment}}\"]\n"
        ),
    );
    let r = with_config(&cfg, &["expected", "-o", "json"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("error: environment gone:"), "{}", r.stderr);

    // The model.
    let mut want = vec![
        serde_json::json!({"name": "production", "ref": REF, "expected": repo.git(&["rev-parse", REF]).trim()}),
    ];
    let listed = repo.git(&["for-each-ref", "--format=%(objectname) %(refname)", "refs/heads/environments/"]);
    for line in listed.lines() {
        let (id, name) = line.split_once(' ').unwrap();
        let rest = name.strip_prefix("refs/heads/environments/").unwrap();
        let valid = rest.starts_with(|ch: char| ch.is_ascii_alphanumeric())
            && rest.len() <= 63
            && rest.chars().all(|ch| ch.is_ascii_alphanumeric() || "._-".contains(ch));
        if valid && rest != "production" {
            want.push(serde_json::json!({"name": rest, "ref": name, "expected": id}));
        }
    }
    let got = r.json()["environments"].as_array().unwrap().clone();
    assert_eq!(got[1]["name"], "gone");
    assert_eq!(got[1]["expected"], serde_json::Value::Null);
    assert!(got[1]["error"].as_str().unwrap().contains("refs/heads/nope"), "{}", got[1]);
    let got: Vec<_> = got.into_iter().enumerate().filter(|(i, _)| *i != 1).map(|(_, v)| v).collect();
    assert_eq!(got, want);
    assert_eq!(got.len(), 6, "production, a1, b.2, c_3, m, z-9");
}

/// A build without the `aws` feature refuses a configuration naming an AWS target with a
/// config error that names the file, the line and the feature — `validate` and every
/// command that loads it. Runs in CI's `--no-default-features` step (`.ci/run`).
#[cfg(not(feature = "aws"))]
#[test]
fn without_the_aws_feature_an_aws_target_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let repo = gitstate_testkit::Repo::new();
    let cfg = write_config(
        dir.path(),
        &format!(
            "[source]\nrepo = \"{}\"\n[[environments]]\nname = \"production\"\n  [[environments.targets]]\n  name = \"workers\"\n  [environments.targets.aws]\n  region = \"eu-west-1\"\n  tags = {{ service = \"workers\" }}\n",
            repo.path().display()
        ),
    );
    for cmd in [&["validate"][..], &["check"], &["reconcile", "--dry-run"]] {
        let r = run(gitstate().args(cmd).arg("-c").arg(&cfg));
        assert_eq!(r.code, 2, "{cmd:?}: {}", r.stderr);
        assert!(r.stderr.contains("built without the AWS probe"), "{cmd:?}: {}", r.stderr);
        assert!(r.stderr.contains("gitstate.toml:"), "{cmd:?} names the file and line: {}", r.stderr);
        assert!(r.stderr.contains("`aws`"), "{cmd:?} names the feature: {}", r.stderr);
    }
}

/// A reader that went away (`gitstate completions bash | head`) is not a panic: the
/// output is given up and the command exits as it would have (found by the book's
/// writing, which piped it).
#[test]
fn a_closed_stdout_is_no_panic() {
    let (repo, _) = repo_with_env();
    let cfg = write_config(repo.path(), &format!("[source]\nrepo = \".\"\n{ENV}"));
    let cfg = cfg.to_str().unwrap();
    for args in [
        vec!["completions", "bash"],
        vec!["validate", "-c", cfg],
        vec!["suspend", "-c", cfg, "production"],
        vec!["resume", "-c", cfg, "production"],
        vec!["expected", "-c", cfg],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = gitstate().args(&args).stdout(writer).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    }
}

/// A timeout of zero would kill a deploy, a webhook or an AWS call before it starts: every
/// timeout refuses it, as the HTTP and exec targets' always did.
#[test]
fn a_zero_timeout_is_refused_everywhere() {
    let (repo, _) = repo_with_env();
    let target = "[[environments]]\nname = \"x\"\n  [[environments.targets]]\n  name = \"t\"\n";
    let cases = [
        format!("{ENV}  [environments.remediate]\n  command = [\"./deploy.sh\"]\n  timeout = \"0s\"\n"),
        format!(
            "{ENV}  [environments.remediate]\n  timeout = \"0s\"\n  [environments.remediate.webhook]\n  url = \"http://127.0.0.1:9/deploy\"\n"
        ),
        format!(
            "{ENV}  [environments.remediate.webhook]\n  url = \"http://127.0.0.1:9/deploy\"\n  timeout = \"0s\"\n"
        ),
        format!(
            "{target}  [environments.targets.aws]\n  region = \"eu-west-1\"\n  tags = {{ a = \"b\" }}\n  timeout = \"0s\"\n"
        ),
    ];
    for body in cases {
        if body.contains("aws") && !cfg!(feature = "aws") {
            continue;
        }
        let cfg = write_config(repo.path(), &format!("[source]\nrepo = \".\"\n{body}"));
        let r = with_config(&cfg, &["validate"]);
        assert_eq!(r.code, 2, "{body}: {}", r.stdout);
        assert!(r.stderr.contains("timeout must be more than 0s"), "{body}: {}", r.stderr);
    }
}

/// An alarm sink serves every environment: `{environment}` in its URL was silently
/// replaced by nothing; now it is an error at its place.
#[test]
fn environment_in_an_alarm_sinks_url_is_refused() {
    let (repo, _) = repo_with_env();
    for sink in [
        "[alerts.alertmanager]\nurl = \"http://am-{environment}.internal:9093\"\n",
        "[[alerts.webhook]]\nurl = \"https://hooks.example.com/{environment}\"\n",
    ] {
        let cfg = write_config(repo.path(), &format!("[source]\nrepo = \".\"\n{ENV}\n{sink}"));
        let r = with_config(&cfg, &["validate"]);
        assert_eq!(r.code, 2, "{sink}: {}", r.stdout);
        assert!(
            r.stderr.contains("{environment} has no value in an alarm sink's URL"),
            "{sink}: {}",
            r.stderr
        );
    }
}
