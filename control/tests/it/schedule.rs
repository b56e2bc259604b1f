use tern_control::buckets::Phase;
use tern_control::migrations::MigrationSettings;
use tern_control::{ControlError, Store};

use crate::support::{bucket, create_migration};
use crate::{admin, both_stores};

async fn four_buckets(store: &Store) -> anyhow::Result<i64> {
    let buckets = (0..4).map(|i| bucket(i, 100)).collect();
    let id = create_migration(store, "endorsements", buckets).await?;
    store.plan_batches(&admin(), id, &[], 2).await?;
    let every = MigrationSettings {
        schedule_every_hours: Some(336.0),
        ..MigrationSettings::default()
    };
    store
        .update_migration_settings(&admin(), id, &every, "every two weeks")
        .await?;
    Ok(id)
}

async fn make_due(store: &Store, id: i64) -> anyhow::Result<()> {
    sqlx::query("UPDATE migrations SET next_batch_at = 1 WHERE id = $1")
        .bind(id)
        .execute(store.pool())
        .await?;
    Ok(())
}

async fn verify_all(store: &Store, id: i64, batch_id: i64) -> anyhow::Result<()> {
    for b in store
        .list_buckets(id)
        .await?
        .into_iter()
        .filter(|b| b.batch_id == Some(batch_id))
    {
        for to in [
            Phase::Loaded,
            Phase::CatchingUp,
            Phase::CaughtUp,
            Phase::Verifying,
            Phase::Verified,
        ] {
            // No jobs run here: an admin's override stands for the evidence.
            store
                .override_bucket_move(&admin(), b.id, to, "test")
                .await?;
        }
    }
    Ok(())
}

both_stores!(
    the_schedule_starts_one_batch_per_period_while_the_gates_hold,
    |store: Store| async move {
        let id = four_buckets(&store).await?;
        let batches = store.list_batches(id).await?;

        // Not due yet: nothing starts.
        assert!(store.run_schedule().await?.is_empty());

        make_due(&store, id).await?;
        assert_eq!(store.run_schedule().await?, vec![batches[0].id]);
        let buckets = store.list_buckets(id).await?;
        assert!(
            buckets
                .iter()
                .filter(|b| b.batch_id == Some(batches[0].id))
                .all(|b| b.phase == Phase::BulkLoading)
        );
        assert!(
            store
                .migration(id)
                .await?
                .next_batch_at
                .is_some_and(|t| t > 1_000_000)
        );

        // Due again while batch 1 runs: the gate is closed.
        make_due(&store, id).await?;
        assert!(store.run_schedule().await?.is_empty());

        // Batch 1 verified: it closes, and the next period starts batch 2.
        verify_all(&store, id, batches[0].id).await?;
        assert_eq!(store.close_finished_batches().await?, 1);
        make_due(&store, id).await?;
        assert_eq!(store.run_schedule().await?, vec![batches[1].id]);
        let states: Vec<String> = store
            .list_batches(id)
            .await?
            .into_iter()
            .map(|b| b.state)
            .collect();
        assert_eq!(states, vec!["done", "running"]);
        Ok(())
    }
);

both_stores!(
    a_failed_bucket_closes_the_gate_and_a_batch_starts_once,
    |store: Store| async move {
        let id = four_buckets(&store).await?;
        let batches = store.list_batches(id).await?;
        store
            .start_batch(&admin(), batches[0].id, "by hand")
            .await?;
        let again = store.start_batch(&admin(), batches[0].id, "").await;
        assert!(
            matches!(again, Err(ControlError::Conflict(ref m)) if m.contains("only a planned batch"))
        );

        let bucket = store
            .list_buckets(id)
            .await?
            .into_iter()
            .find(|b| b.batch_id == Some(batches[0].id))
            .ok_or_else(|| anyhow::anyhow!("no bucket"))?;
        store
            .move_bucket(&admin(), bucket.id, Phase::Failed, "target refused")
            .await?;
        let why = tern_control::schedule::gate_closed(&store, id).await?;
        assert!(why.is_some_and(|w| w.contains("failed")));
        Ok(())
    }
);
