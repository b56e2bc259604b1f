//! The control plane drives the relay and the catch-up: buckets bulk-loaded
//! while change capture records every write, the relay ramped from a share of
//! keys to all of them (buckets stamped dual-written only then), catch-up of
//! every bucket to lag zero, and the target equal to the source, deletes
//! included, checked with plain SQL.

use std::convert::identity;
use std::time::Duration;

use tern_control::ControlError;
use tern_control::buckets::Phase;
use tern_control::jobs::JobState;
use tern_engine::{Link, capture};
use tern_testkit::DbKind;

use crate::admin;
use crate::support::{Drive, exec, source_rows, target_rows, wait_for_buckets, wait_for_phase};

#[tokio::test]
async fn relay_ramped_to_every_key_then_catch_up_leaves_the_target_equal_to_the_source()
-> anyhow::Result<()> {
    let d = Drive::new(DbKind::Postgres, 2_000, identity).await?;
    let (store, m, source, target) = (&d.store, d.migration, &d.source, &d.target);
    let parsed = tern_control::planning::parse_spec(&d.spec, "contacts")?;
    let link = Link::connect(parsed.clone(), &d.registry).await?;
    capture::install(link.source(), &parsed).await?;
    let workers = d.workers(3);

    let ids: Vec<i64> = d.buckets().await?.iter().map(|b| b.id).collect();
    d.bulk_load(&ids).await?;
    wait_for_phase(store, m, Phase::Loaded).await?;
    assert!(d.all_buckets(|b| b.watermark.is_some()).await?);

    // Writes after the load: only the relay and the catch-up can bring them.
    exec(
        source,
        "UPDATE contacts SET name = CONCAT('Renamed ', id) WHERE id % 37 = 0;
         DELETE FROM contacts WHERE id % 53 = 0;
         INSERT INTO contacts VALUES (5001, 12, 'NEW@example.com', 'New one'), (5002, 250, ' x@Y.com ', NULL)",
    )
    .await?;

    // Catch-up before the relay covers a bucket is refused, with what to do.
    let early = store.start_catch_up(&admin(), m, &ids).await;
    assert!(
        matches!(early, Err(ControlError::Conflict(ref msg)) if msg.contains("not dual-written")),
        "{early:?}"
    );

    // A share of keys does not make a bucket dual-written; every key does.
    let relay = d.set_relay("10%", "first step").await?;
    assert_eq!(relay.kind.as_str(), "relay");
    assert!(d.all_buckets(|b| b.dual_write_at.is_none()).await?);
    let same = d.set_relay("100%", "every key").await?;
    assert_eq!(
        same.id, relay.id,
        "the running relay changes its ramp, no second relay"
    );
    assert!(d.all_buckets(|b| b.dual_write_at.is_some()).await?);

    store.start_catch_up(&admin(), m, &ids).await?;
    wait_for_phase(store, m, Phase::CaughtUp).await?;
    let buckets = store.list_buckets(m).await?;
    assert!(
        buckets
            .iter()
            .all(|b| b.caught_up_at.is_some() && b.lag_changes == Some(0))
    );

    // A write now reaches the target through the relay alone.
    exec(source, "UPDATE contacts SET name = 'Relayed' WHERE id = 1").await?;
    let expected = source_rows(source).await?;
    let mut actual = target_rows(target).await?;
    for _ in 0..100 {
        if actual == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        actual = target_rows(target).await?;
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
    exec(
        target,
        "UPDATE contacts SET name = 'damaged' WHERE id IN (2, 3, 4); DELETE FROM contacts WHERE id = 5",
    )
    .await?;
    store
        .start_verify(&admin(), m, &ids, tern_control::runbook::VerifyMode::Full)
        .await?;
    wait_for_buckets(store, m, "settled", |bs| {
        bs.iter().all(|b| b.phase != Phase::Verifying)
    })
    .await?;
    let buckets = store.list_buckets(m).await?;
    let damaged: Vec<_> = buckets
        .iter()
        .filter(|b| b.phase == Phase::CaughtUp)
        .collect();
    assert!(!damaged.is_empty(), "{buckets:?}");
    let mut mismatched = 0;
    for b in &buckets {
        let runs = store.list_verify_runs(m, Some(b.id), 10).await?;
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
        let run = store.list_verify_runs(m, Some(b.id), 1).await?;
        let engine_run = run[0]
            .engine_run
            .clone()
            .ok_or_else(|| anyhow::anyhow!("no engine run"))?;
        store.start_repair(&admin(), m, b.id, &engine_run).await?;
    }
    wait_for_phase(store, m, Phase::Verified).await?;
    assert!(d.all_buckets(|b| b.accuracy == Some(100.0)).await?);
    assert_eq!(target_rows(target).await?, source_rows(source).await?);

    // With the relay off, buckets keep their dual-write moment but may not catch up.
    d.set_relay("off", "done").await?;
    assert!(d.all_buckets(|b| b.dual_write_at.is_some()).await?);
    let off = store.start_catch_up(&admin(), m, &ids[..1]).await;
    assert!(matches!(off, Err(ControlError::Conflict(_))), "{off:?}");
    store.cancel_job(&admin(), relay.id, "test over").await?;
    workers.stop().await?;
    assert_ne!(store.job(relay.id).await?.state, JobState::Failed);
    Ok(())
}
