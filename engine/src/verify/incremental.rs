//! The incremental verification: only the source keys the changelog saw
//! change since the last completed run's position, read through the change
//! stream ([`crate::change_stream`], filtered by the table) and checked as a
//! key set. Deletes are seen too: a deleted record's key is checked, and its
//! leftover target rows are found as extra.

use std::collections::HashSet;

use super::context::Ctx;
use super::in_flight::{MAX_IN_FLIGHT, SETTLE};
use super::keyset::{KeysProgress, Span, dedupe_found};
use super::results::Counts;
use super::store;
use crate::change_stream::{ChangeStream, Filter, StreamOptions};
use crate::changelog::Position;
use crate::error::{EngineError, Result};
use crate::link::{Link, Side};
use crate::run_control::RunControl;
use crate::value::identity;

/// Changelog rows read per batch of an incremental run.
const CHANGES_PER_READ: usize = 10_000;

/// Checks the keys changed since the last positioned run within `span`;
/// adds to `counts`. Returns the keys read, whether it finished, and the
/// changelog position it read up to (the next run starts there).
pub(super) async fn run(
    link: &Link,
    ctx: &Ctx,
    span: &Span<'_>,
    control: &RunControl,
    counts: &mut Counts,
) -> Result<(u64, bool, String)> {
    let Some(prev) = store::last_positioned_run(&ctx.target, &ctx.table).await? else {
        return Err(EngineError::Spec {
            at: format!("verify {} --since-last", ctx.table),
            message: "no earlier completed verification of this table has a changelog position: \
                      install change capture, then run a full verification first"
                .into(),
        });
    };
    let from = prev.position.clone().unwrap_or_default();
    let mut at: Position = from.parse().map_err(|m: String| EngineError::Checkpoint {
        table: ctx.table.clone(),
        bucket: 0,
        message: format!(
            "run {} has an unreadable changelog position: {m}",
            prev.run_id
        ),
    })?;
    let mut stream = ChangeStream::new(
        link,
        Side::Source,
        StreamOptions {
            batch_changes: CHANGES_PER_READ,
            ..StreamOptions::default()
        },
    )?
    .named(format!("verify {} since the last run", ctx.table));
    // A run of one bucket reads that bucket's changes only: the keys of the
    // table's other buckets would be left out of the source side by the
    // bucket's range and then found in the target as extra rows.
    let bucket = span
        .plan
        .zip(span.bucket)
        .and_then(|(plan, i)| plan.buckets.iter().find(|b| b.index == i));
    let filter = match bucket {
        Some(b) => Filter::Bucket(b.clone()),
        None => Filter::Table(ctx.table.clone()),
    };
    // Reading the changelog is not throttled: the key checks below are.
    let reading = RunControl::new().with_cancel(control.cancel.clone());
    let mut seen = HashSet::new();
    let mut keys = Vec::new();
    loop {
        let Some(batch) = stream.next_batch(&at, &filter, &reading).await? else {
            return Ok((0, false, at.to_string()));
        };
        for k in batch.keys.into_iter().flat_map(|t| t.keys) {
            if seen.insert(identity(&k)) {
                keys.push(k);
            }
        }
        at = batch.next;
        if batch.at_head {
            break;
        }
    }
    tracing::info!(table = %ctx.table, since = %from, keys = keys.len(), "incremental verification");
    let mut progress = KeysProgress::new(span.task(&ctx.table), keys.len() as u64);
    let mut found = Vec::new();
    let done = ctx
        .check_keys(&keys, span, &[], control, &mut progress, counts, &mut found)
        .await?;
    // The keys that changed lately are the ones most likely still in flight
    // (the relay has not applied their last change yet, or, for a switched
    // bucket, the reverse relay): like a full diff, a few differences are
    // checked again once the relays have had time, and only those that
    // still differ are reported (a drift watch under live writes would
    // otherwise find drift that is not there).
    if done && !found.is_empty() && found.len() <= MAX_IN_FLIGHT {
        tokio::select! {
            () = control.cancel.cancelled() => return Ok((keys.len() as u64, false, at.to_string())),
            () = tokio::time::sleep(SETTLE) => {}
        }
        ctx.recheck_in(span, &mut found, counts).await?;
    }
    dedupe_found(&mut found);
    ctx.store_found(&found).await?;
    Ok((keys.len() as u64, done, at.to_string()))
}
