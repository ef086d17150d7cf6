//! The webhook remediator and the webhook alarm sink against a real receiver on 127.0.0.1.

use std::time::Duration;

use gitstate_core::{
    AlarmEvent, AlarmKind, AlarmNotification, AlarmSink, AlarmTarget, CommitId, CommitInfo, EnvName,
    RemediationRequest, Remediator, Status,
};
use gitstate_http::{HttpClients, WebhookFormat, WebhookRemediator, WebhookSink};
use gitstate_testkit::{Behavior, TestServer};

fn req() -> RemediationRequest {
    RemediationRequest {
        environment: EnvName::new("production").unwrap(),
        reference: "refs/heads/environments/production".into(),
        expected: CommitId::parse(&"c".repeat(40)).unwrap(),
        attempt: 1,
        drifted: vec![("web".into(), "https://eu.example.com/x".into())],
    }
}

#[tokio::test]
async fn webhook_remediation_posts_json_and_2xx_means_triggered() {
    let s = TestServer::start().await;
    s.route("/deploy", Behavior::Status(202)).route("/broken", Behavior::Status(500));
    let clients = HttpClients::new(4).unwrap();
    let headers = vec![gitstate_http::Header::new("authorization", "Bearer t0ken").unwrap()];
    let r = WebhookRemediator::new(
        &clients,
        s.url("/deploy").parse().unwrap(),
        headers,
        None,
        Duration::from_secs(5),
    );
    let out = r.remediate(&req()).await;
    assert!(out.ok, "{out:?}");
    assert!(out.detail.contains("202"));
    let body: serde_json::Value = serde_json::from_str(&s.bodies("/deploy")[0]).unwrap();
    assert_eq!(body["expected_sha"], "c".repeat(40));
    assert_eq!(body["drifted"][0]["target"], "web");

    let templ = r#"{"ref":"main","inputs":{"sha":"${GITSTATE_EXPECTED_SHA}"}}"#.to_owned();
    let r = WebhookRemediator::new(
        &clients,
        s.url("/broken").parse().unwrap(),
        vec![],
        Some(templ),
        Duration::from_secs(5),
    );
    let out = r.remediate(&req()).await;
    assert!(!out.ok);
    assert!(out.detail.contains("500"), "{}", out.detail);
    assert_eq!(
        s.bodies("/broken")[0],
        format!(r#"{{"ref":"main","inputs":{{"sha":"{}"}}}}"#, "c".repeat(40))
    );

    let dead = format!("http://127.0.0.1:{}/x", gitstate_testkit::free_port());
    let out = WebhookRemediator::new(&clients, dead.parse().unwrap(), vec![], None, Duration::from_secs(5))
        .remediate(&req())
        .await;
    assert!(!out.ok && out.detail.contains("cannot connect"), "{}", out.detail);
}

fn note(event: AlarmEvent) -> AlarmNotification {
    AlarmNotification {
        event,
        alarm: AlarmKind::Drift,
        environment: EnvName::new("production").unwrap(),
        reference: "refs/heads/environments/production".into(),
        expected_sha: CommitId::parse(&"c".repeat(40)).unwrap(),
        since: "2026-11-24T06:00:00Z".parse().unwrap(),
        ended_at: None,
        resolution: None,
        summary: "production does not run cccccccccccc".into(),
        targets: vec![AlarmTarget {
            name: "web".into(),
            status: Status::Behind,
            actual: vec!["abcdef1".into()],
            error: None,
            pending: vec![CommitInfo {
                sha: CommitId::parse(&"d".repeat(40)).unwrap(),
                subject: "Fix <checkout> & pay".into(),
                author: "Ada".into(),
                at: "2026-11-24T05:00:00Z".parse().unwrap(),
            }],
            compare_url: Some("https://github.com/acme/shop/compare/abcdef1...cccc".into()),
        }],
        severity: gitstate_core::Severity::Warning,
        labels: [("team".to_owned(), "shop".to_owned()), ("severity".to_owned(), "spoofed".to_owned())]
            .into(),
        runbook_url: Some("https://wiki.example/gitstate/drift".into()),
        cause: None,
    }
}

#[tokio::test]
async fn webhook_sink_json_slack_and_failures() {
    let s = TestServer::start().await;
    s.route("/json", Behavior::Status(200))
        .route("/slack", Behavior::Status(200))
        .route("/down", Behavior::Status(503));
    let clients = HttpClients::new(4).unwrap();
    let json = WebhookSink::new(&clients, s.url("/json").parse().unwrap(), WebhookFormat::Json, vec![]);
    json.notify(&note(AlarmEvent::AlarmRaised)).await.unwrap();
    json.notify(&note(AlarmEvent::AlarmFiring)).await.unwrap();
    let bodies = s.bodies("/json");
    assert_eq!(bodies.len(), 1, "the per-pass refresh is not sent to webhooks");
    let v: serde_json::Value = serde_json::from_str(&bodies[0]).unwrap();
    assert_eq!(
        (v["event"].as_str(), v["alarm"].as_str(), v["since"].as_str()),
        (Some("alarm_raised"), Some("drift"), Some("2026-11-24T06:00:00Z"))
    );
    assert_eq!(v["targets"][0]["status"], "behind");
    assert_eq!(v["targets"][0]["pending"][0]["subject"], "Fix <checkout> & pay");
    assert_eq!(v["targets"][0]["compare_url"], "https://github.com/acme/shop/compare/abcdef1...cccc");
    // SPEC §17: a stable id — the raise, its repeats and its resolution share it, pinned
    // here so that no build, process or version changes it (FNV-1a of
    // "production\0drift\0<since in ms>", computed apart in Python); the next opening differs.
    assert_eq!(v["id"], "14548f7248d99dc8");
    let mut resolved = note(AlarmEvent::AlarmResolved);
    assert_eq!(resolved.id(), note(AlarmEvent::AlarmRaised).id());
    resolved.since = "2026-11-24T07:00:00Z".parse().unwrap();
    assert_ne!(resolved.id(), note(AlarmEvent::AlarmRaised).id());
    // SPEC §17: the policy's severity, labels and runbook travel with it.
    assert_eq!(v["severity"], "warning");
    assert_eq!(v["labels"]["team"], "shop");
    assert_eq!(v["runbook_url"], "https://wiki.example/gitstate/drift");
    // An alarm raised before causes existed is its environment's own.
    assert_eq!(v["cause"], "environment:production");

    let slack = WebhookSink::new(&clients, s.url("/slack").parse().unwrap(), WebhookFormat::Slack, vec![]);
    slack.notify(&note(AlarmEvent::AlarmRaised)).await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&s.bodies("/slack")[0]).unwrap();
    let text = v["text"].as_str().unwrap();
    assert!(text.contains("[production]") && text.contains("web is behind"), "{text}");
    // The pending commit and the link, escaped as Slack asks: a subject makes no link.
    assert!(text.contains("dddddd Fix &lt;checkout&gt; &amp; pay (Ada)"), "{text}");
    assert!(text.contains("<https://github.com/acme/shop/compare/abcdef1...cccc|compare>"), "{text}");
    assert!(
        text.contains("[warning]") && text.contains("<https://wiki.example/gitstate/drift|runbook>"),
        "{text}"
    );
    assert_eq!(v.as_object().unwrap().len(), 1);

    let down = WebhookSink::new(&clients, s.url("/down").parse().unwrap(), WebhookFormat::Json, vec![]);
    let e = down.notify(&note(AlarmEvent::AlarmRaised)).await.unwrap_err();
    assert!(e.to_string().contains("503"), "{e}");
}

/// SPEC §17 in Alertmanager's terms: `severity` is the policy's, the policy's labels join
/// gitstate's (never replacing `alertname`, `environment` or `severity`), and the runbook
/// is an annotation.
#[test]
fn alertmanager_alerts_carry_severity_labels_and_runbook() {
    let clients = HttpClients::new(1).unwrap();
    let sink =
        gitstate_http::AlertmanagerSink::new(&clients, &"http://127.0.0.1:9093".parse().unwrap(), vec![])
            .unwrap();
    let alert = sink.alert(&note(AlarmEvent::AlarmRaised), "2026-11-24T07:00:00Z".parse().unwrap());
    assert_eq!(alert["labels"]["severity"], "warning");
    assert_eq!(alert["labels"]["team"], "shop");
    assert_eq!(alert["labels"]["alertname"], "GitstateDrift");
    assert_eq!(alert["annotations"]["runbook_url"], "https://wiki.example/gitstate/drift");
    assert_eq!(alert["labels"]["cause"], "environment:production");
    let mut shared = note(AlarmEvent::AlarmRaised);
    shared.cause = Some("origin:10.0.0.7:443".parse().unwrap());
    shared.labels.insert("cause".into(), "spoofed".into());
    let alert = sink.alert(&shared, "2026-11-24T07:00:00Z".parse().unwrap());
    assert_eq!(alert["labels"]["cause"], "origin:10.0.0.7:443");
}

fn cause_note(event: &str) -> gitstate_core::CauseNotification {
    serde_json::from_value(serde_json::json!({
        "event": event, "cause": "origin:10.0.0.7:443", "alarm": "unreachable",
        "since": "2026-11-24T06:00:00Z",
        "ended_at": if event == "cause_resolved" { serde_json::json!("2026-11-24T06:30:00Z") } else { serde_json::Value::Null },
        "members": (0..7).map(|i| format!("shop-{i}")).collect::<Vec<_>>(),
        "joined": [], "left": [], "severity": "critical", "labels": {"team": "shop"},
        "summary": "origin 10.0.0.7:443 is failing: 7 environments affected (shop-0, shop-1, shop-2, shop-3, shop-4 and 2 more)"
    }))
    .unwrap()
}

/// SPEC §17: a cause's webhook body, Slack text and Alertmanager `GitstateOutage`.
#[tokio::test]
async fn a_cause_is_one_message_in_each_sinks_terms() {
    let s = TestServer::start().await;
    s.route("/json", Behavior::Status(200)).route("/slack", Behavior::Status(200));
    let clients = HttpClients::new(4).unwrap();
    let json = WebhookSink::new(&clients, s.url("/json").parse().unwrap(), WebhookFormat::Json, vec![])
        .named("webhook-2");
    assert_eq!(json.name(), "webhook-2");
    json.notify_cause(&cause_note("cause_opened")).await.unwrap();
    json.notify_cause(&cause_note("cause_firing")).await.unwrap();
    let bodies = s.bodies("/json");
    assert_eq!(bodies.len(), 1, "a refresh is not a message");
    let v: serde_json::Value = serde_json::from_str(&bodies[0]).unwrap();
    assert_eq!(v["event"], "cause_opened");
    assert_eq!(v["cause"], "origin:10.0.0.7:443");
    assert_eq!(v["members"].as_array().unwrap().len(), 7);
    assert_eq!((v["severity"].as_str(), v["labels"]["team"].as_str()), (Some("critical"), Some("shop")));
    // FNV-1a of "cause\0origin:10.0.0.7:443\0<since in ms>", computed apart in Python.
    assert_eq!(v["id"], "ee73873322cfcb38");
    assert_eq!(cause_note("cause_resolved").id(), cause_note("cause_opened").id());

    let slack = WebhookSink::new(&clients, s.url("/slack").parse().unwrap(), WebhookFormat::Slack, vec![]);
    slack.notify_cause(&cause_note("cause_opened")).await.unwrap();
    slack.notify_cause(&cause_note("cause_resolved")).await.unwrap();
    let texts: Vec<String> = s
        .bodies("/slack")
        .iter()
        .map(|b| serde_json::from_str::<serde_json::Value>(b).unwrap()["text"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        texts[0].starts_with(":rotating_light: [critical] origin 10.0.0.7:443 is failing"),
        "{}",
        texts[0]
    );
    assert!(
        texts[0].contains("Environments: shop-0, shop-1, shop-2, shop-3, shop-4, shop-5, shop-6"),
        "{}",
        texts[0]
    );
    assert!(texts[1].starts_with(":white_check_mark:"), "{}", texts[1]);

    let am =
        gitstate_http::AlertmanagerSink::new(&clients, &"http://127.0.0.1:9093".parse().unwrap(), vec![])
            .unwrap();
    assert_eq!(am.grouping(), gitstate_core::Grouping::Both);
    let now = "2026-11-24T06:10:00Z".parse().unwrap();
    let outage = am.outage(&cause_note("cause_opened"), now);
    assert_eq!(outage["labels"]["alertname"], "GitstateOutage");
    assert_eq!(outage["labels"]["cause"], "origin:10.0.0.7:443");
    assert_eq!(outage["labels"]["team"], "shop");
    assert_eq!(outage["endsAt"], "2026-11-24T07:10:00Z", "open: now + the ttl");
    let over = am.outage(&cause_note("cause_resolved"), now);
    assert_eq!(over["endsAt"], "2026-11-24T06:30:00Z");
}
