//! Rows in flight. A full diff reads a chunk from the source and then its
//! rows from the target while the applications and the relay keep writing:
//! a row changed between the two reads differs for a moment without being
//! wrong. So before a chunk's mismatches are stored they are checked once
//! more, after the relay has had time to apply what it saw (as Vitess's
//! VDiff re-checks differing rows); only rows that still differ are
//! reported. A chunk with many mismatches is a systematic difference, not
//! rows in flight, and is reported as found.

use std::time::Duration;

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
    /// Checks a chunk's mismatches of `bucket` again after [`SETTLE`] and
    /// keeps only those that still differ, adjusting the chunk's `counts`.
    pub(super) async fn recheck_in_flight(
        &self,
        bucket: &Bucket,
        found: &mut Vec<Mismatch>,
        counts: &mut Counts,
        control: &RunControl,
    ) -> Result<()> {
        if found.is_empty() || found.len() > MAX_IN_FLIGHT {
            return Ok(());
        }
        tokio::select! {
            () = control.cancel.cancelled() => return Ok(()),
            () = tokio::time::sleep(SETTLE) => {}
        }
        let keys: Vec<Vec<Value>> = found.iter().filter_map(|m| m.source_key.clone()).collect();
        let orphans: Vec<Vec<Value>> = found
            .iter()
            .filter(|m| m.source_key.is_none())
            .map(|m| m.target_key.clone())
            .collect();
        let span = Span {
            plan: None,
            range: Some(&bucket.range),
            bucket: Some(bucket.index),
        };
        // A few keys, checked at once: the run's throttle and progress
        // (rows of the bucket) are not asked about them.
        let quiet = RunControl::new();
        let mut progress = KeysProgress::new(span.task(&self.table), keys.len() as u64);
        let mut scratch = Counts::default();
        let mut again = Vec::new();
        self.check_keys(
            &keys,
            &span,
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
