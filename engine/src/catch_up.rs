//! Catch-up of a bucket: replays every change the bucket missed between its
//! watermark (the changelog position its bulk load took before reading its
//! first row) and the head of the changelog, deletes included; done when its
//! lag is zero. Plus the *window* catch-up for sources without triggers,
//! which re-copies the rows whose `updated_at` (or another column) falls in a
//! time window: seed 000's "re-run the bulk load with different date
//! parameters".
//!
//! The catch-up reads the changelog through the change stream
//! ([`crate::change_stream`], filtered by its bucket) and applies each batch
//! through the relay's path ([`crate::apply::apply_keys`]: re-read the
//! current source rows, write version-guarded, delete what the source
//! deleted). Its position advances in the bucket's checkpoint (`watermark`),
//! in the same target transaction as each batch, so a stopped catch-up
//! resumes where it was. Run it once the relay covers the bucket (its bucket
//! ramped on, or 100%): then the relay carries every change after the
//! catch-up's end, and the bucket stays current.

use std::time::{Duration, Instant};

use crate::buckets::Bucket;
use crate::change_stream::{
    Applier, Batch, ChangeStream, Consumer, Ended, Filter, StreamOptions, StreamState,
};
use crate::changelog::{Lag, Position};
use crate::checkpoint::{self, CHECKPOINT_TABLE};
use crate::chunk::Window;
use crate::connector::{Dialect, Statement, process_clock_micros};
use crate::error::{EngineError, Result};
use crate::fence::Fence;
use crate::link::{Link, Side};
use crate::progress::{Progress, Task, Unit};
use crate::run_control::RunControl;
use crate::value::Value;
use crate::writer::BatchWriter;

/// How a catch-up reads the changelog (the throttle, cancel and progress
/// are the caller's [`RunControl`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CatchUpOptions {
    /// Batch size, gap timeout and retries (default 5,000 changes a batch).
    pub stream: StreamOptions,
}

/// How a catch-up ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUpStatus {
    /// The bucket's lag reached zero (for a window: the window is re-copied).
    CaughtUp,
    /// Stopped between batches; run again to continue.
    Cancelled,
}

/// What a catch-up did.
#[derive(Debug, Clone, PartialEq)]
pub struct CatchUpSummary {
    pub table: String,
    pub bucket: usize,
    pub status: CatchUpStatus,
    /// Where it started and ended (a window catch-up has none).
    pub from: Option<Position>,
    pub to: Option<Position>,
    pub changes: u64,
    pub keys_applied: u64,
    pub rows_written: u64,
    pub keys_deleted: u64,
    /// The lag measured when it ended (zero when caught up).
    pub lag: Lag,
    /// When the bucket was found caught up (source clock, µs), recorded in
    /// its checkpoint.
    pub caught_up_at: Option<i64>,
    pub retries: u64,
    pub elapsed: Duration,
}

/// The statement moving a bucket's catch-up position, run in its batch's
/// transaction.
fn advance_watermark(
    d: Dialect,
    table: &str,
    bucket: usize,
    to: &Position,
    fence: Option<&Fence>,
) -> Statement {
    let mut params = vec![
        Value::Text(to.to_string()),
        Value::Int(process_clock_micros()),
        Value::Text(table.into()),
        Value::Int(bucket as i64),
    ];
    params.extend(fence.map(|f| Value::Int(f.token)));
    Statement {
        sql: format!(
            "UPDATE {} SET watermark = {}, updated_at = {} WHERE table_name = {} AND bucket = {}{}",
            d.quote(CHECKPOINT_TABLE),
            d.placeholder(1),
            d.placeholder(2),
            d.placeholder(3),
            d.placeholder(4),
            checkpoint::fence_guard(d, 5, fence)
        ),
        params,
        // A fenced write must land on its row, or a newer lease claimed it.
        expect_rows: fence.map(|_| 1),
    }
}

/// Catches a bulk-loaded bucket up from its watermark to the head of the
/// changelog. Done when a read finds nothing after its position (lag zero):
/// `caught_up_at` is then recorded in the bucket's checkpoint. Transient
/// database errors are retried with backoff; an unloaded bucket, or one loaded
/// without change capture, is refused with what to do instead.
pub async fn catch_up_bucket(
    link: &Link,
    bucket: &Bucket,
    opts: &CatchUpOptions,
    control: &RunControl,
) -> Result<CatchUpSummary> {
    link.check_writable()?;
    let started = Instant::now();
    let refuse = |message: String| EngineError::Checkpoint {
        table: bucket.table.clone(),
        bucket: bucket.index,
        message,
    };
    let cp = checkpoint::load_all(link.target(), &bucket.table)
        .await?
        .into_iter()
        .find(|c| c.bucket == bucket.index)
        .ok_or_else(|| {
            refuse("the bucket has not been bulk-loaded: load it first, then catch it up".into())
        })?;
    if !cp.done {
        return Err(refuse(
            "the bucket's bulk load has not finished: finish it (bulk-load resumes from its checkpoint), then catch it up".into(),
        ));
    }
    if let Some(fence) = &control.fence {
        // Claimed before the position is read again below: a worker that
        // held the job before is refused from here on (see `fence.rs`).
        checkpoint::claim(link.target(), &bucket.table, bucket.index, fence).await?;
    }
    let cp = match &control.fence {
        Some(_) => checkpoint::load_all(link.target(), &bucket.table)
            .await?
            .into_iter()
            .find(|c| c.bucket == bucket.index)
            .unwrap_or(cp),
        None => cp,
    };
    // Deletes find target rows by the source-key index: build what the load
    // deferred (`index_build.rs`) before the first change.
    crate::index_build::build_deferred(link, &bucket.table, control).await?;
    let Some(from) = cp.watermark.clone() else {
        return Err(refuse(
            "the bucket was loaded without change capture, so it has no watermark to replay from: \
             use a window catch-up (--window-from/--window-to) or re-load it with capture installed"
                .into(),
        ));
    };
    let mut consumer = BucketCatchUp {
        link,
        bucket,
        from: from.clone(),
        applier: Applier::new(link),
        progress: Progress::new(
            Task::CatchUp {
                table: bucket.table.clone(),
                bucket: bucket.index,
            },
            Unit::Changes,
        ),
        control,
    };
    let mut stream = ChangeStream::new(link, Side::Source, opts.stream.clone())?
        .named(consumer.progress.task.to_string());
    let ended = stream.run(control, &mut consumer).await?;
    let state = stream.state().clone();
    let (status, lag, caught_up_at) = match ended {
        Ended::Head => {
            let at = link.source().clock_micros().await?;
            checkpoint::set_caught_up(link.target(), &bucket.table, bucket.index, Some(at)).await?;
            tracing::info!(table = %bucket.table, bucket = bucket.index, position = %state.position,
                changes = state.changes, "bucket caught up");
            // The last read found nothing after its position.
            (CatchUpStatus::CaughtUp, Lag::default(), Some(at))
        }
        Ended::Cancelled => (CatchUpStatus::Cancelled, state.lag, None),
    };
    Ok(CatchUpSummary {
        table: bucket.table.clone(),
        bucket: bucket.index,
        status,
        from: Some(from),
        to: Some(state.position),
        changes: state.changes,
        keys_applied: consumer.applier.total.keys,
        rows_written: consumer.applier.total.rows_written,
        keys_deleted: consumer.applier.total.keys_deleted,
        lag,
        caught_up_at,
        retries: state.retries,
        elapsed: started.elapsed(),
    })
}

/// What [`catch_up_all`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct CatchUpAll {
    /// One summary per bucket caught up (or cancelled), by table and bucket.
    pub buckets: Vec<CatchUpSummary>,
    /// Buckets left alone, each with why and what to do.
    pub skipped: Vec<SkippedBucket>,
}

/// A bucket [`catch_up_all`] could not catch up.
#[derive(Debug, Clone, PartialEq)]
pub struct SkippedBucket {
    pub table: String,
    pub bucket: usize,
    pub reason: String,
}

/// Catches up every bucket of every table of the spec from its watermark to
/// the head, `parallelism` buckets at a time (at least one). Buckets not
/// loaded yet, still loading, or loaded without change capture are skipped
/// and listed with what to do; a table without a stored plan has not been
/// loaded at all and is listed as one skipped entry. An error in one bucket
/// stops the others (what they committed stays) and is returned.
pub async fn catch_up_all(
    link: &Link,
    opts: &CatchUpOptions,
    parallelism: usize,
    control: &RunControl,
) -> Result<CatchUpAll> {
    use futures::StreamExt;
    link.check_writable()?;
    let mut work = Vec::new();
    let mut skipped = Vec::new();
    for table in link.tables() {
        let Some(plan) = link.stored_plan(table).await? else {
            skipped.push(SkippedBucket {
                table: table.to_string(),
                bucket: 0,
                reason: "the table has no stored plan: bulk-load it first".into(),
            });
            continue;
        };
        let cps = link.checkpoints(table).await?;
        for b in plan.buckets {
            let cp = cps.iter().find(|c| c.bucket == b.index);
            let reason = match cp {
                None => Some("not bulk-loaded yet: load it first"),
                Some(c) if !c.done => Some("its bulk load has not finished: finish it first"),
                Some(c) if c.watermark.is_none() => Some(
                    "loaded without change capture (no watermark): use a window catch-up \
                     (--bucket N --window-from/--window-to)",
                ),
                Some(_) => None,
            };
            match reason {
                Some(r) => skipped.push(SkippedBucket {
                    table: table.to_string(),
                    bucket: b.index,
                    reason: r.into(),
                }),
                None => work.push(b),
            }
        }
    }
    // The buckets stop each other on an error, not the caller's run.
    let child = control.child();
    let results: Vec<Result<CatchUpSummary>> = futures::stream::iter(work)
        .map(|b| {
            let child = &child;
            async move {
                let r = catch_up_bucket(link, &b, opts, child).await;
                if r.is_err() {
                    child.cancel.cancel();
                }
                r
            }
        })
        .buffer_unordered(parallelism.max(1))
        .collect()
        .await;
    let mut buckets = Vec::with_capacity(results.len());
    let mut first_err = None;
    for r in results {
        match r {
            Ok(s) => buckets.push(s),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    buckets.sort_by(|a, b| (&a.table, a.bucket).cmp(&(&b.table, b.bucket)));
    Ok(CatchUpAll { buckets, skipped })
}

/// The catch-up as a change stream consumer: its bucket's keys, applied with
/// the bucket's watermark advanced in the same transaction.
struct BucketCatchUp<'a> {
    link: &'a Link,
    bucket: &'a Bucket,
    from: Position,
    applier: Applier<'a>,
    progress: Progress,
    control: &'a RunControl,
}

impl Consumer for BucketCatchUp<'_> {
    async fn start(&mut self) -> Result<Position> {
        Ok(self.from.clone())
    }

    async fn filter(&mut self) -> Result<Filter> {
        Ok(Filter::Bucket(self.bucket.clone()))
    }

    async fn apply(&mut self, batch: &Batch, filter: &Filter) -> Result<()> {
        let advance = advance_watermark(
            self.link.target().dialect(),
            &self.bucket.table,
            self.bucket.index,
            &batch.next,
            self.control.fence.as_ref(),
        );
        let applied = self.applier.apply(batch, filter, advance).await;
        if applied.is_err()
            && let Some(fence) = &self.control.fence
            && let Ok(Some(fenced)) = checkpoint::fenced_out(
                self.link.target(),
                &self.bucket.table,
                self.bucket.index,
                fence,
            )
            .await
        {
            // Not worth a retry: the job belongs to another worker now.
            return Err(fenced);
        }
        applied
    }

    fn landed(&mut self, batch: &Batch, state: &StreamState) {
        self.applier.landed(batch);
        // A read that reached the head left nothing after it.
        let lag = if batch.at_head {
            Lag::default()
        } else {
            batch.lag
        };
        let total = state.changes.saturating_add(lag.changes);
        state.fill(&mut self.progress, lag, Some(total));
        self.progress.tally = self.applier.tally();
        self.control.report(&self.progress);
    }

    fn retrying(&mut self, state: &StreamState) {
        self.applier.failed();
        let (lag, total) = (self.progress.lag.unwrap_or_default(), self.progress.total);
        state.fill(&mut self.progress, lag, total);
        self.control.report(&self.progress);
    }

    async fn at_head(&mut self, _batch: &Batch, _control: &RunControl) -> bool {
        false
    }
}

/// Re-copies the rows of a bucket whose `window.column` (e.g. `updated_at`)
/// is in `[window.from, window.to)`, through the bulk load's path (chunks in
/// key order, transformed, version-guarded): the catch-up for sources where
/// triggers are not allowed. It cannot see deletions (a deleted row has no
/// `updated_at`); verification finds the rows it leaves behind.
pub async fn catch_up_window(
    link: &Link,
    bucket: &Bucket,
    window: &Window,
    control: &RunControl,
) -> Result<CatchUpSummary> {
    link.check_writable()?;
    let started = Instant::now();
    let chunk_rows = link.spec().chunk_rows;
    let mut reader = link.window_reader(bucket, window, chunk_rows)?;
    let pipeline = link.pipeline(&bucket.table)?;
    let mut writer = BatchWriter::open(link.target()).await?;
    let mut progress = Progress::new(
        Task::CatchUp {
            table: bucket.table.clone(),
            bucket: bucket.index,
        },
        Unit::Rows,
    );
    let mut rows = 0u64;
    let status = loop {
        if !control.admit(chunk_rows as u64).await {
            break CatchUpStatus::Cancelled;
        }
        let Some(chunk) = reader.next_chunk().await? else {
            break CatchUpStatus::CaughtUp;
        };
        let n = chunk.rows.len() as u64;
        let range = chunk.describe_keys();
        let end = chunk.end;
        let version = chunk.version;
        let output = pipeline.transform(chunk.rows).await?;
        writer
            .write(&output, version, &[])
            .await
            .map_err(|message| EngineError::Chunk {
                table: bucket.table.clone(),
                bucket: bucket.index,
                range,
                message: format!(
                    "window catch-up: target rejected the chunk, nothing of it was committed: {message}"
                ),
            })?;
        rows += n;
        progress.measure(rows, rows, None, started.elapsed());
        progress.steps += 1;
        progress.tally.keys_applied = rows;
        progress.tally.rows_written += output.rows() as u64;
        control.report(&progress);
        if end {
            break CatchUpStatus::CaughtUp;
        }
    };
    tracing::info!(table = %bucket.table, bucket = bucket.index, rows,
        column = %window.column, status = ?status, "window catch-up finished");
    Ok(CatchUpSummary {
        table: bucket.table.clone(),
        bucket: bucket.index,
        status,
        from: None,
        to: None,
        changes: rows,
        keys_applied: rows,
        rows_written: progress.tally.rows_written,
        keys_deleted: 0,
        lag: Lag::default(),
        caught_up_at: None,
        retries: 0,
        elapsed: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catch_up_position_moves_in_the_bucket_checkpoint() {
        let s = advance_watermark(Dialect::Postgres, "items", 3, &Position::at(42), None);
        assert_eq!(
            s.sql,
            "UPDATE \"_tern_checkpoints\" SET watermark = $1, updated_at = $2 WHERE table_name = $3 AND bucket = $4"
        );
        assert_eq!(s.params[0], Value::Text("42".into()));
        assert_eq!(s.params[3], Value::Int(3));
        assert_eq!(s.expect_rows, None);
    }

    #[test]
    fn a_fenced_catch_up_writes_only_while_no_newer_lease_claimed_the_bucket() {
        let fence = Fence::new(7, "job 1 (worker a)");
        let s = advance_watermark(
            Dialect::Postgres,
            "items",
            3,
            &Position::at(42),
            Some(&fence),
        );
        assert!(
            s.sql
                .ends_with("AND bucket = $4 AND (fence IS NULL OR fence <= $5)"),
            "{}",
            s.sql
        );
        assert_eq!(s.params[4], Value::Int(7));
        assert_eq!(s.expect_rows, Some(1), "a refused write fails its batch");
    }
}
