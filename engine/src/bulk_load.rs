//! The bulk load: copies one bucket of one table from source to target,
//! chunk by chunk, resumable from its checkpoint. Planning, the checkpoints
//! and everything described about the tables come from the [`Link`]; single
//! keys go through the apply path ([`crate::apply`]) instead.
//!
//! Per bucket, a reader task reads chunks in key order (asking the throttle
//! before each) and transforms them, while the writer commits the previous
//! chunk with its checkpoint; at most three chunks are in memory at a time,
//! whatever the table size. Every target row carries `_tern_version`, the
//! source clock taken *before* its chunk was read, and no write replaces a
//! row with a newer version (seed 001's If-Unmodified-Since), so a load may run
//! while live writes touch the same rows, and a chunk written twice (after a
//! crash) is harmless.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::apply::groups::SharedRows;
use crate::buckets::Bucket;
use crate::capture;
use crate::changelog::Position;
use crate::checkpoint;
use crate::chunk::{Chunk, ChunkReader, SourceQuery};
use crate::connector::Connector;
use crate::error::{EngineError, Result};
use crate::index_build;
use crate::link::Link;
use crate::progress::{Progress, Task, Unit};
use crate::run_control::RunControl;
use crate::transform::{Output, Pipeline};
use crate::writer::BatchWriter;

/// How a bucket load ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadStatus {
    /// Every row of the bucket is copied.
    Completed,
    /// The bucket was already done by an earlier run.
    AlreadyDone,
    /// Cancelled between chunks; resume with another `load_bucket`.
    Cancelled,
}

/// What a bucket load did.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketReport {
    pub table: String,
    pub bucket: usize,
    pub status: LoadStatus,
    /// Source rows read and committed by this run.
    pub rows_read: u64,
    /// Target rows written by this run, all tables (after dedupe).
    pub rows_written: u64,
    pub chunks: u64,
    pub elapsed: Duration,
    /// The changelog position taken before the bucket's first row was read
    /// (the catch-up starts here); `None` when change capture was not
    /// installed when the bucket's load began.
    pub watermark: Option<Position>,
    /// When that position was taken: source clock, µs since the epoch.
    pub snapshot_at: Option<i64>,
}

/// Copies one bucket, resuming after its checkpoint. `control` throttles
/// every chunk by its rows, stops the load between chunks (what was
/// committed stays, and the checkpoint says where to resume), and hears of
/// every committed chunk.
pub async fn load_bucket(
    link: &Link,
    bucket: &Bucket,
    control: &RunControl,
) -> Result<BucketReport> {
    link.check_writable()?;
    let started = Instant::now();
    let t = link.table(&bucket.table)?;
    let mut cp = checkpoint::begin(link.target(), bucket).await?;
    if let Some(fence) = &control.fence {
        // Claimed before reading where to resume: a worker that held the job
        // before is refused from here on (see `fence.rs`).
        checkpoint::claim(link.target(), &bucket.table, bucket.index, fence).await?;
        cp = checkpoint::begin(link.target(), bucket).await?;
    }
    let mut report = BucketReport {
        table: bucket.table.clone(),
        bucket: bucket.index,
        status: LoadStatus::Completed,
        rows_read: 0,
        rows_written: 0,
        chunks: 0,
        elapsed: Duration::ZERO,
        watermark: cp.watermark.clone(),
        snapshot_at: cp.snapshot_at,
    };
    if cp.done {
        report.status = LoadStatus::AlreadyDone;
        index_build::after_bucket(link, &bucket.table, control).await?;
        return Ok(report);
    }
    // An empty target table loads against its primary key alone; its other
    // indexes are built after its last bucket (`index_build.rs`).
    index_build::before_load(link, &bucket.table).await?;
    // THE WATERMARK. The changelog position is fixed here, before the
    // reader below reads the bucket's first row, and it is the only thing
    // that makes a live copy complete. Every source change is either
    // committed before a row is read (then the copy read it), or committed
    // after, and a change committed after this moment is logged after
    // this position or in one of its gaps (a change logged earlier whose
    // transaction was still open: `capture::head_position` records those).
    // So the catch-up, replaying from here, misses nothing the copy missed.
    // Taken after the first read, a change committed in between would be
    // in neither the copy nor the replay: silently lost. Replaying a change
    // the copy already saw is harmless (the replay re-reads current source
    // rows, version-guarded). A resumed load keeps the position its first
    // run took; one begun without capture has none, and says so.
    if report.watermark.is_none() && cp.last_key.is_none() && cp.rows_written == 0 {
        let snapshot_at = link.source().clock_micros().await?;
        if let Some(w) = capture::head_position(link.source()).await? {
            checkpoint::set_watermark(link.target(), &bucket.table, bucket.index, &w, snapshot_at)
                .await?;
            report.watermark = Some(w);
            report.snapshot_at = Some(snapshot_at);
        } else {
            tracing::warn!(
                table = %bucket.table,
                bucket = bucket.index,
                "change capture is not installed: this bucket gets no watermark, and only a \
                 window catch-up can bring it up to date after the load"
            );
        }
    }
    let mut writer = BatchWriter::open(link.target()).await?;
    let reader = ChunkReader::new(
        link.source().clone(),
        t.query.clone(),
        bucket.range.clone(),
        cp.last_key.clone(),
        link.spec().chunk_rows,
        bucket.index,
    );
    // One chunk in the channel, one being read, one being written.
    let (tx, mut rx) = mpsc::channel::<Result<(Chunk, u64, Output)>>(1);
    let shared = t
        .shared
        .clone()
        .map(|s| (s, t.query.clone(), link.source().clone()));
    let reader_task = tokio::spawn(read_and_transform(
        reader,
        t.pipeline.clone(),
        shared,
        control.clone(),
        link.spec().chunk_rows as u64,
        tx,
    ));
    let mut rows_done = cp.rows_written;
    let mut progress = Progress::new(
        Task::BulkLoad {
            table: bucket.table.clone(),
            bucket: bucket.index,
        },
        Unit::Rows,
    );
    let mut waited = Duration::ZERO;
    let mut writing = Duration::ZERO;
    let result = loop {
        let wait_started = Instant::now();
        let next = tokio::select! {
            biased;
            _ = control.cancel.cancelled() => None,
            n = rx.recv() => n,
        };
        let Some(item) = next else {
            if control.cancel.is_cancelled() {
                report.status = LoadStatus::Cancelled;
            }
            break Ok(());
        };
        waited += wait_started.elapsed();
        let (chunk, n, output) = match item {
            Ok(x) => x,
            Err(e) => break Err(e),
        };
        let write_started = Instant::now();
        let advance = checkpoint::advance(
            link.target().dialect(),
            &bucket.table,
            bucket.index,
            chunk.last.as_deref(),
            n,
            chunk.end,
            control.fence.as_ref(),
        );
        if let Err(message) = writer.write(&output, chunk.version, &[advance]).await {
            if let Some(fence) = &control.fence {
                match checkpoint::fenced_out(link.target(), &bucket.table, bucket.index, fence)
                    .await
                {
                    Ok(Some(fenced)) => break Err(fenced),
                    Ok(None) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot read the bucket's fence"),
                }
            }
            break Err(EngineError::Chunk {
                table: bucket.table.clone(),
                bucket: bucket.index,
                range: chunk.describe_keys(),
                message: format!(
                    "target rejected the chunk, nothing of it was committed: {message}"
                ),
            });
        }
        writing += write_started.elapsed();
        rows_done += n;
        report.rows_read += n;
        report.rows_written += output.rows() as u64;
        report.chunks += 1;
        progress.measure(
            rows_done,
            report.rows_read,
            Some(cp.planned_rows.max(rows_done)),
            started.elapsed(),
        );
        progress.steps = report.chunks;
        progress.tally.rows_written = report.rows_written;
        control.report(&progress);
        if chunk.end {
            break Ok(());
        }
    };
    drop(rx);
    reader_task.abort();
    report.elapsed = started.elapsed();
    tracing::debug!(
        table = %bucket.table,
        bucket = bucket.index,
        waited_for_reader_ms = waited.as_millis() as u64,
        writing_ms = writing.as_millis() as u64,
        total_ms = report.elapsed.as_millis() as u64,
        "bucket timing"
    );
    result?;
    if report.status == LoadStatus::Completed {
        // The last bucket of the table builds what its load deferred.
        index_build::after_bucket(link, &bucket.table, control).await?;
    }
    Ok(report)
}

/// The reader side of a bucket load: throttle, read, transform, send.
async fn read_and_transform(
    mut reader: ChunkReader,
    pipeline: Arc<Pipeline>,
    shared: Option<(Arc<SharedRows>, Arc<SourceQuery>, Connector)>,
    control: RunControl,
    chunk_rows: u64,
    tx: mpsc::Sender<Result<(Chunk, u64, Output)>>,
) {
    loop {
        if !control.admit(chunk_rows).await {
            return;
        }
        let read_started = Instant::now();
        let next = reader.next_chunk().await;
        tracing::trace!(
            read_ms = read_started.elapsed().as_millis() as u64,
            "chunk read"
        );
        let item = match next {
            Ok(None) => return,
            Ok(Some(mut chunk)) => {
                // The source rows move into the transform; the writer needs
                // only their count and the chunk's positions.
                let rows = std::mem::take(&mut chunk.rows);
                let n = rows.len() as u64;
                // A shared row is written from the record its group keeps,
                // wherever that record is (see `apply/groups.rs`).
                let rows = match &shared {
                    Some((s, query, source)) => s.picks_within(source, query, rows).await,
                    None => Ok(rows),
                };
                match rows {
                    Ok(rows) => pipeline.transform(rows).await.map(|out| (chunk, n, out)),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        };
        let stop = item.is_err() || item.as_ref().is_ok_and(|(c, _, _)| c.end);
        if tx.send(item).await.is_err() || stop {
            return;
        }
    }
}
