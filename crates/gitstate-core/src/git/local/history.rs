//! Where commit history is related: a reported commit to the expected one (in sync,
//! behind, ahead, diverged, unknown) with the commits at stake named, counted from the
//! commit-graph when there is one; and commits described (subject, author, time).
//! Entry points: [`LocalRepo::relate_commits`], [`LocalRepo::describe`].

use gix::ObjectId;

use super::{LocalRepo, commit_of};
use crate::commit::{CommitId, ReportedCommit};
use crate::error::ExpectedError;
use crate::git::chain;
use crate::git::names::to_commit_id;
use crate::observation::{CommitInfo, Related, Relation};

impl LocalRepo {
    /// Relates each reported commit to `expected`: in sync, behind n, ahead n, diverged
    /// (n, m), or unknown (not in the repository, ambiguous, or not a commit). Counts
    /// equal `git rev-list --count` (`--left-right` for diverged); the commit-graph file is
    /// used when present.
    pub fn relate(
        &self,
        expected: &CommitId,
        reported: &[ReportedCommit],
    ) -> Result<Vec<Relation>, ExpectedError> {
        Ok(self.relate_commits(expected, reported, 0)?.into_iter().map(|r| r.relation).collect())
    }

    /// [`LocalRepo::relate`], also naming the newest `max` commits of each side (`git
    /// rev-list actual..expected` and `expected..actual`, newest commit time first), from
    /// the same walk that counts them.
    pub fn relate_commits(
        &self,
        expected: &CommitId,
        reported: &[ReportedCommit],
        max: usize,
    ) -> Result<Vec<Related>, ExpectedError> {
        let repo = self.gix()?;
        let exp = ObjectId::from_hex(expected.as_str().as_bytes()).map_err(|e| ExpectedError::History {
            repo: self.display(),
            message: format!("expected commit {expected}: {e}"),
        })?;
        // The commit-graph, when there is one, answers ancestry and counts without reading
        // a single commit object.
        let graph = repo.commit_graph_if_enabled().ok().flatten();
        reported.iter().map(|r| self.relate_one(&repo, graph.as_ref(), exp, r, max)).collect()
    }

    /// The commits `to` brings over `from` (`git rev-list from..to`, newest first; `to`
    /// alone without `from`), each with its signature and signed bytes (SPEC §18). More
    /// than `max` is an error.
    pub fn signed_commits(
        &self,
        from: Option<&CommitId>,
        to: &CommitId,
        max: usize,
    ) -> Result<Vec<crate::signed::SignedCommit>, ExpectedError> {
        let repo = self.gix()?;
        let hist = |message: String| ExpectedError::History { repo: self.display(), message };
        let oid =
            |c: &CommitId| ObjectId::from_hex(c.as_str().as_bytes()).map_err(|e| hist(format!("{c}: {e}")));
        let tip = oid(to)?;
        let ids: Vec<ObjectId> = match from {
            None => vec![tip],
            Some(from) => {
                let hidden = oid(from)?;
                let walk = repo
                    .rev_walk([tip])
                    .with_hidden([hidden])
                    .sorting(gix::revision::walk::Sorting::ByCommitTime(Default::default()))
                    .all()
                    .map_err(|e| hist(chain(&e)))?;
                let mut ids = Vec::new();
                for info in walk {
                    let info = info.map_err(|e| hist(chain(&e)))?;
                    if ids.len() == max {
                        return Err(hist(format!("{from}..{to} brings more than {max} commits")));
                    }
                    ids.push(info.id);
                }
                ids
            }
        };
        ids.into_iter()
            .map(|id| {
                let object = repo
                    .find_object(id)
                    .map_err(|e| hist(format!("commit {id} is not in the repository: {}", chain(&e))))?;
                let commit = to_commit_id(id);
                Ok(crate::signed::SignedCommit::from_object(commit, &object.data))
            })
            .collect()
    }

    /// Subject, author and time of each commit the repository holds (others are left out).
    pub fn describe(&self, commits: &[CommitId]) -> Result<Vec<CommitInfo>, ExpectedError> {
        let repo = self.gix()?;
        let mut out = Vec::with_capacity(commits.len());
        for c in commits {
            let Ok(id) = ObjectId::from_hex(c.as_str().as_bytes()) else { continue };
            let Ok(Some(object)) = repo.try_find_object(id) else { continue };
            let Ok(commit) = object.try_into_commit() else { continue };
            let Ok(decoded) = commit.decode() else { continue };
            let author = decoded.author().map(|a| a.name.to_string()).unwrap_or_default();
            let seconds = decoded.committer().ok().and_then(|c| c.time().ok()).map_or(0, |t| t.seconds);
            out.push(CommitInfo {
                sha: *c,
                subject: CommitInfo::clean(&decoded.message.to_string(), CommitInfo::MAX_SUBJECT),
                author: CommitInfo::clean(&author, CommitInfo::MAX_SUBJECT),
                at: jiff::Timestamp::from_second(seconds).unwrap_or(jiff::Timestamp::UNIX_EPOCH),
            });
        }
        Ok(out)
    }

    fn relate_one(
        &self,
        repo: &gix::Repository,
        graph: Option<&gix::commitgraph::Graph>,
        expected: ObjectId,
        reported: &ReportedCommit,
        max: usize,
    ) -> Result<Related, ExpectedError> {
        let hist =
            |e: &dyn std::error::Error| ExpectedError::History { repo: self.display(), message: chain(e) };
        let Some(actual) = lookup(repo, reported).map_err(|e| hist(&e))? else {
            return Ok(Relation::UnknownCommit.into());
        };
        if actual == expected {
            return Ok(Relation::InSync.into());
        }
        // `git rev-list --count hidden..tip`, whether `hidden` is an ancestor of `tip`, and
        // the newest `max` commits of the range: `hidden` is an ancestor exactly when some
        // commit of that range has it as a parent. So the common case (behind) is one walk,
        // with no separate merge-base computation.
        let count = |tip: ObjectId, hidden: ObjectId| -> Result<Walked, ExpectedError> {
            if let Some(found) = graph.and_then(|g| count_in_graph(g, tip, hidden, max)) {
                return Ok(found);
            }
            let sorting = gix::revision::walk::Sorting::ByCommitTime(Default::default());
            let walk =
                repo.rev_walk([tip]).with_hidden([hidden]).sorting(sorting).all().map_err(|e| hist(&e))?;
            let mut w = Walked::default();
            for info in walk {
                let info = info.map_err(|e| hist(&e))?;
                w.reaches |= info.parent_ids().any(|p| p == hidden);
                if w.newest.len() < max {
                    w.newest.push(to_commit_id(info.id));
                }
                w.count += 1;
            }
            Ok(w)
        };
        let pending = count(expected, actual)?;
        if pending.reaches {
            let relation = Relation::Behind(pending.count);
            return Ok(Related { relation, pending: Some(pending.newest), unexpected: Some(Vec::new()) });
        }
        let unexpected = count(actual, expected)?;
        let relation = if unexpected.reaches && pending.count == 0 {
            Relation::Ahead(unexpected.count)
        } else {
            Relation::Diverged { behind: pending.count, ahead: unexpected.count }
        };
        Ok(Related { relation, pending: Some(pending.newest), unexpected: Some(unexpected.newest) })
    }
}

/// What one walk of `hidden..tip` found.
#[derive(Default)]
struct Walked {
    /// Commits in the range.
    count: u64,
    /// `hidden` is an ancestor of `tip`.
    reaches: bool,
    /// The newest commits of the range, newest first.
    newest: Vec<CommitId>,
}

/// `git rev-list --count hidden..tip`, whether `hidden` is an ancestor of `tip`, and the
/// newest `max` commits of the range (by commit time), from the commit-graph alone:
/// commits are visited newest generation first (a parent's generation is always below its
/// children's), so a commit's "hidden" mark is final when it is visited, and the walk stops
/// as soon as nothing countable is left in the queue. `None` when a commit is not in the
/// graph (written before it): the caller walks objects instead.
fn count_in_graph(
    graph: &gix::commitgraph::Graph,
    tip: ObjectId,
    hidden: ObjectId,
    max: usize,
) -> Option<Walked> {
    use gix::commitgraph::Position;
    use std::cmp::Reverse;
    const SEEN: u8 = 1;
    const HIDDEN: u8 = 2;
    let (t, h) = (graph.lookup(tip)?, graph.lookup(hidden)?);
    if t == h {
        return Some(Walked::default());
    }
    let mut flags = vec![0u8; graph.num_commits() as usize];
    let mut heap = std::collections::BinaryHeap::new();
    // The newest `max` countable commits seen: a min-heap on (commit time, position).
    let mut newest: std::collections::BinaryHeap<Reverse<(u64, u32)>> = std::collections::BinaryHeap::new();
    flags[t.0 as usize] = SEEN;
    flags[h.0 as usize] = SEEN | HIDDEN;
    heap.push((graph.commit_at(t).generation(), t.0));
    heap.push((graph.commit_at(h).generation(), h.0));
    let (mut countable, mut count, mut reaches) = (1u64, 0u64, false);
    while countable > 0 {
        let (_, p) = heap.pop()?;
        let is_hidden = flags[p as usize] & HIDDEN != 0;
        let commit = graph.commit_at(Position(p));
        if !is_hidden {
            countable -= 1;
            count += 1;
            if max > 0 {
                newest.push(Reverse((commit.committer_timestamp(), p)));
                if newest.len() > max {
                    newest.pop();
                }
            }
        }
        for parent in commit.iter_parents() {
            let q = parent.ok()?;
            let qi = q.0 as usize;
            if !is_hidden && q == h {
                reaches = true;
            }
            let qf = *flags.get(qi)?;
            if qf & SEEN == 0 {
                flags[qi] = if is_hidden { SEEN | HIDDEN } else { SEEN };
                heap.push((graph.commit_at(q).generation(), q.0));
                if !is_hidden {
                    countable += 1;
                }
            } else if is_hidden && qf & HIDDEN == 0 {
                // Queued as countable and not visited yet (its generation is below ours).
                flags[qi] |= HIDDEN;
                countable -= 1;
            }
        }
    }
    let mut newest: Vec<(u64, u32)> = newest.into_iter().map(|Reverse(x)| x).collect();
    newest.sort_by(|a, b| b.cmp(a));
    let newest = newest.into_iter().map(|(_, p)| to_commit_id(graph.id_at(Position(p)))).collect();
    Some(Walked { count, reaches, newest })
}

/// The commit a reported id names in `repo`, if it names exactly one (tags peeled). An
/// object database that cannot be read (out of file descriptors, a broken pack) is an
/// error, not an unknown commit: the repository was not asked.
fn lookup(repo: &gix::Repository, reported: &ReportedCommit) -> Result<Option<ObjectId>, gix::Error> {
    let hex = reported.as_str();
    let id = if hex.len() == repo.object_hash().len_in_hex() {
        match ObjectId::from_hex(hex.as_bytes()) {
            Ok(id) => id,
            Err(_) => return Ok(None),
        }
    } else if hex.len() < repo.object_hash().len_in_hex() {
        let Ok(prefix) = gix::hash::Prefix::from_hex(hex) else { return Ok(None) };
        match repo.objects.lookup_prefix(prefix, None).map_err(gix::Error::from_error)? {
            Some(Ok(id)) => id,
            // Not found, or ambiguous: the repository cannot name it.
            _ => return Ok(None),
        }
    } else {
        return Ok(None);
    };
    commit_of(repo, id)
}
