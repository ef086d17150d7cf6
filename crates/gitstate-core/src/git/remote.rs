//! A remote repository (https, ssh, git, file URLs): refs listed with protocol v2 ls-refs
//! and the ref prefix, never cloned. With `mirror`, a bare mirror on disk is fetched on
//! every resolve so that history relations work; without it a differing commit is
//! `drifted`. Entry type: [`RemoteRepo`]. Blocking, like [`super::LocalRepo`].

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use gix::ObjectId;
use gix::bstr::ByteSlice;
use gix::protocol::handshake::Ref;
use gix::protocol::transport::client::blocking_io::Transport;

use super::chain;
use super::local::{LocalRepo, to_commit_id};
use crate::commit::{CommitId, ReportedCommit};
use crate::error::ExpectedError;
use crate::observation::Relation;
use crate::plugin::Expected;
use crate::redact::redact_url;

/// A remote repository.
pub struct RemoteRepo {
    url: String,
    shown: String,
    /// The bare mirror, when mirroring.
    mirror: Option<LocalRepo>,
    timeout: Duration,
    ssh_command: Option<String>,
}

impl std::fmt::Debug for RemoteRepo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteRepo").field("url", &self.shown).field("mirror", &self.mirror_dir()).finish()
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
            url: url.to_owned(),
            shown: redact_url(url),
            mirror: None,
            timeout: Self::DEFAULT_TIMEOUT,
            ssh_command: None,
        })
    }

    /// How long a `git://` daemon may take by default to accept, or to send the next bytes.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

    /// Sets how long a `git://` daemon may take to accept, or to send the next bytes, and
    /// an `ssh://` server to accept and greet (unless [`Self::with_ssh_command`] replaces
    /// `ssh`). `https://` has its HTTP client's 30 s limit per request.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// A remote mirrored into the bare repository at `dir` (created when missing); objects
    /// are fetched on every resolve so relations can be computed.
    pub fn mirrored(url: &str, dir: &Path) -> Result<Self, ExpectedError> {
        let store = if dir.join("HEAD").exists() { LocalRepo::open(dir)? } else { init_bare(dir)? };
        Ok(Self { mirror: Some(store), ..Self::new(url)? })
    }

    /// Runs `command` for `ssh://` URLs instead of `ssh`, as git runs `GIT_SSH_COMMAND`:
    /// through the shell, with the host and the remote command appended (so it may carry
    /// options such as `ssh -i key -o UserKnownHostsFile=...`).
    pub fn with_ssh_command(mut self, command: impl Into<String>) -> Self {
        self.ssh_command = Some(command.into());
        self
    }

    /// The ssh command for `ssh://` URLs: the one given, else `ssh` bounded in time like a
    /// `git://` connection (connect and banner within the timeout, a silent server dropped
    /// after 30 s), so that a black-holed host fails the pass instead of hanging it.
    fn ssh_program(&self) -> String {
        self.ssh_command.clone().unwrap_or_else(|| {
            let secs = self.timeout.as_secs().max(1);
            format!("ssh -o ConnectTimeout={secs} -o ServerAliveInterval=15 -o ServerAliveCountMax=2")
        })
    }

    /// The URL, credentials redacted.
    pub fn redacted_url(&self) -> &str {
        &self.shown
    }

    fn err(&self, e: impl std::error::Error) -> ExpectedError {
        ExpectedError::Remote {
            url: self.shown.clone(),
            message: strip_secrets(&chain(&e), &self.url, &self.shown),
        }
    }

    /// Lists the remote refs matching `names` (full ref names, or `prefix*` globs), fetching
    /// their objects into the mirror when there is one. Returns `(full name, peeled object)`.
    fn ls_refs(&self, names: &[String]) -> Result<Vec<(String, ObjectId)>, ExpectedError> {
        let Some(mirror) = &self.mirror else {
            return self.ls_refs_direct(names);
        };
        let overrides = [format!("core.sshCommand={}", self.ssh_program())];
        let options = gix::open::Options::isolated().config_overrides(overrides);
        let repo = gix::open_opts(mirror.path(), options).map_err(|e| self.err(e))?;
        // Map each ref to itself: only a mirror fetches, but gix wants globs on both sides.
        let specs: Vec<String> = names.iter().map(|n| format!("+{n}:{n}")).collect();
        let remote = repo
            .remote_at(self.url.as_str())
            .map_err(|e| self.err(e))?
            .with_fetch_tags(gix::remote::fetch::Tags::None)
            .with_refspecs(specs.iter().map(String::as_str), gix::remote::Direction::Fetch)
            .map_err(|e| self.err(e))?;
        let conn = remote.connect(gix::remote::Direction::Fetch).map_err(|e| self.err(e))?;
        let prepare =
            conn.prepare_fetch(gix::progress::Discard, Default::default()).map_err(|e| self.err(e))?;
        let refs = prepare.ref_map().remote_refs.clone();
        prepare.receive(gix::progress::Discard, &AtomicBool::new(false)).map_err(|e| self.err(e))?;
        Ok(named(refs).collect())
    }

    /// Lists refs with protocol v2 `ls-refs` and the names' prefixes, nothing else: no
    /// repository, no refspec mapping (a mirror needs those; a listing does not).
    fn ls_refs_direct(&self, names: &[String]) -> Result<Vec<(String, ObjectId)>, ExpectedError> {
        use gix::protocol::transport::client::blocking_io::connect::{Options, connect};
        let url = gix::url::parse(gix::bstr::BStr::new(self.url.as_str())).map_err(|e| self.err(e))?;
        // Declared first, dropped last: the transport closes its stdin before it is reaped.
        let mut _upload_pack = None;
        let mut transport = match url.scheme {
            gix::url::Scheme::Git => self.daemon(url)?,
            gix::url::Scheme::File => {
                let (transport, child) = self.upload_pack(&url)?;
                _upload_pack = Some(child);
                transport
            }
            _ => {
                let mut options =
                    Options { version: gix::protocol::transport::Protocol::V2, ..Default::default() };
                options.ssh.command = Some(self.ssh_program().into());
                connect(url, options).map_err(|e| self.err(e))?
            }
        };
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

    /// A `git://` connection whose reads are buffered and bounded in time. gix's own reads
    /// the socket unbuffered (two system calls per advertised ref) and without a read
    /// timeout, so a daemon that stops answering would hang the pass.
    fn daemon(&self, url: gix::Url) -> Result<Box<dyn Transport + Send>, ExpectedError> {
        use std::net::{TcpStream, ToSocketAddrs};
        let host = url.host().unwrap_or_default().to_owned();
        let port = url.port.unwrap_or(9418);
        let addr =
            (host.as_str(), port).to_socket_addrs().map_err(|e| self.err(e))?.next().ok_or_else(|| {
                ExpectedError::Remote { url: self.shown.clone(), message: format!("{host} has no address") }
            })?;
        let stream = TcpStream::connect_timeout(&addr, self.timeout).map_err(|e| self.err(e))?;
        for set in [TcpStream::set_read_timeout, TcpStream::set_write_timeout] {
            set(&stream, Some(self.timeout)).map_err(|e| self.err(e))?;
        }
        let write = stream.try_clone().map_err(|e| self.err(e))?;
        let read = Silence { stream, timeout: self.timeout };
        Ok(Box::new(gix::protocol::transport::client::git::blocking_io::Connection::new(
            std::io::BufReader::with_capacity(64 * 1024, read),
            write,
            gix::protocol::transport::Protocol::V2,
            url.path,
            Some((host, url.port)),
            gix::protocol::transport::client::git::ConnectMode::Daemon,
            false,
        )))
    }

    /// `git upload-pack` for a `file://` URL, its output read through a buffer (gix reads a
    /// spawned process unbuffered too), with the environment a hook may have set for
    /// another repository (`GIT_DIR` and friends) removed, as gix and git do.
    fn upload_pack(&self, url: &gix::Url) -> Result<(Box<dyn Transport + Send>, UploadPack), ExpectedError> {
        use std::process::{Command, Stdio};
        let path = gix::path::from_bstr(url.path.as_slice().as_bstr()).map_err(|e| self.err(e))?.into_owned();
        if path.as_os_str().as_encoded_bytes().first() == Some(&b'-') {
            return Err(ExpectedError::Remote {
                url: self.shown.clone(),
                message: "a repository path must not start with '-'".into(),
            });
        }
        let mut cmd = Command::new("git");
        cmd.arg("upload-pack").arg(&path).env("GIT_PROTOCOL", "version=2");
        for var in HOOK_ENV {
            cmd.env_remove(var);
        }
        let mut child = UploadPack(
            cmd.stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| self.err(e))?,
        );
        let (Some(stdin), Some(stdout)) = (child.0.stdin.take(), child.0.stdout.take()) else {
            return Err(ExpectedError::Remote {
                url: self.shown.clone(),
                message: "no pipes to git upload-pack".into(),
            });
        };
        let transport = gix::protocol::transport::client::git::blocking_io::Connection::new(
            std::io::BufReader::with_capacity(64 * 1024, stdout),
            stdin,
            gix::protocol::transport::Protocol::V2,
            url.path.clone(),
            None::<(String, Option<u16>)>,
            gix::protocol::transport::client::git::ConnectMode::Process,
            false,
        );
        Ok((Box::new(transport), child))
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
                        repo: self.shown.clone(),
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

    /// Relations from the mirror; without one, every differing commit is `drifted`.
    pub fn relate(
        &self,
        expected: &CommitId,
        reported: &[ReportedCommit],
    ) -> Result<Vec<Relation>, ExpectedError> {
        if let Some(mirror) = &self.mirror {
            return mirror.relate(expected, reported);
        }
        Ok(reported
            .iter()
            .map(|r| if r.matches(expected) { Relation::InSync } else { Relation::Drifted })
            .collect())
    }

    /// The mirror's directory, when mirroring.
    pub fn mirror_dir(&self) -> Option<PathBuf> {
        self.mirror.as_ref().map(|m| m.path().to_path_buf())
    }
}

/// Variables that point git at another repository; a hook running gitstate may have set
/// them, and a spawned `git upload-pack` must not see them.
const HOOK_ENV: &[&str] = &[
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_CONFIG",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
    "GIT_OBJECT_DIRECTORY",
    "GIT_DIR",
    "GIT_COMMON_DIR",
    "GIT_WORK_TREE",
    "GIT_IMPLICIT_WORK_TREE",
    "GIT_GRAFT_FILE",
    "GIT_INDEX_FILE",
    "GIT_NO_REPLACE_OBJECTS",
    "GIT_REPLACE_REF_BASE",
    "GIT_PREFIX",
    "GIT_INTERNAL_SUPER_PREFIX",
    "GIT_SHALLOW_FILE",
];

/// A spawned `git upload-pack`, killed (if still running) and reaped when dropped.
struct UploadPack(std::process::Child);

impl Drop for UploadPack {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A socket whose read timeout reads as such ("no answer within 30s"), not as the
/// `EAGAIN` ("Resource temporarily unavailable") the system reports.
struct Silence {
    stream: std::net::TcpStream,
    timeout: Duration,
}

impl std::io::Read for Silence {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::io::ErrorKind::{TimedOut, WouldBlock};
        self.stream.read(buf).map_err(|e| match e.kind() {
            WouldBlock | TimedOut => std::io::Error::new(
                TimedOut,
                format!("the git daemon sent nothing for {}s", self.timeout.as_secs_f64()),
            ),
            _ => e,
        })
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

/// The full names git tries for `name` (gitrevisions(7)), valid ones only.
fn candidates(name: &str) -> Vec<String> {
    let list = if name.starts_with("refs/") {
        vec![name.to_owned()]
    } else {
        vec![
            format!("refs/{name}"),
            format!("refs/tags/{name}"),
            format!("refs/heads/{name}"),
            format!("refs/remotes/{name}"),
            format!("refs/remotes/{name}/HEAD"),
        ]
    };
    list.into_iter()
        .filter(|c| <&gix::refs::FullNameRef>::try_from(c.as_str()).is_ok() && !c.contains(['*', '?', '[']))
        .collect()
}

/// gix errors may echo the URL; make sure its credentials never come back.
fn strip_secrets(msg: &str, url: &str, shown: &str) -> String {
    if url == shown { msg.to_owned() } else { msg.replace(url, shown) }
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

    #[test]
    fn short_names_expand_like_git() {
        assert_eq!(candidates("refs/heads/environments/prod"), ["refs/heads/environments/prod"]);
        assert_eq!(candidates("environments/prod")[2], "refs/heads/environments/prod");
        assert!(candidates("a..b").is_empty());
        assert!(candidates("x*").is_empty());
    }
}
