//! A real Alertmanager (Debian `prometheus-alertmanager`) on 127.0.0.1, clustering off,
//! storage in a temporary directory; and a tiny blocking HTTP client for tests.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::git::Server;

/// A blocking `GET http://127.0.0.1:{port}{path}`: status and body.
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    // Chunked answers (Alertmanager's) are decoded well enough for JSON: drop size lines.
    let chunked = text
        .split_once("\r\n\r\n")
        .is_some_and(|(h, _)| h.to_ascii_lowercase().contains("transfer-encoding: chunked"));
    let body = if chunked { dechunk(&body) } else { body };
    Ok((status, body))
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// A running Alertmanager.
pub struct Alertmanager {
    pub server: Server,
    _dir: tempfile::TempDir,
}

impl Alertmanager {
    /// Starts one; panics with how to install it when the binary is missing.
    pub fn start() -> Self {
        Self::start_with("")
    }

    /// Starts one whose `global.resolve_timeout` (how long an alert posted without
    /// `endsAt` stays firing; 5 minutes by default) is `timeout`, e.g. `"2s"`.
    pub fn start_with_resolve_timeout(timeout: &str) -> Self {
        Self::start_with(&format!("global:\n  resolve_timeout: {timeout}\n"))
    }

    fn start_with(global: &str) -> Self {
        Self::start_with_config(&format!(
            "{global}route:\n  receiver: 'null'\nreceivers:\n  - name: 'null'\n"
        ))
    }

    /// Starts one with this whole `alertmanager.yml` (an example's, say).
    pub fn start_with_config(config_text: &str) -> Self {
        let bin = ["prometheus-alertmanager", "/usr/bin/prometheus-alertmanager", "alertmanager"]
            .into_iter()
            .find(|b| {
                Command::new(b).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
            })
            .expect(
                "Alertmanager is not installed: run scripts/test, or apt-get install prometheus-alertmanager",
            );
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(&config, config_text).unwrap();
        let spawn = |port: u16| {
            Command::new(bin)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!("--storage.path={}", dir.path().join("data").display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--cluster.listen-address=")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start alertmanager")
        };
        let ready = |port| matches!(http_get(port, "/-/ready"), Ok((200, _)));
        let server = Server::start("alertmanager", Duration::from_secs(30), spawn, ready);
        Self { server, _dir: dir }
    }

    /// `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.port)
    }

    /// Its alert groups (`GET /api/v2/alerts/groups`): each with its `labels` (the
    /// `group_by` ones), its `receiver` and its `alerts`.
    pub fn groups(&self) -> Vec<serde_json::Value> {
        let (status, body) = http_get(self.server.port, "/api/v2/alerts/groups").unwrap();
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<Vec<serde_json::Value>>(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
    }

    /// The alerts it reports as current (`GET /api/v2/alerts`).
    pub fn alerts(&self) -> Vec<serde_json::Value> {
        let (status, body) = http_get(self.server.port, "/api/v2/alerts").unwrap();
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<Vec<serde_json::Value>>(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
    }
}
