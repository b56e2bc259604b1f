//! Verification against real MariaDB → PostgreSQL: seeded differences of
//! each kind found, counted and shown exactly; exact accuracy; incremental
//! re-verification reads only changed keys; repair reaches 100%; a stopped
//! run resumes; a stratified sample is deterministic.

use serde_json::json;
use tern_engine::connector::Connector;
use tern_engine::verify::{
    self, Mismatch, MismatchKind, Mode, Scope, VerifyOptions, VerifyReport, VerifyStatus,
};
use tern_engine::{Link, RunControl, Spec, TransformerRegistry, capture};
use tern_testkit::TestDb;

use crate::support::{Side, load_all, spec_text};

struct Fixture {
    _source_db: TestDb,
    _target_db: TestDb,
    source: Side,
    target: Side,
    link: Link,
}

/// `rows` items in MariaDB (item 30 has a NULL name; timestamps carry
/// microseconds; tags is a JSON document with a list), loaded into
/// PostgreSQL by the bulk load. `bucket` is the source bucket column.
async fn loaded(
    rows: i64,
    chunk_rows: usize,
    buckets: usize,
    bucket: &str,
    with_capture: bool,
) -> anyhow::Result<Fixture> {
    let source_db = TestDb::mariadb().await?;
    let target_db = TestDb::postgres().await?;
    let source = Side::open(&source_db).await?;
    source
        .exec(
            "CREATE TABLE items (id BIGINT PRIMARY KEY, member_id BIGINT NOT NULL, name VARCHAR(50) NULL, \
             tags TEXT NOT NULL, at DATETIME(6) NOT NULL, KEY member_id (member_id))",
        )
        .await?;
    let values: Vec<String> = (1..=rows)
        .map(|i| {
            let name = if i == 30 {
                "NULL".to_string()
            } else {
                format!("'name {i}'")
            };
            format!(
                "({i}, {}, {name}, '{{\"list\": [1, 2, 3], \"n\": {i}}}', \
                 TIMESTAMP('2020-01-01') + INTERVAL {i} SECOND + INTERVAL 123456 MICROSECOND)",
                i % 4
            )
        })
        .collect();
    for part in values.chunks(500) {
        source
            .exec(&format!("INSERT INTO items VALUES {}", part.join(", ")))
            .await?;
    }
    let key = if bucket == "id" {
        String::new()
    } else {
        format!("key = [\"{bucket}\", \"id\"]\nbucket = \"{bucket}\"\n")
    };
    let body = format!(
        "chunk_rows = {chunk_rows}\n[[tables]]\nname = \"items\"\nkey = [\"id\"]\nbuckets = {buckets}\n\
         [tables.source]\ntable = \"items\"\n{key}[tables.columns]\nid = \"id\"\nmember_id = \"member_id\"\n\
         name = \"name\"\ntags = {{ from = \"tags\", cast = \"json\" }}\nat = \"at\"\n"
    );
    let text = spec_text(&source_db, &target_db, &body);
    if with_capture {
        let spec = Spec::parse(&text, "test.toml")?;
        let c = Connector::connect(&source_db.url, "source").await?;
        capture::install(&c, &spec).await?;
    }
    let (link, _) = load_all(&text, &TransformerRegistry::new()).await?;
    let target = Side::open(&target_db).await?;
    Ok(Fixture {
        _source_db: source_db,
        _target_db: target_db,
        source,
        target,
        link,
    })
}

/// One difference of each kind, seeded in the target after the load.
async fn seed_each_kind(target: &Side) -> anyhow::Result<()> {
    target
        .exec(
            "DELETE FROM items WHERE id = 10;
             INSERT INTO items (id, member_id, name, tags, at, _tern_version)
               VALUES (5000, 0, 'ghost', '{}', '2020-01-01', 1);
             UPDATE items SET name = 'changed' WHERE id = 20;
             UPDATE items SET name = '' WHERE id = 30;
             UPDATE items SET at = date_trunc('second', at) WHERE id = 40;
             UPDATE items SET tags = '{\"list\": [3, 2, 1], \"n\": 50}' WHERE id = 50",
        )
        .await
}

async fn all_mismatches(link: &Link, run: &str) -> anyhow::Result<Vec<Mismatch>> {
    Ok(verify::list_mismatches(link.target(), run, 0, 10_000, false).await?)
}

fn find(ms: &[Mismatch], id: i64) -> anyhow::Result<&Mismatch> {
    ms.iter()
        .find(|m| m.target_key == [tern_engine::Value::Int(id)])
        .ok_or_else(|| anyhow::anyhow!("no mismatch for key {id}"))
}

#[tokio::test]
async fn each_kind_of_difference_is_found_counted_and_shown_exactly() -> anyhow::Result<()> {
    // Arrange
    let f = loaded(1000, 100, 4, "id", false).await?;
    seed_each_kind(&f.target).await?;

    // Act
    let report = verify::verify(&f.link, &VerifyOptions::full("items"), &RunControl::new()).await?;
    let ms = all_mismatches(&f.link, &report.run_id).await?;

    // Assert
    assert_eq!(report.status, VerifyStatus::Completed);
    let c = report.counts;
    assert_eq!(
        (c.compared, c.matched, c.missing, c.extra, c.different),
        (1001, 995, 1, 1, 4)
    );
    assert_eq!(report.keys_read, 1000);
    assert_eq!(ms.len(), 6, "every mismatched key is stored");

    let missing = find(&ms, 10)?;
    assert_eq!(missing.kind, MismatchKind::Missing);
    assert_eq!(missing.source_key, Some(vec![tern_engine::Value::Int(10)]));
    let expected = missing
        .source_row
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("row"))?;
    assert_eq!(expected["name"], json!("name 10"));
    assert_eq!(missing.target_row, None);

    let extra = find(&ms, 5000)?;
    assert_eq!(extra.kind, MismatchKind::Extra);
    assert_eq!(
        extra.target_row.as_ref().map(|r| r["name"].clone()),
        Some(json!("ghost"))
    );

    let changed = find(&ms, 20)?;
    assert_eq!(changed.kind, MismatchKind::Different);
    assert_eq!(changed.diffs.len(), 1);
    assert_eq!(changed.diffs[0].path, "name");
    assert_eq!(changed.diffs[0].source, json!("name 20"));
    assert_eq!(changed.diffs[0].target, json!("changed"));

    let empty = find(&ms, 30)?;
    assert_eq!(empty.diffs[0].path, "name");
    assert_eq!(empty.diffs[0].source, json!(null));
    assert_eq!(empty.diffs[0].target, json!(""));
    assert_eq!(empty.diffs[0].note.as_deref(), Some("null vs empty string"));

    let precision = find(&ms, 40)?;
    assert_eq!(precision.diffs[0].path, "at");
    assert_eq!(
        precision.diffs[0].source,
        json!("2020-01-01 00:00:40.123456")
    );
    assert_eq!(
        precision.diffs[0].target,
        json!("2020-01-01 00:00:40.000000")
    );
    assert_eq!(
        precision.diffs[0].note.as_deref(),
        Some("timestamp precision")
    );

    let reordered = find(&ms, 50)?;
    assert_eq!(reordered.diffs.len(), 1);
    assert_eq!(reordered.diffs[0].path, "tags.list");
    assert_eq!(reordered.diffs[0].source, json!([1, 2, 3]));
    assert_eq!(reordered.diffs[0].target, json!([3, 2, 1]));
    assert_eq!(reordered.diffs[0].note.as_deref(), Some("list order"));
    // Full rows on both sides.
    let t = reordered
        .target_row
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("row"))?;
    assert_eq!(t["tags"], json!({"list": [3, 2, 1], "n": 50}));

    let tree = &report.tree;
    assert_eq!(tree.children["name"].rows, 2);
    assert_eq!(tree.children["name"].examples, ["(20)", "(30)"]);
    assert_eq!(tree.children["at"].rows, 1);
    assert_eq!(tree.children["tags"].children["list"].rows, 1);
    assert_eq!(tree.children["(missing in target)"].examples, ["(10)"]);
    assert_eq!(tree.children["(extra in target)"].examples, ["(5000)"]);
    let text = tree.render();
    assert!(text.contains("name  2 rows  e.g. (20), (30)"), "{text}");
    assert!(
        text.contains("tags  1 row  e.g. (50)\n  list  1 row  e.g. (50)"),
        "{text}"
    );
    Ok(())
}

#[tokio::test]
async fn accuracy_is_exact_when_the_target_key_is_not_the_read_order() -> anyhow::Result<()> {
    // Arrange: buckets by member_id, so the target is looked up by key.
    let f = loaded(1000, 100, 3, "member_id", false).await?;
    f.target
        .exec("UPDATE items SET name = 'x' WHERE id IN (7, 507, 999)")
        .await?;

    // Act
    let report = verify::verify(&f.link, &VerifyOptions::full("items"), &RunControl::new()).await?;

    // Assert
    assert_eq!(report.counts.compared, 1000);
    assert_eq!(report.counts.matched, 997);
    assert_eq!(report.counts.different, 3);
    assert_eq!(report.counts.accuracy(), 99.7);
    assert_eq!(report.counts.accuracy_text(), "99.7");
    let ms = all_mismatches(&f.link, &report.run_id).await?;
    let mut ids: Vec<_> = ms.iter().map(|m| m.key_text()).collect();
    ids.sort();
    assert_eq!(ids, ["(507)", "(7)", "(999)"]);
    Ok(())
}

#[tokio::test]
async fn one_bucket_is_verified_alone() -> anyhow::Result<()> {
    let f = loaded(1000, 100, 4, "id", false).await?;
    let plan = f
        .link
        .stored_plan("items")
        .await?
        .ok_or_else(|| anyhow::anyhow!("plan"))?;
    let b = plan.buckets[2].clone();
    let mut opts = VerifyOptions::full("items");
    opts.scope = Scope::Bucket(2);
    let report = verify::verify(&f.link, &opts, &RunControl::new()).await?;
    assert_eq!(report.counts.compared, b.rows);
    assert_eq!(report.counts.matched, b.rows);
    let mut bad = VerifyOptions::full("items");
    bad.scope = Scope::Bucket(9);
    let err = verify::verify(&f.link, &bad, &RunControl::new())
        .await
        .expect_err("no bucket 9");
    assert!(
        err.to_string()
            .contains("no bucket 9: the plan has buckets 0..3"),
        "{err}"
    );
    Ok(())
}

#[tokio::test]
async fn incremental_verification_reads_only_the_changed_keys() -> anyhow::Result<()> {
    // Arrange: capture installed before the load; a full run sets the position.
    let f = loaded(1000, 100, 2, "id", true).await?;
    let full = verify::verify(&f.link, &VerifyOptions::full("items"), &RunControl::new()).await?;
    assert_eq!(full.counts.accuracy(), 100.0);
    assert!(full.position.is_some());
    // Five source changes the target never saw (no relay runs here).
    f.source
        .exec("UPDATE items SET name = 'renamed' WHERE id IN (3, 33, 333, 666, 999)")
        .await?;

    // Act
    let mut opts = VerifyOptions::full("items");
    opts.mode = Mode::SinceLast;
    let inc = verify::verify(&f.link, &opts, &RunControl::new()).await?;
    let again = verify::verify(&f.link, &opts, &RunControl::new()).await?;

    // Assert
    assert_eq!(inc.keys_read, 5, "only the changed keys are read");
    assert_eq!(inc.counts.compared, 5);
    assert_eq!(inc.counts.different, 5);
    assert_eq!(again.keys_read, 0, "nothing changed since the last run");
    Ok(())
}

#[tokio::test]
async fn repair_brings_accuracy_to_100_percent() -> anyhow::Result<()> {
    // Arrange
    let f = loaded(1000, 100, 4, "id", false).await?;
    seed_each_kind(&f.target).await?;
    let run = verify::verify(&f.link, &VerifyOptions::full("items"), &RunControl::new()).await?;
    assert_eq!(run.counts.mismatched(), 6);

    // Act
    let repaired = verify::repair(&f.link, &run.run_id, &RunControl::new()).await?;
    let after = verify::verify(&f.link, &VerifyOptions::full("items"), &RunControl::new()).await?;

    // Assert
    assert_eq!(repaired.mismatches, 6);
    assert_eq!(repaired.resolved, 6);
    assert_eq!(repaired.still_open, 0);
    assert_eq!(repaired.keys_deleted, 1, "the extra row is deleted");
    assert_eq!(repaired.counts.accuracy(), 100.0);
    assert_eq!(repaired.counts.compared, 1000);
    let stored = verify::load_run(f.link.target(), &run.run_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("run"))?;
    assert_eq!(stored.counts.accuracy(), 100.0);
    assert!(
        verify::mismatch_tree(f.link.target(), &run.run_id)
            .await?
            .is_empty()
    );
    assert_eq!(after.counts.compared, 1000);
    assert_eq!(after.counts.matched, 1000);
    Ok(())
}

/// A full run of `items` stopped once 500 rows are done (at 20,000 rows/s),
/// then the same run resumed to its end: both reports.
pub async fn stopped_and_resumed(link: &Link) -> anyhow::Result<(VerifyReport, VerifyReport)> {
    let first = VerifyOptions::full("items");
    let first_control = RunControl::new().with_rate(Some(20_000));
    let stop = first_control.cancel.clone();
    let first_control = first_control.on_progress(move |p| {
        if p.done >= 500 {
            stop.cancel();
        }
    });
    let stopped = verify::verify(link, &first, &first_control).await?;
    let mut again = VerifyOptions::full("items");
    again.resume = Some(stopped.run_id.clone());
    let resumed = verify::verify(link, &again, &RunControl::new()).await?;
    Ok((stopped, resumed))
}

/// The first run of [`stopped_and_resumed`] stopped early; the resumed one
/// compared each of 2,000 rows once and found the 3 changed ones.
pub fn assert_resumed_whole(stopped: &VerifyReport, resumed: &VerifyReport) {
    assert_eq!(stopped.status, VerifyStatus::Cancelled);
    assert!(stopped.counts.compared < 2000, "{:?}", stopped.counts);
    assert_eq!(resumed.status, VerifyStatus::Completed);
    assert_eq!(resumed.counts.compared, 2000);
    assert_eq!(resumed.counts.different, 3);
    assert_eq!(
        stopped.keys_read + resumed.keys_read,
        2000,
        "no chunk read twice"
    );
}

#[tokio::test]
async fn a_stopped_run_resumes_without_losing_or_double_counting() -> anyhow::Result<()> {
    // Arrange
    let f = loaded(2000, 50, 1, "id", false).await?;
    f.target
        .exec("UPDATE items SET name = 'x' WHERE id IN (100, 1000, 1900)")
        .await?;

    // Act
    let (stopped, resumed) = stopped_and_resumed(&f.link).await?;

    // Assert
    assert_resumed_whole(&stopped, &resumed);
    assert_eq!(resumed.run_id, stopped.run_id);
    assert_eq!(all_mismatches(&f.link, &resumed.run_id).await?.len(), 3);
    Ok(())
}

#[tokio::test]
async fn a_stratified_sample_is_deterministic_and_counts_each_stratum() -> anyhow::Result<()> {
    // Arrange: every row of member 2 differs.
    let f = loaded(1000, 100, 2, "id", false).await?;
    f.target
        .exec("UPDATE items SET name = 'x' WHERE member_id = 2")
        .await?;
    let mut opts = VerifyOptions::full("items");
    opts.mode = Mode::Sample {
        per_stratum: 10,
        strata: "member_id".into(),
    };

    // Act
    let one = verify::verify(&f.link, &opts, &RunControl::new()).await?;
    let two = verify::verify(&f.link, &opts, &RunControl::new()).await?;

    // Assert
    assert_eq!(one.keys_read, 40);
    let strata: Vec<(String, u64, u64)> = one
        .strata
        .iter()
        .map(|s| (s.value.clone(), s.counts.compared, s.counts.different))
        .collect();
    assert_eq!(
        strata,
        [
            ("0".to_string(), 10, 0),
            ("1".to_string(), 10, 0),
            ("2".to_string(), 10, 10),
            ("3".to_string(), 10, 0)
        ]
    );
    let keys = |ms: Vec<Mismatch>| {
        let mut k: Vec<String> = ms.iter().map(|m| m.key_text()).collect();
        k.sort();
        k
    };
    assert_eq!(
        keys(all_mismatches(&f.link, &one.run_id).await?),
        keys(all_mismatches(&f.link, &two.run_id).await?)
    );
    let mut bad = opts.clone();
    bad.mode = Mode::Sample {
        per_stratum: 10,
        strata: "region".into(),
    };
    let err = verify::verify(&f.link, &bad, &RunControl::new())
        .await
        .expect_err("no column");
    assert!(err.to_string().contains("no column `region`"), "{err}");
    Ok(())
}

#[tokio::test]
async fn a_text_key_sorted_by_two_collations_is_not_reported_missing_and_extra()
-> anyhow::Result<()> {
    // Arrange: MariaDB sorts these keys a, B, c, D, é, _x (case-insensitive);
    // PostgreSQL (C.UTF-8 here) B, D, _x, a, c, é. Chunks of two rows cut
    // the two orders at different places.
    let source_db = TestDb::mariadb().await?;
    let target_db = TestDb::postgres().await?;
    let source = Side::open(&source_db).await?;
    source
        .exec(
            "CREATE TABLE tags (code VARCHAR(20) PRIMARY KEY, n INT NOT NULL) DEFAULT CHARSET = utf8mb4;
             INSERT INTO tags VALUES ('a', 1), ('B', 2), ('c', 3), ('D', 4), ('_x', 5), ('é', 6), ('f', 7), ('G', 8)",
        )
        .await?;
    let body = "chunk_rows = 2\n[[tables]]\nname = \"tags\"\nkey = [\"code\"]\nbuckets = 1\n\
         [tables.source]\ntable = \"tags\"\n[tables.columns]\ncode = \"code\"\nn = \"n\"\n";
    let (link, _) = load_all(
        &spec_text(&source_db, &target_db, body),
        &TransformerRegistry::new(),
    )
    .await?;
    let target = Side::open(&target_db).await?;
    target
        .exec("UPDATE tags SET n = 30 WHERE code = 'c'")
        .await?;

    // Act
    let report = verify::verify(&link, &VerifyOptions::full("tags"), &RunControl::new()).await?;

    // Assert
    let c = report.counts;
    assert_eq!(
        (c.compared, c.matched, c.missing, c.extra, c.different),
        (8, 7, 0, 0, 1),
        "only the changed row differs"
    );
    let ms = all_mismatches(&link, &report.run_id).await?;
    assert_eq!(ms.len(), 1);
    assert_eq!(ms[0].diffs[0].path, "n");
    Ok(())
}
