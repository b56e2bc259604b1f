//! Three `tern worker` processes share a PostgreSQL control store and bulk-load
//! a MariaDB → PostgreSQL migration; one is killed with SIGKILL in the middle
//! of a bucket. Its job is taken over after the lease expires and resumes from
//! the engine's checkpoint: the migration completes and the target equals the
//! source, checked with plain SQL.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use sqlx::{Connection, Row};
use tern_control::buckets::Phase;
use tern_control::jobs::JobState;
use tern_control::{Actor, Store};
use tern_engine::TransformerRegistry;
use tern_testkit::TestDb;
use tokio::process::{Child, Command};

use crate::tern_bin;

const ROWS: i64 = 24_000;

async fn seed(source: &TestDb) -> anyhow::Result<()> {
    let mut c = sqlx::MySqlConnection::connect(&source.url).await?;
    sqlx::query(
        "CREATE TABLE messages (id BIGINT PRIMARY KEY, member_id BIGINT NOT NULL, body VARCHAR(200) NOT NULL,
         KEY by_member (member_id, id))",
    )
    .execute(&mut c)
    .await?;
    for start in (0..ROWS).step_by(2000) {
        let values: Vec<String> = (start..start + 2000)
            .map(|i| format!("({i}, {}, 'message {i}')", (i * i) % 997))
            .collect();
        sqlx::query(&format!("INSERT INTO messages VALUES {}", values.join(",")))
            .execute(&mut c)
            .await?;
    }
    Ok(())
}

fn worker(control: &str) -> anyhow::Result<Child> {
    Ok(Command::new(tern_bin())
        .args(["worker", "--concurrency", "1"])
        .env("TERN_DATABASE_URL", control)
        .env("TERN_LEASE_SECONDS", "3")
        .env("TERN_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?)
}

#[tokio::test]
async fn three_workers_finish_a_migration_when_one_is_killed_mid_bucket() -> anyhow::Result<()> {
    // Arrange
    let (source, target, control) = (
        TestDb::mariadb().await?,
        TestDb::postgres().await?,
        TestDb::postgres().await?,
    );
    seed(&source).await?;
    let store = Store::open(&control.url).await?;
    let spec = format!(
        "chunk_rows = 400\n[source]\nurl = \"{}\"\n[target]\nurl = \"{}\"\n\n[[tables]]\nname = \"messages\"\nkey = [\"id\"]\nbuckets = 6\n\
         [tables.source]\ntable = \"messages\"\nkey = [\"member_id\", \"id\"]\nbucket = \"member_id\"\n[tables.columns]\nid = \"id\"\nmember_id = \"member_id\"\nbody = \"body\"\n",
        source.url, target.url
    );
    let registry = Arc::new(TransformerRegistry::new());
    let m = store
        .create_migration_from_spec(&Actor::system(), "fleet", "", &spec, &registry)
        .await?;
    // Throttled so that a bucket takes a few seconds: there is a "middle" to kill in.
    let settings = tern_control::migrations::MigrationSettings {
        rate_limit: Some(2_000.0),
        ..Default::default()
    };
    store
        .update_migration_settings(&Actor::system(), m.id, &settings, "test")
        .await?;
    let ids: Vec<i64> = store
        .list_buckets(m.id)
        .await?
        .iter()
        .map(|b| b.id)
        .collect();
    store.start_bulk_load(&Actor::system(), m.id, &ids).await?;

    let mut workers = vec![
        worker(&control.url)?,
        worker(&control.url)?,
        worker(&control.url)?,
    ];

    // Act: wait until a job is well into its bucket, then kill its worker.
    let (victim_pid, victim_job) = loop {
        let running = store
            .list_jobs(Some(m.id), None, 100)
            .await?
            .into_iter()
            .find(|j| j.state == JobState::Running && j.rows_done >= 1_000);
        if let Some(job) = running {
            let pid: u32 = job
                .worker
                .as_deref()
                .and_then(|w| w.split(':').nth(1))
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| anyhow::anyhow!("worker name without a pid: {:?}", job.worker))?;
            break (pid, job.id);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let victim = workers
        .iter_mut()
        .find(|w| w.id() == Some(victim_pid))
        .ok_or_else(|| anyhow::anyhow!("no worker with pid {victim_pid}"))?;
    let rows_at_kill = store.job(victim_job).await?.rows_done;
    let status = Command::new("kill")
        .args(["-KILL", &victim_pid.to_string()])
        .status()
        .await?;
    assert!(status.success());
    victim.wait().await?;

    // Assert: every bucket ends loaded; the killed job was taken over.
    let mut done = false;
    for _ in 0..600 {
        let buckets = store.list_buckets(m.id).await?;
        assert!(
            !buckets.iter().any(|b| b.phase == Phase::Failed),
            "a bucket failed: {buckets:?}"
        );
        if buckets.iter().all(|b| b.phase == Phase::Loaded) {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(done, "the migration did not complete");
    let job = store.job(victim_job).await?;
    assert_eq!(job.state, JobState::Succeeded);
    assert!(
        job.attempts >= 2,
        "the killed job was resumed by another worker (attempts {})",
        job.attempts
    );
    assert_ne!(
        job.worker.as_deref().and_then(|w| w.split(':').nth(1)),
        Some(victim_pid.to_string().as_str())
    );
    assert!(rows_at_kill >= 1_000);

    let mut src = sqlx::MySqlConnection::connect(&source.url).await?;
    let mut dst = sqlx::PgConnection::connect(&target.url).await?;
    let digest = "SELECT COUNT(*) AS n, CAST(SUM(id) AS SIGNED) AS s, CAST(SUM(member_id * 3 + LENGTH(body)) AS SIGNED) AS h FROM messages";
    let a = sqlx::query(digest).fetch_one(&mut src).await?;
    let b = sqlx::query("SELECT COUNT(*) AS n, SUM(id)::BIGINT AS s, SUM(member_id * 3 + LENGTH(body))::BIGINT AS h FROM messages")
        .fetch_one(&mut dst)
        .await?;
    assert_eq!(
        (
            a.get::<i64, _>("n"),
            a.get::<i64, _>("s"),
            a.get::<i64, _>("h")
        ),
        (
            b.get::<i64, _>("n"),
            b.get::<i64, _>("s"),
            b.get::<i64, _>("h")
        ),
    );
    assert_eq!(b.get::<i64, _>("n"), ROWS);
    for w in &mut workers {
        let _ = w.start_kill();
    }
    store.close().await;
    Ok(())
}
