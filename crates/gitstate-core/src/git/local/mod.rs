//! A Git repository on this machine, read with gix. Entry type: [`LocalRepo`], opened
//! here; what it does is split by task: refs resolved like git ([`resolve`]), refs listed
//! under a prefix ([`list`]), a reftable repository's refs read through `git
//! for-each-ref` ([`reftable`]), and the history relation of a reported commit to the
//! expected one ([`history`]). All methods are blocking; [`super::GitSource`] runs them
//! off the async executor.

mod history;
mod list;
mod reftable;
mod resolve;

use std::path::{Path, PathBuf};

use gix::ObjectId;

use super::chain;
use crate::commit::CommitId;
use crate::error::ExpectedError;
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

    /// The commit `rev` names, as `git rev-parse REV^{commit}` would (a full id, a unique
    /// prefix, a branch, a tag, `HEAD~2`…).
    pub fn rev_parse(&self, rev: &str) -> Result<CommitId, ExpectedError> {
        let repo = self.gix()?;
        let not_found = |message: String| ExpectedError::RefNotFound {
            reference: format!("{rev} ({message})"),
            repo: self.display(),
        };
        let id = repo.rev_parse_single(rev).map_err(|e| not_found(e.to_string()))?;
        let commit = id
            .object()
            .map_err(|e| not_found(e.to_string()))?
            .peel_to_commit()
            .map_err(|e| not_found(format!("not a commit: {e}")))?;
        CommitId::parse(&commit.id.to_string()).map_err(|e| not_found(e.to_string()))
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

    /// Every move of `reference` its reflog records, oldest first (empty without one).
    pub fn ref_history(&self, reference: &str) -> Vec<(CommitId, jiff::Timestamp)> {
        if self.reftable
            || !reference.starts_with("refs/")
            || reference.split('/').any(|c| c.is_empty() || c == "..")
        {
            return Vec::new();
        }
        super::reflog::read_entries(&self.common_dir.join("logs").join(reference))
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
}

/// Peels `id` to a commit, if it is one or a tag of one, and the object exists.
fn commit_of(repo: &gix::Repository, id: ObjectId) -> Result<Option<ObjectId>, gix::Error> {
    let Some(object) = repo.try_find_object(id).map_err(gix::Error::from_error)? else {
        return Ok(None);
    };
    Ok(object.peel_to_kind(gix::object::Kind::Commit).ok().map(|c| c.id))
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
