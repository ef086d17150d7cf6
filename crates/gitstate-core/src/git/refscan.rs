//! The refs under a prefix read straight from the files backend, for `[[discover]]` over
//! fleets of refs, as `git for-each-ref <prefix>` reads them: `packed-refs` memory-mapped
//! and the prefix's range found by binary search (1,000 refs among 100,000 touch a few
//! pages of a 7 MB file, not all of it), then the loose refs below the prefix, a loose ref
//! winning over a packed one of the same name.
//!
//! Only what is certainly plain is read here: object ids in lowercase hex, names of ASCII
//! letters, digits and `-_.+/` that git accepts, a loose file holding an id. Anything else
//! — a symbolic ref, any other name, a line that does not parse, reftable — returns
//! `None`, and the caller lists with gix's reference store, which reads every form git
//! writes. Neither path checks what the objects are; the caller does.
//!
//! [`plain_git_dir`] finds such a repository without gix, so that a listing does not pay
//! for opening gix's repository (its configuration, object database and reference store:
//! a third of a 1,000-ref listing's time).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use gix::refs::packed::Buffer;

use crate::commit::CommitId;
use crate::plugin::Expected;

/// `packed-refs` larger than this is memory-mapped rather than read (gix's own default).
const MAP_ABOVE: u64 = 32 * 1024;

/// The git dir of the repository at `path` (its work tree or git dir) when it is laid out
/// plainly: a `.git` directory or a bare repository, with `HEAD`, `objects/` and `refs/`
/// (git's own test for a git dir), not a linked worktree (no `commondir`), and a config
/// that sets no `extensions.*` (reftable, SHA-256, per-worktree config: gix reads those).
/// `None` otherwise, or when unsure.
pub(crate) fn plain_git_dir(path: &Path) -> Option<PathBuf> {
    let dot_git = path.join(".git");
    let dir = match std::fs::symlink_metadata(&dot_git) {
        Ok(m) if m.is_dir() => dot_git,
        // A gitfile (linked worktree, submodule) or a link: gix follows those.
        Ok(_) => return None,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => path.to_path_buf(),
        Err(_) => return None,
    };
    if !dir.join("HEAD").is_file() || !dir.join("objects").is_dir() || !dir.join("refs").is_dir() {
        return None;
    }
    if dir.join("commondir").exists() {
        return None;
    }
    let mut config = std::fs::read(dir.join("config")).ok()?;
    config.make_ascii_lowercase();
    if config.windows(b"extensions".len()).any(|w| w == b"extensions") {
        return None;
    }
    Some(dir)
}

/// The last `packed-refs` read, kept while the file is the same one — same inode, size and
/// modification time: git replaces it by renaming a new file over it — so that a listing
/// every second maps it once, as gix's own reference store does.
#[derive(Default)]
pub(crate) struct PackedRefs(Mutex<Option<(PackedId, Arc<Buffer>)>>);

type PackedId = (u64, u64, Option<std::time::SystemTime>);

impl PackedRefs {
    /// The buffer of `common_dir/packed-refs`: `Some(None)` when there is no such file,
    /// `None` when it cannot be read.
    fn current(&self, common_dir: &Path) -> Option<Option<Arc<Buffer>>> {
        use std::os::unix::fs::MetadataExt;
        let path = common_dir.join("packed-refs");
        let mut last = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                *last = None;
                return Some(None);
            }
            Err(_) => return None,
        };
        let id = (meta.ino(), meta.len(), meta.modified().ok());
        if let Some((known, buffer)) = &*last
            && *known == id
        {
            return Some(Some(buffer.clone()));
        }
        // Replaced between the stat and the open: the next call sees another id and reads
        // the file again.
        let buffer = Arc::new(Buffer::open(path, MAP_ABOVE, gix::hash::Kind::Sha1).ok()?);
        *last = Some((id, buffer.clone()));
        Some(Some(buffer))
    }
}

/// Every ref under `prefix` in `common_dir`, sorted by name, with the object it points at
/// (the peeled object when `packed-refs` gives one) as a [`CommitId`], unchecked: the
/// caller checks that each object is a commit. `None` when anything is not plain (see the
/// module).
pub(crate) fn scan(common_dir: &Path, prefix: &str, packed: &PackedRefs) -> Option<Vec<Expected>> {
    if !prefix.starts_with("refs/") || common_dir.join("reftable").exists() {
        return None;
    }
    let mut loose = Vec::new();
    let (dir, _) = prefix.rsplit_once('/')?;
    loose_refs(common_dir, &common_dir.join(dir), prefix, &mut loose)?;
    loose.sort_unstable_by(|a, b| a.0.cmp(&b.0));

    let packed = packed.current(common_dir)?;
    // gix's buffer is sorted (it sorts an unsorted file in memory) and starts after the
    // header line.
    let records: &[u8] = packed.as_deref().map_or(&[], |b| b.as_ref());
    let start = lower_bound(records, prefix.as_bytes())?;
    let end = match successor(prefix.as_bytes()) {
        Some(after) => lower_bound(records, &after)?,
        None => records.len(),
    };
    // The whole range checked as UTF-8 once, each name then sliced from it.
    let range = std::str::from_utf8(&records[start..end]).ok()?;
    // Every record is at least 42 bytes ("<40 hex> <name>\n"): room for all of them, and
    // pages not written are never touched.
    let mut out = Vec::with_capacity(range.len() / 42 + loose.len());
    let mut loose = loose.into_iter().peekable();
    let mut at = 0;
    while at < range.len() {
        let r = record(range.as_bytes(), at)?;
        let name = range.get(at + 41..at + 41 + r.name.len())?;
        at = r.end;
        if !name.starts_with(prefix) || !plain_name(name) {
            return None;
        }
        let commit = hex_commit(r.peeled.unwrap_or(r.id))?;
        while let Some((n, _)) = loose.peek()
            && n.as_str() < name
        {
            let (reference, commit) = loose.next()?;
            out.push(Expected { reference, commit });
        }
        match loose.peek() {
            Some((n, _)) if n == name => {
                let (reference, commit) = loose.next()?;
                out.push(Expected { reference, commit });
            }
            _ => out.push(Expected { reference: name.to_owned(), commit }),
        }
    }
    out.extend(loose.map(|(reference, commit)| Expected { reference, commit }));
    Some(out)
}

/// One `packed-refs` record: `<id> <name>\n`, maybe followed by `^<peeled id>\n`.
struct Record<'a> {
    id: &'a [u8],
    name: &'a [u8],
    peeled: Option<&'a [u8]>,
    /// Where the next record starts.
    end: usize,
}

fn line_end(buf: &[u8], at: usize) -> Option<usize> {
    Some(at + buf.get(at..)?.iter().position(|&b| b == b'\n')?)
}

fn record(buf: &[u8], at: usize) -> Option<Record<'_>> {
    let eol = line_end(buf, at)?;
    let line = &buf[at..eol];
    if line.len() < 42 || line[40] != b' ' {
        return None;
    }
    let mut r = Record { id: &line[..40], name: &line[41..], peeled: None, end: eol + 1 };
    if buf.get(r.end) == Some(&b'^') {
        let peel_eol = line_end(buf, r.end)?;
        r.peeled = Some(&buf[r.end + 1..peel_eol]);
        r.end = peel_eol + 1;
    }
    Some(r)
}

/// The offset of the first record whose name is not below `key`, by binary search over
/// the sorted records (as git's `packed-refs` reader does): a probe backs up to the start
/// of its line, and from a peeled line to the record it belongs to.
fn lower_bound(buf: &[u8], key: &[u8]) -> Option<usize> {
    let (mut lo, mut hi) = (0, buf.len());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let line_start = |end: usize| buf[..end].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let mut start = line_start(mid);
        if buf.get(start) == Some(&b'^') {
            if start == 0 {
                return None;
            }
            start = line_start(start - 1);
        }
        // `lo` is always a record's start, so backing up never passes it.
        if start < lo {
            return None;
        }
        let r = record(buf, start)?;
        if r.name < key {
            lo = r.end;
        } else {
            hi = start;
        }
    }
    Some(lo)
}

/// The smallest byte string above every string that starts with `prefix` (`None` when
/// there is none: a prefix of `0xff` bytes).
fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut s = prefix.to_vec();
    while let Some(last) = s.pop() {
        if last < u8::MAX {
            s.push(last + 1);
            return Some(s);
        }
    }
    None
}

/// A full ref name git accepts, of the plain kind: `refs/` and components of ASCII
/// letters, digits and `-_.+`, none empty, none starting with `.` or ending with `.` or
/// `.lock`, no `..`. (git accepts more — other bytes, `@` — which gix's store reads.)
fn plain_name(name: &str) -> bool {
    let b = name.as_bytes();
    if !b.starts_with(b"refs/") {
        return false;
    }
    // One pass; `start` is where the current component began.
    let mut start = 0;
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'/' => {
                if i == start || b[i - 1] == b'.' || b[start..i].ends_with(b".lock") {
                    return false;
                }
                start = i + 1;
            }
            b'.' if i == start || b[i - 1] == b'.' => return false,
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'+' => {}
            _ => return false,
        }
    }
    start < b.len() && b[b.len() - 1] != b'.' && !b[start..].ends_with(b".lock")
}

/// Forty lowercase hex digits (as git writes them) as a commit id, unchecked as to kind.
fn hex_commit(hex: &[u8]) -> Option<CommitId> {
    let hex = std::str::from_utf8(hex).ok()?;
    (hex.len() == 40 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .then(|| CommitId::from_trusted_hex(hex))
}

/// The loose refs under `prefix` below `dir`, unsorted. `None` for anything not plain.
fn loose_refs(common: &Path, dir: &Path, prefix: &str, out: &mut Vec<(String, CommitId)>) -> Option<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some(()),
        Err(_) => return None,
    };
    for entry in entries {
        let entry = entry.ok()?;
        let path = entry.path();
        let rel = path.strip_prefix(common).ok()?.to_str()?;
        if entry.file_type().ok()?.is_dir() {
            // Only directories that can hold a name under the prefix.
            let as_dir = format!("{rel}/");
            if as_dir.starts_with(prefix) || prefix.starts_with(&as_dir) {
                loose_refs(common, &path, prefix, out)?;
            }
            continue;
        }
        // Lock files of a ref being written are not refs (git skips them too).
        if !rel.starts_with(prefix) || rel.ends_with(".lock") {
            continue;
        }
        if !plain_name(rel) {
            return None;
        }
        let content = std::fs::read(&path).ok()?;
        let commit = hex_commit(content.strip_suffix(b"\n").unwrap_or(&content))?;
        out.push((rel.to_owned(), commit));
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";
    const C: &str = "3333333333333333333333333333333333333333";

    /// A bare repository whose `packed-refs` is `bytes`.
    fn repo_with_packed(bytes: &[u8]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        gix::init_bare(dir.path()).unwrap();
        std::fs::write(dir.path().join("packed-refs"), bytes).unwrap();
        dir
    }

    fn sorted_file(lines: &[String]) -> Vec<u8> {
        let mut s = String::from("# pack-refs with: peeled fully-peeled sorted \n");
        for l in lines {
            s.push_str(l);
            s.push('\n');
        }
        s.into_bytes()
    }

    fn listed(dir: &Path, prefix: &str) -> Option<Vec<(String, String)>> {
        scan(dir, prefix, &PackedRefs::default())
            .map(|v| v.into_iter().map(|e| (e.reference, e.commit.to_string())).collect())
    }

    /// What gix's reference store lists under `prefix`, peeled as `packed-refs` says.
    fn gix_listed(dir: &Path, prefix: &str) -> Option<Vec<(String, String)>> {
        let repo = gix::open_opts(dir, gix::open::Options::isolated()).ok()?;
        let platform = repo.references().ok()?;
        let mut out = Vec::new();
        for r in platform.prefixed(prefix).ok()? {
            let r = r.ok()?;
            let id = match r.inner.peeled {
                Some(p) => p,
                None => r.inner.target.try_id()?.to_owned(),
            };
            out.push((r.name().as_bstr().to_string(), id.to_string()));
        }
        Some(out)
    }

    #[test]
    fn finds_exactly_the_prefix_in_sorted_packed_refs_with_peeled_lines() {
        let mut lines = vec![format!("{A} refs/heads/a")];
        for i in 0..2000 {
            lines.push(format!("{A} refs/heads/environments/e{i:04}"));
        }
        lines.push(format!("{B} refs/tags/v1"));
        lines.push(format!("^{C}"));
        lines.push(format!("{B} refs/tags/v2"));
        // Large enough to be mapped, not read.
        let dir = repo_with_packed(&sorted_file(&lines));
        let envs = listed(dir.path(), "refs/heads/environments/").unwrap();
        assert_eq!(envs.len(), 2000);
        assert!(envs.iter().all(|(k, _)| k.starts_with("refs/heads/environments/")));
        let tags = listed(dir.path(), "refs/tags/").unwrap();
        assert_eq!(
            tags,
            [("refs/tags/v1".to_owned(), C.to_owned()), ("refs/tags/v2".to_owned(), B.to_owned())]
        );
        assert_eq!(listed(dir.path(), "refs/zzz/").unwrap(), []);
        assert_eq!(listed(dir.path(), "refs/heads/").unwrap().len(), 2001);
    }

    #[test]
    fn loose_refs_override_packed_ones_and_odd_forms_are_left_to_gix() {
        let dir = repo_with_packed(&sorted_file(&[
            format!("{A} refs/heads/env/a"),
            format!("{A} refs/heads/env/c"),
            format!("{A} refs/heads/other"),
        ]));
        let refs = dir.path().join("refs/heads/env");
        std::fs::create_dir_all(refs.join("deep")).unwrap();
        std::fs::write(refs.join("b"), format!("{B}\n")).unwrap();
        std::fs::write(refs.join("c"), format!("{C}\n")).unwrap();
        std::fs::write(refs.join("deep/d"), format!("{B}\n")).unwrap();
        std::fs::write(refs.join("e.lock"), "junk").unwrap();
        let want = [("a", A), ("b", B), ("c", C), ("deep/d", B)]
            .map(|(n, id)| (format!("refs/heads/env/{n}"), id.to_owned()));
        assert_eq!(listed(dir.path(), "refs/heads/env/").unwrap(), want);
        assert_eq!(gix_listed(dir.path(), "refs/heads/env/").unwrap(), want);
        // A prefix that is not a directory: the loose walk starts at its parent.
        assert_eq!(listed(dir.path(), "refs/heads/env/d").unwrap(), want[3..]);
        // A symbolic ref, and a name git accepts but this reader does not: gix lists.
        std::fs::write(refs.join("sym"), "ref: refs/heads/other\n").unwrap();
        assert_eq!(listed(dir.path(), "refs/heads/env/"), None);
        std::fs::remove_file(refs.join("sym")).unwrap();
        std::fs::write(refs.join("caf\u{e9}"), format!("{B}\n")).unwrap();
        assert_eq!(listed(dir.path(), "refs/heads/env/"), None);
    }

    #[test]
    fn unsorted_files_are_listed_whole_and_garbage_is_refused() {
        let dir = repo_with_packed(format!("{B} refs/heads/z\n{A} refs/heads/environments/x\n").as_bytes());
        assert_eq!(
            listed(dir.path(), "refs/heads/environments/").unwrap(),
            [("refs/heads/environments/x".to_owned(), A.to_owned())]
        );
        let dir = repo_with_packed(b"not a packed refs file\n");
        assert_eq!(listed(dir.path(), "refs/heads/"), None);
    }

    #[test]
    fn plain_layouts_are_found_and_others_left_to_gix() {
        let bare = tempfile::tempdir().unwrap();
        gix::init_bare(bare.path()).unwrap();
        assert_eq!(plain_git_dir(bare.path()), Some(bare.path().to_path_buf()));
        let work = tempfile::tempdir().unwrap();
        gix::init(work.path()).unwrap();
        assert_eq!(plain_git_dir(work.path()), Some(work.path().join(".git")));
        assert_eq!(plain_git_dir(&work.path().join(".git")), Some(work.path().join(".git")));
        let config = bare.path().join("config");
        let text = std::fs::read_to_string(&config).unwrap();
        std::fs::write(&config, format!("{text}[Extensions]\n\tobjectFormat = sha256\n")).unwrap();
        assert_eq!(plain_git_dir(bare.path()), None);
        let nothing = tempfile::tempdir().unwrap();
        assert_eq!(plain_git_dir(nothing.path()), None);
        std::fs::write(nothing.path().join(".git"), "gitdir: /elsewhere\n").unwrap();
        assert_eq!(plain_git_dir(nothing.path()), None);
    }

    #[test]
    fn plain_names_are_the_usual_ones() {
        for ok in ["refs/heads/environments/production", "refs/tags/v1.2.3", "refs/heads/a+b_c-d", "refs/x"] {
            assert!(plain_name(ok), "{ok}");
        }
        for bad in [
            "refs/heads/a..b",
            "refs/heads/.x",
            "refs/heads/x.lock",
            "refs/heads/x.lock/y",
            "refs/heads/x.",
            "refs/heads/x./y",
            "refs/heads//x",
            "refs/heads/x/",
            "refs/heads/a@{b",
            "refs/heads/caf\u{e9}",
            "heads/x",
            "refs/",
        ] {
            assert!(!plain_name(bad), "{bad}");
        }
    }

    use proptest::prelude::*;

    proptest! {
        /// Every name this reader takes as plain is one git accepts (gix's check, which
        /// follows `git check-ref-format`).
        #[test]
        fn plain_names_are_valid_ref_names(name in prop_oneof![
            "refs/[a-z]{0,2}(\\.{1,2}[a-z]{0,2}){0,3}(/\\.?[a-z.]{0,3}){0,2}(\\.lock)?/?",
            "refs/[a-zA-Z0-9._+/@{}~^:?*\\[\\\\ é-]{0,14}",
        ]) {
            if plain_name(&name) {
                prop_assert!(gix::validate::reference::name(name.as_str().into()).is_ok(), "{}", name);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            buf in prop::collection::vec(any::<u8>(), 0..512),
            header in prop::option::of(Just("# pack-refs with: peeled fully-peeled sorted \n")),
            prefix in "refs/[a-z]{0,3}/?",
        ) {
            let mut bytes = header.map(|h| h.as_bytes().to_vec()).unwrap_or_default();
            bytes.extend_from_slice(&buf);
            let dir = repo_with_packed(&bytes);
            // Refused (`None`: the caller lists through gix instead) or listed: then only
            // names under the prefix, and — for a file that is sorted as it says — exactly
            // what gix's own store lists.
            if let Some(out) = listed(dir.path(), &prefix) {
                prop_assert!(out.iter().all(|(n, _)| n.starts_with(&prefix)));
                if header.is_some() && out.windows(2).all(|w| w[0].0 < w[1].0) && !out.is_empty() {
                    prop_assert_eq!(Some(out), gix_listed(dir.path(), &prefix));
                }
            }
        }

        /// Lines that are nearly right — a valid id and a name of any bytes, a peeled line
        /// whose id may be short or not hex, a name out of order — the kind a parser
        /// half-accepts: listed or refused, never a panic, never a name outside the prefix,
        /// and whatever is listed is what gix's store lists.
        #[test]
        fn near_valid_lines_never_panic(
            lines in prop::collection::vec(prop_oneof![
                prop::collection::vec(any::<u8>(), 0..12).prop_map(|n| [format!("{A} refs/heads/").into_bytes(), n].concat()),
                "[0-9a-fA-Fg ]{0,44}".prop_map(|id| format!("^{id}").into_bytes()),
                "[0-9a-f]{38,42} refs/(heads|tags)/[a-z./]{0,6}".prop_map(String::into_bytes),
                prop::collection::vec(any::<u8>(), 0..50),
            ], 0..40),
            sorted in any::<bool>(),
            prefix in "refs/(heads|tags)/[a-z]{0,2}",
        ) {
            let mut bytes = if sorted { b"# pack-refs with: peeled fully-peeled sorted \n".to_vec() } else { Vec::new() };
            for l in lines {
                bytes.extend_from_slice(&l);
                bytes.push(b'\n');
            }
            let dir = repo_with_packed(&bytes);
            if let Some(out) = listed(dir.path(), &prefix) {
                prop_assert!(out.iter().all(|(n, _)| n.starts_with(&prefix)));
                // A file that is not sorted although it says so is git's problem to
                // refuse; gix and a binary search may then differ.
                if sorted && out.windows(2).all(|w| w[0].0 < w[1].0) && !out.is_empty() {
                    prop_assert_eq!(Some(out), gix_listed(dir.path(), &prefix));
                }
            }
        }

        /// Random (valid) names, some packed and peeled, some loose (a loose one may
        /// override a packed one): exactly the names under the prefix, in order, the loose
        /// id winning, peeled ids where given — the model a filter over both sets, checked
        /// against gix's store too.
        #[test]
        fn listings_give_what_a_filter_gives(
            names in prop::collection::btree_map(
                "refs/(heads|tags|x)/[a-z0-9_-]{1,3}(\\.[a-z0-9_-]{1,2})?(/[a-z0-9_+-]{1,4})?",
                (any::<bool>(), 0u8..3),
                0..200,
            ),
            prefix in "refs/(heads|tags|x)?/?[a-z0-9]{0,2}",
        ) {
            // Names that are both a ref and a directory cannot exist as loose refs.
            let dirs: std::collections::BTreeSet<String> =
                names.keys().filter_map(|n| Some(n.rsplit_once('/')?.0.to_owned())).collect();
            let mut lines = Vec::new();
            let mut model = Vec::new();
            let dir = tempfile::tempdir().unwrap();
            gix::init_bare(dir.path()).unwrap();
            for (n, &(peel, place)) in &names {
                // place: 0 packed, 1 loose, 2 both (loose wins)
                let place = if dirs.contains(n) { 0 } else { place };
                let mut id = A;
                if place != 1 {
                    lines.push(format!("{A} {n}"));
                    if peel {
                        lines.push(format!("^{C}"));
                        id = C;
                    }
                }
                if place != 0 {
                    let path = dir.path().join(n);
                    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                    std::fs::write(path, format!("{B}\n")).unwrap();
                    id = B;
                }
                if n.starts_with(&prefix) {
                    model.push((n.clone(), id.to_owned()));
                }
            }
            std::fs::write(dir.path().join("packed-refs"), sorted_file(&lines)).unwrap();
            if prefix.starts_with("refs/") {
                prop_assert_eq!(listed(dir.path(), &prefix), Some(model.clone()));
                prop_assert_eq!(gix_listed(dir.path(), &prefix), Some(model));
            }
        }
    }
}
