//! One child process, run under tokio by the rules of [`gitstate_core::child`]: argv (never
//! a shell) in a directory, stdin closed, in a process group of its own that a
//! [`GroupGuard`] kills if the run is dropped; its output read as it comes, only a bounded
//! part kept ([`Keep`]: the first bytes of a report, the [`Tail`] of a log); stopped at a
//! deadline or on request ([`Running::wait`]) by signalling the whole group
//! ([`Running::stop`]: SIGKILL at once, or SIGTERM then SIGKILL after a grace); and its
//! output given up [`OUTPUT_GRACE`] after it exits, so that what it left running in the
//! background never holds gitstate. Entry point: [`spawn`].

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use gitstate_core::child::{GroupGuard, ProcessGroup, Tail, own_group};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long output is still read once the command has exited: what it left in the
/// background may hold the pipe open for ever.
pub const OUTPUT_GRACE: Duration = Duration::from_millis(500);

/// What a run could not start with.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SpawnError {
    /// The pipe stdout and stderr share could not be made.
    #[error("cannot create a pipe: {0}")]
    Pipe(#[source] std::io::Error),
    /// The program could not be started (not found, not executable …).
    #[error("cannot run {program}: {source}")]
    Run {
        /// `argv[0]` as configured.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// `argv` as a command run in `cwd`: `argv[0]` with a `/` in it is taken relative to `cwd`
/// (the config's directory), a bare name is looked up on `PATH`. `argv` is not empty.
pub(crate) fn command(argv: &[String], cwd: &Path) -> std::process::Command {
    let first = &argv[0];
    let p = PathBuf::from(first);
    let program = if p.is_relative() && first.contains('/') { cwd.join(p) } else { p };
    let mut cmd = std::process::Command::new(program);
    cmd.args(&argv[1..]).current_dir(cwd);
    cmd
}

/// How an exit reads in a message: `exited 3`, or `was killed by a signal`.
pub(crate) fn exit_text(code: Option<i32>) -> String {
    code.map_or("was killed by a signal".to_owned(), |c| format!("exited {c}"))
}

/// What is kept of one output pipe.
pub(crate) trait Keep: Send {
    /// Takes what was read; false when nothing more is wanted (the pipe is then closed).
    fn keep(&mut self, bytes: &[u8]) -> bool;
}

impl Keep for Tail {
    fn keep(&mut self, bytes: &[u8]) -> bool {
        self.push(bytes);
        true
    }
}

/// The first `limit` bytes; reading stops at the first byte beyond.
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) bytes: Vec<u8>,
    limit: usize,
    /// More than `limit` came.
    pub(crate) overflow: bool,
}

impl Head {
    pub(crate) fn new(limit: usize) -> Self {
        Self { bytes: Vec::new(), limit, overflow: false }
    }
}

impl Keep for Head {
    fn keep(&mut self, bytes: &[u8]) -> bool {
        self.bytes.extend_from_slice(bytes);
        if self.bytes.len() > self.limit {
            self.bytes.truncate(self.limit);
            // Read no further: the rest is not looked at.
            self.overflow = true;
            return false;
        }
        true
    }
}

/// Where a child's output goes.
pub(crate) enum Capture<O, E> {
    /// Stdout and stderr each in a pipe of its own.
    Apart(O, E),
    /// Stdout and stderr interleaved in one pipe, as a terminal shows them.
    Together(O),
}

type Pipe = Box<dyn AsyncRead + Send + Unpin>;

/// One output pipe, read as it comes; closed at end of file or when nothing more is kept.
struct Reader<K> {
    pipe: Option<Pipe>,
    kept: K,
}

impl<K: Keep> Reader<K> {
    /// Reads once (cancel-safe); once the pipe is closed this never returns.
    async fn read(&mut self) {
        let Some(p) = &mut self.pipe else { return std::future::pending().await };
        let mut chunk = [0u8; 8192];
        match p.read(&mut chunk).await {
            Ok(0) | Err(_) => self.pipe = None,
            Ok(n) => {
                if !self.kept.keep(&chunk[..n]) {
                    self.pipe = None;
                }
            }
        }
    }
}

/// How a wait for the child ended.
pub(crate) enum Ended {
    /// It exited (or waiting for it failed).
    Exited(std::io::Result<ExitStatus>),
    /// The deadline came first.
    TimedOut,
    /// The stop token was cancelled first.
    Cancelled,
}

/// A child started by [`spawn`], with what is kept of its output.
pub(crate) struct Running<O, E> {
    child: tokio::process::Child,
    guard: GroupGuard,
    out: Reader<O>,
    /// Stderr; closed from the start when interleaved with stdout.
    err: Reader<E>,
}

/// Starts `cmd` with stdin closed, in a process group of its own, its output captured as
/// `capture` says. `program` names it in errors.
pub(crate) fn spawn<O: Keep, E: Keep + Default>(
    mut cmd: std::process::Command,
    program: &str,
    capture: Capture<O, E>,
) -> Result<Running<O, E>, SpawnError> {
    cmd.stdin(Stdio::null());
    own_group(&mut cmd);
    let (out_keep, err_keep, shared) = match capture {
        Capture::Apart(o, e) => {
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
            (o, e, None)
        }
        Capture::Together(o) => {
            let (reader, writer) = std::io::pipe().map_err(SpawnError::Pipe)?;
            let writer2 = writer.try_clone().map_err(SpawnError::Pipe)?;
            cmd.stdout(Stdio::from(writer)).stderr(Stdio::from(writer2));
            (o, E::default(), Some(reader))
        }
    };
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(true);
    let spawned = cmd.spawn();
    // Our copies of a shared pipe's write end must go, or the reader never sees EOF.
    drop(cmd);
    let mut child = spawned.map_err(|source| SpawnError::Run { program: program.to_owned(), source })?;
    let guard = GroupGuard::new(child.id().and_then(ProcessGroup::led_by));
    let (out, err): (Option<Pipe>, Option<Pipe>) = match shared {
        Some(reader) => {
            let pipe = tokio::net::unix::pipe::Receiver::from_owned_fd(reader.into()).ok();
            (pipe.map(|p| Box::new(p) as Pipe), None)
        }
        None => (
            child.stdout.take().map(|p| Box::new(p) as Pipe),
            child.stderr.take().map(|p| Box::new(p) as Pipe),
        ),
    };
    Ok(Running {
        child,
        guard,
        out: Reader { pipe: out, kept: out_keep },
        err: Reader { pipe: err, kept: err_keep },
    })
}

impl<O: Keep, E: Keep> Running<O, E> {
    /// Waits for the child to exit, reading its output meanwhile, until `deadline` or until
    /// `stop` is cancelled.
    pub(crate) async fn wait(&mut self, deadline: Instant, stop: Option<&CancellationToken>) -> Ended {
        let cancelled = async {
            match stop {
                Some(s) => s.cancelled().await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(cancelled);
        loop {
            tokio::select! {
                status = self.child.wait() => return Ended::Exited(status),
                () = self.out.read() => {}
                () = self.err.read() => {}
                () = tokio::time::sleep_until(deadline) => return Ended::TimedOut,
                () = &mut cancelled => return Ended::Cancelled,
            }
        }
    }

    /// Stops the child and its whole group, and reaps the child: with a zero `grace`,
    /// SIGKILL at once; else SIGTERM, then SIGKILL when the child or any other member of
    /// the group is still there `grace` later, reading output meanwhile. True when SIGKILL
    /// was sent. The group is left alone afterwards.
    pub(crate) async fn stop(&mut self, grace: Duration) -> bool {
        let Some(group) = self.guard.group() else {
            let _ = self.child.kill().await;
            return true;
        };
        tracing::debug!(?group, ?grace, "stopping a child's process group");
        if !grace.is_zero() {
            group.terminate();
            let deadline = Instant::now() + grace;
            let mut reaped = false;
            loop {
                // The child is reaped first (a zombie still counts as a member of the group).
                if reaped && group.is_empty() {
                    self.guard.disarm();
                    return false;
                }
                tokio::select! {
                    _ = self.child.wait(), if !reaped => reaped = true,
                    () = self.out.read() => {}
                    () = self.err.read() => {}
                    () = tokio::time::sleep(Duration::from_millis(50)), if reaped => {}
                    () = tokio::time::sleep_until(deadline) => break,
                }
            }
        }
        group.kill();
        // Reaps it; a child reaped already refuses the signal, and its status is kept.
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        self.guard.disarm();
        true
    }

    /// Leaves what the child started running when it is dropped: work it deliberately left
    /// in the background once it exited. Without this, a drop kills the group.
    pub(crate) fn leave_group(&mut self) {
        self.guard.disarm();
    }

    /// Reads the output until end of file, for at most `limit` ([`OUTPUT_GRACE`] once the
    /// child has exited).
    pub(crate) async fn finish_output(&mut self, limit: Duration) {
        let (out, err) = (&mut self.out, &mut self.err);
        let _ = tokio::time::timeout(limit, async {
            while out.pipe.is_some() || err.pipe.is_some() {
                tokio::select! {
                    () = out.read() => {}
                    () = err.read() => {}
                }
            }
        })
        .await;
    }

    /// What was kept of stdout (or of both, interleaved) and of stderr.
    pub(crate) fn output(&self) -> (&O, &E) {
        (&self.out.kept, &self.err.kept)
    }
}
