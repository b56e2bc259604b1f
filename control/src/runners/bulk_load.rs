//! The bulk-load job: copies one bucket of one table with the engine,
//! resumable from the engine's checkpoint in the target, following the job's
//! live rate limit, reporting progress to the job and rows to the bucket.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tern_engine::{LoadStatus, Value, load_bucket};

use crate::buckets::Phase;
use crate::clock::now_ms;
use crate::error::{ControlError, Result};
use crate::jobs::{JobKind, Progress};
use crate::runners::{
    RunnerContext, engine_bucket, link_for, migration_of, param_str, run_control,
};
use crate::worker::{JobContext, JobRunner, RunEnd};

/// Runs `bulk-load` jobs.
#[derive(Debug)]
pub struct BulkLoadRunner {
    ctx: RunnerContext,
}

impl BulkLoadRunner {
    pub fn new(ctx: RunnerContext) -> Self {
        BulkLoadRunner { ctx }
    }
}

#[async_trait]
impl JobRunner for BulkLoadRunner {
    fn kinds(&self) -> Vec<JobKind> {
        vec![JobKind::BulkLoad]
    }

    async fn run(&self, ctx: JobContext) -> Result<RunEnd> {
        let job = &ctx.job;
        let bucket_id = job.bucket_id.ok_or_else(|| {
            ControlError::Internal(format!("bulk-load job {} has no bucket", job.id))
        })?;
        let table = param_str(job, "table")?.to_string();
        let (_migration, spec) = migration_of(&ctx.store, job).await?;
        let link = link_for(&self.ctx, spec).await?;
        // The engine fixes the plan at the first load of a table and keeps it
        // in the target; the control store follows it.
        let bucket = engine_bucket(&ctx.store, &link, job).await?;
        ctx.store
            .sync_bucket_plan(
                bucket_id,
                bucket
                    .range
                    .lo
                    .as_ref()
                    .map(Value::canonical_text)
                    .as_deref(),
                bucket
                    .range
                    .hi
                    .as_ref()
                    .map(Value::canonical_text)
                    .as_deref(),
                i64::try_from(bucket.rows).unwrap_or(i64::MAX),
            )
            .await?;
        ctx.store
            .record_bucket_snapshot(bucket_id, now_ms(), None)
            .await?;

        let reporter = ctx.clone();
        let last_done = Arc::new(AtomicI64::new(-1));
        let seen = Arc::clone(&last_done);
        let control = run_control(&ctx, move |p| {
            let done = i64::try_from(p.done).unwrap_or(i64::MAX);
            let total = i64::try_from(p.total.unwrap_or(p.done)).unwrap_or(i64::MAX);
            let eta = (p.rate > 0.0).then(|| (total - done).max(0) as f64 / p.rate);
            seen.store(done, Ordering::Relaxed);
            reporter.report(Progress {
                rows_done: done,
                rows_total: Some(total),
                rate: Some(p.rate),
                eta_seconds: eta,
                message: Some(format!(
                    "{table} bucket {}: {} chunks this run",
                    p.task.bucket().unwrap_or_default(),
                    p.steps
                )),
            });
        });
        // One task writes the bucket's rows copied, in order, while the load runs.
        let recorder_stop = tokio_util::sync::CancellationToken::new();
        let recorder = tokio::spawn({
            let store = ctx.store.clone();
            let seen = Arc::clone(&last_done);
            let stop = recorder_stop.clone();
            async move {
                let mut written = -1;
                loop {
                    tokio::select! {
                        () = stop.cancelled() => break,
                        () = tokio::time::sleep(Duration::from_millis(800)) => {}
                    }
                    let now = seen.load(Ordering::Relaxed);
                    if now > written {
                        if let Err(e) = store.set_bucket_rows_copied(bucket_id, now).await {
                            tracing::warn!(bucket = bucket_id, error = %e, "cannot record rows copied");
                        }
                        written = now;
                    }
                }
            }
        });
        let report = load_bucket(&link, &bucket, &control).await;
        recorder_stop.cancel();
        let _ = recorder.await;
        let report = report?;
        // Source rows copied, as the last progress report counted them; a
        // bucket finished by an earlier run reports none, and counts as planned.
        let copied = match (last_done.load(Ordering::Relaxed), report.status) {
            (n, _) if n >= 0 => Some(n),
            (_, LoadStatus::AlreadyDone) => Some(i64::try_from(bucket.rows).unwrap_or(i64::MAX)),
            _ => None,
        };
        if let Some(rows) = copied {
            ctx.store.set_bucket_rows_copied(bucket_id, rows).await?;
        }
        // The engine fixed the bucket's watermark (the changelog position) before
        // it read the bucket's first row; catch-up starts there. Without change
        // capture installed there is none, only the snapshot time.
        let snapshot_ms = report
            .snapshot_at
            .map(|us| us / 1000)
            .unwrap_or_else(now_ms);
        ctx.store
            .record_bucket_snapshot(
                bucket_id,
                snapshot_ms,
                report
                    .watermark
                    .as_ref()
                    .map(ToString::to_string)
                    .as_deref(),
            )
            .await?;
        match report.status {
            LoadStatus::Cancelled => Ok(RunEnd::Stopped),
            LoadStatus::Completed | LoadStatus::AlreadyDone => Ok(RunEnd::Completed {
                summary: format!(
                    "{} bucket {}: {} rows read, {} written in {:.1}s",
                    report.table,
                    report.bucket,
                    report.rows_read,
                    report.rows_written,
                    report.elapsed.as_secs_f64()
                ),
                bucket_phase: Some(Phase::Loaded),
            }),
        }
    }
}
