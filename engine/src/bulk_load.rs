//! The bulk load: the orchestrator that plans buckets and copies them, chunk
//! by chunk, from source to target, and the same read → transform →
//! version-guarded write path for single keys ([`BulkLoader::load_keys`]),
//! which the dual-write relay and catch-up reuse.
//!
//! Per bucket, a reader task reads chunks in key order (asking the throttle
//! before each) and transforms them, while the writer commits the previous
//! chunk with its checkpoint; at most two chunks are in memory at a time,
//! whatever the table size. Every target row carries `_tern_version`, the
//! source clock taken *before* its chunk was read, and no write replaces a
//! row with a newer version (seed 001's If-Unmodified-Since), so a load may run
//! while live writes touch the same rows, and a chunk written twice (after a
//! crash) is harmless.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::buckets::{self, Bucket, Plan};
use crate::checkpoint;
use crate::chunk::{Chunk, ChunkReader, KeyRange, SourceQuery};
use crate::connector::{Connector, VERSION_COLUMN};
use crate::error::{EngineError, Result};
use crate::progress::{Progress, ProgressFn};
use crate::spec::{Spec, TableSpec, TrackMap, Transform};
use crate::throttle::{RateThrottle, Throttle};
use crate::transform::{Output, Pipeline, Record, SourceColumn, TableShape, TransformerRegistry};
use crate::value::{ColumnType, Value, key_identity, render_key};
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

    async fn build(
        spec: Spec,
        source: Connector,
        target: Connector,
        registry: &TransformerRegistry,
        writable: bool,
    ) -> Result<BulkLoader> {
        // 1. Describe every source and compile against provisional shapes.
        let mut described: Vec<(usize, Arc<SourceQuery>)> = Vec::new();
        let mut inferred: Vec<Vec<Option<ColumnType>>> = Vec::new();
        for (i, t) in spec.tables.iter().enumerate() {
            if t.source.is_some() {
                let q = Arc::new(SourceQuery::prepare(&source, t).await?);
                inferred.push(Pipeline::inferred_types(&spec, t, &q.columns)?);
                described.push((i, q));
            } else {
                inferred.push(
                    t.columns
                        .iter()
                        .map(|c| c.cast.or_else(|| constant_type(&c.transform)))
                        .collect(),
                );
            }
        }
        let provisional: Vec<Arc<TableShape>> = spec
            .tables
            .iter()
            .zip(&inferred)
            .map(|(t, ty)| Arc::new(TableShape::new(t, ty.clone())))
            .collect();
        for (i, q) in &described {
            Pipeline::compile(
                &spec,
                &spec.tables[*i],
                &q.columns,
                provisional.clone(),
                registry,
            )?;
        }

        // 2. Target tables: create missing ones, check existing ones.
        let mut shapes = provisional;
        if writable {
            shapes = Vec::new();
            for (t, ty) in spec.tables.iter().zip(&inferred) {
                let types = ensure_target_table(&spec, &target, t, ty).await?;
                shapes.push(Arc::new(TableShape::new(t, types)));
            }
            checkpoint::ensure_table(&target).await?;
        }

        // 3. Final pipelines, casting to the target's real column types.
        let mut tables = Vec::new();
        for (i, query) in described {
            let t = &spec.tables[i];
            let pipeline = Arc::new(Pipeline::compile(
                &spec,
                t,
                &query.columns,
                shapes.clone(),
                registry,
            )?);
            tables.push(LoadTable {
                spec: t.clone(),
                query,
                pipeline,
            });
        }
        Ok(BulkLoader {
            spec: Arc::new(spec),
            source,
            target,
            tables,
            writable,
        })
    }

    fn check_writable(&self) -> Result<()> {
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
        checkpoint::store_plan(&self.target, &plan).await?;
        Ok(plan)
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
        };
        if cp.done {
            report.status = LoadStatus::AlreadyDone;
            return Ok(report);
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

    /// Re-reads the current source rows of the given source keys of `table`
    /// (through its query, joins, transformers and dedupers) and writes them
    /// version-guarded, exactly as the bulk load would. The relay and the
    /// catch-up call this for the keys a change touched.
    pub async fn load_keys(&self, table: &str, keys: &[Vec<Value>]) -> Result<KeysReport> {
        self.check_writable()?;
        let t = self.table(table)?;
        let mut report = KeysReport {
            rows_read: 0,
            rows_written: 0,
            missing: Vec::new(),
        };
        let mut writer = BatchWriter::open(&self.target).await?;
        for batch in keys.chunks(500) {
            // Clock before the read, for the reason given in `chunk.rs`.
            let version = self.source.clock_micros().await?;
            let (sql, params) = t.query.keys_sql(batch);
            let (_, rows) = self
                .source
                .fetch(
                    &sql,
                    &params,
                    &format!("read {} keys {}..", table, render_key(&batch[0])),
                )
                .await?;
            let found: HashSet<String> = rows
                .iter()
                .map(|r| {
                    let k = t.query.key_of(r);
                    key_identity(&k.iter().collect::<Vec<_>>())
                })
                .collect();
            for k in batch {
                if !found.contains(&key_identity(&k.iter().collect::<Vec<_>>())) {
                    report.missing.push(k.clone());
                }
            }
            report.rows_read += rows.len() as u64;
            let output = t.pipeline.apply(rows)?;
            writer
                .write(&output, version, &[])
                .await
                .map_err(|message| EngineError::Row {
                    table: table.to_string(),
                    key: render_key(&batch[0]),
                    message: format!(
                        "target rejected the rows of {} keys: {message}",
                        batch.len()
                    ),
                })?;
            report.rows_written += output.rows() as u64;
        }
        Ok(report)
    }

    /// The source keys of `table` that a change to a row of `changed_table`
    /// affects, by the table's `tracks` (for a table source: the row's key).
    /// `row` holds the changed row's columns (old or new image).
    pub async fn keys_for_change(
        &self,
        table: &str,
        changed_table: &str,
        row: &Record<'_>,
    ) -> Result<Vec<Vec<Value>>> {
        let t = self.table(table)?;
        let Some(src) = &t.spec.source else {
            return Ok(Vec::new());
        };
        let mut keys = Vec::new();
        for track in src.tracks.iter().filter(|tr| tr.table == changed_table) {
            match &track.map {
                TrackMap::Columns(cols) => {
                    let key = cols
                        .iter()
                        .map(|c| {
                            row.get(c).cloned().ok_or_else(|| {
                                EngineError::schema(
                                    table,
                                    format!("changed row of {changed_table} has no column {c}"),
                                )
                            })
                        })
                        .collect::<Result<Vec<_>>>()?;
                    keys.push(key);
                }
                TrackMap::Query(q) => {
                    let (sql, params) =
                        named_params(q, row, self.source.dialect()).map_err(|m| {
                            EngineError::schema(table, format!("track of {changed_table}: {m}"))
                        })?;
                    let (_, rows) = self
                        .source
                        .fetch(
                            &sql,
                            &params,
                            &format!("map a change of {changed_table} to keys of {table}"),
                        )
                        .await?;
                    keys.extend(rows);
                }
            }
        }
        Ok(keys)
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

/// `:name` placeholders of a track query → the dialect's placeholders and
/// the changed row's values.
fn named_params(
    sql: &str,
    row: &Record<'_>,
    d: crate::connector::Dialect,
) -> std::result::Result<(String, Vec<Value>), String> {
    let mut out = String::with_capacity(sql.len());
    let mut params = Vec::new();
    let mut chars = sql.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        let next_is_ident = chars
            .peek()
            .is_some_and(|(_, n)| n.is_ascii_alphabetic() || *n == '_');
        if c == ':' && next_is_ident && !out.ends_with(':') {
            let mut name = String::new();
            while let Some(&(_, n)) = chars.peek() {
                if n.is_ascii_alphanumeric() || n == '_' {
                    name.push(n);
                    chars.next();
                } else {
                    break;
                }
            }
            let v = row
                .get(&name)
                .ok_or_else(|| format!("the changed row has no column {name}"))?;
            params.push(v.clone());
            out.push_str(&d.placeholder(params.len()));
        } else {
            out.push(c);
        }
    }
    Ok((out, params))
}

fn constant_type(t: &Transform) -> Option<ColumnType> {
    match t {
        Transform::Constant(v) => v.column_type(),
        _ => None,
    }
}

/// Creates `t` in the target when missing (its key as primary key, plus the
/// version column) and returns the target's column types; an existing table
/// must have every spec column and the version column.
async fn ensure_target_table(
    spec: &Spec,
    target: &Connector,
    t: &TableSpec,
    inferred: &[Option<ColumnType>],
) -> Result<Vec<Option<ColumnType>>> {
    let d = target.dialect();
    if let Some(existing) = target.table_columns(&t.name).await? {
        let find = |name: &str| {
            existing
                .iter()
                .find(|c: &&SourceColumn| c.name.eq_ignore_ascii_case(name))
        };
        if find(VERSION_COLUMN).is_none() {
            return Err(EngineError::schema(
                &t.name,
                format!(
                    "the target table has no {VERSION_COLUMN} column, which guards newer rows from older copies; \
                     add it: ALTER TABLE {} ADD COLUMN {VERSION_COLUMN} BIGINT NOT NULL DEFAULT 0",
                    d.quote(&t.name)
                ),
            ));
        }
        return t
            .columns
            .iter()
            .map(|c| {
                find(&c.name).map(|e| e.ty).ok_or_else(|| {
                    EngineError::schema(
                        &t.name,
                        format!(
                            "the target table has no column {} (spec line {})",
                            c.name, c.line
                        ),
                    )
                })
            })
            .collect();
    }
    let mut defs = Vec::new();
    for (c, ty) in t.columns.iter().zip(inferred) {
        let Some(ty) = ty else {
            return Err(spec.error_at(
                c.line,
                &format!("{}.columns.{}", t.field(), c.name),
                "the type of this column cannot be told from the source; give it with `cast = \"…\"` or create the target table yourself",
            ));
        };
        let in_key = t.key.contains(&c.name);
        let not_null = if in_key { " NOT NULL" } else { "" };
        defs.push(format!(
            "{} {}{not_null}",
            d.quote(&c.name),
            target.sql_type(*ty, in_key)
        ));
    }
    defs.push(format!("{} BIGINT NOT NULL", d.quote(VERSION_COLUMN)));
    let key: Vec<String> = t.key.iter().map(|k| d.quote(k)).collect();
    let sql = format!(
        "CREATE TABLE IF NOT EXISTS {} ({}, PRIMARY KEY ({}))",
        d.quote(&t.name),
        defs.join(", "),
        key.join(", ")
    );
    target
        .execute(&sql, &[], &format!("create target table {}", t.name))
        .await?;
    tracing::info!(table = %t.name, "created target table");
    Ok(inferred.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connector::Dialect;

    #[test]
    fn track_queries_take_named_values_from_the_changed_row() -> std::result::Result<(), String> {
        let cols = vec!["id".to_string(), "thread_id".to_string()];
        let vals = vec![Value::Int(1), Value::Int(9)];
        let row = Record {
            columns: &cols,
            values: &vals,
        };
        let (sql, params) = named_params(
            "SELECT member_id, id FROM inbox WHERE thread_id = :thread_id AND x::text = 'a'",
            &row,
            Dialect::Postgres,
        )?;
        assert_eq!(
            sql,
            "SELECT member_id, id FROM inbox WHERE thread_id = $1 AND x::text = 'a'"
        );
        assert_eq!(params, vec![Value::Int(9)]);
        Ok(())
    }
}
