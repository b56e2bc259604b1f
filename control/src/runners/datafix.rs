//! The data-fix job: runs a fix's run with the data-fix engine, following the
//! job's live rate and the fix's settings, recording failures and a
//! checkpoint after every page, and resuming from that checkpoint when a
//! worker takes the job over. Records are never changed twice: the engine
//! guards each write by the values its filter read (see `tern_datafix::db`),
//! and checkpoints are fenced by the job's attempt so a worker that lost its
//! lease cannot move the run backwards.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tern_datafix::{
    Checkpoint, FixFailure, FixJob, FixObserver, FixProgress, LiveSettings, OnFailure,
    PluginRegistry, RunOptions, RunStatus,
};

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
    attempt: i64,
    ctx: JobContext,
}

#[async_trait]
impl FixObserver for StoreObserver {
    fn progress(&self, p: &FixProgress) {
        self.ctx.report(Progress {
            rows_done: p.changed as i64,
            rows_total: p
                .pass_total
                .map(|t| (p.changed + t.saturating_sub(p.pass_done)) as i64),
            rate: Some(p.rate),
            eta_seconds: p.eta_seconds,
            message: Some(format!(
                "pass {}: {} of {} selected records done; {} changed, {} failed, {} stale",
                p.pass,
                p.pass_done,
                p.pass_total.map_or_else(|| "?".into(), |t| t.to_string()),
                p.changed,
                p.failed,
                p.stale
            )),
        });
    }

    async fn failures(&self, f: &[FixFailure]) -> std::result::Result<(), String> {
        self.store
            .record_fix_failures(self.run_id, f)
            .await
            .map_err(|e| e.to_string())
    }

    async fn checkpoint(&self, c: &Checkpoint) -> std::result::Result<(), String> {
        self.store
            .record_fix_checkpoint(self.run_id, self.attempt, c)
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
        spec.settings.rate = job.rate_limit.map_or(0, |r| r.max(1.0).round() as u64);
        spec.settings.paused = false;
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

        // Follow the job's rate and the fix's other settings while the run goes on.
        let follower = {
            let settings = settings.clone();
            let mut rate = ctx.rate_limit.clone();
            let store = ctx.store.clone();
            let stop = ctx.stop.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        () = stop.cancelled() => break,
                        changed = rate.changed() => {
                            if changed.is_err() { break; }
                            let r = *rate.borrow();
                            settings.set_rate(r.map(|r| r.max(1.0).round() as u64));
                        }
                        () = tokio::time::sleep(Duration::from_secs(1)) => {
                            if let Ok(f) = store.fix(fix_id).await {
                                settings.set_concurrency(f.settings.concurrency.max(1) as usize);
                                settings.set_batch_size(f.settings.batch_size.max(1) as usize);
                                if let Some(p) = OnFailure::parse(&f.settings.on_failure) {
                                    settings.set_on_failure(p);
                                }
                            }
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
            attempt: job.attempts,
            ctx: ctx.clone(),
        });
        opts.cancel = ctx.stop.clone();
        opts.resume = resume;
        opts.failed_keys = failed_keys;
        let report = engine.run(opts).await;
        follower.abort();
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
