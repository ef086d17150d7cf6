//! A progress line on stderr while many targets are probed, on a terminal only: each
//! probe is wrapped in [`Counted`], and [`Progress`] redraws `probing 120/1000 targets`.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use gitstate_core::{ActualStateProbe, EnvironmentSpec, ProbeContext, ProbeFailure, Reading};

/// Targets at or above which progress is shown.
pub const THRESHOLD: usize = 20;

/// A probe that counts its completions.
pub struct Counted {
    inner: Arc<dyn ActualStateProbe>,
    done: Arc<AtomicUsize>,
}

#[async_trait]
impl ActualStateProbe for Counted {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn observe(&self, cx: &ProbeContext<'_>) -> Result<Vec<Reading>, ProbeFailure> {
        let r = self.inner.observe(cx).await;
        self.done.fetch_add(1, Ordering::Relaxed);
        r
    }
}

/// The progress line; dropped, it clears itself.
pub struct Progress {
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// Wraps the probes of `specs` and starts drawing, when stderr is a terminal and there
    /// are at least [`THRESHOLD`] targets; otherwise does nothing.
    pub fn start(specs: &mut [EnvironmentSpec]) -> Self {
        let total: usize = specs.iter().map(|s| s.targets.len()).sum();
        if total < THRESHOLD || !std::io::stderr().is_terminal() {
            return Self { task: None };
        }
        let done = Arc::new(AtomicUsize::new(0));
        for s in specs.iter_mut() {
            for t in &mut s.targets {
                t.probe = Arc::new(Counted { inner: t.probe.clone(), done: done.clone() });
            }
        }
        let task = tokio::spawn(async move {
            loop {
                let n = done.load(Ordering::Relaxed);
                eprint!("\r\x1b[2Kprobing {n}/{total} targets");
                let _ = std::io::stderr().flush();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Self { task: Some(task) }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            eprint!("\r\x1b[2K");
            let _ = std::io::stderr().flush();
        }
    }
}
