//! The AWS resource-tag probe end to end, against the moto AWS API emulator (started here
//! on an ephemeral 127.0.0.1 port), with resources seeded through its own API.

mod common;

use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;
use gitstate_testkit::Resource;
use gitstate_testkit::moto::{Moto, REGION, tags};

fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(Moto::start)
}

/// `gitstate` with test credentials for the emulator and nothing from the machine.
fn aws_gitstate(cfg: &std::path::Path, args: &[&str]) -> Run {
    let mut cmd = gitstate();
    aws_env(&mut cmd);
    run(cmd.args(args).arg("-c").arg(cfg))
}

fn aws_env(cmd: &mut Command) {
    cmd.env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN");
}

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

fn aws_config(w: &World, target: &str) -> std::path::PathBuf {
    write_config(
        w.repo.path(),
        &format!(
            "[source]\nrepo = \".\"\n[[environments]]\nname = \"production\"\n  [[environments.targets]]\n  name = \"workers\"\n  [environments.targets.aws]\n  region = \"{REGION}\"\n  endpoint_url = \"{}\"\n  timeout = \"20s\"\n{target}\n",
            moto().url()
        ),
    )
}

fn statuses(j: &serde_json::Value) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = j["environments"][0]["targets"][0]["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["id"].as_str().unwrap().to_owned(), i["status"].as_str().unwrap().to_owned()))
        .collect();
    v.sort();
    v
}

#[test]
fn a_fleet_in_sync_one_stale_instance_and_an_untagged_one() {
    let w = world();
    let arns = moto().create(&[
        Resource::Ec2 { count: 3, tags: tags(&[("service", "fleet-a"), ("gitstate:sha", &w.c[3])]) },
        Resource::Ec2 { count: 1, tags: tags(&[("service", "fleet-a"), ("gitstate:sha", &w.c[1])]) },
    ]);
    let cfg = aws_config(&w, "  tags = { service = \"fleet-a\" }");
    let r = aws_gitstate(&cfg, &["check", "-o", "json"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let j = r.json();
    let target = &j["environments"][0]["targets"][0];
    assert_eq!(target["kind"], "aws");
    assert_eq!(target["status"], "behind");
    let stale = target["instances"].as_array().unwrap().iter().find(|i| i["id"] == arns[3]).unwrap();
    assert_eq!((stale["status"].as_str(), stale["commits_behind"].as_u64()), (Some("behind"), Some(2)));
    assert_eq!(statuses(&j).iter().filter(|(_, s)| s == "in_sync").count(), 3);

    // Re-tag the stale one: the whole fleet is in sync.
    moto().retag(&arns[3..4], &tags(&[("gitstate:sha", &w.c[3])]));
    let r = aws_gitstate(&cfg, &["check", "-o", "json"]);
    assert_eq!(r.code, 0, "{}", r.stdout);

    // A resource that matches the filters but lacks the SHA tag is `missing`.
    let untagged = moto()
        .create(&[Resource::S3 { name: "fleet-a-assets".into(), tags: tags(&[("service", "fleet-a")]) }]);
    let r = aws_gitstate(&cfg, &["check", "-o", "json"]);
    assert_eq!(r.code, 1);
    let j = r.json();
    let i = j["environments"][0]["targets"][0]["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == untagged[0])
        .unwrap()
        .clone();
    assert_eq!(i["status"], "missing");
    assert!(i["error"].as_str().unwrap().contains("no gitstate:sha tag"), "{i}");
}

#[test]
fn no_match_is_missing_and_names_the_filters() {
    let w = world();
    let cfg = aws_config(&w, "  tags = { service = \"nothing-has-this\" }");
    let r = aws_gitstate(&cfg, &["check", "-o", "json"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let t = r.json()["environments"][0]["targets"][0].clone();
    assert_eq!(t["status"], "missing");
    assert_eq!(t["instances"], serde_json::json!([]));
    let err = t["error"].as_str().unwrap();
    assert!(
        err.contains("no resource matched")
            && err.contains("service=nothing-has-this")
            && err.contains(REGION),
        "{err}"
    );
}

#[test]
fn more_than_a_hundred_resources_are_all_read() {
    let w = world();
    moto().create(&[Resource::Ec2 {
        count: 120,
        tags: tags(&[("service", "big-fleet"), ("gitstate:sha", &w.c[3])]),
    }]);
    let cfg = aws_config(&w, "  tags = { service = \"big-fleet\" }");
    let r = aws_gitstate(&cfg, &["check", "-o", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let j = r.json();
    assert_eq!(
        j["environments"][0]["targets"][0]["instances"].as_array().unwrap().len(),
        120,
        "every page followed"
    );
}

#[test]
fn list_valued_tags_and_resource_type_filters() {
    let w = world();
    let arns = moto().create(&[
        Resource::Lambda {
            name: "workers-prod".into(),
            tags: tags(&[("stack", "workers"), ("env", "production"), ("gitstate:sha", &w.c[3])]),
        },
        Resource::Lambda {
            name: "workers-prd".into(),
            tags: tags(&[("stack", "workers"), ("env", "prod"), ("gitstate:sha", &w.c[3])]),
        },
        Resource::Lambda {
            name: "workers-stg".into(),
            tags: tags(&[("stack", "workers"), ("env", "staging"), ("gitstate:sha", &w.c[0])]),
        },
        Resource::S3 {
            name: "workers-bucket".into(),
            tags: tags(&[("stack", "workers"), ("env", "production"), ("gitstate:sha", &w.c[0])]),
        },
    ]);
    let cfg = aws_config(
        &w,
        "  tags = { stack = \"workers\", env = [\"production\", \"prod\"] }\n  resource_types = [\"lambda:function\"]",
    );
    let r = aws_gitstate(&cfg, &["check", "-o", "json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let ids: Vec<String> = statuses(&r.json()).into_iter().map(|(id, _)| id).collect();
    let mut want = vec![arns[0].clone(), arns[1].clone()];
    want.sort();
    assert_eq!(ids, want, "staging and the bucket are filtered out");
}

#[test]
fn bad_credentials_and_a_dead_endpoint_are_unreachable_in_bounded_time() {
    let w = world();
    let cfg = aws_config(&w, "  tags = { service = \"x\" }");
    let mut cmd = gitstate();
    aws_env(&mut cmd);
    cmd.env_remove("AWS_ACCESS_KEY_ID").env_remove("AWS_SECRET_ACCESS_KEY");
    let start = Instant::now();
    let r = run(cmd.args(["check", "-o", "json", "-c"]).arg(&cfg));
    assert_eq!(r.code, 1, "{}", r.stderr);
    let t = r.json()["environments"][0]["targets"][0].clone();
    assert_eq!(t["status"], "unreachable");
    assert!(t["error"].as_str().unwrap().to_lowercase().contains("credential"), "{t}");
    assert!(start.elapsed() < Duration::from_secs(60));

    let port = gitstate_testkit::free_port();
    let dead = write_config(
        w.repo.path(),
        &format!(
            "[source]\nrepo = \".\"\n[[environments]]\nname = \"production\"\n  [[environments.targets]]\n  name = \"workers\"\n  [environments.targets.aws]\n  region = \"{REGION}\"\n  endpoint_url = \"http://127.0.0.1:{port}\"\n  tags = {{ service = \"x\" }}\n  timeout = \"5s\"\n"
        ),
    );
    let start = Instant::now();
    let r = aws_gitstate(&dead, &["check", "-o", "json"]);
    assert_eq!(r.code, 1);
    let t = r.json()["environments"][0]["targets"][0].clone();
    assert_eq!(t["status"], "unreachable");
    assert!(t["error"].as_str().unwrap().starts_with("AWS GetResources"), "{t}");
    assert!(start.elapsed() < Duration::from_secs(30), "bounded: {:?}", start.elapsed());
}

#[test]
fn http_and_aws_in_one_environment_converge_after_a_retagging_deploy() {
    let w = world();
    let arns = moto().create(&[Resource::Lambda {
        name: "mixed-worker".into(),
        tags: tags(&[("service", "mixed"), ("gitstate:sha", &w.c[2])]),
    }]);
    let server = TestServer::start_background();
    let dir = tempfile::tempdir().unwrap();
    server.route("/meta", Behavior::File(dir.path().join("served.json")));
    std::fs::write(dir.path().join("served.json"), format!("{{\"sha\":\"{}\"}}", w.c[2])).unwrap();
    // The deploy re-tags the function and updates the web target.
    let script = dir.path().join("deploy.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nset -e\nprintf '{{\"sha\":\"%s\"}}' \"$GITSTATE_EXPECTED_SHA\" > {served}\necho '{{\"endpoint\":\"{ep}\",\"region\":\"{REGION}\",\"retag\":{{\"arns\":[\"{arn}\"],\"tags\":{{\"gitstate:sha\":\"'$GITSTATE_EXPECTED_SHA'\"}}}}}}' | {py} {seed}\n",
            served = dir.path().join("served.json").display(),
            ep = moto().url(),
            arn = arns[0],
            py = moto().python().display(),
            seed = moto().seed_script().display(),
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = write_config(
        w.repo.path(),
        &format!(
            "[source]\nrepo = \".\"\n[policy]\ngrace = \"0s\"\nsettle = \"1s\"\n[[environments]]\nname = \"production\"\n  [[environments.targets]]\n  name = \"web\"\n  [environments.targets.http]\n  urls = [\"{url}\"]\n  [[environments.targets]]\n  name = \"workers\"\n  [environments.targets.aws]\n  region = \"{REGION}\"\n  endpoint_url = \"{ep}\"\n  tags = {{ service = \"mixed\" }}\n  [environments.remediate]\n  command = [\"{script}\"]\n",
            url = server.url("/meta"),
            ep = moto().url(),
            script = script.display(),
        ),
    );
    let r = aws_gitstate(&cfg, &["reconcile", "-o", "json"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let j = r.json();
    assert_eq!(j["environments"][0]["targets"][0]["status"], "behind");
    assert_eq!(j["environments"][0]["targets"][1]["status"], "behind");
    assert_eq!(j["environments"][0]["actions"][0]["ok"], true, "{}", j["environments"][0]["actions"]);
    let r = aws_gitstate(&cfg, &["reconcile", "-o", "json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.json()["environments"][0]["phase"], "in_sync");
}
