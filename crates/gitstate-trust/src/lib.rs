//! # gitstate-trust
//!
//! A signed chain of custody for gitstate (SPEC §18): whether a commit is signed by a key
//! your people hold, checked in-process — no `gpg` or `ssh-keygen` at run time — with the
//! verdicts `git verify-commit` gives.
//!
//! - SSH signatures (OpenSSH SSHSIG, `gpg.format = ssh`) against git's allowed-signers
//!   file ([`AllowedSigners`]): principals, `namespaces`, `valid-after` / `valid-before`
//!   judged at the committer's time, the `git` namespace required.
//! - OpenPGP signatures against a file of armoured public keys ([`Keyring`]): expiry and
//!   revocation judged now, as gpg does.
//! - [`Trust`] holds both and judges a [`SignedCommit`] (read by the expected-state source,
//!   `ExpectedState::signed_commits`) or a whole move ([`Trust::verify_move`]), caching
//!   each commit's verdict: a move of 1,000 commits is verified once.
//!
//! ```
//! use gitstate_trust::{Reason, Trust};
//! # use gitstate_core::{CommitId, SignedCommit};
//! let trust = Trust::new(None, None).unwrap();
//! let raw = b"tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\ncommitter C <c@x> 5 +0000\n\nm\n";
//! let commit = SignedCommit::from_object(CommitId::parse(&"a".repeat(40)).unwrap(), raw);
//! let verdict = trust.verify(&commit, jiff::Timestamp::now());
//! assert!(!verdict.trusted);
//! assert_eq!(verdict.reason, Some(Reason::Unsigned));
//! ```
//!
//! The gitstate book explains the whole: `docs/` in the repository (`mdbook serve docs`):
//! *Signed commits* (`docs/src/signed-commits.md`).
// The workspace denies `unsafe`; libraries forbid it outright (only the binary's
// allocator tuning, `gitstate-cli/src/memory.rs`, allows it).
#![forbid(unsafe_code)]

mod openpgp;
mod ssh;

use std::collections::HashMap;
use std::sync::Mutex;

use gitstate_core::{CommitId, SignedCommit};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

pub use openpgp::Keyring;
pub use ssh::AllowedSigners;

/// Why a commit is not trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Reason {
    /// It carries no signature.
    Unsigned,
    /// Signed by a key the trust files do not hold.
    UnknownKey,
    /// The signature does not match the commit (altered after signing), or is not one.
    BadSignature,
    /// An SSH key used outside its `valid-after` / `valid-before`.
    NotValidThen,
    /// An SSH signature made for another namespace than `git`, or by a key not allowed it.
    WrongNamespace,
    /// The OpenPGP key has expired.
    KeyExpired,
    /// The OpenPGP key is revoked.
    KeyRevoked,
}

impl Reason {
    /// The name in JSON and alarms.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Unsigned => "unsigned",
            Reason::UnknownKey => "unknown_key",
            Reason::BadSignature => "bad_signature",
            Reason::NotValidThen => "not_valid_then",
            Reason::WrongNamespace => "wrong_namespace",
            Reason::KeyExpired => "key_expired",
            Reason::KeyRevoked => "key_revoked",
        }
    }
}

/// The judgement on one commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Verdict {
    /// Signed validly by an allowed key.
    pub trusted: bool,
    /// Who signed (the SSH principals, or the OpenPGP key's first user id).
    pub signer: Option<String>,
    /// The key (SSH `SHA256:…` fingerprint, or the OpenPGP fingerprint in hex).
    pub key: Option<String>,
    /// Why it is not trusted.
    pub reason: Option<Reason>,
    /// The reason for people.
    pub detail: Option<String>,
}

impl Verdict {
    fn trusted(signer: String, key: String) -> Self {
        Self { trusted: true, signer: Some(signer), key: Some(key), reason: None, detail: None }
    }

    fn untrusted(reason: Reason, detail: String) -> Self {
        Self { trusted: false, signer: None, key: None, reason: Some(reason), detail: Some(detail) }
    }

    fn with_key(mut self, key: String) -> Self {
        self.key = Some(key);
        self
    }
}

/// A trust file that could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    /// A line (or, line 0, the whole file) is not what it should be.
    #[error("{file}:{line}: {message}")]
    File {
        /// The file.
        file: String,
        /// 1-based; 0 for the file as a whole.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// Which commits a move must have signed (`[source.trust] require`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Require {
    /// Every commit the move brings (`last_trusted..new`, merges included).
    #[default]
    All,
    /// The new expected commit only.
    Tip,
}

/// The keys gitstate trusts, and the verdicts it has reached (one per commit).
#[derive(Debug, Default)]
pub struct Trust {
    ssh: Option<AllowedSigners>,
    openpgp: Option<Keyring>,
    /// A digest of the trust files' content: what the verdicts were reached with.
    digest: String,
    /// Verdicts already reached that cannot change (`keepable`).
    cache: Mutex<HashMap<CommitId, Verdict>>,
}

impl Trust {
    /// Trust from an allowed-signers file and an OpenPGP key file, each `(name, text)`.
    pub fn new(
        allowed_signers: Option<(&str, &str)>,
        openpgp_keys: Option<(&str, &str)>,
    ) -> Result<Self, TrustError> {
        let ssh = allowed_signers.map(|(n, t)| AllowedSigners::parse(n, t)).transpose()?;
        let openpgp = openpgp_keys.map(|(n, t)| Keyring::parse(n, t)).transpose()?;
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for part in [allowed_signers.map_or("", |(_, t)| t), "\0", openpgp_keys.map_or("", |(_, t)| t)] {
            for b in part.bytes() {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        }
        Ok(Self { ssh, openpgp, digest: format!("{h:016x}"), cache: Mutex::default() })
    }

    /// A digest of the trust files' content (16 hex digits): two `Trust`s with the same
    /// digest reach the same verdicts.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The verdict reached before on `commit`, when it is one that cannot change (an
    /// SSH verdict): the commit need not even be read again.
    pub fn cached(&self, commit: &CommitId) -> Option<Verdict> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(commit).cloned()
    }

    /// The verdict on one commit at `now`.
    pub fn verify(&self, commit: &SignedCommit, now: Timestamp) -> Verdict {
        if let Some(v) = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(&commit.id) {
            return v.clone();
        }
        let verdict = match commit.signature.as_deref() {
            None => Verdict::untrusted(Reason::Unsigned, "the commit is not signed".into()),
            Some(sig) if sig.trim_start().starts_with("-----BEGIN SSH SIGNATURE-----") => match &self.ssh {
                Some(a) => a.verify(sig, &commit.payload, commit.committed_at),
                None => {
                    Verdict::untrusted(Reason::UnknownKey, "SSH-signed, and no allowed_signers file".into())
                }
            },
            Some(sig) if sig.trim_start().starts_with("-----BEGIN PGP SIGNATURE-----") => match &self.openpgp
            {
                Some(k) => k.verify(sig, &commit.payload, now),
                None => {
                    Verdict::untrusted(Reason::UnknownKey, "OpenPGP-signed, and no openpgp_keys file".into())
                }
            },
            Some(_) => Verdict::untrusted(
                Reason::BadSignature,
                "a signature of a kind gitstate does not read (x509?)".into(),
            ),
        };
        if keepable(&verdict) {
            self.cache.lock().unwrap_or_else(|p| p.into_inner()).insert(commit.id, verdict.clone());
        }
        verdict
    }

    /// Judges a move: `commits` are what it brings, newest first (as
    /// `ExpectedState::signed_commits` returns them), the new expected commit first.
    /// Under [`Require::Tip`] only that one counts. The first offending commit is the
    /// oldest untrusted one, with its verdict. An empty move is not trusted.
    pub fn verify_move(&self, commits: &[SignedCommit], require: Require, now: Timestamp) -> MoveVerdict {
        let Some(tip) = commits.first() else {
            let none = Verdict::untrusted(Reason::Unsigned, "no commit to judge".into());
            return MoveVerdict { tip: none.clone(), offending: Some(Box::new((None, none))) };
        };
        let tip_verdict = self.verify(tip, now);
        let judged: &[SignedCommit] = match require {
            Require::Tip => std::slice::from_ref(tip),
            _ => commits,
        };
        let mut offending = None;
        for c in judged.iter().rev() {
            let v = if c.id == tip.id { tip_verdict.clone() } else { self.verify(c, now) };
            if !v.trusted {
                offending = Some(Box::new((Some(c.id), v)));
                break;
            }
        }
        MoveVerdict { tip: tip_verdict, offending }
    }
}

/// The judgement on a move ([`Trust::verify_move`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MoveVerdict {
    /// The verdict on the new expected commit itself.
    pub tip: Verdict,
    /// The oldest commit of the move that is not trusted (`None` inside: an empty move),
    /// and why; `None`: every commit that counts is trusted.
    pub offending: Option<Box<(Option<CommitId>, Verdict)>>,
}

impl MoveVerdict {
    /// Whether every commit that counts is trusted.
    pub fn trusted(&self) -> bool {
        self.offending.is_none()
    }
}

/// Kept: SSH verdicts (judged at the commit's own time, they never change) and
/// "unsigned" (a commit's content never changes). Not kept: OpenPGP verdicts, which a
/// key's expiry or revocation can change.
fn keepable(v: &Verdict) -> bool {
    v.key.as_deref().is_some_and(|k| k.starts_with("SHA256:")) || v.reason == Some(Reason::Unsigned)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What cannot change is kept, so the loop need not read the commit again; what a
    /// key's expiry could change is not.
    #[test]
    fn verdicts_that_cannot_change_are_cached() {
        let trust = Trust::new(None, None).unwrap();
        let raw = b"tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\ncommitter C <c@x> 5 +0000\n\nm\n";
        let unsigned = SignedCommit::from_object(CommitId::parse(&"a".repeat(40)).unwrap(), raw);
        assert_eq!(trust.cached(&unsigned.id), None);
        let v = trust.verify(&unsigned, Timestamp::now());
        assert_eq!(trust.cached(&unsigned.id), Some(v));
        let pgp = b"tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\ncommitter C <c@x> 5 +0000\ngpgsig -----BEGIN PGP SIGNATURE-----\n x\n -----END PGP SIGNATURE-----\n\nm\n";
        let signed = SignedCommit::from_object(CommitId::parse(&"b".repeat(40)).unwrap(), pgp);
        assert!(!trust.verify(&signed, Timestamp::now()).trusted);
        assert_eq!(trust.cached(&signed.id), None, "an OpenPGP verdict is judged again");
    }

    #[test]
    fn reasons_have_their_names() {
        for r in [
            Reason::Unsigned,
            Reason::UnknownKey,
            Reason::BadSignature,
            Reason::NotValidThen,
            Reason::WrongNamespace,
            Reason::KeyExpired,
            Reason::KeyRevoked,
        ] {
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
    }
}
