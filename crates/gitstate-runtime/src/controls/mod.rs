//! Operator controls (SPEC §9): what people say about acting on an environment —
//! [`suspend`], [`resume`], [`retry`], kept by the [`Store`] as [`Overrides`] — and the
//! calendar's say, [`FreezeWindow`]s. [`controls_at`] turns both into the
//! [`Controls`] a pass of the engine obeys. The CLI's `suspend`, `resume` and `retry`
//! call these functions; so can any program linking the runtime.

use std::collections::BTreeMap;

use gitstate_core::{Controls, EnvName, Event, EventKind};
use jiff::Timestamp;

mod freeze;

pub use crate::overrides::{OVERRIDES_SCHEMA, Override, Overrides, Suspension, Veto};
pub use freeze::{FreezeWindow, frozen_until};

use crate::actions::Actor;
use crate::store::{Store, StoreError};

/// Each environment's freeze windows (environments without any are absent).
pub type Windows = BTreeMap<EnvName, Vec<FreezeWindow>>;

/// What operators said of `env` (`overrides`) and its freeze `windows` mean at `now`.
pub fn controls_at(
    overrides: &Overrides,
    windows: Option<&Vec<FreezeWindow>>,
    env: &EnvName,
    now: Timestamp,
) -> Controls {
    let mut c = overrides.controls(env, now);
    c.frozen_until = windows.and_then(|w| frozen_until(w, now));
    c
}

/// Records one event per environment, whoever this process is.
async fn record(
    store: &dyn Store,
    names: &[EnvName],
    at: Timestamp,
    kind: impl Fn() -> EventKind,
) -> Result<(), StoreError> {
    let events: Vec<Event> =
        names.iter().map(|n| Event { at, environment: n.clone(), kind: kind() }).collect();
    store.append_unfenced(&events).await
}

/// Suspends `names` (until `until`, or until resumed): still probed and reported, never
/// acted on. Written to the store, whether or not a loop runs (a running one applies it
/// within a ref poll), with a `suspended` event each.
pub async fn suspend(
    store: &dyn Store,
    names: &[EnvName],
    actor: Actor<'_>,
    reason: Option<&str>,
    until: Option<Timestamp>,
    now: Timestamp,
) -> Result<(), StoreError> {
    let reason = reason.map(|r| gitstate_core::escape_control(r).into_owned());
    let (by, via) = (actor.by.to_owned(), actor.via.to_owned());
    let suspension =
        Suspension { reason: reason.clone(), by: by.clone(), via: via.clone(), since: now, until };
    let envs = names.to_vec();
    store
        .update_overrides(Box::new(move |o| {
            for n in envs {
                o.environments.entry(n).or_default().suspension = Some(suspension.clone());
            }
        }))
        .await?;
    record(store, names, now, || EventKind::Suspended {
        reason: reason.clone(),
        by: by.clone(),
        via: via.clone(),
        until,
    })
    .await
}

/// Ends the suspension of `names`, with a `resumed` event each.
pub async fn resume(
    store: &dyn Store,
    names: &[EnvName],
    actor: Actor<'_>,
    reason: Option<&str>,
    now: Timestamp,
) -> Result<(), StoreError> {
    let reason = reason.map(|r| gitstate_core::escape_control(r).into_owned());
    let envs = names.to_vec();
    store
        .update_overrides(Box::new(move |o| {
            for n in &envs {
                if let Some(e) = o.environments.get_mut(n) {
                    e.suspension = None;
                }
            }
        }))
        .await?;
    record(store, names, now, || EventKind::Resumed {
        by: actor.by.to_owned(),
        via: actor.via.to_owned(),
        reason: reason.clone(),
    })
    .await
}

/// Gives `names` a fresh set of attempts (the next pass may remediate at once), with a
/// `retry_requested` event each.
pub async fn retry(
    store: &dyn Store,
    names: &[EnvName],
    actor: Actor<'_>,
    reason: Option<&str>,
    now: Timestamp,
) -> Result<(), StoreError> {
    let reason = reason.map(|r| gitstate_core::escape_control(r).into_owned());
    let envs = names.to_vec();
    store
        .update_overrides(Box::new(move |o| {
            for n in envs {
                o.environments.entry(n).or_default().retry_requested_at = Some(now);
            }
        }))
        .await?;
    record(store, names, now, || EventKind::RetryRequested {
        by: actor.by.to_owned(),
        via: actor.via.to_owned(),
        reason: reason.clone(),
    })
    .await
}

/// Who is acting at this terminal: the OS user (`$USER`, `$LOGNAME`, else the uid).
pub fn os_user() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| format!("uid {}", rustix::process::getuid().as_raw()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::FileStore;

    /// Each control writes its override and its event, with who, why and until when.
    #[tokio::test]
    async fn each_control_is_recorded_with_who_and_why() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path()).unwrap();
        let names = [EnvName::new("production").unwrap()];
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let until = Timestamp::from_second(1_800_003_600).unwrap();
        let cli = |by| Actor { by, via: "cli" };
        suspend(&store, &names, Actor { by: "ada", via: "dashboard" }, Some("INC-42"), Some(until), now)
            .await
            .unwrap();
        let s = store.overrides().unwrap().suspension(&names[0], now).cloned().unwrap();
        assert_eq!((s.by.as_str(), s.via.as_str()), ("ada", "dashboard"));
        resume(&store, &names, cli("grace"), Some("fixed"), now).await.unwrap();
        retry(&store, &names, cli("linus"), None, now).await.unwrap();
        let kinds: Vec<EventKind> = store.recent_events(10).into_iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [
                EventKind::Suspended {
                    reason: Some("INC-42".into()),
                    by: "ada".into(),
                    via: "dashboard".into(),
                    until: Some(until)
                },
                EventKind::Resumed { by: "grace".into(), via: "cli".into(), reason: Some("fixed".into()) },
                EventKind::RetryRequested { by: "linus".into(), via: "cli".into(), reason: None },
            ]
        );
    }

    /// The OS user, as the environment names it (`USER`, then `LOGNAME`), else the uid.
    #[test]
    fn os_user_is_who_runs_the_command() {
        let named = ["USER", "LOGNAME"].iter().find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()));
        let uid = std::process::Command::new("id").arg("-u").output().unwrap();
        let uid = format!("uid {}", String::from_utf8_lossy(&uid.stdout).trim());
        assert_eq!(os_user(), named.unwrap_or(uid));
    }
}
