//! The check report as people read it: one row per instance (or per failed target or
//! environment), short SHAs, behind/ahead counts, and a one-line summary.

use std::collections::BTreeMap;

use std::time::Duration;

use gitstate_core::{ActionReport, EnvName, InstanceObservation, Phase, Reason, Report, Status};

use super::Paint;
use super::table::Table;

fn short(s: &str) -> String {
    let hexish = s.bytes().all(|b| b.is_ascii_hexdigit());
    if hexish { s.chars().take(7).collect() } else { safe(&s.chars().take(12).collect::<String>()) }
}

/// Text from a target, a remote or a deploy script, made safe for a terminal (SPEC §8:
/// `\u{1b}[2J` from a target must not clear the operator's screen).
fn safe(s: &str) -> String {
    gitstate_core::escape_control(s).into_owned()
}

fn paint_status(p: &Paint, s: Status) -> String {
    match s {
        Status::InSync => p.good(s.as_str()),
        Status::Behind | Status::Ahead | Status::Drifted => p.warn(s.as_str()),
        _ => p.bad(s.as_str()),
    }
}

/// What an instance's status means, in words.
pub fn detail(i: &InstanceObservation) -> String {
    let n = |v: Option<u64>| v.unwrap_or(0);
    let plural = |k: u64| if k == 1 { "" } else { "s" };
    match i.status {
        Status::InSync => String::new(),
        Status::Behind => {
            let k = n(i.commits_behind);
            format!("{k} commit{} behind: deploy pending", plural(k))
        }
        Status::Ahead => {
            let k = n(i.commits_ahead);
            format!("{k} commit{} ahead: rollback pending", plural(k))
        }
        Status::Diverged => format!(
            "{} behind, {} ahead of the merge base: not from this ref (hotfix?)",
            n(i.commits_behind),
            n(i.commits_ahead)
        ),
        Status::UnknownCommit => "commit not in the repository (or an ambiguous abbreviation)".into(),
        Status::Drifted => i
            .error
            .clone()
            .unwrap_or_else(|| "differs; no history to compare (the source keeps no mirror)".into()),
        Status::Missing | Status::Invalid | Status::Unreachable => i.error.clone().unwrap_or_default(),
        _ => i.error.clone().unwrap_or_else(|| i.status.as_str().to_owned()),
    }
}

/// Renders a check report.
pub fn render(report: &Report, p: &Paint) -> String {
    let mut t = Table::new(&["ENVIRONMENT", "TARGET", "INSTANCE", "STATUS", "EXPECTED → ACTUAL", "DETAIL"]);
    let mut counts: BTreeMap<Status, usize> = BTreeMap::new();
    let mut errors = 0;
    for env in &report.environments {
        let exp = env.expected.as_ref().map_or("-".to_owned(), |c| c.short(7).to_owned());
        if let Some(e) = &env.error {
            errors += 1;
            t.row(vec![env.name.to_string(), "-".into(), "-".into(), p.bad("error"), "-".into(), safe(e)]);
            continue;
        }
        if env.targets.is_empty() {
            t.row(vec![
                env.name.to_string(),
                "-".into(),
                "-".into(),
                p.dim("no targets"),
                exp.clone(),
                String::new(),
            ]);
        }
        for target in &env.targets {
            if target.instances.is_empty() {
                *counts.entry(target.status).or_default() += 1;
                t.row(vec![
                    env.name.to_string(),
                    target.name.clone(),
                    "-".into(),
                    paint_status(p, target.status),
                    format!("{exp} → -"),
                    safe(target.error.as_deref().unwrap_or_default()),
                ]);
            }
            for i in &target.instances {
                *counts.entry(i.status).or_default() += 1;
                let actual = i.actual.as_deref().map_or("-".to_owned(), short);
                t.row(vec![
                    env.name.to_string(),
                    target.name.clone(),
                    safe(&i.id),
                    paint_status(p, i.status),
                    format!("{exp} → {actual}"),
                    safe(&detail(i)),
                ]);
            }
        }
    }
    let mut out = t.render();
    let envs = report.environments.len();
    let synced = report.environments.iter().filter(|e| e.in_sync).count();
    let total: usize = counts.values().sum();
    let breakdown: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    let headline = format!("{synced} of {envs} environment{} in sync", if envs == 1 { "" } else { "s" });
    let headline = if synced == envs { p.good(&headline) } else { p.bold(&headline) };
    out.push('\n');
    out.push_str(&headline);
    if total > 0 {
        out.push_str(&format!(
            "; {total} instance{}: {}",
            if total == 1 { "" } else { "s" },
            breakdown.join(", ")
        ));
    }
    if errors > 0 {
        out.push_str(&format!("; {errors} could not be checked"));
    }
    out.push('\n');
    out
}

/// SPEC §18, one line: who signed the expected commit, or why it is not trusted (for
/// `check -v` and `status`).
pub fn trust_line(env: &gitstate_core::EnvName, t: &gitstate_core::TrustRecord, p: &Paint) -> String {
    let sha = t.sha.short(12);
    match (t.state.as_str(), &t.signer, &t.reason) {
        ("trusted", signer, _) => format!(
            "{env}: {sha} signed by {} {}",
            safe(signer.as_deref().unwrap_or("an allowed key")),
            p.dim(&safe(t.key.as_deref().unwrap_or("")))
        ),
        (_, _, reason) => format!(
            "{env}: {sha} {}",
            p.bad(&format!(
                "is NOT trusted: {}",
                safe(reason.as_deref().unwrap_or("not signed by an allowed key"))
            ))
        ),
    }
}

/// The commits at stake under each instance that lacks some or has some beyond the
/// expected commit (`check -v`): short SHA, subject, author, age, then the compare link.
pub fn render_commits(report: &Report, p: &Paint, now: jiff::Timestamp) -> String {
    let mut out = String::new();
    for env in &report.environments {
        if let Some(t) = &env.trust {
            out.push_str(&format!("\n{}\n", trust_line(&env.name, t, p)));
        }
        for target in &env.targets {
            for i in &target.instances {
                let sides = [("pending", &i.pending_commits), ("unexpected", &i.unexpected_commits)];
                if sides.iter().all(|(_, c)| c.as_ref().is_none_or(Vec::is_empty)) && i.compare_url.is_none()
                {
                    continue;
                }
                out.push_str(&format!("\n{} / {} / {}: {}\n", env.name, target.name, safe(&i.id), detail(i)));
                for (side, commits) in sides {
                    let Some(commits) = commits.as_ref().filter(|c| !c.is_empty()) else { continue };
                    out.push_str(&format!("  {side}:\n"));
                    for c in commits {
                        out.push_str(&format!(
                            "    {}  {}  {}\n",
                            p.dim(c.sha.short(7)),
                            safe(&c.subject),
                            p.dim(&format!("({}, {})", safe(&c.author), age(now, c.at)))
                        ));
                    }
                }
                if let Some(url) = &i.compare_url {
                    out.push_str(&format!("  compare: {}\n", safe(url)));
                }
            }
        }
    }
    out
}

/// How long ago, roughly, for people.
pub fn age(now: jiff::Timestamp, at: jiff::Timestamp) -> String {
    format!("{} ago", rough(now.as_second().saturating_sub(at.as_second()).max(0).unsigned_abs()))
}

/// A span of seconds, roughly, for people: its largest unit ("42s", "3m", "5h", "2d").
pub fn rough(s: u64) -> String {
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

fn paint_phase(p: &Paint, phase: Phase) -> String {
    match phase {
        Phase::InSync => p.good(phase.as_str()),
        Phase::Alarm => p.bad(phase.as_str()),
        _ => p.warn(phase.as_str()),
    }
}

/// What a reconcile pass decided and did, per environment: phase, reason, actions.
pub fn render_decisions(
    report: &Report,
    decisions: &[(EnvName, Reason, Option<Duration>)],
    p: &Paint,
) -> String {
    let mut out = String::new();
    for env in &report.environments {
        let Some(phase) = env.phase else { continue };
        let reason = decisions
            .iter()
            .find(|(n, _, _)| *n == env.name)
            .map(|(_, r, _)| r.to_string())
            .unwrap_or_default();
        out.push_str(&format!("{}: {} ({reason})\n", env.name, paint_phase(p, phase)));
        for a in &env.actions {
            let line = match a {
                ActionReport::Remediate { attempt, ok, detail } => {
                    let verdict = match ok {
                        Some(true) => p.good("triggered"),
                        Some(false) => p.bad("failed"),
                        None => p.dim("not run"),
                    };
                    format!("remediation attempt {attempt}: {verdict} ({})", safe(detail))
                }
                ActionReport::AlarmRaised { alarm } => p.bad(&format!("{alarm} alarm raised")),
                ActionReport::AlarmRepeated { alarm } => {
                    p.warn(&format!("{alarm} alarm still open, notified again"))
                }
                ActionReport::AlarmResolved { alarm } => p.good(&format!("{alarm} alarm resolved")),
                other => format!("{other:?}"),
            };
            out.push_str(&format!("  -> {line}\n"));
        }
    }
    out
}
