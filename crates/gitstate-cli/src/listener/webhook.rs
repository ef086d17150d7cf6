//! Push webhooks (SPEC §13): `POST /hooks/git` from GitHub, Gitea, Forgejo or GitLab.
//! A valid push answers 202 and has the refs polled at once — only the environments whose
//! ref the payload names, when it names one; a bad or missing signature 401; a body over
//! 1 MiB 413; any other event 204. Signatures are checked in constant time (`hmac`'s
//! `verify_slice`, `subtle` for GitLab's token); bodies are never logged. [`judge`] is
//! pure: headers and body in, what to answer and what to poll out.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The largest body read.
pub const MAX_BODY: usize = 1024 * 1024;

/// What a request comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A signed push: poll the environments of `reference` (all when `None`). 202.
    Push {
        /// The pushed ref, when the payload names one.
        reference: Option<String>,
    },
    /// Signed, but not a push (a ping, an issue). 204.
    Ignored,
    /// No valid signature or token. 401.
    Unauthorized,
    /// A signed push whose body is not a push payload. 400.
    BadRequest,
}

impl Verdict {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            Verdict::Push { .. } => 202,
            Verdict::Ignored => 204,
            Verdict::Unauthorized => 401,
            Verdict::BadRequest => 400,
        }
    }

    /// The `outcome` label of `gitstate_webhook_requests_total`.
    pub fn outcome(&self) -> &'static str {
        match self {
            Verdict::Push { .. } => "accepted",
            Verdict::Ignored => "ignored",
            Verdict::Unauthorized => "unauthorized",
            Verdict::BadRequest => "bad_request",
        }
    }
}

/// Whether `hex_mac` (hex, either case) is the HMAC-SHA256 of `body` under `secret`.
fn signed(secret: &[u8], body: &[u8], hex_mac: &str) -> bool {
    let Some(mac) = decode_hex(hex_mac.trim()) else { return false };
    let Ok(mut h) = Hmac::<Sha256>::new_from_slice(secret) else { return false };
    h.update(body);
    h.verify_slice(&mac).is_ok()
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok()).collect()
}

/// A body that is not a push payload (not a JSON object).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotAPayload;

/// The pushed ref of a payload (GitHub, Gitea, Forgejo and GitLab all say `"ref"`).
pub fn pushed_ref(body: &[u8]) -> Result<Option<String>, NotAPayload> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|_| NotAPayload)?;
    if !v.is_object() {
        return Err(NotAPayload);
    }
    Ok(v.get("ref")
        .and_then(|r| r.as_str())
        .filter(|r| r.starts_with("refs/") && r.len() < 1024)
        .map(str::to_owned))
}

/// Judges a request: `header` looks a header up by name (case-insensitively).
pub fn judge(secret: &str, header: &dyn Fn(&str) -> Option<String>, body: &[u8]) -> Verdict {
    let secret_bytes = secret.as_bytes();
    let (authentic, event) = if let Some(sig) = header("x-hub-signature-256") {
        let ok = sig.strip_prefix("sha256=").is_some_and(|mac| signed(secret_bytes, body, mac));
        (ok, header("x-github-event"))
    } else if let Some(sig) = header("x-gitea-signature").or_else(|| header("x-forgejo-signature")) {
        (signed(secret_bytes, body, &sig), header("x-gitea-event").or_else(|| header("x-forgejo-event")))
    } else if let Some(token) = header("x-gitlab-token") {
        let ok = !secret_bytes.is_empty() && bool::from(token.as_bytes().ct_eq(secret_bytes));
        (ok, header("x-gitlab-event"))
    } else {
        (false, None)
    };
    if !authentic {
        return Verdict::Unauthorized;
    }
    match event.as_deref() {
        Some("push") | Some("Push Hook") | Some("Tag Push Hook") => match pushed_ref(body) {
            Ok(reference) => Verdict::Push { reference },
            Err(NotAPayload) => Verdict::BadRequest,
        },
        _ => Verdict::Ignored,
    }
}

/// Answers a request to the webhook listener: `POST /hooks/git` is judged, counted and,
/// when it is a push, handed to `pushed` with the ref it names.
pub fn respond(
    r: &crate::serve::Request,
    secret: &str,
    metrics: &super::metrics::Metrics,
    pushed: impl FnOnce(Option<String>),
) -> crate::serve::Response {
    use crate::serve::{Response, StatusCode};
    const TEXT: &str = "text/plain; charset=utf-8";
    if r.path != "/hooks/git" {
        metrics.webhook("not_found");
        return Response::new(StatusCode::NOT_FOUND, TEXT, "not found: POST /hooks/git\n");
    }
    if r.method != "POST" {
        metrics.webhook("bad_request");
        return Response::new(StatusCode::METHOD_NOT_ALLOWED, TEXT, "POST only\n");
    }
    let verdict = judge(secret, &|name| r.header(name), &r.body);
    metrics.webhook(verdict.outcome());
    let status = StatusCode::from_u16(verdict.status()).unwrap_or(StatusCode::BAD_REQUEST);
    match verdict {
        Verdict::Push { reference } => {
            tracing::info!(reference = reference.as_deref().unwrap_or("(any)"), "push webhook: polling refs");
            pushed(reference);
            Response::new(status, TEXT, "accepted\n")
        }
        Verdict::Unauthorized => {
            tracing::warn!("push webhook refused: no valid signature or token");
            Response::new(status, TEXT, "no valid signature\n")
        }
        Verdict::BadRequest => Response::new(status, TEXT, "not a push payload\n"),
        Verdict::Ignored => Response::new(status, TEXT, ""),
    }
}

/// The HMAC-SHA256 of `body` under `secret`, hex (for tests and the benchmark).
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut h = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    h.update(body);
    h.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const SECRET: &str = "s3cret";

    fn headers<'a>(pairs: &'a [(&'a str, String)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| pairs.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone())
    }

    #[test]
    fn every_forge_is_judged() {
        let body = br#"{"ref":"refs/heads/environments/production","after":"abc"}"#;
        let push = Verdict::Push { reference: Some("refs/heads/environments/production".into()) };
        let gh = [
            ("X-GitHub-Event", "push".into()),
            ("X-Hub-Signature-256", format!("sha256={}", sign(SECRET, body))),
        ];
        assert_eq!(judge(SECRET, &headers(&gh), body), push);
        let ping = [
            ("X-GitHub-Event", "ping".into()),
            ("X-Hub-Signature-256", format!("sha256={}", sign(SECRET, body))),
        ];
        assert_eq!(judge(SECRET, &headers(&ping), body), Verdict::Ignored);
        let gitea =
            [("X-Gitea-Event", "push".into()), ("X-Gitea-Signature", sign(SECRET, body).to_uppercase())];
        assert_eq!(judge(SECRET, &headers(&gitea), body), push);
        let forgejo = [("X-Forgejo-Event", "push".into()), ("X-Forgejo-Signature", sign(SECRET, body))];
        assert_eq!(judge(SECRET, &headers(&forgejo), body), push);
        let gitlab = [("X-Gitlab-Event", "Push Hook".into()), ("X-Gitlab-Token", SECRET.into())];
        assert_eq!(judge(SECRET, &headers(&gitlab), body), push);
        let wrong = [
            ("X-GitHub-Event", "push".into()),
            ("X-Hub-Signature-256", format!("sha256={}", sign("other", body))),
        ];
        assert_eq!(judge(SECRET, &headers(&wrong), body), Verdict::Unauthorized);
        assert_eq!(
            judge(SECRET, &headers(&[("X-GitHub-Event", "push".into())]), body),
            Verdict::Unauthorized
        );
        let bad_token = [("X-Gitlab-Event", "Push Hook".into()), ("X-Gitlab-Token", "s3cre".into())];
        assert_eq!(judge(SECRET, &headers(&bad_token), body), Verdict::Unauthorized);
        let garbage = b"not json";
        let signed_garbage = [
            ("X-GitHub-Event", "push".into()),
            ("X-Hub-Signature-256", format!("sha256={}", sign(SECRET, garbage))),
        ];
        assert_eq!(judge(SECRET, &headers(&signed_garbage), garbage), Verdict::BadRequest);
    }

    proptest! {
        /// Any payload: no panic, and a `ref` is read exactly when the body is a JSON
        /// object with a string `ref` under `refs/` (the model).
        #[test]
        fn arbitrary_webhook_payloads_match_the_model(
            bytes in prop::collection::vec(any::<u8>(), 0..256),
            reference in prop_oneof!["refs/[a-z/]{1,30}", "[a-z]{0,10}", Just(String::new())],
            extra in "[a-z]{0,8}",
        ) {
            let _ = pushed_ref(&bytes);
            let body = serde_json::json!({ "ref": reference, extra.clone(): 1 }).to_string();
            let want = (reference.starts_with("refs/")).then(|| reference.clone());
            prop_assert_eq!(pushed_ref(body.as_bytes()), Ok(want));
            // Any signature that is not the body's HMAC is refused.
            let forged = [("X-GitHub-Event", "push".to_owned()), ("X-Hub-Signature-256", format!("sha256={}", sign(SECRET, &bytes)))];
            if bytes != body.as_bytes() {
                prop_assert_eq!(judge(SECRET, &headers(&forged), body.as_bytes()), Verdict::Unauthorized);
            }
        }
    }
}
