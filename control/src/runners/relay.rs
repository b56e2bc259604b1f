//! The relay job: one per migration, dual-writing the keys its ramp covers
//! until it is paused or cancelled, following the ramp engineers set (see
//! [`ramp_watch`](super::ramp_watch)) and skipping the switched buckets,
//! which the reverse relay carries.

use tern_engine::run_relay;

use crate::error::Result;
use crate::jobs::JobKind;
use crate::jobs::harness::{JobContext, RunEnd};
use crate::runners::setup::open;
use crate::runners::{ramp_watch, report, runner, switched};

runner!(
    /// Runs `relay` jobs.
    RelayRunner,
    JobKind::Relay
);

impl RelayRunner {
    async fn work(&self, ctx: JobContext) -> Result<RunEnd> {
        let (migration, link) = open(&self.ctx, &ctx).await?;
        let (ramp, mut opts) = ramp_watch::start(&ctx, migration.id).await?;
        let (control, _load) = ctx.guarded(&link, ctx.run_control(report::relay));
        // The buckets whose source of truth is switched: the forward relay
        // skips them (the reverse relay carries them), followed live.
        let feed = switched::feed(&ctx, migration.id).await?;
        opts.switched = Some(feed.switched.clone());
        opts.observed = Some(feed.observed.clone());
        opts.name = format!("migration-{}", migration.id);
        opts.salt = migration.name.clone();
        let summary = run_relay(&link, opts, &control).await;
        drop((ramp, feed));
        let summary = summary?;
        tracing::info!(migration = %migration.name, changes = summary.changes,
            keys = summary.keys_applied, max_lag_s = summary.max_lag_seconds, "relay stopped");
        Ok(RunEnd::Stopped)
    }
}
