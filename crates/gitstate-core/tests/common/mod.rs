//! Calls on a [`GitSource`] from a test thread: its async `ExpectedState` methods, run to
//! completion (the blocking ones are the source's own business).
#![allow(dead_code)]

use futures::executor::block_on;
use gitstate_core::git::GitSource;
use gitstate_core::{CommitId, Expected, ExpectedError, ExpectedState, Relation, ReportedCommit};

/// `resolve`, `list` and `relate`, waited for.
pub trait Now {
    fn resolve_now(&self, refs: &[String]) -> Result<Vec<Result<Expected, ExpectedError>>, ExpectedError>;
    fn list_now(&self, prefix: &str) -> Result<Vec<Expected>, ExpectedError>;
    fn relate_now(
        &self,
        expected: &CommitId,
        reported: &[ReportedCommit],
    ) -> Result<Vec<Relation>, ExpectedError>;
    /// `relate_commits` then `describe`: the subjects of the pending and unexpected commits.
    fn subjects_now(
        &self,
        expected: &CommitId,
        reported: &ReportedCommit,
    ) -> Option<(Vec<String>, Vec<String>)>;
}

impl Now for GitSource {
    fn resolve_now(&self, refs: &[String]) -> Result<Vec<Result<Expected, ExpectedError>>, ExpectedError> {
        block_on(self.resolve(refs))
    }
    fn list_now(&self, prefix: &str) -> Result<Vec<Expected>, ExpectedError> {
        block_on(self.list(prefix))
    }
    fn relate_now(
        &self,
        expected: &CommitId,
        reported: &[ReportedCommit],
    ) -> Result<Vec<Relation>, ExpectedError> {
        block_on(self.relate(expected, reported))
    }
    fn subjects_now(
        &self,
        expected: &CommitId,
        reported: &ReportedCommit,
    ) -> Option<(Vec<String>, Vec<String>)> {
        let rel = block_on(self.relate_commits(expected, std::slice::from_ref(reported), 10)).ok()?.pop()?;
        let (pending, unexpected) = (rel.pending?, rel.unexpected?);
        let all: Vec<CommitId> = pending.iter().chain(&unexpected).copied().collect();
        let infos = block_on(self.describe(&all)).ok()?;
        let subject = |c: &CommitId| infos.iter().find(|i| i.sha == *c).map(|i| i.subject.clone());
        Some((
            pending.iter().map(subject).collect::<Option<_>>()?,
            unexpected.iter().map(subject).collect::<Option<_>>()?,
        ))
    }
}

/// Runs `f` on a thread of its own and returns what it returns, failing the test if it
/// has not returned within `limit`: a fix taken out makes such a test fail, not hang.
pub fn within<T: Send + 'static>(limit: std::time::Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit).unwrap_or_else(|_| panic!("did not return within {limit:?}"))
}
