//! The catch-up job: brings one bucket from its watermark (taken before the
//! bulk load read its first row) to the head of the changelog with the
//! engine, reporting the lag to the job and, once a second, to the bucket.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tern_engine::{CatchUpOptions, CatchUpStatus, Task, catch_up_bucket};

use crate::error::Result;
use crate::jobs::harness::{JobContext, JobRunner, RunEnd};
use crate::jobs::{BucketParams, JobKind, Progress};
use crate::phases::Phase;
use crate::runners::{RunnerContext, bucket_of, count, engine_bucket, link_for, migration_of};

/// How long a catch-up waits for the relay to take its bucket over.
const HANDOVER_WAIT: Duration = Duration::from_secs(15);

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
        let (job, store) = (&ctx.job, &ctx.store);
        let bucket_id = bucket_of(job)?;
        let (migration, spec) = migration_of(store, job).await?;
        let link = link_for(&self.ctx, spec).await?;
        let bucket = engine_bucket(
            store,
            &link,
            job.migration_id,
            &job.params::<BucketParams>()?,
        )
        .await?;

        // The latest lag (changes, seconds), written to the bucket for the grid.
        let lag_now: Arc<Mutex<Option<(i64, f64)>>> = Arc::default();
        let seen = Arc::clone(&lag_now);
        let control = ctx.run_control(move |p| {
            let lag = p.lag.unwrap_or_default();
            let (behind, done) = (count(lag.changes), count(p.done));
            if let Ok(mut l) = seen.lock() {
                *l = Some((behind, lag.seconds));
            }
            Progress {
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
            }
        });
        let (control, _load) = ctx.guarded(&link, control);
        let lag_writer = ctx.every(Duration::from_secs(1), {
            let store = store.clone();
            move || {
                let (store, lag) = (
                    store.clone(),
                    lag_now.lock().ok().and_then(|mut l| l.take()),
                );
                async move {
                    let Some((behind, seconds)) = lag else { return };
                    if let Err(e) = store.record_bucket_lag(bucket_id, behind, seconds).await {
                        tracing::warn!(bucket = bucket_id, error = %e, "cannot record the lag");
                    }
                }
            }
        });
        // The hand-over: when the relay ramp covers this bucket, the relay
        // must filter by it before the catch-up reads to the changelog's
        // head; every change after that head then reaches the target through
        // the relay. A catch-up that ended first left the changes between its
        // head and the relay's taking over to neither (lost writes).
        let waiting = store
            .wait_relay_covers(migration.id, bucket_id, HANDOVER_WAIT, &ctx.stop)
            .await?;
        if let Some(w) = &waiting {
            tracing::warn!(bucket = bucket_id, "catching up without the relay: {w}");
        }
        let summary = catch_up_bucket(&link, &bucket, &CatchUpOptions::default(), &control).await;
        lag_writer.finish().await;
        let summary = summary?;
        if summary.status == CatchUpStatus::Cancelled {
            let behind = count(summary.lag.changes);
            store
                .record_bucket_lag(bucket_id, behind, summary.lag.seconds)
                .await?;
            return Ok(RunEnd::Stopped);
        }
        let (from, to) = (summary.from.as_ref(), summary.to.as_ref());
        let (from, to) = (from.map(ToString::to_string), to.map(ToString::to_string));
        store
            .record_catch_up(bucket_id, from.as_deref(), to.as_deref())
            .await?;
        Ok(RunEnd::Completed {
            summary: format!(
                "{} bucket {}: caught up, {} changes read, {} keys applied, {} deleted in {:.1}s{}",
                summary.table,
                summary.bucket,
                summary.changes,
                summary.keys_applied,
                summary.keys_deleted,
                summary.elapsed.as_secs_f64(),
                waiting
                    .map(|w| format!(" ({w}: catch up again once it has)"))
                    .unwrap_or_default()
            ),
            bucket_phase: Some(Phase::CaughtUp),
        })
    }
}
