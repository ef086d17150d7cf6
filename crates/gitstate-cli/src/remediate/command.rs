//! The command remediator: runs argv (never through a shell) in the config's directory
//! with `GITSTATE_ENVIRONMENT`, `GITSTATE_REF`, `GITSTATE_EXPECTED_SHA`, `GITSTATE_ATTEMPT`
//! and `GITSTATE_DRIFTED`, stdin closed, stdout and stderr interleaved into one pipe of
//! which the last 8 KiB are kept. Exit 0 means triggered. On timeout the whole process
//! group gets SIGTERM, then SIGKILL, and the attempt counts as failed.

use std::io::Read;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use gitstate_core::{RemediationOutcome, RemediationRequest, Remediator};
use rustix::process::{Pid, Signal, kill_process_group};

/// Output kept per run.
pub const TAIL_BYTES: usize = 8 * 1024;

/// Time between SIGTERM and SIGKILL on timeout.
const KILL_GRACE: Duration = Duration::from_secs(2);

/// Runs a deploy command.
#[derive(Debug, Clone)]
pub struct CommandRemediator {
    argv: Vec<String>,
    cwd: PathBuf,
    timeout: Duration,
}

impl CommandRemediator {
    /// `argv[0]` with a `/` in it is taken relative to `cwd` (the config's directory);
    /// a bare name is looked up on `PATH`.
    pub fn new(argv: Vec<String>, cwd: PathBuf, timeout: Duration) -> Self {
        Self { argv, cwd, timeout }
    }

    fn program(&self) -> PathBuf {
        let p = PathBuf::from(&self.argv[0]);
        if p.is_relative() && self.argv[0].contains('/') { self.cwd.join(p) } else { p }
    }
}

/// Keeps the last `cap` bytes written.
fn tail_of(mut r: impl Read, cap: usize) -> Vec<u8> {
    let mut keep: Vec<u8> = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                keep.extend_from_slice(&buf[..n]);
                if keep.len() > 2 * cap {
                    keep.drain(..keep.len() - cap);
                }
            }
        }
    }
    if keep.len() > cap {
        keep.drain(..keep.len() - cap);
    }
    keep
}

fn lossy_tail(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    s.trim_start_matches('\u{FFFD}').to_owned()
}

#[async_trait]
impl Remediator for CommandRemediator {
    fn name(&self) -> &str {
        "command"
    }

    async fn remediate(&self, req: &RemediationRequest) -> RemediationOutcome {
        let fail =
            |detail: String| RemediationOutcome { ok: false, detail, exit_code: None, output_tail: None };
        let (reader, writer) = match std::io::pipe() {
            Ok(p) => p,
            Err(e) => return fail(format!("cannot create a pipe: {e}")),
        };
        let writer2 = match writer.try_clone() {
            Ok(w) => w,
            Err(e) => return fail(format!("cannot create a pipe: {e}")),
        };
        let drifted: String = req.drifted.iter().map(|(t, i)| format!("{t}\t{i}\n")).collect();
        let mut cmd = tokio::process::Command::new(self.program());
        cmd.args(&self.argv[1..])
            .current_dir(&self.cwd)
            .env("GITSTATE_ENVIRONMENT", req.environment.as_str())
            .env("GITSTATE_REF", &req.reference)
            .env("GITSTATE_EXPECTED_SHA", req.expected.as_str())
            .env("GITSTATE_ATTEMPT", req.attempt.to_string())
            .env("GITSTATE_DRIFTED", drifted)
            .stdin(Stdio::null())
            .stdout(Stdio::from(writer))
            .stderr(Stdio::from(writer2))
            .process_group(0)
            .kill_on_drop(true);
        let spawned = cmd.spawn();
        // Our copies of the pipe's write end must go, or the reader never sees EOF.
        drop(cmd);
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => return fail(format!("cannot run {}: {e}", self.argv[0])),
        };
        let pgid = child.id().and_then(|id| i32::try_from(id).ok()).and_then(Pid::from_raw);
        let output = tokio::task::spawn_blocking(move || tail_of(reader, TAIL_BYTES));

        let (status, timed_out) = match tokio::time::timeout(self.timeout, child.wait()).await {
            Ok(s) => (s, false),
            Err(_) => {
                if let Some(pg) = pgid {
                    let _ = kill_process_group(pg, Signal::TERM);
                }
                let s = match tokio::time::timeout(KILL_GRACE, child.wait()).await {
                    Ok(s) => s,
                    Err(_) => {
                        if let Some(pg) = pgid {
                            let _ = kill_process_group(pg, Signal::KILL);
                        }
                        child.wait().await
                    }
                };
                (s, true)
            }
        };
        // A survivor holding the pipe open must not hang us: give the reader a moment.
        if let Some(pg) = pgid {
            let _ = kill_process_group(pg, Signal::KILL);
        }
        let tail = match tokio::time::timeout(KILL_GRACE, output).await {
            Ok(Ok(bytes)) => lossy_tail(&bytes),
            _ => String::new(),
        };
        let output_tail = (!tail.is_empty()).then_some(tail);
        let status = match status {
            Ok(s) => s,
            Err(e) => {
                return RemediationOutcome {
                    output_tail,
                    ..fail(format!("waiting for {}: {e}", self.argv[0]))
                };
            }
        };
        let code = status.code();
        let detail = if timed_out {
            format!("{} killed after the {}s timeout", self.argv[0], self.timeout.as_secs())
        } else {
            match code {
                Some(c) => format!("{} exited {c}", self.argv[0]),
                None => format!("{} was killed by a signal", self.argv[0]),
            }
        };
        RemediationOutcome { ok: !timed_out && status.success(), detail, exit_code: code, output_tail }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gitstate_core::{CommitId, EnvName};

    fn req() -> RemediationRequest {
        RemediationRequest {
            environment: EnvName::new("production").unwrap(),
            reference: "refs/heads/environments/production".into(),
            expected: CommitId::parse(&"b".repeat(40)).unwrap(),
            attempt: 1,
            drifted: vec![("web".into(), "http://a/x".into()), ("web".into(), "http://b/x".into())],
        }
    }

    fn sh(script: &str, timeout: Duration) -> CommandRemediator {
        CommandRemediator::new(vec!["sh".into(), "-c".into(), script.into()], std::env::temp_dir(), timeout)
    }

    #[tokio::test]
    async fn passes_the_gitstate_variables_and_interleaves_output() {
        let r = sh(
            "echo env=$GITSTATE_ENVIRONMENT sha=$GITSTATE_EXPECTED_SHA attempt=$GITSTATE_ATTEMPT ref=$GITSTATE_REF; echo err >&2; printf '%s' \"$GITSTATE_DRIFTED\"; if read x; then echo stdin-open; fi",
            Duration::from_secs(10),
        )
        .remediate(&req())
        .await;
        assert!(r.ok, "{r:?}");
        assert_eq!(r.exit_code, Some(0));
        let out = r.output_tail.unwrap();
        assert!(
            out.contains(&format!(
                "env=production sha={} attempt=1 ref=refs/heads/environments/production",
                "b".repeat(40)
            )),
            "{out}"
        );
        assert!(out.contains("err\n"), "stderr is interleaved: {out}");
        assert!(out.contains("web\thttp://a/x\nweb\thttp://b/x\n"), "{out}");
        assert!(!out.contains("stdin-open"), "stdin is closed");
    }

    #[tokio::test]
    async fn failure_and_the_last_8_kib() {
        let r = sh(
            "i=0; while [ $i -lt 3000 ]; do echo line $i; i=$((i+1)); done; exit 3",
            Duration::from_secs(10),
        )
        .remediate(&req())
        .await;
        assert!(!r.ok);
        assert_eq!(r.exit_code, Some(3));
        assert_eq!(r.detail, "sh exited 3");
        let out = r.output_tail.unwrap();
        assert!(out.len() <= TAIL_BYTES && out.len() > TAIL_BYTES - 20, "{}", out.len());
        assert!(out.ends_with("line 2999\n"));
    }

    #[tokio::test]
    async fn a_hung_command_and_its_children_are_killed() {
        let marker = tempfile::tempdir().unwrap();
        let pidfile = marker.path().join("child.pid");
        let script = format!("sleep 300 & echo $! > {}; echo started; wait", pidfile.display());
        let start = std::time::Instant::now();
        let r = sh(&script, Duration::from_millis(500)).remediate(&req()).await;
        assert!(!r.ok);
        assert!(r.detail.contains("killed after"), "{}", r.detail);
        assert!(start.elapsed() < Duration::from_secs(30));
        assert!(r.output_tail.unwrap_or_default().contains("started"));
        let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
        // The grandchild (same process group) got the signal too: it is gone (or a zombie
        // waiting for init) once the kernel has delivered it.
        let alive = || {
            std::path::Path::new(&format!("/proc/{pid}")).exists()
                && !std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default().contains(") Z ")
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while alive() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!alive(), "grandchild {pid} survived");
    }

    #[tokio::test]
    async fn a_missing_program_is_a_failed_attempt() {
        let r = CommandRemediator::new(
            vec!["./no-such-deploy.sh".into()],
            std::env::temp_dir(),
            Duration::from_secs(5),
        )
        .remediate(&req())
        .await;
        assert!(!r.ok);
        assert!(r.detail.contains("cannot run ./no-such-deploy.sh"), "{}", r.detail);
    }
}
