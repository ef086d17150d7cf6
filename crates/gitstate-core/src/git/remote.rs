//! A remote repository (https, ssh, git, file URLs): refs listed with protocol v2 ls-refs
//! and the ref prefix — resolving and listing are one round trip and never fetch. With a
//! mirror (the CLI's default), a bare repository on disk is fetched when a commit to relate
//! is missing from it, so history relations work; without one a differing commit is
//! `drifted`. Entry type: [`RemoteRepo`]; how each connection is made and bounded in time
//! is in [`super::transport`]. Blocking, like [`super::LocalRepo`].

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use gix::ObjectId;
use gix::protocol::handshake::Ref;
use gix::protocol::transport::client::blocking_io::Transport;

use super::local::LocalRepo;
use super::names::{candidates, to_commit_id};
use super::transport::{Endpoint, Guard};
use crate::commit::{CommitId, ReportedCommit};
use crate::error::ExpectedError;
use crate::observation::{CommitInfo, Related, Relation};
use crate::plugin::Expected;

/// A remote repository.
pub struct RemoteRepo {
    /// Where it is and how each connection to it is made.
    pub(super) endpoint: Endpoint,
    /// The bare mirror, when mirroring.
    mirror: Option<Mirror>,
    /// The last listing (when, what was asked, what came back): a pass that reads refs
    /// a ref poll read within [`LISTING_FRESH`] is answered from it (a push webhook's poll
    /// and the pass it starts would otherwise ask the server twice in a few ms).
    recent: Mutex<Option<Box<Listing>>>,
    /// How long a listing answers again ([`LISTING_FRESH`] unless set).
    fresh: Duration,
}

/// A listing: when it was asked for, the names asked, the refs it found.
type Listing = (Instant, Vec<String>, Vec<(String, ObjectId)>);

/// How long a listing answers again for the same (or fewer) refs: far below any ref poll
/// period, long enough to cover a poll and the pass it starts.
const LISTING_FRESH: Duration = Duration::from_millis(100);

/// A bare repository holding the remote's history, made on its first fetch.
struct Mirror {
    dir: PathBuf,
    repo: OnceLock<LocalRepo>,
    /// When it was last fetched because a reported commit was missing (at most once per
    /// [`REFETCH_UNKNOWN`]: a target reporting a commit no branch has must not cost a
    /// fetch every pass).
    last_fetch: Mutex<Option<Instant>>,
    /// Held through each fetch: one at a time, and a fetch that waited for another
    /// first looks whether that one brought what it wanted.
    fetching: Mutex<()>,
}

/// The least time between two fetches for reported commits the mirror does not hold.
const REFETCH_UNKNOWN: Duration = Duration::from_secs(60);

impl std::fmt::Debug for RemoteRepo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteRepo")
            .field("url", &self.endpoint.shown)
            .field("mirror", &self.mirror_dir())
            .finish()
    }
}

/// Whether `repo` in the config names a remote rather than a local path.
pub fn is_remote_url(repo: &str) -> bool {
    ["https://", "http://", "ssh://", "git://", "file://"].iter().any(|s| repo.starts_with(s))
        || (repo.contains('@') && repo.contains(':') && !Path::new(repo).exists())
}

impl RemoteRepo {
    /// A remote with no local copy: refs only; a differing commit is `drifted`.
    pub fn new(url: &str) -> Result<Self, ExpectedError> {
        Ok(Self {
            endpoint: Endpoint::new(url, Self::DEFAULT_TIMEOUT),
            mirror: None,
            recent: Mutex::new(None),
            fresh: LISTING_FRESH,
        })
    }

    /// How long a whole ref listing or mirror fetch may take by default.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

    /// Sets how long a whole ref listing or mirror fetch may take, however the server
    /// trickles (`[source] timeout`). A `git://` connection is read with the time left as
    /// its read timeout; a `file://` or `ssh://` one (`GIT_SSH_COMMAND` included) runs in a
    /// process group of its own that is killed when the time is up. `https://` is bounded
    /// by its HTTP client's limits per request.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.endpoint.timeout = timeout;
        self
    }

    /// A remote mirrored into the bare repository at `dir` (created on the first fetch):
    /// its branches and tags are fetched when a commit to relate is missing from it, so
    /// behind / ahead / diverged can be computed. Resolving and listing refs never fetch.
    pub fn mirrored(url: &str, dir: &Path) -> Result<Self, ExpectedError> {
        let mirror = Mirror {
            dir: dir.to_path_buf(),
            repo: OnceLock::new(),
            last_fetch: Mutex::new(None),
            fetching: Mutex::new(()),
        };
        Ok(Self { mirror: Some(mirror), ..Self::new(url)? })
    }

    /// Runs `command` for `ssh://` URLs instead of `ssh`, as git runs `GIT_SSH_COMMAND`:
    /// through the shell, with the host and the remote command appended (so it may carry
    /// options such as `ssh -i key -o UserKnownHostsFile=...`).
    pub fn with_ssh_command(mut self, command: impl Into<String>) -> Self {
        self.endpoint.ssh_command = Some(command.into());
        self
    }

    /// How long a whole listing or fetch may take.
    pub fn timeout(&self) -> Duration {
        self.endpoint.timeout
    }

    /// The URL, credentials redacted.
    pub fn redacted_url(&self) -> &str {
        &self.endpoint.shown
    }

    fn err(&self, e: impl std::error::Error) -> ExpectedError {
        self.endpoint.err(e)
    }

    /// The mirror's repository, opened (or made) on first use.
    fn mirror_repo<'m>(&self, mirror: &'m Mirror) -> Result<&'m LocalRepo, ExpectedError> {
        if let Some(repo) = mirror.repo.get() {
            return Ok(repo);
        }
        let dir = &mirror.dir;
        let opened = if dir.join("HEAD").exists() { LocalRepo::open(dir)? } else { init_bare(dir)? };
        Ok(mirror.repo.get_or_init(|| opened))
    }

    /// What `git rev-parse` takes, read in the mirror (fetched first when it has not been);
    /// without a mirror, a full id or a ref the remote lists.
    pub(super) fn rev_parse(&self, rev: &str) -> Result<CommitId, ExpectedError> {
        let Some(mirror) = &self.mirror else {
            if let Ok(c) = CommitId::parse(rev) {
                return Ok(c);
            }
            let resolved = self.resolve(&[rev.to_owned()])?;
            return resolved
                .into_iter()
                .next()
                .ok_or_else(|| ExpectedError::BadRefName(rev.to_owned()))?
                .map(|e| e.commit);
        };
        let repo = self.mirror_repo(mirror)?;
        match repo.rev_parse(rev) {
            Ok(c) => Ok(c),
            Err(_) => {
                self.fetch(repo)?;
                repo.rev_parse(rev)
            }
        }
    }

    /// Makes sure the mirror holds `commit`, fetching once if it does not (a rollback or
    /// an adoption pushes it from there).
    pub(super) fn ensure_commit(&self, commit: &CommitId) -> Result<(), ExpectedError> {
        let Some(mirror) = &self.mirror else {
            return Err(ExpectedError::Refused {
                reference: String::new(),
                message: "a remote read without a mirror cannot be moved".into(),
            });
        };
        let repo = self.mirror_repo(mirror)?;
        if !repo.has_commit(commit) {
            self.fetch(repo)?;
        }
        if repo.has_commit(commit) {
            Ok(())
        } else {
            Err(ExpectedError::Refused {
                reference: String::new(),
                message: format!(
                    "{} is not reachable from any ref of {} (push it first)",
                    commit.short(12),
                    self.endpoint.shown
                ),
            })
        }
    }

    /// Fetches into the mirror now (a push webhook named refs): what the pass that follows
    /// needs is then there, or on its way.
    pub(super) fn prefetch(&self) -> Result<(), ExpectedError> {
        let Some(mirror) = &self.mirror else { return Ok(()) };
        let repo = self.mirror_repo(mirror)?;
        self.fetch(repo)
    }

    /// Fetches unless `commit` is in the mirror once any fetch in progress has ended.
    fn fetch_unless_held(
        &self,
        mirror: &Mirror,
        repo: &LocalRepo,
        commit: &CommitId,
    ) -> Result<(), ExpectedError> {
        let _one = mirror.fetching.lock().unwrap_or_else(|p| p.into_inner());
        if repo.has_commit(commit) {
            return Ok(());
        }
        self.fetch_now(repo)
    }

    /// Fetches the remote's branches and tags into the mirror, one fetch at a time.
    fn fetch(&self, repo: &LocalRepo) -> Result<(), ExpectedError> {
        let _one = self.mirror.as_ref().map(|m| m.fetching.lock().unwrap_or_else(|p| p.into_inner()));
        self.fetch_now(repo)
    }

    /// Fetches the remote's branches and tags into the mirror (the caller holds the lock).
    fn fetch_now(&self, mirror: &LocalRepo) -> Result<(), ExpectedError> {
        let started = Instant::now();
        let fetched = self.fetch_into(mirror);
        tracing::debug!(url = %self.endpoint.shown, took_ms = started.elapsed().as_millis() as u64, ok = fetched.is_ok(), "mirror fetched");
        fetched
    }

    fn fetch_into(&self, mirror: &LocalRepo) -> Result<(), ExpectedError> {
        let repo = gix::open_opts(mirror.path(), gix::open::Options::isolated()).map_err(|e| self.err(e))?;
        let specs = ["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"];
        let remote = repo
            .remote_at(self.endpoint.url.as_str())
            .map_err(|e| self.err(e))?
            .with_fetch_tags(gix::remote::fetch::Tags::None)
            .with_refspecs(specs, gix::remote::Direction::Fetch)
            .map_err(|e| self.err(e))?;
        let deadline = Instant::now() + self.endpoint.timeout;
        let url = self.parse_url()?;
        let fetch = |conn: gix::remote::Connection<'_, '_, '_, Box<dyn Transport + Send>>| {
            let prepare = conn.prepare_fetch(gix::progress::Discard, Default::default())?;
            prepare.receive(gix::progress::Discard, &AtomicBool::new(false))?;
            Ok::<_, gix::Error>(())
        };
        match url.scheme {
            gix::url::Scheme::Git | gix::url::Scheme::File | gix::url::Scheme::Ssh => {
                let (transport, guard) = self.endpoint.connect(url, deadline)?;
                fetch(remote.to_connection_with_transport(transport)).map_err(|e| guard.explain(self.err(e)))
            }
            _ => {
                let conn = remote.connect(gix::remote::Direction::Fetch).map_err(|e| self.err(e))?;
                let prepare = conn
                    .prepare_fetch(gix::progress::Discard, Default::default())
                    .map_err(|e| self.err(e))?;
                prepare.receive(gix::progress::Discard, &AtomicBool::new(false)).map_err(|e| self.err(e))?;
                Ok(())
            }
        }
    }

    /// Lists the remote refs matching `names` (full ref names, or `prefix*` globs): from
    /// the last listing when it asked for all of them within [`LISTING_FRESH`].
    fn ls_refs(&self, names: &[String]) -> Result<Vec<(String, ObjectId)>, ExpectedError> {
        {
            let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, asked, got)) = recent.as_deref()
                && at.elapsed() < self.fresh
                && names.iter().all(|n| asked.contains(n))
            {
                return Ok(got.clone());
            }
        }
        let asked_at = Instant::now();
        let got = self.ls_refs_direct(names)?;
        *self.recent.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(Box::new((asked_at, names.to_vec(), got.clone())));
        Ok(got)
    }

    /// Sets how long a listing answers again for the same refs (default 100 ms: a poll
    /// and the pass it starts; zero: every read asks the server).
    pub fn with_listing_fresh(mut self, fresh: Duration) -> Self {
        self.fresh = fresh;
        self
    }

    /// Forgets the last listing (this process moved a ref, or a push says refs moved).
    pub(super) fn forget_listing(&self) {
        *self.recent.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn parse_url(&self) -> Result<gix::Url, ExpectedError> {
        gix::url::parse(gix::bstr::BStr::new(self.endpoint.url.as_str())).map_err(|e| self.err(e))
    }

    /// Lists refs with protocol v2 `ls-refs` and the names' prefixes, nothing else: no
    /// repository, no refspec mapping (a mirror needs those; a listing does not).
    fn ls_refs_direct(&self, names: &[String]) -> Result<Vec<(String, ObjectId)>, ExpectedError> {
        use gix::protocol::transport::client::blocking_io::connect::{Options, connect};
        let url = self.parse_url()?;
        let deadline = Instant::now() + self.endpoint.timeout;
        // Declared first, dropped last: the transport closes its stdin before the process
        // it talks to is reaped.
        let (mut transport, guard) = match url.scheme {
            gix::url::Scheme::Git | gix::url::Scheme::File | gix::url::Scheme::Ssh => {
                self.endpoint.connect(url, deadline)?
            }
            _ => {
                let options =
                    Options { version: gix::protocol::transport::Protocol::V2, ..Default::default() };
                (connect(url, options).map_err(|e| self.err(e))?, Guard::none(self.endpoint.timeout))
            }
        };
        self.list_over(&mut transport, names).map_err(|e| guard.explain(e))
    }

    /// The handshake and `ls-refs` over a connected transport.
    fn list_over(
        &self,
        mut transport: &mut Box<dyn Transport + Send>,
        names: &[String],
    ) -> Result<Vec<(String, ObjectId)>, ExpectedError> {
        let mut progress = gix::progress::Discard;
        let handshake = gix::protocol::handshake(
            &mut transport,
            gix::protocol::transport::Service::UploadPack,
            |_| Ok(None),
            Vec::new(),
            &mut progress,
        )
        .map_err(|e| self.err(e))?;
        let refs = match handshake.refs {
            // A v1 server advertised everything during the handshake.
            Some(refs) => refs,
            None => {
                let mut prefixes = gix::protocol::ls_refs::RefPrefixes::new();
                prefixes.extend(ref_prefixes(names).into_iter().map(Into::into));
                let agent = ("agent", Some(format!("gitstate/{}", env!("CARGO_PKG_VERSION"))));
                gix::protocol::LsRefsCommand::new(Some(prefixes), &handshake.capabilities, agent)
                    .invoke_blocking(&mut transport, &mut progress, false)
                    .map_err(|e| self.err(e))?
            }
        };
        let wanted = |name: &str| {
            names.iter().any(|n| match n.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => name == n,
            })
        };
        Ok(named(refs).filter(|(name, _)| wanted(name)).collect())
    }

    /// Resolves refs as git would (short names tried as `refs/<n>`, `refs/tags/<n>`,
    /// `refs/heads/<n>`, `refs/remotes/<n>`, `refs/remotes/<n>/HEAD`), peeled.
    pub fn resolve(&self, refs: &[String]) -> Result<Vec<Result<Expected, ExpectedError>>, ExpectedError> {
        let candidates: Vec<Vec<String>> = refs.iter().map(|r| candidates(r)).collect();
        let mut wanted: Vec<String> = candidates.iter().flatten().cloned().collect();
        wanted.sort();
        wanted.dedup();
        let listed: std::collections::HashMap<String, ObjectId> =
            self.ls_refs(&wanted)?.into_iter().collect();
        Ok(refs
            .iter()
            .zip(&candidates)
            .map(|(asked, cands)| {
                if cands.is_empty() {
                    return Err(ExpectedError::BadRefName(asked.clone()));
                }
                cands
                    .iter()
                    .find_map(|c| {
                        listed.get(c).map(|id| Expected { reference: c.clone(), commit: to_commit_id(id) })
                    })
                    .ok_or_else(|| ExpectedError::RefNotFound {
                        reference: asked.clone(),
                        repo: self.endpoint.shown.clone(),
                    })
            })
            .collect())
    }

    /// Every remote ref under `prefix`, sorted by name.
    pub fn list(&self, prefix: &str) -> Result<Vec<Expected>, ExpectedError> {
        let mut out: Vec<Expected> = self
            .ls_refs(&[format!("{prefix}*")])?
            .into_iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .map(|(reference, id)| Expected { reference, commit: to_commit_id(id) })
            .collect();
        out.sort_by(|a, b| a.reference.cmp(&b.reference));
        Ok(out)
    }

    /// Relates reported commits to `expected` and names the newest `max` commits of each
    /// side, from the mirror — fetched first when it lacks the expected commit (the ref
    /// moved) or a reported one (at most once a minute for those: a commit no branch has
    /// stays unknown). Without a mirror every differing commit is `drifted`, none named.
    pub fn relate_commits(
        &self,
        expected: &CommitId,
        reported: &[ReportedCommit],
        max: usize,
    ) -> Result<Vec<Related>, ExpectedError> {
        let Some(mirror) = &self.mirror else {
            return Ok(reported
                .iter()
                .map(|r| if r.matches(expected) { Relation::InSync } else { Relation::Drifted }.into())
                .collect());
        };
        let repo = self.mirror_repo(mirror)?;
        if repo.has_commit(expected) {
            let rel = repo.relate_commits(expected, reported, max)?;
            let unknown = rel.iter().any(|r| r.relation == Relation::UnknownCommit);
            let mut last = mirror.last_fetch.lock().unwrap_or_else(|p| p.into_inner());
            if !unknown || last.is_some_and(|t| t.elapsed() < REFETCH_UNKNOWN) {
                return Ok(rel);
            }
            *last = Some(Instant::now());
            drop(last);
            self.fetch(repo)?;
        } else {
            // A push's fetch may be bringing it: waited for, not repeated.
            self.fetch_unless_held(mirror, repo, expected)?;
        }
        repo.relate_commits(expected, reported, max)
    }

    /// The commits a move brings, read in the mirror (fetched first when it lacks `to`);
    /// without a mirror, signatures cannot be read (SPEC §18: a config error with trust).
    pub fn signed_commits(
        &self,
        from: Option<&CommitId>,
        to: &CommitId,
        max: usize,
    ) -> Result<Vec<crate::signed::SignedCommit>, ExpectedError> {
        let Some(mirror) = &self.mirror else {
            return Err(ExpectedError::History {
                repo: self.redacted_url().to_owned(),
                message: "a remote read without a mirror cannot read commit signatures (mirror = true)"
                    .into(),
            });
        };
        let repo = self.mirror_repo(mirror)?;
        match repo.signed_commits(from, to, max) {
            Ok(c) => Ok(c),
            Err(_) => {
                self.fetch(repo)?;
                repo.signed_commits(from, to, max)
            }
        }
    }

    /// Subject, author and time of commits the mirror holds (none without one).
    pub fn describe(&self, commits: &[CommitId]) -> Result<Vec<CommitInfo>, ExpectedError> {
        match &self.mirror {
            Some(mirror) => self.mirror_repo(mirror)?.describe(commits),
            None => Ok(Vec::new()),
        }
    }

    /// The mirror's directory, when mirroring.
    pub fn mirror_dir(&self) -> Option<PathBuf> {
        self.mirror.as_ref().map(|m| m.dir.clone())
    }
}

/// `(full name, peeled object)` of advertised refs; unborn ones have no object.
fn named(refs: Vec<Ref>) -> impl Iterator<Item = (String, ObjectId)> {
    refs.into_iter().filter_map(|r| match r {
        Ref::Direct { full_ref_name, object }
        | Ref::Peeled { full_ref_name, object, .. }
        | Ref::Symbolic { full_ref_name, object, .. } => Some((full_ref_name.to_string(), object)),
        Ref::Unborn { .. } => None,
    })
}

fn init_bare(dir: &Path) -> Result<LocalRepo, ExpectedError> {
    gix::init_bare(dir)
        .map_err(|e| ExpectedError::Open { repo: dir.display().to_string(), message: e.to_string() })?;
    LocalRepo::open(dir)
}

/// The `ls-refs` prefixes that cover `names` (full names or `prefix*`): each cut after its
/// second `/` (`refs/heads/`), so a thousand environments cost a handful of prefixes.
fn ref_prefixes(names: &[String]) -> Vec<String> {
    let mut out: Vec<String> = names
        .iter()
        .map(|n| {
            let n = n.trim_end_matches('*');
            match n.match_indices('/').nth(1) {
                Some((i, _)) => n[..=i].to_owned(),
                None => n.to_owned(),
            }
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_prefixes_cover_many_names() {
        let names: Vec<String> = (0..1000)
            .map(|i| format!("refs/heads/environments/e{i}"))
            .chain(["refs/tags/v1".to_owned(), "refs/heads/environments/*".to_owned(), "HEAD".to_owned()])
            .collect();
        assert_eq!(ref_prefixes(&names), ["HEAD", "refs/heads/", "refs/tags/"]);
    }
}
