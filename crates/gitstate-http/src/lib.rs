//! # gitstate-http
//!
//! Everything in gitstate that speaks HTTP. Depends on `gitstate-core` only.
//!
//! - [`HttpProbe`]: reads `/.well-known/deployment-meta.json` (or Dockerflow, Spring Boot
//!   actuator, Kubernetes-style version files, or a plain commit id) from every URL of a
//!   target, with the bounds of SPEC §8. Body parsing is core's pure
//!   [`parse_report`](gitstate_core::parse_report), re-exported here as [`parse_body`].
//! - [`HttpClients`]: the shared connection pool and in-flight limit.
//! - [`WebhookRemediator`]: re-triggers a deployment with a POST.
//! - [`AlertmanagerSink`] and [`WebhookSink`]: where alarms go.
//!
//! The smallest complete use: a probe over two instances' well-known files, and the pure
//! body parser every answer goes through.
//!
//! ```
//! use gitstate_http::{HttpClients, HttpProbe, HttpTarget, parse_body};
//!
//! let clients = HttpClients::new(64).unwrap(); // one pool, 64 requests in flight
//! let target = HttpTarget::new(vec![
//!     "https://eu.example.com/.well-known/deployment-meta.json".parse().unwrap(),
//!     "https://us.example.com/.well-known/deployment-meta.json".parse().unwrap(),
//! ]);
//! let probe = HttpProbe::new(&clients, target).unwrap(); // an `ActualStateProbe`
//! # let _ = probe;
//!
//! let sha = "4e69ed0b2a6b9a5d4e1c0f8a7b6c5d4e3f2a1b0c";
//! let body = format!(r#"{{"schema": 1, "sha": "{sha}"}}"#);
//! let reported = parse_body(body.as_bytes(), None).unwrap();
//! assert_eq!(reported.to_string(), sha);
//! ```
//!
//! The gitstate book explains the whole: `docs/` in the repository (`mdbook serve docs`):
//! *HTTP: a well-known file* (`docs/src/probes/http.md`), *Alerts* (`docs/src/alerts.md`).
//!
//! Behind them: `timeouts.rs` (a probe's per-instance deadline, [`CONNECT_TIMEOUT`]),
//! `keep_alive.rs` (which connections are kept, [`KeepAlive`]), `target.rs`
//! ([`HttpTarget`]), `clients.rs`, and `plain/`, the small HTTP/1.1 client for plain
//! `http://` URLs.
// The workspace denies `unsafe`; libraries forbid it outright (only the binary's
// allocator tuning, `gitstate-cli/src/memory.rs`, allows it).
#![forbid(unsafe_code)]

pub mod alarm;
mod answer;
/// Reading a commit out of a response body: core's [`gitstate_core::parse_report`].
pub mod body {
    pub use gitstate_core::{AUTO_POINTERS, parse_report as parse_body};
}
mod clients;
pub mod error;
pub mod header;
mod keep_alive;
mod plain;
pub mod probe;
pub mod redirect;
pub mod remediate;
mod target;
mod timeouts;
mod tls;
pub mod verify;

pub use alarm::{AlertmanagerSink, WebhookFormat, WebhookSink};
pub use body::{AUTO_POINTERS, parse_body};
pub use clients::HttpClients;
pub use error::HttpError;
pub use header::{Header, HeaderError};
pub use keep_alive::KeepAlive;
pub use probe::HttpProbe;
pub use redirect::{FollowRedirects, MAX_REDIRECTS};
pub use remediate::{RUNTIME_VARS, WebhookRemediator};
pub use target::HttpTarget;
pub use timeouts::CONNECT_TIMEOUT;
pub use verify::{HttpCheck, PrometheusCheck};
