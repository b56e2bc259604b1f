//! The bulk load: the orchestrator that plans buckets and copies them, chunk
//! by chunk, from source to target, and the same read → transform →
//! version-guarded write path for single keys ([`BulkLoader::load_keys`]),
//! which the dual-write relay and catch-up reuse.
//!
//! Per bucket, a reader task reads chunks in key order (asking the throttle
//! before each) and transforms them, while the writer commits the previous
//! chunk with its checkpoint; at most three chunks are in memory at a time,
//! whatever the table size. Every target row carries `_tern_version`, the
//! source clock taken *before* its chunk was read, and no write replaces a
//! row with a newer version (seed 001's If-Unmodified-Since), so a load may run
//! while live writes touch the same rows, and a chunk written twice (after a
//! crash) is harmless.

mod apply;
mod keys;
mod prepare;

pub(crate) use apply::prune_tombstones;
pub use apply::{ApplyReport, TOMBSTONE_TABLE, TableKeys};
pub use keys::ChangedKey;
pub(crate) use keys::placeholders;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::buckets::{self, Bucket, Plan};
use crate::capture;
use crate::changelog::Position;
use crate::checkpoint;
use crate::chunk::{Chunk, ChunkReader, KeyRange, SourceQuery};
use crate::connector::Connector;
use crate::error::{EngineError, Result};
use crate::progress::{Progress, ProgressFn};
use crate::spec::{Spec, TableSpec};
use crate::throttle::{RateThrottle, Throttle};
use crate::transform::{Output, Pipeline, TransformerRegistry};
use crate::value::Value;
use crate::writer::BatchWriter;

/// How a bucket load runs.
#[derive(Clone)]
pub struct LoadOptions {
    pub throttle: Arc<dyn Throttle>,
    pub progress: Option<ProgressFn>,
    /// Stops the load between chunks; what was committed stays committed and
    /// the checkpoint says where to resume.
    pub cancel: CancellationToken,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            throttle: Arc::new(RateThrottle::unlimited()),
            progress: None,
            cancel: CancellationToken::new(),
        }
    }
}

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

/// What a [`BulkLoader::load_keys`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct KeysReport {
    pub rows_read: u64,
    pub rows_written: u64,
    /// Requested keys the source no longer has (deleted rows). They are not
    /// touched in the target; deleting them is the relay's decision.
    pub missing: Vec<Vec<Value>>,
}

struct LoadTable {
    spec: TableSpec,
    query: Arc<SourceQuery>,
    pipeline: Arc<Pipeline>,
}

/// A spec made ready to run: source described, mapping compiled, target
/// tables and the checkpoint table present. One per migration.
pub struct BulkLoader {
    spec: Arc<Spec>,
    source: Connector,
    target: Connector,
    tables: Vec<LoadTable>,
    /// False for a loader made by [`BulkLoader::inspect`], which touched
    /// nothing in the target and cannot write.
    writable: bool,
    /// Columns of the source tables named in `tracks`, read once.
    tracked: tokio::sync::OnceCell<
        std::collections::HashMap<String, Vec<crate::transform::SourceColumn>>,
    >,
}

impl std::fmt::Debug for BulkLoader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BulkLoader")
            .field("source", &self.source.url())
            .field("target", &self.target.url())
            .field(
                "tables",
                &self.tables.iter().map(|t| &t.spec.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl BulkLoader {
    /// Connects to the spec's source and target and prepares the load.
    pub async fn connect(spec: Spec, registry: &TransformerRegistry) -> Result<BulkLoader> {
        let source = Connector::connect(&spec.source.url, "source").await?;
        let target = Connector::connect(&spec.target.url, "target").await?;
        BulkLoader::prepare(spec, source, target, registry).await
    }

    /// Prepares the load on existing connectors. Everything the spec says is
    /// checked against the source before anything is created in the target:
    /// an unknown column or transformer leaves the target untouched.
    pub async fn prepare(
        spec: Spec,
        source: Connector,
        target: Connector,
        registry: &TransformerRegistry,
    ) -> Result<BulkLoader> {
        BulkLoader::build(spec, source, target, registry, true).await
    }

    /// Connects and checks the spec against the source without creating or
    /// changing anything in the target: for planning. The loader it gives can
    /// plan and read, not load.
    pub async fn inspect(spec: Spec, registry: &TransformerRegistry) -> Result<BulkLoader> {
        let source = Connector::connect(&spec.source.url, "source").await?;
        let target = Connector::connect(&spec.target.url, "target").await?;
        BulkLoader::build(spec, source, target, registry, false).await
    }

    pub(crate) fn check_writable(&self) -> Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(EngineError::Spec {
                at: self.spec.file.clone(),
                message:
                    "this loader was made for inspection and cannot write; use BulkLoader::connect"
                        .into(),
            })
        }
    }

    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    pub fn source(&self) -> &Connector {
        &self.source
    }

    pub fn target(&self) -> &Connector {
        &self.target
    }

    /// Names of the tables that have a source, in spec order.
    pub fn tables(&self) -> Vec<&str> {
        self.tables.iter().map(|t| t.spec.name.as_str()).collect()
    }

    fn table(&self, name: &str) -> Result<&LoadTable> {
        self.tables
            .iter()
            .find(|t| t.spec.name == name)
            .ok_or_else(|| EngineError::Spec {
                at: self.spec.file.clone(),
                message: format!(
                    "no table `{name}` with a source (loadable: {})",
                    self.tables().join(", ")
                ),
            })
    }

    /// The described source query of a table (verification reads by it).
    pub(crate) fn source_query(&self, table: &str) -> Result<Arc<SourceQuery>> {
        Ok(self.table(table)?.query.clone())
    }

    /// The compiled transform of a table, to run on chunks outside a load.
    pub fn pipeline(&self, table: &str) -> Result<Arc<Pipeline>> {
        Ok(self.table(table)?.pipeline.clone())
    }

    /// A key-ordered chunk reader over a range of a table's source.
    pub fn chunk_reader(
        &self,
        table: &str,
        range: KeyRange,
        after: Option<Vec<Value>>,
    ) -> Result<ChunkReader> {
        let t = self.table(table)?;
        Ok(ChunkReader::new(
            self.source.clone(),
            t.query.clone(),
            range,
            after,
            self.spec.chunk_rows,
            0,
        ))
    }

    /// A reader of a bucket's rows whose `window.column` is in the window,
    /// for a window catch-up. The window's bounds are cast to the column's type.
    pub fn window_reader(
        &self,
        bucket: &Bucket,
        window: &crate::chunk::Window,
        chunk_rows: usize,
    ) -> Result<ChunkReader> {
        let t = self.table(&bucket.table)?;
        let Some(col) = t.query.columns.iter().find(|c| c.name == window.column) else {
            return Err(EngineError::schema(
                &bucket.table,
                format!(
                    "the source has no column {} to take the catch-up window from (its columns: {})",
                    window.column,
                    t.query
                        .columns
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        };
        let cast = |v: &Value| match col.ty {
            Some(ty) => v.clone().cast(ty).map_err(|m| {
                EngineError::schema(
                    &bucket.table,
                    format!("catch-up window on {}: {m}", col.name),
                )
            }),
            None => Ok(v.clone()),
        };
        Ok(ChunkReader::new(
            self.source.clone(),
            t.query.clone(),
            bucket.range.clone(),
            None,
            chunk_rows,
            bucket.index,
        )
        .with_window(&window.column, cast(&window.from)?, cast(&window.to)?))
    }

    /// Plans a table's buckets from the source as it is now (nothing is stored).
    pub async fn plan(&self, table: &str, buckets: Option<usize>) -> Result<Plan> {
        let t = self.table(table)?;
        buckets::plan(&self.source, &t.query, buckets.unwrap_or(t.spec.buckets)).await
    }

    /// The plan stored in the target by an earlier load, if any.
    pub async fn stored_plan(&self, table: &str) -> Result<Option<Plan>> {
        let t = self.table(table)?;
        checkpoint::load_plan(&self.target, table, &t.query.bucket).await
    }

    /// The stored plan, or a fresh one that is stored before anything is
    /// copied, so that a restarted load keeps its bucket ranges.
    pub async fn plan_or_resume(&self, table: &str, buckets: Option<usize>) -> Result<Plan> {
        self.check_writable()?;
        if let Some(p) = self.stored_plan(table).await? {
            return Ok(p);
        }
        let plan = self.plan(table, buckets).await?;
        match checkpoint::store_plan(&self.target, &plan).await {
            Ok(()) => Ok(plan),
            // Another process stored its plan first: every process must copy
            // by the same plan, so use the stored one.
            Err(e) => match self.stored_plan(table).await? {
                Some(stored) => Ok(stored),
                None => Err(e),
            },
        }
    }

    /// Checkpoints of a table's buckets.
    pub async fn checkpoints(&self, table: &str) -> Result<Vec<checkpoint::Checkpoint>> {
        checkpoint::load_all(&self.target, table).await
    }

    /// Forgets a table's plan and checkpoints; the next load starts over.
    pub async fn forget(&self, table: &str) -> Result<u64> {
        checkpoint::forget(&self.target, table).await
    }

    /// Copies one bucket, resuming after its checkpoint.
    pub async fn load_bucket(&self, bucket: &Bucket, opts: &LoadOptions) -> Result<BucketReport> {
        self.check_writable()?;
        let started = Instant::now();
        let t = self.table(&bucket.table)?;
        let cp = checkpoint::begin(&self.target, bucket).await?;
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
            return Ok(report);
        }
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
            let snapshot_at = self.source.clock_micros().await?;
            if let Some(w) = capture::head_position(&self.source).await? {
                checkpoint::set_watermark(
                    &self.target,
                    &bucket.table,
                    bucket.index,
                    &w,
                    snapshot_at,
                )
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
        let mut writer = BatchWriter::open(&self.target).await?;
        let reader = ChunkReader::new(
            self.source.clone(),
            t.query.clone(),
            bucket.range.clone(),
            cp.last_key.clone(),
            self.spec.chunk_rows,
            bucket.index,
        );
        // One chunk in the channel, one being read, one being written.
        let (tx, mut rx) = mpsc::channel::<Result<(Chunk, u64, Output)>>(1);
        let reader_task = tokio::spawn(read_and_transform(
            reader,
            t.pipeline.clone(),
            opts.throttle.clone(),
            opts.cancel.clone(),
            self.spec.chunk_rows as u64,
            tx,
        ));
        let mut rows_done = cp.rows_written;
        let mut waited = Duration::ZERO;
        let mut writing = Duration::ZERO;
        let result = loop {
            let wait_started = Instant::now();
            let next = tokio::select! {
                biased;
                _ = opts.cancel.cancelled() => None,
                n = rx.recv() => n,
            };
            let Some(item) = next else {
                if opts.cancel.is_cancelled() {
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
                self.target.dialect(),
                &bucket.table,
                bucket.index,
                chunk.last.as_deref(),
                n,
                chunk.end,
            );
            if let Err(message) = writer.write(&output, chunk.version, &[advance]).await {
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
            if let Some(cb) = &opts.progress {
                cb(&Progress::compute(
                    &bucket.table,
                    bucket.index,
                    rows_done,
                    cp.planned_rows.max(rows_done),
                    report.rows_read,
                    report.chunks,
                    started.elapsed(),
                ));
            }
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
        result.map(|()| report)
    }
}

/// The reader side of a bucket load: throttle, read, transform, send.
async fn read_and_transform(
    mut reader: ChunkReader,
    pipeline: Arc<Pipeline>,
    throttle: Arc<dyn Throttle>,
    cancel: CancellationToken,
    chunk_rows: u64,
    tx: mpsc::Sender<Result<(Chunk, u64, Output)>>,
) {
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = throttle.admit(chunk_rows) => {}
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
                pipeline.apply(rows).map(|out| (chunk, n, out))
            }
            Err(e) => Err(e),
        };
        let stop = item.is_err() || item.as_ref().is_ok_and(|(c, _, _)| c.end);
        if tx.send(item).await.is_err() || stop {
            return;
        }
    }
}
