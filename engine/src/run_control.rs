//! How a run is steered from outside: one [`RunControl`] that every engine
//! takes (bulk load, catch-up, relay, verification, repair), holding the
//! three things a caller holds on to while an engine works:
//!
//! - the **throttle**, asked before every step with its size, whose settings
//!   may change while the run goes on (an engineer lowers the rate);
//! - the **cancel** token, which stops the run between steps: what was
//!   committed stays committed, with the position or checkpoint that says
//!   where to resume;
//! - the **progress** callback, told where the run stands after every
//!   committed step and every failed attempt ([`Progress`]).
//!
//! Why apart from each engine's options: options say *what* to do (which
//! table, batch sizes, the ramp); a run control says *how the caller steers
//! it*, and is the same for every engine, so the control plane builds one
//! from a leased job (its live rate, its stop token, its progress record)
//! without knowing which engine runs.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::fence::Fence;
use crate::progress::Progress;
use crate::throttle::{RateThrottle, Throttle};

/// The progress callback of a run.
pub type OnProgress = dyn Fn(&Progress) + Send + Sync;

/// Throttle, cancel and progress of one run. Cloning shares all three.
#[derive(Clone)]
pub struct RunControl {
    /// Asked before every step with its size (rows, changes or keys).
    pub throttle: Arc<dyn Throttle>,
    /// Stops the run between steps.
    pub cancel: CancellationToken,
    /// Told where the run stands; called from the engine's task, so keep it
    /// quick.
    pub progress: Option<Arc<OnProgress>>,
    /// The lease's fence token when the run works on behalf of a job: its
    /// checkpoint writes are refused once a newer lease claimed the bucket
    /// (see [`crate::fence`]). `None` for runs by hand.
    pub fence: Option<Fence>,
}

impl Default for RunControl {
    /// Unthrottled, not cancelled, reporting to no one.
    fn default() -> Self {
        RunControl {
            throttle: Arc::new(RateThrottle::unlimited()),
            cancel: CancellationToken::new(),
            progress: None,
            fence: None,
        }
    }
}

impl std::fmt::Debug for RunControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunControl")
            .field("cancelled", &self.cancel.is_cancelled())
            .field("progress", &self.progress.is_some())
            .field("fence", &self.fence)
            .finish_non_exhaustive()
    }
}

impl RunControl {
    /// Unthrottled, not cancelled, reporting to no one.
    pub fn new() -> RunControl {
        RunControl::default()
    }

    /// With this throttle.
    pub fn with_throttle(mut self, throttle: Arc<dyn Throttle>) -> RunControl {
        self.throttle = throttle;
        self
    }

    /// With a fixed rate limit in units per second (`None`: unlimited).
    pub fn with_rate(self, per_second: Option<u64>) -> RunControl {
        self.with_throttle(Arc::new(RateThrottle::new(per_second)))
    }

    /// Held back by `guard` while the databases are busy (no change without
    /// one: a spec with no `[throttle]` limits has none).
    pub fn guarded(mut self, guard: Option<&crate::throttle::LoadGuard>) -> RunControl {
        if let Some(g) = guard {
            self.throttle = g.throttle(self.throttle);
        }
        self
    }

    /// Stopped by this token.
    pub fn with_cancel(mut self, cancel: CancellationToken) -> RunControl {
        self.cancel = cancel;
        self
    }

    /// Writing on behalf of a lease with this fence token.
    pub fn with_fence(mut self, fence: Fence) -> RunControl {
        self.fence = Some(fence);
        self
    }

    /// Reporting to `f`.
    pub fn on_progress(mut self, f: impl Fn(&Progress) + Send + Sync + 'static) -> RunControl {
        self.progress = Some(Arc::new(f));
        self
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Waits until the throttle admits a step of `units`; false when the run
    /// was cancelled first.
    pub async fn admit(&self, units: u64) -> bool {
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => false,
            _ = self.throttle.admit(units) => true,
        }
    }

    /// Waits `wait` (between attempts of a failing step, or for new work);
    /// false when the run was cancelled first.
    pub async fn sleep(&self, wait: Duration) -> bool {
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => false,
            _ = tokio::time::sleep(wait) => true,
        }
    }

    /// Tells the progress callback, if there is one.
    pub fn report(&self, p: &Progress) {
        if let Some(f) = &self.progress {
            f(p);
        }
    }

    /// The same throttle and progress with a cancel token of its own that
    /// this run's cancel also fires: for the parallel parts of one run, which
    /// stop each other on an error without cancelling the caller's token.
    pub(crate) fn child(&self) -> RunControl {
        RunControl {
            throttle: self.throttle.clone(),
            cancel: self.cancel.child_token(),
            progress: self.progress.clone(),
            fence: self.fence.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_run_is_admitted_no_more_and_wakes_from_its_sleep() {
        let control = RunControl::new().with_rate(Some(10));
        assert!(control.admit(100).await);
        let waiting = {
            let c = control.clone();
            tokio::spawn(async move { c.admit(100).await })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        control.cancel.cancel();
        assert!(!waiting.await.unwrap_or(true));
        assert!(!control.sleep(Duration::from_secs(3600)).await);
    }

    #[test]
    fn a_child_is_cancelled_with_its_parent_but_not_the_other_way() {
        let parent = RunControl::new();
        let child = parent.child();
        child.cancel.cancel();
        assert!(!parent.is_cancelled());
        let other = parent.child();
        parent.cancel.cancel();
        assert!(other.is_cancelled());
    }
}
