//! The pure decision function of the closed loop: [`reconcile()`].
//!
//! Given what a pass observed of one environment, what gitstate remembered of it, its
//! [`Policy`] and the time, it decides the next [`EnvState`], the [`Phase`], the
//! [`Action`]s (remediate, raise / repeat / resolve alarms), the audit events and when to
//! look again. It reads no clock, does no I/O and draws no randomness, so every invariant
//! of SPEC §7 is a test here (see `tests.rs`, and `tests/model.rs`: random histories replayed
//! against an independent model of SPEC §7, `gitstate_testkit::model`).

use jiff::Timestamp;

use crate::alarm::{AlarmKind, Resolution};
use crate::commit::CommitId;
use crate::event::EventKind;
use crate::observation::Assessment;
use crate::policy::{Mode, OnDiverged, Policy};
use crate::state::{EnvState, ExpectedRecord, Incident, Phase, after, elapsed};
use crate::verify::{CheckFailure, CheckRun, OnDegraded, VERIFIED_KEPT, Verification, VerificationState};

mod alarms;
mod decision;
#[cfg(test)]
mod tests;

pub use decision::{Action, Controls, Decision, ExpectedCommit, Reason, TrustGate};

/// Decides one environment's next step. Pure: `now` is an input.
///
/// `expected` is the commit the ref points at on this pass (a [`CommitId`], or an
/// [`ExpectedCommit`] with the reflog's time of the move), `assessment` the sum of what was
/// observed, `prior` what the last pass left (`None` on the first pass of a new state).
///
/// ```
/// use gitstate_core::{reconcile, Assessment, CommitId, Phase, Policy, Status};
/// let commit = CommitId::parse("0123456789abcdef0123456789abcdef01234567").unwrap();
/// let now = "2026-11-24T06:00:00Z".parse().unwrap();
/// let d = reconcile(&commit, &Assessment::of_statuses([Status::InSync]), None, &Policy::default(), now);
/// assert_eq!(d.phase, Phase::InSync);
/// assert!(d.actions.is_empty());
/// ```
pub fn reconcile(
    expected: impl Into<ExpectedCommit>,
    assessment: &Assessment,
    prior: Option<&EnvState>,
    policy: &Policy,
    now: Timestamp,
) -> Decision {
    reconcile_with(expected, assessment, prior, policy, Controls::default(), now)
}

/// [`reconcile()`] under an operator's [`Controls`] (suspended, frozen, retry requested).
pub fn reconcile_with(
    expected: impl Into<ExpectedCommit>,
    assessment: &Assessment,
    prior: Option<&EnvState>,
    policy: &Policy,
    controls: Controls,
    now: Timestamp,
) -> Decision {
    reconcile_checked(expected, assessment, prior, policy, controls, &[], now)
}

/// [`reconcile_with()`] given the runs of `[policy.verify]`'s checks made on this pass
/// (SPEC §15; the engine runs them when [`crate::verify::checks_due`] says so).
pub fn reconcile_checked(
    expected: impl Into<ExpectedCommit>,
    assessment: &Assessment,
    prior: Option<&EnvState>,
    policy: &Policy,
    controls: Controls,
    checks: &[CheckRun],
    now: Timestamp,
) -> Decision {
    let expected = expected.into();
    let mut pass = Pass::new(&expected, assessment, prior, policy, now);
    pass.controls = controls;
    pass.checks = checks;
    pass.run()
}

struct Pass<'a> {
    expected: &'a CommitId,
    moved_at: Option<Timestamp>,
    controls: Controls,
    checks: &'a [CheckRun],
    a: &'a Assessment,
    policy: &'a Policy,
    now: Timestamp,
    s: EnvState,
    actions: Vec<Action>,
    events: Vec<EventKind>,
    wake: Option<Timestamp>,
}

impl<'a> Pass<'a> {
    fn new(
        expected: &'a ExpectedCommit,
        a: &'a Assessment,
        prior: Option<&EnvState>,
        policy: &'a Policy,
        now: Timestamp,
    ) -> Self {
        Self {
            expected: &expected.commit,
            moved_at: expected.moved_at,
            controls: Controls::default(),
            checks: &[],
            a,
            policy,
            now,
            s: prior.cloned().unwrap_or_default(),
            actions: Vec::new(),
            events: Vec::new(),
            wake: None,
        }
    }

    fn wake_at(&mut self, t: Timestamp) {
        if t > self.now {
            self.wake = Some(self.wake.map_or(t, |w| w.min(t)));
        }
    }

    fn run(mut self) -> Decision {
        self.track_expected();
        self.apply_retry();
        let (phase, reason) = self.decide();
        self.renotify();
        self.s.phase = Some(phase);
        Decision {
            requeue_after: self.wake.map(|w| elapsed(self.now, w)),
            state: self.s,
            phase,
            actions: self.actions,
            events: self.events,
            reason,
        }
    }

    /// Invariant 5: a new expected commit ends the incident and supersedes its alarms.
    fn track_expected(&mut self) {
        let prior = self.s.expected.as_ref().map(|e| e.commit);
        if prior.as_ref() == Some(self.expected) {
            return;
        }
        let first = prior.is_none();
        if !first {
            self.events.push(EventKind::ExpectedChanged { from: prior, to: *self.expected });
            self.resolve(AlarmKind::Drift, Resolution::Superseded);
            self.resolve(AlarmKind::Diverged, Resolution::Superseded);
            self.resolve(AlarmKind::Degraded, Resolution::Superseded);
            self.resolve(AlarmKind::Vetoed, Resolution::Superseded);
            self.resolve(AlarmKind::Untrusted, Resolution::Superseded);
            self.s.incident = None;
        }
        // The reflog knows when the ref moved, even on gitstate's very first pass.
        self.s.expected = Some(ExpectedRecord {
            commit: *self.expected,
            since: self.moved_at.unwrap_or(self.now),
            since_known: !first || self.moved_at.is_some(),
            from_reflog: self.moved_at.is_some(),
            converged: false,
        });
    }

    /// `gitstate retry`: once per request, the incident's attempts and backoff start over.
    fn apply_retry(&mut self) {
        let Some(at) = self.controls.retry_requested_at else { return };
        if self.s.last_retry.is_some_and(|seen| seen >= at) {
            return;
        }
        self.s.last_retry = Some(at);
        if let Some(inc) = self.s.incident.as_mut() {
            inc.attempts = 0;
            inc.last_attempt_at = None;
            inc.next_attempt_at = None;
        }
    }

    /// Suspended or frozen: why nothing is done now, and when to look again.
    fn held_back(&mut self) -> Option<(Phase, Reason)> {
        let now = self.now;
        if let Some(until) = self.controls.suspended.filter(|u| u.is_none_or(|u| u > now)) {
            if let Some(u) = until {
                self.wake_at(u);
            }
            return Some((Phase::Suspended, Reason::Suspended { until }));
        }
        let until = self.controls.frozen_until.filter(|u| *u > now)?;
        self.wake_at(until);
        Some((Phase::Frozen, Reason::Frozen { until }))
    }

    fn decide(&mut self) -> (Phase, Reason) {
        let a = *self.a;
        let policy = self.policy;
        let now = self.now;

        // Invariant 7: probe failures are counted; `unreachable_after` in a row → alarm.
        if a.probe_failure {
            self.s.consecutive_probe_failures = self.s.consecutive_probe_failures.saturating_add(1);
            if self.s.consecutive_probe_failures >= policy.unreachable_after.max(1) {
                self.raise(AlarmKind::Unreachable);
            }
        } else {
            self.s.consecutive_probe_failures = 0;
            self.resolve(AlarmKind::Unreachable, Resolution::Cleared);
        }

        // SPEC §18: unsigned code running is an alarm whatever else is decided.
        if !self.controls.unsigned_running.is_empty() {
            self.raise(AlarmKind::UnsignedRunning);
        } else {
            self.resolve(AlarmKind::UnsignedRunning, Resolution::Cleared);
        }

        // SPEC §18: a commit not signed by an allowed key is never deployed under
        // `block`; one not judged yet is not deployed either (fail closed).
        if let Some(gate) = self.controls.trust.clone() {
            let judged = gate.commit == *self.expected;
            if judged {
                self.s.trust = Some(Box::new(gate.record.clone()));
            }
            if judged && gate.trusted {
                self.s.last_trusted = Some(*self.expected);
                self.resolve(AlarmKind::Untrusted, Resolution::Cleared);
            } else {
                if judged {
                    self.raise(AlarmKind::Untrusted);
                }
                if gate.block || !judged {
                    if !a.in_sync {
                        self.leave_soak();
                    }
                    return (Phase::Untrusted, Reason::Untrusted);
                }
            }
        }

        // SPEC §15: a vetoed commit is never deployed, whoever moved the ref to it.
        if self.controls.vetoed.contains(self.expected) {
            self.raise(AlarmKind::Vetoed);
            if !a.in_sync {
                self.leave_soak();
            }
            return (Phase::Vetoed, Reason::Vetoed);
        }
        self.resolve(AlarmKind::Vetoed, Resolution::Cleared);

        if a.in_sync {
            let (phase, reason) = self.in_sync();
            if phase != Phase::InSync {
                return (phase, reason);
            }
            let soak = self.soak();
            if let Some(degraded @ (Phase::Degraded, _)) = soak {
                return degraded;
            }
            if let Some(held) = self.held_back() {
                return held;
            }
            return soak.unwrap_or((phase, reason));
        }
        // Drift ends a soak: the normal loop takes over; it starts again once in sync.
        self.leave_soak();

        // Invariant 3: the incident belongs to the expected commit. Renewed drift reopens it
        // with its attempts and backoff; drift after the commit was in sync is flapping.
        let incident = match self.s.incident.as_deref().cloned() {
            Some(inc) if inc.is_open() => inc,
            closed => {
                let flapping = self.s.expected.as_ref().is_some_and(|e| e.converged);
                let inc = match closed {
                    Some(inc) => Incident { in_sync_since: None, flapping, ..inc },
                    None => Incident {
                        since: now,
                        attempts: 0,
                        last_attempt_at: None,
                        next_attempt_at: None,
                        in_sync_since: None,
                        flapping,
                    },
                };
                self.s.incident = Some(Box::new(inc.clone()));
                self.events.push(EventKind::DriftDetected { expected: *self.expected, status: a.worst });
                inc
            }
        };

        // Suspended or frozen: no remediation, no attempt consumed, no new drift or
        // diverged alarm (open ones stay open; the unreachable alarm above still fires).
        if let Some(held) = self.held_back() {
            return held;
        }

        let since = self.s.expected.as_ref().map_or(now, |e| e.since);
        let grace_end = after(since, policy.grace);
        let grace_over = now >= grace_end;

        // Invariant 6: diverged under on_diverged = "alarm" blocks remediation of the whole
        // environment and raises its own alarm after grace.
        let held = a.diverged && policy.on_diverged == OnDiverged::Alarm;
        // Like the drift alarm, it belongs to the incident: resolved when the environment
        // converges or the expected commit moves, so it never flaps within an incident.
        if held && grace_over {
            self.raise(AlarmKind::Diverged);
        }
        let drift = a.remediable || (a.diverged && policy.on_diverged == OnDiverged::Remediate);

        let (phase, reason) = if held {
            if grace_over {
                (Phase::Alarm, Reason::DivergedHeld)
            } else {
                self.wake_at(grace_end);
                (Phase::Converging, Reason::WithinGrace { until: grace_end })
            }
        } else if drift && !grace_over {
            // Invariant 2: within grace, no remediation and no alarm.
            self.wake_at(grace_end);
            let phase = if policy.mode == Mode::Observe { Phase::Observing } else { Phase::Converging };
            (phase, Reason::WithinGrace { until: grace_end })
        } else if drift && policy.mode == Mode::Observe {
            // Invariant 8: observe mode alarms after grace, never remediates.
            self.raise(AlarmKind::Drift);
            (Phase::Alarm, Reason::Observing)
        } else if drift {
            self.remediate_or_alarm(incident)
        } else {
            (Phase::Converging, Reason::ProbeFailing { passes: self.s.consecutive_probe_failures })
        };

        if self.s.alarm(AlarmKind::Degraded).is_some() {
            let failures = self.s.verification.as_ref().map_or(0, |v| v.failures.len() as u32);
            return (Phase::Degraded, Reason::Degraded { failures, rollback: false });
        }
        if !self.s.alarms.is_empty() {
            return (Phase::Alarm, reason);
        }
        (phase, reason)
    }

    /// A soak of the expected commit still running is over (drift, a veto).
    fn leave_soak(&mut self) {
        if self
            .s
            .verification
            .as_ref()
            .is_some_and(|v| v.sha == *self.expected && v.state == VerificationState::Verifying)
        {
            self.s.verification = None;
        }
    }

    /// SPEC §15, on an in-sync pass: the soak of a commit not verified here before starts,
    /// takes this pass's check runs, and ends verified (after `soak`) or degraded (after
    /// `failures` failed runs, rolling back when the policy says so and gitstate may act).
    /// `None` when there is nothing to soak (no `[policy.verify]`, or already verified).
    fn soak(&mut self) -> Option<(Phase, Reason)> {
        let verify = self.policy.verify.as_ref()?;
        let (now, expected) = (self.now, *self.expected);
        if self.s.verified.contains(&expected) {
            return None;
        }
        let mut v = match self.s.verification.take().filter(|v| v.sha == expected) {
            Some(v) => v,
            None => {
                let until = after(now, verify.soak);
                self.events.push(EventKind::VerificationStarted { expected, until });
                Box::new(Verification {
                    sha: expected,
                    state: VerificationState::Verifying,
                    since: now,
                    until,
                    next_check_at: None,
                    failures: Vec::new(),
                })
            }
        };
        if v.state == VerificationState::Degraded {
            let failures = v.failures.len() as u32;
            self.s.verification = Some(v);
            return Some((Phase::Degraded, Reason::Degraded { failures, rollback: false }));
        }
        if !self.checks.is_empty() {
            v.next_check_at = Some(after(now, verify.every));
        }
        for run in self.checks {
            if let Err(reason) = &run.result {
                v.failures.push(CheckFailure { check: run.check.clone(), at: now, reason: reason.clone() });
                self.events.push(EventKind::CheckFailed {
                    expected,
                    check: run.check.clone(),
                    reason: reason.clone(),
                });
            }
        }
        let failures = v.failures.len() as u32;
        if failures >= verify.failures.max(1) {
            v.state = VerificationState::Degraded;
            v.next_check_at = None;
            self.s.verification = Some(v);
            self.events.push(EventKind::Degraded { expected, failures });
            self.raise(AlarmKind::Degraded);
            let suspended = self.controls.suspended.is_some_and(|u| u.is_none_or(|u| u > now));
            let held = suspended || self.controls.frozen_until.is_some_and(|u| u > now);
            let good = self.s.verified.last().copied().filter(|g| *g != expected);
            let rollback = verify.on_degraded == OnDegraded::Rollback
                && self.policy.mode == Mode::Remediate
                && !held
                && good.is_some();
            if let (true, Some(to)) = (rollback, good) {
                self.actions.push(Action::Rollback { from: expected, to });
            }
            return Some((Phase::Degraded, Reason::Degraded { failures, rollback }));
        }
        if now >= v.until {
            v.state = VerificationState::Verified;
            v.next_check_at = None;
            self.s.verification = Some(v);
            self.events.push(EventKind::Verified { expected });
            self.s.verified.push(expected);
            let over = self.s.verified.len().saturating_sub(VERIFIED_KEPT);
            self.s.verified.drain(..over);
            return None;
        }
        let until = v.until;
        self.wake_at(until);
        if let Some(next) = v.next_check_at {
            self.wake_at(next);
        }
        self.s.verification = Some(v);
        Some((Phase::Verifying, Reason::Verifying { until }))
    }

    /// Invariants 3 and 4: bounded attempts spaced by the backoff rule, then one alarm.
    fn remediate_or_alarm(&mut self, inc: Incident) -> (Phase, Reason) {
        let policy = self.policy;
        let now = self.now;
        let settle_end = inc.last_attempt_at.map(|t| after(t, policy.settle));

        if inc.attempts < policy.max_attempts {
            let due = inc.next_attempt_at.is_none_or(|t| now >= t);
            if due {
                let attempt = inc.attempts + 1;
                let next = after(now, policy.gap_after_attempt(attempt));
                self.s.incident = Some(Box::new(Incident {
                    attempts: attempt,
                    last_attempt_at: Some(now),
                    next_attempt_at: Some(next),
                    ..inc
                }));
                self.actions.push(Action::Remediate { attempt });
                self.wake_at(after(now, policy.settle).min(next));
                return (Phase::Remediating, Reason::Remediating { attempt });
            }
            let next = inc.next_attempt_at.unwrap_or(now);
            self.wake_at(next);
            if let Some(end) = settle_end.filter(|end| now < *end) {
                self.wake_at(end);
                return (Phase::Remediating, Reason::Settling { attempt: inc.attempts, until: end });
            }
            return (Phase::BackingOff, Reason::BackingOff { attempt: inc.attempts, until: next });
        }

        match settle_end {
            Some(end) if now < end => {
                self.wake_at(end);
                (Phase::Remediating, Reason::Settling { attempt: inc.attempts, until: end })
            }
            _ => {
                self.raise(AlarmKind::Drift);
                (Phase::Alarm, Reason::AttemptsExhausted { attempts: inc.attempts })
            }
        }
    }

    /// Invariants 1 and 4: resolve, record the lag once per expected commit, no action; a
    /// flapping environment's drift alarm waits for `keep_firing_for` of in-sync passes.
    fn in_sync(&mut self) -> (Phase, Reason) {
        let now = self.now;
        self.resolve(AlarmKind::Diverged, Resolution::Converged);
        self.s.last_in_sync_at = Some(now);
        // A convergence is the end of an open incident, or the first in-sync pass of a commit.
        let was_open = self.s.incident.as_deref().is_some_and(Incident::is_open);
        let mut in_sync_since = now;
        let mut flapping = false;
        if let Some(inc) = self.s.incident.as_mut() {
            in_sync_since = *inc.in_sync_since.get_or_insert(now);
            flapping = inc.flapping;
        }
        if let Some(rec) = self.s.expected.as_mut() {
            let first = !rec.converged;
            rec.converged = true;
            if first {
                let commit = rec.commit;
                self.s.converged_on.retain(|c| *c != commit);
                self.s.converged_on.push(commit);
                let over = self.s.converged_on.len().saturating_sub(VERIFIED_KEPT);
                self.s.converged_on.drain(..over);
            }
            let lag = (first && rec.since_known).then(|| elapsed(rec.since, now).as_secs_f64());
            if lag.is_some() {
                self.s.last_convergence_lag_s = lag;
            }
            // Nothing converged that gitstate saw when the very first pass of a new state
            // finds the commit already in sync and no reflog says when the ref moved.
            if lag.is_some() || was_open {
                let lag_from = rec.lag_from();
                self.events.push(EventKind::Converged { expected: *self.expected, lag_s: lag, lag_from });
            }
        }
        if flapping && self.s.alarm(AlarmKind::Drift).is_some() {
            let until = after(in_sync_since, self.policy.keep_firing_for);
            if now < until {
                self.wake_at(until);
                return (Phase::Alarm, Reason::KeepFiring { until });
            }
        }
        self.resolve(AlarmKind::Drift, Resolution::Converged);
        (Phase::InSync, Reason::InSync)
    }
}
