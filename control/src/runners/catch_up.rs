//! The catch-up job: brings one bucket from its watermark (taken before the
//! bulk load read its first row) to the head of the changelog with the
//! engine, following the job's live rate limit and reporting the lag.

use std::sync::Arc;

use async_trait::async_trait;
use tern_engine::{CatchUpOptions, CatchUpStatus, Task, catch_up_bucket};

use crate::buckets::Phase;
use crate::error::{ControlError, Result};
use crate::jobs::{JobKind, Progress};
use crate::runners::{RunnerContext, engine_bucket, link_for, migration_of, run_control};
use crate::worker::{JobContext, JobRunner, RunEnd};

/// Runs `catch-up` jobs.
#[derive(Debug)]
pub struct CatchUpRunner {
    ctx: RunnerContext,
}

impl CatchUpRunner {
    pub fn new(ctx: RunnerContext) -> Self {
        CatchUpRunner { ctx }
    }
}

#[async_trait]
impl JobRunner for CatchUpRunner {
    fn kinds(&self) -> Vec<JobKind> {
        vec![JobKind::CatchUp]
    }

    async fn run(&self, ctx: JobContext) -> Result<RunEnd> {
        let job = &ctx.job;
        let bucket_id = job.bucket_id.ok_or_else(|| {
            ControlError::Internal(format!("catch-up job {} has no bucket", job.id))
        })?;
        let (_migration, spec) = migration_of(&ctx.store, job).await?;
        let link = link_for(&self.ctx, spec).await?;
        let bucket = engine_bucket(&ctx.store, &link, job).await?;

        let reporter = ctx.clone();
        let lag_store = ctx.store.clone();
        let last_lag_write = Arc::new(std::sync::Mutex::new(std::time::Instant::now()));
        let control = run_control(&ctx, move |p| {
            let lag = p.lag.unwrap_or_default();
            let behind = i64::try_from(lag.changes).unwrap_or(i64::MAX);
            let done = i64::try_from(p.done).unwrap_or(i64::MAX);
            reporter.report(Progress {
                rows_done: done,
                rows_total: Some(done.saturating_add(behind)),
                rate: Some(p.rate),
                eta_seconds: (p.rate > 0.0).then(|| behind as f64 / p.rate),
                message: Some(match &p.task {
                    Task::CatchUp { table, bucket } => format!(
                        "{table} bucket {bucket}: {} changes read, {} keys applied, {} deleted; lag {} changes, {:.1}s",
                        p.done, p.tally.keys_applied, p.tally.keys_deleted, lag.changes, lag.seconds
                    ),
                    other => other.to_string(),
                }),
            });
            // The bucket's lag for the grid, at most once a second.
            let due = last_lag_write
                .lock()
                .map(|mut t| {
                    let due = t.elapsed().as_millis() >= 1000;
                    if due {
                        *t = std::time::Instant::now();
                    }
                    due
                })
                .unwrap_or(false);
            if due {
                let store = lag_store.clone();
                let seconds = lag.seconds;
                tokio::spawn(async move {
                    if let Err(e) = store.record_bucket_lag(bucket_id, behind, seconds).await {
                        tracing::warn!(bucket = bucket_id, error = %e, "cannot record the lag");
                    }
                });
            }
        });
        let opts = CatchUpOptions::default();
        let summary = catch_up_bucket(&link, &bucket, &opts, &control).await?;
        match summary.status {
            CatchUpStatus::Cancelled => {
                ctx.store
                    .record_bucket_lag(
                        bucket_id,
                        i64::try_from(summary.lag.changes).unwrap_or(i64::MAX),
                        summary.lag.seconds,
                    )
                    .await?;
                Ok(RunEnd::Stopped)
            }
            CatchUpStatus::CaughtUp => {
                ctx.store
                    .record_catch_up(
                        bucket_id,
                        summary.from.as_ref().map(ToString::to_string).as_deref(),
                        summary.to.as_ref().map(ToString::to_string).as_deref(),
                    )
                    .await?;
                Ok(RunEnd::Completed {
                    summary: format!(
                        "{} bucket {}: caught up, {} changes read, {} keys applied, {} deleted in {:.1}s",
                        summary.table,
                        summary.bucket,
                        summary.changes,
                        summary.keys_applied,
                        summary.keys_deleted,
                        summary.elapsed.as_secs_f64()
                    ),
                    bucket_phase: Some(Phase::CaughtUp),
                })
            }
        }
    }
}
