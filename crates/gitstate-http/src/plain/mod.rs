//! A small HTTP/1.1 client for the commonest probe: a `GET` of a plain `http://` URL, its
//! connection kept for the next pass. Entry points: [`Pool`] (the idle connections of a
//! process), [`Pool::get`] and the [`Response`] it gives.
//!
//! Why not reqwest here too: a pass over a fleet of thousands of hosts is one request per
//! host, and opening a fresh connection for each (connect, and on loopback the server's
//! half of the handshake, then shutdown and close) was most of `watch`'s CPU at 10,000
//! hosts. Keeping one idle connection per host through hyper's pool costs some 15 KB of
//! memory each; here an idle connection is its socket and registration, about 200 bytes.
//! Everything else — TLS, proxies, credentials in the URL — stays with reqwest (the probe
//! chooses, [`Pool::serves`]).
//!
//! The bounds are SPEC §8's: the caller's deadline covers connecting, the head and the
//! body; a head is at most `HEAD_MAX` bytes and `MAX_HEADERS` fields; a body at most
//! the target's `max_bytes`, whether framed by `Content-Length`, chunked, or ended by the
//! server closing. Whatever a server sends, the answer is a response or a failure saying
//! why; a connection goes back to the pool only after a whole, well-framed response to
//! which the server did not say `Connection: close`, with nothing after it.
//!
//! In the order a request goes: `pool.rs` (a kept connection, or a fresh one from
//! `conn.rs`), `exchange.rs` (the request sent, the head read), `head.rs` (the head
//! parsed: status, framing, whether the connection may be kept), `body.rs` (the body
//! read as the head frames it), and back to `pool.rs`.

mod body;
mod conn;
mod exchange;
mod head;
mod pool;

pub(crate) use pool::{Pool, Response};
