//! `gitstate status`: what the state dir holds — per environment the phase, the expected
//! commit and since when, the open incident (attempts, next attempt), the open alarm, the
//! last in-sync time and the last convergence lag. Reads `state.json` only; takes no lock.
//! Exit 0 when every environment's last phase is `in_sync`, else 1 (2 on errors).

use serde::Serialize;

use gitstate_core::{EnvName, EnvState, Phase};
use jiff::Timestamp;

use crate::cli::{Output, Status};
use crate::exit;
use crate::output::table::Table;
use crate::output::{self, Paint};
use crate::state::StateStore;

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

/// The status document of a set of states.
pub fn report(states: &std::collections::BTreeMap<EnvName, EnvState>) -> StatusReport {
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
                incident: s.incident.as_ref().map(|i| IncidentStatus {
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
            })
            .collect(),
    }
}

fn ago(t: Option<Timestamp>) -> String {
    t.map_or("-".into(), |t| t.round(jiff::Unit::Second).unwrap_or(t).to_string())
}

/// Runs the command.
pub fn run(args: Status) -> anyhow::Result<i32> {
    let config = super::load_config(args.config.config.as_deref())?;
    let state = StateStore::read(&config.state_dir)?;
    let doc = report(&state.environments);
    match args.output {
        Output::Json => output::emit_json(&doc)?,
        Output::Text => {
            let p = Paint::new(output::color_enabled_stdout());
            if doc.environments.is_empty() {
                let note =
                    format!("no reconcile pass has run yet (state dir {})\n", config.state_dir.display());
                output::emit(note.as_bytes())?;
            } else {
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
                        e.alarm.as_ref().map_or("-".into(), |a| {
                            p.bad(&format!("{} since {}", a.kind, ago(Some(a.since))))
                        }),
                        ago(e.last_in_sync_at),
                        e.last_convergence_lag_s.map_or("-".into(), |l| format!("{l:.1}s")),
                    ]);
                }
                output::emit(t.render().as_bytes())?;
            }
        }
    }
    let all_in_sync =
        !doc.environments.is_empty() && doc.environments.iter().all(|e| e.phase == Some(Phase::InSync));
    Ok(if all_in_sync { exit::IN_SYNC } else { exit::DRIFT })
}
