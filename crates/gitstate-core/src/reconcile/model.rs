//! An independent model of SPEC §7, and the property that `reconcile` agrees with it.
//!
//! The model is written from the SPEC's text, in its own terms (an *epoch* per expected
//! commit, the list of attempt times, an in-sync streak), and reads nothing of
//! `reconcile`'s state: the property feeds both the same random history of expected
//! commits, reflog times, observations, clock steps and policy changes, and compares what
//! each says must happen on every pass — deploys, alarm changes, convergence lags, phases.
//! It then checks the promises operators buy on the real function's output alone: at most
//! `max_attempts` deploys per expected commit, at most one drift alarm per expected commit
//! while it flaps faster than `keep_firing_for`, no deploy over a possible hotfix.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use proptest::prelude::*;

use super::*;
use crate::observation::Status;

/// One pass of a history.
#[derive(Debug, Clone)]
struct Pass {
    /// Seconds since the previous pass (zero happens: two passes in the same instant).
    dt: u64,
    /// Which of three commits the ref points at (moving back to an old one happens).
    commit: usize,
    /// The reflog's time of the move, as seconds before now, when the source keeps one.
    reflog_ago: Option<u64>,
    /// Instance statuses (none at all is possible: nothing observed).
    statuses: Vec<Status>,
    /// Which of the history's two policies is in force (an operator editing the config).
    policy: usize,
}

/// What must happen on one pass.
#[derive(Debug, Clone, PartialEq)]
struct Expect {
    deploy: Option<u32>,
    alarms: Vec<(AlarmChange, AlarmKind)>,
    /// `Some(lag)` when a `converged` event is due, with its lag in seconds (or none).
    converged: Option<Option<f64>>,
    phase: Phase,
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

#[derive(Debug, Default)]
struct Model {
    epoch: Option<Epoch>,
    failing_passes: u32,
    /// Open alarms: kind → last notified.
    open: BTreeMap<AlarmKind, Timestamp>,
}

fn plus(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_add(jiff::SignedDuration::try_from(d).unwrap()).unwrap_or(Timestamp::MAX)
}

fn secs_between(a: Timestamp, b: Timestamp) -> f64 {
    (b.as_millisecond() - a.as_millisecond()).max(0) as f64 / 1000.0
}

impl Model {
    fn raise(&mut self, kind: AlarmKind, now: Timestamp, out: &mut Vec<(AlarmChange, AlarmKind)>) {
        if !self.open.contains_key(&kind) {
            self.open.insert(kind, now);
            out.push((AlarmChange::Raised, kind));
        }
    }

    fn resolve(&mut self, kind: AlarmKind, why: Resolution, out: &mut Vec<(AlarmChange, AlarmKind)>) {
        if self.open.remove(&kind).is_some() {
            out.push((AlarmChange::Resolved(why), kind));
        }
    }

    fn pass(&mut self, p: &Pass, moved_at: Option<Timestamp>, policy: &Policy, now: Timestamp) -> Expect {
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
                        e.attempts.push((now, policy.gap_after_attempt(n + 1)));
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

fn commit(i: usize) -> CommitId {
    CommitId::parse(&format!("{:040x}", i + 1)).unwrap()
}

/// What the real function decided, in the model's terms.
fn observed(d: &Decision) -> Expect {
    let deploy = d.actions.iter().find_map(|a| match a {
        Action::Remediate { attempt } => Some(*attempt),
        _ => None,
    });
    let alarms = d
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Alarm { change, kind, .. } => Some((*change, *kind)),
            _ => None,
        })
        .collect();
    let converged = d.events.iter().find_map(|e| match e {
        EventKind::Converged { lag_s, .. } => Some(*lag_s),
        _ => None,
    });
    Expect { deploy, alarms, converged, phase: d.phase }
}

fn sorted(mut v: Vec<(AlarmChange, AlarmKind)>) -> Vec<String> {
    v.sort_by_key(|(c, k)| format!("{c:?}{k:?}"));
    v.into_iter().map(|(c, k)| format!("{c:?} {k:?}")).collect()
}

fn status() -> impl Strategy<Value = Status> {
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
fn pass() -> impl Strategy<Value = Pass> {
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
            commit: commit.unwrap_or(usize::MAX),
            reflog_ago,
            statuses,
            policy,
        })
}

fn duration(max: u64) -> impl Strategy<Value = Duration> {
    prop_oneof![Just(Duration::ZERO), (1..max).prop_map(Duration::from_secs)]
}

fn policy() -> impl Strategy<Value = Policy> {
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
            },
        )
}

/// Drives `reconcile` and the model over one history and compares them pass by pass; then
/// checks the promises on the real output alone.
fn replay(policies: &[Policy; 2], passes: &[Pass]) -> Result<(), TestCaseError> {
    let mut now = Timestamp::from_second(1_800_000_000).unwrap();
    let mut model = Model::default();
    let mut state: Option<EnvState> = None;
    let mut current = 0usize;
    // Promises, counted from the real decisions: deploys per epoch (expected commit).
    let mut epoch = 0usize;
    let mut deploys: BTreeMap<usize, u32> = BTreeMap::new();
    let mut max_attempts: BTreeMap<usize, u32> = BTreeMap::new();

    for (i, p) in passes.iter().enumerate() {
        now = plus(now, Duration::from_secs(p.dt));
        if p.commit != usize::MAX && (i == 0 || p.commit != current) {
            current = p.commit;
            epoch += 1;
        } else if i == 0 {
            epoch += 1;
        }
        let p = Pass { commit: current, ..p.clone() };
        let policy = &policies[p.policy];
        let moved_at =
            p.reflog_ago.map(|ago| now.checked_sub(jiff::SignedDuration::from_secs(ago as i64)).unwrap());
        let a = Assessment::of_statuses(p.statuses.iter().copied());
        let expected = ExpectedCommit { commit: commit(current), moved_at };
        let d = reconcile(expected, &a, state.as_ref(), policy, now);
        prop_assert_eq!(
            &reconcile(expected, &a, state.as_ref(), policy, now),
            &d,
            "invariant 9: deterministic"
        );

        let want = model.pass(&p, moved_at, policy, now);
        let got = observed(&d);
        prop_assert_eq!(got.deploy, want.deploy, "pass {}: deploys differ ({:?})", i, d.reason);
        prop_assert_eq!(sorted(got.alarms.clone()), sorted(want.alarms.clone()), "pass {}: alarms differ", i);
        prop_assert_eq!(got.converged, want.converged, "pass {}: convergence differs", i);
        prop_assert_eq!(got.phase, want.phase, "pass {}: phase differs ({:?})", i, d.reason);

        // The promises, on the real output alone.
        let limit = max_attempts.entry(epoch).or_insert(0);
        *limit = (*limit).max(policy.max_attempts);
        if got.deploy.is_some() {
            *deploys.entry(epoch).or_default() += 1;
            prop_assert!(deploys[&epoch] <= *limit, "more deploys than max_attempts for one expected commit");
            prop_assert!(policy.mode == Mode::Remediate, "invariant 8: observe mode deployed");
            let hotfix = a.diverged;
            prop_assert!(
                !(hotfix && policy.on_diverged == OnDiverged::Alarm),
                "invariant 6: deployed over a possible hotfix"
            );
            prop_assert!(!a.in_sync, "invariant 1: deployed an in-sync environment");
        }
        state = Some(d.state);
    }
    Ok(())
}

proptest! {
    /// `reconcile` agrees with the model over random histories: flapping, ref moves back
    /// to old commits, zero clock steps, policy edits, up to 10 attempts, reflog times, and
    /// first passes in the middle of an incident.
    #[test]
    fn reconcile_matches_the_model(
        policies in (policy(), policy()),
        passes in prop::collection::vec(pass(), 1..150),
    ) {
        replay(&[policies.0, policies.1], &passes)?;
    }

    /// A target that flaps between in sync and behind for the same expected commit, over
    /// 100 passes faster than `keep_firing_for`: at most `max_attempts` deploys and, once
    /// attempts are used up, exactly one drift alarm.
    #[test]
    fn a_flapping_target_gets_max_attempts_deploys_and_one_alarm(
        max_attempts in 1u32..=10,
        flaps in prop::collection::vec(any::<bool>(), 100),
        interval in 30u64..120,
    ) {
        let policy = Policy {
            grace: Duration::ZERO,
            settle: Duration::from_secs(interval),
            max_attempts,
            backoff: Duration::from_secs(interval),
            backoff_max: Duration::from_secs(4 * interval),
            keep_firing_for: Duration::from_secs(20 * interval),
            ..Policy::default()
        };
        let mut now = Timestamp::from_second(1_800_000_000).unwrap();
        let mut state = None;
        let (mut deploys, mut raised, mut resolved) = (0u32, 0u32, 0u32);
        // The first pass starts in sync; then it behaves as `flaps` says, drifting at least
        // every other pass.
        for (i, drift) in std::iter::once(false).chain(flaps.iter().enumerate().map(|(i, f)| *f || i % 2 == 0)).enumerate() {
            now = plus(now, Duration::from_secs(interval));
            let statuses = if drift { vec![Status::InSync, Status::Behind] } else { vec![Status::InSync] };
            let d = reconcile(&commit(0), &Assessment::of_statuses(statuses), state.as_ref(), &policy, now);
            for a in &d.actions {
                match a {
                    Action::Remediate { .. } => deploys += 1,
                    Action::Alarm { change: AlarmChange::Raised, kind: AlarmKind::Drift, .. } => raised += 1,
                    Action::Alarm { change: AlarmChange::Resolved(_), kind: AlarmKind::Drift, .. } => resolved += 1,
                    _ => {}
                }
            }
            prop_assert!(deploys <= max_attempts, "pass {}: {} deploys", i, deploys);
            state = Some(d.state);
        }
        prop_assert!(deploys == max_attempts, "every attempt is used: {}", deploys);
        prop_assert_eq!(raised, 1, "one drift alarm");
        prop_assert_eq!(resolved, 0, "it stays open while flapping");
    }

    /// Invariants 3 and 4 under sustained drift: exactly `max_attempts` remediations once
    /// there was time for them, then one alarm.
    #[test]
    fn sustained_drift_uses_every_attempt_then_alarms_once(policy in policy(), dts in prop::collection::vec(1u64..900, 50..200)) {
        let policy = Policy { mode: Mode::Remediate, ..policy };
        let pass = |dt, status| Pass { dt, commit: 0, reflog_ago: None, statuses: vec![status], policy: 0 };
        let mut passes = vec![pass(0, Status::InSync)];
        passes.extend(dts.iter().map(|&dt| pass(dt, Status::Behind)));
        replay(&[policy.clone(), policy.clone()], &passes)?;
        let mut now = Timestamp::from_second(1_800_000_000).unwrap();
        let mut state = None;
        let (mut remediations, mut raises) = (0, 0);
        for p in &passes {
            now = plus(now, Duration::from_secs(p.dt));
            let d = reconcile(&commit(0), &Assessment::of_statuses(p.statuses.iter().copied()), state.as_ref(), &policy, now);
            remediations += d.actions.iter().filter(|a| matches!(a, Action::Remediate { .. })).count();
            raises += d.actions.iter().filter(|a| matches!(a, Action::Alarm { change: AlarmChange::Raised, .. })).count();
            state = Some(d.state);
        }
        prop_assert!(remediations as u32 <= policy.max_attempts);
        prop_assert!(raises <= 1);
        let total: u64 = dts.iter().sum();
        let needed: u64 = policy.grace.as_secs()
            + (1..=policy.max_attempts).map(|n| policy.gap_after_attempt(n).as_secs()).sum::<u64>()
            + policy.settle.as_secs() + 900;
        if total > needed {
            prop_assert_eq!(remediations as u32, policy.max_attempts);
            prop_assert_eq!(raises, 1);
        }
    }
}
