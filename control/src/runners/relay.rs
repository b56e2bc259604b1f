//! The relay job: one per migration, dual-writing the keys its ramp covers
//! until it is paused or cancelled. Engineers change the ramp while it runs
//! (`Store::set_relay_ramp`); the runner reads it every couple of seconds and
//! hands it to the engine, which applies it from its next batch.

use std::collections::BTreeSet;
use std::time::Duration;

use async_trait::async_trait;
use tern_engine::ramp::Ramp;
use tern_engine::{RelayOptions, RelayRamp, run_relay};
use tokio::sync::watch;

use crate::error::{ControlError, Result};
use crate::jobs::{JobKind, Progress};
use crate::relay::{RelayRampSpec, ramp_of};
use crate::runners::{RunnerContext, link_for, migration_of, run_control};
use crate::store::Store;
use crate::worker::{JobContext, JobRunner, RunEnd};

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

/// The engine's ramp for the control store's: bucket ids become the
/// (table, bucket index) pairs the engine's plan knows.
async fn engine_ramp(store: &Store, migration_id: i64, spec: &RelayRampSpec) -> Result<RelayRamp> {
    Ok(match spec {
        RelayRampSpec::Off => RelayRamp::Off,
        RelayRampSpec::Percent { millipercent } => {
            RelayRamp::Percent(Ramp::from_millipercent(*millipercent))
        }
        RelayRampSpec::Buckets { ids } => {
            let all = store.list_buckets(migration_id).await?;
            let mut set = BTreeSet::new();
            for b in all.iter().filter(|b| ids.contains(&b.id)) {
                let (Some(table), Some(index)) = (b.table_name.clone(), b.table_bucket) else {
                    return Err(ControlError::Conflict(format!(
                        "bucket {} has no engine table and bucket: re-plan the migration",
                        b.idx
                    )));
                };
                set.insert((table, usize::try_from(index).unwrap_or(usize::MAX)));
            }
            RelayRamp::Buckets(set)
        }
    })
}

#[async_trait]
impl JobRunner for RelayRunner {
    fn kinds(&self) -> Vec<JobKind> {
        vec![JobKind::Relay]
    }

    async fn run(&self, ctx: JobContext) -> Result<RunEnd> {
        let job = &ctx.job;
        let (migration, spec) = migration_of(&ctx.store, job).await?;
        let link = link_for(&self.ctx, spec).await?;
        let first = ramp_of(job)?;
        let (ramp_tx, ramp_rx) =
            watch::channel(engine_ramp(&ctx.store, migration.id, &first).await?);

        // Follow the ramp engineers set, until the job stops.
        let follower = tokio::spawn({
            let store = ctx.store.clone();
            let stop = ctx.stop.clone();
            let job_id = job.id;
            let migration_id = migration.id;
            async move {
                let mut current = first;
                loop {
                    tokio::select! {
                        () = stop.cancelled() => break,
                        () = tokio::time::sleep(RAMP_POLL) => {}
                    }
                    let next = match store.job(job_id).await.and_then(|j| ramp_of(&j)) {
                        Ok(r) => r,
                        Err(e) => {
                            tracing::warn!(job = job_id, error = %e, "cannot read the relay's ramp");
                            continue;
                        }
                    };
                    if next == current {
                        continue;
                    }
                    match engine_ramp(&store, migration_id, &next).await {
                        Ok(r) => {
                            tracing::info!(job = job_id, from = %current, to = %next, "relay ramp changed");
                            let _ = ramp_tx.send(r);
                            current = next;
                        }
                        Err(e) => {
                            tracing::warn!(job = job_id, error = %e, "cannot apply the relay's ramp")
                        }
                    }
                }
            }
        });

        let reporter = ctx.clone();
        let control = run_control(&ctx, move |p| {
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
            reporter.report(Progress {
                rows_done: i64::try_from(p.tally.keys_applied).unwrap_or(i64::MAX),
                rows_total: None,
                rate: Some(p.rate),
                eta_seconds: None,
                message: Some(message),
            });
        });
        let mut opts = RelayOptions::new(ramp_rx);
        opts.name = format!("migration-{}", migration.id);
        opts.salt = migration.name.clone();
        let summary = run_relay(&link, opts, &control).await;
        follower.abort();
        let summary = summary?;
        tracing::info!(
            migration = %migration.name,
            changes = summary.changes,
            keys = summary.keys_applied,
            max_lag_s = summary.max_lag_seconds,
            "relay stopped"
        );
        Ok(RunEnd::Stopped)
    }
}
