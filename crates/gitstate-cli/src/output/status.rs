//! The status table people read, from the runtime's status document
//! ([`gitstate_runtime::status::document`]).

use gitstate_core::Phase;
use gitstate_runtime::status::StatusReport;
use jiff::Timestamp;

use super::Paint;
use super::table::Table;

fn ago(t: Option<Timestamp>) -> String {
    t.map_or("-".into(), |t| t.round(jiff::Unit::Second).unwrap_or(t).to_string())
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
                "{}: suspended by {} ({}) since {}, {until}{why}\n",
                e.name,
                s.by,
                s.via,
                ago(Some(s.since))
            ));
        }
        // SPEC §15: the soak, its last failure, and what may not be deployed here.
        if let Some(v) = &e.verification {
            let last = v.failures.last().map_or(String::new(), |f| {
                format!("; last failure: {} at {}: {}", f.check, ago(Some(f.at)), f.reason)
            });
            let sha = &v.sha[..12.min(v.sha.len())];
            let line = match v.state {
                "verifying" => p.warn(&format!("verifying {sha} until {}", ago(Some(v.until)))),
                "degraded" => p.bad(&format!("degraded {sha}: {} failed check run(s)", v.failures.len())),
                state => format!("{state} {sha}"),
            };
            out.push_str(&format!("{}: {line}{last}\n", e.name));
        }
        for veto in &e.vetoes {
            let why = veto.reason.as_deref().map_or(String::new(), |r| format!(": {r}"));
            out.push_str(&format!(
                "{}: {} vetoed by {} ({}) since {}{why}\n",
                e.name,
                veto.sha.short(12),
                veto.by,
                veto.via,
                ago(Some(veto.since))
            ));
        }
        // SPEC §18: who signed what is to run, or why it is not trusted.
        if let Some(t) = &e.trust {
            out.push_str(&super::report::trust_line(&e.name, t, p));
            out.push('\n');
        }
    }
    out
}
