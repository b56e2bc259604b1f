use tern_control::Store;
use tern_control::buckets::Phase;
use tern_control::dashboard::BucketQuery;
use tern_control::verify_runs::NewVerifyRun;

use crate::support::{bucket, create_migration, table_bucket};
use crate::{admin, both_stores};

async fn many_buckets(store: &Store, name: &str, n: i64) -> anyhow::Result<i64> {
    let buckets = (0..n).map(|idx| bucket(idx, 100 + idx)).collect();
    create_migration(store, name, buckets).await
}

both_stores!(
    the_migration_board_lists_one_page_of_buckets_filtered_by_phase,
    |store: Store| async move {
        let id = many_buckets(&store, "pages", 250).await?;
        let first = store.migration_board(id, &BucketQuery::default()).await?;
        assert_eq!(first.buckets.len(), 100);
        assert_eq!(first.buckets_matching, 250);
        assert_eq!(first.buckets[0].idx, 0);
        assert_eq!(
            first.summary.planned_rows,
            (0..250).map(|i| 100 + i).sum::<i64>()
        );

        let last = store
            .migration_board(
                id,
                &BucketQuery {
                    offset: 200,
                    ..BucketQuery::default()
                },
            )
            .await?;
        assert_eq!(last.buckets.len(), 50);
        assert_eq!(last.buckets[0].idx, 200);

        // Three buckets leave `planned`; the filter finds exactly them.
        for idx in [3, 120, 249] {
            let b = store.bucket_by_idx(id, idx).await?;
            store
                .move_bucket(&admin(), b.id, Phase::BulkLoading, "test")
                .await?;
        }
        let loading = store
            .migration_board(
                id,
                &BucketQuery {
                    phase: Some(Phase::BulkLoading),
                    ..BucketQuery::default()
                },
            )
            .await?;
        assert_eq!(loading.buckets_matching, 3);
        assert_eq!(
            loading.buckets.iter().map(|b| b.idx).collect::<Vec<_>>(),
            vec![3, 120, 249]
        );
        let planned = store
            .migration_board(
                id,
                &BucketQuery {
                    phase: Some(Phase::Planned),
                    ..BucketQuery::default()
                },
            )
            .await?;
        assert_eq!(planned.buckets_matching, 247);
        Ok(())
    }
);

both_stores!(
    the_overview_gathers_every_migration_with_its_own_accuracy,
    |store: Store| async move {
        let a = many_buckets(&store, "alpha", 4).await?;
        let b = many_buckets(&store, "beta", 2).await?;
        for (migration_id, matched) in [(a, 997), (b, 500)] {
            let run = store
                .record_verify_run(&NewVerifyRun {
                    migration_id,
                    bucket_id: None,
                    job_id: None,
                    engine_run: None,
                    kind: "full".into(),
                    rows_compared: 1000,
                    matched,
                    missing: 0,
                    extra: 0,
                    different: 1000 - matched,
                    accuracy: matched as f64 / 10.0,
                    tree: None,
                })
                .await?;
            assert_eq!(run.migration_id, migration_id);
        }
        let lines = store.program_overview(&admin()).await?;
        assert_eq!(lines.len(), 2);
        let of = |id: i64| {
            lines
                .iter()
                .find(|l| l.summary.migration.id == id)
                .map(|l| l.accuracy.clone())
        };
        let latest = |id: i64| {
            of(id)
                .and_then(|h| h.last().map(|p| p.1))
                .unwrap_or(f64::NAN)
        };
        assert!((latest(a) - 99.7).abs() < 1e-9, "alpha: {}", latest(a));
        assert!((latest(b) - 50.0).abs() < 1e-9, "beta: {}", latest(b));
        assert_eq!(
            lines.iter().map(|l| l.summary.planned_rows).sum::<i64>(),
            4 * 100 + 6 + 2 * 100 + 1
        );
        Ok(())
    }
);

both_stores!(
    the_overview_says_rows_done_the_phases_ahead_and_what_blocks,
    |store: Store| async move {
        use tern_control::blockers::BlockerKind;
        use tern_control::forecast::Stage;
        let id = many_buckets(&store, "gamma", 3).await?;
        let buckets = store.list_buckets(id).await?;
        store.set_bucket_rows_copied(buckets[0].id, 250).await?;
        store
            .move_bucket(&admin(), buckets[1].id, Phase::BulkLoading, "test")
            .await?;
        store
            .move_bucket(&admin(), buckets[1].id, Phase::Failed, "target unreachable")
            .await?;

        let lines = store.program_overview(&admin()).await?;
        let line = lines
            .iter()
            .find(|l| l.summary.migration.id == id)
            .expect("the migration's line");
        let f = line.forecast.as_ref().expect("a forecast");
        // 250 rows copied of 303 planned (bucket 0 holds more than its plan).
        assert_eq!((f.rows.done, f.rows.of, f.rows.recounted), (250, 303, None));
        assert!((f.rows.percent - 250.0 * 100.0 / 303.0).abs() < 1e-9);
        let stages: Vec<Stage> = f.stages.iter().map(|s| s.stage).collect();
        assert_eq!(stages, [Stage::Load, Stage::CatchUp, Stage::Verify]);
        assert_eq!(f.eta, None, "nothing measured yet");
        assert_eq!(f.pace_now, None);
        let kinds: Vec<BlockerKind> = line.blockers.iter().map(|g| g.kind).collect();
        assert_eq!(kinds, [BlockerKind::FailedBucket]);
        assert!(line.blockers[0].first[0].text.contains("bucket 1 failed"));
        Ok(())
    }
);

both_stores!(
    the_overview_draws_one_accuracy_line_per_table,
    |store: Store| async move {
        let buckets = ["contacts", "contacts", "messages"]
            .iter()
            .enumerate()
            .map(|(idx, t)| table_bucket(idx as i64, t, None, None, 100))
            .collect();
        let m = create_migration(&store, "tables", buckets).await?;
        let buckets = store.list_buckets(m).await?;
        // contacts: 100% then 90% in its two buckets; messages: 50%.
        for (b, matched) in [(&buckets[0], 100), (&buckets[1], 90), (&buckets[2], 50)] {
            store
                .record_verify_run(&NewVerifyRun {
                    migration_id: m,
                    bucket_id: Some(b.id),
                    job_id: None,
                    engine_run: None,
                    kind: "full".into(),
                    rows_compared: 100,
                    matched,
                    missing: 0,
                    extra: 0,
                    different: 100 - matched,
                    accuracy: matched as f64,
                    tree: None,
                })
                .await?;
        }
        let lines = store.program_overview(&admin()).await?;
        let line = lines
            .iter()
            .find(|l| l.summary.migration.id == m)
            .expect("the migration's line");
        let latest: Vec<(&str, f64)> = line
            .accuracy_by_table
            .iter()
            .map(|t| (t.table.as_str(), t.points.last().map_or(f64::NAN, |p| p.1)))
            .collect();
        assert_eq!(latest, [("contacts", 95.0), ("messages", 50.0)]);
        assert_eq!(line.accuracy_by_table[0].points.len(), 2);
        // The whole migration's line is still there for the card's figure.
        assert_eq!(line.accuracy.last().map(|p| p.1), Some(80.0));
        Ok(())
    }
);

both_stores!(
    what_blocks_is_counted_in_the_store_with_the_first_few_of_each_kind,
    |store: Store| async move {
        use tern_control::blockers::{BlockerKind, STUCK_MS};
        use tern_control::jobs::{JobKind, NewJob};
        // Arrange: 12 buckets. 0–4 verified under the gate, 5 paused, 6
        // verifying for an hour with no job, 7 bulk-loading with a silent
        // running job, 8 catching up with a live one, 9 a failed verify job
        // (not retried), 10 a failed job retried since; 11 healthy.
        let id = many_buckets(&store, "delta", 12).await?;
        let b = store.list_buckets(id).await?;
        let pool = store.pool();
        let now = tern_control::clock::now_ms();
        let long_ago = now - 60 * 60 * 1000;
        let set = |sql: String| async move { sqlx::query(&sql).execute(pool).await.map(|_| ()) };
        for bucket in &b[0..5] {
            set(format!(
                "UPDATE buckets SET phase = 'verified', accuracy = 37.5 WHERE id = {}",
                bucket.id
            ))
            .await?;
        }
        set(format!(
            "UPDATE buckets SET accuracy = 100.0 WHERE id = {}",
            b[11].id
        ))
        .await?;
        set(format!(
            "UPDATE buckets SET phase = 'paused' WHERE id = {}",
            b[5].id
        ))
        .await?;
        for (i, phase) in [(6, "verifying"), (7, "bulk-loading"), (8, "catching-up")] {
            set(format!(
                "UPDATE buckets SET phase = '{phase}', phase_since = {long_ago} WHERE id = {}",
                b[i].id
            ))
            .await?;
        }
        let job = |bucket: usize, kind: JobKind| NewJob {
            migration_id: Some(id),
            bucket_id: Some(b[bucket].id),
            kind,
            params: serde_json::json!({}),
            rate_limit: None,
        };
        let silent = store
            .enqueue_job(&admin(), job(7, JobKind::BulkLoad))
            .await?;
        let live = store
            .enqueue_job(&admin(), job(8, JobKind::CatchUp))
            .await?;
        for (j, at) in [(silent.id, now - STUCK_MS - 60_000), (live.id, now)] {
            set(format!(
                "UPDATE jobs SET state = 'running', updated_at = {at} WHERE id = {j}"
            ))
            .await?;
        }
        let failed = store.enqueue_job(&admin(), job(9, JobKind::Verify)).await?;
        let old_fail = store
            .enqueue_job(&admin(), job(10, JobKind::Verify))
            .await?;
        for j in [failed.id, old_fail.id] {
            set(format!(
                "UPDATE jobs SET state = 'failed', message = 'target unreachable', finished_at = {now} WHERE id = {j}"
            ))
            .await?;
        }
        let retried = store
            .enqueue_job(&admin(), job(10, JobKind::Verify))
            .await?;
        set(format!(
            "UPDATE jobs SET state = 'succeeded', finished_at = {now} WHERE id = {}",
            retried.id
        ))
        .await?;

        // Act
        let groups = store.blockers(&admin(), id, 3).await?;

        // Assert
        let summary: Vec<(BlockerKind, usize, Vec<Option<i64>>)> = groups
            .iter()
            .map(|g| (g.kind, g.count, g.first.iter().map(|x| x.bucket).collect()))
            .collect();
        assert_eq!(
            summary,
            [
                (BlockerKind::PausedBucket, 1, vec![Some(5)]),
                (BlockerKind::LowAccuracy, 5, vec![Some(0), Some(1), Some(2)]),
                (BlockerKind::StuckBucket, 2, vec![Some(6), Some(7)]),
                (BlockerKind::FailedJob, 1, vec![Some(9)]),
            ]
        );
        let stuck = &groups[2].first;
        assert!(
            stuck[0].text.contains("no job running"),
            "{}",
            stuck[0].text
        );
        assert!(
            stuck[1]
                .text
                .contains(&format!("job {} last reported", silent.id)),
            "{}",
            stuck[1].text
        );
        assert!(
            groups[3].first[0]
                .text
                .contains("failed: target unreachable"),
            "{}",
            groups[3].first[0].text
        );

        // A second migration with a failed bucket, a client held by the
        // gates (no verification run yet) and one at 100%: the overview
        // reads every migration's panel at once, and each must be the same
        // as the migration page's.
        let other = many_buckets(&store, "echo", 3).await?;
        let ob = store.list_buckets(other).await?;
        set(format!(
            "UPDATE buckets SET phase = 'failed', last_error = 'disk full' WHERE id = {}",
            ob[2].id
        ))
        .await?;
        for (name, ramp) in [("inbox-service", 25_000), ("search-indexer", 100_000)] {
            let c = store
                .create_client(
                    &admin(),
                    other,
                    tern_control::clients::NewClient {
                        name: name.into(),
                        owner_team: "messaging".into(),
                        owner_contact: "owner@example.com".into(),
                        kind: String::new(),
                    },
                )
                .await?;
            set(format!(
                "UPDATE clients SET ramp = {ramp} WHERE id = {}",
                c.id
            ))
            .await?;
        }
        let lines = store.program_overview(&admin()).await?;
        let panel = |id: i64| {
            lines
                .iter()
                .find(|l| l.summary.migration.id == id)
                .map(|l| l.blockers.clone())
                .expect("the migration's line")
        };
        assert_eq!(panel(id), groups, "the overview's panel of delta");
        let echo = store.blockers(&admin(), other, 3).await?;
        assert_eq!(panel(other), echo, "the overview's panel of echo");
        let kinds: Vec<(BlockerKind, usize)> = echo.iter().map(|g| (g.kind, g.count)).collect();
        assert_eq!(
            kinds,
            [(BlockerKind::FailedBucket, 1), (BlockerKind::GatedRamp, 1)]
        );
        assert!(
            echo[0].first[0].text.contains("disk full"),
            "{}",
            echo[0].first[0].text
        );
        let gated = &echo[1].first[0].text;
        assert!(
            gated.starts_with("inbox-service's ramp is held at 25%")
                && gated.contains("need a verification run"),
            "{gated}"
        );
        Ok(())
    }
);
