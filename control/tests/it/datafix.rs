//! Data fixes driven by the control plane: a fix created from a spec, run as a
//! job by real workers against a real MariaDB / PostgreSQL database. A worker
//! killed mid-run: another takes the job over, resumes from the checkpoint and
//! no record is changed twice (the mapper is non-idempotent: counter + 1). A
//! rate change reaches the running job. Audit says who ran what, how many changed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::Connection;
use tern_control::Store;
use tern_control::fixes::FixSettings;
use tern_control::jobs::JobState;
use tern_control::runners::{self, RunnerContext};
use tern_control::worker::{Worker, WorkerTiming};
use tern_testkit::{DbKind, TestDb};
use tokio_util::sync::CancellationToken;

use crate::support::{audit_of, exec};
use crate::{admin, fresh_store};

async fn counters(db: &TestDb) -> anyhow::Result<Vec<(i64, i64)>> {
    let sql = "SELECT id, CAST(counter AS SIGNED) FROM members ORDER BY id";
    Ok(match db.kind {
        DbKind::Postgres => {
            let mut c = sqlx::PgConnection::connect(&db.url).await?;
            sqlx::query_as("SELECT id, counter::bigint FROM members ORDER BY id")
                .fetch_all(&mut c)
                .await?
        }
        _ => {
            let mut c = sqlx::MySqlConnection::connect(&db.url).await?;
            sqlx::query_as(sql).fetch_all(&mut c).await?
        }
    })
}

async fn members(db: &TestDb, n: i64) -> anyhow::Result<()> {
    exec(db, "CREATE TABLE members (id BIGINT PRIMARY KEY, fixed INT NOT NULL DEFAULT 0, counter INT NOT NULL DEFAULT 0)").await?;
    let values: Vec<String> = (1..=n).map(|i| format!("({i})")).collect();
    exec(
        db,
        &format!("INSERT INTO members (id) VALUES {}", values.join(",")),
    )
    .await
}

fn spec(db: &TestDb, name: &str, rate: u64) -> String {
    format!(
        r#"name = "{name}"
url = "{}"
key = ["id"]
[filter]
sql = "SELECT id, counter, fixed FROM members WHERE fixed = 0"
[mapper]
kind = "update"
table = "members"
set = {{ counter = "add(counter, 1)", fixed = "1" }}
[settings]
rate = {rate}
batch_size = 20
"#,
        db.url
    )
}

fn worker(store: &Store, name: &str) -> Worker {
    let timing = WorkerTiming {
        lease: Duration::from_millis(1500),
        heartbeat: Duration::from_millis(300),
        idle_poll: Duration::from_millis(200),
    };
    Worker::new(
        name,
        store.clone(),
        &runners::all(&RunnerContext::default()),
        timing,
    )
}

async fn wait_for<F, Fut>(what: &str, secs: u64, mut f: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let until = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < until {
        if f().await? {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("timed out waiting for {what}")
}

async fn killed_worker(store_kind: DbKind, target_kind: DbKind) -> anyhow::Result<()> {
    // Arrange
    let (_sdb, store) = fresh_store(store_kind).await?;
    let target = TestDb::new(target_kind).await?;
    members(&target, 600).await?;
    let fix = store
        .create_fix(&admin(), &spec(&target, "count-once", 150))
        .await?;
    let run = store.start_fix_run(&admin(), fix.id).await?;
    let job_id = run.job_id.expect("a job");

    // Act: worker A runs part of it and is killed (no heartbeat, no clean stop).
    let a = tokio::spawn(worker(&store, "a").run(CancellationToken::new()));
    wait_for("some records changed", 30, || {
        let store = store.clone();
        async move { Ok(store.fix_run(run.id).await?.changed >= 100) }
    })
    .await?;
    a.abort();
    let changed_at_kill = store.fix_run(run.id).await?.changed;
    assert!(changed_at_kill < 600, "killed mid-run");

    // Worker B takes the job over when A's lease expires and finishes it.
    let stop_b = CancellationToken::new();
    let b = tokio::spawn(worker(&store, "b").run(stop_b.clone()));
    wait_for("the job to succeed", 60, || {
        let store = store.clone();
        async move { Ok(store.job(job_id).await?.state == JobState::Succeeded) }
    })
    .await?;
    stop_b.cancel();
    let _ = b.await;

    // Assert: every record changed exactly once.
    let job = store.job(job_id).await?;
    assert!(job.attempts >= 2, "taken over: {job:?}");
    for (id, counter) in counters(&target).await? {
        assert_eq!(counter, 1, "member {id} changed exactly once");
    }
    let run = store.fix_run(run.id).await?;
    assert!(run.finished_at.is_some());
    assert!(
        run.summary
            .as_deref()
            .unwrap_or("")
            .contains("the filter selects nothing more"),
        "{run:?}"
    );
    assert!(store.fix_failures(run.id, 10).await?.is_empty());

    // Audit: who ran which fix on what, and how many records changed.
    let events = audit_of(&store, "fix.").await?;
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, vec!["fix.finished", "fix.run", "fix.create"]);
    let finished: serde_json::Value =
        serde_json::from_str(events[0].details.as_deref().unwrap_or("{}"))?;
    assert_eq!(events[0].actor, "system");
    assert_eq!(finished["table"], "members");
    assert_eq!(
        finished["database"],
        tern_engine::connector::redact(&target.url)
    );
    assert!(finished["records_changed"].as_i64().unwrap_or(0) >= changed_at_kill);
    Ok(())
}

#[tokio::test]
async fn killed_worker_resumes_without_double_changes_mariadb_target() -> anyhow::Result<()> {
    killed_worker(DbKind::Postgres, DbKind::MariaDb).await
}

#[tokio::test]
async fn killed_worker_resumes_without_double_changes_postgres_target() -> anyhow::Result<()> {
    killed_worker(DbKind::Sqlite, DbKind::Postgres).await
}

#[tokio::test]
async fn a_rate_change_reaches_a_running_fix() -> anyhow::Result<()> {
    let (_sdb, store) = fresh_store(DbKind::Sqlite).await?;
    let target = TestDb::new(DbKind::Postgres).await?;
    members(&target, 3000).await?;
    let fix = store
        .create_fix(&admin(), &spec(&target, "rate", 40))
        .await?;
    let run = store.start_fix_run(&admin(), fix.id).await?;
    let stop = CancellationToken::new();
    let w = tokio::spawn(worker(&store, "w").run(stop.clone()));
    let samples = Arc::new(std::sync::Mutex::new(Vec::<(Instant, i64)>::new()));
    let sampler = {
        let (store, samples) = (store.clone(), Arc::clone(&samples));
        tokio::spawn(async move {
            loop {
                if let Ok(r) = store.fix_run(run.id).await {
                    samples
                        .lock()
                        .expect("lock")
                        .push((Instant::now(), r.changed));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let settings = FixSettings {
        rate: Some(200.0),
        ..fix.settings.clone()
    };
    store
        .set_fix_settings(&admin(), fix.id, &settings, "faster")
        .await?;
    tokio::time::sleep(Duration::from_secs(6)).await;
    sampler.abort();
    store
        .pause_job(&admin(), run.job_id.expect("job"), "done measuring")
        .await?;
    stop.cancel();
    let _ = w.await;

    let s = samples.lock().expect("lock").clone();
    let rate = |from: f64, to: f64| {
        let at = |t: f64| {
            s.iter()
                .rfind(|(i, _)| i.duration_since(start).as_secs_f64() <= t)
                .copied()
        };
        match (at(from), at(to)) {
            (Some((t0, c0)), Some((t1, c1))) => {
                (c1 - c0) as f64 / t1.duration_since(t0).as_secs_f64()
            }
            _ => 0.0,
        }
    };
    let slow = rate(1.5, 5.0);
    let fast = rate(8.0, 11.0);
    assert!(
        (slow - 40.0).abs() <= 40.0 * 0.25,
        "at 40/s measured {slow:.1}/s"
    );
    assert!(
        (fast - 200.0).abs() <= 200.0 * 0.25,
        "at 200/s measured {fast:.1}/s"
    );
    let audit = audit_of(&store, "fix.settings").await?;
    assert_eq!(audit.len(), 1);
    Ok(())
}
