//! Catch-up of a bucket: replays every change the bucket missed between its
//! watermark (the changelog position its bulk load took before reading its
//! first row) and the head of the changelog, deletes included; done when its
//! lag is zero. Plus the *window* catch-up for sources without triggers,
//! which re-copies the rows whose `updated_at` (or another column) falls in a
//! time window: seed 000's "re-run the bulk load with different date
//! parameters".
//!
//! The catch-up takes the relay's path ([`crate::apply::apply_keys`]: re-read the
//! current source rows, write version-guarded, delete what the source
//! deleted), limited to the keys of its bucket. Its position advances in the
//! bucket's checkpoint (`watermark`), in the same target transaction as each
//! batch, so a stopped catch-up resumes where it was. Run it once the relay
//! covers the bucket (its bucket ramped on, or 100%): then the relay carries
//! every change after the catch-up's end, and the bucket stays current.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::apply::{self, ApplyReport, TableKeys};
use crate::buckets::Bucket;
use crate::changelog::{self, DEFAULT_GAP_TIMEOUT, Lag, Position};
use crate::checkpoint::{self, CHECKPOINT_TABLE};
use crate::chunk::Window;
use crate::connector::{Dialect, Statement, process_clock_micros};
use crate::error::{EngineError, Result};
use crate::link::Link;
use crate::retry::{Backoff, is_transient};
use crate::throttle::{RateThrottle, Throttle};
use crate::value::Value;
use crate::writer::BatchWriter;

/// How a catch-up runs.
#[derive(Clone)]
pub struct CatchUpOptions {
    /// Asked before every batch with its size (changes, or rows for a window).
    pub throttle: Arc<dyn Throttle>,
    /// Stops between batches; what was committed stays, with its position.
    pub cancel: CancellationToken,
    pub progress: Option<CatchUpProgressFn>,
    /// Changelog rows per batch (default 5,000).
    pub batch_changes: usize,
    /// See [`crate::RelayOptions::gap_timeout`].
    pub gap_timeout: Duration,
    /// Waits between attempts of a failing batch (default 100 ms up to 10 s).
    pub retry_initial: Duration,
    pub retry_max: Duration,
}

impl Default for CatchUpOptions {
    fn default() -> Self {
        CatchUpOptions {
            throttle: Arc::new(RateThrottle::unlimited()),
            cancel: CancellationToken::new(),
            progress: None,
            batch_changes: 5_000,
            gap_timeout: DEFAULT_GAP_TIMEOUT,
            retry_initial: Duration::from_millis(100),
            retry_max: Duration::from_secs(10),
        }
    }
}

/// Where a catch-up stands after a committed batch.
#[derive(Debug, Clone, PartialEq)]
pub struct CatchUpProgress {
    pub table: String,
    pub bucket: usize,
    pub position: Position,
    /// Changelog rows read (window: source rows read).
    pub changes: u64,
    /// Keys of the bucket brought up to date, and target rows written.
    pub keys_applied: u64,
    pub rows_written: u64,
    pub keys_deleted: u64,
    /// Changes (or rows) per second.
    pub rate: f64,
    /// How far the bucket is behind the head of the changelog.
    pub lag: Lag,
    pub retries: u64,
    pub last_error: Option<String>,
    pub elapsed: Duration,
}

/// The catch-up's progress callback.
pub type CatchUpProgressFn = Arc<dyn Fn(&CatchUpProgress) + Send + Sync>;

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
fn advance_watermark(d: Dialect, table: &str, bucket: usize, to: &Position) -> Statement {
    Statement {
        sql: format!(
            "UPDATE {} SET watermark = {}, updated_at = {} WHERE table_name = {} AND bucket = {}",
            d.quote(CHECKPOINT_TABLE),
            d.placeholder(1),
            d.placeholder(2),
            d.placeholder(3),
            d.placeholder(4)
        ),
        params: vec![
            Value::Text(to.to_string()),
            Value::Int(process_clock_micros()),
            Value::Text(table.into()),
            Value::Int(bucket as i64),
        ],
        expect_rows: None,
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
    let Some(from) = cp.watermark.clone() else {
        return Err(refuse(
            "the bucket was loaded without change capture, so it has no watermark to replay from: \
             use a window catch-up (--window-from/--window-to) or re-load it with capture installed"
                .into(),
        ));
    };
    let mut progress = CatchUpProgress {
        table: bucket.table.clone(),
        bucket: bucket.index,
        position: from.clone(),
        changes: 0,
        keys_applied: 0,
        rows_written: 0,
        keys_deleted: 0,
        rate: 0.0,
        lag: Lag::default(),
        retries: 0,
        last_error: None,
        elapsed: Duration::ZERO,
    };
    let mut backoff = Backoff::new(opts.retry_initial, opts.retry_max);
    let mut writer: Option<BatchWriter> = None;
    let mut position = from.clone();
    let mut total = ApplyReport::default();
    let limit = opts.batch_changes.max(1);
    let admit = |table: &str, v: &Value| table == bucket.table && bucket.range.contains(v);
    let status = loop {
        tokio::select! {
            biased;
            _ = opts.cancel.cancelled() => break CatchUpStatus::Cancelled,
            _ = opts.throttle.admit(limit as u64) => {}
        }
        let attempt = async {
            if writer.is_none() {
                writer = Some(BatchWriter::open(link.target()).await?);
            }
            let w = writer.as_mut().ok_or_else(|| EngineError::Apply {
                what: "catch-up batch".into(),
                message: "no writer".into(),
            })?;
            let source = link.source();
            let changes = changelog::read(source, &position, limit).await?;
            let new_ones = changes.iter().filter(|c| c.seq > position.high).count();
            let mut next = changelog::advance(&position, &changes);
            changelog::expire_gaps(source, &mut next, opts.gap_timeout).await?;
            let mut keys = Vec::new();
            for k in apply::keys_for_changes(link, &bucket.table, &changes).await? {
                match &k.bucket {
                    Some(b) if !bucket.range.contains(b) => {}
                    _ => keys.push(k.key),
                }
            }
            let report = apply::apply_keys_with(
                link,
                w,
                &[TableKeys {
                    table: bucket.table.clone(),
                    keys,
                }],
                Some(&admit),
                vec![advance_watermark(
                    link.target().dialect(),
                    &bucket.table,
                    bucket.index,
                    &next,
                )],
            )
            .await?;
            let at_head = new_ones < limit;
            let lag = if at_head {
                // This read reached the head: nothing was left after it.
                Lag::default()
            } else {
                changelog::lag(source, &next).await?
            };
            Ok::<_, EngineError>((next, changes.len() as u64, report, at_head, lag))
        };
        match attempt.await {
            Ok((next, n, report, at_head, lag)) => {
                backoff.reset();
                position = next;
                progress.position = position.clone();
                total.add(&report);
                progress.changes += n;
                progress.keys_applied = total.keys;
                progress.rows_written = total.rows_written;
                progress.keys_deleted = total.keys_deleted;
                progress.lag = lag;
                progress.last_error = None;
                progress.elapsed = started.elapsed();
                let secs = progress.elapsed.as_secs_f64();
                progress.rate = if secs > 0.0 {
                    progress.changes as f64 / secs
                } else {
                    0.0
                };
                if let Some(cb) = &opts.progress {
                    cb(&progress);
                }
                if at_head {
                    break CatchUpStatus::CaughtUp;
                }
            }
            Err(e) if is_transient(&e) => {
                writer = None;
                let wait = backoff.next_wait();
                progress.retries += 1;
                progress.last_error = Some(e.to_string());
                tracing::warn!(table = %bucket.table, bucket = bucket.index, error = %e,
                    retry_in_ms = wait.as_millis() as u64, "catch-up batch failed; retrying it");
                if let Some(cb) = &opts.progress {
                    cb(&progress);
                }
                tokio::select! {
                    biased;
                    _ = opts.cancel.cancelled() => break CatchUpStatus::Cancelled,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            Err(e) => return Err(e),
        }
    };
    let caught_up_at = if status == CatchUpStatus::CaughtUp {
        let at = link.source().clock_micros().await?;
        checkpoint::set_caught_up(link.target(), &bucket.table, bucket.index, Some(at)).await?;
        tracing::info!(table = %bucket.table, bucket = bucket.index, position = %position,
            changes = progress.changes, "bucket caught up");
        Some(at)
    } else {
        None
    };
    Ok(CatchUpSummary {
        table: bucket.table.clone(),
        bucket: bucket.index,
        status,
        from: Some(from),
        to: Some(position),
        changes: progress.changes,
        keys_applied: progress.keys_applied,
        rows_written: progress.rows_written,
        keys_deleted: progress.keys_deleted,
        lag: progress.lag,
        caught_up_at,
        retries: progress.retries,
        elapsed: started.elapsed(),
    })
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
    opts: &CatchUpOptions,
) -> Result<CatchUpSummary> {
    link.check_writable()?;
    let started = Instant::now();
    let chunk_rows = link.spec().chunk_rows;
    let mut reader = link.window_reader(bucket, window, chunk_rows)?;
    let pipeline = link.pipeline(&bucket.table)?;
    let mut writer = BatchWriter::open(link.target()).await?;
    let mut progress = CatchUpProgress {
        table: bucket.table.clone(),
        bucket: bucket.index,
        position: Position::start(),
        changes: 0,
        keys_applied: 0,
        rows_written: 0,
        keys_deleted: 0,
        rate: 0.0,
        lag: Lag::default(),
        retries: 0,
        last_error: None,
        elapsed: Duration::ZERO,
    };
    let status = loop {
        tokio::select! {
            biased;
            _ = opts.cancel.cancelled() => break CatchUpStatus::Cancelled,
            _ = opts.throttle.admit(chunk_rows as u64) => {}
        }
        let Some(chunk) = reader.next_chunk().await? else {
            break CatchUpStatus::CaughtUp;
        };
        let n = chunk.rows.len() as u64;
        let range = chunk.describe_keys();
        let end = chunk.end;
        let version = chunk.version;
        let output = pipeline.apply(chunk.rows)?;
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
        progress.changes += n;
        progress.keys_applied += n;
        progress.rows_written += output.rows() as u64;
        progress.elapsed = started.elapsed();
        let secs = progress.elapsed.as_secs_f64();
        progress.rate = if secs > 0.0 {
            progress.changes as f64 / secs
        } else {
            0.0
        };
        if let Some(cb) = &opts.progress {
            cb(&progress);
        }
        if end {
            break CatchUpStatus::CaughtUp;
        }
    };
    tracing::info!(table = %bucket.table, bucket = bucket.index, rows = progress.changes,
        column = %window.column, status = ?status, "window catch-up finished");
    Ok(CatchUpSummary {
        table: bucket.table.clone(),
        bucket: bucket.index,
        status,
        from: None,
        to: None,
        changes: progress.changes,
        keys_applied: progress.keys_applied,
        rows_written: progress.rows_written,
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
        let s = advance_watermark(Dialect::Postgres, "items", 3, &Position::at(42));
        assert_eq!(
            s.sql,
            "UPDATE \"_tern_checkpoints\" SET watermark = $1, updated_at = $2 WHERE table_name = $3 AND bucket = $4"
        );
        assert_eq!(s.params[0], Value::Text("42".into()));
        assert_eq!(s.params[3], Value::Int(3));
    }
}
