//! [`Prefetched`]: an expected-state source that answers `resolve` from a listing already
//! made (a `[[discover]]` prefix listed once per pass), so that a discovered ref is read
//! once, not twice.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use gitstate_core::{
    CommitId, CommitInfo, Expected, ExpectedError, ExpectedState, Related, Relation, ReportedCommit,
};

/// Answers `resolve` from what a `[[discover]]` listing already returned, so a discovered
/// ref is read once per pass; everything else goes to the inner source.
pub struct Prefetched {
    inner: Arc<dyn ExpectedState>,
    known: HashMap<String, Expected>,
}

impl Prefetched {
    /// Wraps `inner` with the commits already listed.
    pub fn new(inner: Arc<dyn ExpectedState>, listed: &[Expected]) -> Self {
        let known = listed.iter().map(|e| (e.reference.clone(), e.clone())).collect();
        Self { inner, known }
    }
}

#[async_trait]
impl ExpectedState for Prefetched {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn resolve(&self, refs: &[String]) -> Result<Vec<Result<Expected, ExpectedError>>, ExpectedError> {
        let missing: Vec<String> = refs.iter().filter(|r| !self.known.contains_key(*r)).cloned().collect();
        let mut fetched =
            if missing.is_empty() { Vec::new() } else { self.inner.resolve(&missing).await? }.into_iter();
        Ok(refs
            .iter()
            .map(|r| match self.known.get(r) {
                Some(e) => Ok(e.clone()),
                None => fetched.next().unwrap_or_else(|| {
                    Err(ExpectedError::RefNotFound { reference: r.clone(), repo: "?".into() })
                }),
            })
            .collect())
    }

    async fn relate(
        &self,
        expected: &CommitId,
        reported: &[ReportedCommit],
    ) -> Result<Vec<Relation>, ExpectedError> {
        self.inner.relate(expected, reported).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Expected>, ExpectedError> {
        self.inner.list(prefix).await
    }

    async fn moved_at(&self, expected: &[Expected]) -> Vec<Option<jiff::Timestamp>> {
        self.inner.moved_at(expected).await
    }

    async fn relate_commits(
        &self,
        expected: &CommitId,
        reported: &[ReportedCommit],
        max: usize,
    ) -> Result<Vec<Related>, ExpectedError> {
        self.inner.relate_commits(expected, reported, max).await
    }

    async fn describe(&self, commits: &[CommitId]) -> Result<Vec<CommitInfo>, ExpectedError> {
        self.inner.describe(commits).await
    }

    async fn ref_history(&self, reference: &str) -> Vec<(CommitId, jiff::Timestamp)> {
        self.inner.ref_history(reference).await
    }

    async fn rev_parse(&self, rev: &str) -> Result<CommitId, ExpectedError> {
        self.inner.rev_parse(rev).await
    }

    fn pushed(&self, refs: &[String]) {
        self.inner.pushed(refs)
    }

    async fn prefetch(&self) {
        self.inner.prefetch().await
    }

    async fn move_ref(
        &self,
        reference: &str,
        from: &CommitId,
        to: &CommitId,
        message: &str,
    ) -> Result<(), ExpectedError> {
        self.inner.move_ref(reference, from, to, message).await
    }

    async fn signed_commits(
        &self,
        from: Option<&CommitId>,
        to: &CommitId,
        max: usize,
    ) -> Result<Vec<gitstate_core::SignedCommit>, ExpectedError> {
        self.inner.signed_commits(from, to, max).await
    }
}
