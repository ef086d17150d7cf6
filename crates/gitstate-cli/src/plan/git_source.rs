//! The Git source a plan reads: the configured repository opened (local path, remote URL,
//! or mirrored remote, with git's ssh command) and where its commits can be read on a
//! forge.

use anyhow::Context;
use gitstate_core::git::{GitSource, RemoteRepo};

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
