//! An OpenSSH server on 127.0.0.1 for `ssh://` remotes: its own host key, a client key
//! authorised for the current user, `sshd -D` on an ephemeral port. The client command
//! ([`SshServer::ssh_command`]) trusts exactly that host key and offers exactly that key.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::git::{Server, accepts};

const SSHD: &str = "/usr/sbin/sshd";

pub struct SshServer {
    pub port: u16,
    pub user: String,
    dir: tempfile::TempDir,
    _server: Server,
}

fn keygen(path: &Path) {
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen runs (Debian package openssh-client)")
        .success();
    assert!(ok, "ssh-keygen failed");
}

impl SshServer {
    pub fn start() -> Self {
        assert!(
            Path::new(SSHD).exists(),
            "{SSHD} is missing: install Debian's openssh-server (scripts/test does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        keygen(&d.join("host_key"));
        keygen(&d.join("client_key"));
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).unwrap();
        // sshd's privilege separation wants this directory when it runs as root.
        let _ = std::fs::create_dir_all("/run/sshd");
        let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_owned();
        let spawn = |port: u16| {
            let config = format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
                 AuthorizedKeysFile {d}/authorized_keys\nStrictModes no\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
                 PermitRootLogin prohibit-password\nUsePAM no\nAcceptEnv GIT_PROTOCOL\n",
                d = d.display()
            );
            std::fs::write(d.join("sshd_config"), config).unwrap();
            let host_key = std::fs::read_to_string(d.join("host_key.pub")).unwrap();
            std::fs::write(d.join("known_hosts"), format!("[127.0.0.1]:{port} {host_key}")).unwrap();
            Command::new(SSHD)
                .args(["-D", "-e", "-f"])
                .arg(d.join("sshd_config"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("sshd starts")
        };
        let server = Server::start("sshd", Duration::from_secs(10), spawn, accepts);
        Self { port: server.port, user, dir, _server: server }
    }

    /// A `GIT_SSH_COMMAND` that logs in with the test key and trusts only the test host.
    pub fn ssh_command(&self) -> String {
        let d = self.dir.path().display();
        format!(
            "ssh -F /dev/null -i {d}/client_key -o IdentitiesOnly=yes -o BatchMode=yes \
             -o StrictHostKeyChecking=yes -o UserKnownHostsFile={d}/known_hosts -o LogLevel=ERROR"
        )
    }

    /// `ssh://user@127.0.0.1:port/<absolute path>`.
    pub fn url(&self, path: &Path) -> String {
        format!("ssh://{}@127.0.0.1:{}{}", self.user, self.port, path.display())
    }
}
