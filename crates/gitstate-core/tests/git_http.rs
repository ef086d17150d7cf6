//! Git remotes over smart HTTP: `git http-backend` behind a small CGI server on 127.0.0.1.
//! Needs the `git-https` feature (the CLI enables it; `cargo test --workspace` has it).

mod common;

use common::Now;
use gitstate_core::git::GitSource;
use gitstate_core::{CommitId, Relation, ReportedCommit};
use gitstate_testkit::Repo;

#[test]
fn smart_http_ls_refs_and_mirror() {
    let work = Repo::new();
    let c = work.commits(4, "c");
    work.update_ref("refs/heads/environments/production", &c[3]);
    let base = tempfile::tempdir().unwrap();
    gitstate_testkit::git(base.path(), &["init", "-q", "--bare", "repo.git"]);
    work.git(&[
        "push",
        "-q",
        &base.path().join("repo.git").display().to_string(),
        "refs/heads/*:refs/heads/*",
    ]);
    let server = gitstate_testkit::git_http_backend(base.path());
    let url = format!("http://127.0.0.1:{}/repo.git", server.port);

    let src = GitSource::remote(&url).unwrap();
    let got =
        src.resolve_now(&["refs/heads/environments/production".into()]).unwrap().pop().unwrap().unwrap();
    assert_eq!(got.commit.as_str(), c[3]);
    let listed = src.list_now("refs/heads/environments/").unwrap();
    assert_eq!(listed.len(), 1);

    let state = tempfile::tempdir().unwrap();
    let m = GitSource::mirrored(&url, &state.path().join("mirror.git")).unwrap();
    m.resolve_now(&["refs/heads/environments/production".into()]).unwrap();
    let rel =
        m.relate_now(&CommitId::parse(&c[3]).unwrap(), &[ReportedCommit::parse(&c[0]).unwrap()]).unwrap();
    assert_eq!(rel, [Relation::Behind(3)]);

    // A missing repository: an error that names the URL.
    let bad = GitSource::remote(&format!("http://127.0.0.1:{}/missing.git", server.port)).unwrap();
    let err = bad.resolve_now(&["refs/heads/x".into()]).unwrap_err().to_string();
    assert!(err.contains("127.0.0.1") && err.contains("missing.git"), "{err}");

    // Credentials are never sent in clear text, and never shown.
    let with_secret =
        GitSource::remote(&format!("http://user:s3cret@127.0.0.1:{}/repo.git", server.port)).unwrap();
    let err = with_secret.resolve_now(&["refs/heads/x".into()]).unwrap_err().to_string();
    assert!(err.contains("clear text"), "{err}");
    assert!(!err.contains("s3cret"), "secret leaked: {err}");
    assert!(format!("{with_secret:?}").contains("***@127.0.0.1"));
}

/// SPEC §15 over smart HTTP: a rollback is `git push --force-with-lease` from the mirror
/// through `git http-backend` (receive-pack on); a stale lease is refused, nothing moves.
#[test]
fn a_rollback_pushes_with_a_lease_over_http_backend() {
    use gitstate_core::{ExpectedError, ExpectedState};
    let work = Repo::new();
    let c = work.commits(3, "c");
    let prod = "refs/heads/environments/production";
    work.update_ref(prod, &c[2]);
    let base = tempfile::tempdir().unwrap();
    let bare = base.path().join("repo.git");
    gitstate_testkit::git(base.path(), &["init", "-q", "--bare", "repo.git"]);
    gitstate_testkit::git(&bare, &["config", "http.receivepack", "true"]);
    work.git(&["push", "-q", &bare.display().to_string(), "refs/heads/*:refs/heads/*"]);
    let server = gitstate_testkit::git_http_backend(base.path());
    let url = format!("http://127.0.0.1:{}/repo.git", server.port);
    let state = tempfile::tempdir().unwrap();
    let src = GitSource::mirrored(&url, &state.path().join("mirror.git")).unwrap();
    let id = |i: usize| CommitId::parse(&c[i]).unwrap();
    futures::executor::block_on(src.move_ref(prod, &id(2), &id(1), "gitstate: roll back")).unwrap();
    assert_eq!(gitstate_testkit::git(&bare, &["rev-parse", prod]), c[1]);
    let err =
        futures::executor::block_on(src.move_ref(prod, &id(2), &id(0), "gitstate: roll back")).unwrap_err();
    assert!(matches!(err, ExpectedError::Refused { .. }), "{err}");
    assert!(err.to_string().contains("stale info"), "{err}");
    assert_eq!(gitstate_testkit::git(&bare, &["rev-parse", prod]), c[1], "nothing moved");
}
