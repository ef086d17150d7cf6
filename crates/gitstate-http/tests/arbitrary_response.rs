//! The plain-HTTP client against a raw TCP server sending whatever the property says, cut
//! into arbitrary segments: arbitrary bytes never panic or hang it, and well-framed
//! responses (a length, chunked with any chunk sizes and extensions, or ended by closing)
//! give what an independent model says — the body, read whole or refused for its size —
//! with the connection kept exactly when the framing allows it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use gitstate_core::{ActualStateProbe, CommitId, EnvName, FailureKind, ProbeContext, Reading};
use gitstate_http::{HttpClients, HttpProbe, HttpTarget, KeepAlive, parse_body};
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

/// A server answering every request on a connection with `segments`, written one at a
/// time; it closes the connection after each answer when `close`. Counts connections.
async fn raw_server(segments: Vec<Vec<u8>>, close: bool) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let segments = segments.clone();
            tokio::spawn(async move {
                let _ = stream.set_nodelay(true);
                let mut head = Vec::new();
                loop {
                    // Read one request head.
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        let mut b = [0u8; 1024];
                        match stream.read(&mut b).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&b[..n]),
                        }
                    }
                    head.clear();
                    for s in &segments {
                        if stream.write_all(s).await.is_err() || stream.flush().await.is_err() {
                            return;
                        }
                        tokio::task::yield_now().await;
                    }
                    if close {
                        return;
                    }
                }
            });
        }
    });
    (port, accepted)
}

async fn read_twice(port: u16, max_bytes: usize) -> Vec<Reading> {
    let clients = HttpClients::new(4).unwrap().with_keep_alive(KeepAlive::Every);
    let mut t = HttpTarget::new(vec![format!("http://127.0.0.1:{port}/meta").parse().unwrap()]);
    t.timeout = Duration::from_secs(2);
    t.max_bytes = max_bytes;
    let probe = HttpProbe::new(&clients, t).unwrap();
    let env = EnvName::new("t").unwrap();
    let expected = CommitId::parse(SHA).unwrap();
    let cx = ProbeContext { environment: &env, target: "web", expected: &expected };
    let mut got = probe.observe(&cx).await.unwrap();
    got.extend(probe.observe(&cx).await.unwrap());
    got
}

/// Cuts `bytes` at the given fractions into segments.
fn cut(bytes: &[u8], at: &[f64]) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = at.iter().map(|f| (f * bytes.len() as f64) as usize).collect();
    points.push(0);
    points.push(bytes.len());
    points.sort_unstable();
    points.dedup();
    points.windows(2).map(|w| bytes[w[0]..w[1]].to_vec()).collect()
}

#[derive(Debug, Clone)]
enum Framing {
    Length,
    /// Chunk sizes (cycled), and an extension on every chunk-size line or not.
    Chunked(Vec<usize>, bool),
    Close,
}

fn framing() -> impl Strategy<Value = Framing> {
    prop_oneof![
        Just(Framing::Length),
        (prop::collection::vec(1usize..40, 1..5), any::<bool>()).prop_map(|(s, e)| Framing::Chunked(s, e)),
        Just(Framing::Close),
    ]
}

/// The response the server sends, built here independently of the client.
fn response(body: &[u8], framing: &Framing, extra: &[(String, String)]) -> Vec<u8> {
    let mut r = b"HTTP/1.1 200 OK\r\n".to_vec();
    for (k, v) in extra {
        r.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    match framing {
        Framing::Length => r.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes()),
        Framing::Close => r.extend_from_slice(b"Connection: close\r\n\r\n"),
        Framing::Chunked(..) => r.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n"),
    }
    match framing {
        Framing::Length | Framing::Close => r.extend_from_slice(body),
        Framing::Chunked(sizes, ext) => {
            let mut rest = body;
            for &n in sizes.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (chunk, tail) = rest.split_at(n.min(rest.len()));
                let ext = if *ext { ";name=\"v\"" } else { "" };
                r.extend_from_slice(format!("{:X}{ext}\r\n", chunk.len()).as_bytes());
                r.extend_from_slice(chunk);
                r.extend_from_slice(b"\r\n");
                rest = tail;
            }
            r.extend_from_slice(b"0\r\nX-Trailer: t\r\n\r\n");
        }
    }
    r
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(gitstate_testkit::proptest_cases(96)))]

    #[test]
    fn arbitrary_responses_never_panic_or_hang(
        status_line in any::<bool>(),
        bytes in prop::collection::vec(any::<u8>(), 0..600),
        at in prop::collection::vec(0.0f64..1.0, 0..6),
    ) {
        let raw = if status_line { [b"HTTP/1.1 200 OK\r\n".as_slice(), &bytes].concat() } else { bytes };
        let got = runtime().block_on(async {
            let (port, _) = raw_server(cut(&raw, &at), true).await;
            tokio::time::timeout(Duration::from_secs(10), read_twice(port, 256)).await
        });
        // Bounded by the 2 s timeout of each read; whatever it is, it is a reading of the
        // one URL: a commit the bytes really hold, or a failure that says why (a 200 or no
        // status line at all is never `missing`).
        let got = got.expect("a reading within the target's timeout");
        prop_assert_eq!(got.len(), 2);
        let text = String::from_utf8_lossy(&raw).to_lowercase();
        for r in &got {
            prop_assert!(r.instance.ends_with("/meta"), "{}", r.instance);
            match &r.result {
                Ok(c) => prop_assert!(text.contains(&c.to_string().to_lowercase()), "{c} is not in the answer"),
                Err(f) => {
                    prop_assert!(f.kind != FailureKind::Missing, "{:?}", f);
                    prop_assert!(!f.message.trim().is_empty(), "{:?}", f);
                }
            }
        }
    }

    #[test]
    fn framed_responses_match_the_model(
        report in any::<bool>(),
        noise in prop::collection::vec(any::<u8>(), 0..120),
        framing in framing(),
        extra in prop::collection::vec(("[A-Za-z][A-Za-z0-9-]{0,10}", "[ -~]{0,30}"), 0..4),
        slack in -8i64..8,
        at in prop::collection::vec(0.0f64..1.0, 0..8),
    ) {
        // Header names the framing depends on are the model's to write.
        let extra: Vec<(String, String)> = extra
            .into_iter()
            .filter(|(k, _)| !["content-length", "transfer-encoding", "connection", "content-encoding"]
                .contains(&k.to_ascii_lowercase().as_str()))
            .map(|(k, v)| (k, v.trim().to_owned()))
            .collect();
        let body = if report { format!(r#"{{"sha":"{SHA}"}}"#).into_bytes() } else { noise };
        let max_bytes = usize::try_from(body.len() as i64 + slack).unwrap_or(0);
        let close = matches!(framing, Framing::Close);
        let raw = response(&body, &framing, &extra);
        let (got, connections) = runtime().block_on(async {
            let (port, accepted) = raw_server(cut(&raw, &at), close).await;
            let got = read_twice(port, max_bytes).await;
            (got, accepted.load(Ordering::SeqCst))
        });
        // The model: over the cap is invalid for its size; else what the body says.
        let want = if body.len() > max_bytes {
            Err((FailureKind::Invalid, format!("body larger than max_bytes ({max_bytes} bytes)")))
        } else {
            parse_body(&body, None).map(|c| c.to_string()).map_err(|f| (f.kind, f.message))
        };
        for r in &got {
            let r = r.result.clone().map(|c| c.to_string()).map_err(|f| (f.kind, f.message));
            prop_assert_eq!(&r, &want);
        }
        // A response read whole and framed by length or chunks keeps its connection; one
        // ended by closing, or refused before its end, does not.
        let kept = !close && body.len() <= max_bytes;
        prop_assert_eq!(connections, if kept { 1 } else { 2 }, "{:?}", framing);
    }
}

#[test]
fn the_stale_connection_retry_sends_a_request_at_most_twice() {
    // A server that accepts, reads, and closes without a word, every time: the first
    // request is on a fresh connection, so there is nothing to retry — one connection.
    runtime().block_on(async {
        let (port, accepted) = raw_server(Vec::new(), true).await;
        let got = read_twice(port, 256).await;
        for r in &got {
            let f = r.result.clone().unwrap_err();
            assert_eq!(
                (f.kind, f.message.as_str()),
                (FailureKind::Unreachable, "connection closed before a response")
            );
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 2, "one connection a request");
    });
}
