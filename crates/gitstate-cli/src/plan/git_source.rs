//! The Git source a plan reads: the configured repository opened (local path, remote URL,
//! or mirrored remote, with git's ssh command), where its commits can be read on a forge,
//! and [`Prefetched`], which answers from a `[[discover]]` listing already made.

use std::collections::HashMap;

use anyhow::Context;
use async_trait::async_trait;
use gitstate_core::git::{GitSource, RemoteRepo};
use gitstate_core::{CommitId, Expected, ExpectedError, ExpectedState, Relation, ReportedCommit};

use crate::config::{Config, RepoLocation};

/// Opens the configured repository (local path, remote URL, or mirrored remote).
pub fn source(config: &Config) -> anyhow::Result<GitSource> {
    match &config.source.repo {
        RepoLocation::Local(p) => {
            GitSource::local(p).with_context(|| format!("{}: source.repo", config.path.display()))
        }
        RepoLocation::Remote(url) => {
            let remote = if config.source.mirror {
                let dir = config.state_dir.join("mirror.git");
                std::fs::create_dir_all(&config.state_dir)
                    .with_context(|| format!("creating the state dir {}", config.state_dir.display()))?;
                RemoteRepo::mirrored(url, &dir)?
            } else {
                RemoteRepo::new(url)?
            };
            let remote = remote.with_timeout(config.source.timeout);
            Ok(GitSource::from_remote(match ssh_command() {
                Some(command) => remote.with_ssh_command(command),
                None => remote,
            }))
        }
    }
}

/// The ssh program for `ssh://` remotes, as git finds it: `GIT_SSH_COMMAND` (a shell
/// command), else `GIT_SSH` (a program), else `ssh`.
fn ssh_command() -> Option<String> {
    let set = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    set("GIT_SSH_COMMAND").or_else(|| set("GIT_SSH").map(|program| shell_quote(&program)))
}

/// `s` as one shell word.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Where commits and comparisons can be read: `[source] commit_url` / `compare_url`, else
/// derived from the repository's github.com / gitlab.com / codeberg.org remote.
pub fn links(config: &Config, source: &GitSource) -> gitstate_core::Links {
    let derived = source.links();
    let set = &config.source.links;
    gitstate_core::Links {
        commit: set.commit.clone().or(derived.commit),
        compare: set.compare.clone().or(derived.compare),
    }
}

/// Answers `resolve` from what a `[[discover]]` listing already returned, so a discovered
/// ref is read once per pass; everything else goes to the inner source.
pub struct Prefetched {
    inner: GitSource,
    known: HashMap<String, Expected>,
}

impl Prefetched {
    /// Wraps `inner` with the commits already listed.
    pub fn new(inner: GitSource, listed: &[Expected]) -> Self {
        let known = listed.iter().map(|e| (e.reference.clone(), e.clone())).collect();
        Self { inner, known }
    }
}

#[async_trait]
impl ExpectedState for Prefetched {
    fn name(&self) -> &str {
        "git"
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
    ) -> Result<Vec<gitstate_core::Related>, ExpectedError> {
        self.inner.relate_commits(expected, reported, max).await
    }

    async fn describe(&self, commits: &[CommitId]) -> Result<Vec<gitstate_core::CommitInfo>, ExpectedError> {
        self.inner.describe(commits).await
    }
}
