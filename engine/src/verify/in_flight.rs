//! Rows in flight. A full diff reads a chunk from the source and then its
//! rows from the target while the applications and the relay keep writing:
//! a row changed between the two reads differs for a moment without being
//! wrong. So before a chunk's mismatches are stored they are checked once
//! more, after the relay has had time to apply what it saw (as Vitess's
//! VDiff re-checks differing rows); only rows that still differ are
//! reported. A chunk with many mismatches is a systematic difference, not
//! rows in flight, and is reported as found.
//!
//! A full diff does not wait for that with its reads: a compared chunk
//! waits in [`Settling`] while the next chunks are read and compared, and
//! the chunks commit in order once their time has come, so the settle time
//! is paid once per bucket, not once per chunk.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::context::Ctx;
use super::keyset::{KeysProgress, Span};
use super::results::{Counts, Mismatch, reconcile};
use crate::buckets::Bucket;
use crate::error::Result;
use crate::run_control::RunControl;
use crate::value::Value;

/// How long the relay gets to apply a change before a row is checked again.
pub(super) const SETTLE: Duration = Duration::from_millis(1500);

/// More mismatches than this in one chunk are not in flight.
pub(super) const MAX_IN_FLIGHT: usize = 200;

impl Ctx {
    /// Checks a chunk's mismatches of `bucket` again (after [`SETTLE`]) and
    /// keeps only those that still differ, adjusting the chunk's `counts`.
    async fn recheck_now(
        &self,
        bucket: &Bucket,
        found: &mut Vec<Mismatch>,
        counts: &mut Counts,
    ) -> Result<()> {
        let span = Span {
            plan: None,
            range: Some(&bucket.range),
            bucket: Some(bucket.index),
        };
        self.recheck_in(&span, found, counts).await
    }

    /// Checks `found` (mismatches within `span`) again now and keeps only
    /// those that still differ, adjusting `counts`.
    pub(super) async fn recheck_in(
        &self,
        span: &Span<'_>,
        found: &mut Vec<Mismatch>,
        counts: &mut Counts,
    ) -> Result<()> {
        let keys: Vec<Vec<Value>> = found.iter().filter_map(|m| m.source_key.clone()).collect();
        let orphans: Vec<Vec<Value>> = found
            .iter()
            .filter(|m| m.source_key.is_none())
            .map(|m| m.target_key.clone())
            .collect();
        // A few keys, checked at once: the run's throttle and progress
        // (rows of the bucket) are not asked about them.
        let quiet = RunControl::new();
        let mut progress = KeysProgress::new(span.task(&self.table), keys.len() as u64);
        let mut scratch = Counts::default();
        let mut again = Vec::new();
        self.check_keys(
            &keys,
            span,
            &orphans,
            &quiet,
            &mut progress,
            &mut scratch,
            &mut again,
        )
        .await?;
        let before = std::mem::take(found);
        *found = reconcile(before, again, counts)
            .into_iter()
            .filter(|m| !m.resolved)
            .collect();
        Ok(())
    }
}

/// Chunks waiting to commit longer than this hold up the bucket's reads.
const MAX_WAITING: usize = 32;

/// A compared chunk waiting for its rows in flight to settle.
struct Waiting {
    found: Vec<Mismatch>,
    counts: Counts,
    last: Option<Vec<Value>>,
    end: bool,
    /// When its mismatches may be checked again; `None`: nothing to check.
    ready: Option<Instant>,
}

/// The compared chunks of a bucket that have not committed yet, in order.
#[derive(Default)]
pub(super) struct Settling {
    waiting: VecDeque<Waiting>,
}

impl Settling {
    /// Queues a compared chunk: its mismatches, its counts and where it ends.
    pub(super) fn push(
        &mut self,
        found: Vec<Mismatch>,
        counts: Counts,
        last: Option<Vec<Value>>,
        end: bool,
    ) {
        let check = !found.is_empty() && found.len() <= MAX_IN_FLIGHT;
        self.waiting.push_back(Waiting {
            ready: check.then(|| Instant::now() + SETTLE),
            found,
            counts,
            last,
            end,
        });
    }

    /// Commits in order the chunks whose time has come (every chunk when
    /// `drain`), their mismatches checked again, adding their counts to the
    /// bucket's `total`. False when cancelled before all it had to commit.
    pub(super) async fn commit_ready(
        &mut self,
        ctx: &Ctx,
        bucket: &Bucket,
        control: &RunControl,
        total: &mut Counts,
        drain: bool,
    ) -> Result<bool> {
        while let Some(front) = self.waiting.front() {
            let due = front.ready.is_none_or(|r| r <= Instant::now());
            if !due && !drain && self.waiting.len() <= MAX_WAITING {
                break;
            }
            if let Some(ready) = front.ready {
                tokio::select! {
                    () = control.cancel.cancelled() => return Ok(false),
                    () = tokio::time::sleep_until(ready.into()) => {}
                }
            }
            let Some(mut w) = self.waiting.pop_front() else {
                break;
            };
            if w.ready.is_some() {
                ctx.recheck_now(bucket, &mut w.found, &mut w.counts).await?;
            }
            total.add(&w.counts);
            ctx.commit_chunk(bucket.index, &w.found, w.last.as_deref(), w.end, total)
                .await?;
        }
        Ok(true)
    }
}
