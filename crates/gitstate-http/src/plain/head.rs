//! Parsing a response head: [`parse_head`] reads the status line and header fields into a
//! [`Head`], and decides from them how the body is framed ([`Framing`]) and whether the
//! connection may carry another request. Pure: no I/O, tested on bytes.

use gitstate_core::ProbeFailure;
use reqwest::StatusCode;

/// The largest response head (status line and header fields) read, in bytes.
pub(super) const HEAD_MAX: usize = 64 * 1024;
/// The most header fields a response may have.
pub(super) const MAX_HEADERS: usize = 100;

/// How a response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    Length(u64),
    Chunked,
    /// At the end of the stream (no length, or a transfer coding other than chunked).
    Close,
}

/// What the probe needs of a response head.
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) status: StatusCode,
    pub(crate) location: Option<String>,
    pub(crate) content_encoding: Option<Vec<u8>>,
    pub(crate) content_length: Option<u64>,
    pub(super) framing: Framing,
    /// The connection may carry the next request after this response.
    pub(super) reusable: bool,
}

/// Parses a response head at the start of `buf`: `None` while incomplete; the bytes used
/// and `None` for an informational (1xx) answer; the bytes used and the head.
pub(super) fn parse_head(buf: &[u8]) -> Result<Option<(usize, Option<Head>)>, ProbeFailure> {
    let invalid = |why: String| ProbeFailure::unreachable(format!("invalid HTTP response: {why}"));
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut fields);
    let used = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(invalid(format!("more than {MAX_HEADERS} header fields")));
        }
        Err(e) => return Err(invalid(e.to_string())),
    };
    let code = resp.code.unwrap_or_default();
    let status = StatusCode::from_u16(code).map_err(|_| invalid(format!("status {code}")))?;
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return Err(invalid("101 Switching Protocols to a GET".into()));
    }
    if status.is_informational() {
        return Ok(Some((used, None)));
    }
    let mut lengths: Option<u64> = None;
    let mut length_conflict = false;
    let mut codings: Vec<&[u8]> = Vec::new();
    let (mut close, mut keep_alive) = (false, false);
    let mut location = None;
    let mut content_encoding = None;
    for f in resp.headers.iter() {
        let name = f.name;
        if name.eq_ignore_ascii_case("content-length") {
            for v in f.value.split(|&b| b == b',') {
                let v = v.trim_ascii();
                let n = (!v.is_empty() && v.len() <= 19 && v.iter().all(u8::is_ascii_digit))
                    .then(|| std::str::from_utf8(v).ok()?.parse::<u64>().ok())
                    .flatten()
                    .ok_or_else(|| invalid("a Content-Length that is not a number".into()))?;
                length_conflict |= lengths.is_some_and(|l| l != n);
                lengths = Some(n);
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            codings.extend(f.value.split(|&b| b == b',').map(<[u8]>::trim_ascii).filter(|c| !c.is_empty()));
        } else if name.eq_ignore_ascii_case("connection") {
            for token in f.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("location") && location.is_none() {
            // As `HeaderValue::to_str`: visible ASCII only, or not usable.
            if f.value.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b)) {
                location = std::str::from_utf8(f.value).ok().map(str::to_owned);
            }
        } else if name.eq_ignore_ascii_case("content-encoding") && content_encoding.is_none() {
            content_encoding = Some(f.value.to_vec());
        }
    }
    let framing = if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        Framing::Length(0)
    } else if let Some(last) = codings.last() {
        if last.eq_ignore_ascii_case(b"chunked") { Framing::Chunked } else { Framing::Close }
    } else if length_conflict {
        return Err(invalid("Content-Length fields that disagree".into()));
    } else {
        lengths.map_or(Framing::Close, Framing::Length)
    };
    let http11 = resp.version == Some(1);
    // A length beside a transfer coding is a smuggling shape: read this one, keep nothing.
    let smuggling = lengths.is_some() && !codings.is_empty();
    let persistent = !close && (http11 || keep_alive);
    let reusable = framing != Framing::Close && !smuggling && persistent;
    let content_length = if codings.is_empty() { lengths } else { None };
    Ok(Some((used, Some(Head { status, location, content_encoding, content_length, framing, reusable }))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Head {
        parse_head(raw.as_bytes()).unwrap().unwrap().1.unwrap()
    }

    fn refused(raw: &[u8]) -> String {
        parse_head(raw).map(|_| ()).unwrap_err().message
    }

    #[test]
    fn framing_and_reuse() {
        let h = head("HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n");
        assert_eq!((h.framing, h.reusable, h.content_length), (Framing::Length(12), true, Some(12)));
        let h = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
        assert_eq!((h.framing, h.reusable, h.content_length), (Framing::Chunked, true, None));
        let h = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n");
        assert_eq!((h.framing, h.reusable), (Framing::Chunked, false), "smuggling shape");
        let h = head("HTTP/1.1 200 OK\r\nConnection: Keep-Alive, close\r\nContent-Length: 1\r\n\r\n");
        assert!(!h.reusable);
        let h = head("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n");
        assert!(!h.reusable, "HTTP/1.0 without keep-alive");
        let h = head("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n");
        assert!(h.reusable);
        let h = head("HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!((h.framing, h.reusable), (Framing::Close, false));
        let h = head("HTTP/1.1 204 No Content\r\nContent-Length: 99\r\n\r\n");
        assert_eq!(h.framing, Framing::Length(0));
        let h = head("HTTP/1.1 200 OK\r\nContent-Length: 7, 7\r\n\r\n");
        assert_eq!(h.framing, Framing::Length(7));
    }

    #[test]
    fn informational_answers_are_skipped_and_bad_heads_refused() {
        let raw = b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\n";
        let (used, h) = parse_head(raw).unwrap().unwrap();
        assert!(h.is_none());
        assert_eq!(&raw[used..], b"HTTP/1.1 200 OK\r\n");
        assert!(parse_head(&raw[used..]).unwrap().is_none(), "incomplete");
        assert!(
            refused(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
                .contains("disagree")
        );
        assert!(refused(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n").contains("not a number"));
        assert!(
            refused(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n")
                .contains("not a number")
        );
        assert!(refused(b"HTTP/1.1 101 Switching Protocols\r\n\r\n").contains("101"));
        assert!(refused(b"0123456789abcdef\n").contains("invalid HTTP response"));
        let many = format!("HTTP/1.1 200 OK\r\n{}\r\n", "X: y\r\n".repeat(MAX_HEADERS + 1));
        assert!(refused(many.as_bytes()).contains("more than 100"));
    }
}
