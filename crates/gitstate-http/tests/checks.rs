//! The `prometheus` soak check (SPEC §15) against a real Prometheus scraping a test
//! server whose metric the test changes: over `max` fails, within passes, no sample
//! follows `no_data`, a query Prometheus refuses fails with its error.

use std::time::Duration;

use gitstate_core::verify::{self, Bound, Check, CheckContext, NoData};
use gitstate_core::{CommitId, EnvName};
use gitstate_http::{HttpClients, PrometheusCheck};
use gitstate_testkit::{Behavior, Prometheus, TestServer};

fn check(prom: &Prometheus, query: &str, max: Option<f64>, no_data: NoData) -> PrometheusCheck {
    let spec = verify::PrometheusCheck {
        url: prom.url(),
        query: query.into(),
        min: None,
        max: max.map(Bound),
        timeout: Duration::from_secs(10),
    };
    PrometheusCheck::new(&HttpClients::new(4).unwrap(), "errors", spec, no_data)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_query_over_its_bound_fails_within_passes_and_no_sample_follows_no_data() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = dir.path().join("metrics.txt");
    std::fs::write(&metrics, "app_error_ratio{env=\"production\"} 0.05\n").unwrap();
    let app = TestServer::start_background();
    app.route("/metrics", Behavior::File(metrics.clone()));
    let target = app.url("/").trim_start_matches("http://").trim_end_matches('/').to_owned();
    let prom = tokio::task::spawn_blocking(move || {
        let p = Prometheus::start(&target);
        p.wait_for_value("app_error_ratio", 0.05, Duration::from_secs(60));
        p
    })
    .await
    .unwrap();

    let env = EnvName::new("production").unwrap();
    let sha = CommitId::parse(&"a".repeat(40)).unwrap();
    let cx = CheckContext::new(&env, &sha);
    let errors = check(&prom, "app_error_ratio{env=\"{environment}\"}", Some(0.01), NoData::Fail);
    assert_eq!(errors.run(&cx).await, Err("a sample is 0.05, above max 0.01".into()));

    std::fs::write(&metrics, "app_error_ratio{env=\"production\"} 0.001\n").unwrap();
    let prom = tokio::task::spawn_blocking(move || {
        prom.wait_for_value("app_error_ratio", 0.001, Duration::from_secs(60));
        prom
    })
    .await
    .unwrap();
    assert_eq!(errors.run(&cx).await, Ok(()));

    let nothing = "app_error_ratio{env=\"nowhere\"}";
    let fail = check(&prom, nothing, Some(0.01), NoData::Fail).run(&cx).await;
    assert_eq!(fail, Err("the query returned no sample (no_data = \"fail\")".into()));
    assert_eq!(check(&prom, nothing, Some(0.01), NoData::Pass).run(&cx).await, Ok(()));

    let refused = check(&prom, "sum(", None, NoData::Fail).run(&cx).await.unwrap_err();
    assert!(refused.starts_with("the query failed: "), "{refused}");
}

/// The `http` soak check: the status must be one of `status`, the body must contain
/// `body_contains`; `{environment}` in the URL is the environment's name.
#[tokio::test(flavor = "multi_thread")]
async fn an_http_check_wants_its_status_and_its_text() {
    let app = TestServer::start_background();
    app.route("/production/healthz", Behavior::Json("{\"status\":\"ok\"}".into()));
    app.route("/production/broken", Behavior::Status(503));
    let env = EnvName::new("production").unwrap();
    let sha = CommitId::parse(&"a".repeat(40)).unwrap();
    let cx = CheckContext::new(&env, &sha);
    let http = |path: &str, contains: Option<&str>| {
        let spec = verify::HttpCheck {
            url: app.url(path),
            status: vec![200],
            body_contains: contains.map(str::to_owned),
            timeout: Duration::from_secs(5),
            headers: Default::default(),
            ca_file: None,
        };
        gitstate_http::HttpCheck::new(&HttpClients::new(4).unwrap(), "health", spec).unwrap()
    };
    assert_eq!(http("/{environment}/healthz", Some("\"ok\"")).run(&cx).await, Ok(()));
    let wrong = http("/{environment}/healthz", Some("degraded")).run(&cx).await.unwrap_err();
    assert!(wrong.ends_with("the body does not contain \"degraded\""), "{wrong}");
    let down = http("/{environment}/broken", None).run(&cx).await.unwrap_err();
    assert!(down.ends_with("answered HTTP 503, not [200]"), "{down}");
}
