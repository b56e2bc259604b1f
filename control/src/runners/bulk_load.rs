//! The bulk-load job: copies one bucket of one table with the engine,
//! resumable from the engine's checkpoint in the target, reporting progress
//! to the job and rows copied to the bucket (the harness does the rest).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tern_engine::{LoadStatus, Task, Value, load_bucket};

use crate::clock::now_ms;
use crate::error::Result;
use crate::jobs::harness::{JobContext, JobRunner, RunEnd, done_of_total};
use crate::jobs::{BucketParams, JobKind, Progress};
use crate::phases::Phase;
use crate::runners::{RunnerContext, bucket_of, count, engine_bucket, link_for, migration_of};

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
        let (job, store) = (&ctx.job, &ctx.store);
        let bucket_id = bucket_of(job)?;
        let params: BucketParams = job.params()?;
        let (_migration, spec) = migration_of(store, job).await?;
        let link = link_for(&self.ctx, spec).await?;
        // The engine fixes the plan at the first load of a table and keeps it
        // in the target; the control store follows it.
        let bucket = engine_bucket(store, &link, job.migration_id, &params).await?;
        let (lo, hi) = (bucket.range.lo.as_ref(), bucket.range.hi.as_ref());
        let (lo, hi) = (lo.map(Value::canonical_text), hi.map(Value::canonical_text));
        store
            .sync_bucket_plan(bucket_id, lo.as_deref(), hi.as_deref(), count(bucket.rows))
            .await?;
        store
            .record_bucket_snapshot(bucket_id, now_ms(), None)
            .await?;

        let seen = Arc::new(AtomicI64::new(-1));
        let last = Arc::clone(&seen);
        let table = params.table.clone();
        let control = ctx.run_control(move |p| {
            if let Task::IndexBuild { table } = &p.task {
                // The table's last bucket builds the indexes its load
                // deferred. The job keeps counting the bucket's rows (the
                // board and the forecast read them); the message says which
                // index is being built.
                let rows = last.load(Ordering::Relaxed).max(0);
                return Progress {
                    rows_done: rows,
                    rows_total: Some(rows),
                    rate: None,
                    eta_seconds: None,
                    message: Some(format!(
                        "{table}: {} ({} of {} indexes)",
                        p.note.as_deref().unwrap_or("building indexes"),
                        p.done,
                        p.total.unwrap_or(p.done)
                    )),
                };
            }
            last.store(count(p.done), Ordering::Relaxed);
            let bucket = p.task.bucket().unwrap_or_default();
            done_of_total(
                p,
                format!("{table} bucket {bucket}: {} chunks this run", p.steps),
            )
        });
        let (control, _load) = ctx.guarded(&link, control);
        // The bucket's rows copied, written on the side while the load runs.
        let recorder = ctx.every(Duration::from_millis(800), {
            let (store, seen, mut written) = (store.clone(), Arc::clone(&seen), -1);
            move || {
                let (store, now) = (store.clone(), seen.load(Ordering::Relaxed));
                let due = now > written;
                written = written.max(now);
                async move {
                    if due && let Err(e) = store.set_bucket_rows_copied(bucket_id, now).await {
                        tracing::warn!(bucket = bucket_id, error = %e, "cannot record rows copied");
                    }
                }
            }
        });
        let report = load_bucket(&link, &bucket, &control).await;
        recorder.finish().await;
        let report = report?;
        // Source rows copied, as the last progress report counted them; a
        // bucket finished by an earlier run reports none, and counts as planned.
        let copied = match (seen.load(Ordering::Relaxed), report.status) {
            (n, _) if n >= 0 => Some(n),
            (_, LoadStatus::AlreadyDone) => Some(count(bucket.rows)),
            _ => None,
        };
        if let Some(rows) = copied {
            store.set_bucket_rows_copied(bucket_id, rows).await?;
        }
        // The engine fixed the bucket's watermark (the changelog position) before
        // it read the bucket's first row; catch-up starts there. Without change
        // capture installed there is none, only the snapshot time.
        let snapshot_ms = report.snapshot_at.map_or_else(now_ms, |us| us / 1000);
        let watermark = report.watermark.as_ref().map(ToString::to_string);
        store
            .record_bucket_snapshot(bucket_id, snapshot_ms, watermark.as_deref())
            .await?;
        Ok(match report.status {
            LoadStatus::Cancelled => RunEnd::Stopped,
            LoadStatus::Completed | LoadStatus::AlreadyDone => RunEnd::Completed {
                summary: format!(
                    "{} bucket {}: {} rows read, {} written in {:.1}s",
                    report.table,
                    report.bucket,
                    report.rows_read,
                    report.rows_written,
                    report.elapsed.as_secs_f64()
                ),
                bucket_phase: Some(Phase::Loaded),
            },
        })
    }
}
