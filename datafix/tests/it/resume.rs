//! A run killed mid-way resumes from its checkpoint, and no record gets a
//! non-idempotent change (`counter = add(counter, 1)`) twice, not even when a
//! stale run (a worker that lost its lease) runs alongside the new one.

use std::time::Duration;

use tern_datafix::{LiveSettings, RunOptions, RunStatus};
use tern_testkit::{DbKind, TestDb};

use crate::support::{Recorder, job, members, rows};

const BODY: &str = "[filter]\nsql = \"SELECT id, counter, fixed FROM members WHERE fixed = 0\"\n\
    [mapper]\nkind = \"update\"\ntable = \"members\"\nset = { counter = \"add(counter, 1)\", fixed = \"1\" }\n\
    [settings]\nrate = 400\nbatch_size = 20\n";

async fn killed_and_resumed(kind: DbKind) -> anyhow::Result<()> {
    let db = TestDb::new(kind).await?;
    members(&db, 1000, 0).await?;

    // A first run is killed (its task aborted, no clean stop) after a while.
    let first = job(&db, BODY).await?;
    let rec = Recorder::new();
    let mut opts = RunOptions::new(LiveSettings::new(first.spec().settings.clone()));
    opts.observer = rec.clone();
    let handle = tokio::spawn(async move { first.run(opts).await });
    tokio::time::sleep(Duration::from_millis(1200)).await;
    handle.abort();
    let _ = handle.await;
    let cp = rec
        .checkpoints
        .lock()
        .expect("lock")
        .last()
        .cloned()
        .expect("a checkpoint");
    assert!(
        cp.changed > 0 && cp.changed < 1000,
        "killed mid-way: {cp:?}"
    );

    // The resumed run and a stale one (an old worker still going) race.
    let resumed = job(&db, BODY).await?;
    let stale = job(&db, BODY).await?;
    let mut opts = RunOptions::new(LiveSettings::new(resumed.spec().settings.clone()));
    opts.resume = Some(cp.clone());
    let mut stale_opts = RunOptions::new(LiveSettings::new(stale.spec().settings.clone()));
    stale_opts.resume = Some(cp.clone());
    let (a, b) = tokio::join!(resumed.run(opts), stale.run(stale_opts));
    let (a, b) = (a?, b?);
    assert_eq!(a.status, RunStatus::Completed);
    assert_eq!(b.status, RunStatus::Completed);

    let sql = match kind {
        DbKind::Postgres => "SELECT id, counter::text FROM members ORDER BY id",
        _ => "SELECT id, CAST(counter AS CHAR) FROM members ORDER BY id",
    };
    let counters = rows(&db, sql).await?;
    assert_eq!(counters.len(), 1000);
    for (id, c) in &counters {
        assert_eq!(c, "1", "member {id} changed exactly once");
    }
    // Between them the runs changed each remaining record once; the loser saw it stale.
    let changed_after_kill = (a.changed - cp.changed) + (b.changed - cp.changed);
    assert!(
        changed_after_kill <= 1000 - cp.changed,
        "{a:?} {b:?} after {cp:?}"
    );
    Ok(())
}

#[tokio::test]
async fn killed_run_resumes_without_double_changes_postgres() -> anyhow::Result<()> {
    killed_and_resumed(DbKind::Postgres).await
}

#[tokio::test]
async fn killed_run_resumes_without_double_changes_mariadb() -> anyhow::Result<()> {
    killed_and_resumed(DbKind::MariaDb).await
}

#[tokio::test]
async fn killed_run_resumes_without_double_changes_sqlite() -> anyhow::Result<()> {
    killed_and_resumed(DbKind::Sqlite).await
}
