//! The throttle a load asks before every chunk: a rate (rows per second) and
//! a pause, both changeable while the load runs. Behind the [`Throttle`]
//! trait; [`RateThrottle`] is the engineer's rate limit, and a [`LoadGuard`]
//! (in `load.rs`) holds it back by itself while the source or the target is
//! busy.

mod load;

pub use load::{LoadGuard, LoadSample, LoadState, SLOW_FROM, judge, sample};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use tokio::sync::{Mutex, watch};

/// Asked before every chunk; returns when the chunk may go.
#[async_trait::async_trait]
pub trait Throttle: Send + Sync {
    /// Waits until `rows` more rows may be read and written.
    async fn admit(&self, rows: u64);
}

/// Rows-per-second limit plus pause. Cloning gives another handle to the same
/// throttle: keep one to change the rate or pause while a load runs.
#[derive(Clone, Debug)]
pub struct RateThrottle {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Rows per second; 0 means unlimited.
    rate: AtomicU64,
    paused: watch::Sender<bool>,
    /// When the previous chunk was admitted and how many rows it had.
    last: Mutex<Option<(Instant, u64)>>,
}

/// Longest single sleep, so rate changes and pauses take effect promptly.
const SLICE: Duration = Duration::from_millis(100);

impl RateThrottle {
    /// A throttle at `rows_per_s` (`None` or 0: unlimited), not paused.
    pub fn new(rows_per_s: Option<u64>) -> RateThrottle {
        RateThrottle {
            inner: Arc::new(Inner {
                rate: AtomicU64::new(rows_per_s.unwrap_or(0)),
                paused: watch::channel(false).0,
                last: Mutex::new(None),
            }),
        }
    }

    pub fn unlimited() -> RateThrottle {
        RateThrottle::new(None)
    }

    /// Changes the rate; applies from the next chunk on (and to a wait in progress).
    pub fn set_rate(&self, rows_per_s: Option<u64>) {
        self.inner
            .rate
            .store(rows_per_s.unwrap_or(0), Ordering::Relaxed);
    }

    pub fn rate(&self) -> Option<u64> {
        match self.inner.rate.load(Ordering::Relaxed) {
            0 => None,
            r => Some(r),
        }
    }

    /// Holds every load using this throttle before its next chunk.
    pub fn pause(&self) {
        self.inner.paused.send_replace(true);
    }

    pub fn resume(&self) {
        self.inner.paused.send_replace(false);
    }

    pub fn is_paused(&self) -> bool {
        *self.inner.paused.borrow()
    }
}

#[async_trait::async_trait]
impl Throttle for RateThrottle {
    async fn admit(&self, rows: u64) {
        let mut paused = self.inner.paused.subscribe();
        let mut last = self.inner.last.lock().await;
        loop {
            if *paused.borrow_and_update() {
                // The sender lives in `self`, so `changed` cannot fail here.
                let _ = paused.changed().await;
                continue;
            }
            let rate = self.inner.rate.load(Ordering::Relaxed);
            let wait = match (*last, rate) {
                (Some((at, n)), r) if r > 0 => {
                    let due = at + Duration::from_secs_f64(n as f64 / r as f64);
                    due.saturating_duration_since(Instant::now())
                }
                _ => Duration::ZERO,
            };
            if wait.is_zero() {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(wait.min(SLICE)) => {}
                _ = paused.changed() => {}
            }
        }
        *last = Some((Instant::now(), rows));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_rate_spaces_chunks_by_their_size() {
        let t = RateThrottle::new(Some(1000));
        let start = tokio::time::Instant::now();
        t.admit(500).await;
        t.admit(500).await;
        t.admit(500).await;
        // Two waits of 500 rows at 1000 rows/s.
        assert_eq!(start.elapsed().as_millis(), 1000);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_until_resumed_and_rate_changes_apply_at_once() {
        let t = RateThrottle::new(Some(10));
        t.admit(100).await; // the next chunk is due in 10 s
        t.set_rate(None);
        let start = tokio::time::Instant::now();
        t.admit(100).await;
        assert!(start.elapsed() < Duration::from_millis(200));

        t.pause();
        let handle = t.clone();
        let waiter = tokio::spawn(async move { handle.admit(1).await });
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!waiter.is_finished());
        t.resume();
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("admitted after resume")
            .expect("task");
    }
}
