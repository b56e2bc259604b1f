//! The connector's read-only path (what a data fix runs its filter on):
//! the database refuses a statement that writes, however it is hidden, and
//! the connection it used writes normally afterwards.

use std::time::Duration;

use tern_engine::{Connector, Value};
use tern_testkit::{DbKind, TestDb};

use crate::support::Side;

async fn writes_are_refused(kind: DbKind) -> anyhow::Result<()> {
    let db = TestDb::new(kind).await?;
    let side = Side::open(&db).await?;
    side.exec(
        "CREATE TABLE items (id BIGINT PRIMARY KEY, v VARCHAR(20) NOT NULL); \
         INSERT INTO items (id, v) VALUES (1, 'a'), (2, 'b'), (3, 'c')",
    )
    .await?;
    let conn = Connector::connect(&db.url, "source").await?;
    let timeout = Duration::from_secs(10);

    // Reads work, with parameters.
    let (names, rows) = conn
        .fetch_read_only(
            "SELECT id, v FROM items WHERE id > ? ORDER BY id"
                .replace('?', &conn.dialect().placeholder(1))
                .as_str(),
            &[Value::Int(1)],
            timeout,
            "read",
        )
        .await?;
    assert_eq!(names, ["id", "v"]);
    assert_eq!(rows.len(), 2);

    let mut writes = vec!["DELETE FROM items WHERE id = 1 RETURNING id"];
    if kind == DbKind::Postgres {
        writes.push("WITH u AS (UPDATE items SET v = 'gone' RETURNING id, v) SELECT id, v FROM u");
    }
    // Every connection of the pool takes a turn, so a connection left
    // read-only would show in the writes below.
    for _ in 0..10 {
        for sql in &writes {
            let e = conn
                .fetch_read_only(sql, &[], timeout, "a writing query")
                .await
                .expect_err(sql);
            let text = e.to_string().to_ascii_lowercase();
            assert!(
                text.contains("read-only")
                    || text.contains("read only")
                    || text.contains("readonly"),
                "{sql}: {e}"
            );
        }
    }
    assert_eq!(
        side.strings("SELECT v FROM items ORDER BY id").await?,
        ["a", "b", "c"]
    );

    for id in 1..=3 {
        let sql = format!("UPDATE items SET v = 'w' WHERE id = {id}");
        assert_eq!(conn.execute(&sql, &[], "write after reads").await?, 1);
    }
    assert_eq!(
        side.strings("SELECT v FROM items ORDER BY id").await?,
        ["w", "w", "w"]
    );
    Ok(())
}

#[tokio::test]
async fn a_read_only_query_that_writes_is_refused_postgres() -> anyhow::Result<()> {
    writes_are_refused(DbKind::Postgres).await
}

#[tokio::test]
async fn a_read_only_query_that_writes_is_refused_mariadb() -> anyhow::Result<()> {
    writes_are_refused(DbKind::MariaDb).await
}

#[tokio::test]
async fn a_read_only_query_that_writes_is_refused_sqlite() -> anyhow::Result<()> {
    writes_are_refused(DbKind::Sqlite).await
}

#[tokio::test]
async fn a_read_only_query_stops_at_its_timeout_and_the_limit_does_not_stay() -> anyhow::Result<()>
{
    for kind in [DbKind::Postgres, DbKind::MariaDb] {
        let db = TestDb::new(kind).await?;
        let conn = Connector::connect(&db.url, "source").await?;
        let sleep = match kind {
            DbKind::Postgres => "SELECT pg_sleep(3) IS NOT NULL AS slept",
            _ => "SELECT SLEEP(3) AS slept",
        };
        let started = std::time::Instant::now();
        let out = conn
            .fetch_read_only(sleep, &[], Duration::from_millis(500), "a slow query")
            .await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{kind:?} stopped early"
        );
        // MariaDB's SLEEP answers 1 when interrupted instead of failing.
        if kind == DbKind::Postgres {
            let e = out.expect_err("timed out");
            assert!(e.to_string().contains("statement timeout"), "{e}");
        }
        // No connection keeps the limit: a slower statement still runs.
        for _ in 0..10 {
            let slow = match kind {
                DbKind::Postgres => "SELECT pg_sleep(0.6) IS NULL AS slept",
                _ => "SELECT SLEEP(0.6)",
            };
            conn.fetch(slow, &[], "a statement after the limit").await?;
        }
    }
    Ok(())
}
