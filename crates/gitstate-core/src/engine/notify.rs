//! Telling people: the text of each alarm notification, delivery to every sink, and the
//! undelivered outbox retried on later passes (a failed delivery never stops a pass).

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::stream::{self, StreamExt};
use jiff::Timestamp;

use crate::alarm::Resolution;
use crate::alarm::{AlarmEvent, AlarmKind, AlarmNotification, alarm_targets};
use crate::commit::CommitId;
use crate::event::{Event, EventKind};
use crate::name::EnvName;
use crate::observation::TargetObservation;
use crate::plugin::AlarmSink;
use crate::state::{EnvState, Undelivered};

use super::{Engine, EnvironmentSpec, PassOutcome};

impl Engine {
    /// Sends this pass's notifications and retries undelivered ones; failures are kept
    /// in the state for the next pass and never stop the pass.
    pub(super) async fn deliver(
        &self,
        envs: &[EnvironmentSpec],
        states: &mut [(EnvName, EnvState)],
        notes: Vec<(usize, AlarmNotification)>,
        now: Timestamp,
        out: &mut PassOutcome,
    ) {
        let index: HashMap<EnvName, usize> =
            states.iter().enumerate().map(|(i, (n, _))| (n.clone(), i)).collect();
        let mut jobs: Vec<(usize, Arc<dyn AlarmSink>, AlarmNotification, u32)> = Vec::new();
        for (_, state) in states.iter_mut() {
            for u in std::mem::take(&mut state.undelivered) {
                let sink = self.sinks.iter().find(|s| s.name() == u.sink);
                match (sink, index.get(&u.notification.environment)) {
                    (Some(sink), Some(&si)) => jobs.push((si, sink.clone(), u.notification, u.failures)),
                    _ => {
                        tracing::warn!(sink = %u.sink, "dropping an undelivered notification for a sink no longer configured")
                    }
                }
            }
        }
        for (ei, note) in notes {
            let Some(&si) = index.get(&envs[ei].name) else { continue };
            for sink in &self.sinks {
                jobs.push((si, sink.clone(), note.clone(), 0));
            }
        }
        type Sent = (usize, Arc<dyn AlarmSink>, AlarmNotification, u32, Result<(), crate::error::SinkError>);
        let sends: Vec<BoxFuture<'static, Sent>> = jobs
            .into_iter()
            .map(|(si, sink, note, failures)| -> BoxFuture<'static, Sent> {
                Box::pin(async move {
                    let r = sink.notify(&note).await;
                    (si, sink, note, failures, r)
                })
            })
            .collect();
        let results: Vec<Sent> = stream::iter(sends).buffer_unordered(self.concurrency).collect().await;
        for (si, sink, note, failures, r) in results {
            out.deliveries.push((sink.name().to_owned(), r.is_ok()));
            let Err(err) = r else { continue };
            tracing::warn!(sink = sink.name(), environment = %note.environment, error = %err, "alarm notification failed; retrying next pass");
            let (name, state) = &mut states[si];
            out.events.push(Event {
                at: now,
                environment: name.clone(),
                kind: EventKind::NotificationFailed {
                    sink: sink.name().to_owned(),
                    alarm: note.alarm,
                    error: err.message,
                },
            });
            // Firing refreshes are re-sent every pass anyway.
            if note.event != AlarmEvent::AlarmFiring {
                state.undelivered.push(Undelivered {
                    sink: sink.name().to_owned(),
                    notification: note,
                    failures: failures + 1,
                });
                if state.undelivered.len() > MAX_UNDELIVERED {
                    let dropped = state.undelivered.len() - MAX_UNDELIVERED;
                    tracing::error!(environment = %name, dropped, "dropping the oldest undelivered alarm notifications");
                    state.undelivered.drain(..dropped);
                }
            }
        }
    }
}

/// Undelivered notifications kept per environment; the oldest are dropped beyond this.
const MAX_UNDELIVERED: usize = 64;

#[allow(clippy::too_many_arguments)]
pub(super) fn notification(
    env: &EnvironmentSpec,
    reference: &str,
    expected: CommitId,
    kind: AlarmKind,
    since: Timestamp,
    event: AlarmEvent,
    resolution: Option<Resolution>,
    now: Timestamp,
    targets: &[TargetObservation],
) -> AlarmNotification {
    let summary = match (event, kind) {
        (AlarmEvent::AlarmResolved, _) => format!(
            "{} alarm for {} resolved ({})",
            kind,
            env.name,
            match resolution {
                Some(Resolution::Converged) => "converged",
                Some(Resolution::Superseded) => "superseded by a new expected commit",
                _ => "cleared",
            }
        ),
        (_, AlarmKind::Drift) => {
            format!(
                "{} does not run {} ({}) and remediation did not fix it",
                env.name,
                expected.short(12),
                reference
            )
        }
        (_, AlarmKind::Diverged) => format!(
            "{} runs a commit that {} never led to (expected {}); not overwriting it",
            env.name,
            reference,
            expected.short(12)
        ),
        (_, AlarmKind::Unreachable) => format!("{}: probes cannot read what runs", env.name),
    };
    AlarmNotification {
        event,
        alarm: kind,
        environment: env.name.clone(),
        reference: reference.to_owned(),
        expected_sha: expected,
        since,
        ended_at: (event == AlarmEvent::AlarmResolved).then_some(now),
        resolution,
        summary,
        targets: alarm_targets(targets),
    }
}
