//! Real repositories built with the `git` command in temporary directories, and real Git
//! servers (`git daemon`, `git http-backend` behind a tiny CGI server) on 127.0.0.1.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A repository made with git.
pub struct Repo {
    pub dir: tempfile::TempDir,
    pub bare: bool,
}

pub fn git_cmd(dir: &Path) -> Command {
    let mut c = Command::new("git");
    c.current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
        // Fixed dates make commit ids the same on every run (stable snapshots).
        .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z")
        .stdin(Stdio::null());
    c
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = git_cmd(dir).args(args).output().expect("git is installed");
    assert!(out.status.success(), "git {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

impl Default for Repo {
    fn default() -> Self {
        Self::new()
    }
}

impl Repo {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        git(dir.path(), &["init", "-q", "-b", "main"]);
        Self { dir, bare: false }
    }

    /// A repository made with extra `git init` arguments (`--ref-format=reftable`,
    /// `--object-format=sha256`).
    pub fn new_with(init: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut args = vec!["init", "-q", "-b", "main"];
        args.extend_from_slice(init);
        git(dir.path(), &args);
        Self { dir, bare: false }
    }

    pub fn new_bare() -> Self {
        let dir = tempfile::tempdir().unwrap();
        git(dir.path(), &["init", "-q", "--bare", "-b", "main"]);
        Self { dir, bare: true }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn git(&self, args: &[&str]) -> String {
        git(self.path(), args)
    }

    /// An empty commit on the current branch; returns its id.
    pub fn commit(&self, msg: &str) -> String {
        self.git(&["commit", "-q", "--allow-empty", "-m", msg]);
        self.git(&["rev-parse", "HEAD"])
    }

    /// `n` commits on the current branch; returns their ids, oldest first.
    pub fn commits(&self, n: usize, label: &str) -> Vec<String> {
        (0..n).map(|i| self.commit(&format!("{label} {i}"))).collect()
    }

    pub fn update_ref(&self, name: &str, id: &str) {
        self.git(&["update-ref", name, id]);
    }

    /// `git rev-list --count a..b`, the oracle for counts.
    pub fn count(&self, a: &str, b: &str) -> u64 {
        self.git(&["rev-list", "--count", &format!("{a}..{b}")]).parse().unwrap()
    }
}

/// A free port on 127.0.0.1 (bound and released: the caller binds it next).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A child process killed on drop.
pub struct Server {
    pub child: Option<Child>,
    pub port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Server {
    /// Stops it with SIGTERM (which `git` passes on to the `git-daemon` it runs; SIGKILL,
    /// as on drop, would leave that child serving) and waits until nothing accepts on its
    /// port.
    pub fn terminate(mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
            let _ = c.wait();
        }
        let start = Instant::now();
        while accepts(self.port) {
            assert!(start.elapsed() < Duration::from_secs(10), "port {} still accepts", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `spawn(port)` on a free port until `ready(port)`; when the program exits first
    /// (another process took the port) it is tried on another port, five times at most.
    pub fn start(
        name: &str,
        limit: Duration,
        mut spawn: impl FnMut(u16) -> Child,
        ready: impl Fn(u16) -> bool,
    ) -> Server {
        for _ in 0..5 {
            let port = free_port();
            let mut server = Server { child: Some(spawn(port)), port };
            let deadline = Instant::now() + limit;
            while Instant::now() < deadline {
                if ready(port) {
                    return server;
                }
                if server.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_some()) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("{name} did not start");
    }
}

/// Whether something accepts connections on 127.0.0.1:`port`.
pub fn accepts(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// `git daemon` serving every repository under `base` on git://127.0.0.1:port/.
pub fn git_daemon(base: &Path) -> Server {
    git_daemon_with(base, "--enable=upload-pack")
}

/// `git daemon` that also accepts pushes (`receive-pack` enabled).
pub fn git_daemon_pushable(base: &Path) -> Server {
    git_daemon_with(base, "--enable=receive-pack")
}

/// `git daemon` (upload-pack) on 127.0.0.1:`port`: one started again where another was
/// stopped (a Git host back after an outage).
pub fn git_daemon_on(base: &Path, port: u16) -> Server {
    let start = Instant::now();
    loop {
        let child = git_cmd(base)
            .args(["daemon", "--export-all", "--reuseaddr", "--enable=upload-pack"])
            .arg(format!("--base-path={}", base.display()))
            .args(["--listen=127.0.0.1", &format!("--port={port}")])
            .arg(base)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("git daemon");
        let mut server = Server { child: Some(child), port };
        while start.elapsed() < Duration::from_secs(10) {
            if accepts(port) {
                return server;
            }
            if server.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_some()) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(start.elapsed() < Duration::from_secs(10), "git daemon did not start on port {port}");
    }
}

fn git_daemon_with(base: &Path, enable: &str) -> Server {
    let spawn = |port: u16| {
        git_cmd(base)
            .args([
                "daemon",
                "--export-all",
                "--reuseaddr",
                "--enable=upload-pack",
                enable,
                &format!("--base-path={}", base.display()),
                "--listen=127.0.0.1",
                &format!("--port={port}"),
                &base.display().to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("git daemon")
    };
    Server::start("git daemon", Duration::from_secs(10), spawn, accepts)
}

/// A minimal HTTP/1.1 server running `git http-backend` as CGI for every request,
/// serving the repositories under `root` at `http://127.0.0.1:port/<repo>`.
pub struct HttpBackend {
    pub port: u16,
}

pub fn git_http_backend(root: &Path) -> HttpBackend {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let root: PathBuf = root.to_path_buf();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let root = root.clone();
            std::thread::spawn(move || {
                let _ = serve_cgi(stream, &root);
            });
        }
    });
    HttpBackend { port }
}

fn serve_cgi(stream: TcpStream, root: &Path) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_owned();
        let target = parts.next().unwrap_or("/").to_owned();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            reader.read_line(&mut h)?;
            let h = h.trim_end().to_owned();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
        let header = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let body = if let Some(len) = header("content-length") {
            let mut b = vec![0; len.parse().unwrap_or(0)];
            reader.read_exact(&mut b)?;
            b
        } else if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            let mut b = Vec::new();
            loop {
                let mut size = String::new();
                reader.read_line(&mut size)?;
                let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
                let mut chunk = vec![0; n + 2];
                reader.read_exact(&mut chunk)?;
                if n == 0 {
                    break;
                }
                b.extend_from_slice(&chunk[..n]);
            }
            b
        } else {
            Vec::new()
        };
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let mut cmd = Command::new("git");
        cmd.arg("http-backend")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("GIT_PROJECT_ROOT", root)
            .env("GIT_HTTP_EXPORT_ALL", "1")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("REQUEST_METHOD", &method)
            .env("PATH_INFO", path)
            .env("QUERY_STRING", query)
            .env("REMOTE_ADDR", "127.0.0.1")
            .env("CONTENT_LENGTH", body.len().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(ct) = header("content-type") {
            cmd.env("CONTENT_TYPE", ct);
        }
        if let Some(p) = header("git-protocol") {
            cmd.env("GIT_PROTOCOL", p);
        }
        let mut child = cmd.spawn()?;
        child.stdin.take().unwrap().write_all(&body)?;
        let out = child.wait_with_output()?;
        let split = out.stdout.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, 4));
        let split = split.or_else(|| out.stdout.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
        let (head, payload) = match split {
            Some((i, n)) => (String::from_utf8_lossy(&out.stdout[..i]).to_string(), &out.stdout[i + n..]),
            None => (String::new(), &out.stdout[..]),
        };
        let mut status = "200 OK".to_owned();
        let mut resp_headers = String::new();
        for l in head.lines() {
            if let Some(s) = l.strip_prefix("Status:") {
                status = s.trim().to_owned();
            } else if !l.trim().is_empty() {
                resp_headers.push_str(l.trim());
                resp_headers.push_str("\r\n");
            }
        }
        write!(writer, "HTTP/1.1 {status}\r\n{resp_headers}Content-Length: {}\r\n\r\n", payload.len())?;
        writer.write_all(payload)?;
        writer.flush()?;
    }
}

/// A `git://` server on 127.0.0.1 that announces one long pkt-line and then sends one
/// byte of it every 100 ms, for ever: never silent long enough for a read timeout, never
/// done. Returns its port.
pub fn trickling_git_server() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            std::thread::spawn(move || {
                use std::io::Write;
                let _ = s.write_all(b"fff0");
                while s.write_all(b"a").is_ok() {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            });
        }
    });
    port
}
