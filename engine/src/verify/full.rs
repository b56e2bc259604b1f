//! The full diff: every row of the scope's buckets, `parallelism` buckets
//! at a time, each in its own task. The source is read chunk by chunk in key
//! order through the bulk load's own transform; for each chunk the target
//! rows of the same key range are read in one query (or, when the target key
//! is not the source key, looked up by key and by `_tern_source_key`), and
//! compared. A chunk's mismatches and its bucket's progress commit together,
//! so a stopped run resumes without losing or double-counting a chunk. Where
//! the mapping allows, buckets take the checksum path instead
//! ([`super::checksum`]).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use super::checksum::{self, Checksums};
use super::context::{BucketDiff, Ctx};
use super::grouped::Span;
use super::in_flight::Settling;
use super::results::Counts;
use super::store;
use crate::buckets::Bucket;
use crate::chunk::ChunkReader;
use crate::error::{EngineError, Result};
use crate::run_control::RunControl;
use crate::value::Value;

/// What a full diff of the scope's buckets did.
pub(super) struct FullDiff {
    /// Source rows this run read (or covered by checksums).
    pub read: u64,
    /// Every bucket finished.
    pub complete: bool,
    /// Rows found equal by chunk checksums without being read row by row.
    pub by_checksum: u64,
    /// A chunk was checked without its span of source keys (see
    /// [`BucketDiff::spanless`]).
    pub spanless: bool,
}

/// Full diff of the buckets, `parallelism` at a time, each in its own task,
/// by chunk checksums when `sums` is given. Adds what it finds to `counts`.
pub(super) async fn run(
    ctx: &Ctx,
    sums: Option<Arc<Checksums>>,
    buckets: Vec<Bucket>,
    parallelism: usize,
    control: &RunControl,
    counts: &mut Counts,
) -> Result<FullDiff> {
    // The buckets stop each other on an error, not the caller's run.
    let control = control.child();
    let sem = Arc::new(tokio::sync::Semaphore::new(parallelism.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for b in buckets {
        let ctx = ctx.clone();
        let control = control.clone();
        let sums = sums.clone();
        let sem = sem.clone();
        tasks.spawn(async move {
            let _permit = sem.acquire_owned().await;
            store::start_progress(&ctx.target, &ctx.run_id, b.index).await?;
            let progress = store::load_progress(&ctx.target, &ctx.run_id, b.index)
                .await?
                .unwrap_or_default();
            if progress.done {
                return Ok(BucketDiff {
                    spanless: false,
                    counts: progress.counts,
                    done: true,
                    read: 0,
                    by_checksum: 0,
                });
            }
            match sums {
                Some(sums) => checksum::full_bucket(&ctx, &sums, &b, &control, progress).await,
                None => full_bucket(&ctx, &b, &control, progress).await,
            }
        });
    }
    let mut diff = FullDiff {
        read: 0,
        complete: true,
        by_checksum: 0,
        spanless: false,
    };
    let mut first_err = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(b)) => {
                counts.add(&b.counts);
                diff.read += b.read;
                diff.by_checksum += b.by_checksum;
                diff.complete &= b.done;
                diff.spanless |= b.spanless;
            }
            Ok(Err(e)) => {
                control.cancel.cancel();
                first_err.get_or_insert(e);
            }
            Err(e) => {
                control.cancel.cancel();
                first_err.get_or_insert(EngineError::Apply {
                    what: format!("verify {}", ctx.table),
                    message: format!("a bucket task failed: {e}"),
                });
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(diff),
    }
}

/// A chunk read and transformed by the reader task.
struct ReadChunk {
    expected: Vec<Vec<Value>>,
    rows: u64,
    last: Option<Vec<Value>>,
    end: bool,
}

/// Compares one bucket chunk by chunk from its progress (not done yet),
/// reading every row.
async fn full_bucket(
    ctx: &Ctx,
    bucket: &Bucket,
    control: &RunControl,
    progress: store::BucketProgress,
) -> Result<BucketDiff> {
    let started = Instant::now();
    let mut counts = progress.counts;
    let reader = ChunkReader::new(
        ctx.source.clone(),
        ctx.query.clone(),
        bucket.range.clone(),
        progress.last_key.clone(),
        ctx.chunk_rows,
        bucket.index,
    );
    let (tx, mut rx) = mpsc::channel::<Result<ReadChunk>>(1);
    let reader_task = tokio::spawn(read_chunks(
        reader,
        ctx.clone(),
        ctx.table.clone(),
        control.clone(),
        ctx.chunk_rows as u64,
        tx,
    ));
    let mut after = progress.last_key.clone();
    let mut ord = counts.compared;
    let mut read = 0u64;
    let mut chunks = 0u64;
    let mut by_checksum = 0u64;
    let mut settling = Settling::default();
    let mut spanless = false;
    let result = loop {
        let next = tokio::select! {
            biased;
            _ = control.cancel.cancelled() => None,
            n = rx.recv() => n,
        };
        let Some(item) = next else {
            break finish_stopped(&mut settling, ctx, bucket, &mut counts).await;
        };
        let chunk = match item {
            Ok(c) => c,
            Err(e) => break Err(e),
        };
        let mut found = Vec::new();
        let mut chunk_counts = Counts::default();
        // Transformed keys: only the groups whose checksums differ are read.
        let mut strays = Vec::new();
        let expected = match &ctx.grouped {
            Some(g) if !ctx.range_reads => {
                let span = Span::of_chunk(
                    ctx,
                    &bucket.range,
                    after.as_deref(),
                    chunk.last.as_deref(),
                    chunk.end,
                );
                spanless |= span.is_none();
                match g.check(ctx, chunk.expected, span).await {
                    Ok(checked) => {
                        chunk_counts.compared += checked.equal_rows;
                        chunk_counts.matched += checked.equal_rows;
                        ord += checked.equal_rows;
                        by_checksum += checked.equal_rows;
                        strays = checked.strays;
                        checked.expected
                    }
                    Err(e) => break Err(e),
                }
            }
            _ => chunk.expected,
        };
        let actual = if ctx.range_reads {
            let upto = if chunk.end {
                None
            } else {
                chunk.last.as_deref()
            };
            ctx.target_range(&bucket.range, after.as_deref(), upto)
                .await
        } else {
            let wanted: Vec<Vec<Value>> = expected.iter().map(|r| ctx.key_of(r)).collect();
            let sources: Vec<String> = match ctx.shape.source_key {
                Some(i) => {
                    let mut s: Vec<String> = expected
                        .iter()
                        .filter_map(|r| match &r[i] {
                            Value::Text(t) => Some(t.clone()),
                            _ => None,
                        })
                        .collect();
                    s.dedup();
                    s
                }
                None => Vec::new(),
            };
            ctx.target_lookup(&wanted, &sources).await
        };
        let mut actual = match actual {
            Ok(a) => a,
            Err(e) => break Err(e),
        };
        // Rows of records the chunk does not have: compared as extra.
        if !strays.is_empty() {
            let read: HashSet<_> = actual.iter().map(|r| ctx.key_id(r)).collect();
            actual.extend(
                strays
                    .into_iter()
                    .filter(|r| !read.contains(&ctx.key_id(r))),
            );
        }
        ctx.compare(
            expected,
            actual,
            bucket.index,
            &mut ord,
            &mut chunk_counts,
            &mut found,
        );
        // Committed once its rows in flight have settled, while the next
        // chunks are read (see `in_flight.rs`).
        settling.push(found, chunk_counts, chunk.last.clone(), chunk.end);
        match settling
            .commit_ready(ctx, bucket, control, &mut counts, chunk.end)
            .await
        {
            Ok(true) => {}
            Ok(false) => break finish_stopped(&mut settling, ctx, bucket, &mut counts).await,
            Err(e) => break Err(e),
        }
        if chunk.last.is_some() {
            after = chunk.last.clone();
        }
        read += chunk.rows;
        chunks += 1;
        ctx.report(control, bucket, &counts, read, chunks, started);
        if chunk.end {
            break Ok(true);
        }
    };
    drop(rx);
    reader_task.abort();
    result.map(|done| BucketDiff {
        spanless,
        counts,
        done,
        read,
        by_checksum,
    })
}

/// A stopped bucket still commits the chunks it has compared (waiting at
/// most one settle time for their rows in flight), so a resumed run starts
/// after them instead of reading them again. Answers "not done".
async fn finish_stopped(
    settling: &mut Settling,
    ctx: &Ctx,
    bucket: &Bucket,
    counts: &mut Counts,
) -> Result<bool> {
    settling
        .commit_ready(ctx, bucket, &RunControl::new(), counts, true)
        .await
        .map(|_| false)
}

/// Reads chunks (asking the throttle first) and transforms them.
async fn read_chunks(
    mut reader: ChunkReader,
    ctx: Ctx,
    table: String,
    control: RunControl,
    chunk_rows: u64,
    tx: mpsc::Sender<Result<ReadChunk>>,
) {
    loop {
        if !control.admit(chunk_rows).await {
            return;
        }
        let item = match reader.next_chunk().await {
            Ok(None) => return,
            Ok(Some(mut chunk)) => {
                let rows = std::mem::take(&mut chunk.rows);
                let n = rows.len() as u64;
                let rows = match &ctx.shared {
                    Some(s) => s.picks_within(&ctx.source, &ctx.query, rows).await,
                    None => Ok(rows),
                };
                let out = match rows {
                    Ok(rows) => ctx.pipeline.transform(rows).await,
                    Err(e) => Err(e),
                };
                out.map(|mut out| {
                    let i = out.tables.iter().position(|t| t.shape.name == table);
                    ReadChunk {
                        expected: i
                            .map(|i| std::mem::take(&mut out.tables[i].rows))
                            .unwrap_or_default(),
                        rows: n,
                        last: chunk.last,
                        end: chunk.end,
                    }
                })
            }
            Err(e) => Err(e),
        };
        let stop = item.as_ref().map_or(true, |c| c.end);
        if tx.send(item).await.is_err() || stop {
            return;
        }
    }
}
