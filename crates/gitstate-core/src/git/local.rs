//! A Git repository on this machine, read with gix: refs resolved like git, refs listed
//! under a prefix, and the history relation of a reported commit to the expected one.
//! Entry type: [`LocalRepo`]. All methods are blocking; [`super::GitSource`] runs them
//! off the async executor.

use std::path::{Path, PathBuf};

use gix::ObjectId;

use super::chain;
use crate::commit::{CommitId, ReportedCommit};
use crate::error::ExpectedError;
use crate::observation::{CommitInfo, Related, Relation};
use crate::plugin::Expected;

/// Bytes of decoded objects cached per call, to speed up history walks.
const OBJECT_CACHE: usize = 8 * 1024 * 1024;

/// A local repository, bare or not. Every call takes a fresh view of the refs, so a ref
/// moved by another process (loose, or after `git pack-refs`) is seen at the next call.
///
/// A repository whose refs are stored in Git's newer reftable format
/// (`extensions.refStorage = reftable`, `git init --ref-format=reftable`) has its refs
/// read through `git for-each-ref`, as gix cannot read reftable yet; its objects are read
/// with gix as for any other. A SHA-256 repository is refused with an error naming its
/// object format, never misread.
pub struct LocalRepo {
    /// gix's view of the repository, opened on first need when the layout is plain (a
    /// `[[discover]]` listing reads refs and loose objects without it: see `refscan`).
    repo: std::sync::OnceLock<gix::ThreadSafeRepository>,
    path: PathBuf,
    /// Where refs and reflogs live (the main repository's git dir for a worktree).
    common_dir: PathBuf,
    reftable: bool,
    /// Object ids known to lead to a commit (a commit, or a tag peeled to one): an object
    /// never changes, so a listing every second of a fleet on many releases reads each
    /// object once, not once a second. Only found commits are kept.
    peeled: std::sync::Mutex<std::collections::HashMap<ObjectId, CommitId>>,
    /// The last `packed-refs` a listing read.
    packed: super::refscan::PackedRefs,
}

/// The most object ids [`LocalRepo`] remembers the commit of; beyond, it starts over.
const PEELED_KEPT: usize = 100_000;

impl std::fmt::Debug for LocalRepo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalRepo").field("path", &self.path).finish()
    }
}

impl LocalRepo {
    /// Opens the repository at `path` (its work tree or its git dir) without reading the
    /// user's or the system's git configuration.
    ///
    /// A plainly laid out repository (a `.git` directory or a bare repository, no
    /// `extensions.*`) is opened with gix only when something first needs it; a fault gix
    /// would find in its configuration is then reported by that call.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, ExpectedError> {
        let path = path.as_ref().to_path_buf();
        if let Some(git_dir) = super::refscan::plain_git_dir(&path) {
            return Ok(Self {
                repo: std::sync::OnceLock::new(),
                path,
                common_dir: git_dir,
                reftable: false,
                peeled: Default::default(),
                packed: Default::default(),
            });
        }
        let repo = Self::open_gix(&path)?;
        let reftable = repo
            .config_snapshot()
            .string("extensions.refStorage")
            .is_some_and(|v| v.eq_ignore_ascii_case(b"reftable"));
        let common_dir = repo.common_dir().to_path_buf();
        Ok(Self {
            repo: std::sync::OnceLock::from(repo.into_sync()),
            path,
            common_dir,
            reftable,
            peeled: Default::default(),
            packed: Default::default(),
        })
    }

    fn open_gix(path: &Path) -> Result<gix::Repository, ExpectedError> {
        let open_error = |message: String| ExpectedError::Open { repo: path.display().to_string(), message };
        gix::open_opts(path, gix::open::Options::isolated()).map_err(|e| {
            match extension(path, "objectformat").filter(|f| !f.eq_ignore_ascii_case("sha1")) {
                Some(format) => open_error(format!(
                    "the repository uses {format} object ids (extensions.objectFormat = {format}); \
                     gitstate reads SHA-1 repositories only"
                )),
                None => open_error(chain(&e)),
            }
        })
    }

    /// The path it was opened at.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn display(&self) -> String {
        self.path.display().to_string()
    }

    /// gix's view of the repository for this thread, opened now if it was not yet.
    fn gix(&self) -> Result<gix::Repository, ExpectedError> {
        let shared = match self.repo.get() {
            Some(r) => r,
            None => {
                let opened = Self::open_gix(&self.path)?.into_sync();
                self.repo.get_or_init(|| opened)
            }
        };
        let mut repo = shared.to_thread_local();
        repo.object_cache_size_if_unset(OBJECT_CACHE);
        Ok(repo)
    }

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

    /// When `expected.reference` moved to `expected.commit`, from the ref's reflog (`None`
    /// when the repository keeps none: bare repositories do not by default, and reftable
    /// logs are not read).
    pub fn moved_at(&self, expected: &Expected) -> Option<jiff::Timestamp> {
        let name = expected.reference.as_str();
        if self.reftable || !name.starts_with("refs/") || name.split('/').any(|c| c.is_empty() || c == "..") {
            return None;
        }
        super::reflog::read_moved_at(&self.common_dir.join("logs").join(name), &expected.commit)
    }

    /// Every ref under `prefix` with the object it points at, peeled once (annotated tags),
    /// as `git for-each-ref` lists it: for repositories gix cannot read the refs of.
    fn git_refs(&self, prefix: &str) -> Result<Vec<(String, ObjectId)>, ExpectedError> {
        let mut cmd = std::process::Command::new("git");
        cmd.arg("-C").arg(&self.path).args([
            "for-each-ref",
            "--format=%(refname) %(objectname) %(*objectname)",
            "--",
            prefix,
        ]);
        for var in super::transport::HOOK_ENV {
            cmd.env_remove(var);
        }
        let err = |message: String| ExpectedError::History {
            repo: self.display(),
            message: format!("listing refs with git for-each-ref (reftable): {message}"),
        };
        let out = cmd.output().map_err(|e| err(e.to_string()))?;
        if !out.status.success() {
            return Err(err(String::from_utf8_lossy(&out.stderr).trim().to_owned()));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let mut refs = Vec::new();
        for line in text.lines() {
            let mut parts = line.split(' ');
            let (Some(name), Some(id), peeled) = (parts.next(), parts.next(), parts.next()) else { continue };
            let id = peeled.filter(|p| !p.is_empty()).unwrap_or(id);
            match ObjectId::from_hex(id.as_bytes()) {
                Ok(id) => refs.push((name.to_owned(), id)),
                Err(_) => tracing::warn!(line, "skipping a line git for-each-ref gave that names no object"),
            }
        }
        Ok(refs)
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
                let cands = super::remote::candidates(name);
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

    /// Every ref under `prefix` (e.g. `refs/heads/environments/`), peeled to commits,
    /// sorted by name. Refs that do not lead to a commit are skipped with a warning.
    pub fn list(&self, prefix: &str) -> Result<Vec<Expected>, ExpectedError> {
        let err = |e: &dyn std::error::Error| ExpectedError::History {
            repo: self.display(),
            message: format!("listing refs under {prefix:?}: {}", chain(e)),
        };
        if !self.reftable
            && let Some(mut listed) = super::refscan::scan(&self.common_dir, prefix, &self.packed)
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

    /// The URL of its `origin` remote, if it has one (for links to a forge).
    pub fn origin_url(&self) -> Option<String> {
        let repo = self.gix().ok()?;
        let url = repo.config_snapshot().string("remote.origin.url")?;
        Some(url.to_string())
    }

    /// Whether the repository holds `commit`'s object.
    pub fn has_commit(&self, commit: &CommitId) -> bool {
        ObjectId::from_hex(commit.as_str().as_bytes())
            .is_ok_and(|id| self.gix().is_ok_and(|r| r.has_object(id)))
    }

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

/// Peels `id` to a commit, if it is one or a tag of one, and the object exists.
fn commit_of(repo: &gix::Repository, id: ObjectId) -> Result<Option<ObjectId>, gix::Error> {
    let Some(object) = repo.try_find_object(id).map_err(gix::Error::from_error)? else {
        return Ok(None);
    };
    Ok(object.peel_to_kind(gix::object::Kind::Commit).ok().map(|c| c.id))
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

pub(crate) fn to_commit_id(id: impl AsRef<gix::oid>) -> CommitId {
    let mut buf = [0u8; 64];
    let hex = id.as_ref().hex_to_buf(&mut buf);
    CommitId::from_trusted_hex(hex)
}

/// The value of `extensions.<key>` in the repository's config file at `path` (its work
/// tree or git dir), read without gix: for what gix refuses to open.
fn extension(path: &Path, key: &str) -> Option<String> {
    let config = [path.join(".git/config"), path.join("config")].into_iter().find(|p| p.is_file())?;
    let text = std::fs::read_to_string(config).ok()?;
    let mut in_extensions = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_extensions = line.trim_matches(['[', ']']).trim().eq_ignore_ascii_case("extensions");
        } else if in_extensions
            && let Some((k, v)) = line.split_once('=')
            && k.trim().eq_ignore_ascii_case(key)
        {
            return Some(v.trim().to_owned());
        }
    }
    None
}
