//! Test peers for gitstate's own tests (not published): real git repositories and servers,
//! and HTTP targets, well-behaved and hostile, served on 127.0.0.1 with ephemeral ports.
// The workspace denies `unsafe`; libraries forbid it outright (only the binary's
// allocator tuning, `gitstate-cli/src/memory.rs`, allows it).
#![forbid(unsafe_code)]
// A test-only crate: its helpers are documented where their behaviour is not obvious.
#![allow(missing_docs)]

pub mod alertmanager;
pub mod chromium;
pub mod git;
pub mod hostile;
pub mod http;
pub mod journal;
pub mod model;
pub mod moto;
pub mod postgres;
pub mod prometheus;
pub mod proxy;
pub mod ssh;
pub mod tls;

pub use alertmanager::{Alertmanager, http_get};
pub use chromium::{Chromium, Page};
pub use git::{
    HttpBackend, Repo, Server, free_port, git, git_cmd, git_daemon, git_daemon_on, git_daemon_pushable,
    git_http_backend, trickling_git_server,
};
pub use http::{Behavior, TestServer};
pub use journal::MemoryJournal;
pub use moto::{Moto, Resource};
pub use postgres::Postgres;
pub use prometheus::Prometheus;
pub use proxy::Proxy;
pub use ssh::SshServer;

/// Cases for a property test that starts real processes or servers per case: `default`
/// in the suite, more when `PROPTEST_CASES` asks (`scripts/fuzz`), at most 20 times as many.
pub fn proptest_cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(default, |n: u32| n.min(default * 20))
}
