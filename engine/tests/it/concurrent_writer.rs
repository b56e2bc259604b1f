//! A concurrent writer (standing in for the dual-write relay) upserts target
//! rows with newer versions while the bulk load runs: the load must not
//! overwrite any of them, whether the load had already copied the row or
//! reached it only later.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rand::Rng;
use tern_engine::{Link, RunControl, Spec, TransformerRegistry, load_bucket};
use tern_testkit::TestDb;

use crate::support::{Side, spec_text};

const ROWS: i64 = 3000;

#[tokio::test]
async fn newer_writes_made_during_the_load_are_never_overwritten() -> anyhow::Result<()> {
    // Arrange
    let source_db = TestDb::postgres().await?;
    let target_db = TestDb::postgres().await?;
    let source = Side::open(&source_db).await?;
    source
        .exec(&format!(
            "CREATE TABLE items (id BIGINT PRIMARY KEY, member_id BIGINT NOT NULL, body TEXT NOT NULL);
             INSERT INTO items SELECT g, g % 50, 'source ' || g FROM generate_series(1, {ROWS}) g"
        ))
        .await?;
    let body = "chunk_rows = 100\n[[tables]]\nname = \"items\"\nkey = [\"id\"]\nbuckets = 1\n\
                [tables.source]\ntable = \"items\"\n[tables.columns]\nid = \"id\"\nmember_id = \"member_id\"\nbody = \"body\"\n";
    let spec = Spec::parse(&spec_text(&source_db, &target_db, body), "test.toml")?;
    let link = Link::connect(spec, &TransformerRegistry::new()).await?;
    let plan = link.plan_or_resume("items", None).await?;
    let target = sqlx::PgPool::connect(&target_db.url).await?;
    // Newer than any chunk the load will read: the relay saw later state.
    let relay_version: i64 = sqlx::query_scalar(
        "SELECT (extract(epoch from clock_timestamp()) * 1000000)::bigint + 3600000000",
    )
    .fetch_one(source.pg()?)
    .await?;
    let running = Arc::new(AtomicBool::new(true));
    let writer = {
        let running = running.clone();
        let target = target.clone();
        tokio::spawn(async move {
            let mut written = BTreeMap::new();
            let mut n = 0i64;
            // First rows the load reaches last, then random ones while it runs.
            let mut next = ROWS;
            while running.load(Ordering::Relaxed) || n < 100 {
                let id = if next > ROWS - 50 {
                    next -= 1;
                    next + 1
                } else {
                    rand::thread_rng().gen_range(1..=ROWS)
                };
                n += 1;
                let text = format!("relay {id} #{n}");
                sqlx::query(
                    "INSERT INTO items (id, member_id, body, _tern_version) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body, _tern_version = EXCLUDED._tern_version",
                )
                .bind(id)
                .bind(id % 50)
                .bind(&text)
                .bind(relay_version + n)
                .execute(&target)
                .await?;
                written.insert(id, text);
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
            anyhow::Ok(written)
        })
    };

    // Act
    let control = RunControl::new().with_rate(Some(3000));
    let report = load_bucket(&link, &plan.buckets[0], &control).await?;
    running.store(false, Ordering::Relaxed);
    let written = writer.await??;

    // Assert
    assert_eq!(report.rows_read, ROWS as u64);
    assert!(
        written.len() >= 60,
        "the writer ran during the load ({} rows)",
        written.len()
    );
    let rows: Vec<(i64, String)> = sqlx::query_as("SELECT id, body FROM items ORDER BY id")
        .fetch_all(&target)
        .await?;
    assert_eq!(rows.len(), ROWS as usize);
    for (id, body) in rows {
        match written.get(&id) {
            Some(relay) => assert_eq!(
                &body, relay,
                "row {id} written by the relay was overwritten"
            ),
            None => assert_eq!(body, format!("source {id}")),
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_row_committed_under_a_direct_copy_sends_the_chunk_through_the_guarded_upsert()
-> anyhow::Result<()> {
    // Arrange: a relay transaction holds a newer row 50, not yet committed,
    // so the load's range check finds the range empty and COPYs directly.
    let source_db = TestDb::postgres().await?;
    let target_db = TestDb::postgres().await?;
    let source = Side::open(&source_db).await?;
    source
        .exec("CREATE TABLE items (id BIGINT PRIMARY KEY, member_id BIGINT NOT NULL, body TEXT NOT NULL);
               INSERT INTO items SELECT g, g % 5, 'source ' || g FROM generate_series(1, 100) g")
        .await?;
    let body = "chunk_rows = 1000\n[[tables]]\nname = \"items\"\nkey = [\"id\"]\nbuckets = 1\n\
                [tables.source]\ntable = \"items\"\n[tables.columns]\nid = \"id\"\nmember_id = \"member_id\"\nbody = \"body\"\n";
    let spec = Spec::parse(&spec_text(&source_db, &target_db, body), "test.toml")?;
    let link = Arc::new(Link::connect(spec, &TransformerRegistry::new()).await?);
    let bucket = link.plan_or_resume("items", None).await?.buckets[0].clone();
    let target = sqlx::PgPool::connect(&target_db.url).await?;
    let mut relay = target.begin().await?;
    sqlx::query("INSERT INTO items (id, member_id, body, _tern_version) VALUES (50, 0, 'relay', 9000000000000000)")
        .execute(&mut *relay)
        .await?;

    // Act
    let load = {
        let link = link.clone();
        tokio::spawn(async move { load_bucket(&link, &bucket, &RunControl::new()).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let blocked = !load.is_finished();
    relay.commit().await?;
    let report = load.await??;

    // Assert
    assert!(blocked, "the load's COPY waited for the relay's row");
    assert_eq!(report.rows_read, 100);
    let rows: Vec<(i64, String)> = sqlx::query_as("SELECT id, body FROM items ORDER BY id")
        .fetch_all(&target)
        .await?;
    assert_eq!(rows.len(), 100);
    for (id, body) in rows {
        let want = if id == 50 {
            "relay".to_string()
        } else {
            format!("source {id}")
        };
        assert_eq!(body, want);
    }
    Ok(())
}
