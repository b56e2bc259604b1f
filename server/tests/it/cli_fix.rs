//! `tern fix dry-run` and `tern fix run` on the seed's example
//! (`examples/truncate_first_names.toml`) against a real MariaDB database.

use sqlx::MySqlPool;
use tern_testkit::TestDb;

use crate::support::run;

fn example() -> String {
    format!(
        "{}/../examples/truncate_first_names.toml",
        env!("CARGO_MANIFEST_DIR")
    )
}

async fn lengths(pool: &MySqlPool) -> anyhow::Result<Vec<(i64, i64)>> {
    Ok(
        sqlx::query_as("SELECT id, CHAR_LENGTH(first_name) FROM members ORDER BY id")
            .fetch_all(pool)
            .await?,
    )
}

#[tokio::test]
async fn the_cli_previews_then_truncates_only_the_long_first_names() -> anyhow::Result<()> {
    // Arrange: two names over 1,000 characters, three under.
    let db = TestDb::mariadb().await?;
    let pool = MySqlPool::connect(&db.url).await?;
    sqlx::query("CREATE TABLE members (id BIGINT PRIMARY KEY, first_name TEXT NOT NULL)")
        .execute(&pool)
        .await?;
    sqlx::query(
        "INSERT INTO members VALUES (1, 'Ada'), (2, REPEAT('x', 1500)), (3, REPEAT('y', 1000)),
         (4, REPEAT('z', 1001)), (5, 'Grace')",
    )
    .execute(&pool)
    .await?;
    let before = lengths(&pool).await?;
    let job = example();

    // Act
    let preview = run(&["fix", "dry-run", &job, "--url", &db.url]).await?;
    let after_preview = lengths(&pool).await?;
    let fixed = run(&["fix", "run", &job, "--url", &db.url, "--rate", "0"]).await?;
    let after = lengths(&pool).await?;
    let again = run(&["fix", "run", &job, "--url", &db.url, "--rate", "0"]).await?;

    // Assert
    assert!(preview.contains("selects 2 records now"), "{preview}");
    assert!(preview.contains("-> "), "each change is shown: {preview}");
    assert_eq!(after_preview, before, "a dry run writes nothing");
    assert!(
        fixed.contains("done: the filter selects nothing more")
            && fixed.contains("2 records changed"),
        "{fixed}"
    );
    assert_eq!(after, [(1, 3), (2, 1000), (3, 1000), (4, 1000), (5, 5)]);
    assert!(again.contains("0 records changed"), "{again}");
    Ok(())
}
