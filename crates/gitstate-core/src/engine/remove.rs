//! Retiring environments a whole pass no longer has: [`Engine::remove`] resolves their
//! open alarms as `removed`, writes `environment_removed`, and has the journal forget them.

use jiff::Timestamp;

use crate::alarm::{AlarmChange, Resolution};
use crate::event::{Event, EventKind};
use crate::name::EnvName;
use crate::state::EnvState;

use super::notify::notification;
use super::outcome::PassOutcome;
use super::setup::Engine;

impl Engine {
    /// Retires environments that a whole pass no longer has (gone from the configuration, or
    /// no longer discovered): each open alarm is resolved as `removed` and delivered like any
    /// resolve, an `environment_removed` event is written, and the journal forgets the
    /// state. `gone` are the states remembered for them. The outcome has no report.
    pub async fn remove(&self, gone: Vec<(EnvName, EnvState)>, now: Timestamp) -> PassOutcome {
        let mut out = PassOutcome::new(now);
        let mut states = gone;
        let mut notes = Vec::new();
        for (name, state) in &mut states {
            let expected = state.expected.as_ref().map(|e| e.commit);
            let reference = state.reference.clone().unwrap_or_default();
            for alarm in std::mem::take(&mut state.alarms) {
                let Some(about) = expected else { continue };
                let change = AlarmChange::Resolved(Resolution::Removed);
                let kind = EventKind::of_alarm(change, alarm.kind, about);
                out.events.push(Event { at: now, environment: name.clone(), kind });
                notes.push(notification(
                    name,
                    &reference,
                    about,
                    alarm.kind,
                    alarm.since,
                    change.event(),
                    change.resolution(),
                    now,
                    &[],
                    // Its policy went with it: the resolution goes to every sink.
                    &crate::Policy::default(),
                    alarm.cause.clone(),
                ));
            }
            let kind = EventKind::EnvironmentRemoved { expected };
            out.events.push(Event { at: now, environment: name.clone(), kind });
        }
        let names: Vec<EnvName> = states.iter().map(|(n, _)| n.clone()).collect();
        // One last try for what they had kept; what still fails is dropped with them.
        self.deliver(&[], &names, notes, super::group::SourceSeen::NotAsked, now, &mut out).await;
        self.drop_outbox(&names).await;
        if let Some(j) = &self.journal {
            let persisted = async {
                j.record(&out.events).await?;
                j.forget(&names).await
            };
            if let Err(e) = persisted.await {
                tracing::error!(error = %e, "removed environments could not be forgotten");
                out.journal_error = Some(e.to_string());
            }
        }
        out
    }
}
