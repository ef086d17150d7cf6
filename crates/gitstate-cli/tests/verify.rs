//! SPEC §15 end to end: a soak after each deploy (`[policy.verify]` with a real command
//! as its check), a degraded commit rolled back in Git (a compare-and-swap with a reflog
//! line) and vetoed, a person moving the ref back to it (not deployed), `unveto`, a fix on
//! top of the bad commit (deployed), and the `rollback`, `veto` and `unveto` commands'
//! refusals.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// smoke.sh fails while the target serves `bad` (the commit written in bad.txt).
fn smoke_script(l: &Loop, bad: &str) {
    std::fs::write(l.path().join("bad.txt"), bad).unwrap();
    let p = l.path().join("smoke.sh");
    std::fs::write(
        &p,
        "#!/bin/sh\nif grep -q \"$(cat bad.txt)\" served.json; then echo \"5xx rate 12% on $1\"; exit 1; fi\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

const VERIFY: &str = r#"grace = "0s"
settle = "1s"
backoff = "1s"
[policy.verify]
soak = "3s"
every = "1s"
failures = 2
on_degraded = "rollback"
[[policy.verify.checks]]
name = "smoke"
exec = ["./smoke.sh", "{environment}"]"#;

const FAST: &str = "[watch]\ninterval = \"1s\"\nref_poll = \"200ms\"\njitter = \"0%\"";

fn names(l: &Loop) -> Vec<String> {
    l.event_names()
}

fn events_named(l: &Loop, name: &str) -> Vec<Value> {
    l.events().into_iter().filter(|e| e["event"] == name).collect()
}

#[test]
fn a_degraded_commit_is_rolled_back_in_git_vetoed_and_a_fix_on_top_of_it_deployed() {
    let l = Loop::new();
    l.deploy_script("printf '{\"sha\":\"%s\"}' \"$GITSTATE_EXPECTED_SHA\" > served.json");
    smoke_script(&l, &l.c[3]);
    let cfg = l.config(VERIFY, FAST);
    let w = watch(&cfg);

    // The first commit soaks and is verified.
    wait_for(Duration::from_secs(30), "c1 verified", || !events_named(&l, "verified").is_empty());
    let s = status(&cfg);
    assert_eq!(s["last_verified_sha"], l.c[1].as_str(), "{s}");
    assert_eq!(s["verification"]["state"], "verified", "{s}");

    // A bad commit: deployed, in sync, fails its check twice, degraded, rolled back.
    l.repo.update_ref(REF, &l.c[3]);
    wait_for(Duration::from_secs(40), "the rollback and its veto", || {
        !events_named(&l, "veto_added").is_empty()
    });
    let head = l.repo.git(&["rev-parse", REF]);
    assert_eq!(head, l.c[1], "the ref points at the last verified commit again");
    let reflog = l.repo.git(&["reflog", "show", "--format=%gs", REF]);
    let line = reflog.lines().next().unwrap();
    assert!(line.starts_with(&format!("gitstate: roll back {}", &l.c[3][..12])), "{reflog}");
    assert!(line.contains("degraded: 2 failed check run(s)"), "{line}");
    let failed = events_named(&l, "check_failed");
    assert!(failed.len() >= 2, "{failed:?}");
    assert_eq!(failed[0]["check"], "smoke");
    assert_eq!(failed[0]["reason"], "./smoke.sh exited 1: 5xx rate 12% on production");
    let order: Vec<String> = names(&l)
        .into_iter()
        .filter(|n| ["verification_started", "degraded", "rolled_back", "veto_added"].contains(&n.as_str()))
        .collect();
    assert_eq!(
        order,
        ["verification_started", "verification_started", "degraded", "rolled_back", "veto_added"]
    );

    // The good commit is deployed again, and runs: the time from the first failing check.
    wait_for(Duration::from_secs(30), "c1 running again", || {
        std::fs::read_to_string(l.path().join("served.json")).unwrap().contains(&l.c[1])
    });
    let back = jiff::Timestamp::now();
    let first: jiff::Timestamp = failed[0]["at"].as_str().unwrap().parse().unwrap();
    eprintln!("first failing check → good commit running again: {:?}", back.duration_since(first));
    // The dashboard: the vetoed commit, the last verified one, the rollback in the events.
    let (code, page) = gitstate_testkit::http_get(w.port, "/").unwrap();
    assert_eq!(code, 200);
    for needle in [
        "⛔ vetoed".to_string(),
        "last verified".to_string(),
        format!("rolled back from {} to {} by gitstate (loop)", &l.c[3][..7], &l.c[1][..7]),
        "check smoke failed: ./smoke.sh exited 1".to_string(),
        format!("{} degraded (2 failed check runs)", &l.c[3][..7]),
    ] {
        assert!(page.contains(&needle), "the dashboard lacks {needle:?}");
    }
    let s = status(&cfg);
    assert_eq!(s["vetoes"][0]["sha"], l.c[3].as_str(), "{s}");
    assert_eq!(s["vetoes"][0]["by"], "gitstate");
    assert_eq!(s["vetoes"][0]["via"], "loop");
    // `status` for people says so too, with the soak that failed.
    let text = with_config(&cfg, &["status"]).stdout;
    let vetoed = format!("production: {} vetoed by gitstate (loop) since ", &l.c[3][..12]);
    assert!(text.contains(&vetoed), "{text}");

    // A person points the ref at the bad commit again: not deployed, phase and alarm vetoed.
    let deploys_before = l.attempts().len();
    l.repo.update_ref(REF, &l.c[3]);
    wait_for(Duration::from_secs(20), "phase vetoed", || status(&cfg)["phase"] == "vetoed");
    let seen = passes(&w);
    wait_for(Duration::from_secs(20), "two more passes", || passes(&w) >= seen + 2.0);
    assert_eq!(l.attempts().len(), deploys_before, "a vetoed commit is never deployed: {:?}", l.attempts());
    assert_eq!(status(&cfg)["alarm"]["kind"], "vetoed");

    // unveto, with the watch running: applied within a ref poll, the commit deployed.
    let r = with_config(&cfg, &["unveto", "production", &l.c[3], "--reason", "false alarm"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    wait_for(Duration::from_secs(30), "the unvetoed commit deployed", || {
        std::fs::read_to_string(l.path().join("served.json")).unwrap().contains(&l.c[3])
    });

    // A fix on top of the bad commit is not vetoed: deployed.
    let fix = l.repo.commit("fix on top of the bad commit");
    l.repo.update_ref(REF, &fix);
    wait_for(Duration::from_secs(30), "the fix deployed", || {
        std::fs::read_to_string(l.path().join("served.json")).unwrap().contains(&fix)
    });
    // DORA's metrics (SPEC §16), counted live from each pass's events, agree with `dora`
    // reading the same event log afterwards: as many deployments (a convergence on a new
    // commit; a commit the loop never saw in sync before the ref moved on is none), the
    // one failed (c3's first, degraded and rolled back), its restore.
    wait_for(Duration::from_secs(30), "the fix converged", || {
        events_named(&l, "converged").iter().any(|e| e["expected"] == fix.as_str())
    });
    // The live count follows the event log by the end of the pass that wrote it: read
    // both until the pass that converged has been counted.
    let dora = with_config(&cfg, &["dora", "-o", "json"]).json();
    let deployed = dora["environments"][0]["deployments"].as_f64().unwrap();
    let live = |m: &str| {
        m.lines().find_map(|l| {
            l.strip_prefix("gitstate_dora_deployments_total{environment=\"production\"} ")?
                .parse::<f64>()
                .ok()
        })
    };
    wait_for(Duration::from_secs(10), "the live DORA count to catch up", || {
        live(&metrics(&w)) == Some(deployed)
    });
    let m = metrics(&w);
    let value = |name: &str| -> f64 {
        m.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {m}"))
    };
    let p = &dora["environments"][0];
    assert!(p["deployments"].as_u64().unwrap() >= 3, "c1, c3 and the fix at least: {p}");
    assert_eq!(
        value("gitstate_dora_deployments_total{environment=\"production\"}"),
        p["deployments"].as_f64().unwrap()
    );
    assert_eq!(value("gitstate_dora_failed_deployments_total{environment=\"production\"}"), 1.0);
    assert_eq!(p["change_failure_rate"]["failed"], 1, "{p}");
    assert_eq!(
        value("gitstate_dora_restore_seconds_count"),
        p["time_to_restore_s"]["count"].as_f64().unwrap()
    );
    assert_eq!(value("gitstate_dora_lead_time_seconds_count"), p["lead_time_s"]["count"].as_f64().unwrap());
    drop(w);

    // The unveto was recorded; a second one is refused.
    let r = with_config(&cfg, &["unveto", "production", &l.c[3]]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("is not vetoed in production"), "{}", r.stderr);
    let removed = events_named(&l, "veto_removed");
    assert_eq!(removed[0]["reason"], "false alarm");
}

#[test]
fn rollback_by_hand_moves_the_ref_with_a_reflog_line_even_without_log_all_ref_updates() {
    let l = Loop::new();
    l.deploy_script("printf '{\"sha\":\"%s\"}' \"$GITSTATE_EXPECTED_SHA\" > served.json");
    l.repo.git(&["config", "core.logAllRefUpdates", "false"]);
    let cfg = l.config("grace = \"0s\"\nsettle = \"0s\"", "");
    // Converged on c1, then on c2: without [policy.verify] the rollback goes to c1.
    assert_eq!(with_config(&cfg, &["reconcile"]).code, 0);
    l.repo.update_ref(REF, &l.c[2]);
    with_config(&cfg, &["reconcile"]);
    assert_eq!(with_config(&cfg, &["reconcile"]).code, 0);

    let r = with_config(&cfg, &["rollback", "production", "--reason", "checkout errors"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(l.repo.git(&["rev-parse", REF]), l.c[1]);
    let reflog = l.repo.git(&["reflog", "show", "--format=%gs", REF]);
    let line = reflog.lines().next().unwrap();
    assert!(
        line.starts_with(&format!("gitstate: roll back {} (checkout errors) by ", &l.c[2][..12]))
            && line.ends_with(" via cli"),
        "{line}"
    );
    let rolled = events_named(&l, "rolled_back");
    assert_eq!(rolled[0]["via"], "cli");
    assert_eq!(rolled[0]["reason"], "checkout errors");
    assert_eq!(status(&cfg)["vetoes"][0]["sha"], l.c[2].as_str());

    // Nothing to roll back to (only c1 converged besides c2, which is vetoed now; --to
    // the commit it points at) → exit 2, nothing moved.
    let r = with_config(&cfg, &["rollback", "production", "--to", &l.c[1]]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("already points at"), "{}", r.stderr);

    // veto / unveto by hand.
    let r = with_config(&cfg, &["veto", "production", &l.c[0], "--reason", "known bad"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let vetoes = status(&cfg)["vetoes"].clone();
    assert_eq!(vetoes.as_array().unwrap().len(), 2, "{vetoes}");
    assert_eq!(vetoes[1]["via"], "cli");
}

#[test]
fn a_rollback_is_refused_when_the_ref_moved_meanwhile() {
    // The compare-and-swap itself: the ref is not where the rollback read it.
    let repo = Repo::new();
    let c = repo.commits(3, "c");
    repo.update_ref(REF, &c[2]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let source = gitstate_core::git::GitSource::local(repo.path()).unwrap();
    let from = gitstate_core::CommitId::parse(&c[1]).unwrap();
    let to = gitstate_core::CommitId::parse(&c[0]).unwrap();
    use gitstate_core::ExpectedState;
    let started = Instant::now();
    let err = rt.block_on(source.move_ref(REF, &from, &to, "gitstate: roll back")).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(30));
    let text = err.to_string();
    assert!(text.contains("not moved"), "{text}");
    assert_eq!(repo.git(&["rev-parse", REF]), c[2], "nothing moved");
}

/// The soak's end is in the store: a `watch` killed with SIGKILL mid-soak and started
/// again resumes it with the time it had left, not a fresh soak.
#[test]
fn a_soak_interrupted_by_kill_9_resumes_with_the_time_left() {
    let l = Loop::new();
    l.deploy_script("exit 0");
    smoke_script(&l, "no commit is bad here");
    let verify = VERIFY.replace("soak = \"3s\"", "soak = \"6s\"");
    let cfg = l.config(&verify, FAST);
    let mut w = watch(&cfg);
    wait_for(Duration::from_secs(30), "the soak to start", || {
        !events_named(&l, "verification_started").is_empty()
    });
    std::thread::sleep(Duration::from_secs(2));
    w.child.kill().unwrap(); // SIGKILL
    w.child.wait().unwrap();
    let w = watch(&cfg);
    // The soak's progress on the dashboard: the commit soaking and the time left.
    let (_, page) = gitstate_testkit::http_get(w.port, "/").unwrap();
    let done = !events_named(&l, "verified").is_empty();
    assert!(done || page.contains("⏳ soaking <span class=\"sha\">"), "the dashboard lacks the soak: {page}");
    assert!(done || page.contains("s left, 0 failed check run(s)"), "{page}");
    // A soak counts as in sync (SPEC §6).
    assert!(done || page.contains("1 of 1 environments in sync"), "{page}");
    wait_for(Duration::from_secs(30), "verified", || !events_named(&l, "verified").is_empty());
    let started = events_named(&l, "verification_started");
    assert_eq!(started.len(), 1, "resumed, not started again: {started:?}");
    let at = |e: &Value| e["at"].as_str().unwrap().parse::<jiff::Timestamp>().unwrap();
    let took = at(&events_named(&l, "verified")[0]).duration_since(at(&started[0]));
    assert!(took >= jiff::SignedDuration::from_secs(6), "the whole soak: {took:?}");
    assert!(took < jiff::SignedDuration::from_secs(9), "the time left, not a new soak: {took:?}");
    assert_eq!(status(&cfg)["verification"]["until"], started[0]["until"]);
    // `status` for people names the soak's outcome and the commit.
    let sha = status(&cfg)["verification"]["sha"].as_str().unwrap()[..12].to_owned();
    let text = with_config(&cfg, &["status"]).stdout;
    assert!(text.contains(&format!("production: verified {sha}")), "{text}");
}

/// `gitstate adopt`: a hotfix running on every instance becomes the expected commit (the
/// ref moved with a reflog line naming it, the drift alarm resolved, nothing deployed);
/// instances that disagree, or a commit the repository does not have, exit 2 and move
/// nothing.
#[test]
fn adopt_makes_the_hotfix_every_instance_runs_the_expected_commit() {
    let l = Loop::new();
    l.deploy_script("exit 0");
    // Observe mode: the hotfix raises the drift alarm and nobody overwrites it.
    let cfg = l.config("mode = \"observe\"\ngrace = \"0s\"", "");
    l.serve(&l.c[2]);
    assert_eq!(with_config(&cfg, &["reconcile"]).code, 1);
    assert_eq!(status(&cfg)["alarm"]["kind"], "drift");

    // A commit the repository does not have: refused.
    l.serve(&"e".repeat(40));
    let r = with_config(&cfg, &["adopt", "production"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("is not in the repository (push the hotfix commit first"), "{}", r.stderr);
    assert_eq!(l.repo.git(&["rev-parse", REF]), l.c[1]);

    // Two instances that disagree: refused.
    let two = std::fs::read_to_string(&cfg).unwrap().replacen(
        &format!("urls = [\"{}\"]", l.server.url("/meta")),
        &format!("urls = [\"{}\", \"{}\"]", l.server.url("/meta"), l.server.url("/other")),
        1,
    );
    std::fs::write(l.path().join("other.json"), format!("{{\"sha\":\"{}\"}}", l.c[3])).unwrap();
    l.server.route("/other", Behavior::File(l.path().join("other.json")));
    std::fs::create_dir(l.path().join("two")).unwrap();
    let cfg2 = write_config(&l.path().join("two"), &two);
    l.serve(&l.c[2]);
    let r = with_config(&cfg2, &["adopt", "production"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("the instances disagree"), "{}", r.stderr);
    assert_eq!(l.repo.git(&["rev-parse", REF]), l.c[1]);

    // Every instance runs the hotfix: adopted.
    let r = with_config(&cfg, &["adopt", "production", "--reason", "hotfix for INC-42"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(l.repo.git(&["rev-parse", REF]), l.c[2]);
    let reflog = l.repo.git(&["reflog", "show", "--format=%gs", REF]);
    let line = reflog.lines().next().unwrap();
    assert!(
        line.starts_with(&format!("gitstate: adopt {} (hotfix for INC-42) by ", &l.c[2][..12]))
            && line.ends_with(" via cli"),
        "{line}"
    );
    let adopted = events_named(&l, "adopted");
    assert_eq!(adopted[0]["to"], l.c[2].as_str());
    assert_eq!(adopted[0]["via"], "cli");
    let r = with_config(&cfg, &["reconcile", "-o", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(status(&cfg)["phase"], "in_sync");
    assert!(l.attempts().is_empty(), "nothing deployed: {:?}", l.attempts());
    let resolved = events_named(&l, "alarm_resolved");
    assert_eq!(resolved[0]["alarm"], "drift");
}

/// A check's relative `ca_file` is the configuration's directory's, as a target's is,
/// wherever gitstate runs from (it was the working directory's: `reconcile -c
/// elsewhere/gitstate.toml` failed with "No such file").
#[test]
fn a_checks_relative_ca_file_is_found_beside_the_configuration() {
    let repo = Repo::new();
    let c = repo.commits(1, "c");
    repo.update_ref(REF, &c[0]);
    let (cert, _key) = gitstate_testkit::tls::self_signed_pem(&["localhost"]);
    std::fs::write(repo.path().join("ca.pem"), cert).unwrap();
    let env = http_env("production", "web", &["http://127.0.0.1:9/meta".to_owned()], "");
    let cfg = write_config(
        repo.path(),
        &format!(
            "[source]\nrepo = \".\"\n[policy.verify]\nsoak = \"1m\"\n[[policy.verify.checks]]\nname = \"health\"\nhttp = {{ url = \"https://localhost:9/healthz\", ca_file = \"ca.pem\" }}\n{env}"
        ),
    );
    let elsewhere = tempfile::tempdir().unwrap();
    let r = run(gitstate().current_dir(elsewhere.path()).args(["reconcile", "-c", cfg.to_str().unwrap()]));
    assert!(!r.stderr.contains("ca.pem"), "{}", r.stderr);
    assert_eq!(r.code, 1, "the target is unreachable, so not in sync: {}", r.stderr);
}
