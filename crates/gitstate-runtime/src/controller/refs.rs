//! What a ref poll reads: the environments anew (a discovery refresh), what operators
//! said, and each environment's ref — returning the environments to pass at once.

use std::collections::BTreeSet;
use std::sync::Arc;

use gitstate_core::{CommitId, EnvName};

use super::driver::{Loop, lock};
use crate::environments::Listed;

impl Loop {
    /// Lists the environments again (when they can change); on a new set, the specs and
    /// windows are replaced. Returns every ref the listing read, with its commit.
    pub(super) async fn refresh_environments(&self) -> Arc<Listed> {
        let Some(discovery) = &self.discovery else { return Arc::default() };
        match discovery.refresh().await {
            Ok(refreshed) => {
                if let Some(envs) = refreshed.environments {
                    self.set_environments(envs);
                }
                refreshed.listed
            }
            Err(e) => {
                tracing::warn!(error = %gitstate_core::error_chain(&*e), "discover failed; keeping the known environments");
                Arc::default()
            }
        }
    }

    /// Reads what operators said again; returns the environments whose overrides changed
    /// (a suspension, a resume, a retry), so that they are passed at once.
    pub(super) fn poll_overrides(&self) -> Vec<EnvName> {
        let read = match self.store.overrides() {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(error = %e, "overrides not read; keeping the last ones");
                return Vec::new();
            }
        };
        let mut known = lock(&self.overrides);
        if *known == read {
            return Vec::new();
        }
        let names: BTreeSet<&EnvName> = known.environments.keys().chain(read.environments.keys()).collect();
        let changed = names
            .into_iter()
            .filter(|n| known.environments.get(*n) != read.environments.get(*n))
            .cloned()
            .collect();
        *known = read;
        changed
    }

    /// Resolves every environment's ref; returns those whose commit changed. The refs in
    /// `listed` (a listing just made) are not looked up again: at 10,000 discovered
    /// environments that would be 10,000 loose-ref lookups a second. When the listing is
    /// the one the last poll read (the same `Arc`), its refs are not even compared again:
    /// nothing under them moved.
    pub(super) async fn poll_refs(&self, listed: &Arc<Listed>) -> Vec<EnvName> {
        let (seen, previous) = {
            let mut last = lock(&self.last_listed);
            let seen = last.as_ref().is_some_and(|l| Arc::ptr_eq(l, listed));
            let previous = last.replace(listed.clone());
            (seen, previous)
        };
        // A new listing after another: only its refs that moved (or appeared) are news
        // (one ref moving among 50,000 must not cost 50,000 copies).
        let moved: Option<std::collections::HashSet<&str>> =
            previous.as_ref().filter(|_| !seen).map(|prev| {
                listed.iter().filter(|(r, c)| prev.get(*r) != Some(*c)).map(|(r, _)| r.as_str()).collect()
            });
        let news = |reference: &str| match &moved {
            Some(moved) => moved.contains(reference),
            None => !seen,
        };
        // After a push webhook that named its refs, only the environments on those refs.
        let pushed: Vec<Option<String>> = std::mem::take(&mut *lock(&self.pushed));
        let only: Option<Vec<String>> = (!pushed.is_empty() && pushed.iter().all(Option::is_some))
            .then(|| pushed.into_iter().flatten().collect());
        let on_pushed = |reference: &str| {
            only.as_ref().is_none_or(|refs| {
                refs.iter().any(|r| {
                    r == reference
                        || r.strip_prefix("refs/heads/") == Some(reference)
                        || r.strip_prefix("refs/") == Some(reference)
                })
            })
        };
        // What to read of each environment's ref: its commit in a new listing (only the
        // refs that moved), or the ref itself. A listing not read anew (the same as the
        // last poll's: the source said nothing under it changed but the refs pushed) has
        // nothing new: the pushed refs are read one by one. A new listing is compared
        // whole, pushed or not (a ref that moved beside the pushed ones is not lost).
        // A poll of the same listing with nothing pushed (most polls) reads only the refs
        // the listing does not have, as the last new listing found them: 50,000 specs are
        // not gone through every second.
        let named = only.is_some();
        let mut known_now: Vec<(EnvName, String)> = Vec::new();
        let mut lookup: Vec<(EnvName, String)> = Vec::new();
        let cached = if seen && !named { lock(&self.unlisted).clone() } else { None };
        if let Some(unlisted) = cached {
            lookup = unlisted;
        } else {
            let mut unlisted = Vec::new();
            for s in lock(&self.specs).values() {
                let r = &s.reference;
                if !listed.contains_key(r) {
                    unlisted.push((s.name.clone(), r.clone()));
                    if on_pushed(r) {
                        lookup.push((s.name.clone(), r.clone()));
                    }
                } else if seen {
                    if named && on_pushed(r) {
                        lookup.push((s.name.clone(), r.clone()));
                    }
                } else if news(r) {
                    known_now.push((s.name.clone(), r.clone()));
                }
            }
            *lock(&self.unlisted) = Some(unlisted);
        }
        let mut found: Vec<(EnvName, CommitId)> =
            known_now.into_iter().map(|(name, r)| (name, listed[&r])).collect();
        if !lookup.is_empty() {
            let refs: Vec<String> = lookup.iter().map(|(_, r)| r.clone()).collect();
            match self.source.resolve(&refs).await {
                Ok(resolved) => found.extend(
                    lookup
                        .into_iter()
                        .zip(resolved)
                        .filter_map(|((name, _), r)| Some((name, r.ok()?.commit))),
                ),
                Err(e) => tracing::warn!(error = %e, "ref poll failed"),
            }
        }
        self.judge(&found, self.clock.now()).await;
        let mut known = lock(&self.refs);
        let mut changed = Vec::new();
        for (name, commit) in found {
            if known.insert(name.clone(), commit).as_ref() != Some(&commit) {
                changed.push(name);
            }
        }
        changed
    }
}
