//! Resolving 1,000 expected commits among 100,000 packed refs with gix, in one call, as
//! `gitstate expected` does. The repository is built with git on first run (in
//! `target/bench-repos/`). Run: `cargo bench --bench expected`.
#![allow(missing_docs)] // criterion_group! generates undocumented functions

use std::hint::black_box;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gitstate::core::git::LocalRepo;

const REFS: usize = 100_000;
const ASKED: usize = 1_000;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .args(args)
        .output()
        .expect("git is installed");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A bare repository with 100 commits and 100,000 refs under refs/heads/environments/, packed.
fn repo() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-refs-100k.git");
    if dir.join("packed-refs").exists() {
        return dir;
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    git(&dir, &["init", "-q", "--bare"]);
    let mut fi = Command::new("git")
        .current_dir(&dir)
        .args(["fast-import", "--quiet"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut s = String::new();
    for i in 0..100 {
        let msg = format!("commit {i}\n");
        s.push_str(&format!(
            "commit refs/heads/main\nmark :{}\ncommitter b <b@example.invalid> {} +0000\ndata {}\n{msg}\n",
            i + 1,
            1_700_000_000 + i,
            msg.len()
        ));
    }
    for r in 0..REFS {
        s.push_str(&format!("reset refs/heads/environments/env-{r:06}\nfrom :{}\n\n", r % 100 + 1));
    }
    fi.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    assert!(fi.wait().unwrap().success());
    git(&dir, &["pack-refs", "--all"]);
    dir
}

fn bench(c: &mut Criterion) {
    let dir = repo();
    let names: Vec<String> =
        (0..ASKED).map(|i| format!("refs/heads/environments/env-{:06}", i * (REFS / ASKED))).collect();
    let repo = LocalRepo::open(&dir).unwrap();
    assert!(repo.resolve(&names).iter().all(Result::is_ok));
    let mut g = c.benchmark_group("expected");
    g.throughput(Throughput::Elements(ASKED as u64));
    g.sample_size(20);
    g.bench_function("resolve_1000_of_100k_packed_refs", |b| b.iter(|| black_box(repo.resolve(&names))));
    g.bench_function("list_100k_under_prefix", |b| {
        b.iter(|| black_box(repo.list("refs/heads/environments/").unwrap()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
