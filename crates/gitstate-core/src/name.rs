//! Validated names: [`EnvName`] (environments) and the rule that checks it.

use std::fmt;

use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An environment name did not match `[A-Za-z0-9][A-Za-z0-9._-]{0,62}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid environment name {0:?}: use 1 to 63 of A-Z a-z 0-9 . _ -, starting with a letter or digit")]
pub struct EnvNameError(pub String);

/// An environment's name: `[A-Za-z0-9][A-Za-z0-9._-]{0,62}`. Safe in file names, URLs,
/// metric labels and command arguments.
///
/// Its copies share one allocation: a name is a key of a dozen maps (specs, states,
/// reports, metrics…), 50,000 times each at scale (SPEC §19).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EnvName(Arc<str>);

impl EnvName {
    /// Validates a name.
    pub fn new(s: &str) -> Result<Self, EnvNameError> {
        let bytes = s.as_bytes();
        let ok = !bytes.is_empty()
            && bytes.len() <= 63
            && bytes[0].is_ascii_alphanumeric()
            && bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(Self(Arc::from(s)))
        } else {
            let shown: String = s.chars().take(80).collect();
            Err(EnvNameError(shown))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Maps keyed by names are looked up by `&str` too (equality, order and hash are the
/// text's).
impl std::borrow::Borrow<str> for EnvName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EnvName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for EnvName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EnvName({})", self.0)
    }
}

impl std::str::FromStr for EnvName {
    type Err = EnvNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl Serialize for EnvName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for EnvName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        for ok in ["production", "eu-west-1", "a", "v1.2_beta", &"x".repeat(63)] {
            assert!(EnvName::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_everything_else() {
        for bad in ["", "-x", ".x", "_x", "a/b", "a b", "ü", "a;rm", &"x".repeat(64), "../x"] {
            assert!(EnvName::new(bad).is_err(), "{bad}");
        }
    }
}
