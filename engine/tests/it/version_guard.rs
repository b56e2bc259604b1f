//! The If-Unmodified-Since rule on each target dialect: a write never
//! replaces a row whose version is newer; an older row is replaced.

use tern_engine::{Link, Spec, TransformerRegistry, Value};
use tern_testkit::{DbKind, TestDb};

use crate::support::{Side, spec_text};

const BODY: &str = "[[tables]]\nname = \"items\"\nkey = [\"id\"]\nbuckets = 1\n\
                    [tables.source]\ntable = \"items\"\n[tables.columns]\nid = \"id\"\nbody = \"body\"\n";

async fn guard_holds_on(target_kind: DbKind) -> anyhow::Result<()> {
    // Arrange: both rows loaded; then the target's row 1 gets a newer
    // version (a relay write) and the source changes both rows.
    let source_db = TestDb::sqlite()?;
    let target_db = TestDb::new(target_kind).await?;
    let source = Side::open(&source_db).await?;
    source
        .exec("CREATE TABLE items (id INTEGER PRIMARY KEY, body TEXT NOT NULL); INSERT INTO items VALUES (1, 'a'), (2, 'b')")
        .await?;
    let spec = Spec::parse(&spec_text(&source_db, &target_db, BODY), "test.toml")?;
    let link = Link::connect(spec, &TransformerRegistry::new()).await?;
    tern_engine::apply::load_keys(&link, "items", &[vec![Value::Int(1)], vec![Value::Int(2)]])
        .await?;
    let target = Side::open(&target_db).await?;
    target
        .exec("UPDATE items SET body = 'relay', _tern_version = 9000000000000000 WHERE id = 1")
        .await?;
    source
        .exec(
            "UPDATE items SET body = 'a2' WHERE id = 1; UPDATE items SET body = 'b2' WHERE id = 2",
        )
        .await?;

    // Act
    let report =
        tern_engine::apply::load_keys(&link, "items", &[vec![Value::Int(1)], vec![Value::Int(2)]])
            .await?;

    // Assert
    assert_eq!(report.rows_read, 2);
    let sql = "SELECT id, body FROM items ORDER BY id";
    let rows: Vec<(i64, String)> = match &target {
        Side::Pg(p) => sqlx::query_as(sql).fetch_all(p).await?,
        Side::My(p) => sqlx::query_as(sql).fetch_all(p).await?,
        Side::Lite(p) => sqlx::query_as(sql).fetch_all(p).await?,
    };
    assert_eq!(rows, vec![(1, "relay".to_string()), (2, "b2".to_string())]);
    Ok(())
}

#[tokio::test]
async fn postgres_keeps_newer_rows() -> anyhow::Result<()> {
    guard_holds_on(DbKind::Postgres).await
}

#[tokio::test]
async fn mariadb_keeps_newer_rows() -> anyhow::Result<()> {
    guard_holds_on(DbKind::MariaDb).await
}

#[tokio::test]
async fn sqlite_keeps_newer_rows() -> anyhow::Result<()> {
    guard_holds_on(DbKind::Sqlite).await
}
