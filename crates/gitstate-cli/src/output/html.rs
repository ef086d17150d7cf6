//! The dashboard (SPEC §12): one page a person reads at a glance during an incident,
//! rendered on the server with maud (every value escaped), all CSS and JavaScript inline
//! under a strict Content-Security-Policy, complete without JavaScript. `watch` serves it
//! at `GET /` and pushes the page's `<main>` to it through server-sent events (`GET
//! /events`); `status -o html` and `check -o html` write the same page, static.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use base64::Engine as _;
use gitstate_core::verify::VerificationState;
use gitstate_core::{
    CommitInfo, EnvName, EnvState, EnvironmentReport, Event, EventKind, InstanceObservation, Links, Phase,
    Report, Status,
};
use jiff::Timestamp;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use sha2::Digest as _;

use super::report::{age, detail};

/// What is known of one environment: the remembered state, the last pass's report.
pub type Known = (Option<EnvState>, Option<EnvironmentReport>);

/// Everything the page shows.
#[derive(Debug, Default)]
pub struct View {
    /// When the page was made.
    pub now: Option<Timestamp>,
    /// Per environment: the remembered state and the last pass's report, either may lack.
    pub environments: BTreeMap<EnvName, Known>,
    /// The latest events, oldest first (the page shows the last 50, newest first).
    pub events: Vec<Event>,
    /// Where commits and comparisons can be read.
    pub links: Links,
    /// Served by `watch`: the page updates itself through `/events`.
    pub live: bool,
    /// Suspensions in force, per environment.
    pub suspensions: BTreeMap<EnvName, gitstate_runtime::controls::Suspension>,
    /// When the open freeze window ends, per environment.
    pub frozen_until: BTreeMap<EnvName, Timestamp>,
    /// Vetoed commits, per environment (SPEC §15).
    pub vetoes: BTreeMap<EnvName, Vec<gitstate_runtime::controls::Veto>>,
    /// The fleet's parts (SPEC §16: matrix, where box, promotions, DORA), rendered by
    /// [`super::fleet`] and shown after `<main>` (they change with the page's load, not
    /// with each pass).
    pub fleet: Option<Markup>,
    /// Served by `watch`: `environments` holds one page of the fleet, chosen by
    /// [`select`] (SPEC §19: the server pages, filters and sorts).
    pub paging: Option<Paging>,
    /// Served by `watch` to an operator: the CSRF token its action forms carry (SPEC §20).
    /// `None`: no buttons.
    pub actions: Option<String>,
}

/// The rows the dashboard shows at once, unless the query asks for fewer.
pub const PER_PAGE: usize = 100;

/// How the dashboard's rows are ordered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Sort {
    /// Worst standing first (alarm, degraded, backing off, …, in sync), then by name.
    #[default]
    Worst,
    /// By name.
    Name,
}

/// What the dashboard was asked for: `GET /?q=NAME&phase=PHASE&sort=name&page=N`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// Only environments whose name contains this.
    pub q: String,
    /// Only environments in this phase (`drifted` is any phase but in sync).
    pub phase: String,
    /// The order.
    pub sort: Sort,
    /// The page, from 0.
    pub page: usize,
}

impl Query {
    /// The query of a URL's parameters.
    pub fn parse(param: impl Fn(&str) -> Option<String>) -> Self {
        Self {
            q: param("q").unwrap_or_default().chars().take(200).collect(),
            phase: param("phase").unwrap_or_default().chars().take(40).collect(),
            sort: if param("sort").as_deref() == Some("name") { Sort::Name } else { Sort::Worst },
            page: param("page").and_then(|p| p.parse().ok()).unwrap_or(0).min(1_000_000),
        }
    }

    /// The URL of page `page` of this query.
    fn href(&self, page: usize) -> String {
        let mut out = url::form_urlencoded::Serializer::new(String::new());
        if !self.q.is_empty() {
            out.append_pair("q", &self.q);
        }
        if !self.phase.is_empty() {
            out.append_pair("phase", &self.phase);
        }
        if self.sort == Sort::Name {
            out.append_pair("sort", "name");
        }
        if page > 0 {
            out.append_pair("page", &page.to_string());
        }
        format!("/?{}", out.finish())
    }
}

/// The whole fleet's figures, and the query, for a page of it.
#[derive(Debug, Clone, Default)]
pub struct Paging {
    /// Environments in all.
    pub total: usize,
    /// Of which in sync (or verifying).
    pub in_sync: usize,
    /// Matching the query.
    pub matched: usize,
    /// The query.
    pub query: Query,
    /// Open alarms of the whole fleet, by cause, largest first.
    pub causes: Vec<(gitstate_core::Cause, Vec<(EnvName, gitstate_core::OpenAlarm)>)>,
}

/// Picks one page of the fleet for `query` from every environment's state and report
/// without copying them: the page's names (in order) and the fleet's figures.
pub fn select(
    states: &BTreeMap<EnvName, EnvState>,
    reports: &BTreeMap<EnvName, EnvironmentReport>,
    query: &Query,
) -> (Vec<EnvName>, Paging) {
    let names: std::collections::BTreeSet<&EnvName> = states.keys().chain(reports.keys()).collect();
    let standing = |n: &EnvName| Standing::of(states.get(n), reports.get(n));
    let in_sync = names
        .iter()
        .filter(|n| matches!(standing(n), Standing::Phase(Phase::InSync | Phase::Verifying)))
        .count();
    let wanted = |n: &EnvName| {
        let s = standing(n);
        (query.q.is_empty() || n.as_str().contains(query.q.as_str()))
            && match query.phase.as_str() {
                "" => true,
                "drifted" => !matches!(s, Standing::Phase(Phase::InSync | Phase::Verifying)),
                p => s.name() == p,
            }
    };
    let mut matched: Vec<(u8, &EnvName)> =
        names.iter().filter(|n| wanted(n)).map(|n| (standing(n).rank(), *n)).collect();
    if query.sort == Sort::Worst {
        matched.sort();
    }
    let page: Vec<EnvName> =
        matched.iter().skip(query.page * PER_PAGE).take(PER_PAGE).map(|(_, n)| (*n).clone()).collect();
    let paging = Paging {
        total: names.len(),
        in_sync,
        matched: matched.len(),
        query: query.clone(),
        causes: causes_of(states.iter()),
    };
    (page, paging)
}

/// Open alarms grouped by the cause each was given when raised (SPEC §17), largest first.
fn causes_of<'a>(
    states: impl Iterator<Item = (&'a EnvName, &'a EnvState)>,
) -> Vec<(gitstate_core::Cause, Vec<(EnvName, gitstate_core::OpenAlarm)>)> {
    let mut causes: BTreeMap<gitstate_core::Cause, Vec<(EnvName, gitstate_core::OpenAlarm)>> =
        BTreeMap::new();
    for (name, state) in states {
        for a in &state.alarms {
            let cause = a.cause.clone().unwrap_or_else(|| gitstate_core::Cause::Environment(name.clone()));
            causes.entry(cause).or_default().push((name.clone(), a.clone()));
        }
    }
    let mut causes: Vec<_> = causes.into_iter().collect();
    causes.sort_by_key(|(c, members)| (std::cmp::Reverse(members.len()), c.clone()));
    causes
}

impl View {
    /// A view of one pass's report (`check -o html`).
    pub fn of_report(report: &Report, links: Links) -> Self {
        let environments =
            report.environments.iter().map(|e| (e.name.clone(), (None, Some(e.clone())))).collect();
        Self { now: Some(report.checked_at), environments, links, ..Self::default() }
    }

    /// A view of what the state holds, with the suspensions and freeze windows in force
    /// (`status -o html`, and `watch` with its reports).
    pub fn of_states(
        states: &BTreeMap<EnvName, EnvState>,
        events: Vec<Event>,
        links: Links,
        overrides: &gitstate_runtime::controls::Overrides,
        windows: &gitstate_runtime::controls::Windows,
    ) -> Self {
        let now = Timestamp::now();
        let environments = states.iter().map(|(n, s)| (n.clone(), (Some(s.clone()), None))).collect();
        let suspensions = states
            .keys()
            .filter_map(|n| overrides.suspension(n, now).map(|s| (n.clone(), s.clone())))
            .collect();
        let frozen_until = windows
            .iter()
            .filter_map(|(n, w)| gitstate_runtime::controls::frozen_until(w, now).map(|u| (n.clone(), u)))
            .collect();
        let vetoes = states
            .keys()
            .map(|n| (n.clone(), overrides.vetoes(n).to_vec()))
            .filter(|(_, v)| !v.is_empty())
            .collect();
        Self {
            now: Some(now),
            environments,
            events,
            links,
            suspensions,
            frozen_until,
            vetoes,
            live: false,
            fleet: None,
            paging: None,
            actions: None,
        }
    }
}

const STYLE: &str = r#"
:root{--bg:#fff;--fg:#1b1f24;--dim:#5b6570;--line:#d8dee4;--card:#f6f8fa;--ok:#1a7f37;--warn:#9a6700;--bad:#cf222e;--link:#0969da}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#e6edf3;--dim:#8d96a0;--line:#30363d;--card:#161b22;--ok:#3fb950;--warn:#d29922;--bad:#f85149;--link:#58a6ff}}
*{box-sizing:border-box}body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;background:var(--bg);color:var(--fg)}
header{display:flex;flex-wrap:wrap;gap:.5em 1.5em;align-items:baseline;padding:.8em 1em;border-bottom:1px solid var(--line)}
header h1{font-size:1.2em;margin:0}main{padding:1em;max-width:80em;margin:auto}
a{color:var(--link)}code,.sha{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.92em}
.dim{color:var(--dim)}.env{border:1px solid var(--line);border-radius:8px;background:var(--card);margin:0 0 1em;padding:.8em 1em}
.env h2{font-size:1.1em;margin:0 0 .3em;display:flex;flex-wrap:wrap;gap:.5em;align-items:center}
.badge{display:inline-block;border-radius:1em;padding:0 .6em;font-size:.85em;font-weight:600;border:2px solid currentColor;white-space:nowrap}
.ok{color:var(--ok)}.warn{color:var(--warn)}.bad{color:var(--bad)}
.badge.bad{border-style:double}.badge.warn{border-style:dashed}
table{border-collapse:collapse;width:100%;margin:.4em 0}td,th{text-align:left;padding:.25em .5em;border-top:1px solid var(--line);vertical-align:top}
th{font-size:.8em;color:var(--dim);font-weight:600}ul.commits{margin:.2em 0 .2em 1em;padding:0}ul.commits li{list-style:none}
.facts{display:flex;flex-wrap:wrap;gap:.3em 1.5em;margin:.3em 0}
section#fleet,section#where,section#compare,section#dora{margin:1.5em auto;padding:0 1em;max-width:80em}
td.expected{font-weight:600;background:var(--card)}.key{border:1px solid var(--line);border-radius:8px;padding:.5em .8em;min-width:12em}
#where-form input{font:inherit;padding:.2em .4em;min-width:16em}
.acts{display:flex;flex-wrap:wrap;gap:.4em;margin:.5em 0 0;padding-top:.5em;border-top:1px dashed var(--line)}
form.act{display:flex;gap:.2em;align-items:center}form.act input,form.act button{font:inherit;font-size:.85em;padding:.1em .4em}
form.act input[name=reason]{width:9em}.chart{vertical-align:middle}.chart rect{fill:var(--link)}
@media (max-width:640px){td,th{display:block;border:0;padding:.1em .3em}tr{display:block;border-top:1px solid var(--line);padding:.3em 0}thead{display:none}}
"#;

/// Replaces the page's `<main>` with each fragment `/events` sends; reconnects by itself.
const SCRIPT: &str = r#"
(function(){var f=document.getElementById('where-form');if(f&&window.fetch){f.addEventListener('submit',function(e){
e.preventDefault();var v=f.elements['where'].value;fetch('/where?rev='+encodeURIComponent(v)).then(function(r){return r.text();})
.then(function(t){document.getElementById('where-answer').innerHTML=t;});});}})();
(function(){if(!window.EventSource)return;var es=new EventSource('/events'+location.search);
es.addEventListener('page',function(e){var m=document.querySelector('main');
if(!m)return;var typing=[].some.call(m.querySelectorAll('form.act input:not([type=hidden])'),function(i){return i.value!==''||i===document.activeElement;});
if(!typing){m.outerHTML=e.data;}});})();
"#;

fn hash(text: &str) -> String {
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(text.as_bytes()))
    )
}

/// The Content-Security-Policy the page is served with: nothing from outside, and only the
/// page's own inline style and script (by hash).
pub static CSP: LazyLock<String> = LazyLock::new(|| csp("'self'"));

/// A static page's (`-o html`): it holds no forms and may post nowhere.
pub static CSP_STATIC: LazyLock<String> = LazyLock::new(|| csp("'none'"));

fn csp(form_action: &str) -> String {
    format!(
        "default-src 'none'; style-src {}; script-src {}; connect-src 'self'; img-src 'self' data:; \
         base-uri 'none'; form-action {form_action}; frame-ancestors 'none'",
        hash(STYLE),
        hash(SCRIPT)
    )
}

fn status_class(s: Status) -> &'static str {
    match s {
        Status::InSync => "ok",
        Status::Behind | Status::Ahead => "warn",
        _ => "bad",
    }
}

/// A status as colour, shape and text: never colour alone.
fn status_badge(s: Status) -> Markup {
    let mark = match s {
        Status::InSync => "✓",
        Status::Behind | Status::Ahead => "▲",
        _ => "✗",
    };
    html! { span.badge.(status_class(s)) { (mark) " " (s.as_str()) } }
}

/// Where an environment stands: its phase when the loop decided one, else (a `check`)
/// whether it is in sync.
#[derive(Clone, Copy)]
enum Standing {
    Phase(Phase),
    OutOfSync,
    Unknown,
}

impl Standing {
    fn of(state: Option<&EnvState>, report: Option<&EnvironmentReport>) -> Self {
        match (state.and_then(|s| s.phase).or(report.and_then(|r| r.phase)), report) {
            (Some(p), _) => Standing::Phase(p),
            (None, Some(r)) if r.in_sync => Standing::Phase(Phase::InSync),
            (None, Some(_)) => Standing::OutOfSync,
            (None, None) => Standing::Unknown,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Standing::Phase(p) => p.as_str(),
            Standing::OutOfSync => "out_of_sync",
            Standing::Unknown => "unknown",
        }
    }

    /// How bad, for the order "worst first".
    fn rank(self) -> u8 {
        match self {
            Standing::Phase(Phase::Alarm | Phase::Degraded | Phase::Vetoed) => 0,
            Standing::Phase(Phase::BackingOff) => 1,
            Standing::Phase(Phase::Remediating) => 2,
            Standing::OutOfSync | Standing::Phase(Phase::Converging | Phase::Observing) => 3,
            Standing::Phase(Phase::InSync) => 6,
            Standing::Phase(Phase::Verifying) => 5,
            _ => 4,
        }
    }

    fn badge(self) -> Markup {
        let (class, mark) = match self {
            Standing::Phase(Phase::InSync) => ("ok", "✓"),
            Standing::Phase(Phase::Alarm | Phase::Degraded | Phase::Vetoed) => ("bad", "✗"),
            Standing::Phase(Phase::Verifying) => ("ok", "⏳"),
            Standing::OutOfSync => ("warn", "▲"),
            Standing::Unknown => ("warn", "?"),
            Standing::Phase(_) => ("warn", "●"),
        };
        html! { span.badge.(class) { (mark) " " (self.name().replace('_', " ")) } }
    }
}

/// A convergence lag for a person: tenths of a second under a minute ("1.7 s"), then
/// roughly ("12m", "5h", "340d").
fn lag(seconds: f64) -> String {
    if seconds >= 60.0 {
        // `as` saturates: an infinite lag is u64::MAX seconds.
        return super::report::rough(seconds.round() as u64);
    }
    format!("{:.1} s", seconds.max(0.0))
}

/// The time from `now` until `until`, for a person ("42s", "3m").
fn left(now: Timestamp, until: Timestamp) -> String {
    super::report::rough(until.as_second().saturating_sub(now.as_second()).max(0).unsigned_abs())
}

fn commit_link(links: &Links, sha: &str, text: Markup) -> Markup {
    match links.commit(sha) {
        Some(url) => html! { a.sha href=(url) { (text) } },
        None => html! { span.sha { (text) } },
    }
}

fn commits(links: &Links, label: &str, list: &[CommitInfo], now: Timestamp) -> Markup {
    html! {
        @if !list.is_empty() {
            div { span.dim { (label) } }
            ul.commits {
                @for c in list {
                    li {
                        (commit_link(links, c.sha.as_str(), html! { (c.sha.short(7)) })) " "
                        (c.subject) " "
                        span.dim { "— " (c.author) ", " (age(now, c.at)) }
                    }
                }
            }
        }
    }
}

/// The last convergence lags as bars (seconds, oldest left).
fn lag_chart(lags: &[f64]) -> Markup {
    let max = lags.iter().copied().fold(1.0_f64, f64::max);
    let (w, h, bar) = (160.0, 28.0, 8.0);
    html! {
        @if !lags.is_empty() {
            svg.chart width=(w) height=(h) viewBox=(format!("0 0 {w} {h}")) role="img"
                aria-label=(format!("last {} convergence lags, longest {:.0} s", lags.len(), max)) {
                @for (i, l) in lags.iter().enumerate() {
                    @let bh = (l / max * (h - 2.0)).max(1.0);
                    rect x=(i as f64 * bar) y=(h - bh) width=(bar - 2.0) height=(bh) {
                        title { (lag(*l)) }
                    }
                }
            }
        }
    }
}

fn instance_row(links: &Links, exp: Option<&str>, i: &InstanceObservation, now: Timestamp) -> Markup {
    let pending = i.pending_commits.as_deref().unwrap_or_default();
    let unexpected = i.unexpected_commits.as_deref().unwrap_or_default();
    html! {
        tr data-status=(i.status.as_str()) {
            td { code { (i.id) } }
            td { (status_badge(i.status)) }
            td {
                span.sha { (i.actual.as_deref().map(|a| a.chars().take(12).collect::<String>()).unwrap_or_else(|| "-".into())) }
                @if let (Some(url), Some(_)) = (&i.compare_url, exp) { " " a href=(url) { "compare" } }
            }
            td {
                (detail(i))
                (commits(links, "pending", pending, now))
                (commits(links, "unexpected", unexpected, now))
            }
        }
    }
}

fn environment(
    view: &View,
    name: &EnvName,
    state: Option<&EnvState>,
    report: Option<&EnvironmentReport>,
    lags: &[f64],
) -> Markup {
    let now = view.now.unwrap_or_else(Timestamp::now);
    let standing = Standing::of(state, report);
    let expected =
        state.and_then(|s| s.expected.as_ref()).map(|e| e.commit).or(report.and_then(|r| r.expected));
    let reference = state.and_then(|s| s.reference.clone()).or(report.map(|r| r.reference.clone()));
    // The expected commit's subject, when an instance that lacks it names it.
    let described = expected.and_then(|e| {
        report?
            .targets
            .iter()
            .flat_map(|t| &t.instances)
            .flat_map(|i| i.pending_commits.iter().flatten())
            .find(|c| c.sha == e)
            .cloned()
    });
    html! {
        section.env id=(format!("env-{name}")) data-phase=(standing.name()) {
            h2 { (name.as_str()) " " (standing.badge()) }
            div.facts {
                span { span.dim { "ref " } code { (reference.as_deref().unwrap_or("-")) } }
                span {
                    span.dim { "expected " }
                    @if let Some(e) = expected {
                        (commit_link(&view.links, e.as_str(), html! { (e.short(7)) }))
                        @if let Some(c) = &described { " " (c.subject) span.dim { " — " (c.author) } }
                    } @else { "-" }
                    @if let Some(since) = state.and_then(|s| s.expected.as_ref()).map(|e| e.since) {
                        span.dim { " since " (age(now, since)) }
                    }
                }
                @if let Some(s) = view.suspensions.get(name) {
                    span.warn {
                        "⏸ suspended by " (s.by) " (" (s.via) ") " (age(now, s.since))
                        @if let Some(u) = s.until { ", until " (u.round(jiff::Unit::Second).unwrap_or(u).to_string()) }
                        @if let Some(r) = &s.reason { ": " (r) }
                    }
                }
                @if let Some(until) = view.frozen_until.get(name) {
                    span.warn { "❄ freeze window until " (until.round(jiff::Unit::Second).unwrap_or(*until).to_string()) }
                }
                @if let Some(v) = state.and_then(|s| s.verification.as_ref()) {
                    @let failed = v.failures.len();
                    @match v.state {
                        VerificationState::Verifying => span {
                            "⏳ soaking " (commit_link(&view.links, v.sha.as_str(), html! { (v.sha.short(7)) }))
                            span.dim { ", " (left(now, v.until)) " left, " (failed) " failed check run(s)" }
                        },
                        VerificationState::Verified => span.ok {
                            "✓ verified " (commit_link(&view.links, v.sha.as_str(), html! { (v.sha.short(7)) }))
                            span.dim { " " (age(now, v.until)) }
                        },
                        VerificationState::Degraded => span.bad {
                            "✗ degraded " (commit_link(&view.links, v.sha.as_str(), html! { (v.sha.short(7)) }))
                            ": " (failed) " failed check run(s)"
                        },
                    }
                    @for f in v.failures.iter().rev().take(3) {
                        span.dim { (f.check) ": " (f.reason) " (" (age(now, f.at)) ")" }
                    }
                }
                @if let Some(good) = state.and_then(|s| s.verified.last()) {
                    span { span.dim { "last verified " } (commit_link(&view.links, good.as_str(), html! { (good.short(7)) })) }
                }
                @for v in view.vetoes.get(name).into_iter().flatten() {
                    span.bad {
                        "⛔ vetoed " (commit_link(&view.links, v.sha.as_str(), html! { (v.sha.short(7)) }))
                        span.dim { " by " (v.by) " (" (v.via) ") " (age(now, v.since)) }
                        @if let Some(r) = &v.reason { ": " (r) }
                    }
                }
                // SPEC §18: who signed what is to run, or why it is not trusted.
                @if let Some(t) = state.and_then(|s| s.trust.as_ref()) {
                    @if t.state == "trusted" {
                        span.trust { "🔏 signed by " (t.signer.as_deref().unwrap_or("an allowed key"))
                            span.dim { " " (t.key.as_deref().unwrap_or("")) } }
                    } @else {
                        span.bad.trust { "⚠ untrusted: " (t.reason.as_deref().unwrap_or("not signed by an allowed key")) }
                    }
                }
                @if let Some(a) = state.and_then(EnvState::primary_alarm) {
                    span.bad { "✗ " (a.kind.as_str()) " alarm open since " (age(now, a.since)) }
                }
                @if let Some(i) = state.and_then(EnvState::open_incident) {
                    span { span.dim { "attempts " } (i.attempts)
                        @if let Some(next) = i.next_attempt_at.filter(|t| *t > now) {
                            span.dim { ", next attempt in " (humantime::format_duration(std::time::Duration::from_secs(next.as_second().saturating_sub(now.as_second()).max(0) as u64))) }
                        }
                    }
                }
                @if let Some(l) = state.and_then(|s| s.last_convergence_lag_s) {
                    span { span.dim { "last lag " } (lag(l)) " " (lag_chart(lags)) }
                }
            }
            @if let Some(r) = report {
                @if let Some(e) = &r.error { p.bad { "✗ " (e) } }
                @for t in &r.targets {
                    @let counts = t.instances.iter().fold(BTreeMap::<&str, usize>::new(), |mut m, i| { *m.entry(i.status.as_str()).or_default() += 1; m });
                    div {
                        strong { (t.name) } " " span.dim { (t.kind) } " " (status_badge(t.status)) " "
                        span.dim { @for (s, n) in &counts { (n) " " (s) " " } }
                        @if let Some(e) = &t.error { " " span.bad { (e) } }
                    }
                    @if !t.instances.is_empty() {
                        table {
                            thead { tr { th { "instance" } th { "status" } th { "runs" } th { "detail" } } }
                            tbody { @for i in &t.instances { (instance_row(&view.links, expected.as_ref().map(|e| e.as_str()), i, now)) } }
                        }
                    }
                }
            } @else {
                p.dim { "Targets are shown by a running watch, or by check -o html." }
            }
            @if let Some(token) = &view.actions {
                (actions(view, token, name, expected))
            }
        }
    }
}

/// An operator's buttons for `name` (SPEC §20): one form each, working without
/// JavaScript, each asking for a reason.
fn actions(view: &View, token: &str, name: &EnvName, expected: Option<gitstate_core::CommitId>) -> Markup {
    let form = |action: &str, label: &str, fields: Markup| {
        html! {
            form.act method="post" action=(format!("/actions/{action}")) {
                input type="hidden" name="csrf" value=(token);
                input type="hidden" name="environment" value=(name.as_str());
                (fields)
                input name="reason" required maxlength="200" placeholder="reason" aria-label=(format!("reason to {label}"));
                button type="submit" data-action=(action) { (label) }
            }
        }
    };
    html! {
        div.acts {
            @if view.suspensions.contains_key(name) {
                (form("resume", "Resume", html! {}))
            } @else {
                (form("suspend", "Suspend", html! { input name="until" size="6" placeholder="until (2h)" aria-label="until"; }))
            }
            (form("retry", "Retry", html! {}))
            (form("rollback", "Roll back", html! { input name="sha" size="14" placeholder="to (last verified)" aria-label="roll back to"; }))
            @if let Some(e) = expected {
                (form("veto", "Veto", html! { input type="hidden" name="sha" value=(e.as_str()); }))
            }
            @for v in view.vetoes.get(name).into_iter().flatten() {
                (form("unveto", &format!("Unveto {}", v.sha.short(7)), html! { input type="hidden" name="sha" value=(v.sha.as_str()); }))
            }
            (form("adopt", "Adopt", html! {}))
        }
    }
}

/// `: reason`, when there is one.
fn because(reason: &Option<String>) -> String {
    reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default()
}

fn event_line(e: &Event) -> String {
    match &e.kind {
        EventKind::ExpectedChanged { to, .. } => format!("expected commit changed to {}", to.short(7)),
        EventKind::DriftDetected { status, .. } => format!("drift detected ({status})"),
        EventKind::RemediationStarted { attempt, .. } => format!("remediation attempt {attempt} started"),
        EventKind::RemediationFinished { attempt, ok, detail, .. } => {
            format!("remediation attempt {attempt} {}: {detail}", if *ok { "triggered" } else { "failed" })
        }
        EventKind::AlarmRaised { alarm, .. } => format!("{alarm} alarm raised"),
        EventKind::AlarmRepeated { alarm, .. } => format!("{alarm} alarm notified again"),
        EventKind::AlarmResolved { alarm, reason } => {
            format!("{alarm} alarm resolved ({reason:?})").to_lowercase()
        }
        EventKind::Converged { lag_s: Some(l), .. } => format!("converged in {}", lag(*l)),
        EventKind::Converged { .. } => "converged".into(),
        EventKind::EnvironmentRemoved { .. } => "environment removed".into(),
        EventKind::NotificationFailed { sink, alarm, .. } => format!("{alarm} notification to {sink} failed"),
        EventKind::VerificationStarted { expected, .. } => format!("soak of {} started", expected.short(7)),
        EventKind::CheckFailed { check, reason, .. } => format!("check {check} failed: {reason}"),
        EventKind::Verified { expected } => format!("{} verified", expected.short(7)),
        EventKind::Degraded { expected, failures } => {
            format!("{} degraded ({failures} failed check runs)", expected.short(7))
        }
        EventKind::RolledBack { from, to, by, via, reason } => format!(
            "rolled back from {} to {} by {by} ({via}){}",
            from.short(7),
            to.short(7),
            because(reason)
        ),
        EventKind::RollbackRefused { from, error, .. } => {
            format!("rollback from {} refused: {error}", from.short(7))
        }
        EventKind::VetoAdded { sha, by, via, .. } => format!("{} vetoed by {by} ({via})", sha.short(7)),
        EventKind::VetoRemoved { sha, by, via, .. } => {
            format!("veto of {} lifted by {by} ({via})", sha.short(7))
        }
        EventKind::Adopted { to, by, via, .. } => format!("hotfix {} adopted by {by} ({via})", to.short(7)),
        EventKind::Suspended { by, via, reason, .. } => {
            format!("suspended by {by} ({via}){}", because(reason))
        }
        EventKind::Resumed { by, via, reason } => format!("resumed by {by} ({via}){}", because(reason)),
        EventKind::RetryRequested { by, via, reason } => {
            format!("retry asked by {by} ({via}){}", because(reason))
        }
        _ => serde_json::to_value(&e.kind)
            .ok()
            .and_then(|v| v["event"].as_str().map(str::to_owned))
            .unwrap_or_default(),
    }
}

/// The page's `<main>`: what `/events` sends on every change.
pub fn main(view: &View) -> Markup {
    let now = view.now.unwrap_or_else(Timestamp::now);
    let mut lags: BTreeMap<&EnvName, Vec<f64>> = BTreeMap::new();
    for e in &view.events {
        if let EventKind::Converged { lag_s: Some(l), .. } = e.kind {
            let v = lags.entry(&e.environment).or_default();
            v.push(l);
            if v.len() > 20 {
                v.remove(0);
            }
        }
    }
    let mut order: Vec<(&EnvName, &Known)> = view.environments.iter().collect();
    if view.paging.as_ref().is_none_or(|p| p.query.sort == Sort::Worst) {
        order.sort_by_key(|(n, (s, r))| (Standing::of(s.as_ref(), r.as_ref()).rank(), (*n).clone()));
    }
    let in_sync = order
        .iter()
        .filter(|(_, (s, r))| {
            matches!(Standing::of(s.as_ref(), r.as_ref()), Standing::Phase(Phase::InSync | Phase::Verifying))
        })
        .count();
    // SPEC §17: open alarms grouped by the cause each was given when raised.
    let (in_sync, total, causes) = match &view.paging {
        Some(p) => (p.in_sync, p.total, p.causes.clone()),
        None => {
            (in_sync, order.len(), causes_of(order.iter().filter_map(|(n, (s, _))| Some((*n, s.as_ref()?)))))
        }
    };
    /// Members listed under one cause; the rest are counted.
    const LISTED: usize = 20;
    html! {
        main data-updated=(now.to_string()) {
            p { strong { (in_sync) " of " (total) " environments in sync" } span.dim { " · " (now.round(jiff::Unit::Second).unwrap_or(now).to_string()) } }
            @if let Some(p) = &view.paging { (pager(p)) }
            @if !causes.is_empty() {
                section id="alarms" {
                    h2 { "Open alarms, by cause" }
                    @for (cause, members) in &causes {
                        div.cause data-cause=(cause.to_string()) {
                            strong.bad { "✗ " (cause.describe()) }
                            span.dim { " · " (members.len()) @if members.len() == 1 { " alarm" } @else { " alarms" } }
                            ul {
                                @for (name, a) in members.iter().take(LISTED) {
                                    li { a href=(format!("#env-{name}")) { (name.as_str()) } " " (a.kind.as_str()) span.dim { " since " (age(now, a.since)) } }
                                }
                                @if members.len() > LISTED {
                                    li.dim { "and " (members.len() - LISTED) " more" }
                                }
                            }
                        }
                    }
                }
            }
            @for (name, (state, report)) in &order {
                (environment(view, name, state.as_ref(), report.as_ref(), lags.get(name).map_or(&[][..], Vec::as_slice)))
            }
            @if !view.events.is_empty() {
                h2 { "Recent events" }
                table id="events" {
                    thead { tr { th { "when" } th { "environment" } th { "what" } } }
                    tbody {
                        @for e in view.events.iter().rev().take(50) {
                            tr { td.dim { (age(now, e.at)) } td { (e.environment.as_str()) } td { (event_line(e)) } }
                        }
                    }
                }
            }
        }
    }
}

/// The filter form and the links to the other pages: plain links and a GET form, so
/// that they work without JavaScript.
fn pager(p: &Paging) -> Markup {
    let q = &p.query;
    let first = q.page * PER_PAGE;
    let last = (first + PER_PAGE).min(p.matched);
    let pages = p.matched.div_ceil(PER_PAGE).max(1);
    html! {
        form.pager method="get" action="/" {
            input type="search" name="q" value=(q.q) placeholder="name contains" aria-label="name contains";
            select name="phase" aria-label="phase" {
                @for (value, label) in [("", "any phase"), ("drifted", "not in sync"), ("alarm", "alarm"), ("degraded", "degraded"), ("untrusted", "untrusted"), ("vetoed", "vetoed"), ("backing_off", "backing off"), ("remediating", "remediating"), ("converging", "converging"), ("verifying", "verifying"), ("in_sync", "in sync"), ("suspended", "suspended"), ("frozen", "frozen"), ("unknown", "unknown")] {
                    option value=(value) selected[q.phase == value] { (label) }
                }
            }
            select name="sort" aria-label="order" {
                option value="worst" selected[q.sort == Sort::Worst] { "worst first" }
                option value="name" selected[q.sort == Sort::Name] { "by name" }
            }
            button type="submit" { "show" }
            span.dim {
                " "
                @if p.matched == 0 { "none match" } @else { (first + 1) "–" (last) " of " (p.matched) }
                @if p.matched != p.total { " matching (" (p.total) " in all)" }
            }
            " "
            @if q.page > 0 { a href=(q.href(q.page - 1)) rel="prev" { "← previous" } " " }
            @if q.page + 1 < pages { a href=(q.href(q.page + 1)) rel="next" { "next →" } }
        }
    }
}

/// The whole page.
pub fn page(view: &View) -> String {
    document("gitstate", view.live, html! { (main(view)) @if let Some(f) = &view.fleet { (f) } })
}

/// A page of its own around `body` (`fleet -o html`, `dora -o html`), static, under the
/// same style and Content-Security-Policy as the dashboard.
pub fn standalone(title: &str, body: Markup) -> String {
    document(title, false, html! { main { (body) } })
}

fn document(title: &str, live: bool, body: Markup) -> String {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if !live { meta http-equiv="Content-Security-Policy" content=(CSP_STATIC.as_str()); }
                title { (title) }
                // No icon to fetch: nothing leaves the page, not even a favicon request.
                link rel="icon" href="data:,";
                style { (PreEscaped(STYLE)) }
            }
            body {
                header { h1 { "gitstate" } span.dim { "what runs where, against what Git says" } }
                (body)
                @if live { script { (PreEscaped(SCRIPT)) } }
            }
        }
    };
    markup.into_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lag_reads_in_the_units_it_needs() {
        assert_eq!(lag(1.74), "1.7 s");
        assert_eq!(lag(59.94), "59.9 s");
        assert_eq!(lag(60.0), "1m");
        assert_eq!(lag(725.0), "12m");
        assert_eq!(lag(18_130.0), "5h");
        assert_eq!(lag(29_417_914.1), "340d");
        assert_eq!(lag(-1.0), "0.0 s");
        assert_eq!(lag(f64::INFINITY), format!("{}d", u64::MAX / 86_400));
    }

    #[test]
    fn the_policy_allows_exactly_the_inline_style_and_script() {
        let page = page(&View { live: true, ..View::default() });
        assert!(page.contains(STYLE) && page.contains(SCRIPT));
        assert!(CSP.contains(&hash(STYLE)) && CSP.contains(&hash(SCRIPT)));
        assert!(CSP.starts_with("default-src 'none'"));
    }

    /// SPEC §18: the dashboard says who signed what is to run, or why it is not trusted.
    #[test]
    fn the_signer_or_the_reason_is_shown() {
        let sha = gitstate_core::CommitId::parse(&"a".repeat(40)).unwrap();
        let mut good = gitstate_core::TrustRecord::new(sha, true);
        good.signer = Some("ada@example.com".into());
        let mut bad = gitstate_core::TrustRecord::new(sha, false);
        bad.reason = Some("commit bbbbbbbbbbbb is unsigned".into());
        let mut view = View { now: Some("2026-12-06T12:00:00Z".parse().unwrap()), ..View::default() };
        for (name, t) in [("signed", good), ("attacked", bad)] {
            let state = EnvState { trust: Some(Box::new(t)), ..EnvState::default() };
            view.environments.insert(name.parse().unwrap(), (Some(state), None));
        }
        let html = main(&view).into_string();
        assert!(html.contains("signed by ada@example.com"), "{html}");
        assert!(html.contains("untrusted: commit bbbbbbbbbbbb is unsigned"), "{html}");
    }

    /// SPEC §17: the dashboard groups open alarms by the cause each was given.
    #[test]
    fn open_alarms_are_grouped_by_cause() {
        let now: Timestamp = "2026-12-06T12:00:00Z".parse().unwrap();
        let alarm = |kind, cause: Option<&str>| gitstate_core::OpenAlarm {
            kind,
            since: "2026-12-06T11:50:00Z".parse().unwrap(),
            last_notified_at: None,
            cause: cause.map(|c| c.parse().unwrap()),
        };
        let state = |alarms| EnvState { alarms, ..EnvState::default() };
        let origin = Some("origin:10.0.0.7:443");
        let mut view = View { now: Some(now), ..View::default() };
        for (name, alarms) in [
            ("shop-a", vec![alarm(gitstate_core::AlarmKind::Unreachable, origin)]),
            ("shop-b", vec![alarm(gitstate_core::AlarmKind::Unreachable, origin)]),
            ("billing", vec![alarm(gitstate_core::AlarmKind::Drift, None)]),
            ("eu-1", vec![alarm(gitstate_core::AlarmKind::Unreachable, Some("aws:eu-west-1"))]),
            ("eu-2", vec![alarm(gitstate_core::AlarmKind::Unreachable, Some("aws:eu-west-1"))]),
            ("eu-3", vec![alarm(gitstate_core::AlarmKind::Unreachable, Some("aws:eu-west-1"))]),
            ("quiet", vec![]),
        ] {
            view.environments.insert(name.parse().unwrap(), (Some(state(alarms)), None));
        }
        let html = main(&view).into_string();
        let section = &html[html.find("id=\"alarms\"").expect("the alarms section")..];
        let aws_at = section.find("data-cause=\"aws:eu-west-1\"").unwrap();
        let origin_at = section.find("data-cause=\"origin:10.0.0.7:443\"").unwrap();
        let own_at = section.find("data-cause=\"environment:billing\"").unwrap();
        assert!(aws_at < origin_at && origin_at < own_at, "the largest cause first");
        assert!(section[aws_at..origin_at].contains("3 alarms"));
        let origin_block = &section[origin_at..own_at];
        assert!(
            origin_block.contains("origin 10.0.0.7:443") && origin_block.contains("2 alarms"),
            "{origin_block}"
        );
        assert!(
            origin_block.contains("shop-a")
                && origin_block.contains("shop-b")
                && !origin_block.contains("billing")
        );
        assert!(!section[..section.find("</section>").unwrap()].contains(">quiet<"));
    }
}

#[cfg(test)]
mod paging_tests {
    use super::*;

    fn fleet(n: usize, drifted: &[usize]) -> BTreeMap<EnvName, EnvState> {
        (0..n)
            .map(|i| {
                let phase = if drifted.contains(&i) { Phase::Alarm } else { Phase::InSync };
                (
                    EnvName::new(&format!("svc-{i:04}")).unwrap(),
                    EnvState { phase: Some(phase), ..EnvState::default() },
                )
            })
            .collect()
    }

    fn page_of(states: &BTreeMap<EnvName, EnvState>, query: &Query) -> (Vec<String>, Paging) {
        let (names, paging) = select(states, &BTreeMap::new(), query);
        (names.iter().map(|n| n.as_str().to_owned()).collect(), paging)
    }

    #[test]
    fn the_dashboard_shows_a_page_the_worst_first_and_filters_on_the_server() {
        let states = fleet(250, &[7, 140, 249]);
        let (first, p) = page_of(&states, &Query::default());
        assert_eq!(first.len(), PER_PAGE);
        assert_eq!((p.total, p.in_sync, p.matched), (250, 247, 250));
        assert_eq!(&first[..4], ["svc-0007", "svc-0140", "svc-0249", "svc-0000"], "worst first");
        let (last, _) = page_of(&states, &Query { page: 2, ..Query::default() });
        assert_eq!(last.len(), 50);
        let (by_name, _) = page_of(&states, &Query { sort: Sort::Name, ..Query::default() });
        assert_eq!(&by_name[..2], ["svc-0000", "svc-0001"]);
        let (named, p) = page_of(&states, &Query { q: "svc-014".into(), ..Query::default() });
        assert_eq!(named.len(), 10);
        assert_eq!((p.matched, p.total), (10, 250));
        let (bad, _) = page_of(&states, &Query { phase: "drifted".into(), ..Query::default() });
        assert_eq!(bad, ["svc-0007", "svc-0140", "svc-0249"]);
        let (none, p) = page_of(&states, &Query { page: 99, ..Query::default() });
        assert!(none.is_empty() && p.matched == 250);

        // The page links to the others with the same query, as plain links.
        let query = Query { q: "svc".into(), page: 1, ..Query::default() };
        let (_, paging) = page_of(&states, &query);
        let html = pager(&paging).into_string();
        assert!(html.contains("101–200 of 250"), "{html}");
        assert!(
            html.contains(r#"href="/?q=svc" rel="prev""#)
                && html.contains(r#"href="/?q=svc&amp;page=2" rel="next""#),
            "{html}"
        );
        let parsed = Query::parse(|k| match k {
            "q" => Some("svc".into()),
            "page" => Some("1".into()),
            "sort" => Some("name".into()),
            _ => None,
        });
        assert_eq!(parsed, Query { q: "svc".into(), page: 1, sort: Sort::Name, phase: String::new() });
    }
}
