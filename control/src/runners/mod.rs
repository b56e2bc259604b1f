//! Job runners: what a worker does for each kind of job, by driving the
//! engine and recording what it reports (progress, rows, watermarks, lag,
//! verification results) in the control store.

pub mod bulk_load;
pub mod catch_up;
pub mod datafix;
pub mod relay;
pub mod repair;
pub mod reverse_relay;
pub mod switched;
pub mod verify;

use std::sync::Arc;

use tern_engine::{Link, Spec, TransformerRegistry};

use crate::error::{ControlError, Result};
use crate::jobs::harness::JobRunner;
use crate::jobs::{BucketParams, Job};
use crate::migrations::Migration;
use crate::store::Store;

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
        Arc::new(reverse_relay::ReverseRelayRunner::new(ctx.clone())),
        Arc::new(verify::VerifyRunner::new(ctx.clone())),
        Arc::new(repair::RepairRunner::new(ctx.clone())),
        Arc::new(datafix::DataFixRunner::default()),
    ]
}

/// Runners of work that ends (everything but the relay): a process's general
/// workers take these, so a relay that runs for days never holds their slots.
pub fn finite(ctx: &RunnerContext) -> Vec<Arc<dyn JobRunner>> {
    all(ctx)
        .into_iter()
        .filter(|r| {
            let k = r.kinds();
            !k.contains(&crate::jobs::JobKind::Relay)
                && !k.contains(&crate::jobs::JobKind::ReverseRelay)
        })
        .collect()
}

/// The relay's runner alone, for workers kept for relays.
pub fn relays(ctx: &RunnerContext) -> Vec<Arc<dyn JobRunner>> {
    vec![
        Arc::new(relay::RelayRunner::new(ctx.clone())),
        Arc::new(reverse_relay::ReverseRelayRunner::new(ctx.clone())),
    ]
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

/// The engine's bucket a bucket job works on. There is one plan: the one the
/// control plane made when the migration was created, which the engine
/// adopts (stores in the target) at the table's first job; a target that
/// already holds a plan keeps it.
pub(crate) async fn engine_bucket(
    store: &Store,
    link: &Link,
    migration_id: Option<i64>,
    at: &BucketParams,
) -> Result<tern_engine::Bucket> {
    let (table, table_bucket) = (at.table.as_str(), at.table_bucket);
    let planned = match migration_id {
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

/// The bucket a bucket job works on (its id in the control store), or an
/// error naming the job.
pub(crate) fn bucket_of(job: &Job) -> Result<i64> {
    job.bucket_id.ok_or_else(|| {
        ControlError::Internal(format!(
            "{} job {} has no bucket",
            job.kind.as_str(),
            job.id
        ))
    })
}

/// A count from the engine as the store keeps it.
pub(crate) fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
