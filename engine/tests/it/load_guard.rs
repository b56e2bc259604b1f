//! The load-aware throttle against real servers: sessions kept busy on the
//! target push its active backends (PostgreSQL) or `Threads_running`
//! (MariaDB) over the spec's limit; a bulk load under the guard holds still
//! while they run, says why, and finishes every row once they are gone.

use std::time::Duration;

use tern_engine::{
    Link, LoadGuard, LoadState, LoadStatus, RunControl, Spec, TransformerRegistry, load_bucket,
};
use tern_testkit::{DbKind, TestDb};

use crate::support::{Side, spec_text};

/// Busy sessions on the target; each runs one `sleep` of `secs`.
const BUSY: usize = 12;
/// The limit: under the busy sessions, above what other tests running at the
/// same time put on the shared server.
const LIMIT: usize = 9;

async fn guarded_load_holds_while_target_is_busy(target_db: TestDb) -> anyhow::Result<()> {
    // Arrange: 3,000 source rows, a spec whose target may run LIMIT
    // statements at once, checked every 200 ms.
    let source_db = TestDb::new(DbKind::Sqlite).await?;
    let source = Side::open(&source_db).await?;
    source
        .exec("CREATE TABLE items (id BIGINT PRIMARY KEY, body TEXT NOT NULL)")
        .await?;
    let values: Vec<String> = (1..=3000).map(|i| format!("({i}, 'body {i}')")).collect();
    source
        .exec(&format!("INSERT INTO items VALUES {}", values.join(", ")))
        .await?;
    let body = format!(
        "chunk_rows = 100\n[throttle]\ntarget_active = {LIMIT}\ncheck_every_ms = 200\n\
         [[tables]]\nname = \"items\"\nkey = [\"id\"]\nbuckets = 1\n\
         [tables.source]\ntable = \"items\"\n[tables.columns]\nid = \"id\"\nbody = \"body\"\n"
    );
    let spec = Spec::parse(&spec_text(&source_db, &target_db, &body), "test.toml")?;
    let link = Link::connect(spec, &TransformerRegistry::new()).await?;
    let bucket = link.plan_or_resume("items", None).await?.buckets[0].clone();
    let target = Side::open(&target_db).await?;
    let sleep_sql = if matches!(target_db.kind, DbKind::Postgres) {
        "SELECT pg_sleep(4)"
    } else {
        "SELECT SLEEP(4)"
    };
    // One pool each, so all of them run at once.
    let mut busy = Vec::new();
    for _ in 0..BUSY {
        let session = Side::open(&target_db).await?;
        busy.push(tokio::spawn(async move { session.run(sleep_sql).await }));
    }

    // Act: start the guard once the busy sessions run, then the load.
    let guard = LoadGuard::start(&link).ok_or_else(|| anyhow::anyhow!("no guard"))?;
    let mut state = guard.watch();
    let paused = tokio::time::timeout(
        Duration::from_secs(3),
        state.wait_for(|s| matches!(s, LoadState::Paused(_))),
    )
    .await
    .map_err(|_| anyhow::anyhow!("the guard did not hold the runs back"))??
    .clone();
    let control = RunControl::new().guarded(Some(&guard));
    let load = {
        let (link, bucket, control) = (link, bucket, control);
        tokio::spawn(async move { load_bucket(&link, &bucket, &control).await })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let during = target.count("items").await.unwrap_or(0);
    for b in busy {
        b.await??;
    }
    let report = tokio::time::timeout(Duration::from_secs(30), load).await???;

    // Assert
    let note = paused.note().unwrap_or_default();
    assert!(note.starts_with("throttled: target "), "{note}");
    assert!(note.contains(&format!("> {LIMIT}")), "{note}");
    assert_eq!(during, 0, "no chunk was written while the target was busy");
    assert_eq!(report.status, LoadStatus::Completed);
    assert_eq!(
        target.count("items").await?,
        3000,
        "every row after it cleared"
    );
    assert_eq!(*guard.watch().borrow(), LoadState::Clear);
    Ok(())
}

#[tokio::test]
async fn a_busy_postgres_target_holds_a_bulk_load_until_it_clears() -> anyhow::Result<()> {
    guarded_load_holds_while_target_is_busy(TestDb::postgres().await?).await
}

#[tokio::test]
async fn a_busy_mariadb_target_holds_a_bulk_load_until_it_clears() -> anyhow::Result<()> {
    guarded_load_holds_while_target_is_busy(TestDb::mariadb().await?).await
}
