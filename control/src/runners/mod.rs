//! Job runners: what a worker does for each kind of job, by driving the
//! engine and recording what it reports (progress, rows, watermarks, lag,
//! verification results) in the control store.

pub mod bulk_load;
pub mod catch_up;
pub mod datafix;
pub mod relay;
pub mod verify;

use std::sync::Arc;

use tern_engine::{Link, Progress, RateThrottle, RunControl, Spec, TransformerRegistry};
use tokio::sync::watch;

use crate::error::{ControlError, Result};
use crate::jobs::Job;
use crate::migrations::Migration;
use crate::store::Store;
use crate::worker::{JobContext, JobRunner};

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
    vec![
        Arc::new(bulk_load::BulkLoadRunner::new(ctx.clone())),
        Arc::new(catch_up::CatchUpRunner::new(ctx.clone())),
        Arc::new(relay::RelayRunner::new(ctx.clone())),
        Arc::new(verify::VerifyRunner::new(ctx.clone())),
        Arc::new(datafix::DataFixRunner::default()),
    ]
}

/// Runners of work that ends (everything but the relay): a process's general
/// workers take these, so a relay that runs for days never holds their slots.
pub fn finite(ctx: &RunnerContext) -> Vec<Arc<dyn JobRunner>> {
    all(ctx)
        .into_iter()
        .filter(|r| !r.kinds().contains(&crate::jobs::JobKind::Relay))
        .collect()
}

/// The relay's runner alone, for workers kept for relays.
pub fn relays(ctx: &RunnerContext) -> Vec<Arc<dyn JobRunner>> {
    vec![Arc::new(relay::RelayRunner::new(ctx.clone()))]
}

/// The job's migration and its parsed spec.
pub(crate) async fn migration_of(store: &Store, job: &Job) -> Result<(Migration, Spec)> {
    let id = job
        .migration_id
        .ok_or_else(|| ControlError::Internal(format!("job {} belongs to no migration", job.id)))?;
    let migration = store.migration(id).await?;
    let spec = store.spec_for(&migration.spec, &migration.name).await?;
    Ok((migration, spec))
}

/// A link for the job's migration (target tables created when missing).
pub(crate) async fn link_for(ctx: &RunnerContext, spec: Spec) -> Result<Link> {
    Ok(Link::connect(spec, &ctx.registry).await?)
}

/// The engine's bucket a bucket job works on, from the plan the engine fixed
/// at the table's first load (kept in the target).
pub(crate) async fn engine_bucket(link: &Link, job: &Job) -> Result<tern_engine::Bucket> {
    let table = param_str(job, "table")?;
    let table_bucket = param_i64(job, "table_bucket")?;
    let plan = link.plan_or_resume(table, None).await?;
    plan.buckets
        .iter()
        .find(|b| b.index as i64 == table_bucket)
        .cloned()
        .ok_or_else(|| {
            ControlError::Conflict(format!(
                "table {table}: the engine's stored plan has {} buckets, not bucket {table_bucket}; \
                 re-plan the migration",
                plan.buckets.len()
            ))
        })
}

/// A job parameter, or a clear error naming it.
pub(crate) fn param_str<'a>(job: &'a Job, name: &str) -> Result<&'a str> {
    job.params[name].as_str().ok_or_else(|| {
        ControlError::Internal(format!("job {} lacks its `{name}` parameter", job.id))
    })
}

pub(crate) fn param_i64(job: &Job, name: &str) -> Result<i64> {
    job.params[name].as_i64().ok_or_else(|| {
        ControlError::Internal(format!("job {} lacks its `{name}` parameter", job.id))
    })
}

/// The engine's run control for a job: the job's live rate limit as the
/// throttle, its stop token, and `progress` for what the engine reports.
pub(crate) fn run_control(
    ctx: &JobContext,
    progress: impl Fn(&Progress) + Send + Sync + 'static,
) -> RunControl {
    RunControl::new()
        .with_throttle(live_throttle(ctx.rate_limit.clone()))
        .with_cancel(ctx.stop.clone())
        .on_progress(progress)
}

/// A throttle that follows the job's rate limit as engineers change it.
pub(crate) fn live_throttle(mut rate: watch::Receiver<Option<f64>>) -> Arc<RateThrottle> {
    let to_rows = |r: Option<f64>| r.map(|r| r.max(1.0).round() as u64);
    let throttle = Arc::new(RateThrottle::new(to_rows(*rate.borrow())));
    let follower = Arc::clone(&throttle);
    tokio::spawn(async move {
        while rate.changed().await.is_ok() {
            let r = *rate.borrow();
            follower.set_rate(to_rows(r));
        }
    });
    throttle
}
