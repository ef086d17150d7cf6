//! Carrying out a decision: the decided states (and the `remediation_started` events) go
//! through the journal *before* any remediation starts, so a crash never forgets an
//! attempt; then remediations run — inline, or handed back to the caller when deferred,
//! who runs each with [`Engine::remediate`] (or gives it up with [`Engine::abandon`]).

use futures::future::BoxFuture;
use futures::stream::{self, StreamExt};
use jiff::Timestamp;

use std::collections::BTreeMap;

use crate::alarm::{AlarmChange, AlarmEvent, AlarmKind, AlarmNotification};
use crate::cause::Symptoms;
use crate::commit::CommitId;
use crate::event::{Event, EventKind};
use crate::name::EnvName;
use crate::observation::{Status, TargetObservation};
use crate::plugin::{RemediationOutcome, RemediationRequest, Remediator};
use crate::reconcile::Action;
use crate::report::ActionReport;
use crate::state::EnvState;

use super::group::SourceSeen;
use super::notify::notification;
use super::outcome::{EnvOutcome, PassOutcome};
use super::setup::Engine;
use super::spec::EnvironmentSpec;

impl Engine {
    /// Carries out (or, in a dry run, only reports) what was decided.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn act(
        &self,
        envs: &[EnvironmentSpec],
        outcomes: &mut [EnvOutcome],
        prior: &BTreeMap<EnvName, EnvState>,
        source: SourceSeen,
        dry_run: bool,
        now: Timestamp,
        out: &mut PassOutcome,
    ) {
        self.assign_causes(envs, outcomes);
        // (environment, index of its Remediate action in the report, request)
        let mut remediate: Vec<(usize, usize, RemediationRequest)> = Vec::new();
        let mut notes: Vec<AlarmNotification> = Vec::new();
        // (environment, index of its Rollback action in the report, from, to, reason)
        let mut rollbacks: Vec<(usize, usize, CommitId, CommitId, String)> = Vec::new();
        for (i, (env, o)) in envs.iter().zip(outcomes.iter_mut()).enumerate() {
            let (Some(d), Ok(expected)) = (&o.decision, &o.expected) else { continue };
            let targets = &o.targets;
            let ev = |kind| Event { at: now, environment: env.name.clone(), kind };
            out.events.extend(d.events.iter().cloned().map(ev));
            for action in &d.actions {
                match *action {
                    Action::Remediate { attempt } => {
                        o.actions.push(ActionReport::Remediate {
                            attempt,
                            ok: None,
                            detail: if dry_run { "dry run: not started".into() } else { String::new() },
                        });
                        remediate.push((
                            i,
                            o.actions.len() - 1,
                            RemediationRequest {
                                environment: env.name.clone(),
                                reference: o.reference.clone(),
                                expected: *expected,
                                attempt,
                                drifted: drifted(targets),
                            },
                        ));
                    }
                    Action::Rollback { from, to } => {
                        o.actions.push(ActionReport::Rollback {
                            from,
                            to,
                            ok: None,
                            detail: if dry_run { "dry run: not moved".into() } else { String::new() },
                        });
                        rollbacks.push((i, o.actions.len() - 1, from, to, d.reason.to_string()));
                    }
                    Action::Alarm { change, kind, since, expected: about } => {
                        o.actions.push(ActionReport::of_alarm(change, kind));
                        out.events.push(ev(EventKind::of_alarm(change, kind, about)));
                        // Fixed when raised: from the new state, or (resolved) the prior one.
                        let cause = d
                            .state
                            .alarms
                            .iter()
                            .chain(prior.get(&env.name).map_or(&[][..], |s| &s.alarms[..]))
                            .find(|a| a.kind == kind)
                            .and_then(|a| a.cause.clone());
                        let note = notification(
                            &env.name,
                            &o.reference,
                            about,
                            kind,
                            since,
                            change.event(),
                            change.resolution(),
                            now,
                            targets,
                            &env.effective_policy(),
                            cause,
                        );
                        let mut note = note;
                        // SPEC §18: the untrusted alarm names the first offending commit and why.
                        if kind == AlarmKind::Untrusted
                            && let Some(reason) = d.state.trust.as_ref().and_then(|t| t.reason.as_deref())
                        {
                            note.summary = format!("{} — {reason}", note.summary);
                        }
                        if kind == AlarmKind::UnsignedRunning && !env.controls.unsigned_running.is_empty() {
                            let shas: Vec<String> = env
                                .controls
                                .unsigned_running
                                .iter()
                                .map(|c| c.short(12).to_string())
                                .collect();
                            note.summary = format!("{}: {}", note.summary, shas.join(", "));
                        }
                        notes.push(note);
                    }
                }
            }
            // Alarms still open and not announced this pass: refresh sinks that expire silence.
            for alarm in &d.state.alarms {
                let touched =
                    d.actions.iter().any(|a| matches!(a, Action::Alarm { kind, .. } if *kind == alarm.kind));
                if !touched {
                    notes.push(notification(
                        &env.name,
                        &o.reference,
                        *expected,
                        alarm.kind,
                        alarm.since,
                        AlarmEvent::AlarmFiring,
                        None,
                        now,
                        targets,
                        &env.effective_policy(),
                        alarm.cause.clone(),
                    ));
                }
            }
            out.decisions.push((env.name.clone(), d.reason, d.requeue_after));
        }

        let states: Vec<(EnvName, EnvState)> = outcomes
            .iter_mut()
            .zip(envs)
            .filter_map(|(o, env)| o.decision.take().map(|d| (env.name.clone(), d.state)))
            .collect();

        if dry_run {
            out.states = states;
            return;
        }

        let mut recorded = 0;
        if !remediate.is_empty() {
            for (i, _, req) in &remediate {
                out.events.push(Event {
                    at: now,
                    environment: envs[*i].name.clone(),
                    kind: EventKind::RemediationStarted { expected: req.expected, attempt: req.attempt },
                });
            }
            if let Some(j) = &self.journal {
                let persisted = async {
                    j.checkpoint(&states).await?;
                    j.record(&out.events).await
                };
                if let Err(e) = persisted.await {
                    tracing::error!(error = %e, "not remediating: state could not be persisted first");
                    out.journal_error = Some(e.to_string());
                }
                recorded = out.events.len();
            }
            // What became of each remediation, written into its own action of the report.
            let mut settle = |i: usize, at: usize, result: Option<bool>, text: String| {
                if let Some(ActionReport::Remediate { ok, detail, .. }) = outcomes[i].actions.get_mut(at) {
                    *ok = result;
                    *detail = text;
                }
            };
            if out.journal_error.is_some() {
                for (i, at, _) in remediate {
                    settle(i, at, Some(false), "not started: state could not be persisted".into());
                }
            } else if self.defer_remediations {
                for (i, at, req) in remediate {
                    settle(i, at, None, "started in the background".into());
                    out.deferred.push((envs[i].name.clone(), req));
                }
            } else {
                let mut runs: Vec<BoxFuture<'_, (usize, usize, &RemediationRequest, RemediationOutcome)>> =
                    Vec::new();
                for (i, at, req) in &remediate {
                    let r = envs[*i].remediator.clone();
                    runs.push(Box::pin(
                        async move { (*i, *at, req, run_remediator(r.as_deref(), req).await) },
                    ));
                }
                let done: Vec<_> = stream::iter(runs).buffer_unordered(self.concurrency).collect().await;
                for (i, at, req, outcome) in done {
                    settle(i, at, Some(outcome.ok), outcome.detail.clone());
                    out.events.push(finished_event(&envs[i].name, req, &outcome, now));
                    out.remediations.push((envs[i].name.clone(), outcome));
                }
            }
        }

        // SPEC §15: the ref moved back, a compare-and-swap on the degraded commit; Git keeps
        // who rolled back what and why in the reflog (or the remote's history).
        for (i, at, from, to, reason) in rollbacks {
            let o = &mut outcomes[i];
            let message = format!("gitstate: roll back {} ({reason})", from.short(12));
            let moved = self.source.move_ref(&o.reference, &from, &to, &message).await;
            let (kind, ok, detail) = match moved {
                Ok(()) => (
                    EventKind::RolledBack {
                        from,
                        to,
                        reason: Some(reason),
                        by: "gitstate".into(),
                        via: "loop".into(),
                    },
                    true,
                    format!("{} moved from {} to {}", o.reference, from.short(12), to.short(12)),
                ),
                Err(e) => {
                    let error = crate::error::chain(&e);
                    tracing::error!(environment = %envs[i].name, error = %error, "rollback not done");
                    (EventKind::RollbackRefused { from, to, error: error.clone() }, false, error)
                }
            };
            if let Some(ActionReport::Rollback { ok: done, detail: text, .. }) = o.actions.get_mut(at) {
                *done = Some(ok);
                *text = detail;
            }
            out.events.push(Event { at: now, environment: envs[i].name.clone(), kind });
        }

        let names: Vec<EnvName> = states.iter().map(|(n, _)| n.clone()).collect();
        self.deliver(envs, &names, notes, source, now, out).await;

        // The pass's outcome, persisted by the engine itself: callers never save states.
        if let Some(j) = &self.journal {
            if let Err(e) = j.checkpoint(&states).await {
                tracing::error!(error = %e, "state could not be written");
                out.journal_error.get_or_insert(e.to_string());
            }
            if let Err(e) = j.record(&out.events[recorded..]).await {
                tracing::error!(error = %e, "audit events could not be appended");
                out.journal_error.get_or_insert(e.to_string());
            }
        }
        out.states = states;
    }

    /// Gives each alarm raised this pass its cause (SPEC §17), from what this pass saw of
    /// its environments and what the fleet's last passes saw of the others.
    fn assign_causes(&self, envs: &[EnvironmentSpec], outcomes: &mut [EnvOutcome]) {
        let shareable = |a: &Action| {
            matches!(
                a,
                Action::Alarm {
                    change: AlarmChange::Raised,
                    kind: AlarmKind::Unreachable | AlarmKind::Drift | AlarmKind::Degraded,
                    ..
                }
            )
        };
        if !outcomes.iter().any(|o| o.decision.as_ref().is_some_and(|d| d.actions.iter().any(shareable))) {
            return;
        }
        let mine: Vec<Symptoms> = envs
            .iter()
            .zip(outcomes.iter())
            .map(|(env, o)| Symptoms::of(&env.name, o.expected.as_ref().ok().copied(), o.phase, &o.targets))
            .collect();
        let mut fleet = self.fleet.as_ref().map(|f| f.symptoms()).unwrap_or_default();
        fleet.retain(|s| !mine.iter().any(|m| m.environment == s.environment));
        fleet.extend(mine.iter().cloned());
        for (me, o) in mine.iter().zip(outcomes.iter_mut()) {
            let Some(d) = o.decision.as_mut() else { continue };
            for action in &d.actions {
                let Action::Alarm { change: AlarmChange::Raised, kind, .. } = *action else { continue };
                let cause = crate::cause::assign(kind, me, &fleet);
                if let Some(open) = d.state.alarms.iter_mut().find(|a| a.kind == kind) {
                    open.cause = cause.is_shared().then_some(cause);
                }
            }
        }
    }

    /// Runs one deferred remediation and records its `remediation_finished` event, stamped
    /// by `clock` when it returns.
    pub async fn remediate(
        &self,
        env: &EnvironmentSpec,
        req: &RemediationRequest,
        clock: impl Fn() -> Timestamp + Send,
    ) -> RemediationOutcome {
        let outcome = run_remediator(env.remediator.as_deref(), req).await;
        self.finished(&env.name, req, &outcome, clock()).await;
        outcome
    }

    /// Records that a deferred remediation was given up (its task ended without an
    /// outcome, as at shutdown): a failed `remediation_finished` saying `detail`.
    pub async fn abandon(&self, env: &EnvName, req: &RemediationRequest, detail: &str, at: Timestamp) {
        let outcome =
            RemediationOutcome { ok: false, detail: detail.to_owned(), exit_code: None, output_tail: None };
        self.finished(env, req, &outcome, at).await;
    }

    async fn finished(
        &self,
        env: &EnvName,
        req: &RemediationRequest,
        outcome: &RemediationOutcome,
        at: Timestamp,
    ) {
        if let Some(j) = &self.journal
            && let Err(e) = j.record(&[finished_event(env, req, outcome, at)]).await
        {
            tracing::error!(error = %e, "audit event could not be appended");
        }
    }
}

async fn run_remediator(r: Option<&dyn Remediator>, req: &RemediationRequest) -> RemediationOutcome {
    match r {
        Some(r) => r.remediate(req).await,
        None => RemediationOutcome {
            ok: false,
            detail: "no remediator configured".into(),
            exit_code: None,
            output_tail: None,
        },
    }
}

fn finished_event(
    env: &EnvName,
    req: &RemediationRequest,
    outcome: &RemediationOutcome,
    at: Timestamp,
) -> Event {
    Event {
        at,
        environment: env.clone(),
        kind: EventKind::RemediationFinished {
            expected: req.expected,
            attempt: req.attempt,
            ok: outcome.ok,
            exit_code: outcome.exit_code,
            detail: outcome.detail.clone(),
            output_tail: outcome.output_tail.clone(),
        },
    }
}

pub(super) fn drifted(targets: &[TargetObservation]) -> Vec<(String, String)> {
    targets
        .iter()
        .flat_map(|t| {
            t.statuses().filter(|(_, s)| *s != Status::InSync).map(|(id, _)| (t.name.clone(), id.to_owned()))
        })
        .collect()
}
