//! The command remediator: runs argv (never through a shell) in the config's directory
//! with `GITSTATE_ENVIRONMENT`, `GITSTATE_REF`, `GITSTATE_EXPECTED_SHA`, `GITSTATE_ATTEMPT`
//! and `GITSTATE_DRIFTED`, stdin closed, stdout and stderr interleaved into one pipe of
//! which the last 8 KiB are kept. Exit 0 means triggered, and whatever the command left
//! running in the background is left alone. On timeout, or when `watch` shuts down (the
//! [`CancellationToken`] given at construction), the whole process group gets SIGTERM,
//! then SIGKILL [`KILL_GRACE`] later, and the attempt counts as failed. The output is read
//! asynchronously and given up [`OUTPUT_GRACE`] after the command exits, so a background
//! process holding the pipe never holds gitstate. Entry type: [`CommandRemediator`]; the
//! process itself is run by [`crate::child`].

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use gitstate_core::child::Tail;
use gitstate_core::{RemediationOutcome, RemediationRequest, Remediator};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::child::{self, Capture, Ended, OUTPUT_GRACE};

/// Output kept per run.
pub const TAIL_BYTES: usize = 8 * 1024;

/// Time between SIGTERM and SIGKILL when a run is stopped (timeout, `watch` shutdown).
pub const KILL_GRACE: Duration = Duration::from_secs(10);

/// Runs a deploy command.
#[derive(Debug, Clone)]
pub struct CommandRemediator {
    argv: Vec<String>,
    cwd: PathBuf,
    timeout: Duration,
    stop: CancellationToken,
}

impl CommandRemediator {
    /// `argv[0]` with a `/` in it is taken relative to `cwd` (the config's directory);
    /// a bare name is looked up on `PATH`. Cancelling `stop` stops a run in progress.
    pub fn new(argv: Vec<String>, cwd: PathBuf, timeout: Duration, stop: CancellationToken) -> Self {
        Self { argv, cwd, timeout, stop }
    }
}

/// The output kept, as text; `None` when there was none.
fn tail_text(tail: &Tail) -> Option<String> {
    let s = tail.text();
    (!s.is_empty()).then_some(s)
}

#[async_trait]
impl Remediator for CommandRemediator {
    fn name(&self) -> &str {
        "command"
    }

    async fn remediate(&self, req: &RemediationRequest) -> RemediationOutcome {
        let fail =
            |detail: String| RemediationOutcome { ok: false, detail, exit_code: None, output_tail: None };
        let drifted: String = req.drifted.iter().map(|(t, i)| format!("{t}\t{i}\n")).collect();
        let prog = &self.argv[0];
        let mut cmd = child::command(&self.argv, &self.cwd);
        cmd.env("GITSTATE_ENVIRONMENT", req.environment.as_str())
            .env("GITSTATE_REF", &req.reference)
            .env("GITSTATE_EXPECTED_SHA", req.expected.as_str())
            .env("GITSTATE_ATTEMPT", req.attempt.to_string())
            .env("GITSTATE_DRIFTED", drifted);
        let capture = Capture::<Tail, Tail>::Together(Tail::new(TAIL_BYTES));
        let mut running = match child::spawn(cmd, prog, capture) {
            Ok(r) => r,
            Err(e) => return fail(e.to_string()),
        };
        let deadline = Instant::now() + self.timeout;
        let status = match running.wait(deadline, Some(&self.stop)).await {
            Ended::Exited(status) => status,
            stopped => {
                let killed = running.stop(KILL_GRACE).await;
                running.finish_output(OUTPUT_GRACE).await;
                let how = if killed {
                    format!("its process group got SIGTERM, then SIGKILL {}s later", KILL_GRACE.as_secs())
                } else {
                    "its process group got SIGTERM and ended".to_owned()
                };
                let detail = match stopped {
                    Ended::Cancelled => format!("{prog} stopped because watch shut down: {how}"),
                    _ => format!(
                        "{prog} killed after the {} timeout: {how}",
                        humantime::format_duration(self.timeout)
                    ),
                };
                return RemediationOutcome {
                    ok: false,
                    detail,
                    exit_code: None,
                    output_tail: tail_text(running.output().0),
                };
            }
        };
        // Exit 0 or not, what it left running is its business: no signal.
        running.leave_group();
        running.finish_output(OUTPUT_GRACE).await;
        let output_tail = tail_text(running.output().0);
        match status {
            Ok(s) => RemediationOutcome {
                ok: s.success(),
                detail: format!("{prog} {}", child::exit_text(s.code())),
                exit_code: s.code(),
                output_tail,
            },
            Err(e) => RemediationOutcome {
                ok: false,
                detail: format!("waiting for {prog}: {e}"),
                exit_code: None,
                output_tail,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gitstate_core::{CommitId, EnvName};
    use rustix::process::{Pid, Signal};

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
        CommandRemediator::new(
            vec!["sh".into(), "-c".into(), script.into()],
            std::env::temp_dir(),
            timeout,
            CancellationToken::new(),
        )
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
        assert_eq!(r.detail, "sh killed after the 500ms timeout: its process group got SIGTERM and ended");
        assert!(start.elapsed() < Duration::from_secs(30));
        assert!(r.output_tail.unwrap_or_default().contains("started"));
        let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
        // The grandchild (same process group) got the signal too: it is gone (or a zombie
        // waiting for init) once the kernel has delivered it.
        gone_soon(pid).await;
    }

    /// Whether `pid` runs (a zombie waiting for init does not).
    fn alive(pid: i32) -> bool {
        std::path::Path::new(&format!("/proc/{pid}")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default().contains(") Z ")
    }

    async fn gone_soon(pid: i32) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while alive(pid) && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!alive(pid), "process {pid} survived");
    }

    fn pid_in(file: &std::path::Path) -> i32 {
        std::fs::read_to_string(file).unwrap().trim().parse().unwrap()
    }

    #[tokio::test]
    async fn after_exit_0_background_work_is_left_alone_and_its_pipe_holds_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (same, own) = (dir.path().join("same.pid"), dir.path().join("own.pid"));
        // One background process in the command's group, one in a session of its own;
        // both keep the output pipe open for ten minutes.
        let script = format!(
            "sleep 600 & echo $! > {}; setsid sh -c 'echo $$ > {}; exec sleep 600' & sleep 0.2; echo deployed; exit 0",
            same.display(),
            own.display()
        );
        let remediator = sh(&script, Duration::from_secs(60));
        let r = tokio::time::timeout(Duration::from_secs(30), remediator.remediate(&req()))
            .await
            .expect("did not return while a background process holds the output pipe");
        assert!(r.ok, "{r:?}");
        assert_eq!(r.detail, "sh exited 0");
        assert!(r.output_tail.unwrap_or_default().contains("deployed"));
        for f in [&same, &own] {
            let pid = pid_in(f);
            assert!(alive(pid), "background process {pid} was killed after exit 0");
            let _ = rustix::process::kill_process(Pid::from_raw(pid).unwrap(), Signal::KILL);
        }
    }

    #[tokio::test]
    async fn a_group_that_ignores_sigterm_gets_sigkill_and_the_detail_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("child.pid");
        let script = format!("trap '' TERM; sleep 600 & echo $! > {}; wait; wait", pidfile.display());
        let r = sh(&script, Duration::from_millis(300)).remediate(&req()).await;
        assert!(!r.ok);
        assert_eq!(
            r.detail,
            "sh killed after the 300ms timeout: its process group got SIGTERM, then SIGKILL 10s later"
        );
        gone_soon(pid_in(&pidfile)).await;
    }

    #[tokio::test]
    async fn watch_shutting_down_stops_the_group_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("child.pid");
        let stop = CancellationToken::new();
        let r = CommandRemediator::new(
            vec!["sh".into(), "-c".into(), format!("sleep 600 & echo $! > {}; wait", pidfile.display())],
            std::env::temp_dir(),
            Duration::from_secs(600),
            stop.clone(),
        );
        let run = tokio::spawn(async move { r.remediate(&req()).await });
        while !pidfile.exists() || std::fs::read_to_string(&pidfile).unwrap().trim().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.cancel();
        let r = run.await.unwrap();
        assert!(!r.ok);
        assert_eq!(r.detail, "sh stopped because watch shut down: its process group got SIGTERM and ended");
        gone_soon(pid_in(&pidfile)).await;
    }

    #[tokio::test]
    async fn a_missing_program_is_a_failed_attempt() {
        let r = CommandRemediator::new(
            vec!["./no-such-deploy.sh".into()],
            std::env::temp_dir(),
            Duration::from_secs(5),
            CancellationToken::new(),
        )
        .remediate(&req())
        .await;
        assert!(!r.ok);
        assert!(r.detail.contains("cannot run ./no-such-deploy.sh"), "{}", r.detail);
    }
}
