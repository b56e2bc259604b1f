//! Switching the source of truth, bucket by bucket (issue 17): each bucket
//! has a write primary (old or new) that the routing API and `tern-client`
//! answer per key. A switch holds the writes of its buckets (clients retry),
//! waits until every active client applied the hold, drains the forward
//! relay, flips the primary and releases; a rollback does the same with the
//! reverse relay. The hold is measured and kept with the switch's history.
//!
//! The order matters: once every active client applied the hold no write to
//! those keys is in flight, so the relay drained after that point has seen
//! every write the old primary will ever take; flipping then loses nothing
//! and applies nothing twice.

mod drift;
mod gates;
mod history;
mod relay_drain;
mod routing;
mod run;

pub use drift::{DRIFT_EVERY, DriftCheck};
pub use gates::{BucketGate, ReversePath};
pub use history::{SourceOfTruth, SwitchRecord};
pub use relay_drain::{RelayDrain, drain_through_head};
pub use routing::{ACTIVE_WINDOW, BucketRoute, Primary, RoutingPickup, TableRoute, WriteRouting};
pub use run::{Drain, SwitchOptions};

use serde::{Deserialize, Serialize};

/// Which way a bucket's source of truth moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// Old → new: the new store becomes the source of truth.
    Switch,
    /// New → old: back to the old store.
    Rollback,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Switch => "switch",
            Direction::Rollback => "rollback",
        }
    }

    /// The write primary the buckets have before the move, and after it.
    pub fn primaries(self) -> (&'static str, &'static str) {
        match self {
            Direction::Switch => ("old", "new"),
            Direction::Rollback => ("new", "old"),
        }
    }
}

impl crate::store::Store {
    /// The bucket indexes a switch names: the listed ones, plus every bucket
    /// of `batch` when one is given.
    pub async fn switch_targets(
        &self,
        migration_id: i64,
        buckets: &[i64],
        batch: Option<i64>,
    ) -> crate::error::Result<Vec<i64>> {
        let mut idxs = buckets.to_vec();
        if let Some(batch) = batch {
            let of_batch: Vec<i64> = self
                .list_buckets(migration_id)
                .await?
                .into_iter()
                .filter(|b| b.batch_id == Some(batch))
                .map(|b| b.idx)
                .collect();
            if of_batch.is_empty() {
                return Err(crate::error::ControlError::NotFound(format!(
                    "migration {migration_id} has no batch {batch} (or it has no buckets)"
                )));
            }
            idxs.extend(of_batch);
        }
        idxs.sort_unstable();
        idxs.dedup();
        Ok(idxs)
    }
}
