//! SPEC §18 with real signatures: keys made by `ssh-keygen` and `gpg`, commits signed by
//! `git commit -S`, and gitstate's verdict compared with `git verify-commit`'s on every
//! case — valid, unsigned, an unknown key, outside `valid-before`, a wrong namespace, an
//! expired and a revoked OpenPGP key, a commit altered after signing.

use std::path::{Path, PathBuf};
use std::process::Command;

use gitstate_core::{CommitId, SignedCommit};
use gitstate_testkit::{Repo, git};
use gitstate_trust::{Reason, Require, Trust};

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Keys and a repository to sign in.
struct World {
    dir: tempfile::TempDir,
    repo: Repo,
}

impl World {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for home in ["gpg-sign", "gpg-verify"] {
            let p = dir.path().join(home);
            std::fs::create_dir(&p).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        Self { dir, repo: Repo::new() }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// An ed25519 SSH key `name` (private key file; `.pub` beside it).
    fn ssh_key(&self, name: &str) -> PathBuf {
        let key = self.path(name);
        run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"]).arg(&key));
        key
    }

    fn public(&self, key: &Path) -> String {
        std::fs::read_to_string(key.with_extension("pub")).unwrap().trim().to_owned()
    }

    /// gpg in the signing home, optionally at a faked time.
    fn gpg(&self, faked: Option<&str>) -> Command {
        let mut c = Command::new("gpg");
        c.env("GNUPGHOME", self.path("gpg-sign")).args([
            "--batch",
            "--yes",
            "--quiet",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
        ]);
        if let Some(t) = faked {
            c.arg(format!("--faked-system-time={t}!"));
        }
        c
    }

    /// A new OpenPGP signing key for `email`; returns its fingerprint.
    fn gpg_key(&self, email: &str, expire: &str, faked: Option<&str>) -> String {
        run(self.gpg(faked).args([
            "--quick-gen-key",
            &format!("{email} <{email}>"),
            "ed25519",
            "sign",
            expire,
        ]));
        let out = run(self.gpg(None).args(["--with-colons", "--list-keys", email]));
        out.lines().find(|l| l.starts_with("fpr:")).unwrap().split(':').nth(9).unwrap().to_owned()
    }

    /// A wrapper for git's gpg.program that fakes the time (signing in the past).
    fn gpg_program(&self, faked: Option<&str>) -> PathBuf {
        let p = self.path(&format!("gpg-{}", faked.unwrap_or("now").replace(['T', '!'], "")));
        let extra = faked.map(|t| format!(" --faked-system-time={t}!")).unwrap_or_default();
        std::fs::write(
            &p,
            format!("#!/bin/sh\nGNUPGHOME='{}' exec gpg{extra} \"$@\"\n", self.path("gpg-sign").display()),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    /// A commit signed with an SSH key.
    fn commit_ssh(&self, msg: &str, key: &Path) -> String {
        let signing = format!("user.signingkey={}", key.display());
        self.repo.git(&[
            "-c",
            "gpg.format=ssh",
            "-c",
            &signing,
            "commit",
            "-q",
            "-S",
            "--allow-empty",
            "-m",
            msg,
        ]);
        self.repo.git(&["rev-parse", "HEAD"]).trim().to_owned()
    }

    /// A commit signed with an OpenPGP key.
    fn commit_gpg(&self, msg: &str, fpr: &str, faked: Option<&str>) -> String {
        let program = format!("gpg.program={}", self.gpg_program(faked).display());
        let signing = format!("user.signingkey={fpr}");
        self.repo.git(&["-c", &program, "-c", &signing, "commit", "-q", "-S", "--allow-empty", "-m", msg]);
        self.repo.git(&["rev-parse", "HEAD"]).trim().to_owned()
    }

    fn commit_plain(&self, msg: &str) -> String {
        self.repo.git(&["commit", "-q", "--allow-empty", "-m", msg]);
        self.repo.git(&["rev-parse", "HEAD"]).trim().to_owned()
    }

    /// Writes `raw` as a commit object; returns its id.
    fn write_commit(&self, raw: &[u8]) -> String {
        let f = self.path("raw-commit");
        std::fs::write(&f, raw).unwrap();
        git(self.repo.path(), &["hash-object", "-t", "commit", "-w", &f.display().to_string()])
            .trim()
            .to_owned()
    }

    fn raw(&self, id: &str) -> Vec<u8> {
        let out = Command::new("git")
            .current_dir(self.repo.path())
            .args(["cat-file", "commit", id])
            .output()
            .unwrap();
        out.stdout
    }

    /// `git verify-commit`'s verdict, with the allowed-signers file and a gpg home that
    /// holds exactly the trusted OpenPGP keys.
    fn git_says(&self, id: &str) -> bool {
        let allowed = format!("gpg.ssh.allowedSignersFile={}", self.path("allowed_signers").display());
        Command::new("git")
            .current_dir(self.repo.path())
            .env("GNUPGHOME", self.path("gpg-verify"))
            .args(["-c", &allowed, "verify-commit", id])
            .output()
            .unwrap()
            .status
            .success()
    }

    fn signed(&self, id: &str) -> SignedCommit {
        SignedCommit::from_object(CommitId::parse(id).unwrap(), &self.raw(id))
    }
}

#[test]
fn gitstates_verdict_is_git_verify_commits_on_every_kind_of_commit() {
    let w = World::new();
    let ada = w.ssh_key("ada");
    let eve = w.ssh_key("eve");
    let old = w.ssh_key("old");
    std::fs::write(
        w.path("allowed_signers"),
        format!(
            "# the people who may sign\nada@example.com {}\nold@example.com valid-before=\"20200101Z\" {}\n",
            w.public(&ada),
            w.public(&old)
        ),
    )
    .unwrap();
    let ada_gpg = w.gpg_key("ada-gpg@example.com", "1y", None);
    let gone = w.gpg_key("gone@example.com", "1d", Some("20200101T000000"));
    let revoked = w.gpg_key("revoked@example.com", "1y", None);
    let stranger = w.gpg_key("stranger@example.com", "1y", None);

    let mut cases: Vec<(&str, String, Option<Reason>)> = vec![
        ("ssh, allowed", w.commit_ssh("ssh ok", &ada), None),
        ("unsigned", w.commit_plain("plain"), Some(Reason::Unsigned)),
        ("ssh, unknown key", w.commit_ssh("eve", &eve), Some(Reason::UnknownKey)),
        ("ssh, after valid-before", w.commit_ssh("late", &old), Some(Reason::NotValidThen)),
        ("openpgp, allowed", w.commit_gpg("gpg ok", &ada_gpg, None), None),
        (
            "openpgp, expired key",
            w.commit_gpg("old gpg", &gone, Some("20200101T000100")),
            Some(Reason::KeyExpired),
        ),
        ("openpgp, revoked key", w.commit_gpg("revoked gpg", &revoked, None), Some(Reason::KeyRevoked)),
        ("openpgp, unknown key", w.commit_gpg("stranger", &stranger, None), Some(Reason::UnknownKey)),
    ];

    // A wrong namespace: the commit's bytes signed by an allowed key with `-n other`.
    let plain = w.commit_plain("to be signed elsewhere");
    let payload = w.raw(&plain);
    std::fs::write(w.path("payload"), &payload).unwrap();
    run(Command::new("ssh-keygen")
        .args(["-Y", "sign", "-n", "other", "-f"])
        .arg(&ada)
        .arg(w.path("payload")));
    let sig = std::fs::read_to_string(w.path("payload.sig")).unwrap();
    let header: String = sig
        .trim_end()
        .lines()
        .enumerate()
        .map(|(i, l)| if i == 0 { format!("gpgsig {l}\n") } else { format!(" {l}\n") })
        .collect();
    let text = String::from_utf8(payload).unwrap();
    let (head, body) = text.split_once("\n\n").unwrap();
    cases.push((
        "ssh, wrong namespace",
        w.write_commit(format!("{head}\n{header}\n{body}").as_bytes()),
        Some(Reason::WrongNamespace),
    ));

    // Altered after signing: a signed commit's message changed, its signature kept.
    let good = w.commit_ssh("the real message", &ada);
    let tampered = String::from_utf8(w.raw(&good)).unwrap().replace("the real message", "a forged message");
    cases.push((
        "ssh, altered after signing",
        w.write_commit(tampered.as_bytes()),
        Some(Reason::BadSignature),
    ));

    // Revoke `revoked` (gpg wrote its revocation certificate when it made the key), then
    // export the trusted keys: every one but the stranger's.
    let rev =
        std::fs::read_to_string(w.path("gpg-sign").join(format!("openpgp-revocs.d/{revoked}.rev"))).unwrap();
    std::fs::write(
        w.path("revoke.asc"),
        rev.replace(":-----BEGIN PGP PUBLIC KEY BLOCK-----", "-----BEGIN PGP PUBLIC KEY BLOCK-----"),
    )
    .unwrap();
    run(w.gpg(None).arg("--import").arg(w.path("revoke.asc")));
    let keys = run(w.gpg(None).args(["--armor", "--export", &ada_gpg, &gone, &revoked]));
    std::fs::write(w.path("trusted.asc"), &keys).unwrap();
    run(Command::new("gpg")
        .env("GNUPGHOME", w.path("gpg-verify"))
        .args(["--batch", "--quiet", "--import"])
        .arg(w.path("trusted.asc")));

    let trust = Trust::new(
        Some(("allowed_signers", &std::fs::read_to_string(w.path("allowed_signers")).unwrap())),
        Some(("trusted.asc", &keys)),
    )
    .unwrap();
    let now = jiff::Timestamp::now();
    let mut table = String::new();
    for (what, id, want) in &cases {
        let verdict = trust.verify(&w.signed(id), now);
        let git = w.git_says(id);
        table.push_str(&format!(
            "{what:28} git={git:5} gitstate={:5} {:?} {:?}\n",
            verdict.trusted, verdict.reason, verdict.detail
        ));
        assert_eq!(verdict.trusted, git, "{what}: gitstate and git verify-commit disagree\n{table}");
        assert_eq!(verdict.reason, *want, "{what}\n{table}");
        if verdict.trusted {
            assert!(verdict.signer.is_some() && verdict.key.is_some(), "{what}: {verdict:?}");
        }
    }
    println!("{table}");
    // Who signed: the principal, the OpenPGP user id.
    assert_eq!(trust.verify(&w.signed(&cases[0].1), now).signer.as_deref(), Some("ada@example.com"));
    assert_eq!(
        trust.verify(&w.signed(&cases[4].1), now).signer.as_deref(),
        Some("ada-gpg@example.com <ada-gpg@example.com>")
    );
}

/// Over random sequences of signed and unsigned commits, `require = "all"` trusts a move
/// exactly when every commit it brings is signed by an allowed key, and names the oldest
/// that is not; `"tip"` looks at the new commit only. The model is the sequence itself.
#[test]
fn require_all_over_random_sequences_agrees_with_the_sequence() {
    let w = World::new();
    let ada = w.ssh_key("ada");
    let allowed = format!("ada@example.com {}\n", w.public(&ada));
    let trust = Trust::new(Some(("allowed_signers", &allowed)), None).unwrap();
    let base = w.commit_ssh("base", &ada);
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let source = gitstate_core::git::GitSource::local(w.repo.path()).unwrap().on_this_thread();
    let mut from = base;
    for round in 0..12 {
        let n = 1 + (next() % 5) as usize;
        let mut made: Vec<(String, bool)> = Vec::new();
        for i in 0..n {
            let signed = next() % 3 != 0;
            let id = if signed {
                w.commit_ssh(&format!("r{round} c{i}"), &ada)
            } else {
                w.commit_plain(&format!("r{round} c{i}"))
            };
            made.push((id, signed));
        }
        let tip = made.last().unwrap().0.clone();
        let commits = futures::executor::block_on(gitstate_core::ExpectedState::signed_commits(
            &source,
            Some(&CommitId::parse(&from).unwrap()),
            &CommitId::parse(&tip).unwrap(),
            1000,
        ))
        .unwrap();
        assert_eq!(commits.len(), n, "round {round}: the move brings its {n} commits");
        let now = jiff::Timestamp::now();
        let want_all = made.iter().find(|(_, s)| !*s).map(|(id, _)| id.clone());
        let judged = trust.verify_move(&commits, Require::All, now);
        match (judged.offending.as_deref(), want_all) {
            (None, None) => assert!(judged.tip.trusted),
            (Some((Some(bad), v)), Some(want)) => {
                assert_eq!(bad.as_str(), want, "round {round}: the oldest unsigned commit is named");
                assert_eq!(v.reason, Some(Reason::Unsigned));
            }
            (got, want) => panic!("round {round}: {got:?}, wanted the first bad to be {want:?} ({made:?})"),
        }
        let tip_signed = made.last().unwrap().1;
        assert_eq!(trust.verify_move(&commits, Require::Tip, now).trusted(), tip_signed, "round {round}");
        from = tip;
    }
}
