//! The repair job: re-copies exactly the mismatched keys of an engine
//! verification run of a bucket and re-checks them, recording the result as
//! a run in the control store (the bucket is verified again when accuracy is
//! good enough).

use tern_engine::verify;

use crate::error::Result;
use crate::jobs::harness::{JobContext, RunEnd};
use crate::jobs::{JobKind, Progress, RepairParams};
use crate::runners::setup::{bucket_of, open};
use crate::runners::{report, runner};
use crate::verify_runs::NewVerifyRun;

runner!(
    /// Runs `repair` jobs.
    RepairRunner,
    JobKind::Repair
);

impl RepairRunner {
    async fn work(&self, ctx: JobContext) -> Result<RunEnd> {
        let (job, store) = (&ctx.job, &ctx.store);
        bucket_of(job)?;
        let run_id = job.params::<RepairParams>()?.engine_run;
        let (migration, link) = open(&self.ctx, &ctx).await?;
        ctx.report(Progress {
            message: Some(format!("repairing the mismatches of run {run_id}")),
            ..Progress::default()
        });
        let (control, _load) = ctx.guarded(&link, ctx.quiet_run_control());
        let report = verify::repair(&link, &run_id, &control).await?;
        let tree = verify::mismatch_tree(link.target(), &run_id)
            .await?
            .render();
        let run = NewVerifyRun::of_engine_run(job, &run_id, "repair", &report.counts, tree);
        store.record_verify_run(&run).await?;
        let good = report.counts.accuracy() >= migration.settings.verify_min_accuracy;
        Ok(RunEnd::done(
            report::repaired(&run_id, &report),
            report::verified_phase(good),
        ))
    }
}
