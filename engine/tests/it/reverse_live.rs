//! A bucket switched to the new store and rolled back while an application
//! writes its keys the whole time, through the switch's steps: hold the
//! bucket's writes, drain the relay handing over, flip the switched set,
//! wait until the relay taking over filters by it, release. At the end both
//! stores are equal row for row and each changelog holds exactly the
//! application's writes to its store. The holds are measured.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use tern_engine::reverse::{self, Direction, Drain, SwitchedBuckets};
use tern_engine::{RelayOptions, RelayRamp, ReverseOptions, Side as EngineSide};
use tern_testkit::{DbKind, TestDb};
use tokio::sync::{RwLock, watch};
use tokio_util::sync::CancellationToken;

use crate::reverse::{
    MEMBERS, ROWS, SPEC, assert_same_rows, bucket_of, changelog_rows, create_items, drain_both,
    random_write, rows, spawn_relays,
};
use crate::support::{Side, connect_captured, load_table, spec_text};

/// Which store is the bucket's primary; the write lock is the hold.
struct Primary {
    new_store: RwLock<bool>,
}

/// Writes the bucket's keys to its primary until stopped; returns the
/// statements run on (the old store, the new store).
fn spawn_writer(
    stores: Arc<(Side, Side)>,
    primary: Arc<Primary>,
    mut ids: Vec<i64>,
    members: Vec<i64>,
    running: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<anyhow::Result<(u64, u64)>> {
    tokio::spawn(async move {
        let (mut old, mut new) = (0u64, 0u64);
        let mut next_id = 300_000;
        while running.load(Ordering::Relaxed) {
            let (op, pick, member, word) = random_write(ids.len(), &members);
            let on_new = primary.new_store.read().await;
            let (m, n) = if *on_new {
                ("member", format!("'{word}'"))
            } else {
                ("member_id", word.to_string())
            };
            let sql = match op {
                0..=2 => {
                    next_id += 1;
                    ids.push(next_id);
                    if *on_new {
                        format!(
                            "INSERT INTO items (id, member, body, n, _tern_version) VALUES ({next_id}, {member}, 'new {word}', {n}, 0)"
                        )
                    } else {
                        format!(
                            "INSERT INTO items (id, member_id, body, n) VALUES ({next_id}, {member}, 'new {word}', {n})"
                        )
                    }
                }
                _ if ids.is_empty() => continue,
                3..=6 => format!(
                    "UPDATE items SET body = 'changed {word}', n = {n}, {m} = {member} WHERE id = {}",
                    ids[pick]
                ),
                _ => format!("DELETE FROM items WHERE id = {}", ids.swap_remove(pick)),
            };
            if *on_new {
                stores.1.run(&sql).await?;
                new += 1;
            } else {
                stores.0.run(&sql).await?;
                old += 1;
            }
            drop(on_new);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok((old, new))
    })
}

#[tokio::test]
async fn a_bucket_switched_and_rolled_back_under_writes_loses_and_doubles_nothing()
-> anyhow::Result<()> {
    // Arrange: loaded, capture on both stores, both relays running, nothing switched.
    let source_db = TestDb::new(DbKind::MariaDb).await?;
    let target_db = TestDb::new(DbKind::Postgres).await?;
    let source = Side::open(&source_db).await?;
    create_items(&source, DbKind::MariaDb).await?;
    let (link, _, _) = connect_captured(&spec_text(&source_db, &target_db, SPEC)).await?;
    let link = Arc::new(link);
    let plan = load_table(&link, "items").await?;
    reverse::install_capture(&link).await?;
    let stores = Arc::new((source, Side::open(&target_db).await?));
    let logs0 = (
        changelog_rows(&stores.0).await?,
        changelog_rows(&stores.1).await?,
    );
    let (switched_tx, switched_rx) = watch::channel(SwitchedBuckets::none());
    let cancel = CancellationToken::new();
    let (fwd_obs_tx, mut fwd_obs) = watch::channel(SwitchedBuckets::none());
    let (rev_obs_tx, mut rev_obs) = watch::channel(SwitchedBuckets::none());
    let mut fwd = RelayOptions::fixed(RelayRamp::full());
    fwd.start = reverse::head(&link, EngineSide::Source).await?;
    fwd.switched = Some(switched_rx.clone());
    fwd.observed = Some(Arc::new(fwd_obs_tx));
    let mut rev = ReverseOptions::new(switched_rx);
    rev.start = reverse::head(&link, EngineSide::Target).await?;
    rev.observed = Some(Arc::new(rev_obs_tx));
    let (forward, backward) = spawn_relays(&link, fwd, rev, &cancel);
    let members: Vec<i64> = (0..MEMBERS).filter(|m| bucket_of(&plan, *m) == 2).collect();
    let ids: Vec<i64> = (1..=ROWS)
        .filter(|id| members.contains(&(id % MEMBERS)))
        .collect();
    anyhow::ensure!(!members.is_empty());
    let primary = Arc::new(Primary {
        new_store: RwLock::new(false),
    });
    let running = Arc::new(AtomicBool::new(true));
    let writer = spawn_writer(
        stores.clone(),
        primary.clone(),
        ids,
        members,
        running.clone(),
    );

    // Act: write, switch bucket 2, write, roll it back, write.
    let mut holds = Vec::new();
    for (to_new, set) in [
        (true, SwitchedBuckets::of("items", [2])),
        (false, SwitchedBuckets::none()),
    ] {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let mut hold = primary.new_store.write().await;
        let held = Instant::now();
        let (direction, side, name, observed) = if to_new {
            (
                Direction::Forward,
                EngineSide::Source,
                "default",
                &mut rev_obs,
            )
        } else {
            (
                Direction::Reverse,
                EngineSide::Target,
                "reverse",
                &mut fwd_obs,
            )
        };
        let head = reverse::head(&link, side)
            .await?
            .context("capture installed")?;
        let drained =
            reverse::drain(&link, direction, name, &head, Duration::from_secs(30)).await?;
        assert!(matches!(drained, Drain::Reached { .. }), "{drained:?}");
        switched_tx.send(set.clone())?;
        assert!(reverse::wait_observed(observed, &set, Duration::from_secs(30)).await);
        *hold = to_new;
        holds.push(held.elapsed());
        drop(hold);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    running.store(false, Ordering::Relaxed);
    let (old_writes, new_writes) = writer.await??;
    drain_both(&link).await?;
    cancel.cancel();
    let (fwd_summary, rev_summary) = (forward.await??, backward.await??);

    // Assert: equal row for row; each changelog holds the application's writes.
    assert_same_rows(
        &rows(&stores.0, DbKind::MariaDb, "member_id").await?,
        &rows(&stores.1, DbKind::Postgres, "member").await?,
    );
    assert!(
        old_writes > 100 && new_writes > 50,
        "{old_writes} {new_writes}"
    );
    assert_eq!(
        changelog_rows(&stores.0).await? - logs0.0,
        old_writes as i64
    );
    assert_eq!(
        changelog_rows(&stores.1).await? - logs0.1,
        new_writes as i64
    );
    assert_eq!(fwd_summary.changes, old_writes);
    assert_eq!(rev_summary.changes, new_writes);
    let max_hold = holds.iter().max().copied().unwrap_or_default();
    println!(
        "switch and rollback: writes old={old_writes} new={new_writes} holds_ms={:?} max_hold_ms={}",
        holds.iter().map(Duration::as_millis).collect::<Vec<_>>(),
        max_hold.as_millis()
    );
    assert!(max_hold < Duration::from_secs(5), "holds {holds:?}");
    Ok(())
}
