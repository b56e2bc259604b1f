//! The verify job: compares one bucket of the target with the source through
//! the spec (fully, or only the keys changed since the last run) and records
//! the run in the control store, where the accuracy chart, the bucket page and
//! the client gates read it; every mismatched row itself stays with the
//! engine's run, in the target.

use async_trait::async_trait;
use tern_engine::verify::{self, Mode, Scope, VerifyOptions, VerifyStatus};

use crate::error::Result;
use crate::jobs::harness::{JobContext, JobRunner, RunEnd, done_of_total};
use crate::jobs::{JobKind, VerifyParams};
use crate::phases::Phase;
use crate::runbook::VerifyMode;
use crate::runners::{RunnerContext, bucket_of, engine_bucket, link_for, migration_of};
use crate::verify_runs::NewVerifyRun;

/// Runs `verify` jobs.
#[derive(Debug)]
pub struct VerifyRunner {
    ctx: RunnerContext,
}

impl VerifyRunner {
    pub fn new(ctx: RunnerContext) -> Self {
        VerifyRunner { ctx }
    }
}

#[async_trait]
impl JobRunner for VerifyRunner {
    fn kinds(&self) -> Vec<JobKind> {
        vec![JobKind::Verify]
    }

    async fn run(&self, ctx: JobContext) -> Result<RunEnd> {
        let (job, store) = (&ctx.job, &ctx.store);
        let bucket_id = bucket_of(job)?;
        let params: VerifyParams = job.params()?;
        let (migration, spec) = migration_of(store, job).await?;
        let link = link_for(&self.ctx, spec).await?;
        let min = migration.settings.verify_min_accuracy;
        let before = store.bucket(bucket_id).await?;
        let bucket = engine_bucket(store, &link, job.migration_id, &params.bucket()).await?;
        let incremental = params.mode == VerifyMode::Incremental;
        let control = ctx.run_control(|p| {
            let (table, bucket) = (p.task.table(), p.task.bucket());
            let (table, bucket) = (table.unwrap_or_default(), bucket.unwrap_or_default());
            done_of_total(p, format!("{table} bucket {bucket}: comparing"))
        });
        let (control, _load) = ctx.guarded(&link, control);
        let opts = VerifyOptions {
            scope: Scope::Bucket(bucket.index),
            mode: if incremental {
                Mode::SinceLast
            } else {
                Mode::Full
            },
            ..VerifyOptions::full(&params.table)
        };
        let report = verify::verify(&link, &opts, &control).await?;
        if report.status == VerifyStatus::Cancelled {
            return Ok(RunEnd::Stopped);
        }
        let (c, tree) = (&report.counts, report.tree.render());
        store
            .record_verify_run(&NewVerifyRun::of_engine_run(
                job,
                &report.run_id,
                params.mode.as_str(),
                c,
                tree,
            ))
            .await?;
        // A switched bucket is re-verified to watch for drift between the
        // stores: the result is its drift, and its phase stays `switched`.
        let drift = before.write_primary == "new";
        if drift {
            store
                .record_drift(bucket_id, i64::try_from(c.mismatched()).unwrap_or(i64::MAX))
                .await?;
        }
        // A full diff stands for the bucket; an incremental one only for the
        // keys that changed, on top of the bucket's earlier accuracy.
        let good = if incremental {
            c.mismatched() == 0 && before.accuracy.is_some_and(|a| a >= min)
        } else {
            c.accuracy() >= min
        };
        Ok(RunEnd::Completed {
            summary: format!(
                "{} bucket {}: {} of {} rows equal ({}%), {} missing, {} extra, {} different; {} keys read; run {}",
                params.table,
                bucket.index,
                c.matched,
                c.compared,
                c.accuracy_text(),
                c.missing,
                c.extra,
                c.different,
                report.keys_read,
                report.run_id
            ),
            bucket_phase: (!drift).then_some(if good {
                Phase::Verified
            } else {
                Phase::CaughtUp
            }),
        })
    }
}
