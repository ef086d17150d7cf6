//! The HTTP probe against real servers on 127.0.0.1, friendly and hostile. Every hostile
//! target must end within its timeout as `unreachable` or `invalid`, never `in_sync`.

use std::time::{Duration, Instant};

use gitstate_core::{ActualStateProbe, CommitId, EnvName, FailureKind, ProbeContext, Reading};
use gitstate_http::{FollowRedirects, HttpClients, HttpProbe, HttpTarget, KeepAlive};
use gitstate_testkit::tls::TestCa;
use gitstate_testkit::{Behavior, TestServer};

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

fn meta(sha: &str) -> Behavior {
    Behavior::Json(format!(
        r#"{{"schema":1,"sha":"{sha}","ref":null,"environment":"t","built_at":"2026-11-24T06:00:00Z"}}"#
    ))
}

async fn read_with(target: HttpTarget) -> Vec<Reading> {
    let clients = HttpClients::new(64).unwrap();
    let probe = HttpProbe::new(&clients, target).unwrap();
    let env = EnvName::new("t").unwrap();
    let expected = CommitId::parse(SHA).unwrap();
    probe.observe(&ProbeContext { environment: &env, target: "web", expected: &expected }).await.unwrap()
}

async fn read(urls: &[String], timeout: Duration) -> Vec<Reading> {
    let mut t = HttpTarget::new(urls.iter().map(|u| u.parse().unwrap()).collect());
    t.timeout = timeout;
    read_with(t).await
}

fn failure(r: &Reading) -> (FailureKind, String) {
    let f = r.result.clone().expect_err(&format!("{} should fail", r.instance));
    (f.kind, f.message)
}

#[tokio::test]
async fn reads_commits_from_several_urls() {
    let s = TestServer::start().await;
    s.route("/a", meta(SHA)).route("/b", Behavior::Bytes(format!("{}\n", &SHA[..10]).into_bytes()));
    let r = read(&[s.url("/a"), s.url("/b")], Duration::from_secs(5)).await;
    assert_eq!(r[0].result.as_ref().unwrap().as_str(), SHA);
    assert_eq!(r[1].result.as_ref().unwrap().as_str(), &SHA[..10]);
    assert_eq!(r[0].instance, s.url("/a"));
}

/// Reads the whole fleet served at `base`, checking each against what it must give.
async fn read_fleet(base: &str, ca_file: Option<std::path::PathBuf>) {
    let fleet = gitstate_testkit::hostile::FLEET;
    let mut urls: Vec<String> = fleet.iter().map(|h| format!("{base}{}", h.path)).collect();
    urls.push(format!("https://127.0.0.1:{}/meta", gitstate_testkit::hostile::tls_stall()));
    let mut t = HttpTarget::new(urls.iter().map(|u| u.parse().unwrap()).collect());
    t.timeout = Duration::from_secs(2);
    t.ca_file = ca_file;
    let start = Instant::now();
    let got = read_with(t).await;
    // All run concurrently; the slowest ends at its 2 s deadline, not later.
    assert!(start.elapsed() < Duration::from_secs(15), "took {:?}", start.elapsed());
    for (h, r) in fleet.iter().zip(&got) {
        let (kind, message) = failure(r);
        assert_eq!(kind.status().as_str(), h.status, "{base}{}: {message}", h.path);
        assert!(message.contains(h.error), "{base}{}: {message:?} lacks {:?}", h.path, h.error);
    }
    let (kind, message) = failure(&got[fleet.len()]);
    assert_eq!(
        (kind, message.as_str()),
        (FailureKind::Unreachable, "timed out after 2s"),
        "TLS stalled mid-handshake"
    );
}

#[tokio::test]
async fn hostile_targets_end_within_their_timeout() {
    let s = TestServer::start().await;
    gitstate_testkit::hostile::serve(&s, meta(SHA), "http://localhost:1/x");
    read_fleet(&format!("http://127.0.0.1:{}", s.port), None).await;
}

/// The same fleet over TLS: the requests reqwest makes, not the plain-HTTP client.
#[tokio::test]
async fn hostile_targets_over_tls_end_within_their_timeout() {
    let s = TestServer::start().await;
    gitstate_testkit::hostile::serve(&s, meta(SHA), "https://localhost:1/x");
    let ca = TestCa::new();
    let port = ca.serve(s).await;
    read_fleet(&format!("https://127.0.0.1:{port}"), Some(ca.pem_file.clone())).await;
}

#[tokio::test]
async fn chunked_bodies_are_read_whole() {
    let s = TestServer::start().await;
    let body = format!(r#"{{"schema":1,"sha":"{SHA}","environment":"t"}}"#).into_bytes();
    // Chunks of 1 byte, and of every size up to the whole body.
    for size in [1, 3, 7, 16, body.len()] {
        s.route(&format!("/c{size}"), Behavior::Chunked(body.chunks(size).map(<[u8]>::to_vec).collect()));
    }
    let urls: Vec<String> = [1, 3, 7, 16, body.len()].iter().map(|n| s.url(&format!("/c{n}"))).collect();
    for r in read(&urls, Duration::from_secs(5)).await {
        assert_eq!(r.result.as_ref().map(|c| c.to_string()), Ok(SHA.to_owned()), "{}", r.instance);
    }
    // Exactly max_bytes is allowed; one more is not.
    let mut t = HttpTarget::new(vec![s.url("/c7").parse().unwrap()]);
    t.max_bytes = body.len();
    assert!(read_with(t.clone()).await[0].result.is_ok());
    t.max_bytes = body.len() - 1;
    let (k, m) = failure(&read_with(t).await[0]);
    assert_eq!(k, FailureKind::Invalid);
    assert!(m.contains("larger than max_bytes"), "{m}");
}

#[tokio::test]
async fn three_redirects_are_followed() {
    let s = TestServer::start().await;
    s.route("/r1", Behavior::Redirect(302, "/r2".into()))
        .route("/r2", Behavior::Redirect(301, "/r3".into()))
        .route("/r3", Behavior::Redirect(307, "/ok".into()))
        .route("/ok", meta(SHA));
    let got = read(&[s.url("/r1")], Duration::from_secs(5)).await;
    assert_eq!(got[0].result.as_ref().unwrap().as_str(), SHA);
    assert_eq!(got[0].instance, s.url("/r1"), "the instance is the configured URL");

    let other = TestServer::start().await;
    other.route("/ok", meta(SHA));
    s.route("/cross", Behavior::Redirect(302, other.url("/ok")));
    let mut t = HttpTarget::new(vec![s.url("/cross").parse().unwrap()]);
    t.follow_redirects = FollowRedirects::Any;
    assert!(read_with(t.clone()).await[0].result.is_ok(), "any host allowed");
    t.follow_redirects = FollowRedirects::None;
    let (k, m) = failure(&read_with(t).await[0]);
    assert_eq!(k, FailureKind::Unreachable);
    assert!(m.contains("not followed"), "{m}");
}

#[tokio::test]
async fn connection_refused_is_unreachable() {
    let port = gitstate_testkit::free_port();
    let got = read(&[format!("http://127.0.0.1:{port}/x")], Duration::from_secs(5)).await;
    let (k, m) = failure(&got[0]);
    assert_eq!(k, FailureKind::Unreachable);
    assert!(m.contains("cannot connect"), "{m}");
}

#[tokio::test]
async fn headers_and_sha_pointer() {
    let s = TestServer::start().await;
    s.route("/info", Behavior::Json(format!(r#"{{"build":{{"rev":"{SHA}"}}}}"#)));
    let mut t = HttpTarget::new(vec![s.url("/info").parse().unwrap()]);
    t.sha_pointer = Some("/build/rev".into());
    t.headers = vec![gitstate_http::Header::new("authorization", "Bearer secret").unwrap()];
    assert_eq!(read_with(t).await[0].result.as_ref().unwrap().as_str(), SHA);
}

#[tokio::test]
async fn tls_with_an_unknown_ca_and_with_ca_file() {
    let routes = TestServer::start().await;
    routes.route("/meta", meta(SHA));
    let ca = TestCa::new();
    let port = ca.serve(routes).await;
    let url = format!("https://127.0.0.1:{port}/meta");

    let got = read(std::slice::from_ref(&url), Duration::from_secs(5)).await;
    let (k, m) = failure(&got[0]);
    assert_eq!(k, FailureKind::Unreachable);
    assert!(m.to_lowercase().contains("certificate"), "{m}");

    let mut t = HttpTarget::new(vec![url.parse().unwrap()]);
    t.ca_file = Some(ca.pem_file.clone());
    assert_eq!(read_with(t).await[0].result.as_ref().unwrap().as_str(), SHA);
}

#[tokio::test]
async fn ca_file_may_hold_the_servers_own_self_signed_certificate() {
    for as_ca in [true, false] {
        let routes = TestServer::start().await;
        routes.route("/meta", meta(SHA));
        let own = TestCa::self_signed(&["127.0.0.1", "localhost"], as_ca);
        let port = own.serve(routes).await;
        let mut t = HttpTarget::new(vec![format!("https://127.0.0.1:{port}/meta").parse().unwrap()]);
        t.ca_file = Some(own.pem_file.clone());
        let got = read_with(t).await;
        assert_eq!(got[0].result.as_ref().map(|c| c.to_string()), Ok(SHA.to_owned()), "CA:TRUE {as_ca}");

        // The host name is still checked: the same certificate for another name is refused.
        let routes = TestServer::start().await;
        routes.route("/meta", meta(SHA));
        let other = TestCa::self_signed(&["deploy.example.com"], as_ca);
        let port = other.serve(routes).await;
        let mut t = HttpTarget::new(vec![format!("https://127.0.0.1:{port}/meta").parse().unwrap()]);
        t.ca_file = Some(other.pem_file.clone());
        let (k, m) = failure(&read_with(t).await[0]);
        assert_eq!(k, FailureKind::Unreachable);
        assert!(m.contains("not valid for name") || m.contains("NotValidForName"), "{m}");

        // A server presenting some other certificate is still refused.
        let routes = TestServer::start().await;
        routes.route("/meta", meta(SHA));
        let port = TestCa::self_signed(&["127.0.0.1"], as_ca).serve(routes).await;
        let mut t = HttpTarget::new(vec![format!("https://127.0.0.1:{port}/meta").parse().unwrap()]);
        t.ca_file = Some(own.pem_file.clone());
        let (k, m) = failure(&read_with(t).await[0]);
        assert_eq!(k, FailureKind::Unreachable);
        assert!(m.to_lowercase().contains("certificate"), "{m}");
    }
}

#[tokio::test]
async fn bad_ca_file_is_a_setup_error() {
    let clients = HttpClients::new(4).unwrap();
    let mut t = HttpTarget::new(vec!["https://127.0.0.1:1/".parse().unwrap()]);
    t.ca_file = Some("/nonexistent/ca.pem".into());
    let e = HttpProbe::new(&clients, t).err().unwrap().to_string();
    assert!(e.contains("/nonexistent/ca.pem"), "{e}");
}

#[tokio::test]
async fn in_flight_requests_are_bounded_across_probes() {
    let s = TestServer::start().await;
    s.route("/slow", Behavior::NeverRespond);
    let clients = HttpClients::new(2).unwrap();
    let mut t = HttpTarget::new((0..6).map(|_| s.url("/slow").parse().unwrap()).collect());
    t.timeout = Duration::from_millis(300);
    let probe = HttpProbe::new(&clients, t).unwrap();
    let env = EnvName::new("t").unwrap();
    let expected = CommitId::parse(SHA).unwrap();
    let r =
        probe.observe(&ProbeContext { environment: &env, target: "w", expected: &expected }).await.unwrap();
    assert_eq!(r.len(), 6);
    assert!(r.iter().all(|r| failure(r).1.contains("timed out")));
    assert_eq!(s.hits("/slow"), 6);
    assert_eq!(s.peak_in_progress(), 2, "never more than the limit in flight");
}

fn cx<'a>(env: &'a EnvName, expected: &'a CommitId) -> ProbeContext<'a> {
    ProbeContext { environment: env, target: "web", expected }
}

/// Waits (at most 10 s) until the server counts `n` connections open.
async fn open_becomes(s: &TestServer, n: usize) {
    let start = Instant::now();
    while s.open_connections() != n {
        assert!(start.elapsed() < Duration::from_secs(10), "{} open, not {n}", s.open_connections());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn plain_http_connections_are_kept_between_passes() {
    let s = TestServer::start().await;
    s.route("/a", meta(SHA)).route("/b", meta(SHA));
    let clients = HttpClients::new(64).unwrap().with_keep_alive(KeepAlive::Every);
    let probe =
        |path: &str| HttpProbe::new(&clients, HttpTarget::new(vec![s.url(path).parse().unwrap()])).unwrap();
    let (env, expected) = (EnvName::new("t").unwrap(), CommitId::parse(SHA).unwrap());
    let cx = cx(&env, &expected);

    // The only URL of its origin: one connection, kept from pass to pass.
    let once = probe("/a");
    for _ in 0..5 {
        assert!(once.observe(&cx).await.unwrap()[0].result.is_ok());
    }
    assert_eq!((s.connections(), s.hits("/a")), (1, 5));

    // A server that lets its kept connections go after each answer: every request still
    // succeeds, each on a fresh connection (the closed one is found closed, or the
    // request is sent again once).
    s.route("/a", Behavior::JsonThenClose(format!(r#"{{"sha":"{SHA}"}}"#)));
    for _ in 0..5 {
        let r = once.observe(&cx).await.unwrap();
        assert!(r[0].result.is_ok(), "{:?}", r[0].result);
    }
    assert_eq!(s.hits("/a"), 10, "no request lost, none sent twice to a live server");

    // When no target names the origin any more, its kept connection is closed.
    s.route("/a", meta(SHA));
    assert!(once.observe(&cx).await.unwrap()[0].result.is_ok());
    let second = probe("/b");
    assert!(second.observe(&cx).await.unwrap()[0].result.is_ok());
    open_becomes(&s, 1).await;
    drop(once);
    open_becomes(&s, 1).await;
    drop(second);
    open_becomes(&s, 0).await;
}

/// By default (a one-shot pass) connections are kept only to an origin two URLs name; in
/// `KeepAlive::Every` mode TLS connections are still kept that way only.
async fn kept_only_to_origins_named_twice(s: &TestServer, base: &str, ca: Option<&TestCa>, mode: KeepAlive) {
    s.route("/a", meta(SHA)).route("/b", meta(SHA));
    let clients = HttpClients::new(64).unwrap().with_keep_alive(mode);
    let probe = |path: &str| {
        let mut t = HttpTarget::new(vec![format!("{base}{path}").parse().unwrap()]);
        t.ca_file = ca.map(|c| c.pem_file.clone());
        HttpProbe::new(&clients, t).unwrap()
    };
    let (env, expected) = (EnvName::new("t").unwrap(), CommitId::parse(SHA).unwrap());
    let cx = cx(&env, &expected);

    // The only URL of its origin: each request closes its connection, nothing idles.
    let once = probe("/a");
    for _ in 0..3 {
        assert!(once.observe(&cx).await.unwrap()[0].result.is_ok());
    }
    assert_eq!(s.connections(), 3, "{base}");
    open_becomes(s, 0).await;

    // A second URL names the origin: both now reuse a kept-alive connection.
    let twice = probe("/b");
    for _ in 0..3 {
        assert!(once.observe(&cx).await.unwrap()[0].result.is_ok());
        assert!(twice.observe(&cx).await.unwrap()[0].result.is_ok());
    }
    let opened = s.connections() - 3;
    assert!(opened <= 2, "{base}: 6 sequential requests opened {opened} connections");

    // Probes rebuilt (watch re-planning discovered environments) are not counted twice.
    // The first request may take the connection left idle above, and closes it.
    drop((once, twice));
    let again = probe("/a");
    assert!(again.observe(&cx).await.unwrap()[0].result.is_ok());
    let before = s.connections();
    for _ in 0..2 {
        assert!(again.observe(&cx).await.unwrap()[0].result.is_ok());
    }
    assert_eq!(s.connections() - before, 2, "{base}");
}

#[tokio::test]
async fn a_one_shot_pass_keeps_connections_only_to_origins_named_twice() {
    let s = TestServer::start().await;
    kept_only_to_origins_named_twice(&s, &format!("http://127.0.0.1:{}", s.port), None, KeepAlive::Shared)
        .await;
    let s = TestServer::start().await;
    let ca = TestCa::new();
    let port = ca.serve(s.clone()).await;
    kept_only_to_origins_named_twice(&s, &format!("https://127.0.0.1:{port}"), Some(&ca), KeepAlive::Shared)
        .await;
}

/// A library caller may poll from one runtime after another: a connection kept by a
/// runtime that is gone is not used, and nothing fails for it.
#[test]
fn a_kept_connection_outliving_its_runtime_is_replaced() {
    let s = TestServer::start_background();
    s.route("/a", meta(SHA));
    let clients = HttpClients::new(4).unwrap().with_keep_alive(KeepAlive::Every);
    let probe = HttpProbe::new(&clients, HttpTarget::new(vec![s.url("/a").parse().unwrap()])).unwrap();
    let (env, expected) = (EnvName::new("t").unwrap(), CommitId::parse(SHA).unwrap());
    for _ in 0..3 {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let got = rt.block_on(probe.observe(&cx(&env, &expected))).unwrap();
        assert!(got[0].result.is_ok(), "{:?}", got[0].result);
    }
    assert_eq!(s.hits("/a"), 3);
}

#[tokio::test]
async fn empty_error_answers_and_redirects_keep_their_connection() {
    let s = TestServer::start().await;
    s.route("/gone", Behavior::Status(404)).route("/moved", Behavior::Redirect(302, "/a".into()));
    s.route("/a", meta(SHA));
    let clients = HttpClients::new(64).unwrap().with_keep_alive(KeepAlive::Every);
    let (env, expected) = (EnvName::new("t").unwrap(), CommitId::parse(SHA).unwrap());
    let cx = cx(&env, &expected);
    let gone = HttpProbe::new(&clients, HttpTarget::new(vec![s.url("/gone").parse().unwrap()])).unwrap();
    let moved = HttpProbe::new(&clients, HttpTarget::new(vec![s.url("/moved").parse().unwrap()])).unwrap();
    for _ in 0..3 {
        assert!(failure(&gone.observe(&cx).await.unwrap()[0]).1.contains("HTTP 404"));
        assert!(moved.observe(&cx).await.unwrap()[0].result.is_ok());
    }
    assert_eq!((s.hits("/gone"), s.hits("/moved"), s.hits("/a")), (3, 3, 3));
    assert_eq!(s.connections(), 1, "nine requests, one after the other, over one connection");
}

#[tokio::test]
async fn tls_connections_are_kept_only_to_origins_named_twice_in_every_mode() {
    let s = TestServer::start().await;
    let ca = TestCa::new();
    let port = ca.serve(s.clone()).await;
    kept_only_to_origins_named_twice(&s, &format!("https://127.0.0.1:{port}"), Some(&ca), KeepAlive::Every)
        .await;
}
