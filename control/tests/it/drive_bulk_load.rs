//! The control plane drives the real bulk-load engine: a migration created
//! from a spec (its buckets planned from the source), bulk-load jobs run by a
//! worker, buckets moving to loaded, and the target equal to the source,
//! checked with plain SQL.

use std::sync::Arc;
use std::time::Duration;

use sqlx::{Connection, Row};
use tern_control::buckets::Phase;
use tern_control::jobs::JobState;
use tern_control::runners::{self, RunnerContext};
use tern_control::worker::{Worker, WorkerTiming};
use tern_control::{ControlError, Store};
use tern_engine::TransformerRegistry;
use tern_testkit::{DbKind, TestDb};
use tokio_util::sync::CancellationToken;

use crate::admin;

pub(crate) async fn seed_mariadb_source(db: &TestDb, rows: i64) -> anyhow::Result<()> {
    let mut c = sqlx::MySqlConnection::connect(&db.url).await?;
    sqlx::query(
        "CREATE TABLE contacts (id BIGINT PRIMARY KEY, member_id BIGINT NOT NULL, email VARCHAR(200) NOT NULL,
         name VARCHAR(200), KEY by_member (member_id, id))",
    )
    .execute(&mut c)
    .await?;
    for start in (0..rows).step_by(500) {
        let values: Vec<String> = (start..(start + 500).min(rows))
            .map(|i| {
                format!(
                    "({i}, {}, ' Person{i}@Example.COM ', 'Person {i}')",
                    (i * 7919) % 300
                )
            })
            .collect();
        sqlx::query(&format!("INSERT INTO contacts VALUES {}", values.join(",")))
            .execute(&mut c)
            .await?;
    }
    Ok(())
}

pub(crate) fn spec(source: &TestDb, target: &TestDb) -> String {
    format!(
        r#"chunk_rows = 300
[source]
url = "{}"
[target]
url = "{}"

[[tables]]
name = "contacts"
key = ["id"]
buckets = 4
[tables.source]
table = "contacts"
key = ["member_id", "id"]
bucket = "member_id"
[tables.columns]
id = "id"
member_id = "member_id"
email = {{ from = "email", trim = true, lower = true }}
name = "name"
"#,
        source.url, target.url
    )
}

pub(crate) async fn wait_for_phase(
    store: &Store,
    migration: i64,
    phase: Phase,
) -> anyhow::Result<()> {
    for _ in 0..600 {
        let buckets = store.list_buckets(migration).await?;
        if buckets.iter().all(|b| b.phase == phase) {
            return Ok(());
        }
        if let Some(b) = buckets.iter().find(|b| b.phase == Phase::Failed) {
            anyhow::bail!("bucket {} failed: {:?}", b.idx, b.last_error);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!(
        "buckets did not all reach {phase}: {:?}",
        store.list_buckets(migration).await?
    )
}

#[tokio::test]
async fn a_worker_bulk_loads_every_bucket_and_the_target_equals_the_source() -> anyhow::Result<()> {
    // Arrange: a MariaDB source, a PostgreSQL target, a PostgreSQL control store.
    let source = TestDb::mariadb().await?;
    let target = TestDb::postgres().await?;
    let (_control_db, store) = crate::fresh_store(DbKind::Postgres).await?;
    seed_mariadb_source(&source, 3_000).await?;
    let registry = Arc::new(TransformerRegistry::new());
    let m = store
        .create_migration_from_spec(
            &admin(),
            "contacts",
            "test",
            &spec(&source, &target),
            &registry,
        )
        .await?;
    let buckets = store.list_buckets(m.id).await?;
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

    let shutdown = CancellationToken::new();
    let ctx = RunnerContext { registry };
    let timing = WorkerTiming {
        heartbeat: Duration::from_millis(200),
        ..WorkerTiming::default()
    };
    let handles: Vec<_> = (0..2)
        .map(|i| {
            tokio::spawn(
                Worker::new(format!("w{i}"), store.clone(), &runners::all(&ctx), timing)
                    .run(shutdown.clone()),
            )
        })
        .collect();

    // Act
    let ids: Vec<i64> = buckets.iter().map(|b| b.id).collect();
    let jobs = store.start_bulk_load(&admin(), m.id, &ids).await?;
    wait_for_phase(&store, m.id, Phase::Loaded).await?;
    shutdown.cancel();
    for h in handles {
        h.await?;
    }

    // Assert: every job succeeded, every bucket counts its rows, and the target
    // holds exactly the transformed source (checked with SQL, not the engine).
    for id in jobs {
        assert_eq!(store.job(id).await?.state, JobState::Succeeded);
    }
    let buckets = store.list_buckets(m.id).await?;
    assert_eq!(buckets.iter().map(|b| b.rows_copied).sum::<i64>(), 3_000);
    assert!(
        buckets
            .iter()
            .all(|b| b.loaded_at.is_some() && b.snapshot_at.is_some())
    );

    let mut src = sqlx::MySqlConnection::connect(&source.url).await?;
    let expected: Vec<(i64, i64, String, Option<String>)> = sqlx::query(
        "SELECT id, member_id, LOWER(TRIM(email)) AS email, name FROM contacts ORDER BY id",
    )
    .fetch_all(&mut src)
    .await?
    .iter()
    .map(|r| {
        (
            r.get("id"),
            r.get("member_id"),
            r.get("email"),
            r.get("name"),
        )
    })
    .collect();
    let mut dst = sqlx::PgConnection::connect(&target.url).await?;
    let actual: Vec<(i64, i64, String, Option<String>)> =
        sqlx::query("SELECT id, member_id, email, name FROM contacts ORDER BY id")
            .fetch_all(&mut dst)
            .await?
            .iter()
            .map(|r| {
                (
                    r.get("id"),
                    r.get("member_id"),
                    r.get("email"),
                    r.get("name"),
                )
            })
            .collect();
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

async fn wait_job(
    store: &Store,
    id: i64,
    what: &str,
    ok: impl Fn(&tern_control::jobs::Job) -> bool,
) -> anyhow::Result<tern_control::jobs::Job> {
    for _ in 0..300 {
        let job = store.job(id).await?;
        if ok(&job) {
            return Ok(job);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("job {id} never {what}: {:?}", store.job(id).await?)
}

#[tokio::test]
async fn pause_resume_and_a_rate_change_reach_a_running_bulk_load() -> anyhow::Result<()> {
    // Arrange: one 6,000-row bucket, read 100 rows per chunk, at 400 rows/s.
    let source = TestDb::mariadb().await?;
    let target = TestDb::postgres().await?;
    let (_control_db, store) = crate::fresh_store(DbKind::Sqlite).await?;
    seed_mariadb_source(&source, 6_000).await?;
    let spec = spec(&source, &target)
        .replace("buckets = 4", "buckets = 1")
        .replace("chunk_rows = 300", "chunk_rows = 100");
    let registry = Arc::new(TransformerRegistry::new());
    let m = store
        .create_migration_from_spec(&admin(), "contacts", "", &spec, &registry)
        .await?;
    let settings = tern_control::migrations::MigrationSettings {
        rate_limit: Some(400.0),
        ..Default::default()
    };
    store
        .update_migration_settings(&admin(), m.id, &settings, "")
        .await?;
    let bucket = store.list_buckets(m.id).await?[0].id;
    let shutdown = CancellationToken::new();
    let timing = WorkerTiming {
        heartbeat: Duration::from_millis(200),
        ..WorkerTiming::default()
    };
    let ctx = RunnerContext { registry };
    let handle = tokio::spawn(
        Worker::new("w", store.clone(), &runners::all(&ctx), timing).run(shutdown.clone()),
    );
    let job = store.start_bulk_load(&admin(), m.id, &[bucket]).await?[0];

    // Act and assert: the throttle holds the rate near 400 rows/s …
    let first = wait_job(&store, job, "started", |j| j.rows_done >= 300).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let slow = store.job(job).await?.rows_done - first.rows_done;
    assert!(
        slow < 2_000,
        "at 400 rows/s, two seconds copy far fewer than 2,000 rows (copied {slow})"
    );

    // … pausing stops the copy at a checkpoint …
    store.pause_job(&admin(), job, "maintenance").await?;
    let paused = wait_job(&store, job, "paused", |j| j.state == JobState::Paused).await?;
    assert_eq!(store.bucket(bucket).await?.phase, Phase::Paused);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        store.job(job).await?.rows_done,
        paused.rows_done,
        "nothing moves while paused"
    );

    // … and after resuming, a higher rate reaches the running job.
    store.resume_job(&admin(), job, "").await?;
    let resumed = wait_job(&store, job, "resumed", |j| {
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
    wait_job(&store, job, "finished", |j| j.state == JobState::Succeeded).await?;
    assert_eq!(store.bucket(bucket).await?.phase, Phase::Loaded);
    assert!(resumed.rows_done < 6_000);
    let mut dst = sqlx::PgConnection::connect(&target.url).await?;
    let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM contacts")
        .fetch_one(&mut dst)
        .await?
        .get("n");
    assert_eq!(n, 6_000);
    shutdown.cancel();
    handle.await?;
    Ok(())
}

#[tokio::test]
async fn cancelling_a_running_bulk_load_marks_its_bucket_failed_and_a_retry_finishes_it()
-> anyhow::Result<()> {
    let source = TestDb::mariadb().await?;
    let target = TestDb::postgres().await?;
    let (_control_db, store) = crate::fresh_store(DbKind::Sqlite).await?;
    seed_mariadb_source(&source, 3_000).await?;
    let spec = spec(&source, &target)
        .replace("buckets = 4", "buckets = 1")
        .replace("chunk_rows = 300", "chunk_rows = 100");
    let registry = Arc::new(TransformerRegistry::new());
    let m = store
        .create_migration_from_spec(&admin(), "contacts", "", &spec, &registry)
        .await?;
    let settings = tern_control::migrations::MigrationSettings {
        rate_limit: Some(500.0),
        ..Default::default()
    };
    store
        .update_migration_settings(&admin(), m.id, &settings, "")
        .await?;
    let bucket = store.list_buckets(m.id).await?[0].id;
    let shutdown = CancellationToken::new();
    let timing = WorkerTiming {
        heartbeat: Duration::from_millis(200),
        ..WorkerTiming::default()
    };
    let ctx = RunnerContext { registry };
    let handle = tokio::spawn(
        Worker::new("w", store.clone(), &runners::all(&ctx), timing).run(shutdown.clone()),
    );

    let job = store.start_bulk_load(&admin(), m.id, &[bucket]).await?[0];
    wait_job(&store, job, "started", |j| j.rows_done >= 200).await?;
    store.cancel_job(&admin(), job, "wrong spec").await?;
    wait_job(&store, job, "cancelled", |j| j.state == JobState::Cancelled).await?;
    let b = store.bucket(bucket).await?;
    assert_eq!(b.phase, Phase::Failed);

    // A retry resumes from the engine's checkpoint and completes the bucket.
    store
        .update_migration_settings(&admin(), m.id, &Default::default(), "")
        .await?;
    let retry = store.start_bulk_load(&admin(), m.id, &[bucket]).await?[0];
    wait_job(&store, retry, "finished", |j| {
        j.state == JobState::Succeeded
    })
    .await?;
    let mut dst = sqlx::PgConnection::connect(&target.url).await?;
    let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM contacts")
        .fetch_one(&mut dst)
        .await?
        .get("n");
    assert_eq!(n, 3_000);
    shutdown.cancel();
    handle.await?;
    Ok(())
}

#[tokio::test]
async fn the_engine_copies_by_the_plan_made_at_creation_even_after_the_source_grew()
-> anyhow::Result<()> {
    // Arrange: a migration planned over 3,000 rows, then 3,000 more rows of
    // low members, so that a fresh plan would cut the buckets elsewhere.
    let source = TestDb::mariadb().await?;
    let target = TestDb::postgres().await?;
    let (_control_db, store) = crate::fresh_store(DbKind::Sqlite).await?;
    seed_mariadb_source(&source, 3_000).await?;
    let registry = Arc::new(TransformerRegistry::new());
    let text = spec(&source, &target);
    let m = store
        .create_migration_from_spec(&admin(), "contacts", "", &text, &registry)
        .await?;
    let planned = store.list_buckets(m.id).await?;
    let mut src = sqlx::MySqlConnection::connect(&source.url).await?;
    sqlx::query("INSERT INTO contacts SELECT id + 3000, member_id % 20, email, name FROM contacts")
        .execute(&mut src)
        .await?;
    let shutdown = CancellationToken::new();
    let ctx = RunnerContext { registry };
    let timing = WorkerTiming {
        heartbeat: Duration::from_millis(200),
        ..WorkerTiming::default()
    };
    let handle = tokio::spawn(
        Worker::new("w", store.clone(), &runners::all(&ctx), timing).run(shutdown.clone()),
    );

    // Act: load the second bucket first, then the rest.
    let first = store
        .start_bulk_load(&admin(), m.id, &[planned[1].id])
        .await?[0];
    wait_job(&store, first, "finished", |j| {
        j.state == JobState::Succeeded
    })
    .await?;
    let after_first = store.list_buckets(m.id).await?;
    let rest: Vec<i64> = planned
        .iter()
        .map(|b| b.id)
        .filter(|&id| id != planned[1].id)
        .collect();
    store.start_bulk_load(&admin(), m.id, &rest).await?;
    wait_for_phase(&store, m.id, Phase::Loaded).await?;
    shutdown.cancel();
    handle.await?;

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
    let board = store.list_buckets(m.id).await?;
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
        tern_engine::Spec::parse(&text, "contacts.toml")?,
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
    let mut dst = sqlx::PgConnection::connect(&target.url).await?;
    let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM contacts")
        .fetch_one(&mut dst)
        .await?
        .get("n");
    assert_eq!(n, 6_000);
    Ok(())
}
