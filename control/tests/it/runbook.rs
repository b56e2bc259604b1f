use tern_control::buckets::Phase;
use tern_control::jobs::{JobKind, JobState, Outcome};
use tern_control::runbook::VerifyMode;
use tern_control::{ControlError, Store};

use crate::support::{create_migration, table_bucket};
use crate::{admin, both_stores};

async fn migration(store: &Store) -> anyhow::Result<(i64, Vec<i64>)> {
    let buckets = (0..3)
        .map(|i| {
            let (lo, hi) = ((i * 10).to_string(), (i * 10 + 10).to_string());
            table_bucket(i, "contacts", Some(lo), Some(hi), 100)
        })
        .collect();
    let m = create_migration(store, "contacts", buckets).await?;
    let ids = store.list_buckets(m).await?.iter().map(|b| b.id).collect();
    Ok((m, ids))
}

both_stores!(
    starting_a_bulk_load_moves_buckets_and_queues_one_job_each,
    |store: Store| async move {
        let (m, buckets) = migration(&store).await?;
        let jobs = store.start_bulk_load(&admin(), m, &buckets[..2]).await?;
        assert_eq!(jobs.len(), 2);
        let job = store.job(jobs[0]).await?;
        assert_eq!((job.kind, job.state), (JobKind::BulkLoad, JobState::Queued));
        assert_eq!(job.params["table"], "contacts");
        assert_eq!(job.params["table_bucket"], 0);
        assert_eq!(job.params["chunk_size"], 5000);
        assert_eq!(store.bucket(buckets[0]).await?.phase, Phase::BulkLoading);
        assert_eq!(store.bucket(buckets[2]).await?.phase, Phase::Planned);

        // Starting the same buckets again is an illegal move: nothing changes.
        let again = store.start_bulk_load(&admin(), m, &buckets).await;
        assert!(
            matches!(again, Err(ControlError::Conflict(ref msg)) if msg.contains("is bulk-loading"))
        );
        assert_eq!(
            store.bucket(buckets[2]).await?.phase,
            Phase::Planned,
            "all or nothing"
        );
        assert_eq!(store.list_jobs(Some(m), None, 100).await?.len(), 2);
        Ok(())
    }
);

both_stores!(a_jobs_end_moves_its_bucket, |store: Store| async move {
    let (m, buckets) = migration(&store).await?;
    let ids = store.start_bulk_load(&admin(), m, &buckets).await?;

    // Success moves the bucket on; failure and cancel mark it failed; pause pauses it.
    finish_leased(&store, ids[0], loaded()).await?;
    finish_leased(
        &store,
        ids[1],
        Outcome::Failed("target refused row 7".into()),
    )
    .await?;
    store.pause_job(&admin(), ids[2], "later").await?;

    let phases: Vec<Phase> = futures_phases(&store, &buckets).await?;
    assert_eq!(phases, vec![Phase::Loaded, Phase::Failed, Phase::Paused]);
    assert_eq!(
        store.bucket(buckets[1]).await?.last_error.as_deref(),
        Some("target refused row 7")
    );

    store.resume_job(&admin(), ids[2], "now").await?;
    assert_eq!(store.bucket(buckets[2]).await?.phase, Phase::BulkLoading);
    // A failed bucket retries with a new bulk load.
    store.start_bulk_load(&admin(), m, &buckets[1..2]).await?;
    assert_eq!(store.bucket(buckets[1]).await?.phase, Phase::BulkLoading);
    Ok(())
});

/// Leases the next bulk-load job as worker `w` and ends job `id` with
/// `outcome` under that lease.
async fn finish_leased(store: &Store, id: i64, outcome: Outcome) -> anyhow::Result<()> {
    let lease = store
        .lease_job("w", &[JobKind::BulkLoad], 60_000)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no bulk-load job to lease"))?;
    store
        .finish_job(id, "w", lease.lease_token, &outcome)
        .await?;
    Ok(())
}

/// A bulk load's success: its bucket is loaded.
fn loaded() -> Outcome {
    Outcome::Succeeded {
        summary: None,
        bucket_phase: Some(Phase::Loaded),
    }
}

async fn futures_phases(store: &Store, ids: &[i64]) -> anyhow::Result<Vec<Phase>> {
    let mut out = Vec::new();
    for id in ids {
        out.push(store.bucket(*id).await?.phase);
    }
    Ok(out)
}

both_stores!(
    catch_up_needs_dual_write_and_verification_needs_a_caught_up_bucket,
    |store: Store| async move {
        let (m, buckets) = migration(&store).await?;
        let ids = store.start_bulk_load(&admin(), m, &buckets[..1]).await?;
        finish_leased(&store, ids[0], loaded()).await?;

        let refused = store.start_catch_up(&admin(), m, &buckets[..1]).await;
        assert!(
            matches!(refused, Err(ControlError::Conflict(ref msg)) if msg.contains("not dual-written yet"))
        );
        let refused = store
            .start_verify(&admin(), m, &buckets[..1], VerifyMode::Full)
            .await;
        assert!(
            matches!(refused, Err(ControlError::Conflict(ref msg)) if msg.contains("is loaded"))
        );
        Ok(())
    }
);

both_stores!(
    a_bulk_load_over_a_mixed_selection_starts_the_eligible_buckets_and_names_the_skipped,
    |store: Store| async move {
        use tern_control::runbook::BucketAction;
        let (m, buckets) = migration(&store).await?;
        store.start_bulk_load(&admin(), m, &buckets[..1]).await?;

        // Bucket 0 is already loading: the other two start, and the answer says why 0 did not.
        let answer = store
            .bucket_action(&admin(), m, BucketAction::BulkLoad, &buckets, "")
            .await?;
        assert!(
            answer.starts_with("2 bulk-load jobs queued; skipped 1: "),
            "{answer}"
        );
        assert!(answer.contains("bulk-loading"), "{answer}");
        for &b in &buckets {
            assert_eq!(store.bucket(b).await?.phase, Phase::BulkLoading);
        }
        assert_eq!(store.list_jobs(Some(m), None, 10).await?.len(), 3);

        // Nothing eligible: refused, with every reason.
        let refused = store
            .bucket_action(&admin(), m, BucketAction::BulkLoad, &buckets, "")
            .await;
        assert!(
            matches!(refused, Err(ControlError::Conflict(ref msg)) if msg.starts_with("no bulk-load job queued")),
            "{refused:?}"
        );
        Ok(())
    }
);
