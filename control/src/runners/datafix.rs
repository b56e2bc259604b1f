//! The data-fix job: runs a fix's run with the data-fix engine, following the
//! job's live rate and the fix's settings, recording failures and a
//! checkpoint after every page, and resuming from that checkpoint when a
//! worker takes the job over. Records are never changed twice: the engine
//! guards each write by the values its filter read (see `tern_datafix::db`),
//! and checkpoints are fenced by the job's lease token so a worker that lost its
//! lease cannot move the run backwards.

use std::sync::Arc;

use async_trait::async_trait;
use tern_datafix::{FixJob, LiveSettings, PluginRegistry, RunOptions};

use crate::error::Result;
use crate::jobs::harness::{JobContext, JobRunner, RunEnd};
use crate::jobs::{FixParams, JobKind};
use crate::runners::fix_run::{self, StoreObserver};

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

#[async_trait]
impl JobRunner for DataFixRunner {
    fn kinds(&self) -> Vec<JobKind> {
        vec![JobKind::DataFix]
    }

    async fn run(&self, ctx: JobContext) -> Result<RunEnd> {
        let FixParams { fix_id, run_id } = ctx.job.params()?;
        let fix = ctx.store.fix(fix_id).await?;
        let run = ctx.store.fix_run(run_id).await?;
        let mut spec = ctx.store.fix_spec_for(&fix.spec, &fix.name).await?;
        fix_run::configure(&mut spec, &fix);
        let engine = match FixJob::connect(spec, &self.plugins).await {
            Ok(e) => e,
            Err(e) => return fix_run::failed(&ctx, run_id, e).await,
        };
        let settings = LiveSettings::new(engine.spec().settings.clone());
        let follower = fix_run::follow_settings(&ctx, fix_id, &settings);
        let (resume, failed_keys) =
            fix_run::resume_point(&ctx, run_id, run.checkpoint.as_deref()).await?;
        let mut opts = RunOptions::new(settings);
        opts.observer = Arc::new(StoreObserver {
            store: ctx.store.clone(),
            run_id,
            lease_token: ctx.job.lease_token,
        });
        let earlier = resume.clone().unwrap_or_default();
        let (control, _load) = ctx.guarded_by(
            engine.load_guard(),
            ctx.run_control(move |p| fix_run::job_progress(p, &earlier)),
        );
        opts.control = control;
        opts.resume = resume;
        opts.failed_keys = failed_keys;
        let report = engine.run(opts).await;
        follower.finish().await;
        engine.db().close().await;
        fix_run::finish(&ctx, &fix, run_id, report).await
    }
}
