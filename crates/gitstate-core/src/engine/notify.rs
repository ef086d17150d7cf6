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
use crate::plugin::{AlarmSink, Grouping};
use crate::state::{Outbox, Undelivered, after};

use super::group::{self, Routed, SourceSeen};
use super::outcome::{Delivery, PassOutcome};
use super::setup::Engine;
use super::spec::EnvironmentSpec;

impl Engine {
    /// Sends this pass's notifications after those kept from earlier passes for the same
    /// environments (`names`), in order per (environment, sink, alarm): a failure keeps that
    /// notification *and every later one of the same alarm* in the outbox, so a resolve is
    /// never delivered before the raise it follows (and a stale raise never lands after a
    /// resolve). Kept notifications are retried with exponential backoff (the next pass,
    /// then after 2, 4, … passes, at most `renotify` — or an hour — apart); a rejection
    /// (HTTP 4xx) is dropped, never retried. Nothing here ever stops the pass.
    pub(super) async fn deliver(
        &self,
        envs: &[EnvironmentSpec],
        names: &[EnvName],
        notes: Vec<AlarmNotification>,
        source: SourceSeen,
        now: Timestamp,
        out: &mut PassOutcome,
    ) {
        let caps: HashMap<&EnvName, Duration> = envs
            .iter()
            .map(|e| {
                let every = e.effective_policy().renotify;
                (&e.name, if every.is_zero() { MAX_RETRY_GAP } else { every.min(MAX_RETRY_GAP) })
            })
            .collect();
        // This pass's environments' kept notifications, taken out while they are tried (a
        // concurrent pass of other environments keeps its own).
        let kept = self.take_outbox(names).await;
        // SPEC §17: `info` alarms are recorded and shown, never sent.
        let notes: Vec<AlarmNotification> =
            notes.into_iter().filter(|n| n.severity != crate::policy::Severity::Info).collect();
        // Folded into the causes they share, and what each grouping sink is told of those.
        let groupings: Vec<(String, Grouping)> =
            self.sinks.iter().map(|s| (s.name().to_owned(), s.grouping())).collect();
        let (routed, cause_sends, causes_changed) = {
            let mut guard = self.outbox.lock().unwrap_or_else(|p| p.into_inner());
            let outbox = guard.get_or_insert_with(Outbox::default);
            if outbox.causes.is_empty()
                && notes.iter().all(|n| {
                    let held = n.event == AlarmEvent::AlarmRaised && group::holds(n.alarm, self.group_wait);
                    !(n.cause().is_shared() || held)
                })
                && source != SourceSeen::Failed
                && outbox.source_failures == 0
            {
                let every = notes.clone();
                (Routed { every, grouped: notes, touched: Default::default() }, Vec::new(), false)
            } else {
                let before = (outbox.causes.clone(), outbox.source_failures);
                let mut policies: Vec<(EnvName, crate::Policy)> =
                    envs.iter().map(|e| (e.name.clone(), e.effective_policy())).collect();
                // The source is every environment's: all of them join its cause at once.
                if source == SourceSeen::Failed
                    && let Some(fleet) = &self.fleet
                {
                    let known: std::collections::BTreeSet<EnvName> =
                        policies.iter().map(|(n, _)| n.clone()).collect();
                    policies.extend(fleet.environments().into_iter().filter(|(n, _)| !known.contains(n)));
                }
                group::note_source(&mut outbox.causes, &mut outbox.source_failures, source, &policies, now);
                let routed =
                    group::route(&mut outbox.causes, notes, now, self.group_wait, &mut self.reassigner());
                let sends = group::plan(
                    &mut outbox.causes,
                    &groupings,
                    &routed.touched,
                    now,
                    self.group_wait,
                    MAX_RETRY_GAP,
                );
                let changed = before != (outbox.causes.clone(), outbox.source_failures);
                (routed, sends, changed)
            }
        };
        if kept.is_empty()
            && routed.every.is_empty()
            && routed.grouped.is_empty()
            && cause_sends.is_empty()
            && !causes_changed
        {
            return;
        }
        let took = !kept.is_empty() || causes_changed;
        // One ordered queue per (environment, sink, alarm), kept notifications first.
        let mut queues: BTreeMap<(EnvName, String, AlarmKind), Vec<Undelivered>> = BTreeMap::new();
        for u in kept {
            if self.sinks.iter().any(|s| s.name() == u.sink) {
                let key = (u.notification.environment.clone(), u.sink.clone(), u.notification.alarm);
                queues.entry(key).or_default().push(u);
            } else {
                tracing::warn!(sink = %u.sink, "dropping an undelivered notification for a sink no longer configured");
            }
        }
        for (sink, grouping) in &groupings {
            let notes = if *grouping == Grouping::PerCause { &routed.grouped } else { &routed.every };
            for note in notes {
                let key = (note.environment.clone(), sink.clone(), note.alarm);
                let queue = queues.entry(key).or_default();
                // A refresh of a firing alarm only matters when nothing is waiting before it.
                if note.event == AlarmEvent::AlarmFiring && !queue.is_empty() {
                    continue;
                }
                queue.push(Undelivered::new(sink, note.clone()));
            }
        }
        let causes_sent = self.send_causes(cause_sends, now, out);

        let sends: Vec<BoxFuture<'_, Sent>> = queues
            .into_iter()
            .map(|((env, sink, alarm), queue)| -> BoxFuture<'_, Sent> {
                let sink = self.sinks.iter().find(|s| s.name() == sink).cloned();
                let cap = caps.get(&env).copied().unwrap_or(MAX_RETRY_GAP);
                Box::pin(send_in_order(sink, queue, now, cap).map(move |(attempts, kept)| Sent {
                    env,
                    alarm,
                    attempts,
                    kept,
                }))
            })
            .collect();
        let (results, ()) = futures::join!(
            stream::iter(sends).buffer_unordered(self.concurrency).collect::<Vec<Sent>>(),
            causes_sent
        );

        let mut noted: Vec<String> = Vec::new();
        let mut back: Vec<Undelivered> = Vec::new();
        {
            let guard = self.outbox.lock().unwrap_or_else(|p| p.into_inner());
            let failure_noted = guard.as_ref().map(|o| &o.failure_noted);
            for sent in results {
                for (sink, result) in sent.attempts {
                    let outcome = match &result {
                        Ok(()) => Delivery::Delivered,
                        Err(e) if e.rejected => Delivery::Rejected,
                        Err(_) => Delivery::Failed,
                    };
                    out.deliveries.push((sink.clone(), outcome));
                    let Err(err) = result else { continue };
                    // At most one log line and one `notification_failed` event per alarm, sink
                    // and hour: a revoked hook must not fill the disk.
                    let key = format!("{}/{sink}/{}", sent.env, sent.alarm);
                    let last = failure_noted.and_then(|m| m.get(&key)).copied();
                    if last.is_some_and(|t| now < after(t, FAILED_EVENT_EVERY)) || noted.contains(&key) {
                        tracing::debug!(sink = %sink, environment = %sent.env, alarm = %sent.alarm, error = %err, "alarm notification failed again");
                        continue;
                    }
                    if err.rejected {
                        tracing::error!(sink = %sink, environment = %sent.env, alarm = %sent.alarm, error = %err,
                            "alarm notification rejected; not retried (check the sink's configuration)");
                    } else {
                        tracing::warn!(sink = %sink, environment = %sent.env, alarm = %sent.alarm, error = %err,
                            "alarm notification failed; kept and retried with backoff");
                    }
                    noted.push(key);
                    out.events.push(Event {
                        at: now,
                        environment: sent.env.clone(),
                        kind: EventKind::NotificationFailed {
                            sink: sink.clone(),
                            alarm: sent.alarm,
                            error: err.message,
                        },
                    });
                }
                back.extend(sent.kept);
            }
        }
        self.put_back(took, back, noted, now).await;
    }

    /// What an environment's alarm of a kind shares now, from what the fleet's last passes
    /// saw (read once, and only when asked: when an alarm's wait ends).
    fn reassigner(&self) -> impl FnMut(&EnvName, AlarmKind) -> crate::cause::Cause + '_ {
        let mut fleet: Option<Vec<crate::cause::Symptoms>> = None;
        move |env, kind| {
            let fleet =
                fleet.get_or_insert_with(|| self.fleet.as_ref().map(|f| f.symptoms()).unwrap_or_default());
            match fleet.iter().find(|s| &s.environment == env) {
                Some(me) => crate::cause::assign(kind, me, fleet),
                None => crate::cause::Cause::Environment(env.clone()),
            }
        }
    }

    /// SPEC §19: `stale` are the environments not observed in time, as the cluster's
    /// notifier sees them (every environment of the fleet, whoever owns it): one `stale`
    /// cause (Alertmanager's `GitstateStale`), opened when the first goes stale, changed
    /// as they come and go (at most every `group_wait`), resolved when none is left; told
    /// to grouping sinks like any cause, retried with backoff, kept in the outbox. Returns
    /// what became of each send.
    pub async fn note_stale(
        &self,
        stale: Vec<(EnvName, crate::Policy)>,
        now: Timestamp,
    ) -> Vec<(String, Delivery)> {
        self.load_outbox().await;
        let groupings: Vec<(String, Grouping)> =
            self.sinks.iter().map(|s| (s.name().to_owned(), s.grouping())).collect();
        let (sends, changed) = {
            let mut guard = self.outbox.lock().unwrap_or_else(|p| p.into_inner());
            let outbox = guard.get_or_insert_with(Outbox::default);
            let before = outbox.causes.get(group::STALE).cloned();
            group::note_stale(&mut outbox.causes, &stale, now, self.group_wait);
            let touched = std::iter::once(group::STALE.to_owned()).collect();
            let sends =
                group::plan(&mut outbox.causes, &groupings, &touched, now, self.group_wait, MAX_RETRY_GAP);
            let changed = before != outbox.causes.get(group::STALE).cloned();
            (sends, changed)
        };
        if sends.is_empty() && !changed {
            return Vec::new();
        }
        let mut out = PassOutcome::new(now);
        self.send_causes(sends, now, &mut out).await;
        let snapshot = self.outbox.lock().unwrap_or_else(|p| p.into_inner()).clone();
        self.save_outbox(snapshot).await;
        out.deliveries
    }

    /// Sends what grouping sinks are told of causes (SPEC §17) and settles what each was
    /// told by what became of it.
    fn send_causes<'a>(
        &'a self,
        sends: Vec<group::CauseSend>,
        now: Timestamp,
        out: &'a mut PassOutcome,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if sends.is_empty() {
                return;
            }
            let tries = sends.into_iter().map(|send| async move {
                let sink = self.sinks.iter().find(|s| s.name() == send.sink).cloned();
                let result = match &sink {
                    Some(s) => s.notify_cause(&send.note).await,
                    None => Ok(()),
                };
                (send, result)
            });
            let done: Vec<_> = stream::iter(tries).buffer_unordered(self.concurrency).collect().await;
            let mut guard = self.outbox.lock().unwrap_or_else(|p| p.into_inner());
            let outbox = guard.get_or_insert_with(Outbox::default);
            for (send, result) in done {
                let failed = matches!(&result, Err(e) if !e.rejected);
                out.deliveries.push((
                    send.sink.clone(),
                    match &result {
                        Ok(()) => Delivery::Delivered,
                        Err(e) if e.rejected => Delivery::Rejected,
                        Err(_) => Delivery::Failed,
                    },
                ));
                if let Err(e) = &result {
                    tracing::warn!(sink = %send.sink, cause = %send.note.cause, event = send.note.event.as_str(), error = %e,
                        "cause notification not delivered{}", if failed { "; tried again on a later pass" } else { "" });
                }
                group::settle(&mut outbox.causes, &send, failed, now);
            }
        })
    }

    /// The outbox, loaded from the journal on first use (empty without one, or when it
    /// cannot be read: the error is logged, the pass goes on).
    async fn load_outbox(&self) {
        if self.outbox.lock().unwrap_or_else(|p| p.into_inner()).is_some() {
            return;
        }
        let loaded = match &self.journal {
            Some(j) => j.outbox().await.unwrap_or_else(|e| {
                tracing::error!(error = %e, "undelivered notifications could not be read; starting without them");
                Outbox::default()
            }),
            None => Outbox::default(),
        };
        self.outbox.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(loaded);
    }

    /// Takes the kept notifications of `names` out of the outbox.
    async fn take_outbox(&self, names: &[EnvName]) -> Vec<Undelivered> {
        self.load_outbox().await;
        let mut guard = self.outbox.lock().unwrap_or_else(|p| p.into_inner());
        let Some(outbox) = guard.as_mut() else { return Vec::new() };
        let (mine, others) = std::mem::take(&mut outbox.pending)
            .into_iter()
            .partition(|u| names.contains(&u.notification.environment));
        outbox.pending = others;
        mine
    }

    /// Puts what is still undelivered back, notes the failures written, and stores the
    /// outbox when it changed (`took`: something was taken out of it for this pass).
    async fn put_back(&self, took: bool, back: Vec<Undelivered>, noted: Vec<String>, now: Timestamp) {
        let snapshot = {
            let mut guard = self.outbox.lock().unwrap_or_else(|p| p.into_inner());
            let outbox = guard.get_or_insert_with(Outbox::default);
            let before = (outbox.pending.len(), outbox.failure_noted.len());
            let changed = took || !back.is_empty() || !noted.is_empty();
            outbox.pending.extend(back);
            for key in noted {
                outbox.failure_noted.insert(key, now);
            }
            // The hourly limit needs no memory of alarms long gone.
            outbox.failure_noted.retain(|_, t| now < after(*t, FAILED_EVENT_EVERY));
            let per_env = outbox.pending.iter().fold(HashMap::<&EnvName, usize>::new(), |mut m, u| {
                *m.entry(&u.notification.environment).or_default() += 1;
                m
            });
            let over: Vec<EnvName> =
                per_env.into_iter().filter(|(_, n)| *n > MAX_UNDELIVERED).map(|(e, _)| e.clone()).collect();
            for env in over {
                let count = outbox.pending.iter().filter(|u| u.notification.environment == env).count();
                let mut drop = count - MAX_UNDELIVERED;
                tracing::error!(environment = %env, dropped = drop, "dropping the oldest undelivered alarm notifications");
                outbox.pending.retain(|u| {
                    let oldest = drop > 0 && u.notification.environment == env;
                    drop -= usize::from(oldest);
                    !oldest
                });
            }
            (changed || before != (outbox.pending.len(), outbox.failure_noted.len())).then(|| outbox.clone())
        };
        self.save_outbox(snapshot).await;
    }

    /// Drops what the outbox keeps for `names` (removed environments).
    pub(super) async fn drop_outbox(&self, names: &[EnvName]) {
        let dropped = self.take_outbox(names).await;
        if dropped.is_empty() {
            return;
        }
        tracing::warn!(count = dropped.len(), "dropping undelivered notifications of removed environments");
        let snapshot = self.outbox.lock().unwrap_or_else(|p| p.into_inner()).clone();
        self.save_outbox(snapshot).await;
    }

    async fn save_outbox(&self, snapshot: Option<Outbox>) {
        if let (Some(j), Some(outbox)) = (&self.journal, snapshot)
            && let Err(e) = j.save_outbox(&outbox).await
        {
            tracing::error!(error = %e, "undelivered notifications could not be stored");
        }
    }
}

/// What became of one queue: each send tried, and what is kept for a later pass.
struct Sent {
    env: EnvName,
    alarm: AlarmKind,
    attempts: Vec<(String, Result<(), SinkError>)>,
    kept: Vec<Undelivered>,
}

/// What one queue's sends came to, and what it keeps for a later pass.
type Sends = (Vec<(String, Result<(), SinkError>)>, Vec<Undelivered>);

/// Sends one alarm's notifications to one sink in order, stopping at the first failure
/// (it and the rest are kept) or when the head is backing off.
async fn send_in_order(
    sink: Option<Arc<dyn AlarmSink>>,
    queue: Vec<Undelivered>,
    now: Timestamp,
    cap: Duration,
) -> Sends {
    let (mut attempts, mut kept) = (Vec::new(), Vec::new());
    let Some(sink) = sink else { return (attempts, kept) };
    let mut rest = queue.into_iter();
    for mut u in rest.by_ref() {
        if !u.due(now, cap) {
            u.skipped += 1;
            kept.push(u);
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
                    kept.push(u);
                }
                attempts.push((sink.name().to_owned(), result));
                break;
            }
            _ => attempts.push((sink.name().to_owned(), result)),
        }
    }
    kept.extend(rest.filter(|u| u.notification.event != AlarmEvent::AlarmFiring));
    (attempts, kept)
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
    policy: &crate::Policy,
    cause: Option<crate::cause::Cause>,
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
        (_, AlarmKind::Degraded) => format!(
            "{} runs {} ({}) but it failed its checks after the deploy",
            env,
            expected.short(12),
            reference
        ),
        (_, AlarmKind::Untrusted) => format!(
            "{} points at {} in {}, and its commits are not all signed by allowed keys: not deploying it",
            reference,
            expected.short(12),
            env
        ),
        (_, AlarmKind::UnsignedRunning) => format!("{env} runs a commit not signed by an allowed key"),
        (_, AlarmKind::Stale) => format!("{env} has not been observed in time: nothing probes it"),
        (_, AlarmKind::Vetoed) => format!(
            "{} points at {}, a commit vetoed in {}: not deploying it (gitstate unveto to allow it)",
            reference,
            expected.short(12),
            env
        ),
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
        severity: policy.severity,
        labels: policy.labels.clone(),
        runbook_url: policy.runbook_url.as_ref().map(|u| u.replace("{alarm}", &kind.to_string())),
        cause,
    }
}
