//! The exec probe (SPEC §10): for what has no HTTP endpoint or tags — a host over ssh,
//! `kubectl`, a container label. Runs argv (never a shell) in the config's directory,
//! stdin closed, with `GITSTATE_ENVIRONMENT` and `GITSTATE_TARGET` set; reads at most
//! `max_bytes` of stdout and the last KiB of stderr; a run past its `timeout` is killed
//! with its whole process group. Stdout is read as an HTTP body is (`report`: the same
//! parser, `sha_pointer` applies) or as `INSTANCE COMMIT` lines (`lines`).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use gitstate_core::{ActualStateProbe, ProbeContext, ProbeFailure, Reading, ReportedCommit, redact_text};
use rustix::process::{Pid, Signal, kill_process_group};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

use crate::remediate::command::OUTPUT_GRACE;

/// How stdout is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecFormat {
    /// As an HTTP body: a plain commit id, or JSON read at `sha_pointer` or the usual
    /// pointers. The one instance is the target.
    #[default]
    Report,
    /// One `INSTANCE COMMIT` pair per non-empty line.
    Lines,
}

/// An exec target, as configured.
#[derive(Debug, Clone)]
pub struct ExecTarget {
    /// argv; `{environment}` already substituted.
    pub command: Vec<String>,
    /// How stdout is read.
    pub format: ExecFormat,
    /// JSON pointer to the commit (`report` only).
    pub sha_pointer: Option<String>,
    /// The whole run.
    pub timeout: Duration,
    /// More stdout than this is `invalid`.
    pub max_bytes: usize,
}

impl ExecTarget {
    /// Default `timeout`.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
    /// Default `max_bytes`.
    pub const DEFAULT_MAX_BYTES: usize = 64 * 1024;
}

/// Stderr kept for the error of a failed run.
const STDERR_TAIL: usize = 1024;

/// Runs one [`ExecTarget`] per observation.
#[derive(Debug, Clone)]
pub struct ExecProbe {
    target: ExecTarget,
    cwd: PathBuf,
}

impl ExecProbe {
    /// `command[0]` with a `/` in it is taken relative to `cwd` (the config's directory);
    /// a bare name is looked up on `PATH`.
    pub fn new(target: ExecTarget, cwd: PathBuf) -> Self {
        Self { target, cwd }
    }

    fn program(&self) -> PathBuf {
        let first = &self.target.command[0];
        let p = PathBuf::from(first);
        if p.is_relative() && first.contains('/') { self.cwd.join(p) } else { p }
    }
}

/// What a finished run left.
struct Ran {
    code: Option<i32>,
    stdout: Vec<u8>,
    overflow: bool,
    stderr: Vec<u8>,
}

/// Reads `pipe` into `buf`, keeping at most `keep` bytes: the first ones (`from_start`) or
/// the last ones; true once more than `keep` came.
async fn drain<R: AsyncRead + Unpin>(
    pipe: &mut Option<R>,
    buf: &mut Vec<u8>,
    keep: usize,
    from_start: bool,
) -> bool {
    let Some(p) = pipe else { return std::future::pending().await };
    let mut chunk = [0u8; 8192];
    match p.read(&mut chunk).await {
        Ok(0) | Err(_) => {
            *pipe = None;
            false
        }
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            if buf.len() > keep {
                if from_start {
                    buf.truncate(keep);
                    // Read no further: the rest is not looked at.
                    *pipe = None;
                    return true;
                }
                let cut = buf.len() - keep;
                buf.drain(..cut);
            }
            false
        }
    }
}

impl ExecProbe {
    async fn run(&self, cx: &ProbeContext<'_>) -> Result<Ran, ProbeFailure> {
        let prog = &self.target.command[0];
        let mut cmd = tokio::process::Command::new(self.program());
        cmd.args(&self.target.command[1..])
            .current_dir(&self.cwd)
            .env("GITSTATE_ENVIRONMENT", cx.environment.as_str())
            .env("GITSTATE_TARGET", cx.target)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child =
            cmd.spawn().map_err(|e| ProbeFailure::unreachable(format!("cannot run {prog}: {e}")))?;
        let group = child.id().and_then(|id| i32::try_from(id).ok()).and_then(Pid::from_raw);
        // Whatever happens to this run, its group goes with it.
        struct Group(Option<Pid>);
        impl Drop for Group {
            fn drop(&mut self) {
                if let Some(pg) = self.0 {
                    let _ = kill_process_group(pg, Signal::KILL);
                }
            }
        }
        let _group = Group(group);
        let (mut out, mut err) = (child.stdout.take(), child.stderr.take());
        let (mut stdout, mut stderr, mut overflow) = (Vec::new(), Vec::new(), false);
        let deadline = Instant::now() + self.target.timeout;
        let max = self.target.max_bytes;
        let status = loop {
            tokio::select! {
                status = child.wait() => break status,
                more = drain(&mut out, &mut stdout, max, true) => overflow |= more,
                _ = drain(&mut err, &mut stderr, STDERR_TAIL, false) => {}
                () = tokio::time::sleep_until(deadline) => {
                    if let Some(pg) = group {
                        let _ = kill_process_group(pg, Signal::KILL);
                    }
                    let _ = child.kill().await;
                    return Err(ProbeFailure::unreachable(format!(
                        "{prog}: no answer within {}; killed with its process group",
                        humantime::format_duration(self.target.timeout)
                    )));
                }
            }
        };
        // What it left running may hold the pipes: read what is there, briefly.
        let _ = tokio::time::timeout(OUTPUT_GRACE, async {
            while out.is_some() || err.is_some() {
                tokio::select! {
                    more = drain(&mut out, &mut stdout, max, true) => overflow |= more,
                    _ = drain(&mut err, &mut stderr, STDERR_TAIL, false) => {}
                }
            }
        })
        .await;
        let status = status.map_err(|e| ProbeFailure::unreachable(format!("waiting for {prog}: {e}")))?;
        Ok(Ran { code: status.code(), stdout, overflow, stderr })
    }
}

#[async_trait]
impl ActualStateProbe for ExecProbe {
    fn name(&self) -> &str {
        "exec"
    }

    async fn observe(&self, cx: &ProbeContext<'_>) -> Result<Vec<Reading>, ProbeFailure> {
        let started = Instant::now();
        let ran = self.run(cx).await?;
        let prog = &self.target.command[0];
        // First: once gitstate stops reading, a writer may die of SIGPIPE; its exit says nothing.
        if ran.overflow {
            return Err(ProbeFailure::invalid(format!(
                "{prog} printed more than {} bytes; read no further",
                self.target.max_bytes
            )));
        }
        if ran.code != Some(0) {
            let how = ran.code.map_or("was killed by a signal".to_owned(), |c| format!("exited {c}"));
            let tail = String::from_utf8_lossy(&ran.stderr);
            let tail = redact_text(gitstate_core::escape_control(tail.trim()).as_ref());
            let sep = if tail.is_empty() { "" } else { ": " };
            return Err(ProbeFailure::unreachable(format!("{prog} {how}{sep}{tail}")));
        }
        let elapsed = started.elapsed();
        match self.target.format {
            ExecFormat::Report => Ok(vec![Reading {
                instance: cx.target.to_owned(),
                result: gitstate_http::parse_body(&ran.stdout, self.target.sha_pointer.as_deref()),
                elapsed,
            }]),
            ExecFormat::Lines => parse_lines(&ran.stdout, elapsed),
        }
    }
}

/// `INSTANCE COMMIT` lines: one reading per non-empty line (a line that is not a pair,
/// or whose commit is not hex, is that instance `invalid`). Output that is not UTF-8,
/// or has no line at all, is the whole target `invalid`.
pub fn parse_lines(out: &[u8], elapsed: Duration) -> Result<Vec<Reading>, ProbeFailure> {
    let text = std::str::from_utf8(out)
        .map_err(|e| ProbeFailure::invalid(format!("output is not UTF-8 (at byte {})", e.valid_up_to())))?;
    let mut readings = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut fields = line.split_whitespace();
        let Some(instance) = fields.next() else { continue };
        let instance = gitstate_core::escape_control(instance).into_owned();
        let result = match (fields.next(), fields.next()) {
            (Some(commit), None) => {
                ReportedCommit::parse(commit).map_err(|e| ProbeFailure::invalid(e.to_string()))
            }
            _ => Err(ProbeFailure::invalid(format!("line {} is not \"INSTANCE COMMIT\"", n + 1))),
        };
        readings.push(Reading { instance, result, elapsed });
    }
    if readings.is_empty() {
        return Err(ProbeFailure::invalid("no \"INSTANCE COMMIT\" line in the output"));
    }
    Ok(readings)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const A: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn lines_name_each_instance() {
        let lines = |b: &[u8]| parse_lines(b, Duration::ZERO);
        let got = lines(format!("i-1 {A}\n\n  i-2   {}\ni-3 zz\ni-4\n", &A[..7]).as_bytes()).unwrap();
        let ids: Vec<&str> = got.iter().map(|r| r.instance.as_str()).collect();
        assert_eq!(ids, ["i-1", "i-2", "i-3", "i-4"]);
        let ok: Vec<bool> = got.iter().map(|r| r.result.is_ok()).collect();
        assert_eq!(ok, [true, true, false, false]);
        assert!(lines(b"\n  \n").is_err());
        assert!(lines(b"i-1 \xff\xfe").unwrap_err().message.contains("not UTF-8"));
    }

    proptest! {
        /// Any bytes: a result, never a panic; every well-formed line is one reading.
        #[test]
        fn arbitrary_exec_lines_never_panic_and_match_the_model(
            lines in prop::collection::vec(prop_oneof![
                "[a-z0-9.-]{1,12}".prop_map(|i| (i, true)),
                "[ -~]{0,30}".prop_map(|l| (l, false)),
            ], 0..8),
            junk in prop::collection::vec(any::<u8>(), 0..64),
        ) {
            let _ = parse_lines(&junk, Duration::ZERO);
            let text: String = lines.iter().map(|(l, good)| if *good { format!("{l} {A}\n") } else { format!("{l}\n") }).collect();
            let got = parse_lines(text.as_bytes(), Duration::ZERO);
            // The model: non-blank lines, in order; the well-formed ones read.
            let want: Vec<(String, bool)> = text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    (f[0].to_owned(), f.len() == 2 && ReportedCommit::parse(f[1]).is_ok())
                })
                .collect();
            match got {
                Ok(r) => {
                    let r: Vec<(String, bool)> = r.into_iter().map(|r| (r.instance, r.result.is_ok())).collect();
                    prop_assert_eq!(r, want);
                }
                Err(_) => prop_assert!(want.is_empty()),
            }
        }
    }
}
