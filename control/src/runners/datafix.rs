//! The data-fix job: runs a fix's run with the data-fix engine, following the
//! job's live rate and the fix's settings, recording failures and a
//! checkpoint after every page, and resuming from that checkpoint when a
//! worker takes the job over. Records are never changed twice: the engine
//! guards each write by the values its filter read (see `tern_datafix::db`),
//! and checkpoints are fenced by the job's lease token so a worker that lost its
//! lease cannot move the run backwards.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tern_datafix::{
    Checkpoint, FixFailure, FixJob, FixObserver, LiveSettings, OnFailure, PluginRegistry,
    RunOptions, RunStatus,
};
use tern_engine::Task;

use crate::error::{ControlError, Result};
use crate::jobs::harness::{JobContext, JobRunner, RunEnd};
use crate::jobs::{FixParams, JobKind, Progress};
use crate::store::Store;

/// Runs `data-fix` jobs.
#[derive(Debug, Default)]
pub struct DataFixRunner {
    plugins: Arc<PluginRegistry>,
}

impl DataFixRunner {
    /// A runner offering these mapper plug-ins to fix specs.
    pub fn with_plugins(plugins: PluginRegistry) -> Self {
        DataFixRunner {
            plugins: Arc::new(plugins),
        }
    }
}

struct StoreObserver {
    store: Store,
    run_id: i64,
    lease_token: i64,
}

/// The job's progress from the engine's: records changed by every run of
/// the fix (`earlier` ones and this), and what is left of this pass.
fn job_progress(p: &tern_engine::Progress, earlier: &Checkpoint) -> Progress {
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

#[async_trait]
impl JobRunner for DataFixRunner {
    fn kinds(&self) -> Vec<JobKind> {
        vec![JobKind::DataFix]
    }

    async fn run(&self, ctx: JobContext) -> Result<RunEnd> {
        let job = &ctx.job;
        let FixParams { fix_id, run_id } = job.params()?;
        let fix = ctx.store.fix(fix_id).await?;
        let run = ctx.store.fix_run(run_id).await?;
        let mut spec = ctx.store.fix_spec_for(&fix.spec, &fix.name).await?;
        spec.settings.concurrency = fix.settings.concurrency.max(1) as usize;
        spec.settings.batch_size = fix.settings.batch_size.max(1) as usize;
        spec.settings.on_failure = OnFailure::parse(&fix.settings.on_failure).unwrap_or_default();
        let engine = match FixJob::connect(spec, &self.plugins).await {
            Ok(e) => e,
            Err(e) => {
                let _ = ctx
                    .store
                    .finish_fix_run(run_id, "failed", &e.to_string())
                    .await;
                return Err(e.into());
            }
        };
        let settings = LiveSettings::new(engine.spec().settings.clone());

        // Follow the fix's settings while the run goes on (the job's rate
        // reaches the run through its throttle).
        let follower = {
            let (settings, store) = (settings.clone(), ctx.store.clone());
            ctx.every(Duration::from_secs(1), move || {
                let (settings, store) = (settings.clone(), store.clone());
                async move {
                    if let Ok(f) = store.fix(fix_id).await {
                        settings.set_concurrency(f.settings.concurrency.max(1) as usize);
                        settings.set_batch_size(f.settings.batch_size.max(1) as usize);
                        if let Some(p) = OnFailure::parse(&f.settings.on_failure) {
                            settings.set_on_failure(p);
                        }
                    }
                }
            })
        };

        let resume = run
            .checkpoint
            .as_deref()
            .and_then(|c| serde_json::from_str::<Checkpoint>(c).ok());
        if let Some(cp) = &resume {
            tracing::info!(
                job = job.id,
                run = run_id,
                pass = cp.pass,
                changed = cp.changed,
                "resuming a data fix from its checkpoint"
            );
        }
        let failed_keys: HashSet<String> = ctx
            .store
            .fix_failed_keys(run_id)
            .await?
            .into_iter()
            .collect();
        let mut opts = RunOptions::new(settings);
        opts.observer = Arc::new(StoreObserver {
            store: ctx.store.clone(),
            run_id,
            lease_token: job.lease_token,
        });
        let earlier = resume.clone().unwrap_or_default();
        let (control, _load) = ctx.guarded_by(
            engine.load_guard(),
            ctx.run_control(move |p| job_progress(p, &earlier)),
        );
        opts.control = control;
        opts.resume = resume;
        opts.failed_keys = failed_keys;
        let report = engine.run(opts).await;
        follower.finish().await;
        engine.db().close().await;
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
                Ok(RunEnd::Completed {
                    summary,
                    bucket_phase: None,
                })
            }
            Err(tern_datafix::DatafixError::Observer(m))
                if ctx.stop.is_cancelled() || m.contains("took the job over") =>
            {
                // Lost the lease: the new holder carries on; write nothing more.
                tracing::warn!(job = job.id, run = run_id, %m, "data fix stopped: the job moved to another worker");
                Ok(RunEnd::Stopped)
            }
            Err(e) => {
                let _ = ctx
                    .store
                    .finish_fix_run(run_id, "failed", &e.to_string())
                    .await;
                Err(ControlError::from(e))
            }
        }
    }
}
