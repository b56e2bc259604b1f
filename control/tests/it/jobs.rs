use std::collections::HashSet;

use tern_control::jobs::{Heartbeat, JobKind, JobState, NewJob, Outcome, Progress, Request};
use tern_control::{ControlError, Store};

use crate::{admin, both_stores};

fn job(kind: JobKind) -> NewJob {
    NewJob {
        migration_id: None,
        bucket_id: None,
        kind,
        params: serde_json::json!({ "bucket": 3 }),
        rate_limit: None,
    }
}

both_stores!(
    a_worker_leases_reports_and_finishes_a_job,
    |store: Store| async move {
        let queued = store.enqueue_job(&admin(), job(JobKind::BulkLoad)).await?;
        assert_eq!(queued.state, JobState::Queued);

        // A worker that only runs verifications does not get it.
        assert!(
            store
                .lease_job("w-verify", &[JobKind::Verify], 30_000)
                .await?
                .is_none()
        );
        let leased = store
            .lease_job("w1", &[JobKind::BulkLoad, JobKind::Verify], 30_000)
            .await?
            .ok_or_else(|| anyhow::anyhow!("nothing leased"))?;
        assert_eq!(
            (leased.id, leased.state, leased.attempts),
            (queued.id, JobState::Running, 1)
        );
        assert_eq!(leased.params["bucket"], 3);
        assert!(
            store
                .lease_job("w2", &[JobKind::BulkLoad], 30_000)
                .await?
                .is_none(),
            "leased once only"
        );

        let progress = Progress {
            rows_done: 500,
            rows_total: Some(1000),
            rate: Some(250.0),
            eta_seconds: Some(2.0),
            message: None,
        };
        let beat = store
            .heartbeat(leased.id, "w1", leased.lease_token, 30_000, &progress)
            .await?;
        assert_eq!(
            beat,
            Heartbeat::Continue {
                requested: None,
                rate_limit: None
            }
        );
        assert_eq!(
            store
                .heartbeat(leased.id, "w2", leased.lease_token, 30_000, &progress)
                .await?,
            Heartbeat::LeaseLost
        );

        assert!(
            store
                .finish_job(
                    leased.id,
                    "w1",
                    leased.lease_token,
                    &Outcome::Succeeded {
                        summary: Some("1000 rows".into()),
                        bucket_phase: None,
                    }
                )
                .await?
        );
        let done = store.job(leased.id).await?;
        assert_eq!(
            (done.state, done.rows_done, done.message.as_deref()),
            (JobState::Succeeded, 500, Some("1000 rows"))
        );
        assert!(done.finished_at.is_some());
        Ok(())
    }
);

both_stores!(
    a_job_whose_worker_died_is_taken_over_after_its_lease_expires,
    |store: Store| async move {
        let queued = store.enqueue_job(&admin(), job(JobKind::CatchUp)).await?;
        let first = store
            .lease_job("dead-worker", &[JobKind::CatchUp], 50)
            .await?
            .ok_or_else(|| anyhow::anyhow!("nothing leased"))?;
        assert!(
            store
                .lease_job("w2", &[JobKind::CatchUp], 30_000)
                .await?
                .is_none(),
            "lease still valid"
        );

        tokio::time::sleep(std::time::Duration::from_millis(120)).await;
        let taken = store
            .lease_job("w2", &[JobKind::CatchUp], 30_000)
            .await?
            .ok_or_else(|| anyhow::anyhow!("not taken over"))?;
        assert_eq!(
            (taken.id, taken.attempts, taken.worker.as_deref()),
            (queued.id, 2, Some("w2"))
        );
        assert!(
            taken.lease_token > first.lease_token,
            "a lease taken over carries a newer fence token"
        );

        // The dead worker wakes up: it has lost the job and can write nothing.
        let beat = store
            .heartbeat(
                queued.id,
                "dead-worker",
                first.lease_token,
                30_000,
                &Progress::default(),
            )
            .await?;
        assert_eq!(beat, Heartbeat::LeaseLost);
        assert!(
            !store
                .finish_job(
                    queued.id,
                    "dead-worker",
                    first.lease_token,
                    &Outcome::Failed("late".into())
                )
                .await?
        );
        assert_eq!(store.job(queued.id).await?.state, JobState::Running);
        Ok(())
    }
);

both_stores!(
    pause_resume_cancel_and_rate_reach_the_worker,
    |store: Store| async move {
        let id = store
            .enqueue_job(&admin(), job(JobKind::BulkLoad))
            .await?
            .id;
        let w1 = store
            .lease_job("w1", &[JobKind::BulkLoad], 30_000)
            .await?
            .ok_or_else(|| anyhow::anyhow!("nothing leased"))?;

        store
            .set_job_rate(&admin(), id, Some(500.0), "too hot")
            .await?;
        store.pause_job(&admin(), id, "maintenance window").await?;
        let beat = store
            .heartbeat(id, "w1", w1.lease_token, 30_000, &Progress::default())
            .await?;
        assert_eq!(
            beat,
            Heartbeat::Continue {
                requested: Some(Request::Pause),
                rate_limit: Some(500.0)
            }
        );

        assert!(
            store
                .finish_job(id, "w1", w1.lease_token, &Outcome::Paused)
                .await?
        );
        assert_eq!(store.job(id).await?.state, JobState::Paused);
        let refused = store.pause_job(&admin(), id, "").await;
        assert!(
            matches!(refused, Err(ControlError::Conflict(ref m)) if m.contains("resume it, or cancel it"))
        );

        store.resume_job(&admin(), id, "window over").await?;
        let w2 = store
            .lease_job("w2", &[JobKind::BulkLoad], 30_000)
            .await?
            .ok_or_else(|| anyhow::anyhow!("not re-leased"))?;
        assert_eq!(
            (w2.id, w2.requested, w2.rate_limit),
            (id, None, Some(500.0))
        );

        store.cancel_job(&admin(), id, "not needed").await?;
        let beat = store
            .heartbeat(id, "w2", w2.lease_token, 30_000, &Progress::default())
            .await?;
        assert!(matches!(
            beat,
            Heartbeat::Continue {
                requested: Some(Request::Cancel),
                ..
            }
        ));
        store
            .finish_job(id, "w2", w2.lease_token, &Outcome::Cancelled)
            .await?;
        assert_eq!(store.job(id).await?.state, JobState::Cancelled);

        let rate = store.set_job_rate(&admin(), id, Some(1.0), "").await;
        assert!(matches!(rate, Err(ControlError::Conflict(_))));
        let bad = store
            .set_job_rate(
                &admin(),
                store.enqueue_job(&admin(), job(JobKind::Verify)).await?.id,
                Some(-3.0),
                "",
            )
            .await;
        assert!(matches!(bad, Err(ControlError::Invalid(ref m)) if m.contains("above 0")));
        Ok(())
    }
);

both_stores!(
    queued_jobs_pause_and_cancel_at_once,
    |store: Store| async move {
        let a = store.enqueue_job(&admin(), job(JobKind::Verify)).await?.id;
        let b = store.enqueue_job(&admin(), job(JobKind::Verify)).await?.id;
        assert_eq!(
            store.pause_job(&admin(), a, "").await?.state,
            JobState::Paused
        );
        assert_eq!(
            store.cancel_job(&admin(), b, "").await?.state,
            JobState::Cancelled
        );
        assert!(
            store
                .lease_job("w", &[JobKind::Verify], 30_000)
                .await?
                .is_none()
        );
        Ok(())
    }
);

#[tokio::test]
async fn concurrent_workers_on_postgres_never_lease_the_same_job() -> anyhow::Result<()> {
    let (_db, store) = crate::fresh_store(tern_testkit::DbKind::Postgres).await?;
    for _ in 0..40 {
        store.enqueue_job(&admin(), job(JobKind::BulkLoad)).await?;
    }
    let mut tasks = Vec::new();
    for w in 0..6 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            while let Some(job) = store
                .lease_job(&format!("w{w}"), &[JobKind::BulkLoad], 60_000)
                .await?
            {
                mine.push(job.id);
            }
            Ok::<_, ControlError>(mine)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let distinct: HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), 40);
    assert_eq!(distinct.len(), 40);
    Ok(())
}

both_stores!(
    a_heartbeat_without_a_rate_then_with_one_is_taken,
    |store: Store| async move {
        // A job's first heartbeats have no rate yet; later ones do. On a
        // PostgreSQL store the second used to fail on the same connection
        // ("incorrect binary data format in bind parameter 4").
        store.enqueue_job(&admin(), job(JobKind::Relay)).await?;
        let leased = store
            .lease_job("w1", &[JobKind::Relay], 30_000)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no job leased"))?;
        let mut progress = Progress::default();
        for rate in [None, Some(12.5), None, Some(40.0)] {
            progress.rate = rate;
            progress.eta_seconds = rate.map(|r| 100.0 / r);
            let beat = store
                .heartbeat(leased.id, "w1", leased.lease_token, 30_000, &progress)
                .await?;
            assert!(matches!(beat, Heartbeat::Continue { .. }), "{beat:?}");
            assert_eq!(store.job(leased.id).await?.rate, rate);
        }
        // A rate limit set, cleared and set again when jobs are queued.
        for limit in [None, Some(2_000.0), None, Some(500.0)] {
            let queued = store
                .enqueue_job(
                    &admin(),
                    NewJob {
                        rate_limit: limit,
                        ..job(JobKind::BulkLoad)
                    },
                )
                .await?;
            assert_eq!(queued.rate_limit, limit);
        }
        Ok(())
    }
);
