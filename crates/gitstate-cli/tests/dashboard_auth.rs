//! SPEC §20 end to end: `gitstate watch` with `[watch.auth]` and `[watch.tls]`, asked by
//! raw HTTP clients (hostile ones: no credentials, wrong passwords, a viewer posting,
//! forged tokens and origins), by a TLS client trusting only the configured certificate,
//! and by a real headless Chromium clicking the dashboard's buttons.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use common::*;

const ADA: &str = "ada-s-correct-horse";
const BOB: &str = "bob-s-battery-staple";
const GRACE: &str = "grace-s-password-1";
const EVE: &str = "eve-s-password-22";

/// A bcrypt hash of `password` at the lowest cost (the tests check many).
fn hash(password: &str) -> String {
    bcrypt::hash(password, 4).unwrap()
}

fn auth_section() -> String {
    format!(
        r#"
[watch.auth]
users = [
  {{ name = "ada", password_hash = "{}", role = "operator" }},
  {{ name = "grace", password_hash = "{}", role = "operator" }},
  {{ name = "bob", password_hash = "{}", role = "viewer" }},
  {{ name = "eve", password_hash = "{}", role = "viewer" }},
]
trusted_header = "X-Forwarded-User"
trusted_proxies = ["10.0.0.0/8"]
"#,
        hash(ADA),
        // htpasswd writes $2y$: the same algorithm, another prefix.
        hash(GRACE).replacen("$2b$", "$2y$", 1),
        hash(BOB),
        hash(EVE),
    )
}

/// A raw HTTP/1.1 exchange: status, headers (lower-case names), body.
struct Answer {
    status: u16,
    headers: BTreeMap<String, String>,
    body: String,
}

fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status =
        lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Answer { status, headers, body: body.to_owned() }
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

fn form(fields: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish()
}

/// `watch` with its log kept in `log`.
fn watch_logged(cfg: &Path, log: &Path) -> Watching {
    let port = gitstate_testkit::free_port();
    let child = gitstate()
        .args(["watch", "--listen", &format!("127.0.0.1:{port}"), "-c"])
        .arg(cfg)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let w = Watching { child, port };
    wait_for(Duration::from_secs(30), "watch to be ready", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            && request(port, "GET", "/readyz", &[], "").status == 200
    });
    w
}

/// The token `user` gets from `GET /actions/token`.
fn token(port: u16, user: &str, password: &str) -> String {
    let a = request(port, "GET", "/actions/token", &[("Authorization", &basic(user, password))], "");
    assert_eq!(a.status, 200, "{}", a.body);
    let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    v["token"].as_str().unwrap().to_owned()
}

/// A hostile request: what, method, path, headers, body, and the status expected.
type Case<'a> = (&'a str, &'a str, &'a str, Vec<(&'a str, String)>, String, u16);

#[test]
fn hostile_requests_get_the_answers_the_spec_gives() {
    let l = Loop::new();
    l.deploy_script(r#"printf '{"sha":"%s"}' "$GITSTATE_EXPECTED_SHA" > served.json"#);
    let cfg = l.config("grace = \"0s\"", &auth_section());
    let log = l.path().join("watch.log");
    let w = watch_logged(&cfg, &log);
    let port = w.port;
    let origin = format!("http://127.0.0.1:{port}");
    let ada = basic("ada", ADA);
    let ada_token = token(port, "ada", ADA);
    let grace_token = token(port, "grace", GRACE);
    let suspend = |reason: &str| form(&[("environment", "production"), ("reason", reason)]);

    let json = ("Accept", "application/json");
    let cases: Vec<Case<'_>> = vec![
        ("the page without credentials", "GET", "/", vec![], String::new(), 401),
        ("/status without credentials", "GET", "/status", vec![], String::new(), 401),
        ("/events without credentials", "GET", "/events", vec![], String::new(), 401),
        ("/metrics without credentials", "GET", "/metrics", vec![], String::new(), 401),
        ("/where without credentials", "GET", "/where?rev=HEAD", vec![], String::new(), 401),
        ("a token without credentials", "GET", "/actions/token", vec![], String::new(), 401),
        ("an action without credentials", "POST", "/actions/suspend", vec![], suspend("x"), 401),
        ("/healthz without credentials", "GET", "/healthz", vec![], String::new(), 200),
        ("/readyz without credentials", "GET", "/readyz", vec![], String::new(), 200),
        ("a wrong password", "GET", "/", vec![("Authorization", basic("ada", "wrong"))], String::new(), 401),
        ("an unknown user", "GET", "/", vec![("Authorization", basic("mallory", ADA))], String::new(), 401),
        ("not basic", "GET", "/", vec![("Authorization", "Bearer abc".into())], String::new(), 401),
        (
            "a trusted header from an address outside trusted_proxies",
            "GET",
            "/status",
            vec![("X-Forwarded-User", "ada".into())],
            String::new(),
            401,
        ),
        ("a viewer reads", "GET", "/status", vec![("Authorization", basic("bob", BOB))], String::new(), 200),
        (
            "a viewer's POST",
            "POST",
            "/actions/suspend",
            vec![("Authorization", basic("bob", BOB)), ("Origin", origin.clone())],
            suspend("x"),
            403,
        ),
        (
            "a viewer asks for a token",
            "GET",
            "/actions/token",
            vec![("Authorization", basic("bob", BOB))],
            String::new(),
            403,
        ),
        (
            "a POST without a token",
            "POST",
            "/actions/suspend",
            vec![("Authorization", ada.clone()), ("Origin", origin.clone())],
            suspend("x"),
            403,
        ),
        (
            "a POST with another user's token",
            "POST",
            "/actions/suspend",
            vec![("Authorization", ada.clone()), ("Origin", origin.clone())],
            form(&[("environment", "production"), ("reason", "x"), ("csrf", &grace_token)]),
            403,
        ),
        (
            "a POST with a foreign Origin",
            "POST",
            "/actions/suspend",
            vec![("Authorization", ada.clone()), ("Origin", "https://evil.example".into())],
            form(&[("environment", "production"), ("reason", "x"), ("csrf", &ada_token)]),
            403,
        ),
        (
            "a form's token without any Origin",
            "POST",
            "/actions/suspend",
            vec![("Authorization", ada.clone())],
            form(&[("environment", "production"), ("reason", "x"), ("csrf", &ada_token)]),
            403,
        ),
        (
            "an unknown environment",
            "POST",
            "/actions/suspend",
            vec![("Authorization", ada.clone()), ("X-CSRF-Token", ada_token.clone())],
            form(&[("environment", "staging"), ("reason", "x")]),
            404,
        ),
        (
            "an unknown action",
            "POST",
            "/actions/delete",
            vec![("Authorization", ada.clone())],
            String::new(),
            404,
        ),
        (
            "no reason",
            "POST",
            "/actions/suspend",
            vec![("Authorization", ada.clone()), ("X-CSRF-Token", ada_token.clone())],
            form(&[("environment", "production")]),
            400,
        ),
        (
            "a reason over 200 characters",
            "POST",
            "/actions/suspend",
            vec![("Authorization", ada.clone()), ("X-CSRF-Token", ada_token.clone())],
            form(&[("environment", "production"), ("reason", &"x".repeat(201))]),
            400,
        ),
        (
            "a veto without a commit",
            "POST",
            "/actions/veto",
            vec![("Authorization", ada.clone()), ("X-CSRF-Token", ada_token.clone())],
            form(&[("environment", "production"), ("reason", "x")]),
            400,
        ),
        (
            "a veto of something not a commit id",
            "POST",
            "/actions/veto",
            vec![("Authorization", ada.clone()), ("X-CSRF-Token", ada_token.clone())],
            form(&[("environment", "production"), ("reason", "x"), ("sha", "HEAD~1")]),
            400,
        ),
        (
            "an unveto of a commit not vetoed (the CLI refuses it too)",
            "POST",
            "/actions/unveto",
            vec![
                ("Authorization", ada.clone()),
                ("X-CSRF-Token", ada_token.clone()),
                ("Accept", "application/json".into()),
            ],
            form(&[("environment", "production"), ("reason", "x"), ("sha", &l.c[1])]),
            409,
        ),
        (
            "a body over 16 KiB",
            "POST",
            "/actions/suspend",
            vec![("Authorization", ada.clone()), ("X-CSRF-Token", ada_token.clone())],
            form(&[("environment", "production"), ("reason", &"x".repeat(17 * 1024))]),
            413,
        ),
        (
            "an operator's suspend with a header token",
            "POST",
            "/actions/suspend",
            vec![
                ("Authorization", ada.clone()),
                ("X-CSRF-Token", ada_token.clone()),
                (json.0, json.1.into()),
            ],
            suspend("INC-42 from a script"),
            200,
        ),
        (
            "an operator's form, from the page's origin",
            "POST",
            "/actions/retry",
            vec![("Authorization", ada.clone()), ("Origin", origin.clone())],
            form(&[("environment", "production"), ("reason", "try again"), ("csrf", &ada_token)]),
            303,
        ),
    ];
    let mut failures = Vec::new();
    for (what, method, path, headers, body, want) in &cases {
        let mut h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        if *method == "POST" {
            h.push(("Content-Type", "application/x-www-form-urlencoded"));
        }
        let a = request(port, method, path, &h, body);
        if a.status != *want {
            failures.push(format!("{what}: {method} {path} → {} (want {want}): {}", a.status, a.body.trim()));
        }
        // Security headers on every answer.
        for header in
            ["content-security-policy", "x-frame-options", "referrer-policy", "x-content-type-options"]
        {
            if !a.headers.contains_key(header) {
                failures.push(format!("{what}: no {header}"));
            }
        }
        if a.status == 401 && !a.headers.get("www-authenticate").is_some_and(|v| v.starts_with("Basic")) {
            failures.push(format!("{what}: 401 without WWW-Authenticate: Basic"));
        }
        eprintln!("{what}: {method} {path} → {}", a.status);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // A viewer is refused for the role, before any token is looked at.
    let a = request(
        port,
        "POST",
        "/actions/suspend",
        &[("Authorization", &basic("bob", BOB)), ("X-CSRF-Token", &ada_token)],
        &suspend("x"),
    );
    assert_eq!((a.status, a.body.trim()), (403, "only an operator may act"));
    let a = request(port, "GET", "/", &[], "");
    assert_eq!(a.headers["x-frame-options"], "DENY");
    assert_eq!(a.headers["referrer-policy"], "same-origin");
    assert!(a.headers["content-security-policy"].contains("form-action 'self'"));

    // The JSON answer of an action, and the suspension recorded with who and how.
    let st = status(&cfg);
    assert_eq!(st["suspension"]["by"], "ada", "{st}");
    assert_eq!(st["suspension"]["via"], "dashboard", "{st}");
    assert_eq!(st["suspension"]["reason"], "INC-42 from a script", "{st}");
    let events = l.events();
    let retry = events.iter().find(|e| e["event"] == "retry_requested").expect("retry recorded");
    assert_eq!((retry["by"].as_str(), retry["via"].as_str()), (Some("ada"), Some("dashboard")));
    assert_eq!(retry["reason"], "try again");

    // Five wrong passwords a minute for one user, then 429 without checking: even the
    // right one.
    let eve = |p: &str| request(port, "GET", "/status", &[("Authorization", &basic("eve", p))], "");
    for i in 0..5 {
        assert_eq!(eve(&format!("wrong-{i}")).status, 401, "wrong password {i}");
    }
    let sixth = eve("wrong-5");
    assert_eq!(sixth.status, 429, "{}", sixth.body);
    assert!(
        sixth
            .headers
            .get("retry-after")
            .is_some_and(|s| s.parse::<u64>().is_ok_and(|n| (1..=60).contains(&n)))
    );
    assert_eq!(eve(EVE).status, 429, "locked out for the minute, password unchecked");
    // Others are not.
    assert_eq!(request(port, "GET", "/status", &[("Authorization", &basic("bob", BOB))], "").status, 200);

    // Passwords, hashes and tokens never in the log, the events or the status.
    drop(w);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("login failed"), "failed logins are logged:\n{logged}");
    let state = std::fs::read_to_string(l.path().join(".gitstate/events.jsonl")).unwrap()
        + &with_config(&cfg, &["status", "-o", "json"]).stdout;
    for secret in [ADA, BOB, GRACE, EVE, "wrong-0", &ada_token, &grace_token, "$2b$04$", "$2y$04$"] {
        assert!(!logged.contains(secret), "{secret:?} in the log");
        assert!(!state.contains(secret), "{secret:?} in the state");
    }
    assert!(!logged.contains("mallory"), "an unknown user's name is not logged");
}

#[test]
fn tls_serves_the_configured_certificate_and_a_replaced_one_without_a_restart() {
    let l = Loop::new();
    l.deploy_script("true");
    let (cert, key) = gitstate_testkit::tls::self_signed_pem(&["127.0.0.1"]);
    std::fs::write(l.path().join("cert.pem"), &cert).unwrap();
    std::fs::write(l.path().join("key.pem"), &key).unwrap();
    let cfg = l.config("", "[watch.tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\nhsts = \"365d\"\n");
    let port = gitstate_testkit::free_port();
    let mut child = gitstate()
        .args(["watch", "--listen", &format!("127.0.0.1:{port}"), "-c"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let get = |ca: &str, path: &str| gitstate_testkit::tls::https_get(port, ca, path);
    wait_for(Duration::from_secs(30), "watch over TLS", || get(&cert, "/healthz").is_ok());
    assert_eq!(get(&cert, "/healthz").unwrap().0, 200);
    // Plain HTTP gets no answer; another certificate is not trusted.
    let plain = request(port, "GET", "/healthz", &[], "");
    assert_ne!(plain.status, 200);
    let (other, other_key) = gitstate_testkit::tls::self_signed_pem(&["127.0.0.1"]);
    assert!(get(&other, "/healthz").is_err());

    // A broken replacement is refused (counted), the old pair kept.
    std::fs::write(l.path().join("cert.pem"), "not a certificate").unwrap();
    wait_for(Duration::from_secs(40), "the reload failure counted", || {
        get(&cert, "/metrics").is_ok_and(|(_, m)| m.contains("gitstate_tls_reload_failures_total 1"))
    });
    assert_eq!(get(&cert, "/healthz").unwrap().0, 200, "still the old certificate");

    // A good one is served within a poll.
    std::fs::write(l.path().join("key.pem"), &other_key).unwrap();
    std::fs::write(l.path().join("cert.pem"), &other).unwrap();
    wait_for(Duration::from_secs(40), "the new certificate served", || get(&other, "/healthz").is_ok());
    assert!(get(&cert, "/healthz").is_err(), "the old one is no longer served");
    let _ = child.kill();
    let _ = child.wait();

    // Bad files at start: exit 2, with the file named.
    std::fs::write(l.path().join("cert.pem"), "nothing").unwrap();
    let r = with_config(&cfg, &["validate"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("cert.pem"), "{}", r.stderr);
}

#[test]
fn validate_warns_of_an_open_listener_beyond_loopback() {
    let l = Loop::new();
    let open = l.config("", "[watch]\nlisten = \"0.0.0.0:9464\"\n");
    let r = with_config(&open, &["validate"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("[watch.auth] is not set"), "{}", r.stderr);
    let clear = l.config("", &format!("[watch]\nlisten = \"0.0.0.0:9464\"\n{}", auth_section()));
    let r = with_config(&clear, &["validate"]);
    assert!(r.stderr.contains("without [watch.tls]"), "{}", r.stderr);
    let local = l.config("", &auth_section());
    assert!(!with_config(&local, &["validate"]).stderr.contains("warning"));
    // trusted_header without trusted_proxies is a config error.
    let bad = l.config("", "[watch.auth]\ntrusted_header = \"X-User\"\n");
    let r = with_config(&bad, &["validate"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("trusted_proxies"), "{}", r.stderr);
}

#[test]
fn an_operator_clicks_suspend_retry_and_roll_back_in_chromium_and_a_viewer_sees_no_buttons() {
    let l = Loop::new();
    l.deploy_script(r#"printf '{"sha":"%s"}' "$GITSTATE_EXPECTED_SHA" > served.json"#);
    let cfg = l.config("grace = \"0s\"", &auth_section());
    let w = watch(&cfg);
    // Converged on c1, then on c2: c1 is what a rollback goes back to.
    l.repo.update_ref(REF, &l.c[2]);
    wait_for(Duration::from_secs(30), "c2 deployed", || {
        l.events().iter().any(|e| e["event"] == "converged" && e["expected"] == l.c[2].as_str())
    });

    let chrome = gitstate_testkit::Chromium::start();
    let mut page = chrome.page();
    let login = |page: &mut gitstate_testkit::chromium::Page, user: &str, password: &str| {
        page.call("Network.enable", serde_json::json!({}));
        page.call(
            "Network.setExtraHTTPHeaders",
            serde_json::json!({"headers": {"Authorization": basic(user, password)}}),
        );
        page.navigate(&format!("http://127.0.0.1:{}/", w.port));
    };
    login(&mut page, "ada", ADA);
    let click = |page: &mut gitstate_testkit::chromium::Page, action: &str, reason: &str| {
        let js = format!(
            "(function(){{var f=document.querySelector('#env-production form.act[action=\"/actions/{action}\"]');\
             if(!f)return 'no form';f.querySelector('input[name=reason]').value={reason:?};\
             f.querySelector('button').click();return 'clicked';}})()"
        );
        assert_eq!(page.eval(&js), "clicked", "{action}");
    };
    let buttons = |page: &mut gitstate_testkit::chromium::Page| {
        page.eval("[...document.querySelectorAll('form.act button')].map(b => b.dataset.action).join(' ')")
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert!(buttons(&mut page).contains("suspend"), "{}", buttons(&mut page));
    // The book's picture of the operator's view, from this very page when `scripts/docs`
    // asks (GITSTATE_DOCS_DIR=docs/src/images).
    if let Some(dir) = std::env::var_os("GITSTATE_DOCS_DIR") {
        let png = page.screenshot(1280, 800, false);
        std::fs::write(Path::new(&dir).join("dashboard-operator.png"), png).unwrap();
    }
    click(&mut page, "suspend", "INC-7: paging storm");
    wait_for(Duration::from_secs(20), "the suspension", || status(&cfg)["suspension"]["by"] == "ada");
    let st = status(&cfg);
    assert_eq!(st["suspension"]["via"], "dashboard");
    assert_eq!(st["suspension"]["reason"], "INC-7: paging storm");
    // The page comes back (303 to /) and now offers Resume.
    wait_for(Duration::from_secs(20), "the page offering resume", || buttons(&mut page).contains("resume"));
    click(&mut page, "resume", "storm over");
    wait_for(Duration::from_secs(20), "resumed", || status(&cfg)["suspension"].is_null());
    wait_for(Duration::from_secs(20), "the page back", || buttons(&mut page).contains("retry"));
    click(&mut page, "retry", "flaky deploy");
    wait_for(Duration::from_secs(20), "retry recorded", || {
        l.events()
            .iter()
            .any(|e| e["event"] == "retry_requested" && e["via"] == "dashboard" && e["by"] == "ada")
    });
    wait_for(Duration::from_secs(20), "the page back", || buttons(&mut page).contains("rollback"));
    click(&mut page, "rollback", "c2 is bad");
    wait_for(Duration::from_secs(30), "rolled back to c1", || {
        l.repo.git(&["rev-parse", REF]).trim() == l.c[1]
    });
    let reflog = l.repo.git(&["reflog", "show", "--format=%gs", REF]);
    assert!(reflog.lines().next().unwrap().ends_with("(c2 is bad) by ada via dashboard"), "{reflog}");
    let rolled = l.events().into_iter().find(|e| e["event"] == "rolled_back").expect("rolled_back recorded");
    assert_eq!((rolled["by"].as_str(), rolled["via"].as_str()), (Some("ada"), Some("dashboard")));
    // The dashboard's events show them.
    wait_for(Duration::from_secs(20), "the events on the page", || {
        let text = page.eval("document.body.innerText").as_str().unwrap_or_default().to_owned();
        text.contains("suspended by ada (dashboard)") && text.contains("rolled back from")
    });
    assert!(page.errors().is_empty(), "{:?}", page.errors());

    // A viewer sees no buttons.
    let mut viewer = chrome.page();
    login(&mut viewer, "bob", BOB);
    assert_eq!(viewer.eval("document.querySelectorAll('#env-production').length"), 1);
    assert_eq!(buttons(&mut viewer), "");
}
