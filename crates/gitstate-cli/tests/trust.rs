//! SPEC §18 end to end: commits signed with a real SSH key by `git commit -S`, an
//! attacker's unsigned commit on top, the built binary under `reconcile` and `watch`.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// An SSH key, the allowed-signers file naming it, and signed commits.
fn signer(l: &Loop) -> std::path::PathBuf {
    let key = l.path().join("ada");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "ada", "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    std::fs::write(l.path().join("allowed_signers"), format!("ada@example.com {public}")).unwrap();
    key
}

fn commit_signed(l: &Loop, key: &std::path::Path, msg: &str) -> String {
    let signing = format!("user.signingkey={}", key.display());
    l.repo.git(&["-c", "gpg.format=ssh", "-c", &signing, "commit", "-q", "-S", "--allow-empty", "-m", msg]);
    l.repo.git(&["rev-parse", "HEAD"]).trim().to_owned()
}

fn commit_unsigned(l: &Loop, msg: &str) -> String {
    l.repo.git(&["commit", "-q", "--allow-empty", "-m", msg]);
    l.repo.git(&["rev-parse", "HEAD"]).trim().to_owned()
}

/// `Loop`'s configuration with `[source.trust]` naming the allowed-signers file.
fn trusted_config(l: &Loop, policy: &str, extra: &str) -> std::path::PathBuf {
    let cfg = l.config(policy, extra);
    let text = std::fs::read_to_string(&cfg).unwrap().replacen(
        "[policy]",
        "[source.trust]\nallowed_signers = \"allowed_signers\"\n\n[policy]",
        1,
    );
    write_config(l.path(), &text)
}

const FAST: &str =
    "[watch]\ninterval = \"1s\"\nref_poll = \"200ms\"\njitter = \"0%\"\nconverging_poll = \"500ms\"\n";

fn hook_events(hook: &TestServer) -> Vec<Value> {
    hook.bodies("/hook").iter().map(|b| serde_json::from_str(b).unwrap()).collect()
}

/// An attacker moves the ref to an unsigned commit on top of signed ones: nothing is
/// deployed, one `untrusted` alarm names the commit; a signed commit built on the last
/// trusted one ends it and is deployed.
#[test]
fn an_unsigned_commit_on_top_of_signed_ones_is_never_deployed_under_reconcile() {
    let l = Loop::new();
    let key = signer(&l);
    let good = commit_signed(&l, &key, "release 1");
    l.repo.update_ref(REF, &good);
    l.serve(&good);
    l.deploy_script("printf '{\"sha\":\"%s\"}' \"$GITSTATE_EXPECTED_SHA\" > served.json");
    let hook = TestServer::start_background();
    hook.route("/hook", Behavior::Status(200));
    let cfg = trusted_config(
        &l,
        "grace = \"0s\"\nsettle = \"0s\"",
        &format!("[alerts.webhook]\nurl = \"{}\"\n", hook.url("/hook")),
    );
    assert_eq!(with_config(&cfg, &["validate"]).code, 0);
    let r = with_config(&cfg, &["reconcile", "-o", "json"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let st = status(&cfg);
    assert_eq!(st["trust"]["state"], "trusted", "{st}");
    assert_eq!(st["trust"]["signer"], "ada@example.com");
    // `check` says who signed what is to run, in JSON and with -v.
    let r = with_config(&cfg, &["check", "-o", "json"]);
    assert_eq!(r.json()["environments"][0]["trust"]["signer"], "ada@example.com", "{}", r.stdout);
    let r = with_config(&cfg, &["status"]);
    assert!(
        r.stdout.contains(&format!("production: {} signed by ada@example.com", &good[..12])),
        "{}",
        r.stdout
    );
    let r = with_config(&cfg, &["check", "-v"]);
    assert!(
        r.stdout.contains(&format!("production: {} signed by ada@example.com", &good[..12])),
        "{}",
        r.stdout
    );

    // The attacker's commit, on top of the signed one.
    let evil = commit_unsigned(&l, "totally harmless");
    l.repo.update_ref(REF, &evil);
    for _ in 0..3 {
        let r = with_config(&cfg, &["reconcile", "-o", "json"]);
        assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
        assert_eq!(r.json()["environments"][0]["phase"], "untrusted");
    }
    assert!(l.attempts().is_empty(), "deployed an untrusted commit: {:?}", l.attempts());
    let st = status(&cfg);
    assert_eq!(
        (st["phase"].as_str(), st["alarm"]["kind"].as_str()),
        (Some("untrusted"), Some("untrusted")),
        "{st}"
    );
    assert_eq!(st["trust"]["state"], "untrusted");
    let r = with_config(&cfg, &["status"]);
    assert!(
        r.stdout.contains(&format!("production: {} is NOT trusted: commit {}", &evil[..12], &evil[..12])),
        "{}",
        r.stdout
    );
    let reason = st["trust"]["reason"].as_str().unwrap();
    assert!(reason.contains(&evil[..12]) && reason.contains("unsigned"), "{reason}");
    let raised: Vec<Value> =
        hook_events(&hook).into_iter().filter(|e| e["event"] == "alarm_raised").collect();
    assert_eq!(raised.len(), 1, "one alarm: {raised:#?}");
    assert_eq!(raised[0]["alarm"], "untrusted");
    assert!(raised[0]["summary"].as_str().unwrap().contains(&evil[..12]), "{}", raised[0]["summary"]);

    // A signed commit on top of the attacker's still brings it: still untrusted.
    let on_top = commit_signed(&l, &key, "signed, but on top");
    l.repo.update_ref(REF, &on_top);
    assert_eq!(with_config(&cfg, &["reconcile"]).code, 1);
    assert!(l.attempts().is_empty());
    // A signed commit built on the last trusted one ends it, and is deployed.
    l.repo.git(&["checkout", "-q", &good]);
    let fixed = commit_signed(&l, &key, "release 2");
    l.repo.update_ref(REF, &fixed);
    let r = with_config(&cfg, &["reconcile", "-o", "json"]);
    assert_eq!(l.attempts().len(), 1, "{}{}", r.stdout, r.stderr);
    assert!(l.attempts()[0].ends_with(&fixed));
    assert_eq!(with_config(&cfg, &["reconcile"]).code, 0);
    assert_eq!(status(&cfg)["trust"]["state"], "trusted");
    // One alarm per untrusted commit the ref pointed at (the evil one, the one on top),
    // each resolved once; none open now.
    let events: Vec<String> = hook_events(&hook)
        .iter()
        .map(|e| format!("{} {}", e["event"].as_str().unwrap(), e["alarm"].as_str().unwrap()))
        .collect();
    assert_eq!(
        events,
        [
            "alarm_raised untrusted",
            "alarm_resolved untrusted",
            "alarm_raised untrusted",
            "alarm_resolved untrusted"
        ]
    );
    assert_eq!(status(&cfg)["alarm"], Value::Null);

    // `rollback` will not move the ref to the attacker's commit either.
    let r = with_config(&cfg, &["rollback", "production", "--to", &evil, "--reason", "testing"]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("is not trusted") && r.stderr.contains(&evil[..12]), "{}", r.stderr);
    assert_eq!(l.repo.git(&["rev-parse", REF]).trim(), fixed, "the ref did not move");
}

/// The same attack under `watch`: the ref moves to an unsigned commit, nothing is
/// deployed, one alarm.
#[test]
fn an_unsigned_commit_is_never_deployed_under_watch() {
    let l = Loop::new();
    let key = signer(&l);
    let good = commit_signed(&l, &key, "release 1");
    l.repo.update_ref(REF, &good);
    l.serve(&good);
    l.deploy_script("printf '{\"sha\":\"%s\"}' \"$GITSTATE_EXPECTED_SHA\" > served.json");
    let hook = TestServer::start_background();
    hook.route("/hook", Behavior::Status(200));
    let cfg = trusted_config(
        &l,
        "grace = \"0s\"\nsettle = \"0s\"",
        &format!("[alerts.webhook]\nurl = \"{}\"\n{FAST}", hook.url("/hook")),
    );
    let w = watch(&cfg);
    let evil = commit_unsigned(&l, "totally harmless");
    l.repo.update_ref(REF, &evil);
    wait_for(Duration::from_secs(20), "the untrusted alarm", || {
        hook_events(&hook).iter().any(|e| e["event"] == "alarm_raised" && e["alarm"] == "untrusted")
    });
    let before = passes(&w);
    wait_for(Duration::from_secs(20), "more passes", || passes(&w) >= before + 4.0);
    assert!(l.attempts().is_empty(), "deployed an untrusted commit: {:?}", l.attempts());
    let raised = hook_events(&hook).into_iter().filter(|e| e["event"] == "alarm_raised").count();
    assert_eq!(raised, 1);
    let (code, body) = gitstate_testkit::http_get(w.port, "/status").unwrap();
    assert_eq!(code, 200);
    let st: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(st["environments"][0]["phase"], "untrusted", "{st}");
    let m = metrics(&w);
    assert!(m.contains("gitstate_untrusted_commits_total{environment=\"production\"} 1\n"), "{m}");
    assert!(m.contains("gitstate_alarms_open{environment=\"production\",alarm=\"untrusted\"} 1\n"), "{m}");
}

/// SPEC §18: an instance running a commit nobody allowed signed (a hotfix built from an
/// unsigned commit) raises `unsigned_running`, whatever the phase; back on the signed
/// commit, it resolves.
#[test]
fn unsigned_code_running_raises_unsigned_running() {
    let l = Loop::new();
    let key = signer(&l);
    let good = commit_signed(&l, &key, "release 1");
    l.repo.update_ref(REF, &good);
    l.serve(&good);
    l.deploy_script("exit 0");
    let hook = TestServer::start_background();
    hook.route("/hook", Behavior::Status(200));
    let cfg = trusted_config(
        &l,
        "grace = \"1h\"",
        &format!("[alerts.webhook]\nurl = \"{}\"\n{FAST}", hook.url("/hook")),
    );
    let w = watch(&cfg);
    // Someone builds a hotfix from an unsigned commit and runs it by hand.
    let hot = commit_unsigned(&l, "hotfix, unsigned");
    l.serve(&hot);
    wait_for(Duration::from_secs(20), "the unsigned_running alarm", || {
        hook_events(&hook).iter().any(|e| e["event"] == "alarm_raised" && e["alarm"] == "unsigned_running")
    });
    let raised = hook_events(&hook).into_iter().find(|e| e["alarm"] == "unsigned_running").unwrap();
    assert!(raised["summary"].as_str().unwrap().contains(&hot[..12]), "{}", raised["summary"]);
    // Back on the signed commit: resolved, once.
    l.serve(&good);
    wait_for(Duration::from_secs(20), "the alarm resolved", || {
        hook_events(&hook).iter().any(|e| e["event"] == "alarm_resolved" && e["alarm"] == "unsigned_running")
    });
    let before = passes(&w);
    wait_for(Duration::from_secs(20), "more passes", || passes(&w) >= before + 3.0);
    let about: Vec<String> = hook_events(&hook)
        .iter()
        .filter(|e| e["alarm"] == "unsigned_running")
        .map(|e| e["event"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(about, ["alarm_raised", "alarm_resolved"]);
}
