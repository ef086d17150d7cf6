//! Reading a response body as its head frames it: by `Content-Length`, chunked, or to the
//! end of the stream; at most the target's `max_bytes` whichever it is. Entry: [`read`].

use gitstate_core::ProbeFailure;

use super::conn::Conn;
use super::head::{Framing, HEAD_MAX, Head};

/// The longest chunk-size line (with extensions) of a chunked body.
const CHUNK_LINE_MAX: usize = 4096;

/// The whole body of a response with `head`, at most `cap` bytes (more is `invalid`).
/// Bytes after it make the connection not reusable (`head.reusable` cleared).
pub(super) async fn read(conn: &mut Conn, head: &mut Head, cap: usize) -> Result<Vec<u8>, ProbeFailure> {
    let too_large = || ProbeFailure::invalid(format!("body larger than max_bytes ({cap} bytes)"));
    let closed = |e: std::io::Result<usize>| {
        ProbeFailure::unreachable(match e {
            Ok(_) => "reading the body: the connection closed before its end".to_owned(),
            Err(e) => format!("reading the body: {e}"),
        })
    };
    let body = match head.framing {
        Framing::Length(n) => {
            if n > cap as u64 {
                return Err(too_large());
            }
            let n = n as usize;
            while conn.buf.len() < n {
                match conn.read(n - conn.buf.len()).await {
                    Ok(0) => return Err(closed(Ok(0))),
                    Ok(_) => {}
                    Err(e) => return Err(closed(Err(e))),
                }
            }
            let mut body = std::mem::take(&mut conn.buf);
            if body.len() > n {
                // Bytes the server sent after the response: this connection is not kept.
                body.truncate(n);
                head.reusable = false;
            }
            body
        }
        Framing::Close => loop {
            if conn.buf.len() > cap {
                return Err(too_large());
            }
            match conn.read(cap + 1 - conn.buf.len()).await {
                Ok(0) => break std::mem::take(&mut conn.buf),
                Ok(_) => {}
                Err(e) => return Err(closed(Err(e))),
            }
        },
        Framing::Chunked => dechunk(conn, head, cap).await?,
    };
    Ok(body)
}

/// Decodes a chunked body, at most `cap` bytes of it; trailers are read and ignored.
async fn dechunk(conn: &mut Conn, head: &mut Head, cap: usize) -> Result<Vec<u8>, ProbeFailure> {
    let bad = |why: &str| ProbeFailure::unreachable(format!("invalid chunked body: {why}"));
    let mut body = Vec::new();
    loop {
        let size = loop {
            match httparse::parse_chunk_size(&conn.buf) {
                Ok(httparse::Status::Complete((used, size))) => {
                    conn.buf.drain(..used);
                    break size;
                }
                Ok(httparse::Status::Partial) if conn.buf.len() < CHUNK_LINE_MAX => {
                    more(conn, CHUNK_LINE_MAX - conn.buf.len()).await?;
                }
                Ok(httparse::Status::Partial) => return Err(bad("a chunk-size line too long")),
                Err(_) => return Err(bad("not a chunk size")),
            }
        };
        if size == 0 {
            break;
        }
        if size > (cap - body.len()) as u64 {
            return Err(ProbeFailure::invalid(format!("body larger than max_bytes ({cap} bytes)")));
        }
        let mut left = size as usize;
        while left > 0 {
            if conn.buf.is_empty() {
                more(conn, left.saturating_add(2)).await?;
            }
            let take = left.min(conn.buf.len());
            body.extend_from_slice(&conn.buf[..take]);
            conn.buf.drain(..take);
            left -= take;
        }
        while conn.buf.len() < 2 {
            more(conn, 2 - conn.buf.len()).await?;
        }
        if &conn.buf[..2] != b"\r\n" {
            return Err(bad("a chunk not followed by CRLF"));
        }
        conn.buf.drain(..2);
    }
    // Trailer fields, then an empty line.
    let mut seen = 0;
    loop {
        if let Some(end) = conn.buf.windows(2).position(|w| w == b"\r\n") {
            conn.buf.drain(..end + 2);
            seen += end + 2;
            if end == 0 {
                break;
            }
            continue;
        }
        if seen + conn.buf.len() >= HEAD_MAX {
            return Err(bad("trailers larger than 64 KiB"));
        }
        more(conn, HEAD_MAX - seen - conn.buf.len()).await?;
    }
    if !conn.buf.is_empty() {
        head.reusable = false;
    }
    Ok(body)
}

/// Reads more of a chunked body; its end before the last chunk is a failure.
async fn more(conn: &mut Conn, most: usize) -> Result<(), ProbeFailure> {
    match conn.read(most).await {
        Ok(0) => Err(ProbeFailure::unreachable("reading the body: the connection closed before its end")),
        Ok(_) => Ok(()),
        Err(e) => Err(ProbeFailure::unreachable(format!("reading the body: {e}"))),
    }
}
