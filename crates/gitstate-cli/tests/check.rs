//! `gitstate check` end to end: real repositories, real HTTP servers on 127.0.0.1, the
//! built binary; every status HTTP can produce, every auto-detected format, exit codes,
//! discover, JSON schema 1.

mod common;

use common::*;
use serde_json::Value;
use std::process::Command;

/// A repository with history: main c0..c5 (production at c5), a hotfix branch off c2.
struct World {
    repo: Repo,
    c: Vec<String>,
    hotfix: String,
    server: TestServer,
}

fn world() -> World {
    let repo = Repo::new();
    let c = repo.commits(6, "c");
    repo.git(&["checkout", "-q", "-b", "hotfix", &c[2]]);
    let hotfix = repo.commit("hotfix");
    repo.git(&["checkout", "-q", "main"]);
    repo.update_ref(REF, &c[5]);
    World { repo, c, hotfix, server: TestServer::start_background() }
}

fn config_for(w: &World, body: &str) -> std::path::PathBuf {
    write_config(w.repo.path(), &format!("[source]\nrepo = \".\"\n\n{body}"))
}

#[test]
fn every_status_http_can_produce_with_counts() {
    let w = world();
    let s = &w.server;
    s.route("/in-sync", meta(&w.c[5]))
        .route("/behind", meta(&w.c[2]))
        .route("/ahead", meta(&w.c[5]))
        .route("/diverged", meta(&w.hotfix))
        .route("/unknown", meta(&"e".repeat(40)))
        .route("/invalid", Behavior::Json(r#"{"sha": 42}"#.into()));
    w.repo.update_ref("refs/heads/environments/rollback", &w.c[3]);
    let urls =
        |paths: &[&str]| paths.iter().map(|p| format!("\"{}\"", s.url(p))).collect::<Vec<_>>().join(", ");
    let cfg = config_for(
        &w,
        &format!(
            r#"
[[environments]]
name = "production"
  [[environments.targets]]
  name = "web"
  [environments.targets.http]
  urls = [{}]
  timeout = "5s"

[[environments]]
name = "rollback"
  [[environments.targets]]
  name = "web"
  [environments.targets.http]
  urls = [{}]
"#,
            urls(&["/in-sync", "/behind", "/diverged", "/unknown", "/invalid", "/down"]),
            urls(&["/ahead"])
        ),
    );
    // /down is a port nobody listens on.
    let down = format!("http://127.0.0.1:{}/x", gitstate_testkit::free_port());
    let text = std::fs::read_to_string(&cfg).unwrap().replace(&s.url("/down"), &down);
    std::fs::write(&cfg, text).unwrap();

    let r = with_config(&cfg, &["check", "-o", "json"]);
    assert_eq!(r.code, 1, "drift → exit 1\n{}", r.stderr);
    let j = r.json();
    let st = |env: &str, id: &str| instance(&j, env, "web", id).clone();
    assert_eq!(st("production", &s.url("/in-sync"))["status"], "in_sync");
    let b = st("production", &s.url("/behind"));
    assert_eq!(
        (b["status"].as_str(), b["commits_behind"].as_u64(), b["commits_ahead"].clone()),
        (Some("behind"), Some(3), Value::Null)
    );
    let d = st("production", &s.url("/diverged"));
    assert_eq!(
        (d["status"].as_str(), d["commits_behind"].as_u64(), d["commits_ahead"].as_u64()),
        (Some("diverged"), Some(3), Some(1))
    );
    assert_eq!(st("production", &s.url("/unknown"))["status"], "unknown_commit");
    let inv = st("production", &s.url("/invalid"));
    assert_eq!(inv["status"], "invalid");
    assert!(inv["error"].as_str().unwrap().contains("number"));
    let dn = st("production", &down);
    assert_eq!(dn["status"], "unreachable");
    assert!(dn["error"].as_str().unwrap().contains("cannot connect"));
    let a = st("rollback", &s.url("/ahead"));
    assert_eq!((a["status"].as_str(), a["commits_ahead"].as_u64()), (Some("ahead"), Some(2)));
    // The target is its worst instance.
    assert_eq!(j["environments"][0]["targets"][0]["status"], "unreachable");
    assert_eq!(j["environments"][1]["targets"][0]["status"], "ahead");
}

#[test]
fn auto_detected_formats_and_abbreviations_are_in_sync() {
    let w = world();
    let s = &w.server;
    let sha = &w.c[5];
    s.route("/meta", meta(sha))
        .route(
            "/dockerflow",
            Behavior::Json(format!(r#"{{"source":"x","version":"1","commit":"{sha}","build":"b"}}"#)),
        )
        .route(
            "/spring",
            Behavior::Json(format!(
                r#"{{"git":{{"branch":"main","commit":{{"id":"{}","time":"t"}}}}}}"#,
                &sha[..7]
            )),
        )
        .route(
            "/spring-full",
            Behavior::Json(format!(
                r#"{{"git":{{"commit":{{"id":{{"abbrev":"{}","full":"{sha}"}}}}}}}}"#,
                &sha[..7]
            )),
        )
        .route("/version", Behavior::Json(format!(r#"{{"major":"1","minor":"30","gitCommit":"{sha}"}}"#)))
        .route("/plain", Behavior::Bytes(format!("{}\n", sha[..12].to_uppercase()).into_bytes()))
        .route("/custom", Behavior::Json(format!(r#"{{"build":{{"rev":"{sha}"}}}}"#)));
    let list = ["/meta", "/dockerflow", "/spring", "/spring-full", "/version", "/plain"]
        .iter()
        .map(|p| format!("\"{}\"", s.url(p)))
        .collect::<Vec<_>>()
        .join(", ");
    let cfg = config_for(
        &w,
        &format!(
            r#"
[[environments]]
name = "production"
  [[environments.targets]]
  name = "auto"
  [environments.targets.http]
  urls = [{list}]
  [[environments.targets]]
  name = "pointer"
  [environments.targets.http]
  urls = ["{}"]
  sha_pointer = "/build/rev"
"#,
            s.url("/custom")
        ),
    );
    let r = with_config(&cfg, &["check", "-o", "json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let j = r.json();
    assert_eq!(j["in_sync"], true);
    let auto = &j["environments"][0]["targets"][0]["instances"];
    assert_eq!(auto.as_array().unwrap().len(), 6);
    for i in auto.as_array().unwrap() {
        assert_eq!(i["status"], "in_sync", "{i}");
    }
    assert_eq!(instance(&j, "production", "auto", &s.url("/spring"))["actual"], &sha[..7]);
    assert_eq!(instance(&j, "production", "auto", &s.url("/plain"))["actual"], sha[..12].to_lowercase());
}

/// Checks the JSON against the field sets of SPEC §6.
fn assert_schema(j: &Value) {
    let keys = |v: &Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(j), ["checked_at", "environments", "in_sync", "schema"]);
    assert_eq!(j["schema"], 1);
    jiff::Timestamp::from_str_ok(j["checked_at"].as_str().unwrap());
    for e in j["environments"].as_array().unwrap() {
        assert_eq!(keys(e), ["actions", "error", "expected", "in_sync", "name", "phase", "ref", "targets"]);
        assert_eq!(e["phase"], Value::Null, "check has no phase");
        assert_eq!(e["actions"], serde_json::json!([]));
        for t in e["targets"].as_array().unwrap() {
            assert_eq!(keys(t), ["error", "instances", "kind", "name", "status"]);
            for i in t["instances"].as_array().unwrap() {
                assert_eq!(
                    keys(i),
                    [
                        "actual",
                        "commits_ahead",
                        "commits_behind",
                        "compare_url",
                        "elapsed_ms",
                        "error",
                        "id",
                        "pending_commits",
                        "status",
                        "unexpected_commits"
                    ]
                );
                assert!(i["elapsed_ms"].is_u64());
            }
        }
    }
}

trait TsOk {
    fn from_str_ok(s: &str);
}
impl TsOk for jiff::Timestamp {
    fn from_str_ok(s: &str) {
        s.parse::<jiff::Timestamp>().unwrap_or_else(|e| panic!("{s} is not RFC 3339: {e}"));
    }
}

#[test]
fn json_follows_schema_1_and_exit_codes_follow_the_spec() {
    let w = world();
    w.server.route("/ok", meta(&w.c[5]));
    let cfg = config_for(&w, &http_env("production", "web", &[w.server.url("/ok")], ""));
    let r = with_config(&cfg, &["check", "-o", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let j = r.json();
    assert_schema(&j);
    assert_eq!(j["environments"][0]["ref"], REF);
    assert_eq!(j["environments"][0]["expected"], w.c[5]);
    assert_eq!(j["environments"][0]["targets"][0]["kind"], "http");

    // The ref moves between two runs: the next run sees it.
    w.repo.update_ref(REF, &w.c[4]);
    let r = with_config(&cfg, &["check", "-o", "json"]);
    assert_eq!(r.code, 1);
    let j = r.json();
    assert_eq!(j["environments"][0]["expected"], w.c[4]);
    assert_eq!(j["environments"][0]["targets"][0]["status"], "ahead");
}

/// Regression: `gitstate check | head -0` panicked in `print!` once the reader had gone.
#[test]
fn a_closed_stdout_is_no_panic_and_keeps_the_exit_code() {
    let w = world();
    w.server.route("/old", meta(&w.c[3]));
    let cfg = config_for(&w, &http_env("production", "web", &[w.server.url("/old")], ""));
    for args in [&["check"][..], &["check", "-o", "json"], &["expected"], &["expected", "-o", "json"]] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = gitstate().args(args).arg("-c").arg(&cfg).stdout(writer).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        let want = if args[0] == "check" { 1 } else { 0 };
        assert_eq!(out.status.code(), Some(want), "{args:?}: {stderr}");
    }
}

#[test]
fn a_missing_ref_exits_2_naming_the_environment() {
    let w = world();
    w.server.route("/ok", meta(&w.c[5]));
    let cfg = config_for(
        &w,
        &[
            http_env("production", "web", &[w.server.url("/ok")], ""),
            http_env("staging", "web", &[w.server.url("/ok")], ""),
        ]
        .concat(),
    );
    let r = with_config(&cfg, &["check", "-o", "json"]);
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert!(
        r.stderr.contains("environment staging") && r.stderr.contains("refs/heads/environments/staging"),
        "{}",
        r.stderr
    );
    let j = r.json();
    assert_schema(&j);
    assert!(j["environments"][1]["error"].as_str().unwrap().contains("not found"));
    assert_eq!(j["environments"][0]["in_sync"], true);

    // -e narrows to the healthy one; an unknown name is a usage error.
    assert_eq!(with_config(&cfg, &["check", "-e", "production"]).code, 0);
    let r = with_config(&cfg, &["check", "-e", "nope"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("no environment named \"nope\""), "{}", r.stderr);
}

#[test]
fn discover_makes_an_environment_per_ref() {
    let w = world();
    let s = &w.server;
    w.repo.update_ref("refs/heads/environments/staging", &w.c[4]);
    w.repo.update_ref("refs/heads/environments/legacy-eu", &w.c[0]);
    w.repo.update_ref("refs/heads/environments/eu/west", &w.c[0]);
    s.route("/production/meta", meta(&w.c[5]))
        .route("/staging/meta", meta(&w.c[3]))
        .route("/explicit", meta(&w.c[5]));
    let cfg = config_for(
        &w,
        &format!(
            r#"
[[environments]]
name = "production"
  [[environments.targets]]
  name = "explicit"
  [environments.targets.http]
  urls = ["{}"]

[[discover]]
exclude = ["legacy-*"]
  [[discover.targets]]
  name = "web"
  [discover.targets.http]
  urls = ["http://127.0.0.1:{}/{{environment}}/meta"]
"#,
            s.url("/explicit"),
            s.port
        ),
    );
    let r = with_config(&cfg, &["check", "-o", "json"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let j = r.json();
    let names: Vec<&str> =
        j["environments"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["production", "staging"],
        "explicit wins; legacy-* excluded; eu/west is not a valid name"
    );
    assert_eq!(j["environments"][0]["targets"][0]["name"], "explicit");
    let staging = instance(&j, "staging", "web", &s.url("/staging/meta"));
    assert_eq!((staging["status"].as_str(), staging["commits_behind"].as_u64()), (Some("behind"), Some(1)));
    assert!(r.stderr.contains("eu/west"), "the skipped ref is named: {}", r.stderr);

    let r = with_config(&cfg, &["expected", "-o", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.json(),
        serde_json::json!({"schema": 1, "environments": [
            {"name": "production", "ref": REF, "expected": w.c[5]},
            {"name": "staging", "ref": "refs/heads/environments/staging", "expected": w.c[4]},
        ]})
    );
}

#[test]
fn hostile_targets_are_unreachable_or_invalid_never_in_sync() {
    let w = world();
    let s = &w.server;
    let far = TestServer::start_background();
    far.route("/x", meta(&w.c[5]));
    gitstate_testkit::hostile::serve(s, meta(&w.c[5]), &far.url("/x"));
    let fleet = gitstate_testkit::hostile::FLEET;
    let mut urls: Vec<String> = fleet.iter().map(|h| s.url(h.path)).collect();
    let stalled = format!("https://127.0.0.1:{}/meta", gitstate_testkit::hostile::tls_stall());
    urls.push(stalled.clone());
    let cfg = config_for(&w, &http_env("production", "hostile", &urls, "  timeout = \"2s\""));
    let r = with_config(&cfg, &["check", "-o", "json"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let j = r.json();
    for h in fleet {
        let i = instance(&j, "production", "hostile", &s.url(h.path));
        assert_eq!(i["status"], h.status, "{}: {i}", h.path);
        assert!(i["error"].as_str().unwrap_or("").contains(h.error), "{}: {i}", h.path);
        assert!(i["elapsed_ms"].as_u64().unwrap() < 10_000, "{} was bounded: {i}", h.path);
    }
    let i = instance(&j, "production", "hostile", &stalled);
    assert_eq!(
        (i["status"].as_str(), i["error"].as_str()),
        (Some("unreachable"), Some("timed out after 2s"))
    );

    // What people read: nothing a target sent reaches the terminal raw (no ESC, no BEL),
    // in the table or in a log line at any level.
    for args in [&["check"][..], &["reconcile"][..]] {
        let r = run(gitstate().args(args).arg("-c").arg(&cfg).env("GITSTATE_LOG", "trace"));
        assert_eq!(r.code, 1, "{}", r.stderr);
        assert!(r.stdout.contains("\\u{1b}[2J"), "the escape is shown, escaped:\n{}", r.stdout);
        for out in [&r.stdout, &r.stderr] {
            assert!(!out.contains(['\u{1b}', '\u{7}', '\0']), "raw control characters in {args:?} output");
        }
    }
}

/// Also under a soft open-file limit of 48 (systemd's default is 1024): 64 requests in
/// flight need more sockets than that, so gitstate lifts the soft limit itself.
#[test]
fn a_thousand_targets_all_correct() {
    let w = world();
    let s = &w.server;
    let mut targets = String::new();
    for i in 0..1000 {
        let sha = if i % 10 == 0 { &w.c[4] } else { &w.c[5] };
        s.route(&format!("/t{i}"), meta(sha));
        targets.push_str(&format!(
            "  [[environments.targets]]\n  name = \"t{i}\"\n  [environments.targets.http]\n  urls = [\"{}\"]\n",
            s.url(&format!("/t{i}"))
        ));
    }
    let cfg = config_for(&w, &format!("[[environments]]\nname = \"production\"\n{targets}"));
    let low_limit = format!("ulimit -Sn 48 && exec \"$0\" check -o json -c {}", cfg.display());
    let r = run(Command::new("sh").args(["-c", &low_limit, env!("CARGO_BIN_EXE_gitstate")]));
    assert_eq!(r.code, 1, "{}", r.stderr);
    let j = r.json();
    let targets = j["environments"][0]["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 1000);
    for (i, t) in targets.iter().enumerate() {
        let want = if i % 10 == 0 { "behind" } else { "in_sync" };
        assert_eq!(t["name"], format!("t{i}"));
        assert_eq!(t["status"], want, "{t}");
    }
}

#[test]
fn text_table_snapshot() {
    let w = world();
    let s = &w.server;
    s.route("/eu", meta(&w.c[5]))
        .route("/us", meta(&w.c[2]))
        .route("/ap", meta(&w.hotfix))
        .route("/sa", Behavior::Status(503));
    let cfg =
        config_for(&w, &http_env("production", "web", &["/eu", "/us", "/ap", "/sa"].map(|p| s.url(p)), ""));
    let r = with_config(&cfg, &["check"]);
    assert_eq!(r.code, 1);
    assert!(!r.stdout.contains('\x1b'), "no colour when stdout is not a terminal");
    insta::assert_snapshot!(normalize(&r.stdout, s, &[w.repo.path()]));
}

/// SPEC §11: an instance that is behind or diverged names the commits at stake — in JSON,
/// under `check -v`, with the compare link — from a repository built with git; a subject
/// carrying terminal escapes and `<script>` comes out as one clean line.
#[test]
fn commit_context_names_what_a_deploy_brings_and_what_a_hotfix_added() {
    let w = world();
    w.repo.git(&[
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "Pay \u{1b}[2Jnow <script>alert(1)</script>\n\nbody",
    ]);
    let newest = w.repo.git(&["rev-parse", "HEAD"]);
    w.repo.update_ref(REF, &newest);
    let s = &w.server;
    s.route("/behind", meta(&w.c[3])).route("/hotfix", meta(&w.hotfix));
    let cfg = config_for(
        &w,
        &format!(
            "compare_url = \"https://git.example.com/acme/shop/compare/{{from}}...{{to}}\"\n[output]\nmax_commits = 2\n{}",
            http_env("production", "web", &["/behind", "/hotfix"].map(|p| s.url(p)), "")
        ),
    );
    let j = with_config(&cfg, &["check", "-o", "json"]).json();
    let behind = instance(&j, "production", "web", &s.url("/behind"));
    assert_eq!(behind["commits_behind"], 3);
    let subjects = |v: &Value| -> Vec<String> {
        v.as_array().unwrap().iter().map(|c| c["subject"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(subjects(&behind["pending_commits"]), ["Pay [2Jnow <script>alert(1)</script>", "c 5"]);
    assert_eq!(behind["pending_commits"][0]["sha"], newest);
    assert_eq!(behind["pending_commits"][0]["author"], "t");
    assert_eq!(behind["unexpected_commits"], serde_json::json!([]));
    assert_eq!(
        behind["compare_url"],
        format!("https://git.example.com/acme/shop/compare/{}...{newest}", w.c[3])
    );
    let hotfix = instance(&j, "production", "web", &s.url("/hotfix"));
    assert_eq!(subjects(&hotfix["unexpected_commits"]), ["hotfix"]);

    let r = with_config(&cfg, &["check", "-v"]);
    assert!(!r.stdout.contains('\x1b'), "a subject cannot reach the terminal raw: {:?}", r.stdout);
    assert!(r.stdout.contains("pending:") && r.stdout.contains("Pay [2Jnow <script>"), "{}", r.stdout);
    assert!(r.stdout.contains("unexpected:") && r.stdout.contains("hotfix  (t, "), "{}", r.stdout);
    assert!(r.stdout.contains("compare: https://git.example.com/acme/shop/compare/"), "{}", r.stdout);
}

/// Times and ages in a page, made stable for a snapshot.
fn stable_times(html: &str) -> String {
    let b = html.as_bytes();
    let mut out = String::with_capacity(html.len());
    let mut i = 0;
    let is_ts = |s: &[u8]| {
        s.len() >= 20
            && s[..4].iter().all(u8::is_ascii_digit)
            && s[4] == b'-'
            && s[10] == b'T'
            && s[13] == b':'
            && s[16] == b':'
    };
    while i < b.len() {
        if is_ts(&b[i..]) {
            let end = b[i..].iter().position(|c| *c == b'Z').map_or(b.len(), |p| i + p + 1);
            out.push_str("[TIME]");
            i = end;
            continue;
        }
        let digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits > 0
            && b[i + digits..].len() >= 5
            && b"smhd".contains(&b[i + digits])
            && &b[i + digits + 1..i + digits + 5] == b" ago"
        {
            out.push_str("[AGE]");
            i += digits + 5;
            continue;
        }
        let c = html[i..].chars().next().unwrap();
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// SPEC §12: `check -o html` writes the dashboard as a static page: one document with its
/// own Content-Security-Policy, no script, every value escaped (a hostile subject stays
/// text).
#[test]
fn html_report_snapshot() {
    let w = world();
    w.repo.git(&["commit", "-q", "--allow-empty", "-m", "Pay <img src=x onerror=alert(1)> & more"]);
    let newest = w.repo.git(&["rev-parse", "HEAD"]);
    w.repo.update_ref(REF, &newest);
    let s = &w.server;
    s.route("/eu", meta(&newest)).route("/us", meta(&w.c[3])).route("/ap", meta(&w.hotfix));
    let cfg = config_for(
        &w,
        &format!(
            "commit_url = \"https://git.example.com/shop/commit/{{sha}}\"\ncompare_url = \"https://git.example.com/shop/compare/{{from}}...{{to}}\"\n{}",
            http_env("production", "web", &["/eu", "/us", "/ap"].map(|p| s.url(p)), "")
        ),
    );
    let r = with_config(&cfg, &["check", "-o", "html"]);
    assert_eq!(r.code, 1);
    let page = &r.stdout;
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.contains("http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'"));
    assert!(!page.contains("<script"), "a static page runs nothing");
    assert!(!page.contains("<img"), "a subject is text, never markup");
    assert!(page.contains("Pay &lt;img src=x onerror=alert(1)&gt; &amp; more"));
    let mut stable = normalize(page, s, &[w.repo.path()]);
    for (i, c) in w.c.iter().chain([&w.hotfix, &newest]).enumerate() {
        stable = stable.replace(c.as_str(), &format!("[C{i}]")).replace(&c[..7], &format!("[c{i}]"));
    }
    insta::assert_snapshot!(stable_times(&stable));
}
