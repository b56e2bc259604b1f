//! The reverse relay job: one per migration, applying the new store's
//! changes of switched buckets to the old store (through the inverse of the
//! spec's mapping) until it is cancelled, so a switched bucket can be rolled
//! back at any time before decommission. At start it installs capture on
//! the target (again is harmless) and records which tables can be reversed,
//! and why not, for the switch's gates.

use tern_engine::reverse::{self, ReverseOptions, run_reverse_relay};

use crate::error::Result;
use crate::jobs::JobKind;
use crate::jobs::harness::{JobContext, RunEnd};
use crate::runners::setup::open;
use crate::runners::{report, runner, switched};

/// The reverse relay's name for a migration: its position is kept under it
/// in the old store.
pub fn reverse_relay_name(migration_id: i64) -> String {
    format!("migration-{migration_id}-reverse")
}

runner!(
    /// Runs `reverse-relay` jobs.
    ReverseRelayRunner,
    JobKind::ReverseRelay
);

impl ReverseRelayRunner {
    async fn work(&self, ctx: JobContext) -> Result<RunEnd> {
        let store = &ctx.store;
        let (migration, link) = open(&self.ctx, &ctx).await?;
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
        let feed = switched::feed(&ctx, migration.id).await?;
        let (control, _load) = ctx.guarded(&link, ctx.run_control(report::reverse_relay));
        let mut opts = ReverseOptions::new(feed.switched.clone());
        opts.name = reverse_relay_name(migration.id);
        opts.observed = Some(feed.observed.clone());
        let summary = run_reverse_relay(&link, opts, &control).await;
        drop(feed);
        let summary = summary?;
        tracing::info!(migration = %migration.name, changes = summary.changes, "reverse relay stopped");
        Ok(RunEnd::Stopped)
    }
}
