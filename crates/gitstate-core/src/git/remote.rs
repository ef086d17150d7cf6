//! A remote repository (https, ssh, git, file URLs): refs listed with protocol v2 ls-refs
//! and the ref prefix, never cloned. With `mirror`, a bare mirror on disk is fetched on
//! every resolve so that history relations work; without it a differing commit is
//! `drifted`. Entry type: [`RemoteRepo`]. Blocking, like [`super::LocalRepo`].

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

    /// How long a whole ref listing or mirror fetch may take by default.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

    /// Sets how long a whole ref listing or mirror fetch may take, however the server
    /// trickles (`[source] timeout`). A `git://` connection is read with the time left as
    /// its read timeout; a `file://` or `ssh://` one (`GIT_SSH_COMMAND` included) runs in a
    /// process group of its own that is killed when the time is up. `https://` is bounded
    /// by its HTTP client's limits per request.
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

    /// How long a whole listing or fetch may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
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
        let repo = gix::open_opts(mirror.path(), gix::open::Options::isolated()).map_err(|e| self.err(e))?;
        // Map each ref to itself: only a mirror fetches, but gix wants globs on both sides.
        let specs: Vec<String> = names.iter().map(|n| format!("+{n}:{n}")).collect();
        let remote = repo
            .remote_at(self.url.as_str())
            .map_err(|e| self.err(e))?
            .with_fetch_tags(gix::remote::fetch::Tags::None)
            .with_refspecs(specs.iter().map(String::as_str), gix::remote::Direction::Fetch)
            .map_err(|e| self.err(e))?;
        let deadline = Instant::now() + self.timeout;
        let url = self.parse_url()?;
        let fetch = |conn: gix::remote::Connection<'_, '_, '_, Box<dyn Transport + Send>>| {
            let prepare = conn.prepare_fetch(gix::progress::Discard, Default::default())?;
            let refs = prepare.ref_map().remote_refs.clone();
            prepare.receive(gix::progress::Discard, &AtomicBool::new(false))?;
            Ok::<_, gix::Error>(refs)
        };
        let refs = match url.scheme {
            gix::url::Scheme::Git | gix::url::Scheme::File | gix::url::Scheme::Ssh => {
                let (transport, guard) = self.transport(url, deadline)?;
                fetch(remote.to_connection_with_transport(transport))
                    .map_err(|e| guard.explain(self.err(e)))?
            }
            _ => {
                let conn = remote.connect(gix::remote::Direction::Fetch).map_err(|e| self.err(e))?;
                let prepare = conn
                    .prepare_fetch(gix::progress::Discard, Default::default())
                    .map_err(|e| self.err(e))?;
                let refs = prepare.ref_map().remote_refs.clone();
                prepare.receive(gix::progress::Discard, &AtomicBool::new(false)).map_err(|e| self.err(e))?;
                refs
            }
        };
        Ok(named(refs).collect())
    }

    fn parse_url(&self) -> Result<gix::Url, ExpectedError> {
        gix::url::parse(gix::bstr::BStr::new(self.url.as_str())).map_err(|e| self.err(e))
    }

    /// A connection to the remote for `git://`, `file://` and `ssh://`, bounded by
    /// `deadline` as a whole; the guard cuts it when the time is up.
    fn transport(
        &self,
        url: gix::Url,
        deadline: Instant,
    ) -> Result<(Box<dyn Transport + Send>, Guard), ExpectedError> {
        match url.scheme {
            gix::url::Scheme::Git => Ok((self.daemon(url, deadline)?, Guard::none(self.timeout))),
            gix::url::Scheme::File => {
                let child = self.spawn(self.upload_pack_command(&url)?, deadline)?;
                self.process_transport(url, child)
            }
            _ => {
                let child = self.spawn(self.ssh_command_for(&url)?, deadline)?;
                self.process_transport(url, child)
            }
        }
    }

    /// Lists refs with protocol v2 `ls-refs` and the names' prefixes, nothing else: no
    /// repository, no refspec mapping (a mirror needs those; a listing does not).
    fn ls_refs_direct(&self, names: &[String]) -> Result<Vec<(String, ObjectId)>, ExpectedError> {
        use gix::protocol::transport::client::blocking_io::connect::{Options, connect};
        let url = self.parse_url()?;
        let deadline = Instant::now() + self.timeout;
        // Declared first, dropped last: the transport closes its stdin before the process
        // it talks to is reaped.
        let (mut transport, guard) = match url.scheme {
            gix::url::Scheme::Git | gix::url::Scheme::File | gix::url::Scheme::Ssh => {
                self.transport(url, deadline)?
            }
            _ => {
                let options =
                    Options { version: gix::protocol::transport::Protocol::V2, ..Default::default() };
                (connect(url, options).map_err(|e| self.err(e))?, Guard::none(self.timeout))
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

    /// A `git://` connection whose reads are buffered and bounded in time. gix's own reads
    /// the socket unbuffered (two system calls per advertised ref) and without a read
    /// timeout, so a daemon that stops answering would hang the pass.
    fn daemon(&self, url: gix::Url, deadline: Instant) -> Result<Box<dyn Transport + Send>, ExpectedError> {
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
        let read = Silence { stream, timeout: self.timeout, deadline };
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

    /// `git upload-pack` for a `file://` URL, with the environment a hook may have set for
    /// another repository (`GIT_DIR` and friends) removed, as gix and git do.
    fn upload_pack_command(&self, url: &gix::Url) -> Result<std::process::Command, ExpectedError> {
        let path = gix::path::from_bstr(url.path.as_slice().as_bstr()).map_err(|e| self.err(e))?.into_owned();
        if path.as_os_str().as_encoded_bytes().first() == Some(&b'-') {
            return Err(self.refuse("a repository path must not start with '-'"));
        }
        let mut cmd = std::process::Command::new("git");
        cmd.arg("upload-pack").arg(&path);
        for var in HOOK_ENV {
            cmd.env_remove(var);
        }
        Ok(cmd)
    }

    /// `ssh [-p port] [user@]host "git-upload-pack '<path>'"` as git runs it for OpenSSH:
    /// through `GIT_SSH_COMMAND` (a shell command, the arguments appended) when given, else
    /// `ssh` with a connect timeout and keep-alives.
    fn ssh_command_for(&self, url: &gix::Url) -> Result<std::process::Command, ExpectedError> {
        let host = url
            .host_argument_safe()
            .ok_or_else(|| self.refuse("the ssh host is missing or starts with '-'"))?;
        let login = match url.user() {
            Some(_) => {
                let user =
                    url.user_argument_safe().ok_or_else(|| self.refuse("the ssh user starts with '-'"))?;
                format!("{user}@{host}")
            }
            None => host.to_owned(),
        };
        let path = url.path.to_str().map_err(|_| self.refuse("the repository path is not UTF-8"))?;
        // `ssh://host/~user/repo` names a home directory, as in git.
        let path = path.strip_prefix('/').filter(|p| p.starts_with('~')).unwrap_or(path);
        let remote = format!("git-upload-pack '{}'", path.replace('\'', r"'\''"));
        let mut args: Vec<String> = vec!["-o".into(), "SendEnv=GIT_PROTOCOL".into()];
        if let Some(port) = url.port {
            args.extend(["-p".into(), port.to_string()]);
        }
        args.extend([login, remote]);
        let mut cmd = match &self.ssh_command {
            Some(shell) => {
                let mut c = std::process::Command::new("sh");
                c.arg("-c").arg(format!("{shell} \"$@\"")).arg(shell);
                c
            }
            None => {
                let mut c = std::process::Command::new("ssh");
                let secs = self.timeout.as_secs().max(1);
                c.args(["-o", &format!("ConnectTimeout={secs}")]);
                c.args(["-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=2"]);
                c
            }
        };
        cmd.args(args);
        Ok(cmd)
    }

    /// Starts `cmd` speaking protocol v2 on its stdin and stdout, in a process group of its
    /// own that is killed at `deadline`; its stderr is kept for errors.
    fn spawn(&self, mut cmd: std::process::Command, deadline: Instant) -> Result<Spawned, ExpectedError> {
        use std::os::unix::process::CommandExt;
        use std::process::Stdio;
        cmd.env("GIT_PROTOCOL", "version=2")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd.spawn().map_err(|e| self.err(e))?;
        let group = i32::try_from(child.id()).ok().and_then(rustix::process::Pid::from_raw);
        let stderr = Arc::new(Mutex::new(Vec::new()));
        if let Some(mut err) = child.stderr.take() {
            let keep = stderr.clone();
            std::thread::spawn(move || {
                use std::io::Read;
                let mut buf = [0u8; 1024];
                while let Ok(n @ 1..) = err.read(&mut buf) {
                    let mut k = keep.lock().unwrap_or_else(|p| p.into_inner());
                    k.extend_from_slice(&buf[..n]);
                    let over = k.len().saturating_sub(4096);
                    k.drain(..over);
                }
            });
        }
        let guard = Guard::arm(deadline, self.timeout, group);
        Ok(Spawned { child, group, stderr, guard: Some(guard) })
    }

    fn process_transport(
        &self,
        url: gix::Url,
        mut child: Spawned,
    ) -> Result<(Box<dyn Transport + Send>, Guard), ExpectedError> {
        let (Some(stdin), Some(stdout)) = (child.child.stdin.take(), child.child.stdout.take()) else {
            return Err(self.refuse("no pipes to the remote's git upload-pack"));
        };
        let mut guard = child.guard.take().unwrap_or_else(|| Guard::none(self.timeout));
        guard.stderr = Some(child.stderr.clone());
        // gix reads a spawned process unbuffered: read it through a buffer.
        let transport = ProcessTransport {
            inner: gix::protocol::transport::client::git::blocking_io::Connection::new(
                std::io::BufReader::with_capacity(64 * 1024, stdout),
                stdin,
                gix::protocol::transport::Protocol::V2,
                url.path.clone(),
                None::<(String, Option<u16>)>,
                gix::protocol::transport::client::git::ConnectMode::Process,
                false,
            ),
            _child: child,
        };
        Ok((Box::new(transport), guard))
    }

    fn refuse(&self, message: &str) -> ExpectedError {
        ExpectedError::Remote { url: self.shown.clone(), message: message.to_owned() }
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
pub(super) const HOOK_ENV: &[&str] = &[
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

/// A process the remote is read through (`git upload-pack`, `ssh`): its group killed (if
/// still running) and the process reaped when dropped.
struct Spawned {
    child: std::process::Child,
    group: Option<rustix::process::Pid>,
    stderr: Arc<Mutex<Vec<u8>>>,
    guard: Option<Guard>,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(pg) = self.group {
            let _ = rustix::process::kill_process_group(pg, rustix::process::Signal::KILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A process connection that owns its process, so that the process lives exactly as long
/// as the connection (its stdin is closed first, then the group is killed and reaped).
struct ProcessTransport<R: std::io::Read + Send, W: std::io::Write + Send> {
    inner: gix::protocol::transport::client::git::blocking_io::Connection<R, W>,
    _child: Spawned,
}

impl<R: std::io::Read + Send, W: std::io::Write + Send> gix::protocol::transport::client::TransportWithoutIO
    for ProcessTransport<R, W>
{
    fn to_url(&self) -> std::borrow::Cow<'_, gix::bstr::BStr> {
        self.inner.to_url()
    }
    fn connection_persists_across_multiple_requests(&self) -> bool {
        self.inner.connection_persists_across_multiple_requests()
    }
    fn configure(&mut self, config: &dyn std::any::Any) -> Result<(), gix::Error> {
        self.inner.configure(config)
    }
}

impl<R: std::io::Read + Send, W: std::io::Write + Send> Transport for ProcessTransport<R, W> {
    fn handshake<'a>(
        &mut self,
        service: gix::protocol::transport::Service,
        extra_parameters: &'a [(&'a str, Option<&'a str>)],
    ) -> Result<
        gix::protocol::transport::client::blocking_io::SetServiceResponse<'_>,
        gix::protocol::transport::client::Error,
    > {
        self.inner.handshake(service, extra_parameters)
    }
    fn request(
        &mut self,
        write_mode: gix::protocol::transport::client::WriteMode,
        on_into_read: gix::protocol::transport::client::MessageKind,
        trace: bool,
    ) -> Result<
        gix::protocol::transport::client::blocking_io::RequestWriter<'_>,
        gix::protocol::transport::client::Error,
    > {
        self.inner.request(write_mode, on_into_read, trace)
    }
}

/// The deadline of one operation: a watchdog thread that kills the process group the
/// remote is read through when the time is up; errors after that read as a timeout.
struct Guard {
    cancel: Option<std::sync::mpsc::Sender<()>>,
    fired: Arc<AtomicBool>,
    timeout: Duration,
    stderr: Option<Arc<Mutex<Vec<u8>>>>,
}

impl Guard {
    /// No watchdog (a socket bounds its own reads).
    fn none(timeout: Duration) -> Self {
        Self { cancel: None, fired: Arc::new(AtomicBool::new(false)), timeout, stderr: None }
    }

    fn arm(deadline: Instant, timeout: Duration, group: Option<rustix::process::Pid>) -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let fired = Arc::new(AtomicBool::new(false));
        let flag = fired.clone();
        let left = deadline.saturating_duration_since(Instant::now());
        std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(left) {
                flag.store(true, Ordering::SeqCst);
                if let Some(pg) = group {
                    let _ = rustix::process::kill_process_group(pg, rustix::process::Signal::KILL);
                }
            }
        });
        Self { cancel: Some(tx), fired, timeout, stderr: None }
    }

    /// The error to report: a timeout when the watchdog cut the connection, else `e` with
    /// what the process said on stderr.
    fn explain(&self, e: ExpectedError) -> ExpectedError {
        let ExpectedError::Remote { url, message } = e else { return e };
        if self.fired.load(Ordering::SeqCst) {
            return ExpectedError::Remote {
                url,
                message: format!(
                    "timed out: the remote did not complete within {} ([source] timeout)",
                    humantime::format_duration(self.timeout)
                ),
            };
        }
        let said = self
            .stderr
            .as_ref()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .unwrap_or_default();
        let said = String::from_utf8_lossy(&said);
        let said = crate::text::escape_control(said.trim()).into_owned();
        let message = if said.is_empty() { message } else { format!("{message}: {said}") };
        ExpectedError::Remote { url, message }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // Wakes the watchdog, which then exits without acting.
        self.cancel.take();
    }
}

/// A socket whose read timeout reads as such ("sent nothing for 30s"), not as the
/// `EAGAIN` ("Resource temporarily unavailable") the system reports, and whose reads stop
/// at the operation's deadline however the server trickles.
struct Silence {
    stream: std::net::TcpStream,
    timeout: Duration,
    deadline: Instant,
}

impl std::io::Read for Silence {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::io::ErrorKind::{TimedOut, WouldBlock};
        let left = self.deadline.saturating_duration_since(Instant::now());
        let whole = || {
            std::io::Error::new(
                TimedOut,
                format!(
                    "timed out: the git daemon did not complete within {} ([source] timeout)",
                    humantime::format_duration(self.timeout)
                ),
            )
        };
        if left.is_zero() {
            return Err(whole());
        }
        let wait = left.min(self.timeout);
        self.stream.set_read_timeout(Some(wait))?;
        self.stream.read(buf).map_err(|e| match e.kind() {
            WouldBlock | TimedOut if wait < self.timeout => whole(),
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
pub(super) fn candidates(name: &str) -> Vec<String> {
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
