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
        let (ramp_tx, ramp_rx) = watch::channel(store.engine_ramp(migration.id, &first).await?);
        // Follow the ramp engineers set, until the job stops.
        let current = Arc::new(Mutex::new(first));
        let (store2, job_id, migration_id) = (store.clone(), job.id, migration.id);
        let follower = ctx.every(RAMP_POLL, move || {
            let (store, current, ramp_tx) = (store2.clone(), Arc::clone(&current), ramp_tx.clone());
            async move { follow_ramp(&store, job_id, migration_id, &current, &ramp_tx).await }
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
        let mut opts = RelayOptions::new(ramp_rx);
        opts.name = format!("migration-{}", migration.id);
        opts.salt = migration.name.clone();
        let summary = run_relay(&link, opts, &control).await;
        drop(follower);
        let summary = summary?;
        tracing::info!(migration = %migration.name, changes = summary.changes,
            keys = summary.keys_applied, max_lag_s = summary.max_lag_seconds, "relay stopped");
        Ok(RunEnd::Stopped)
    }
}

/// Reads the relay job's ramp and, when it changed, hands the engine its new one.
async fn follow_ramp(
    store: &crate::store::Store,
    job_id: i64,
    migration_id: i64,
    current: &Mutex<crate::relay::RelayRampSpec>,
    ramp_tx: &watch::Sender<tern_engine::RelayRamp>,
) {
    let next = match store.job(job_id).await.and_then(|j| ramp_of(&j)) {
        Ok(r) => r,
        Err(e) => return tracing::warn!(job = job_id, error = %e, "cannot read the relay's ramp"),
    };
    let Some(from) = current
        .lock()
        .ok()
        .map(|c| c.clone())
        .filter(|c| *c != next)
    else {
        return;
    };
    match store.engine_ramp(migration_id, &next).await {
        Ok(r) => {
            tracing::info!(job = job_id, from = %from, to = %next, "relay ramp changed");
            let _ = ramp_tx.send(r);
            if let Ok(mut c) = current.lock() {
                *c = next;
            }
        }
        Err(e) => tracing::warn!(job = job_id, error = %e, "cannot apply the relay's ramp"),
    }
}
