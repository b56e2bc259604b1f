//! `tern plan`: buckets and their sizes, shown before anything is copied.

use tern_testkit::TestDb;

use crate::support::{SpecFile, run};

#[tokio::test]
async fn plan_prints_balanced_buckets_and_touches_nothing_in_the_target() -> anyhow::Result<()> {
    // Arrange: member 1 owns half of the 2000 rows.
    let source_db = TestDb::postgres().await?;
    let target_db = TestDb::postgres().await?;
    let source = sqlx::PgPool::connect(&source_db.url).await?;
    sqlx::query("CREATE TABLE items (member_id BIGINT NOT NULL, id BIGINT NOT NULL, PRIMARY KEY (member_id, id))")
        .execute(&source)
        .await?;
    sqlx::query("INSERT INTO items SELECT CASE WHEN g <= 1000 THEN 1 ELSE g END, g FROM generate_series(1, 2000) g")
        .execute(&source)
        .await?;
    let body = "[[tables]]\nname = \"items\"\nkey = [\"member_id\", \"id\"]\nbuckets = 4\n\
                [tables.source]\ntable = \"items\"\n[tables.columns]\nmember_id = \"member_id\"\nid = \"id\"\n";
    let spec = SpecFile::new(&source_db, &target_db, body)?;

    // Act
    let out = run(&["plan", "--spec", spec.path.to_str().unwrap_or_default()]).await?;

    // Assert
    let lines: Vec<&str> = out.lines().collect();
    // Member 1's thousand rows cannot be split; the rest spread over three.
    assert_eq!(
        lines[0], "items: 2000 rows in 4 buckets by member_id (largest bucket 2.00x the mean)",
        "{out}"
    );
    let rows: Vec<Vec<&str>> = lines[2..]
        .iter()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["0", "[-inf,", "1001)", "1000"], "{out}");
    assert_eq!(rows[1], ["1", "[1001,", "1335)", "334"], "{out}");
    assert_eq!(rows[2], ["2", "[1335,", "1668)", "333"], "{out}");
    assert_eq!(rows[3], ["3", "[1668,", "+inf)", "333"], "{out}");
    let target = sqlx::PgPool::connect(&target_db.url).await?;
    let tables: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_one(&target)
    .await?;
    assert_eq!(tables, 0);
    Ok(())
}
