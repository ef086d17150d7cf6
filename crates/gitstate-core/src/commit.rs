//! Commit ids: the full ids Git gives ([`CommitId`]) and what targets report
//! ([`ReportedCommit`], full or abbreviated). Both are validated hex before use.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The shortest abbreviation a target may report (as `git rev-parse --short` never goes below).
pub const MIN_ABBREV: usize = 7;

/// Why a string is not a commit id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommitIdError {
    /// Empty after trimming.
    #[error("empty commit id")]
    Empty,
    /// A character that is not a hex digit.
    #[error("commit id {0:?} is not hexadecimal")]
    NotHex(String),
    /// Too short to identify a commit.
    #[error("commit id {0:?} is shorter than {MIN_ABBREV} hex digits")]
    TooShort(String),
    /// Longer than any hash Git uses, or a full id of the wrong length.
    #[error("commit id {0:?} is not a full 40 (SHA-1) or 64 (SHA-256) digit id")]
    BadLength(String),
}

fn check_hex(s: &str) -> Result<String, CommitIdError> {
    if s.is_empty() {
        return Err(CommitIdError::Empty);
    }
    if !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(CommitIdError::NotHex(truncate(s)));
    }
    Ok(s.to_ascii_lowercase())
}

/// Keeps error messages bounded when a hostile target sends a huge string.
fn truncate(s: &str) -> String {
    const MAX: usize = 80;
    if s.len() <= MAX {
        s.to_owned()
    } else {
        let mut end = MAX;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    }
}

/// A full commit id: 40 (SHA-1) or 64 (SHA-256) lowercase hex digits. Stored inline (no
/// allocation), so fleets of thousands of instances copy ids cheaply.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CommitId {
    hex: [u8; 64],
    len: u8,
}

impl CommitId {
    /// Parses a full commit id; case-insensitive, stored lowercase.
    pub fn parse(s: &str) -> Result<Self, CommitIdError> {
        let hex = check_hex(s)?;
        match hex.len() {
            40 | 64 => Ok(Self::from_lower_hex(hex.as_bytes())),
            _ => Err(CommitIdError::BadLength(truncate(s))),
        }
    }

    /// `bytes` is lowercase hex of length 40 or 64 (checked by the callers).
    fn from_lower_hex(bytes: &[u8]) -> Self {
        let mut hex = [0u8; 64];
        let len = bytes.len().min(64);
        hex[..len].copy_from_slice(&bytes[..len]);
        Self { hex, len: len as u8 }
    }

    /// For ids that come from gix: lowercase hex of a hash length by construction.
    #[cfg(feature = "git")]
    pub(crate) fn from_trusted_hex(hex: &str) -> Self {
        debug_assert!(Self::parse(hex).is_ok());
        Self::from_lower_hex(hex.as_bytes())
    }

    /// The id as lowercase hex.
    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever stored.
        std::str::from_utf8(&self.hex[..usize::from(self.len)]).unwrap_or_default()
    }

    /// The first `n` digits, for people (`git log --oneline` style).
    pub fn short(&self, n: usize) -> &str {
        let s = self.as_str();
        &s[..n.min(s.len())]
    }
}

impl fmt::Display for CommitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for CommitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CommitId({})", self.short(12))
    }
}

impl std::str::FromStr for CommitId {
    type Err = CommitIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for CommitId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for CommitId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A commit id as a target reports it: full, or an abbreviation of at least
/// [`MIN_ABBREV`] hex digits. Lowercase.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ReportedCommit(String);

impl ReportedCommit {
    /// Parses what a target reported; surrounding whitespace is ignored, case is folded.
    pub fn parse(s: &str) -> Result<Self, CommitIdError> {
        let t = s.trim();
        let hex = check_hex(t)?;
        if hex.len() < MIN_ABBREV {
            return Err(CommitIdError::TooShort(truncate(t)));
        }
        if hex.len() > 64 {
            return Err(CommitIdError::BadLength(truncate(t)));
        }
        Ok(Self(hex))
    }

    /// The hex digits, lowercase.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is a full id rather than an abbreviation.
    pub fn full(&self) -> Option<CommitId> {
        CommitId::parse(&self.0).ok()
    }

    /// Whether this report names `commit`: equal, or an abbreviation that prefixes it.
    pub fn matches(&self, commit: &CommitId) -> bool {
        commit.as_str().starts_with(&self.0)
    }
}

impl fmt::Display for ReportedCommit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ReportedCommit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReportedCommit({})", self.0)
    }
}

impl From<CommitId> for ReportedCommit {
    fn from(c: CommitId) -> Self {
        Self(c.as_str().to_owned())
    }
}

impl<'de> Deserialize<'de> for ReportedCommit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn full_ids_fold_case_and_need_a_hash_length() {
        assert_eq!(CommitId::parse(&FULL.to_uppercase()).unwrap().as_str(), FULL);
        assert!(matches!(CommitId::parse(&FULL[..39]), Err(CommitIdError::BadLength(_))));
        assert!(matches!(CommitId::parse(""), Err(CommitIdError::Empty)));
        assert!(matches!(
            CommitId::parse("g123456789abcdef0123456789abcdef01234567"),
            Err(CommitIdError::NotHex(_))
        ));
        assert!(CommitId::parse(&"a".repeat(64)).is_ok());
    }

    #[test]
    fn reported_commits_accept_abbreviations_of_seven_or_more() {
        let full = CommitId::parse(FULL).unwrap();
        let r = ReportedCommit::parse("  0123456\n").unwrap();
        assert!(r.matches(&full));
        assert!(r.full().is_none());
        assert!(!ReportedCommit::parse("1234567").unwrap().matches(&full));
        assert!(matches!(ReportedCommit::parse("012345"), Err(CommitIdError::TooShort(_))));
        assert!(matches!(ReportedCommit::parse("abc"), Err(CommitIdError::TooShort(_))));
        assert!(matches!(ReportedCommit::parse("0x12345678"), Err(CommitIdError::NotHex(_))));
        assert!(matches!(ReportedCommit::parse(&"a".repeat(65)), Err(CommitIdError::BadLength(_))));
        assert_eq!(ReportedCommit::parse(FULL).unwrap().full(), Some(full));
    }

    #[test]
    fn errors_on_huge_input_stay_short() {
        let err = ReportedCommit::parse(&"z".repeat(100_000)).unwrap_err();
        assert!(err.to_string().len() < 200);
        let err = ReportedCommit::parse(&"é".repeat(100)).unwrap_err();
        assert!(err.to_string().len() < 200);
    }
}
