//! The drift watch finds a real drift (issue 17: "drift shows on the
//! overview and gates further switches"). A bucket of the switch journey's
//! migration is switched to the new store; then its old store is written
//! behind Tern's back, so that the two stores disagree for a switched bucket
//! (the forward relay skips switched buckets, and the reverse relay only
//! carries the new store's changes). The drift watch's re-verification must
//! report the drift on the overview (the source-of-truth panel, the blockers)
//! and the switch API must refuse to switch another bucket, naming the
//! drift; once the old store is repaired and re-verified, the switch goes.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::StatusCode;
use serde_json::json;
use sqlx::{MySqlPool, PgPool};
use tern_control::Actor;
use tern_control::blockers::BlockerKind;
use tern_control::buckets::Bucket;
use tern_control::jobs::{JobKind, JobState};

use crate::switch_journey::Journey;

/// Runs the drift watch now (every switched bucket is due) and waits until
/// the re-verification of bucket `idx` has recorded its drift.
async fn check_drift(j: &Journey, idx: i64) -> anyhow::Result<Bucket> {
    // A check the server's workers queued may still run, over rows read
    // before the caller's change: wait until none is queued or running, so
    // that the check recorded after `asked` started after it.
    wait_no_verify(j).await?;
    let asked = tern_control::clock::now_ms();
    j.store.run_drift_watch(Duration::ZERO).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let b = j.store.bucket_by_idx(j.migration, idx).await?;
        if b.drift_checked_at.is_some_and(|at| at >= asked) {
            return Ok(b);
        }
        if Instant::now() > deadline {
            bail!("bucket {idx} was not re-verified: {b:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_no_verify(j: &Journey) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let busy = j
            .store
            .list_jobs(Some(j.migration), None, 1000)
            .await?
            .iter()
            .any(|job| {
                job.kind == JobKind::Verify
                    && matches!(job.state, JobState::Queued | JobState::Running)
            });
        if !busy {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("a verification did not end");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_switched_bucket_changed_behind_terns_back_shows_drift_and_gates_the_next_switch()
-> anyhow::Result<()> {
    // Arrange: two buckets ready, bucket 0 switched, its first drift check clean.
    let j = Journey::start(2, 400, 40).await?;
    let m = j.migration;
    j.store
        .install_capture(&Actor::system(), m, "drift test")
        .await?;
    j.make_ready().await?;
    j.switch(&[0], false).await?;
    let clean = check_drift(&j, 0).await?;
    assert_eq!(
        clean.drift_rows,
        Some(0),
        "right after the switch: {clean:?}"
    );
    assert!(j.store.drifted_buckets(m).await?.is_empty());

    // Act: a row of bucket 0 changes in the old store behind Tern's back.
    let hi: i64 = j
        .buckets()
        .await?
        .iter()
        .find(|b| b.idx == 0)
        .and_then(|b| b.hi.as_deref())
        .context("bucket 0 has an upper bound")?
        .parse()?;
    let (id, _) = *j
        .seeded
        .iter()
        .find(|(_, member)| *member < hi)
        .context("a seeded row in bucket 0")?;
    let old = MySqlPool::connect(&j.source.url).await?;
    sqlx::query("UPDATE items SET body = 'written behind tern' WHERE id = ?")
        .bind(id)
        .execute(&old)
        .await?;
    let drifted = check_drift(&j, 0).await?;

    // Assert: the drift is found and shown, and it gates the next switch.
    assert_eq!(drifted.drift_rows, Some(1), "{drifted:?}");
    assert_eq!(j.store.drifted_buckets(m).await?, [0]);
    let overview = j.store.sources_of_truth().await?;
    assert_eq!(overview.len(), 1, "{overview:?}");
    assert_eq!(overview[0].drifted, [0], "the overview shows the drift");
    let blockers = j.store.blockers(&Actor::system(), m, 5).await?;
    let drift = blockers
        .iter()
        .find(|g| g.kind == BlockerKind::DriftedBucket)
        .with_context(|| format!("a drift blocker: {blockers:?}"))?;
    assert_eq!(drift.count, 1);
    assert_eq!(drift.first[0].bucket, Some(0));
    let switches = j.get(&format!("/api/v1/migrations/{m}/switches")).await?;
    assert_eq!(switches["drifted"], json!([0]), "{switches}");

    let (status, refused) = j
        .post(
            &format!("/api/v1/migrations/{m}/switch"),
            json!({ "buckets": [1], "reason": "drift test" }),
        )
        .await?;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    let why = refused["error"].as_str().unwrap_or("");
    assert!(
        why.contains("bucket(s) 0 drifted"),
        "the refusal names the drift: {why}"
    );
    assert_eq!(
        j.store.bucket_by_idx(m, 1).await?.write_primary,
        "old",
        "the refused switch changed nothing"
    );

    // Repaired (the old store takes the new store's value back) and
    // re-verified, the bucket no longer drifts and the switch goes.
    let new = PgPool::connect(&j.target.url).await?;
    let body: String = sqlx::query_scalar("SELECT body FROM items WHERE id = $1")
        .bind(id)
        .fetch_one(&new)
        .await?;
    sqlx::query("UPDATE items SET body = ? WHERE id = ?")
        .bind(&body)
        .bind(id)
        .execute(&old)
        .await?;
    let repaired = check_drift(&j, 0).await?;
    assert_eq!(repaired.drift_rows, Some(0), "{repaired:?}");
    assert!(
        j.store
            .blockers(&Actor::system(), m, 5)
            .await?
            .iter()
            .all(|g| g.kind != BlockerKind::DriftedBucket)
    );
    j.switch(&[1], false).await?;
    assert_eq!(j.store.bucket_by_idx(m, 1).await?.write_primary, "new");
    old.close().await;
    new.close().await;
    Ok(())
}
