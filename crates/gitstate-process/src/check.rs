//! [`ExecCheck`]: a soak check that is a command (SPEC §15 `exec = [...]`): exit 0
//! passes; anything else, a timeout included, fails with the exit and the last line it
//! printed. Run as §10 runs commands: argv (never a shell), in the config's directory,
//! stdin closed, its process group killed on timeout.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use gitstate_core::child::Tail;
use gitstate_core::verify::{Check, CheckContext};
use tokio::time::Instant;

use crate::child::{self, Capture, Ended, OUTPUT_GRACE};
use crate::command::KILL_GRACE;

/// Output kept per run (its last line is the reason a failure gives).
const TAIL: usize = 4 * 1024;

/// A command run as a check.
#[derive(Debug, Clone)]
pub struct ExecCheck {
    name: String,
    argv: Vec<String>,
    cwd: PathBuf,
    timeout: Duration,
}

impl ExecCheck {
    /// `argv` (`{environment}` replaced in each word) run in `cwd`, bounded by `timeout`.
    pub fn new(name: &str, argv: Vec<String>, cwd: PathBuf, timeout: Duration) -> Self {
        Self { name: name.to_owned(), argv, cwd, timeout }
    }
}

fn last_line(tail: &Tail) -> String {
    let text = tail.text();
    let line = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
    gitstate_core::escape_control(line).into_owned()
}

#[async_trait]
impl Check for ExecCheck {
    fn name(&self) -> &str {
        &self.name
    }

    async fn run(&self, cx: &CheckContext<'_>) -> Result<(), String> {
        let argv: Vec<String> =
            self.argv.iter().map(|a| a.replace("{environment}", cx.environment.as_str())).collect();
        let prog = argv[0].clone();
        let mut cmd = child::command(&argv, &self.cwd);
        cmd.env("GITSTATE_ENVIRONMENT", cx.environment.as_str())
            .env("GITSTATE_EXPECTED_SHA", cx.expected.as_str());
        let mut running = child::spawn(cmd, &prog, Capture::<Tail, Tail>::Together(Tail::new(TAIL)))
            .map_err(|e| e.to_string())?;
        let status = match running.wait(Instant::now() + self.timeout, None).await {
            Ended::Exited(status) => status,
            _ => {
                running.stop(KILL_GRACE).await;
                return Err(format!("{prog} killed after the {}s timeout", self.timeout.as_secs_f64()));
            }
        };
        running.leave_group();
        running.finish_output(OUTPUT_GRACE).await;
        let said = last_line(running.output().0);
        match status {
            Ok(s) if s.success() => Ok(()),
            Ok(s) if said.is_empty() => Err(format!("{prog} {}", child::exit_text(s.code()))),
            Ok(s) => Err(format!("{prog} {}: {said}", child::exit_text(s.code()))),
            Err(e) => Err(format!("waiting for {prog}: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gitstate_core::{CommitId, EnvName};

    fn run(script: &str, timeout: Duration) -> Result<(), String> {
        let check = ExecCheck::new(
            "smoke",
            vec!["sh".into(), "-c".into(), script.into(), "sh".into(), "{environment}".into()],
            std::env::temp_dir(),
            timeout,
        );
        let env = EnvName::new("production").unwrap();
        let sha = CommitId::parse(&"c".repeat(40)).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async { check.run(&CheckContext::new(&env, &sha)).await })
    }

    #[test]
    fn exit_zero_passes_anything_else_fails_with_its_last_line() {
        assert_eq!(
            run(
                "test \"$1\" = production && test \"$GITSTATE_EXPECTED_SHA\" = cccccccccccccccccccccccccccccccccccccccc",
                Duration::from_secs(10)
            ),
            Ok(())
        );
        assert_eq!(
            run("echo checking; echo '5xx rate 3%' >&2; exit 3", Duration::from_secs(10)),
            Err("sh exited 3: 5xx rate 3%".into())
        );
        let hung = run("sleep 30", Duration::from_millis(300)).unwrap_err();
        assert!(hung.contains("killed after the 0.3s timeout"), "{hung}");
    }
}
