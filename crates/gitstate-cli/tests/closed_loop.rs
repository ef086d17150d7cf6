//! The closed loop end to end: `reconcile`, `status`, `watch` with real deploy commands,
//! a real webhook receiver and a real Alertmanager, all on 127.0.0.1.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use gitstate_testkit::{Alertmanager, http_get};
use serde_json::Value;

#[test]
fn a_remediation_that_fixes_the_target_converges_and_records_the_lag() {
    let l = Loop::new();
    l.deploy_script("printf '{\"sha\":\"%s\"}' \"$GITSTATE_EXPECTED_SHA\" > served.json");
    let cfg = l.config("grace = \"0s\"\nsettle = \"1s\"", "");
    let r = with_config(&cfg, &["reconcile", "-o", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["environments"][0]["phase"], "in_sync");

    l.repo.update_ref(REF, &l.c[3]);
    // A dry run decides, reports "ok": null, and writes nothing.
    let state = || {
        ["state.json", "state.log"].map(|f| std::fs::read_to_string(l.path().join(".gitstate").join(f)).ok())
    };
    let before = state();
    assert!(before[1].is_some(), "the pass was written");
    let dry = with_config(&cfg, &["reconcile", "--dry-run", "-o", "json"]);
    assert_eq!(dry.code, 1);
    assert_eq!(
        dry.json()["environments"][0]["actions"],
        serde_json::json!([{"kind": "remediate", "attempt": 1, "ok": null, "detail": "dry run: not started"}])
    );
    assert!(l.attempts().is_empty());
    assert_eq!(state(), before);

    let r = with_config(&cfg, &["reconcile", "-o", "json"]);
    assert_eq!(r.code, 1, "the pass observed drift: {}", r.stderr);
    let j = r.json();
    assert_eq!(j["environments"][0]["phase"], "remediating");
    assert_eq!(j["environments"][0]["actions"][0]["kind"], "remediate");
    assert_eq!(j["environments"][0]["actions"][0]["ok"], true);
    assert_eq!(l.attempts(), [format!("1 {}", l.c[3])]);

    let r = with_config(&cfg, &["reconcile", "-o", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let st = status(&cfg);
    assert_eq!(st["phase"], "in_sync");
    assert_eq!(st["expected"], l.c[3]);
    assert_eq!(st["ref"], REF, "status names the ref it read");
    assert!(st["last_convergence_lag_s"].as_f64().unwrap() >= 0.0);
    assert!(st["incident"].is_null() && st["alarm"].is_null());
    assert_eq!(with_config(&cfg, &["status"]).code, 0);
    // The first run already knew from the reflog when the ref moved to c1: it converged.
    assert_eq!(
        l.event_names(),
        [
            "converged",
            "expected_changed",
            "drift_detected",
            "remediation_started",
            "remediation_finished",
            "converged"
        ]
    );
    let converged = l.events().into_iter().rfind(|e| e["event"] == "converged").unwrap();
    assert_eq!(
        (converged["environment"].as_str(), converged["expected"].as_str()),
        (Some("production"), Some(l.c[3].as_str()))
    );
    assert!(converged["lag_s"].as_f64().unwrap() >= 0.0);
    assert_eq!(converged["lag_from"], "reflog", "measured from the ref's move: {converged}");
    // The same, as a page (SPEC §12): the environment, its phase, and the events.
    let page = with_config(&cfg, &["status", "-o", "html"]).stdout;
    assert!(page.contains("id=\"env-production\" data-phase=\"in_sync\""), "{page}");
    assert!(page.contains("remediation attempt 1 triggered") && page.contains("converged in "), "{page}");
    let finished = l.events().into_iter().find(|e| e["event"] == "remediation_finished").unwrap();
    assert_eq!((finished["ok"].as_bool(), finished["exit_code"].as_i64()), (Some(true), Some(0)));
}

#[test]
fn a_failing_remediation_backs_off_then_alarms_once_and_resolves_once() {
    let l = Loop::new();
    l.deploy_script("echo 'registry unavailable' >&2; exit 1");
    let hook = TestServer::start_background();
    hook.route("/hook", Behavior::Status(200));
    let am = Alertmanager::start();
    let cfg = l.config(
        "grace = \"0s\"\nsettle = \"1s\"\nbackoff = \"1s\"\nbackoff_max = \"2s\"\nmax_attempts = 2",
        &format!(
            "[alerts.alertmanager]\nurl = \"{}\"\n[alerts.webhook]\nurl = \"{}\"\n",
            am.url(),
            hook.url("/hook")
        ),
    );
    assert_eq!(with_config(&cfg, &["reconcile"]).code, 0);
    l.repo.update_ref(REF, &l.c[3]);
    wait_for(Duration::from_secs(30), "the drift alarm", || {
        let r = with_config(&cfg, &["reconcile", "-o", "json"]);
        assert_eq!(r.code, 1, "{}", r.stderr);
        l.event_names().iter().any(|e| e == "alarm_raised")
    });
    assert_eq!(l.attempts().len(), 2, "max_attempts caps the incident: {:?}", l.attempts());
    let started: Vec<jiff::Timestamp> = l
        .events()
        .iter()
        .filter(|e| e["event"] == "remediation_started")
        .map(|e| e["at"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(
        started[1].duration_since(started[0]) >= jiff::SignedDuration::from_secs(1),
        "backoff respected: {started:?}"
    );
    let failed = l.events().into_iter().find(|e| e["event"] == "remediation_finished").unwrap();
    assert_eq!(failed["exit_code"], 1);
    assert!(failed["output_tail"].as_str().unwrap().contains("registry unavailable"));
    let st = status(&cfg);
    assert_eq!(st["phase"], "alarm");
    assert_eq!(st["alarm"]["kind"], "drift");
    assert_eq!(st["incident"]["attempts"], 2);
    assert_eq!(with_config(&cfg, &["status"]).code, 1);

    // More passes: no new attempt, no second alarm.
    for _ in 0..3 {
        assert_eq!(with_config(&cfg, &["reconcile"]).code, 1);
    }
    assert_eq!(l.attempts().len(), 2);
    let raised: Vec<Value> = hook
        .bodies("/hook")
        .iter()
        .map(|b| serde_json::from_str(b).unwrap())
        .filter(|v: &Value| v["event"] == "alarm_raised")
        .collect();
    assert_eq!(raised.len(), 1, "exactly one alarm delivered");
    assert_eq!(
        (raised[0]["alarm"].as_str(), raised[0]["environment"].as_str()),
        (Some("drift"), Some("production"))
    );
    assert_eq!(raised[0]["expected_sha"], l.c[3]);
    let alerts = am.alerts();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["labels"]["alertname"], "GitstateDrift");
    assert_eq!(alerts[0]["labels"]["environment"], "production");
    assert_eq!(alerts[0]["labels"]["severity"], "critical");
    assert_eq!(alerts[0]["annotations"]["expected_sha"], l.c[3]);
    // The commits the failed deploy would have brought (SPEC §11), newest first.
    let pending = alerts[0]["annotations"]["pending"].as_str().unwrap();
    assert!(pending.starts_with(&format!("{} c 3 (", &l.c[3][..7])) && pending.contains("c 2"), "{pending}");
    assert_eq!(raised[0]["targets"][0]["pending"][0]["subject"], "c 3");

    // Someone deploys by hand: the next pass converges and resolves the alarm, once.
    l.serve(&l.c[3]);
    assert_eq!(with_config(&cfg, &["reconcile"]).code, 0);
    assert_eq!(with_config(&cfg, &["reconcile"]).code, 0);
    let events: Vec<String> = hook
        .bodies("/hook")
        .iter()
        .map(|b| serde_json::from_str::<Value>(b).unwrap()["event"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(events, ["alarm_raised", "alarm_resolved"]);
    wait_for(Duration::from_secs(10), "Alertmanager to drop the resolved alert", || am.alerts().is_empty());
    assert_eq!(status(&cfg)["alarm"], Value::Null);
}

#[test]
fn a_moved_ref_supersedes_the_incident() {
    let l = Loop::new();
    l.deploy_script("exit 1");
    let cfg = l.config("grace = \"0s\"\nmax_attempts = 1\nsettle = \"0s\"", "");
    assert_eq!(with_config(&cfg, &["reconcile"]).code, 0);
    l.repo.update_ref(REF, &l.c[2]);
    assert_eq!(with_config(&cfg, &["reconcile"]).code, 1);
    let r = with_config(&cfg, &["reconcile", "-o", "json"]);
    assert_eq!(
        r.json()["environments"][0]["actions"],
        serde_json::json!([{"kind": "alarm_raised", "alarm": "drift"}])
    );
    l.repo.update_ref(REF, &l.c[3]);
    let r = with_config(&cfg, &["reconcile", "-o", "json"]);
    let actions = r.json()["environments"][0]["actions"].clone();
    assert_eq!(actions[0], serde_json::json!({"kind": "alarm_resolved", "alarm": "drift"}));
    assert_eq!((actions[1]["kind"].as_str(), actions[1]["attempt"].as_u64()), (Some("remediate"), Some(1)));
    assert_eq!(l.attempts(), [format!("1 {}", l.c[2]), format!("1 {}", l.c[3])]);
}

#[test]
fn a_diverged_target_alarms_and_is_never_redeployed() {
    let l = Loop::new();
    l.repo.git(&["checkout", "-q", "-b", "hotfix", &l.c[1]]);
    let hotfix = l.repo.commit("hotfix");
    l.deploy_script("exit 0");
    let cfg = l.config("grace = \"0s\"", "");
    l.serve(&hotfix);
    l.repo.update_ref(REF, &l.c[3]);
    let r = with_config(&cfg, &["reconcile", "-o", "json"]);
    assert_eq!(r.code, 1);
    let j = r.json();
    assert_eq!(j["environments"][0]["targets"][0]["status"], "diverged");
    assert_eq!(
        j["environments"][0]["actions"],
        serde_json::json!([{"kind": "alarm_raised", "alarm": "diverged"}])
    );
    for _ in 0..3 {
        assert_eq!(with_config(&cfg, &["reconcile"]).code, 1);
    }
    assert!(l.attempts().is_empty(), "a hotfix is never overwritten");
    assert_eq!(status(&cfg)["alarm"]["kind"], "diverged");
}

#[test]
fn an_unreachable_target_alarms_after_n_passes_and_is_never_redeployed() {
    let l = Loop::new();
    l.deploy_script("exit 0");
    let cfg = l.config("grace = \"0s\"\nunreachable_after = 2", "");
    std::fs::remove_file(l.path().join("served.json")).unwrap(); // the target now answers 404
    let first = with_config(&cfg, &["reconcile", "-o", "json"]);
    assert_eq!(first.code, 1);
    assert_eq!(first.json()["environments"][0]["actions"], serde_json::json!([]));
    assert_eq!(first.json()["environments"][0]["targets"][0]["status"], "unreachable");
    let second = with_config(&cfg, &["reconcile", "-o", "json"]);
    assert_eq!(
        second.json()["environments"][0]["actions"],
        serde_json::json!([{"kind": "alarm_raised", "alarm": "unreachable"}])
    );
    assert!(l.attempts().is_empty());
}

#[test]
fn a_second_reconcile_exits_2_naming_the_holder() {
    let l = Loop::new();
    l.deploy_script("touch started; while [ ! -e release ]; do sleep 0.05; done");
    let cfg = l.config("grace = \"0s\"", "");
    assert_eq!(with_config(&cfg, &["reconcile"]).code, 0);
    l.repo.update_ref(REF, &l.c[3]);
    let mut first = gitstate()
        .args(["reconcile", "-c"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(Duration::from_secs(30), "the first reconcile's deploy", || l.path().join("started").exists());
    let second = with_config(&cfg, &["reconcile"]);
    assert_eq!(second.code, 2);
    assert!(second.stderr.contains(&format!("pid {}", first.id())), "{}", second.stderr);
    // A dry run takes no lock.
    assert_eq!(with_config(&cfg, &["reconcile", "--dry-run"]).code, 1);
    std::fs::write(l.path().join("release"), "").unwrap();
    assert_eq!(first.wait().unwrap().code(), Some(1));
}

#[test]
fn a_corrupt_state_file_is_named_and_kept() {
    let l = Loop::new();
    let cfg = l.config("", "");
    std::fs::create_dir_all(l.path().join(".gitstate")).unwrap();
    std::fs::write(
        l.path().join(".gitstate/state.json"),
        "{\"schema\": 1, \"environments\": {\"production\": {\"phase\": 7}}}",
    )
    .unwrap();
    for cmd in [&["reconcile"][..], &["status"][..]] {
        let r = with_config(&cfg, cmd);
        assert_eq!(r.code, 2, "{cmd:?}");
        assert!(r.stderr.contains("corrupt state file") && r.stderr.contains("state.json"), "{}", r.stderr);
    }
    assert!(std::fs::read_to_string(l.path().join(".gitstate/state.json")).unwrap().contains("\"phase\": 7"));

    // A broken line in the log of changes: named with its line, kept as it was.
    std::fs::write(l.path().join(".gitstate/state.json"), "{\"schema\": 1, \"environments\": {}}").unwrap();
    let log =
        "{\"log\":{\"schema\":1,\"generation\":0}}\n{\"forget\":\"production\"}\n{\"env\":{\"name\":7}}\n";
    std::fs::write(l.path().join(".gitstate/state.log"), log).unwrap();
    for cmd in [&["reconcile"][..], &["status"][..]] {
        let r = with_config(&cfg, cmd);
        assert_eq!(r.code, 2, "{cmd:?}");
        assert!(r.stderr.contains("corrupt state file") && r.stderr.contains("state.log:3"), "{}", r.stderr);
    }
    assert_eq!(std::fs::read_to_string(l.path().join(".gitstate/state.log")).unwrap(), log);
}

/// Every metric family of SPEC §7, as OpenMetrics names them (counters without `_total`).
const METRIC_FAMILIES: [&str; 15] = [
    "gitstate_environment_in_sync",
    "gitstate_environment_info",
    "gitstate_environment_suspended",
    "gitstate_instances",
    "gitstate_reconcile_passes",
    "gitstate_reconcile_pass_duration_seconds",
    "gitstate_probe_duration_seconds",
    "gitstate_remediations",
    "gitstate_alarms_open",
    "gitstate_convergence_lag_seconds",
    "gitstate_notifications",
    "gitstate_expected_commit_change_timestamp_seconds",
    "gitstate_build_info",
    "gitstate_last_pass_completed_timestamp_seconds",
    "gitstate_leader",
];

/// examples/prometheus: the rules parse, pass their promtool unit tests, and name only
/// metric families that the test above finds on a live /metrics.
#[test]
fn the_example_prometheus_rules_pass_promtool_and_name_real_metrics() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/prometheus");
    for args in [["check", "rules", "gitstate.rules.yml"], ["test", "rules", "gitstate.rules.test.yml"]] {
        let out = std::process::Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("promtool is not installed: run scripts/test, or apt-get install prometheus");
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "promtool {}: {text}", args.join(" "));
    }
    let rules = std::fs::read_to_string(dir.join("gitstate.rules.yml")).unwrap();
    let named: std::collections::BTreeSet<&str> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("gitstate_"))
        .collect();
    assert!(named.len() >= 5, "{named:?}");
    for name in named {
        let family = ["_total", "_bucket", "_count", "_sum"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name);
        assert!(METRIC_FAMILIES.contains(&family), "the rules name {name}, which watch does not expose");
    }
}

/// examples/grafana: every panel's expression is valid PromQL (promtool checks it as a
/// recording rule) and names only metric families a live `watch` exposes; the panels the
/// SPEC asks for are there.
#[test]
fn the_example_grafana_dashboard_queries_real_metrics() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/grafana/gitstate.json");
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let panels = dash["panels"].as_array().unwrap();
    let titles: Vec<&str> = panels.iter().map(|p| p["title"].as_str().unwrap()).collect();
    for want in [
        "In sync by environment",
        "Convergence lag",
        "Remediations by outcome",
        "Open alarms",
        "Pass duration",
        "Probe duration by kind",
    ] {
        assert!(titles.iter().any(|t| t.starts_with(want)), "no {want:?} panel in {titles:?}");
    }
    let exprs: Vec<String> = panels
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .map(|t| t["expr"].as_str().unwrap().replace("$environment", ".*"))
        .collect();
    assert!(exprs.len() >= 10);
    let mut rules = String::from("groups:\n  - name: grafana\n    rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        rules.push_str(&format!(
            "      - record: grafana:panel_{i}\n        expr: '{}'\n",
            e.replace('\'', "''")
        ));
        for name in e
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .filter(|w| w.starts_with("gitstate_"))
        {
            let family = ["_total", "_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            assert!(
                METRIC_FAMILIES.contains(&family),
                "the dashboard names {name}, which watch does not expose"
            );
        }
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("grafana.rules.yml"), &rules).unwrap();
    let out = std::process::Command::new("promtool")
        .args(["check", "rules", "grafana.rules.yml"])
        .current_dir(dir.path())
        .output()
        .expect("promtool is not installed: run scripts/test, or apt-get install prometheus");
    assert!(
        out.status.success(),
        "{}{}\n{rules}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

const FAST_WATCH: &str = "[watch]\ninterval = \"1s\"\nref_poll = \"200ms\"\njitter = \"0%\"";

#[test]
fn watch_reacts_to_a_moved_ref_converges_and_exposes_metrics() {
    let l = Loop::new();
    l.deploy_script("printf '{\"sha\":\"%s\"}' \"$GITSTATE_EXPECTED_SHA\" > served.json");
    let hook = TestServer::start_background();
    hook.route("/hook", Behavior::Status(200));
    let cfg = l.config(
        "grace = \"0s\"\nsettle = \"1s\"\nunreachable_after = 1",
        &format!("{FAST_WATCH}\n[alerts.webhook]\nurl = \"{}\"\n", hook.url("/hook")),
    );
    let w = watch(&cfg);
    let (code, _) = http_get(w.port, "/healthz").unwrap();
    assert_eq!(code, 200);
    // The first full pass: c1 runs, and the reflog says since when (a first convergence).
    wait_for(Duration::from_secs(20), "the first full pass", || {
        matches!(http_get(w.port, "/readyz"), Ok((200, _)))
    });

    let moved = Instant::now();
    l.repo.update_ref(REF, &l.c[3]);
    wait_for(Duration::from_secs(20), "the remediation to start", || !l.attempts().is_empty());
    let reaction = moved.elapsed();
    assert!(reaction < Duration::from_secs(10), "a moved ref starts the remediation promptly ({reaction:?})");
    wait_for(Duration::from_secs(20), "convergence", || {
        l.events().iter().any(|e| e["event"] == "converged" && e["expected"] == l.c[3].as_str())
    });

    let (code, body) = http_get(w.port, "/status").unwrap();
    assert_eq!(code, 200);
    let st: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(st["environments"][0]["expected"], l.c[3]);
    assert_eq!(st["environments"][0]["ref"], REF);
    assert!(st["environments"][0]["last_convergence_lag_s"].as_f64().is_some());
    // Every pass asked the target over the one connection watch keeps to it.
    let (hits, connections) = (l.server.hits("/meta"), l.server.connections());
    assert!(hits >= 3 && connections == 1, "{hits} requests over {connections} connections");

    // The target goes away: an unreachable alarm makes alarms and notifications count too.
    std::fs::remove_file(l.path().join("served.json")).unwrap();
    wait_for(Duration::from_secs(20), "the unreachable alarm, delivered and counted", || {
        metrics(&w).contains("gitstate_notifications_total{sink=\"webhook\",outcome=\"ok\"} 1")
    });
    let text = metrics(&w);
    let parsed =
        openmetrics_parser::openmetrics::parse_openmetrics(&text).unwrap_or_else(|e| panic!("{e:?}\n{text}"));
    for name in METRIC_FAMILIES {
        assert!(parsed.families.contains_key(name), "{name} missing from /metrics:\n{text}");
    }
    assert!(text.contains("\ngitstate_leader 1\n"), "with its state in files, watch always acts:\n{text}");
    assert!(
        text.contains("gitstate_remediations_total{environment=\"production\",outcome=\"ok\"} 1"),
        "{text}"
    );
    // c1 (its lag from the reflog, on the first pass) and c3.
    assert!(text.contains("gitstate_convergence_lag_seconds_count{environment=\"production\"} 2"), "{text}");
    assert!(text.contains("gitstate_notifications_total{sink=\"webhook\",outcome=\"ok\"} 1"), "{text}");
    assert!(
        text.contains("gitstate_alarms_open{environment=\"production\",alarm=\"unreachable\"} 1"),
        "{text}"
    );
    assert!(text.trim_end().ends_with("# EOF"));
}

#[test]
fn sigterm_stops_watch_with_exit_0_and_state_persisted() {
    let l = Loop::new();
    l.deploy_script("exit 0");
    let cfg = l.config("grace = \"0s\"", FAST_WATCH);
    let mut w = watch(&cfg);
    assert_eq!(w.terminate(Duration::from_secs(60)), Some(0));
    let st = status(&cfg);
    assert_eq!(st["phase"], "in_sync");
    // The lock was released.
    assert_eq!(with_config(&cfg, &["reconcile"]).code, 0);
}

#[test]
fn kill_9_mid_remediation_then_restart_remembers_the_attempt() {
    let l = Loop::new();
    l.deploy_script("touch running; sleep 60");
    let cfg = l.config("grace = \"0s\"\nmax_attempts = 1\nsettle = \"1s\"", FAST_WATCH);
    let mut w = watch(&cfg);
    l.repo.update_ref(REF, &l.c[3]);
    wait_for(Duration::from_secs(20), "the remediation to start", || l.path().join("running").exists());
    w.child.kill().unwrap(); // SIGKILL
    w.child.wait().unwrap();
    // The orphaned deploy (its own process group) is not ours to keep.
    let _ = Command::new("pkill").args(["-f", &format!("{}", l.path().join("deploy.sh").display())]).status();
    drop(w);
    let st = status(&cfg);
    assert_eq!(st["incident"]["attempts"], 1, "the attempt was persisted before it started: {st}");

    let w = watch(&cfg);
    // Let the restarted loop run several passes: it must not try again.
    wait_for(Duration::from_secs(30), "passes after the restart", || {
        let m = metrics(&w);
        m.lines()
            .filter(|l| l.starts_with("gitstate_reconcile_passes_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum::<u64>()
            >= 4
    });
    assert_eq!(l.attempts().len(), 1, "not repeated beyond policy: {:?}", l.attempts());
    assert_eq!(status(&cfg)["alarm"]["kind"], "drift");
}

#[test]
fn watch_picks_up_a_newly_discovered_environment() {
    let l = Loop::new();
    std::fs::write(
        l.path().join("deploy.sh"),
        "#!/bin/sh\necho \"$GITSTATE_ENVIRONMENT $GITSTATE_EXPECTED_SHA\" >> discovered.log\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(l.path().join("deploy.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = write_config(
        l.path(),
        &format!(
            "[source]\nrepo = \"{}\"\n[policy]\ngrace = \"0s\"\n[[discover]]\nref_prefix = \"refs/heads/previews/\"\n  [[discover.targets]]\n  name = \"web\"\n  [discover.targets.http]\n  urls = [\"{}\"]\n  [discover.remediate]\n  command = [\"./deploy.sh\"]\n{REF_POLL_ONLY}\n",
            l.repo.path().display(),
            l.server.url("/meta"),
        ),
    );
    l.repo.update_ref("refs/heads/previews/first", &l.c[1]);
    let w = watch(&cfg);
    l.repo.update_ref("refs/heads/previews/pr-42", &l.c[3]);
    let log = l.path().join("discovered.log");
    wait_for(Duration::from_secs(30), "the new environment's deploy", || {
        std::fs::read_to_string(&log).unwrap_or_default().contains(&format!("pr-42 {}", l.c[3]))
    });
    let (_, body) = http_get(w.port, "/status").unwrap();
    let st: Value = serde_json::from_str(&body).unwrap();
    let names: Vec<&str> =
        st["environments"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["first", "pr-42"]);
    // A known discovered environment's ref moving is seen by the ref poll (its listing),
    // not at the next full pass ten minutes away.
    l.repo.update_ref("refs/heads/previews/first", &l.c[2]);
    wait_for(Duration::from_secs(30), "the moved environment's deploy", || {
        std::fs::read_to_string(&log).unwrap_or_default().contains(&format!("first {}", l.c[2]))
    });
}

/// Full passes ten minutes apart: only the ref poll can react within a test.
const REF_POLL_ONLY: &str = "[watch]\ninterval = \"10m\"\nref_poll = \"200ms\"\njitter = \"0%\"";

/// CPU time (user + system, in clock ticks of 10 ms) the process has used.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn the_listener_backs_off_when_out_of_file_descriptors_and_recovers() {
    let l = Loop::new();
    l.deploy_script("exit 0");
    let cfg = l.config("grace = \"0s\"", "[watch]\ninterval = \"1h\"\nref_poll = \"10m\"");
    let w = watch(&cfg);
    let pid = w.child.id();
    // Leave the process three file descriptors, then connect more clients than that.
    let open = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count() as u64;
    let limit = rustix::process::Rlimit { current: Some(open + 3), maximum: Some(open + 3) };
    rustix::process::prlimit(
        rustix::process::Pid::from_raw(pid as i32),
        rustix::process::Resource::Nofile,
        limit,
    )
    .unwrap();
    let clients: Vec<std::net::TcpStream> =
        (0..12).map(|_| std::net::TcpStream::connect(("127.0.0.1", w.port)).unwrap()).collect();
    // accept(2) now fails with EMFILE: a loop that retries at once burns a core.
    std::thread::sleep(Duration::from_millis(500));
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(3));
    let used = cpu_ticks(pid) - before;
    assert!(used < 100, "watch used {used} ticks of CPU in 3 s with accept failing: it spins");
    drop(clients);
    wait_for(Duration::from_secs(30), "the listener to serve again", || {
        matches!(http_get(w.port, "/healthz"), Ok((200, _)))
    });
}

#[test]
fn a_trickling_git_source_holds_neither_watch_nor_sigterm() {
    let l = Loop::new();
    l.deploy_script("exit 0");
    let port = gitstate_testkit::trickling_git_server();
    let cfg = write_config(
        l.path(),
        &format!(
            "[source]\nrepo = \"git://127.0.0.1:{port}/repo.git\"\ntimeout = \"1s\"\n{}\n{FAST_WATCH}\n",
            http_env("production", "web", &[l.server.url("/meta")], "")
        ),
    );
    // One-shot commands fail in bounded time, naming the timeout.
    let r = with_config(&cfg, &["expected"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("did not complete within 1s"), "{}", r.stderr);
    // watch starts, keeps serving, and stops on SIGTERM while every poll trickles.
    let mut w = watch(&cfg);
    wait_for(Duration::from_secs(30), "a few polls", || {
        metrics(&w).contains("gitstate_reconcile_passes_total{result=\"error\"}")
    });
    assert!(matches!(http_get(w.port, "/healthz"), Ok((200, _))));
    assert_eq!(w.terminate(Duration::from_secs(60)), Some(0));
}

/// Secrets planted in every place a configuration may hold one (URL user-info, query
/// values, header values) never come back: not in any command's output or log, not in
/// an event, the state, `GITSTATE_DRIFTED`, or an alarm's body.
#[test]
fn a_planted_secret_never_comes_back_anywhere() {
    let l = Loop::new();
    l.repo.update_ref(REF, &l.c[3]);
    l.server.route("/meta?token=PLANTEDq1", Behavior::File(l.path().join("served.json")));
    l.deploy_script("printf '%s' \"$GITSTATE_DRIFTED\" > drifted.txt; exit 1");
    let hook = TestServer::start_background();
    hook.route("/hook?sig=PLANTEDq3", Behavior::Status(200));
    let url = l.server.url("/meta?token=PLANTEDq1").replace("http://", "http://PLANTEDuser:PLANTEDpw@");
    let cfg = write_config(
        l.path(),
        &format!(
            "[source]\nrepo = \"{repo}\"\n[policy]\ngrace = \"0s\"\nsettle = \"0s\"\nmax_attempts = 1\n\
             {env}  [environments.remediate]\n  command = [\"./deploy.sh\"]\n\
             [alerts.webhook]\nurl = \"{hook}\"\nheaders = {{ Authorization = \"Bearer ${{HOOK_TOKEN}}\" }}\n",
            repo = l.repo.path().display(),
            env = http_env(
                "production",
                "web",
                &[url],
                "  headers = { Authorization = \"Bearer ${STATUS_TOKEN}\" }"
            ),
            hook = hook.url("/hook?sig=PLANTEDq3"),
        ),
    );
    let mut seen = String::new();
    let runs: &[&[&str]] = &[
        &["validate"],
        &["expected"],
        &["check"],
        &["check", "-o", "json"],
        &["reconcile", "-o", "json"],
        &["reconcile"],
        &["reconcile", "-o", "json"],
        &["status"],
        &["status", "-o", "json"],
    ];
    for args in runs {
        for format in ["text", "json"] {
            let r = run(gitstate()
                .args(*args)
                .args(["--log-format", format, "-c"])
                .arg(&cfg)
                .env("GITSTATE_LOG", "debug")
                .env("STATUS_TOKEN", "PLANTEDh1")
                .env("HOOK_TOKEN", "PLANTEDh2"));
            assert!(r.code <= 1, "{args:?}: {}", r.stderr);
            seen.push_str(&r.stdout);
            seen.push_str(&r.stderr);
        }
    }
    // The loop did its work, so every place was written.
    assert!(l.event_names().iter().any(|e| e == "alarm_raised"), "{:?}", l.event_names());
    assert!(!hook.bodies("/hook?sig=PLANTEDq3").is_empty());
    assert!(seen.contains("token=***"), "the target's id is shown, redacted");
    for f in ["drifted.txt", ".gitstate/state.log", ".gitstate/events.jsonl"] {
        seen.push_str(&std::fs::read_to_string(l.path().join(f)).unwrap());
    }
    seen.push_str(&std::fs::read_to_string(l.path().join(".gitstate/state.json")).unwrap_or_default());
    assert!(std::fs::read_to_string(l.path().join("drifted.txt")).unwrap().contains("token=***"));
    for body in hook.bodies("/hook?sig=PLANTEDq3") {
        seen.push_str(&body);
    }
    let leaks: Vec<&str> = seen.lines().filter(|line| line.contains("PLANTED")).collect();
    assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));
}

/// The whole hostile fleet under `watch`: every pass completes, the loop keeps passing,
/// /healthz stays 200, nothing is ever in sync, and SIGTERM still ends it.
#[test]
fn watch_keeps_passing_over_the_hostile_fleet() {
    let l = Loop::new();
    l.deploy_script("exit 0");
    let far = TestServer::start_background();
    far.route("/x", meta(&l.c[1]));
    gitstate_testkit::hostile::serve(&l.server, meta(&l.c[1]), &far.url("/x"));
    let mut urls: Vec<String> =
        gitstate_testkit::hostile::FLEET.iter().map(|h| l.server.url(h.path)).collect();
    urls.push(format!("https://127.0.0.1:{}/meta", gitstate_testkit::hostile::tls_stall()));
    let cfg = write_config(
        l.path(),
        &format!(
            "[source]\nrepo = \"{}\"\n{}\n{FAST_WATCH}\n",
            l.repo.path().display(),
            http_env("production", "hostile", &urls, "  timeout = \"2s\"")
        ),
    );
    let mut w = watch(&cfg);
    let passes = |w: &Watching| -> u64 {
        metrics(w)
            .lines()
            .filter(|l| l.starts_with("gitstate_reconcile_passes_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    };
    wait_for(Duration::from_secs(60), "three passes over the fleet", || passes(&w) >= 3);
    assert!(matches!(http_get(w.port, "/healthz"), Ok((200, _))));
    let text = metrics(&w);
    assert!(text.contains("gitstate_environment_in_sync{environment=\"production\"} 0"), "{text}");
    assert!(text.contains("gitstate_instances{environment=\"production\",status=\"in_sync\"} 0"), "{text}");
    assert_eq!(w.terminate(Duration::from_secs(60)), Some(0));
}

/// A deploy script that leaves work in the background and exits 0: the work is left
/// alone, and gitstate's own exit does not wait for it (it holds the output pipe).
#[test]
fn background_work_after_exit_0_is_left_alone_and_holds_nothing() {
    let l = Loop::new();
    l.repo.update_ref(REF, &l.c[3]);
    l.deploy_script("setsid sh -c 'echo $$ > bg.pid; exec sleep 600' & sleep 0.2; echo triggered");
    let cfg = l.config("grace = \"0s\"", "");
    let start = Instant::now();
    let r = with_config(&cfg, &["reconcile", "-o", "json"]);
    assert!(start.elapsed() < Duration::from_secs(30), "reconcile waited for the background work");
    assert_eq!(r.json()["environments"][0]["actions"][0]["ok"], true, "{}", r.stdout);
    let pid = std::fs::read_to_string(l.path().join("bg.pid")).unwrap().trim().to_owned();
    assert!(Path::new(&format!("/proc/{pid}")).exists(), "the background work was killed");
    let _ = Command::new("kill").args(["-KILL", &pid]).status();
}

/// `watch` shutting down with a deploy in flight that ignores SIGTERM: after the 30 s
/// drain its process group gets SIGTERM, then SIGKILL 10 s later, and the event says so.
#[test]
fn watch_shutdown_stops_a_deploy_that_ignores_sigterm_and_says_so() {
    let l = Loop::new();
    l.deploy_script("trap '' TERM; sleep 600 & echo $! > child.pid; wait; wait");
    let cfg = l.config("grace = \"0s\"", FAST_WATCH);
    let mut w = watch(&cfg);
    l.repo.update_ref(REF, &l.c[3]);
    wait_for(Duration::from_secs(20), "the deploy to start", || l.path().join("child.pid").exists());
    assert_eq!(w.terminate(Duration::from_secs(90)), Some(0));
    let finished = l.events().into_iter().find(|e| e["event"] == "remediation_finished").expect("recorded");
    assert_eq!(finished["ok"], false);
    assert_eq!(
        finished["detail"],
        "./deploy.sh stopped because watch shut down: its process group got SIGTERM, then SIGKILL 10s later"
    );
    let child = std::fs::read_to_string(l.path().join("child.pid")).unwrap().trim().to_owned();
    let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
    assert!(stat.is_empty() || stat.contains(") Z "), "the deploy's child {child} survived");
}

/// SPEC §7 Alarms: an open alarm is posted with `endsAt` = now + ttl, so Alertmanager does
/// not resolve it between two `reconcile` runs from cron. Alertmanager resolves an alert
/// posted without `endsAt` after its `resolve_timeout` (5 minutes by default: exactly a
/// 5-minute CronJob's period); here 2 s, with runs 3 s apart.
#[test]
fn an_open_alarm_never_lapses_in_alertmanager_between_cron_runs() {
    let am = Alertmanager::start_with_resolve_timeout("2s");
    let l = Loop::new();
    l.repo.update_ref(REF, &l.c[3]);
    let cfg = l.config(
        "mode = \"observe\"\ngrace = \"0s\"",
        &format!("[alerts.alertmanager]\nurl = \"{}\"\n", am.url()),
    );
    for run in 0..3 {
        let r = with_config(&cfg, &["reconcile"]);
        assert_eq!(r.code, 1, "{}", r.stderr);
        std::thread::sleep(Duration::from_secs(3));
        let alerts = am.alerts();
        assert_eq!(alerts.len(), 1, "run {run}: the alarm lapsed between runs: {alerts:?}");
        assert_eq!(alerts[0]["labels"]["alertname"], "GitstateDrift");
        assert_eq!(alerts[0]["status"]["state"], "active");
        let ends: jiff::Timestamp = alerts[0]["endsAt"].as_str().unwrap().parse().unwrap();
        let left = ends.duration_since(jiff::Timestamp::now());
        assert!(left > jiff::SignedDuration::from_mins(30), "endsAt is an hour after the post: {ends}");
    }
    assert_eq!(l.event_names().iter().filter(|e| *e == "alarm_raised").count(), 1);
}

/// SPEC §7 Alarms, under watch: an open alarm is posted again on every pass with `endsAt`
/// = now + 4 × interval, so Alertmanager's copy moves forward pass after pass and never
/// lapses while the alarm is open.
#[test]
fn under_watch_an_open_alarms_ends_at_moves_forward_every_pass() {
    let am = Alertmanager::start();
    let l = Loop::new();
    l.repo.update_ref(REF, &l.c[3]);
    let cfg = l.config(
        "mode = \"observe\"\ngrace = \"0s\"",
        &format!("{FAST_WATCH}\n[alerts.alertmanager]\nurl = \"{}\"\n", am.url()),
    );
    let w = watch(&cfg);
    let ends = || -> Option<jiff::Timestamp> {
        let alerts = am.alerts();
        alerts.first().and_then(|a| a["endsAt"].as_str()?.parse().ok())
    };
    wait_for(Duration::from_secs(20), "the alarm in Alertmanager", || ends().is_some());
    let mut last = ends().unwrap();
    for round in 0..3 {
        let before = passes(&w);
        wait_for(Duration::from_secs(20), "two more passes", || passes(&w) >= before + 2.0);
        wait_for(Duration::from_secs(5), "the next post", || ends().is_some_and(|e| e > last));
        let now = ends().unwrap();
        let ahead = now.duration_since(jiff::Timestamp::now());
        assert!(
            ahead <= jiff::SignedDuration::from_secs(5),
            "round {round}: endsAt is 4 intervals ahead, not {ahead}"
        );
        assert!(ahead > jiff::SignedDuration::ZERO, "round {round}: the alarm is still firing: {now}");
        last = now;
    }
    assert_eq!(am.alerts().len(), 1);
    assert_eq!(l.event_names().iter().filter(|e| *e == "alarm_raised").count(), 1);
}

/// SPEC §7 Alarms: a sink answering 403 (a revoked hook) is told once, not every pass, and
/// one answering 503 is retried with backoff (passes 1, 2, 4, 8), each failure written to
/// `events.jsonl` at most once an hour.
#[test]
fn a_refusing_hook_is_told_once_and_a_failing_one_with_backoff() {
    for (code, posts) in [(403, 1), (503, 3)] {
        let l = Loop::new();
        l.server.route("/hook", Behavior::Status(code));
        l.repo.update_ref(REF, &l.c[3]);
        let cfg = l.config(
            "mode = \"observe\"\ngrace = \"0s\"",
            &format!("[alerts.webhook]\nurl = \"{}\"\n", l.server.url("/hook")),
        );
        for _ in 0..6 {
            assert_eq!(with_config(&cfg, &["reconcile"]).code, 1);
        }
        assert_eq!(l.server.bodies("/hook").len(), posts, "HTTP {code}");
        let failed: Vec<Value> =
            l.events().into_iter().filter(|e| e["event"] == "notification_failed").collect();
        assert_eq!(failed.len(), 1, "HTTP {code}: {failed:?}");
        assert!(failed[0]["error"].as_str().unwrap().contains(&code.to_string()));
    }
}

/// SPEC §7 State: an environment gone from the configuration is removed on the next whole
/// pass: its open alarm resolved (and delivered) as removed, its state pruned, `status` no
/// longer shows it and no longer fails for it.
#[test]
fn a_removed_environment_resolves_its_alarm_and_leaves_the_state() {
    let l = Loop::new();
    l.server.route("/hook", Behavior::Status(200));
    l.repo.update_ref("refs/heads/environments/staging", &l.c[1]);
    l.repo.update_ref(REF, &l.c[3]);
    let staging = format!(
        "[[environments]]\nname = \"staging\"\n  [[environments.targets]]\n  name = \"web\"\n  [environments.targets.http]\n  urls = [\"{}\"]\n",
        l.server.url("/meta")
    );
    let hook = format!("[alerts.webhook]\nurl = \"{}\"\n", l.server.url("/hook"));
    let cfg = l.config("mode = \"observe\"\ngrace = \"0s\"", &format!("{staging}\n{hook}"));
    assert_eq!(with_config(&cfg, &["reconcile"]).code, 1);
    assert_eq!(with_config(&cfg, &["status"]).code, 1, "production is in alarm");

    // production leaves the configuration.
    let text = std::fs::read_to_string(&cfg).unwrap();
    let start = text.find("[[environments]]\nname = \"production\"").unwrap();
    let end = text.find("[[environments]]\nname = \"staging\"").unwrap();
    std::fs::write(&cfg, format!("{}{}", &text[..start], &text[end..])).unwrap();
    let r = with_config(&cfg, &["reconcile"]);
    assert_eq!(r.code, 0, "{}", r.stderr);

    let posted: Vec<Value> =
        l.server.bodies("/hook").iter().map(|b| serde_json::from_str(b).unwrap()).collect();
    assert_eq!(posted.len(), 2, "{posted:?}");
    assert_eq!(
        (posted[1]["event"].as_str(), posted[1]["environment"].as_str()),
        (Some("alarm_resolved"), Some("production"))
    );
    assert!(posted[1]["summary"].as_str().unwrap().contains("removed"), "{}", posted[1]);
    let events = l.events();
    let resolved = events.iter().find(|e| e["event"] == "alarm_resolved").unwrap();
    assert_eq!(resolved["reason"], "removed");
    assert!(events.iter().any(|e| e["event"] == "environment_removed" && e["environment"] == "production"));
    let st = with_config(&cfg, &["status", "-o", "json"]);
    assert_eq!(st.code, 0, "{}", st.stdout);
    let j = st.json();
    let names: Vec<&str> =
        j["environments"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["staging"]);
}

/// SPEC §7 watch: an environment that is not in sync is probed again every
/// `converging_poll`, so a deploy that converges after the remediation returned (a rollout
/// that takes a while) is seen, with its lag, within seconds — not at the next full pass
/// (10 minutes here) or the next attempt's backoff.
#[test]
fn watch_sees_a_convergence_within_seconds_of_it_happening() {
    let l = Loop::new();
    // The deploy only triggers a rollout; the test completes the rollout later.
    l.deploy_script("exit 0");
    let cfg = l.config(
        "grace = \"0s\"\nsettle = \"0s\"\nbackoff = \"10m\"\nbackoff_max = \"10m\"",
        "[watch]\ninterval = \"10m\"\nref_poll = \"200ms\"\nconverging_poll = \"1s\"\njitter = \"0%\"",
    );
    let w = watch(&cfg);
    l.repo.update_ref(REF, &l.c[3]);
    wait_for(Duration::from_secs(20), "the remediation to finish", || {
        l.event_names().iter().any(|e| e == "remediation_finished")
    });
    let st = || -> Value {
        let (_, body) = http_get(w.port, "/status").unwrap();
        serde_json::from_str::<Value>(&body).unwrap()["environments"][0].clone()
    };
    assert_ne!(st()["phase"], "in_sync", "the rollout is not done");
    l.serve(&l.c[3]);
    wait_for(Duration::from_secs(2), "status to show the convergence and its lag", || {
        let s = st();
        s["phase"] == "in_sync" && s["expected"] == l.c[3].as_str() && s["last_convergence_lag_s"].is_f64()
    });
    let converged =
        l.events().into_iter().find(|e| e["event"] == "converged" && e["expected"] == l.c[3].as_str());
    assert_eq!(converged.unwrap()["lag_from"], "reflog");
}

/// SPEC §3 `drifted`, §5 `[source] mirror`: a hotfix on a remote source (a real `git
/// daemon`) is never overwritten by default. With the default mirror the hotfix is
/// `diverged`; with `mirror = false` it is `drifted` (the relation is unknown), which fails
/// closed in the same way: a `diverged` alarm, no deploy.
#[test]
fn a_hotfix_on_a_remote_source_is_never_remediated_by_default() {
    for mirror in ["", "mirror = false"] {
        let l = Loop::new();
        // The hotfix: a commit on a branch of its own, deployed by hand.
        l.repo.git(&["checkout", "-q", "-b", "hotfix", &l.c[1]]);
        let hotfix = l.repo.commit("hotfix");
        l.repo.git(&["checkout", "-q", "main"]);
        l.repo.update_ref(REF, &l.c[3]);
        l.serve(&hotfix);
        let base = tempfile::tempdir().unwrap();
        gitstate_testkit::git(base.path(), &["init", "-q", "--bare", "repo.git"]);
        l.repo.git(&[
            "push",
            "-q",
            "-f",
            &base.path().join("repo.git").display().to_string(),
            "refs/heads/*:refs/heads/*",
        ]);
        let daemon = gitstate_testkit::git_daemon(base.path());
        l.deploy_script("exit 0");
        let local = l.config("grace = \"0s\"", "");
        let text = std::fs::read_to_string(&local).unwrap().replacen(
            &format!("repo = \"{}\"", l.repo.path().display()),
            &format!("repo = \"git://127.0.0.1:{}/repo.git\"\n{mirror}", daemon.port),
            1,
        );
        let cfg = write_config(l.path(), &text);
        for _ in 0..3 {
            let r = with_config(&cfg, &["reconcile", "-o", "json"]);
            assert_eq!(r.code, 1, "{}", r.stderr);
            let want = if mirror.is_empty() { "diverged" } else { "drifted" };
            assert_eq!(r.json()["environments"][0]["targets"][0]["status"], want, "{mirror:?}");
        }
        assert!(l.attempts().is_empty(), "{mirror:?}: the hotfix was overwritten: {:?}", l.attempts());
        let st = status(&cfg);
        assert_eq!(
            (st["phase"].as_str(), st["alarm"]["kind"].as_str()),
            (Some("alarm"), Some("diverged")),
            "{mirror:?}"
        );
    }
}

/// SPEC §7 invariant 3 and 4, with real processes: a target that flaps between the expected
/// build and the old one (an autoscaler launching the old image) gets at most
/// `max_attempts` deploys for the expected commit, however often it flaps, and one drift
/// alarm that stays open while it flaps (`keep_firing_for`).
#[test]
fn a_flapping_target_gets_max_attempts_deploys_and_one_alarm() {
    let l = Loop::new();
    l.server.route("/hook", Behavior::Status(200));
    l.deploy_script("exit 0");
    l.repo.update_ref(REF, &l.c[3]);
    let cfg = l.config(
        "grace = \"0s\"\nsettle = \"0s\"\nbackoff = \"0s\"\nbackoff_max = \"0s\"\nmax_attempts = 2",
        &format!("[alerts.webhook]\nurl = \"{}\"\n", l.server.url("/hook")),
    );
    for run in 0..12 {
        // In sync on even runs, the old build on odd ones.
        l.serve(if run % 2 == 0 { &l.c[3] } else { &l.c[1] });
        with_config(&cfg, &["reconcile"]);
    }
    assert_eq!(l.attempts().len(), 2, "{:?}", l.attempts());
    let posted: Vec<Value> =
        l.server.bodies("/hook").iter().map(|b| serde_json::from_str(b).unwrap()).collect();
    let events: Vec<&str> = posted.iter().map(|p| p["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["alarm_raised"], "one alarm, open while it flaps");
    assert_eq!(status(&cfg)["alarm"]["kind"], "drift");
}

/// SPEC §12, in a real headless Chromium: the dashboard of a running `watch` shows every
/// environment and instance with its status, with no console error and nothing the
/// Content-Security-Policy blocks; when a ref moves, the page shows the new phase and the
/// pending commits within 2 s without a reload; screenshots at a laptop's and a phone's
/// width are not blank.
#[test]
fn the_dashboard_shows_every_environment_and_updates_itself_in_a_real_browser() {
    let l = Loop::new();
    l.deploy_script("exit 0");
    l.repo.update_ref("refs/heads/environments/staging", &l.c[1]);
    l.server.route("/replica", meta(&l.c[1]));
    let staging = format!(
        "[[environments]]\nname = \"staging\"\n  [[environments.targets]]\n  name = \"api\"\n  [environments.targets.http]\n  urls = [\"{}\", \"{}\"]\n",
        l.server.url("/meta"),
        l.server.url("/replica")
    );
    let cfg = l.config("grace = \"1h\"", &format!("{staging}\n{FAST_WATCH}"));
    let w = watch(&cfg);
    let chrome = gitstate_testkit::Chromium::start();
    let mut page = chrome.page();
    let url = format!("http://127.0.0.1:{}/", w.port);
    page.navigate(&url);
    let phases = |page: &mut gitstate_testkit::Page| -> String {
        page.eval(
            "[...document.querySelectorAll('section.env')].map(s => s.id + '=' + s.dataset.phase).join(' ')",
        )
        .as_str()
        .unwrap()
        .to_owned()
    };
    assert_eq!(phases(&mut page), "env-production=in_sync env-staging=in_sync");
    let rows = page.eval(
        "[...document.querySelectorAll('#env-staging tr[data-status]')].map(r => r.dataset.status).join(' ')",
    );
    assert_eq!(rows, "in_sync in_sync", "every instance, with its status");

    // The ref moves: the page follows by itself (no reload: the marker survives).
    page.eval("window.marker = 'still here'");
    l.repo.update_ref(REF, &l.c[3]);
    wait_for(Duration::from_secs(2), "the page to show the new phase", || {
        !phases(&mut page).contains("env-production=in_sync")
    });
    assert_eq!(page.eval("window.marker"), "still here");
    let text = page.eval("document.querySelector('#env-production').innerText");
    let text = text.as_str().unwrap();
    assert!(text.contains("c 3") && text.contains("c 2") && text.contains("pending"), "{text}");
    assert!(phases(&mut page).starts_with("env-production="), "worst first: {}", phases(&mut page));
    let errors = page.errors();
    assert!(errors.is_empty(), "console errors or blocked content: {errors:?}");

    // Screenshots (kept out of the repository): a page of text, not a blank one.
    let shots = tempfile::tempdir().unwrap();
    let sizes = [(1280, 800, false), (390, 844, true)];
    let taken: Vec<Vec<u8>> = sizes.iter().map(|&(w, h, m)| page.screenshot(w, h, m)).collect();
    // The book's picture of the dashboard, from this very page when `scripts/docs` asks.
    if let Some(dir) = std::env::var_os("GITSTATE_DOCS_DIR") {
        std::fs::write(Path::new(&dir).join("dashboard.png"), &taken[0]).unwrap();
    }
    page.navigate("about:blank");
    for ((w, h, m), png) in sizes.iter().zip(&taken) {
        std::fs::write(shots.path().join(format!("dashboard-{w}x{h}.png")), png).unwrap();
        let blank = page.screenshot(*w, *h, *m);
        assert!(png.starts_with(b"\x89PNG"), "{w}x{h}");
        assert!(png.len() > 4 * blank.len(), "{w}x{h}: {} bytes, a blank page is {}", png.len(), blank.len());
    }
}

/// SPEC §9 with a running `watch`: a suspension stops further attempts and shows in
/// `/status` within `ref_poll`; resume lets the loop go on; a retry after an exhausted
/// incident makes a new attempt at once and the alarm resolves when it converges;
/// `--until` ends by itself; an unknown environment is exit 2.
#[test]
fn suspend_resume_and_retry_steer_a_running_watch() {
    let l = Loop::new();
    l.deploy_script("echo 'registry unavailable' >&2; exit 1");
    let cfg = l.config(
        "grace = \"0s\"\nsettle = \"3s\"\nbackoff = \"3s\"\nbackoff_max = \"3s\"\nmax_attempts = 2",
        FAST_WATCH,
    );
    let w = watch(&cfg);
    let st = || -> Value {
        let (_, body) = http_get(w.port, "/status").unwrap();
        serde_json::from_str::<Value>(&body).unwrap()["environments"][0].clone()
    };
    l.repo.update_ref(REF, &l.c[3]);
    wait_for(Duration::from_secs(20), "the first attempt", || l.attempts().len() == 1);

    let r = with_config(&cfg, &["suspend", "production", "--reason", "incident 42"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    wait_for(Duration::from_secs(2), "the suspension in /status", || st()["phase"] == "suspended");
    let s = st();
    assert_eq!(s["suspension"]["reason"], "incident 42");
    assert!(s["suspension"]["by"].as_str().is_some_and(|b| !b.is_empty()));
    // Past the time the next attempt was due, then two more passes of the loop's own: the
    // attempt would have come by now, were it not suspended.
    let due: jiff::Timestamp =
        s["incident"]["next_attempt_at"].as_str().expect("an attempt was due").parse().unwrap();
    wait_for(Duration::from_secs(10), "the attempt's due time", || jiff::Timestamp::now() > due);
    let before = passes(&w);
    wait_for(Duration::from_secs(10), "two more passes", || passes(&w) >= before + 2.0);
    assert_eq!(l.attempts().len(), 1, "no attempt while suspended (the backoff was 3 s)");
    let metrics = metrics(&w);
    assert!(metrics.contains("gitstate_environment_suspended{environment=\"production\"} 1"), "{metrics}");
    let (_, page) = http_get(w.port, "/").unwrap();
    assert!(page.contains("suspended by") && page.contains("incident 42"), "the dashboard says who and why");

    assert_eq!(with_config(&cfg, &["resume", "production"]).code, 0);
    wait_for(Duration::from_secs(10), "the second attempt", || l.attempts().len() == 2);
    wait_for(Duration::from_secs(10), "the drift alarm", || st()["alarm"]["kind"] == "drift");

    // The deploy is fixed; attempts are exhausted, so only the operator can ask again.
    l.deploy_script("printf '{\"sha\":\"%s\"}' \"$GITSTATE_EXPECTED_SHA\" > served.json");
    assert_eq!(with_config(&cfg, &["retry", "production"]).code, 0);
    wait_for(Duration::from_secs(5), "the retried attempt", || l.attempts().len() == 3);
    wait_for(Duration::from_secs(10), "convergence", || {
        st()["phase"] == "in_sync" && st()["alarm"].is_null()
    });

    assert_eq!(with_config(&cfg, &["suspend", "production", "--until", "2s"]).code, 0);
    wait_for(Duration::from_secs(2), "the suspension", || st()["phase"] == "suspended");
    wait_for(Duration::from_secs(6), "the suspension to end by itself", || st()["phase"] == "in_sync");

    let r = with_config(&cfg, &["suspend", "nope"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("nope"), "{}", r.stderr);
    let names = l.event_names();
    for e in ["suspended", "resumed", "retry_requested"] {
        assert!(names.iter().any(|n| n == e), "{e} in {names:?}");
    }
}

/// SPEC §9 freeze windows, built from the current time in a non-UTC zone: one open now
/// holds remediation, phase `frozen`, and consumes no attempt; one that closes 2 s from
/// now lets the deploy run right after. `validate` prints each window's next start and end.
#[test]
fn a_freeze_window_holds_remediation_until_it_ends() {
    let tz = "America/New_York";
    let now = jiff::Timestamp::now().in_tz(tz).unwrap();
    let into_minute = u64::try_from(now.second()).unwrap();
    let schedule = format!("{} {} * * *", now.minute(), now.hour());
    let l = Loop::new();
    l.deploy_script("exit 0");
    l.repo.update_ref(REF, &l.c[3]);
    let window = |duration: String| {
        format!(
            "grace = \"0s\"\n[[policy.windows]]\nschedule = \"{schedule}\"\nduration = \"{duration}\"\ntimezone = \"{tz}\""
        )
    };

    // Open for an hour: held.
    let cfg = l.config(&window("1h".into()), "");
    let v = with_config(&cfg, &["validate"]);
    assert!(v.stdout.contains("freeze window") && v.stdout.contains("open now, until"), "{}", v.stdout);
    for _ in 0..2 {
        let r = with_config(&cfg, &["reconcile", "-o", "json"]);
        assert_eq!(r.json()["environments"][0]["phase"], "frozen", "{}", r.stdout);
    }
    assert!(l.attempts().is_empty(), "no deploy inside the window");
    let st = status(&cfg);
    assert_eq!(
        (st["phase"].as_str(), st["incident"]["attempts"].as_u64()),
        (Some("frozen"), Some(0)),
        "{st}"
    );

    // Closing 2 s from now: held, then it runs.
    let cfg = l.config(&window(format!("{}s", into_minute + 3)), "");
    let r = with_config(&cfg, &["reconcile", "-o", "json"]);
    assert_eq!(r.json()["environments"][0]["phase"], "frozen", "{}", r.stdout);
    let ends = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(3);
    wait_for(Duration::from_secs(10), "the window to end and the deploy to run", || {
        if jiff::Timestamp::now() >= ends {
            with_config(&cfg, &["reconcile"]);
        }
        !l.attempts().is_empty()
    });
}

/// SPEC §13: with refs polled only every 10 minutes, a signed push webhook (GitHub's,
/// Gitea's, GitLab's headers and payload shape) starts the remediation of the environment
/// on the pushed ref at once, over a real `git http-backend` remote; a wrong or missing
/// signature is 401, an oversize body 413, a ping 204, and a push for a ref no
/// environment uses changes nothing.
#[test]
fn a_signed_push_webhook_starts_the_remediation_at_once() {
    let l = Loop::new();
    l.deploy_script("exit 0");
    let base = tempfile::tempdir().unwrap();
    gitstate_testkit::git(base.path(), &["init", "-q", "--bare", "repo.git"]);
    let bare = base.path().join("repo.git").display().to_string();
    let push = || l.repo.git(&["push", "-q", "-f", &bare, "refs/heads/*:refs/heads/*"]);
    push();
    let backend = gitstate_testkit::git_http_backend(base.path());
    let hook_port = gitstate_testkit::free_port();
    let secret = "a-webhook-secret-of-some-length";
    let local = l.config("grace = \"0s\"\nsettle = \"1h\"\nbackoff = \"1h\"\nbackoff_max = \"1h\"", "");
    let text = std::fs::read_to_string(&local).unwrap().replacen(
        &format!("repo = \"{}\"", l.repo.path().display()),
        &format!("repo = \"http://127.0.0.1:{}/repo.git\"", backend.port),
        1,
    );
    let text = format!(
        "{text}\n[watch]\ninterval = \"10m\"\nref_poll = \"10m\"\n[watch.webhook]\nlisten = \"127.0.0.1:{hook_port}\"\nsecret = \"{secret}\"\n"
    );
    let cfg = write_config(l.path(), &text);
    let w = watch(&cfg);
    let body = |reference: &str| {
        format!(r#"{{"ref":"{reference}","before":"{}","after":"{}","repository":{{"full_name":"acme/shop"}},"pusher":{{"name":"ada"}},"commits":[]}}"#, l.c[1], l.c[3]).into_bytes()
    };
    let sig = |b: &[u8]| gitstate_cli::listener::webhook::sign(secret, b);

    // Refusals first: nothing is polled.
    let b = body(REF);
    assert_eq!(
        http_post(
            hook_port,
            "/hooks/git",
            &[
                ("X-GitHub-Event", "push".into()),
                ("X-Hub-Signature-256", format!("sha256={}", sig(b"other")))
            ],
            &b
        ),
        401
    );
    assert_eq!(http_post(hook_port, "/hooks/git", &[("X-GitHub-Event", "push".into())], &b), 401);
    let huge = vec![b' '; 2 * 1024 * 1024];
    assert_eq!(
        http_post(
            hook_port,
            "/hooks/git",
            &[("X-GitHub-Event", "push".into()), ("X-Hub-Signature-256", format!("sha256={}", sig(&huge)))],
            &huge
        ),
        413
    );
    let ping = br#"{"zen":"Keep it logically awesome."}"#;
    assert_eq!(
        http_post(
            hook_port,
            "/hooks/git",
            &[("X-GitHub-Event", "ping".into()), ("X-Hub-Signature-256", format!("sha256={}", sig(ping)))],
            ping
        ),
        204
    );

    // The ref moves on the remote; a push for another ref polls that ref alone: the poll it
    // wakes changes nothing (counted as such), and nothing starts.
    l.repo.update_ref(REF, &l.c[3]);
    push();
    let polls = |result: &str| -> f64 {
        let line = format!("gitstate_ref_polls_total{{result=\"{result}\"}} ");
        metrics(&w).lines().filter_map(|l| l.strip_prefix(&line)?.parse::<f64>().ok()).sum()
    };
    let (unchanged, changed) = (polls("unchanged"), polls("changed"));
    let other = body("refs/heads/feature/x");
    assert_eq!(
        http_post(
            hook_port,
            "/hooks/git",
            &[("X-GitHub-Event", "push".into()), ("X-Hub-Signature-256", format!("sha256={}", sig(&other)))],
            &other
        ),
        202
    );
    wait_for(Duration::from_secs(20), "the poll the push wakes", || polls("unchanged") > unchanged);
    assert_eq!(polls("changed"), changed, "a push for a ref no environment uses changed something");
    assert!(l.attempts().is_empty(), "a push for a ref no environment uses starts nothing");

    // GitHub's push: the remediation starts at once.
    let sent = Instant::now();
    assert_eq!(
        http_post(
            hook_port,
            "/hooks/git",
            &[
                ("X-GitHub-Event", "push".into()),
                ("X-GitHub-Delivery", "1".into()),
                ("X-Hub-Signature-256", format!("sha256={}", sig(&b)))
            ],
            &b
        ),
        202
    );
    wait_for(Duration::from_secs(10), "the remediation after GitHub's push", || l.attempts().len() == 1);
    let reaction = sent.elapsed();

    // Gitea's and GitLab's, for the next moves.
    l.repo.update_ref(REF, &l.c[2]);
    push();
    assert_eq!(
        http_post(
            hook_port,
            "/hooks/git",
            &[("X-Gitea-Event", "push".into()), ("X-Gitea-Signature", sig(&b))],
            &b
        ),
        202
    );
    wait_for(Duration::from_secs(10), "the remediation after Gitea's push", || l.attempts().len() == 2);
    l.repo.update_ref(REF, &l.c[3]);
    push();
    assert_eq!(
        http_post(
            hook_port,
            "/hooks/git",
            &[("X-Gitlab-Event", "Push Hook".into()), ("X-Gitlab-Token", secret.into())],
            &b
        ),
        202
    );
    wait_for(Duration::from_secs(10), "the remediation after GitLab's push", || l.attempts().len() == 3);
    let m = metrics(&w);
    assert!(m.contains("gitstate_webhook_requests_total{outcome=\"accepted\"} 4"), "{m}");
    assert!(m.contains("gitstate_webhook_requests_total{outcome=\"unauthorized\"} 2"), "{m}");
    eprintln!("signed push -> remediation started: {reaction:?}");
}
