//! SPEC §16 end to end: `gitstate where` and `gitstate fleet` over the store a
//! `reconcile` left and the repository — environments that run, partly run, will run and
//! will never run a commit (one on a branch not merged), a tag, an abbreviated id, a REV
//! that does not exist.

mod common;

use common::*;

/// staging runs c3 on both instances; production expects c1, one instance runs c1 and
/// one c2; a feature branch is never merged.
struct Fleet {
    repo: Repo,
    c: Vec<String>,
    feature: String,
    server: TestServer,
    dir: tempfile::TempDir,
}

fn world() -> Fleet {
    let repo = Repo::new();
    let c = repo.commits(4, "c");
    repo.git(&["checkout", "-q", "-b", "feature", &c[1]]);
    let feature = repo.commit("feature: never merged");
    repo.git(&["checkout", "-q", "main"]);
    repo.git(&["tag", "v3", &c[3]]);
    repo.update_ref("refs/heads/environments/staging", &c[3]);
    repo.update_ref(REF, &c[1]);
    let server = TestServer::start_background();
    for (path, sha) in [("/s1", &c[3]), ("/s2", &c[3]), ("/p1", &c[1]), ("/p2", &c[2])] {
        server.route(path, meta(sha));
    }
    let dir = tempfile::tempdir().unwrap();
    Fleet { repo, c, feature, server, dir }
}

impl Fleet {
    fn config(&self) -> std::path::PathBuf {
        let url = |p: &str| self.server.url(p);
        let text = format!(
            "[source]\nrepo = \"{}\"\n[policy]\nmode = \"observe\"\n\n{}\n{}",
            self.repo.path().display(),
            http_env("staging", "web", &[url("/s1"), url("/s2")], ""),
            http_env("production", "web", &[url("/p1"), url("/p2")], ""),
        );
        write_config(self.dir.path(), &text)
    }
}

fn states(json: &serde_json::Value) -> Vec<(String, String, String)> {
    json["environments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let n = &e["instances"];
            (
                e["name"].as_str().unwrap().to_owned(),
                e["state"].as_str().unwrap().to_owned(),
                format!("{}/{}", n["running"], n["of"]),
            )
        })
        .collect()
}

#[test]
fn where_and_fleet_answer_from_the_store_and_the_history() {
    let f = world();
    let cfg = f.config();
    with_config(&cfg, &["reconcile"]);

    let r = with_config(&cfg, &["fleet", "-o", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let fleet = r.json();
    let rows = fleet["environments"].as_array().unwrap();
    assert_eq!(rows[0]["name"], "production");
    assert_eq!(rows[0]["expected_sha"], f.c[1].as_str());
    let mut running: Vec<(String, u64)> = rows[0]["running"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["sha"].as_str().unwrap().to_owned(), s["instances"].as_u64().unwrap()))
        .collect();
    running.sort();
    let mut want = vec![(f.c[1].clone(), 1), (f.c[2].clone(), 1)];
    want.sort();
    assert_eq!(running, want);
    assert_eq!(rows[1]["running"], serde_json::json!([{"sha": f.c[3], "instances": 2, "of": 2}]));
    let text = with_config(&cfg, &["fleet"]).stdout;
    assert!(text.contains(&format!("{} 2/2 (expected)", &f.c[3][..7])), "{text}");

    // c2: deployed on staging (c3 contains it), on one of production's two instances.
    let r = with_config(&cfg, &["where", &f.c[2], "-o", "json"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(
        states(&r.json()),
        [
            ("production".into(), "partial".into(), "1/2".into()),
            ("staging".into(), "running".into(), "2/2".into())
        ]
    );
    // Since the convergence that brought it (staging converged on c3 on the first pass).
    let converged = r.json()["environments"][1]["since"].as_str().map(str::to_owned);
    assert!(converged.is_some(), "{}", r.stdout);
    // An abbreviated id of c1: everywhere.
    let r = with_config(&cfg, &["where", &f.c[1][..8], "-o", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["rev"], f.c[1].as_str());
    assert!(states(&r.json()).iter().all(|(_, s, _)| s == "running"));
    // The tag v3: staging, not production (neither expected nor running there).
    let r = with_config(&cfg, &["where", "v3", "-o", "json"]);
    assert_eq!(states(&r.json())[0], ("production".into(), "not_included".into(), "0/2".into()));
    // A commit on a branch never merged: nowhere.
    let r = with_config(&cfg, &["where", &f.feature, "-o", "json"]);
    assert!(states(&r.json()).iter().all(|(_, s, _)| s == "not_included"), "{}", r.stdout);
    // diff: what a promotion from staging to production would bring, both ways.
    let r = with_config(&cfg, &["diff", "staging", "production", "-o", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let d = r.json();
    let shas = |side: &str| -> Vec<String> {
        d[side].as_array().unwrap().iter().map(|c| c["sha"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(shas("only_in_a"), [f.c[3].clone(), f.c[2].clone()], "newest first");
    assert!(shas("only_in_b").is_empty());
    assert_eq!((d["counts"]["only_in_a"].as_u64(), d["counts"]["only_in_b"].as_u64()), (Some(2), Some(0)));
    assert_eq!(d["only_in_a"][0]["subject"], "c 3");
    let r = with_config(&cfg, &["diff", "production", "staging", "-o", "json"]);
    assert_eq!(
        (r.json()["counts"]["only_in_a"].as_u64(), r.json()["counts"]["only_in_b"].as_u64()),
        (Some(0), Some(2))
    );
    let text = with_config(&cfg, &["diff", "staging", "production"]).stdout;
    assert!(text.contains("staging (") && text.contains("has 2 commit(s) production"), "{text}");
    // --running: production's instances are split one to one: no commit runs there.
    let r = with_config(&cfg, &["diff", "staging", "production", "--running"]);
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert!(r.stderr.contains("as many instances run each of"), "{}", r.stderr);

    // production's ref moves to c3: pending there until an instance runs it.
    f.repo.update_ref(REF, &f.c[3]);
    with_config(&cfg, &["reconcile"]);
    let r = with_config(&cfg, &["where", "v3", "-e", "production", "-o", "json"]);
    assert_eq!(states(&r.json()), [("production".into(), "pending".into(), "0/2".into())]);
    // A page is for fleet and dora: where and diff say so (exit 2) rather than print text.
    for args in [&["where", "v3", "-o", "html"][..], &["diff", "staging", "production", "-o", "html"]] {
        let r = with_config(&cfg, args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stdout);
        assert!(r.stderr.contains("-o html is for"), "{args:?}: {}", r.stderr);
    }
    // A REV that does not exist: exit 2, saying so.
    let r = with_config(&cfg, &["where", "no-such-rev"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("no-such-rev"), "{}", r.stderr);
}

/// An empty commit on `repo`'s branch, authored and committed at `at` (Unix seconds): its id.
fn dated_commit(repo: &Repo, msg: &str, at: i64) -> String {
    let date = format!("@{at} +0000");
    let out = gitstate_testkit::git_cmd(repo.path())
        .env("GIT_COMMITTER_DATE", &date)
        .env("GIT_AUTHOR_DATE", &date)
        .args(["commit", "-q", "--allow-empty", "-m", msg])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    repo.git(&["rev-parse", "HEAD"])
}

/// `gitstate dora` over a generated history whose four keys are known by construction:
/// commits with chosen committer times, an event log with four deployments in the
/// window, one degraded and restored 300 s later.
#[test]
fn dora_gives_the_four_keys_of_a_generated_history() {
    let repo = Repo::new();
    let now = jiff::Timestamp::now().as_second();
    let commit = |msg: &str, at: i64| dated_commit(&repo, msg, at);
    const D: i64 = 86_400;
    let c0 = commit("c0", now - 10 * D);
    let c1 = commit("c1", now - 8 * D - 3600);
    let _c2 = commit("c2", now - 6 * D - 7200);
    let c3 = commit("c3", now - 6 * D - 1800);
    let c4 = commit("c4", now - 2 * D - 600);
    repo.update_ref(REF, &c4);
    // The generator's own record: (deployed at, lead times of what it brought).
    let deployed = [
        (now - 9 * D, vec![]),
        (now - 8 * D, vec![3600.0]),
        (now - 6 * D, vec![7200.0, 1800.0]),
        (now - 2 * D, vec![600.0]),
    ];
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(".gitstate")).unwrap();
    let ts = |s: i64| jiff::Timestamp::from_second(s).unwrap().to_string();
    let converged = |at: i64, sha: &str| {
        format!(
            r#"{{"at":"{}","environment":"production","event":"converged","expected":"{sha}","lag_s":null,"lag_from":"first_seen"}}"#,
            ts(at)
        )
    };
    let lines = [
        converged(now - 9 * D, &c0),
        converged(now - 8 * D, &c1),
        converged(now - 6 * D, &c3),
        format!(
            r#"{{"at":"{}","environment":"production","event":"degraded","expected":"{c3}","failures":2}}"#,
            ts(now - 6 * D + 100)
        ),
        converged(now - 6 * D + 400, &c3),
        converged(now - 2 * D, &c4),
    ];
    std::fs::write(dir.path().join(".gitstate/events.jsonl"), lines.join("\n") + "\n").unwrap();
    let text = format!(
        "[source]\nrepo = \"{}\"\n\n{}",
        repo.path().display(),
        http_env("production", "web", &["http://127.0.0.1:9/meta".into()], "")
    );
    let cfg = write_config(dir.path(), &text);

    let r = with_config(&cfg, &["dora", "-o", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let j = r.json();
    let p = &j["environments"][0];
    assert_eq!(p["name"], "production");
    // Known by construction, from the record above, not from the code.
    let n = deployed.len();
    let mut leads: Vec<f64> = deployed.iter().flat_map(|(_, l)| l.clone()).collect();
    leads.sort_by(f64::total_cmp);
    let nearest = |q: f64| leads[((q * leads.len() as f64).ceil() as usize).max(1) - 1];
    assert_eq!(p["deployments"], n);
    assert!((p["deployments_per_day"].as_f64().unwrap() - n as f64 / 30.0).abs() < 1e-6, "{p}");
    assert_eq!(p["lead_time_s"]["count"], leads.len());
    assert_eq!(p["lead_time_s"]["median"].as_f64(), Some(nearest(0.5)));
    assert_eq!(p["lead_time_s"]["p90"].as_f64(), Some(nearest(0.9)));
    assert_eq!(p["change_failure_rate"]["failed"], 1);
    assert_eq!(p["change_failure_rate"]["rate"].as_f64(), Some(0.25));
    assert_eq!(p["time_to_restore_s"]["median"].as_f64(), Some(300.0));
    assert_eq!(p["bands"]["deployment_frequency"], "medium");
    assert_eq!(p["bands"]["lead_time"], "elite", "a median of 1800 s: under an hour");
    assert_eq!(p["bands"]["change_failure_rate"], "high");
    assert_eq!(p["bands"]["time_to_restore"], "elite");
    assert_eq!(j["all"]["deployments"], n);
    // A shorter window: the last deployment only.
    let r = with_config(&cfg, &["dora", "--since", "3d", "-o", "json"]);
    assert_eq!(r.json()["environments"][0]["deployments"], 1);
    assert!(with_config(&cfg, &["dora"]).stdout.contains("production: 4 deployments"));
}

/// History from before gitstate ran counts as far as the reflog reaches (SPEC §16): the
/// ref moved three times (dated moves), then gitstate's first pass saw the last commit
/// running. The three moves are the deployments (method `reflog_and_events`), the first
/// pass's convergence on the same commit is not a fourth, and the lead times are those of
/// the commits each move brought — from the generator's record.
#[test]
fn dora_counts_the_reflog_before_gitstates_first_event() {
    let repo = Repo::new();
    let now = jiff::Timestamp::now().as_second();
    const D: i64 = 86_400;
    let dated = |at: i64, args: &[&str]| {
        let date = format!("@{at} +0000");
        let out = gitstate_testkit::git_cmd(repo.path())
            .env("GIT_COMMITTER_DATE", &date)
            .env("GIT_AUTHOR_DATE", &date)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    let mut c = Vec::new();
    for (i, at) in [now - 10 * D, now - 8 * D, now - 6 * D, now - 5 * D - 900].into_iter().enumerate() {
        dated(at, &["commit", "-q", "--allow-empty", "-m", &format!("c{i}")]);
        c.push(repo.git(&["rev-parse", "HEAD"]));
    }
    // The moves: c0 at -9 d, c1 at -7 d, c1 again (not a deployment), c3 at -5 d (brings c2, c3).
    dated(now - 9 * D, &["update-ref", REF, &c[0]]);
    dated(now - 7 * D, &["update-ref", REF, &c[1]]);
    dated(now - 7 * D + 60, &["update-ref", REF, &c[1]]);
    dated(now - 5 * D, &["update-ref", REF, &c[3]]);
    let leads = {
        let mut l = vec![(now - 7 * D) - (now - 8 * D), (now - 5 * D) - (now - 6 * D), 900];
        l.sort();
        l
    };
    let server = TestServer::start_background();
    server.route("/meta", meta(&c[3]));
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[source]\nrepo = \"{}\"\n[policy]\nmode = \"observe\"\n\n{}",
        repo.path().display(),
        http_env("production", "web", &[server.url("/meta")], "")
    );
    let cfg = write_config(dir.path(), &text);
    assert_eq!(with_config(&cfg, &["reconcile"]).code, 0);

    let r = with_config(&cfg, &["dora", "-o", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let p = &r.json()["environments"][0];
    assert_eq!(p["method"], "reflog_and_events", "{p}");
    assert_eq!(p["deployments"], 3, "{p}");
    assert_eq!(p["lead_time_s"]["count"], leads.len(), "{p}");
    assert_eq!(p["lead_time_s"]["median"].as_f64(), Some(leads[1] as f64), "{p}");
    assert_eq!(p["lead_time_s"]["p90"].as_f64(), Some(leads[2] as f64), "{p}");
    assert_eq!(p["change_failure_rate"]["failed"], 0, "a reflog shows no failures");
    // A window that starts after the moves holds none of them.
    let r = with_config(&cfg, &["dora", "--since", "4d", "-o", "json"]);
    assert_eq!(r.json()["environments"][0]["deployments"], 0);
}

/// SPEC §16's dashboard parts in a real headless Chromium, over a running `watch`: the
/// matrix's cells (shares, the expected commit marked), what promoting staging to
/// production brings, the four keys each with a chart, and the "where is…" box — with
/// JavaScript answering in place, and without it as a plain GET form.
#[test]
fn the_dashboard_shows_the_fleet_where_promotions_and_the_four_keys() {
    let f = world();
    let cfg = f.config();
    let mut w = watch(&cfg);
    let chrome = gitstate_testkit::Chromium::start();
    let mut page = chrome.page();
    page.navigate(&format!("http://127.0.0.1:{}/", w.port));
    let text = |page: &mut gitstate_testkit::Page, js: &str| -> String {
        page.eval(js).as_str().map(str::to_owned).unwrap_or_else(|| panic!("{js}: not a string"))
    };
    let cell = |page: &mut gitstate_testkit::Page, env: &str, sha: &str| -> String {
        text(
            page,
            &format!(
                "(c => c ? c.className + ':' + c.innerText.trim() : 'none')(document.querySelector('#matrix tr[data-env=\"{env}\"] td[data-sha=\"{sha}\"]'))"
            ),
        )
    };
    assert_eq!(cell(&mut page, "production", &f.c[1]), "expected:1/2 ★");
    assert_eq!(cell(&mut page, "production", &f.c[2]), ":1/2");
    assert_eq!(cell(&mut page, "production", &f.c[3]), ":");
    assert_eq!(cell(&mut page, "staging", &f.c[3]), "expected:2/2 ★");
    // Promotion order is the configuration's: staging, then production.
    let brings = text(
        &mut page,
        "document.querySelector('#compare .pair[data-from=staging][data-to=production] [data-brings]').innerText",
    );
    assert_eq!(brings, "2");
    let promo = text(&mut page, "document.querySelector('#compare').innerText");
    assert!(promo.contains("c 3") && promo.contains("c 2"), "{promo}");
    let keys = text(
        &mut page,
        "[...document.querySelectorAll('#dora .key')].map(k => k.id + (k.querySelector('svg') ? '+chart' : '')).join(' ')",
    );
    assert_eq!(
        keys,
        "deployment-frequency+chart lead-time+chart change-failure-rate+chart time-to-restore+chart"
    );
    // The figures are `dora`'s: the same query over the same store and repository.
    let dora = with_config(&cfg, &["dora", "-o", "json"]).json();
    let frequency = text(&mut page, "document.querySelector('#deployment-frequency').innerText");
    let deployments = format!("{} deployments", dora["all"]["deployments"]);
    assert!(frequency.contains(&deployments), "{frequency} (dora: {deployments})");

    // With JavaScript: the answer comes in place, the page is not reloaded.
    page.eval("window.marker = 'still here'");
    page.eval(&format!(
        "document.querySelector('#where-form input[name=where]').value = '{}'; document.querySelector('#where-form').requestSubmit()",
        &f.c[2][..8]
    ));
    let answered = |page: &mut gitstate_testkit::Page| {
        page.eval("[...document.querySelectorAll('#where-table tr[data-env]')].map(r => r.dataset.env + '=' + r.dataset.state).join(' ')")
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    wait_for(std::time::Duration::from_secs(10), "the where box to answer", || {
        !answered(&mut page).is_empty()
    });
    assert_eq!(answered(&mut page), "production=partial staging=running");
    assert_eq!(page.eval("window.marker"), "still here");
    // An unknown REV: said in place.
    page.eval("document.querySelector('#where-form input[name=where]').value = 'no-such-rev'; document.querySelector('#where-form').requestSubmit()");
    wait_for(std::time::Duration::from_secs(10), "the where box to refuse", || {
        page.eval("document.querySelector('#where-answer').innerText")
            .as_str()
            .unwrap_or_default()
            .contains("no-such-rev")
    });
    let errors = page.errors();
    assert!(errors.is_empty(), "console errors or blocked content: {errors:?}");

    // Without JavaScript: the form is a GET of `/?where=REV`, answered in the page.
    let form = text(
        &mut page,
        "(f => f.method + ' ' + f.getAttribute('action'))(document.querySelector('#where-form'))",
    );
    assert_eq!(form, "get /");
    page.call("Emulation.setScriptExecutionDisabled", serde_json::json!({"value": true}));
    page.navigate(&format!("http://127.0.0.1:{}/?where=v3", w.port));
    assert_eq!(
        answered(&mut page),
        "production=not_included staging=running".replace("not_included", "not included")
    );
    let value = text(&mut page, "document.querySelector('#where-form input[name=where]').value");
    assert_eq!(value, "v3", "the question stays in the box");
    assert!(page.eval("window.marker").is_null());
    w.terminate(std::time::Duration::from_secs(10));
}

/// `fleet -o html` and `dora -o html`: a page of their own, under the dashboard's policy.
#[test]
fn fleet_and_dora_print_html() {
    let f = world();
    let cfg = f.config();
    with_config(&cfg, &["reconcile"]);
    let page = with_config(&cfg, &["fleet", "-o", "html"]);
    assert_eq!(page.code, 0, "{}", page.stderr);
    assert!(
        page.stdout.contains("Content-Security-Policy") && page.stdout.contains("id=\"matrix\""),
        "{}",
        page.stdout
    );
    assert!(page.stdout.contains(&format!("data-sha=\"{}\"", f.c[2])));
    let page = with_config(&cfg, &["dora", "-o", "html"]);
    assert_eq!(page.code, 0, "{}", page.stderr);
    assert_eq!(page.stdout.matches("class=\"key\"").count(), 4, "{}", page.stdout);
    assert_eq!(page.stdout.matches("<svg").count(), 4);
}

/// What happened after one generated deployment, in the generator's own terms.
#[derive(Debug, Clone)]
enum After {
    /// Nothing went wrong.
    Fine,
    /// Degraded `at` seconds after it, converged again `restore` seconds later.
    Degraded { at: i64, restore: i64 },
    /// A drift alarm `at` seconds after it, converged again `restore` seconds later.
    Drift { at: i64, restore: i64 },
}

/// Nearest-rank quantile of a sorted list (SPEC §16: median and p90).
fn nearest(sorted: &[f64], q: f64) -> Option<f64> {
    (!sorted.is_empty()).then(|| sorted[((q * sorted.len() as f64).ceil() as usize).max(1) - 1])
}

use proptest::prelude::{Strategy as _, prop_assert_eq};

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(6),
        ..proptest::prelude::ProptestConfig::default()
    })]

    /// Over random histories — deployments a day or more apart inside the last 30 days,
    /// each bringing commits of chosen committer times, some followed by a degradation or a
    /// drift alarm and a restore — `dora -o json` gives the four keys the generator's own
    /// record gives: the count, every lead time (median, p90), the failed deployments and
    /// the restore times.
    #[test]
    fn dora_agrees_with_the_generators_record(
        plan in proptest::collection::vec(
            (
                1i64..4,                                    // days after the previous deployment
                proptest::collection::vec(60i64..20_000, 1..4), // lead times of what it brings
                proptest::prop_oneof![
                    proptest::strategy::Just(After::Fine),
                    (10i64..3000, 1i64..5000).prop_map(|(at, restore)| After::Degraded { at, restore }),
                    (10i64..3000, 1i64..5000).prop_map(|(at, restore)| After::Drift { at, restore }),
                ],
            ),
            1..6,
        )
    ) {
        const D: i64 = 86_400;
        let repo = Repo::new();
        let now = jiff::Timestamp::now().as_second();
        let commit = |msg: &str, at: i64| dated_commit(&repo, msg, at);
        let env: gitstate_core::EnvName = "production".parse().unwrap();
        let mut events = Vec::new();
        let event = |at: i64, kind: gitstate_core::EventKind| gitstate_core::Event {
            at: jiff::Timestamp::from_second(at).unwrap(),
            environment: env.clone(),
            kind,
        };
        // Deployments start 28 days back; each a whole number of days after the last.
        let mut at = now - 28 * D;
        let (mut leads, mut failed, mut restores) = (Vec::new(), 0usize, Vec::new());
        for (i, (gap, brings, after)) in plan.iter().cloned().enumerate() {
            at += gap * D;
            let mut last = String::new();
            for (j, lead) in brings.iter().enumerate() {
                last = commit(&format!("d{i} c{j}"), at - lead);
            }
            // The first deployment gitstate sees brought what it cannot name.
            if i > 0 {
                leads.extend(brings.iter().map(|l| *l as f64));
            }
            let expected = gitstate_core::CommitId::parse(&last).unwrap();
            let converged = |t| event(t, gitstate_core::EventKind::Converged {
                expected,
                lag_s: None,
                lag_from: gitstate_core::LagFrom::FirstSeen,
            });
            events.push(converged(at));
            match after {
                After::Fine => {}
                After::Degraded { at: a, restore } => {
                    events.push(event(at + a, gitstate_core::EventKind::Degraded { expected, failures: 2 }));
                    events.push(converged(at + a + restore));
                    failed += 1;
                    restores.push(restore as f64);
                }
                After::Drift { at: a, restore } => {
                    events.push(event(at + a, gitstate_core::EventKind::AlarmRaised {
                        alarm: gitstate_core::AlarmKind::Drift,
                        expected,
                    }));
                    events.push(converged(at + a + restore));
                    failed += 1;
                    restores.push(restore as f64);
                }
            }
        }
        let head = repo.git(&["rev-parse", "HEAD"]);
        repo.update_ref(REF, &head);
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(".gitstate")).unwrap();
        let log: String = events.iter().map(|e| serde_json::to_string(e).unwrap() + "\n").collect();
        std::fs::write(dir.path().join(".gitstate/events.jsonl"), log).unwrap();
        let text = format!(
            "[source]\nrepo = \"{}\"\n\n{}",
            repo.path().display(),
            http_env("production", "web", &["http://127.0.0.1:9/meta".into()], "")
        );
        let cfg = write_config(dir.path(), &text);
        let r = with_config(&cfg, &["dora", "-o", "json"]);
        prop_assert_eq!(r.code, 0, "{}", r.stderr);
        let p = r.json()["environments"][0].clone();

        leads.sort_by(f64::total_cmp);
        restores.sort_by(f64::total_cmp);
        prop_assert_eq!(p["deployments"].as_u64(), Some(plan.len() as u64), "{}", p);
        prop_assert_eq!(p["lead_time_s"]["count"].as_u64(), Some(leads.len() as u64), "{}", p);
        prop_assert_eq!(p["lead_time_s"]["median"].as_f64(), nearest(&leads, 0.5), "{}", p);
        prop_assert_eq!(p["lead_time_s"]["p90"].as_f64(), nearest(&leads, 0.9), "{}", p);
        prop_assert_eq!(p["change_failure_rate"]["failed"].as_u64(), Some(failed as u64), "{}", p);
        prop_assert_eq!(p["time_to_restore_s"]["count"].as_u64(), Some(restores.len() as u64), "{}", p);
        prop_assert_eq!(p["time_to_restore_s"]["median"].as_f64(), nearest(&restores, 0.5), "{}", p);
        prop_assert_eq!(p["time_to_restore_s"]["p90"].as_f64(), nearest(&restores, 0.9), "{}", p);
        prop_assert_eq!(p["method"].as_str(), Some("events"), "{}", p);
    }
}
