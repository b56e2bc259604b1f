//! Group checksums for transformed keys (`engine/src/verify/grouped.rs`),
//! MariaDB → PostgreSQL with a UUIDv5 target key: changed fields, deleted
//! rows and orphans seeded in the target are found, counted and stored with
//! their fields exactly as the row-by-row diff finds them, while most rows
//! are found equal by group sums without being read. The target sums each
//! chunk's whole span of source keys, so an orphan inside a range (its record
//! deleted), past the last key or before the first (a negative key) is found
//! by the chunks themselves.

use std::collections::BTreeSet;

use tern_engine::verify::{self, MismatchKind, VerifyOptions, VerifyReport};
use tern_engine::{Link, RunControl, TransformerRegistry};
use tern_testkit::TestDb;

use crate::support::{Side, load_all, spec_text};

/// The spec of `items` keyed by a UUIDv5 of its source id, with these
/// further columns (`name = "source column"` lines).
fn spec(columns: &str) -> String {
    format!(
        r#"
chunk_rows = 100

[[tables]]
name = "items"
key = ["item_id"]
buckets = 2
[tables.source]
table = "items"
key = ["id"]
[tables.columns]
item_id = {{ uuid5 = ["id"], namespace = "items" }}
{columns}"#
    )
}

const ROWS: i64 = 600;

async fn mismatches(link: &Link, r: &VerifyReport) -> anyhow::Result<BTreeSet<String>> {
    let listed = verify::list_mismatches(link.target(), &r.run_id, 0, 10_000, false).await?;
    Ok(listed
        .iter()
        .map(|m| {
            let fields: Vec<&str> = m.diffs.iter().map(|d| d.path.as_str()).collect();
            format!("{:?} {:?} {}", m.kind, m.source_key, fields.join(","))
        })
        .collect())
}

#[tokio::test]
async fn group_sums_find_what_the_row_by_row_diff_finds() -> anyhow::Result<()> {
    // Arrange
    let source_db = TestDb::mariadb().await?;
    let target_db = TestDb::postgres().await?;
    let source = Side::open(&source_db).await?;
    source
        .exec(
            "CREATE TABLE items (id BIGINT PRIMARY KEY, member_id BIGINT NULL, body VARCHAR(80) NOT NULL,
               flag TINYINT(1) NOT NULL, at DATETIME(6) NOT NULL)",
        )
        .await?;
    let rows: Vec<String> = (1..=ROWS)
        .map(|i| {
            let member = if i % 11 == 0 { "NULL".to_string() } else { (i % 7).to_string() };
            format!(
                "({i}, {member}, 'body {i} é|~', {}, TIMESTAMP('2020-01-01') + INTERVAL {i} SECOND + INTERVAL 5 MICROSECOND)",
                i % 2
            )
        })
        .collect();
    source
        .exec(&format!("INSERT INTO items VALUES {}", rows.join(", ")))
        .await?;
    let (link, _) = load_all(
        &spec_text(
            &source_db,
            &target_db,
            &spec("member_id = \"member_id\"\nbody = \"body\"\nflag = \"flag\"\nat = \"at\"\n"),
        ),
        &TransformerRegistry::new(),
    )
    .await?;
    let target = Side::open(&target_db).await?;
    target
        .exec(
            "UPDATE items SET body = body || ' edited' WHERE _tern_source_key IN ('5', '250', '599');
             UPDATE items SET flag = NOT flag WHERE _tern_source_key = '17';
             UPDATE items SET at = at + interval '1 microsecond' WHERE _tern_source_key = '333';
             UPDATE items SET member_id = NULL WHERE _tern_source_key = '41';
             DELETE FROM items WHERE _tern_source_key IN ('77', '78', '400');
             INSERT INTO items (item_id, member_id, body, flag, at, _tern_version, _tern_source_key)
               VALUES (gen_random_uuid(), 1, 'orphan', false, '2020-01-01', 1, '100001'),
                      (gen_random_uuid(), 1, 'orphan', true, '2020-01-01', 1, '100002'),
                      (gen_random_uuid(), 1, 'orphan', true, '2020-01-01', 1, '-5')",
        )
        .await?;
    // A record deleted behind Tern's back: its target row is an orphan in
    // the middle of a chunk's range of source keys.
    source.exec("DELETE FROM items WHERE id = 300").await?;

    // Act
    let grouped = verify::verify(&link, &VerifyOptions::full("items"), &RunControl::new()).await?;
    let mut row_by_row = VerifyOptions::full("items");
    row_by_row.row_by_row = true;
    let every_row = verify::verify(&link, &row_by_row, &RunControl::new()).await?;

    // Assert
    let c = grouped.counts;
    assert_eq!(
        (c.compared, c.matched, c.missing, c.extra, c.different),
        (ROWS as u64 + 3, ROWS as u64 - 10, 3, 4, 6)
    );
    assert_eq!(grouped.counts, every_row.counts);
    assert_eq!(grouped.row_by_row_reason, None);
    assert!(
        grouped.rows_by_checksum > 300 && grouped.rows_by_checksum <= c.matched,
        "{} rows equal by group sums",
        grouped.rows_by_checksum
    );
    assert_eq!(every_row.rows_by_checksum, 0);
    let found = mismatches(&link, &grouped).await?;
    assert_eq!(found, mismatches(&link, &every_row).await?);
    assert!(found.contains("Different Some([Int(5)]) body"), "{found:?}");
    assert!(found.contains("Different Some([Int(333)]) at"), "{found:?}");
    assert!(
        found.contains("Different Some([Int(41)]) member_id"),
        "{found:?}"
    );
    assert!(found.contains("Missing Some([Int(77)]) "), "{found:?}");
    assert!(found.contains("Extra Some([Int(100001)]) "), "{found:?}");
    assert!(found.contains("Extra Some([Int(300)]) "), "{found:?}");
    assert!(found.contains("Extra Some([Int(-5)]) "), "{found:?}");
    let listed = verify::list_mismatches(link.target(), &grouped.run_id, 0, 100, false).await?;
    assert!(
        listed
            .iter()
            .filter(|m| m.kind == MismatchKind::Different)
            .all(|m| m.source_row.is_some() && m.target_row.is_some()),
        "every mismatch is stored with both rows"
    );
    Ok(())
}

/// A table the group sums cannot check (a float column has no canonical
/// text in both places) is compared row by row, and its orphans are still
/// found: by the orphan pass, since no chunk sums a span of source keys.
#[tokio::test]
async fn orphans_of_a_table_read_row_by_row_are_still_found() -> anyhow::Result<()> {
    // Arrange
    let source_db = TestDb::mariadb().await?;
    let target_db = TestDb::postgres().await?;
    let source = Side::open(&source_db).await?;
    source
        .exec("CREATE TABLE items (id BIGINT PRIMARY KEY, price DOUBLE NOT NULL)")
        .await?;
    let rows: Vec<String> = (1..=300).map(|i| format!("({i}, {i}.25)")).collect();
    source
        .exec(&format!("INSERT INTO items VALUES {}", rows.join(", ")))
        .await?;
    let (link, _) = load_all(
        &spec_text(&source_db, &target_db, &spec("price = \"price\"\n")),
        &TransformerRegistry::new(),
    )
    .await?;
    // Deleted behind Tern's back: its target row is an orphan.
    source.exec("DELETE FROM items WHERE id = 150").await?;

    // Act
    let r = verify::verify(&link, &VerifyOptions::full("items"), &RunControl::new()).await?;

    // Assert
    assert!(r.row_by_row_reason.is_some(), "{:?}", r.row_by_row_reason);
    let c = r.counts;
    assert_eq!((c.compared, c.matched, c.extra), (300, 299, 1));
    let found = mismatches(&link, &r).await?;
    assert!(found.contains("Extra Some([Int(150)]) "), "{found:?}");
    Ok(())
}
