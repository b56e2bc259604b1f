//! How a runner is set up ([`runner!`]) and what a job of a migration works
//! on, found from the leased job: the migration, its spec, a link to its
//! databases and, for a bucket job, the bucket in the control store and the
//! engine's.

use tern_engine::{Link, Spec};

use crate::error::{ControlError, Result};
use crate::jobs::harness::JobContext;
use crate::jobs::{BucketParams, Job};
use crate::migrations::Migration;
use crate::runners::RunnerContext;
use crate::store::Store;

/// Declares the runner `$name` of jobs of `$kind`, holding the shared
/// [`RunnerContext`]; its work is its inherent `async fn work`.
macro_rules! runner {
    ($(#[$doc:meta])* $name:ident, $kind:expr) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name {
            ctx: $crate::runners::RunnerContext,
        }

        impl $name {
            pub fn new(ctx: $crate::runners::RunnerContext) -> Self {
                $name { ctx }
            }
        }

        #[async_trait::async_trait]
        impl $crate::jobs::harness::JobRunner for $name {
            fn kinds(&self) -> Vec<$crate::jobs::JobKind> {
                vec![$kind]
            }

            async fn run(
                &self,
                ctx: $crate::jobs::harness::JobContext,
            ) -> $crate::error::Result<$crate::jobs::harness::RunEnd> {
                self.work(ctx).await
            }
        }
    };
}
pub(crate) use runner;

/// A bucket job's work: its migration, the link, the bucket's id in the
/// control store and the engine's bucket.
pub(crate) struct BucketWork {
    pub migration: Migration,
    pub link: Link,
    pub bucket_id: i64,
    pub bucket: tern_engine::Bucket,
}

/// The job's migration and a link to its databases.
pub(crate) async fn open(rc: &RunnerContext, ctx: &JobContext) -> Result<(Migration, Link)> {
    let (migration, spec) = migration_of(&ctx.store, &ctx.job).await?;
    Ok((migration, link_for(rc, spec).await?))
}

/// A bucket job's work on the bucket `at` names.
pub(crate) async fn open_bucket(
    rc: &RunnerContext,
    ctx: &JobContext,
    at: &BucketParams,
) -> Result<BucketWork> {
    let bucket_id = bucket_of(&ctx.job)?;
    let (migration, link) = open(rc, ctx).await?;
    let bucket = engine_bucket(&ctx.store, &link, ctx.job.migration_id, at).await?;
    Ok(BucketWork {
        migration,
        link,
        bucket_id,
        bucket,
    })
}

/// The job's migration and its parsed spec.
async fn migration_of(store: &Store, job: &Job) -> Result<(Migration, Spec)> {
    let id = job
        .migration_id
        .ok_or_else(|| ControlError::Internal(format!("job {} belongs to no migration", job.id)))?;
    let migration = store.migration(id).await?;
    let spec = store.spec_for(&migration.spec, &migration.name).await?;
    Ok((migration, spec))
}

/// A link for the job's migration (target tables created when missing).
async fn link_for(ctx: &RunnerContext, spec: Spec) -> Result<Link> {
    Ok(Link::connect(spec, &ctx.registry).await?)
}

/// The engine's bucket a bucket job works on. There is one plan: the one the
/// control plane made when the migration was created, which the engine
/// adopts (stores in the target) at the table's first job; a target that
/// already holds a plan keeps it.
async fn engine_bucket(
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
