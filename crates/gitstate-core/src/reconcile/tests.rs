//! Table tests: one block per invariant of SPEC §7.

use std::time::Duration;

use jiff::Timestamp;

use super::*;
use crate::alarm::AlarmChange;
use crate::observation::Status;

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

fn commit(c: char) -> CommitId {
    CommitId::parse(&c.to_string().repeat(40)).unwrap()
}

fn policy() -> Policy {
    Policy {
        grace: Duration::from_secs(60),
        settle: Duration::from_secs(30),
        max_attempts: 3,
        backoff: Duration::from_secs(60),
        backoff_max: Duration::from_secs(600),
        unreachable_after: 3,
        renotify: Duration::from_secs(3600),
        ..Policy::default()
    }
}

fn of(statuses: &[Status]) -> Assessment {
    Assessment::of_statuses(statuses.iter().copied())
}

const SYNC: &[Status] = &[Status::InSync, Status::InSync];
const BEHIND: &[Status] = &[Status::InSync, Status::Behind];
const DIVERGED: &[Status] = &[Status::Diverged];
const DOWN: &[Status] = &[Status::Unreachable];

/// Runs a script of `(second, expected, statuses)` passes and returns every decision.
fn run(policy: &Policy, script: &[(i64, char, &[Status])]) -> Vec<Decision> {
    let mut state: Option<EnvState> = None;
    let mut out = Vec::new();
    for &(t, c, st) in script {
        let d = reconcile(commit(c), &of(st), state.as_ref(), policy, at(t));
        state = Some(d.state.clone());
        out.push(d);
    }
    out
}

fn remediations(ds: &[Decision]) -> Vec<u32> {
    ds.iter()
        .flat_map(|d| &d.actions)
        .filter_map(|a| match a {
            Action::Remediate { attempt } => Some(*attempt),
            _ => None,
        })
        .collect()
}

fn alarms(d: &Decision) -> Vec<(AlarmChange, AlarmKind)> {
    d.actions
        .iter()
        .filter_map(|a| match a {
            Action::Alarm { change, kind, .. } => Some((*change, *kind)),
            _ => None,
        })
        .collect()
}

fn lags(ds: &[Decision]) -> Vec<f64> {
    ds.iter()
        .flat_map(|d| &d.events)
        .filter_map(|e| match e {
            EventKind::Converged { lag_s: Some(lag_s), .. } => Some(*lag_s),
            _ => None,
        })
        .collect()
}

#[test]
fn inv1_in_sync_gets_nothing_and_first_pass_records_no_lag() {
    let ds = run(&policy(), &[(0, 'a', SYNC), (10, 'a', SYNC)]);
    for d in &ds {
        assert_eq!(d.phase, Phase::InSync);
        assert!(d.actions.is_empty());
        assert_eq!(d.reason, Reason::InSync);
    }
    assert!(lags(&ds).is_empty(), "the first pass cannot know when the ref moved");
    assert_eq!(ds[1].state.last_in_sync_at, Some(at(10)));
    assert_eq!(ds[1].state.last_convergence_lag_s, None);
}

#[test]
fn inv1_lag_is_recorded_once_per_expected_commit() {
    let ds = run(
        &policy(),
        &[
            (0, 'a', SYNC),
            (100, 'b', BEHIND),
            (130, 'b', BEHIND),
            (145, 'b', SYNC),
            (150, 'b', BEHIND),
            (200, 'b', SYNC),
        ],
    );
    assert_eq!(lags(&ds), [45.0]);
    assert_eq!(ds[5].state.last_convergence_lag_s, Some(45.0));
}

#[test]
fn inv1_lag_is_zero_when_already_in_sync_on_the_pass_that_saw_it() {
    let ds = run(&policy(), &[(0, 'a', SYNC), (100, 'b', SYNC)]);
    assert_eq!(lags(&ds), [0.0]);
    assert!(matches!(ds[1].events[0], EventKind::ExpectedChanged { .. }));
}

#[test]
fn inv1_open_alarm_resolved_on_first_in_sync_pass() {
    let p = Policy { grace: Duration::ZERO, max_attempts: 0, ..policy() };
    let ds = run(&p, &[(0, 'a', SYNC), (10, 'b', BEHIND), (20, 'b', SYNC), (30, 'b', SYNC)]);
    assert_eq!(alarms(&ds[1]), [(AlarmChange::Raised, AlarmKind::Drift)]);
    assert_eq!(alarms(&ds[2]), [(AlarmChange::Resolved(Resolution::Converged), AlarmKind::Drift)]);
    assert!(ds[3].actions.is_empty());
    assert!(ds[2].state.alarms.is_empty());
}

#[test]
fn inv1_a_reflog_time_gives_a_lag_even_on_the_first_pass() {
    let e = ExpectedCommit { commit: commit('a'), moved_at: Some(at(-30)) };
    let d = reconcile(e, &of(SYNC), None, &policy(), at(0));
    assert_eq!(d.state.last_convergence_lag_s, Some(30.0));
    assert_eq!(
        d.events,
        [EventKind::Converged { expected: commit('a'), lag_s: Some(30.0), lag_from: crate::LagFrom::Reflog }]
    );
}

#[test]
fn inv1_an_incident_first_seen_on_the_first_pass_gets_a_converged_event_without_lag() {
    let ds = run(&policy(), &[(0, 'a', BEHIND), (90, 'a', SYNC)]);
    assert_eq!(
        ds[1].events,
        [EventKind::Converged { expected: commit('a'), lag_s: None, lag_from: crate::LagFrom::FirstSeen }]
    );
    assert_eq!(ds[1].state.last_convergence_lag_s, None);
}

#[test]
fn inv2_within_grace_drift_is_converging() {
    let ds = run(
        &policy(),
        &[(0, 'a', SYNC), (100, 'b', BEHIND), (130, 'b', BEHIND), (159, 'b', BEHIND), (160, 'b', BEHIND)],
    );
    for d in &ds[1..4] {
        assert_eq!(d.phase, Phase::Converging);
        assert!(d.actions.is_empty(), "{:?}", d.actions);
        assert!(matches!(d.reason, Reason::WithinGrace { until } if until == at(160)));
    }
    assert_eq!(ds[2].requeue_after, Some(Duration::from_secs(30)));
    assert_eq!(remediations(&ds[4..]), [1]);
    assert_eq!(ds[4].phase, Phase::Remediating);
}

#[test]
fn inv3_attempts_are_capped_and_spaced_by_the_backoff_rule() {
    let p = Policy { grace: Duration::ZERO, ..policy() };
    let mut script: Vec<(i64, char, &[Status])> = vec![(0, 'a', SYNC)];
    script.extend((1..=2000).map(|t| (t, 'b', BEHIND)));
    let ds = run(&p, &script);
    let when: Vec<i64> = ds
        .iter()
        .enumerate()
        .filter(|(_, d)| d.actions.iter().any(|a| matches!(a, Action::Remediate { .. })))
        .map(|(i, _)| script[i].0)
        .collect();
    // gap(1) = max(30, 60) = 60, gap(2) = 120
    assert_eq!(when, [1, 61, 181]);
    assert_eq!(remediations(&ds), [1, 2, 3]);
    assert_eq!(ds[30].phase, Phase::Remediating);
    assert_eq!(ds[45].phase, Phase::BackingOff);
    assert!(matches!(ds[45].reason, Reason::BackingOff { attempt: 1, until } if until == at(61)));
}

#[test]
fn inv4_one_drift_alarm_after_the_last_settle_renotified_and_resolved_once() {
    let p = Policy { grace: Duration::ZERO, max_attempts: 1, settle: Duration::from_secs(30), ..policy() };
    let mut script: Vec<(i64, char, &[Status])> = vec![(0, 'a', SYNC)];
    script.extend((1..=8000).step_by(10).map(|t| (t, 'b', BEHIND)));
    script.push((9000, 'b', SYNC));
    script.push((9010, 'b', SYNC));
    let ds = run(&p, &script);
    let all: Vec<(i64, AlarmChange)> =
        ds.iter().zip(&script).flat_map(|(d, s)| alarms(d).into_iter().map(move |(c, _)| (s.0, c))).collect();
    assert_eq!(
        all,
        [
            (31, AlarmChange::Raised),
            (3631, AlarmChange::Repeated),
            (7231, AlarmChange::Repeated),
            (9000, AlarmChange::Resolved(Resolution::Converged)),
        ]
    );
    assert_eq!(remediations(&ds), [1]);
    let raised = ds.iter().position(|d| d.phase == Phase::Alarm).unwrap();
    assert_eq!(script[raised].0, 31);
    assert_eq!(ds[raised].reason, Reason::AttemptsExhausted { attempts: 1 });
}

#[test]
fn inv3_a_flapping_target_reopens_its_incident_with_its_attempts() {
    // grace 60, settle 30, backoff 60, 3 attempts: in sync, then behind / in sync in turns.
    let mut script = vec![(0, 'a', SYNC)];
    for i in 1..40 {
        script.push((i * 40, 'a', if i % 2 == 1 { BEHIND } else { SYNC }));
    }
    let ds = run(&policy(), &script);
    assert_eq!(remediations(&ds), [1, 2, 3], "one count for the expected commit, however often it flaps");
    let raised: Vec<usize> = (0..ds.len())
        .filter(|&i| alarms(&ds[i]).contains(&(AlarmChange::Raised, AlarmKind::Drift)))
        .collect();
    assert_eq!(raised.len(), 1, "one drift alarm, not one per flap");
    let resolved = ds.iter().flat_map(alarms).filter(|(c, _)| matches!(c, AlarmChange::Resolved(_))).count();
    assert_eq!(resolved, 0, "in sync for 40 s at a time is less than keep_firing_for");
    // Only a new expected commit resets the count.
    let last = ds.last().unwrap().state.clone();
    let d = reconcile(commit('b'), &of(BEHIND), Some(&last), &policy(), at(2000));
    let inc = d.state.incident.as_ref().unwrap();
    assert_eq!((inc.attempts, inc.since, inc.flapping), (0, at(2000), false), "a fresh incident");
    assert!(alarms(&d).contains(&(AlarmChange::Resolved(Resolution::Superseded), AlarmKind::Drift)));
}

#[test]
fn inv4_a_flapping_alarm_resolves_after_keep_firing_for_in_sync() {
    let p = Policy { max_attempts: 0, keep_firing_for: Duration::from_secs(300), ..policy() };
    // In sync, drifts (alarm at once: no attempts), in sync again for 299 s, drift, in sync 300 s.
    let ds = run(
        &p,
        &[
            (0, 'a', SYNC),
            (100, 'a', BEHIND),
            (200, 'a', SYNC),
            (499, 'a', SYNC),
            (500, 'a', BEHIND),
            (600, 'a', SYNC),
            (899, 'a', SYNC),
            (900, 'a', SYNC),
        ],
    );
    assert_eq!(alarms(&ds[1]), [(AlarmChange::Raised, AlarmKind::Drift)]);
    for d in &ds[2..7] {
        assert!(alarms(d).is_empty(), "{:?}", d.reason);
        assert_eq!(d.phase, Phase::Alarm);
    }
    assert_eq!(ds[2].reason, Reason::KeepFiring { until: at(500) });
    assert_eq!(ds[2].requeue_after, Some(Duration::from_secs(300)), "looked at again when it may resolve");
    assert_eq!(alarms(&ds[7]), [(AlarmChange::Resolved(Resolution::Converged), AlarmKind::Drift)]);
    assert_eq!(ds[7].phase, Phase::InSync);
}

#[test]
fn inv4_renotify_zero_never_repeats() {
    let p = Policy { grace: Duration::ZERO, max_attempts: 0, renotify: Duration::ZERO, ..policy() };
    let mut script: Vec<(i64, char, &[Status])> = vec![(0, 'a', SYNC)];
    script.extend((1..=100_000).step_by(1000).map(|t| (t, 'b', BEHIND)));
    let ds = run(&p, &script);
    let n: usize = ds.iter().map(|d| alarms(d).len()).sum();
    assert_eq!(n, 1);
}

#[test]
fn inv5_new_expected_commit_supersedes_the_incident() {
    let p = Policy { grace: Duration::from_secs(10), max_attempts: 1, ..policy() };
    let ds = run(
        &p,
        &[
            (0, 'a', SYNC),
            (100, 'b', BEHIND),
            (110, 'b', BEHIND),
            (200, 'b', BEHIND),
            (300, 'c', BEHIND),
            (305, 'c', BEHIND),
            (310, 'c', BEHIND),
        ],
    );
    assert_eq!(alarms(&ds[3]), [(AlarmChange::Raised, AlarmKind::Drift)]);
    assert_eq!(alarms(&ds[4]), [(AlarmChange::Resolved(Resolution::Superseded), AlarmKind::Drift)]);
    // The alarm raised for b and resolved when c came is about b, not c.
    let about = |d: &Decision| match d.actions[..] {
        [Action::Alarm { expected, .. }] => expected,
        ref other => panic!("{other:?}"),
    };
    assert_eq!((about(&ds[3]), about(&ds[4])), (commit('b'), commit('b')));
    let inc = ds[4].state.incident.as_ref().unwrap();
    assert_eq!((inc.attempts, inc.since), (0, at(300)));
    assert_eq!(ds[4].phase, Phase::Converging, "fresh grace");
    assert!(ds[5].actions.is_empty());
    assert_eq!(remediations(&ds[6..]), [1], "zero attempts in the new incident");
}

#[test]
fn inv6_diverged_raises_its_alarm_after_grace_and_is_never_redeployed() {
    let p = Policy { grace: Duration::from_secs(10), ..policy() };
    let mixed: &[Status] = &[Status::Behind, Status::Diverged];
    let unknown: &[Status] = &[Status::UnknownCommit];
    let mut script: Vec<(i64, char, &[Status])> = vec![(0, 'a', SYNC), (100, 'b', DIVERGED)];
    script.extend((101..3000).step_by(7).map(|t| (t, 'b', if t % 2 == 0 { mixed } else { unknown })));
    let ds = run(&p, &script);
    assert!(remediations(&ds).is_empty());
    assert_eq!(ds[1].phase, Phase::Converging);
    let raised: Vec<_> = ds.iter().flat_map(alarms).collect();
    assert_eq!(raised, [(AlarmChange::Raised, AlarmKind::Diverged)]);
    assert_eq!(ds.last().unwrap().phase, Phase::Alarm);
    assert_eq!(ds.last().unwrap().reason, Reason::DivergedHeld);

    let p = Policy { on_diverged: OnDiverged::Remediate, grace: Duration::ZERO, ..policy() };
    let ds = run(&p, &[(0, 'a', SYNC), (1, 'b', DIVERGED)]);
    assert_eq!(remediations(&ds), [1]);
}

#[test]
fn inv6_drifted_fails_closed_like_diverged() {
    let drifted: &[Status] = &[Status::Drifted];
    let ds = run(&policy(), &[(0, 'a', SYNC), (10, 'b', drifted), (100, 'b', drifted)]);
    assert!(remediations(&ds).is_empty(), "an unknown relation may be a hotfix");
    assert_eq!(alarms(&ds[2]), [(AlarmChange::Raised, AlarmKind::Diverged)]);
    let p = Policy { on_diverged: OnDiverged::Remediate, ..policy() };
    let ds = run(&p, &[(0, 'a', SYNC), (10, 'b', drifted), (100, 'b', drifted)]);
    assert_eq!(remediations(&ds), [1]);
}

#[test]
fn inv7_probe_failures_never_sync_never_remediate_and_alarm_after_n_passes() {
    let p = Policy { grace: Duration::ZERO, ..policy() };
    let ds = run(
        &p,
        &[
            (0, 'a', DOWN),
            (10, 'a', DOWN),
            (20, 'a', DOWN),
            (30, 'a', DOWN),
            (40, 'a', SYNC),
            (50, 'a', SYNC),
        ],
    );
    assert!(remediations(&ds).is_empty());
    assert!(ds[..4].iter().all(|d| d.phase != Phase::InSync));
    assert_eq!(ds[1].phase, Phase::Converging);
    assert_eq!(ds[1].reason, Reason::ProbeFailing { passes: 2 });
    assert!(alarms(&ds[1]).is_empty());
    assert_eq!(alarms(&ds[2]), [(AlarmChange::Raised, AlarmKind::Unreachable)]);
    assert!(alarms(&ds[3]).is_empty());
    assert_eq!(alarms(&ds[4]), [(AlarmChange::Resolved(Resolution::Cleared), AlarmKind::Unreachable)]);
    assert!(alarms(&ds[5]).is_empty());
    for bad in [Status::Invalid, Status::Missing] {
        let ds = run(&p, &[(0, 'a', &[Status::InSync, bad])]);
        assert_ne!(ds[0].phase, Phase::InSync);
    }
}

#[test]
fn inv8_observe_mode_never_remediates() {
    let p = Policy { mode: Mode::Observe, grace: Duration::from_secs(60), ..policy() };
    let ds = run(
        &p,
        &[(0, 'a', SYNC), (10, 'b', BEHIND), (50, 'b', BEHIND), (80, 'b', BEHIND), (5000, 'b', BEHIND)],
    );
    assert!(remediations(&ds).is_empty());
    assert_eq!(ds[1].phase, Phase::Observing);
    assert_eq!(ds[3].phase, Phase::Alarm);
    assert_eq!(alarms(&ds[3]), [(AlarmChange::Raised, AlarmKind::Drift)]);
    assert_eq!(alarms(&ds[4]), [(AlarmChange::Repeated, AlarmKind::Drift)]);
}

#[test]
fn inv9_deterministic_and_clock_free() {
    let p = policy();
    let prior = run(&p, &[(0, 'a', SYNC), (10, 'b', BEHIND)]).pop().unwrap().state;
    let one = reconcile(commit('b'), &of(BEHIND), Some(&prior), &p, at(500));
    let two = reconcile(commit('b'), &of(BEHIND), Some(&prior), &p, at(500));
    assert_eq!(one, two);
}

#[test]
fn reasons_read_well() {
    let r = Reason::AttemptsExhausted { attempts: 3 }.to_string();
    assert_eq!(r, "still drifted after 3 remediation attempt(s)");
    assert!(Reason::WithinGrace { until: at(0) }.to_string().starts_with("drift within grace until 2027-"));
}

/// SPEC §9: suspended and frozen environments are probed and reported, never acted on, and
/// no attempt is consumed; a retry starts the attempts over, once per request.
#[test]
fn controls_suspend_freeze_and_retry() {
    let p = Policy { grace: Duration::ZERO, max_attempts: 1, ..policy() };
    let suspended = Controls { suspended: Some(Some(at(100))), ..Controls::default() };
    let d = reconcile_with(commit('a'), &of(BEHIND), None, &p, suspended.clone(), at(0));
    assert_eq!((d.phase, d.reason), (Phase::Suspended, Reason::Suspended { until: Some(at(100)) }));
    assert!(remediations(std::slice::from_ref(&d)).is_empty());
    assert_eq!(d.requeue_after, Some(Duration::from_secs(100)), "looked at again when it ends");
    assert_eq!(d.state.incident.as_ref().unwrap().attempts, 0, "no attempt consumed");
    // The suspension over, the loop acts.
    let d = reconcile_with(commit('a'), &of(BEHIND), Some(&d.state), &p, suspended, at(100));
    assert_eq!(remediations(std::slice::from_ref(&d)), [1]);

    let frozen = Controls { frozen_until: Some(at(300)), ..Controls::default() };
    let d2 = reconcile_with(commit('a'), &of(BEHIND), Some(&d.state), &p, frozen, at(200));
    assert_eq!(d2.phase, Phase::Frozen);
    assert!(alarms(&d2).is_empty(), "no drift alarm while frozen, though attempts are exhausted");
    let d3 = reconcile(commit('a'), &of(BEHIND), Some(&d2.state), &p, at(400));
    assert_eq!(alarms(&d3), [(AlarmChange::Raised, AlarmKind::Drift)]);

    // Retry: a fresh attempt at once, past max_attempts; the same request is applied once.
    let retry = Controls { retry_requested_at: Some(at(450)), ..Controls::default() };
    let d4 = reconcile_with(commit('a'), &of(BEHIND), Some(&d3.state), &p, retry.clone(), at(460));
    assert_eq!(remediations(std::slice::from_ref(&d4)), [1]);
    let d5 = reconcile_with(commit('a'), &of(BEHIND), Some(&d4.state), &p, retry, at(2000));
    assert!(remediations(std::slice::from_ref(&d5)).is_empty(), "one retry per request");
}

/// `drift_detected` is written when an incident opens (or reopens after an in-sync pass),
/// not on every pass of the same incident.
#[test]
fn drift_detected_once_per_opening() {
    let p = policy();
    let ds = run(
        &p,
        &[
            (0, 'a', SYNC),
            (10, 'a', BEHIND),
            (20, 'a', BEHIND),
            (30, 'a', BEHIND),
            (40, 'a', SYNC),
            (50, 'a', BEHIND),
        ],
    );
    let opened: Vec<usize> = ds
        .iter()
        .enumerate()
        .filter(|(_, d)| d.events.iter().any(|e| matches!(e, EventKind::DriftDetected { .. })))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(opened, [1, 5]);
}

/// In sync while suspended or frozen: the phase says so (an operator looking at
/// `status` sees why nothing would be done); a flapping drift alarm held open by
/// `keep_firing_for` still shows as `alarm`.
#[test]
fn in_sync_while_suspended_shows_suspended() {
    let p = policy();
    let suspended = Controls { suspended: Some(None), ..Controls::default() };
    let d = reconcile_with(commit('a'), &of(SYNC), None, &p, suspended.clone(), at(0));
    assert_eq!(d.phase, Phase::Suspended);
    let frozen = Controls { frozen_until: Some(at(100)), ..Controls::default() };
    let d = reconcile_with(commit('a'), &of(SYNC), None, &p, frozen, at(0));
    assert_eq!(d.phase, Phase::Frozen);
    assert_eq!(d.requeue_after, Some(Duration::from_secs(100)));
    let d = reconcile_with(commit('a'), &of(SYNC), None, &p, Controls::default(), at(0));
    assert_eq!(d.phase, Phase::InSync);

    // Flapping with the drift alarm open, then in sync while suspended: still `alarm`.
    let p = Policy {
        grace: Duration::ZERO,
        max_attempts: 0,
        keep_firing_for: Duration::from_secs(600),
        ..policy()
    };
    let ds = run(&p, &[(0, 'a', SYNC), (10, 'a', BEHIND)]);
    assert_eq!(ds[1].phase, Phase::Alarm);
    let d = reconcile_with(commit('a'), &of(SYNC), Some(&ds[1].state), &p, suspended, at(20));
    assert_eq!((d.phase, d.reason), (Phase::Alarm, Reason::KeepFiring { until: at(620) }));
}

fn verifying_policy(rollback: bool) -> Policy {
    use crate::verify::{OnDegraded, Verify};
    Policy {
        grace: Duration::ZERO,
        verify: Some(Verify {
            soak: Duration::from_secs(60),
            every: Duration::from_secs(10),
            failures: 2,
            on_degraded: if rollback { OnDegraded::Rollback } else { OnDegraded::Alarm },
            ..Verify::default()
        }),
        ..policy()
    }
}

fn runs(ok: bool) -> Vec<crate::verify::CheckRun> {
    vec![crate::verify::CheckRun {
        check: "smoke".into(),
        result: if ok { Ok(()) } else { Err("5xx".into()) },
    }]
}

/// SPEC §15: a commit in sync is soaked, then verified; the next one fails its checks
/// twice, is degraded (one alarm) and rolled back to the last verified commit — the
/// newest of several; drift during a soak ends it.
#[test]
fn a_soak_verifies_or_degrades_and_rolls_back_to_the_last_verified_commit() {
    let p = verifying_policy(true);
    let c = Controls::default();
    let step = |e: char, st: &[Status], prior: Option<&EnvState>, ok: Option<bool>, t: i64| {
        let checks = ok.map(runs).unwrap_or_default();
        reconcile_checked(commit(e), &of(st), prior, &p, c.clone(), &checks, at(t))
    };
    let d = step('a', SYNC, None, Some(true), 0);
    assert_eq!((d.phase, d.reason), (Phase::Verifying, Reason::Verifying { until: at(60) }));
    assert!(d.events.iter().any(|e| matches!(e, EventKind::VerificationStarted { .. })));
    assert_eq!(d.requeue_after, Some(Duration::from_secs(10)), "the next run of the checks");
    let d = step('a', SYNC, Some(&d.state), None, 60);
    assert_eq!(d.phase, Phase::InSync);
    assert_eq!(d.state.verified, [commit('a')]);
    // Drift ends a soak; it starts again once in sync.
    let d = step('c', SYNC, Some(&d.state), Some(true), 100);
    let d = step('c', BEHIND, Some(&d.state), None, 110);
    assert!(d.state.verification.as_ref().is_none_or(|v| v.sha != commit('c')), "{:?}", d.state.verification);
    let d = step('c', SYNC, Some(&d.state), Some(true), 120);
    assert_eq!(d.reason, Reason::Verifying { until: at(180) });
    let d = step('c', SYNC, Some(&d.state), None, 180);
    assert_eq!(d.state.verified, [commit('a'), commit('c')]);
    // A bad commit: two failed runs → degraded, rolled back to c (the newest verified).
    let d = step('b', SYNC, Some(&d.state), Some(false), 200);
    assert_eq!(d.phase, Phase::Verifying);
    assert!(d.actions.is_empty());
    let d = step('b', SYNC, Some(&d.state), Some(false), 210);
    assert_eq!((d.phase, d.reason), (Phase::Degraded, Reason::Degraded { failures: 2, rollback: true }));
    assert_eq!(alarms(&d), [(AlarmChange::Raised, AlarmKind::Degraded)]);
    assert!(d.actions.contains(&Action::Rollback { from: commit('b'), to: commit('c') }), "{:?}", d.actions);
    // Degraded stays degraded, raised once, never rolled back twice.
    let d = step('b', SYNC, Some(&d.state), None, 220);
    assert_eq!(d.phase, Phase::Degraded);
    assert!(d.actions.is_empty(), "{:?}", d.actions);
}

/// No rollback in observe mode, under `on_degraded = "alarm"`, or while suspended: only
/// the alarm, and the reason says a rollback is advised.
#[test]
fn a_degraded_commit_is_not_rolled_back_when_gitstate_may_not_act() {
    let suspended = Controls { suspended: Some(None), ..Controls::default() };
    for (p, c) in [
        (Policy { mode: crate::policy::Mode::Observe, ..verifying_policy(true) }, Controls::default()),
        (verifying_policy(false), Controls::default()),
        (verifying_policy(true), suspended),
    ] {
        let mut state = reconcile_checked(commit('a'), &of(SYNC), None, &p, c.clone(), &[], at(0)).state;
        state.verified = vec![commit('a')];
        let d = reconcile_checked(commit('b'), &of(SYNC), Some(&state), &p, c.clone(), &runs(false), at(10));
        let d =
            reconcile_checked(commit('b'), &of(SYNC), Some(&d.state), &p, c.clone(), &runs(false), at(20));
        assert_eq!(d.reason, Reason::Degraded { failures: 2, rollback: false });
        assert!(!d.actions.iter().any(|a| matches!(a, Action::Rollback { .. })), "{p:?} {c:?}");
    }
}

/// A vetoed commit is never deployed, whoever moved the ref to it: phase and alarm
/// `vetoed`; the veto lifted, the alarm resolves and the loop deploys.
#[test]
fn a_vetoed_commit_is_not_deployed() {
    let p = Policy { grace: Duration::ZERO, ..policy() };
    let vetoed = Controls { vetoed: vec![commit('b')], ..Controls::default() };
    let d = reconcile_with(commit('b'), &of(BEHIND), None, &p, vetoed.clone(), at(0));
    assert_eq!((d.phase, d.reason), (Phase::Vetoed, Reason::Vetoed));
    assert!(remediations(std::slice::from_ref(&d)).is_empty());
    assert_eq!(alarms(&d), [(AlarmChange::Raised, AlarmKind::Vetoed)]);
    // Another commit vetoed is no reason to hold this one.
    let other = Controls { vetoed: vec![commit('c')], ..Controls::default() };
    let d = reconcile_with(commit('b'), &of(BEHIND), Some(&d.state), &p, other, at(10));
    assert_eq!(remediations(std::slice::from_ref(&d)), [1]);
    assert_eq!(alarms(&d), [(AlarmChange::Resolved(Resolution::Cleared), AlarmKind::Vetoed)]);
}

/// A freeze window that ends at this very instant holds nothing: the pass at its end acts.
#[test]
fn a_freeze_window_ending_now_no_longer_holds() {
    let p = Policy { grace: Duration::ZERO, ..policy() };
    let ended = Controls { frozen_until: Some(at(0)), ..Controls::default() };
    let d = reconcile_with(commit('a'), &of(BEHIND), None, &p, ended, at(0));
    assert_eq!(remediations(std::slice::from_ref(&d)), [1], "{:?}", d.reason);
}

/// A veto ends a running soak only when the instances left the commit: vetoed while still
/// in sync, the soak goes on and ends verified once lifted; vetoed while drifting, the
/// soak starts again from the beginning once back in sync.
#[test]
fn a_veto_ends_a_soak_only_when_the_commit_no_longer_runs() {
    let p = verifying_policy(true);
    let vetoed = Controls { vetoed: vec![commit('a')], ..Controls::default() };
    let free = Controls::default();
    let started = |d: &Decision| d.events.iter().any(|e| matches!(e, EventKind::VerificationStarted { .. }));

    let d = reconcile_checked(commit('a'), &of(SYNC), None, &p, free.clone(), &[], at(0));
    assert!(started(&d));
    let d = reconcile_checked(commit('a'), &of(SYNC), Some(&d.state), &p, vetoed.clone(), &[], at(10));
    assert_eq!(d.phase, Phase::Vetoed);
    let d = reconcile_checked(commit('a'), &of(SYNC), Some(&d.state), &p, free.clone(), &[], at(60));
    assert!(!started(&d), "the soak went on under the veto");
    assert_eq!(d.state.verified, [commit('a')]);

    let d = reconcile_checked(commit('b'), &of(SYNC), Some(&d.state), &p, free.clone(), &[], at(100));
    assert!(started(&d));
    let vetoed = Controls { vetoed: vec![commit('b')], ..Controls::default() };
    let d = reconcile_checked(commit('b'), &of(BEHIND), Some(&d.state), &p, vetoed, &[], at(110));
    assert_eq!(d.phase, Phase::Vetoed);
    let d = reconcile_checked(commit('b'), &of(SYNC), Some(&d.state), &p, free, &[], at(160));
    assert!(started(&d), "a soak the veto found drifting starts again");
    assert_eq!(d.reason, Reason::Verifying { until: at(220) });
}

/// Drift does not undo a verdict: a degraded commit that drifts and comes back is still
/// degraded: no second soak, no second alarm.
#[test]
fn drift_after_a_verdict_keeps_it() {
    let p = verifying_policy(false);
    let c = Controls::default();
    let step = |e: char, st: &[Status], prior: Option<&EnvState>, ok: bool, t: i64| {
        reconcile_checked(commit(e), &of(st), prior, &p, c.clone(), &runs(ok), at(t))
    };
    let d = step('b', SYNC, None, false, 0);
    let d = step('b', SYNC, Some(&d.state), false, 10);
    assert_eq!(d.phase, Phase::Degraded);
    let d = step('b', BEHIND, Some(&d.state), true, 20);
    let d = step('b', SYNC, Some(&d.state), true, 30);
    assert!(!d.events.iter().any(|e| matches!(e, EventKind::VerificationStarted { .. })), "{:?}", d.events);
    assert_eq!(d.state.verification.as_ref().map(|v| v.state), Some(VerificationState::Degraded));
    assert_eq!(d.phase, Phase::Degraded);
}
