//! The control plane drives the real bulk-load engine: a migration created
//! from a spec (its buckets planned from the source), bulk-load jobs run by a
//! worker, buckets moving to loaded, and the target equal to the source,
//! checked with plain SQL.

use std::convert::identity;
use std::sync::Arc;
use std::time::Duration;

use tern_control::ControlError;
use tern_control::buckets::Phase;
use tern_control::jobs::JobState;
use tern_engine::TransformerRegistry;
use tern_testkit::{DbKind, TestDb};

use crate::admin;
use crate::support::{
    Drive, exec, one_bucket, source_rows, spec, target_count, target_rows, wait_for_phase,
    wait_job, wait_succeeded,
};

#[tokio::test]
async fn a_worker_bulk_loads_every_bucket_and_the_target_equals_the_source() -> anyhow::Result<()> {
    // Arrange: a MariaDB source, a PostgreSQL target, a PostgreSQL control store.
    let d = Drive::new(DbKind::Postgres, 3_000, identity).await?;
    let (store, m) = (&d.store, d.migration);
    let buckets = d.buckets().await?;
    assert_eq!(buckets.len(), 4);
    assert_eq!(
        buckets.iter().map(|b| b.planned_rows).sum::<i64>(),
        3_000,
        "planned sizes count every row"
    );
    assert!(
        buckets
            .iter()
            .all(|b| b.table_name.as_deref() == Some("contacts"))
    );
    let workers = d.workers(2);

    // Act
    let ids: Vec<i64> = buckets.iter().map(|b| b.id).collect();
    let jobs = d.bulk_load(&ids).await?;
    wait_for_phase(store, m, Phase::Loaded).await?;
    workers.stop().await?;

    // Assert: every job succeeded, every bucket counts its rows, and the target
    // holds exactly the transformed source (checked with SQL, not the engine).
    for id in jobs {
        assert_eq!(store.job(id).await?.state, JobState::Succeeded);
    }
    let buckets = d.buckets().await?;
    assert_eq!(buckets.iter().map(|b| b.rows_copied).sum::<i64>(), 3_000);
    assert!(
        buckets
            .iter()
            .all(|b| b.loaded_at.is_some() && b.snapshot_at.is_some())
    );
    let expected = source_rows(&d.source).await?;
    let actual = target_rows(&d.target).await?;
    assert_eq!(actual.len(), 3_000);
    assert_eq!(actual, expected);
    Ok(())
}

#[tokio::test]
async fn a_bad_spec_is_refused_with_its_line_and_nothing_is_created() -> anyhow::Result<()> {
    let source = TestDb::sqlite()?;
    let target = TestDb::sqlite()?;
    let (_db, store) = crate::fresh_store(DbKind::Sqlite).await?;
    let registry = Arc::new(TransformerRegistry::new());
    let bad = spec(&source, &target).replace("buckets = 4", "buckets = \"four\"");
    let refused = store
        .create_migration_from_spec(&admin(), "contacts", "", &bad, &registry)
        .await;
    match refused {
        Err(ControlError::Engine(e)) => {
            let msg = e.to_string();
            assert!(
                msg.contains("contacts.toml") && msg.contains("line"),
                "{msg}"
            );
        }
        other => anyhow::bail!("expected a spec error, got {other:?}"),
    }
    assert!(store.migration_summaries().await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn pause_resume_and_a_rate_change_reach_a_running_bulk_load() -> anyhow::Result<()> {
    // Arrange: one 6,000-row bucket, read 100 rows per chunk, at 400 rows/s.
    let d = Drive::new(DbKind::Sqlite, 6_000, one_bucket).await?;
    let store = &d.store;
    let bucket = d.throttled_bucket(400.0).await?;
    let workers = d.workers(1);
    let job = d.bulk_load(&[bucket]).await?[0];

    // Act and assert: the throttle holds the rate near 400 rows/s …
    let first = wait_job(store, job, "started", |j| j.rows_done >= 300).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let slow = store.job(job).await?.rows_done - first.rows_done;
    assert!(
        slow < 2_000,
        "at 400 rows/s, two seconds copy far fewer than 2,000 rows (copied {slow})"
    );

    // … pausing stops the copy at a checkpoint …
    store.pause_job(&admin(), job, "maintenance").await?;
    let paused = wait_job(store, job, "paused", |j| j.state == JobState::Paused).await?;
    assert_eq!(store.bucket(bucket).await?.phase, Phase::Paused);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        store.job(job).await?.rows_done,
        paused.rows_done,
        "nothing moves while paused"
    );

    // … and after resuming, a higher rate reaches the running job.
    store.resume_job(&admin(), job, "").await?;
    let resumed = wait_job(store, job, "resumed", |j| {
        j.state == JobState::Running && j.rows_done > paused.rows_done
    })
    .await?;
    let at_change = store.job(job).await?.rows_done;
    store
        .set_job_rate(&admin(), job, Some(20_000.0), "faster")
        .await?;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let after = store.job(job).await?.rows_done;
    assert!(
        after - at_change > 1_000,
        "at the new rate more than 1,000 rows move in 1.5 s (at 400 rows/s at most ~700 could): moved {}",
        after - at_change
    );
    wait_succeeded(store, job).await?;
    assert_eq!(store.bucket(bucket).await?.phase, Phase::Loaded);
    assert!(resumed.rows_done < 6_000);
    d.stop_and_count(workers, 6_000).await
}

#[tokio::test]
async fn cancelling_a_running_bulk_load_marks_its_bucket_failed_and_a_retry_finishes_it()
-> anyhow::Result<()> {
    let d = Drive::new(DbKind::Sqlite, 3_000, one_bucket).await?;
    let store = &d.store;
    let bucket = d.throttled_bucket(500.0).await?;
    let workers = d.workers(1);

    let job = d.bulk_load(&[bucket]).await?[0];
    wait_job(store, job, "started", |j| j.rows_done >= 200).await?;
    store.cancel_job(&admin(), job, "wrong spec").await?;
    wait_job(store, job, "cancelled", |j| j.state == JobState::Cancelled).await?;
    let b = store.bucket(bucket).await?;
    assert_eq!(b.phase, Phase::Failed);

    // A retry resumes from the engine's checkpoint and completes the bucket.
    d.set_rate(None).await?;
    let retry = d.bulk_load(&[bucket]).await?[0];
    wait_succeeded(store, retry).await?;
    d.stop_and_count(workers, 3_000).await
}

#[tokio::test]
async fn the_engine_copies_by_the_plan_made_at_creation_even_after_the_source_grew()
-> anyhow::Result<()> {
    // Arrange: a migration planned over 3,000 rows, then 3,000 more rows of
    // low members, so that a fresh plan would cut the buckets elsewhere.
    let d = Drive::new(DbKind::Sqlite, 3_000, identity).await?;
    let (store, m) = (&d.store, d.migration);
    let planned = d.buckets().await?;
    let grow = "INSERT INTO contacts SELECT id + 3000, member_id % 20, email, name FROM contacts";
    exec(&d.source, grow).await?;
    let workers = d.workers(1);

    // Act: load the second bucket first, then the rest.
    let first = d.bulk_load(&[planned[1].id]).await?[0];
    wait_succeeded(store, first).await?;
    let after_first = d.buckets().await?;
    let rest: Vec<i64> = planned
        .iter()
        .map(|b| b.id)
        .filter(|&id| id != planned[1].id)
        .collect();
    d.bulk_load(&rest).await?;
    wait_for_phase(store, m, Phase::Loaded).await?;
    workers.stop().await?;
    // Assert: the board shows the planned ranges, one after the other, and
    // the engine stored exactly those; every row was copied once.
    let ranges = |bs: &[tern_control::buckets::Bucket]| -> Vec<(Option<String>, Option<String>)> {
        bs.iter().map(|b| (b.lo.clone(), b.hi.clone())).collect()
    };
    assert_eq!(
        ranges(&after_first),
        ranges(&planned),
        "the first load kept the plan"
    );
    let board = d.buckets().await?;
    assert_eq!(ranges(&board), ranges(&planned));
    for pair in board.windows(2) {
        assert_eq!(
            pair[0].hi,
            pair[1].lo,
            "bucket ranges follow on: {:?}",
            ranges(&board)
        );
    }
    let link = tern_engine::Link::connect(
        tern_engine::Spec::parse(&d.spec, "contacts.toml")?,
        &TransformerRegistry::new(),
    )
    .await?;
    let stored = link.stored_plan("contacts").await?.expect("a stored plan");
    let engine: Vec<(Option<String>, Option<String>)> = stored
        .buckets
        .iter()
        .map(|b| {
            (
                b.range.lo.as_ref().map(tern_engine::Value::canonical_text),
                b.range.hi.as_ref().map(tern_engine::Value::canonical_text),
            )
        })
        .collect();
    assert_eq!(engine, ranges(&planned));
    assert_eq!(target_count(&d.target).await?, 6_000);
    Ok(())
}
