//! The `/metrics` registry (prometheus-client, OpenMetrics text), with every metric of
//! SPEC §7 under the `gitstate_` prefix. Entry: [`Metrics`], fed by each pass.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use gitstate_core::{AlarmKind, EventKind, PassOutcome, Status};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Env {
    environment: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EnvStatus {
    environment: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PassResult {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EnvOutcome {
    environment: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EnvAlarm {
    environment: String,
    alarm: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkOutcome {
    sink: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Version {
    version: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// gitstate's own metrics.
pub struct Metrics {
    registry: Registry,
    in_sync: Family<Env, Gauge>,
    suspended: Family<Env, Gauge>,
    instances: Family<EnvStatus, Gauge>,
    passes: Family<PassResult, Counter>,
    pass_duration: Histogram,
    probe_duration: HistogramFamily<Kind>,
    remediations: Family<EnvOutcome, Counter>,
    alarms_open: Family<EnvAlarm, Gauge>,
    lag: HistogramFamily<Env>,
    notifications: Family<SinkOutcome, Counter>,
    webhooks: Family<Outcome, Counter>,
    expected_change: Family<Env, Gauge<f64, AtomicU64>>,
    last_full_pass: Gauge<f64, AtomicU64>,
    leader: Gauge,
    /// When these metrics were made (Unix seconds): the liveness clock before any pass.
    started: f64,
}

fn unix_seconds(t: jiff::Timestamp) -> f64 {
    t.as_millisecond() as f64 / 1000.0
}

fn seconds_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

fn lag_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.25, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("gitstate");
        let m = Self {
            in_sync: Family::default(),
            suspended: Family::default(),
            instances: Family::default(),
            passes: Family::default(),
            pass_duration: seconds_buckets(),
            probe_duration: Family::new_with_constructor(seconds_buckets as fn() -> Histogram),
            remediations: Family::default(),
            alarms_open: Family::default(),
            lag: Family::new_with_constructor(lag_buckets as fn() -> Histogram),
            notifications: Family::default(),
            webhooks: Family::default(),
            expected_change: Family::default(),
            last_full_pass: Gauge::default(),
            leader: Gauge::default(),
            started: unix_seconds(jiff::Timestamp::now()),
            registry: Registry::default(),
        };
        registry.register(
            "environment_in_sync",
            "1 when every instance of the environment runs its expected commit",
            m.in_sync.clone(),
        );
        registry.register(
            "webhook_requests",
            "Push webhook requests by outcome (accepted, ignored, unauthorized, bad_request, not_found)",
            m.webhooks.clone(),
        );
        registry.register(
            "environment_suspended",
            "1 while an operator has the environment suspended (gitstate suspend)",
            m.suspended.clone(),
        );
        registry.register(
            "instances",
            "Instances per environment and status, as of the last pass",
            m.instances.clone(),
        );
        registry.register(
            "reconcile_passes",
            "Reconcile passes by result (in_sync, drift, error)",
            m.passes.clone(),
        );
        registry.register(
            "reconcile_pass_duration_seconds",
            "Duration of reconcile passes",
            m.pass_duration.clone(),
        );
        registry.register(
            "probe_duration_seconds",
            "Time to read one instance, by probe kind",
            m.probe_duration.clone(),
        );
        registry.register(
            "remediations",
            "Remediations run, by environment and outcome (ok, failed)",
            m.remediations.clone(),
        );
        registry.register("alarms_open", "1 while the alarm is open", m.alarms_open.clone());
        registry.register(
            "convergence_lag_seconds",
            "Seconds from an expected commit first seen to every instance in sync",
            m.lag.clone(),
        );
        registry.register(
            "notifications",
            "Alarm notifications by sink and outcome (ok, failed, rejected)",
            m.notifications.clone(),
        );
        registry.register(
            "expected_commit_change_timestamp_seconds",
            "When the environment's expected commit was last seen to change (Unix time)",
            m.expected_change.clone(),
        );
        registry.register(
            "last_pass_completed_timestamp_seconds",
            "When the last full pass completed (Unix time); /healthz fails when it is too old",
            m.last_full_pass.clone(),
        );
        registry.register(
            "leader",
            "1 on the replica that acts (remediates, notifies, writes state); 0 on a standby",
            m.leader.clone(),
        );
        let build = Family::<Version, Gauge>::default();
        build.get_or_create(&Version { version: env!("CARGO_PKG_VERSION").into() }).set(1);
        registry.register("build_info", "The running gitstate's version", build);
        Self { registry, ..m }
    }

    /// Whether this replica leads (SPEC §14; always with the state in files).
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// Records a pass.
    pub fn observe_pass(&self, out: &PassOutcome, took: Duration) {
        self.pass_duration.observe(took.as_secs_f64());
        let result = if out.report.has_errors() || out.journal_error.is_some() {
            "error"
        } else if out.report.in_sync {
            "in_sync"
        } else {
            "drift"
        };
        self.passes.get_or_create(&PassResult { result: result.into() }).inc();
        for env in &out.report.environments {
            let name = env.name.to_string();
            self.in_sync.get_or_create(&Env { environment: name.clone() }).set(i64::from(env.in_sync));
            let mut counts = [0i64; Status::ALL.len()];
            for t in &env.targets {
                for (_, status) in t.statuses() {
                    counts[Status::ALL.iter().position(|s| *s == status).unwrap_or(0)] += 1;
                }
                for i in &t.instances {
                    self.probe_duration
                        .get_or_create(&Kind { kind: t.kind.clone() })
                        .observe(i.elapsed_ms as f64 / 1000.0);
                }
            }
            for (s, n) in Status::ALL.iter().zip(counts) {
                self.instances
                    .get_or_create(&EnvStatus { environment: name.clone(), status: s.as_str().into() })
                    .set(n);
            }
        }
        for (name, state) in &out.states {
            for kind in [AlarmKind::Drift, AlarmKind::Diverged, AlarmKind::Unreachable] {
                let open = i64::from(state.alarm(kind).is_some());
                self.alarms_open
                    .get_or_create(&EnvAlarm { environment: name.to_string(), alarm: kind.as_str().into() })
                    .set(open);
            }
            if let Some(e) = &state.expected {
                self.expected_change
                    .get_or_create(&Env { environment: name.to_string() })
                    .set(e.since.as_millisecond() as f64 / 1000.0);
            }
        }
        for e in &out.events {
            if let EventKind::Converged { lag_s: Some(lag_s), .. } = e.kind {
                self.lag.get_or_create(&Env { environment: e.environment.to_string() }).observe(lag_s);
            }
        }
        for (name, outcome) in &out.remediations {
            self.remediation(name.as_str(), outcome.ok);
        }
        for (sink, delivery) in &out.deliveries {
            let outcome = delivery.as_str();
            self.notifications
                .get_or_create(&SinkOutcome { sink: sink.clone(), outcome: outcome.into() })
                .inc();
        }
    }

    /// A full pass completed at `at`.
    pub fn full_pass_completed(&self, at: jiff::Timestamp) {
        self.last_full_pass.set(unix_seconds(at));
    }

    /// A pass panicked: counted as an error.
    pub fn pass_panicked(&self) {
        self.passes.get_or_create(&PassResult { result: "error".into() }).inc();
    }

    /// Whether no full pass completed within `window` before `now` (counting from start
    /// until the first one completes).
    pub fn stalled(&self, now: jiff::Timestamp, window: Duration) -> bool {
        let last = self.last_full_pass.get();
        let since = if last > 0.0 { last } else { self.started };
        unix_seconds(now) - since > window.as_secs_f64()
    }

    /// Records a remediation's outcome.
    pub fn remediation(&self, environment: &str, ok: bool) {
        let outcome = if ok { "ok" } else { "failed" };
        self.remediations
            .get_or_create(&EnvOutcome { environment: environment.into(), outcome: outcome.into() })
            .inc();
    }

    /// A push webhook request and what became of it.
    pub fn webhook(&self, outcome: &str) {
        self.webhooks.get_or_create(&Outcome { outcome: outcome.into() }).inc();
    }

    /// Whether each environment of a pass is suspended.
    pub fn suspended(&self, specs: &[gitstate_core::EnvironmentSpec]) {
        for s in specs {
            let on = i64::from(s.controls.suspended.is_some());
            self.suspended.get_or_create(&Env { environment: s.name.to_string() }).set(on);
        }
    }

    /// Drops every series of a removed environment.
    pub fn forget(&self, environment: &str) {
        let env = Env { environment: environment.into() };
        self.in_sync.remove(&env);
        self.suspended.remove(&env);
        self.lag.remove(&env);
        self.expected_change.remove(&env);
        for s in Status::ALL {
            self.instances.remove(&EnvStatus { environment: environment.into(), status: s.as_str().into() });
        }
        for outcome in ["ok", "failed"] {
            self.remediations
                .remove(&EnvOutcome { environment: environment.into(), outcome: outcome.into() });
        }
        for kind in [AlarmKind::Drift, AlarmKind::Diverged, AlarmKind::Unreachable] {
            self.alarms_open
                .remove(&EnvAlarm { environment: environment.into(), alarm: kind.as_str().into() });
        }
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut s = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut s, &self.registry);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stalled_when_no_full_pass_completed_within_the_window() {
        let m = Metrics::new();
        let start = jiff::Timestamp::from_millisecond((m.started * 1000.0) as i64).unwrap();
        let at = |s: i64| start + jiff::SignedDuration::from_secs(s);
        let window = crate::watch::server::stall_window(Duration::from_secs(60));
        assert_eq!(window, Duration::from_secs(300), "at least 5 minutes");
        assert!(!m.stalled(at(299), window), "counting from start before the first pass");
        assert!(m.stalled(at(301), window));
        m.full_pass_completed(at(400));
        assert!(!m.stalled(at(650), window));
        assert!(m.stalled(at(701), window));
        assert!(m.encode().contains("gitstate_last_pass_completed_timestamp_seconds "));
        assert_eq!(crate::watch::server::stall_window(Duration::from_secs(600)), Duration::from_secs(1800));
    }

    #[test]
    fn a_removed_environment_leaves_no_series() {
        let m = Metrics::new();
        for env in ["gone", "kept"] {
            m.in_sync.get_or_create(&Env { environment: env.into() }).set(1);
            m.lag.get_or_create(&Env { environment: env.into() }).observe(2.0);
            m.instances.get_or_create(&EnvStatus { environment: env.into(), status: "behind".into() }).set(1);
            m.alarms_open.get_or_create(&EnvAlarm { environment: env.into(), alarm: "drift".into() }).set(1);
            m.remediation(env, false);
        }
        m.forget("gone");
        let text = m.encode();
        assert!(!text.contains("environment=\"gone\""), "{text}");
        assert!(text.contains("environment=\"kept\""));
    }
}
