//! A fast listing of the refs under a prefix for the files backend: the prefix found in
//! `packed-refs` by binary search over gix's memory map of it (so a fleet of 1,000 refs
//! among 100,000 touches a few pages, not the 10 MiB file), and a walk of the loose refs
//! below the prefix, loose winning over packed. Used for `[[discover]]` over fleets of
//! refs; anything unusual (reftable, symbolic refs, a malformed line) returns `None` so the
//! caller falls back to gix's full reference store.

use std::path::Path;

use gix::ObjectId;

/// `(full ref name, peeled object id)` for every ref under `prefix`, sorted by name.
pub(crate) fn scan(repo: &gix::Repository, prefix: &str) -> Option<Vec<(String, ObjectId)>> {
    let common_dir = repo.common_dir();
    if common_dir.join("reftable").exists() || !prefix.starts_with("refs/") {
        return None;
    }
    let mut refs: Vec<(String, ObjectId)> = Vec::new();
    // gix keeps the buffer of the last read while the file is unchanged (a stat per call).
    if let Some(buffer) = repo.refs.cached_packed_buffer().ok()? {
        for r in buffer.iter_prefixed(prefix.into()).ok()? {
            let r = r.ok()?;
            let name = std::str::from_utf8(r.name.as_bstr()).ok()?;
            if name.chars().any(char::is_control) {
                return None;
            }
            refs.push((name.to_owned(), r.object()));
        }
    }
    // The loose refs below the prefix's directory part override packed ones (few, usually).
    let (dir, _) = prefix.rsplit_once('/')?;
    let mut overrides = Vec::new();
    loose(common_dir, &common_dir.join(dir), prefix, &mut overrides)?;
    for (name, id) in overrides {
        match refs.binary_search_by(|(n, _)| n.as_str().cmp(&name)) {
            Ok(i) => refs[i].1 = id,
            Err(i) => refs.insert(i, (name, id)),
        }
    }
    Some(refs)
}

fn hex_id(s: &[u8]) -> Option<ObjectId> {
    ObjectId::from_hex(s).ok()
}

fn loose(common: &Path, dir: &Path, prefix: &str, out: &mut Vec<(String, ObjectId)>) -> Option<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some(()),
        Err(_) => return None,
    };
    for entry in entries {
        let entry = entry.ok()?;
        let path = entry.path();
        let kind = entry.file_type().ok()?;
        if kind.is_dir() {
            loose(common, &path, prefix, out)?;
            continue;
        }
        let rel = path.strip_prefix(common).ok()?.to_str()?.to_owned();
        if !rel.starts_with(prefix) || rel.ends_with(".lock") {
            continue;
        }
        let content = std::fs::read(&path).ok()?;
        let text = content.strip_suffix(b"\n").unwrap_or(&content);
        // Symbolic refs and anything else unusual: let gix handle the whole listing.
        let id = hex_id(text)?;
        out.push((rel, id));
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
    fn repo_with_packed(bytes: &[u8]) -> (tempfile::TempDir, gix::Repository) {
        let dir = tempfile::tempdir().unwrap();
        let repo = gix::init_bare(dir.path()).unwrap();
        std::fs::write(dir.path().join("packed-refs"), bytes).unwrap();
        (dir, repo)
    }

    fn sorted_file(lines: &[String]) -> Vec<u8> {
        let mut s = String::from("# pack-refs with: peeled fully-peeled sorted \n");
        for l in lines {
            s.push_str(l);
            s.push('\n');
        }
        s.into_bytes()
    }

    fn listed(repo: &gix::Repository, prefix: &str) -> Option<Vec<(String, String)>> {
        scan(repo, prefix).map(|v| v.into_iter().map(|(n, id)| (n, id.to_string())).collect())
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
        let (_dir, repo) = repo_with_packed(&sorted_file(&lines));
        let envs = listed(&repo, "refs/heads/environments/").unwrap();
        assert_eq!(envs.len(), 2000);
        assert!(envs.iter().all(|(k, _)| k.starts_with("refs/heads/environments/")));
        let tags = listed(&repo, "refs/tags/").unwrap();
        assert_eq!(
            tags,
            [("refs/tags/v1".to_owned(), C.to_owned()), ("refs/tags/v2".to_owned(), B.to_owned())]
        );
        assert_eq!(listed(&repo, "refs/zzz/").unwrap(), []);
        assert_eq!(listed(&repo, "refs/heads/").unwrap().len(), 2001);
    }

    #[test]
    fn unsorted_files_are_listed_whole_and_garbage_is_refused() {
        let (_dir, repo) =
            repo_with_packed(format!("{B} refs/heads/z\n{A} refs/heads/environments/x\n").as_bytes());
        assert_eq!(
            listed(&repo, "refs/heads/environments/").unwrap(),
            [("refs/heads/environments/x".to_owned(), A.to_owned())]
        );
        let (_dir, repo) = repo_with_packed(b"not a packed refs file\n");
        assert_eq!(listed(&repo, "refs/heads/"), None);
    }

    use proptest::prelude::*;

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(
            buf in prop::collection::vec(any::<u8>(), 0..512),
            header in prop::option::of(Just("# pack-refs with: peeled fully-peeled sorted \n")),
            prefix in "refs/[a-z]{0,3}/?",
        ) {
            let mut bytes = header.map(|h| h.as_bytes().to_vec()).unwrap_or_default();
            bytes.extend_from_slice(&buf);
            let (_dir, repo) = repo_with_packed(&bytes);
            if let Some(out) = scan(&repo, &prefix) {
                prop_assert!(out.iter().all(|(n, _)| n.starts_with(&prefix)));
            }
        }

        /// Lines that are nearly right — a valid id and a name of any bytes, a peeled line
        /// whose id may be short or not hex, a name out of order — the kind gix's parser
        /// half-accepts: listed or refused, never a panic, never a name outside the prefix.
        #[test]
        fn near_valid_lines_never_panic(
            lines in prop::collection::vec(prop_oneof![
                prop::collection::vec(any::<u8>(), 0..12).prop_map(|n| [format!("{A} refs/heads/").into_bytes(), n].concat()),
                "[0-9a-fA-Fg ]{0,44}".prop_map(|id| format!("^{id}").into_bytes()),
                "[0-9a-f]{38,42} refs/(heads|tags)/[a-z./]{0,6}".prop_map(String::into_bytes),
                prop::collection::vec(any::<u8>(), 0..50),
            ], 0..40),
            sorted in any::<bool>(),
            prefix in "refs/(heads|tags)?/?[a-z]{0,2}",
        ) {
            let mut bytes = if sorted { b"# pack-refs with: peeled fully-peeled sorted \n".to_vec() } else { Vec::new() };
            for l in lines {
                bytes.extend_from_slice(&l);
                bytes.push(b'\n');
            }
            let (_dir, repo) = repo_with_packed(&bytes);
            if let Some(out) = scan(&repo, &prefix) {
                prop_assert!(out.iter().all(|(n, _)| n.starts_with(&prefix)));
            }
        }

        /// A sorted file of random (valid) names, some peeled: exactly the names under the
        /// prefix, in order, peeled ids where given — found by binary search, checked by a
        /// filter. (A name git would refuse, like `refs/heads/.`, sends the listing to gix's
        /// full reference store.)
        #[test]
        fn sorted_files_give_what_a_filter_gives(
            names in prop::collection::btree_set("refs/(heads|tags|x)/[a-z0-9_-]{1,3}(\\.[a-z0-9_-]{1,2})?(/[a-z0-9é_-]{1,4})?", 0..200),
            peel in prop::collection::vec(any::<bool>(), 200),
            prefix in "refs/(heads|tags|x)?/?[a-z0-9]{0,2}",
        ) {
            let mut lines = Vec::new();
            let mut model = Vec::new();
            for (i, n) in names.iter().enumerate() {
                lines.push(format!("{A} {n}"));
                let id = if peel[i] { lines.push(format!("^{C}")); C } else { A };
                if n.starts_with(&prefix) {
                    model.push((n.clone(), id.to_owned()));
                }
            }
            let (_dir, repo) = repo_with_packed(&sorted_file(&lines));
            if prefix.starts_with("refs/") {
                prop_assert_eq!(listed(&repo, &prefix), Some(model));
            }
        }
    }
}
