//! The switched buckets as the relays take them: both relay runners follow
//! the store's switched set (buckets whose write primary is `new`) and hand
//! it to their relay through a watch channel, then record the routing
//! version they handed over (see [`Store::record_relay_observed`]).

use std::time::Duration;

use tern_engine::reverse::{SwitchedBuckets, wait_observed};
use tokio::sync::watch;

use crate::error::Result;
use crate::store::Store;

/// How often a relay runner looks for a new switched set.
pub const SWITCHED_POLL: Duration = Duration::from_millis(50);

/// How long a relay may take to show it filters by a new set before the
/// runner gives up on this look (the switch then times out and releases).
const OBSERVE_TIMEOUT: Duration = Duration::from_secs(10);

/// The store's switched set as the engine takes it, and its version.
pub async fn switched_buckets(store: &Store, migration_id: i64) -> Result<(i64, SwitchedBuckets)> {
    let (version, set) = store.switched_set(migration_id).await?;
    let mut s = SwitchedBuckets::none();
    for (table, index) in set {
        s.insert(&table, usize::try_from(index).unwrap_or(usize::MAX));
    }
    Ok((version, s))
}

/// One look: sends a changed set to the relay, waits until the relay shows
/// (through `observed`, which it sets before each batch) that it filters by
/// it, and only then records the version for `job_id`, which is what a
/// switch waits for before it releases held writes. A failed look is logged
/// and tried again at the next.
pub async fn follow_switched(
    store: &Store,
    migration_id: i64,
    job_id: i64,
    tx: &watch::Sender<SwitchedBuckets>,
    observed: &watch::Receiver<SwitchedBuckets>,
    last: &std::sync::Mutex<i64>,
) {
    if let Err(e) = look(store, migration_id, job_id, tx, observed, last).await {
        tracing::warn!(job = job_id, error = %e, "cannot read the switched buckets; keeping the last");
    }
}

async fn look(
    store: &Store,
    migration_id: i64,
    job_id: i64,
    tx: &watch::Sender<SwitchedBuckets>,
    observed: &watch::Receiver<SwitchedBuckets>,
    last: &std::sync::Mutex<i64>,
) -> Result<()> {
    let (version, set) = switched_buckets(store, migration_id).await?;
    let seen = last.lock().map(|v| *v).unwrap_or(-1);
    if version == seen {
        return Ok(());
    }
    let changed = *tx.borrow() != set;
    if changed {
        tracing::info!(migration = migration_id, job = job_id, switched = %set, "relay takes new switched buckets");
        tx.send_replace(set.clone());
    }
    // Not recorded until the relay shows the set: a batch it read with the
    // old set could pass over a write made just after the release.
    if !wait_observed(&mut observed.clone(), &set, OBSERVE_TIMEOUT).await {
        tracing::warn!(migration = migration_id, job = job_id, switched = %set,
            "the relay has not shown the new switched buckets yet; looking again");
        return Ok(());
    }
    store.record_relay_observed(job_id, version).await?;
    if let Ok(mut v) = last.lock() {
        *v = version;
    }
    Ok(())
}
