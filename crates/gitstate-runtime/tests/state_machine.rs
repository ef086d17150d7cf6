//! The real loop against a reference state machine (proptest-state-machine).
//!
//! The reference model below is written from SPEC §7 ("the closed loop", "watch") and §9
//! (controls) in its own terms and reads nothing from gitstate: not the policy helpers
//! (the backoff gap is computed here), not the phase mapping, not the classification of
//! statuses, not the scheduler. It simulates, to the millisecond, what must happen to one
//! environment as the world changes: the ref moves (to a new commit, back to an old one),
//! instances report every status alone and mixed, time passes, deploys succeed, fail or
//! hang, the sink accepts, fails or rejects, operators suspend (with and without `--until`),
//! resume and retry, the process crashes (with a deploy in flight or between passes) and
//! restarts from its store. Policies are generated too.
//!
//! The system under test is a [`Controller`] over a [`FileStore`] in a temporary directory,
//! under tokio's paused clock, its jitter drawn from a seeded generator the model holds a
//! copy of, so every pass is due at an exact instant. After every step the test compares:
//! each pass (when, its phase, the events it wrote), every deploy started (when, which
//! commit, which attempt), and every notification the sink accepted (when, which alarm,
//! which change, in order). A missing, extra or late pass fails.
//!
//! Coincidences whose order the SPEC leaves open (a deploy ending in the very millisecond
//! a timer fires, a step ending on a pass) are not generated: the model flags them and
//! the transition's precondition refuses it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use gitstate_core::{
    ActualStateProbe, AlarmChange, AlarmEvent, AlarmKind, AlarmNotification, AlarmSink, CommitId, EnvName,
    EnvironmentSpec, EventKind, Expected, ExpectedError, ExpectedState, Mode, OnDiverged, PassOutcome, Phase,
    Policy, ProbeContext, ProbeFailure, Reading, Relation, RemediationOutcome, RemediationRequest,
    Remediator, ReportedCommit, Resolution, SinkError, Status, TargetSpec,
};
use gitstate_runtime::controls::{self, FreezeWindow};
use gitstate_runtime::{Controller, Environment, Fence, FileStore, Leadership, Observer, Options};
use jiff::Timestamp;
use proptest::prelude::*;
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest, prop_state_machine};

const ENV: &str = "production";
const REF_POLL: u64 = 10_000;
const CONVERGING_POLL: u64 = 5_000;
const JITTER: f64 = 0.1;
const SEED: u64 = 0x5eed;
const BASE_S: i64 = 1_800_000_000;
/// SPEC §7: a kept notification is retried at least every `renotify`, or every hour.
const RETRY_CAP: u64 = 3_600_000;

// ---------------------------------------------------------------------------------------
// The reference model. Times are milliseconds since the test began.

/// A policy, in milliseconds.
#[derive(Debug, Clone)]
struct Pol {
    observe: bool,
    grace: u64,
    settle: u64,
    backoff: u64,
    backoff_max: u64,
    max_attempts: u32,
    unreachable_after: u32,
    alarm_on_diverged: bool,
    renotify: u64,
    keep_firing_for: u64,
    /// `[policy.verify]` (SPEC §15): the soak after a deploy.
    verify: Option<VPol>,
}

/// `[policy.verify]`, in milliseconds.
#[derive(Debug, Clone)]
struct VPol {
    soak: u64,
    every: u64,
    failures: u32,
    rollback: bool,
}

impl Pol {
    /// SPEC §7 invariant 3: attempt n+1 no earlier than attempt n + max(settle,
    /// min(backoff·2^(n-1), backoff_max)).
    fn gap(&self, n: u32) -> u64 {
        let doubled = self.backoff.saturating_mul(1u64 << (n - 1).min(40));
        self.settle.max(doubled.min(self.backoff_max))
    }

    fn core(&self) -> Policy {
        let d = Duration::from_millis;
        Policy {
            mode: if self.observe { Mode::Observe } else { Mode::Remediate },
            grace: d(self.grace),
            settle: d(self.settle),
            backoff: d(self.backoff),
            backoff_max: d(self.backoff_max),
            max_attempts: self.max_attempts,
            unreachable_after: self.unreachable_after,
            on_diverged: if self.alarm_on_diverged { OnDiverged::Alarm } else { OnDiverged::Remediate },
            renotify: d(self.renotify),
            keep_firing_for: d(self.keep_firing_for),
            verify: self.verify.as_ref().map(|v| gitstate_core::verify::Verify {
                soak: d(v.soak),
                every: d(v.every),
                failures: v.failures,
                on_degraded: if v.rollback {
                    gitstate_core::verify::OnDegraded::Rollback
                } else {
                    gitstate_core::verify::OnDegraded::Alarm
                },
                ..Default::default()
            }),
            // Severity, labels and the runbook steer sinks, not the loop: the defaults.
            ..Policy::default()
        }
    }
}

/// What a sink does with what it is sent.
#[derive(Debug, Clone, Copy, PartialEq)]
enum SinkMode {
    Accept,
    /// 5xx: kept and retried.
    Fail,
    /// 4xx: dropped.
    Reject,
}

/// What the operators' overrides say.
#[derive(Debug, Clone, PartialEq, Default)]
struct Said {
    /// (since, until)
    suspended: Option<(u64, Option<u64>)>,
    retry_at: Option<u64>,
    /// Vetoed commits and when, in the order they were vetoed (vetoing again after
    /// `unveto` is a new veto: the overrides change).
    vetoes: Vec<(usize, u64)>,
}

/// Everything outside gitstate.
#[derive(Debug, Clone)]
struct World {
    commit: usize,
    statuses: Vec<Status>,
    deploy_took: u64,
    deploy_ok: bool,
    sink: SinkMode,
    said: Said,
    /// Whether this replica holds the lead (SPEC §14).
    leading: bool,
    /// Whether the soak's check passes.
    check_ok: bool,
}

#[derive(Debug, Clone)]
struct Exp {
    commit: usize,
    since: u64,
    /// Whether `since` is when the ref moved (not gitstate's very first sight of it).
    known: bool,
    converged: bool,
}

#[derive(Debug, Clone)]
struct Inc {
    attempts: u32,
    last: Option<u64>,
    next: Option<u64>,
    /// The first pass of the in-sync streak that closed it (none: it is open).
    in_sync_since: Option<u64>,
    flapping: bool,
}

#[derive(Debug, Clone)]
struct Open {
    since: u64,
    notified: u64,
}

/// What gitstate must remember of the environment.
#[derive(Debug, Clone, Default)]
struct Env {
    expected: Option<Exp>,
    incident: Option<Inc>,
    failures: u32,
    alarms: BTreeMap<AlarmKind, Open>,
    last_retry: Option<u64>,
    /// The soak of a commit (SPEC §15).
    soak: Option<Soak>,
    /// Commits verified here, the newest last.
    verified: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq)]
enum SoakState {
    Verifying,
    Verified,
    Degraded,
}

#[derive(Debug, Clone)]
struct Soak {
    commit: usize,
    state: SoakState,
    until: u64,
    next: Option<u64>,
    failures: u32,
}

/// A notification the sink has not taken yet.
#[derive(Debug, Clone)]
struct Kept {
    change: AlarmChange,
    failures: u32,
    last_try: Option<u64>,
    skipped: u32,
}

/// The timing of `watch` (SPEC §7 "watch").
#[derive(Debug, Clone)]
struct Sched {
    next_full: u64,
    next_poll: u64,
    requeue: Option<u64>,
    /// A deploy in flight: when it ends.
    busy: Option<u64>,
    /// How long the deploy in flight takes.
    took: u64,
    /// A pass was wanted while the deploy ran: it runs when the deploy ends.
    deferred: bool,
    jitter: u64,
    /// What the last ref poll read: the commit and the overrides.
    polled: (usize, Said),
    /// Whether this replica led at the last poll.
    led: bool,
}

/// One pass, as compared.
#[derive(Debug, Clone, PartialEq)]
struct PassRec {
    at: u64,
    /// None on a standby's pass: it reports what it saw, and no phase (it decides nothing).
    phase: Option<Phase>,
    events: Vec<String>,
}

#[derive(Debug, Clone)]
struct Model {
    pol: Pol,
    interval: u64,
    /// A freeze window every hour: from this many minutes past, for this many minutes.
    window: Option<(u64, u64)>,
    world: World,
    env: Env,
    outbox: BTreeMap<AlarmKind, Vec<Kept>>,
    sched: Sched,
    now: u64,
    passes: Vec<PassRec>,
    deploys: Vec<(u64, usize, u32)>,
    delivered: Vec<(u64, AlarmKind, AlarmChange)>,
    /// Something happened whose outcome the SPEC does not order.
    ambiguous: bool,
}

/// The jitter generator, as the model holds it: xorshift64 from the seed.
fn jittered(state: &mut u64, interval: u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    let unit = (*state >> 11) as f64 / (1u64 << 53) as f64;
    let d = Duration::from_millis(interval).mul_f64((1.0 + JITTER * (2.0 * unit - 1.0)).max(0.0));
    // Paused timers fire on whole milliseconds, rounded up.
    (d.as_nanos() as u64).div_ceil(1_000_000)
}

fn fresh_sched(now: u64, world: &World) -> Sched {
    Sched {
        next_full: now,
        next_poll: now + REF_POLL,
        requeue: None,
        busy: None,
        took: 0,
        deferred: false,
        jitter: SEED | 1,
        polled: (world.commit, world.said.clone()),
        led: world.leading,
    }
}

fn event(kind: &str, detail: impl std::fmt::Debug) -> String {
    format!("{kind} {detail:?}")
}

impl Model {
    fn new(pol: Pol, interval: u64, window: Option<(u64, u64)>, world: World) -> Self {
        let sched = fresh_sched(0, &world);
        let mut m = Self {
            pol,
            interval,
            window,
            world,
            env: Env::default(),
            outbox: BTreeMap::new(),
            sched,
            now: 0,
            passes: Vec::new(),
            deploys: Vec::new(),
            delivered: Vec::new(),
            ambiguous: false,
        };
        m.settle(0);
        m
    }

    /// Runs everything due at `t` (a deploy that takes no time ends in the instant it began).
    fn settle(&mut self, t: u64) {
        self.run_instant(t);
        while self.sched.busy == Some(t) {
            self.run_instant(t);
        }
    }

    /// Runs what is due strictly before `to`, then stands at `to`.
    fn advance(&mut self, to: u64) {
        loop {
            let s = &self.sched;
            let next = [Some(s.next_full), Some(s.next_poll), s.requeue, s.busy]
                .into_iter()
                .flatten()
                .min()
                .unwrap();
            if next >= to {
                if next == to {
                    self.ambiguous = true;
                }
                break;
            }
            self.run_instant(next);
        }
        self.now = to;
    }

    /// Everything due at `t`.
    fn run_instant(&mut self, t: u64) {
        self.now = t;
        let s = &self.sched;
        let timers = s.next_full == t || s.requeue == Some(t) || s.next_poll == t;
        if s.busy == Some(t) {
            if timers {
                self.ambiguous = true;
            }
            self.deploy_ended(t);
            return;
        }
        let mut wanted = false;
        if self.sched.next_full == t {
            wanted = true;
            self.sched.next_full = t + jittered(&mut self.sched.jitter, self.interval);
        }
        if self.sched.requeue == Some(t) {
            wanted = true;
            self.sched.requeue = None;
        }
        let mut polled_change = false;
        if self.sched.next_poll == t {
            self.sched.next_poll = t + REF_POLL;
            let read = (self.world.commit, self.world.said.clone());
            polled_change = read != self.sched.polled;
            self.sched.polled = read;
            // A replica that has just taken the lead passes every environment at once.
            polled_change |= self.world.leading && !self.sched.led;
            self.sched.led = self.world.leading;
        }
        // A timer's pass first; a change the ref poll found asks for a pass of its own.
        for want in [wanted, polled_change] {
            if want {
                self.want_pass(t);
            }
        }
    }

    fn want_pass(&mut self, t: u64) {
        if self.sched.busy.is_some() {
            self.sched.deferred = true;
        } else {
            self.pass(t);
        }
    }

    /// A deploy ends: what was wanted meanwhile runs now, and the deploy is judged once its
    /// settle time has passed.
    fn deploy_ended(&mut self, t: u64) {
        self.sched.busy = None;
        let took = self.sched.took;
        let again = t + self.pol.settle.saturating_sub(took);
        // One timer per environment: a look due now replaces a later one (and is taken at
        // once); a later one keeps the earlier of the two.
        let now_due = again == t;
        if now_due {
            self.sched.requeue = None;
        } else {
            self.requeue(again);
        }
        if std::mem::take(&mut self.sched.deferred) {
            self.want_pass(t);
        }
        if now_due {
            self.want_pass(t);
        }
    }

    fn requeue(&mut self, at: u64) {
        self.sched.requeue = Some(self.sched.requeue.map_or(at, |r| r.min(at)));
    }

    /// One pass at `t`: SPEC §7's decision, the deploy it starts, the notifications.
    fn pass(&mut self, t: u64) {
        let pol = self.pol.clone();
        let w = self.world.clone();
        // §9: a running watch applies what operators said at its next ref poll.
        let said = self.sched.polled.1.clone();
        let suspended = said.suspended.filter(|(_, until)| until.is_none_or(|u| u > t));
        // Suspended or frozen (§9): the phase, and when it ends.
        let held: Option<(Phase, Option<u64>)> = match (suspended, self.frozen_until(t)) {
            (Some((_, until)), _) => Some((Phase::Suspended, until)),
            (None, Some(until)) => Some((Phase::Frozen, Some(until))),
            (None, None) => None,
        };
        // A standby probes and reports; it decides nothing and keeps nothing (§14).
        let standby = (!w.leading).then(|| (self.env.clone(), self.outbox.clone()));

        let mut events = Vec::new();
        let mut notes: Vec<(AlarmKind, AlarmChange)> = Vec::new();
        let mut wake: Vec<u64> = Vec::new();
        let env = &mut self.env;

        let raise = |env: &mut Env, kind, events: &mut Vec<String>, notes: &mut Vec<_>| {
            if let std::collections::btree_map::Entry::Vacant(e) = env.alarms.entry(kind) {
                e.insert(Open { since: t, notified: t });
                events.push(event("alarm_raised", kind));
                notes.push((kind, AlarmChange::Raised));
            }
        };
        let resolve = |env: &mut Env, kind, why: Resolution, events: &mut Vec<String>, notes: &mut Vec<_>| {
            if env.alarms.remove(&kind).is_some() {
                events.push(event("alarm_resolved", (kind, why)));
                notes.push((kind, AlarmChange::Resolved(why)));
            }
        };

        // Invariant 5: a new expected commit ends the incident; its alarms are superseded.
        match &env.expected {
            Some(e) if e.commit == w.commit => {}
            prior => {
                let first = prior.is_none();
                if !first {
                    events.push("expected_changed".into());
                    for kind in
                        [AlarmKind::Drift, AlarmKind::Diverged, AlarmKind::Degraded, AlarmKind::Vetoed]
                    {
                        resolve(env, kind, Resolution::Superseded, &mut events, &mut notes);
                    }
                    env.incident = None;
                }
                env.expected = Some(Exp { commit: w.commit, since: t, known: !first, converged: false });
            }
        }
        // §9 retry: once per request, attempts and backoff start over.
        if let Some(r) = said.retry_at
            && env.last_retry.is_none_or(|seen| seen < r)
        {
            env.last_retry = Some(r);
            if let Some(inc) = env.incident.as_mut() {
                inc.attempts = 0;
                inc.last = None;
                inc.next = None;
            }
        }
        let failing =
            w.statuses.iter().any(|s| matches!(s, Status::Unreachable | Status::Invalid | Status::Missing));
        let in_sync = !w.statuses.is_empty() && w.statuses.iter().all(|s| *s == Status::InSync);
        let hotfix = w
            .statuses
            .iter()
            .any(|s| matches!(s, Status::Diverged | Status::UnknownCommit | Status::Drifted));
        let remediable = w.statuses.iter().any(|s| matches!(s, Status::Behind | Status::Ahead));

        // Invariant 7.
        if failing {
            env.failures += 1;
            if env.failures >= pol.unreachable_after.max(1) {
                raise(env, AlarmKind::Unreachable, &mut events, &mut notes);
            }
        } else {
            env.failures = 0;
            resolve(env, AlarmKind::Unreachable, Resolution::Cleared, &mut events, &mut notes);
        }

        let mut deploy = None;
        let mut rollback = None;
        let vetoed = said.vetoes.iter().any(|(c, _)| *c == w.commit);
        // SPEC §15: the soak's checks run on a pass that finds the environment in sync on a
        // commit not verified here, when the soak starts or a run is due.
        let checks_ran = pol.verify.is_some()
            && in_sync
            && !vetoed
            && !env.verified.contains(&w.commit)
            && env
                .soak
                .as_ref()
                .filter(|s| s.commit == w.commit)
                .is_none_or(|s| s.state == SoakState::Verifying && s.next.is_none_or(|n| t >= n));
        let leave_soak = |env: &mut Env| {
            if env.soak.as_ref().is_some_and(|s| s.commit == w.commit && s.state == SoakState::Verifying) {
                env.soak = None;
            }
        };
        if vetoed {
            raise(env, AlarmKind::Vetoed, &mut events, &mut notes);
        } else {
            resolve(env, AlarmKind::Vetoed, Resolution::Cleared, &mut events, &mut notes);
        }
        let phase = if vetoed {
            if !in_sync {
                leave_soak(env);
            }
            Phase::Vetoed
        } else if in_sync {
            // Invariants 1 and 4.
            resolve(env, AlarmKind::Diverged, Resolution::Converged, &mut events, &mut notes);
            let was_open = env.incident.as_ref().is_some_and(|i| i.in_sync_since.is_none());
            let (streak, flapping) = match env.incident.as_mut() {
                Some(i) => (*i.in_sync_since.get_or_insert(t), i.flapping),
                None => (t, false),
            };
            let e = env.expected.as_mut().unwrap();
            let lag = (!e.converged && e.known).then(|| (t - e.since) as f64 / 1000.0);
            e.converged = true;
            if lag.is_some() || was_open {
                events.push(event("converged", lag));
            }
            let until = streak + pol.keep_firing_for;
            if flapping && env.alarms.contains_key(&AlarmKind::Drift) && t < until {
                wake.push(until);
                Phase::Alarm
            } else {
                resolve(env, AlarmKind::Drift, Resolution::Converged, &mut events, &mut notes);
                // The soak (SPEC §15): started, fed this pass's run, ended verified or degraded.
                let mut soaked = None;
                if let Some(v) = pol.verify.as_ref().filter(|_| !env.verified.contains(&w.commit)) {
                    let mut s = match env.soak.take().filter(|s| s.commit == w.commit) {
                        Some(s) => s,
                        None => {
                            events.push(event("verification_started", ()));
                            Soak {
                                commit: w.commit,
                                state: SoakState::Verifying,
                                until: t + v.soak,
                                next: None,
                                failures: 0,
                            }
                        }
                    };
                    if s.state == SoakState::Degraded {
                        soaked = Some(Phase::Degraded);
                    } else {
                        if checks_ran {
                            s.next = Some(t + v.every);
                            if !w.check_ok {
                                s.failures += 1;
                                events.push(event("check_failed", ()));
                            }
                        }
                        if s.failures >= v.failures {
                            s.state = SoakState::Degraded;
                            s.next = None;
                            events.push(event("degraded", s.failures));
                            raise(env, AlarmKind::Degraded, &mut events, &mut notes);
                            let good = env.verified.iter().rev().find(|c| **c != w.commit).copied();
                            if v.rollback && !pol.observe && held.is_none() {
                                rollback = good;
                            }
                            soaked = Some(Phase::Degraded);
                        } else if t >= s.until {
                            s.state = SoakState::Verified;
                            s.next = None;
                            events.push(event("verified", ()));
                            env.verified.retain(|c| *c != w.commit);
                            env.verified.push(w.commit);
                        } else {
                            wake.push(s.until);
                            wake.extend(s.next);
                            soaked = Some(Phase::Verifying);
                        }
                    }
                    env.soak = Some(s);
                }
                match (soaked, held) {
                    (Some(Phase::Degraded), _) => Phase::Degraded,
                    (_, Some((phase, until))) => {
                        wake.extend(until);
                        phase
                    }
                    (Some(phase), None) => phase,
                    (None, None) => Phase::InSync,
                }
            }
        } else {
            // The incident belongs to the expected commit: drift after an in-sync pass
            // reopens it with its attempts (flapping when the commit had converged).
            let converged = env.expected.as_ref().unwrap().converged;
            let reopened = match env.incident.take() {
                Some(i) if i.in_sync_since.is_none() => (i, false),
                Some(i) => (Inc { in_sync_since: None, flapping: converged, ..i }, true),
                None => (
                    Inc { attempts: 0, last: None, next: None, in_sync_since: None, flapping: converged },
                    true,
                ),
            };
            let (mut inc, opened) = reopened;
            leave_soak(env);
            if opened {
                events.push("drift_detected".into());
            }
            let phase = if let Some((phase, until)) = held {
                // §9: still probed; no remediation, no new drift or diverged alarm.
                wake.extend(until);
                phase
            } else {
                let since = env.expected.as_ref().unwrap().since;
                let grace_end = since + pol.grace;
                let grace_over = t >= grace_end;
                let held = hotfix && pol.alarm_on_diverged;
                let drift = remediable || (hotfix && !pol.alarm_on_diverged);
                if held {
                    // Invariant 6.
                    if grace_over {
                        raise(env, AlarmKind::Diverged, &mut events, &mut notes);
                        Phase::Alarm
                    } else {
                        wake.push(grace_end);
                        Phase::Converging
                    }
                } else if drift && !grace_over {
                    // Invariant 2.
                    wake.push(grace_end);
                    if pol.observe { Phase::Observing } else { Phase::Converging }
                } else if drift && pol.observe {
                    // Invariant 8.
                    raise(env, AlarmKind::Drift, &mut events, &mut notes);
                    Phase::Alarm
                } else if drift {
                    // Invariants 3 and 4.
                    let settle_end = inc.last.map(|l| l + pol.settle);
                    let settling = settle_end.filter(|e| t < *e);
                    if inc.attempts < pol.max_attempts {
                        if inc.next.is_none_or(|n| t >= n) {
                            inc.attempts += 1;
                            let next = t + pol.gap(inc.attempts);
                            inc.last = Some(t);
                            inc.next = Some(next);
                            deploy = Some(inc.attempts);
                            events.push(event("remediation_started", inc.attempts));
                            wake.push((t + pol.settle).min(next));
                            Phase::Remediating
                        } else {
                            wake.push(inc.next.unwrap());
                            wake.extend(settling);
                            if settling.is_some() { Phase::Remediating } else { Phase::BackingOff }
                        }
                    } else if let Some(end) = settling {
                        wake.push(end);
                        Phase::Remediating
                    } else {
                        raise(env, AlarmKind::Drift, &mut events, &mut notes);
                        Phase::Alarm
                    }
                } else {
                    Phase::Converging
                }
            };
            env.incident = Some(inc);
            match held {
                Some(_) => phase,
                None if env.alarms.contains_key(&AlarmKind::Degraded) => Phase::Degraded,
                None if !env.alarms.is_empty() => Phase::Alarm,
                None => phase,
            }
        };

        // Invariant 4: every open alarm re-notified each `renotify`, never in the pass
        // that raised it.
        if pol.renotify > 0 {
            for (kind, open) in env.alarms.iter_mut() {
                if open.since == t {
                    wake.push(t + pol.renotify);
                } else if t >= open.notified + pol.renotify {
                    open.notified = t;
                    events.push(event("alarm_repeated", kind));
                    notes.push((*kind, AlarmChange::Repeated));
                    wake.push(t + pol.renotify);
                } else {
                    wake.push(open.notified + pol.renotify);
                }
            }
        }

        let reported = if let Some((env, outbox)) = standby {
            self.env = env;
            self.outbox = outbox;
            events.clear();
            deploy = None;
            rollback = None;
            // Nothing pending on a standby: it looks again at the next full pass.
            wake.clear();
            None
        } else {
            self.deliver(t, notes);
            Some(phase)
        };
        events.sort();
        self.passes.push(PassRec { at: t, phase: reported, events });

        // When to look again: what becomes due with time alone, and every
        // `converging_poll` while something is pending.
        let mut again = wake.into_iter().filter(|w| *w > t).min();
        if reported.is_some()
            && matches!(phase, Phase::Converging | Phase::Remediating | Phase::BackingOff | Phase::Observing)
        {
            again = Some(again.map_or(t + CONVERGING_POLL, |a| a.min(t + CONVERGING_POLL)));
        }
        if let Some(a) = again {
            self.requeue(a);
        }
        // The rollback: the ref moved back in the same instant; the commit rolled back
        // from is vetoed (the loop writes it to the overrides after the pass).
        if let Some(to) = rollback {
            let from = self.world.commit;
            self.world.commit = to;
            if !self.world.said.vetoes.iter().any(|(c, _)| *c == from) {
                self.world.said.vetoes.push((from, t));
            }
            let last = self.passes.last_mut().unwrap();
            last.events.push(event("rolled_back", (from, to)));
            last.events.sort();
        }
        if let Some(attempt) = deploy {
            self.deploys.push((t, w.commit, attempt));
            self.sched.busy = Some(t + w.deploy_took);
            self.sched.took = w.deploy_took;
        }
    }

    /// The end of the freeze window `t` is in, if any (the schedule is hourly; the test
    /// clock starts on the hour).
    fn frozen_until(&self, t: u64) -> Option<u64> {
        let (from, len) = self.window?;
        // On the wall clock: the window that began in the hour before may still be open.
        let abs = BASE_S as u64 * 1000 + t;
        let hour = abs / 3_600_000 * 3_600_000;
        [hour - 3_600_000, hour]
            .into_iter()
            .map(|h| (h + from * 60_000, h + (from + len) * 60_000))
            .filter(|(start, end)| *start <= abs && abs < *end)
            .map(|(_, end)| end - BASE_S as u64 * 1000)
            .max()
    }

    /// SPEC §7 "Alarms": in order per alarm; a failure keeps it and everything after it,
    /// retried on the next pass, then after 2, 4, … passes, at least every `renotify`
    /// (or hour); a rejection is dropped.
    fn deliver(&mut self, t: u64, notes: Vec<(AlarmKind, AlarmChange)>) {
        for (kind, change) in notes {
            self.outbox.entry(kind).or_default().push(Kept {
                change,
                failures: 0,
                last_try: None,
                skipped: 0,
            });
        }
        let cap = if self.pol.renotify == 0 { RETRY_CAP } else { self.pol.renotify.min(RETRY_CAP) };
        for (kind, queue) in self.outbox.iter_mut() {
            while let Some(k) = queue.first_mut() {
                if k.failures > 0 {
                    let wait = (1u64 << (k.failures - 1).min(32)) - 1;
                    let due = u64::from(k.skipped) >= wait || k.last_try.is_none_or(|l| t >= l + cap);
                    if !due {
                        k.skipped += 1;
                        break;
                    }
                }
                match self.world.sink {
                    SinkMode::Accept => {
                        self.delivered.push((t, *kind, k.change));
                        queue.remove(0);
                    }
                    SinkMode::Reject => {
                        queue.remove(0);
                    }
                    SinkMode::Fail => {
                        k.failures += 1;
                        k.skipped = 0;
                        k.last_try = Some(t);
                        break;
                    }
                }
            }
        }
        self.outbox.retain(|_, q| !q.is_empty());
        // More kept than the engine keeps per environment: the oldest are dropped, in an
        // order across alarms the SPEC does not fix.
        if self.outbox.values().map(Vec::len).sum::<usize>() > 64 {
            self.ambiguous = true;
        }
    }

    /// The process dies at `now` (a deploy in flight is lost with it, its attempt kept) and
    /// starts again from its store at once.
    fn crash(&mut self) {
        let now = self.now;
        self.sched = fresh_sched(now, &self.world);
        self.settle(now);
    }
}

// ---------------------------------------------------------------------------------------
// Transitions.

#[derive(Debug, Clone)]
enum Step {
    /// Time passes (milliseconds).
    Wait(u64),
    MoveRef(usize),
    Report(Vec<Status>),
    Deploys {
        took: u64,
        ok: bool,
    },
    Sink(SinkMode),
    Suspend(Option<u64>),
    Resume,
    Retry,
    Crash,
    /// This replica loses (false) or takes (true) the lead.
    Lead(bool),
    /// The soak's check passes (true) or fails from now on.
    Checks(bool),
    /// An operator vetoes a commit (`gitstate veto`), or lifts a veto.
    Veto(usize),
    Unveto(usize),
}

fn secs(max: u64) -> impl Strategy<Value = u64> {
    prop_oneof![Just(0u64), (1..max).prop_map(|s| s * 1000)]
}

fn pol() -> impl Strategy<Value = Pol> {
    let verify = prop_oneof![
        2 => Just(None),
        1 => (secs(120), 1u64..30, 1u32..4, any::<bool>())
            .prop_map(|(soak, every, failures, rollback)| Some(VPol { soak, every: every * 1000, failures, rollback })),
    ];
    (
        (any::<bool>(), secs(300), secs(120), 1u64..200, 0u64..1_000),
        (0u32..=6, 1u32..4, any::<bool>(), secs(1_200), secs(600)),
        verify,
    )
        .prop_map(
            |(
                (observe, grace, settle, backoff, extra),
                (max_attempts, ua, alarm, renotify, keep),
                verify,
            )| Pol {
                observe: observe && grace % 2 == 0,
                grace,
                settle,
                backoff: backoff * 1000,
                backoff_max: (backoff + extra) * 1000,
                max_attempts,
                unreachable_after: ua,
                alarm_on_diverged: alarm,
                renotify,
                keep_firing_for: keep,
                verify,
            },
        )
}

/// A deploy's length: a few seconds, and odd milliseconds so that it rarely ends on a tick.
fn took() -> impl Strategy<Value = u64> {
    prop_oneof![4 => 0u64..30_000, 1 => 30_000u64..600_000, 1 => Just(3_000_000u64)]
}

struct Machine;

impl ReferenceStateMachine for Machine {
    type State = Model;
    type Transition = Step;

    fn init_state() -> BoxedStrategy<Model> {
        (
            pol(),
            prop_oneof![Just(60_000u64), (5u64..300).prop_map(|s| s * 1000)],
            took(),
            prop::collection::vec(gitstate_testkit::model::status(), 1..3),
            prop_oneof![2 => Just(None), 1 => (0u64..60, 1u64..40).prop_map(Some)],
        )
            .prop_map(|(pol, interval, took, statuses, window)| {
                let world = World {
                    commit: 0,
                    statuses,
                    deploy_took: took,
                    deploy_ok: true,
                    sink: SinkMode::Accept,
                    said: Said::default(),
                    leading: true,
                    check_ok: true,
                };
                Model::new(pol, interval, window, world)
            })
            .boxed()
    }

    fn transitions(state: &Model) -> BoxedStrategy<Step> {
        prop_oneof![
            12 => prop_oneof![1 => 1u64..5_000, 3 => 5_000u64..120_000, 1 => 120_000u64..3_000_000].prop_map(Step::Wait),
            2 => (0usize..3).prop_map(Step::MoveRef),
            5 => prop_oneof![
                2 => Just(vec![Status::InSync]),
                2 => Just(vec![Status::Behind]),
                1 => Just(vec![Status::InSync, Status::Behind]),
                3 => prop::collection::vec(gitstate_testkit::model::status(), 1..4),
            ].prop_map(Step::Report),
            1 => (took(), prop::bool::weighted(0.7)).prop_map(|(took, ok)| Step::Deploys { took, ok }),
            1 => prop_oneof![Just(SinkMode::Accept), Just(SinkMode::Fail), Just(SinkMode::Reject)].prop_map(Step::Sink),
            1 => prop_oneof![Just(None), (1u64..600).prop_map(|s| Some(s * 1000 + 500))].prop_map(Step::Suspend),
            1 => Just(Step::Resume),
            1 => Just(Step::Retry),
            1 => Just(Step::Crash),
            1 => Just(Step::Lead(!state.world.leading)),
            2 => any::<bool>().prop_map(Step::Checks),
            1 => (0usize..3).prop_map(Step::Veto),
            1 => (0usize..3).prop_map(Step::Unveto),
        ]
        .boxed()
    }

    fn preconditions(state: &Model, step: &Step) -> bool {
        // `unveto` of a commit not vetoed is refused (exit 2): not a step of the world.
        if let Step::Unveto(c) = step
            && !state.world.said.vetoes.iter().any(|(v, _)| v == c)
        {
            return false;
        }
        // `resume` is for a suspended environment.
        if matches!(step, Step::Resume) && state.world.said.suspended.is_none() {
            return false;
        }
        let next = Self::apply(state.clone(), step);
        !next.ambiguous
    }

    fn apply(mut m: Model, step: &Step) -> Model {
        let now = m.now;
        match step {
            Step::Wait(ms) => m.advance(now + ms),
            Step::MoveRef(c) => m.world.commit = *c,
            Step::Report(s) => m.world.statuses = s.clone(),
            Step::Deploys { took, ok } => {
                m.world.deploy_took = *took;
                m.world.deploy_ok = *ok;
            }
            Step::Sink(s) => m.world.sink = *s,
            Step::Suspend(until) => {
                m.world.said.suspended = Some((now, until.map(|u| now + u)));
            }
            Step::Resume => m.world.said.suspended = None,
            Step::Retry => {
                m.world.said.retry_at = Some(now);
            }
            Step::Crash => m.crash(),
            Step::Lead(leading) => m.world.leading = *leading,
            Step::Checks(ok) => m.world.check_ok = *ok,
            Step::Veto(c) => {
                if !m.world.said.vetoes.iter().any(|(v, _)| v == c) {
                    m.world.said.vetoes.push((*c, now));
                }
            }
            Step::Unveto(c) => m.world.said.vetoes.retain(|(v, _)| v != c),
        }
        m
    }
}

// ---------------------------------------------------------------------------------------
// The system under test: the real controller, scripted around.

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap()
}

fn commit(i: usize) -> CommitId {
    CommitId::parse(&format!("{:040x}", i + 1)).unwrap()
}

/// The world as the scripted parts see it, and what they recorded.
#[derive(Default)]
struct Shared {
    commit: usize,
    statuses: Vec<Status>,
    took: u64,
    ok: bool,
    sink: Option<SinkMode>,
    /// Model milliseconds at the current runtime's start.
    offset: u64,
    passes: Vec<PassRec>,
    deploys: Vec<(u64, usize, u32)>,
    delivered: Vec<(u64, AlarmKind, AlarmChange)>,
    leading: bool,
    check_ok: bool,
}

struct Parts {
    shared: Mutex<Shared>,
    /// The current runtime's start instant.
    start: Mutex<tokio::time::Instant>,
}

impl Parts {
    fn now_ms(&self) -> u64 {
        let offset = lock(&self.shared).offset;
        offset + lock(&self.start).elapsed().as_millis() as u64
    }
    fn at(&self, ts: Timestamp) -> u64 {
        (ts.as_millisecond() - BASE_S * 1000) as u64
    }
    fn ts(&self, ms: u64) -> Timestamp {
        Timestamp::from_millisecond(BASE_S * 1000 + ms as i64).unwrap()
    }
}

struct World2(Arc<Parts>);

impl std::fmt::Debug for World2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("World2")
    }
}

#[async_trait]
impl ExpectedState for World2 {
    fn name(&self) -> &str {
        "world"
    }
    async fn resolve(&self, refs: &[String]) -> Result<Vec<Result<Expected, ExpectedError>>, ExpectedError> {
        let c = lock(&self.0.shared).commit;
        Ok(refs.iter().map(|r| Ok(Expected { reference: r.clone(), commit: commit(c) })).collect())
    }
    async fn relate(
        &self,
        _: &CommitId,
        reported: &[ReportedCommit],
    ) -> Result<Vec<Relation>, ExpectedError> {
        Ok(reported.iter().map(gitstate_testkit::model::relation).collect())
    }
    async fn list(&self, _: &str) -> Result<Vec<Expected>, ExpectedError> {
        Ok(Vec::new())
    }
    async fn move_ref(
        &self,
        reference: &str,
        from: &CommitId,
        to: &CommitId,
        _: &str,
    ) -> Result<(), ExpectedError> {
        let mut s = lock(&self.0.shared);
        if commit(s.commit) != *from {
            return Err(ExpectedError::Refused { reference: reference.into(), message: "moved".into() });
        }
        s.commit = (0..3).find(|c| commit(*c) == *to).unwrap();
        Ok(())
    }
}

#[async_trait]
impl ActualStateProbe for World2 {
    fn name(&self) -> &str {
        "world"
    }
    async fn observe(&self, cx: &ProbeContext<'_>) -> Result<Vec<Reading>, ProbeFailure> {
        let statuses = lock(&self.0.shared).statuses.clone();
        Ok(gitstate_testkit::model::readings(statuses, cx.expected))
    }
}

#[async_trait]
impl Remediator for World2 {
    fn name(&self) -> &str {
        "deploy"
    }
    async fn remediate(&self, req: &RemediationRequest) -> RemediationOutcome {
        let at = self.0.now_ms();
        let (took, ok) = {
            let mut s = lock(&self.0.shared);
            let c = (0..3).find(|c| commit(*c) == req.expected).unwrap();
            s.deploys.push((at, c, req.attempt));
            (s.took, s.ok)
        };
        tokio::time::sleep(Duration::from_millis(took)).await;
        RemediationOutcome {
            ok,
            detail: "scripted".into(),
            exit_code: Some(i32::from(!ok)),
            output_tail: None,
        }
    }
}

#[async_trait]
impl AlarmSink for World2 {
    fn name(&self) -> &str {
        "record"
    }
    async fn notify(&self, n: &AlarmNotification) -> Result<(), SinkError> {
        let change = match n.event {
            AlarmEvent::AlarmRaised => AlarmChange::Raised,
            AlarmEvent::AlarmRepeated => AlarmChange::Repeated,
            AlarmEvent::AlarmResolved => AlarmChange::Resolved(n.resolution.expect("a resolution")),
            // Like the webhook sink: a refresh of a firing alarm is Alertmanager's business.
            _ => return Ok(()),
        };
        let at = self.0.now_ms();
        let mut s = lock(&self.0.shared);
        match s.sink.unwrap_or(SinkMode::Accept) {
            SinkMode::Accept => {
                s.delivered.push((at, n.alarm, change));
                Ok(())
            }
            SinkMode::Fail => Err(SinkError::failed("record", "503")),
            SinkMode::Reject => Err(SinkError::rejected("record", "400")),
        }
    }
}

#[async_trait]
impl gitstate_core::verify::Check for World2 {
    fn name(&self) -> &str {
        "smoke"
    }
    async fn run(&self, _: &gitstate_core::verify::CheckContext<'_>) -> Result<(), String> {
        if lock(&self.0.shared).check_ok { Ok(()) } else { Err("5xx".into()) }
    }
}

#[async_trait]
impl Leadership for World2 {
    fn may_act(&self, _: &EnvName) -> Option<Fence> {
        lock(&self.0.shared).leading.then_some(Fence(1))
    }
    fn leading(&self) -> bool {
        lock(&self.0.shared).leading
    }
    async fn keep(&self) -> bool {
        self.leading()
    }
    fn period(&self) -> Duration {
        // A standby's reload of the leader's state is not modelled: this replica is the
        // only writer.
        Duration::from_secs(1 << 40)
    }
}

impl Observer for World2 {
    fn pass(&self, _specs: &[EnvironmentSpec], out: &PassOutcome, _took: Duration) {
        let env = &out.report.environments[0];
        let mut events: Vec<String> = out
            .events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::ExpectedChanged { .. } => Some("expected_changed".to_owned()),
                EventKind::DriftDetected { .. } => Some("drift_detected".to_owned()),
                EventKind::RemediationStarted { attempt, .. } => Some(event("remediation_started", attempt)),
                EventKind::AlarmRaised { alarm, .. } => Some(event("alarm_raised", alarm)),
                EventKind::AlarmRepeated { alarm, .. } => Some(event("alarm_repeated", alarm)),
                EventKind::AlarmResolved { alarm, reason } => Some(event("alarm_resolved", (alarm, reason))),
                EventKind::Converged { lag_s, .. } => Some(event("converged", lag_s)),
                EventKind::VerificationStarted { .. } => Some(event("verification_started", ())),
                EventKind::CheckFailed { .. } => Some(event("check_failed", ())),
                EventKind::Verified { .. } => Some(event("verified", ())),
                EventKind::Degraded { failures, .. } => Some(event("degraded", failures)),
                EventKind::RolledBack { from, to, .. } => {
                    let idx = |c: &CommitId| (0..3).find(|i| commit(*i) == *c).unwrap();
                    Some(event("rolled_back", (idx(from), idx(to))))
                }
                _ => None,
            })
            .collect();
        events.sort();
        let at = self.0.at(out.report.checked_at);
        lock(&self.0.shared).passes.push(PassRec { at, phase: env.phase, events });
    }
}

struct Sut {
    parts: Arc<Parts>,
    dir: tempfile::TempDir,
    _lock: Box<dyn std::any::Any>,
    rt: Option<tokio::runtime::Runtime>,
    store: Option<Arc<FileStore>>,
    pol: Pol,
    interval: u64,
    window: Option<(u64, u64)>,
}

impl Sut {
    fn start(&mut self, at: u64) {
        let rt =
            tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        let store = Arc::new(FileStore::open(self.dir.path()).unwrap());
        let parts = self.parts.clone();
        lock(&parts.shared).offset = at;
        let world = Arc::new(World2(parts.clone()));
        let spec = EnvironmentSpec {
            name: EnvName::new(ENV).unwrap(),
            reference: "refs/heads/environments/production".into(),
            targets: vec![TargetSpec::new("web", world.clone())],
            remediator: Some(world.clone()),
            checks: vec![world.clone()],
            policy: std::sync::Arc::new(self.pol.core()),
            controls: gitstate_core::Controls::default(),
        };
        let mut options = Options::default();
        options.interval = Duration::from_millis(self.interval);
        options.jitter = JITTER;
        options.ref_poll = Duration::from_millis(REF_POLL);
        options.converging_poll = Duration::from_millis(CONVERGING_POLL);
        options.seed = Some(SEED);
        let clock = parts.clone();
        let windows = self
            .window
            .map(|(from, len)| {
                vec![
                    FreezeWindow::new(&format!("{from} * * * *"), Duration::from_secs(len * 60), "UTC")
                        .unwrap(),
                ]
            })
            .unwrap_or_default();
        let controller = Controller::builder(world.clone(), store.clone())
            .environment(Environment::new(spec).with_windows(windows))
            .leadership(world.clone())
            .sink(world.clone())
            .observer(world)
            .options(options)
            .clock(move || clock.ts(clock.now_ms()))
            .build();
        rt.block_on(async {
            *lock(&parts.start) = tokio::time::Instant::now();
        });
        rt.spawn(async move { controller.run(std::future::pending()).await.unwrap() });
        self.rt = Some(rt);
        self.store = Some(store);
        self.settle();
    }

    /// The loop's clock, in model milliseconds (read inside the runtime: its clock is paused).
    fn clock(&self) -> u64 {
        let parts = self.parts.clone();
        self.rt.as_ref().unwrap().block_on(async move { parts.now_ms() })
    }

    /// Lets whatever is due at this instant run, without moving the clock.
    fn settle(&self) {
        self.rt.as_ref().unwrap().block_on(async {
            for _ in 0..200 {
                tokio::task::yield_now().await;
            }
        });
    }

    fn wait(&self, ms: u64) {
        self.rt
            .as_ref()
            .unwrap()
            .block_on(async move { tokio::time::sleep(Duration::from_millis(ms)).await });
        self.settle();
    }

    fn crash(&mut self, at: u64) {
        // Dropping the runtime drops every task mid-flight: nothing is flushed, nothing
        // shuts down in order.
        drop(self.rt.take());
        drop(self.store.take());
        self.start(at);
    }

    fn control(&self, step: &Step, at: u64) {
        let store = self.store.clone().unwrap();
        let names = [EnvName::new(ENV).unwrap()];
        let now = self.parts.ts(at);
        self.rt.as_ref().unwrap().block_on(async move {
            let tester = gitstate_runtime::actions::Actor { by: "tester", via: "cli" };
            match step {
                Step::Suspend(until) => {
                    let until =
                        until.map(|u| Timestamp::from_millisecond(now.as_millisecond() + u as i64).unwrap());
                    controls::suspend(&*store, &names, tester, Some("test"), until, now).await
                }
                Step::Resume => controls::resume(&*store, &names, tester, None, now).await,
                Step::Retry => controls::retry(&*store, &names, tester, None, now).await,
                Step::Veto(c) => {
                    gitstate_runtime::actions::veto(&*store, &names[0], commit(*c), tester, None, now).await
                }
                Step::Unveto(c) => {
                    let actor = gitstate_runtime::actions::Actor { by: "tester", via: "cli" };
                    gitstate_runtime::actions::unveto(&*store, &names[0], commit(*c), actor, None, now)
                        .await
                        .map_err(|e| match e {
                            gitstate_runtime::actions::ActionError::Store(e) => e,
                            other => panic!("{other}"),
                        })
                }
                _ => unreachable!(),
            }
            .unwrap()
        });
        self.settle();
    }
}

impl StateMachineTest for Sut {
    type SystemUnderTest = Self;
    type Reference = Machine;

    fn init_test(m: &Model) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let guard = FileStore::lock(dir.path()).unwrap();
        let parts = Arc::new(Parts {
            shared: Mutex::new(Shared {
                commit: m.world.commit,
                statuses: m.world.statuses.clone(),
                took: m.world.deploy_took,
                ok: m.world.deploy_ok,
                sink: Some(m.world.sink),
                leading: m.world.leading,
                check_ok: m.world.check_ok,
                ..Shared::default()
            }),
            start: Mutex::new(tokio::time::Instant::now()),
        });
        let mut sut = Sut {
            parts,
            dir,
            _lock: Box::new(guard),
            rt: None,
            store: None,
            pol: m.pol.clone(),
            interval: m.interval,
            window: m.window,
        };
        sut.start(0);
        sut
    }

    fn apply(mut sut: Self, m: &Model, step: Step) -> Self {
        let before = sut.clock();
        match &step {
            Step::Wait(ms) => sut.wait(*ms),
            Step::MoveRef(c) => lock(&sut.parts.shared).commit = *c,
            Step::Report(s) => lock(&sut.parts.shared).statuses = s.clone(),
            Step::Deploys { took, ok } => {
                let mut s = lock(&sut.parts.shared);
                s.took = *took;
                s.ok = *ok;
            }
            Step::Sink(mode) => lock(&sut.parts.shared).sink = Some(*mode),
            Step::Suspend(_) | Step::Resume | Step::Retry => sut.control(&step, before),
            Step::Crash => sut.crash(before),
            Step::Lead(leading) => lock(&sut.parts.shared).leading = *leading,
            Step::Checks(ok) => lock(&sut.parts.shared).check_ok = *ok,
            Step::Veto(_) | Step::Unveto(_) => sut.control(&step, before),
        }
        assert_eq!(sut.clock(), m.now, "the test's clock and the model's agree");
        sut
    }

    fn check_invariants(sut: &Self, m: &Model) {
        let s = lock(&sut.parts.shared);
        let policy = &m.pol;
        let first_diff = s.passes.iter().zip(&m.passes).position(|(a, b)| a != b);
        if let Some(i) =
            first_diff.or((s.passes.len() != m.passes.len()).then(|| s.passes.len().min(m.passes.len())))
        {
            panic!(
                "pass {i} differs under {policy:?} (interval {} ms):\n  loop:  {:?}\n  model: {:?}\n  passes before: {:?}\n  model's next: {:?}",
                m.interval,
                s.passes.get(i),
                m.passes.get(i),
                &s.passes[i.saturating_sub(3)..i.min(s.passes.len())],
                m.passes.get(i + 1),
            );
        }
        assert_eq!(s.deploys, m.deploys, "deploys started (at, commit, attempt) under {policy:?}");
        // Per alarm, in order; across alarms the order within an instant is not fixed.
        let per_alarm = |v: &[(u64, AlarmKind, AlarmChange)]| {
            let mut by: BTreeMap<String, Vec<(u64, String)>> = BTreeMap::new();
            for (at, kind, change) in v {
                by.entry(format!("{kind:?}")).or_default().push((*at, format!("{change:?}")));
            }
            by
        };
        assert_eq!(
            per_alarm(&s.delivered),
            per_alarm(&m.delivered),
            "notifications the sink accepted under {policy:?}"
        );
    }
}

prop_state_machine! {
    #![proptest_config(ProptestConfig {
        cases: gitstate_testkit::proptest_cases(32),
        max_shrink_iters: 2_000,
        failure_persistence: Some(Box::new(proptest::test_runner::FileFailurePersistence::WithSource("regressions"))),
        .. ProptestConfig::default()
    })]

    /// The controller does, pass by pass and to the millisecond, what the reference model
    /// of SPEC §7 and §9 says, over random worlds, operators, crashes and policies.
    #[test]
    fn the_controller_follows_the_reference_model(sequential 1..60 => Sut);
}
