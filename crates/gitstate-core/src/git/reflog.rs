//! When a ref moved to a commit, read from its reflog (`logs/<ref>` in the git dir).
//!
//! A reflog line is `<old> <new> <name> <<email>> <unix seconds> <±hhmm>\t<message>`
//! (git's `refs/files-backend.c`; gix's `gix-ref` reads the same). The file is the
//! repository's, but it is outside input all the same: [`moved_at`] never panics, skips
//! lines it cannot read, and reads at most the file's last [`TAIL`] bytes.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use jiff::Timestamp;

use crate::commit::CommitId;

/// The most of a reflog read, from its end: the latest moves are at the end, and an
/// environment branch's log is a few lines a deploy.
pub(super) const TAIL: u64 = 1024 * 1024;

/// The time of the latest line of `log` that set the ref to `commit` (its `new` id).
pub(super) fn moved_at(log: &[u8], commit: &CommitId) -> Option<Timestamp> {
    let want = commit.as_str().as_bytes();
    log.split(|b| *b == b'\n')
        .rev()
        .find_map(|line| parse_line(line).filter(|(new, _)| new.eq_ignore_ascii_case(want)).map(|(_, t)| t))
}

/// Every well-formed line of `log` that set the ref to a commit, oldest first: the
/// commit and when (SPEC §16: before gitstate's first event, each counts as a
/// deployment). A deletion (the zero id) is skipped, and so is a line that cannot be read.
pub(super) fn entries(log: &[u8]) -> Vec<(CommitId, Timestamp)> {
    log.split(|b| *b == b'\n')
        .filter_map(|line| {
            let (new, at) = parse_line(line)?;
            let id = CommitId::parse(std::str::from_utf8(new).ok()?).ok()?;
            (!new.iter().all(|b| *b == b'0')).then_some((id, at))
        })
        .collect()
}

/// One line: its `new` id (40 hex digits) and its time, or `None` when it is not a
/// well-formed reflog line.
fn parse_line(line: &[u8]) -> Option<(&[u8], Timestamp)> {
    let (ids, rest) = line.split_at_checked(82)?;
    let (old, new) = (ids.get(..40)?, ids.get(41..81)?);
    if ids.get(40) != Some(&b' ') || ids.get(81) != Some(&b' ') || !is_hex(old) || !is_hex(new) {
        return None;
    }
    // The identity ends at the last '>' before the message; the time follows it.
    let head = rest.split(|b| *b == b'\t').next()?;
    let close = head.iter().rposition(|b| *b == b'>')?;
    let mut fields = std::str::from_utf8(head.get(close + 1..)?).ok()?.split_ascii_whitespace();
    let secs: i64 = fields.next()?.parse().ok()?;
    Some((new, Timestamp::from_second(secs).ok()?))
}

fn is_hex(b: &[u8]) -> bool {
    b.iter().all(u8::is_ascii_hexdigit)
}

/// The last [`TAIL`] bytes of the reflog at `path`, `None` when there is none. A partial
/// first line of the tail is skipped by the parser.
fn read_tail(path: &Path) -> Option<Vec<u8>> {
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    if len > TAIL {
        file.seek(SeekFrom::Start(len - TAIL)).ok()?;
    }
    let mut buf = Vec::with_capacity(len.min(TAIL) as usize);
    file.take(TAIL).read_to_end(&mut buf).ok()?;
    Some(buf)
}

/// Reads the reflog at `path` and finds when it set `commit`.
pub(super) fn read_moved_at(path: &Path, commit: &CommitId) -> Option<Timestamp> {
    moved_at(&read_tail(path)?, commit)
}

/// Reads the reflog at `path` whole (its last [`TAIL`] bytes): [`entries`].
pub(super) fn read_entries(path: &Path) -> Vec<(CommitId, Timestamp)> {
    read_tail(path).map(|b| entries(&b)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";
    const Z: &str = "0000000000000000000000000000000000000000";

    fn line(old: &str, new: &str, secs: i64, msg: &str) -> String {
        format!("{old} {new} Dev Eloper <dev@example.com> {secs} +0100\t{msg}\n")
    }

    fn id(s: &str) -> CommitId {
        CommitId::parse(s).unwrap()
    }

    #[test]
    fn the_latest_move_to_the_commit_wins() {
        let log = [
            line(Z, A, 100, "branch: Created from HEAD"),
            line(A, B, 200, "push"),
            line(B, A, 300, "reset: moving to A"),
        ]
        .concat();
        assert_eq!(moved_at(log.as_bytes(), &id(A)), Some(Timestamp::from_second(300).unwrap()));
        assert_eq!(moved_at(log.as_bytes(), &id(B)), Some(Timestamp::from_second(200).unwrap()));
        assert_eq!(moved_at(log.as_bytes(), &id(&"3".repeat(40))), None);
    }

    #[test]
    fn odd_identities_and_torn_lines_are_read_or_skipped() {
        // A '>' in the name, no message, a torn last line, a line without a time.
        let log = format!(
            "{Z} {A} Odd > Name <o@x> 150 +0000\n{A} {B} N <n@x>\n{Z} {A} N <n@x> 5 -0700\t\n{B} {A} N <n@x> 9"
        );
        assert_eq!(moved_at(log.as_bytes(), &id(A)), Some(Timestamp::from_second(9).unwrap()));
        assert_eq!(moved_at(log.as_bytes(), &id(B)), None);
    }

    /// A model: the time of the last well-formed line whose new id is the commit.
    fn model(lines: &[(bool, usize, i64)], want: usize) -> Option<i64> {
        lines.iter().rev().find(|(ok, new, _)| *ok && *new == want).map(|(_, _, t)| *t)
    }

    proptest! {
        /// Arbitrary bytes: no panic, and no time invented — a commit no line names has none.
        #[test]
        fn arbitrary_reflog_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
            prop_assert_eq!(moved_at(&bytes, &id(A)), None);
        }

        /// Lines of arbitrary bytes among well-formed ones are skipped: the time is the last
        /// well-formed move to the commit, as the model says.
        #[test]
        fn garbage_lines_among_real_ones_are_skipped(
            lines in prop::collection::vec(prop_oneof![
                (0i64..4_000_000_000).prop_map(Ok),
                prop::collection::vec(any::<u8>().prop_filter("one line", |b| *b != b'\n'), 0..80).prop_map(Err),
            ], 0..12),
        ) {
            let mut bytes = Vec::new();
            let mut shape = Vec::new();
            for l in &lines {
                match l {
                    Ok(secs) => {
                        bytes.extend(line(B, A, *secs, "push").into_bytes());
                        shape.push((true, 0, *secs));
                    }
                    Err(garbage) => {
                        bytes.extend(garbage);
                        bytes.push(b'\n');
                    }
                }
            }
            let got = moved_at(&bytes, &id(A)).map(|t| t.as_second());
            prop_assert_eq!(got, model(&shape, 0));
        }

        #[test]
        fn reflog_reading_matches_the_model(
            lines in prop::collection::vec((any::<bool>(), 0usize..3, 0i64..4_000_000_000, "[ -~é\t]{0,20}"), 0..12),
            want in 0usize..3,
        ) {
            let ids = [A, B, Z];
            let mut text = String::new();
            let mut shape = Vec::new();
            for (ok, new, secs, msg) in &lines {
                if *ok {
                    text.push_str(&line(A, ids[*new], *secs, msg));
                } else {
                    // Broken: the time is not a number.
                    text.push_str(&format!("{A} {} N <n@x> x{secs} +0000\t{msg}\n", ids[*new]));
                }
                shape.push((*ok, *new, *secs));
            }
            let got = moved_at(text.as_bytes(), &id(ids[want])).map(|t| t.as_second());
            prop_assert_eq!(got, model(&shape, want));
            // Every well-formed move to a commit, in order; the deletions (Z) left out.
            let all: Vec<(String, i64)> =
                entries(text.as_bytes()).into_iter().map(|(c, t)| (c.to_string(), t.as_second())).collect();
            let expected: Vec<(String, i64)> = shape
                .iter()
                .filter(|(ok, new, _)| *ok && ids[*new] != Z)
                .map(|(_, new, secs)| (ids[*new].to_owned(), *secs))
                .collect();
            prop_assert_eq!(all, expected);
        }

        /// Arbitrary bytes: no panic, and no entry invented.
        #[test]
        fn arbitrary_bytes_give_no_entries(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
            prop_assert!(entries(&bytes).is_empty());
        }
    }
}
