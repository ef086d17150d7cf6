//! SSH signatures (OpenSSH's SSHSIG, what `git commit -S` makes with `gpg.format = ssh`)
//! and git's allowed-signers file (`gpg.ssh.allowedSignersFile`, ssh-keygen(1) "ALLOWED
//! SIGNERS"): `principals [options] keytype base64 [comment]`, options `namespaces="…"`,
//! `valid-after="…"`, `valid-before="…"` (and `cert-authority`, whose lines sign nothing
//! here: certificates are not supported).

use jiff::Timestamp;
use ssh_key::{HashAlg, PublicKey, SshSig};

use crate::{Reason, TrustError, Verdict};

/// The namespace git signs commits in.
const GIT_NAMESPACE: &str = "git";

/// One line of an allowed-signers file.
#[derive(Debug, Clone)]
struct Signer {
    principals: String,
    key: PublicKey,
    namespaces: Option<Vec<String>>,
    valid_after: Option<Timestamp>,
    valid_before: Option<Timestamp>,
    cert_authority: bool,
}

/// An allowed-signers file, read.
#[derive(Debug, Clone, Default)]
pub struct AllowedSigners {
    signers: Vec<Signer>,
}

impl AllowedSigners {
    /// Reads the file's text; `name` names it in errors (`allowed_signers:3: …`).
    pub fn parse(name: &str, text: &str) -> Result<Self, TrustError> {
        let mut signers = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why: String| TrustError::File { file: name.to_owned(), line: i + 1, message: why };
            let fields = split_fields(line).map_err(|e| bad(e.to_owned()))?;
            let mut fields = fields.into_iter();
            let principals = fields.next().ok_or_else(|| bad("no principals".into()))?;
            let mut next = fields.next().ok_or_else(|| bad("no key".into()))?;
            let (mut namespaces, mut valid_after, mut valid_before, mut cert_authority) =
                (None, None, None, false);
            // Options come before the key type when the second field is not a key type.
            if !is_key_type(&next) {
                for opt in split_options(&next) {
                    let (k, v) = match opt.split_once('=') {
                        Some((k, v)) => (k.to_ascii_lowercase(), Some(v.trim_matches('"').to_owned())),
                        None => (opt.to_ascii_lowercase(), None),
                    };
                    match (k.as_str(), v) {
                        ("cert-authority", None) => cert_authority = true,
                        ("namespaces", Some(v)) => {
                            namespaces = Some(v.split(',').map(|s| s.trim().to_owned()).collect())
                        }
                        ("valid-after", Some(v)) => valid_after = Some(ssh_time(&v).map_err(bad)?),
                        ("valid-before", Some(v)) => valid_before = Some(ssh_time(&v).map_err(bad)?),
                        (other, _) => return Err(bad(format!("unknown option {other:?}"))),
                    }
                }
                next = fields.next().ok_or_else(|| bad("no key".into()))?;
            }
            let key_type = next;
            let base64 = fields.next().ok_or_else(|| bad(format!("no key after {key_type:?}")))?;
            let key = PublicKey::from_openssh(&format!("{key_type} {base64}"))
                .map_err(|e| bad(format!("not a public key: {e}")))?;
            signers.push(Signer { principals, key, namespaces, valid_after, valid_before, cert_authority });
        }
        Ok(Self { signers })
    }

    /// How many keys it allows.
    pub fn len(&self) -> usize {
        self.signers.len()
    }

    /// Whether it allows none.
    pub fn is_empty(&self) -> bool {
        self.signers.is_empty()
    }

    /// The verdict on an SSH signature (armoured) over `payload`, made at `at` (the
    /// committer's time: `valid-after` / `valid-before` are judged at it, as git asks
    /// ssh-keygen to).
    pub fn verify(&self, armored: &str, payload: &[u8], at: Timestamp) -> Verdict {
        let sig = match SshSig::from_pem(armored.trim()) {
            Ok(s) => s,
            Err(e) => return Verdict::untrusted(Reason::BadSignature, format!("not an SSH signature: {e}")),
        };
        let key = PublicKey::from(sig.public_key().clone());
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        let mut known =
            self.signers.iter().filter(|s| !s.cert_authority && s.key.key_data() == key.key_data());
        let Some(first) = known.next() else {
            return Verdict::untrusted(Reason::UnknownKey, format!("{fingerprint} is not an allowed signer"))
                .with_key(fingerprint);
        };
        if sig.namespace() != GIT_NAMESPACE {
            return Verdict::untrusted(
                Reason::WrongNamespace,
                format!("signed in namespace {:?}, not \"git\"", sig.namespace()),
            )
            .with_key(fingerprint);
        }
        if let Err(e) = key.verify(GIT_NAMESPACE, payload, &sig) {
            return Verdict::untrusted(Reason::BadSignature, format!("the signature does not match: {e}"))
                .with_key(fingerprint);
        }
        // The first line for this key that allows the namespace and the time.
        let mut why = None;
        for s in std::iter::once(first).chain(known) {
            if let Some(ns) = &s.namespaces
                && !ns.iter().any(|n| n == GIT_NAMESPACE)
            {
                why.get_or_insert((
                    Reason::WrongNamespace,
                    format!("{} may not sign in namespace \"git\"", s.principals),
                ));
                continue;
            }
            if s.valid_after.is_some_and(|t| at < t) || s.valid_before.is_some_and(|t| at > t) {
                why.get_or_insert((
                    Reason::NotValidThen,
                    format!("{}'s key was not valid at {at}", s.principals),
                ));
                continue;
            }
            return Verdict::trusted(s.principals.clone(), fingerprint);
        }
        let (reason, text) = why.unwrap_or((Reason::UnknownKey, "no allowed signer line matches".into()));
        Verdict::untrusted(reason, text).with_key(fingerprint)
    }
}

fn is_key_type(s: &str) -> bool {
    s.starts_with("ssh-") || s.starts_with("ecdsa-") || s.starts_with("sk-")
}

/// Splits a line into whitespace-separated fields, a double-quoted stretch kept whole.
fn split_fields(line: &str) -> Result<Vec<String>, &'static str> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if quoted {
        return Err("an unclosed quote");
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

/// Splits `a,b="x,y",c` at the commas outside quotes.
fn split_options(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter().filter(|o| !o.is_empty()).collect()
}

/// ssh-keygen's times: `YYYYMMDD` or `YYYYMMDDHHMM[SS]`, UTC with a trailing `Z`, the
/// system's time zone without.
fn ssh_time(v: &str) -> Result<Timestamp, String> {
    let bad = || format!("{v:?} is not a time (YYYYMMDD[HHMM[SS]][Z])");
    let (digits, utc) = match v.strip_suffix(['Z', 'z']) {
        Some(d) => (d, true),
        None => (v, false),
    };
    if !digits.bytes().all(|b| b.is_ascii_digit()) || ![8, 12, 14].contains(&digits.len()) {
        return Err(bad());
    }
    let n = |r: std::ops::Range<usize>| digits.get(r).and_then(|s| s.parse::<i16>().ok());
    let (y, mo, d) = (n(0..4).ok_or_else(bad)?, n(4..6).ok_or_else(bad)?, n(6..8).ok_or_else(bad)?);
    let (h, mi, s) = (n(8..10).unwrap_or(0), n(10..12).unwrap_or(0), n(12..14).unwrap_or(0));
    let civil =
        jiff::civil::DateTime::new(y, mo as i8, d as i8, h as i8, mi as i8, s as i8, 0).map_err(|_| bad())?;
    let tz = if utc { jiff::tz::TimeZone::UTC } else { jiff::tz::TimeZone::system() };
    civil.to_zoned(tz).map(|z| z.timestamp()).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPf6Q7YbQK3B6kM+0CmWJz8qk7g5KxN1m0rN3mAXx0Nz";

    #[test]
    fn lines_with_options_comments_and_errors() {
        let text = format!(
            "# who may sign\n\nada@example.com {KEY} ada's laptop\nbob@example.com,*@ops.example namespaces=\"git,file\",valid-after=\"20260101\",valid-before=\"20261231235959Z\" {KEY}\nca@example.com cert-authority {KEY}\n"
        );
        let a = AllowedSigners::parse("allowed_signers", &text).unwrap();
        assert_eq!(a.len(), 3);
        let bob = &a.signers[1];
        assert_eq!(bob.namespaces.as_deref(), Some(&["git".to_owned(), "file".to_owned()][..]));
        assert_eq!(bob.valid_before, Some("2026-12-31T23:59:59Z".parse().unwrap()));
        assert!(a.signers[2].cert_authority);
        for (bad, want) in [
            (format!("x {KEY}\ny unknown-opt {KEY}"), "allowed_signers:2: unknown option"),
            ("x ssh-ed25519 notbase64".to_owned(), "allowed_signers:1: not a public key"),
            (format!("x valid-after=\"2026\" {KEY}"), "allowed_signers:1: \"2026\" is not a time"),
            ("lonely".to_owned(), "allowed_signers:1: no key"),
            (format!("x namespaces=\"git {KEY}"), "allowed_signers:1: an unclosed quote"),
        ] {
            let e = AllowedSigners::parse("allowed_signers", &bad).unwrap_err().to_string();
            assert!(e.starts_with(want), "{e}");
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,200}", sig in "\\PC{0,200}") {
            if let Ok(a) = AllowedSigners::parse("f", &text) {
                let _ = a.verify(&sig, b"payload", Timestamp::UNIX_EPOCH);
            }
            let _ = AllowedSigners::default().verify(&sig, sig.as_bytes(), Timestamp::UNIX_EPOCH);
        }
    }
}
