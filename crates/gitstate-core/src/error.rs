//! The core's typed errors: [`ExpectedError`] (the expected-state source), [`SinkError`]
//! (alarm delivery), [`JournalError`] (persistence); and [`chain`], how errors are
//! rendered on one line.

/// The expected state could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExpectedError {
    /// The repository could not be opened.
    #[error("cannot open repository {repo}: {message}")]
    Open {
        /// The path given to open it.
        repo: String,
        /// Why (the underlying error, rendered).
        message: String,
    },
    /// The ref does not exist.
    #[error("ref {reference:?} not found in {repo}")]
    RefNotFound {
        /// The ref as asked for.
        reference: String,
        /// The repository.
        repo: String,
    },
    /// The ref exists but does not lead to a commit.
    #[error("ref {reference:?} in {repo} does not point at a commit: {message}")]
    NotACommit {
        /// The ref.
        reference: String,
        /// The repository.
        repo: String,
        /// What is wrong with what it points at, rendered.
        message: String,
    },
    /// A ref name that git would refuse.
    #[error("invalid ref name {0:?}")]
    BadRefName(String),
    /// Talking to a remote failed.
    #[error("cannot list refs of {url}: {message}")]
    Remote {
        /// The URL (credentials redacted).
        url: String,
        /// What the transport or the server said, rendered, secrets stripped.
        message: String,
    },
    /// Reading history failed.
    #[error("cannot walk history in {repo}: {message}")]
    History {
        /// The repository.
        repo: String,
        /// What could not be read, rendered.
        message: String,
    },
    /// A ref was not moved (SPEC §15): it no longer points where it was expected to, or
    /// the source cannot move it, or Git refused.
    #[error("ref {reference:?} not moved: {message}")]
    Refused {
        /// The ref.
        reference: String,
        /// Why, rendered (credentials redacted).
        message: String,
    },
    /// Another failure, with its source.
    #[error("{context}")]
    Other {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// An alarm sink did not accept a notification.
#[derive(Debug, thiserror::Error)]
#[error("alarm sink {sink}: {message}")]
pub struct SinkError {
    /// The sink.
    pub sink: String,
    /// Why (never a secret).
    pub message: String,
    /// The sink refused the notification for good (an HTTP 4xx other than 408 and 429: a
    /// revoked hook, a bad token): it is not retried, only counted and logged once.
    pub rejected: bool,
}

impl SinkError {
    /// A failure worth retrying (a timeout, a 5xx, a refused connection).
    pub fn failed(sink: impl Into<String>, message: impl Into<String>) -> Self {
        Self { sink: sink.into(), message: message.into(), rejected: false }
    }

    /// A refusal not worth retrying (see [`SinkError::rejected`]).
    pub fn rejected(sink: impl Into<String>, message: impl Into<String>) -> Self {
        Self { sink: sink.into(), message: message.into(), rejected: true }
    }
}

/// State or events could not be persisted.
#[derive(Debug, thiserror::Error)]
#[error("cannot persist to {path}: {message}")]
pub struct JournalError {
    /// The file (or store) that could not be written.
    pub path: String,
    /// The I/O or encoding error, rendered.
    pub message: String,
}

/// An error and its sources on one line, `outer: inner: root cause`, each cause once.
pub fn chain(e: &dyn std::error::Error) -> String {
    chain_after(e.to_string(), e.source())
}

/// `head` followed by the causes from `first` on, skipping any already said.
pub fn chain_after(head: String, first: Option<&(dyn std::error::Error + 'static)>) -> String {
    let mut s = head;
    let mut cur = first;
    while let Some(src) = cur {
        let msg = src.to_string();
        if !s.contains(&msg) {
            s.push_str(": ");
            s.push_str(&msg);
        }
        cur = src.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn chains_causes_once() {
        let e = Outer(std::io::Error::other("root cause"));
        assert_eq!(chain(&e), "outer: root cause");
        assert_eq!(chain_after("cannot connect".into(), Some(&e)), "cannot connect: outer: root cause");
    }
}
