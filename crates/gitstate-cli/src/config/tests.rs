//! The loader on secrets, arbitrary text and arbitrary values, and its corpus.

use std::path::Path;

use super::*;
use proptest::prelude::*;

fn parse_text(text: &str) -> Result<Config, ConfigError> {
    parse(Path::new("/etc/gitstate/gitstate.toml"), text, &|k| Some(format!("PLANTED-{k}")))
}

#[test]
fn debug_of_the_configuration_redacts_every_secret() {
    let cfg = parse_text(
        r#"
[source]
repo = "https://user:${GIT_PASSWORD}@git.example.com/acme/shop.git?private_token=${GIT_TOKEN}"
[[environments]]
name = "production"
  [[environments.targets]]
  name = "web"
  [environments.targets.http]
  urls = ["https://u:${PASS}@eu.example.com/meta?token=${QUERY_TOKEN}"]
  headers = { Authorization = "Bearer ${STATUS_TOKEN}" }
  [environments.remediate.webhook]
  url = "https://api.example.com/deploy?key=${DEPLOY_KEY}"
  headers = { Authorization = "Bearer ${DEPLOY_TOKEN}" }
  body = '{"token":"${BODY_TOKEN}"}'
[alerts.alertmanager]
url = "https://am.example.com?auth=${AM_TOKEN}"
headers = { Authorization = "Bearer ${AM_HEADER}" }
[alerts.webhook]
url = "https://hooks.example.com/services/${HOOK_PATH}?sig=${HOOK_SIG}"
"#,
    )
    .unwrap();
    let shown = format!("{cfg:?}");
    for secret in [
        "GIT_PASSWORD",
        "GIT_TOKEN",
        "PASS",
        "QUERY_TOKEN",
        "STATUS_TOKEN",
        "DEPLOY_KEY",
        "DEPLOY_TOKEN",
        "BODY_TOKEN",
        "AM_TOKEN",
        "AM_HEADER",
        "HOOK_SIG",
    ] {
        assert!(!shown.contains(&format!("PLANTED-{secret}")), "{secret} leaks through Debug: {shown}");
    }
    assert!(shown.contains("token=***") && shown.contains("authorization"), "{shown}");
}

/// What any text gives: a configuration, or an error naming the file and, for what
/// TOML locates, a line and column inside the text.
fn check_any(text: &str) {
    if let Err(e) = parse_text(text) {
        assert_eq!(e.file, "/etc/gitstate/gitstate.toml");
        assert!(!e.message.is_empty());
        if let Some((line, col)) = e.at {
            assert!(line >= 1 && col >= 1 && line <= text.lines().count().max(1) + 1, "{e} in {text:?}");
        }
    }
}

fn any_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "\"[^\"\\\\]{0,12}\"".prop_map(|s| s),
        Just("\"300000000000y\"".to_owned()),
        Just("\"18446744073709551615s\"".to_owned()),
        Just("\"0s\"".to_owned()),
        Just("\"NaN%\"".to_owned()),
        Just("\"${UNSET\"".to_owned()),
        Just("[\"http://h/x?t=1\", \"ftp://x\"]".to_owned()),
        Just("{ A = \"b\" }".to_owned()),
        any::<i64>().prop_map(|n| n.to_string()),
        Just("-0".to_owned()),
        Just("1e400".to_owned()),
        Just("true".to_owned()),
    ]
}

proptest! {
    #[test]
    fn arbitrary_text_is_a_config_or_a_located_error(text in "\\PC{0,200}") {
        check_any(&text);
    }

    #[test]
    fn arbitrary_values_under_real_keys(
        values in prop::collection::vec(any_value(), 18),
        table in prop::sample::select(vec!["policy", "watch", "source", "state"]),
    ) {
        let keys = ["grace", "settle", "max_attempts", "backoff", "backoff_max", "interval", "jitter", "ref_poll", "concurrency", "listen", "timeout", "dir",
            "keep_firing_for", "converging_poll", "events_max_bytes", "events_keep", "mirror", "renotify"];
        let mut text = String::from("[source]\nrepo = \".\"\n");
        if table != "source" {
            text.push_str(&format!("[{table}]\n"));
        }
        for (k, v) in keys.iter().zip(&values) {
            text.push_str(&format!("{k} = {v}\n"));
        }
        text.push_str("[[environments]]\nname = \"e\"\n  [[environments.targets]]\n  name = \"t\"\n  [environments.targets.http]\n");
        text.push_str(&format!("  urls = {}\n  timeout = {}\n  max_bytes = {}\n", values[6], values[0], values[8]));
        check_any(&text);
    }
}

/// Every configuration that ever crashed the loader, replayed.
#[test]
fn the_config_corpus_replays() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../corpus/config");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        check_any(&String::from_utf8_lossy(&bytes));
        n += 1;
    }
    assert!(n >= 4);
}

/// `[policy.verify]` (SPEC §15): read whole; an environment's own `[environments.policy.verify]`
/// replaces it whole, checks included; a check naming two kinds, or none, is an error
/// that points at its file and line.
#[test]
fn verify_tables_replace_each_other_whole_and_bad_checks_are_located() {
    let text = |own: &str| {
        format!(
            r#"
[source]
repo = "."
[policy.verify]
soak = "2m"
failures = 2
on_degraded = "rollback"
[[policy.verify.checks]]
name = "health"
http = {{ url = "https://{{environment}}.example.com/healthz", body_contains = "ok" }}
[[policy.verify.checks]]
name = "errors"
prometheus = {{ url = "http://prometheus:9090", query = "up", max = 0.01 }}
[[environments]]
name = "staging"
  [[environments.targets]]
  name = "web"
  [environments.targets.http]
  urls = ["https://staging.example.com/meta"]
[[environments]]
name = "production"
  [[environments.targets]]
  name = "web"
  [environments.targets.http]
  urls = ["https://production.example.com/meta"]
{own}
"#
        )
    };
    let own = "  [environments.policy.verify]\n  soak = \"30m\"\n  [[environments.policy.verify.checks]]\n  name = \"smoke\"\n  exec = [\"./smoke.sh\"]";
    let cfg = parse_text(&text(own)).unwrap();
    let staging = cfg.environments[0].policy.verify.as_ref().unwrap();
    assert_eq!(staging.soak, std::time::Duration::from_secs(120));
    assert_eq!(staging.failures, 2);
    assert_eq!(staging.on_degraded, gitstate_core::verify::OnDegraded::Rollback);
    assert_eq!(staging.checks.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["health", "errors"]);
    assert_eq!(staging.checks[0].http.as_ref().unwrap().status, [200], "the default status");
    assert_eq!(staging.checks[1].prometheus.as_ref().unwrap().max.unwrap().0, 0.01);
    let production = cfg.environments[1].policy.verify.as_ref().unwrap();
    assert_eq!(production.soak, std::time::Duration::from_secs(1800));
    assert_eq!(production.failures, 3, "the table is replaced whole: defaults, not the outer keys");
    assert_eq!(production.checks.len(), 1);
    assert_eq!(production.checks[0].exec.as_deref(), Some(&["./smoke.sh".to_owned()][..]));

    let two = "  [environments.policy.verify]\n  [[environments.policy.verify.checks]]\n  name = \"both\"\n  exec = [\"./a\"]\n  http = { url = \"http://x\" }";
    let e = parse_text(&text(two)).unwrap_err().to_string();
    assert!(
        e.contains("gitstate.toml:")
            && e.contains("check \"both\": give exactly one of http, prometheus or exec"),
        "{e}"
    );
    let bad = "  [environments.policy.verify]\n  every = \"0s\"";
    let e = parse_text(&text(bad)).unwrap_err().to_string();
    assert!(e.contains("verify.every must be longer than 0s"), "{e}");
}

/// SPEC §17: `severity` and `runbook_url` per tier like any key; `labels` merged key by
/// key (the environment's keys win, the global ones stay); a severity that does not exist
/// is an error at its line.
#[test]
fn severity_labels_and_runbook_per_tier() {
    let text = |own: &str| {
        format!(
            r#"
[source]
repo = "."
[policy]
labels = {{ team = "shop", tier = "prod" }}
runbook_url = "https://wiki.example/gitstate/{{alarm}}"
[[environments]]
name = "staging"
  [environments.policy]
  {own}
  [[environments.targets]]
  name = "web"
  [environments.targets.http]
  urls = ["https://staging.example.com/meta"]
[[environments]]
name = "production"
  [[environments.targets]]
  name = "web"
  [environments.targets.http]
  urls = ["https://production.example.com/meta"]
"#
        )
    };
    let cfg = parse_text(&text("severity = \"warning\"\n  labels = { tier = \"staging\", owner = \"ada\" }"))
        .unwrap();
    let (staging, production) = (&cfg.environments[0].policy, &cfg.environments[1].policy);
    assert_eq!(staging.severity, gitstate_core::Severity::Warning);
    let labels = |p: &gitstate_core::Policy| {
        p.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
    };
    assert_eq!(labels(staging), "owner=ada,team=shop,tier=staging");
    assert_eq!(production.severity, gitstate_core::Severity::Critical, "the default");
    assert_eq!(labels(production), "team=shop,tier=prod");
    assert_eq!(production.runbook_url.as_deref(), Some("https://wiki.example/gitstate/{alarm}"));

    let e = parse_text(&text("severity = \"page-everyone\"")).unwrap_err().to_string();
    assert!(e.contains("gitstate.toml:") && e.contains("severity"), "{e}");
}

/// SPEC §17: `[[alerts.webhook]]` several times (each its own sink name), the single
/// `[alerts.webhook]` as before, `group_wait`, a `[[discover]]` tier's severity and
/// labels; two sinks of one name are an error at the line.
#[test]
fn several_webhooks_group_wait_and_a_discovered_tier() {
    let text = |alerts: &str| {
        format!(
            r#"
[source]
repo = "."
[policy]
labels = {{ team = "shop" }}
[[discover]]
ref_prefix = "refs/heads/previews/"
  [discover.policy]
  severity = "info"
  labels = {{ tier = "preview" }}
  [[discover.targets]]
  name = "web"
  [discover.targets.http]
  urls = ["https://{{environment}}.example.com/meta"]
{alerts}
"#
        )
    };
    let cfg = parse_text(&text(
        "[alerts]\ngroup_wait = \"10s\"\n[[alerts.webhook]]\nurl = \"https://hooks.example/a\"\n[[alerts.webhook]]\nurl = \"https://hooks.slack.example/b\"\nformat = \"slack\"\n[[alerts.webhook]]\nname = \"oncall\"\nurl = \"https://hooks.example/c\"",
    ))
    .unwrap();
    let names: Vec<&str> = cfg.alerts.webhooks.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, ["webhook", "webhook-2", "oncall"]);
    assert_eq!(cfg.alerts.webhooks[1].format, gitstate_http::WebhookFormat::Slack);
    assert_eq!(cfg.alerts.group_wait, std::time::Duration::from_secs(10));
    let tier = &cfg.discover[0].policy;
    assert_eq!(tier.severity, gitstate_core::Severity::Info);
    assert_eq!(
        tier.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
        ["team=shop", "tier=preview"]
    );

    let one = parse_text(&text("[alerts.webhook]\nurl = \"https://hooks.example/a\"")).unwrap();
    assert_eq!(one.alerts.webhooks.len(), 1);
    assert_eq!(one.alerts.group_wait, std::time::Duration::ZERO, "the default");

    let e = parse_text(&text(
        "[[alerts.webhook]]\nname = \"x\"\nurl = \"https://hooks.example/a\"\n[[alerts.webhook]]\nname = \"x\"\nurl = \"https://hooks.example/b\"",
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("gitstate.toml:") && e.contains("two sinks named \"x\""), "{e}");
    let e = parse_text(&text("[[alerts.webhook]]\nurl = \"https://hooks.example/a\"\nsurprise = 1"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("surprise"), "{e}");
}
