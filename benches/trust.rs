//! SPEC §18: verifying a move of 1,000 SSH-signed commits — read from the repository
//! (`signed_commits`) and judged, every commit, with no verdict cached — as the loop does
//! when a ref jumps 1,000 commits. The goal is under 1 s on 2 cores. The repository is
//! built on first run (in the target dir): a key from `ssh-keygen`, each commit signed
//! in-process in SSHSIG form exactly as `git commit -S` writes it, and written with `git
//! hash-object`. Run: `cargo bench --bench trust` (or `scripts/bench`).
#![allow(missing_docs)] // criterion_group! generates undocumented functions

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gitstate::core::{CommitId, ExpectedState, git::GitSource};
use gitstate_trust::{Require, Trust};

const COMMITS: usize = 1_000;

fn git(dir: &Path, args: &[&str], input: Option<&[u8]>) -> String {
    let mut child = Command::new("git")
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("git is installed");
    if let Some(data) = input {
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), data).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "git {args:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The repository (base commit, then 1,000 signed commits on top) and the allowed signers.
fn world() -> (PathBuf, String, String, String) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-signed-1000");
    let done = dir.join("done");
    if !done.exists() {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("key");
        let made = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "bench", "-f"])
            .arg(&key)
            .status()
            .expect("ssh-keygen is installed");
        assert!(made.success());
        let private = ssh_key::PrivateKey::from_openssh(std::fs::read(&key).unwrap()).unwrap();
        git(&dir, &["init", "-q", "--bare", "repo.git"], None);
        let repo = dir.join("repo.git");
        let tree = git(&repo, &["hash-object", "-t", "tree", "-w", "--stdin"], Some(b""));
        let mut parent: Option<String> = None;
        let mut ids = Vec::new();
        for i in 0..=COMMITS {
            let mut payload = format!("tree {tree}\n");
            if let Some(p) = &parent {
                payload.push_str(&format!("parent {p}\n"));
            }
            let when = 1_767_225_600 + i as i64 * 60;
            payload.push_str(&format!(
                "author Bench <bench@example.com> {when} +0000\ncommitter Bench <bench@example.com> {when} +0000\n\ncommit {i}\n"
            ));
            let sig = private.sign("git", ssh_key::HashAlg::Sha512, payload.as_bytes()).unwrap();
            let pem = sig.to_pem(ssh_key::LineEnding::LF).unwrap();
            let header: String = pem
                .trim_end()
                .lines()
                .enumerate()
                .map(|(n, l)| if n == 0 { format!("gpgsig {l}\n") } else { format!(" {l}\n") })
                .collect();
            let (head, body) = payload.split_once("\n\n").unwrap();
            let object = format!("{head}\n{header}\n{body}");
            let id = git(&repo, &["hash-object", "-t", "commit", "-w", "--stdin"], Some(object.as_bytes()));
            ids.push(id.clone());
            parent = Some(id);
        }
        let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
        std::fs::write(dir.join("allowed_signers"), format!("bench@example.com {public}")).unwrap();
        std::fs::write(dir.join("ends"), format!("{} {}", ids[0], ids[COMMITS])).unwrap();
        std::fs::write(&done, "").unwrap();
    }
    let ends = std::fs::read_to_string(dir.join("ends")).unwrap();
    let (from, to) = ends.split_once(' ').unwrap();
    let allowed = std::fs::read_to_string(dir.join("allowed_signers")).unwrap();
    (dir.join("repo.git"), from.to_owned(), to.to_owned(), allowed)
}

fn verify_a_move(c: &mut Criterion) {
    let (repo, from, to, allowed) = world();
    let source = GitSource::local(&repo).unwrap().on_this_thread();
    let (from, to) = (CommitId::parse(&from).unwrap(), CommitId::parse(&to).unwrap());
    let now = jiff::Timestamp::now();
    let mut g = c.benchmark_group("trust");
    g.throughput(Throughput::Elements(COMMITS as u64));
    g.sample_size(10);
    g.bench_function("verify_move_1000_signed_commits", |b| {
        b.iter(|| {
            // A fresh Trust each time: nothing cached, every signature checked.
            let trust = Trust::new(Some(("allowed_signers", &allowed)), None).unwrap();
            let commits =
                futures::executor::block_on(source.signed_commits(Some(&from), &to, 10_000)).unwrap();
            assert_eq!(commits.len(), COMMITS);
            let judged = trust.verify_move(&commits, Require::All, now);
            assert!(judged.trusted());
            black_box(judged)
        })
    });
    g.finish();
}

criterion_group!(benches, verify_a_move);
criterion_main!(benches);
