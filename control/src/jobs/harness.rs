//! The job harness: everything a leased job needs that is not its own work.
//! It turns a leased job into the engine's [`RunControl`] (the job's live
//! rate limit as the throttle, a cancel token, a progress callback), renews
//! the lease with a heartbeat that carries the job's progress to the store,
//! applies what people change on the job row while it runs (rate, pause,
//! cancel), stops the work when its lease is lost or the worker shuts down,
//! and records how the job ended. A runner ([`JobRunner`]) is only the part
//! that is its own: which engine to call with what, and what to record.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tern_engine::{Fence, Link, LoadGuard, RateThrottle, RunControl};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::error::ControlError;
use crate::jobs::model::{Heartbeat, Job, JobKind, Outcome, Progress, Request};
use crate::phases::Phase;
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
    /// Why the databases' load holds the job back, while it does.
    held_back: Arc<Mutex<Option<String>>>,
}

impl JobContext {
    /// Records progress; the next heartbeat stores it (and the UI shows it).
    pub fn report(&self, progress: Progress) {
        if let Ok(mut p) = self.progress.lock() {
            *p = progress;
        }
    }

    fn snapshot(&self) -> Progress {
        let mut p = self.progress.lock().map(|p| p.clone()).unwrap_or_default();
        if let Some(note) = self.held_back.lock().ok().and_then(|n| n.clone()) {
            p.message = Some(match p.message {
                Some(m) => format!("{note} · {m}"),
                None => note,
            });
        }
        p
    }

    /// `control` held back while the migration's databases are busy (the
    /// spec's `[throttle]` limits), and the guard that watches them: keep it
    /// while the engine runs. While the job is held back its message says
    /// why (`throttled: target active_backends 30 > 8`).
    pub fn guarded(&self, link: &Link, control: RunControl) -> (RunControl, Option<LoadGuard>) {
        self.guarded_by(LoadGuard::start(link), control)
    }

    /// `control` held back by `guard` (a data fix watches its one database),
    /// the job's message saying why while it is.
    pub fn guarded_by(
        &self,
        guard: Option<LoadGuard>,
        control: RunControl,
    ) -> (RunControl, Option<LoadGuard>) {
        if let Some(g) = &guard {
            let (mut state, note) = (g.watch(), Arc::clone(&self.held_back));
            tokio::spawn(async move {
                loop {
                    let now = state.borrow_and_update().note();
                    if let Ok(mut n) = note.lock() {
                        *n = now;
                    }
                    // Ends with the guard.
                    if state.changed().await.is_err() {
                        break;
                    }
                }
                if let Ok(mut n) = note.lock() {
                    *n = None;
                }
            });
        }
        (control.guarded(guard.as_ref()), guard)
    }

    /// The engine's run control for this job: the job's live rate limit as
    /// the throttle, its stop token, and what the engine reports turned into
    /// the job's progress by `describe`.
    pub fn run_control(
        &self,
        describe: impl Fn(&tern_engine::Progress) -> Progress + Send + Sync + 'static,
    ) -> RunControl {
        let reporter = self.clone();
        self.quiet_run_control()
            .on_progress(move |p| reporter.report(describe(p)))
    }

    /// The run control without a progress callback (the runner reports itself).
    pub fn quiet_run_control(&self) -> RunControl {
        RunControl::new()
            .with_throttle(live_throttle(self.rate_limit.clone()))
            .with_cancel(self.stop.clone())
            .with_fence(self.fence())
    }

    /// The fence of this job's lease: the engine's checkpoint writes made for
    /// the job carry it, and are refused once another worker took it over.
    pub fn fence(&self) -> Fence {
        let worker = self.job.worker.as_deref().unwrap_or("?");
        Fence::new(
            self.job.lease_token,
            format!("job {} (worker {worker})", self.job.id),
        )
    }

    /// Runs `tick` every `period` until the job stops or the returned guard
    /// is dropped: for what a runner writes to the store on the side while
    /// the engine works (rows copied, the lag), at most that often.
    pub fn every<F, Fut>(&self, period: Duration, mut tick: F) -> Periodic
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let stop = self.stop.child_token();
        let guard = stop.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(period) => {}
                }
                tick().await;
            }
        });
        Periodic { stop: guard, task }
    }

    /// Writes with `write` what `latest` holds when it is new, at most every
    /// `period` until the job stops or the returned guard is dropped: what a
    /// runner records on the side while the engine works (a bucket's rows
    /// copied, its lag). A failed write is logged as `what`; the next new
    /// value is written at a later look.
    pub fn record_every<T, W, Fut>(
        &self,
        period: Duration,
        what: &'static str,
        latest: Latest<T>,
        write: W,
    ) -> Periodic
    where
        T: Clone + Send + 'static,
        W: Fn(Store, T) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<(), ControlError>> + Send + 'static,
    {
        let (store, job) = (self.store.clone(), self.job.id);
        self.every(period, move || {
            let written = latest.take().map(|v| write(store.clone(), v));
            async move {
                if let Some(w) = written
                    && let Err(e) = w.await
                {
                    tracing::warn!(job, error = %e, "cannot record {what}");
                }
            }
        })
    }
}

/// The latest of something the engine reports: set by a progress callback,
/// written on the side by [`JobContext::record_every`] when it is new.
#[derive(Debug)]
pub struct Latest<T>(Arc<Mutex<(Option<T>, bool)>>);

impl<T> Clone for Latest<T> {
    fn clone(&self) -> Self {
        Latest(Arc::clone(&self.0))
    }
}

impl<T> Default for Latest<T> {
    fn default() -> Self {
        Latest(Arc::new(Mutex::new((None, false))))
    }
}

impl<T: Clone> Latest<T> {
    /// Holds `value` as the latest, new until it is taken.
    pub fn set(&self, value: T) {
        if let Ok(mut l) = self.0.lock() {
            *l = (Some(value), true);
        }
    }

    /// The latest value, taken or not.
    pub fn get(&self) -> Option<T> {
        self.0.lock().ok().and_then(|l| l.0.clone())
    }

    /// The latest value if it is new since the last take.
    pub fn take(&self) -> Option<T> {
        let mut l = self.0.lock().ok()?;
        std::mem::take(&mut l.1).then(|| l.0.clone()).flatten()
    }
}

/// A task started by [`JobContext::every`]; stopped when dropped.
#[derive(Debug)]
pub struct Periodic {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Periodic {
    /// Stops the task and waits for its last tick to finish.
    pub async fn finish(mut self) {
        self.stop.cancel();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Periodic {
    fn drop(&mut self) {
        self.stop.cancel();
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

impl RunEnd {
    /// The work is done, with `summary`; the bucket moves to `phase`.
    pub fn done(summary: String, phase: impl Into<Option<Phase>>) -> RunEnd {
        RunEnd::Completed {
            summary,
            bucket_phase: phase.into(),
        }
    }
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

/// A throttle that follows the job's rate limit as engineers change it.
pub fn live_throttle(mut rate: watch::Receiver<Option<f64>>) -> Arc<RateThrottle> {
    let to_rows = |r: Option<f64>| r.map(|r| r.max(1.0).round() as u64);
    let throttle = Arc::new(RateThrottle::new(to_rows(*rate.borrow())));
    let follower = Arc::clone(&throttle);
    tokio::spawn(async move {
        while rate.changed().await.is_ok() {
            let r = *rate.borrow();
            follower.set_rate(to_rows(r));
        }
    });
    throttle
}

/// Where a leased job runs: the store, the worker holding the lease, and how
/// long the lease lasts and how often it is renewed.
pub(crate) struct Lease<'a> {
    pub store: &'a Store,
    pub worker: &'a str,
    pub lease: Duration,
    pub heartbeat: Duration,
}

impl Lease<'_> {
    /// Runs a leased job with `runner` to its end, and records the end.
    pub(crate) async fn run(
        &self,
        job: Job,
        runner: Arc<dyn JobRunner>,
        shutdown: &CancellationToken,
    ) {
        let worker = self.worker;
        let job_id = job.id;
        let kind = job.kind;
        let token = job.lease_token;
        // A cancel asked while the previous worker was dying is honoured here.
        if job.requested == Some(Request::Cancel) {
            let _ = self
                .store
                .finish_job(job_id, worker, token, &Outcome::Cancelled)
                .await;
            return;
        }
        tracing::info!(%worker, job = job_id, kind = kind.as_str(), attempt = job.attempts, "job started");
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
            held_back: Arc::default(),
        };
        let beat_ctx = ctx.clone();
        let mut work = tokio::spawn(async move { runner.run(ctx).await });

        let lease_ms = self.lease.as_millis() as i64;
        let mut requested: Option<Request> = None;
        let mut lease_lost = false;
        let mut ticker = tokio::time::interval(self.heartbeat);
        ticker.tick().await;
        let result = loop {
            tokio::select! {
                result = &mut work => break result,
                () = shutdown.cancelled(), if !stop.is_cancelled() => {
                    tracing::info!(%worker, job = job_id, "shutting down: stopping the job at its next checkpoint");
                    stop.cancel();
                }
                _ = ticker.tick() => {
                    match self.store.heartbeat(job_id, worker, token, lease_ms, &beat_ctx.snapshot()).await {
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
                            tracing::warn!(%worker, job = job_id, "lease lost: another worker took the job over; stopping");
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
            .heartbeat(job_id, worker, token, lease_ms, &beat_ctx.snapshot())
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
        tracing::info!(%worker, job = job_id, kind = kind.as_str(), ?outcome, "job ended");
        match self.store.finish_job(job_id, worker, token, &outcome).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                %worker,
                job = job_id,
                ?outcome,
                "the job was taken over by another worker before this one could finish it; \
                 its end is not recorded and the other worker carries on"
            ),
            Err(e) => {
                tracing::error!(job = job_id, error = %e, "cannot record the job's end; its lease will expire and another worker will resume it")
            }
        }
    }
}
