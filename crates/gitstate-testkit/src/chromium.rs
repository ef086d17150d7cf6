//! A real headless Chromium (Debian's `chromium`), driven through the DevTools protocol
//! over its WebSocket: navigate, evaluate JavaScript, collect console errors (CSP
//! violations included) and take screenshots at a given viewport.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

use crate::free_port;

/// `GET http://127.0.0.1:{port}{path}` of the DevTools HTTP server, which keeps the
/// connection open: the body is read to its `Content-Length`.
fn devtools_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n")?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status = line.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let mut length = 0usize;
    loop {
        line.clear();
        r.read_line(&mut line)?;
        if line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.trim().eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; length];
    r.read_exact(&mut body)?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// A running headless Chromium, killed on drop.
pub struct Chromium {
    child: Child,
    port: u16,
    _profile: tempfile::TempDir,
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Chromium {
    /// Starts one; panics with how to install it when it is missing.
    pub fn start() -> Self {
        let port = free_port();
        let profile = tempfile::tempdir().unwrap();
        let child = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                // Containers give /dev/shm a few MiB: write shared memory to /tmp instead.
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--disable-extensions",
                "--hide-scrollbars",
                &format!("--remote-debugging-port={port}"),
                "--remote-allow-origins=*",
                &format!("--user-data-dir={}", profile.path().display()),
                "about:blank",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("Chromium is not installed: run scripts/test, or apt-get install chromium");
        let c = Self { child, port, _profile: profile };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !matches!(devtools_get(port, "/json/version"), Ok((200, _))) {
            assert!(Instant::now() < deadline, "Chromium did not open its DevTools port");
            std::thread::sleep(Duration::from_millis(100));
        }
        c
    }

    /// The first page, driven through the DevTools protocol.
    pub fn page(&self) -> Page {
        let (_, body) = devtools_get(self.port, "/json/list").unwrap();
        let targets: Vec<Value> = serde_json::from_str(&body).unwrap();
        let ws = targets
            .iter()
            .find(|t| t["type"] == "page")
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .expect("a page target")
            .to_owned();
        let (socket, _) = tungstenite::connect(ws.as_str()).unwrap();
        if let MaybeTlsStream::Plain(s) = socket.get_ref() {
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        }
        let mut page = Page { socket, next: 0, events: Vec::new() };
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            page.call(domain, json!({}));
        }
        page
    }
}

/// One page of a [`Chromium`].
pub struct Page {
    socket: WebSocket<MaybeTlsStream<TcpStream>>,
    next: u64,
    /// Every protocol event seen so far.
    pub events: Vec<Value>,
}

impl Page {
    /// Calls a protocol method and returns its result (events that arrive meanwhile are kept).
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let msg = json!({"id": id, "method": method, "params": params}).to_string();
        self.socket.send(Message::text(msg)).unwrap();
        loop {
            let Message::Text(text) = self.socket.read().unwrap() else { continue };
            let v: Value = serde_json::from_str(text.as_str()).unwrap();
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
            self.events.push(v);
        }
    }

    /// Evaluates `expression` in the page and returns its value.
    pub fn eval(&mut self, expression: &str) -> Value {
        let r = self.call("Runtime.evaluate", json!({"expression": expression, "returnByValue": true}));
        r["result"]["value"].clone()
    }

    /// Loads `url` and waits until the document is complete.
    pub fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url}));
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.eval("document.readyState") != "complete" || self.eval("location.href") != url {
            assert!(Instant::now() < deadline, "{url} did not load");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Console errors, uncaught exceptions and browser errors (a Content-Security-Policy
    /// violation is one) seen so far.
    pub fn errors(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e["method"].as_str()? {
                "Runtime.consoleAPICalled" if e["params"]["type"] == "error" => Some(e["params"].to_string()),
                "Runtime.exceptionThrown" => Some(e["params"].to_string()),
                "Log.entryAdded" if e["params"]["entry"]["level"] == "error" => {
                    Some(e["params"]["entry"].to_string())
                }
                _ => None,
            })
            .collect()
    }

    /// A PNG of the page at a `width` × `height` viewport.
    pub fn screenshot(&mut self, width: u32, height: u32, mobile: bool) -> Vec<u8> {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        );
        let r = self.call("Page.captureScreenshot", json!({"format": "png"}));
        base64::engine::general_purpose::STANDARD.decode(r["data"].as_str().unwrap()).unwrap()
    }
}
