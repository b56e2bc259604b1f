//! The control plane drives the relay and the catch-up: buckets bulk-loaded
//! while change capture records every write, the relay ramped from a share of
//! keys to all of them (buckets stamped dual-written only then), catch-up of
//! every bucket to lag zero, and the target equal to the source, deletes
//! included, checked with plain SQL.

use std::sync::Arc;
use std::time::Duration;

use sqlx::{Connection, Row};
use tern_control::ControlError;
use tern_control::buckets::Phase;
use tern_control::jobs::JobState;
use tern_control::relay::RelayRampSpec;
use tern_control::runners::{self, RunnerContext};
use tern_control::worker::{Worker, WorkerTiming};
use tern_engine::{Link, TransformerRegistry, capture};
use tern_testkit::{DbKind, TestDb};
use tokio_util::sync::CancellationToken;

use crate::admin;
use crate::drive_bulk_load::{seed_mariadb_source, spec, wait_for_phase};

/// Waits until no bucket is verifying any more.
async fn wait_until_settled(store: &tern_control::Store, migration: i64) -> anyhow::Result<()> {
    for _ in 0..600 {
        let buckets = store.list_buckets(migration).await?;
        if let Some(b) = buckets.iter().find(|b| b.phase == Phase::Failed) {
            anyhow::bail!("bucket {} failed: {:?}", b.idx, b.last_error);
        }
        if buckets.iter().all(|b| b.phase != Phase::Verifying) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("buckets still verifying")
}

type Row4 = (i64, i64, String, Option<String>);

async fn source_rows(source: &TestDb) -> anyhow::Result<Vec<Row4>> {
    let mut c = sqlx::MySqlConnection::connect(&source.url).await?;
    Ok(sqlx::query(
        "SELECT id, member_id, LOWER(TRIM(email)) AS email, name FROM contacts ORDER BY id",
    )
    .fetch_all(&mut c)
    .await?
    .iter()
    .map(|r| {
        (
            r.get("id"),
            r.get("member_id"),
            r.get("email"),
            r.get("name"),
        )
    })
    .collect())
}

async fn target_rows(target: &TestDb) -> anyhow::Result<Vec<Row4>> {
    let mut c = sqlx::PgConnection::connect(&target.url).await?;
    Ok(
        sqlx::query("SELECT id, member_id, email, name FROM contacts ORDER BY id")
            .fetch_all(&mut c)
            .await?
            .iter()
            .map(|r| {
                (
                    r.get("id"),
                    r.get("member_id"),
                    r.get("email"),
                    r.get("name"),
                )
            })
            .collect(),
    )
}

#[tokio::test]
async fn relay_ramped_to_every_key_then_catch_up_leaves_the_target_equal_to_the_source()
-> anyhow::Result<()> {
    let source = TestDb::mariadb().await?;
    let target = TestDb::postgres().await?;
    let (_control_db, store) = crate::fresh_store(DbKind::Postgres).await?;
    seed_mariadb_source(&source, 2_000).await?;
    let registry = Arc::new(TransformerRegistry::new());
    let spec_text = spec(&source, &target);
    let m = store
        .create_migration_from_spec(&admin(), "contacts", "", &spec_text, &registry)
        .await?;
    let parsed = tern_control::planning::parse_spec(&spec_text, "contacts")?;
    let link = Link::connect(parsed.clone(), &registry).await?;
    capture::install(link.source(), &parsed).await?;

    let shutdown = CancellationToken::new();
    let ctx = RunnerContext { registry };
    let timing = WorkerTiming {
        heartbeat: Duration::from_millis(200),
        ..WorkerTiming::default()
    };
    let handles: Vec<_> = (0..3)
        .map(|i| {
            tokio::spawn(
                Worker::new(format!("w{i}"), store.clone(), &runners::all(&ctx), timing)
                    .run(shutdown.clone()),
            )
        })
        .collect();

    let ids: Vec<i64> = store
        .list_buckets(m.id)
        .await?
        .iter()
        .map(|b| b.id)
        .collect();
    store.start_bulk_load(&admin(), m.id, &ids).await?;
    wait_for_phase(&store, m.id, Phase::Loaded).await?;
    assert!(
        store
            .list_buckets(m.id)
            .await?
            .iter()
            .all(|b| b.watermark.is_some())
    );

    // Writes after the load: only the relay and the catch-up can bring them.
    let mut src = sqlx::MySqlConnection::connect(&source.url).await?;
    sqlx::query("UPDATE contacts SET name = CONCAT('Renamed ', id) WHERE id % 37 = 0")
        .execute(&mut src)
        .await?;
    sqlx::query("DELETE FROM contacts WHERE id % 53 = 0")
        .execute(&mut src)
        .await?;
    sqlx::query(
        "INSERT INTO contacts VALUES (5001, 12, 'NEW@example.com', 'New one'), (5002, 250, ' x@Y.com ', NULL)",
    )
    .execute(&mut src)
    .await?;

    // Catch-up before the relay covers a bucket is refused, with what to do.
    let early = store.start_catch_up(&admin(), m.id, &ids).await;
    assert!(
        matches!(early, Err(ControlError::Conflict(ref msg)) if msg.contains("not dual-written")),
        "{early:?}"
    );

    // A share of keys does not make a bucket dual-written; every key does.
    let relay = store
        .set_relay_ramp(
            &admin(),
            m.id,
            RelayRampSpec::parse("10%", &[])?,
            "first step",
        )
        .await?;
    assert_eq!(relay.kind.as_str(), "relay");
    assert!(
        store
            .list_buckets(m.id)
            .await?
            .iter()
            .all(|b| b.dual_write_at.is_none())
    );
    let same = store
        .set_relay_ramp(
            &admin(),
            m.id,
            RelayRampSpec::parse("100%", &[])?,
            "every key",
        )
        .await?;
    assert_eq!(
        same.id, relay.id,
        "the running relay changes its ramp, no second relay"
    );
    assert!(
        store
            .list_buckets(m.id)
            .await?
            .iter()
            .all(|b| b.dual_write_at.is_some())
    );

    store.start_catch_up(&admin(), m.id, &ids).await?;
    wait_for_phase(&store, m.id, Phase::CaughtUp).await?;
    let buckets = store.list_buckets(m.id).await?;
    assert!(
        buckets
            .iter()
            .all(|b| b.caught_up_at.is_some() && b.lag_changes == Some(0))
    );

    // A write now reaches the target through the relay alone.
    sqlx::query("UPDATE contacts SET name = 'Relayed' WHERE id = 1")
        .execute(&mut src)
        .await?;
    let expected = source_rows(&source).await?;
    let mut actual = target_rows(&target).await?;
    for _ in 0..100 {
        if actual == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        actual = target_rows(&target).await?;
    }
    assert_eq!(actual.len(), expected.len());
    assert_eq!(actual, expected);
    assert!(
        actual
            .iter()
            .any(|r| r.0 == 1 && r.3.as_deref() == Some("Relayed"))
    );
    assert!(
        !actual.iter().any(|r| r.0 == 53),
        "a deleted contact is gone from the target too"
    );

    // Verification finds rows damaged in the target; repair brings them back.
    let mut dst = sqlx::PgConnection::connect(&target.url).await?;
    sqlx::query("UPDATE contacts SET name = 'damaged' WHERE id IN (2, 3, 4)")
        .execute(&mut dst)
        .await?;
    sqlx::query("DELETE FROM contacts WHERE id = 5")
        .execute(&mut dst)
        .await?;
    store
        .start_verify(
            &admin(),
            m.id,
            &ids,
            tern_control::runbook::VerifyMode::Full,
        )
        .await?;
    wait_until_settled(&store, m.id).await?;
    let buckets = store.list_buckets(m.id).await?;
    let damaged: Vec<_> = buckets
        .iter()
        .filter(|b| b.phase == Phase::CaughtUp)
        .collect();
    assert!(!damaged.is_empty(), "{buckets:?}");
    let mut mismatched = 0;
    for b in &buckets {
        let runs = store.list_verify_runs(m.id, Some(b.id), 10).await?;
        let run = runs
            .first()
            .ok_or_else(|| anyhow::anyhow!("bucket {} has no run", b.idx))?;
        mismatched += run.missing + run.different + run.extra;
        if b.phase == Phase::Verified {
            assert_eq!(b.accuracy, Some(100.0));
        } else {
            assert!(b.accuracy.is_some_and(|a| a < 100.0));
        }
    }
    assert_eq!(
        mismatched, 4,
        "three changed rows and one missing, each found once"
    );
    for b in &damaged {
        let run = store.list_verify_runs(m.id, Some(b.id), 1).await?;
        let engine_run = run[0]
            .engine_run
            .clone()
            .ok_or_else(|| anyhow::anyhow!("no engine run"))?;
        store
            .start_repair(&admin(), m.id, b.id, &engine_run)
            .await?;
    }
    wait_for_phase(&store, m.id, Phase::Verified).await?;
    assert!(
        store
            .list_buckets(m.id)
            .await?
            .iter()
            .all(|b| b.accuracy == Some(100.0))
    );
    assert_eq!(target_rows(&target).await?, source_rows(&source).await?);

    // With the relay off, buckets keep their dual-write moment but may not catch up.
    store
        .set_relay_ramp(&admin(), m.id, RelayRampSpec::Off, "done")
        .await?;
    assert!(
        store
            .list_buckets(m.id)
            .await?
            .iter()
            .all(|b| b.dual_write_at.is_some())
    );
    let off = store.start_catch_up(&admin(), m.id, &ids[..1]).await;
    assert!(matches!(off, Err(ControlError::Conflict(_))), "{off:?}");
    store.cancel_job(&admin(), relay.id, "test over").await?;
    shutdown.cancel();
    for h in handles {
        h.await?;
    }
    assert_ne!(store.job(relay.id).await?.state, JobState::Failed);
    Ok(())
}
