//! How fast the reverse relay applies a backlog (run by hand:
//! `cargo nextest run -p tern-engine --test it reverse_rate --run-ignored only`).
//! MariaDB source, PostgreSQL target: every bucket switched, 20,000 updates
//! and 2,000 deletes made in the new store, then the reverse relay from the
//! position before them to the head; both stores are compared afterwards.

use std::time::Instant;

use tern_engine::reverse::{self, SwitchedBuckets};
use tern_engine::{ReverseOptions, RunControl, Side as EngineSide, run_reverse_relay};
use tern_testkit::{DbKind, TestDb};
use tokio::sync::watch;

use crate::support::{Side, connect_captured, load_table, spec_text};

const ROWS: i64 = 20_000;

#[tokio::test]
#[ignore = "a measurement; run by hand"]
async fn reverse_relay_rate_mariadb_from_postgres() -> anyhow::Result<()> {
    let source_db = TestDb::new(DbKind::MariaDb).await?;
    let target_db = TestDb::new(DbKind::Postgres).await?;
    let source = Side::open(&source_db).await?;
    source
        .exec("CREATE TABLE items (id BIGINT PRIMARY KEY, member_id BIGINT NOT NULL, body VARCHAR(200) NOT NULL)")
        .await?;
    source
        .exec(&format!(
            "INSERT INTO items SELECT seq, seq % 97, CONCAT('body ', seq) FROM seq_1_to_{ROWS}"
        ))
        .await?;
    let body = "[[tables]]\nname = \"items\"\nkey = [\"id\"]\nbuckets = 4\n\
                [tables.source]\ntable = \"items\"\nbucket = \"member_id\"\n\
                [tables.columns]\nid = \"id\"\nmember = \"member_id\"\ntext = \"body\"\n";
    let (link, _, _) = connect_captured(&spec_text(&source_db, &target_db, body)).await?;
    let plan = load_table(&link, "items").await?;
    reverse::install_capture(&link).await?;
    let start = reverse::head(&link, EngineSide::Target).await?;
    let target = Side::open(&target_db).await?;
    target
        .exec("UPDATE items SET text = 'changed ' || id; DELETE FROM items WHERE id % 10 = 0")
        .await?;

    let (_tx, rx) = watch::channel(SwitchedBuckets::of("items", 0..plan.buckets.len()));
    let mut opts = ReverseOptions::new(rx);
    opts.start = start;
    opts.stop_at_head = true;
    let t = Instant::now();
    let s = run_reverse_relay(&link, opts, &RunControl::new()).await?;
    let secs = t.elapsed().as_secs_f64();

    let changed = source
        .strings("SELECT COUNT(*) FROM items WHERE body = CONCAT('changed ', id)")
        .await;
    let changed: i64 = match changed {
        Ok(v) => v.first().map_or(Ok(0), |s| s.parse())?,
        Err(_) => {
            source
                .count("items WHERE body = CONCAT('changed ', id)")
                .await?
        }
    };
    assert_eq!(source.count("items").await?, ROWS - ROWS / 10);
    assert_eq!(changed, ROWS - ROWS / 10);
    println!(
        "reverse_relay changes={} rows_written={} rows_deleted={} seconds={secs:.2} changes_per_s={:.0}",
        s.changes,
        s.applied.rows_written,
        s.applied.rows_deleted,
        s.changes as f64 / secs
    );
    Ok(())
}
