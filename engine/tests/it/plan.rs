//! Balanced buckets on a real database: equal row counts, not equal widths.

use tern_engine::{Link, Plan, Spec, TransformerRegistry, Value};
use tern_testkit::{DbKind, TestDb};

use crate::support::{Side, spec_text};

#[tokio::test]
async fn buckets_split_a_skewed_key_space_by_row_count() -> anyhow::Result<()> {
    // Arrange: member m owns 400/m + 1 rows, so low members are hot.
    let source_db = TestDb::mariadb().await?;
    let target_db = TestDb::sqlite()?;
    let source = Side::open(&source_db).await?;
    source
        .exec("CREATE TABLE items (member_id BIGINT NOT NULL, id BIGINT NOT NULL, PRIMARY KEY (member_id, id))")
        .await?;
    let mut values = Vec::new();
    for m in 1..=400i64 {
        for i in 0..=(400 / m) {
            values.push(format!("({m}, {i})"));
        }
    }
    let total = values.len() as u64;
    source
        .exec(&format!("INSERT INTO items VALUES {}", values.join(", ")))
        .await?;
    let body = "[[tables]]\nname = \"items\"\nkey = [\"member_id\", \"id\"]\nbuckets = 4\n\
                [tables.source]\ntable = \"items\"\n[tables.columns]\nmember_id = \"member_id\"\nid = \"id\"\n";
    let spec = Spec::parse(&spec_text(&source_db, &target_db, body), "test.toml")?;
    let link = Link::connect(spec, &TransformerRegistry::new()).await?;

    // Act
    let plan = link.plan("items", None).await?;

    // Assert
    assert_eq!(plan.buckets.len(), 4);
    assert_eq!(plan.total_rows(), total);
    let share = total as f64 / 4.0;
    for b in &plan.buckets {
        assert!(
            (b.rows as f64 - share).abs() <= 402.0,
            "bucket {} has {} rows, share {share}",
            b.index,
            b.rows
        );
    }
    // Equal width (members 1..=100 in the first of four) would hold most rows.
    let first_hi = plan.buckets[0].range.hi.clone();
    assert!(
        matches!(first_hi, Some(Value::Int(h)) if h < 10),
        "{first_hi:?}"
    );
    assert!(plan.skew() < 1.6, "skew {}", plan.skew());
    Ok(())
}

/// Plans `items` (made by `create`, holding `ids`) into `buckets` buckets
/// by its key `id`, after the source has taken statistics (so the walk is
/// tried), and checks every bucket's count against the keys it holds.
async fn plan_items_by_key(
    source_db: &TestDb,
    create: &str,
    ids: &[i64],
    buckets: usize,
) -> anyhow::Result<Plan> {
    let target_db = TestDb::sqlite()?;
    let source = Side::open(source_db).await?;
    source.exec(create).await?;
    let rows: Vec<String> = ids.iter().map(|id| format!("({id}, 'n')")).collect();
    source
        .exec(&format!("INSERT INTO items VALUES {}", rows.join(", ")))
        .await?;
    source
        .exec(match source_db.kind {
            DbKind::MariaDb => "ANALYZE TABLE items",
            _ => "ANALYZE items",
        })
        .await?;
    let body = format!(
        "[[tables]]\nname = \"items\"\nkey = [\"id\"]\nbuckets = {buckets}\n\
         [tables.source]\ntable = \"items\"\n[tables.columns]\nid = \"id\"\nnote = \"note\"\n"
    );
    let spec = Spec::parse(&spec_text(source_db, &target_db, &body), "test.toml")?;
    let link = Link::connect(spec, &TransformerRegistry::new()).await?;
    let estimate = link.source().estimated_rows("items").await?;
    assert!(
        estimate.is_some(),
        "the source has no estimate: the walk is not tried"
    );

    let plan = link.plan("items", None).await?;

    // Every key in exactly one bucket, each bucket's count its own.
    assert_eq!(plan.total_rows(), ids.len() as u64);
    for b in &plan.buckets {
        let held = ids
            .iter()
            .filter(|id| b.range.contains(&Value::Int(**id)))
            .count();
        assert_eq!(b.rows, held as u64, "bucket {} {}", b.index, b.range);
    }
    Ok(plan)
}

/// A table bucketed by its own key, with gaps and negative keys: planned in
/// one walk of the key (the database's row estimate sets the walk's step),
/// every bucket's row count exact.
async fn a_table_keyed_by_its_bucket_column(source_db: TestDb) -> anyhow::Result<()> {
    // 3,000 keys, squares and their negatives, so no two are a fixed
    // distance apart.
    let ids: Vec<i64> = (1..=1500i64).flat_map(|i| [i * i, -i * i + 7]).collect();
    let create = "CREATE TABLE items (id BIGINT NOT NULL PRIMARY KEY, note TEXT)";
    let plan = plan_items_by_key(&source_db, create, &ids, 5).await?;
    assert_eq!(plan.buckets.len(), 5);
    assert!(plan.skew() < 1.2, "skew {}", plan.skew());
    Ok(())
}

#[tokio::test]
async fn a_mariadb_table_keyed_by_its_bucket_column_is_planned_with_exact_counts()
-> anyhow::Result<()> {
    a_table_keyed_by_its_bucket_column(TestDb::mariadb().await?).await
}

#[tokio::test]
async fn a_postgres_table_keyed_by_its_bucket_column_is_planned_with_exact_counts()
-> anyhow::Result<()> {
    a_table_keyed_by_its_bucket_column(TestDb::postgres().await?).await
}

#[tokio::test]
async fn a_key_that_is_not_unique_after_all_gets_its_buckets_counted() -> anyhow::Result<()> {
    // The spec calls `id` the key, but the source has no such constraint
    // and 500 is there 301 times.
    let mut ids: Vec<i64> = (1..=1000).collect();
    ids.extend([500; 300]);
    let create = "CREATE TABLE items (id BIGINT NOT NULL, note TEXT, KEY (id))";
    plan_items_by_key(&TestDb::mariadb().await?, create, &ids, 2).await?;
    Ok(())
}
