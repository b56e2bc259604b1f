//! The catch-up job: brings one bucket from its watermark (taken before the
//! bulk load read its first row) to the head of the changelog with the
//! engine, reporting the lag to the job and, once a second, to the bucket.

use std::time::Duration;

use tern_engine::{CatchUpOptions, CatchUpStatus, catch_up_bucket};

use crate::error::Result;
use crate::jobs::harness::{JobContext, Latest, RunEnd};
use crate::jobs::{BucketParams, JobKind};
use crate::phases::Phase;
use crate::runners::setup::{BucketWork, open_bucket};
use crate::runners::{count, report, runner};
use crate::store::Store;

/// How long a catch-up waits for the relay to take its bucket over.
const HANDOVER_WAIT: Duration = Duration::from_secs(15);

/// How often the bucket's lag is written while the catch-up runs.
const LAG_PERIOD: Duration = Duration::from_secs(1);

runner!(
    /// Runs `catch-up` jobs.
    CatchUpRunner,
    JobKind::CatchUp
);

impl CatchUpRunner {
    async fn work(&self, ctx: JobContext) -> Result<RunEnd> {
        let at: BucketParams = ctx.job.params()?;
        let BucketWork {
            migration,
            link,
            bucket_id,
            bucket,
        } = open_bucket(&self.ctx, &ctx, &at).await?;
        let store = &ctx.store;
        // The latest lag (changes, seconds), written to the bucket for the grid.
        let lag = Latest::default();
        let seen = lag.clone();
        let control = ctx.run_control(move |p| report::catch_up(p, &seen));
        let (control, _load) = ctx.guarded(&link, control);
        let write = move |s: Store, (behind, secs)| async move {
            s.record_bucket_lag(bucket_id, behind, secs).await
        };
        let lag_writer = ctx.record_every(LAG_PERIOD, "the lag", lag, write);
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
        Ok(RunEnd::done(
            report::caught_up(&summary, waiting),
            Phase::CaughtUp,
        ))
    }
}
