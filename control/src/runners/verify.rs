//! The verify job: compares one bucket of the target with the source through
//! the spec (fully, or only the keys changed since the last run) and records
//! the run in the control store, where the accuracy chart, the bucket page and
//! the client gates read it; every mismatched row itself stays with the
//! engine's run, in the target.

use tern_engine::verify::{self, Mode, Scope, VerifyOptions, VerifyStatus};

use crate::error::Result;
use crate::jobs::harness::{JobContext, RunEnd};
use crate::jobs::{JobKind, VerifyParams};
use crate::runbook::VerifyMode;
use crate::runners::setup::{BucketWork, open_bucket};
use crate::runners::{count, report, runner};
use crate::verify_runs::NewVerifyRun;

runner!(
    /// Runs `verify` jobs.
    VerifyRunner,
    JobKind::Verify
);

impl VerifyRunner {
    async fn work(&self, ctx: JobContext) -> Result<RunEnd> {
        let (job, store) = (&ctx.job, &ctx.store);
        let params: VerifyParams = job.params()?;
        let BucketWork {
            migration,
            link,
            bucket_id,
            bucket,
        } = open_bucket(&self.ctx, &ctx, &params.bucket()).await?;
        let before = store.bucket(bucket_id).await?;
        let incremental = params.mode == VerifyMode::Incremental;
        let (control, _load) = ctx.guarded(&link, ctx.run_control(report::compare));
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
        let (c, tree, mode) = (&report.counts, report.tree.render(), params.mode.as_str());
        let run = NewVerifyRun::of_engine_run(job, &report.run_id, mode, c, tree);
        store.record_verify_run(&run).await?;
        // A switched bucket is re-verified to watch for drift between the
        // stores: the result is its drift, and its phase stays `switched`.
        let drift = before.write_primary == "new";
        if drift {
            store.record_drift(bucket_id, count(c.mismatched())).await?;
        }
        // A full diff stands for the bucket; an incremental one only for the
        // keys that changed, on top of the bucket's earlier accuracy.
        let min = migration.settings.verify_min_accuracy;
        let good = if incremental {
            c.mismatched() == 0 && before.accuracy.is_some_and(|a| a >= min)
        } else {
            c.accuracy() >= min
        };
        let summary = report::verified(&params.table, bucket.index, &report);
        Ok(RunEnd::done(
            summary,
            (!drift).then(|| report::verified_phase(good)),
        ))
    }
}
