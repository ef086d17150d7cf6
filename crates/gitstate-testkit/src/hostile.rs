//! The hostile fleet: one route per way a target can misbehave (silence, trickling,
//! endless and huge bodies, a gzip bomb, 32,000-deep JSON, bad UTF-8, a number or three hex
//! digits as the commit, error statuses, redirect loops and chains, a redirect to another
//! origin, a reset; non-ASCII, emoji and escape sequences in every reported field, a BOM,
//! NUL bytes, a 10 MB string, a 10,000-digit number, duplicate keys, a Content-Encoding
//! lie, a 1xx then silence, HTTP/0.9, an endless or malformed chunked body, a 1 MiB head,
//! lengths that disagree, a body shorter than its length), with what gitstate must make of each under a 2 s
//! timeout; and [`tls_stall`], a TLS server that stalls mid-handshake. The probe's tests,
//! the `check` tests and the `watch` tests run the same fleet.

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
pub const FLEET: [Hostile; 35] = [
    h("/silent", "unreachable", "timed out after 2s"),
    h("/trickle", "unreachable", "timed out after 2s"),
    h("/endless", "invalid", "larger than max_bytes"),
    h("/huge", "invalid", "larger than max_bytes"),
    h("/bomb", "invalid", "Content-Encoding \"gzip\""),
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
    h("/accents", "invalid", "not hexadecimal"),
    h("/emoji", "invalid", "not hexadecimal"),
    h("/emoji-everywhere", "invalid", "not hexadecimal"),
    h("/spring-accents", "invalid", "an array"),
    h("/escape", "invalid", "not hexadecimal"),
    h("/bom", "invalid", "neither JSON"),
    h("/nul", "invalid", "neither JSON"),
    h("/long-string", "invalid", "larger than max_bytes"),
    h("/digits", "invalid", "neither JSON"),
    h("/duplicate-keys", "invalid", "duplicate key \"sha\""),
    h("/gzip-lie", "invalid", "Content-Encoding \"gzip\""),
    h("/early-hints-hang", "unreachable", "timed out after 2s"),
    h("/http09", "unreachable", ""),
    h("/garbage", "unreachable", ""),
    h("/chunked-endless", "invalid", "larger than max_bytes"),
    h("/bad-chunk", "unreachable", ""),
    h("/huge-head", "unreachable", ""),
    h("/lengths-disagree", "unreachable", ""),
    h("/short-body", "unreachable", ""),
];

/// Every reported field of every layout gitstate reads, holding `value`.
fn everywhere(value: &str) -> String {
    format!(
        r#"{{"sha":"{value}","commit":"{value}","git":{{"commit":{{"id":"{value}"}}}},"gitCommit":"{value}","message":"{value}"}}"#
    )
}

/// Serves [`FLEET`] on `s`. `ok` is what the end of the four-hop redirect chain answers
/// (a valid report: the chain must still be refused); `elsewhere` is a URL on another origin.
pub fn serve(s: &TestServer, ok: Behavior, elsewhere: &str) {
    // The lies carry the valid report: what a client that believed them would read.
    let valid = match &ok {
        Behavior::Json(body) => body.clone(),
        _ => r#"{"sha":"0123456789abcdef0123456789abcdef01234567"}"#.to_owned(),
    };
    let sha = serde_json::from_str::<serde_json::Value>(&valid)
        .ok()
        .and_then(|v| v["sha"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "0123456789abcdef0123456789abcdef01234567".to_owned());
    s.route("/accents", Behavior::Json(format!(r#"{{"sha":"{}"}}"#, "é".repeat(40))))
        .route("/emoji", Behavior::Json(format!(r#"{{"sha":"{}"}}"#, "🚀".repeat(40))))
        .route("/emoji-everywhere", Behavior::Json(everywhere("🚀 déployé ✓")))
        .route(
            "/spring-accents",
            Behavior::Json(format!(
                r#"{{"git":{{"commit":{{"id":{{"abbrev":"é","full":["{}"]}},"message":{{"full":"Corrigé l'accès 🚀"}}}}}}}}"#,
                "é".repeat(40)
            )),
        )
        .route("/escape", Behavior::Json(everywhere("\\u001b[2J\\u001b[31mPWNED\\u0007")))
        .route("/bom", Behavior::Bytes([b"\xef\xbb\xbf".as_slice(), valid.as_bytes()].concat()))
        .route("/nul", Behavior::Bytes(format!("{{\"sha\":\"{}\0\"}}", &sha[..20]).into_bytes()))
        .route("/long-string", Behavior::Json(format!(r#"{{"sha":"{}"}}"#, "a".repeat(10 << 20))))
        .route("/digits", Behavior::Json(format!(r#"{{"sha":{}}}"#, "9".repeat(10_000))))
        .route("/duplicate-keys", Behavior::Json(format!(r#"{{"sha":"{sha}","sha":"{}"}}"#, "f".repeat(40))))
        .route("/gzip-lie", Behavior::EncodingLie(valid.clone()))
        .route("/early-hints-hang", Behavior::InformationalThenHang)
        .route("/http09", Behavior::Raw(format!("{sha}\n").into_bytes()))
        .route("/garbage", Behavior::Raw(b"\x16\x03\x01\x00\xff\x00garbage\r\n\r\n".to_vec()))
        .route("/chunked-endless", Behavior::ChunkedEndless)
        .route("/bad-chunk", Behavior::AfterStatusLine(b"Transfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec()))
        .route(
            "/huge-head",
            Behavior::AfterStatusLine(format!("X-Pad: {}\r\n\r\n", "a".repeat(1 << 20)).into_bytes()),
        )
        .route(
            "/lengths-disagree",
            Behavior::AfterStatusLine(format!("Content-Length: 2\r\nContent-Length: {}\r\n\r\n{valid}", valid.len()).into_bytes()),
        )
        .route(
            "/short-body",
            Behavior::AfterStatusLine(format!("Content-Length: {}\r\n\r\n{valid}", valid.len() + 10).into_bytes()),
        );
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

/// A port whose server accepts TCP connections, reads the TLS ClientHello, and never
/// answers: a handshake that stalls half-way.
pub fn tls_stall() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for mut s in listener.incoming().flatten() {
            use std::io::Read;
            let mut hello = [0u8; 512];
            let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
            let _ = s.read(&mut hello);
            held.push(s);
        }
    });
    port
}
