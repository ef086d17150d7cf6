//! A real Prometheus (Debian's `prometheus`) on 127.0.0.1, scraping one target every
//! second, its storage in a temporary directory: what a `prometheus` soak check queries.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::alertmanager::http_get;
use crate::git::Server;

/// A running Prometheus.
pub struct Prometheus {
    pub server: Server,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts one scraping `target` (`127.0.0.1:port`, path `/metrics`) every second;
    /// panics with how to install it when the binary is missing.
    pub fn start(target: &str) -> Self {
        let bin = ["prometheus", "/usr/bin/prometheus"]
            .into_iter()
            .find(|b| {
                Command::new(b).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
            })
            .expect("Prometheus is not installed: run scripts/test, or apt-get install prometheus");
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let spawn = |port: u16| {
            Command::new(bin)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start prometheus")
        };
        let ready = |port| matches!(http_get(port, "/-/ready"), Ok((200, _)));
        let server = Server::start("prometheus", Duration::from_secs(60), spawn, ready);
        Self { server, _dir: dir }
    }

    /// `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.port)
    }

    /// Waits until an instant query of `query` has at least one sample equal to `value`
    /// (the scrape that carries a value the test set), failing after `limit`.
    pub fn wait_for_value(&self, query: &str, value: f64, limit: Duration) {
        let deadline = Instant::now() + limit;
        let path = format!(
            "/api/v1/query?query={}",
            query.replace(' ', "%20").replace('{', "%7B").replace('}', "%7D").replace('"', "%22")
        );
        loop {
            if let Ok((200, body)) = http_get(self.server.port, &path) {
                let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                let found = v["data"]["result"].as_array().is_some_and(|r| {
                    r.iter()
                        .any(|s| s["value"][1].as_str().and_then(|x| x.parse::<f64>().ok()) == Some(value))
                });
                if found {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "prometheus never answered {query} = {value}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
