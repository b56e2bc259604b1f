//! A load cancelled between chunks resumes from its checkpoint: no row lost,
//! none read twice. (The kill -9 of a real process is in the server's tests.)

use tern_engine::{Link, LoadStatus, RunControl, Spec, TransformerRegistry, load_bucket};
use tern_testkit::TestDb;

use crate::support::{Side, spec_text};

#[tokio::test]
async fn a_cancelled_bucket_resumes_after_its_last_committed_chunk() -> anyhow::Result<()> {
    // Arrange
    let source_db = TestDb::mariadb().await?;
    let target_db = TestDb::postgres().await?;
    let source = Side::open(&source_db).await?;
    source
        .exec("CREATE TABLE items (id BIGINT PRIMARY KEY, member_id BIGINT NOT NULL, body TEXT NOT NULL)")
        .await?;
    let values: Vec<String> = (1..=2000)
        .map(|i| format!("({i}, {}, 'body {i}')", i % 13))
        .collect();
    source
        .exec(&format!("INSERT INTO items VALUES {}", values.join(", ")))
        .await?;
    let body = "chunk_rows = 50\n[[tables]]\nname = \"items\"\nkey = [\"id\"]\nbuckets = 1\n\
                [tables.source]\ntable = \"items\"\n[tables.columns]\nid = \"id\"\nmember_id = \"member_id\"\nbody = \"body\"\n";
    let spec = Spec::parse(&spec_text(&source_db, &target_db, body), "test.toml")?;
    let link = Link::connect(spec, &TransformerRegistry::new()).await?;
    let bucket = link.plan_or_resume("items", None).await?.buckets[0].clone();
    let first = RunControl::new().with_rate(Some(10_000));
    let stop = first.cancel.clone();
    let first = first.on_progress(move |p| {
        if p.done >= 500 {
            stop.cancel();
        }
    });

    // Act
    let cancelled = load_bucket(&link, &bucket, &first).await?;
    let target = Side::open(&target_db).await?;
    let after_cancel = target.count("items").await?;
    let checkpoint = link.checkpoints("items").await?.remove(0);
    let resumed = load_bucket(&link, &bucket, &RunControl::new()).await?;

    // Assert
    assert_eq!(cancelled.status, LoadStatus::Cancelled);
    assert!((500..2000).contains(&after_cancel), "{after_cancel}");
    assert_eq!(
        checkpoint.rows_written as i64, after_cancel,
        "the checkpoint marks exactly what is written"
    );
    assert!(!checkpoint.done);
    assert_eq!(resumed.status, LoadStatus::Completed);
    assert_eq!(
        cancelled.rows_read + resumed.rows_read,
        2000,
        "no row read twice, none skipped"
    );
    let ids: Vec<(i64, String)> = sqlx::query_as("SELECT id, body FROM items ORDER BY id")
        .fetch_all(target.pg()?)
        .await?;
    let want: Vec<(i64, String)> = (1..=2000).map(|i| (i, format!("body {i}"))).collect();
    assert_eq!(ids, want);
    assert!(link.checkpoints("items").await?[0].done);
    Ok(())
}
