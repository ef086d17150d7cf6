//! A fast listing of the refs under a prefix for the files backend: one read of
//! `packed-refs` (binary search to the prefix when it is sorted, as git writes it) and a
//! walk of the loose refs below the prefix, loose winning over packed. Used for
//! `[[discover]]` over fleets of refs; anything unusual (reftable, symbolic refs, a
//! malformed line) returns `None` so the caller falls back to gix's full reference store.

use std::path::Path;

use gix::ObjectId;

/// `(full ref name, object id, peeled id)` for every ref under `prefix`, sorted by name.
pub(crate) fn scan(common_dir: &Path, prefix: &str) -> Option<Vec<(String, ObjectId)>> {
    if common_dir.join("reftable").exists() || !prefix.starts_with("refs/") {
        return None;
    }
    let mut refs: Vec<(String, ObjectId)> = Vec::new();
    match read_packed(&common_dir.join("packed-refs"), prefix, SEARCH_ABOVE) {
        Ok(buf) => packed(&buf, prefix, &mut refs)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(_) => return None,
    }
    if !refs.is_sorted_by(|a, b| a.0 <= b.0) {
        refs.sort_by(|a, b| a.0.cmp(&b.0));
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

/// Files smaller than this are read whole: a search would not save a thing.
const SEARCH_ABOVE: u64 = 256 * 1024;

/// The search stops when the range left is this small (then it is read on).
#[cfg(not(test))]
const SEARCH_WINDOW: u64 = 64 * 1024;
/// Small in tests, so that small files exercise every step of the search.
#[cfg(test)]
const SEARCH_WINDOW: u64 = 64;

/// The part of `packed-refs` that can hold refs under `prefix`, with its header line: for
/// a large sorted file, found by binary search over positioned reads (as git searches its
/// memory map), so a fleet of 1,000 refs among 100,000 reads some 100 KiB, not 10 MiB.
/// An unsorted or small file is read whole.
fn read_packed(path: &Path, prefix: &str, search_above: u64) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let at = |offset: u64, n: usize| -> std::io::Result<Vec<u8>> {
        let mut buf = vec![0u8; n.min(len.saturating_sub(offset) as usize)];
        let mut done = 0;
        while done < buf.len() {
            let k = file.read_at(&mut buf[done..], offset + done as u64)?;
            if k == 0 {
                break;
            }
            done += k;
        }
        buf.truncate(done);
        Ok(buf)
    };
    let head = at(0, 4096)?;
    let header_end = match head.strip_prefix(b"# pack-refs with:") {
        Some(rest) => rest.iter().position(|b| *b == b'\n').map(|i| i + 1 + 17),
        None => Some(0),
    };
    let sorted =
        header_end.is_some_and(|e| head[..e].split(|b| b.is_ascii_whitespace()).any(|w| w == b"sorted"));
    let (Some(body), true, true) = (header_end, sorted, len > search_above) else {
        return std::fs::read(path);
    };
    let body = body as u64;
    // The ref name of the first whole line at or after `offset` that is not a peeled line,
    // and where that line starts.
    let line_after = |offset: u64| -> std::io::Result<Option<(u64, Vec<u8>)>> {
        let chunk = at(offset, 8192)?;
        let mut i = if offset == body {
            0
        } else {
            chunk.iter().position(|b| *b == b'\n').map_or(chunk.len(), |p| p + 1)
        };
        while i < chunk.len() {
            let end = chunk[i..].iter().position(|b| *b == b'\n').map(|p| i + p);
            let Some(end) = end else { return Ok(None) };
            let line = &chunk[i..end];
            if line.first() != Some(&b'^') {
                let name = line.iter().position(|b| *b == b' ').map_or(&b""[..], |s| &line[s + 1..]);
                return Ok(Some((offset + i as u64, name.to_vec())));
            }
            i = end + 1;
        }
        Ok(None)
    };
    // Every line before `lo` names a ref below `prefix`.
    let (mut lo, mut hi) = (body, len);
    while hi - lo > SEARCH_WINDOW {
        let mid = lo + (hi - lo) / 2;
        match line_after(mid)? {
            Some((start, name)) if name.as_slice() < prefix.as_bytes() => lo = start,
            _ => hi = mid,
        }
    }
    // Read on from there until past the prefix.
    let mut out = head[..body as usize].to_vec();
    let mut offset = lo;
    loop {
        let chunk = at(offset, 64 * 1024)?;
        if chunk.is_empty() {
            break;
        }
        let whole = chunk.iter().rposition(|b| *b == b'\n').map_or(chunk.len(), |p| p + 1);
        let past = chunk[..whole].split(|b| *b == b'\n').any(|line| {
            line.first() != Some(&b'^')
                && line.iter().position(|b| *b == b' ').is_some_and(|s| {
                    let name = &line[s + 1..];
                    name > prefix.as_bytes() && !name.starts_with(prefix.as_bytes())
                })
        });
        out.extend_from_slice(&chunk[..whole]);
        offset += whole as u64;
        if past || whole == 0 {
            break;
        }
    }
    Ok(out)
}

fn hex_id(s: &[u8]) -> Option<ObjectId> {
    ObjectId::from_hex(s).ok()
}

fn packed(buf: &[u8], prefix: &str, out: &mut Vec<(String, ObjectId)>) -> Option<()> {
    let (header, body) = match buf.strip_prefix(b"# pack-refs with:") {
        Some(rest) => {
            let end = rest.iter().position(|b| *b == b'\n').map_or(rest.len(), |i| i + 1);
            (&rest[..end], &rest[end..])
        }
        None => (&b""[..], buf),
    };
    let sorted = header.split(|b| b.is_ascii_whitespace()).any(|w| w == b"sorted");
    let start = if sorted { lower_bound(body, prefix.as_bytes())? } else { 0 };
    let mut lines = body[start..].split(|b| *b == b'\n').peekable();
    while let Some(line) = lines.next() {
        if line.is_empty() {
            continue;
        }
        if line[0] == b'^' {
            continue; // a peeled line for a ref outside the prefix
        }
        let space = line.iter().position(|b| *b == b' ')?;
        let name = std::str::from_utf8(&line[space + 1..]).ok()?;
        let mut id = hex_id(&line[..space])?;
        if let Some(peeled) = lines.next_if(|l| l.first() == Some(&b'^')) {
            id = hex_id(&peeled[1..])?;
        }
        if name.starts_with(prefix) {
            if name.chars().any(char::is_control) {
                return None;
            }
            out.push((name.to_owned(), id));
        } else if sorted && name.as_bytes() > prefix.as_bytes() {
            break;
        }
    }
    Some(())
}

/// The offset of the first line whose ref name is ≥ `prefix`, in a sorted packed-refs body.
fn lower_bound(body: &[u8], prefix: &[u8]) -> Option<usize> {
    let line_start = |mut i: usize| {
        while i > 0 && body[i - 1] != b'\n' {
            i -= 1;
        }
        i
    };
    let name_of = |start: usize| -> &[u8] {
        let end = body[start..].iter().position(|b| *b == b'\n').map_or(body.len(), |e| start + e);
        let line = &body[start..end];
        match line.iter().position(|b| *b == b' ') {
            Some(s) if line.first() != Some(&b'^') => &line[s + 1..],
            _ => b"",
        }
    };
    let (mut lo, mut hi) = (0usize, body.len());
    while lo < hi {
        let mid = line_start(lo + (hi - lo) / 2);
        // Skip peeled lines: they belong to the line above.
        let mut probe = mid;
        while probe < body.len() && body[probe] == b'^' {
            probe = body[probe..].iter().position(|b| *b == b'\n').map_or(body.len(), |e| probe + e + 1);
        }
        if probe >= hi {
            hi = mid;
            continue;
        }
        let next = body[probe..].iter().position(|b| *b == b'\n').map_or(body.len(), |e| probe + e + 1);
        if name_of(probe) < prefix {
            lo = next;
        } else {
            hi = mid;
        }
    }
    Some(line_start(lo.min(body.len())))
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

    fn body(lines: &[String]) -> Vec<u8> {
        let mut s = String::from("# pack-refs with: peeled fully-peeled sorted \n");
        for l in lines {
            s.push_str(l);
            s.push('\n');
        }
        s.into_bytes()
    }

    #[test]
    fn finds_exactly_the_prefix_in_sorted_packed_refs_with_peeled_lines() {
        let mut lines = vec![format!("{A} refs/heads/a")];
        for i in 0..50 {
            lines.push(format!("{A} refs/heads/environments/e{i:03}"));
        }
        lines.push(format!("{B} refs/tags/v1"));
        lines.push(format!("^{C}"));
        lines.push(format!("{B} refs/tags/v2"));
        let buf = body(&lines);
        let mut out = Vec::new();
        packed(&buf, "refs/heads/environments/", &mut out).unwrap();
        assert_eq!(out.len(), 50);
        assert!(out.iter().all(|(k, _)| k.starts_with("refs/heads/environments/")));
        let mut tags = Vec::new();
        packed(&buf, "refs/tags/", &mut tags).unwrap();
        assert_eq!((tags[0].0.as_str(), tags[0].1.to_string()), ("refs/tags/v1", C.to_owned()), "peeled");
        assert_eq!(tags[1].1.to_string(), B);
        let mut none = Vec::new();
        packed(&buf, "refs/zzz/", &mut none).unwrap();
        assert!(none.is_empty());
        let mut first = Vec::new();
        packed(&buf, "refs/heads/", &mut first).unwrap();
        assert_eq!(first.len(), 51);
    }

    #[test]
    fn unsorted_files_are_scanned_whole_and_garbage_is_refused() {
        let buf = format!("{B} refs/heads/z\n{A} refs/heads/environments/x\n").into_bytes();
        let mut out = Vec::new();
        packed(&buf, "refs/heads/environments/", &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert!(packed(b"not a packed refs file\n", "refs/heads/", &mut Vec::new()).is_none());
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
            let mut out = Vec::new();
            if packed(&bytes, &prefix, &mut out).is_some() {
                prop_assert!(out.iter().all(|(n, _)| n.starts_with(&prefix)));
            }
        }

        /// A sorted file of random names (some peeled): exactly the names under the prefix,
        /// in order, peeled ids where given — found by binary search, checked by a filter.
        #[test]
        fn sorted_files_give_what_a_filter_gives(
            names in prop::collection::btree_set("refs/(heads|tags|x)/[a-z0-9._-]{1,6}(/[a-z0-9é._-]{1,4})?", 0..200),
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
            let mut out = Vec::new();
            packed(&body(&lines), &prefix, &mut out).unwrap();
            let got: Vec<(String, String)> = out.into_iter().map(|(n, id)| (n, id.to_string())).collect();
            prop_assert_eq!(&got, &model);
            // The same file found by binary search over positioned reads, not read whole.
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("packed-refs");
            std::fs::write(&path, body(&lines)).unwrap();
            let window = read_packed(&path, &prefix, 0).unwrap();
            let mut out = Vec::new();
            packed(&window, &prefix, &mut out).unwrap();
            let searched: Vec<(String, String)> = out.into_iter().map(|(n, id)| (n, id.to_string())).collect();
            prop_assert_eq!(searched, model);
        }
    }
}
