//! SPEC §7's promises: the real `reconcile` against the independent model in
//! `gitstate_testkit::model`, over random histories.

use std::collections::BTreeMap;
use std::time::Duration;

use gitstate_core::*;
use gitstate_testkit::model::{self, Expect, KEEP, Model, Pass, commit, plus};
use jiff::Timestamp;
use proptest::prelude::*;

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
        if p.commit != KEEP && (i == 0 || p.commit != current) {
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

        // A decision never asks to be looked at again in its own instant: the loop would
        // pass it over and over without time moving.
        prop_assert!(
            d.requeue_after.is_none_or(|r| !r.is_zero()),
            "pass {}: looked at again after 0s ({:?})",
            i,
            d.reason
        );

        // The promises, on the real output alone.
        let limit = max_attempts.entry(epoch).or_insert(0);
        *limit = (*limit).max(policy.max_attempts);
        if got.deploy.is_some() {
            *deploys.entry(epoch).or_default() += 1;
            prop_assert!(deploys[&epoch] <= *limit, "more deploys than max_attempts for one expected commit");
            prop_assert!(policy.mode == Mode::Remediate, "invariant 8: observe mode deployed");
            // Written from SPEC §7, not read from the assessment under test.
            let hotfix = p
                .statuses
                .iter()
                .any(|s| matches!(s, Status::Diverged | Status::UnknownCommit | Status::Drifted));
            prop_assert!(
                !(hotfix && policy.on_diverged == OnDiverged::Alarm),
                "invariant 6: deployed over a possible hotfix"
            );
            let in_sync = !p.statuses.is_empty() && p.statuses.iter().all(|s| *s == Status::InSync);
            prop_assert!(!in_sync, "invariant 1: deployed an in-sync environment");
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
        policies in (model::policy(), model::policy()),
        passes in prop::collection::vec(model::pass(), 1..150),
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
            let d = reconcile(commit(0), &Assessment::of_statuses(statuses), state.as_ref(), &policy, now);
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

    /// Invariants 3 and 4 under sustained drift: each remediation at the very pass SPEC §7
    /// says, at most `max_attempts` of them, then one alarm at the pass it is due.
    #[test]
    fn sustained_drift_uses_every_attempt_then_alarms_once(policy in model::policy(), dts in prop::collection::vec(1u64..900, 50..200)) {
        let policy = Policy { mode: Mode::Remediate, ..policy };
        let pass = |dt, status| Pass { dt, commit: 0, reflog_ago: None, statuses: vec![status], policy: 0 };
        let mut passes = vec![pass(0, Status::InSync)];
        passes.extend(dts.iter().map(|&dt| pass(dt, Status::Behind)));
        replay(&[policy.clone(), policy.clone()], &passes)?;
        let mut now = Timestamp::from_second(1_800_000_000).unwrap();
        let mut state = None;
        // Which passes remediated and raised the alarm (index 0: the in-sync pass).
        let (mut remediated, mut raised) = (Vec::new(), Vec::new());
        for (i, p) in passes.iter().enumerate() {
            now = plus(now, Duration::from_secs(p.dt));
            let d = reconcile(commit(0), &Assessment::of_statuses(p.statuses.iter().copied()), state.as_ref(), &policy, now);
            if d.actions.iter().any(|a| matches!(a, Action::Remediate { .. })) {
                remediated.push(i);
            }
            if d.actions.iter().any(|a| matches!(a, Action::Alarm { change: AlarmChange::Raised, .. })) {
                raised.push(i);
            }
            state = Some(d.state);
        }
        // What SPEC §7 says must happen, worked out here pass by pass from the pass times
        // alone (the gap computed from its formula, not taken from the code): attempt 1 at
        // the first pass once grace has run from the commit's arrival, attempt n+1 at the
        // first pass at least max(settle, min(backoff·2^(n-1), backoff_max)) after attempt
        // n, and once every attempt is spent, the alarm at the first pass after the last
        // attempt's settle time (and never within grace: with no attempt allowed, the
        // alarm comes when grace ends).
        let gap = |n: u32| {
            let doubled = policy.backoff.saturating_mul(1u32.checked_shl(n - 1).unwrap_or(u32::MAX));
            policy.settle.max(doubled.min(policy.backoff_max))
        };
        let (mut t, mut due, mut last) = (0u64, policy.grace.as_secs(), 0u64);
        let (mut attempts, mut alarm) = (Vec::new(), Vec::new());
        for (i, &dt) in dts.iter().enumerate() {
            let i = i + 1;
            t += dt;
            let n = attempts.len() as u32;
            if n < policy.max_attempts && t >= due {
                attempts.push(i);
                last = t;
                due = t.saturating_add(gap(n + 1).as_secs());
            } else if n == policy.max_attempts
                && alarm.is_empty()
                && t >= policy.grace.as_secs()
                && (n == 0 || t >= last.saturating_add(policy.settle.as_secs()))
            {
                alarm.push(i);
            }
        }
        prop_assert_eq!(remediated, attempts, "the passes that remediated");
        prop_assert_eq!(raised, alarm, "the pass that raised the alarm");
    }
}
