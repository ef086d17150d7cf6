//! What people do to an environment's commit (SPEC §15): [`rollback`] (the ref moved back,
//! the bad commit vetoed), [`veto`] and [`unveto`]. Each works with or without a running
//! loop — the ref is moved with a compare-and-swap, vetoes are kept with the operators'
//! overrides, which a running loop applies within a `ref_poll` — and each is recorded in
//! the events with who did it and how. The CLI's `rollback`, `veto` and `unveto` call
//! these; so does a program linking the runtime (and the loop itself, after an automatic
//! rollback: [`record_rollback`]).

use gitstate_core::{CommitId, EnvName, Event, EventKind, ExpectedError, ExpectedState};
use jiff::Timestamp;

use crate::controls::Veto;
use crate::store::{Store, StoreError};

/// Who acts, and how (`cli`, `dashboard`, `loop`).
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    /// The OS user, the dashboard's user, or `gitstate`.
    pub by: &'a str,
    /// `cli`, `dashboard` or `loop`.
    pub via: &'a str,
}

/// Why an action was not done.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ActionError {
    /// Refused, with the reason (the ref moved, nothing to roll back to, not vetoed…).
    #[error("{0}")]
    Refused(String),
    /// The state could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The source could not be read or the ref not moved.
    #[error(transparent)]
    Source(#[from] ExpectedError),
}

/// What a rollback did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RolledBack {
    /// The commit the ref pointed at (now vetoed).
    pub from: CommitId,
    /// The commit it points at now.
    pub to: CommitId,
}

/// Vetoes `sha` in `env`: while the ref points at it, nothing is deployed. Vetoing a
/// commit already vetoed changes nothing and records nothing.
pub async fn veto(
    store: &dyn Store,
    env: &EnvName,
    sha: CommitId,
    actor: Actor<'_>,
    reason: Option<&str>,
    now: Timestamp,
) -> Result<(), StoreError> {
    if store.overrides()?.vetoes(env).iter().any(|v| v.sha == sha) {
        return Ok(());
    }
    let reason = reason.map(|r| gitstate_core::escape_control(r).into_owned());
    let veto =
        Veto { sha, since: now, by: actor.by.to_owned(), via: actor.via.to_owned(), reason: reason.clone() };
    let name = env.clone();
    store
        .update_overrides(Box::new(move |o| {
            let vetoes = &mut o.environments.entry(name).or_default().vetoes;
            if !vetoes.iter().any(|v| v.sha == veto.sha) {
                vetoes.push(veto);
            }
        }))
        .await?;
    let kind = EventKind::VetoAdded { sha, by: actor.by.to_owned(), via: actor.via.to_owned(), reason };
    store.append_unfenced(&[Event { at: now, environment: env.clone(), kind }]).await
}

/// Lifts the veto of `sha` in `env`; refused when it is not vetoed there.
pub async fn unveto(
    store: &dyn Store,
    env: &EnvName,
    sha: CommitId,
    actor: Actor<'_>,
    reason: Option<&str>,
    now: Timestamp,
) -> Result<(), ActionError> {
    if !store.overrides()?.vetoes(env).iter().any(|v| v.sha == sha) {
        return Err(ActionError::Refused(format!("{} is not vetoed in {env}", sha.short(12))));
    }
    let name = env.clone();
    store
        .update_overrides(Box::new(move |o| {
            if let Some(e) = o.environments.get_mut(&name) {
                e.vetoes.retain(|v| v.sha != sha);
            }
        }))
        .await?;
    let reason = reason.map(|r| gitstate_core::escape_control(r).into_owned());
    let kind = EventKind::VetoRemoved { sha, by: actor.by.to_owned(), via: actor.via.to_owned(), reason };
    store.append_unfenced(&[Event { at: now, environment: env.clone(), kind }]).await?;
    Ok(())
}

/// The commit a rollback of `env` goes to when none is named: the last verified commit
/// other than `from`, else the last one it converged on before `from`.
pub fn rollback_target(store: &dyn Store, env: &EnvName, from: &CommitId) -> Option<CommitId> {
    let state = store.environments_among(std::slice::from_ref(env)).remove(env)?;
    let other = |list: &[CommitId]| list.iter().rev().find(|c| *c != from).copied();
    other(&state.verified).or_else(|| other(&state.converged_on))
}

/// Moves `env`'s ref (`reference`, a full name) back from the commit it points at to `to`
/// (or [`rollback_target`]), with a compare-and-swap and a reflog entry `gitstate: roll
/// back <short> (<reason>)`; then vetoes the commit rolled back from and records
/// `rolled_back`. A ref that moved meanwhile, or nothing to roll back to, is refused
/// (recorded as `rollback_refused` when the ref was not moved).
#[allow(clippy::too_many_arguments)]
pub async fn rollback(
    source: &dyn ExpectedState,
    store: &dyn Store,
    env: &EnvName,
    reference: &str,
    to: Option<CommitId>,
    actor: Actor<'_>,
    reason: Option<&str>,
    trust: Option<&crate::trust::TrustPolicy>,
    now: Timestamp,
) -> Result<RolledBack, ActionError> {
    let resolved = source.resolve(&[reference.to_owned()]).await?;
    let current = resolved
        .into_iter()
        .next()
        .ok_or_else(|| ActionError::Refused(format!("{reference} not resolved")))??;
    let from = current.commit;
    let Some(to) = to.or_else(|| rollback_target(store, env, &from)) else {
        return Err(ActionError::Refused(format!(
            "nothing to roll back to: {env} has no verified or earlier converged commit other than {}; name one with --to",
            from.short(12)
        )));
    };
    if to == from {
        return Err(ActionError::Refused(format!("{reference} already points at {}", to.short(12))));
    }
    refuse_untrusted(source, trust, to, now).await?;
    let why = reason.map(|r| gitstate_core::escape_control(r).into_owned());
    // The reflog names who moved the ref, and how (SPEC §20).
    let message = format!(
        "gitstate: roll back {} ({}) by {} via {}",
        from.short(12),
        why.as_deref().unwrap_or("by hand"),
        actor.by,
        actor.via
    );
    if let Err(e) = source.move_ref(&current.reference, &from, &to, &message).await {
        let error = gitstate_core::error_chain(&e);
        let kind = EventKind::RollbackRefused { from, to, error: error.clone() };
        store.append_unfenced(&[Event { at: now, environment: env.clone(), kind }]).await?;
        return Err(ActionError::Refused(error));
    }
    record_rollback(store, env, from, to, actor, why.as_deref(), now).await?;
    Ok(RolledBack { from, to })
}

/// After the ref of `env` moved back from `from` to `to` (by [`rollback`], or by the
/// loop's own rollback, which records its `rolled_back` event itself): `from` vetoed,
/// and, unless the loop did it, the `rolled_back` event.
pub async fn record_rollback(
    store: &dyn Store,
    env: &EnvName,
    from: CommitId,
    to: CommitId,
    actor: Actor<'_>,
    reason: Option<&str>,
    now: Timestamp,
) -> Result<(), StoreError> {
    let why =
        format!("rolled back to {}{}", to.short(12), reason.map(|r| format!(": {r}")).unwrap_or_default());
    veto(store, env, from, actor, Some(&why), now).await?;
    if actor.via != "loop" {
        let kind = EventKind::RolledBack {
            from,
            to,
            reason: reason.map(str::to_owned),
            by: actor.by.to_owned(),
            via: actor.via.to_owned(),
        };
        store.append_unfenced(&[Event { at: now, environment: env.clone(), kind }]).await?;
    }
    Ok(())
}

/// What an adoption did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Adopted {
    /// The commit the ref pointed at.
    pub from: CommitId,
    /// The hotfix every instance runs, the ref's commit now.
    pub to: CommitId,
}

/// Adopts a hotfix deployed by hand (SPEC §15): when every instance of `report` (a check
/// pass of `env`, made just now) runs the same commit X that is not the expected one
/// (`ahead` or `diverged`), the ref moves to X — a compare-and-swap on the expected
/// commit, with a reflog entry naming X and the reason — and `adopted` is recorded.
/// Refused when the instances disagree, report something else, or X is not in the
/// repository (a remote's mirror fetches first: "push the hotfix commit first").
#[allow(clippy::too_many_arguments)]
pub async fn adopt(
    source: &dyn ExpectedState,
    store: &dyn Store,
    env: &EnvName,
    report: &gitstate_core::EnvironmentReport,
    actor: Actor<'_>,
    reason: Option<&str>,
    trust: Option<&crate::trust::TrustPolicy>,
    now: Timestamp,
) -> Result<Adopted, ActionError> {
    use gitstate_core::{Relation, ReportedCommit, Status};
    let refuse = |why: String| Err(ActionError::Refused(why));
    let Some(from) = report.expected else {
        return refuse(format!("{env}: {}", report.error.as_deref().unwrap_or("the ref did not resolve")));
    };
    let mut running: Vec<(&str, Status, Option<&str>)> = Vec::new();
    for t in &report.targets {
        if t.instances.is_empty() {
            return refuse(format!(
                "target {} could not be read: {}",
                t.name,
                t.error.as_deref().unwrap_or("no instance")
            ));
        }
        running.extend(t.instances.iter().map(|i| (i.id.as_str(), i.status, i.actual.as_deref())));
    }
    let Some(&(_, _, Some(first))) = running.first() else {
        return refuse(format!("{env}: no instance reported a commit"));
    };
    if let Some((id, status, actual)) = running.iter().find(|(_, _, a)| *a != Some(first)) {
        return refuse(format!(
            "the instances disagree: {id} runs {} ({status}) where another runs {first}; adopt needs one commit everywhere",
            actual.unwrap_or("nothing")
        ));
    }
    if running.iter().all(|(_, s, _)| *s == Status::InSync) {
        return refuse(format!("{env} already runs its expected commit {}", from.short(12)));
    }
    let Ok(to) = CommitId::parse(first) else {
        return refuse(format!(
            "the instances report {first:?}, not a full commit id: adopt needs the whole id"
        ));
    };
    let reported = ReportedCommit::parse(first).map_err(|e| ActionError::Refused(e.to_string()))?;
    match source.relate(&from, &[reported]).await?.first() {
        Some(Relation::UnknownCommit | Relation::Drifted) | None => {
            return refuse(format!(
                "{} is not in the repository (push the hotfix commit first, then adopt it)",
                to.short(12)
            ));
        }
        Some(_) => {}
    }
    refuse_untrusted(source, trust, to, now).await?;
    let why = reason.map(|r| gitstate_core::escape_control(r).into_owned());
    let message = format!(
        "gitstate: adopt {} ({}) by {} via {}",
        to.short(12),
        why.as_deref().unwrap_or("hotfix running everywhere"),
        actor.by,
        actor.via
    );
    source
        .move_ref(&report.reference, &from, &to, &message)
        .await
        .map_err(|e| ActionError::Refused(gitstate_core::error_chain(&e)))?;
    let kind =
        EventKind::Adopted { from, to, by: actor.by.to_owned(), via: actor.via.to_owned(), reason: why };
    store.append_unfenced(&[Event { at: now, environment: env.clone(), kind }]).await?;
    Ok(Adopted { from, to })
}

/// SPEC §18: with `[source.trust]`, a ref is never moved to a commit no allowed key signed.
async fn refuse_untrusted(
    source: &dyn ExpectedState,
    trust: Option<&crate::trust::TrustPolicy>,
    to: CommitId,
    now: Timestamp,
) -> Result<(), ActionError> {
    let Some(policy) = trust else { return Ok(()) };
    let gate = policy.judge(source, None, to, now).await;
    if gate.trusted {
        return Ok(());
    }
    Err(ActionError::Refused(format!(
        "{} is not trusted ({}): not moving the ref to it",
        to.short(12),
        gate.record.reason.as_deref().unwrap_or("not signed by an allowed key")
    )))
}
