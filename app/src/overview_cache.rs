//! The overview's numbers, kept for a moment between requests (server only).
//!
//! Every migration's card reads the whole bucket table several times (counts
//! per phase, the forecast, what blocks): with thousands of buckets that is
//! most of a request, and the page refreshes itself every few seconds in
//! every open browser. The lines are computed once and shared:
//!
//! - after any audited change (a new migration, a ramp, a phase moved by
//!   hand: the audit log's newest id moves) the next request computes them
//!   again before it answers, so what a user just did is on the page;
//! - otherwise they are served for up to [`FRESH`], then served once more
//!   while one background task computes the next (jobs' progress shows up
//!   within a refresh or two), and never older than [`STALE_LIMIT`].

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tern_control::dashboard::ProgramLine;
use tern_control::error::Result;
use tern_control::{Actor, Store};

/// How long computed lines are served as they are.
pub const FRESH: Duration = Duration::from_secs(2);
/// Lines older than this are never served: the request computes.
pub const STALE_LIMIT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone)]
struct Snapshot {
    at: Instant,
    stamp: i64,
    lines: Arc<Vec<ProgramLine>>,
}

/// The overview lines last computed, shared by every request of a process.
#[derive(Debug, Default)]
pub struct OverviewCache {
    last: Mutex<Option<Snapshot>>,
    refreshing: AtomicBool,
}

impl OverviewCache {
    /// Every migration's overview line, as described in the module.
    pub async fn lines(self: &Arc<Self>, store: &Store) -> Result<Arc<Vec<ProgramLine>>> {
        let stamp = store.audit_stamp().await?;
        let last = self.last.lock().ok().and_then(|g| g.clone());
        if let Some(s) = last.filter(|s| s.stamp == stamp) {
            let age = s.at.elapsed();
            if age < FRESH {
                return Ok(s.lines);
            }
            if age < STALE_LIMIT {
                if !self.refreshing.swap(true, Ordering::AcqRel) {
                    let (cache, store) = (Arc::clone(self), store.clone());
                    tokio::spawn(async move {
                        if let Err(e) = cache.compute(&store, stamp).await {
                            tracing::warn!(error = %e, "cannot refresh the overview");
                        }
                        cache.refreshing.store(false, Ordering::Release);
                    });
                }
                return Ok(s.lines);
            }
        }
        self.compute(store, stamp).await
    }

    async fn compute(&self, store: &Store, stamp: i64) -> Result<Arc<Vec<ProgramLine>>> {
        // The lines do not depend on who asks: the page hides per role.
        let lines = Arc::new(store.program_overview(&Actor::system()).await?);
        if let Ok(mut last) = self.last.lock() {
            let newer = last.as_ref().is_none_or(|s| s.stamp <= stamp);
            if newer {
                *last = Some(Snapshot {
                    at: Instant::now(),
                    stamp,
                    lines: Arc::clone(&lines),
                });
            }
        }
        Ok(lines)
    }
}
