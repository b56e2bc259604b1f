//! Seed 004's example end to end: first names longer than 1,000 characters are
//! truncated, the others untouched, and the second pass selects nothing.

use tern_datafix::{EXAMPLE, FixJob, FixSpec, LiveSettings, PluginRegistry, RunOptions, RunStatus};
use tern_testkit::{DbKind, TestDb};

use crate::support::{members, rows};

async fn seed_example(kind: DbKind) -> anyhow::Result<()> {
    // Arrange: 300 members, every 7th with a 1,500-character first name.
    let db = TestDb::new(kind).await?;
    members(&db, 300, 7).await?;
    let before = rows(&db, "SELECT id, first_name FROM members ORDER BY id").await?;
    let mut spec = FixSpec::parse(EXAMPLE, "truncate_first_names.toml")?;
    spec.url = db.url.clone();
    spec.settings.rate = 0;
    spec.settings.batch_size = 10;
    let job = FixJob::connect(spec, &PluginRegistry::default()).await?;
    assert_eq!(job.count().await?, 42);

    // A dry run shows the change and writes nothing.
    let dry = job.dry_run(3).await?;
    assert_eq!(dry.len(), 3);
    assert_eq!(dry[0].key_text, "(7)");
    assert_eq!(dry[0].action, "set");
    assert_eq!(dry[0].changes[0].0, "first_name");
    assert!(
        dry[0].changes[0].1.contains("1500 characters"),
        "{:?}",
        dry[0]
    );
    assert!(
        dry[0].changes[0].2.contains("1000 characters"),
        "{:?}",
        dry[0]
    );
    assert_eq!(job.count().await?, 42);

    // Act
    let settings = LiveSettings::new(job.spec().settings.clone());
    let report = job.run(RunOptions::new(settings)).await?;

    // Assert
    assert_eq!(report.status, RunStatus::Completed);
    assert_eq!(report.changed, 42);
    assert_eq!(report.failed, 0);
    assert_eq!(report.passes, 2, "the second pass selects nothing");
    assert_eq!(job.count().await?, 0);
    let after = rows(&db, "SELECT id, first_name FROM members ORDER BY id").await?;
    for ((id, old), (_, new)) in before.iter().zip(&after) {
        if id % 7 == 0 {
            assert_eq!(new.chars().count(), 1000, "member {id}");
            assert_eq!(new.as_str(), &old[..1000]);
        } else {
            assert_eq!(new, old, "member {id} is untouched");
        }
    }
    Ok(())
}

#[tokio::test]
async fn seed_example_postgres() -> anyhow::Result<()> {
    seed_example(DbKind::Postgres).await
}

#[tokio::test]
async fn seed_example_mariadb() -> anyhow::Result<()> {
    seed_example(DbKind::MariaDb).await
}
