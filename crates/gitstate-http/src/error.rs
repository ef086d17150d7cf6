//! [`HttpError`]: building HTTP adapters failed (a bad CA file, a client that cannot start).

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
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {message}")]
    Client {
        /// The HTTP client's error, rendered.
        message: String,
    },
}
