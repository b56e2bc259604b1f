use tern_control::migrations::MigrationSettings;
use tern_control::verify_runs::NewVerifyRun;
use tern_control::{ControlError, Store};

use crate::support::{audit_of, bucket, create_migration};
use crate::{admin, both_stores};

async fn skewed(store: &Store) -> anyhow::Result<i64> {
    let sizes = [
        9_000, 1_000, 1_000, 1_000, 1_000, 1_000, 1_000, 1_000, 1_000, 1_000,
    ];
    let buckets = sizes
        .iter()
        .enumerate()
        .map(|(i, rows)| bucket(i as i64, *rows))
        .collect();
    create_migration(store, "inmail", buckets).await
}

both_stores!(
    batches_hold_about_equal_rows_and_a_bucket_joins_one_batch_only,
    |store: Store| async move {
        let id = skewed(&store).await?;
        let batches = store.plan_batches(&admin(), id, &[], 2).await?;
        assert_eq!(
            batches.iter().map(|b| b.planned_rows).collect::<Vec<_>>(),
            vec![9_000, 9_000]
        );
        assert_eq!(
            batches[0].bucket_ids.len() + batches[1].bucket_ids.len(),
            10
        );

        let again = store.plan_batches(&admin(), id, &[], 2).await;
        assert!(
            matches!(again, Err(ControlError::Conflict(ref m)) if m.contains("in a batch already"))
        );
        assert_eq!(store.list_batches(id).await?.len(), 2);
        Ok(())
    }
);

both_stores!(
    settings_are_validated_changed_and_audited,
    |store: Store| async move {
        let id = skewed(&store).await?;
        let bad = MigrationSettings {
            chunk_size: 5,
            ..MigrationSettings::default()
        };
        let refused = store
            .update_migration_settings(&admin(), id, &bad, "")
            .await;
        assert!(matches!(refused, Err(ControlError::Invalid(ref m)) if m.contains("chunk size 5")));

        let good = MigrationSettings {
            chunk_size: 20_000,
            rate_limit: Some(50_000.0),
            verify_min_accuracy: 99.9,
            schedule_every_hours: Some(336.0),
        };
        let m = store
            .update_migration_settings(&admin(), id, &good, "two-week cadence")
            .await?;
        assert_eq!(m.settings, good);
        assert!(
            m.next_batch_at.is_some(),
            "the schedule sets the next batch time"
        );

        let events = audit_of(&store, "migration.settings").await?;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].reason.as_deref(), Some("two-week cadence"));
        Ok(())
    }
);

both_stores!(
    archiving_is_refused_while_jobs_run,
    |store: Store| async move {
        let id = skewed(&store).await?;
        let job = store
            .enqueue_job(
                &admin(),
                tern_control::jobs::NewJob {
                    migration_id: Some(id),
                    bucket_id: None,
                    kind: tern_control::jobs::JobKind::BulkLoad,
                    params: serde_json::json!({}),
                    rate_limit: None,
                },
            )
            .await?;
        let refused = store.archive_migration(&admin(), id, "done").await;
        assert!(
            matches!(refused, Err(ControlError::Conflict(ref m)) if m.contains("1 queued or running"))
        );
        store.cancel_job(&admin(), job.id, "").await?;
        let archived = store.archive_migration(&admin(), id, "done").await?;
        assert_eq!(archived.status, "archived");
        assert!(archived.archived_at.is_some());
        Ok(())
    }
);

both_stores!(
    accuracy_over_time_weighs_each_buckets_latest_run,
    |store: Store| async move {
        let id = skewed(&store).await?;
        let buckets = store.list_buckets(id).await?;
        let run = |bucket: i64, compared: i64, matched: i64, kind: &str| NewVerifyRun {
            migration_id: id,
            bucket_id: Some(bucket),
            kind: kind.into(),
            rows_compared: compared,
            matched,
            different: compared - matched,
            accuracy: matched as f64 * 100.0 / compared as f64,
            ..NewVerifyRun::default()
        };
        store
            .record_verify_run(&run(buckets[0].id, 1_000, 700, "full"))
            .await?;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        store
            .record_verify_run(&run(buckets[1].id, 1_000, 1_000, "full"))
            .await?;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        store
            .record_verify_run(&run(buckets[2].id, 50, 10, "sample"))
            .await?;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        store
            .record_verify_run(&run(buckets[0].id, 1_000, 998, "repair"))
            .await?;

        let history: Vec<f64> = store
            .accuracy_history(id)
            .await?
            .into_iter()
            .map(|(_, a)| a)
            .collect();
        assert_eq!(history, vec![70.0, 85.0, 99.9]);
        assert_eq!(store.bucket(buckets[0].id).await?.accuracy, Some(99.8));
        Ok(())
    }
);

both_stores!(throughput_samples_give_a_pace, |store: Store| async move {
    let id = skewed(&store).await?;
    for rows in [0, 1_000, 2_000] {
        store.record_throughput(id, rows).await?;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let samples = store.throughput_samples(id, 60_000).await?;
    assert_eq!(
        samples.iter().map(|s| s.1).collect::<Vec<_>>(),
        vec![0, 1_000, 2_000]
    );
    let pace = tern_control::throughput::throughput_of(&samples)
        .ok_or_else(|| anyhow::anyhow!("no pace"))?;
    assert!(pace.median > 0.0);
    Ok(())
});
