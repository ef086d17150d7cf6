//! [`Dashboard`]: what `watch` serves at `/` — the records, the last pass's report of each
//! environment and the latest events, read from the runtime's view and rendered by
//! `output::html` — and the updates it pushes at `/events` (server-sent events: the
//! page's `<main>` after every change the view announces).

use std::sync::Arc;

use futures::StreamExt as _;
use futures::stream::BoxStream;
use gitstate_core::Links;

use crate::output::html::{self, View};

/// The page, rendered from the runtime's view.
pub struct Dashboard {
    view: Arc<gitstate_runtime::View>,
    links: Links,
}

impl Dashboard {
    /// A dashboard over the loop's `view`, linking commits with `links`.
    pub fn new(view: Arc<gitstate_runtime::View>, links: Links) -> Self {
        Self { view, links }
    }

    fn view(&self) -> View {
        let store = self.view.store();
        let events = store.recent_events(500);
        let overrides = store.overrides().unwrap_or_default();
        let mut view = View::of_states(
            &store.environments(),
            events,
            self.links.clone(),
            &overrides,
            &self.view.windows(),
        );
        self.view.with_reports(|reports| {
            for (name, report) in reports {
                view.environments.entry(name.clone()).or_default().1 = Some(report.clone());
            }
        });
        view.live = true;
        view
    }

    /// The whole page.
    pub fn page(&self) -> String {
        html::page(&self.view())
    }

    /// `/events`: the page's `<main>` at once, then after every change, as server-sent
    /// events named `page`; the client reconnects after a second when the connection ends.
    pub fn events(self: Arc<Self>) -> BoxStream<'static, String> {
        let mut rx = self.view.subscribe();
        rx.mark_changed();
        let head = futures::stream::once(async { "retry: 1000\n\n".to_owned() });
        let updates = futures::stream::unfold((rx, self), |(mut rx, me)| async move {
            rx.changed().await.ok()?;
            let fragment = html::main(&me.view()).into_string();
            Some((sse("page", &fragment), (rx, me)))
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
