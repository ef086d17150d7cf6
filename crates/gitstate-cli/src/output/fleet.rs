//! The fleet's parts of the dashboard and of `fleet -o html` / `dora -o html` (SPEC §16):
//! the matrix of environments × running commits, the "where is…" box and its answer, the
//! compare between adjacent environments, and DORA's four keys with a chart each. Each
//! renders what a `gitstate_runtime::{fleet, dora}` query returned; nothing here decides.

use gitstate_core::{EnvName, Links};
use gitstate_runtime::dora::{self, Band, Period};
use gitstate_runtime::fleet::{DiffError, DiffReport, FleetReport, Presence, WhereReport};
use maud::{Markup, html};

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(7)]
}

fn band_name(b: Option<Band>) -> &'static str {
    match b {
        Some(Band::Elite) => "elite",
        Some(Band::High) => "high",
        Some(Band::Medium) => "medium",
        Some(Band::Low) => "low",
        _ => "-",
    }
}

/// Every environment × every commit seen running, the share of instances on each
/// (`3/5`), the expected commit marked (`★` and the class `expected`).
pub fn matrix(report: &FleetReport, links: &Links) -> Markup {
    let mut commits: Vec<&str> = Vec::new();
    for row in &report.environments {
        for s in row.running.iter().map(|s| s.sha.as_str()).chain(row.expected_sha.as_deref()) {
            if !commits.contains(&s) {
                commits.push(s);
            }
        }
    }
    html! {
        section #fleet {
            h2 { "Fleet" }
            @if report.environments.is_empty() {
                p.dim { "No environment recorded yet." }
            } @else {
                table #matrix {
                    thead { tr { th { "environment" } @for c in &commits {
                        th { code.sha { @match links.commit(c) { Some(u) => a href=(u) { (short(c)) }, None => (short(c)) } } }
                    } } }
                    tbody {
                        @for row in &report.environments {
                            tr data-env=(row.name.as_str()) {
                                td { (row.name.as_str()) }
                                @for c in &commits {
                                    @let share = row.running.iter().find(|s| s.sha == *c);
                                    @let expected = row.expected_sha.as_deref() == Some(*c);
                                    td data-sha=(c) class=[expected.then_some("expected")]
                                        title=(if expected { "expected commit" } else { "" }) {
                                        @if let Some(s) = share {
                                            span class=(if expected { "ok" } else { "warn" }) { (s.instances) "/" (s.of) }
                                        }
                                        @if expected { " ★" }
                                    }
                                }
                            }
                        }
                    }
                }
                p.dim { "★ the commit the environment's ref names; a/b: a of its b instances run that commit." }
            }
        }
    }
}

/// The "where is…" box: a form that works without JavaScript (`GET /?where=REV`) and,
/// with it, answers in place; `answer` is what the last query found.
pub fn where_box(rev: Option<&str>, answer: Option<Markup>) -> Markup {
    html! {
        section #where {
            h2 { "Where is…" }
            form #where-form method="get" action="/" {
                label { "commit or tag " input type="text" name="where" value=[rev] required placeholder="v1.4.2, a1b2c3d"; }
                " " button type="submit" { "find" }
            }
            div #where-answer { @if let Some(a) = answer { (a) } }
        }
    }
}

/// What `where REV` found, a row per environment, or why it could not.
pub fn where_answer(rev: &str, report: Result<&WhereReport, &str>) -> Markup {
    let name = |p: Presence| match p {
        Presence::Running => ("running", "ok"),
        Presence::Partial => ("partial", "warn"),
        Presence::Pending => ("pending", "warn"),
        Presence::NotIncluded => ("not included", "dim"),
        _ => ("unknown", "bad"),
    };
    html! {
        @match report {
            Err(e) => p.bad data-rev=(rev) { (rev) ": " (e) },
            Ok(r) => {
                p data-rev=(rev) data-everywhere=(r.everywhere()) {
                    code.sha { (rev) } " → " code.sha { (short(&r.rev)) }
                    @if r.everywhere() { " runs everywhere" }
                }
                table #where-table {
                    thead { tr { th { "environment" } th { "state" } th { "instances" } th { "since" } } }
                    tbody {
                        @for row in &r.environments {
                            @let (label, class) = name(row.state);
                            tr data-env=(row.name.as_str()) data-state=(label) {
                                td { (row.name.as_str()) }
                                td class=(class) { (label) }
                                td { (row.instances.running) "/" (row.instances.of) }
                                td.dim { @if let Some(s) = row.since { (s.round(jiff::Unit::Second).unwrap_or(s).to_string()) } }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// What promoting each environment to the next would bring.
pub fn compare(pairs: &[(EnvName, EnvName, Result<DiffReport, DiffError>)]) -> Markup {
    html! {
        @if !pairs.is_empty() {
            section #compare {
                h2 { "Promotions" }
                @for (a, b, r) in pairs {
                    div.pair data-from=(a.as_str()) data-to=(b.as_str()) {
                        strong { (a.as_str()) " → " (b.as_str()) }
                        @match r {
                            Err(e) => span.dim { ": " (e.to_string()) },
                            Ok(d) => {
                                @let n = d.counts.only_in_a.map_or("?".to_owned(), |n| n.to_string());
                                " brings " span data-brings=(n) { (n) } " commit" @if d.counts.only_in_a != Some(1) { "s" }
                                @if d.counts.only_in_b.is_some_and(|n| n > 0) {
                                    span.warn { " and drops " (d.counts.only_in_b.unwrap_or(0)) }
                                }
                                @if let Some(u) = &d.compare_url { " · " a href=(u) { "compare" } }
                                ul.commits {
                                    @for c in d.only_in_a.iter().take(10) {
                                        li { code.sha { (short(&c.sha.to_string())) } " " (c.subject) span.dim { " — " (c.author) } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Bars of `values` (oldest left), `None` drawn as a gap; `label` says what they are.
fn bars(values: &[Option<f64>], label: &str, unit: &str) -> Markup {
    let max = values.iter().flatten().copied().fold(f64::MIN_POSITIVE, f64::max);
    let (w, h, bar) = (160.0, 28.0, (160.0 / values.len().max(1) as f64).min(12.0));
    html! {
        svg.chart width=(w) height=(h) viewBox=(format!("0 0 {w} {h}")) role="img" aria-label=(label) {
            @for (i, v) in values.iter().enumerate() {
                @if let Some(v) = v {
                    @let bh = (v / max * (h - 2.0)).max(1.0);
                    rect x=(i as f64 * bar) y=(h - bh) width=((bar - 2.0).max(1.0)) height=(bh) {
                        title { (format!("{v:.2} {unit}")) }
                    }
                }
            }
        }
    }
}

fn seconds(s: f64) -> String {
    humantime::format_duration(std::time::Duration::from_secs(s.max(0.0).round() as u64)).to_string()
}

/// DORA's four keys of `report` for the whole selection, each with its band, count and a
/// chart of the weeks; then a line per environment.
pub fn dora(report: &dora::Report) -> Markup {
    let k = &report.all;
    let weeks: &[Period] = &report.weeks;
    let per_day: Vec<Option<f64>> = weeks.iter().map(|p| Some(p.keys.deployments as f64)).collect();
    let lead: Vec<Option<f64>> = weeks.iter().map(|p| p.keys.lead_time_s.median).collect();
    let rate: Vec<Option<f64>> = weeks.iter().map(|p| p.keys.change_failure_rate.rate).collect();
    let restore: Vec<Option<f64>> = weeks.iter().map(|p| p.keys.time_to_restore_s.median).collect();
    let median = |s: &dora::Summary| s.median.map_or("-".to_owned(), seconds);
    html! {
        section #dora {
            h2 { "DORA's four keys" }
            p.dim { "From " (report.since.round(jiff::Unit::Second).unwrap_or(report.since).to_string())
                " to " (report.until.round(jiff::Unit::Second).unwrap_or(report.until).to_string())
                ", from the event log and the refs' reflogs; a bar a week." }
            div.facts {
                (key("deployment-frequency", "Deployment frequency", &format!("{:.2}/day", k.deployments_per_day),
                    &format!("{} deployments", k.deployments), k.bands.deployment_frequency,
                    bars(&per_day, "deployments per week", "deployments")))
                (key("lead-time", "Lead time for changes", &median(&k.lead_time_s),
                    &format!("median of {} commits", k.lead_time_s.count), k.bands.lead_time,
                    bars(&lead, "median lead time per week, seconds", "s")))
                (key("change-failure-rate", "Change failure rate",
                    &k.change_failure_rate.rate.map_or("-".to_owned(), |r| format!("{:.0} %", r * 100.0)),
                    &format!("{} of {} deployments", k.change_failure_rate.failed, k.change_failure_rate.deployments),
                    k.bands.change_failure_rate, bars(&rate, "change failure rate per week", "")))
                (key("time-to-restore", "Time to restore", &median(&k.time_to_restore_s),
                    &format!("median of {} restores", k.time_to_restore_s.count), k.bands.time_to_restore,
                    bars(&restore, "median time to restore per week, seconds", "s")))
            }
            table #dora-environments {
                thead { tr { th { "environment" } th { "deployments" } th { "lead time" } th { "failed" } th { "restore" } th { "from" } } }
                tbody {
                    @for e in &report.environments {
                        tr data-env=(e.name.as_str()) {
                            td { (e.name.as_str()) }
                            td { (e.keys.deployments) }
                            td { (median(&e.keys.lead_time_s)) }
                            td { (e.keys.change_failure_rate.failed) }
                            td { (median(&e.keys.time_to_restore_s)) }
                            td.dim { (method(e.method)) }
                        }
                    }
                }
            }
        }
    }
}

fn method(m: dora::Method) -> &'static str {
    match m {
        dora::Method::Events => "events",
        dora::Method::Reflog => "reflog",
        dora::Method::ReflogAndEvents => "reflog and events",
        _ => "nothing yet",
    }
}

fn key(id: &str, title: &str, value: &str, count: &str, band: Option<Band>, chart: Markup) -> Markup {
    let class = match band {
        Some(Band::Elite | Band::High) => "ok",
        Some(Band::Medium) => "warn",
        Some(Band::Low) => "bad",
        _ => "dim",
    };
    html! {
        div.key id=(id) data-band=(band_name(band)) {
            div.dim { (title) }
            div { strong { (value) } " " span class=(format!("badge {class}")) { (band_name(band)) } }
            div.dim { (count) }
            (chart)
        }
    }
}
