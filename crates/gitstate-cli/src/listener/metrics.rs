//! The `/metrics` registry (prometheus-client, OpenMetrics text), with every metric of
//! SPEC §7 under the `gitstate_` prefix. Entry: [`Metrics`], fed by each pass.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use gitstate_core::{AlarmKind, EnvName, EventKind, PassOutcome, Status};
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
struct PassResult {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EnvResult {
    environment: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EnvCheck {
    environment: String,
    check: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PollResult {
    result: String,
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
struct SinkOutcome {
    sink: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Version {
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReplicaLabel {
    replica: String,
}

/// The gauges every environment has, kept as one compact row per environment and turned
/// into series only when `/metrics` is scraped. With label-set families each environment
/// held 15 label sets (30 strings) and a pass hashed and allocated them all again: at
/// 10,000 environments some 25 MB and 150,000 lookups a pass. A field is `None` until
/// first set: the series exists from then on, as with a family.
#[derive(Debug, Default)]
struct EnvGauges(RwLock<BTreeMap<EnvName, EnvRow>>);

#[derive(Debug, Default)]
struct EnvRow {
    in_sync: Option<bool>,
    suspended: Option<bool>,
    instances: Option<[u32; Status::ALL.len()]>,
    alarms: Option<[bool; 7]>,
    expected_since: Option<f64>,
    /// When its last pass observed it (Unix time, SPEC §19's freshness).
    observed: Option<f64>,
    /// `environment_info`'s labels after `environment`, written out
    /// (`severity="critical",team="shop"`).
    /// Shared by the rows of one policy (a discover block's thousands).
    info: Option<(u64, Arc<str>)>,
}

impl EnvGauges {
    const ALARMS: [AlarmKind; 7] = [
        AlarmKind::Drift,
        AlarmKind::Diverged,
        AlarmKind::Unreachable,
        AlarmKind::Degraded,
        AlarmKind::Vetoed,
        AlarmKind::Untrusted,
        AlarmKind::UnsignedRunning,
    ];

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<EnvName, EnvRow>> {
        self.0.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// Makes the rows `names` lack, many at once in bulk: inserted one after another in
/// order, a B-tree's nodes stay half full (at 50,000 environments, megabytes: SPEC §19).
fn add_rows<'a>(envs: &mut BTreeMap<EnvName, EnvRow>, names: impl Iterator<Item = &'a EnvName>) {
    let fresh: Vec<(EnvName, EnvRow)> =
        names.filter(|n| !envs.contains_key(n.as_str())).map(|n| (n.clone(), EnvRow::default())).collect();
    if !fresh.is_empty() {
        gitstate_runtime::store::merge_new(envs, fresh);
    }
}

/// The row of `name`, made on first use (the name is copied once, not every pass).
fn row<'a>(envs: &'a mut BTreeMap<EnvName, EnvRow>, name: &EnvName) -> &'a mut EnvRow {
    if !envs.contains_key(name.as_str()) {
        envs.insert(name.clone(), EnvRow::default());
    }
    envs.get_mut(name.as_str()).expect("just inserted")
}

/// The per-environment families, in exposition order: name (after the `gitstate_`
/// prefix) and help.
const ENV_FAMILIES: [(&str, &str); 7] = [
    ("environment_in_sync", "1 when every instance of the environment runs its expected commit"),
    ("environment_suspended", "1 while an operator has the environment suspended (gitstate suspend)"),
    ("instances", "Instances per environment and status, as of the last pass"),
    ("alarms_open", "1 while the alarm is open"),
    (
        "expected_commit_change_timestamp_seconds",
        "When the environment's expected commit was last seen to change (Unix time)",
    ),
    (
        "environment_observed_timestamp_seconds",
        "When a pass last observed the environment (Unix time; SPEC §19: above 10,000 environments, environment_observed_age_seconds instead)",
    ),
    (
        "environment_info",
        "Always 1: the environment's alarm severity and policy labels, to join in PromQL (SPEC §17)",
    ),
];

/// The index of `environment_observed_timestamp_seconds` in [`ENV_FAMILIES`].
const OBSERVED: usize = 5;

/// Up to this many environments, freshness is a series per environment (SPEC §19).
const FRESHNESS_PER_ENVIRONMENT: usize = 10_000;

/// `environment_observed_age_seconds`: how long ago each environment was last observed,
/// as a histogram (the per-environment series would be too many).
fn observed_ages(envs: &BTreeMap<EnvName, EnvRow>, out: &mut String) {
    use std::fmt::Write as _;
    const BOUNDS: [f64; 10] = [1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0];
    let now = unix_seconds(jiff::Timestamp::now());
    let mut counts = [0u64; BOUNDS.len()];
    let (mut total, mut sum) = (0u64, 0.0f64);
    for age in envs.values().filter_map(|r| r.observed).map(|t| (now - t).max(0.0)) {
        total += 1;
        sum += age;
        for (c, b) in counts.iter_mut().zip(BOUNDS) {
            *c += u64::from(age <= b);
        }
    }
    let _ = write!(
        out,
        "# HELP gitstate_environment_observed_age_seconds Seconds since a pass last observed each environment (SPEC §19)\n# TYPE gitstate_environment_observed_age_seconds histogram\n"
    );
    for (c, b) in counts.iter().zip(BOUNDS) {
        let _ = writeln!(out, "gitstate_environment_observed_age_seconds_bucket{{le=\"{b:?}\"}} {c}");
    }
    let _ = writeln!(out, "gitstate_environment_observed_age_seconds_bucket{{le=\"+Inf\"}} {total}");
    let _ = writeln!(out, "gitstate_environment_observed_age_seconds_sum {sum:?}");
    let _ = writeln!(out, "gitstate_environment_observed_age_seconds_count {total}");
}

/// How many environments one chunk of a streamed exposition holds (some 40 KB of text).
const ENVS_PER_CHUNK: usize = 500;

/// Where a streamed exposition of [`EnvGauges`] is.
#[derive(Debug, Default)]
struct Cursor {
    /// Index into [`ENV_FAMILIES`].
    family: usize,
    /// The last environment written of this family (`None`: its header is next).
    after: Option<EnvName>,
}

impl EnvGauges {
    /// Appends the next chunk of the per-environment families to `out`; false once every
    /// family is written. Names are validated (`[A-Za-z0-9._-]`): no label escaping.
    fn write_chunk(&self, cursor: &mut Cursor, out: &mut String) -> bool {
        use std::fmt::Write as _;
        use std::ops::Bound;
        let envs = self.0.read().unwrap_or_else(|p| p.into_inner());
        while let Some((family, help)) = ENV_FAMILIES.get(cursor.family) {
            // SPEC §19: past 10,000 environments, freshness is a histogram of ages, not a
            // series each.
            if cursor.family == OBSERVED && envs.len() > FRESHNESS_PER_ENVIRONMENT {
                observed_ages(&envs, out);
                cursor.family += 1;
                cursor.after = None;
                continue;
            }
            let rows = match &cursor.after {
                None => {
                    let _ = write!(out, "# HELP gitstate_{family} {help}\n# TYPE gitstate_{family} gauge\n");
                    envs.range::<str, _>((Bound::Unbounded, Bound::Unbounded))
                }
                Some(last) => envs.range::<str, _>((Bound::Excluded(last.as_str()), Bound::Unbounded)),
            };
            for (written, (name, row)) in rows.enumerate() {
                if written == ENVS_PER_CHUNK {
                    return true;
                }
                let series = |out: &mut String,
                              labels: std::fmt::Arguments<'_>,
                              value: &dyn std::fmt::Debug| {
                    let _ = writeln!(out, "gitstate_{family}{{environment=\"{name}\"{labels}}} {value:?}");
                };
                match cursor.family {
                    0 => row.in_sync.into_iter().for_each(|v| series(out, format_args!(""), &i64::from(v))),
                    1 => row.suspended.into_iter().for_each(|v| series(out, format_args!(""), &i64::from(v))),
                    2 => {
                        for (status, n) in Status::ALL.iter().zip(row.instances.iter().flatten()) {
                            series(out, format_args!(",status=\"{}\"", status.as_str()), n);
                        }
                    }
                    3 => {
                        for (kind, open) in Self::ALARMS.iter().zip(row.alarms.iter().flatten()) {
                            series(out, format_args!(",alarm=\"{}\"", kind.as_str()), &i64::from(*open));
                        }
                    }
                    4 => row.expected_since.into_iter().for_each(|v| series(out, format_args!(""), &v)),
                    OBSERVED => row.observed.into_iter().for_each(|v| series(out, format_args!(""), &v)),
                    _ => row.info.iter().for_each(|(_, l)| series(out, format_args!(",{l}"), &1)),
                }
                cursor.after = Some(name.clone());
            }
            cursor.family += 1;
            cursor.after = None;
        }
        false
    }
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// gitstate's own metrics.
pub struct Metrics {
    registry: Registry,
    /// `environment_in_sync`, `environment_suspended`, `instances`, `alarms_open` and
    /// `expected_commit_change_timestamp_seconds`: one row per environment.
    envs: Arc<EnvGauges>,
    passes: Family<PassResult, Counter>,
    pass_duration: Histogram,
    probe_duration: HistogramFamily<Kind>,
    remediations: Family<EnvOutcome, Counter>,
    /// SPEC §18: untrusted expected commits, counted as their alarms are raised.
    untrusted: Family<Env, Counter>,
    lag: HistogramFamily<Env>,
    notifications: Family<SinkOutcome, Counter>,
    webhooks: Family<Outcome, Counter>,
    ref_polls: Family<PollResult, Counter>,
    verifications: Family<EnvResult, Counter>,
    check_failures: Family<EnvCheck, Counter>,
    dora_deployments: Family<Env, Counter>,
    dora_failed: Family<Env, Counter>,
    dora_lead_time: Histogram,
    dora_restore: Histogram,
    /// The `check_failures` series made, so that a removed environment's go too.
    checks_seen: std::sync::Mutex<std::collections::BTreeSet<(String, String)>>,
    /// `[watch.tls]`'s certificates, for `gitstate_tls_reload_failures_total`.
    tls: std::sync::OnceLock<Arc<crate::listener::tls::Certs>>,
    last_full_pass: Gauge<f64, AtomicU64>,
    full_passes: Counter,
    tls_reload_failures: Counter,
    leader: Gauge,
    shard_slots: Family<ReplicaLabel, Gauge>,
    /// Set once a full pass has completed (`/readyz`).
    ready: std::sync::atomic::AtomicBool,
    /// When these metrics were made (Unix seconds): the liveness clock before any pass.
    started: f64,
}

/// What `environment_info` depends on, hashed without allocating (FNV-1a).
fn info_key(policy: &gitstate_core::Policy) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes.iter().chain(&[0xff]) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    eat(policy.severity.as_str().as_bytes());
    for (k, v) in &policy.labels {
        eat(k.as_bytes());
        eat(v.as_bytes());
    }
    h
}

/// `severity="…"` then each policy label as `key="value"`: keys made valid label names
/// (any other character becomes `_`), `environment` and `severity` never overridden,
/// values escaped as OpenMetrics asks.
fn info_labels(policy: &gitstate_core::Policy) -> String {
    let mut out = format!("severity=\"{}\"", policy.severity.as_str());
    let mut seen = std::collections::BTreeSet::new();
    for (k, v) in &policy.labels {
        let mut key: String =
            k.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
        if key.is_empty() || key.starts_with(|c: char| c.is_ascii_digit()) || key.starts_with("__") {
            key.insert_str(0, "label_");
        }
        if key == "environment" || key == "severity" || !seen.insert(key.clone()) {
            continue;
        }
        let value = v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
        out.push_str(&format!(",{key}=\"{value}\""));
    }
    out
}

fn unix_seconds(t: jiff::Timestamp) -> f64 {
    t.as_millisecond() as f64 / 1000.0
}

fn seconds_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

/// A minute to about a year, ×4 a bucket: lead times run from minutes to months.
fn lead_time_buckets() -> Histogram {
    Histogram::new(exponential_buckets(60.0, 4.0, 10))
}

/// A second to about six weeks, ×4 a bucket.
fn restore_buckets() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 4.0, 13))
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
            envs: Arc::default(),
            passes: Family::default(),
            pass_duration: seconds_buckets(),
            probe_duration: Family::new_with_constructor(seconds_buckets as fn() -> Histogram),
            remediations: Family::default(),
            untrusted: Family::default(),
            lag: Family::new_with_constructor(lag_buckets as fn() -> Histogram),
            notifications: Family::default(),
            webhooks: Family::default(),
            ref_polls: Family::default(),
            verifications: Family::default(),
            check_failures: Family::default(),
            dora_deployments: Family::default(),
            dora_failed: Family::default(),
            dora_lead_time: lead_time_buckets(),
            dora_restore: restore_buckets(),
            checks_seen: Default::default(),
            tls: Default::default(),
            last_full_pass: Gauge::default(),
            full_passes: Counter::default(),
            tls_reload_failures: Counter::default(),
            leader: Gauge::default(),
            shard_slots: Family::default(),
            ready: std::sync::atomic::AtomicBool::new(false),
            started: unix_seconds(jiff::Timestamp::now()),
            registry: Registry::default(),
        };
        registry.register(
            "webhook_requests",
            "Push webhook requests by outcome (accepted, ignored, unauthorized, bad_request, not_found)",
            m.webhooks.clone(),
        );
        registry.register(
            "ref_polls",
            "Ref polls by result (changed: some environment passed at once; unchanged)",
            m.ref_polls.clone(),
        );
        registry.register(
            "verification",
            "Soaks after a deploy that ended, by environment and result (verified, degraded)",
            m.verifications.clone(),
        );
        registry.register(
            "check_failures",
            "Failed runs of soak checks, by environment and check",
            m.check_failures.clone(),
        );
        registry.register(
            "dora_deployments",
            "Deployments (convergences on a new expected commit), by environment (SPEC §16)",
            m.dora_deployments.clone(),
        );
        registry.register(
            "dora_failed_deployments",
            "Deployments followed by degraded, a rollback, a hotfix or a drift alarm, by environment",
            m.dora_failed.clone(),
        );
        registry.register(
            "dora_lead_time_seconds",
            "Committer time to deployed, per commit a deployment brought, over the fleet",
            m.dora_lead_time.clone(),
        );
        registry.register(
            "dora_restore_seconds",
            "A failed deployment's failure to the next in-sync or verified convergence, over the fleet",
            m.dora_restore.clone(),
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
        registry.register(
            "untrusted_commits",
            "Expected commits not signed by an allowed key (SPEC §18), by environment, as their untrusted alarm is raised",
            m.untrusted.clone(),
        );
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
            "last_pass_completed_timestamp_seconds",
            "When the last full pass completed (Unix time); /healthz fails when it is too old",
            m.last_full_pass.clone(),
        );
        registry.register(
            "full_passes",
            "Full passes completed (each over every environment, taken 2,048 at a time: a \
             pass of reconcile_pass_duration_seconds is one such part, or a pass of a few)",
            m.full_passes.clone(),
        );
        registry.register(
            "tls_reload_failures",
            "[watch.tls] certificate or key files that changed but did not load (the previous pair is still served)",
            m.tls_reload_failures.clone(),
        );
        registry.register(
            "leader",
            "1 on the replica that acts (remediates, notifies, writes state); 0 on a standby",
            m.leader.clone(),
        );
        registry.register(
            "shard_slots",
            "Slots (of 1,024) each live replica of a sharded cluster holds, as this replica last read them",
            m.shard_slots.clone(),
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
        for e in &out.events {
            if let gitstate_core::EventKind::AlarmRaised {
                alarm: gitstate_core::AlarmKind::Untrusted, ..
            } = &e.kind
            {
                self.untrusted.get_or_create(&Env { environment: e.environment.to_string() }).inc();
            }
        }
        let mut probe_duration: Vec<(&str, Histogram)> = Vec::new();
        let mut envs = self.envs.write();
        add_rows(&mut envs, out.report.environments.iter().map(|e| &e.name));
        for env in &out.report.environments {
            let mut counts = [0u32; Status::ALL.len()];
            for t in &env.targets {
                for (_, status) in t.statuses() {
                    counts[Status::ALL.iter().position(|s| *s == status).unwrap_or(0)] += 1;
                }
                let histogram = match probe_duration.iter().find(|(k, _)| *k == t.kind) {
                    Some((_, h)) => h.clone(),
                    None => {
                        let h = self.probe_duration.get_or_create(&Kind { kind: t.kind.clone() }).clone();
                        probe_duration.push((&t.kind, h.clone()));
                        h
                    }
                };
                for i in &t.instances {
                    histogram.observe(i.elapsed_ms as f64 / 1000.0);
                }
            }
            let row = row(&mut envs, &env.name);
            row.in_sync = Some(env.in_sync);
            row.instances = Some(counts);
            row.observed = Some(unix_seconds(out.report.checked_at));
        }
        for (name, state) in &out.states {
            let row = row(&mut envs, name);
            row.alarms = Some(EnvGauges::ALARMS.map(|kind| state.alarm(kind).is_some()));
            if let Some(e) = &state.expected {
                row.expected_since = Some(e.since.as_millisecond() as f64 / 1000.0);
            }
        }
        drop(envs);
        for e in &out.events {
            let environment = || e.environment.to_string();
            match &e.kind {
                EventKind::Converged { lag_s: Some(lag_s), .. } => {
                    self.lag.get_or_create(&Env { environment: environment() }).observe(*lag_s);
                }
                EventKind::Verified { .. } => {
                    let result = EnvResult { environment: environment(), result: "verified".into() };
                    self.verifications.get_or_create(&result).inc();
                }
                EventKind::Degraded { .. } => {
                    let result = EnvResult { environment: environment(), result: "degraded".into() };
                    self.verifications.get_or_create(&result).inc();
                }
                EventKind::CheckFailed { check, .. } => {
                    let failed = EnvCheck { environment: environment(), check: check.clone() };
                    self.check_failures.get_or_create(&failed).inc();
                    let mut seen = self.checks_seen.lock().unwrap_or_else(|p| p.into_inner());
                    seen.insert((failed.environment, failed.check));
                }
                _ => {}
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

    /// A full pass completed at `at`: `/readyz` answers ready from now on.
    pub fn full_pass_completed(&self, at: jiff::Timestamp) {
        self.last_full_pass.set(unix_seconds(at));
        self.full_passes.inc();
        self.ready.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether a full pass has completed (`/readyz`).
    pub fn ready(&self) -> bool {
        self.ready.load(std::sync::atomic::Ordering::SeqCst)
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

    /// Whether each environment of a pass is suspended, and its `environment_info` labels.
    pub fn suspended(&self, specs: &[gitstate_core::EnvironmentSpec]) {
        let mut envs = self.envs.write();
        add_rows(&mut envs, specs.iter().map(|s| &s.name));
        let mut made: Vec<(u64, Arc<str>)> = Vec::new();
        for s in specs {
            let r = row(&mut envs, &s.name);
            r.suspended = Some(s.controls.suspended.is_some());
            // Written out only when the policy's severity or labels change, not every pass.
            let key = info_key(&s.policy);
            if r.info.as_ref().is_none_or(|(k, _)| *k != key) {
                let labels = match made.iter().find(|(k, _)| *k == key) {
                    Some((_, l)) => l.clone(),
                    None => {
                        let l: Arc<str> = info_labels(&s.policy).into();
                        made.push((key, l.clone()));
                        l
                    }
                };
                r.info = Some((key, labels));
            }
        }
    }

    /// Counts the certificate reloads `certs` refuses (SPEC §20).
    pub fn tls_reloads(&self, certs: Arc<crate::listener::tls::Certs>) {
        let _ = self.tls.set(certs);
    }

    /// Drops every series of a removed environment.
    pub fn forget(&self, environment: &str) {
        self.envs.write().remove(environment);
        self.lag.remove(&Env { environment: environment.into() });
        self.dora_deployments.remove(&Env { environment: environment.into() });
        self.dora_failed.remove(&Env { environment: environment.into() });
        self.untrusted.remove(&Env { environment: environment.into() });
        for outcome in ["ok", "failed"] {
            self.remediations
                .remove(&EnvOutcome { environment: environment.into(), outcome: outcome.into() });
        }
        for result in ["verified", "degraded"] {
            self.verifications.remove(&EnvResult { environment: environment.into(), result: result.into() });
        }
        let mut seen = self.checks_seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.retain(|(env, check)| {
            let gone = env == environment;
            if gone {
                self.check_failures.remove(&EnvCheck { environment: env.clone(), check: check.clone() });
            }
            !gone
        });
    }

    /// The OpenMetrics text exposition, whole (what a scrape of [`Self::exposition`] reads).
    #[cfg(test)]
    fn encode(&self) -> String {
        use futures::StreamExt as _;
        futures::executor::block_on(self.exposition().collect::<Vec<String>>()).concat()
    }

    /// The OpenMetrics text exposition in chunks of a few hundred environments, each
    /// written when the response wants it: at 10,000 environments the whole text is some
    /// 12 MB (15 series each), which a scrape no longer holds in memory at once.
    pub fn exposition(&self) -> futures::stream::BoxStream<'static, String> {
        use futures::StreamExt as _;
        if let Some(certs) = self.tls.get() {
            let seen = self.tls_reload_failures.get();
            self.tls_reload_failures.inc_by(certs.failures().saturating_sub(seen));
        }
        let mut head = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut head, &self.registry);
        let head = head.strip_suffix("# EOF\n").map(str::to_owned).unwrap_or(head);
        let envs = self.envs.clone();
        let rows = futures::stream::unfold(Some(Cursor::default()), move |cursor| {
            let envs = envs.clone();
            async move {
                let mut cursor = cursor?;
                let mut chunk = String::with_capacity(64 * 1024);
                let more = envs.write_chunk(&mut cursor, &mut chunk);
                Some((chunk, more.then_some(cursor)))
            }
        });
        futures::stream::once(async move { head })
            .chain(rows)
            .chain(futures::stream::once(async { "# EOF\n".to_owned() }))
            .boxed()
    }
}

/// The loop tells the metrics what it does; they decide nothing.
impl gitstate_runtime::Observer for Metrics {
    fn pass(&self, specs: &[gitstate_core::EnvironmentSpec], outcome: &PassOutcome, took: Duration) {
        self.observe_pass(outcome, took);
        self.suspended(specs);
    }

    fn full_pass(&self, at: jiff::Timestamp) {
        self.full_pass_completed(at);
    }

    fn pass_panicked(&self) {
        Metrics::pass_panicked(self);
    }

    fn remediation(&self, env: &EnvName, ok: bool) {
        Metrics::remediation(self, env.as_str(), ok);
    }

    fn removed(&self, env: &EnvName) {
        self.forget(env.as_str());
    }

    fn leader(&self, leading: bool) {
        self.set_leader(leading);
    }

    fn shard(&self, shard: &gitstate_runtime::Shard) {
        // Replicas gone drop out: the family is rebuilt from the round's counts.
        self.shard_slots.clear();
        for (replica, n) in &shard.replicas {
            self.shard_slots.get_or_create(&ReplicaLabel { replica: replica.clone() }).set(*n);
        }
    }

    fn ref_polled(&self, changed: &[EnvName]) {
        let result = if changed.is_empty() { "unchanged" } else { "changed" };
        self.ref_polls.get_or_create(&PollResult { result: result.into() }).inc();
    }

    fn dora(&self, observed: &[gitstate_runtime::dora::Observed]) {
        use gitstate_runtime::dora::Observed;
        for o in observed {
            match o {
                Observed::Deployed { environment, lead_times_s } => {
                    self.dora_deployments.get_or_create(&Env { environment: environment.to_string() }).inc();
                    for t in lead_times_s {
                        self.dora_lead_time.observe(*t);
                    }
                }
                Observed::Failed { environment } => {
                    self.dora_failed.get_or_create(&Env { environment: environment.to_string() }).inc();
                }
                Observed::Restored { seconds, .. } => self.dora_restore.observe(*seconds),
                _ => {}
            }
        }
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
        let window = crate::listener::server::stall_window(Duration::from_secs(60));
        assert_eq!(window, Duration::from_secs(300), "at least 5 minutes");
        assert!(!m.stalled(at(299), window), "counting from start before the first pass");
        assert!(m.stalled(at(301), window));
        m.full_pass_completed(at(400));
        assert!(!m.stalled(at(650), window));
        assert!(m.stalled(at(701), window));
        assert!(m.encode().contains("gitstate_last_pass_completed_timestamp_seconds "));
        assert_eq!(
            crate::listener::server::stall_window(Duration::from_secs(600)),
            Duration::from_secs(1800)
        );
    }

    /// More environments than a chunk holds, several times over: the streamed text is
    /// valid OpenMetrics as promtool reads it, every family is written once and whole
    /// (its series together, under its header), and each has one series per environment
    /// and label value set.
    /// `promtool check metrics` on an exposition: its exit code and what it said.
    fn promtool_check(text: &str) -> (Option<i32>, String) {
        let mut promtool = std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("promtool is not installed: run scripts/test, or apt-get install prometheus");
        std::io::Write::write_all(&mut promtool.stdin.take().unwrap(), text.as_bytes()).unwrap();
        let out = promtool.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        )
    }

    /// SPEC §19: past 10,000 environments, freshness is one histogram of ages (every
    /// observed environment counted once, in the right buckets), not a series each.
    #[test]
    fn past_ten_thousand_environments_freshness_is_a_histogram() {
        let m = Metrics::new();
        let now = unix_seconds(jiff::Timestamp::now());
        let n = FRESHNESS_PER_ENVIRONMENT + 1;
        {
            let mut envs = m.envs.write();
            for i in 0..n {
                let r = row(&mut envs, &EnvName::new(&format!("env-{i:05}")).unwrap());
                // One in ten last seen two hours ago, the rest just now.
                r.observed = Some(if i % 10 == 0 { now - 7200.0 } else { now });
            }
        }
        let text = m.encode();
        assert!(
            !text.contains("gitstate_environment_observed_timestamp_seconds{"),
            "no series per environment"
        );
        let stale = n.div_ceil(10);
        assert!(
            text.contains(&format!("gitstate_environment_observed_age_seconds_count {n}\n")),
            "{text:.2000}"
        );
        assert!(text.contains(&format!(
            "gitstate_environment_observed_age_seconds_bucket{{le=\"3600.0\"}} {}\n",
            n - stale
        )));
        assert!(
            text.contains(&format!("gitstate_environment_observed_age_seconds_bucket{{le=\"+Inf\"}} {n}\n"))
        );
        let (code, said) = promtool_check(&text);
        assert_ne!(code, Some(1), "promtool cannot parse it: {said}");
        assert!(!said.contains("observed_age"), "promtool on the histogram: {said}");
    }

    #[test]
    fn a_streamed_exposition_is_whole_and_valid() {
        let m = Metrics::new();
        let n = ENVS_PER_CHUNK * 3 + 17;
        // Labels as an operator may write them: made valid names, escaped, never over
        // `environment` or `severity`, two keys that read alike written once.
        let policy = gitstate_core::Policy {
            severity: gitstate_core::Severity::Warning,
            labels: [
                ("team-name", "shop \"eu\""),
                ("team_name", "twice"),
                ("9x", "a\\b"),
                ("environment", "spoof"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into(),
            ..gitstate_core::Policy::default()
        };
        {
            let mut envs = m.envs.write();
            for i in 0..n {
                let r = row(&mut envs, &EnvName::new(&format!("env-{i:05}")).unwrap());
                (r.in_sync, r.suspended, r.instances) =
                    (Some(i % 2 == 0), Some(false), Some([1; Status::ALL.len()]));
                r.alarms = Some([i % 3 == 0, false, false, false, false, false, false]);
                // Only some have seen their expected commit change.
                r.expected_since = (i % 5 == 0).then_some(1_700_000_000.5);
                // All but a few were observed by a pass.
                r.observed = (i % 100 != 1).then_some(1_700_000_001.25);
                r.info = Some((info_key(&policy), info_labels(&policy).into()));
            }
        }
        m.passes.get_or_create(&PassResult { result: "in_sync".into() }).inc();
        let text = m.encode();
        assert!(text.ends_with("# EOF\n") && text.matches("# EOF").count() == 1, "one EOF, last");
        let mut families: Vec<(String, usize)> = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap().to_owned();
                assert!(!families.iter().any(|(f, _)| *f == name), "{name} written twice");
                families.push((name, 0));
            } else if !line.starts_with('#') {
                let (current, count) = families.last_mut().expect("a series before any header");
                assert!(line.starts_with(current.as_str()), "{line} under {current}: a family split");
                *count += 1;
            }
        }
        let count = |f: &str| families.iter().find(|(name, _)| name == f).map(|(_, c)| *c);
        assert_eq!(count("gitstate_environment_in_sync"), Some(n));
        assert_eq!(count("gitstate_environment_suspended"), Some(n));
        assert_eq!(count("gitstate_instances"), Some(n * Status::ALL.len()));
        assert_eq!(count("gitstate_alarms_open"), Some(n * 7));
        assert_eq!(count("gitstate_expected_commit_change_timestamp_seconds"), Some(n.div_ceil(5)));
        assert_eq!(count("gitstate_reconcile_passes"), Some(1));
        assert!(text.contains("gitstate_environment_in_sync{environment=\"env-00002\"} 1\n"));
        assert!(text.contains("gitstate_environment_in_sync{environment=\"env-00003\"} 0\n"));
        assert_eq!(count("gitstate_environment_info"), Some(n));
        // SPEC §19: freshness, a series per environment observed (up to 10,000).
        assert_eq!(count("gitstate_environment_observed_timestamp_seconds"), Some(n - n.div_ceil(100)));
        assert!(text.contains(
            "gitstate_environment_observed_timestamp_seconds{environment=\"env-00002\"} 1700000001.25\n"
        ));
        assert!(
            text.contains(
                "gitstate_environment_info{environment=\"env-00003\",severity=\"warning\",label_9x=\"a\\\\b\",team_name=\"shop \\\"eu\\\"\"} 1\n"
            ),
            "{}",
            text.lines().find(|l| l.starts_with("gitstate_environment_info{environment=\"env-00003\"")).unwrap_or_default()
        );

        let (code, said) = promtool_check(&text);
        // Exit 1 is a parse error; 3 lint findings, of which the one expected is that an
        // OpenMetrics counter's help names its family (`gitstate_reconcile_passes`), not the
        // `_total` series the Prometheus text lint looks for.
        assert!(matches!(code, Some(0 | 3)), "promtool check metrics: {said}");
        for finding in said.lines() {
            assert!(finding.contains("_total no help text"), "promtool check metrics: {finding}");
        }
    }

    #[test]
    fn a_removed_environment_leaves_no_series() {
        let m = Metrics::new();
        for env in ["gone", "kept"] {
            let name = EnvName::new(env).unwrap();
            let mut envs = m.envs.write();
            let r = row(&mut envs, &name);
            (r.in_sync, r.suspended, r.instances, r.alarms, r.expected_since) =
                (Some(true), Some(false), Some([1; Status::ALL.len()]), Some([true; 7]), Some(1.0));
            drop(envs);
            m.lag.get_or_create(&Env { environment: env.into() }).observe(2.0);
            m.remediation(env, false);
        }
        let text = m.encode();
        for series in [
            "gitstate_environment_in_sync{environment=\"gone\"} 1",
            "gitstate_environment_suspended{environment=\"gone\"} 0",
            "gitstate_instances{environment=\"gone\",status=\"in_sync\"} 1",
            "gitstate_alarms_open{environment=\"gone\",alarm=\"unreachable\"} 1",
            "gitstate_expected_commit_change_timestamp_seconds{environment=\"gone\"} 1.0",
        ] {
            assert!(text.contains(series), "{series} in {text}");
        }
        m.forget("gone");
        let text = m.encode();
        assert!(!text.contains("environment=\"gone\""), "{text}");
        assert!(text.contains("environment=\"kept\""));
    }
}
