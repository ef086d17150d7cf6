//! How gitstate talks to a remote for `git://`, `file://` and `ssh://`, every connection
//! bounded as a whole by `[source] timeout`: a `git://` socket read with the time left
//! ([`Silence`]), `git upload-pack` or `ssh` spawned in a process group of its own
//! ([`crate::child`]) that a watchdog ([`Guard`]) kills when the time is up, their output
//! read through a buffer ([`ProcessTransport`]). `ssh` runs as git runs OpenSSH,
//! `GIT_SSH_COMMAND` included. Entry point: [`Endpoint::connect`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gix::bstr::ByteSlice;
use gix::protocol::transport::client::blocking_io::Transport;

use super::chain;
use crate::child::{GroupGuard, ProcessGroup, Tail, own_group};
use crate::error::ExpectedError;
use crate::redact::redact_url;

/// Stderr kept from `git upload-pack` or `ssh`, for the error of a failed connection.
const STDERR_TAIL: usize = 4096;

/// A remote's address and how to reach it: what every connection to it needs.
pub(super) struct Endpoint {
    /// The URL as configured, credentials included.
    pub(super) url: String,
    /// The URL as shown, credentials redacted.
    pub(super) shown: String,
    /// How long a whole listing or fetch may take.
    pub(super) timeout: Duration,
    /// Run instead of `ssh`, as git runs `GIT_SSH_COMMAND`.
    pub(super) ssh_command: Option<String>,
}

impl Endpoint {
    /// The remote at `url`, reached with the defaults.
    pub(super) fn new(url: &str, timeout: Duration) -> Self {
        Self { url: url.to_owned(), shown: redact_url(url), timeout, ssh_command: None }
    }

    /// `e` as an error of this remote, its credentials never echoed.
    pub(super) fn err(&self, e: impl std::error::Error) -> ExpectedError {
        ExpectedError::Remote {
            url: self.shown.clone(),
            message: strip_secrets(&chain(&e), &self.url, &self.shown),
        }
    }

    /// A connection to the remote for `git://`, `file://` and `ssh://`, bounded by
    /// `deadline` as a whole; the guard cuts it when the time is up.
    pub(super) fn connect(
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
        // gix writes a request as several small pkt-lines: with Nagle's algorithm each one
        // after the first waits for the daemon's delayed ACK (40 ms on Linux) — most of a
        // push's reaction time over `git daemon` (SPEC §19).
        stream.set_nodelay(true).map_err(|e| self.err(e))?;
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
        let mut cmd = super::env::git();
        cmd.arg("upload-pack").arg(&path);
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
    /// own that is killed at `deadline`; the tail of its stderr is kept for errors.
    fn spawn(&self, mut cmd: std::process::Command, deadline: Instant) -> Result<Spawned, ExpectedError> {
        use std::process::Stdio;
        cmd.env("GIT_PROTOCOL", "version=2")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = own_group(&mut cmd).spawn().map_err(|e| self.err(e))?;
        let group = ProcessGroup::led_by(child.id());
        let stderr = Arc::new(Mutex::new(Tail::new(STDERR_TAIL)));
        if let Some(mut err) = child.stderr.take() {
            let keep = stderr.clone();
            std::thread::spawn(move || {
                use std::io::Read;
                let mut buf = [0u8; 1024];
                while let Ok(n @ 1..) = err.read(&mut buf) {
                    keep.lock().unwrap_or_else(|p| p.into_inner()).push(&buf[..n]);
                }
            });
        }
        let guard = Guard::arm(deadline, self.timeout, group);
        Ok(Spawned { group: GroupGuard::new(group), child, stderr, guard: Some(guard) })
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
}

/// A process the remote is read through (`git upload-pack`, `ssh`): its group killed (if
/// still running) and the process reaped when dropped.
struct Spawned {
    group: GroupGuard,
    child: std::process::Child,
    stderr: Arc<Mutex<Tail>>,
    guard: Option<Guard>,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.group.kill_now();
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
pub(super) struct Guard {
    cancel: Option<std::sync::mpsc::Sender<()>>,
    fired: Arc<AtomicBool>,
    timeout: Duration,
    stderr: Option<Arc<Mutex<Tail>>>,
}

impl Guard {
    /// No watchdog (a socket bounds its own reads).
    pub(super) fn none(timeout: Duration) -> Self {
        Self { cancel: None, fired: Arc::new(AtomicBool::new(false)), timeout, stderr: None }
    }

    fn arm(deadline: Instant, timeout: Duration, group: Option<ProcessGroup>) -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let fired = Arc::new(AtomicBool::new(false));
        let flag = fired.clone();
        let left = deadline.saturating_duration_since(Instant::now());
        std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(left) {
                flag.store(true, Ordering::SeqCst);
                if let Some(group) = group {
                    group.kill();
                }
            }
        });
        Self { cancel: Some(tx), fired, timeout, stderr: None }
    }

    /// The error to report: a timeout when the watchdog cut the connection, else `e` with
    /// what the process said on stderr.
    pub(super) fn explain(&self, e: ExpectedError) -> ExpectedError {
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
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).bytes().to_vec())
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

/// gix errors may echo the URL; make sure its credentials never come back.
fn strip_secrets(msg: &str, url: &str, shown: &str) -> String {
    if url == shown { msg.to_owned() } else { msg.replace(url, shown) }
}
