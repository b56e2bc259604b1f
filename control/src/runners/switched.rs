//! The switched buckets as the relays take them: both relay runners follow
//! the store's switched set (buckets whose write primary is `new`) and hand
//! it to their relay through a watch channel, then record the routing
//! version they handed over (see [`Store::record_relay_observed`]).

use std::time::Duration;

use tern_engine::reverse::SwitchedBuckets;
use tokio::sync::watch;

use crate::error::Result;
use crate::store::Store;

/// How often a relay runner looks for a new switched set.
pub const SWITCHED_POLL: Duration = Duration::from_millis(50);

/// The store's switched set as the engine takes it, and its version.
pub async fn switched_buckets(store: &Store, migration_id: i64) -> Result<(i64, SwitchedBuckets)> {
    let (version, set) = store.switched_set(migration_id).await?;
    let mut s = SwitchedBuckets::none();
    for (table, index) in set {
        s.insert(&table, usize::try_from(index).unwrap_or(usize::MAX));
    }
    Ok((version, s))
}

/// One look: sends a changed set to the relay, waits one relay poll so the
/// relay's next batch takes it, and records the version for `job_id`. A
/// failed look is logged and tried again at the next.
pub async fn follow_switched(
    store: &Store,
    migration_id: i64,
    job_id: i64,
    tx: &watch::Sender<SwitchedBuckets>,
    last: &std::sync::Mutex<i64>,
) {
    if let Err(e) = look(store, migration_id, job_id, tx, last).await {
        tracing::warn!(job = job_id, error = %e, "cannot read the switched buckets; keeping the last");
    }
}

async fn look(
    store: &Store,
    migration_id: i64,
    job_id: i64,
    tx: &watch::Sender<SwitchedBuckets>,
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
        tx.send_replace(set);
        // The relay takes the set before each batch: one poll later, every
        // batch it reads is filtered by the new one.
        tokio::time::sleep(SWITCHED_POLL * 2).await;
    }
    store.record_relay_observed(job_id, version).await?;
    if let Ok(mut v) = last.lock() {
        *v = version;
    }
    Ok(())
}
