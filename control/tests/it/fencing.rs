//! Fencing on real stores: two workers, one paused past its lease. Worker A
//! leases a bulk-load job and starts the engine (which claims the bucket's
//! checkpoint with A's fence token), then stalls before its first chunk. Its
//! lease expires; worker B takes the job over (a newer token), loads the
//! whole bucket and finishes the job. When A wakes up, its first write is
//! refused whole (rows and checkpoint roll back together) with an error that
//! says the lease was taken over, its heartbeat and its finish are refused
//! too, and the target holds each row once, as B wrote it. The control store,
//! the source and the target are all SQLite, then all PostgreSQL.

use std::time::Duration;

use sqlx::Connection;
use tern_control::jobs::{Heartbeat, JobKind, JobState, NewJob, Outcome, Progress};
use tern_engine::{
    EngineError, Fence, Link, LoadStatus, RateThrottle, RunControl, Spec, TransformerRegistry,
    load_bucket,
};
use tern_testkit::{DbKind, TestDb};

use crate::support::exec;
use crate::{admin, fresh_store};

const ROWS: i64 = 900;

/// Rows, distinct ids, and the newest version in the target's `items`, and
/// the bucket's checkpoint (rows written, done), read with plain SQL.
async fn target_state(db: &TestDb) -> anyhow::Result<(i64, i64, i64, i64, i64)> {
    let items = "SELECT COUNT(*), COUNT(DISTINCT id), MAX(_tern_version) FROM items";
    let cp = "SELECT rows_written, done FROM _tern_checkpoints WHERE table_name = 'items'";
    Ok(match db.kind {
        DbKind::Postgres => {
            let mut c = sqlx::PgConnection::connect(&db.url).await?;
            let (n, d, v): (i64, i64, i64) = sqlx::query_as(items).fetch_one(&mut c).await?;
            let (w, done): (i64, i64) = sqlx::query_as(cp).fetch_one(&mut c).await?;
            (n, d, v, w, done)
        }
        _ => {
            let mut c = sqlx::SqliteConnection::connect(&db.url).await?;
            let (n, d, v): (i64, i64, i64) = sqlx::query_as(items).fetch_one(&mut c).await?;
            let (w, done): (i64, i64) = sqlx::query_as(cp).fetch_one(&mut c).await?;
            (n, d, v, w, done)
        }
    })
}

async fn link(source: &TestDb, target: &TestDb) -> anyhow::Result<Link> {
    let text = format!(
        "chunk_rows = 300\n[source]\nurl = \"{}\"\n[target]\nurl = \"{}\"\n\
         [[tables]]\nname = \"items\"\nkey = [\"id\"]\nbuckets = 1\n\
         [tables.source]\ntable = \"items\"\n[tables.columns]\nid = \"id\"\nbody = \"body\"\n",
        source.url, target.url
    );
    let spec = Spec::parse(&text, "fencing.toml")?;
    Ok(Link::connect(spec, &TransformerRegistry::new()).await?)
}

async fn a_worker_paused_past_its_lease_is_refused_at_its_next_write(
    kind: DbKind,
) -> anyhow::Result<()> {
    // Arrange: a source of 900 rows, a bulk-load job on the queue.
    let (_store_db, store) = fresh_store(kind).await?;
    let (source, target) = (TestDb::new(kind).await?, TestDb::new(kind).await?);
    exec(
        &source,
        "CREATE TABLE items (id BIGINT PRIMARY KEY, body TEXT NOT NULL)",
    )
    .await?;
    let values: Vec<String> = (1..=ROWS).map(|i| format!("({i}, 'body {i}')")).collect();
    exec(
        &source,
        &format!("INSERT INTO items VALUES {}", values.join(", ")),
    )
    .await?;
    let job = store
        .enqueue_job(
            &admin(),
            NewJob {
                migration_id: None,
                bucket_id: None,
                kind: JobKind::BulkLoad,
                params: serde_json::json!({ "table": "items", "bucket": 0 }),
                rate_limit: None,
            },
        )
        .await?;
    let link_a = link(&source, &target).await?;
    let bucket = link_a.plan_or_resume("items", None).await?.buckets[0].clone();

    // Act 1: worker A leases the job (a short lease) and starts the load,
    // which claims the checkpoint and then stalls before its first chunk.
    let a = store
        .lease_job("a", &[JobKind::BulkLoad], 200)
        .await?
        .ok_or_else(|| anyhow::anyhow!("A leased nothing"))?;
    let stall = RateThrottle::unlimited();
    stall.pause();
    let control_a = RunControl::new()
        .with_throttle(std::sync::Arc::new(stall.clone()))
        .with_fence(Fence::new(a.lease_token, "job (worker a)"));
    let run_a = {
        let bucket = bucket.clone();
        tokio::spawn(async move { load_bucket(&link_a, &bucket, &control_a).await })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;

    // Act 2: A's lease has expired; B takes the job over and loads it all.
    let b = store
        .lease_job("b", &[JobKind::BulkLoad], 30_000)
        .await?
        .ok_or_else(|| anyhow::anyhow!("B could not take the job over"))?;
    assert_eq!((b.id, b.attempts), (job.id, 2));
    assert!(
        b.lease_token > a.lease_token,
        "{} > {}",
        b.lease_token,
        a.lease_token
    );
    let link_b = link(&source, &target).await?;
    let control_b = RunControl::new().with_fence(Fence::new(b.lease_token, "job (worker b)"));
    let loaded = load_bucket(&link_b, &bucket, &control_b).await?;
    assert_eq!(
        (loaded.status, loaded.rows_read),
        (LoadStatus::Completed, ROWS as u64)
    );
    assert!(
        store
            .finish_job(
                job.id,
                "b",
                b.lease_token,
                &Outcome::Succeeded {
                    summary: Some("loaded by b".into()),
                    bucket_phase: None,
                },
            )
            .await?
    );
    let after_b = target_state(&target).await?;

    // Act 3: A wakes up and writes its first chunk.
    stall.resume();
    let a_ended = tokio::time::timeout(Duration::from_secs(30), run_a).await??;

    // Assert: A's write was refused with the reason, and A stopped.
    match a_ended {
        Err(EngineError::Fenced { token, current, .. }) => {
            assert_eq!((token, current), (a.lease_token, b.lease_token));
        }
        other => anyhow::bail!("A was not fenced: {other:?}"),
    }
    let message = EngineError::Fenced {
        holder: "job (worker a)".into(),
        table: "items".into(),
        bucket: 0,
        token: a.lease_token,
        current: b.lease_token,
    }
    .to_string();
    assert!(message.contains("lost its lease"), "{message}");
    // Its job updates are refused as well: nothing it says is recorded.
    let beat = store
        .heartbeat(job.id, "a", a.lease_token, 30_000, &Progress::default())
        .await?;
    assert_eq!(beat, Heartbeat::LeaseLost);
    assert!(
        !store
            .finish_job(job.id, "a", a.lease_token, &Outcome::Failed("late".into()))
            .await?
    );
    let job = store.job(job.id).await?;
    assert_eq!(
        (job.state, job.message.as_deref()),
        (JobState::Succeeded, Some("loaded by b"))
    );
    // The data is not applied twice: every row once, as B wrote it, and the
    // checkpoint counts each row once.
    let (rows, distinct, version, written, done) = target_state(&target).await?;
    assert_eq!((rows, distinct), (ROWS, ROWS));
    assert_eq!(
        (written, done),
        (ROWS, 1),
        "the checkpoint counts every row once"
    );
    assert_eq!(
        (rows, distinct, version, written, done),
        after_b,
        "A's refused write left nothing behind"
    );
    Ok(())
}

#[tokio::test]
async fn on_sqlite() -> anyhow::Result<()> {
    a_worker_paused_past_its_lease_is_refused_at_its_next_write(DbKind::Sqlite).await
}

#[tokio::test]
async fn on_postgres() -> anyhow::Result<()> {
    a_worker_paused_past_its_lease_is_refused_at_its_next_write(DbKind::Postgres).await
}
