//! How the engine waits out a probe's timeout: [`Timer`], `futures-timer` unless the host
//! gives its own sleep.

use std::sync::Arc;

/// How the engine waits out a probe's timeout: by default a `futures-timer` delay (its own
/// thread, any executor); a host with a runtime gives its own, which at thousands of
/// probes a pass costs far less (no cross-thread wake-up per probe).
#[derive(Clone)]
pub struct Timer(
    Option<Arc<dyn Fn(std::time::Duration) -> futures::future::BoxFuture<'static, ()> + Send + Sync>>,
);

impl Timer {
    /// A timer from a function returning a future that completes after the duration,
    /// such as `|d| Box::pin(tokio::time::sleep(d))`.
    pub fn new(
        sleep: impl Fn(std::time::Duration) -> futures::future::BoxFuture<'static, ()> + Send + Sync + 'static,
    ) -> Self {
        Self(Some(Arc::new(sleep)))
    }

    pub(super) fn sleep(&self, d: std::time::Duration) -> futures::future::BoxFuture<'static, ()> {
        match &self.0 {
            Some(f) => f(d),
            None => Box::pin(futures_timer::Delay::new(d)),
        }
    }
}

impl Default for Timer {
    /// `futures-timer`.
    fn default() -> Self {
        Self(None)
    }
}

impl std::fmt::Debug for Timer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Timer(host)" } else { "Timer(futures-timer)" })
    }
}
