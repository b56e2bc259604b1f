//! Extra target rows of records the source no longer has, for tables whose
//! target key is not a key range of the source (UUIDv5 keys, transformers,
//! dedupe, a bucket column ahead of the key, text keys between two kinds of
//! database). The chunk-by-chunk diff of such a table looks target rows up
//! by the keys and source keys of the records it reads, so a row whose record
//! was deleted is never met there. After every bucket is compared, this pass
//! walks the target table in key order, page by page, goes back to the source
//! through what each row keeps of it (`_tern_source_key`, or its key when
//! that is a plain copy of the source key), and lists every
//! row whose record is gone as extra, with the rest of the run's mismatches;
//! repair then deletes it through the apply path like any deleted record.
//!
//! Before walking, the source keys both sides hold are compared as sums per
//! group (`key_groups.rs`): where that works, only the target rows of the
//! groups that differ are read, and a target without orphans or missing rows
//! is not read at all.
//!
//! Aligned tables need no such pass: their target rows are read by key range,
//! so rows without a source record show up as extra in the diff itself; nor
//! do tables whose chunks are checked by group sums over whole spans of
//! integer source keys (`grouped.rs`), for the same reason.

use std::collections::HashSet;

use super::context::Ctx;
use super::key_groups;
use super::reads::range_where;
use super::results::{Counts, MismatchKind};
use crate::buckets::Bucket;
use crate::chunk::KeyRange;
use crate::error::Result;
use crate::run_control::RunControl;
use crate::value::{Value, identity};

/// Suspect groups holding at most this many target rows are read at once,
/// in table order.
const ONE_READ_ROWS: u64 = 100_000;

/// Whether a table's full diff needs the pass.
pub(super) fn needed(ctx: &Ctx) -> bool {
    !ctx.range_reads && (ctx.shape.source_key.is_some() || ctx.shape.key_from_source.is_some())
}

/// The comparison of source keys by group (`key_groups.rs`), started in its
/// own task so that both databases sum while the diff reads chunks. Either
/// moment is one point in time to compare at; each row it points to is
/// checked against the source again when read.
pub(super) struct Early(tokio::task::JoinHandle<Result<Option<key_groups::Suspects>>>);

impl Early {
    pub(super) fn start(ctx: &Ctx) -> Option<Early> {
        if ctx.row_by_row {
            return None;
        }
        let ctx = ctx.clone();
        Some(Early(tokio::spawn(async move {
            key_groups::suspects(&ctx).await
        })))
    }

    async fn suspects(mut self) -> Result<Option<key_groups::Suspects>> {
        (&mut self.0)
            .await
            .map_err(|e| crate::error::EngineError::Apply {
                what: "compare the source keys by group".into(),
                message: format!("the task failed: {e}"),
            })?
    }
}

impl Drop for Early {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Walks the target, adding the extra rows it finds to `counts` (numbered
/// after the `counts.compared` rows already met) and storing them. Returns
/// the target rows read, and whether it went to the end (not cancelled).
/// `early`: the group comparison started with the diff, if it was.
pub(super) async fn run(
    ctx: &Ctx,
    buckets: &[Bucket],
    control: &RunControl,
    counts: &mut Counts,
    early: Option<Early>,
) -> Result<(u64, bool)> {
    let d = ctx.target.dialect();
    let key_cols = ctx.target_key_columns();
    let page = ctx.chunk_rows.max(1);
    let mut after: Option<Vec<Value>> = None;
    let mut read = 0u64;
    let mut ord = counts.compared;
    let suspects = match (ctx.row_by_row, early) {
        (true, _) => None,
        (false, Some(early)) => early.suspects().await?,
        (false, None) => key_groups::suspects(ctx).await?,
    };
    let groups = match suspects {
        Some(s) if s.groups.is_empty() => return Ok((0, true)),
        // Few rows to read: one read in table order (a walk in key order
        // visits the whole table through its key index, page by page, to
        // find them), then checked page by page.
        Some(s) if s.target_rows <= ONE_READ_ROWS => {
            let rows = ctx
                .target_rows(&key_groups::target_where(ctx, &s.groups), &[])
                .await?;
            let read = rows.len() as u64;
            for part in rows.chunks(page) {
                if !control.admit(part.len() as u64).await {
                    return Ok((read, false));
                }
                check_page(ctx, buckets, part, &mut ord, counts).await?;
            }
            return Ok((read, true));
        }
        Some(s) => Some(key_groups::target_where(ctx, &s.groups)),
        None => None,
    };
    loop {
        if !control.admit(page as u64).await {
            return Ok((read, false));
        }
        let (where_, params) = range_where(
            d,
            &key_cols,
            &KeyRange::all(),
            after.as_deref(),
            None,
            &|v, _| v.clone(),
        );
        let where_ = match (&groups, where_.is_empty()) {
            (None, _) => where_,
            (Some(g), true) => g.clone(),
            (Some(g), false) => format!("{where_} AND {}", g.trim_start_matches(" WHERE ")),
        };
        let rows = ctx
            .target_rows(
                &format!("{where_} ORDER BY {} LIMIT {page}", key_cols.join(", ")),
                &params,
            )
            .await?;
        let end = rows.len() < page;
        read += rows.len() as u64;
        after = rows.last().map(|r| ctx.key_of(r));
        check_page(ctx, buckets, &rows, &mut ord, counts).await?;
        if end {
            return Ok((read, true));
        }
    }
}

/// Lists the rows of a page of target rows whose source record is gone as
/// extra (numbered from `ord`), stores them and adds them to `counts`.
async fn check_page(
    ctx: &Ctx,
    buckets: &[Bucket],
    rows: &[Vec<Value>],
    ord: &mut u64,
    counts: &mut Counts,
) -> Result<()> {
    let keys: Vec<Option<Vec<Value>>> = rows.iter().map(|r| ctx.source_key_of_target(r)).collect();
    let present = present_in_source(ctx, &keys).await?;
    let mut found = Vec::new();
    let mut page_counts = Counts::default();
    for (row, key) in rows.iter().zip(&keys) {
        let gone = key.as_ref().is_none_or(|k| !present.contains(&identity(k)));
        if !gone {
            continue;
        }
        *ord += 1;
        page_counts.compared += 1;
        page_counts.extra += 1;
        let bucket = key
            .as_ref()
            .and_then(|k| bucket_of(ctx, buckets, k))
            .unwrap_or(0);
        found.push(ctx.mismatch(
            ctx.key_id(row),
            bucket,
            *ord,
            MismatchKind::Extra,
            row,
            None,
            Some(row),
            Vec::new(),
        ));
    }
    if !found.is_empty() {
        ctx.store_found(&found).await?;
    }
    counts.add(&page_counts);
    Ok(())
}

/// The identities of the given source keys that the source still has.
async fn present_in_source(ctx: &Ctx, keys: &[Option<Vec<Value>>]) -> Result<HashSet<String>> {
    let wanted: Vec<Vec<Value>> = keys.iter().flatten().cloned().collect();
    let mut present = HashSet::with_capacity(wanted.len());
    for batch in wanted.chunks(super::context::KEYS_PER_BATCH) {
        let (sql, params) = ctx.query.keys_sql(batch);
        let (_, rows) = ctx
            .source
            .fetch(
                &sql,
                &params,
                &format!("look up the source records of {} target rows", ctx.table),
            )
            .await?;
        present.extend(rows.iter().map(|r| identity(&ctx.query.key_of(r))));
    }
    Ok(present)
}

/// The bucket of a source key, when the bucket column is part of it.
fn bucket_of(ctx: &Ctx, buckets: &[Bucket], key: &[Value]) -> Option<usize> {
    let i = ctx.query.key.iter().position(|k| *k == ctx.query.bucket)?;
    let v = key.get(i)?;
    buckets
        .iter()
        .find(|b| b.range.contains(v))
        .map(|b| b.index)
}
