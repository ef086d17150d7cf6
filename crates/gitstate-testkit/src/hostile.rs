//! The hostile fleet: one route per way a target can misbehave (silence, trickling,
//! endless and huge bodies, a gzip bomb, 32,000-deep JSON, bad UTF-8, a number or three hex
//! digits as the commit, error statuses, redirect loops and chains, a redirect to another
//! origin, a reset), with what gitstate must make of each under a 2 s timeout. The probe's
//! tests and the `check` tests run the same fleet.

use std::time::Duration;

use crate::http::{Behavior, TestServer};

/// One hostile route, and the observation it must give.
#[derive(Debug, Clone, Copy)]
pub struct Hostile {
    pub path: &'static str,
    /// `unreachable` or `invalid`: never `in_sync`.
    pub status: &'static str,
    /// A part of the error message.
    pub error: &'static str,
}

const fn h(path: &'static str, status: &'static str, error: &'static str) -> Hostile {
    Hostile { path, status, error }
}

/// The fleet; what [`serve`] puts on a server.
pub const FLEET: [Hostile; 16] = [
    h("/silent", "unreachable", "timed out after 2s"),
    h("/trickle", "unreachable", "timed out after 2s"),
    h("/endless", "invalid", "larger than max_bytes"),
    h("/huge", "invalid", "larger than max_bytes"),
    h("/bomb", "invalid", "neither JSON"),
    h("/deep", "invalid", "recursion limit"),
    h("/utf8", "invalid", "neither JSON"),
    h("/number", "invalid", "a number"),
    h("/short", "invalid", "shorter than 7"),
    h("/404", "unreachable", "HTTP 404"),
    h("/429", "unreachable", "HTTP 429"),
    h("/500", "unreachable", "HTTP 500"),
    h("/loop", "unreachable", "more than 3 redirects"),
    h("/r1", "unreachable", "more than 3 redirects"),
    h("/elsewhere", "unreachable", "another origin refused"),
    h("/reset", "unreachable", ""),
];

/// Serves [`FLEET`] on `s`. `ok` is what the end of the four-hop redirect chain answers
/// (a valid report: the chain must still be refused); `elsewhere` is a URL on another origin.
pub fn serve(s: &TestServer, ok: Behavior, elsewhere: &str) {
    s.route("/silent", Behavior::NeverRespond)
        .route("/trickle", Behavior::Trickle(Duration::from_millis(200)))
        .route("/endless", Behavior::Endless)
        .route("/huge", Behavior::Huge(100 * 1024 * 1024))
        .route("/bomb", Behavior::GzipBomb(50 * 1024 * 1024))
        .route("/deep", Behavior::Json(format!("{}{}", "[".repeat(32_000), "]".repeat(32_000))))
        .route("/utf8", Behavior::Bytes(b"{\"sha\": \"\xff\xfe\"}".to_vec()))
        .route("/number", Behavior::Json(r#"{"sha": 1234567}"#.into()))
        .route("/short", Behavior::Json(r#"{"sha": "abc"}"#.into()))
        .route("/404", Behavior::Status(404))
        .route("/429", Behavior::Status(429))
        .route("/500", Behavior::Status(500))
        .route("/loop", Behavior::Redirect(302, "/loop".into()))
        .route("/r1", Behavior::Redirect(302, "/r2".into()))
        .route("/r2", Behavior::Redirect(301, "/r3".into()))
        .route("/r3", Behavior::Redirect(307, "/r4".into()))
        .route("/r4", Behavior::Redirect(302, "/ok".into()))
        .route("/ok", ok)
        .route("/elsewhere", Behavior::Redirect(302, elsewhere.into()))
        .route("/reset", Behavior::Reset);
}
