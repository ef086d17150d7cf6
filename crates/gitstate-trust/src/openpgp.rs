//! OpenPGP signatures (what `git commit -S` makes with gpg) against a file of armoured
//! public keys. As `git verify-commit` takes gpg's word: a good signature by a key (or
//! signing subkey) in the file is trusted unless the key has expired or been revoked —
//! judged now, as gpg does.

use jiff::Timestamp;
use pgp::composed::{Deserializable, DetachedSignature, SignedPublicKey};
use pgp::packet::Signature;
use pgp::types::KeyDetails;

use crate::{Reason, TrustError, Verdict};

/// A keyring: the public keys of an armoured file (one or more blocks).
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    keys: Vec<SignedPublicKey>,
}

impl Keyring {
    /// Reads the file's text; `name` names it in errors.
    pub fn parse(name: &str, text: &str) -> Result<Self, TrustError> {
        let bad = |message: String| TrustError::File { file: name.to_owned(), line: 0, message };
        let (keys, _) = SignedPublicKey::from_string_many(text).map_err(|e| bad(e.to_string()))?;
        let keys = keys.collect::<Result<Vec<_>, _>>().map_err(|e| bad(e.to_string()))?;
        if keys.is_empty() {
            return Err(bad("no OpenPGP public key in it".into()));
        }
        Ok(Self { keys })
    }

    /// How many primary keys it holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The verdict on an armoured OpenPGP signature over `payload`, keys judged at `now`.
    pub fn verify(&self, armored: &str, payload: &[u8], now: Timestamp) -> Verdict {
        let sig = match DetachedSignature::from_string(armored) {
            Ok((s, _)) => s,
            Err(e) => {
                return Verdict::untrusted(Reason::BadSignature, format!("not an OpenPGP signature: {e}"));
            }
        };
        let issuers: Vec<String> = sig
            .signature
            .issuer_fingerprint()
            .iter()
            .map(|f| hex(f.as_bytes()))
            .chain(sig.signature.issuer_key_id().iter().map(|k| hex(k.as_ref())))
            .collect();
        let matches = |fp: &str| issuers.iter().any(|i| fp.ends_with(i.as_str()));
        for key in &self.keys {
            let primary_fp = hex(key.primary_key.fingerprint().as_bytes());
            let user = key
                .details
                .users
                .first()
                .map(|u| String::from_utf8_lossy(u.id.id()).into_owned())
                .unwrap_or_else(|| primary_fp.clone());
            let revoked = !key.details.revocation_signatures.is_empty();
            let key_expired = expired(
                key.primary_key.created_at().as_secs(),
                key.details.users.iter().flat_map(|u| &u.signatures).chain(&key.details.direct_signatures),
                now,
            );
            // The primary key itself, then each subkey.
            if matches(&primary_fp) {
                return judge(sig.verify(&key.primary_key, payload), user, primary_fp, revoked, key_expired);
            }
            for sub in &key.public_subkeys {
                let fp = hex(sub.key.fingerprint().as_bytes());
                if !matches(&fp) {
                    continue;
                }
                let sub_revoked = sub
                    .signatures
                    .iter()
                    .any(|s| s.typ() == Some(pgp::packet::SignatureType::SubkeyRevocation));
                let sub_expired = expired(sub.key.created_at().as_secs(), sub.signatures.iter(), now);
                return judge(
                    sig.verify(&sub.key, payload),
                    user,
                    fp,
                    revoked || sub_revoked,
                    key_expired || sub_expired,
                );
            }
        }
        let who = issuers.first().cloned().unwrap_or_else(|| "an unnamed key".into());
        Verdict::untrusted(Reason::UnknownKey, format!("{who} is not in the OpenPGP keys")).with_key(who)
    }
}

fn judge(
    checked: Result<(), pgp::errors::Error>,
    signer: String,
    fingerprint: String,
    revoked: bool,
    expired: bool,
) -> Verdict {
    if let Err(e) = checked {
        return Verdict::untrusted(Reason::BadSignature, format!("the signature does not match: {e}"))
            .with_key(fingerprint);
    }
    if revoked {
        return Verdict::untrusted(Reason::KeyRevoked, format!("{signer}'s key {fingerprint} is revoked"))
            .with_key(fingerprint);
    }
    if expired {
        return Verdict::untrusted(Reason::KeyExpired, format!("{signer}'s key {fingerprint} has expired"))
            .with_key(fingerprint);
    }
    Verdict::trusted(signer, fingerprint)
}

/// Whether the newest self-signature among `sigs` gives the key (created at `created`,
/// seconds) an expiration before `now`.
fn expired<'a>(created: u32, sigs: impl Iterator<Item = &'a Signature>, now: Timestamp) -> bool {
    let newest = sigs
        .filter(|s| {
            !matches!(
                s.typ(),
                Some(
                    pgp::packet::SignatureType::SubkeyRevocation | pgp::packet::SignatureType::KeyRevocation
                )
            )
        })
        .max_by_key(|s| s.created().map_or(0, |t| t.as_secs()));
    let Some(after) = newest.and_then(|s| s.key_expiration_time()) else { return false };
    let secs = after.as_secs();
    secs != 0 && i64::from(created) + i64::from(secs) < now.as_second()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,300}") {
            let _ = Keyring::parse("keys.asc", &text);
            let _ = Keyring::default().verify(&text, text.as_bytes(), Timestamp::UNIX_EPOCH);
        }
    }
}
