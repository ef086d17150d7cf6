//! Moving a ref (SPEC §15: rollback, adopt) with the system `git`, as gix cannot push and
//! git's own commands write reflogs the way people read them: on a local repository,
//! `git update-ref --create-reflog -m MESSAGE REF NEW OLD` (a compare-and-swap on OLD, the
//! reflog entry written even where `core.logAllRefUpdates` is off); on a remote, `git push
//! --force-with-lease=REF:OLD URL NEW:REF` from the mirror (which holds NEW), with the
//! credentials the source already uses (ssh command, `GIT_ASKPASS`, a token in the URL —
//! never shown). No shell; arguments are validated ids and ref names.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::commit::CommitId;
use crate::error::ExpectedError;

use super::env::git;

/// How long a ref update (or a push) may take.
pub const MOVE_TIMEOUT: Duration = Duration::from_secs(60);

fn refused(reference: &str, message: impl Into<String>) -> ExpectedError {
    ExpectedError::Refused { reference: reference.to_owned(), message: message.into() }
}

/// A full ref name git accepts (the ref comes from the configuration, but never trusted).
fn check_ref(reference: &str) -> Result<(), ExpectedError> {
    let ok = reference.starts_with("refs/")
        && !reference.starts_with('-')
        && reference.split('/').all(|c| !c.is_empty() && !c.starts_with('.') && !c.ends_with(".lock"))
        && !reference.contains("..")
        && reference.chars().all(|c| !c.is_control() && !" ~^:?*[\\".contains(c));
    if ok { Ok(()) } else { Err(ExpectedError::BadRefName(reference.to_owned())) }
}

/// Runs `cmd` to its end within [`MOVE_TIMEOUT`]; the error is its stderr's last lines,
/// with `secret` (a URL with credentials) replaced by `shown`.
fn run(
    mut cmd: std::process::Command,
    reference: &str,
    secret: Option<(&str, &str)>,
) -> Result<(), ExpectedError> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.env("GIT_TERMINAL_PROMPT", "0");
    if std::env::var_os("GIT_COMMITTER_NAME").is_none() {
        cmd.env("GIT_COMMITTER_NAME", "gitstate");
    }
    if std::env::var_os("GIT_COMMITTER_EMAIL").is_none() {
        cmd.env("GIT_COMMITTER_EMAIL", "gitstate@localhost");
    }
    crate::child::own_group(&mut cmd);
    let child = cmd.spawn().map_err(|e| refused(reference, format!("cannot run git: {e}")))?;
    let group = crate::child::ProcessGroup::led_by(child.id());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(MOVE_TIMEOUT) {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => return Err(refused(reference, format!("waiting for git: {e}"))),
        Err(_) => {
            if let Some(g) = group {
                g.kill();
            }
            return Err(refused(reference, format!("git did not finish within {}s", MOVE_TIMEOUT.as_secs())));
        }
    };
    if out.status.success() {
        return Ok(());
    }
    // `push --porcelain` says why a ref was refused on stdout (`!<TAB>src:dst<TAB>[rejected]
    // (stale info)`); the rest of what git says is on stderr.
    let refusals: String = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix('!'))
        .filter_map(|l| l.split('\t').nth(2))
        .map(|why| format!("{why}\n"))
        .collect();
    let mut text = refusals + &String::from_utf8_lossy(&out.stderr);
    if let Some((url, shown)) = secret {
        text = text.replace(url, shown);
    }
    let text = crate::redact_text(&text);
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let said = lines[..lines.len().min(3)].join("; ");
    Err(refused(reference, if said.is_empty() { format!("git failed ({})", out.status) } else { said }))
}

/// `git update-ref` in the repository at `dir`.
pub(super) fn update_local(
    dir: &Path,
    reference: &str,
    from: &CommitId,
    to: &CommitId,
    message: &str,
) -> Result<(), ExpectedError> {
    check_ref(reference)?;
    let mut cmd = git();
    cmd.arg("-C").arg(dir).args(["update-ref", "--create-reflog", "-m"]);
    cmd.arg(crate::escape_control(message).as_ref()).args([reference, to.as_str(), from.as_str()]);
    run(cmd, reference, None)
}

/// `git push --force-with-lease` from the mirror at `mirror` to `url`.
pub(super) fn push(
    mirror: &Path,
    url: &str,
    shown: &str,
    ssh_command: Option<&str>,
    reference: &str,
    from: &CommitId,
    to: &CommitId,
) -> Result<(), ExpectedError> {
    check_ref(reference)?;
    let mut cmd = git();
    cmd.arg("-C").arg(mirror);
    if let Some(ssh) = ssh_command {
        cmd.env("GIT_SSH_COMMAND", ssh);
    }
    cmd.args(["push", "--porcelain", "--no-verify"])
        .arg(format!("--force-with-lease={reference}:{from}"))
        .arg("--")
        .arg(url)
        .arg(format!("{to}:{reference}"));
    run(cmd, reference, Some((url, shown)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ref_names_are_checked_before_git_sees_them() {
        assert!(check_ref("refs/heads/environments/production").is_ok());
        for bad in [
            "production",
            "refs/heads/../x",
            "refs/heads/a b",
            "--force",
            "refs/heads/x.lock",
            "refs/heads/",
            "refs/heads/a:b",
        ] {
            assert!(check_ref(bad).is_err(), "{bad}");
        }
    }
}
