//! The relay job: one per migration, dual-writing the keys its ramp covers
//! until it is paused or cancelled. Engineers change the ramp while it runs
//! (`Store::set_relay_ramp`); the runner reads it every couple of seconds and
//! hands it to the engine, which applies it from its next batch.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tern_engine::{RelayOptions, run_relay};
use tokio::sync::watch;

use crate::error::Result;
use crate::jobs::harness::{JobContext, JobRunner, RunEnd};
use crate::jobs::{JobKind, Progress};
use crate::relay::ramp_of;
use crate::runners::{RunnerContext, count, link_for, migration_of};

/// How often a running relay looks for a new ramp.
const RAMP_POLL: Duration = Duration::from_secs(2);

/// Runs `relay` jobs.
#[derive(Debug)]
pub struct RelayRunner {
    ctx: RunnerContext,
}

impl RelayRunner {
    pub fn new(ctx: RunnerContext) -> Self {
        RelayRunner { ctx }
    }
}

#[async_trait]
impl JobRunner for RelayRunner {
    fn kinds(&self) -> Vec<JobKind> {
        vec![JobKind::Relay]
    }

    async fn run(&self, ctx: JobContext) -> Result<RunEnd> {
        let (job, store) = (&ctx.job, &ctx.store);
        let (migration, spec) = migration_of(store, job).await?;
        let link = link_for(&self.ctx, spec).await?;
        let first = ramp_of(job)?;
        let first_engine = store.engine_ramp(migration.id, &first).await?;
        let (ramp_tx, ramp_rx) = watch::channel(first_engine.clone());
        // Follow the ramp engineers set, until the job stops; the ramps sent
        // to the engine, to name the one it shows it filters by.
        let current = Arc::new(Mutex::new(vec![(first_engine, first)]));
        let (shown_tx, shown) = watch::channel(tern_engine::RelayRamp::Off);
        let shown_recorder = tokio::spawn(record_ramp_shown(
            store.clone(),
            job.id,
            Arc::clone(&current),
            shown,
        ));
        let (store2, job_id, migration_id) = (store.clone(), job.id, migration.id);
        let follower = ctx.every(RAMP_POLL, move || {
            let (store, current, ramp_tx) = (store2.clone(), Arc::clone(&current), ramp_tx.clone());
            async move {
                store
                    .follow_relay_ramp(job_id, migration_id, &current, &ramp_tx)
                    .await
            }
        });
        let control = ctx.run_control(|p| {
            let lag = p.lag.unwrap_or_default();
            let mut message = format!(
                "ramp {}: {} changes, {} keys applied, {} deleted, {} skipped; lag {} changes, {:.1}s",
                p.note.as_deref().unwrap_or("off"),
                p.done,
                p.tally.keys_applied,
                p.tally.keys_deleted,
                p.tally.keys_skipped,
                lag.changes,
                lag.seconds
            );
            if let Some(e) = &p.last_error {
                message.push_str(&format!("; retrying after: {e}"));
            }
            for w in &p.warnings {
                message.push_str(&format!("; {w}"));
            }
            Progress {
                rows_done: count(p.tally.keys_applied),
                rate: Some(p.rate),
                message: Some(message),
                ..Progress::default()
            }
        });
        let (control, _load) = ctx.guarded(&link, control);
        // The buckets whose source of truth is switched: the forward relay
        // skips them (the reverse relay carries them), followed live.
        let (version, first_set) =
            crate::runners::switched::switched_buckets(store, migration.id).await?;
        let (observed_tx, observed_rx) = watch::channel(first_set.clone());
        let (switched_tx, switched_rx) = watch::channel(first_set);
        store.record_relay_observed(job.id, version).await?;
        let (store3, switched_tx, last) = (
            store.clone(),
            Arc::new(switched_tx),
            Arc::new(Mutex::new(version)),
        );
        let switched_follower = ctx.every(crate::runners::switched::SWITCHED_POLL, move || {
            let (store, tx, last) = (store3.clone(), Arc::clone(&switched_tx), Arc::clone(&last));
            let observed = observed_rx.clone();
            async move {
                crate::runners::switched::follow_switched(
                    &store,
                    migration_id,
                    job_id,
                    &tx,
                    &observed,
                    &last,
                )
                .await
            }
        });
        let mut opts = RelayOptions::new(ramp_rx);
        opts.switched = Some(switched_rx);
        opts.observed = Some(Arc::new(observed_tx));
        opts.ramp_observed = Some(Arc::new(shown_tx));
        opts.name = format!("migration-{}", migration.id);
        opts.salt = migration.name.clone();
        let summary = run_relay(&link, opts, &control).await;
        drop(follower);
        drop(switched_follower);
        shown_recorder.abort();
        let summary = summary?;
        tracing::info!(migration = %migration.name, changes = summary.changes,
            keys = summary.keys_applied, max_lag_s = summary.max_lag_seconds, "relay stopped");
        Ok(RunEnd::Stopped)
    }
}

/// Records in the store every ramp the engine shows it filters by (the
/// spec it was sent as), until the relay stops.
async fn record_ramp_shown(
    store: crate::store::Store,
    job_id: i64,
    sent: Arc<Mutex<Vec<(tern_engine::RelayRamp, crate::relay::RelayRampSpec)>>>,
    mut shown: watch::Receiver<tern_engine::RelayRamp>,
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
