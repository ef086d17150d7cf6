//! Git remotes as the expected state: ls-refs without a clone, and the mirror, over
//! file://, git:// (a real `git daemon` on 127.0.0.1) and ssh:// (a real `sshd`).

use gitstate_core::git::{GitSource, RemoteRepo};
use gitstate_core::{CommitId, ExpectedError, Relation, ReportedCommit};
use gitstate_testkit::Repo;

/// A bare repository with environment refs, inside a directory a server can export.
struct Fixture {
    base: tempfile::TempDir,
    work: Repo,
    c: Vec<String>,
}

fn fixture() -> Fixture {
    let work = Repo::new();
    let c = work.commits(5, "c");
    work.update_ref("refs/heads/environments/production", &c[4]);
    work.update_ref("refs/heads/environments/staging", &c[2]);
    work.update_ref("refs/heads/unrelated", &c[0]);
    let base = tempfile::tempdir().unwrap();
    gitstate_testkit::git(base.path(), &["init", "-q", "--bare", "repo.git"]);
    push(&work, &base.path().join("repo.git"));
    Fixture { base, work, c }
}

fn push(work: &Repo, to: &std::path::Path) {
    work.git(&["push", "-q", "-f", &to.display().to_string(), "refs/heads/*:refs/heads/*"]);
}

fn expected_of(src: &GitSource, name: &str) -> Result<(String, String), String> {
    src.resolve_blocking(&[name.to_owned()])
        .map_err(|e| e.to_string())?
        .pop()
        .unwrap()
        .map(|e| (e.reference, e.commit.to_string()))
        .map_err(|e| e.to_string())
}

fn relate(src: &GitSource, expected: &str, reported: &str) -> Relation {
    src.relate_blocking(&CommitId::parse(expected).unwrap(), &[ReportedCommit::parse(reported).unwrap()])
        .unwrap()[0]
}

/// The remote at `url`, mirrored into `mirror` when given, through `ssh` when given.
fn open(url: &str, mirror: Option<&std::path::Path>, ssh: Option<&str>) -> GitSource {
    let remote = match mirror {
        Some(dir) => RemoteRepo::mirrored(url, dir),
        None => RemoteRepo::new(url),
    }
    .unwrap();
    GitSource::from_remote(match ssh {
        Some(command) => remote.with_ssh_command(command),
        None => remote,
    })
}

/// Every remote check, over whatever URL serves the fixture's repository.
fn exercise(fx: &Fixture, url: &str, ssh: Option<&str>) {
    let src = open(url, None, ssh);
    assert_eq!(
        expected_of(&src, "refs/heads/environments/production").unwrap(),
        ("refs/heads/environments/production".to_owned(), fx.c[4].clone())
    );
    assert_eq!(expected_of(&src, "environments/staging").unwrap().1, fx.c[2]);
    let missing = src.resolve_blocking(&["refs/heads/environments/nope".into()]).unwrap().pop().unwrap();
    assert!(matches!(missing, Err(ExpectedError::RefNotFound { .. })), "{missing:?}");

    let listed: Vec<String> =
        src.list_blocking("refs/heads/environments/").unwrap().into_iter().map(|e| e.reference).collect();
    assert_eq!(listed, ["refs/heads/environments/production", "refs/heads/environments/staging"]);

    // Without objects, a differing commit can only be `drifted`.
    assert_eq!(relate(&src, &fx.c[4], &fx.c[1]), Relation::Drifted);
    assert_eq!(relate(&src, &fx.c[4], &fx.c[4][..8]), Relation::InSync);

    // A ref moved on the server is seen at the next call.
    fx.work.update_ref("refs/heads/environments/staging", &fx.c[3]);
    push(&fx.work, &fx.base.path().join("repo.git"));
    assert_eq!(expected_of(&src, "refs/heads/environments/staging").unwrap().1, fx.c[3]);

    // With a mirror, history is available: behind, diverged, unknown.
    let state = tempfile::tempdir().unwrap();
    let mirror_dir = state.path().join("mirror.git");
    let m = open(url, Some(&mirror_dir), ssh);
    assert_eq!(expected_of(&m, "refs/heads/environments/production").unwrap().1, fx.c[4]);
    assert_eq!(relate(&m, &fx.c[4], &fx.c[1]), Relation::Behind(3));
    assert_eq!(relate(&m, &fx.c[4], &"cd".repeat(20)), Relation::UnknownCommit);

    // New commits arrive with the next resolve; the mirror is reused.
    fx.work.git(&["checkout", "-q", "-b", "hotfix", &fx.c[2]]);
    let h = fx.work.commits(2, "hotfix");
    fx.work.git(&["checkout", "-q", "main"]);
    let newer = fx.work.commits(1, "newer");
    fx.work.update_ref("refs/heads/environments/production", &newer[0]);
    fx.work.update_ref("refs/heads/environments/hotfix-base", &h[1]);
    push(&fx.work, &fx.base.path().join("repo.git"));
    let m = open(url, Some(&mirror_dir), ssh);
    m.resolve_blocking(&[
        "refs/heads/environments/production".into(),
        "refs/heads/environments/hotfix-base".into(),
    ])
    .unwrap();
    assert_eq!(relate(&m, &newer[0], &fx.c[4]), Relation::Behind(1));
    assert_eq!(relate(&m, &newer[0], &h[1]), Relation::Diverged { behind: 3, ahead: 2 });
    let listed = m.list_blocking("refs/heads/environments/").unwrap();
    assert_eq!(listed.len(), 3);
}

#[test]
fn file_url() {
    let fx = fixture();
    let url = format!("file://{}", fx.base.path().join("repo.git").display());
    exercise(&fx, &url, None);
}

#[test]
fn git_daemon() {
    let fx = fixture();
    let daemon = gitstate_testkit::git_daemon(fx.base.path());
    exercise(&fx, &format!("git://127.0.0.1:{}/repo.git", daemon.port), None);
}

#[test]
fn ssh_with_a_git_ssh_command() {
    let fx = fixture();
    let sshd = gitstate_testkit::SshServer::start();
    exercise(&fx, &sshd.url(&fx.base.path().join("repo.git")), Some(&sshd.ssh_command()));
}

#[test]
fn unreachable_remote_is_a_clear_error() {
    let port = gitstate_testkit::free_port();
    let src = GitSource::remote(&format!("git://127.0.0.1:{port}/nothing.git")).unwrap();
    let err = src.resolve_blocking(&["refs/heads/x".into()]).unwrap_err();
    assert!(matches!(err, ExpectedError::Remote { .. }), "{err:?}");
    assert!(err.to_string().contains(&format!("127.0.0.1:{port}")), "{err}");
}

/// A port on 127.0.0.1 that accepts connections and never sends a byte.
fn silent_server() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    port
}

#[test]
fn a_git_daemon_that_never_answers_is_an_error_in_bounded_time() {
    let port = silent_server();
    let url = format!("git://127.0.0.1:{port}/repo.git");
    let remote = gitstate_core::git::RemoteRepo::new(&url)
        .unwrap()
        .with_timeout(std::time::Duration::from_millis(300));
    let err = remote.list("refs/heads/environments/").unwrap_err();
    assert!(matches!(err, ExpectedError::Remote { .. }), "{err:?}");
    assert!(err.to_string().contains("timed out: the git daemon did not complete within 300ms"), "{err}");
}

#[test]
fn an_ssh_server_that_never_greets_is_an_error_in_bounded_time() {
    let port = silent_server();
    let url = format!("ssh://git@127.0.0.1:{port}/repo.git");
    let remote = RemoteRepo::new(&url).unwrap().with_timeout(std::time::Duration::from_secs(1));
    let err = remote.list("refs/heads/environments/").unwrap_err();
    assert!(matches!(err, ExpectedError::Remote { .. }), "{err:?}");
    assert!(err.to_string().contains("timed out"), "{err}");
}

#[test]
fn a_trickling_git_daemon_is_cut_at_the_whole_listings_deadline() {
    let url = format!("git://127.0.0.1:{}/repo.git", gitstate_testkit::trickling_git_server());
    let remote = RemoteRepo::new(&url).unwrap().with_timeout(std::time::Duration::from_secs(1));
    let start = std::time::Instant::now();
    let err = remote.list("refs/heads/environments/").unwrap_err();
    assert!(start.elapsed() < std::time::Duration::from_secs(10), "{:?}", start.elapsed());
    assert!(err.to_string().contains("did not complete within 1s"), "{err}");
}

#[test]
fn a_git_ssh_command_that_trickles_or_goes_silent_is_killed_at_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("ssh.pid");
    // What GIT_SSH_COMMAND may run: a server that trickles, one that goes silent after
    // connecting. The arguments gitstate appends are commented out.
    let trickle = "printf fff0; while :; do printf a; sleep 0.1; done #".to_owned();
    let silent = format!("echo $$ > {}; sleep 600 #", pidfile.display());
    for command in [trickle, silent] {
        for mirror in [false, true] {
            let state = tempfile::tempdir().unwrap();
            let url = "ssh://git@127.0.0.1:1/repo.git";
            let remote = if mirror {
                RemoteRepo::mirrored(url, &state.path().join("mirror.git")).unwrap()
            } else {
                RemoteRepo::new(url).unwrap()
            };
            let remote = remote.with_ssh_command(&command).with_timeout(std::time::Duration::from_secs(1));
            let start = std::time::Instant::now();
            let err = remote.resolve(&["refs/heads/environments/production".into()]).unwrap_err();
            assert!(start.elapsed() < std::time::Duration::from_secs(10), "{:?}", start.elapsed());
            assert!(
                err.to_string().contains("did not complete within 1s"),
                "{command} (mirror {mirror}): {err}"
            );
        }
    }
    // The silent command's process group is gone, not left sleeping.
    let pid = std::fs::read_to_string(&pidfile).unwrap().trim().to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default().contains(") Z ")
    {
        assert!(std::time::Instant::now() < deadline, "the ssh command {pid} survived");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
