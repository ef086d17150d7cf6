//! Telling people: the text of each alarm notification, delivery to every sink in order
//! per alarm, and the undelivered outbox retried with backoff on later passes (a failed
//! delivery never stops a pass; a rejected one is not retried).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use futures::stream::{self, StreamExt};
use jiff::Timestamp;

use crate::alarm::Resolution;
use crate::alarm::{AlarmEvent, AlarmKind, AlarmNotification, alarm_targets};
use crate::commit::CommitId;
use crate::error::SinkError;
use crate::event::{Event, EventKind};
use crate::name::EnvName;
use crate::observation::TargetObservation;
use crate::plugin::AlarmSink;
use crate::state::{EnvState, Undelivered, after};

use super::{Engine, EnvironmentSpec, PassOutcome};

impl Engine {
    /// Sends this pass's notifications after those kept from earlier passes, in order per
    /// (environment, sink, alarm): a failure keeps that notification *and every later one of
    /// the same alarm* for a later pass, so a resolve is never delivered before the raise it
    /// follows (and a stale raise never lands after a resolve). Kept notifications are
    /// retried with exponential backoff (the next pass, then after 2, 4, … passes, at most
    /// `renotify` — or an hour — apart); a rejection (HTTP 4xx) is dropped, never retried.
    /// Nothing here ever stops the pass.
    pub(super) async fn deliver(
        &self,
        envs: &[EnvironmentSpec],
        states: &mut [(EnvName, EnvState)],
        notes: Vec<AlarmNotification>,
        now: Timestamp,
        out: &mut PassOutcome,
    ) {
        let index: HashMap<EnvName, usize> =
            states.iter().enumerate().map(|(i, (n, _))| (n.clone(), i)).collect();
        let caps: HashMap<&EnvName, Duration> = envs
            .iter()
            .map(|e| {
                let every = e.effective_policy().renotify;
                (&e.name, if every.is_zero() { MAX_RETRY_GAP } else { every.min(MAX_RETRY_GAP) })
            })
            .collect();
        // One ordered queue per (state index, sink, alarm), kept notifications first.
        let mut queues: BTreeMap<(usize, String, AlarmKind), Vec<Undelivered>> = BTreeMap::new();
        for (si, (_, state)) in states.iter_mut().enumerate() {
            for u in std::mem::take(&mut state.undelivered) {
                if self.sinks.iter().any(|s| s.name() == u.sink) {
                    queues.entry((si, u.sink.clone(), u.notification.alarm)).or_default().push(u);
                } else {
                    tracing::warn!(sink = %u.sink, "dropping an undelivered notification for a sink no longer configured");
                }
            }
        }
        for note in notes {
            let Some(&si) = index.get(&note.environment) else { continue };
            for sink in &self.sinks {
                let queue = queues.entry((si, sink.name().to_owned(), note.alarm)).or_default();
                // A refresh of a firing alarm only matters when nothing is waiting before it.
                if note.event == AlarmEvent::AlarmFiring && !queue.is_empty() {
                    continue;
                }
                queue.push(Undelivered::new(sink.name(), note.clone()));
            }
        }

        let sends: Vec<BoxFuture<'_, Sent>> = queues
            .into_iter()
            .map(|((si, sink, alarm), queue)| -> BoxFuture<'_, Sent> {
                let sink = self.sinks.iter().find(|s| s.name() == sink).cloned();
                let cap = caps.get(&states[si].0).copied().unwrap_or(MAX_RETRY_GAP);
                Box::pin(send_in_order(sink, queue, now, cap).map(move |sent| Sent { si, alarm, ..sent }))
            })
            .collect();
        let results: Vec<Sent> = stream::iter(sends).buffer_unordered(self.concurrency).collect().await;

        for sent in results {
            let (name, state) = &mut states[sent.si];
            for (sink, result) in sent.attempts {
                let outcome = match &result {
                    Ok(()) => Delivery::Delivered,
                    Err(e) if e.rejected => Delivery::Rejected,
                    Err(_) => Delivery::Failed,
                };
                out.deliveries.push((sink.clone(), outcome));
                let Err(err) = result else { continue };
                // At most one log line and one `notification_failed` event per alarm, sink and
                // hour: a revoked hook must not fill the disk.
                let key = format!("{sink}/{}", sent.alarm);
                let last = state.notification_failed_at.get(&key).copied();
                if last.is_some_and(|t| now < after(t, FAILED_EVENT_EVERY)) {
                    tracing::debug!(sink = %sink, environment = %name, alarm = %sent.alarm, error = %err, "alarm notification failed again");
                    continue;
                }
                if err.rejected {
                    tracing::error!(sink = %sink, environment = %name, alarm = %sent.alarm, error = %err,
                        "alarm notification rejected; not retried (check the sink's configuration)");
                } else {
                    tracing::warn!(sink = %sink, environment = %name, alarm = %sent.alarm, error = %err,
                        "alarm notification failed; kept and retried with backoff");
                }
                state.notification_failed_at.insert(key, now);
                out.events.push(Event {
                    at: now,
                    environment: name.clone(),
                    kind: EventKind::NotificationFailed {
                        sink: sink.clone(),
                        alarm: sent.alarm,
                        error: err.message,
                    },
                });
            }
            state.undelivered.extend(sent.kept);
        }
        for (name, state) in states.iter_mut() {
            if state.undelivered.len() > MAX_UNDELIVERED {
                let dropped = state.undelivered.len() - MAX_UNDELIVERED;
                tracing::error!(environment = %name, dropped, "dropping the oldest undelivered alarm notifications");
                state.undelivered.drain(..dropped);
            }
            // The hourly limit needs no memory of alarms long gone.
            state.notification_failed_at.retain(|_, t| now < after(*t, FAILED_EVENT_EVERY));
        }
    }
}

/// What became of one queue: each send tried, and what is kept for a later pass.
struct Sent {
    si: usize,
    alarm: AlarmKind,
    attempts: Vec<(String, Result<(), SinkError>)>,
    kept: Vec<Undelivered>,
}

/// Sends one alarm's notifications to one sink in order, stopping at the first failure
/// (it and the rest are kept) or when the head is backing off.
async fn send_in_order(
    sink: Option<Arc<dyn AlarmSink>>,
    queue: Vec<Undelivered>,
    now: Timestamp,
    cap: Duration,
) -> Sent {
    let mut sent = Sent { si: 0, alarm: AlarmKind::Drift, attempts: Vec::new(), kept: Vec::new() };
    let Some(sink) = sink else { return sent };
    let mut rest = queue.into_iter();
    for mut u in rest.by_ref() {
        if !u.due(now, cap) {
            u.skipped += 1;
            sent.kept.push(u);
            break;
        }
        let result = sink.notify(&u.notification).await;
        match &result {
            Err(e) if !e.rejected => {
                u.failures += 1;
                u.skipped = 0;
                u.last_try = Some(now);
                // A refresh is sent again next pass anyway; the rest wait behind this one.
                if u.notification.event != AlarmEvent::AlarmFiring {
                    sent.kept.push(u);
                }
                sent.attempts.push((sink.name().to_owned(), result));
                break;
            }
            _ => sent.attempts.push((sink.name().to_owned(), result)),
        }
    }
    sent.kept.extend(rest.filter(|u| u.notification.event != AlarmEvent::AlarmFiring));
    sent
}

/// What became of one notification to one sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Delivery {
    /// The sink accepted it.
    Delivered,
    /// It failed and is kept for a later pass.
    Failed,
    /// The sink refused it for good (HTTP 4xx); it is not retried.
    Rejected,
}

impl Delivery {
    /// The `outcome` label of `gitstate_notifications_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Delivered => "ok",
            Delivery::Failed => "failed",
            Delivery::Rejected => "rejected",
        }
    }
}

/// Undelivered notifications kept per environment; the oldest are dropped beyond this.
const MAX_UNDELIVERED: usize = 64;

/// The longest gap between two retries of a kept notification.
const MAX_RETRY_GAP: Duration = Duration::from_secs(3600);

/// At most one `notification_failed` event per alarm and sink this often.
const FAILED_EVENT_EVERY: Duration = Duration::from_secs(3600);

#[allow(clippy::too_many_arguments)]
pub(super) fn notification(
    env: &EnvName,
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
            env,
            match resolution {
                Some(Resolution::Converged) => "converged",
                Some(Resolution::Superseded) => "superseded by a new expected commit",
                Some(Resolution::Removed) => "the environment was removed",
                _ => "cleared",
            }
        ),
        (_, AlarmKind::Drift) => {
            format!(
                "{} does not run {} ({}) and remediation did not fix it",
                env,
                expected.short(12),
                reference
            )
        }
        (_, AlarmKind::Diverged) => format!(
            "{} runs a commit that {} never led to (expected {}); not overwriting it",
            env,
            reference,
            expected.short(12)
        ),
        (_, AlarmKind::Unreachable) => format!("{}: probes cannot read what runs", env),
    };
    AlarmNotification {
        event,
        alarm: kind,
        environment: env.clone(),
        reference: reference.to_owned(),
        expected_sha: expected,
        since,
        ended_at: (event == AlarmEvent::AlarmResolved).then_some(now),
        resolution,
        summary,
        targets: alarm_targets(targets),
    }
}
