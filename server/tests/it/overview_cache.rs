//! The overview's shared lines: what a user just did is on the next page,
//! and jobs' progress (not audited) shows up within a refresh or two.

use std::sync::Arc;
use std::time::Duration;

use tern_app::overview_cache::{FRESH, OverviewCache};
use tern_control::Store;

use crate::{DataDir, seed};

async fn migration(store: &Store, name: &str) -> anyhow::Result<i64> {
    seed::migration(store, name, "x = 1".into(), 1_000).await
}

fn copied(lines: &[tern_control::dashboard::ProgramLine], id: i64) -> i64 {
    lines
        .iter()
        .find(|l| l.summary.migration.id == id)
        .map_or(-1, |l| l.summary.rows_copied)
}

#[tokio::test]
async fn the_overview_shows_a_change_at_once_and_progress_within_a_refresh() -> anyhow::Result<()> {
    let data = DataDir::new();
    let store = Store::open_sqlite_file(&data.0.join("tern.db")).await?;
    let cache = Arc::new(OverviewCache::default());
    let a = migration(&store, "alpha").await?;
    assert_eq!(cache.lines(&store).await?.len(), 1);

    // An audited change (a new migration) is on the very next page.
    let b = migration(&store, "beta").await?;
    let lines = cache.lines(&store).await?;
    assert_eq!(lines.len(), 2, "the new migration is shown at once");
    assert_eq!(copied(&lines, a), 0);

    // Progress a job records (not audited) is served from the shared lines
    // for a moment, then shows up once a refresh has run.
    let bucket = store.list_buckets(a).await?[0].id;
    store.set_bucket_rows_copied(bucket, 400).await?;
    assert_eq!(
        copied(&cache.lines(&store).await?, a),
        0,
        "served as computed"
    );
    tokio::time::sleep(FRESH + Duration::from_millis(100)).await;
    let mut seen = copied(&cache.lines(&store).await?, a);
    for _ in 0..50 {
        if seen == 400 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        seen = copied(&cache.lines(&store).await?, a);
    }
    assert_eq!(seen, 400, "the refresh brought the progress");
    assert_eq!(copied(&cache.lines(&store).await?, b), 0);
    Ok(())
}
