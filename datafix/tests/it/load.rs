//! The load-aware throttle on a data fix: sessions kept busy on the fix's
//! database push its active backends (PostgreSQL) or `Threads_running`
//! (MariaDB) over the spec's `[throttle]` limit; the fix changes nothing
//! while they run, says why, and fixes every record once they are gone.

use std::time::Duration;

use tern_datafix::{LiveSettings, RunOptions, RunStatus};
use tern_engine::LoadState;
use tern_testkit::{DbKind, TestDb};

use crate::support::{Recorder, job, members, rows};

/// Busy sessions on the database; each runs one `sleep`.
const BUSY: usize = 12;
/// The limit: under the busy sessions, above what other tests running at the
/// same time put on the shared server.
const LIMIT: usize = 9;

async fn a_busy_database_holds_the_fix(kind: DbKind) -> anyhow::Result<()> {
    // Arrange: 400 records to fix, a limit of LIMIT statements at once
    // checked every 200 ms, and BUSY sessions sleeping 4 s.
    let db = TestDb::new(kind).await?;
    members(&db, 400, 0).await?;
    let fix = job(
        &db,
        &format!(
            "[filter]\nsql = \"SELECT id, counter FROM members WHERE fixed = 0\"\n\
             [mapper]\nkind = \"update\"\ntable = \"members\"\nset = {{ fixed = \"1\" }}\n\
             [settings]\nbatch_size = 20\n\
             [throttle]\nactive = {LIMIT}\ncheck_every_ms = 200\n"
        ),
    )
    .await?;
    let sleep_sql = match kind {
        DbKind::Postgres => "SELECT pg_sleep(4)",
        _ => "SELECT SLEEP(4)",
    };
    let mut busy = Vec::new();
    for _ in 0..BUSY {
        busy.push(tokio::spawn(sleep_on(kind, db.url.clone(), sleep_sql)));
    }

    // Act: the guard sees the load, then the fix runs under it.
    let guard = fix
        .load_guard()
        .ok_or_else(|| anyhow::anyhow!("a [throttle] section gives a guard"))?;
    let mut state = guard.watch();
    let paused = tokio::time::timeout(
        Duration::from_secs(3),
        state.wait_for(|s| matches!(s, LoadState::Paused(_))),
    )
    .await
    .map_err(|_| anyhow::anyhow!("the guard did not hold the fix back"))??
    .clone();
    let rec = Recorder::new();
    let mut opts = RunOptions::new(LiveSettings::new(fix.spec().settings.clone()));
    opts.observer = rec.clone();
    opts.control = rec
        .control(&std::sync::Arc::new(fix.spec().settings.throttle()))
        .guarded(Some(&guard));
    let run = tokio::spawn(async move { fix.run(opts).await });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let during = rows(&db, "SELECT id, '' FROM members WHERE fixed = 1")
        .await?
        .len();
    for b in busy {
        b.await??;
    }
    let report = tokio::time::timeout(Duration::from_secs(30), run).await???;

    // Assert
    let note = paused.note().unwrap_or_default();
    assert!(note.starts_with("throttled: database "), "{note}");
    assert!(note.contains(&format!("> {LIMIT}")), "{note}");
    assert_eq!(
        during, 0,
        "no record was changed while the database was busy"
    );
    assert_eq!(report.status, RunStatus::Completed);
    assert_eq!(report.changed, 400, "every record after it cleared");
    assert!(
        rows(&db, "SELECT id, '' FROM members WHERE fixed = 0")
            .await?
            .is_empty(),
        "the filter selects nothing more"
    );
    Ok(())
}

/// One session of its own running `sql` (a sleep) on the database at `url`.
async fn sleep_on(kind: DbKind, url: String, sql: &'static str) -> anyhow::Result<()> {
    match kind {
        DbKind::Postgres => {
            let pool = sqlx::PgPool::connect(&url).await?;
            sqlx::query(sql).execute(&pool).await?;
            pool.close().await;
        }
        _ => {
            let pool = sqlx::MySqlPool::connect(&url).await?;
            sqlx::query(sql).execute(&pool).await?;
            pool.close().await;
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_busy_postgres_database_holds_a_data_fix_until_it_clears() -> anyhow::Result<()> {
    a_busy_database_holds_the_fix(DbKind::Postgres).await
}

#[tokio::test]
async fn a_busy_mariadb_database_holds_a_data_fix_until_it_clears() -> anyhow::Result<()> {
    a_busy_database_holds_the_fix(DbKind::MariaDb).await
}
