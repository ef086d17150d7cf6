//! File-system notification of a local repository's refs (SPEC §19): a loose ref written
//! is a push of that ref — the ref poll it starts reads that ref alone, not every
//! environment's — and anything else (packed refs, reftable, a lost event) asks for a
//! whole listing.
//!
//! [`watch`] puts a watcher over a repository and feeds a [`Trigger`] and [`RefChanges`];
//! an [`Environments`](crate::Environments) implementation that lists refs (discovery)
//! asks [`RefChanges::only_moved`] whether its last listing still holds.
//!
//! ```no_run
//! # fn demo(trigger: gitstate_runtime::Trigger) {
//! use std::sync::Arc;
//! use gitstate_runtime::refwatch::{self, RefChanges};
//!
//! let changes = Arc::new(RefChanges::default());
//! // Keep the watcher: dropping it stops the notification.
//! let _watcher = refwatch::watch("/srv/repo".as_ref(), trigger, changes.clone());
//! # }
//! ```

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use notify::Watcher as _;

use crate::Trigger;
use crate::environments::Listed;

/// What file-system notification saw change under a local repository's git directory
/// since the refs were last listed: loose refs by name, or something that needs a whole
/// listing. Fed by [`watch`]'s watcher; read at each ref poll.
#[derive(Debug, Default)]
pub struct RefChanges {
    /// The git directory watched, once a watcher is in place; without one every poll lists.
    watching: OnceLock<PathBuf>,
    inner: Mutex<Changed>,
}

#[derive(Debug, Default)]
struct Changed {
    /// Something only a whole listing can tell.
    whole: bool,
    /// Loose refs written, by name (`refs/heads/…`).
    loose: BTreeSet<String>,
}

impl RefChanges {
    /// A watcher is in place over `git_dir`: polls may trust what it reports.
    pub fn watching(&self, git_dir: PathBuf) {
        let _ = self.watching.set(git_dir);
    }

    /// A change at `path`: a loose ref's name, returned (for the ref poll to read), or
    /// `None` when only a whole listing tells what changed.
    pub fn saw(&self, path: &Path) -> Option<String> {
        let git_dir = self.watching.get()?;
        let name = path.strip_prefix(git_dir).ok().and_then(|p| p.to_str()).map(str::to_owned);
        let mut c = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match name {
            // A lock file is written, then renamed to the ref: the rename is the news.
            Some(n) if n.ends_with(".lock") => None,
            Some(n) if n.starts_with("refs/") => {
                c.loose.insert(n.clone());
                Some(n)
            }
            _ => {
                c.whole = true;
                None
            }
        }
    }

    /// Something happened that only a whole listing can tell (an event lost, an error).
    pub fn all(&self) {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).whole = true;
    }

    /// Forgets what was seen: a whole listing starts now (changes from here on are the
    /// next poll's news).
    pub fn clear(&self) {
        *self.inner.lock().unwrap_or_else(|p| p.into_inner()) = Changed::default();
    }

    /// Whether all that changed are loose refs `listing` has, still files (refs moved, not
    /// made or deleted); then they are forgotten here (the ref poll reads them, named by
    /// the watcher's pushes). `false` when nothing watches.
    pub fn only_moved(&self, listing: &Listed) -> bool {
        let Some(git_dir) = self.watching.get() else { return false };
        let mut c = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let moved = !c.whole && c.loose.iter().all(|r| listing.contains_key(r) && git_dir.join(r).is_file());
        if moved {
            c.loose.clear();
        }
        moved
    }
}

/// A watcher over a repository's refs; notification stops when it is dropped.
pub struct RefWatcher {
    _watcher: notify::RecommendedWatcher,
}

impl std::fmt::Debug for RefWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefWatcher")
    }
}

/// Watches the refs of the local repository at `repo` (a work tree or a git directory):
/// a loose ref written is `trigger.pushed(that ref)`, anything else `changes.all()` and a
/// poke. `None` (with a warning logged) when the platform gives no notification: the
/// loop then polls refs only, as without a watcher.
pub fn watch(repo: &Path, trigger: Trigger, changes: Arc<RefChanges>) -> Option<RefWatcher> {
    let dotgit = repo.join(".git");
    let dir = if dotgit.is_dir() { dotgit } else { repo.to_path_buf() };
    let seen = changes.clone();
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
        Ok(e) if e.kind.is_access() => {}
        Ok(e) if e.need_rescan() || e.paths.is_empty() => {
            seen.all();
            trigger.poke();
        }
        Ok(e) => {
            for path in &e.paths {
                match seen.saw(path) {
                    Some(reference) => trigger.pushed(Some(reference)),
                    None => trigger.poke(),
                }
            }
        }
        Err(_) => {
            seen.all();
            trigger.poke();
        }
    });
    let mut w = match watcher {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "file-system notification unavailable; polling refs only");
            return None;
        }
    };
    let refs = w.watch(&dir.join("refs"), notify::RecursiveMode::Recursive);
    let top = w.watch(&dir, notify::RecursiveMode::NonRecursive);
    // A reftable repository writes its refs under reftable/.
    let reftable = dir.join("reftable");
    if reftable.is_dir()
        && let Err(e) = w.watch(&reftable, notify::RecursiveMode::Recursive)
    {
        tracing::warn!(error = %e, "file-system notification unavailable for reftable/");
    }
    match refs.and(top) {
        Err(e) => tracing::warn!(error = %e, "file-system notification unavailable; polling refs only"),
        // The paths events name start with `dir` as given to the watcher.
        Ok(()) if !reftable.is_dir() => changes.watching(dir),
        // Reftable writes name no ref: every change is a whole listing.
        Ok(()) => {}
    }
    Some(RefWatcher { _watcher: w })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(refs: &[&str]) -> Listed {
        refs.iter()
            .map(|r| (r.to_string(), gitstate_core::CommitId::parse(&"a".repeat(40)).unwrap()))
            .collect()
    }

    #[test]
    fn a_moved_loose_ref_is_named_and_anything_else_asks_for_a_whole_listing() {
        let dir = tempfile::tempdir().unwrap();
        let git = dir.path().to_path_buf();
        std::fs::create_dir_all(git.join("refs/heads")).unwrap();
        std::fs::write(git.join("refs/heads/a"), "x").unwrap();
        let changes = RefChanges::default();
        // Without a watcher nothing is trusted.
        assert_eq!(changes.saw(&git.join("refs/heads/a")), None);
        assert!(!changes.only_moved(&listing(&["refs/heads/a"])));

        changes.watching(git.clone());
        assert_eq!(changes.saw(&git.join("refs/heads/a.lock")), None);
        assert_eq!(changes.saw(&git.join("refs/heads/a")), Some("refs/heads/a".into()));
        // A ref the listing lacks was made: list.
        assert!(!changes.only_moved(&listing(&["refs/heads/b"])));
        assert!(changes.only_moved(&listing(&["refs/heads/a"])));
        // Forgotten once trusted.
        assert!(changes.only_moved(&listing(&[])));

        // A deleted loose ref (no longer a file) needs a listing.
        changes.saw(&git.join("refs/heads/gone"));
        assert!(!changes.only_moved(&listing(&["refs/heads/gone"])));
        changes.clear();
        assert!(changes.only_moved(&listing(&[])));

        // packed-refs, or an event without a name, needs a listing until cleared.
        assert_eq!(changes.saw(&git.join("packed-refs")), None);
        assert!(!changes.only_moved(&listing(&[])));
        changes.clear();
        changes.all();
        assert!(!changes.only_moved(&listing(&[])));
    }
}
