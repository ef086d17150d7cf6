//! Git remotes as the expected state: ls-refs without a clone, and the mirror, over
//! file://, git:// (a real `git daemon` on 127.0.0.1) and ssh:// (a real `sshd`).

mod common;

use common::Now;
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
    src.resolve_now(&[name.to_owned()])
        .map_err(|e| e.to_string())?
        .pop()
        .unwrap()
        .map(|e| (e.reference, e.commit.to_string()))
        .map_err(|e| e.to_string())
}

fn relate(src: &GitSource, expected: &str, reported: &str) -> Relation {
    src.relate_now(&CommitId::parse(expected).unwrap(), &[ReportedCommit::parse(reported).unwrap()]).unwrap()
        [0]
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
    let missing = src.resolve_now(&["refs/heads/environments/nope".into()]).unwrap().pop().unwrap();
    assert!(matches!(missing, Err(ExpectedError::RefNotFound { .. })), "{missing:?}");

    let listed: Vec<String> =
        src.list_now("refs/heads/environments/").unwrap().into_iter().map(|e| e.reference).collect();
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

    // New commits are fetched when a commit to relate is missing; the mirror is reused.
    fx.work.git(&["checkout", "-q", "-b", "hotfix", &fx.c[2]]);
    let h = fx.work.commits(2, "hotfix");
    fx.work.git(&["checkout", "-q", "main"]);
    let newer = fx.work.commits(1, "newer");
    fx.work.update_ref("refs/heads/environments/production", &newer[0]);
    fx.work.update_ref("refs/heads/environments/hotfix-base", &h[1]);
    push(&fx.work, &fx.base.path().join("repo.git"));
    let m = open(url, Some(&mirror_dir), ssh);
    m.resolve_now(&[
        "refs/heads/environments/production".into(),
        "refs/heads/environments/hotfix-base".into(),
    ])
    .unwrap();
    assert_eq!(relate(&m, &newer[0], &fx.c[4]), Relation::Behind(1));
    assert_eq!(relate(&m, &newer[0], &h[1]), Relation::Diverged { behind: 3, ahead: 2 });
    // The mirror names the commits at stake, as a local repository does (SPEC §11).
    let (pending, unexpected) =
        m.subjects_now(&CommitId::parse(&newer[0]).unwrap(), &ReportedCommit::parse(&h[1]).unwrap()).unwrap();
    assert_eq!(
        (pending, unexpected),
        (
            vec!["newer 0".to_owned(), "c 4".into(), "c 3".into()],
            vec!["hotfix 1".to_owned(), "hotfix 0".into()]
        )
    );
    // Without a mirror the history is unknown: nothing is named.
    assert_eq!(
        src.subjects_now(&CommitId::parse(&newer[0]).unwrap(), &ReportedCommit::parse(&h[1]).unwrap()),
        None
    );
    let listed = m.list_now("refs/heads/environments/").unwrap();
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
    let err = src.resolve_now(&["refs/heads/x".into()]).unwrap_err();
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
    let listed =
        common::within(std::time::Duration::from_secs(10), move || remote.list("refs/heads/environments/"));
    let err = listed.unwrap_err();
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
            let resolved = common::within(std::time::Duration::from_secs(10), move || {
                remote.resolve(&["refs/heads/environments/production".into()])
            });
            let err = resolved.unwrap_err();
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

fn pkt(s: &[u8]) -> Vec<u8> {
    let mut out = format!("{:04x}", s.len() + 4).into_bytes();
    out.extend_from_slice(s);
    out
}

/// A `git://` server for one connection: reads the request, then answers with `caps` (a
/// protocol v2 capability advertisement, or anything), and — when `refs` is given —
/// reads the client's command and answers it with `refs`.
fn one_shot_daemon(caps: Vec<u8>, refs: Option<Vec<u8>>) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let Ok((mut s, _)) = listener.accept() else { return };
        let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(5)));
        let read_pkt = |s: &mut std::net::TcpStream| -> Option<Vec<u8>> {
            let mut len = [0u8; 4];
            s.read_exact(&mut len).ok()?;
            let n = usize::from_str_radix(std::str::from_utf8(&len).ok()?, 16).ok()?;
            let mut body = vec![0u8; n.saturating_sub(4)];
            s.read_exact(&mut body).ok()?;
            Some(if n == 0 { b"0000".to_vec() } else { body })
        };
        if read_pkt(&mut s).is_none() || s.write_all(&caps).is_err() {
            return;
        }
        if let Some(refs) = refs {
            while let Some(p) = read_pkt(&mut s) {
                if p == b"0000" {
                    break;
                }
            }
            let _ = s.write_all(&refs);
        }
    });
    port
}

fn v2_caps() -> Vec<u8> {
    [pkt(b"version 2\n"), pkt(b"agent=fake/1\n"), pkt(b"ls-refs=unborn\n"), pkt(b"fetch\n"), b"0000".to_vec()]
        .concat()
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(gitstate_testkit::proptest_cases(48)))]

    /// The ls-refs reader against a model: what a server advertises, filtered by the
    /// prefix, peeled where the server says so, sorted by name.
    #[test]
    fn advertised_refs_are_listed_as_advertised(
        refs in proptest::collection::btree_map("refs/(heads/environments|tags|heads)/[a-zA-Z0-9é_.-]{1,8}", ("[0-9a-f]{40}", proptest::option::of("[0-9a-f]{40}")), 0..30),
    ) {
        let prefix = "refs/heads/environments/";
        let mut body = Vec::new();
        let mut model = Vec::new();
        for (name, (id, peeled)) in &refs {
            let line = match peeled {
                Some(p) => format!("{id} {name} peeled:{p}\n"),
                None => format!("{id} {name}\n"),
            };
            body.extend(pkt(line.as_bytes()));
            if name.starts_with(prefix) {
                model.push((name.clone(), peeled.clone().unwrap_or_else(|| id.clone())));
            }
        }
        body.extend(b"0000");
        let port = one_shot_daemon(v2_caps(), Some(body));
        let remote = RemoteRepo::new(&format!("git://127.0.0.1:{port}/repo.git"))
            .unwrap()
            .with_timeout(std::time::Duration::from_secs(5));
        let got: Vec<(String, String)> =
            remote.list(prefix).unwrap().into_iter().map(|e| (e.reference, e.commit.to_string())).collect();
        proptest::prop_assert_eq!(got, model);
    }

    /// Whatever a server sends — arbitrary bytes instead of the advertisement, or arbitrary
    /// pkt-lines as refs — listing ends with refs or an error, never a panic or a hang.
    #[test]
    fn arbitrary_answers_are_an_error_or_refs(
        raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
        lines in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..60), 0..6),
        as_refs in proptest::prelude::any::<bool>(),
    ) {
        let port = if as_refs {
            let mut body: Vec<u8> = lines.iter().flat_map(|l| pkt(l)).collect();
            body.extend(b"0000");
            one_shot_daemon(v2_caps(), Some(body))
        } else {
            one_shot_daemon(raw, None)
        };
        let remote = RemoteRepo::new(&format!("git://127.0.0.1:{port}/repo.git"))
            .unwrap()
            .with_timeout(std::time::Duration::from_secs(5));
        let start = std::time::Instant::now();
        if let Ok(listed) = remote.list("refs/heads/environments/") {
            proptest::prop_assert!(listed.iter().all(|e| e.reference.starts_with("refs/heads/environments/")));
        }
        proptest::prop_assert!(start.elapsed() < std::time::Duration::from_secs(10));
    }
}

/// SPEC §15 on a remote: the ref moved with `git push --force-with-lease` from the mirror,
/// over a real `git daemon` with receive-pack on (`git http-backend`: tests/git_http.rs);
/// a lease on a commit the ref no longer points at is refused, and nothing moves.
#[test]
fn a_rollback_pushes_with_a_lease_over_git_daemon() {
    use gitstate_core::ExpectedState;
    let f = fixture();
    let bare = f.base.path().join("repo.git");
    let daemon = gitstate_testkit::git_daemon_pushable(f.base.path());
    let prod = "refs/heads/environments/production";
    let id = |i: usize| CommitId::parse(&f.c[i]).unwrap();
    let remote_ref = || gitstate_testkit::git(&bare, &["rev-parse", prod]);
    let (url, from, to) = (format!("git://127.0.0.1:{}/repo.git", daemon.port), 4, 3);
    {
        let mirror = tempfile::tempdir().unwrap();
        let src = GitSource::mirrored(&url, &mirror.path().join("m.git")).unwrap();
        futures::executor::block_on(src.move_ref(prod, &id(from), &id(to), "gitstate: roll back"))
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(remote_ref(), f.c[to], "{url}");
        // The lease: the ref is at `to` now, not `from`.
        let err = futures::executor::block_on(src.move_ref(prod, &id(from), &id(0), "gitstate: roll back"))
            .unwrap_err();
        assert!(matches!(err, ExpectedError::Refused { .. }), "{url}: {err}");
        assert!(
            err.to_string().contains("stale info") || err.to_string().contains("rejected"),
            "{url}: {err}"
        );
        assert_eq!(remote_ref(), f.c[to], "{url}: nothing moved");
    }
    // A remote without a mirror cannot be moved.
    let bare_only = GitSource::remote(&format!("git://127.0.0.1:{}/repo.git", daemon.port)).unwrap();
    let err = futures::executor::block_on(bare_only.move_ref(prod, &id(1), &id(0), "x")).unwrap_err();
    assert!(err.to_string().contains("without a mirror"), "{err}");
}

/// SPEC §19: a push's poll and the pass it starts share one listing of a remote (a real
/// `git daemon`): read again while it is fresh, the refs are answered from it — unless a
/// push said refs moved, after which they are read anew.
#[test]
fn a_listing_answers_again_while_fresh_and_a_push_makes_it_read_anew() {
    use gitstate_core::ExpectedState as _;
    let fx = fixture();
    let daemon = gitstate_testkit::git_daemon(fx.base.path());
    let url = format!("git://127.0.0.1:{}/repo.git", daemon.port);
    // Fresh for an hour: what is read again comes from the listing, whatever the clock.
    let hour = std::time::Duration::from_secs(3600);
    let src = GitSource::from_remote(RemoteRepo::new(&url).unwrap().with_listing_fresh(hour));
    let production = "environments/production";
    assert_eq!(expected_of(&src, production).unwrap().1, fx.c[4]);
    let bare = fx.base.path().join("repo.git");
    gitstate_testkit::git(&bare, &["update-ref", "refs/heads/environments/production", &fx.c[1]]);
    assert_eq!(expected_of(&src, production).unwrap().1, fx.c[4], "answered from the listing");
    // A push webhook says refs moved: read anew.
    src.pushed(&["refs/heads/environments/production".to_owned()]);
    assert_eq!(expected_of(&src, production).unwrap().1, fx.c[1]);
    // Never fresh: every read asks the server.
    let never = std::time::Duration::ZERO;
    let src = GitSource::from_remote(RemoteRepo::new(&url).unwrap().with_listing_fresh(never));
    assert_eq!(expected_of(&src, production).unwrap().1, fx.c[1]);
    gitstate_testkit::git(&bare, &["update-ref", "refs/heads/environments/production", &fx.c[3]]);
    assert_eq!(expected_of(&src, production).unwrap().1, fx.c[3]);
}
