//! What many alarms have in common (SPEC §17): the [`Cause`] an alarm is given when it is
//! raised, worked out from what the fleet's last passes saw ([`Symptoms`], [`assign`]).
//! A fleet fails together — an origin goes down, the AWS API fails for a region, one bad
//! commit reaches several environments — and one cause is one page, not one per
//! environment. How alarms sharing a cause are notified is `engine/group.rs`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::alarm::AlarmKind;
use crate::commit::CommitId;
use crate::name::EnvName;
use crate::observation::{Status, TargetObservation};
use crate::report::EnvironmentReport;
use crate::state::Phase;

/// Why an alarm fired, as far as the fleet shows: shared by several environments, or the
/// environment's own. Written `source`, `origin:<host:port>`, `aws:<region>`,
/// `commit:<sha>` or `environment:<name>` (the Alertmanager `cause` label, the webhook's
/// `cause`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Cause {
    /// The expected-state source cannot be read: every environment of it.
    Source,
    /// Every instance behind one `host:port` is unreachable or invalid.
    Origin(String),
    /// The AWS API fails for a region.
    Aws(String),
    /// The same expected commit is degraded or drifting in several environments.
    Commit(CommitId),
    /// The environment's own (and whenever fewer than two environments share a cause).
    Environment(EnvName),
    /// Environments not observed in time (SPEC §19): nothing probes them (a replica
    /// stuck or gone, slots unowned), whatever they run.
    Stale,
}

impl Cause {
    /// Whether environments can share it (all but [`Cause::Environment`]).
    pub fn is_shared(&self) -> bool {
        !matches!(self, Cause::Environment(_))
    }

    /// A phrase for people: "origin 10.0.0.7:443", "commit 3f2a9c1d0b7e".
    pub fn describe(&self) -> String {
        match self {
            Cause::Source => "the expected-state source".into(),
            Cause::Origin(h) => format!("origin {h}"),
            Cause::Aws(r) => format!("the AWS API in {r}"),
            Cause::Commit(c) => format!("commit {}", c.short(12)),
            Cause::Environment(e) => format!("environment {e}"),
            Cause::Stale => "gitstate's own observation".into(),
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Source => f.write_str("source"),
            Cause::Origin(h) => write!(f, "origin:{h}"),
            Cause::Aws(r) => write!(f, "aws:{r}"),
            Cause::Commit(c) => write!(f, "commit:{c}"),
            Cause::Environment(e) => write!(f, "environment:{e}"),
            Cause::Stale => f.write_str("stale"),
        }
    }
}

/// A cause that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a cause (source, stale, origin:<host:port>, aws:<region>, commit:<sha> or environment:<name>)"
)]
pub struct CauseError(String);

impl FromStr for Cause {
    type Err = CauseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || CauseError(s.to_owned());
        if s == "source" {
            return Ok(Cause::Source);
        }
        if s == "stale" {
            return Ok(Cause::Stale);
        }
        let (kind, rest) = s.split_once(':').ok_or_else(bad)?;
        if rest.is_empty() {
            return Err(bad());
        }
        match kind {
            "origin" => Ok(Cause::Origin(rest.to_owned())),
            "aws" => Ok(Cause::Aws(rest.to_owned())),
            "commit" => rest.parse().map(Cause::Commit).map_err(|_| bad()),
            "environment" => rest.parse().map(Cause::Environment).map_err(|_| bad()),
            _ => Err(bad()),
        }
    }
}

impl Serialize for Cause {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cause {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A cause shared by alarms, as the engine keeps it (in the outbox, so in the store: it
/// survives restarts and failover): its members, and what each sink that groups was last
/// told of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CauseRecord {
    /// The cause.
    pub cause: Cause,
    /// The kind of its first member's alarm.
    pub alarm: AlarmKind,
    /// When it opened (its first member joined).
    pub since: Timestamp,
    /// When it became one page for its members (two environments or more, `group_wait`
    /// after it opened); from then on their own notifications go to grouping sinks as the
    /// cause's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grouped_at: Option<Timestamp>,
    /// The open alarms it holds.
    #[serde(default)]
    pub members: Vec<CauseMember>,
    /// Per sink: the members it was last told of, and when.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub told: BTreeMap<String, Told>,
}

impl CauseRecord {
    /// A cause that opens now.
    pub fn new(cause: Cause, alarm: AlarmKind, since: Timestamp) -> Self {
        Self { cause, alarm, since, grouped_at: None, members: Vec::new(), told: BTreeMap::new() }
    }

    /// The environments of its members, sorted, each once.
    pub fn environments(&self) -> Vec<EnvName> {
        let set: std::collections::BTreeSet<&EnvName> = self.members.iter().map(|m| &m.environment).collect();
        set.into_iter().cloned().collect()
    }
}

/// One open alarm of a cause.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CauseMember {
    /// Its environment.
    pub environment: EnvName,
    /// Its kind.
    pub alarm: AlarmKind,
    /// When it was raised.
    pub since: Timestamp,
    /// Its severity.
    pub severity: crate::policy::Severity,
    /// Its labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Its raise, held from grouping sinks while the cause may still form (`group_wait`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<crate::alarm::AlarmNotification>,
    /// Its raise went to grouping sinks as itself (the cause had one member then).
    #[serde(default)]
    pub released: bool,
}

/// What one sink was last told of a cause, and how its tries went since.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Told {
    /// The members it was told of (empty until the opening is delivered).
    #[serde(default)]
    pub members: Vec<EnvName>,
    /// When it was last told something.
    #[serde(default)]
    pub at: Option<Timestamp>,
    /// Failed deliveries since the last one that went through.
    #[serde(default)]
    pub failures: u32,
    /// When the last failure was.
    #[serde(default)]
    pub last_try: Option<Timestamp>,
    /// Passes waited since then.
    #[serde(default)]
    pub skipped: u32,
}

/// What one environment's last pass saw that causes are made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symptoms {
    /// The environment.
    pub environment: EnvName,
    /// Its expected commit, when the ref resolved.
    pub expected: Option<CommitId>,
    /// It does not run its expected commit well: some instance runs another commit, or
    /// the commit failed its checks (phase `degraded`).
    pub off_commit: bool,
    /// Per origin (`origin:<host:port>`, `aws:<region>`) its instances answer from:
    /// whether every one of them failed (unreachable or invalid).
    pub origins: BTreeMap<String, bool>,
}

impl Symptoms {
    /// The symptoms in an environment's report.
    pub fn of_report(r: &EnvironmentReport) -> Self {
        Self::of(&r.name, r.expected, r.phase, &r.targets)
    }

    /// The symptoms of what a pass saw of `environment`.
    pub fn of(
        environment: &EnvName,
        expected: Option<CommitId>,
        phase: Option<Phase>,
        targets: &[TargetObservation],
    ) -> Self {
        let mut origins: BTreeMap<String, bool> = BTreeMap::new();
        let mut off_commit = phase == Some(Phase::Degraded);
        for t in targets {
            if t.instances.is_empty() {
                // The target failed as a whole (an API error): its probe's origin.
                if let Some(o) = &t.origin {
                    let failing = matches!(t.status, Status::Unreachable | Status::Invalid);
                    *origins.entry(o.clone()).or_insert(true) &= failing;
                }
                continue;
            }
            for i in &t.instances {
                let failing = matches!(i.status, Status::Unreachable | Status::Invalid);
                off_commit |= i.status.is_remediable_drift() || i.status.is_divergence();
                if let Some(o) = instance_origin(&i.id).or_else(|| t.origin.clone()) {
                    *origins.entry(o).or_insert(true) &= failing;
                }
            }
        }
        Self { environment: environment.clone(), expected, off_commit, origins }
    }
}

/// The origin of an instance whose id is a URL: `origin:<host>:<port>` (the scheme's port
/// when the URL names none; the host in lower case). `None` for other ids.
pub fn instance_origin(id: &str) -> Option<String> {
    let (scheme, rest) = id.split_once("://")?;
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    if authority.is_empty() {
        return None;
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        (format!("[{host}]"), after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (authority.to_owned(), None),
        }
    };
    let port = match port {
        Some(p) => p.parse::<u16>().ok()?,
        None => default_port,
    };
    Some(format!("origin:{}:{port}", host.to_ascii_lowercase()))
}

/// The cause of `kind` raised now in `me`, given what the whole fleet's last passes saw
/// (`fleet`, which may include `me`'s own entry; `me` wins). A shared cause needs two
/// environments or more showing it; otherwise the alarm is the environment's own.
///
/// - `unreachable`: an origin every instance of which fails, in every environment that
///   has instances behind it (`aws:<region>` before `origin:<host:port>`);
/// - `drift`, `degraded`: the expected commit, when it is off (drifting or degraded) in
///   another environment too;
/// - any other kind: the environment's own.
pub fn assign(kind: AlarmKind, me: &Symptoms, fleet: &[Symptoms]) -> Cause {
    let others = || fleet.iter().filter(|s| s.environment != me.environment);
    let own = Cause::Environment(me.environment.clone());
    match kind {
        AlarmKind::Unreachable => {
            let mut down: Vec<&String> = me.origins.iter().filter(|(_, all)| **all).map(|(o, _)| o).collect();
            down.sort_by_key(|o| !o.starts_with("aws:"));
            for origin in down {
                let seen: Vec<bool> = others().filter_map(|s| s.origins.get(origin).copied()).collect();
                if !seen.is_empty() && seen.iter().all(|failing| *failing) {
                    return match origin.split_once(':') {
                        Some(("aws", r)) => Cause::Aws(r.to_owned()),
                        Some(("origin", h)) => Cause::Origin(h.to_owned()),
                        _ => own,
                    };
                }
            }
            own
        }
        AlarmKind::Drift | AlarmKind::Degraded => match me.expected {
            Some(c) if me.off_commit && others().any(|s| s.off_commit && s.expected == Some(c)) => {
                Cause::Commit(c)
            }
            _ => own,
        },
        _ => own,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(n: &str) -> EnvName {
        n.parse().unwrap()
    }

    fn sym(n: &str, expected: Option<CommitId>, off: bool, origins: &[(&str, bool)]) -> Symptoms {
        Symptoms {
            environment: env(n),
            expected,
            off_commit: off,
            origins: origins.iter().map(|(o, f)| ((*o).to_owned(), *f)).collect(),
        }
    }

    #[test]
    fn causes_are_written_and_read_back() {
        let sha: CommitId = "3f2a9c1d0b7e3f2a9c1d0b7e3f2a9c1d0b7e3f2a".parse().unwrap();
        for c in [
            Cause::Source,
            Cause::Origin("10.0.0.7:443".into()),
            Cause::Aws("eu-west-1".into()),
            Cause::Commit(sha),
            Cause::Environment(env("prod")),
        ] {
            let text = c.to_string();
            assert_eq!(text.parse::<Cause>().unwrap(), c, "{text}");
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(serde_json::from_str::<Cause>(&json).unwrap(), c);
        }
        for bad in ["", "origin:", "sauce", "commit:xyz", "environment:a b", "cloud:x"] {
            assert!(bad.parse::<Cause>().is_err(), "{bad}");
        }
    }

    #[test]
    fn instance_origins_come_from_urls() {
        let cases = [
            ("http://127.0.0.1:8080/.well-known/deployment-meta.json", Some("origin:127.0.0.1:8080")),
            ("https://Shop.Example/x", Some("origin:shop.example:443")),
            ("http://user:pw@h.example/x?y", Some("origin:h.example:80")),
            ("http://[::1]:9000/", Some("origin:[::1]:9000")),
            ("http://[::1]/", Some("origin:[::1]:80")),
            ("http://h:notaport/", None),
            ("arn:aws:ecs:eu-west-1:1:service/x", None),
            ("ftp://h/x", None),
            ("http:///x", None),
            ("i-0abc", None),
        ];
        for (id, want) in cases {
            assert_eq!(instance_origin(id).as_deref(), want, "{id}");
        }
    }

    #[test]
    fn an_origin_is_the_cause_only_when_it_fails_everywhere_and_for_two() {
        let a = sym("a", None, false, &[("origin:h:80", true)]);
        let b = sym("b", None, false, &[("origin:h:80", true)]);
        let c_up = sym("c", None, false, &[("origin:h:80", false)]);
        let alone = sym("d", None, false, &[("origin:other:80", true)]);
        assert_eq!(assign(AlarmKind::Unreachable, &a, &[a.clone(), b.clone()]), Cause::Origin("h:80".into()));
        // One environment still reads the origin: not the origin's fault.
        assert_eq!(assign(AlarmKind::Unreachable, &a, &[b.clone(), c_up]), Cause::Environment(env("a")));
        // Nobody else behind it.
        assert_eq!(
            assign(AlarmKind::Unreachable, &alone, &[a.clone(), b.clone()]),
            Cause::Environment(env("d"))
        );
        // The AWS region is named before a host when both fail.
        let both = sym("e", None, false, &[("origin:h:80", true), ("aws:eu-west-1", true)]);
        let f = sym("f", None, false, &[("origin:h:80", true), ("aws:eu-west-1", true)]);
        assert_eq!(assign(AlarmKind::Unreachable, &both, &[f]), Cause::Aws("eu-west-1".into()));
        // An origin that only partly fails in `me` is not its cause.
        let partly = sym("g", None, false, &[("origin:h:80", false)]);
        assert_eq!(assign(AlarmKind::Unreachable, &partly, &[a, b]), Cause::Environment(env("g")));
    }

    #[test]
    fn a_commit_is_the_cause_when_another_environment_is_off_it_too() {
        let s: CommitId = "3f2a9c1d0b7e3f2a9c1d0b7e3f2a9c1d0b7e3f2a".parse().unwrap();
        let t: CommitId = "0000000000000000000000000000000000000001".parse().unwrap();
        let a = sym("a", Some(s), true, &[]);
        let b = sym("b", Some(s), true, &[]);
        let b_fine = sym("b", Some(s), false, &[]);
        let c_other = sym("c", Some(t), true, &[]);
        assert_eq!(assign(AlarmKind::Degraded, &a, std::slice::from_ref(&b)), Cause::Commit(s));
        assert_eq!(assign(AlarmKind::Drift, &a, &[b]), Cause::Commit(s));
        assert_eq!(assign(AlarmKind::Drift, &a, &[b_fine, c_other]), Cause::Environment(env("a")));
        // `me`'s own stale entry in the fleet does not count as a second environment.
        assert_eq!(assign(AlarmKind::Drift, &a, std::slice::from_ref(&a)), Cause::Environment(env("a")));
        // Other kinds are the environment's own.
        let b = sym("b", Some(s), true, &[]);
        assert_eq!(assign(AlarmKind::Diverged, &a, &[b]), Cause::Environment(env("a")));
    }
}
