//! The switched buckets as the relays take them: both relay runners follow
//! the store's switched set (buckets whose write primary is `new`) and hand
//! it to their relay through a watch channel, then record the routing
//! version they handed over (see [`Store::record_relay_observed`]).

use std::sync::Arc;
use std::time::Duration;

use tern_engine::reverse::{SwitchedBuckets, wait_observed};
use tokio::sync::watch;

use crate::error::Result;
use crate::jobs::harness::{JobContext, Periodic};
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

/// The switched set handed to a relay (`switched`), the channel the relay
/// shows it through (`observed`), and the follower that looks for a new set
/// until the job stops or this is dropped.
pub(crate) struct SwitchedFeed {
    pub switched: watch::Receiver<SwitchedBuckets>,
    pub observed: Arc<watch::Sender<SwitchedBuckets>>,
    _follower: Periodic,
}

/// Starts following the migration's switched set for the relay job of `ctx`,
/// its first version recorded as observed.
pub(crate) async fn feed(ctx: &JobContext, migration_id: i64) -> Result<SwitchedFeed> {
    let (version, first) = switched_buckets(&ctx.store, migration_id).await?;
    let (observed, observed_rx) = watch::channel(first.clone());
    let (tx, switched) = watch::channel(first);
    ctx.store.record_relay_observed(ctx.job.id, version).await?;
    let look = Arc::new(tokio::sync::Mutex::new(Look {
        store: ctx.store.clone(),
        migration_id,
        job_id: ctx.job.id,
        tx,
        observed: observed_rx,
        last: version,
    }));
    let follower = ctx.every(SWITCHED_POLL, move || {
        let look = Arc::clone(&look);
        async move { look.lock().await.follow().await }
    });
    Ok(SwitchedFeed {
        switched,
        observed: Arc::new(observed),
        _follower: follower,
    })
}

/// What a look at the switched set needs, and the version it last recorded.
struct Look {
    store: Store,
    migration_id: i64,
    job_id: i64,
    tx: watch::Sender<SwitchedBuckets>,
    observed: watch::Receiver<SwitchedBuckets>,
    last: i64,
}

impl Look {
    /// One look; a failed one is logged and tried again at the next.
    async fn follow(&mut self) {
        if let Err(e) = self.look().await {
            tracing::warn!(job = self.job_id, error = %e, "cannot read the switched buckets; keeping the last");
        }
    }

    /// Sends a changed set to the relay, waits until the relay shows (through
    /// `observed`, which it sets before each batch) that it filters by it, and
    /// only then records the version for the job, which is what a switch
    /// waits for before it releases held writes.
    async fn look(&mut self) -> Result<()> {
        let (migration, job) = (self.migration_id, self.job_id);
        let (version, set) = switched_buckets(&self.store, migration).await?;
        if version == self.last {
            return Ok(());
        }
        if *self.tx.borrow() != set {
            tracing::info!(migration, job, switched = %set, "relay takes new switched buckets");
            self.tx.send_replace(set.clone());
        }
        // Not recorded until the relay shows the set: a batch it read with the
        // old set could pass over a write made just after the release.
        if !wait_observed(&mut self.observed.clone(), &set, OBSERVE_TIMEOUT).await {
            tracing::warn!(migration, job, switched = %set,
                "the relay has not shown the new switched buckets yet; looking again");
            return Ok(());
        }
        self.store.record_relay_observed(job, version).await?;
        self.last = version;
        Ok(())
    }
}
