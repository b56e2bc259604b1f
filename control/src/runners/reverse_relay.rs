//! The reverse relay job: one per migration, applying the new store's
//! changes of switched buckets to the old store (through the inverse of the
//! spec's mapping) until it is cancelled, so a switched bucket can be rolled
//! back at any time before decommission. At start it installs capture on
//! the target (again is harmless) and records which tables can be reversed,
//! and why not, for the switch's gates.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tern_engine::reverse::{self, ReverseOptions, run_reverse_relay};
use tokio::sync::watch;

use crate::error::Result;
use crate::jobs::harness::{JobContext, JobRunner, RunEnd};
use crate::jobs::{JobKind, Progress};
use crate::runners::switched::{SWITCHED_POLL, follow_switched, switched_buckets};
use crate::runners::{RunnerContext, count, link_for, migration_of};

/// The reverse relay's name for a migration: its position is kept under it
/// in the old store.
pub fn reverse_relay_name(migration_id: i64) -> String {
    format!("migration-{migration_id}-reverse")
}

/// Runs `reverse-relay` jobs.
#[derive(Debug)]
pub struct ReverseRelayRunner {
    ctx: RunnerContext,
}

impl ReverseRelayRunner {
    pub fn new(ctx: RunnerContext) -> Self {
        ReverseRelayRunner { ctx }
    }
}

#[async_trait]
impl JobRunner for ReverseRelayRunner {
    fn kinds(&self) -> Vec<JobKind> {
        vec![JobKind::ReverseRelay]
    }

    async fn run(&self, ctx: JobContext) -> Result<RunEnd> {
        let (job, store) = (&ctx.job, &ctx.store);
        let (migration, spec) = migration_of(store, job).await?;
        let link = link_for(&self.ctx, spec).await?;
        // Capture on the new store, and which tables invert (checked
        // against both databases), on a runtime of their own: the engine's
        // futures for these are not `Send` for every lifetime.
        let (spec, registry) = (link.spec().clone(), self.ctx.registry.clone());
        let (installed, checked) = crate::own_runtime::on_own_runtime(
            "installing capture on the new store",
            move || async move {
                let link = tern_engine::Link::connect(spec, &registry).await?;
                let installed = reverse::install_capture(&link).await?;
                let checked = reverse::check(&link).await?;
                Ok((installed, checked))
            },
        )
        .await?;
        for (table, why) in checked {
            let (ok, reason) = match why {
                None => (true, "the mapping inverts".to_string()),
                Some(why) => (false, why),
            };
            store
                .record_reverse_path(migration.id, &table, ok, &reason)
                .await?;
        }
        tracing::info!(migration = %migration.name, position = %installed.installed.position, "capture on the new store; reverse relay starting");
        let (version, first) = switched_buckets(store, migration.id).await?;
        let (observed_tx, observed_rx) = watch::channel(first.clone());
        let (tx, rx) = watch::channel(first);
        store.record_relay_observed(job.id, version).await?;
        let (store2, job_id, migration_id) = (store.clone(), job.id, migration.id);
        let (tx, last) = (Arc::new(tx), Arc::new(Mutex::new(version)));
        let follower = ctx.every(SWITCHED_POLL, move || {
            let (store, tx, last) = (store2.clone(), Arc::clone(&tx), Arc::clone(&last));
            let observed = observed_rx.clone();
            async move { follow_switched(&store, migration_id, job_id, &tx, &observed, &last).await }
        });
        let control = ctx.run_control(|p| Progress {
            rows_done: count(p.tally.keys_applied),
            rate: Some(p.rate),
            message: Some(format!(
                "reverse: {} changes, {} keys applied, {} deleted; lag {} changes",
                p.done,
                p.tally.keys_applied,
                p.tally.keys_deleted,
                p.lag.unwrap_or_default().changes
            )),
            ..Progress::default()
        });
        let (control, _load) = ctx.guarded(&link, control);
        let mut opts = ReverseOptions::new(rx);
        opts.name = reverse_relay_name(migration.id);
        opts.observed = Some(Arc::new(observed_tx));
        let summary = run_reverse_relay(&link, opts, &control).await;
        drop(follower);
        let summary = summary?;
        tracing::info!(migration = %migration.name, changes = summary.changes, "reverse relay stopped");
        Ok(RunEnd::Stopped)
    }
}
