//! Every time bound of an HTTP request, in one place (SPEC §5, §8): the connect timeout of
//! both clients ([`CONNECT_TIMEOUT`]), how long an idle connection is kept
//! ([`IDLE_TIMEOUT`]), a target's default timeout ([`DEFAULT_TIMEOUT`]), and the
//! per-instance [`Deadline`] of a probe, which covers the request, every redirect and the
//! body.

use std::future::Future;
use std::time::{Duration, Instant};

use gitstate_core::ProbeFailure;

/// Connect timeout of every request (SPEC §5).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// An idle connection older than this is closed rather than reused, by either client
/// (hyper's default too).
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Total time per instance of a target that sets none.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The message of a request that ran out of time, before [`Deadline::within`] says after
/// how long.
pub(crate) const TIMED_OUT: &str = "timed out";

/// The time one instance's read may take: the target's timeout, counted from when its
/// request may start (not while it waits for a slot among the requests in flight), and
/// covering redirects and the body.
pub(crate) struct Deadline {
    at: Instant,
    timeout: Duration,
}

impl Deadline {
    /// The deadline of a read started at `start`.
    pub(crate) fn new(start: Instant, timeout: Duration) -> Self {
        Self { at: start + timeout, timeout }
    }

    /// The time left; zero once the deadline has passed.
    pub(crate) fn left(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// The failure of a read past its deadline.
    pub(crate) fn timed_out(&self) -> ProbeFailure {
        ProbeFailure::unreachable(format!("{TIMED_OUT} after {}", humanize(self.timeout)))
    }

    /// `work`, given at most `left`. A client's own timeout inside it (reqwest's, given
    /// `left` too) reads [`TIMED_OUT`]; it is the same deadline, so it says the same.
    pub(crate) async fn within<T>(
        &self,
        left: Duration,
        work: impl Future<Output = Result<T, ProbeFailure>>,
    ) -> Result<T, ProbeFailure> {
        match tokio::time::timeout(left, work).await {
            Err(_) => Err(self.timed_out()),
            Ok(r) => r.map_err(|f| if f.message == TIMED_OUT { self.timed_out() } else { f }),
        }
    }
}

fn humanize(d: Duration) -> String {
    if d.subsec_millis() == 0 { format!("{}s", d.as_secs()) } else { format!("{}ms", d.as_millis()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_timeout_inside_the_deadline_says_after_how_long() {
        let deadline = Deadline::new(Instant::now(), Duration::from_secs(2));
        let inner =
            deadline.within(deadline.left(), async { Err::<(), _>(ProbeFailure::unreachable(TIMED_OUT)) });
        assert_eq!(inner.await.unwrap_err().message, "timed out after 2s");
        let other =
            deadline.within(deadline.left(), async { Err::<(), _>(ProbeFailure::unreachable("HTTP 500")) });
        assert_eq!(other.await.unwrap_err().message, "HTTP 500");
        let late = Deadline::new(Instant::now(), Duration::from_millis(1500));
        let never = late.within(Duration::ZERO, std::future::pending::<Result<(), ProbeFailure>>());
        assert_eq!(never.await.unwrap_err().message, "timed out after 1500ms");
    }
}
