//! [`HttpError`]: building HTTP adapters failed (a bad CA file, a client that cannot start);
//! and `describe`: a failed reqwest request on one line, for a reading, an alarm or a
//! remediation outcome.

use std::path::PathBuf;

/// Setting up an HTTP adapter failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The `ca_file` could not be read or holds no certificate.
    #[error("ca_file {}: {message}", path.display())]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What was wrong with it, rendered.
        message: String,
    },
    /// A configured header is not one HTTP allows.
    #[error("{0}")]
    Header(#[from] crate::header::HeaderError),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {message}")]
    Client {
        /// The HTTP client's error, rendered.
        message: String,
    },
}

/// A reqwest error and its causes on one line, without the URL (it may hold secrets and
/// is the instance id anyway).
pub(crate) fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_connect() {
        "cannot connect"
    } else if e.is_request() {
        "request failed"
    } else if e.is_body() || e.is_decode() {
        "bad response body"
    } else {
        "HTTP error"
    };
    gitstate_core::error_chain_after(kind.to_owned(), std::error::Error::source(e))
}
