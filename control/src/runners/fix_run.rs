//! A data fix's run as the control store keeps it: the settings engineers
//! set on the fix (followed while the run goes on), the checkpoint and failed
//! keys a run resumes from, what the engine reports after every page
//! (failures, checkpoints fenced by the job's lease token), the job's
//! progress, and how the run ends.

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use tern_datafix::{
    Checkpoint, DatafixError, FixFailure, FixObserver, FixReport, FixSpec, LiveSettings, OnFailure,
    RunStatus,
};
use tern_engine::Task;

use crate::error::{ControlError, Result};
use crate::fixes::{Fix, FixSettings};
use crate::jobs::Progress;
use crate::jobs::harness::{JobContext, Periodic, RunEnd};
use crate::store::Store;

/// Records mapped at once and per page, as the fix's settings say.
fn sizes(s: &FixSettings) -> (usize, usize) {
    (s.concurrency.max(1) as usize, s.batch_size.max(1) as usize)
}

/// `spec` with the fix's settings.
pub(crate) fn configure(spec: &mut FixSpec, fix: &Fix) {
    (spec.settings.concurrency, spec.settings.batch_size) = sizes(&fix.settings);
    spec.settings.on_failure = OnFailure::parse(&fix.settings.on_failure).unwrap_or_default();
}

/// Follows the fix's settings while the run goes on (the job's rate reaches
/// the run through its throttle).
pub(crate) fn follow_settings(ctx: &JobContext, fix_id: i64, settings: &LiveSettings) -> Periodic {
    let (settings, store) = (settings.clone(), ctx.store.clone());
    ctx.every(Duration::from_secs(1), move || {
        let (settings, store) = (settings.clone(), store.clone());
        async move {
            if let Ok(f) = store.fix(fix_id).await {
                let (concurrency, batch_size) = sizes(&f.settings);
                settings.set_concurrency(concurrency);
                settings.set_batch_size(batch_size);
                if let Some(p) = OnFailure::parse(&f.settings.on_failure) {
                    settings.set_on_failure(p);
                }
            }
        }
    })
}

/// Where the run resumes: its last checkpoint, and the keys it recorded as
/// failed (not tried again).
pub(crate) async fn resume_point(
    ctx: &JobContext,
    run_id: i64,
    checkpoint: Option<&str>,
) -> Result<(Option<Checkpoint>, HashSet<String>)> {
    let resume = checkpoint.and_then(|c| serde_json::from_str::<Checkpoint>(c).ok());
    if let Some(cp) = &resume {
        tracing::info!(
            job = ctx.job.id,
            run = run_id,
            pass = cp.pass,
            changed = cp.changed,
            "resuming a data fix from its checkpoint"
        );
    }
    let failed = ctx.store.fix_failed_keys(run_id).await?;
    Ok((resume, failed.into_iter().collect()))
}

/// Records what the engine reports after every page for the run.
pub(crate) struct StoreObserver {
    pub store: Store,
    pub run_id: i64,
    pub lease_token: i64,
}

#[async_trait]
impl FixObserver for StoreObserver {
    async fn failures(&self, f: &[FixFailure]) -> std::result::Result<(), String> {
        self.store
            .record_fix_failures(self.run_id, f)
            .await
            .map_err(|e| e.to_string())
    }

    async fn checkpoint(&self, c: &Checkpoint) -> std::result::Result<(), String> {
        self.store
            .record_fix_checkpoint(self.run_id, self.lease_token, c)
            .await
            .map_err(|e| e.to_string())
    }
}

/// The job's progress from the engine's: records changed by every run of
/// the fix (`earlier` ones and this), and what is left of this pass.
pub(crate) fn job_progress(p: &tern_engine::Progress, earlier: &Checkpoint) -> Progress {
    let changed = earlier.changed + p.tally.rows_written;
    let pass = match p.task {
        Task::Fix { pass, .. } => pass,
        _ => 0,
    };
    Progress {
        rows_done: changed as i64,
        rows_total: p.total.map(|t| (changed + t.saturating_sub(p.done)) as i64),
        rate: Some(p.rate),
        eta_seconds: p.eta.map(|d| d.as_secs_f64()),
        message: Some(format!(
            "pass {pass}: {} of {} selected records done; {changed} changed, {} failed, {} stale",
            p.done,
            p.total.map_or_else(|| "?".into(), |t| t.to_string()),
            earlier.failed + p.tally.failed,
            earlier.stale + p.tally.stale
        )),
    }
}

/// Records how the run `run_id` of `fix` ended and what the job does.
pub(crate) async fn finish(
    ctx: &JobContext,
    fix: &Fix,
    run_id: i64,
    report: std::result::Result<FixReport, DatafixError>,
) -> Result<RunEnd> {
    match report {
        Ok(r) if r.status == RunStatus::Cancelled => Ok(RunEnd::Stopped),
        Ok(r) => {
            let summary = format!(
                "{}: {} records changed in {} passes, {} failed, {} stale; the filter selects nothing more",
                fix.name, r.changed, r.passes, r.failed, r.stale
            );
            ctx.store
                .finish_fix_run(run_id, "succeeded", &summary)
                .await?;
            Ok(RunEnd::done(summary, None))
        }
        Err(DatafixError::Observer(m))
            if ctx.stop.is_cancelled() || m.contains("took the job over") =>
        {
            // Lost the lease: the new holder carries on; write nothing more.
            tracing::warn!(job = ctx.job.id, run = run_id, %m, "data fix stopped: the job moved to another worker");
            Ok(RunEnd::Stopped)
        }
        Err(e) => failed(ctx, run_id, e).await,
    }
}

/// Records the run `run_id` failed with `e`, and returns the error.
pub(crate) async fn failed(ctx: &JobContext, run_id: i64, e: DatafixError) -> Result<RunEnd> {
    let _ = ctx
        .store
        .finish_fix_run(run_id, "failed", &e.to_string())
        .await;
    Err(ControlError::from(e))
}
