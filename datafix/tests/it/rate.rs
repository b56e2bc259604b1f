//! A rate change reaches a running job: the measured rate follows it within a
//! few seconds; a pause holds it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tern_datafix::{LiveSettings, RunOptions};
use tern_testkit::{DbKind, TestDb};

use crate::support::{Recorder, job, members};

async fn rate_follows(kind: DbKind) -> anyhow::Result<()> {
    let db = TestDb::new(kind).await?;
    members(&db, 3000, 0).await?;
    let fix = job(
        &db,
        "[filter]\nsql = \"SELECT id, counter FROM members WHERE fixed = 0\"\n\
         [mapper]\nkind = \"update\"\ntable = \"members\"\nset = { fixed = \"1\" }\n\
         [settings]\nrate = 50\nbatch_size = 10\n",
    )
    .await?;
    let throttle = Arc::new(fix.spec().settings.throttle());
    let rec = Recorder::new();
    let mut opts = RunOptions::new(LiveSettings::new(fix.spec().settings.clone()));
    opts.observer = rec.clone();
    opts.control = rec.control(&throttle);
    let cancel = opts.control.cancel.clone();
    let start = Instant::now();
    let run = tokio::spawn(async move { fix.run(opts).await });

    tokio::time::sleep(Duration::from_secs(4)).await;
    throttle.set_rate(Some(250));
    tokio::time::sleep(Duration::from_secs(5)).await;
    throttle.pause();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let held_from = rec.changed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let held_to = rec.changed();
    cancel.cancel();
    throttle.resume();
    let report = run.await??;

    let slow = rec.measured_rate(start, 1.0, 4.0);
    let fast = rec.measured_rate(start, 6.0, 9.0);
    assert!(
        (slow - 50.0).abs() <= 50.0 * 0.2,
        "at 50/s measured {slow:.1}/s"
    );
    assert!(
        (fast - 250.0).abs() <= 250.0 * 0.2,
        "at 250/s measured {fast:.1}/s"
    );
    assert_eq!(held_from, held_to, "nothing changes while paused");
    assert!(report.changed < 3000);
    Ok(())
}

#[tokio::test]
async fn rate_change_reaches_a_running_job_postgres() -> anyhow::Result<()> {
    rate_follows(DbKind::Postgres).await
}

#[tokio::test]
async fn rate_change_reaches_a_running_job_mariadb() -> anyhow::Result<()> {
    rate_follows(DbKind::MariaDb).await
}

#[tokio::test]
async fn rate_change_reaches_a_running_job_sqlite() -> anyhow::Result<()> {
    rate_follows(DbKind::Sqlite).await
}
