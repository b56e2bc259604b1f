//! Change capture on each source database: the triggers log inserts, updates
//! (old and new keys) and deletes; removal leaves the schema exactly as it
//! was, compared through the databases' own catalogs; and the changelog reads
//! back as the keys changed since a position.

use anyhow::Context;
use tern_engine::changelog::Position;
use tern_engine::connector::Connector;
use tern_engine::{ChangeStream, Filter, RunControl, StreamOptions};
use tern_engine::{Link, Spec, TransformerRegistry, Value, capture};
use tern_testkit::{DbKind, TestDb};

use crate::support::{Side, spec_text};

/// Every table, column, index, trigger and routine of the database, one line
/// each, from its catalog.
pub async fn schema_dump(side: &Side, kind: DbKind) -> anyhow::Result<Vec<String>> {
    let sql = match kind {
        DbKind::Postgres => {
            "SELECT 'column ' || table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable || ' ' || coalesce(column_default, '') \
             FROM information_schema.columns WHERE table_schema NOT IN ('pg_catalog', 'information_schema') \
             UNION ALL SELECT 'index ' || indexname || ' ' || indexdef FROM pg_indexes WHERE schemaname NOT IN ('pg_catalog', 'information_schema') \
             UNION ALL SELECT 'trigger ' || tgname || ' on ' || tgrelid::regclass::text FROM pg_trigger WHERE NOT tgisinternal \
             UNION ALL SELECT 'function ' || p.oid::regprocedure::text || ' ' || md5(p.prosrc) FROM pg_proc p \
               JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') \
             UNION ALL SELECT 'relation ' || c.relname || ' ' || c.relkind::text FROM pg_class c \
               JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') \
             ORDER BY 1"
        }
        DbKind::MariaDb => {
            "SELECT CONCAT('column ', TABLE_NAME, '.', COLUMN_NAME, ' ', COLUMN_TYPE, ' ', IS_NULLABLE, ' ', IFNULL(COLUMN_DEFAULT, ''), ' ', EXTRA) \
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() \
             UNION ALL SELECT CONCAT('index ', TABLE_NAME, '.', INDEX_NAME, ' ', COLUMN_NAME, ' ', SEQ_IN_INDEX) \
             FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() \
             UNION ALL SELECT CONCAT('trigger ', TRIGGER_NAME, ' ', EVENT_OBJECT_TABLE, ' ', ACTION_STATEMENT) \
             FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE() \
             UNION ALL SELECT CONCAT('routine ', ROUTINE_NAME, ' ', ROUTINE_TYPE) \
             FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = DATABASE() \
             UNION ALL SELECT CONCAT('table ', TABLE_NAME, ' ', TABLE_TYPE, ' ', IFNULL(ENGINE, '')) \
             FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() \
             ORDER BY 1"
        }
        DbKind::Sqlite => {
            "SELECT type || ' ' || name || ' ' || tbl_name || ' ' || coalesce(sql, '') FROM sqlite_master ORDER BY 1"
        }
    };
    side.strings(sql).await
}

/// The source of these tests: items, plus a trigger of the application's own
/// that capture must leave alone. One statement each (bodies contain `;`).
fn items_ddl(kind: DbKind) -> Vec<&'static str> {
    match kind {
        DbKind::Postgres => vec![
            "CREATE TABLE items (id BIGINT PRIMARY KEY, member_id BIGINT NOT NULL, body TEXT NOT NULL)",
            "CREATE INDEX items_member ON items (member_id, id)",
            "CREATE TABLE audit (n BIGINT)",
            "CREATE FUNCTION audit_items() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN INSERT INTO audit VALUES (1); RETURN NULL; END'",
            "CREATE TRIGGER audit_items AFTER INSERT ON items FOR EACH ROW EXECUTE FUNCTION audit_items()",
        ],
        DbKind::MariaDb => vec![
            "CREATE TABLE items (id BIGINT PRIMARY KEY, member_id BIGINT NOT NULL, body TEXT NOT NULL, KEY member_id (member_id))",
            "CREATE TABLE audit (n BIGINT)",
            "CREATE TRIGGER audit_items AFTER INSERT ON items FOR EACH ROW INSERT INTO audit VALUES (1)",
        ],
        DbKind::Sqlite => vec![
            "CREATE TABLE items (id INTEGER PRIMARY KEY, member_id INTEGER NOT NULL, body TEXT NOT NULL)",
            "CREATE INDEX items_member ON items (member_id, id)",
            "CREATE TABLE audit (n INTEGER)",
            "CREATE TRIGGER audit_items AFTER INSERT ON items BEGIN INSERT INTO audit VALUES (1); END",
        ],
    }
}

const ITEMS_SPEC: &str = "chunk_rows = 100\n[[tables]]\nname = \"items\"\nkey = [\"id\"]\nbuckets = 2\n\
    [tables.source]\ntable = \"items\"\nbucket = \"member_id\"\n\
    [tables.columns]\nid = \"id\"\nmember_id = \"member_id\"\nbody = \"body\"\n";

async fn removal_leaves_the_schema_as_it_was(kind: DbKind) -> anyhow::Result<()> {
    // Arrange
    let source_db = TestDb::new(kind).await?;
    let target_db = TestDb::sqlite()?;
    let source = Side::open(&source_db).await?;
    for stmt in items_ddl(kind) {
        source.run(stmt).await?;
    }
    source
        .exec("INSERT INTO items VALUES (1, 10, 'a'); INSERT INTO items VALUES (2, 20, 'b')")
        .await?;
    let before = schema_dump(&source, kind).await?;
    let spec = Spec::parse(&spec_text(&source_db, &target_db, ITEMS_SPEC), "test.toml")?;
    let conn = Connector::connect(&source_db.url, "source").await?;

    // Act
    let installed = capture::install(&conn, &spec).await?;
    capture::install(&conn, &spec).await?; // again: replaces, does not fail
    source
        .exec("INSERT INTO items VALUES (3, 30, 'c'); UPDATE items SET body = 'x' WHERE id = 1; DELETE FROM items WHERE id = 2")
        .await?;
    let during = schema_dump(&source, kind).await?;
    let logged = source.count("_tern_changelog").await?;
    let removed = capture::remove(&conn).await?;
    let after = schema_dump(&source, kind).await?;
    let again = capture::remove(&conn).await?;

    // Assert
    assert_eq!(installed.tables.len(), 1);
    assert_eq!(logged, 3, "one changelog row per insert, update and delete");
    assert_ne!(before, during, "capture added objects");
    assert!(
        during.iter().any(|l| l.contains("_tern_capture")),
        "{during:#?}"
    );
    assert!(!removed.dropped.is_empty());
    assert_eq!(before, after, "the source schema is exactly as before");
    assert!(again.dropped.is_empty(), "nothing left to remove");
    assert_eq!(
        source.count("audit").await?,
        3,
        "the application's own trigger kept firing"
    );
    Ok(())
}

/// Two migrations read one database, one table each: the decommission of
/// the first removes the capture of its table only, the second's changes are
/// still logged, and the changelog goes with the last capture.
async fn one_migrations_removal_keeps_anothers_capture(kind: DbKind) -> anyhow::Result<()> {
    // Arrange
    let source_db = TestDb::new(kind).await?;
    let target_db = TestDb::sqlite()?;
    let source = Side::open(&source_db).await?;
    source
        .exec(
            "CREATE TABLE items (id BIGINT PRIMARY KEY, member_id BIGINT NOT NULL, body TEXT NOT NULL); \
             CREATE TABLE notes (id BIGINT PRIMARY KEY, member_id BIGINT NOT NULL, body TEXT NOT NULL)",
        )
        .await?;
    let before = schema_dump(&source, kind).await?;
    let notes_spec = ITEMS_SPEC.replace("\"items\"", "\"notes\"");
    let conn = Connector::connect(&source_db.url, "source").await?;
    for text in [ITEMS_SPEC, notes_spec.as_str()] {
        let spec = Spec::parse(&spec_text(&source_db, &target_db, text), "test.toml")?;
        capture::install(&conn, &spec).await?;
    }

    // Act: the first migration is decommissioned; both tables are written.
    let first = capture::remove_tables(&conn, &["items".to_string()]).await?;
    source
        .exec("INSERT INTO items VALUES (1, 10, 'a'); INSERT INTO notes VALUES (1, 10, 'n')")
        .await?;
    let logged = source.count("_tern_changelog").await?;
    let second = capture::remove_tables(&conn, &["notes".to_string()]).await?;
    let after = schema_dump(&source, kind).await?;

    // Assert
    assert_eq!(
        logged, 1,
        "the notes insert is logged, the items one is not"
    );
    assert!(
        first.dropped.iter().any(|d| d.contains("changelog stays")),
        "{:?}",
        first.dropped
    );
    assert!(
        second.dropped.iter().any(|d| d.contains("_tern_changelog")),
        "{:?}",
        second.dropped
    );
    assert_eq!(
        before, after,
        "nothing of Tern's is left once both are gone"
    );
    Ok(())
}

#[tokio::test]
async fn one_migrations_removal_keeps_anothers_capture_postgres() -> anyhow::Result<()> {
    one_migrations_removal_keeps_anothers_capture(DbKind::Postgres).await
}

#[tokio::test]
async fn one_migrations_removal_keeps_anothers_capture_mariadb() -> anyhow::Result<()> {
    one_migrations_removal_keeps_anothers_capture(DbKind::MariaDb).await
}

#[tokio::test]
async fn one_migrations_removal_keeps_anothers_capture_sqlite() -> anyhow::Result<()> {
    one_migrations_removal_keeps_anothers_capture(DbKind::Sqlite).await
}

#[tokio::test]
async fn removal_leaves_a_postgres_schema_as_it_was() -> anyhow::Result<()> {
    removal_leaves_the_schema_as_it_was(DbKind::Postgres).await
}

#[tokio::test]
async fn removal_leaves_a_mariadb_schema_as_it_was() -> anyhow::Result<()> {
    removal_leaves_the_schema_as_it_was(DbKind::MariaDb).await
}

#[tokio::test]
async fn removal_leaves_a_sqlite_schema_as_it_was() -> anyhow::Result<()> {
    removal_leaves_the_schema_as_it_was(DbKind::Sqlite).await
}

/// Inserts, updates (one moving a row to another key and bucket) and deletes
/// read back as the keys they touched, old and new, a page at a time.
async fn changed_keys_come_back_old_and_new(kind: DbKind) -> anyhow::Result<()> {
    // Arrange
    let source_db = TestDb::new(kind).await?;
    let target_db = TestDb::postgres().await?;
    let source = Side::open(&source_db).await?;
    source
        .exec(match kind {
            DbKind::Sqlite => {
                "CREATE TABLE items (id INTEGER PRIMARY KEY, member_id INTEGER NOT NULL, body TEXT NOT NULL)"
            }
            _ => "CREATE TABLE items (id BIGINT PRIMARY KEY, member_id BIGINT NOT NULL, body TEXT NOT NULL)",
        })
        .await?;
    source
        .exec("INSERT INTO items VALUES (1, 10, 'a'); INSERT INTO items VALUES (2, 20, 'b')")
        .await?;
    let spec = Spec::parse(&spec_text(&source_db, &target_db, ITEMS_SPEC), "test.toml")?;
    let link = Link::connect(spec.clone(), &TransformerRegistry::new()).await?;
    let installed = capture::install(link.source(), &spec).await?;

    // Act
    source
        .exec(
            "INSERT INTO items VALUES (3, 30, 'c');
             UPDATE items SET body = 'x' WHERE id = 1;
             UPDATE items SET id = 4, member_id = 40 WHERE id = 2;
             DELETE FROM items WHERE id = 3;
             UPDATE items SET body = 'y' WHERE id = 1",
        )
        .await?;
    let items = Filter::Table("items".into());
    let control = RunControl::new();
    let by_two = StreamOptions {
        batch_changes: 2,
        ..StreamOptions::default()
    };
    let mut stream = ChangeStream::new(&link, tern_engine::Side::Source, by_two)?;
    let mut at = installed.position.clone();
    let mut pages = Vec::new();
    while let Some(page) = stream.next_batch(&at, &items, &control).await? {
        at = page.next.clone();
        let done = page.at_head;
        pages.push(page);
        if done {
            break;
        }
    }
    let mut whole = ChangeStream::new(&link, tern_engine::Side::Source, StreamOptions::default())?;
    let from_start = whole
        .next_batch(&Position::start(), &items, &control)
        .await?
        .context("not cancelled")?;

    // Assert
    let keys: Vec<Vec<Value>> = pages
        .iter()
        .flat_map(|p| p.keys.iter().flat_map(|t| t.keys.clone()))
        .collect();
    let ids: Vec<i64> = keys
        .iter()
        .map(|k| match k.as_slice() {
            [Value::Int(i)] => *i,
            other => panic!("unexpected key {other:?}"),
        })
        .collect();
    assert_eq!(pages.iter().map(|p| p.changes).sum::<u64>(), 5);
    assert!(
        pages.len() >= 3,
        "read two changes at a time: {}",
        pages.len()
    );
    for id in [1, 2, 3, 4] {
        assert!(ids.contains(&id), "key {id} changed: {ids:?}");
    }
    assert_eq!(at.high, installed.position.high + 5);
    assert!(at.gaps.is_empty(), "{at}");
    let mut all: Vec<Vec<Value>> = from_start.keys.into_iter().flat_map(|t| t.keys).collect();
    all.sort_by_key(|k| format!("{k:?}"));
    assert_eq!(all.len(), 4, "each key once: {all:?}");
    assert!(from_start.at_head);
    Ok(())
}

#[tokio::test]
async fn postgres_changes_come_back_as_keys_old_and_new() -> anyhow::Result<()> {
    changed_keys_come_back_old_and_new(DbKind::Postgres).await
}

#[tokio::test]
async fn mariadb_changes_come_back_as_keys_old_and_new() -> anyhow::Result<()> {
    changed_keys_come_back_old_and_new(DbKind::MariaDb).await
}

#[tokio::test]
async fn sqlite_changes_come_back_as_keys_old_and_new() -> anyhow::Result<()> {
    changed_keys_come_back_old_and_new(DbKind::Sqlite).await
}
