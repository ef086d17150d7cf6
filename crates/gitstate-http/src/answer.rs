//! A response from either client, as the probe reads it: [`Answer`] gives the status, the
//! headers the probe heeds and the body (at most `max_bytes`), whichever client fetched it.

use gitstate_core::ProbeFailure;
use reqwest::header::{CONTENT_ENCODING, LOCATION};

use crate::error::describe;
use crate::plain::Response;
use crate::timeouts::TIMED_OUT;

/// A response from either client.
pub(crate) enum Answer<'p> {
    Plain(Response<'p>),
    Reqwest(reqwest::Response),
}

impl Answer<'_> {
    pub(crate) fn status(&self) -> reqwest::StatusCode {
        match self {
            Answer::Plain(r) => r.head.status,
            Answer::Reqwest(r) => r.status(),
        }
    }

    pub(crate) fn location(&self) -> Option<&str> {
        match self {
            Answer::Plain(r) => r.head.location.as_deref(),
            Answer::Reqwest(r) => r.headers().get(LOCATION).and_then(|l| l.to_str().ok()),
        }
    }

    pub(crate) fn content_encoding(&self) -> Option<&[u8]> {
        match self {
            Answer::Plain(r) => r.head.content_encoding.as_deref(),
            Answer::Reqwest(r) => r.headers().get(CONTENT_ENCODING).map(|v| v.as_bytes()),
        }
    }

    /// Done with an answer whose body is not read.
    pub(crate) fn discard(self) {
        if let Answer::Plain(r) = self {
            r.discard();
        }
    }

    pub(crate) fn content_length(&self) -> Option<u64> {
        match self {
            Answer::Plain(r) => r.head.content_length,
            Answer::Reqwest(r) => r.content_length(),
        }
    }

    /// The body, at most `cap` bytes; the caller bounds the time.
    pub(crate) async fn body(self, cap: usize) -> Result<Vec<u8>, ProbeFailure> {
        let mut resp = match self {
            Answer::Plain(r) => return r.body(cap).await,
            Answer::Reqwest(r) => r,
        };
        let mut body = Vec::new();
        loop {
            match resp.chunk().await {
                Err(e) if e.is_timeout() => return Err(ProbeFailure::unreachable(TIMED_OUT)),
                Err(e) => {
                    return Err(ProbeFailure::unreachable(format!("reading the body: {}", describe(&e))));
                }
                Ok(None) => return Ok(body),
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > cap {
                        return Err(ProbeFailure::invalid(format!(
                            "body larger than max_bytes ({cap} bytes)"
                        )));
                    }
                    body.extend_from_slice(&chunk);
                }
            }
        }
    }
}
