//! One page per cause (SPEC §17): a pass's alarm notifications folded into the causes they
//! share ([`CauseRecord`]s, kept in the outbox so they survive restarts and failover), and
//! what each sink is told of each cause.
//!
//! - An alarm whose cause is its environment's own goes to every sink as itself — to
//!   grouping sinks after `group_wait` when its kind can be shared (`drift`, `degraded`,
//!   `unreachable`): the first environment to show a bad commit is seen before the
//!   others, so at the end of its wait its cause is asked again of what the fleet shows
//!   then, and if others share it now, it joins their cause instead of paging alone.
//! - An alarm with a shared cause joins the cause's record. Sinks that want every alarm
//!   ([`Grouping::PerAlarm`], [`Grouping::Both`]) get it at once; sinks that group
//!   ([`Grouping::PerCause`]) do not: its raise is held while the cause may still form
//!   (`group_wait` from the cause's opening). Then, if two environments or more (or the
//!   source) share the cause, it becomes one page — `cause_opened` with the members, later
//!   `cause_changed` (at most every `group_wait`) and `cause_resolved` with its last
//!   member — and its members' own notifications are not sent to grouping sinks;
//!   otherwise the held raise goes out as itself and the alarm is notified as today.
//! - While the source cannot be read, the `source` cause holds the environments of the
//!   passes that failed; their own alarms are not sent to any sink (inhibited) until it
//!   resolves, which it does at the first pass that reads the source.
//!
//! What a sink was told of a cause is state, not a queue: a failed delivery leaves it
//! as it was, and the next pass (with backoff) sends what is true then.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::Timestamp;

use crate::alarm::{AlarmEvent, AlarmKind, AlarmNotification, CauseEvent, CauseNotification};
use crate::cause::{Cause, CauseMember, CauseRecord, Told};
use crate::name::EnvName;
use crate::plugin::Grouping;
use crate::policy::{Policy, Severity};
use crate::state::{after, retry_due};

/// What the pass learnt of the expected-state source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SourceSeen {
    /// Nothing (a dry run, a removal).
    NotAsked,
    /// It answered.
    Read,
    /// It could not be read at all.
    Failed,
}

/// A pass's notifications, sorted by who gets them.
#[derive(Debug, Default)]
pub(super) struct Routed {
    /// For sinks that want every alarm ([`Grouping::PerAlarm`], [`Grouping::Both`]).
    pub(super) every: Vec<AlarmNotification>,
    /// For sinks that group ([`Grouping::PerCause`]).
    pub(super) grouped: Vec<AlarmNotification>,
    /// The causes whose members were seen this pass.
    pub(super) touched: BTreeSet<String>,
}

/// The key of the source's record.
const SOURCE: &str = "source";

/// Counts a pass that read (or could not read) the source, and opens, grows or resolves
/// the `source` cause: opened once it has failed `unreachable_after` passes in a row
/// (the least of `envs`' policies), holding `envs`.
pub(super) fn note_source(
    causes: &mut BTreeMap<String, CauseRecord>,
    failures: &mut u32,
    seen: SourceSeen,
    envs: &[(EnvName, Policy)],
    now: Timestamp,
) {
    match seen {
        SourceSeen::NotAsked => {}
        SourceSeen::Read => {
            *failures = 0;
            if let Some(rec) = causes.get_mut(SOURCE) {
                rec.members.clear();
            }
        }
        SourceSeen::Failed => {
            *failures = failures.saturating_add(1);
            let after = envs.iter().map(|(_, p)| p.unreachable_after.max(1)).min().unwrap_or(1);
            if *failures < after {
                return;
            }
            tracing::debug!(
                failures = *failures,
                environments = envs.len(),
                "the source cause holds these environments"
            );
            let rec = causes
                .entry(SOURCE.to_owned())
                .or_insert_with(|| CauseRecord::new(Cause::Source, AlarmKind::Unreachable, now));
            for (env, policy) in envs {
                if !rec.members.iter().any(|m| &m.environment == env) {
                    rec.members.push(member_by_policy(env, AlarmKind::Unreachable, policy, now));
                }
            }
        }
    }
}

/// A member that joins a cause by what the fleet shows (the source, staleness), not by
/// an alarm of its own: its severity and labels are its policy's.
fn member_by_policy(env: &EnvName, alarm: AlarmKind, policy: &Policy, now: Timestamp) -> CauseMember {
    CauseMember {
        environment: env.clone(),
        alarm,
        since: now,
        severity: policy.severity,
        labels: policy.labels.clone(),
        held: None,
        released: false,
    }
}

/// The key of the record of environments not observed in time (SPEC §19).
pub(super) const STALE: &str = "stale";

/// Sets the `stale` cause's members to `stale` exactly: new ones join (since `now`), those
/// observed again leave; the cause resolves once none is left. It becomes a page once
/// `group_wait` has passed since it opened (no other cause is touched here: a raise held
/// elsewhere is released by a pass, which sends it).
pub(super) fn note_stale(
    causes: &mut BTreeMap<String, CauseRecord>,
    stale: &[(EnvName, Policy)],
    now: Timestamp,
    group_wait: Duration,
) {
    if stale.is_empty() && !causes.contains_key(STALE) {
        return;
    }
    let rec = causes
        .entry(STALE.to_owned())
        .or_insert_with(|| CauseRecord::new(Cause::Stale, AlarmKind::Stale, now));
    rec.members.retain(|m| stale.iter().any(|(e, _)| *e == m.environment));
    for (env, policy) in stale {
        if !rec.members.iter().any(|m| &m.environment == env) {
            rec.members.push(member_by_policy(env, AlarmKind::Stale, policy, now));
        }
    }
    if rec.grouped_at.is_none() && !rec.members.is_empty() && now >= after(rec.since, group_wait) {
        rec.grouped_at = Some(now);
    }
}

/// Folds `notes` into `causes` and sorts them by who gets them; then decides, for each
/// cause whose `group_wait` is over, whether it is one page or its one alarm's own.
///
/// `reassign` answers what an environment's alarm of a kind shares now (from what the
/// fleet shows); it is asked at the end of the wait of an alarm raised as its own.
pub(super) fn route(
    causes: &mut BTreeMap<String, CauseRecord>,
    notes: Vec<AlarmNotification>,
    now: Timestamp,
    group_wait: Duration,
    reassign: &mut dyn FnMut(&EnvName, AlarmKind) -> Cause,
) -> Routed {
    let mut out = Routed::default();
    let inhibited: BTreeSet<EnvName> = causes
        .get(SOURCE)
        .map(|r| r.members.iter().map(|m| m.environment.clone()).collect())
        .unwrap_or_default();
    // Which record holds each open alarm: the cause it joined at the end of its wait may
    // not be the one it was raised with.
    let mut held_in: std::collections::HashMap<(EnvName, AlarmKind), String> = causes
        .iter()
        .flat_map(|(k, r)| r.members.iter().map(move |m| ((m.environment.clone(), m.alarm), k.clone())))
        .collect();
    for note in notes {
        if inhibited.contains(&note.environment) {
            tracing::debug!(environment = %note.environment, alarm = %note.alarm, "not sent: the source cause is open");
            continue;
        }
        let is = |m: &CauseMember| m.environment == note.environment && m.alarm == note.alarm;
        let cause = note.cause();
        let key = match held_in.get(&(note.environment.clone(), note.alarm)) {
            Some(k) if note.event != AlarmEvent::AlarmRaised => k.clone(),
            _ => cause.to_string(),
        };
        if note.event == AlarmEvent::AlarmRaised
            && let Some(was) = held_in.insert((note.environment.clone(), note.alarm), key.clone())
            && was != key
            && let Some(rec) = causes.get_mut(&was)
        {
            // Raised anew with another cause: it leaves the record it was in.
            rec.members.retain(|m| !is(m));
        }
        let tracked = cause.is_shared()
            || causes.contains_key(&key)
            || (note.event == AlarmEvent::AlarmRaised && holds(note.alarm, group_wait));
        if !tracked {
            out.every.push(note.clone());
            out.grouped.push(note);
            continue;
        }
        out.touched.insert(key.clone());
        out.every.push(note.clone());
        match note.event {
            AlarmEvent::AlarmRaised => {
                let rec = causes.entry(key).or_insert_with(|| CauseRecord::new(cause, note.alarm, now));
                rec.members.retain(|m| !is(m));
                let held = rec.grouped_at.is_none().then(|| note.clone());
                rec.members.push(CauseMember {
                    environment: note.environment.clone(),
                    alarm: note.alarm,
                    since: note.since,
                    severity: note.severity,
                    labels: note.labels.clone(),
                    held,
                    released: false,
                });
            }
            AlarmEvent::AlarmResolved => {
                let member = causes.get_mut(&key).and_then(|rec| {
                    let at = rec.members.iter().position(is)?;
                    Some((rec.members.remove(at), rec.grouped_at.is_some()))
                });
                match member {
                    // Its raise went out as itself: so does its resolution.
                    Some((m, false)) if m.released => out.grouped.push(note),
                    // Held (never sent), or part of a page: the cause says it.
                    Some(_) => {}
                    // Not a member (its cause's record is gone): as itself.
                    None => out.grouped.push(note),
                }
            }
            AlarmEvent::AlarmRepeated | AlarmEvent::AlarmFiring => {
                let rec = causes.get(&key);
                let member = rec.and_then(|r| r.members.iter().find(|m| is(m)));
                let own = match (rec, member) {
                    (Some(r), Some(m)) => r.grouped_at.is_none() && m.released,
                    _ => true,
                };
                if own {
                    out.grouped.push(note);
                }
            }
        }
    }
    // Alarms held as their own whose wait is over: asked again what they share, they
    // join that cause (and its wait) when it is another's too.
    let due: Vec<(String, CauseMember, Cause)> = causes
        .iter()
        .filter(|(_, r)| {
            matches!(r.cause, Cause::Environment(_))
                && r.grouped_at.is_none()
                && now >= after(r.since, group_wait)
        })
        .flat_map(|(k, r)| r.members.iter().filter(|m| m.held.is_some()).map(move |m| (k.clone(), m.clone())))
        .filter_map(|(k, m)| {
            let shared = reassign(&m.environment, m.alarm);
            shared.is_shared().then_some((k, m, shared))
        })
        .collect();
    for (from, mut member, cause) in due {
        if let Some(rec) = causes.get_mut(&from) {
            rec.members.retain(|m| !(m.environment == member.environment && m.alarm == member.alarm));
        }
        let key = cause.to_string();
        tracing::debug!(environment = %member.environment, alarm = %member.alarm, cause = %key, "an alarm raised as its own joins the cause it shares now");
        let rec = causes.entry(key.clone()).or_insert_with(|| CauseRecord::new(cause, member.alarm, now));
        if rec.grouped_at.is_some() {
            member.held = None;
        }
        rec.members.push(member);
        out.touched.insert(key);
    }
    // Causes whose wait is over: one page, or their one alarm's own.
    for rec in causes.values_mut() {
        if rec.grouped_at.is_some() || rec.members.is_empty() || now < after(rec.since, group_wait) {
            continue;
        }
        if rec.environments().len() >= 2 || matches!(rec.cause, Cause::Source | Cause::Stale) {
            rec.grouped_at = Some(now);
            for m in &mut rec.members {
                m.held = None;
            }
        } else {
            for m in &mut rec.members {
                if let Some(raise) = m.held.take() {
                    out.grouped.push(raise);
                    m.released = true;
                }
            }
        }
    }
    out
}

/// Whether a raise as its environment's own is held from grouping sinks for `group_wait`:
/// its kind is one that environments share, and there is a wait.
pub(super) fn holds(kind: AlarmKind, group_wait: Duration) -> bool {
    !group_wait.is_zero() && matches!(kind, AlarmKind::Drift | AlarmKind::Degraded | AlarmKind::Unreachable)
}

/// One notification of a cause to one sink, and what the sink is told once it lands.
#[derive(Debug, Clone)]
pub(super) struct CauseSend {
    pub(super) sink: String,
    pub(super) key: String,
    pub(super) note: CauseNotification,
    /// What the sink knew before (restored when the send fails).
    pub(super) before: Option<Told>,
}

/// What each sink that takes causes is to be told now, written into `told` at once (so a
/// pass running beside this one does not send it again; [`settle`] undoes a failure).
/// `cap` bounds the backoff between tries.
pub(super) fn plan(
    causes: &mut BTreeMap<String, CauseRecord>,
    sinks: &[(String, Grouping)],
    touched: &BTreeSet<String>,
    now: Timestamp,
    group_wait: Duration,
    cap: Duration,
) -> Vec<CauseSend> {
    let mut sends = Vec::new();
    for (key, rec) in causes.iter_mut() {
        if rec.grouped_at.is_none() {
            continue;
        }
        let members = rec.environments();
        let severity = loudest(rec.members.iter().map(|m| m.severity));
        for (sink, grouping) in sinks {
            if *grouping == Grouping::PerAlarm {
                continue;
            }
            let before = rec.told.get(sink).cloned();
            if let Some(t) = &before
                && !retry_due(t.failures, t.skipped, t.last_try, now, cap)
            {
                if let Some(t) = rec.told.get_mut(sink) {
                    t.skipped += 1;
                }
                continue;
            }
            let told: &[EnvName] = before.as_ref().map_or(&[], |t| &t.members);
            let event = match (told.is_empty(), members.is_empty()) {
                // Never told and nothing open: nothing to say, and nothing owed (an opening
                // that failed and is no longer true).
                (true, true) => {
                    rec.told.remove(sink);
                    None
                }
                (true, false) if severity == Severity::Info => None,
                (true, false) => Some(CauseEvent::CauseOpened),
                (false, true) => Some(CauseEvent::CauseResolved),
                (false, false)
                    if told != members.as_slice()
                        && before
                            .as_ref()
                            .and_then(|t| t.at)
                            .is_none_or(|at| now >= after(at, group_wait)) =>
                {
                    Some(CauseEvent::CauseChanged)
                }
                (false, false) if *grouping == Grouping::Both && touched.contains(key) => {
                    Some(CauseEvent::CauseFiring)
                }
                _ => None,
            };
            let Some(event) = event else { continue };
            let (joined, left) = if event == CauseEvent::CauseChanged {
                (
                    members.iter().filter(|m| !told.contains(m)).cloned().collect(),
                    told.iter().filter(|m| !members.contains(m)).cloned().collect(),
                )
            } else {
                (Vec::new(), Vec::new())
            };
            let note = CauseNotification {
                event,
                cause: rec.cause.clone(),
                alarm: rec.alarm,
                since: rec.since,
                ended_at: (event == CauseEvent::CauseResolved).then_some(now),
                members: members.clone(),
                summary: summary(event, rec, &members, &joined, &left),
                joined,
                left,
                severity,
                labels: common_labels(rec),
            };
            // Told now, as if it lands; `settle` puts back what was when it does not.
            match event {
                CauseEvent::CauseResolved => {
                    rec.told.remove(sink);
                }
                CauseEvent::CauseFiring => {}
                _ => {
                    let t = rec.told.entry(sink.clone()).or_default();
                    t.members = members.clone();
                    t.at = Some(now);
                }
            }
            sends.push(CauseSend { sink: sink.clone(), key: key.clone(), note, before });
        }
    }
    forget_finished(causes);
    sends
}

/// What became of a send: a failure puts back what the sink knew and counts it (a refresh
/// is not counted: the next pass sends one anyway); a success or a rejection (HTTP 4xx,
/// never retried) clears the count.
pub(super) fn settle(
    causes: &mut BTreeMap<String, CauseRecord>,
    send: &CauseSend,
    failed: bool,
    now: Timestamp,
) {
    let Some(rec) = causes.get_mut(&send.key) else {
        if failed && send.note.event == CauseEvent::CauseResolved {
            // The record was forgotten when the resolution was planned: keep it until told.
            let mut rec = CauseRecord::new(send.note.cause.clone(), send.note.alarm, send.note.since);
            rec.grouped_at = Some(send.note.since);
            if let Some(mut t) = send.before.clone() {
                t.failures += 1;
                t.last_try = Some(now);
                t.skipped = 0;
                rec.told.insert(send.sink.clone(), t);
            }
            causes.insert(send.key.clone(), rec);
        }
        return;
    };
    if failed {
        if send.note.event == CauseEvent::CauseFiring {
            return;
        }
        let mut t = send.before.clone().unwrap_or_default();
        t.failures += 1;
        t.last_try = Some(now);
        t.skipped = 0;
        rec.told.insert(send.sink.clone(), t);
    } else if let Some(t) = rec.told.get_mut(&send.sink) {
        t.failures = 0;
        t.last_try = None;
        t.skipped = 0;
    }
}

/// Drops causes with no member left that no sink still has to be told of.
fn forget_finished(causes: &mut BTreeMap<String, CauseRecord>) {
    causes.retain(|_, rec| !rec.members.is_empty() || !rec.told.is_empty());
}

fn loudest(severities: impl Iterator<Item = Severity>) -> Severity {
    let rank = |s: Severity| match s {
        Severity::Critical => 2,
        Severity::Warning => 1,
        _ => 0,
    };
    severities.max_by_key(|s| rank(*s)).unwrap_or(Severity::Info)
}

/// The labels every member has with the same value.
fn common_labels(rec: &CauseRecord) -> BTreeMap<String, String> {
    let mut members = rec.members.iter();
    let Some(first) = members.next() else { return BTreeMap::new() };
    let mut common = first.labels.clone();
    for m in members {
        common.retain(|k, v| m.labels.get(k) == Some(v));
    }
    common
}

/// Environments for people: every name up to five, then how many more.
fn list(envs: &[EnvName]) -> String {
    const SHOWN: usize = 5;
    let mut text = envs.iter().take(SHOWN).map(EnvName::as_str).collect::<Vec<_>>().join(", ");
    if envs.len() > SHOWN {
        text.push_str(&format!(" and {} more", envs.len() - SHOWN));
    }
    text
}

fn summary(
    event: CauseEvent,
    rec: &CauseRecord,
    members: &[EnvName],
    joined: &[EnvName],
    left: &[EnvName],
) -> String {
    let what = match (&rec.cause, rec.alarm) {
        (Cause::Source, _) => "cannot be read".to_owned(),
        (Cause::Stale, _) => "has not seen them in time (nothing probes them)".to_owned(),
        (Cause::Origin(_) | Cause::Aws(_), _) => "is failing".to_owned(),
        (_, kind) => format!("has {kind} alarms"),
    };
    let n = members.len();
    let envs = if n == 1 { "1 environment".to_owned() } else { format!("{n} environments") };
    let cause = rec.cause.describe();
    match event {
        CauseEvent::CauseResolved => format!("{cause}: resolved, no environment is affected any more"),
        CauseEvent::CauseChanged => {
            let mut change = Vec::new();
            if !joined.is_empty() {
                change.push(format!("joined: {}", list(joined)));
            }
            if !left.is_empty() {
                change.push(format!("cleared: {}", list(left)));
            }
            format!("{cause} {what}: {envs} affected now ({}); {}", change.join("; "), list(members))
        }
        _ => format!("{cause} {what}: {envs} affected ({})", list(members)),
    }
}

#[cfg(test)]
mod tests;
