//! The sampled verification: a deterministic sample of N keys per value of
//! a column (the strata: year, type, region…): the N keys of each stratum
//! with the smallest stable hash of their source key, the same sample every
//! run while the data stays, spread over the key space. The sample is found
//! by one scan of keys and stratum values, then checked as a key set.

use std::collections::{BinaryHeap, HashMap};

use super::context::Ctx;
use super::keyset::{KeysProgress, Span, dedupe_found};
use super::results::{Counts, Stratum};
use crate::chunk::{ChunkReader, KeyRange};
use crate::connector::stable_hash;
use crate::error::{EngineError, Result};
use crate::run_control::RunControl;
use crate::transform::SourceColumn;
use crate::value::{Value, source_key_text};

/// Source rows per chunk of a sample scan (only key and stratum are kept).
const SAMPLE_SCAN_ROWS: usize = 20_000;

/// Checks the sample of `per_stratum` keys of each value of source column
/// `column` within `span`; adds to `counts` and `strata`. Returns the keys
/// read and whether it finished.
pub(super) async fn run(
    ctx: &Ctx,
    span: &Span<'_>,
    per_stratum: usize,
    column: &str,
    control: &RunControl,
    counts: &mut Counts,
    strata: &mut Vec<Stratum>,
) -> Result<(u64, bool)> {
    let Some(col) = ctx.query.columns.iter().position(|c| c.name == column) else {
        return Err(EngineError::schema(
            &ctx.table,
            format!(
                "the source has no column `{column}` to take strata from (its columns: {})",
                SourceColumn::list(&ctx.query.columns)
            ),
        ));
    };
    if per_stratum == 0 {
        return Err(EngineError::schema(
            &ctx.table,
            "a sample needs at least 1 key per stratum",
        ));
    }
    // Per stratum, the `per_stratum` keys with the smallest hash (a max-heap
    // of the best so far): deterministic, and spread over the key space.
    let mut heaps: HashMap<String, BinaryHeap<(u64, String)>> = HashMap::new();
    let mut keys_by_text: HashMap<String, Vec<Value>> = HashMap::new();
    let mut reader = ChunkReader::new(
        ctx.source.clone(),
        ctx.query.clone(),
        span.range.cloned().unwrap_or_else(KeyRange::all),
        None,
        SAMPLE_SCAN_ROWS,
        0,
    );
    loop {
        if control.is_cancelled() {
            return Ok((0, false));
        }
        let Some(chunk) = reader.next_chunk().await? else {
            break;
        };
        for row in &chunk.rows {
            let key = ctx.query.key_of(row);
            let text = source_key_text(&key);
            let h = stable_hash(&text);
            let heap = heaps.entry(row[col].canonical_text()).or_default();
            if heap.len() < per_stratum {
                heap.push((h, text.clone()));
                keys_by_text.insert(text, key);
            } else if heap.peek().is_some_and(|top| (h, &text) < (top.0, &top.1)) {
                if let Some((_, out)) = heap.pop() {
                    keys_by_text.remove(&out);
                }
                heap.push((h, text.clone()));
                keys_by_text.insert(text, key);
            }
        }
        if chunk.end {
            break;
        }
    }
    let total = heaps.values().map(|h| h.len() as u64).sum();
    let mut progress = KeysProgress::new(span.task(&ctx.table), total);
    let mut names: Vec<String> = heaps.keys().cloned().collect();
    names.sort();
    let mut read = 0u64;
    let mut found = Vec::new();
    for name in names {
        let mut picked: Vec<(u64, String)> = heaps.remove(&name).unwrap_or_default().into_vec();
        picked.sort();
        let keys: Vec<Vec<Value>> = picked
            .into_iter()
            .filter_map(|(_, t)| keys_by_text.remove(&t))
            .collect();
        read += keys.len() as u64;
        let mut c = Counts::default();
        let done = ctx
            .check_keys(&keys, span, &[], control, &mut progress, &mut c, &mut found)
            .await?;
        counts.add(&c);
        strata.push(Stratum {
            value: name,
            counts: c,
        });
        if !done {
            ctx.store_found(&found).await?;
            return Ok((read, false));
        }
    }
    dedupe_found(&mut found);
    ctx.store_found(&found).await?;
    Ok((read, true))
}
