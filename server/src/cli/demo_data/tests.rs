//! The demo's own migration — its SQLite source and target, its spec, its
//! live writer — taken through the engine the way the demo's jobs take it:
//! capture, relay at 100%, bulk load and catch-up of every bucket, a full
//! verification and a repair, to 100% while the writer keeps writing. The
//! source is smaller than `tern demo`'s; everything else is the demo's.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use sqlx::Executor;
use tern_control::switch::{BucketRoute, Primary, TableRoute, WriteRouting};
use tern_engine::reverse::{self, Direction, Drain, ReverseOptions, SwitchedBuckets};
use tern_engine::verify::{self, VerifyOptions};
use tern_engine::{
    CatchUpOptions, Link, Plan, RelayOptions, RelayRamp, RunControl, Side, Spec,
    TransformerRegistry, Value, capture, catch_up_bucket, load_bucket, run_relay,
    run_reverse_relay,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::writer::WriteRouter;
use super::{Routed, Size, create_source, pool, spec, start_writer};

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
    let writer = start_writer(&source, SIZE, stop_writer.clone(), None);

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

/// The write routing a switch changes, as the control store would answer
/// it; and the newest version the writer said it applied.
struct TestRouter {
    routing: std::sync::Mutex<WriteRouting>,
    applied: AtomicI64,
}

#[async_trait]
impl WriteRouter for TestRouter {
    async fn routing(&self) -> anyhow::Result<WriteRouting> {
        Ok(self
            .routing
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .clone())
    }

    async fn applied(&self, version: i64) -> anyhow::Result<()> {
        self.applied.fetch_max(version, Ordering::SeqCst);
        Ok(())
    }
}

impl TestRouter {
    fn of(plans: &[Plan]) -> TestRouter {
        let bound = |v: &Option<Value>| match v {
            Some(Value::Int(i)) => Some(i.to_string()),
            Some(other) => Some(format!("{other:?}")),
            None => None,
        };
        let tables = plans
            .iter()
            .map(|p| TableRoute {
                table: p.table.clone(),
                key_kind: "integer".into(),
                buckets: p
                    .buckets
                    .iter()
                    .map(|b| BucketRoute {
                        index: b.index as i64,
                        idx: b.index as i64,
                        lo: bound(&b.range.lo),
                        hi: bound(&b.range.hi),
                        primary: Primary::Old,
                    })
                    .collect(),
            })
            .collect();
        TestRouter {
            routing: std::sync::Mutex::new(WriteRouting {
                migration: "messages-demo".into(),
                version: 1,
                tables,
            }),
            applied: AtomicI64::new(0),
        }
    }

    /// Sets the primary of `buckets` (of every table); answers the new version.
    fn set(&self, buckets: &[usize], primary: Primary) -> anyhow::Result<i64> {
        let mut r = self
            .routing
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?;
        r.version += 1;
        for t in &mut r.tables {
            for b in &mut t.buckets {
                if buckets.contains(&(b.index as usize)) {
                    b.primary = primary;
                }
            }
        }
        Ok(r.version)
    }
}

/// Drains the relay `name` of `direction` through its changelog's head now.
async fn drain(link: &Link, direction: Direction, side: Side, name: &str) -> anyhow::Result<()> {
    let head = reverse::head(link, side)
        .await?
        .context("capture installed")?;
    let drained = reverse::drain(link, direction, name, &head, Duration::from_secs(60)).await?;
    anyhow::ensure!(
        matches!(drained, Drain::Reached { .. }),
        "{direction:?} relay did not drain: {drained:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_demo_writer_writes_switched_keys_to_the_new_store_and_both_stores_agree()
-> anyhow::Result<()> {
    // Arrange: the demo's migration loaded and caught up, capture on both
    // stores, the forward relay (switched buckets skipped) and the reverse
    // relay running, and the writer following a routing.
    let size = Size {
        contacts: 3_000,
        messages: 5_000,
    };
    let dir = std::env::temp_dir().join(format!("tern-demo-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir)?;
    let (source, target) = (dir.join("source.db"), dir.join("target.db"));
    create_source(&source, size).await?;
    let parsed = Spec::parse(&spec(&source, &target), "messages-demo.toml")?;
    let link = Arc::new(Link::connect(parsed.clone(), &TransformerRegistry::new()).await?);
    capture::install(link.source(), &parsed).await?;
    let (switched_tx, switched_rx) = tokio::sync::watch::channel(SwitchedBuckets::none());
    let mut fwd = RelayOptions::fixed(RelayRamp::full());
    fwd.switched = Some(switched_rx.clone());
    let fwd_name = fwd.name.clone();
    let stop_relays = tokio_util::sync::CancellationToken::new();
    let forward = {
        let (link, control) = (
            link.clone(),
            RunControl::new().with_cancel(stop_relays.clone()),
        );
        tokio::spawn(async move { run_relay(&link, fwd, &control).await })
    };
    let mut plans = Vec::new();
    for table in ["contacts", "messages"] {
        let plan = link.plan_or_resume(table, None).await?;
        for b in &plan.buckets {
            load_bucket(&link, b, &RunControl::new()).await?;
            catch_up_bucket(&link, b, &CatchUpOptions::default(), &RunControl::new()).await?;
        }
        plans.push(plan);
    }
    reverse::install_capture(&link).await?;
    let mut rev = ReverseOptions::new(switched_rx);
    let rev_name = rev.name.clone();
    let (observed_tx, mut observed_rx) = tokio::sync::watch::channel(SwitchedBuckets::none());
    rev.observed = Some(Arc::new(observed_tx));
    rev.start = reverse::head(&link, Side::Target).await?;
    let backward = {
        let (link, control) = (
            link.clone(),
            RunControl::new().with_cancel(stop_relays.clone()),
        );
        tokio::spawn(async move { run_reverse_relay(&link, rev, &control).await })
    };
    let router = Arc::new(TestRouter::of(&plans));
    let stop_writer = CancellationToken::new();
    let writer = start_writer(
        &source,
        size,
        stop_writer.clone(),
        Some(Routed {
            router: router.clone(),
            link: link.clone(),
        }),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Act: switch the upper half of the buckets of both tables as Tern
    // does (hold, wait for the writer to apply it, drain the forward relay,
    // flip the relays' set, release to the new store), keep writing.
    let upper: Vec<usize> = (plans[0].buckets.len() / 2..plans[0].buckets.len()).collect();
    let held = router.set(&upper, Primary::Hold)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while router.applied.load(Ordering::SeqCst) < held {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the writer did not apply the hold"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drain(&link, Direction::Forward, Side::Source, &fwd_name).await?;
    let mut set = SwitchedBuckets::none();
    for p in &plans {
        for b in &upper {
            set.insert(&p.table, *b);
        }
    }
    switched_tx.send(set.clone())?;
    anyhow::ensure!(
        reverse::wait_observed(&mut observed_rx, &set, Duration::from_secs(30)).await,
        "the reverse relay did not take the switched buckets"
    );
    router.set(&upper, Primary::New)?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop_writer.cancel();
    let tally = writer.await?;
    drain(&link, Direction::Reverse, Side::Target, &rev_name).await?;
    drain(&link, Direction::Forward, Side::Source, &fwd_name).await?;
    stop_relays.cancel();
    forward.await??;
    backward.await??;

    // Assert: the switched keys' writes went to the new store (and were
    // captured there for the reverse relay), the others to the old one, and
    // both stores agree row for row through the spec.
    assert!(tally.new >= 10, "writes to the new store: {tally:?}");
    assert!(tally.old >= 10, "writes to the old store: {tally:?}");
    assert_eq!(tally.dropped, 0, "{tally:?}");
    let target_db = pool(&target).await?;
    let captured: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _tern_changelog")
        .fetch_one(&target_db)
        .await?;
    target_db.close().await;
    assert!(
        captured > 0,
        "the new store's capture logged the writer's changes"
    );
    for table in ["contacts", "messages"] {
        let report = verify::verify(&link, &VerifyOptions::full(table), &RunControl::new()).await?;
        assert_eq!(
            report.counts.mismatched(),
            0,
            "{table}: {:?}\n{}",
            report.counts,
            report.tree.render()
        );
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
