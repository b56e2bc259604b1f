//! The bulk-load job: copies one bucket of one table with the engine,
//! resumable from the engine's checkpoint in the target, reporting progress
//! to the job and rows copied to the bucket (the harness does the rest).

use std::time::Duration;

use tern_engine::{LoadStatus, Value, load_bucket};

use crate::clock::now_ms;
use crate::error::Result;
use crate::jobs::harness::{JobContext, Latest, RunEnd};
use crate::jobs::{BucketParams, JobKind};
use crate::phases::Phase;
use crate::runners::setup::open_bucket;
use crate::runners::{count, report, runner};
use crate::store::Store;

/// How often the bucket's rows copied are written while the load runs.
const PERIOD: Duration = Duration::from_millis(800);

runner!(
    /// Runs `bulk-load` jobs.
    BulkLoadRunner,
    JobKind::BulkLoad
);

impl BulkLoadRunner {
    async fn work(&self, ctx: JobContext) -> Result<RunEnd> {
        let params: BucketParams = ctx.job.params()?;
        // The engine fixes the plan at the first load of a table and keeps it
        // in the target; the control store follows it.
        let work = open_bucket(&self.ctx, &ctx, &params).await?;
        let (link, bucket_id, bucket) = (work.link, work.bucket_id, work.bucket);
        let store = &ctx.store;
        let (lo, hi) = (bucket.range.lo.as_ref(), bucket.range.hi.as_ref());
        let (lo, hi) = (lo.map(Value::canonical_text), hi.map(Value::canonical_text));
        store
            .sync_bucket_plan(bucket_id, lo.as_deref(), hi.as_deref(), count(bucket.rows))
            .await?;
        store
            .record_bucket_snapshot(bucket_id, now_ms(), None)
            .await?;
        let (copied, table) = (Latest::default(), params.table.clone());
        let seen = copied.clone();
        let control = ctx.run_control(move |p| report::load(p, &table, &seen));
        let (control, _load) = ctx.guarded(&link, control);
        // The bucket's rows copied, written on the side while the load runs.
        let write =
            move |s: Store, rows| async move { s.set_bucket_rows_copied(bucket_id, rows).await };
        let recorder = ctx.record_every(PERIOD, "rows copied", copied.clone(), write);
        let report = load_bucket(&link, &bucket, &control).await;
        recorder.finish().await;
        let report = report?;
        // Source rows copied, as the last progress report counted them; a
        // bucket finished by an earlier run reports none, and counts as planned.
        let copied = match (copied.get(), report.status) {
            (Some(n), _) => Some(n),
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
            LoadStatus::Completed | LoadStatus::AlreadyDone => {
                RunEnd::done(report::loaded(&report), Phase::Loaded)
            }
        })
    }
}
