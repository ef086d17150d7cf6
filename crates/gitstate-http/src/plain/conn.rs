//! One connection of the plain-HTTP client: opening it within [`CONNECT_TIMEOUT`], and
//! [`Conn`], the socket with what has been read from it but not yet used.

use std::net::SocketAddr;
use std::time::Instant;

use gitstate_core::ProbeFailure;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use url::{Host, Url};

use crate::timeouts::CONNECT_TIMEOUT;

/// How much is read from the socket at a time.
const READ_STEP: usize = 8 * 1024;

/// A connection and what has been read from it but not yet used.
pub(super) struct Conn {
    pub(super) stream: TcpStream,
    pub(super) opened: Instant,
    pub(super) buf: Vec<u8>,
}

impl Conn {
    /// Reads at most `most` more bytes onto the buffer; 0 at the end of the stream.
    pub(super) async fn read(&mut self, most: usize) -> std::io::Result<usize> {
        let step = most.clamp(1, READ_STEP);
        let len = self.buf.len();
        self.buf.resize(len + step, 0);
        let got = self.stream.read(&mut self.buf[len..]).await;
        self.buf.truncate(len + *got.as_ref().unwrap_or(&0));
        got
    }
}

/// A fresh connection to the host of `url`: each of its addresses tried in turn, each
/// within [`CONNECT_TIMEOUT`].
pub(super) async fn connect(url: &Url) -> Result<TcpStream, ProbeFailure> {
    let cannot = |why: String| ProbeFailure::unreachable(format!("cannot connect: {why}"));
    let port = url.port_or_known_default().unwrap_or(80);
    let addrs: Vec<SocketAddr> = match url.host() {
        Some(Host::Ipv4(ip)) => vec![(ip, port).into()],
        Some(Host::Ipv6(ip)) => vec![(ip, port).into()],
        Some(Host::Domain(name)) => tokio::net::lookup_host((name, port))
            .await
            .map_err(|e| cannot(format!("dns error: {e}")))?
            .collect(),
        None => return Err(cannot("the URL has no host".into())),
    };
    let mut last = String::from("the host name resolves to no address");
    for addr in addrs {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()),
        }
    }
    Err(cannot(last))
}
