//! Git as the expected state, against real local repositories built with git.

mod common;

use common::Now;
use gitstate_core::git::{GitSource, LocalRepo};
use gitstate_core::{CommitId, Expected, ExpectedError, Relation, ReportedCommit};
use gitstate_testkit::{Repo, git, git_cmd};

fn rc(s: &str) -> ReportedCommit {
    ReportedCommit::parse(s).unwrap()
}

fn cid(s: &str) -> CommitId {
    CommitId::parse(s).unwrap()
}

fn relate(repo: &LocalRepo, expected: &str, reported: &str) -> Relation {
    repo.relate(&cid(expected), &[rc(reported)]).unwrap()[0]
}

fn resolve(repo: &LocalRepo, name: &str) -> Result<(String, String), ExpectedError> {
    repo.resolve(&[name.to_owned()]).pop().unwrap().map(|e| (e.reference, e.commit.to_string()))
}

fn list(repo: &LocalRepo, prefix: &str) -> Vec<(String, String)> {
    repo.list(prefix).unwrap().into_iter().map(|e| (e.reference, e.commit.to_string())).collect()
}

#[test]
fn linear_history_behind_ahead_and_abbreviations() {
    let r = Repo::new();
    let c = r.commits(6, "c");
    r.update_ref("refs/heads/environments/production", &c[5]);
    let repo = LocalRepo::open(r.path()).unwrap();

    let (name, id) = resolve(&repo, "refs/heads/environments/production").unwrap();
    assert_eq!((name.as_str(), id.as_str()), ("refs/heads/environments/production", c[5].as_str()));
    // Short names resolve like git.
    assert_eq!(resolve(&repo, "environments/production").unwrap().1, c[5]);

    assert_eq!(relate(&repo, &c[5], &c[5]), Relation::InSync);
    assert_eq!(relate(&repo, &c[5], &c[5][..7]), Relation::InSync);
    assert_eq!(relate(&repo, &c[5], &c[2]), Relation::Behind(3));
    assert_eq!(relate(&repo, &c[5], &c[2][..9].to_uppercase()), Relation::Behind(3));
    assert_eq!(relate(&repo, &c[2], &c[5]), Relation::Ahead(3));
    assert_eq!(relate(&repo, &c[5], &c[0]), Relation::Behind(r.count(&c[0], &c[5])));
}

#[test]
fn merges_count_like_rev_list() {
    let r = Repo::new();
    let base = r.commits(3, "base");
    r.git(&["checkout", "-q", "-b", "feature"]);
    let feat = r.commits(4, "feature");
    r.git(&["checkout", "-q", "main"]);
    let main = r.commits(2, "main");
    r.git(&["merge", "-q", "--no-ff", "-m", "merge feature", "feature"]);
    let merged = r.git(&["rev-parse", "HEAD"]);
    // A later side branch from the merge, and one more merge on top.
    r.git(&["checkout", "-q", "-b", "late", &feat[2]]);
    let late = r.commits(2, "late");
    r.git(&["checkout", "-q", "main"]);
    r.git(&["merge", "-q", "--no-ff", "-m", "merge late", "late"]);
    let top = r.git(&["rev-parse", "HEAD"]);

    // Object walk first, then the same questions answered from the commit-graph.
    for with_graph in [false, true] {
        if with_graph {
            r.git(&["commit-graph", "write", "--reachable"]);
        }
        let repo = LocalRepo::open(r.path()).unwrap();
        for old in [&base[1], &feat[1], &feat[3], &main[0], &merged, &late[0]] {
            assert_eq!(
                relate(&repo, &top, old),
                Relation::Behind(r.count(old, &top)),
                "from {old}, graph {with_graph}"
            );
        }
        assert_eq!(relate(&repo, &base[0], &merged), Relation::Ahead(r.count(&base[0], &merged)));
        // A side branch against the other side: diverged, counts from the merge base.
        for (a, b) in [(&main[1], &feat[3]), (&merged, &late[1]), (&late[0], &main[0])] {
            assert_eq!(
                relate(&repo, a, b),
                Relation::Diverged { behind: r.count(b, a), ahead: r.count(a, b) },
                "{a} vs {b}, graph {with_graph}"
            );
        }
    }
}

#[test]
fn out_of_band_hotfix_is_diverged_with_both_counts() {
    let r = Repo::new();
    let c = r.commits(4, "c");
    r.git(&["checkout", "-q", "-b", "hotfix", &c[1]]);
    let h = r.commits(2, "hotfix");
    r.git(&["checkout", "-q", "main"]);
    let repo = LocalRepo::open(r.path()).unwrap();
    assert_eq!(relate(&repo, &c[3], &h[1]), Relation::Diverged { behind: 2, ahead: 2 });
    assert_eq!(relate(&repo, &c[3], &h[1][..7]), Relation::Diverged { behind: 2, ahead: 2 });
}

#[test]
fn unrelated_histories_are_diverged_and_strangers_unknown() {
    let r = Repo::new();
    let c = r.commits(2, "c");
    r.git(&["checkout", "-q", "--orphan", "other"]);
    let o = r.commits(3, "orphan");
    let repo = LocalRepo::open(r.path()).unwrap();
    assert_eq!(relate(&repo, &c[1], &o[2]), Relation::Diverged { behind: 2, ahead: 3 });
    r.git(&["commit-graph", "write", "--reachable"]);
    let repo = LocalRepo::open(r.path()).unwrap();
    assert_eq!(
        relate(&repo, &c[1], &o[2]),
        Relation::Diverged { behind: 2, ahead: 3 },
        "from the commit-graph"
    );

    assert_eq!(relate(&repo, &c[1], &"ab".repeat(20)), Relation::UnknownCommit);
    assert_eq!(relate(&repo, &c[1], "abcdef0"), Relation::UnknownCommit);
    // A blob is not a commit.
    let blob = gitstate_testkit::git_cmd(r.path())
        .args(["hash-object", "-w", "--stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut ch| {
            use std::io::Write;
            ch.stdin.take().unwrap().write_all(b"not a commit\n")?;
            ch.wait_with_output()
        })
        .unwrap();
    let blob = String::from_utf8(blob.stdout).unwrap().trim().to_owned();
    assert_eq!(relate(&repo, &c[1], &blob), Relation::UnknownCommit);
}

#[test]
fn ambiguous_abbreviation_is_unknown_commit() {
    let r = Repo::new();
    let c = r.commits(1, "c");
    // Write enough blobs that two share their first 7 hex digits (birthday bound of 2^28).
    let mut script = Vec::new();
    for i in 0..60_000u32 {
        let data = format!("blob {i}\n");
        script.extend_from_slice(format!("blob\ndata {}\n{data}\n", data.len()).as_bytes());
    }
    let mut fi = gitstate_testkit::git_cmd(r.path())
        .args(["fast-import", "--quiet"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        fi.stdin.take().unwrap().write_all(&script).unwrap();
    }
    assert!(fi.wait().unwrap().success());
    let all = r.git(&["cat-file", "--batch-all-objects", "--batch-check=%(objectname)"]);
    let mut ids: Vec<&str> = all.lines().collect();
    ids.sort();
    let dup =
        ids.windows(2).find(|w| w[0][..7] == w[1][..7]).expect("a 7-digit collision among 60,000 objects");
    let repo = LocalRepo::open(r.path()).unwrap();
    assert_eq!(relate(&repo, &c[0], &dup[0][..7]), Relation::UnknownCommit);
    // The full ids are found (and are blobs, so still not commits).
    assert_eq!(relate(&repo, &c[0], dup[0]), Relation::UnknownCommit);
}

#[test]
fn annotated_tags_are_peeled() {
    let r = Repo::new();
    let c = r.commits(3, "c");
    r.git(&["tag", "-a", "-m", "release", "v1.0", &c[1]]);
    let tag_object = r.git(&["rev-parse", "v1.0"]);
    assert_ne!(tag_object, c[1]);
    let repo = LocalRepo::open(r.path()).unwrap();
    assert_eq!(resolve(&repo, "v1.0").unwrap(), ("refs/tags/v1.0".to_owned(), c[1].clone()));
    assert_eq!(resolve(&repo, "refs/tags/v1.0").unwrap().1, c[1]);
    // A target reporting the tag object's id runs the tagged commit.
    assert_eq!(relate(&repo, &c[2], &tag_object), Relation::Behind(1));
}

#[test]
fn refs_moved_by_another_process_are_seen_loose_and_packed() {
    let r = Repo::new();
    let c = r.commits(4, "c");
    let env = "refs/heads/environments/staging";
    r.update_ref(env, &c[0]);
    let repo = LocalRepo::open(r.path()).unwrap();
    assert_eq!(resolve(&repo, env).unwrap().1, c[0]);

    r.update_ref(env, &c[1]);
    assert_eq!(resolve(&repo, env).unwrap().1, c[1], "loose ref moved");

    r.git(&["pack-refs", "--all"]);
    assert!(!r.path().join(".git/refs/heads/environments/staging").exists());
    assert_eq!(resolve(&repo, env).unwrap().1, c[1], "after pack-refs");

    r.update_ref(env, &c[2]);
    assert_eq!(resolve(&repo, env).unwrap().1, c[2], "loose ref shadows the packed one");

    r.git(&["pack-refs", "--all"]);
    r.update_ref(env, &c[3]);
    r.git(&["pack-refs", "--all"]);
    assert_eq!(resolve(&repo, env).unwrap().1, c[3], "packed-refs rewritten");

    // New commits written after opening are found too.
    let fresh = r.commit("later");
    assert_eq!(relate(&repo, &fresh, &c[3]), Relation::Behind(1));
}

#[test]
fn bare_repositories_and_listing_under_a_prefix() {
    let work = Repo::new();
    let c = work.commits(3, "c");
    work.update_ref("refs/heads/environments/production", &c[2]);
    work.update_ref("refs/heads/environments/staging", &c[1]);
    work.update_ref("refs/heads/environments/eu/west", &c[0]);
    work.update_ref("refs/heads/other", &c[0]);
    work.git(&["tag", "-a", "-m", "t", "env-tag", &c[1]]);
    let bare = Repo::new_bare();
    work.git(&[
        "push",
        "-q",
        &bare.path().display().to_string(),
        "refs/heads/*:refs/heads/*",
        "refs/tags/*:refs/tags/*",
    ]);
    bare.git(&["pack-refs", "--all"]);

    let repo = LocalRepo::open(bare.path()).unwrap();
    let listed = list(&repo, "refs/heads/environments/");
    assert_eq!(
        listed,
        [
            ("refs/heads/environments/eu/west".to_owned(), c[0].clone()),
            ("refs/heads/environments/production".to_owned(), c[2].clone()),
            ("refs/heads/environments/staging".to_owned(), c[1].clone()),
        ]
    );
    // Annotated tags listed under a prefix are peeled to their commits.
    let tags = repo.list("refs/tags/").unwrap();
    assert_eq!(tags.len(), 1);
    assert_eq!((tags[0].reference.as_str(), tags[0].commit.as_str()), ("refs/tags/env-tag", c[1].as_str()));
    assert_eq!(resolve(&repo, "environments/staging").unwrap().1, c[1]);
}

#[test]
fn missing_and_malformed_refs_are_typed_errors() {
    let r = Repo::new();
    r.commits(1, "c");
    let repo = LocalRepo::open(r.path()).unwrap();
    let err = resolve(&repo, "refs/heads/environments/nope").unwrap_err();
    assert!(matches!(err, ExpectedError::RefNotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("refs/heads/environments/nope"));
    for bad in ["a..b", "refs/heads/x y", "refs/heads/x~1", ""] {
        assert!(
            matches!(
                resolve(&repo, bad),
                Err(ExpectedError::BadRefName(_)) | Err(ExpectedError::RefNotFound { .. })
            ),
            "{bad}"
        );
    }
    let e = LocalRepo::open("/nonexistent/repository").unwrap_err();
    assert!(matches!(e, ExpectedError::Open { .. }));
    assert!(e.to_string().contains("/nonexistent/repository"));
}

#[test]
fn commit_graph_gives_the_same_counts() {
    let r = Repo::new();
    let c = r.commits(40, "c");
    r.git(&["checkout", "-q", "-b", "side", &c[10]]);
    let s = r.commits(5, "s");
    r.git(&["commit-graph", "write", "--reachable"]);
    assert!(r.path().join(".git/objects/info/commit-graph").exists());
    let repo = LocalRepo::open(r.path()).unwrap();
    assert_eq!(relate(&repo, &c[39], &c[3]), Relation::Behind(36));
    assert_eq!(relate(&repo, &c[39], &s[4]), Relation::Diverged { behind: 29, ahead: 5 });
    assert_eq!(relate(&repo, &c[3], &c[39]), Relation::Ahead(36));
    // Commits made after the graph was written fall back to the object walk.
    r.git(&["checkout", "-q", "main"]);
    let newer = r.commits(2, "after the graph");
    assert_eq!(relate(&repo, &newer[1], &c[3]), Relation::Behind(38));
    assert_eq!(relate(&repo, &newer[1], &s[4]), Relation::Diverged { behind: 31, ahead: 5 });
}

#[test]
fn the_async_source_runs_off_the_executor() {
    let r = Repo::new();
    let c = r.commits(3, "c");
    r.update_ref("refs/heads/environments/production", &c[2]);
    let src = GitSource::local(r.path()).unwrap();
    use gitstate_core::ExpectedState;
    let got = futures::executor::block_on(src.resolve(&["environments/production".into()])).unwrap();
    assert_eq!(got[0].as_ref().unwrap().commit.as_str(), c[2]);
    let rel = futures::executor::block_on(src.relate(&cid(&c[2]), &[rc(&c[0]), rc(&c[2])])).unwrap();
    assert_eq!(rel, [Relation::Behind(2), Relation::InSync]);
    let listed = futures::executor::block_on(src.list("refs/heads/environments/")).unwrap();
    assert_eq!(listed.len(), 1);
}

#[test]
fn listing_matches_for_each_ref_with_loose_refs_over_packed_ones() {
    let r = Repo::new();
    let c = r.commits(4, "c");
    for i in 0..30 {
        r.update_ref(&format!("refs/heads/environments/env-{i:02}"), &c[i % 3]);
    }
    r.update_ref("refs/heads/environments/eu/west", &c[0]);
    r.update_ref("refs/heads/environmentsX", &c[0]);
    r.update_ref("refs/heads/a", &c[0]);
    r.git(&["pack-refs", "--all"]);
    // After packing: one moved (loose shadows packed), one new loose, one deleted.
    r.update_ref("refs/heads/environments/env-05", &c[3]);
    r.update_ref("refs/heads/environments/env-99", &c[3]);
    r.git(&["update-ref", "-d", "refs/heads/environments/env-07"]);
    let oracle: Vec<(String, String)> = r
        .git(&["for-each-ref", "--format=%(refname) %(objectname)", "refs/heads/environments/"])
        .lines()
        .map(|l| {
            let (n, id) = l.split_once(' ').unwrap();
            (n.to_owned(), id.to_owned())
        })
        .collect();
    let repo = LocalRepo::open(r.path()).unwrap();
    let listed = list(&repo, "refs/heads/environments/");
    assert_eq!(listed, oracle);
    assert_eq!(listed.len(), 31);
    assert!(listed.contains(&("refs/heads/environments/env-05".to_owned(), c[3].clone())));

    // A symbolic ref under the prefix: the fast scan steps aside for the full reference
    // store, which still lists every ordinary ref.
    r.git(&["symbolic-ref", "refs/heads/environments/alias", "refs/heads/environments/env-01"]);
    let listed = repo.list("refs/heads/environments/").unwrap();
    assert!(listed.len() >= 31, "{listed:?}");
    assert!(
        listed.iter().any(|e| e.reference == "refs/heads/environments/env-05" && e.commit.as_str() == c[3])
    );
}

/// A listing reads `packed-refs` again whenever git has rewritten it, though the new file
/// is the same size (a ref moved to another commit, then packed): the mapped file kept
/// between listings is never a stale one.
#[test]
fn listings_see_packed_refs_rewritten_by_git() {
    let r = Repo::new();
    let c = r.commits(4, "c");
    let env = "refs/heads/environments/production";
    r.update_ref(env, &c[0]);
    r.update_ref("refs/heads/environments/staging", &c[0]);
    r.git(&["pack-refs", "--all"]);
    let repo = LocalRepo::open(r.path()).unwrap();
    assert_eq!(list(&repo, "refs/heads/environments/")[0], (env.to_owned(), c[0].clone()));
    for id in &c[1..] {
        let before = std::fs::metadata(r.path().join(".git/packed-refs")).unwrap().len();
        r.update_ref(env, id);
        r.git(&["pack-refs", "--all"]);
        assert_eq!(std::fs::metadata(r.path().join(".git/packed-refs")).unwrap().len(), before);
        assert!(!r.path().join(".git").join(env).exists(), "packed, not loose");
        assert_eq!(list(&repo, "refs/heads/environments/")[0], (env.to_owned(), id.clone()));
    }
}

/// What each listed ref points at is checked, whether the object is loose or packed: a
/// commit is listed, an annotated tag is peeled to its commit, a tree or a missing object is
/// skipped. The model is what `git for-each-ref` says of each object's type.
#[test]
fn listing_keeps_refs_that_lead_to_commits_loose_or_packed() {
    let r = Repo::new();
    let c = r.commits(3, "c");
    let tree = r.git(&["rev-parse", "HEAD^{tree}"]);
    r.git(&["tag", "-a", "-m", "release", "v1", &c[1]]);
    let tag = r.git(&["rev-parse", "v1"]);
    r.update_ref("refs/deploy/a-commit", &c[0]);
    r.update_ref("refs/deploy/b-tag", &tag);
    r.update_ref("refs/deploy/c-tree", &tree);
    r.update_ref("refs/deploy/d-commit", &c[2]);
    let model = || -> Vec<(String, String)> {
        r.git(&[
            "for-each-ref",
            "--format=%(objecttype) %(*objecttype) %(objectname) %(*objectname) %(refname)",
            "refs/deploy/",
        ])
        .lines()
        .filter_map(|l| match l.split(' ').collect::<Vec<_>>()[..] {
            ["commit", "", id, "", name] => Some((name.to_owned(), id.to_owned())),
            ["tag", "commit", _, peeled, name] => Some((name.to_owned(), peeled.to_owned())),
            _ => None,
        })
        .collect()
    };
    let want = model();
    assert_eq!(want.len(), 3, "{want:?}");
    // (Under refs/deploy/: git points branches at commits only.) git refuses to point a ref
    // at an object it lacks, and stops listing at one: that file is written by hand, after.
    let missing_ref = r.path().join(".git/refs/deploy/e-missing");
    std::fs::write(&missing_ref, "0123456789abcdef0123456789abcdef01234567\n").unwrap();
    let repo = LocalRepo::open(r.path()).unwrap();
    assert_eq!(list(&repo, "refs/deploy/"), want, "loose objects");
    // Packed refs and packed objects (the missing one is still a loose ref), read by a
    // fresh instance and by the one that remembers what it found.
    std::fs::remove_file(&missing_ref).unwrap();
    r.git(&["gc", "-q", "--prune=now"]);
    assert!(!r.path().join(".git/objects").join(&c[0][..2]).join(&c[0][2..]).exists());
    assert_eq!(model(), want);
    std::fs::write(&missing_ref, "0123456789abcdef0123456789abcdef01234567\n").unwrap();
    assert_eq!(list(&LocalRepo::open(r.path()).unwrap(), "refs/deploy/"), want, "packed");
    assert_eq!(list(&repo, "refs/deploy/"), want, "packed, remembered");
}

/// A plainly laid out repository is opened by gix only when something needs it: the
/// listing reads refs and objects without it, and a fault in the configuration (which gix
/// reads) is reported, as a typed error naming the repository, by the calls that need gix.
#[test]
fn a_plain_repository_opens_gix_only_when_needed() {
    let r = Repo::new();
    let c = r.commits(2, "c");
    r.update_ref("refs/heads/environments/production", &c[1]);
    let config = r.path().join(".git/config");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}[core\n\tbroken\n")).unwrap();
    let repo = LocalRepo::open(r.path()).unwrap();
    assert_eq!(
        list(&repo, "refs/heads/environments/"),
        [("refs/heads/environments/production".to_owned(), c[1].clone())]
    );
    let err = resolve(&repo, "environments/production").unwrap_err();
    assert!(matches!(err, ExpectedError::Open { .. }), "{err:?}");
    assert!(err.to_string().contains(&r.path().display().to_string()), "{err}");
    assert!(repo.relate(&cid(&c[1]), &[rc(&c[0])]).is_err());
    // Repaired, the same instance opens it.
    std::fs::write(&config, &text).unwrap();
    assert_eq!(resolve(&repo, "environments/production").unwrap().1, c[1]);
    assert_eq!(relate(&repo, &c[1], &c[0]), Relation::Behind(1));
}

/// Regression: an object database that cannot be read made every reported commit
/// `unknown_commit` ("not in the repository"), though the repository was never asked.
#[test]
fn an_unreadable_object_database_is_an_error_not_an_unknown_commit() {
    let r = Repo::new();
    let c = r.commits(3, "c");
    r.git(&["gc", "-q"]);
    let packs: Vec<_> = std::fs::read_dir(r.path().join(".git/objects/pack"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "pack"))
        .collect();
    assert_eq!(packs.len(), 1, "git gc packed everything");
    let len = std::fs::metadata(&packs[0]).unwrap().len();
    std::fs::write(&packs[0], vec![0u8; len as usize]).unwrap();

    let repo = LocalRepo::open(r.path()).unwrap();
    let err = repo.relate(&cid(&c[2]), &[rc(&c[0])]).unwrap_err();
    assert!(matches!(err, ExpectedError::History { .. }), "{err:?}");
    // A commit the index does not hold is still simply unknown.
    let stranger = "0123456789abcdef0123456789abcdef01234567";
    assert_eq!(relate(&repo, &c[2], stranger), Relation::UnknownCommit);
}

/// Git's reftable ref storage (`git init --ref-format=reftable`): gix cannot read its refs,
/// so they are read through git; history still comes from gix.
#[test]
fn a_reftable_repository_is_read_like_any_other() {
    let r = Repo::new_with(&["--ref-format=reftable"]);
    let c = r.commits(4, "c");
    r.update_ref("refs/heads/environments/production", &c[3]);
    r.update_ref("refs/heads/environments/staging", &c[1]);
    r.git(&["tag", "-a", "-m", "release", "v1", &c[2]]);
    let src = GitSource::local(r.path()).unwrap();
    let resolved = src
        .resolve_now(&["environments/production".into(), "refs/tags/v1".into(), "v1".into(), "nope".into()])
        .unwrap();
    let got: Vec<Option<(String, String)>> = resolved
        .iter()
        .map(|e| e.as_ref().ok().map(|e| (e.reference.clone(), e.commit.to_string())))
        .collect();
    assert_eq!(got[0], Some(("refs/heads/environments/production".into(), c[3].clone())));
    assert_eq!(got[1], Some(("refs/tags/v1".into(), c[2].clone())), "annotated tags are peeled");
    assert_eq!(got[2], got[1]);
    assert!(matches!(resolved[3], Err(ExpectedError::RefNotFound { .. })), "{:?}", resolved[3]);
    let listed: Vec<(String, String)> = src
        .list_now("refs/heads/environments/")
        .unwrap()
        .into_iter()
        .map(|e| (e.reference, e.commit.to_string()))
        .collect();
    assert_eq!(
        listed,
        [
            ("refs/heads/environments/production".to_owned(), c[3].clone()),
            ("refs/heads/environments/staging".to_owned(), c[1].clone())
        ]
    );
    let rel =
        src.relate_now(&CommitId::parse(&c[3]).unwrap(), &[ReportedCommit::parse(&c[1]).unwrap()]).unwrap();
    assert_eq!(rel, [Relation::Behind(2)]);
    // A ref moved by git is seen at the next call.
    r.update_ref("refs/heads/environments/production", &c[0]);
    let again = src.resolve_now(&["environments/production".into()]).unwrap();
    assert_eq!(again[0].as_ref().unwrap().commit.to_string(), c[0]);
}

/// A SHA-256 repository is refused with its object format named, never misread.
#[test]
fn a_sha256_repository_is_refused_by_name() {
    let r = Repo::new_with(&["--object-format=sha256"]);
    r.commits(1, "c");
    let err = GitSource::local(r.path()).unwrap_err().to_string();
    assert!(err.contains("sha256 object ids") && err.contains("SHA-1 repositories only"), "{err}");
}

/// A ref name component git accepts (git-check-ref-format(1)), odd characters included.
fn legal_component(c: &str) -> bool {
    !c.is_empty()
        && !c.starts_with('.')
        && !c.ends_with('.')
        && !c.ends_with(".lock")
        && !c.contains("..")
        && c != "@"
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(gitstate_testkit::proptest_cases(8)))]

    /// `[[discover]]` listing against `git for-each-ref` on random ref sets: names with odd
    /// but legal characters, some packed, some loose, some loose over packed.
    #[test]
    fn listing_under_a_prefix_matches_git_for_each_ref(
        names in proptest::collection::btree_set("[a-zA-Z0-9_+=,@#%é.-]{1,8}(/[a-zA-Z0-9_é.-]{1,5})?", 1..40),
        packed_first in proptest::collection::vec(proptest::prelude::any::<bool>(), 40),
        prefix in proptest::sample::select(vec!["refs/heads/environments/", "refs/heads/environments/a", "refs/heads/", "refs/heads/environments/é"]),
    ) {
        let names: Vec<&String> = names.iter().filter(|n| n.split('/').all(legal_component)).collect();
        let r = Repo::new();
        let c = r.commits(3, "c");
        // Some refs written and packed, then the others loose, some over packed ones.
        let mut packed_batch = String::new();
        let mut loose_batch = String::new();
        for (i, n) in names.iter().enumerate() {
            let full = format!("refs/heads/environments/{n}");
            if packed_first[i] {
                packed_batch.push_str(&format!("update {full} {}\n", c[i % 2]));
            }
            if !packed_first[i] || i % 3 == 0 {
                loose_batch.push_str(&format!("update {full} {}\n", c[2]));
            }
        }
        let stdin = |batch: &str| {
            use std::io::Write;
            let mut child = gitstate_testkit::git_cmd(r.path())
                .args(["update-ref", "--stdin"])
                .stdin(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            child.stdin.take().unwrap().write_all(batch.as_bytes()).unwrap();
            // A name that is a directory of another (a/b beside a) is refused by git: the
            // oracle below reads what git kept, whatever it refused.
            let _ = child.wait();
        };
        stdin(&packed_batch);
        r.git(&["pack-refs", "--all"]);
        stdin(&loose_batch);
        let oracle: Vec<(String, String)> = r
            // for-each-ref matches whole path components; a ref_prefix is a string prefix.
            .git(&["for-each-ref", "--format=%(refname) %(objectname)", "refs/"])
            .lines()
            .filter_map(|l| l.split_once(' ').map(|(n, id)| (n.to_owned(), id.to_owned())))
            .filter(|(n, _)| n.starts_with(prefix))
            .collect();
        let got: Vec<(String, String)> = GitSource::local(r.path())
            .unwrap()
            .list_now(prefix)
            .unwrap()
            .into_iter()
            .map(|e| (e.reference, e.commit.to_string()))
            .collect();
        proptest::prop_assert_eq!(&got, &oracle);

        // Resolving each name (full, loose or packed or both, and some that do not exist)
        // gives what git has, one directory listing standing in for the loose lookups.
        let all: std::collections::BTreeMap<String, String> = r
            .git(&["for-each-ref", "--format=%(refname) %(objectname)", "refs/"])
            .lines()
            .filter_map(|l| l.split_once(' ').map(|(n, id)| (n.to_owned(), id.to_owned())))
            .collect();
        let mut asked: Vec<String> = names.iter().map(|n| format!("refs/heads/environments/{n}")).collect();
        asked.extend(names.iter().map(|n| format!("refs/heads/environments/{n}-missing")));
        let resolved = LocalRepo::open(r.path()).unwrap().resolve(&asked);
        for (name, got) in asked.iter().zip(resolved) {
            match (all.get(name), got) {
                (Some(id), Ok(e)) => proptest::prop_assert_eq!((&e.reference, e.commit.to_string()), (name, id.clone())),
                (None, Err(ExpectedError::RefNotFound { .. })) => {}
                (want, got) => proptest::prop_assert!(false, "{name}: git has {want:?}, gitstate {got:?}"),
            }
        }
    }
}

/// When the ref moved, from the reflog git writes: the latest entry that set the commit
/// (a move back to an old commit counts from the move back); none where git keeps no log.
#[test]
fn the_reflog_says_when_the_ref_moved_to_its_commit() {
    let r = Repo::new();
    let c = r.commits(2, "c");
    let name = "refs/heads/environments/production";
    let move_at = |id: &str, secs: i64| {
        let date = format!("@{secs} +0100");
        let out = git_cmd(r.path())
            .env("GIT_COMMITTER_DATE", &date)
            .args(["update-ref", name, id])
            .output()
            .unwrap();
        assert!(out.status.success());
    };
    move_at(&c[0], 1_700_000_000);
    move_at(&c[1], 1_700_000_100);
    move_at(&c[0], 1_700_000_200);
    let repo = LocalRepo::open(r.path()).unwrap();
    let at = |id: &str| {
        let e = Expected { reference: name.into(), commit: cid(id) };
        repo.moved_at(&e).map(|t| t.as_second())
    };
    assert_eq!(at(&c[0]), Some(1_700_000_200));
    assert_eq!(at(&c[1]), Some(1_700_000_100));
    let other = r.commit("never set");
    assert_eq!(at(&other), None);

    // A bare repository keeps no reflog by default (a push does not write one).
    let bare = Repo::new_bare();
    git(r.path(), &["push", "-q", bare.path().to_str().unwrap(), &format!("{}:{name}", c[1])]);
    let repo = LocalRepo::open(bare.path()).unwrap();
    assert_eq!(repo.moved_at(&Expected { reference: name.into(), commit: cid(&c[1]) }), None);
}

/// SPEC §11: the commits at stake are `git rev-list actual..expected` (pending) and
/// `expected..actual` (unexpected), newest first, the newest `max` of them — merges
/// included (first-parent is not enough) — whether the commit-graph answers or objects
/// are walked; subjects are one clean line.
#[test]
fn commit_context_names_the_commits_at_stake_like_git_rev_list() {
    let r = Repo::new();
    let commit_at = |msg: &str, secs: i64| -> String {
        let date = format!("@{secs} +0000");
        let out = git_cmd(r.path())
            .env("GIT_COMMITTER_DATE", &date)
            .env("GIT_AUTHOR_DATE", &date)
            .env("GIT_AUTHOR_NAME", "Ada Lovelace")
            .args(["commit", "-q", "--allow-empty", "-m", msg])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        r.git(&["rev-parse", "HEAD"])
    };
    let base = commit_at("base", 1_700_000_000);
    let a1 = commit_at("a1", 1_700_000_010);
    r.git(&["checkout", "-q", "-b", "side", &base]);
    commit_at("s1", 1_700_000_020);
    commit_at("s2", 1_700_000_030);
    r.git(&["checkout", "-q", "main"]);
    let date = "@1700000040 +0000";
    let out = git_cmd(r.path())
        .env("GIT_COMMITTER_DATE", date)
        .env("GIT_AUTHOR_DATE", date)
        .args(["merge", "-q", "--no-ff", "-m", "merge side", "side"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let evil = "Fix \u{1b}[31mred\u{7} <script>alert(1)</script>\n\nthe body";
    let expected = commit_at(evil, 1_700_000_050);
    r.git(&["checkout", "-q", "-b", "hotfix", &a1]);
    let hotfix = commit_at("hotfix", 1_700_000_060);
    r.git(&["checkout", "-q", "main"]);

    let rev_list = |range: &str, max: usize| -> Vec<String> {
        let n = format!("--max-count={max}");
        r.git(&["rev-list", &n, range]).lines().map(str::to_owned).collect()
    };
    for graph in [false, true] {
        if graph {
            r.git(&["commit-graph", "write", "--reachable"]);
        }
        let repo = LocalRepo::open(r.path()).unwrap();
        let ids = |v: &Option<Vec<CommitId>>| -> Vec<String> {
            v.clone().unwrap().iter().map(|c| c.to_string()).collect()
        };
        for max in [2, 3, 50] {
            let behind = repo.relate_commits(&cid(&expected), &[rc(&base)], max).unwrap().pop().unwrap();
            assert_eq!(behind.relation, Relation::Behind(5), "graph {graph}");
            assert_eq!(
                ids(&behind.pending),
                rev_list(&format!("{base}..{expected}"), max),
                "graph {graph}, max {max}"
            );
            assert_eq!(ids(&behind.unexpected), Vec::<String>::new());
            let diverged = repo.relate_commits(&cid(&expected), &[rc(&hotfix)], max).unwrap().pop().unwrap();
            assert_eq!(diverged.relation, Relation::Diverged { behind: 4, ahead: 1 }, "graph {graph}");
            assert_eq!(
                ids(&diverged.pending),
                rev_list(&format!("{hotfix}..{expected}"), max),
                "graph {graph}"
            );
            assert_eq!(ids(&diverged.unexpected), std::slice::from_ref(&hotfix));
            let ahead = repo.relate_commits(&cid(&a1), &[rc(&expected)], max).unwrap().pop().unwrap();
            assert_eq!(ids(&ahead.unexpected), rev_list(&format!("{a1}..{expected}"), max), "graph {graph}");
        }
        let infos = repo.describe(&[cid(&expected), cid(&hotfix)]).unwrap();
        assert_eq!(infos[0].subject, "Fix [31mred <script>alert(1)</script>");
        assert_eq!(infos[0].author, "Ada Lovelace");
        assert_eq!(infos[0].at.as_second(), 1_700_000_050);
        assert_eq!(infos[1].subject, "hotfix");
    }
}
