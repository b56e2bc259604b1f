//! The SQLite and PostgreSQL schemas of the control store agree: both
//! dialects' migrations, run on a fresh database each, give the same tables,
//! the same columns with the same kind of type and the same nullability, and
//! the same indexes (columns, order and uniqueness). The migrations are
//! hand-kept pairs; this is what keeps a pair from drifting.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::{AnyPool, Row};
use tern_control::Store;
use tern_testkit::{DbKind, TestDb};

/// One column: its name's kind of type (integer, real, text, blob, bool) and
/// whether it may be null.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Column {
    name: String,
    kind: String,
    nullable: bool,
}

/// One index that is not the primary key: its columns in order, and whether
/// it is unique. (Names differ between dialects for unique constraints.)
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Index {
    columns: Vec<String>,
    unique: bool,
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Table {
    columns: BTreeSet<Column>,
    indexes: BTreeSet<Index>,
}

type Schema = BTreeMap<String, Table>;

fn kind_of(declared: &str) -> String {
    let t = declared.to_ascii_lowercase();
    if t.contains("int") || t.contains("serial") {
        "integer"
    } else if t.contains("real")
        || t.contains("double")
        || t.contains("float")
        || t.contains("numeric")
    {
        "real"
    } else if t.contains("text") || t.contains("char") {
        "text"
    } else if t.contains("blob") || t.contains("bytea") {
        "blob"
    } else if t.contains("bool") {
        "bool"
    } else {
        return t;
    }
    .to_string()
}

async fn sqlite_schema(pool: &AnyPool) -> anyhow::Result<Schema> {
    let mut schema = Schema::new();
    let tables = sqlx::query(
        "SELECT name FROM sqlite_master WHERE type = 'table'
           AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations'",
    )
    .fetch_all(pool)
    .await?;
    for t in tables {
        let name: String = t.try_get("name")?;
        let mut table = Table::default();
        for c in sqlx::query(&format!("PRAGMA table_info('{name}')"))
            .fetch_all(pool)
            .await?
        {
            let notnull: i64 = c.try_get("notnull")?;
            let pk: i64 = c.try_get("pk")?;
            table.columns.insert(Column {
                name: c.try_get("name")?,
                kind: kind_of(&c.try_get::<String, _>("type")?),
                // A primary key column is never null, whatever SQLite reports.
                nullable: notnull == 0 && pk == 0,
            });
        }
        for i in sqlx::query(&format!("PRAGMA index_list('{name}')"))
            .fetch_all(pool)
            .await?
        {
            let origin: String = i.try_get("origin")?;
            if origin == "pk" {
                continue;
            }
            let index: String = i.try_get("name")?;
            let mut columns = Vec::new();
            for c in sqlx::query(&format!("PRAGMA index_info('{index}')"))
                .fetch_all(pool)
                .await?
            {
                columns.push((
                    c.try_get::<i64, _>("seqno")?,
                    c.try_get::<String, _>("name")?,
                ));
            }
            columns.sort();
            table.indexes.insert(Index {
                columns: columns.into_iter().map(|(_, c)| c).collect(),
                unique: i.try_get::<i64, _>("unique")? != 0,
            });
        }
        schema.insert(name, table);
    }
    Ok(schema)
}

async fn postgres_schema(pool: &AnyPool) -> anyhow::Result<Schema> {
    let mut schema = Schema::new();
    let columns = sqlx::query(
        "SELECT table_name::text AS t, column_name::text AS c, data_type::text AS ty,
                is_nullable::text AS nullable
         FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name <> '_sqlx_migrations'",
    )
    .fetch_all(pool)
    .await?;
    for c in columns {
        let table: String = c.try_get("t")?;
        schema.entry(table).or_default().columns.insert(Column {
            name: c.try_get("c")?,
            kind: kind_of(&c.try_get::<String, _>("ty")?),
            nullable: c.try_get::<String, _>("nullable")? == "YES",
        });
    }
    // Every index but the primary keys, its columns in index order.
    let indexes = sqlx::query(
        "SELECT t.relname::text AS t, i.relname::text AS i,
                CASE WHEN x.indisunique THEN 1 ELSE 0 END AS uniq,
                string_agg(a.attname::text, ',' ORDER BY k.n) AS cols
         FROM pg_index x
         JOIN pg_class i ON i.oid = x.indexrelid
         JOIN pg_class t ON t.oid = x.indrelid
         JOIN pg_namespace s ON s.oid = t.relnamespace
         CROSS JOIN LATERAL unnest(x.indkey) WITH ORDINALITY AS k(attnum, n)
         JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
         WHERE s.nspname = current_schema() AND NOT x.indisprimary
           AND t.relname <> '_sqlx_migrations'
         GROUP BY t.relname, i.relname, x.indisunique",
    )
    .fetch_all(pool)
    .await?;
    for i in indexes {
        let table: String = i.try_get("t")?;
        let cols: String = i.try_get("cols")?;
        schema.entry(table).or_default().indexes.insert(Index {
            columns: cols.split(',').map(str::to_string).collect(),
            unique: i.try_get::<i32, _>("uniq")? != 0,
        });
    }
    Ok(schema)
}

/// Every difference between the two schemas, one line each.
fn differences(sqlite: &Schema, postgres: &Schema) -> Vec<String> {
    let mut out = Vec::new();
    let names: BTreeSet<&String> = sqlite.keys().chain(postgres.keys()).collect();
    for name in names {
        match (sqlite.get(name), postgres.get(name)) {
            (Some(_), None) => out.push(format!("table {name} is only in SQLite")),
            (None, Some(_)) => out.push(format!("table {name} is only in PostgreSQL")),
            (Some(s), Some(p)) => {
                for c in s.columns.difference(&p.columns) {
                    out.push(format!("{name}: SQLite has {c:?}, PostgreSQL does not"));
                }
                for c in p.columns.difference(&s.columns) {
                    out.push(format!("{name}: PostgreSQL has {c:?}, SQLite does not"));
                }
                for i in s.indexes.difference(&p.indexes) {
                    out.push(format!(
                        "{name}: SQLite has index {i:?}, PostgreSQL does not"
                    ));
                }
                for i in p.indexes.difference(&s.indexes) {
                    out.push(format!(
                        "{name}: PostgreSQL has index {i:?}, SQLite does not"
                    ));
                }
            }
            (None, None) => {}
        }
    }
    out
}

async fn migrated(kind: DbKind) -> anyhow::Result<(TestDb, AnyPool)> {
    let db = TestDb::new(kind).await?;
    drop(Store::open(&db.url).await?);
    let pool = AnyPool::connect(&db.url).await?;
    Ok((db, pool))
}

#[tokio::test]
async fn sqlite_and_postgres_migrations_give_the_same_schema() -> anyhow::Result<()> {
    let (_s, sqlite) = migrated(DbKind::Sqlite).await?;
    let (_p, postgres) = migrated(DbKind::Postgres).await?;
    let s = sqlite_schema(&sqlite).await?;
    let p = postgres_schema(&postgres).await?;
    assert!(
        s.len() >= 20,
        "SQLite has only {} tables: {:?}",
        s.len(),
        s.keys()
    );
    assert!(s.values().all(|t| !t.columns.is_empty()));
    let diff = differences(&s, &p);
    assert!(
        diff.is_empty(),
        "the control store's SQLite and PostgreSQL migrations disagree; make the pair in \
         migrations/sqlite and migrations/postgres say the same:\n{}",
        diff.join("\n")
    );
    sqlite.close().await;
    postgres.close().await;
    Ok(())
}

#[test]
fn a_drifted_pair_is_reported_column_by_column() {
    let table = |nullable: bool, unique: bool| Table {
        columns: [Column {
            name: "note".into(),
            kind: "text".into(),
            nullable,
        }]
        .into(),
        indexes: [Index {
            columns: vec!["note".into()],
            unique,
        }]
        .into(),
    };
    let s: Schema = [("jobs".to_string(), table(true, false))].into();
    let p: Schema = [
        ("jobs".to_string(), table(false, true)),
        ("extra".to_string(), Table::default()),
    ]
    .into();
    let diff = differences(&s, &p);
    assert_eq!(diff.len(), 5, "{diff:#?}");
    assert!(
        diff.iter()
            .any(|d| d == "table extra is only in PostgreSQL")
    );
    assert!(
        diff.iter()
            .any(|d| d.contains("SQLite has Column { name: \"note\"")
                && d.contains("nullable: true"))
    );
    assert!(
        diff.iter()
            .any(|d| d.contains("PostgreSQL has index") && d.contains("unique: true"))
    );
}
