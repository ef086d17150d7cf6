//! SPEC §17 end to end: one page per cause, severity per tier — the built binary under
//! `watch`, real HTTP targets and webhook receivers on 127.0.0.1, and a real Alertmanager
//! given `examples/alertmanager/alertmanager.yml`.

mod common;

use std::time::Duration;

use common::*;
use gitstate_testkit::{Alertmanager, http_get};
use serde_json::Value;

const FAST: &str =
    "[watch]\ninterval = \"1s\"\nref_poll = \"200ms\"\njitter = \"0%\"\nconverging_poll = \"500ms\"";

/// The example Alertmanager configuration, its receivers posting to `hook`.
fn example_alertmanager(hook: &TestServer) -> Alertmanager {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/alertmanager/alertmanager.yml"
    ))
    .unwrap()
    .replace("http://127.0.0.1:9999", &format!("http://127.0.0.1:{}", hook.port));
    Alertmanager::start_with_config(&text)
}

fn bodies(hook: &TestServer, path: &str) -> Vec<Value> {
    hook.bodies(path).iter().map(|b| serde_json::from_str(b).unwrap()).collect()
}

fn status_of(w: &Watching) -> Value {
    let (code, body) = http_get(w.port, "/status").unwrap();
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Waits for `n` more passes of `w` than now: "nothing more happens" without a fixed sleep.
fn more_passes(w: &Watching, n: f64) {
    let start = passes(w);
    wait_for(Duration::from_secs(30), "more passes", || passes(w) >= start + n);
}

/// 50 environments behind one origin that goes down: one `cause_opened` to the webhook and
/// one Slack message (instead of 50 of each), one group in Alertmanager with the members'
/// alerts inhibited by the `GitstateOutage`; a restart in the middle pages nobody again;
/// the origin back is one `cause_resolved` with the same id.
#[test]
fn fifty_environments_behind_one_origin_that_goes_down_are_one_page() {
    let repo = Repo::new();
    let c = repo.commits(2, "c");
    let origin = TestServer::start_background();
    let names: Vec<String> = (0..50).map(|i| format!("shop-{i:02}")).collect();
    for n in &names {
        repo.update_ref(&format!("refs/heads/shop/{n}"), &c[1]);
        origin.route(&format!("/{n}/meta"), meta(&c[1]));
    }
    let hook = TestServer::start_background();
    for p in ["/hook", "/slack", "/pager", "/payments-pager", "/chat"] {
        hook.route(p, Behavior::Status(200));
    }
    let am = example_alertmanager(&hook);
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            r#"
[source]
repo = "{repo}"
[policy]
grace = "0s"
unreachable_after = 2
labels = {{ team = "shop" }}
[[discover]]
ref_prefix = "refs/heads/shop/"
  [[discover.targets]]
  name = "web"
  [discover.targets.http]
  urls = ["{url}"]
  timeout = "1s"
[alerts]
group_wait = "1s"
[alerts.alertmanager]
url = "{am}"
[[alerts.webhook]]
url = "{hook}"
[[alerts.webhook]]
url = "{slack}"
format = "slack"
{FAST}
[state]
dir = "{state}"
"#,
            repo = repo.path().display(),
            url = origin.url("/{environment}/meta"),
            am = am.url(),
            hook = hook.url("/hook"),
            slack = hook.url("/slack"),
            state = dir.path().join("state").display(),
        ),
    );
    let mut w = watch(&cfg);
    wait_for(Duration::from_secs(30), "50 environments in sync", || {
        let s = status_of(&w);
        let envs = s["environments"].as_array().unwrap();
        envs.len() == 50 && envs.iter().all(|e| e["phase"] == "in_sync")
    });

    // The origin goes down: every instance behind it answers 503.
    for n in &names {
        origin.route(&format!("/{n}/meta"), Behavior::Status(503));
    }
    let cause = format!("origin:127.0.0.1:{}", origin.port);
    wait_for(Duration::from_secs(30), "the cause's page", || !bodies(&hook, "/hook").is_empty());
    wait_for(Duration::from_secs(30), "every environment's alarm in Alertmanager", || {
        am.alerts().len() == 51
    });
    more_passes(&w, 3.0);
    let opened = bodies(&hook, "/hook");
    assert_eq!(opened.len(), 1, "one page for the cause: {opened:#?}");
    assert_eq!(
        (opened[0]["event"].as_str(), opened[0]["cause"].as_str()),
        (Some("cause_opened"), Some(cause.as_str()))
    );
    assert_eq!(opened[0]["members"].as_array().unwrap().len(), 50);
    assert_eq!(
        (opened[0]["alarm"].as_str(), opened[0]["severity"].as_str()),
        (Some("unreachable"), Some("critical"))
    );
    assert_eq!(opened[0]["labels"]["team"], "shop");
    let slack = bodies(&hook, "/slack");
    assert_eq!(slack.len(), 1, "{slack:#?}");
    let text = slack[0]["text"].as_str().unwrap();
    assert!(
        text.contains(&format!("origin 127.0.0.1:{}", origin.port)) && text.contains("50 environments"),
        "{text}"
    );

    // Alertmanager: one group, the cause's, routed to the pager; the members' alerts
    // held back by the outage.
    let groups: Vec<Value> =
        am.groups().into_iter().filter(|g| !g["alerts"].as_array().unwrap().is_empty()).collect();
    assert_eq!(groups.len(), 1, "{groups:#?}");
    assert_eq!(groups[0]["labels"]["cause"], cause.as_str());
    assert_eq!(groups[0]["receiver"]["name"], "pager");
    let alerts = am.alerts();
    let outage: Vec<&Value> =
        alerts.iter().filter(|a| a["labels"]["alertname"] == "GitstateOutage").collect();
    assert_eq!(outage.len(), 1);
    wait_for(Duration::from_secs(10), "the members inhibited", || {
        am.alerts().iter().filter(|a| a["status"]["state"] == "suppressed").count() == 50
    });
    let st = status_of(&w);
    assert_eq!(st["environments"][0]["alarm"]["cause"], cause.as_str());

    // A restart in the middle of the outage: nobody is paged again.
    assert_eq!(w.terminate(Duration::from_secs(30)), Some(0));
    let w = watch(&cfg);
    more_passes(&w, 4.0);
    assert_eq!(bodies(&hook, "/hook").len(), 1, "{:#?}", bodies(&hook, "/hook"));
    assert_eq!(bodies(&hook, "/slack").len(), 1);

    // The origin is back: one resolution, the same id.
    for n in &names {
        origin.route(&format!("/{n}/meta"), meta(&c[1]));
    }
    wait_for(Duration::from_secs(30), "the cause resolved", || bodies(&hook, "/hook").len() == 2);
    more_passes(&w, 3.0);
    let all = bodies(&hook, "/hook");
    assert_eq!(all.len(), 2, "{all:#?}");
    assert_eq!(all[1]["event"], "cause_resolved");
    assert_eq!(all[1]["id"], all[0]["id"]);
    let slack = bodies(&hook, "/slack");
    assert_eq!(slack.len(), 2);
    assert!(slack[1]["text"].as_str().unwrap().starts_with(":white_check_mark:"), "{slack:#?}");
    wait_for(Duration::from_secs(10), "Alertmanager to drop the resolved alerts", || am.alerts().is_empty());
}

/// A deploy script that always fails, in `dir`.
fn failing_deploy(dir: &std::path::Path) {
    let p = dir.join("deploy.sh");
    std::fs::write(&p, "#!/bin/sh\necho 'registry unavailable' >&2\nexit 1\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A bad commit that three of ten environments cannot run: one `commit:<sha>` cause with
/// three members; a fourth joining is one `cause_changed` after `group_wait`, not a page.
/// The first is seen alone (its alarm raised before the others move): it joins their
/// cause at the end of its wait instead of paging by itself (CI saw that page once).
#[test]
fn a_bad_commit_in_three_of_ten_environments_is_one_cause_and_a_fourth_is_one_update() {
    let repo = Repo::new();
    let c = repo.commits(3, "c");
    let targets = TestServer::start_background();
    let names: Vec<String> = (0..10).map(|i| format!("shop-{i}")).collect();
    for n in &names {
        repo.update_ref(&format!("refs/heads/shop/{n}"), &c[1]);
        targets.route(&format!("/{n}/meta"), meta(&c[1]));
    }
    let hook = TestServer::start_background();
    hook.route("/hook", Behavior::Status(200));
    let dir = tempfile::tempdir().unwrap();
    failing_deploy(dir.path());
    let cfg = write_config(
        dir.path(),
        &format!(
            r#"
[source]
repo = "{repo}"
[policy]
grace = "0s"
settle = "0s"
backoff = "0s"
max_attempts = 1
[[discover]]
ref_prefix = "refs/heads/shop/"
  [[discover.targets]]
  name = "web"
  [discover.targets.http]
  urls = ["{url}"]
  [discover.remediate]
  command = ["./deploy.sh"]
[alerts]
group_wait = "8s"
[alerts.webhook]
url = "{hook}"
{FAST}
"#,
            repo = repo.path().display(),
            url = targets.url("/{environment}/meta"),
            hook = hook.url("/hook"),
        ),
    );
    let w = watch(&cfg);
    wait_for(Duration::from_secs(30), "10 environments in sync", || {
        let envs = status_of(&w)["environments"].as_array().unwrap().clone();
        envs.len() == 10 && envs.iter().all(|e| e["phase"] == "in_sync")
    });
    let drifting = |w: &Watching, name: &str| {
        status_of(w)["environments"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == name && e["alarm"]["kind"] == "drift")
    };
    repo.update_ref("refs/heads/shop/shop-0", &c[2]);
    wait_for(Duration::from_secs(30), "shop-0's drift alarm", || drifting(&w, "shop-0"));
    for n in &names[1..3] {
        repo.update_ref(&format!("refs/heads/shop/{n}"), &c[2]);
    }
    wait_for(Duration::from_secs(30), "the cause's page", || !bodies(&hook, "/hook").is_empty());
    more_passes(&w, 3.0);
    let opened = bodies(&hook, "/hook");
    let brief: Vec<String> = opened
        .iter()
        .map(|b| format!("{} {} {} {}", b["event"], b["environment"], b["cause"], b["since"]))
        .collect();
    assert_eq!(opened.len(), 1, "{brief:#?}");
    assert_eq!(opened[0]["event"], "cause_opened");
    assert_eq!(opened[0]["cause"], format!("commit:{}", c[2]));
    assert_eq!(opened[0]["alarm"], "drift");
    assert_eq!(opened[0]["members"], serde_json::json!(["shop-0", "shop-1", "shop-2"]));

    repo.update_ref("refs/heads/shop/shop-3", &c[2]);
    wait_for(Duration::from_secs(30), "shop-3's drift alarm", || drifting(&w, "shop-3"));
    wait_for(Duration::from_secs(30), "the cause's update", || bodies(&hook, "/hook").len() >= 2);
    more_passes(&w, 4.0);
    let all = bodies(&hook, "/hook");
    assert_eq!(all.len(), 2, "one update, not a new page: {all:#?}");
    assert_eq!(all[1]["event"], "cause_changed");
    assert_eq!(all[1]["joined"], serde_json::json!(["shop-3"]));
    assert_eq!(all[1]["members"].as_array().unwrap().len(), 4);
    assert_eq!(all[1]["id"], all[0]["id"]);
    let st = status_of(&w);
    let shop3 =
        st["environments"].as_array().unwrap().iter().find(|e| e["name"] == "shop-3").unwrap().clone();
    assert_eq!(shop3["alarm"]["cause"], format!("commit:{}", c[2]));
}

/// The Git host unreachable: one `source` page for every environment, their own alarms
/// held back (`status` says `inhibited_by`), and the host back is one resolution.
#[test]
fn the_git_source_unreachable_is_one_source_page_and_back_one_resolution() {
    let repo = Repo::new();
    let c = repo.commits(2, "c");
    let base = tempfile::tempdir().unwrap();
    gitstate_testkit::git(base.path(), &["init", "-q", "--bare", "repo.git"]);
    let targets = TestServer::start_background();
    let names = ["production", "staging", "broken"];
    for n in names {
        repo.update_ref(&format!("refs/heads/environments/{n}"), &c[1]);
        targets.route(&format!("/{n}/meta"), meta(&c[1]));
    }
    // `broken`'s own alarm is open before the outage, repeated every second.
    targets.route("/broken/meta", Behavior::Status(500));
    let bare = base.path().join("repo.git").display().to_string();
    repo.git(&["push", "-q", "-f", &bare, "refs/heads/*:refs/heads/*"]);
    let daemon = gitstate_testkit::git_daemon(base.path());
    let port = daemon.port;
    let hook = TestServer::start_background();
    hook.route("/hook", Behavior::Status(200));
    let dir = tempfile::tempdir().unwrap();
    let envs: String = names
        .iter()
        .map(|n| {
            format!(
                "[[environments]]\nname = \"{n}\"\nref = \"refs/heads/environments/{n}\"\n  [[environments.targets]]\n  name = \"web\"\n  [environments.targets.http]\n  urls = [\"{}\"]\n",
                targets.url(&format!("/{n}/meta"))
            )
        })
        .collect();
    let cfg = write_config(
        dir.path(),
        &format!(
            "[source]\nrepo = \"git://127.0.0.1:{port}/repo.git\"\n[policy]\ngrace = \"0s\"\nunreachable_after = 2\nrenotify = \"1s\"\n{envs}[alerts.webhook]\nurl = \"{}\"\n{FAST}\n",
            hook.url("/hook")
        ),
    );
    let w = watch(&cfg);
    let own = |event: &str| {
        bodies(&hook, "/hook").iter().filter(|b| b["environment"] == "broken" && b["event"] == event).count()
    };
    wait_for(Duration::from_secs(30), "broken's alarm repeated", || own("alarm_repeated") >= 1);

    daemon.terminate();
    wait_for(Duration::from_secs(30), "the source's page", || {
        bodies(&hook, "/hook").iter().any(|b| b["event"] == "cause_opened")
    });
    let repeated = own("alarm_repeated");
    wait_for(Duration::from_secs(10), "status to show every environment inhibited by the source", || {
        status_of(&w)["environments"].as_array().unwrap().iter().all(|e| e["inhibited_by"] == "source")
    });
    more_passes(&w, 3.0);
    let pages: Vec<Value> = bodies(&hook, "/hook").into_iter().filter(|b| b["cause"] == "source").collect();
    assert_eq!(pages.len(), 1, "{pages:#?}");
    assert_eq!(pages[0]["members"], serde_json::json!(["broken", "production", "staging"]));
    assert_eq!(own("alarm_repeated"), repeated, "broken's own alarm held back while the source page is open");

    let _back = gitstate_testkit::git_daemon_on(base.path(), port);
    wait_for(Duration::from_secs(30), "the source's resolution", || {
        bodies(&hook, "/hook").iter().any(|b| b["event"] == "cause_resolved")
    });
    wait_for(Duration::from_secs(30), "broken's own alarm again", || own("alarm_repeated") > repeated);
    more_passes(&w, 3.0);
    let pages: Vec<Value> = bodies(&hook, "/hook").into_iter().filter(|b| b["cause"] == "source").collect();
    assert_eq!(pages.len(), 2, "resolved once: {pages:#?}");
    assert_eq!(pages[1]["id"], pages[0]["id"]);
    assert!(
        status_of(&w)["environments"].as_array().unwrap().iter().all(|e| e.get("inhibited_by").is_none())
    );
}

/// Severity per tier: a `warning` staging environment and a `critical` production one
/// reach different receivers of the example Alertmanager; an `info` one reaches no sink
/// but is shown.
#[test]
fn severities_take_different_routes_and_info_reaches_no_sink() {
    let repo = Repo::new();
    let c = repo.commits(2, "c");
    let hook = TestServer::start_background();
    for p in ["/hook", "/pager", "/payments-pager", "/chat"] {
        hook.route(p, Behavior::Status(200));
    }
    let am = example_alertmanager(&hook);
    let mut envs = String::new();
    let mut servers = Vec::new();
    for (n, policy) in [
        ("production", "severity = \"critical\""),
        ("staging", "severity = \"warning\""),
        ("preview", "severity = \"info\""),
    ] {
        repo.update_ref(&format!("refs/heads/environments/{n}"), &c[1]);
        // Each behind its own origin, down: three alarms of their own.
        let s = TestServer::start_background();
        s.route("/meta", Behavior::Status(503));
        envs.push_str(&format!(
            "[[environments]]\nname = \"{n}\"\nref = \"refs/heads/environments/{n}\"\n  [environments.policy]\n  {policy}\n  [[environments.targets]]\n  name = \"web\"\n  [environments.targets.http]\n  urls = [\"{}\"]\n",
            s.url("/meta")
        ));
        servers.push(s);
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "[source]\nrepo = \"{}\"\n[policy]\ngrace = \"0s\"\nunreachable_after = 1\nlabels = {{ team = \"shop\" }}\n{envs}[alerts.alertmanager]\nurl = \"{}\"\n[alerts.webhook]\nurl = \"{}\"\n{FAST}\n",
            repo.path().display(),
            am.url(),
            hook.url("/hook")
        ),
    );
    let w = watch(&cfg);
    wait_for(Duration::from_secs(30), "two groups in Alertmanager", || {
        am.groups().iter().filter(|g| !g["alerts"].as_array().unwrap().is_empty()).count() == 2
    });
    more_passes(&w, 3.0);
    let groups = am.groups();
    let receiver = |cause: &str| {
        groups
            .iter()
            .find(|g| g["labels"]["cause"] == cause && !g["alerts"].as_array().unwrap().is_empty())
            .map(|g| g["receiver"]["name"].as_str().unwrap().to_owned())
    };
    assert_eq!(receiver("environment:production").as_deref(), Some("pager"), "{groups:#?}");
    assert_eq!(receiver("environment:staging").as_deref(), Some("chat"), "{groups:#?}");
    assert_eq!(receiver("environment:preview"), None, "{groups:#?}");
    let raised: Vec<String> = bodies(&hook, "/hook")
        .iter()
        .filter(|b| b["event"] == "alarm_raised")
        .map(|b| format!("{}={}", b["environment"].as_str().unwrap(), b["severity"].as_str().unwrap()))
        .collect();
    assert_eq!(raised.len(), 2, "{raised:?}");
    assert!(
        raised.contains(&"production=critical".to_owned()) && raised.contains(&"staging=warning".to_owned())
    );
    // Recorded and shown all the same.
    let st = status_of(&w);
    let preview =
        st["environments"].as_array().unwrap().iter().find(|e| e["name"] == "preview").unwrap().clone();
    assert_eq!(preview["alarm"]["kind"], "unreachable");
}

/// SPEC §19: an environment nobody observes within 2 × `interval` + `failover` (here its
/// pass hangs on a target that never answers, 1 s interval, no failover) is paged once as
/// the `stale` cause (Alertmanager's `GitstateStale`); observed again, it resolves.
#[test]
fn an_environment_not_observed_in_time_is_paged_as_stale_and_resolves() {
    let repo = Repo::new();
    let c = repo.commits(2, "c");
    repo.update_ref(REF, &c[1]);
    let target = TestServer::start_background();
    target.route("/meta", Behavior::NeverRespond);
    let hook = TestServer::start_background();
    hook.route("/hook", Behavior::Status(200));
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "[source]\nrepo = \"{}\"\n{}    timeout = \"6s\"\n[[alerts.webhook]]\nurl = \"{}\"\n{FAST}\n[state]\ndir = \"{}\"\n",
            repo.path().display(),
            http_env("production", "web", &[target.url("/meta")], ""),
            hook.url("/hook"),
            dir.path().join("state").display(),
        ),
    );
    let w = watch(&cfg);
    wait_for(Duration::from_secs(20), "the stale page", || !bodies(&hook, "/hook").is_empty());
    let opened = bodies(&hook, "/hook");
    assert_eq!(opened[0]["event"], "cause_opened", "{opened:#?}");
    assert_eq!(opened[0]["cause"], "stale");
    assert_eq!(opened[0]["alarm"], "stale");
    assert_eq!(opened[0]["members"], serde_json::json!(["production"]));
    // The target answers again: once a pass completes, the page resolves, with its id.
    target.route("/meta", meta(&c[1]));
    wait_for(Duration::from_secs(30), "the stale page resolved", || bodies(&hook, "/hook").len() >= 2);
    let all = bodies(&hook, "/hook");
    assert_eq!(all.len(), 2, "one opening, one resolution: {all:#?}");
    assert_eq!(all[1]["event"], "cause_resolved");
    assert_eq!(all[1]["id"], all[0]["id"]);
    drop(w);
}
