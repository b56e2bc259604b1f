//! Workers: lease jobs from the store, run them, keep the lease alive with a
//! heartbeat that carries progress, and pass pause, cancel and rate changes to
//! the running job within one heartbeat.
//!
//! A worker runs jobs through [`JobRunner`]s, one per job kind (bulk load,
//! catch-up, verify, …). `tern serve` runs workers in-process; `tern worker`
//! runs them alone, as many processes as wanted on a PostgreSQL store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::buckets::Phase;
use crate::error::ControlError;
use crate::jobs::{Heartbeat, Job, JobKind, Outcome, Progress, Request};
use crate::store::Store;

/// What a runner gets for one job.
#[derive(Debug, Clone)]
pub struct JobContext {
    pub job: Job,
    pub store: Store,
    /// Cancelled when the job must stop at its next checkpoint (pause, cancel,
    /// lost lease, worker shutdown). The runner returns [`RunEnd::Stopped`].
    pub stop: CancellationToken,
    /// The rate limit (rows or records per second), as engineers change it.
    pub rate_limit: watch::Receiver<Option<f64>>,
    progress: Arc<Mutex<Progress>>,
}

impl JobContext {
    /// Records progress; the next heartbeat stores it (and the UI shows it).
    pub fn report(&self, progress: Progress) {
        if let Ok(mut p) = self.progress.lock() {
            *p = progress;
        }
    }

    fn snapshot(&self) -> Progress {
        self.progress.lock().map(|p| p.clone()).unwrap_or_default()
    }
}

/// How a runner's work ended.
#[derive(Debug)]
pub enum RunEnd {
    /// The work is done: a summary, and the phase the job's bucket moves to.
    Completed {
        summary: String,
        bucket_phase: Option<Phase>,
    },
    /// The runner stopped at a checkpoint because `stop` was cancelled.
    Stopped,
}

/// Runs jobs of some kinds.
#[async_trait]
pub trait JobRunner: Send + Sync + 'static {
    /// The kinds this runner takes.
    fn kinds(&self) -> Vec<JobKind>;
    /// Does the job. A resumed job (`ctx.job.attempts > 1`, or a paused one
    /// resumed) continues from the engine's checkpoint.
    async fn run(&self, ctx: JobContext) -> Result<RunEnd, ControlError>;
}

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
        let job_id = job.id;
        let kind = job.kind;
        // A cancel asked while the previous worker was dying is honoured here.
        if job.requested == Some(Request::Cancel) {
            let _ = self
                .store
                .finish_job(job_id, &self.id, &Outcome::Cancelled)
                .await;
            return;
        }
        tracing::info!(worker = %self.id, job = job_id, kind = kind.as_str(), attempt = job.attempts, "job started");
        let stop = CancellationToken::new();
        let (rate_tx, rate_rx) = watch::channel(job.rate_limit);
        let progress = Arc::new(Mutex::new(Progress {
            rows_done: job.rows_done,
            rows_total: job.rows_total,
            ..Progress::default()
        }));
        let ctx = JobContext {
            job,
            store: self.store.clone(),
            stop: stop.clone(),
            rate_limit: rate_rx,
            progress: Arc::clone(&progress),
        };
        let beat_ctx = ctx.clone();
        let mut work = tokio::spawn(async move { runner.run(ctx).await });

        let lease_ms = self.timing.lease.as_millis() as i64;
        let mut requested: Option<Request> = None;
        let mut lease_lost = false;
        let mut ticker = tokio::time::interval(self.timing.heartbeat);
        ticker.tick().await;
        let result = loop {
            tokio::select! {
                result = &mut work => break result,
                () = shutdown.cancelled(), if !stop.is_cancelled() => {
                    tracing::info!(worker = %self.id, job = job_id, "shutting down: stopping the job at its next checkpoint");
                    stop.cancel();
                }
                _ = ticker.tick() => {
                    match self.store.heartbeat(job_id, &self.id, lease_ms, &beat_ctx.snapshot()).await {
                        Ok(Heartbeat::Continue { requested: r, rate_limit }) => {
                            if *rate_tx.borrow() != rate_limit {
                                tracing::info!(job = job_id, ?rate_limit, "rate limit changed");
                                let _ = rate_tx.send(rate_limit);
                            }
                            if let Some(r) = r {
                                if requested.is_none() {
                                    tracing::info!(job = job_id, request = ?r, "stop requested");
                                    requested = Some(r);
                                    stop.cancel();
                                }
                            }
                        }
                        Ok(Heartbeat::LeaseLost) => {
                            tracing::warn!(worker = %self.id, job = job_id, "lease lost: another worker took the job over; stopping");
                            lease_lost = true;
                            stop.cancel();
                        }
                        Err(e) => tracing::warn!(job = job_id, error = %e, "heartbeat failed; will retry"),
                    }
                }
            }
        };
        if lease_lost {
            return;
        }
        // Store the last progress before the outcome.
        let _ = self
            .store
            .heartbeat(job_id, &self.id, lease_ms, &beat_ctx.snapshot())
            .await;
        let outcome = match result {
            Ok(Ok(RunEnd::Completed {
                summary,
                bucket_phase,
            })) => Outcome::Succeeded {
                summary: Some(summary),
                bucket_phase,
            },
            Ok(Ok(RunEnd::Stopped)) => match requested {
                Some(Request::Pause) => Outcome::Paused,
                Some(Request::Cancel) => Outcome::Cancelled,
                None => Outcome::Released,
            },
            Ok(Err(e)) => Outcome::Failed(e.to_string()),
            Err(panic) => Outcome::Failed(format!("the job's task ended abnormally: {panic}")),
        };
        tracing::info!(worker = %self.id, job = job_id, kind = kind.as_str(), ?outcome, "job ended");
        match self.store.finish_job(job_id, &self.id, &outcome).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                job = job_id,
                "the job was taken over before it could be finished"
            ),
            Err(e) => {
                tracing::error!(job = job_id, error = %e, "cannot record the job's end; its lease will expire and another worker will resume it")
            }
        }
    }
}
