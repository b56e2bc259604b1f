//! The repair job: re-copies exactly the mismatched keys of an engine
//! verification run of a bucket and re-checks them, recording the result as
//! a run in the control store (the bucket is verified again when accuracy is
//! good enough).

use async_trait::async_trait;
use tern_engine::verify;

use crate::error::Result;
use crate::jobs::harness::{JobContext, JobRunner, RunEnd};
use crate::jobs::{JobKind, Progress, RepairParams};
use crate::phases::Phase;
use crate::runners::{RunnerContext, bucket_of, link_for, migration_of};
use crate::verify_runs::NewVerifyRun;

/// Runs `repair` jobs.
#[derive(Debug)]
pub struct RepairRunner {
    ctx: RunnerContext,
}

impl RepairRunner {
    pub fn new(ctx: RunnerContext) -> Self {
        RepairRunner { ctx }
    }
}

#[async_trait]
impl JobRunner for RepairRunner {
    fn kinds(&self) -> Vec<JobKind> {
        vec![JobKind::Repair]
    }

    async fn run(&self, ctx: JobContext) -> Result<RunEnd> {
        let (job, store) = (&ctx.job, &ctx.store);
        bucket_of(job)?;
        let run_id = job.params::<RepairParams>()?.engine_run;
        let (migration, spec) = migration_of(store, job).await?;
        let link = link_for(&self.ctx, spec).await?;
        let min = migration.settings.verify_min_accuracy;
        ctx.report(Progress {
            message: Some(format!("repairing the mismatches of run {run_id}")),
            ..Progress::default()
        });
        let (control, _load) = ctx.guarded(&link, ctx.quiet_run_control());
        let report = verify::repair(&link, &run_id, &control).await?;
        let tree = verify::mismatch_tree(link.target(), &run_id)
            .await?
            .render();
        store
            .record_verify_run(&NewVerifyRun::of_engine_run(
                job,
                &run_id,
                "repair",
                &report.counts,
                tree,
            ))
            .await?;
        Ok(RunEnd::Completed {
            summary: format!(
                "run {run_id}: {} mismatches re-copied, {} resolved, {} still open; accuracy {}%",
                report.mismatches,
                report.resolved,
                report.still_open,
                report.counts.accuracy_text()
            ),
            bucket_phase: Some(if report.counts.accuracy() >= min {
                Phase::Verified
            } else {
                Phase::CaughtUp
            }),
        })
    }
}
