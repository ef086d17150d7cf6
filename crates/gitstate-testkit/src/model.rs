//! An independent model of SPEC §7's closed loop, for properties that check the real
//! `reconcile` (and the real `watch` driving it) against it.
//!
//! The model is written from the SPEC's text, in its own terms (an *epoch* per expected
//! commit, the list of attempt times, an in-sync streak), and reads nothing of gitstate's
//! state: a property feeds it and the real thing the same history of expected commits,
//! reflog times, observations, clock steps and policy changes, and compares what each says
//! must happen on every pass — deploys, alarm changes, convergence lags, phases.

use std::collections::BTreeMap;
use std::time::Duration;

use gitstate_core::{AlarmChange, AlarmKind, Mode, OnDiverged, Phase, Policy, Resolution, Status};
use jiff::Timestamp;
use proptest::prelude::*;

/// One pass of a history.
#[derive(Debug, Clone)]
pub struct Pass {
    /// Seconds since the previous pass (zero happens: two passes in the same instant).
    pub dt: u64,
    /// Which of three commits the ref points at (moving back to an old one happens).
    pub commit: usize,
    /// The reflog's time of the move, as seconds before now, when the source keeps one.
    pub reflog_ago: Option<u64>,
    /// Instance statuses (none at all is possible: nothing observed).
    pub statuses: Vec<Status>,
    /// Which of the history's two policies is in force (an operator editing the config).
    pub policy: usize,
}

/// What must happen on one pass.
#[derive(Debug, Clone, PartialEq)]
pub struct Expect {
    pub deploy: Option<u32>,
    pub alarms: Vec<(AlarmChange, AlarmKind)>,
    /// `Some(lag)` when a `converged` event is due, with its lag in seconds (or none).
    pub converged: Option<Option<f64>>,
    pub phase: Phase,
}

/// The model's memory of one expected commit (an epoch: from the ref moving to it until
/// it moves again).
#[derive(Debug, Clone)]
struct Epoch {
    commit: usize,
    /// When the ref moved, if known (a reflog, or any pass after the first one).
    moved: Option<Timestamp>,
    /// When gitstate first saw the commit: grace is counted from the move when known.
    grace_from: Timestamp,
    /// Attempt times, and the least gap before the next one (the policy then in force).
    attempts: Vec<(Timestamp, Duration)>,
    /// The commit was in sync on some pass.
    was_in_sync: bool,
    /// The last pass was not in sync.
    out_of_sync: bool,
    /// The current drift started after the commit had been in sync.
    flapping: bool,
    /// The first pass of the current in-sync streak.
    streak_from: Option<Timestamp>,
}

/// The model's memory of one environment.
#[derive(Debug, Default)]
pub struct Model {
    epoch: Option<Epoch>,
    failing_passes: u32,
    /// Open alarms: kind → last notified.
    open: BTreeMap<AlarmKind, Timestamp>,
}

/// SPEC §7 invariant 3, written out here rather than taken from the code under test:
/// attempt n+1 no earlier than attempt n + max(settle, min(backoff·2^(n-1), backoff_max)).
fn gap(policy: &Policy, n: u32) -> Duration {
    let doubled = policy.backoff.saturating_mul(1u32 << (n - 1).min(31));
    policy.settle.max(doubled.min(policy.backoff_max))
}

/// `t + d`, saturating.
pub fn plus(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_add(jiff::SignedDuration::try_from(d).unwrap()).unwrap_or(Timestamp::MAX)
}

fn secs_between(a: Timestamp, b: Timestamp) -> f64 {
    (b.as_millisecond() - a.as_millisecond()).max(0) as f64 / 1000.0
}

impl Model {
    fn raise(&mut self, kind: AlarmKind, now: Timestamp, out: &mut Vec<(AlarmChange, AlarmKind)>) {
        if let std::collections::btree_map::Entry::Vacant(e) = self.open.entry(kind) {
            e.insert(now);
            out.push((AlarmChange::Raised, kind));
        }
    }

    fn resolve(&mut self, kind: AlarmKind, why: Resolution, out: &mut Vec<(AlarmChange, AlarmKind)>) {
        if self.open.remove(&kind).is_some() {
            out.push((AlarmChange::Resolved(why), kind));
        }
    }

    /// What must happen on pass `p` at `now` (the ref's reflog time `moved_at`, if any).
    pub fn pass(&mut self, p: &Pass, moved_at: Option<Timestamp>, policy: &Policy, now: Timestamp) -> Expect {
        let mut alarms = Vec::new();
        let mut deploy = None;
        let mut converged = None;

        // A new expected commit: the old one's alarms are superseded, attempts start at zero.
        let first_pass = self.epoch.is_none();
        if self.epoch.as_ref().is_none_or(|e| e.commit != p.commit) {
            if !first_pass {
                self.resolve(AlarmKind::Drift, Resolution::Superseded, &mut alarms);
                self.resolve(AlarmKind::Diverged, Resolution::Superseded, &mut alarms);
            }
            let moved = moved_at.or((!first_pass).then_some(now));
            self.epoch = Some(Epoch {
                commit: p.commit,
                moved,
                grace_from: moved.unwrap_or(now),
                attempts: Vec::new(),
                was_in_sync: false,
                out_of_sync: false,
                flapping: false,
                streak_from: None,
            });
        }

        let failing = p.statuses.is_empty()
            || p.statuses
                .iter()
                .any(|s| matches!(s, Status::Unreachable | Status::Invalid | Status::Missing));
        let hotfix = p
            .statuses
            .iter()
            .any(|s| matches!(s, Status::Diverged | Status::UnknownCommit | Status::Drifted));
        let pending = p.statuses.iter().any(|s| matches!(s, Status::Behind | Status::Ahead));
        let in_sync = !p.statuses.is_empty() && p.statuses.iter().all(|s| *s == Status::InSync);

        if failing {
            self.failing_passes += 1;
            if self.failing_passes >= policy.unreachable_after {
                self.raise(AlarmKind::Unreachable, now, &mut alarms);
            }
        } else {
            self.failing_passes = 0;
            self.resolve(AlarmKind::Unreachable, Resolution::Cleared, &mut alarms);
        }

        let Some(mut e) = self.epoch.take() else { unreachable!() };
        let mut phase;
        if in_sync {
            self.resolve(AlarmKind::Diverged, Resolution::Converged, &mut alarms);
            if !e.was_in_sync {
                let lag = e.moved.map(|m| secs_between(m, now));
                // Already in sync on the very first pass, with no reflog: nothing seen converge.
                if lag.is_some() || e.out_of_sync {
                    converged = Some(lag);
                }
            } else if e.out_of_sync {
                converged = Some(None);
            }
            let from = if e.out_of_sync { now } else { e.streak_from.unwrap_or(now) };
            e.streak_from = Some(from);
            e.was_in_sync = true;
            e.out_of_sync = false;
            phase = Phase::InSync;
            let hold = e.flapping && now < plus(from, policy.keep_firing_for);
            if !(hold && self.open.contains_key(&AlarmKind::Drift)) {
                self.resolve(AlarmKind::Drift, Resolution::Converged, &mut alarms);
            }
        } else {
            if !e.out_of_sync {
                e.flapping = e.was_in_sync;
                e.out_of_sync = true;
            }
            e.streak_from = None;
            let grace_over = now >= plus(e.grace_from, policy.grace);
            let held = hotfix && policy.on_diverged == OnDiverged::Alarm;
            let drift = pending || (hotfix && policy.on_diverged == OnDiverged::Remediate);
            phase = Phase::Converging;
            if held {
                if grace_over {
                    self.raise(AlarmKind::Diverged, now, &mut alarms);
                }
            } else if drift && !grace_over {
                if policy.mode == Mode::Observe {
                    phase = Phase::Observing;
                }
            } else if drift && policy.mode == Mode::Observe {
                self.raise(AlarmKind::Drift, now, &mut alarms);
            } else if drift {
                let n = e.attempts.len() as u32;
                let last = e.attempts.last().copied();
                let settling = last.is_some_and(|(t, _)| now < plus(t, policy.settle));
                if n < policy.max_attempts {
                    if last.is_none_or(|(t, gap)| now >= plus(t, gap)) {
                        deploy = Some(n + 1);
                        e.attempts.push((now, gap(policy, n + 1)));
                        phase = Phase::Remediating;
                    } else if settling {
                        phase = Phase::Remediating;
                    } else {
                        phase = Phase::BackingOff;
                    }
                } else if settling {
                    phase = Phase::Remediating;
                } else {
                    self.raise(AlarmKind::Drift, now, &mut alarms);
                }
            }
        }
        self.epoch = Some(e);
        if !self.open.is_empty() {
            phase = Phase::Alarm;
        }

        // Repeats: every `renotify` since the last notification, never in the pass that raised it.
        if !policy.renotify.is_zero() {
            for (kind, last) in self.open.iter_mut() {
                if *last != now && now >= plus(*last, policy.renotify) {
                    *last = now;
                    alarms.push((AlarmChange::Repeated, *kind));
                }
            }
        }
        Expect { deploy, alarms, converged, phase }
    }
}

/// The `i`th of the test commits.
pub fn commit(i: usize) -> gitstate_core::CommitId {
    gitstate_core::CommitId::parse(&format!("{:040x}", i + 1)).unwrap()
}

/// The commit a scripted instance reports for a status that is a relation to the
/// expected commit (a letter repeated: `b`ehind, `a`head, `d`iverged, `e` unknown,
/// `f` drifted); none for in sync and the probe failures.
pub fn reported(status: Status) -> Option<gitstate_core::ReportedCommit> {
    let c = match status {
        Status::Behind => 'b',
        Status::Ahead => 'a',
        Status::Diverged => 'd',
        Status::UnknownCommit => 'e',
        Status::Drifted => 'f',
        _ => return None,
    };
    gitstate_core::ReportedCommit::parse(&c.to_string().repeat(40)).ok()
}

/// The relation of a commit made by [`reported`] to the expected commit, as a source
/// that knows the scripted history says it.
pub fn relation(reported: &gitstate_core::ReportedCommit) -> gitstate_core::Relation {
    use gitstate_core::Relation;
    match reported.as_str().as_bytes()[0] {
        b'b' => Relation::Behind(1),
        b'a' => Relation::Ahead(1),
        b'd' => Relation::Diverged { behind: 1, ahead: 1 },
        b'e' => Relation::UnknownCommit,
        _ => Relation::Drifted,
    }
}

/// What a scripted target's instances answer for `statuses`, the expected commit being
/// `expected`: one reading per status, `i0`, `i1`, … .
pub fn readings(statuses: Vec<Status>, expected: &gitstate_core::CommitId) -> Vec<gitstate_core::Reading> {
    use gitstate_core::{ProbeFailure, Reading, ReportedCommit};
    statuses
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let result = match s {
                Status::InSync => Ok(ReportedCommit::parse(expected.as_str()).unwrap()),
                Status::Unreachable => Err(ProbeFailure::unreachable("down")),
                Status::Invalid => Err(ProbeFailure::invalid("garbage")),
                Status::Missing => Err(ProbeFailure::missing("gone")),
                other => Ok(reported(other).unwrap()),
            };
            Reading { instance: format!("i{i}"), result, elapsed: Duration::ZERO }
        })
        .collect()
}

/// `Pass::commit` for "the ref did not move on this pass".
pub const KEEP: usize = usize::MAX;

/// Statuses, weighted towards in sync and behind so incidents open, close and flap.
pub fn status() -> impl Strategy<Value = Status> {
    prop_oneof![
        6 => Just(Status::InSync),
        4 => Just(Status::Behind),
        1 => Just(Status::Ahead),
        1 => Just(Status::Drifted),
        1 => Just(Status::Diverged),
        1 => Just(Status::UnknownCommit),
        1 => Just(Status::Missing),
        1 => Just(Status::Invalid),
        1 => Just(Status::Unreachable),
    ]
}

/// Passes that mostly keep the same commit, often flap between in sync and behind, and
/// now and then move the ref (back to an old commit too).
pub fn pass() -> impl Strategy<Value = Pass> {
    (
        prop_oneof![2 => Just(0u64), 6 => 1u64..120, 2 => 120u64..3_000, 1 => 3_000u64..40_000],
        prop_oneof![12 => Just(None), 1 => (0usize..3).prop_map(Some)],
        prop_oneof![1 => Just(None), 1 => (0u64..5_000).prop_map(Some)],
        prop_oneof![
            3 => Just(vec![Status::InSync]),
            3 => Just(vec![Status::InSync, Status::Behind]),
            4 => prop::collection::vec(status(), 0..4),
        ],
        prop_oneof![4 => Just(0usize), 1 => Just(1usize)],
    )
        .prop_map(|(dt, commit, reflog_ago, statuses, policy)| Pass {
            dt,
            commit: commit.unwrap_or(KEEP),
            reflog_ago,
            statuses,
            policy,
        })
}

/// Zero, or whole seconds below `max`.
pub fn duration(max: u64) -> impl Strategy<Value = Duration> {
    prop_oneof![Just(Duration::ZERO), (1..max).prop_map(Duration::from_secs)]
}

/// Policies over the whole range the SPEC allows, `max_attempts` up to 10.
pub fn policy() -> impl Strategy<Value = Policy> {
    (
        (prop_oneof![4 => Just(Mode::Remediate), 1 => Just(Mode::Observe)], duration(600), duration(600)),
        (0u32..=10, 1u64..600, 0u64..3_000, 1u32..5),
        (prop_oneof![Just(OnDiverged::Alarm), Just(OnDiverged::Remediate)], duration(7_200), duration(1_800)),
    )
        .prop_map(
            |(
                (mode, grace, settle),
                (max_attempts, backoff, extra, unreachable_after),
                (on_diverged, renotify, keep_firing_for),
            )| Policy {
                mode,
                grace,
                settle,
                max_attempts,
                backoff: Duration::from_secs(backoff),
                backoff_max: Duration::from_secs(backoff + extra),
                unreachable_after,
                on_diverged,
                renotify,
                keep_firing_for,
                verify: None,
                ..Policy::default()
            },
        )
}
