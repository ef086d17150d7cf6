//! [`Dashboard`]: what `watch` serves at `/` — the state, the last pass's report of each
//! environment and the latest events, rendered by `output::html` — and the updates it
//! pushes at `/events` (server-sent events: the page's `<main>` after every change).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt as _;
use futures::stream::BoxStream;
use gitstate_core::{EnvName, EnvironmentReport, Links};
use tokio::sync::watch;

use crate::output::html::{self, View};
use crate::state::Store;

/// The page's sources, and a version bumped on every change.
pub struct Dashboard {
    store: Arc<dyn Store>,
    links: Links,
    reports: Mutex<BTreeMap<EnvName, EnvironmentReport>>,
    windows: Mutex<Arc<crate::plan::Windows>>,
    version: watch::Sender<u64>,
}

impl Dashboard {
    /// A dashboard over `store`, linking commits with `links`.
    pub fn new(store: Arc<dyn Store>, links: Links) -> Self {
        Self {
            store,
            links,
            reports: Mutex::default(),
            windows: Mutex::default(),
            version: watch::Sender::new(0),
        }
    }

    fn reports(&self) -> std::sync::MutexGuard<'_, BTreeMap<EnvName, EnvironmentReport>> {
        self.reports.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A pass's reports (and so its state and events) are in: the page changes.
    pub fn record(&self, reports: Vec<EnvironmentReport>) {
        {
            let mut known = self.reports();
            for r in reports {
                match known.get_mut(&r.name) {
                    Some(kept) => *kept = r,
                    None => {
                        known.insert(r.name.clone(), r);
                    }
                }
            }
        }
        self.changed();
    }

    /// The freeze windows of each environment (for `/status`).
    pub fn set_windows(&self, windows: Arc<crate::plan::Windows>) {
        *self.windows.lock().unwrap_or_else(|p| p.into_inner()) = windows;
    }

    /// The freeze windows of each environment (those without any are absent), shared.
    pub fn windows(&self) -> Arc<crate::plan::Windows> {
        self.windows.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Environments gone from the configuration leave the page.
    pub fn forget(&self, names: &[EnvName]) {
        self.reports().retain(|n, _| !names.contains(n));
        self.changed();
    }

    /// Something the page shows changed (a remediation ended, say).
    pub fn changed(&self) {
        self.version.send_modify(|v| *v += 1);
    }

    fn view(&self) -> View {
        let events = self.store.recent_events(500);
        let overrides = self.store.overrides().unwrap_or_default();
        let mut view = View::of_states(
            &self.store.environments(),
            events,
            self.links.clone(),
            &overrides,
            &self.windows(),
        );
        for (name, report) in self.reports().iter() {
            view.environments.entry(name.clone()).or_default().1 = Some(report.clone());
        }
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
        let mut rx = self.version.subscribe();
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
