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
    let spec = crate::planning::parse_spec(&migration.spec, &migration.name)?;
    Ok((migration, spec))
}

/// A link for the job's migration (target tables created when missing).
pub(crate) async fn link_for(ctx: &RunnerContext, spec: Spec) -> Result<Link> {
    Ok(Link::connect(spec, &ctx.registry).await?)
}

/// The engine's bucket a bucket job works on. There is one plan: the one the
/// control plane made when the migration was created, which the engine
/// adopts (stores in the target) at the table's first job; a target that
/// already holds a plan keeps it.
pub(crate) async fn engine_bucket(
    store: &Store,
    link: &Link,
    job: &Job,
) -> Result<tern_engine::Bucket> {
    let table = param_str(job, "table")?;
    let table_bucket = param_i64(job, "table_bucket")?;
    let planned = match job.migration_id {
        Some(id) => planned_buckets(store, id, table).await?,
        None => Vec::new(),
    };
    let plan = if planned.is_empty() {
        link.plan_or_resume(table, None).await?
    } else {
        link.adopt_plan(table, &planned).await?
    };
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

/// The buckets the control plane planned for one table of a migration.
async fn planned_buckets(
    store: &Store,
    migration_id: i64,
    table: &str,
) -> Result<Vec<tern_engine::PlannedBucket>> {
    Ok(store
        .list_buckets(migration_id)
        .await?
        .into_iter()
        .filter(|b| b.table_name.as_deref() == Some(table))
        .filter_map(|b| {
            Some(tern_engine::PlannedBucket {
                index: usize::try_from(b.table_bucket?).ok()?,
                lo: b.lo,
                hi: b.hi,
                rows: u64::try_from(b.planned_rows).unwrap_or(0),
            })
        })
        .collect())
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
