//! Indexes after the load (`engine/src/index_build.rs`), MariaDB →
//! PostgreSQL: an empty target table loads against its primary key alone and
//! gets its other indexes back, with the same definitions, once its last
//! bucket is loaded, reported as a step of its own; a table with rows keeps
//! its indexes throughout.

use std::sync::{Arc, Mutex};

use tern_engine::{Link, Plan, RunControl, Spec, Task, TransformerRegistry, Unit, load_bucket};
use tern_testkit::TestDb;

use crate::support::{Side, spec_text};

const SPEC: &str = r#"
chunk_rows = 50

[[tables]]
name = "items"
key = ["id"]
buckets = 2
[tables.source]
table = "items"
[tables.columns]
id = "id"
member_id = "member_id"
"#;

const TARGET: &str = "CREATE TABLE items (id BIGINT PRIMARY KEY, member_id BIGINT NOT NULL,
      _tern_source_key TEXT, _tern_version BIGINT NOT NULL);
    CREATE INDEX items_member ON items (member_id);
    CREATE INDEX items_tern_source_key ON items (_tern_source_key)";

/// 400 items in the source; the target's `items` made by `target_ddl`.
struct Fixture {
    source_db: TestDb,
    target_db: TestDb,
    target: Side,
}

impl Fixture {
    async fn new(source_db: TestDb, target_db: TestDb, target_ddl: &str) -> anyhow::Result<Self> {
        let source = Side::open(&source_db).await?;
        source
            .exec("CREATE TABLE items (id BIGINT PRIMARY KEY, member_id BIGINT NOT NULL)")
            .await?;
        let rows: Vec<String> = (1..=400).map(|i| format!("({i}, {})", i % 37)).collect();
        source
            .exec(&format!("INSERT INTO items VALUES {}", rows.join(", ")))
            .await?;
        let target = Side::open(&target_db).await?;
        target.exec(target_ddl).await?;
        Ok(Fixture {
            source_db,
            target_db,
            target,
        })
    }

    /// The link of [`SPEC`] and its plan of `items`.
    async fn plan(&self) -> anyhow::Result<(Link, Plan)> {
        let text = spec_text(&self.source_db, &self.target_db, SPEC);
        let link = Link::connect(
            Spec::parse(&text, "test.toml")?,
            &TransformerRegistry::new(),
        )
        .await?;
        let plan = link.plan_or_resume("items", None).await?;
        Ok((link, plan))
    }

    /// What became of the table's indexes, as the engine recorded it.
    async fn index_build_state(&self) -> anyhow::Result<Vec<String>> {
        self.target
            .strings("SELECT state FROM _tern_index_builds WHERE table_name = 'items'")
            .await
    }
}

/// A PostgreSQL target with [`TARGET`] and, if `target_rows`, a row in it.
async fn arrange(target_rows: bool) -> anyhow::Result<Fixture> {
    let ddl = if target_rows {
        format!("{TARGET}; INSERT INTO items VALUES (1, 0, '1', 0)")
    } else {
        TARGET.to_string()
    };
    Fixture::new(TestDb::mariadb().await?, TestDb::postgres().await?, &ddl).await
}

/// `name: definition` of the table's indexes, sorted.
async fn indexes(target: &Side) -> anyhow::Result<Vec<String>> {
    target
        .strings(
            "SELECT indexname || ': ' || indexdef FROM pg_indexes WHERE tablename = 'items' ORDER BY 1",
        )
        .await
}

async fn index_oids(target: &Side) -> anyhow::Result<Vec<String>> {
    target
        .strings(
            "SELECT indexrelid::text FROM pg_index WHERE indrelid = 'items'::regclass ORDER BY 1",
        )
        .await
}

#[tokio::test]
async fn an_empty_table_gets_its_indexes_after_its_last_bucket() -> anyhow::Result<()> {
    // Arrange
    let f = arrange(false).await?;
    let target = &f.target;
    let before = indexes(target).await?;
    let (link, plan) = f.plan().await?;
    let steps = Arc::new(Mutex::new(Vec::new()));
    let seen = steps.clone();
    let control = RunControl::new().on_progress(move |p| {
        if let (Task::IndexBuild { table }, Ok(mut s)) = (&p.task, seen.lock()) {
            s.push((table.clone(), p.unit, p.done, p.total, p.note.clone()));
        }
    });

    // Act
    load_bucket(&link, &plan.buckets[0], &control).await?;
    let between = indexes(target).await?;
    load_bucket(&link, &plan.buckets[1], &control).await?;
    let after = indexes(target).await?;

    // Assert
    assert_eq!(target.count("items").await?, 400);
    assert_eq!(
        between,
        vec![
            "items_pkey: CREATE UNIQUE INDEX items_pkey ON public.items USING btree (id)"
                .to_string()
        ],
        "while buckets load, only the primary key"
    );
    assert_eq!(after, before, "every index back, as it was defined");
    assert_eq!(f.index_build_state().await?, vec!["built".to_string()]);
    let steps = steps.lock().map(|s| s.clone()).unwrap_or_default();
    let last = steps.last().cloned();
    assert_eq!(
        last.map(|(t, u, d, n, _)| (t, u, d, n)),
        Some(("items".to_string(), Unit::Indexes, 2, Some(2)))
    );
    assert!(
        steps
            .iter()
            .any(|s| s.4.as_deref() == Some("building public.items_member")),
        "{steps:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_table_with_rows_keeps_its_indexes() -> anyhow::Result<()> {
    // Arrange
    let f = arrange(true).await?;
    let target = &f.target;
    let oids = index_oids(target).await?;
    let (link, plan) = f.plan().await?;

    // Act
    load_bucket(&link, &plan.buckets[0], &RunControl::new()).await?;
    let between = index_oids(target).await?;
    load_bucket(&link, &plan.buckets[1], &RunControl::new()).await?;

    // Assert
    assert_eq!(target.count("items").await?, 400);
    assert_eq!(between, oids, "no index dropped while loading");
    assert_eq!(index_oids(target).await?, oids, "nor rebuilt after");
    assert_eq!(f.index_build_state().await?, vec!["kept".to_string()]);
    Ok(())
}

/// `name: columns` of the MariaDB table's indexes, sorted.
async fn mariadb_indexes(target: &Side) -> anyhow::Result<Vec<String>> {
    target
        .strings(
            "SELECT CONCAT(INDEX_NAME, IF(NON_UNIQUE = 0, ' unique', ''), ': ', \
             GROUP_CONCAT(CONCAT(COLUMN_NAME, COALESCE(CONCAT('(', SUB_PART, ')'), '')) \
             ORDER BY SEQ_IN_INDEX SEPARATOR ', ')) \
             FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() \
             AND TABLE_NAME = 'items' GROUP BY INDEX_NAME, NON_UNIQUE ORDER BY 1",
        )
        .await
}

#[tokio::test]
async fn an_empty_mariadb_table_gets_its_plain_indexes_after_its_last_bucket() -> anyhow::Result<()>
{
    // Arrange: a MariaDB target with a plain index on two columns (one a
    // prefix), a unique index (a constraint: kept) and the source-key index.
    let ddl = "CREATE TABLE items (id BIGINT PRIMARY KEY, member_id BIGINT NOT NULL, \
               _tern_source_key VARCHAR(255), _tern_version BIGINT NOT NULL, \
               UNIQUE KEY items_version_id (_tern_version, id), \
               KEY items_member (member_id, _tern_source_key(20)), \
               KEY items_tern_source_key (_tern_source_key))";
    let f = Fixture::new(TestDb::postgres().await?, TestDb::mariadb().await?, ddl).await?;
    let target = &f.target;
    let before = mariadb_indexes(target).await?;
    let (link, plan) = f.plan().await?;

    // Act
    load_bucket(&link, &plan.buckets[0], &RunControl::new()).await?;
    let between = mariadb_indexes(target).await?;
    load_bucket(&link, &plan.buckets[1], &RunControl::new()).await?;
    let after = mariadb_indexes(target).await?;

    // Assert
    assert_eq!(target.count("items").await?, 400);
    assert_eq!(
        between,
        vec![
            "items_version_id unique: _tern_version, id".to_string(),
            "PRIMARY unique: id".to_string()
        ],
        "while buckets load, only the primary key and the unique index"
    );
    assert_eq!(after, before, "every index back, as it was defined");
    assert_eq!(f.index_build_state().await?, vec!["built".to_string()]);
    Ok(())
}
