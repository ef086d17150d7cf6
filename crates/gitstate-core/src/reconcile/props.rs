//! Properties of `reconcile` over random sequences of observations, expected-commit
//! changes and clock steps. Each property names the SPEC §7 invariant it covers.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use proptest::prelude::*;

use super::*;
use crate::observation::Status;

#[derive(Debug, Clone)]
struct Step {
    dt: u64,
    expected: u8,
    statuses: Vec<Status>,
}

fn status() -> impl Strategy<Value = Status> {
    // Weighted towards in_sync and remediable drift so incidents both open and close.
    prop_oneof![
        4 => Just(Status::InSync),
        3 => Just(Status::Behind),
        1 => Just(Status::Ahead),
        1 => Just(Status::Drifted),
        1 => Just(Status::Diverged),
        1 => Just(Status::UnknownCommit),
        1 => Just(Status::Missing),
        1 => Just(Status::Invalid),
        1 => Just(Status::Unreachable),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    (
        prop_oneof![3 => 0u64..120, 1 => 0u64..20_000],
        prop_oneof![9 => Just(0u8), 1 => 1u8..4],
        prop::collection::vec(status(), 0..4),
    )
        .prop_map(|(dt, expected, statuses)| Step { dt, expected, statuses })
}

fn secs(max: u64) -> impl Strategy<Value = Duration> {
    prop_oneof![Just(Duration::ZERO), (1..max).prop_map(Duration::from_secs)]
}

fn policy() -> impl Strategy<Value = Policy> {
    (
        prop_oneof![4 => Just(Mode::Remediate), 1 => Just(Mode::Observe)],
        secs(600),
        secs(600),
        0u32..5,
        (1u64..600, 0u64..3000),
        1u32..5,
        prop_oneof![Just(OnDiverged::Alarm), Just(OnDiverged::Remediate)],
        secs(7200),
    )
        .prop_map(
            |(
                mode,
                grace,
                settle,
                max_attempts,
                (backoff, extra),
                unreachable_after,
                on_diverged,
                renotify,
            )| {
                Policy {
                    mode,
                    grace,
                    settle,
                    max_attempts,
                    backoff: Duration::from_secs(backoff),
                    backoff_max: Duration::from_secs(backoff + extra),
                    unreachable_after,
                    on_diverged,
                    renotify,
                }
            },
        )
}

fn commit(i: u8) -> CommitId {
    CommitId::parse(&format!("{:040x}", u64::from(i) + 1)).unwrap()
}

/// Replays `steps`, checking every property after each decision.
fn check(policy: &Policy, steps: &[Step]) -> Result<(), TestCaseError> {
    let mut now = Timestamp::from_second(1_800_000_000).unwrap();
    let mut state: Option<EnvState> = None;
    let mut expected = 0u8;
    // (incident key) -> attempt times
    let mut attempts: BTreeMap<(CommitId, Timestamp), Vec<Timestamp>> = BTreeMap::new();
    let mut raised: BTreeMap<(CommitId, Timestamp, AlarmKind), u32> = BTreeMap::new();
    let mut open: BTreeMap<AlarmKind, bool> = BTreeMap::new();

    for s in steps {
        now = after(now, Duration::from_secs(s.dt));
        expected = (expected + s.expected) % 4;
        let exp = commit(expected);
        let a = Assessment::of_statuses(s.statuses.iter().copied());
        let d = reconcile(&exp, &a, state.as_ref(), policy, now);

        // Invariant 9: same inputs, same outputs.
        let again = reconcile(&exp, &a, state.as_ref(), policy, now);
        prop_assert_eq!(&again, &d, "invariant 9: deterministic");

        let remediated: Vec<u32> = d
            .actions
            .iter()
            .filter_map(|x| match x {
                Action::Remediate { attempt } => Some(*attempt),
                _ => None,
            })
            .collect();

        // Invariant 1: in sync → no remediation, phase in_sync, no incident.
        if a.in_sync {
            prop_assert!(remediated.is_empty(), "invariant 1: remediated an in-sync environment");
            prop_assert_eq!(d.phase, Phase::InSync);
            prop_assert!(d.state.incident.is_none());
            prop_assert!(
                !d.actions.iter().any(|x| matches!(x, Action::Alarm { change: AlarmChange::Raised, .. })),
                "invariant 1: no new alarm when in sync"
            );
        }
        // Invariant 7: probe failures never count as in sync and alone never remediate.
        if a.probe_failure {
            prop_assert_ne!(d.phase, Phase::InSync, "invariant 7: failure counted as in sync");
            if !a.remediable && !a.diverged {
                prop_assert!(remediated.is_empty(), "invariant 7: remediated on probe failure");
            }
        }
        // Invariant 8: observe mode never remediates.
        if policy.mode == Mode::Observe {
            prop_assert!(remediated.is_empty(), "invariant 8: observe mode remediated");
        }
        // Invariant 6: diverged with on_diverged = alarm never remediates.
        if a.diverged && policy.on_diverged == OnDiverged::Alarm {
            prop_assert!(remediated.is_empty(), "invariant 6: overwrote a diverged target");
        }
        // Invariant 2: within grace, no remediation and no drift/diverged alarm.
        let since = d.state.expected.as_ref().map(|e| e.since).unwrap_or(now);
        if now < after(since, policy.grace) {
            prop_assert!(remediated.is_empty(), "invariant 2: remediated within grace");
            prop_assert!(
                !d.actions.iter().any(|x| matches!(x, Action::Alarm { change: AlarmChange::Raised, kind, .. } if *kind != AlarmKind::Unreachable)),
                "invariant 2: alarm within grace"
            );
        }
        // Invariant 3: at most max_attempts per incident, spaced by the backoff rule.
        prop_assert!(remediated.len() <= 1, "at most one remediation in flight per environment");
        if let (Some(attempt), Some(inc)) = (remediated.first(), &d.state.incident) {
            let list = attempts.entry((exp, inc.since)).or_default();
            if let Some(&last) = list.last() {
                let gap = policy.gap_after_attempt(*attempt - 1);
                prop_assert!(now >= after(last, gap), "invariant 3: attempt {} too early", attempt);
            }
            list.push(now);
            prop_assert_eq!(list.len() as u32, *attempt);
            prop_assert!(*attempt <= policy.max_attempts, "invariant 3: more than max_attempts");
        }
        // Invariant 4/5/6: each alarm raised at most once per incident, resolved exactly once.
        for x in &d.actions {
            if let Action::Alarm { change, kind, .. } = x {
                let is_open = open.entry(*kind).or_insert(false);
                match change {
                    AlarmChange::Raised => {
                        prop_assert!(!*is_open, "raised {:?} twice without resolving", kind);
                        *is_open = true;
                        if *kind != AlarmKind::Unreachable {
                            let inc = d.state.incident.as_ref().map(|i| i.since);
                            prop_assert!(inc.is_some(), "an incident alarm without an incident");
                            let n = raised.entry((exp, inc.unwrap_or(now), *kind)).or_default();
                            *n += 1;
                            prop_assert_eq!(*n, 1, "invariant 4: second {:?} alarm in one incident", kind);
                        }
                    }
                    AlarmChange::Resolved(_) => {
                        prop_assert!(*is_open, "resolved {:?} that was not open", kind);
                        *is_open = false;
                    }
                    AlarmChange::Repeated => prop_assert!(*is_open, "repeated a closed alarm"),
                }
            }
        }
        // The state's open alarms agree with the actions seen.
        for kind in [AlarmKind::Drift, AlarmKind::Diverged, AlarmKind::Unreachable] {
            prop_assert_eq!(d.state.alarm(kind).is_some(), open.get(&kind).copied().unwrap_or(false));
        }
        // Invariant 5: after a new expected commit, no incident alarm of the old one survives.
        if d.events.iter().any(|e| matches!(e, EventKind::ExpectedChanged { .. })) {
            let inc = d.state.incident.as_ref();
            prop_assert!(
                inc.is_none_or(|i| i.attempts <= 1 && i.since == now),
                "invariant 5: incident survived"
            );
            for kind in [AlarmKind::Drift, AlarmKind::Diverged] {
                prop_assert!(
                    d.state.alarm(kind).is_none_or(|al| al.since == now),
                    "invariant 5: alarm survived"
                );
            }
        }
        // An open alarm means the alarm phase.
        if !d.state.alarms.is_empty() {
            prop_assert_eq!(d.phase, Phase::Alarm);
        }
        // Renotify: never more often than `renotify`.
        if let Some(prev) = &state {
            for x in &d.actions {
                if let Action::Alarm { change: AlarmChange::Repeated, kind, .. } = x {
                    prop_assert!(!policy.renotify.is_zero(), "repeated with renotify = 0");
                    let last = prev.alarm(*kind).and_then(|al| al.last_notified_at).unwrap_or(now);
                    prop_assert!(now >= after(last, policy.renotify), "repeated too early");
                }
            }
        }
        state = Some(d.state);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Invariants 1–9 over random policies and random histories.
    #[test]
    fn invariants_hold_over_random_histories(policy in policy(), steps in prop::collection::vec(step(), 1..120)) {
        check(&policy, &steps)?;
    }

    /// Invariants 3 and 4 under sustained drift: exactly `max_attempts` remediations, then one alarm.
    #[test]
    fn sustained_drift_uses_every_attempt_then_alarms_once(policy in policy(), dts in prop::collection::vec(1u64..900, 50..200)) {
        let policy = Policy { mode: Mode::Remediate, ..policy };
        let mut steps = vec![Step { dt: 0, expected: 0, statuses: vec![Status::InSync] }];
        steps.extend(dts.iter().map(|&dt| Step { dt, expected: 0, statuses: vec![Status::Behind] }));
        check(&policy, &steps)?;
        // Replay to count.
        let mut now = Timestamp::from_second(1_800_000_000).unwrap();
        let mut state = None;
        let (mut remediations, mut raises) = (0, 0);
        for s in &steps {
            now = after(now, Duration::from_secs(s.dt));
            let d = reconcile(&commit(0), &Assessment::of_statuses(s.statuses.iter().copied()), state.as_ref(), &policy, now);
            remediations += d.actions.iter().filter(|a| matches!(a, Action::Remediate { .. })).count();
            raises += d.actions.iter().filter(|a| matches!(a, Action::Alarm { change: AlarmChange::Raised, .. })).count();
            state = Some(d.state);
        }
        prop_assert!(remediations as u32 <= policy.max_attempts);
        prop_assert!(raises <= 1);
        // With enough time every attempt is used and the alarm raised.
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
