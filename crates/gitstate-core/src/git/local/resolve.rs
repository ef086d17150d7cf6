//! Refs resolved as git resolves them: full or short names (`environments/production`),
//! each to the commit it leads to, annotated tags peeled. Entry point:
//! [`LocalRepo::resolve`].

use std::path::Path;

use gix::ObjectId;

use super::{LocalRepo, commit_of};
use crate::error::ExpectedError;
use crate::git::chain;
use crate::git::names::{candidates, to_commit_id};
use crate::plugin::Expected;

impl LocalRepo {
    /// Resolves each ref (full, or short like `environments/production`, as git does) to
    /// the commit it points at, peeling annotated tags.
    pub fn resolve(&self, refs: &[String]) -> Vec<Result<Expected, ExpectedError>> {
        let repo = match self.gix() {
            Ok(r) => r,
            Err(e) => {
                let (repo, message) = match e {
                    ExpectedError::Open { repo, message } => (repo, message),
                    other => (self.display(), other.to_string()),
                };
                return refs
                    .iter()
                    .map(|_| Err(ExpectedError::Open { repo: repo.clone(), message: message.clone() }))
                    .collect();
            }
        };
        if self.reftable {
            return self.resolve_by_git(&repo, refs);
        }
        // One snapshot of packed-refs for every name (gix would check the file anew for
        // each), and each target object peeled once however many refs point at it.
        let packed = repo.refs.cached_packed_buffer().ok().flatten();
        let mut peeled: std::collections::HashMap<ObjectId, Option<ObjectId>> =
            std::collections::HashMap::new();
        // Which full names have a loose file, from one directory listing per directory
        // rather than one failed open(2) per name (1,000 environments: 1,000 `ENOENT`s).
        let mut loose = LooseIndex::new(repo.common_dir());
        refs.iter()
            .map(|name| {
                let partial: &gix::refs::PartialNameRef =
                    name.as_str().try_into().map_err(|_| ExpectedError::BadRefName(name.clone()))?;
                let packed_only = match (&packed, loose.absent(name)) {
                    (Some(buf), true) => Some(buf.try_find(partial)),
                    _ => None,
                };
                let (reference, id) = match packed_only {
                    Some(Ok(Some(r))) => (r.name.as_bstr().to_string(), r.target()),
                    Some(Ok(None)) => {
                        return Err(ExpectedError::RefNotFound {
                            reference: name.clone(),
                            repo: self.display(),
                        });
                    }
                    Some(Err(_)) => return self.resolve_one(&repo, name),
                    None => {
                        let found = repo.refs.try_find_packed(partial, packed.as_ref().map(|b| &***b));
                        let r = match found {
                            Ok(Some(r)) => r,
                            Ok(None) => {
                                return Err(ExpectedError::RefNotFound {
                                    reference: name.clone(),
                                    repo: self.display(),
                                });
                            }
                            Err(_) => return self.resolve_one(&repo, name),
                        };
                        let gix::refs::Target::Object(id) = r.target else {
                            return self.resolve_one(&repo, name);
                        };
                        (r.name.as_bstr().to_string(), id)
                    }
                };
                let commit = match peeled.get(&id) {
                    Some(known) => *known,
                    None => {
                        let c = commit_of(&repo, id).map_err(|e| ExpectedError::NotACommit {
                            reference: reference.clone(),
                            repo: self.display(),
                            message: chain(&e),
                        })?;
                        *peeled.entry(id).or_insert(c)
                    }
                };
                match commit {
                    Some(c) => Ok(Expected { reference, commit: to_commit_id(c) }),
                    None => Err(ExpectedError::NotACommit {
                        reference,
                        repo: self.display(),
                        message: "it does not point at a commit".into(),
                    }),
                }
            })
            .collect()
    }

    fn resolve_by_git(
        &self,
        repo: &gix::Repository,
        refs: &[String],
    ) -> Vec<Result<Expected, ExpectedError>> {
        let listed: std::collections::HashMap<String, ObjectId> = match self.git_refs("refs/") {
            Ok(l) => l.into_iter().collect(),
            Err(e) => {
                let message = e.to_string();
                return refs
                    .iter()
                    .map(|_| Err(ExpectedError::History { repo: self.display(), message: message.clone() }))
                    .collect();
            }
        };
        refs.iter()
            .map(|name| {
                let cands = candidates(name);
                if cands.is_empty() {
                    return Err(ExpectedError::BadRefName(name.clone()));
                }
                let Some((reference, id)) =
                    cands.iter().find_map(|c| listed.get(c).map(|id| (c.clone(), *id)))
                else {
                    return Err(ExpectedError::RefNotFound { reference: name.clone(), repo: self.display() });
                };
                let not_a_commit = |message: String| ExpectedError::NotACommit {
                    reference: reference.clone(),
                    repo: self.display(),
                    message,
                };
                match commit_of(repo, id) {
                    Ok(Some(c)) => Ok(Expected { reference: reference.clone(), commit: to_commit_id(c) }),
                    Ok(None) => Err(not_a_commit("it does not point at a commit".into())),
                    Err(e) => Err(not_a_commit(chain(&e))),
                }
            })
            .collect()
    }

    fn resolve_one(&self, repo: &gix::Repository, name: &str) -> Result<Expected, ExpectedError> {
        let partial: &gix::refs::PartialNameRef =
            name.try_into().map_err(|_| ExpectedError::BadRefName(name.to_owned()))?;
        let found = repo.try_find_reference(partial).map_err(|e| ExpectedError::NotACommit {
            reference: name.to_owned(),
            repo: self.display(),
            message: chain(&e),
        })?;
        let Some(mut r) = found else {
            return Err(ExpectedError::RefNotFound { reference: name.to_owned(), repo: self.display() });
        };
        let reference = r.name().as_bstr().to_string();
        let commit = r.peel_to_commit().map_err(|e| ExpectedError::NotACommit {
            reference: reference.clone(),
            repo: self.display(),
            message: chain(&e),
        })?;
        Ok(Expected { reference, commit: to_commit_id(commit.id) })
    }
}

/// Whether full ref names have a loose file, each directory listed once.
struct LooseIndex<'a> {
    common_dir: &'a Path,
    dirs: std::collections::HashMap<String, Option<std::collections::HashSet<std::ffi::OsString>>>,
}

impl<'a> LooseIndex<'a> {
    fn new(common_dir: &'a Path) -> Self {
        Self { common_dir, dirs: std::collections::HashMap::new() }
    }

    /// True when `name` is a full, shared ref name (not per-worktree: `refs/bisect/`,
    /// `refs/worktree/`, `refs/rewritten/`) whose loose file certainly does not exist, so
    /// that only `packed-refs` can hold it. False when unsure.
    fn absent(&mut self, name: &str) -> bool {
        let per_worktree = ["refs/bisect/", "refs/worktree/", "refs/rewritten/"];
        if !name.starts_with("refs/") || per_worktree.iter().any(|p| name.starts_with(p)) {
            return false;
        }
        let Some((dir, file)) = name.rsplit_once('/') else { return false };
        if file.is_empty() || dir.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
            return false;
        }
        let common_dir = self.common_dir;
        let listed = self.dirs.entry(dir.to_owned()).or_insert_with(|| {
            match std::fs::read_dir(common_dir.join(dir)) {
                Ok(entries) => Some(entries.filter_map(|e| Some(e.ok()?.file_name())).collect()),
                // No directory: no loose ref below it.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(Default::default()),
                Err(_) => None,
            }
        });
        listed.as_ref().is_some_and(|names| !names.contains(std::ffi::OsStr::new(file)))
    }
}
