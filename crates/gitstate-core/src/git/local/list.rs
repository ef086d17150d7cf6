//! Every ref under a prefix, peeled to the commits they lead to, as `[[discover]]` lists
//! environments: read straight from the files (`refscan`) when the layout is plain, else
//! through gix or `git for-each-ref`. Entry point: [`LocalRepo::list`].

use gix::ObjectId;

use super::{LocalRepo, commit_of};
use crate::commit::CommitId;
use crate::error::ExpectedError;
use crate::git::chain;
use crate::git::names::to_commit_id;
use crate::plugin::Expected;

/// The most object ids [`LocalRepo`] remembers the commit of; beyond, it starts over.
const PEELED_KEPT: usize = 100_000;

impl LocalRepo {
    /// Every ref under `prefix` (e.g. `refs/heads/environments/`), peeled to commits,
    /// sorted by name. Refs that do not lead to a commit are skipped with a warning.
    pub fn list(&self, prefix: &str) -> Result<Vec<Expected>, ExpectedError> {
        let err = |e: &dyn std::error::Error| ExpectedError::History {
            repo: self.display(),
            message: format!("listing refs under {prefix:?}: {}", chain(e)),
        };
        if !self.reftable
            && let Some(mut listed) = crate::git::refscan::scan(&self.common_dir, prefix, &self.packed)
        {
            self.keep_commits(&mut listed, err)?;
            return Ok(listed);
        }
        let repo = self.gix()?;
        let mut out = Vec::new();
        if self.reftable {
            let mut found = self.git_refs(prefix)?;
            found.retain(|(name, _)| name.starts_with(prefix));
            found.sort_by(|a, b| a.0.cmp(&b.0));
            out.extend(
                found.into_iter().map(|(reference, id)| Expected { reference, commit: to_commit_id(id) }),
            );
        } else {
            let platform = repo.references().map_err(|e| err(&e))?;
            let iter = platform.prefixed(prefix).map_err(|e| err(&e))?.peeled().map_err(|e| err(&e))?;
            for r in iter {
                let r = r.map_err(|e| err(&e))?;
                out.push(Expected {
                    reference: r.name().as_bstr().to_string(),
                    commit: to_commit_id(r.id()),
                });
            }
            // Loose and packed refs come merged in order already; this is a check, not a sort.
            if !out.is_sorted_by(|a, b| a.reference <= b.reference) {
                out.sort_by(|a, b| a.reference.cmp(&b.reference));
            }
        }
        self.keep_commits(&mut out, err)?;
        Ok(out)
    }

    /// Replaces each listed object by the commit it leads to (a tag is peeled), and drops
    /// (with a warning) refs that lead to none. An object's kind is read from its loose
    /// file when it has one — without opening gix — and through gix otherwise.
    fn keep_commits(
        &self,
        listed: &mut Vec<Expected>,
        err: impl Fn(&dyn std::error::Error) -> ExpectedError,
    ) -> Result<(), ExpectedError> {
        // Many refs share few commits (a fleet on the same release): check each object once,
        // and remember it for the next listing. Only found commits are kept.
        let mut peeled = self.peeled.lock().unwrap_or_else(|p| p.into_inner());
        if peeled.len() > PEELED_KEPT {
            peeled.clear();
        }
        let loose = gix::odb::loose::Store::at(self.common_dir.join("objects"), gix::hash::Kind::Sha1);
        let mut repo = None;
        let mut not_commits = std::collections::HashSet::new();
        // The last object checked and what it led to: neighbours in a listing often share one.
        let mut last: Option<(CommitId, Option<CommitId>)> = None;
        let mut failed = None;
        listed.retain_mut(|e| {
            if failed.is_some() {
                return false;
            }
            let object = e.commit;
            let commit = match last {
                Some((o, c)) if o == object => c,
                _ => match self.commit_of_listed(object, &mut peeled, &mut not_commits, &loose, &mut repo, &err) {
                    Ok(c) => {
                        last = Some((object, c));
                        c
                    }
                    Err(e) => {
                        failed = Some(e);
                        return false;
                    }
                },
            };
            match commit {
                Some(c) => {
                    e.commit = c;
                    true
                }
                None => {
                    tracing::warn!(reference = %e.reference, "skipping a ref that does not point at a commit");
                    false
                }
            }
        });
        failed.map_or(Ok(()), Err)
    }

    /// The commit `object` leads to, if any: from what earlier listings found, from its
    /// loose file when that says "commit", else through gix (opened once, on first need).
    fn commit_of_listed(
        &self,
        object: CommitId,
        peeled: &mut std::collections::HashMap<ObjectId, CommitId>,
        not_commits: &mut std::collections::HashSet<ObjectId>,
        loose: &gix::odb::loose::Store,
        repo: &mut Option<gix::Repository>,
        err: &impl Fn(&dyn std::error::Error) -> ExpectedError,
    ) -> Result<Option<CommitId>, ExpectedError> {
        let Ok(id) = ObjectId::from_hex(object.as_str().as_bytes()) else { return Ok(None) };
        if let Some(known) = peeled.get(&id) {
            return Ok(Some(*known));
        }
        if not_commits.contains(&id) {
            return Ok(None);
        }
        if let Ok(Some((_, gix::object::Kind::Commit))) = loose.try_header(&id) {
            peeled.insert(id, object);
            return Ok(Some(object));
        }
        let repo = match repo {
            Some(r) => r,
            None => repo.insert(self.gix()?),
        };
        match commit_of(repo, id).map_err(|e| err(&e))? {
            Some(c) => Ok(Some(*peeled.entry(id).or_insert(to_commit_id(c)))),
            None => {
                not_commits.insert(id);
                Ok(None)
            }
        }
    }
}
