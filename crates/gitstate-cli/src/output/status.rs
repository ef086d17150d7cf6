//! The status document (`status -o json`, `/status` of `watch`) and its table: what the
//! state holds per environment — phase, expected commit and since when, the open incident,
//! the open alarm, the last in-sync time and convergence lag. Entry: [`document`].

use std::collections::BTreeMap;

use gitstate_core::{EnvName, EnvState, Phase};
use jiff::Timestamp;
use serde::Serialize;

use super::Paint;
use super::table::Table;
use crate::state::overrides::Overrides;

/// `status -o json`, schema 1.
#[derive(Debug, Serialize)]
pub struct StatusReport {
    /// Format version: 1.
    pub schema: u32,
    /// Per environment.
    pub environments: Vec<EnvironmentStatus>,
}

/// One environment's remembered state.
#[derive(Debug, Serialize)]
pub struct EnvironmentStatus {
    name: EnvName,
    #[serde(rename = "ref")]
    reference: Option<String>,
    expected: Option<String>,
    expected_since: Option<Timestamp>,
    phase: Option<Phase>,
    incident: Option<IncidentStatus>,
    alarm: Option<AlarmStatus>,
    last_in_sync_at: Option<Timestamp>,
    last_convergence_lag_s: Option<f64>,
    /// Set while an operator has it suspended (SPEC §9).
    suspension: Option<crate::state::overrides::Suspension>,
    /// Set while a freeze window is open.
    window: Option<WindowStatus>,
}

#[derive(Debug, Serialize)]
struct WindowStatus {
    until: Timestamp,
}

#[derive(Debug, Serialize)]
struct IncidentStatus {
    since: Timestamp,
    attempts: u32,
    next_attempt_at: Option<Timestamp>,
}

#[derive(Debug, Serialize)]
struct AlarmStatus {
    kind: gitstate_core::AlarmKind,
    since: Timestamp,
    last_notified_at: Option<Timestamp>,
}

/// The status document of a set of states, with the suspensions in force.
pub fn document(
    states: &BTreeMap<EnvName, EnvState>,
    overrides: &Overrides,
    windows: &BTreeMap<EnvName, Vec<crate::freeze::FreezeWindow>>,
) -> StatusReport {
    let now = Timestamp::now();
    StatusReport {
        schema: 1,
        environments: states
            .iter()
            .map(|(name, s)| EnvironmentStatus {
                name: name.clone(),
                reference: s.reference.clone(),
                expected: s.expected.as_ref().map(|e| e.commit.to_string()),
                expected_since: s.expected.as_ref().map(|e| e.since),
                phase: s.phase,
                incident: s.open_incident().map(|i| IncidentStatus {
                    since: i.since,
                    attempts: i.attempts,
                    next_attempt_at: i.next_attempt_at,
                }),
                alarm: s.primary_alarm().map(|a| AlarmStatus {
                    kind: a.kind,
                    since: a.since,
                    last_notified_at: a.last_notified_at,
                }),
                last_in_sync_at: s.last_in_sync_at,
                last_convergence_lag_s: s.last_convergence_lag_s,
                suspension: overrides.suspension(name, now).cloned(),
                window: windows
                    .get(name)
                    .and_then(|w| crate::freeze::frozen_until(w, now))
                    .map(|until| WindowStatus { until }),
            })
            .collect(),
    }
}

fn ago(t: Option<Timestamp>) -> String {
    t.map_or("-".into(), |t| t.round(jiff::Unit::Second).unwrap_or(t).to_string())
}

impl StatusReport {
    /// Whether every environment's last phase is `in_sync` (and there is one at least).
    pub fn all_in_sync(&self) -> bool {
        !self.environments.is_empty() && self.environments.iter().all(|e| e.phase == Some(Phase::InSync))
    }
}

/// The status table people read.
pub fn render(doc: &StatusReport, p: &Paint) -> String {
    let mut t = Table::new(&[
        "ENVIRONMENT",
        "PHASE",
        "EXPECTED",
        "SINCE",
        "ATTEMPTS",
        "NEXT ATTEMPT",
        "ALARM",
        "LAST IN SYNC",
        "LAG",
    ]);
    for e in &doc.environments {
        let phase = e.phase.map_or("-".to_owned(), |ph| match ph {
            Phase::InSync => p.good(ph.as_str()),
            Phase::Alarm => p.bad(ph.as_str()),
            _ => p.warn(ph.as_str()),
        });
        t.row(vec![
            e.name.to_string(),
            phase,
            e.expected.as_deref().map_or("-".into(), |c| c[..7.min(c.len())].to_owned()),
            ago(e.expected_since),
            e.incident.as_ref().map_or("-".into(), |i| i.attempts.to_string()),
            ago(e.incident.as_ref().and_then(|i| i.next_attempt_at)),
            e.alarm
                .as_ref()
                .map_or("-".into(), |a| p.bad(&format!("{} since {}", a.kind, ago(Some(a.since))))),
            ago(e.last_in_sync_at),
            e.last_convergence_lag_s.map_or("-".into(), |l| format!("{l:.1}s")),
        ]);
    }
    let mut out = t.render();
    for e in &doc.environments {
        if let Some(s) = &e.suspension {
            let until = s.until.map_or("until resumed".to_owned(), |u| format!("until {}", ago(Some(u))));
            let why = s.reason.as_deref().map_or(String::new(), |r| format!(": {r}"));
            out.push_str(&format!(
                "{}: suspended by {} since {}, {until}{why}\n",
                e.name,
                s.by,
                ago(Some(s.since))
            ));
        }
    }
    out
}
