//! The relay's ramp as it runs: engineers change the ramp on the job
//! (`Store::set_relay_ramp`); the watch reads it every couple of seconds and
//! hands it to the engine, which applies it from its next batch, and records
//! the ramp the engine shows it filters by.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tern_engine::{RelayOptions, RelayRamp};
use tokio::sync::watch;

use crate::error::Result;
use crate::jobs::harness::{JobContext, Periodic};
use crate::relay::{RelayRampSpec, ramp_of};
use crate::store::Store;

/// How often a running relay looks for a new ramp.
const RAMP_POLL: Duration = Duration::from_secs(2);

/// The ramp's follower and recorder, stopped when dropped.
pub(crate) struct RampWatch {
    _follower: Periodic,
    recorder: tokio::task::JoinHandle<()>,
}

impl Drop for RampWatch {
    fn drop(&mut self) {
        self.recorder.abort();
    }
}

/// Starts watching the ramp of the relay job of `ctx`, and the relay's
/// options with the first ramp and where the engine shows the one it uses.
pub(crate) async fn start(
    ctx: &JobContext,
    migration_id: i64,
) -> Result<(RampWatch, RelayOptions)> {
    let (store, job_id) = (&ctx.store, ctx.job.id);
    let first = ramp_of(&ctx.job)?;
    let first_engine = store.engine_ramp(migration_id, &first).await?;
    let (ramp_tx, ramp_rx) = watch::channel(first_engine.clone());
    // The ramps sent to the engine, to name the one it shows it filters by.
    let current = Arc::new(Mutex::new(vec![(first_engine, first)]));
    let (shown_tx, shown) = watch::channel(RelayRamp::Off);
    let recorder = tokio::spawn(record_shown(
        store.clone(),
        job_id,
        Arc::clone(&current),
        shown,
    ));
    let store = store.clone();
    let follower = ctx.every(RAMP_POLL, move || {
        let (store, current, ramp_tx) = (store.clone(), Arc::clone(&current), ramp_tx.clone());
        async move {
            store
                .follow_relay_ramp(job_id, migration_id, &current, &ramp_tx)
                .await
        }
    });
    let mut opts = RelayOptions::new(ramp_rx);
    opts.ramp_observed = Some(Arc::new(shown_tx));
    Ok((
        RampWatch {
            _follower: follower,
            recorder,
        },
        opts,
    ))
}

/// Records in the store every ramp the engine shows it filters by (the
/// spec it was sent as), until the relay stops.
async fn record_shown(
    store: Store,
    job_id: i64,
    sent: Arc<Mutex<Vec<(RelayRamp, RelayRampSpec)>>>,
    mut shown: watch::Receiver<RelayRamp>,
) {
    while shown.changed().await.is_ok() {
        let ramp = shown.borrow_and_update().clone();
        let spec = sent.lock().ok().and_then(|s| {
            s.iter()
                .rev()
                .find(|(engine, _)| *engine == ramp)
                .map(|(_, spec)| spec.clone())
        });
        if let Some(spec) = spec
            && let Err(e) = store.record_relay_ramp_shown(job_id, &spec).await
        {
            tracing::warn!(job = job_id, error = %e, "cannot record the relay's ramp");
        }
    }
}
