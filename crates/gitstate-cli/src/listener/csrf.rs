//! CSRF tokens for the dashboard's actions (SPEC §20): an HMAC-SHA256 of the user and the
//! token's expiry (12 h) under a key every replica shares (a file in the state directory,
//! mode 0600, or a row in PostgreSQL). A token is another user's or expired: refused. A
//! token alone never authenticates: it is checked after the user is.

use hmac::Mac as _;

/// How long a token is good for.
pub const LIFETIME: jiff::SignedDuration = jiff::SignedDuration::from_hours(12);

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// Makes and checks tokens.
pub struct Csrf {
    key: [u8; 32],
}

impl std::fmt::Debug for Csrf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Csrf")
    }
}

impl Csrf {
    /// Tokens under `key`.
    pub fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    fn mac(&self, user: &str, expiry: i64) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(user.as_bytes());
        mac.update(&[0]);
        mac.update(expiry.to_string().as_bytes());
        mac
    }

    /// A token for `user`, good until `now` + [`LIFETIME`].
    pub fn token(&self, user: &str, now: jiff::Timestamp) -> String {
        let expiry = now.checked_add(LIFETIME).unwrap_or(now).as_second();
        let tag = self.mac(user, expiry).finalize().into_bytes();
        let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        format!("{expiry}.{hex}")
    }

    /// Whether `token` is `user`'s and not expired at `now`.
    pub fn check(&self, user: &str, token: &str, now: jiff::Timestamp) -> bool {
        let Some((expiry, hex)) = token.trim().split_once('.') else { return false };
        let Ok(expiry) = expiry.parse::<i64>() else { return false };
        if expiry <= now.as_second() || hex.len() != 64 {
            return false;
        }
        let Some(tag) = (0..32)
            .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
            .collect::<Option<Vec<u8>>>()
        else {
            return false;
        };
        self.mac(user, expiry).verify_slice(&tag).is_ok()
    }
}

/// The key in `state_dir/dashboard.key`, made (mode 0600) when it is missing. A key that
/// is not 32 bytes is an error, never replaced.
pub fn file_key(state_dir: &std::path::Path) -> anyhow::Result<[u8; 32]> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = state_dir.join("dashboard.key");
    match std::fs::read(&path) {
        Ok(bytes) => {
            return bytes.try_into().map_err(|b: Vec<u8>| {
                anyhow::anyhow!("{}: {} bytes, not the 32 of a dashboard key", path.display(), b.len())
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => anyhow::bail!("{}: {e}", path.display()),
    }
    std::fs::create_dir_all(state_dir)?;
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| anyhow::anyhow!("random numbers: {e}"))?;
    let tmp = tempfile::Builder::new().prefix(".dashboard.key").tempfile_in(state_dir)?;
    let mut f = std::fs::OpenOptions::new().write(true).mode(0o600).open(tmp.path())?;
    f.write_all(&key)?;
    f.sync_all()?;
    // Another replica of the same directory may have made one first: theirs wins.
    match tmp.persist_noclobber(&path) {
        Ok(_) => Ok(key),
        Err(_) => file_key(state_dir),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_its_users_until_it_expires() {
        let csrf = Csrf::new([7; 32]);
        let now = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        let t = csrf.token("ada", now);
        assert!(csrf.check("ada", &t, now));
        assert!(!csrf.check("bob", &t, now), "another user's");
        assert!(!csrf.check("ada", &t, now.checked_add(LIFETIME).unwrap()), "expired");
        assert!(!Csrf::new([8; 32]).check("ada", &t, now), "another key");
        let (expiry, tag) = t.split_once('.').unwrap();
        let later = format!("{}.{tag}", expiry.parse::<i64>().unwrap() + 3600);
        assert!(!csrf.check("ada", &later, now), "an expiry moved");
        for bad in ["", ".", "x.y", &t[..t.len() - 1], &format!("{t}0")] {
            assert!(!csrf.check("ada", bad, now), "{bad:?}");
        }
    }
}
