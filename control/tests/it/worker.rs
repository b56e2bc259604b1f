//! The worker loop with a small counting runner: it counts to `params.n`, one
//! step per 10 ms, reporting progress, honouring `stop` and the rate limit, and
//! resuming from the progress stored on the job (its "checkpoint").

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tern_control::jobs::{JobKind, JobState, NewJob, Progress};
use tern_control::worker::{JobContext, JobRunner, RunEnd, Worker, WorkerTiming};
use tern_control::{ControlError, Store};
use tokio_util::sync::CancellationToken;

use crate::{admin, both_stores};

#[derive(Default)]
struct Counter {
    rates_seen: Mutex<Vec<Option<f64>>>,
}

#[async_trait]
impl JobRunner for Counter {
    fn kinds(&self) -> Vec<JobKind> {
        vec![JobKind::Verify]
    }

    async fn run(&self, ctx: JobContext) -> Result<RunEnd, ControlError> {
        let n = ctx.job.params["n"].as_i64().unwrap_or(10);
        let mut done = ctx.job.rows_done;
        while done < n {
            if ctx.stop.is_cancelled() {
                return Ok(RunEnd::Stopped);
            }
            let rate = *ctx.rate_limit.borrow();
            if let Ok(mut seen) = self.rates_seen.lock() {
                if seen.last() != Some(&rate) {
                    seen.push(rate);
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            done += 1;
            ctx.report(Progress {
                rows_done: done,
                rows_total: Some(n),
                ..Progress::default()
            });
        }
        Ok(RunEnd::Completed {
            summary: format!("counted to {n}"),
            bucket_phase: None,
        })
    }
}

fn fast() -> WorkerTiming {
    WorkerTiming {
        lease: Duration::from_millis(400),
        heartbeat: Duration::from_millis(40),
        idle_poll: Duration::from_millis(20),
    }
}

async fn enqueue(store: &Store, n: i64) -> anyhow::Result<i64> {
    Ok(store
        .enqueue_job(
            &admin(),
            NewJob {
                migration_id: None,
                bucket_id: None,
                kind: JobKind::Verify,
                params: serde_json::json!({ "n": n }),
                rate_limit: None,
            },
        )
        .await?
        .id)
}

async fn wait_for(
    store: &Store,
    id: i64,
    want: impl Fn(&tern_control::jobs::Job) -> bool,
) -> anyhow::Result<tern_control::jobs::Job> {
    for _ in 0..500 {
        let job = store.job(id).await?;
        if want(&job) {
            return Ok(job);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!(
        "job {id} never reached the expected state: {:?}",
        store.job(id).await?
    )
}

fn start(
    store: &Store,
    name: &str,
    runner: Arc<Counter>,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let shutdown = CancellationToken::new();
    let worker = Worker::new(name, store.clone(), &[runner as Arc<dyn JobRunner>], fast());
    let handle = tokio::spawn(worker.run(shutdown.clone()));
    (shutdown, handle)
}

both_stores!(
    a_worker_runs_a_job_to_the_end_reporting_progress,
    |store: Store| async move {
        let id = enqueue(&store, 20).await?;
        let (shutdown, handle) = start(&store, "w1", Arc::new(Counter::default()));
        let job = wait_for(&store, id, |j| j.state == JobState::Succeeded).await?;
        assert_eq!(
            (job.rows_done, job.rows_total, job.message.as_deref()),
            (20, Some(20), Some("counted to 20"))
        );
        shutdown.cancel();
        handle.await?;
        Ok(())
    }
);

both_stores!(
    pause_resume_cancel_and_rate_reach_a_running_job,
    |store: Store| async move {
        let id = enqueue(&store, 100_000).await?;
        let runner = Arc::new(Counter::default());
        let (shutdown, handle) = start(&store, "w1", Arc::clone(&runner));
        wait_for(&store, id, |j| j.rows_done > 5).await?;

        store
            .set_job_rate(&admin(), id, Some(123.0), "calmer")
            .await?;
        wait_for(&store, id, |_| {
            runner
                .rates_seen
                .lock()
                .map(|r| r.contains(&Some(123.0)))
                .unwrap_or(false)
        })
        .await?;

        store.pause_job(&admin(), id, "").await?;
        let paused = wait_for(&store, id, |j| j.state == JobState::Paused).await?;
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(
            store.job(id).await?.rows_done,
            paused.rows_done,
            "a paused job does not advance"
        );

        store.resume_job(&admin(), id, "").await?;
        wait_for(&store, id, |j| {
            j.state == JobState::Running && j.rows_done > paused.rows_done
        })
        .await?;

        store.cancel_job(&admin(), id, "").await?;
        wait_for(&store, id, |j| j.state == JobState::Cancelled).await?;
        shutdown.cancel();
        handle.await?;
        Ok(())
    }
);

both_stores!(
    a_dead_workers_job_is_resumed_by_another_from_its_checkpoint,
    |store: Store| async move {
        let id = enqueue(&store, 60).await?;
        let (_dead_shutdown, dead) = start(&store, "doomed", Arc::new(Counter::default()));
        wait_for(&store, id, |j| j.rows_done >= 10).await?;
        dead.abort(); // the process dies: no finish, no more heartbeats
        let _ = dead.await;
        let at_death = store.job(id).await?.rows_done;

        let (shutdown, handle) = start(&store, "rescuer", Arc::new(Counter::default()));
        let job = wait_for(&store, id, |j| j.state == JobState::Succeeded).await?;
        assert_eq!(job.attempts, 2);
        assert_eq!(job.rows_done, 60);
        assert!(at_death >= 10);
        shutdown.cancel();
        handle.await?;
        Ok(())
    }
);

both_stores!(
    a_worker_shutting_down_hands_its_job_back_to_the_queue,
    |store: Store| async move {
        let id = enqueue(&store, 100_000).await?;
        let (shutdown, handle) = start(&store, "w1", Arc::new(Counter::default()));
        wait_for(&store, id, |j| j.rows_done > 3).await?;
        shutdown.cancel();
        handle.await?;
        let job = store.job(id).await?;
        assert_eq!(job.state, JobState::Queued);
        assert!(job.worker.is_none());
        Ok(())
    }
);
