//! The verify and repair jobs. Verify compares one bucket of the target with
//! the source through the spec (fully, or only the keys changed since the
//! last run); repair re-copies exactly the mismatched keys of an engine run
//! and re-checks them. Both record the run in the control store, where the
//! accuracy chart, the bucket page and the client gates read it; every
//! mismatched row itself stays with the engine's run, in the target.

use async_trait::async_trait;
use tern_engine::RunControl;
use tern_engine::verify::{self, Counts, Mode, Scope, VerifyOptions, VerifyStatus};

use crate::buckets::Phase;
use crate::error::{ControlError, Result};
use crate::jobs::{JobKind, Progress};
use crate::runners::{
    RunnerContext, engine_bucket, link_for, live_throttle, migration_of, param_str, run_control,
};
use crate::verify_runs::NewVerifyRun;
use crate::worker::{JobContext, JobRunner, RunEnd};

/// Runs `verify` and `repair` jobs.
#[derive(Debug)]
pub struct VerifyRunner {
    ctx: RunnerContext,
}

impl VerifyRunner {
    pub fn new(ctx: RunnerContext) -> Self {
        VerifyRunner { ctx }
    }
}

fn run_record(
    migration_id: i64,
    bucket_id: i64,
    job_id: i64,
    engine_run: &str,
    kind: &str,
    counts: &Counts,
    tree: Option<String>,
) -> NewVerifyRun {
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    NewVerifyRun {
        migration_id,
        bucket_id: Some(bucket_id),
        job_id: Some(job_id),
        engine_run: Some(engine_run.to_string()),
        kind: kind.to_string(),
        rows_compared: n(counts.compared),
        matched: n(counts.matched),
        missing: n(counts.missing),
        extra: n(counts.extra),
        different: n(counts.different),
        accuracy: counts.accuracy(),
        tree,
    }
}

#[async_trait]
impl JobRunner for VerifyRunner {
    fn kinds(&self) -> Vec<JobKind> {
        vec![JobKind::Verify, JobKind::Repair]
    }

    async fn run(&self, ctx: JobContext) -> Result<RunEnd> {
        let job = &ctx.job;
        let bucket_id = job.bucket_id.ok_or_else(|| {
            ControlError::Internal(format!(
                "{} job {} has no bucket",
                job.kind.as_str(),
                job.id
            ))
        })?;
        let table = param_str(job, "table")?.to_string();
        let (migration, spec) = migration_of(&ctx.store, job).await?;
        let link = link_for(&self.ctx, spec).await?;
        let min = migration.settings.verify_min_accuracy;
        let before = ctx.store.bucket(bucket_id).await?;

        if job.kind == JobKind::Repair {
            let run_id = param_str(job, "engine_run")?.to_string();
            ctx.report(Progress {
                message: Some(format!("repairing the mismatches of run {run_id}")),
                ..Progress::default()
            });
            let control = RunControl::new()
                .with_throttle(live_throttle(ctx.rate_limit.clone()))
                .with_cancel(ctx.stop.clone());
            let report = verify::repair(&link, &run_id, &control).await?;
            let tree = verify::mismatch_tree(link.target(), &run_id).await?;
            let tree_text = Some(tree.render());
            ctx.store
                .record_verify_run(&run_record(
                    migration.id,
                    bucket_id,
                    job.id,
                    &run_id,
                    "repair",
                    &report.counts,
                    tree_text,
                ))
                .await?;
            let accuracy = report.counts.accuracy();
            return Ok(RunEnd::Completed {
                summary: format!(
                    "run {run_id}: {} mismatches re-copied, {} resolved, {} still open; accuracy {}%",
                    report.mismatches,
                    report.resolved,
                    report.still_open,
                    report.counts.accuracy_text()
                ),
                bucket_phase: Some(if accuracy >= min {
                    Phase::Verified
                } else {
                    Phase::CaughtUp
                }),
            });
        }

        let bucket = engine_bucket(&ctx.store, &link, job).await?;
        let incremental = job.params["mode"].as_str() == Some("incremental");
        let reporter = ctx.clone();
        let control = run_control(&ctx, move |p| {
            let done = i64::try_from(p.done).unwrap_or(i64::MAX);
            let total = i64::try_from(p.total.unwrap_or(p.done)).unwrap_or(i64::MAX);
            reporter.report(Progress {
                rows_done: done,
                rows_total: Some(total),
                rate: Some(p.rate),
                eta_seconds: (p.rate > 0.0).then(|| (total - done).max(0) as f64 / p.rate),
                message: Some(format!(
                    "{} bucket {}: comparing",
                    p.task.table().unwrap_or_default(),
                    p.task.bucket().unwrap_or_default()
                )),
            });
        });
        let opts = VerifyOptions {
            scope: Scope::Bucket(bucket.index),
            mode: if incremental {
                Mode::SinceLast
            } else {
                Mode::Full
            },
            ..VerifyOptions::full(&table)
        };
        let report = verify::verify(&link, &opts, &control).await?;
        if report.status == VerifyStatus::Cancelled {
            return Ok(RunEnd::Stopped);
        }
        let kind = if incremental { "incremental" } else { "full" };
        let tree_text = Some(report.tree.render());
        ctx.store
            .record_verify_run(&run_record(
                migration.id,
                bucket_id,
                job.id,
                &report.run_id,
                kind,
                &report.counts,
                tree_text,
            ))
            .await?;
        // A full diff stands for the bucket; an incremental one only for the
        // keys that changed, on top of the bucket's earlier accuracy.
        let good = if incremental {
            report.counts.mismatched() == 0 && before.accuracy.is_some_and(|a| a >= min)
        } else {
            report.counts.accuracy() >= min
        };
        Ok(RunEnd::Completed {
            summary: format!(
                "{table} bucket {}: {} of {} rows equal ({}%), {} missing, {} extra, {} different; {} keys read; run {}",
                bucket.index,
                report.counts.matched,
                report.counts.compared,
                report.counts.accuracy_text(),
                report.counts.missing,
                report.counts.extra,
                report.counts.different,
                report.keys_read,
                report.run_id
            ),
            bucket_phase: Some(if good {
                Phase::Verified
            } else {
                Phase::CaughtUp
            }),
        })
    }
}
