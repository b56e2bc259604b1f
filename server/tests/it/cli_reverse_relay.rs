//! `tern reverse-relay` as a real process: the switched bucket's change in
//! the new store goes back to the old one, the other bucket's does not; a
//! table whose mapping does not invert is refused with its reason.

use tern_testkit::TestDb;

use crate::support::{SpecFile, run, tern};

async fn items(db: &TestDb) -> anyhow::Result<sqlx::PgPool> {
    let pool = sqlx::PgPool::connect(&db.url).await?;
    sqlx::query("CREATE TABLE items (id BIGINT PRIMARY KEY, body TEXT NOT NULL)")
        .execute(&pool)
        .await?;
    sqlx::query("INSERT INTO items SELECT g, 'body ' || g FROM generate_series(1, 100) g")
        .execute(&pool)
        .await?;
    Ok(pool)
}

#[tokio::test]
async fn a_switched_bucket_goes_back_to_the_source_and_progress_is_printed() -> anyhow::Result<()> {
    // Arrange: loaded in 2 buckets by id, capture on the source.
    let (source_db, target_db) = (TestDb::postgres().await?, TestDb::postgres().await?);
    let source = items(&source_db).await?;
    let body = "[[tables]]\nname = \"items\"\nkey = [\"id\"]\nbuckets = 2\n\
                [tables.source]\ntable = \"items\"\n[tables.columns]\nid = \"id\"\ntext = \"body\"\n";
    let spec = SpecFile::new(&source_db, &target_db, body)?;
    let path = spec.path.to_str().unwrap_or_default();
    run(&["capture", "install", "--spec", path]).await?;
    run(&["bulk-load", "--spec", path]).await?;
    // The first run installs capture on the target and starts at its head.
    let args = [
        "reverse-relay",
        "--spec",
        path,
        "--switched",
        "items:1",
        "--until-caught-up",
    ];
    run(&args).await?;

    // Act: the application writes the new store, in bucket 1 (switched) and 0.
    let target = sqlx::PgPool::connect(&target_db.url).await?;
    sqlx::query("UPDATE items SET text = 'new store' WHERE id IN (1, 100)")
        .execute(&target)
        .await?;
    let out = tern().args(args).output().await?;

    // Assert
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("reverse relay stopped: name=reverse changes=2 keys=1 rows=1 deleted=0"),
        "{stdout}"
    );
    assert!(
        stderr.contains("switched items:1"),
        "progress on the terminal: {stderr}"
    );
    let bodies: Vec<(i64, String)> =
        sqlx::query_as("SELECT id, body FROM items WHERE id IN (1, 100) ORDER BY id")
            .fetch_all(&source)
            .await?;
    assert_eq!(
        bodies,
        [(1, "body 1".to_string()), (100, "new store".to_string())]
    );
    Ok(())
}

#[tokio::test]
async fn a_table_that_does_not_invert_is_refused_with_its_reason() -> anyhow::Result<()> {
    let (source_db, target_db) = (TestDb::postgres().await?, TestDb::postgres().await?);
    items(&source_db).await?;
    let body = "[[tables]]\nname = \"items\"\nkey = [\"id\"]\nbuckets = 2\n\
                [tables.source]\ntable = \"items\"\n[tables.columns]\nid = \"id\"\n\
                text = { from = \"body\", lower = true }\n";
    let spec = SpecFile::new(&source_db, &target_db, body)?;
    let path = spec.path.to_str().unwrap_or_default();
    run(&["bulk-load", "--spec", path]).await?;

    let out = tern()
        .args(["reverse-relay", "--spec", path, "--switched", "items:0"])
        .output()
        .await?;

    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(
            "table items cannot be switched: in table items, column `text` (lower-casing of body \
             cannot be undone) does not map back to the source: add a [tables.reverse] section"
        ),
        "{stderr}"
    );
    Ok(())
}
