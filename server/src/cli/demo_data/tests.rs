//! The demo's own migration — its SQLite source and target, its spec, its
//! live writer — taken through the engine the way the demo's jobs take it:
//! capture, relay at 100%, bulk load and catch-up of every bucket, a full
//! verification and a repair, to 100% while the writer keeps writing. The
//! source is smaller than `tern demo`'s; everything else is the demo's.

use std::sync::Arc;

use sqlx::Executor;
use tern_engine::verify::{self, VerifyOptions};
use tern_engine::{
    CatchUpOptions, Link, RelayOptions, RelayRamp, RunControl, Spec, TransformerRegistry, capture,
    catch_up_bucket, load_bucket, run_relay,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{Size, create_source, pool, spec, start_writer};

const SIZE: Size = Size {
    contacts: 12_000,
    messages: 20_000,
};

/// Rows of the target's `messages` damaged behind Tern's back: more than a
/// thousand, so that repair's key lists span several batches.
const DAMAGED: i64 = 3_000;

/// Verifies `table` in full and repairs it until it is 100% (a row the live
/// writer changes between the read and the re-check may need a second
/// repair, as a user would press Repair again); the first run's report.
async fn verify_to_100(link: &Link, table: &str) -> anyhow::Result<verify::VerifyReport> {
    let control = RunControl::new();
    let first = verify::verify(link, &VerifyOptions::full(table), &control).await?;
    let mut counts = first.counts;
    for _ in 0..3 {
        if counts.mismatched() == 0 {
            break;
        }
        counts = verify::repair(link, &first.run_id, &control).await?.counts;
    }
    anyhow::ensure!(
        counts.mismatched() == 0,
        "{table} stays at {}% after repairs: {counts:?}\n{}",
        counts.accuracy_text(),
        first.tree.render()
    );
    Ok(first)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_demo_migration_verifies_and_repairs_to_100_percent_under_its_live_writer()
-> anyhow::Result<()> {
    // Arrange: the demo's source, target, spec, capture and live writer.
    let dir = std::env::temp_dir().join(format!("tern-demo-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir)?;
    let (source, target) = (dir.join("source.db"), dir.join("target.db"));
    create_source(&source, SIZE).await?;
    let spec_text = spec(&source, &target);
    let parsed = Spec::parse(&spec_text, "messages-demo.toml")?;
    let link = Arc::new(Link::connect(parsed.clone(), &TransformerRegistry::new()).await?);
    capture::install(link.source(), &parsed).await?;
    let stop_writer = CancellationToken::new();
    let writer = start_writer(&source, SIZE, stop_writer.clone());

    // Act: relay every key, load and catch up every bucket.
    let (_ramp, ramp_rx) = watch::channel(RelayRamp::full());
    let mut opts = RelayOptions::new(ramp_rx);
    opts.salt = "messages-demo".into();
    let stop_relay = CancellationToken::new();
    let relay = {
        let link = link.clone();
        let control = RunControl::new().with_cancel(stop_relay.clone());
        tokio::spawn(async move { run_relay(&link, opts, &control).await })
    };
    for table in ["contacts", "messages"] {
        let plan = link.plan_or_resume(table, None).await?;
        for b in &plan.buckets {
            load_bucket(&link, b, &RunControl::new()).await?;
            catch_up_bucket(&link, b, &CatchUpOptions::default(), &RunControl::new()).await?;
        }
    }
    // The demo migration can be switched: both tables map back to the old
    // store, checked against the two databases as the reverse relay checks.
    let reverse = tern_engine::reverse::check(&link).await?;
    assert_eq!(
        reverse,
        [
            ("contacts".to_string(), None),
            ("messages".to_string(), None)
        ],
        "every demo table has a reverse path"
    );
    let damaged = pool(&target).await?;
    damaged
        .execute(
            format!("UPDATE messages SET body = 'damaged' WHERE legacy_id <= {DAMAGED}").as_str(),
        )
        .await?;
    damaged.close().await;
    let contacts = verify_to_100(&link, "contacts").await?;
    let messages = verify_to_100(&link, "messages").await?;
    stop_writer.cancel();
    writer.await?;
    stop_relay.cancel();
    relay.await??;

    // Assert: the values the spec casts (`unread`: a bool in a SQLite
    // integer) compare equal; only the damage (and the odd row the writer
    // changed under the read) differs, and repair brought both tables to 100%.
    let rows =
        |t: &verify::VerifyReport, path: &str| t.tree.children.get(path).map_or(0, |n| n.rows);
    assert!(
        rows(&messages, "unread") < 20,
        "unread differs only where the writer just changed it:\n{}",
        messages.tree.render()
    );
    assert!(
        rows(&messages, "body") >= (DAMAGED as u64) - 50,
        "the damaged rows were found:\n{}",
        messages.tree.render()
    );
    assert!(
        contacts.counts.mismatched() < 20,
        "contacts verify all but the odd row in flight:\n{}",
        contacts.tree.render()
    );
    assert!(
        messages.counts.compared >= SIZE.messages as u64,
        "{:?}",
        messages.counts
    );
    let source_db = pool(&source).await?;
    let live: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE body LIKE 'live message %'")
            .fetch_one(&source_db)
            .await?;
    source_db.close().await;
    assert!(live > 0, "the live writer wrote while the migration ran");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn every_table_of_the_demo_spec_maps_back_to_the_old_store() -> anyhow::Result<()> {
    let text = spec(
        std::path::Path::new("/tmp/s.db"),
        std::path::Path::new("/tmp/t.db"),
    );
    let parsed = Spec::parse(&text, "messages-demo.toml")?;
    for (table, r) in tern_engine::reverse::reversibility(&parsed) {
        let m = r
            .inverse()
            .ok_or_else(|| anyhow::anyhow!("{table}: {}", r.describe()))?;
        assert_eq!(
            m.source_table, table,
            "{table} goes back to its own source table"
        );
        // Upserted by the old table's primary key: an upsert needs a unique
        // constraint, and (member_id, id) is only an index there.
        assert_eq!(m.source_key, ["id"]);
    }
    Ok(())
}
