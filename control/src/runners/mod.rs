//! Job runners: what a worker does for each kind of job, by driving the
//! engine and recording what it reports (progress, rows, watermarks, lag,
//! verification results) in the control store.

pub mod bulk_load;
pub mod catch_up;
pub mod datafix;
mod fix_run;
mod ramp_watch;
pub mod relay;
pub mod repair;
mod report;
pub mod reverse_relay;
mod setup;
pub mod switched;
pub mod verify;

use std::sync::Arc;

use tern_engine::TransformerRegistry;

use crate::jobs::harness::JobRunner;
pub(crate) use setup::runner;

/// What every runner shares: the transformer plug-ins the specs may name.
#[derive(Clone, Default)]
pub struct RunnerContext {
    pub registry: Arc<TransformerRegistry>,
}

impl std::fmt::Debug for RunnerContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunnerContext").finish_non_exhaustive()
    }
}

/// Every runner of this crate.
pub fn all(ctx: &RunnerContext) -> Vec<Arc<dyn JobRunner>> {
    let mut all = finite(ctx);
    all.extend(relays(ctx));
    all
}

/// Runners of work that ends (everything but the relays): a process's general
/// workers take these, so a relay that runs for days never holds their slots.
pub fn finite(ctx: &RunnerContext) -> Vec<Arc<dyn JobRunner>> {
    vec![
        Arc::new(bulk_load::BulkLoadRunner::new(ctx.clone())),
        Arc::new(catch_up::CatchUpRunner::new(ctx.clone())),
        Arc::new(verify::VerifyRunner::new(ctx.clone())),
        Arc::new(repair::RepairRunner::new(ctx.clone())),
        Arc::new(datafix::DataFixRunner::default()),
    ]
}

/// The relays' runners alone, for workers kept for relays.
pub fn relays(ctx: &RunnerContext) -> Vec<Arc<dyn JobRunner>> {
    vec![
        Arc::new(relay::RelayRunner::new(ctx.clone())),
        Arc::new(reverse_relay::ReverseRelayRunner::new(ctx.clone())),
    ]
}

/// A count from the engine as the store keeps it.
pub(crate) fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
