//! Commits as signatures see them (SPEC §18): the signature a commit object carries in
//! its `gpgsig` header, and the bytes it signs — the object without that header, as `git
//! verify-commit` hands them to gpg or ssh-keygen. Verifying is the `gitstate-trust`
//! crate's; reading is the expected-state source's ([`crate::ExpectedState::signed_commits`]).

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::commit::CommitId;

/// One commit: who committed it when, what it signs and with what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SignedCommit {
    /// The commit.
    pub id: CommitId,
    /// Its parents (a merge has several).
    pub parents: Vec<CommitId>,
    /// The committer's time: SSH `valid-after` / `valid-before` are judged at it.
    pub committed_at: Timestamp,
    /// The signature (`-----BEGIN SSH SIGNATURE-----` or `-----BEGIN PGP SIGNATURE-----`
    /// armour), when it has one.
    pub signature: Option<String>,
    /// The bytes the signature is over: the commit object without its signature headers.
    #[serde(skip)]
    pub payload: Vec<u8>,
}

impl SignedCommit {
    /// A commit read from its raw object (`git cat-file commit ID`'s bytes). Never fails:
    /// a header it cannot read leaves the time at the epoch and the parents out.
    pub fn from_object(id: CommitId, raw: &[u8]) -> Self {
        let (payload, signature) = split_signature(raw);
        let mut parents = Vec::new();
        let mut committed_at = Timestamp::UNIX_EPOCH;
        for line in headers(raw) {
            if let Some(p) = line.strip_prefix(b"parent ") {
                if let Some(c) = std::str::from_utf8(p).ok().and_then(|p| CommitId::parse(p).ok()) {
                    parents.push(c);
                }
            } else if let Some(who) = line.strip_prefix(b"committer ") {
                committed_at = signature_time(who).unwrap_or(Timestamp::UNIX_EPOCH);
            }
        }
        Self { id, parents, committed_at, signature, payload }
    }
}

/// The header lines of a commit object (up to the blank line before the message),
/// continuation lines (those starting with a space) left out.
fn headers(raw: &[u8]) -> impl Iterator<Item = &[u8]> {
    let end = find(raw, b"\n\n").unwrap_or(raw.len());
    raw[..end].split(|b| *b == b'\n').filter(|l| !l.starts_with(b" "))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `Name <mail> 1700000000 +0100` → the time.
fn signature_time(who: &[u8]) -> Option<Timestamp> {
    let text = std::str::from_utf8(who).ok()?;
    let after_mail = &text[text.rfind('>')? + 1..];
    let seconds: i64 = after_mail.split_whitespace().next()?.parse().ok()?;
    Timestamp::from_second(seconds).ok()
}

/// Splits a commit object into what its signature signs and the signature: the
/// `gpgsig` (and `gpgsig-sha256`) headers with their continuation lines are taken out of
/// the header part, as git does; the signature is the `gpgsig` value, continuation lines
/// joined with newlines. Arbitrary bytes never panic.
pub fn split_signature(raw: &[u8]) -> (Vec<u8>, Option<String>) {
    let end = find(raw, b"\n\n").map_or(raw.len(), |i| i + 1);
    let (head, body) = raw.split_at(end);
    let mut payload = Vec::with_capacity(raw.len());
    let mut signature: Option<Vec<u8>> = None;
    let mut in_sig: Option<bool> = None; // Some(true): in gpgsig, Some(false): in another signature header
    for line in head.split_inclusive(|b| *b == b'\n') {
        if let Some(rest) = line.strip_prefix(b" ")
            && let Some(ours) = in_sig
        {
            if ours && let Some(s) = signature.as_mut() {
                s.push(b'\n');
                s.extend_from_slice(rest.strip_suffix(b"\n").unwrap_or(rest));
            }
            continue;
        }
        in_sig = None;
        if let Some(value) = line.strip_prefix(b"gpgsig ") {
            if signature.is_none() {
                signature = Some(value.strip_suffix(b"\n").unwrap_or(value).to_vec());
                in_sig = Some(true);
            } else {
                in_sig = Some(false);
            }
            continue;
        }
        if line.starts_with(b"gpgsig-sha256 ") {
            in_sig = Some(false);
            continue;
        }
        payload.extend_from_slice(line);
    }
    payload.extend_from_slice(body);
    let signature = signature.map(|s| {
        let mut text = String::from_utf8_lossy(&s).into_owned();
        text.push('\n');
        text
    });
    (payload, signature)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIGNED: &[u8] = b"tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\nparent 1111111111111111111111111111111111111111\nauthor A <a@x> 1700000000 +0000\ncommitter C <c@x> 1700000100 +0100\ngpgsig -----BEGIN SSH SIGNATURE-----\n U1NIU0lH\n -----END SSH SIGNATURE-----\n\nmessage\n\nmore\n";

    #[test]
    fn the_signature_is_taken_out_of_the_headers_as_git_does() {
        let (payload, sig) = split_signature(SIGNED);
        assert_eq!(
            sig.as_deref(),
            Some("-----BEGIN SSH SIGNATURE-----\nU1NIU0lH\n-----END SSH SIGNATURE-----\n")
        );
        assert_eq!(
            payload,
            b"tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\nparent 1111111111111111111111111111111111111111\nauthor A <a@x> 1700000000 +0000\ncommitter C <c@x> 1700000100 +0100\n\nmessage\n\nmore\n"
        );
        let c = SignedCommit::from_object(CommitId::parse(&"a".repeat(40)).unwrap(), SIGNED);
        assert_eq!(c.parents.len(), 1);
        assert_eq!(c.committed_at, Timestamp::from_second(1_700_000_100).unwrap());
        // Unsigned: the payload is the object.
        let plain = b"tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\ncommitter C <c@x> 5 +0000\n\nm\n";
        assert_eq!(split_signature(plain), (plain.to_vec(), None));
        // A message that mentions gpgsig is message, not header.
        let tricky = b"tree t\n\ngpgsig not a header\n";
        assert_eq!(split_signature(tricky), (tricky.to_vec(), None));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let (payload, _) = split_signature(&raw);
            proptest::prop_assert!(payload.len() <= raw.len());
            let _ = SignedCommit::from_object(CommitId::parse(&"b".repeat(40)).unwrap(), &raw);
        }
    }
}
