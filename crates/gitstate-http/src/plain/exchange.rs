//! One request on a connection: [`request`] writes a `GET`'s bytes, [`exchange`] sends
//! them and reads the response head, telling a kept connection the server had closed
//! ([`Failed::Closed`]: try a fresh one) from any other failure.

use std::time::Instant;

use gitstate_core::ProbeFailure;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use url::Url;

use super::conn::Conn;
use super::head::{HEAD_MAX, Head, parse_head};

/// The bytes of `GET url` with the `extra` header lines (each `name: value\r\n`); `Host`,
/// `User-Agent` and `Accept` are added unless `extra` has them. Unless `keep`, the
/// request says `Connection: close`.
pub(super) fn request(url: &Url, extra: &[u8], user_agent: &str, keep: bool) -> Vec<u8> {
    let mut r = Vec::with_capacity(128 + extra.len());
    r.extend_from_slice(b"GET ");
    r.extend_from_slice(url.path().as_bytes());
    if let Some(q) = url.query() {
        r.push(b'?');
        r.extend_from_slice(q.as_bytes());
    }
    r.extend_from_slice(b" HTTP/1.1\r\n");
    let has = |name: &str| {
        extra.split(|&b| b == b'\n').any(|line| {
            line.len() > name.len()
                && line[..name.len()].eq_ignore_ascii_case(name.as_bytes())
                && line[name.len()] == b':'
        })
    };
    if !has("host") {
        r.extend_from_slice(b"Host: ");
        r.extend_from_slice(url.host_str().unwrap_or_default().as_bytes());
        if let Some(port) = url.port() {
            r.extend_from_slice(format!(":{port}").as_bytes());
        }
        r.extend_from_slice(b"\r\n");
    }
    if !has("user-agent") {
        r.extend_from_slice(format!("User-Agent: {user_agent}\r\n").as_bytes());
    }
    if !has("accept") {
        r.extend_from_slice(b"Accept: */*\r\n");
    }
    if !keep {
        r.extend_from_slice(b"Connection: close\r\n");
    }
    r.extend_from_slice(extra);
    r.extend_from_slice(b"\r\n");
    r
}

/// Why an exchange failed: the server had closed the connection before any byte of an
/// answer (a kept connection it let go: try a fresh one), or anything else. On a kept
/// connection every failure before the first byte counts as closed: it may also be one
/// whose runtime has gone (a library caller's), and the fresh attempt says what is wrong.
pub(super) enum Failed {
    Closed,
    Other(ProbeFailure),
}

fn broken(kind: std::io::ErrorKind) -> bool {
    use std::io::ErrorKind::*;
    matches!(kind, ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof)
}

/// Sends `request` on `stream` and reads the response head, skipping informational
/// answers. `kept`: the connection was idle in the pool (see [`Failed`]).
pub(super) async fn exchange(
    mut stream: TcpStream,
    opened: Instant,
    request: &[u8],
    kept: bool,
) -> Result<(Conn, Head), Failed> {
    if let Err(e) = stream.write_all(request).await {
        return Err(if kept || broken(e.kind()) {
            Failed::Closed
        } else {
            Failed::Other(ProbeFailure::unreachable(format!("request failed: {e}")))
        });
    }
    let mut conn = Conn { stream, opened, buf: Vec::new() };
    let mut answered = false;
    loop {
        if !conn.buf.is_empty() {
            answered = true;
            match parse_head(&conn.buf).map_err(Failed::Other)? {
                Some((used, None)) => {
                    // An informational answer (100, 103): the real one follows.
                    conn.buf.drain(..used);
                    continue;
                }
                Some((used, Some(head))) => {
                    conn.buf.drain(..used);
                    return Ok((conn, head));
                }
                None if conn.buf.len() >= HEAD_MAX => {
                    return Err(Failed::Other(ProbeFailure::unreachable(format!(
                        "response head larger than {} KiB",
                        HEAD_MAX / 1024
                    ))));
                }
                None => {}
            }
        }
        match conn.read(HEAD_MAX - conn.buf.len()).await {
            Ok(0) if !answered => return Err(Failed::Closed),
            Ok(0) => {
                return Err(Failed::Other(ProbeFailure::unreachable(
                    "connection closed in the response head",
                )));
            }
            Ok(_) => {}
            Err(e) if !answered && (kept || broken(e.kind())) => return Err(Failed::Closed),
            Err(e) => {
                return Err(Failed::Other(ProbeFailure::unreachable(format!("reading the response: {e}"))));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_name_the_host_and_let_configured_headers_win() {
        let url: Url = "http://deploy.example:8080/.well-known/x.json?token=a".parse().unwrap();
        let r = String::from_utf8(request(&url, b"", "gitstate/0", true)).unwrap();
        assert_eq!(
            r,
            "GET /.well-known/x.json?token=a HTTP/1.1\r\nHost: deploy.example:8080\r\nUser-Agent: gitstate/0\r\nAccept: */*\r\n\r\n"
        );
        let url: Url = "http://[::1]/".parse().unwrap();
        let r = String::from_utf8(request(&url, b"accept: text/plain\r\nX-Acceptable: 1\r\n", "ua", false))
            .unwrap();
        assert_eq!(
            r,
            "GET / HTTP/1.1\r\nHost: [::1]\r\nUser-Agent: ua\r\nConnection: close\r\naccept: text/plain\r\nX-Acceptable: 1\r\n\r\n"
        );
    }
}
