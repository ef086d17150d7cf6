//! The moto AWS API emulator (PyPI `moto[server]`) on 127.0.0.1, installed by
//! `scripts/test` into the project's `.venv`, and a seeding helper that creates and
//! re-tags EC2 instances, S3 buckets and Lambda functions through the emulator's own API.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::alertmanager::http_get;
use crate::git::Server;

/// The region tests use.
pub const REGION: &str = "eu-west-1";

/// A running moto server.
pub struct Moto {
    pub server: Server,
    bin: PathBuf,
    dir: tempfile::TempDir,
}

/// A resource to create.
#[derive(Debug, Clone)]
pub enum Resource {
    /// `count` EC2 instances with these tags.
    Ec2 { count: usize, tags: BTreeMap<String, String> },
    /// An S3 bucket.
    S3 { name: String, tags: BTreeMap<String, String> },
    /// A Lambda function.
    Lambda { name: String, tags: BTreeMap<String, String> },
}

fn venv_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("GITSTATE_MOTO_BIN") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin")
}

impl Moto {
    /// Starts moto; panics with how to install it when missing.
    pub fn start() -> Self {
        let bin = venv_bin();
        let server_bin = bin.join("moto_server");
        assert!(
            server_bin.exists(),
            "moto is not installed at {}: run scripts/test (it creates .venv with moto[server] and boto3)",
            server_bin.display()
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("moto_seed.py"), include_str!("moto_seed.py")).unwrap();
        let spawn = |port: u16| {
            Command::new(&server_bin)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start moto_server")
        };
        let ready = |port| matches!(http_get(port, "/moto-api/"), Ok((200, _)));
        let server = Server::start("moto_server", Duration::from_secs(60), spawn, ready);
        Self { server, bin, dir }
    }

    /// `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.port)
    }

    /// The Python of moto's virtual environment.
    pub fn python(&self) -> PathBuf {
        self.bin.join("python")
    }

    /// The seeding script (for deploy scripts that re-tag).
    pub fn seed_script(&self) -> PathBuf {
        self.dir.path().join("moto_seed.py")
    }

    fn run(&self, cmd: serde_json::Value) -> Vec<String> {
        let mut child = Command::new(self.python())
            .arg(self.seed_script())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(cmd.to_string().as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "seeding failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().lines().map(str::to_owned).collect()
    }

    /// Creates resources; returns their ARNs in order.
    pub fn create(&self, resources: &[Resource]) -> Vec<String> {
        let list: Vec<serde_json::Value> = resources
            .iter()
            .map(|r| match r {
                Resource::Ec2 { count, tags } => {
                    serde_json::json!({"kind": "ec2", "count": count, "tags": tags})
                }
                Resource::S3 { name, tags } => serde_json::json!({"kind": "s3", "name": name, "tags": tags}),
                Resource::Lambda { name, tags } => {
                    serde_json::json!({"kind": "lambda", "name": name, "tags": tags})
                }
            })
            .collect();
        self.run(serde_json::json!({"endpoint": self.url(), "region": REGION, "create": list}))
    }

    /// Sets tags on resources.
    pub fn retag(&self, arns: &[String], tags: &BTreeMap<String, String>) {
        self.run(serde_json::json!({"endpoint": self.url(), "region": REGION, "retag": {"arns": arns, "tags": tags}}));
    }
}

/// `{k: v, …}` from pairs.
pub fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}
