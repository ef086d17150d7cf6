//! Git as the expected state: [`GitSource`] implements [`crate::ExpectedState`] over a
//! [`LocalRepo`] (a path) or a [`RemoteRepo`] (a URL, optionally mirrored). gix is
//! blocking; every call runs on a blocking thread pool, never on the async executor.
//!
//! Modules use only those below them: `remote` (a URL) over `transport` (one connection,
//! bounded in time) and `local` (a path, and a remote's mirror); `local` over `refscan`
//! and `reflog` (refs read from files); all over `names` (ref names, object ids) and `env`
//! (the environment of a spawned `git`).

mod env;
mod local;
mod names;
mod reflog;
mod refscan;
mod remote;
mod transport;
mod update;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use local::LocalRepo;
pub use remote::{RemoteRepo, is_remote_url};

use crate::commit::{CommitId, ReportedCommit};
use crate::error::ExpectedError;
use crate::observation::{CommitInfo, Related, Relation};
use crate::plugin::{Expected, ExpectedState};

pub(crate) use crate::error::chain;

#[derive(Debug)]
enum Repo {
    Local(LocalRepo),
    Remote(RemoteRepo),
}

/// Git repositories as the source of expected commits. Cheap to clone.
#[derive(Debug, Clone)]
pub struct GitSource {
    repo: Arc<Repo>,
    /// Git work runs on the calling thread, not the blocking pool ([`Self::on_this_thread`]).
    inline: bool,
}

impl GitSource {
    /// A repository on this machine.
    pub fn local(path: impl AsRef<Path>) -> Result<Self, ExpectedError> {
        Ok(Self { repo: Arc::new(Repo::Local(LocalRepo::open(path)?)), inline: false })
    }

    /// Reads a local repository on the calling thread instead of the blocking pool, for a
    /// caller that waits on one future at a time with nothing else to run (a one-shot
    /// command under `futures::executor::block_on`): there a pool thread adds only its own
    /// start, a clone(2) and its first page faults, some 0.3 ms of a 3 ms `gitstate
    /// expected`. Never in an async runtime serving other tasks. A remote still runs on the
    /// pool, under its timeout.
    pub fn on_this_thread(mut self) -> Self {
        self.inline = true;
        self
    }

    /// A remote repository read with ls-refs only (differing commits are `drifted`).
    pub fn remote(url: &str) -> Result<Self, ExpectedError> {
        Ok(Self::from_remote(RemoteRepo::new(url)?))
    }

    /// A remote repository set up beyond the defaults (an ssh command, a timeout).
    pub fn from_remote(remote: RemoteRepo) -> Self {
        Self { repo: Arc::new(Repo::Remote(remote)), inline: false }
    }

    /// A remote repository mirrored into the bare repository at `dir`.
    pub fn mirrored(url: &str, dir: &Path) -> Result<Self, ExpectedError> {
        Ok(Self::from_remote(RemoteRepo::mirrored(url, dir)?))
    }

    /// Where commits and comparisons can be read on github.com, gitlab.com or codeberg.org:
    /// derived from a remote's URL, or from a local repository's `origin` remote.
    pub fn links(&self) -> crate::links::Links {
        let url = match &*self.repo {
            Repo::Local(r) => r.origin_url(),
            Repo::Remote(r) => Some(r.endpoint.url.clone()),
        };
        url.map(|u| crate::links::Links::derive(&u)).unwrap_or_default()
    }

    /// Resolves refs, blocking the calling thread.
    fn resolve_blocking(
        &self,
        refs: &[String],
    ) -> Result<Vec<Result<Expected, ExpectedError>>, ExpectedError> {
        match &*self.repo {
            Repo::Local(r) => Ok(r.resolve(refs)),
            Repo::Remote(r) => r.resolve(refs),
        }
    }

    /// Lists refs under a prefix, blocking the calling thread.
    fn list_blocking(&self, prefix: &str) -> Result<Vec<Expected>, ExpectedError> {
        match &*self.repo {
            Repo::Local(r) => r.list(prefix),
            Repo::Remote(r) => r.list(prefix),
        }
    }

    /// Relates reported commits and names the commits at stake, blocking the calling thread.
    fn relate_blocking(
        &self,
        expected: &CommitId,
        reported: &[ReportedCommit],
        max: usize,
    ) -> Result<Vec<Related>, ExpectedError> {
        match &*self.repo {
            Repo::Local(r) => r.relate_commits(expected, reported, max),
            Repo::Remote(r) => r.relate_commits(expected, reported, max),
        }
    }

    /// Describes commits, blocking the calling thread.
    fn describe_blocking(&self, commits: &[CommitId]) -> Result<Vec<CommitInfo>, ExpectedError> {
        match &*self.repo {
            Repo::Local(r) => r.describe(commits),
            Repo::Remote(r) => r.describe(commits),
        }
    }
}

impl GitSource {
    /// Runs `job` on the blocking pool. For a remote, the caller waits no longer than the
    /// remote's timeout and a margin, whatever the job does (its own deadline normally
    /// ends it first; this is the bound of last resort, for a transport that has none).
    async fn unblock<T: Send + 'static>(
        &self,
        job: impl FnOnce(&Self) -> Result<T, ExpectedError> + Send + 'static,
    ) -> Result<T, ExpectedError> {
        if self.inline && matches!(*self.repo, Repo::Local(_)) {
            return job(self);
        }
        let this = self.clone();
        let task = blocking::unblock(move || job(&this));
        let Repo::Remote(remote) = &*self.repo else { return task.await };
        let limit = remote.timeout() + Duration::from_secs(10);
        match futures::future::select(task, futures_timer::Delay::new(limit)).await {
            futures::future::Either::Left((r, _)) => r,
            futures::future::Either::Right(_) => Err(ExpectedError::Remote {
                url: remote.redacted_url().to_owned(),
                message: format!("timed out: no answer within {}", humantime::format_duration(limit)),
            }),
        }
    }
}

#[async_trait]
impl ExpectedState for GitSource {
    fn name(&self) -> &str {
        "git"
    }

    async fn resolve(&self, refs: &[String]) -> Result<Vec<Result<Expected, ExpectedError>>, ExpectedError> {
        let refs = refs.to_vec();
        self.unblock(move |this| this.resolve_blocking(&refs)).await
    }

    async fn relate(
        &self,
        expected: &CommitId,
        reported: &[ReportedCommit],
    ) -> Result<Vec<Relation>, ExpectedError> {
        let rel = self.relate_commits(expected, reported, 0).await?;
        Ok(rel.into_iter().map(|r| r.relation).collect())
    }

    async fn relate_commits(
        &self,
        expected: &CommitId,
        reported: &[ReportedCommit],
        max: usize,
    ) -> Result<Vec<Related>, ExpectedError> {
        let (expected, reported) = (*expected, reported.to_vec());
        self.unblock(move |this| this.relate_blocking(&expected, &reported, max)).await
    }

    async fn describe(&self, commits: &[CommitId]) -> Result<Vec<CommitInfo>, ExpectedError> {
        let commits = commits.to_vec();
        self.unblock(move |this| this.describe_blocking(&commits)).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Expected>, ExpectedError> {
        let prefix = prefix.to_owned();
        self.unblock(move |this| this.list_blocking(&prefix)).await
    }

    /// A local repository's reflogs, all read in one job on the blocking pool (a first pass
    /// over 10,000 environments asks for 10,000: one job each grew the pool to a hundred
    /// threads, which it keeps); a remote's are not known (a mirror's log holds fetch
    /// times, not when the ref moved).
    async fn moved_at(&self, expected: &[Expected]) -> Vec<Option<jiff::Timestamp>> {
        if !matches!(&*self.repo, Repo::Local(_)) || expected.is_empty() {
            return vec![None; expected.len()];
        }
        let asked = expected.to_vec();
        let job = move |this: &Self| match &*this.repo {
            Repo::Local(r) => Ok(asked.iter().map(|e| r.moved_at(e)).collect()),
            Repo::Remote(_) => Ok(vec![None; asked.len()]),
        };
        self.unblock(job).await.unwrap_or_else(|_| vec![None; expected.len()])
    }

    /// A local repository's reflog of `reference` (its last MiB); a remote's is not known.
    async fn ref_history(&self, reference: &str) -> Vec<(CommitId, jiff::Timestamp)> {
        if !matches!(&*self.repo, Repo::Local(_)) {
            return Vec::new();
        }
        let reference = reference.to_owned();
        let job = move |this: &Self| match &*this.repo {
            Repo::Local(r) => Ok(r.ref_history(&reference)),
            Repo::Remote(_) => Ok(Vec::new()),
        };
        self.unblock(job).await.unwrap_or_default()
    }

    /// A local repository (or a remote's mirror): the commits a move brings, signed.
    async fn signed_commits(
        &self,
        from: Option<&CommitId>,
        to: &CommitId,
        max: usize,
    ) -> Result<Vec<crate::signed::SignedCommit>, ExpectedError> {
        let (from, to) = (from.copied(), *to);
        self.unblock(move |this| match &*this.repo {
            Repo::Local(r) => r.signed_commits(from.as_ref(), &to, max),
            Repo::Remote(r) => r.signed_commits(from.as_ref(), &to, max),
        })
        .await
    }

    /// A remote forgets its last listing.
    fn pushed(&self, _refs: &[String]) {
        if let Repo::Remote(r) = &*self.repo {
            r.forget_listing();
        }
    }

    /// A mirrored remote fetches into its mirror at once (the pass that follows finds the
    /// pushed commits there, or waits for this fetch rather than making its own).
    async fn prefetch(&self) {
        let Repo::Remote(r) = &*self.repo else { return };
        if r.mirror_dir().is_none() {
            return;
        }
        if let Err(e) = self
            .unblock(move |this| match &*this.repo {
                Repo::Remote(r) => r.prefetch(),
                Repo::Local(_) => Ok(()),
            })
            .await
        {
            tracing::warn!(error = %e, "fetching into the mirror after a push failed; the pass fetches again");
        }
    }

    /// A local repository (or a remote's mirror): what `git rev-parse` takes.
    async fn rev_parse(&self, rev: &str) -> Result<CommitId, ExpectedError> {
        let rev = rev.to_owned();
        self.unblock(move |this| match &*this.repo {
            Repo::Local(r) => r.rev_parse(&rev),
            Repo::Remote(r) => r.rev_parse(&rev),
        })
        .await
    }

    /// A local repository: `git update-ref --create-reflog` (compare-and-swap on `from`).
    /// A remote: `git push --force-with-lease` from its mirror (which must hold `to`; a
    /// remote read without a mirror cannot be moved).
    async fn move_ref(
        &self,
        reference: &str,
        from: &CommitId,
        to: &CommitId,
        message: &str,
    ) -> Result<(), ExpectedError> {
        let (reference, from, to, message) = (reference.to_owned(), *from, *to, message.to_owned());
        let job = move |this: &Self| match &*this.repo {
            Repo::Local(r) => update::update_local(r.path(), &reference, &from, &to, &message),
            Repo::Remote(r) => {
                let Some(mirror) = r.mirror_dir() else {
                    return Err(ExpectedError::Refused {
                        reference,
                        message: "a remote read without a mirror cannot be moved".into(),
                    });
                };
                // The mirror holds the commit to push once it has fetched it.
                r.ensure_commit(&to)?;
                let e = &r.endpoint;
                let pushed =
                    update::push(&mirror, &e.url, &e.shown, e.ssh_command.as_deref(), &reference, &from, &to);
                // What was listed before the push is not what the remote says now.
                r.forget_listing();
                pushed
            }
        };
        // Not under the remote's listing timeout: a push has its own bound.
        let this = self.clone();
        blocking::unblock(move || job(&this)).await
    }
}
