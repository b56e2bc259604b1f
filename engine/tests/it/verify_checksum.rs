//! The checksum fast path of a full diff, both ways between MariaDB and
//! PostgreSQL: equal data is found equal by checksums alone (the canonical
//! text agrees across the two databases for integers, booleans, text with
//! NULLs, Unicode and padding, timestamps with microseconds and dates), and
//! seeded differences of every kind give exactly the result of the
//! row-by-row path, every mismatch with the same field diffs and rows.

use tern_engine::verify::{self, Mismatch, VerifyOptions, VerifyReport, VerifyStatus};
use tern_engine::{Link, RunControl, TransformerRegistry};
use tern_testkit::{DbKind, TestDb};

use crate::support::{Side, load_all, spec_text};
use crate::verify::{assert_resumed_whole, stopped_and_resumed};

const ROWS: i64 = 600;

fn source_table(kind: DbKind) -> &'static str {
    match kind {
        DbKind::MariaDb => {
            "CREATE TABLE items (id BIGINT PRIMARY KEY, n INT NOT NULL, flag TINYINT(1) NULL, \
             name VARCHAR(50) NULL, code CHAR(5) NULL, at DATETIME(6) NULL, day DATE NULL) \
             DEFAULT CHARSET = utf8mb4"
        }
        _ => {
            "CREATE TABLE items (id BIGINT PRIMARY KEY, n INT NOT NULL, flag BOOLEAN NULL, \
             name VARCHAR(50) NULL, code VARCHAR(5) NULL, at TIMESTAMP NULL, day DATE NULL)"
        }
    }
}

fn row(i: i64) -> String {
    let flag = match i {
        _ if i % 11 == 0 => "NULL",
        _ if i % 3 == 0 => "TRUE",
        _ => "FALSE",
    };
    let name = match i {
        30 => "NULL".to_string(),
        _ if i % 5 == 0 => format!("'café ☕ {i}'"),
        _ => format!("'name {i}'"),
    };
    let at = if i % 13 == 0 {
        "NULL".to_string()
    } else {
        format!("'2020-01-01 00:{:02}:{:02}.123456'", i / 60, i % 60)
    };
    format!(
        "({i}, {}, {flag}, {name}, 'c{}', {at}, '2020-{:02}-{:02}')",
        i * 7,
        i % 100,
        1 + i % 12,
        1 + i % 28
    )
}

/// One difference of each kind in the target: a missing row, an extra row,
/// changed text, NULL vs '', lost microseconds, a flipped flag, a moved
/// date, a trailing space, a changed integer.
fn seed(kind: DbKind) -> String {
    let (trunc, next_day, space) = match kind {
        DbKind::MariaDb => (
            "DATE_FORMAT(at, '%Y-%m-%d %H:%i:%s')",
            "day + INTERVAL 1 DAY",
            "CONCAT(name, ' ')",
        ),
        _ => ("date_trunc('second', at)", "day + 1", "name || ' '"),
    };
    format!(
        "DELETE FROM items WHERE id = 10;
         INSERT INTO items (id, n, _tern_version) VALUES (5000, 1, 1);
         UPDATE items SET name = 'changed' WHERE id = 20;
         UPDATE items SET name = '' WHERE id = 30;
         UPDATE items SET at = {trunc} WHERE id = 40;
         UPDATE items SET flag = NOT flag WHERE id = 62;
         UPDATE items SET day = {next_day} WHERE id = 70;
         UPDATE items SET name = {space} WHERE id = 80;
         UPDATE items SET n = n + 1 WHERE id = 90"
    )
}

async fn run(link: &Link, row_by_row: bool) -> anyhow::Result<VerifyReport> {
    let mut opts = VerifyOptions::full("items");
    opts.row_by_row = row_by_row;
    Ok(verify::verify(link, &opts, &RunControl::new()).await?)
}

/// A run's mismatches without their position, sorted by key.
async fn mismatches(link: &Link, run: &str) -> anyhow::Result<Vec<Mismatch>> {
    let mut ms = verify::list_mismatches(link.target(), run, 0, 10_000, false).await?;
    for m in &mut ms {
        m.ord = 0;
    }
    ms.sort_by(|a, b| a.key_id.cmp(&b.key_id));
    Ok(ms)
}

struct Fixture {
    _dbs: (TestDb, TestDb),
    target: Side,
    link: Link,
}

/// `rows` items in the source, bulk-loaded into the target.
async fn loaded(
    source_kind: DbKind,
    target_kind: DbKind,
    rows: i64,
    buckets: usize,
) -> anyhow::Result<Fixture> {
    let source_db = TestDb::new(source_kind).await?;
    let target_db = TestDb::new(target_kind).await?;
    let source = Side::open(&source_db).await?;
    source.exec(source_table(source_kind)).await?;
    let values: Vec<String> = (1..=rows).map(row).collect();
    for part in values.chunks(500) {
        source
            .exec(&format!("INSERT INTO items VALUES {}", part.join(", ")))
            .await?;
    }
    let body = format!(
        "chunk_rows = 50\n[[tables]]\nname = \"items\"\nkey = [\"id\"]\nbuckets = {buckets}\n\
         [tables.source]\ntable = \"items\"\n[tables.columns]\nid = \"id\"\nn = \"n\"\n\
         flag = \"flag\"\nname = \"name\"\ncode = \"code\"\nat = \"at\"\nday = \"day\"\n"
    );
    let (link, _) = load_all(
        &spec_text(&source_db, &target_db, &body),
        &TransformerRegistry::new(),
    )
    .await?;
    let target = Side::open(&target_db).await?;
    Ok(Fixture {
        _dbs: (source_db, target_db),
        target,
        link,
    })
}

async fn check(source_kind: DbKind, target_kind: DbKind) -> anyhow::Result<()> {
    // Arrange
    let Fixture { _dbs, target, link } = loaded(source_kind, target_kind, ROWS, 3).await?;

    // Act: equal data, then seeded differences by both paths.
    let equal = run(&link, false).await?;
    target.exec(&seed(target_kind)).await?;
    let fast = run(&link, false).await?;
    let slow = run(&link, true).await?;

    // Assert
    assert_eq!(equal.status, VerifyStatus::Completed);
    assert_eq!((equal.counts.compared, equal.counts.matched), (600, 600));
    assert_eq!(
        equal.rows_by_checksum, 600,
        "equal data is equal by checksums in both databases"
    );
    let c = fast.counts;
    assert_eq!(
        (c.compared, c.matched, c.missing, c.extra, c.different),
        (601, 592, 1, 1, 7)
    );
    assert_eq!(fast.counts, slow.counts);
    assert_eq!(slow.rows_by_checksum, 0);
    assert!(
        fast.rows_by_checksum > 0 && fast.rows_by_checksum < 592,
        "only the chunks without differences are skipped: {}",
        fast.rows_by_checksum
    );
    let fast_ms = mismatches(&link, &fast.run_id).await?;
    let slow_ms = mismatches(&link, &slow.run_id).await?;
    assert_eq!(fast_ms.len(), 9);
    assert_eq!(fast_ms, slow_ms, "the same mismatches, diffs and rows");
    assert_eq!(fast.tree.render(), slow.tree.render());
    let paths: Vec<&str> = fast_ms
        .iter()
        .flat_map(|m| m.diffs.iter().map(|d| d.path.as_str()))
        .collect();
    for p in ["name", "at", "flag", "day", "n"] {
        assert!(
            paths.contains(&p),
            "a difference in {p} is found: {paths:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn mariadb_to_postgres_checksums_agree_with_the_row_by_row_diff() -> anyhow::Result<()> {
    check(DbKind::MariaDb, DbKind::Postgres).await
}

#[tokio::test]
async fn postgres_to_mariadb_checksums_agree_with_the_row_by_row_diff() -> anyhow::Result<()> {
    check(DbKind::Postgres, DbKind::MariaDb).await
}

#[tokio::test]
async fn a_stopped_checksum_run_resumes_without_losing_or_double_counting() -> anyhow::Result<()> {
    // Arrange
    let f = loaded(DbKind::MariaDb, DbKind::Postgres, 2000, 1).await?;
    f.target
        .exec("UPDATE items SET n = 0 WHERE id IN (100, 1000, 1900)")
        .await?;

    // Act
    let (stopped, resumed) = stopped_and_resumed(&f.link).await?;

    // Assert
    assert_resumed_whole(&stopped, &resumed);
    assert!(stopped.rows_by_checksum > 0);
    let ms = mismatches(&f.link, &resumed.run_id).await?;
    assert_eq!(ms.len(), 3);
    Ok(())
}
