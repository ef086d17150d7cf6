//! The rules every child process gitstate runs follows, whatever waits for it (a blocking
//! thread here, an async runtime in `gitstate-process`): it leads a process group of its
//! own ([`own_group`]), so that what it starts can be stopped with it ([`ProcessGroup`]);
//! a [`GroupGuard`] kills that group if the run is abandoned half-way; and of its output
//! only a bounded [`Tail`] is kept.
//!
//! Runtime-agnostic and blocking-free: signals and buffers only, no waiting.

use rustix::process::{Pid, Signal, kill_process_group, test_kill_process_group};

/// Makes the child `cmd` starts lead a new process group (its id is the child's), so that
/// the child and everything it starts can be signalled at once.
pub fn own_group(cmd: &mut std::process::Command) -> &mut std::process::Command {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0)
}

/// The process group a child started with [`own_group`] leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessGroup(Pid);

impl ProcessGroup {
    /// The group led by the child with process id `child` (`None` for an id that names no
    /// process: 0, or beyond `i32`).
    pub fn led_by(child: u32) -> Option<Self> {
        i32::try_from(child).ok().and_then(Pid::from_raw).map(Self)
    }

    /// SIGKILL to every member. A group that is gone already is not an error.
    pub fn kill(self) {
        let _ = kill_process_group(self.0, Signal::KILL);
    }

    /// SIGTERM to every member. A group that is gone already is not an error.
    pub fn terminate(self) {
        let _ = kill_process_group(self.0, Signal::TERM);
    }

    /// Whether no process is left in the group. A zombie still counts as a member: reap the
    /// child first.
    pub fn is_empty(self) -> bool {
        test_kill_process_group(self.0).is_err()
    }
}

/// Kills a process group with SIGKILL when dropped, unless disarmed: whatever ends a run —
/// an error, a panic, the task waiting for it being aborted — its processes go with it.
#[derive(Debug)]
#[must_use = "the group is killed when the guard is dropped"]
pub struct GroupGuard(Option<ProcessGroup>);

impl GroupGuard {
    /// Guards `group` (nothing, for `None`: a child whose id was not known).
    pub fn new(group: Option<ProcessGroup>) -> Self {
        Self(group)
    }

    /// The group guarded, while armed.
    pub fn group(&self) -> Option<ProcessGroup> {
        self.0
    }

    /// Leaves the group alone from now on (it ended, or what it runs is meant to outlive
    /// the run). Returns the group that was guarded.
    pub fn disarm(&mut self) -> Option<ProcessGroup> {
        self.0.take()
    }

    /// Kills the group now, and disarms.
    pub fn kill_now(&mut self) {
        if let Some(group) = self.0.take() {
            group.kill();
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill_now();
    }
}

/// The last bytes a process wrote, at most `limit` of them however much it writes.
#[derive(Debug, Clone, Default)]
pub struct Tail {
    buf: Vec<u8>,
    limit: usize,
}

impl Tail {
    /// Keeps the last `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self { buf: Vec::new(), limit }
    }

    /// Appends what was read; older bytes beyond the limit are let go.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        // Cut at twice the limit, not at every push: each cut moves the whole buffer.
        if self.buf.len() > 2 * self.limit {
            self.buf.drain(..self.buf.len() - self.limit);
        }
    }

    /// The last `limit` bytes pushed (fewer if fewer came).
    pub fn bytes(&self) -> &[u8] {
        &self.buf[self.buf.len().saturating_sub(self.limit)..]
    }

    /// The bytes as text: invalid UTF-8 replaced, and the replacement characters a cut
    /// through a character left at the start dropped.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(self.bytes()).trim_start_matches('\u{FFFD}').to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tail_keeps_the_last_bytes_only() {
        let mut t = Tail::new(4);
        assert_eq!(t.bytes(), b"");
        t.push(b"ab");
        assert_eq!(t.bytes(), b"ab");
        for chunk in [&b"cdef"[..], b"g", b"hijklmnop", b""] {
            t.push(chunk);
        }
        assert_eq!(t.bytes(), b"mnop");
        assert!(t.buf.len() <= 8, "the buffer stays bounded: {}", t.buf.len());
        let mut cut = Tail::new(3);
        cut.push("xé!!".as_bytes());
        assert_eq!(cut.text(), "!!", "half a character at the start is dropped");
    }

    #[test]
    fn a_guard_kills_its_group_unless_disarmed() {
        let spawn = || {
            let mut cmd = std::process::Command::new("sleep");
            cmd.arg("600");
            let child = own_group(&mut cmd).spawn().unwrap();
            let group = ProcessGroup::led_by(child.id()).unwrap();
            (child, group)
        };
        let (mut child, group) = spawn();
        assert!(!group.is_empty());
        drop(GroupGuard::new(Some(group)));
        let status = child.wait().unwrap();
        assert!(!status.success(), "killed: {status:?}");
        assert!(group.is_empty(), "reaped and gone");

        let (mut child, group) = spawn();
        let mut guard = GroupGuard::new(Some(group));
        assert_eq!(guard.disarm(), Some(group));
        drop(guard);
        assert!(child.try_wait().unwrap().is_none(), "a disarmed guard leaves it running");
        group.terminate();
        assert!(!child.wait().unwrap().success());
    }
}
