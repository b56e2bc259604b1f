//! Workers: lease jobs from the store, run them, keep the lease alive with a
//! heartbeat that carries progress, and pass pause, cancel and rate changes to
//! the running job within one heartbeat.
//!
//! A worker runs each job it leases through the job harness
//! ([`crate::jobs::harness`]) and a [`JobRunner`], one per job kind (bulk load,
//! catch-up, verify, …). `tern serve` runs workers in-process; `tern worker`
//! runs them alone, as many processes as wanted on a PostgreSQL store.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::jobs::harness::Lease;
pub use crate::jobs::harness::{JobContext, JobRunner, RunEnd};
use crate::jobs::{Job, JobKind};
use crate::store::Store;

/// How often a worker polls for work and renews its lease.
#[derive(Debug, Clone, Copy)]
pub struct WorkerTiming {
    /// A lease lasts this long without a heartbeat; then another worker may take over.
    pub lease: Duration,
    /// Heartbeat interval (well under the lease).
    pub heartbeat: Duration,
    /// Wait between polls when the queue is empty.
    pub idle_poll: Duration,
}

impl Default for WorkerTiming {
    fn default() -> Self {
        WorkerTiming {
            lease: Duration::from_secs(30),
            heartbeat: Duration::from_secs(2),
            idle_poll: Duration::from_millis(500),
        }
    }
}

/// One worker: leases and runs one job at a time.
pub struct Worker {
    pub id: String,
    store: Store,
    runners: HashMap<JobKind, Arc<dyn JobRunner>>,
    timing: WorkerTiming,
}

impl Worker {
    pub fn new(
        id: impl Into<String>,
        store: Store,
        runners: &[Arc<dyn JobRunner>],
        timing: WorkerTiming,
    ) -> Worker {
        let mut map = HashMap::new();
        for runner in runners {
            for kind in runner.kinds() {
                map.insert(kind, Arc::clone(runner));
            }
        }
        Worker {
            id: id.into(),
            store,
            runners: map,
            timing,
        }
    }

    /// Runs until `shutdown` is cancelled; a job in hand is stopped at its next
    /// checkpoint and handed back to the queue.
    pub async fn run(self, shutdown: CancellationToken) {
        let kinds: Vec<JobKind> = self.runners.keys().copied().collect();
        let lease_ms = self.timing.lease.as_millis() as i64;
        tracing::info!(worker = %self.id, kinds = ?kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>(), "worker started");
        while !shutdown.is_cancelled() {
            match self.store.lease_job(&self.id, &kinds, lease_ms).await {
                Ok(Some(job)) => self.run_job(job, &shutdown).await,
                Ok(None) => {
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(self.timing.idle_poll) => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(worker = %self.id, error = %e, "cannot lease a job; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(self.timing.idle_poll * 4) => {}
                    }
                }
            }
        }
        tracing::info!(worker = %self.id, "worker stopped");
    }

    async fn run_job(&self, job: Job, shutdown: &CancellationToken) {
        let Some(runner) = self.runners.get(&job.kind).cloned() else {
            return;
        };
        let lease = Lease {
            store: &self.store,
            worker: &self.id,
            lease: self.timing.lease,
            heartbeat: self.timing.heartbeat,
        };
        lease.run(job, runner, shutdown).await;
    }
}
