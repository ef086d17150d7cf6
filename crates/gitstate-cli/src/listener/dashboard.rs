//! [`Dashboard`]: what `watch` serves at `/` — the records, the last pass's report of each
//! environment and the latest events, read from the runtime's view and rendered by
//! `output::html` — and the updates it pushes at `/events` (server-sent events: the
//! page's `<main>` after every change the view announces).

use std::sync::Arc;

use futures::StreamExt as _;
use futures::stream::BoxStream;
use gitstate_core::Links;

use std::collections::BTreeMap;

use gitstate_core::{EnvName, EnvState, Event, ExpectedState};
use gitstate_runtime::{dora, fleet};
use maud::{Markup, PreEscaped, html};

use crate::output::fleet as parts;
use crate::output::html::{self, View};
use crate::serve::{Response, StatusCode};

/// How many adjacent pairs the page compares, and how many commits of each it lists.
const PAIRS: usize = 20;
const COMMITS: usize = 10;

/// The page, rendered from the runtime's view.
pub struct Dashboard {
    view: Arc<gitstate_runtime::View>,
    links: Links,
    /// The repository, for the fleet's parts that read history (where, promotions, DORA).
    source: Option<Arc<dyn ExpectedState>>,
    /// The environments in promotion order (the configuration's), for the promotions.
    order: Vec<EnvName>,
    /// The fleet's parts that read the whole event log and history (promotions, DORA), as
    /// last made, with the view's version and the time then: a page is served
    /// them as they are and, when they are older than [`FLEET_EVERY`] and the view has
    /// changed since, they are remade in the background for the next one. Nobody looking,
    /// nothing remade.
    parts: tokio::sync::Mutex<Option<(u64, std::time::Instant, Parts)>>,
    /// Set while a remake runs.
    remaking: std::sync::atomic::AtomicBool,
}

/// The promotions and DORA (the matrix is the page's environments', made with the page).
type Parts = Markup;

/// How often the fleet's parts are remade, at most, while the view changes.
pub const FLEET_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

impl Dashboard {
    /// A dashboard over the loop's `view`, linking commits with `links`.
    pub fn new(view: Arc<gitstate_runtime::View>, links: Links) -> Self {
        Self {
            view,
            links,
            source: None,
            order: Vec::new(),
            parts: Default::default(),
            remaking: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Shows the fleet's parts that read `source`'s history — the "where is…" box, what
    /// promoting each environment of `order` to the next would bring, DORA's four keys.
    pub fn with_history(mut self, source: Arc<dyn ExpectedState>, order: Vec<EnvName>) -> Self {
        (self.source, self.order) = (Some(source), order);
        self
    }

    /// Answers the dashboard's paths: `/` (with `?where=REV`), `/where?rev=REV` (the
    /// box's answer alone, for the page's script) and `/events`; `None` for any other.
    /// The pages are rendered as their body is sent (they read the repository). `token`:
    /// the user may act, and the page's forms carry this CSRF token (SPEC §20).
    pub fn respond(
        self: &Arc<Self>,
        path: &str,
        query: Option<&str>,
        token: Option<String>,
    ) -> Option<Response> {
        let param = |name: &str| {
            url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        let me = self.clone();
        let query = html::Query::parse(param);
        let (content_type, body): (&str, BoxStream<'static, String>) = match path {
            "/" => {
                let rev = param("where");
                me.remake_if_stale();
                (
                    "text/html; charset=utf-8",
                    futures::stream::once(async move { me.page_with(rev, &query, token).await }).boxed(),
                )
            }
            "/where" => {
                let rev = param("rev").unwrap_or_default();
                let answer = async move { me.where_fragment(&rev).await };
                ("text/html; charset=utf-8", futures::stream::once(answer).boxed())
            }
            "/events" => ("text/event-stream", me.events(query, token)),
            _ => return None,
        };
        let mut r = Response::new(StatusCode::OK, content_type, "");
        r.body = crate::serve::Body::Stream(body);
        if content_type.starts_with("text/html") {
            r.headers.push(("content-security-policy", html::CSP.clone()));
        }
        r.headers.push(("cache-control", "no-store".into()));
        Some(r)
    }

    /// The whole page; `rev` is the "where is…" box's question (`GET /?where=REV`), `query`
    /// which environments it lists (a page of them, SPEC §19).
    pub async fn page_with(&self, rev: Option<String>, query: &html::Query, token: Option<String>) -> String {
        let (mut view, shown) = self.view(query);
        view.actions = token;
        view.fleet = Some(self.fleet(rev, &shown).await);
        html::page(&view)
    }

    /// The answer to "where is `rev`?", as the box shows it (`GET /where?rev=REV`).
    pub async fn where_fragment(&self, rev: &str) -> String {
        let store = self.view.store();
        match store.events_since(jiff::Timestamp::MIN).await {
            Ok(events) => self.where_answer(rev, &store.environments(), &events).await.into_string(),
            Err(e) => parts::where_answer(rev, Err(&e.to_string())).into_string(),
        }
    }

    async fn where_answer(
        &self,
        rev: &str,
        states: &BTreeMap<EnvName, EnvState>,
        events: &[Event],
    ) -> Markup {
        let Some(source) = &self.source else {
            return parts::where_answer(rev, Err("this dashboard has no repository to read"));
        };
        match source.rev_parse(rev).await {
            Ok(id) => {
                parts::where_answer(rev, Ok(&fleet::where_is(source.as_ref(), states, events, id).await))
            }
            Err(e) => parts::where_answer(rev, Err(&e.to_string())),
        }
    }

    /// The fleet's parts with the "where is…" box answering `rev`: the matrix of the page's
    /// environments (`shown`: a page, never 50,000 rows), the promotions and DORA as last
    /// made (made now the first time), the box's answer read now.
    async fn fleet(&self, rev: Option<String>, shown: &BTreeMap<EnvName, EnvState>) -> Markup {
        let matrix = parts::matrix(&fleet::fleet(shown), &self.links);
        let Some(_) = &self.source else { return matrix };
        let made = self.parts.lock().await.as_ref().map(|(_, _, m)| m.clone());
        let rest = match made {
            Some(m) => m,
            None => self.remake_parts().await,
        };
        let answer = match rev.as_deref().filter(|r| !r.is_empty()) {
            Some(r) => Some(html! { (PreEscaped(self.where_fragment(r).await)) }),
            None => None,
        };
        html! { (matrix) (parts::where_box(rev.as_deref(), answer)) (rest) }
    }

    /// Makes the fleet's parts once the first full pass is done, so that the first page
    /// need not wait for them either: at 50,000 environments they read an event log of
    /// that many lines and more, too much to do while a person waits.
    pub async fn warm(self: Arc<Self>) {
        let mut rx = self.view.subscribe();
        while self.view.with_reports(|r| r.is_empty()) {
            if rx.changed().await.is_err() {
                return;
            }
        }
        self.remake_parts().await;
    }

    /// Remakes the fleet's parts in the background when they are older than
    /// [`FLEET_EVERY`] and the view changed since (one remake at a time).
    fn remake_if_stale(self: &Arc<Self>) {
        use std::sync::atomic::Ordering;
        let version = *self.view.subscribe().borrow();
        let stale = match self.parts.try_lock() {
            Ok(p) => p.as_ref().is_some_and(|(v, at, _)| *v != version && at.elapsed() >= FLEET_EVERY),
            Err(_) => false,
        };
        if stale && !self.remaking.swap(true, Ordering::SeqCst) {
            let me = self.clone();
            tokio::spawn(async move {
                me.remake_parts().await;
                me.remaking.store(false, Ordering::SeqCst);
            });
        }
    }

    /// The promotions and DORA, over one read of the store and its event log.
    async fn remake_parts(&self) -> Parts {
        let version = *self.view.subscribe().borrow();
        let made = self.parts_now().await;
        *self.parts.lock().await = Some((version, std::time::Instant::now(), made.clone()));
        made
    }

    async fn parts_now(&self) -> Parts {
        let store = self.view.store();
        let Some(source) = &self.source else { return html! {} };
        let states = store.environments();
        let events = match store.events_since(jiff::Timestamp::MIN).await {
            Ok(events) => events,
            Err(e) => return html! { p.bad { "the event log could not be read: " (e.to_string()) } },
        };
        let mut order = self.order.clone();
        order.extend(states.keys().filter(|n| !self.order.contains(n)).cloned());
        let pairs =
            fleet::compare_adjacent(source.as_ref(), &states, &order, PAIRS, COMMITS, &self.links).await;
        let until = jiff::Timestamp::now();
        let since = until.checked_sub(jiff::SignedDuration::from_hours(30 * 24)).unwrap_or(until);
        let subjects = dora::subjects(&states, &events, &[]).unwrap_or_default();
        let keys = dora::report(source.as_ref(), &events, &subjects, since, until).await;
        html! { (parts::compare(&pairs)) (parts::dora(&keys)) }
    }

    /// One page of the fleet, as `query` asks: only its environments' records and
    /// reports are copied, whatever the fleet's size.
    fn view(&self, query: &html::Query) -> (View, BTreeMap<EnvName, EnvState>) {
        let store = self.view.store();
        let events = store.recent_events(500);
        let overrides = store.overrides().unwrap_or_default();
        let states = store.environments();
        let (page, paging) = self.view.with_reports(|reports| html::select(&states, reports, query));
        let shown = gitstate_runtime::store::among(&states, &page);
        let mut view = View::of_states(&shown, events, self.links.clone(), &overrides, &self.view.windows());
        self.view.with_reports(|reports| {
            for name in &page {
                if let Some(report) = reports.get(name) {
                    view.environments.entry(name.clone()).or_default().1 = Some(report.clone());
                }
            }
        });
        view.paging = Some(paging);
        view.live = true;
        (view, shown)
    }

    /// `/events`: the page's `<main>` at once, then after every change, as server-sent
    /// events named `page`; the client reconnects after a second when the connection ends.
    pub fn events(self: Arc<Self>, query: html::Query, token: Option<String>) -> BoxStream<'static, String> {
        let mut rx = self.view.subscribe();
        rx.mark_changed();
        let head = futures::stream::once(async { "retry: 1000\n\n".to_owned() });
        let updates =
            futures::stream::unfold((rx, self, query, token), |(mut rx, me, query, token)| async move {
                rx.changed().await.ok()?;
                let mut view = me.view(&query).0;
                view.actions = token.clone();
                let fragment = html::main(&view).into_string();
                Some((sse("page", &fragment), (rx, me, query, token)))
            });
        head.chain(updates).boxed()
    }
}

/// One server-sent event: its name, then each line of `data` as a `data:` field.
fn sse(event: &str, data: &str) -> String {
    let mut out = format!("event: {event}\n");
    for line in data.split('\n') {
        out.push_str("data: ");
        out.push_str(line.trim_end_matches('\r'));
        out.push('\n');
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_frame_every_line_of_their_data() {
        assert_eq!(
            sse("page", "<main>\n<p>x</p></main>"),
            "event: page\ndata: <main>\ndata: <p>x</p></main>\n\n"
        );
    }
}
