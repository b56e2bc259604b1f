//! `tern bulk-load` as a real process: killed with SIGKILL mid-bucket and
//! resumed, and deterministic IDs across processes.

use std::time::Duration;

use tern_testkit::TestDb;
use uuid::Uuid;

use crate::support::{SpecFile, run, tern};

const ROWS: i64 = 30_000;

const BODY: &str = "chunk_rows = 200\n[[tables]]\nname = \"items\"\nkey = [\"id\"]\nbuckets = 2\n\
                    [tables.source]\ntable = \"items\"\nkey = [\"member_id\", \"id\"]\n\
                    [tables.columns]\nid = \"id\"\nmember_id = \"member_id\"\nbody = \"body\"\n\
                    uid = { uuid5 = [\"member_id\", \"id\"], namespace = \"items\" }\n";

async fn mariadb_items() -> anyhow::Result<TestDb> {
    let db = TestDb::mariadb().await?;
    let pool = sqlx::MySqlPool::connect(&db.url).await?;
    sqlx::query(
        "CREATE TABLE items (id BIGINT PRIMARY KEY, member_id BIGINT NOT NULL, body TEXT NOT NULL, KEY member_id (member_id))",
    )
    .execute(&pool)
    .await?;
    sqlx::query(&format!(
        "INSERT INTO items SELECT seq, seq % 97, CONCAT('body ', seq) FROM seq_1_to_{ROWS}"
    ))
    .execute(&pool)
    .await?;
    Ok(db)
}

fn expected_uid(member_id: i64, id: i64) -> Uuid {
    let ns = Uuid::new_v5(&Uuid::NAMESPACE_URL, b"items");
    Uuid::new_v5(&ns, format!("{member_id}\u{1f}{id}").as_bytes())
}

async fn target_rows(db: &TestDb) -> anyhow::Result<Vec<(i64, i64, String, Uuid)>> {
    let pool = sqlx::PgPool::connect(&db.url).await?;
    Ok(
        sqlx::query_as("SELECT id, member_id, body, uid FROM items ORDER BY id")
            .fetch_all(&pool)
            .await?,
    )
}

#[tokio::test]
async fn a_load_killed_mid_bucket_resumes_with_no_row_lost_or_doubled() -> anyhow::Result<()> {
    // Arrange
    let source_db = mariadb_items().await?;
    let target_db = TestDb::postgres().await?;
    let spec = SpecFile::new(&source_db, &target_db, BODY)?;
    let spec_path = spec.path.to_str().unwrap_or_default().to_string();
    let mut child = tern()
        .args(["bulk-load", "--spec", &spec_path, "--rate", "5000"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let target = sqlx::PgPool::connect(&target_db.url).await?;

    // Act: SIGKILL once a few chunks of the first bucket are committed.
    let mut progressed = 0i64;
    for _ in 0..300 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        progressed = sqlx::query_scalar(
            "SELECT COALESCE(SUM(rows_written), 0)::bigint FROM _tern_checkpoints",
        )
        .fetch_one(&target)
        .await
        .unwrap_or(0);
        if progressed >= 2000 {
            break;
        }
    }
    child.kill().await?;
    let at_kill: (i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM items), (SELECT COALESCE(SUM(rows_written), 0)::bigint FROM _tern_checkpoints)",
    )
    .fetch_one(&target)
    .await?;
    let done_at_kill: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM _tern_checkpoints WHERE done = 1")
            .fetch_one(&target)
            .await?;
    let out = run(&["bulk-load", "--spec", &spec_path]).await?;

    // Assert
    assert!(progressed >= 2000, "the load made progress before the kill");
    assert!(
        at_kill.0 < ROWS && done_at_kill == 0,
        "killed mid-bucket: {at_kill:?}, {done_at_kill} done"
    );
    assert_eq!(
        at_kill.0, at_kill.1,
        "after the kill the checkpoints account for every row in the target"
    );
    let resumed_rows: i64 = out
        .lines()
        .find_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("rows=")))
        .and_then(|n| n.parse().ok())
        .unwrap_or(-1);
    assert_eq!(
        resumed_rows + at_kill.1,
        ROWS,
        "the second run read only what was left: {out}"
    );
    let rows = target_rows(&target_db).await?;
    assert_eq!(rows.len() as i64, ROWS);
    for (i, (id, member_id, body, uid)) in rows.iter().enumerate() {
        assert_eq!(*id, i as i64 + 1);
        assert_eq!(*member_id, id % 97);
        assert_eq!(body, &format!("body {id}"));
        assert_eq!(*uid, expected_uid(*member_id, *id));
    }
    Ok(())
}

#[tokio::test]
async fn uuid5_ids_are_the_same_in_two_processes_and_runs() -> anyhow::Result<()> {
    // Arrange
    let source_db = mariadb_items().await?;
    let first_db = TestDb::postgres().await?;
    let second_db = TestDb::postgres().await?;
    let first = SpecFile::new(&source_db, &first_db, BODY)?;
    let second = SpecFile::new(&source_db, &second_db, BODY)?;

    // Act: two separate processes, each a separate run into its own target.
    let first_path = first.path.to_str().unwrap_or_default().to_string();
    let second_path = second.path.to_str().unwrap_or_default().to_string();
    let first_args = ["bulk-load", "--spec", first_path.as_str()];
    let second_args = ["bulk-load", "--spec", second_path.as_str()];
    let (a, b) = tokio::join!(run(&first_args), run(&second_args));
    a?;
    b?;

    // Assert
    let one = target_rows(&first_db).await?;
    let two = target_rows(&second_db).await?;
    assert_eq!(one.len() as i64, ROWS);
    assert_eq!(one, two);
    assert!(
        one.iter()
            .all(|(id, m, _, uid)| *uid == expected_uid(*m, *id))
    );
    Ok(())
}
