//! The exec probe (SPEC §10): for what has no HTTP endpoint or tags — a host over ssh,
//! `kubectl`, a container label. Runs argv (never a shell) in the config's directory,
//! stdin closed, with `GITSTATE_ENVIRONMENT` and `GITSTATE_TARGET` set; reads at most
//! `max_bytes` of stdout and the last KiB of stderr; a run past its `timeout` is killed
//! with its whole process group, and so is what a finished run left behind. Stdout is read
//! as an HTTP body is (`report`: the parser given, `sha_pointer` applies) or as
//! `INSTANCE COMMIT` lines (`lines`). Entry type: [`ExecProbe`]; the process itself is
//! run by [`crate::child`].

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use gitstate_core::child::Tail;
use gitstate_core::{ActualStateProbe, ProbeContext, ProbeFailure, Reading, ReportedCommit, redact_text};
use tokio::time::Instant;

use crate::child::{self, Capture, Ended, Head, OUTPUT_GRACE};

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
    /// a bare name is looked up on `PATH`. The `report` format is read as the HTTP probe
    /// reads a body ([`gitstate_core::parse_report`]).
    pub fn new(target: ExecTarget, cwd: PathBuf) -> Self {
        Self { target, cwd }
    }
}

/// What a finished run left.
struct Ran {
    code: Option<i32>,
    stdout: Vec<u8>,
    overflow: bool,
    stderr: Vec<u8>,
}

impl ExecProbe {
    async fn run(&self, cx: &ProbeContext<'_>) -> Result<Ran, ProbeFailure> {
        let prog = &self.target.command[0];
        let mut cmd = child::command(&self.target.command, &self.cwd);
        cmd.env("GITSTATE_ENVIRONMENT", cx.environment.as_str()).env("GITSTATE_TARGET", cx.target);
        let capture = Capture::Apart(Head::new(self.target.max_bytes), Tail::new(STDERR_TAIL));
        // Whatever happens to this run, its group goes with it (when dropped).
        let mut running =
            child::spawn(cmd, prog, capture).map_err(|e| ProbeFailure::unreachable(e.to_string()))?;
        let deadline = Instant::now() + self.target.timeout;
        let status = match running.wait(deadline, None).await {
            Ended::Exited(status) => status,
            Ended::TimedOut | Ended::Cancelled => {
                running.stop(Duration::ZERO).await;
                return Err(ProbeFailure::unreachable(format!(
                    "{prog}: no answer within {}; killed with its process group",
                    humantime::format_duration(self.target.timeout)
                )));
            }
        };
        // What it left running may hold the pipes: read what is there, briefly.
        running.finish_output(OUTPUT_GRACE).await;
        let status = status.map_err(|e| ProbeFailure::unreachable(format!("waiting for {prog}: {e}")))?;
        let (head, tail) = running.output();
        Ok(Ran {
            code: status.code(),
            stdout: head.bytes.clone(),
            overflow: head.overflow,
            stderr: tail.bytes().to_vec(),
        })
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
            let how = child::exit_text(ran.code);
            let tail = String::from_utf8_lossy(&ran.stderr);
            let tail = redact_text(gitstate_core::escape_control(tail.trim()).as_ref());
            let sep = if tail.is_empty() { "" } else { ": " };
            return Err(ProbeFailure::unreachable(format!("{prog} {how}{sep}{tail}")));
        }
        let elapsed = started.elapsed();
        match self.target.format {
            ExecFormat::Report => Ok(vec![Reading {
                instance: cx.target.to_owned(),
                result: gitstate_core::parse_report(&ran.stdout, self.target.sha_pointer.as_deref()),
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

    fn sh(script: &str, timeout: Duration) -> ExecProbe {
        let target = ExecTarget {
            command: vec!["sh".into(), "-c".into(), script.into()],
            format: ExecFormat::Report,
            sha_pointer: None,
            timeout,
            max_bytes: ExecTarget::DEFAULT_MAX_BYTES,
        };
        ExecProbe::new(target, std::env::temp_dir())
    }

    async fn observe(probe: &ExecProbe) -> Result<Vec<Reading>, ProbeFailure> {
        let env = gitstate_core::EnvName::new("production").unwrap();
        let expected = gitstate_core::CommitId::parse(A).unwrap();
        probe.observe(&ProbeContext { environment: &env, target: "api", expected: &expected }).await
    }

    /// Whether `pid` runs (a zombie waiting for init does not).
    fn alive(pid: &str) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
    }

    async fn gone_soon(pid: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while alive(pid) && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!alive(pid), "process {pid} survived");
    }

    /// Unlike a deploy command's, what a probe leaves running after it answered is killed
    /// with its group: a probe runs every pass and must not pile up processes.
    #[tokio::test]
    async fn what_a_finished_run_left_behind_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("left.pid");
        let script = format!("sleep 600 >/dev/null 2>&1 & echo $! > {}; echo {A}", pidfile.display());
        let got = observe(&sh(&script, Duration::from_secs(10))).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].instance, "api");
        assert_eq!(got[0].result.as_ref().unwrap().as_str(), A);
        gone_soon(std::fs::read_to_string(&pidfile).unwrap().trim()).await;
    }

    #[tokio::test]
    async fn a_run_past_its_timeout_is_killed_with_its_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("child.pid");
        let script = format!("trap '' TERM; sleep 600 & echo $! > {}; wait", pidfile.display());
        let e = observe(&sh(&script, Duration::from_millis(300))).await.unwrap_err();
        assert_eq!(e.message, "sh: no answer within 300ms; killed with its process group");
        gone_soon(std::fs::read_to_string(&pidfile).unwrap().trim()).await;
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
