//! What blocks a migration, for the "what blocks us" panel of the overview
//! and the migration page: failed, stuck and paused buckets, buckets
//! verified under the accuracy gate, jobs that failed and were not retried
//! since, and client ramps the gates hold back. Each says what to do.
//!
//! The classification is pure ([`bucket_blockers`]) and unit-tested; the
//! store gathers its inputs ([`Store::blockers`]).

use serde::{Deserialize, Serialize};
use tern_ramp::Ramp;

use crate::buckets::{Bucket, Phase};
use crate::error::{ControlError, Result};
use crate::jobs::{Job, JobState};
use crate::store::Store;
use crate::users::Actor;

/// What kind of thing blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BlockerKind {
    FailedBucket,
    StuckBucket,
    PausedBucket,
    LowAccuracy,
    FailedJob,
    GatedRamp,
}

impl BlockerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BlockerKind::FailedBucket => "failed bucket",
            BlockerKind::StuckBucket => "stuck bucket",
            BlockerKind::PausedBucket => "paused bucket",
            BlockerKind::LowAccuracy => "under the accuracy gate",
            BlockerKind::FailedJob => "failed job",
            BlockerKind::GatedRamp => "gated ramp",
        }
    }
}

/// One thing that blocks, in a sentence that says what to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Blocker {
    pub kind: BlockerKind,
    pub text: String,
    /// The bucket it concerns (its index), for a link.
    pub bucket: Option<i64>,
    /// The client it concerns (its id), for a link.
    pub client: Option<i64>,
}

/// A running job whose last heartbeat is older than this is stuck (two
/// minutes: workers beat every few seconds).
pub const STUCK_MS: i64 = 2 * 60 * 1000;

/// How long a failed job stays a blocker when nothing replaced it (a day).
pub const FAILED_JOB_MS: i64 = 24 * 60 * 60 * 1000;

fn minutes(ms: i64) -> String {
    let m = ms / 60_000;
    if m < 1 {
        "under a minute".into()
    } else if m < 120 {
        format!("{m} min")
    } else {
        format!("{} h", m / 60)
    }
}

/// The blockers among a migration's buckets and recent jobs (newest first),
/// with `min_accuracy` the migration's verification gate.
pub fn bucket_blockers(
    buckets: &[Bucket],
    jobs: &[Job],
    min_accuracy: f64,
    now_ms: i64,
) -> Vec<Blocker> {
    let mut out = Vec::new();
    let newest = |b: &Bucket| jobs.iter().find(|j| j.bucket_id == Some(b.id));
    for b in buckets {
        let blocker = |kind, text: String| Blocker {
            kind,
            text,
            bucket: Some(b.idx),
            client: None,
        };
        match b.phase {
            Phase::Failed => out.push(blocker(
                BlockerKind::FailedBucket,
                format!(
                    "bucket {} failed: {} — retry it from its page",
                    b.idx,
                    b.last_error.as_deref().unwrap_or("no message recorded")
                ),
            )),
            Phase::Paused => out.push(blocker(
                BlockerKind::PausedBucket,
                format!("bucket {} is paused — resume it when ready", b.idx),
            )),
            Phase::BulkLoading | Phase::CatchingUp | Phase::Verifying => {
                let since = now_ms - b.phase_since.unwrap_or(b.updated_at);
                match newest(b) {
                    Some(j) if j.state == JobState::Running && now_ms - j.updated_at > STUCK_MS => {
                        out.push(blocker(
                            BlockerKind::StuckBucket,
                            format!(
                                "bucket {} is {} but its job {} last reported {} ago — its worker may be gone",
                                b.idx,
                                b.phase,
                                j.id,
                                minutes(now_ms - j.updated_at)
                            ),
                        ))
                    }
                    Some(j)
                        if matches!(
                            j.state,
                            JobState::Running | JobState::Queued | JobState::Paused
                        ) => {}
                    _ if since > STUCK_MS => out.push(blocker(
                        BlockerKind::StuckBucket,
                        format!(
                            "bucket {} has been {} for {} with no job running — start its job again",
                            b.idx,
                            b.phase,
                            minutes(since)
                        ),
                    )),
                    _ => {}
                }
            }
            _ => {}
        }
        if let Some(a) = b.accuracy
            && a < min_accuracy
            && !matches!(b.phase, Phase::Failed | Phase::Verifying)
        {
            out.push(blocker(
                BlockerKind::LowAccuracy,
                format!(
                    "bucket {} verified at {a:.2}%, under the gate of {min_accuracy}% — repair its mismatches",
                    b.idx
                ),
            ));
        }
    }
    for j in jobs {
        if j.state != JobState::Failed || j.finished_at.is_some_and(|f| now_ms - f > FAILED_JOB_MS)
        {
            continue;
        }
        // Replaced: a later job of the same kind for the same bucket.
        let replaced = jobs
            .iter()
            .any(|o| o.id > j.id && o.kind == j.kind && o.bucket_id == j.bucket_id);
        // A failed bucket already says it.
        let bucket = j
            .bucket_id
            .and_then(|id| buckets.iter().find(|b| b.id == id));
        if replaced || bucket.is_some_and(|b| b.phase == Phase::Failed) {
            continue;
        }
        out.push(Blocker {
            kind: BlockerKind::FailedJob,
            text: format!(
                "{} job {}{} failed: {}",
                j.kind.as_str(),
                j.id,
                bucket
                    .map(|b| format!(" (bucket {})", b.idx))
                    .unwrap_or_default(),
                j.message.as_deref().unwrap_or("no message recorded")
            ),
            bucket: bucket.map(|b| b.idx),
            client: None,
        });
    }
    out
}

/// Blockers of one kind: how many, and the first few.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockerGroup {
    pub kind: BlockerKind,
    pub count: usize,
    pub first: Vec<Blocker>,
}

/// Blockers grouped by kind in the order met, each group with its first
/// `keep` (a stuck fleet is one line with a count, not a thousand).
pub fn group(blockers: Vec<Blocker>, keep: usize) -> Vec<BlockerGroup> {
    let mut groups: Vec<BlockerGroup> = Vec::new();
    for b in blockers {
        match groups.iter_mut().find(|g| g.kind == b.kind) {
            Some(g) => {
                g.count += 1;
                if g.first.len() < keep {
                    g.first.push(b);
                }
            }
            None => groups.push(BlockerGroup {
                kind: b.kind,
                count: 1,
                first: vec![b],
            }),
        }
    }
    groups
}

impl Store {
    /// What blocks a migration now, as `actor` may see it (client ramps of
    /// the clients the actor may read).
    pub async fn blockers(&self, actor: &Actor, migration_id: i64) -> Result<Vec<Blocker>> {
        let migration = self.migration(migration_id).await?;
        // Only buckets that can block: the board of a large migration has
        // thousands of healthy ones.
        let rows = sqlx::query(
            "SELECT * FROM buckets WHERE migration_id = $1
               AND (phase IN ('failed', 'paused', 'bulk-loading', 'catching-up', 'verifying')
                    OR accuracy < $2)
             ORDER BY idx",
        )
        .bind(migration_id)
        .bind(migration.settings.verify_min_accuracy)
        .fetch_all(self.pool())
        .await
        .map_err(ControlError::db("reading the buckets that may block"))?;
        let buckets = rows
            .iter()
            .map(crate::buckets::bucket_from_row)
            .collect::<Result<Vec<_>>>()?;
        let jobs = self.list_jobs(Some(migration_id), None, 200).await?;
        let mut out = bucket_blockers(
            &buckets,
            &jobs,
            migration.settings.verify_min_accuracy,
            crate::clock::now_ms(),
        );
        for client in self.list_clients(actor, Some(migration_id)).await? {
            if client.ramp >= i64::from(Ramp::FULL.millipercent()) {
                continue;
            }
            let check = self.check_gates(&client, Ramp::FULL).await?;
            if !check.allowed {
                out.push(Blocker {
                    kind: BlockerKind::GatedRamp,
                    text: format!(
                        "{}'s ramp is held at {}: {}",
                        client.name,
                        Ramp::from_millipercent(u32::try_from(client.ramp).unwrap_or(0)),
                        check.reasons.join("; ")
                    ),
                    bucket: None,
                    client: Some(client.id),
                });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::JobKind;

    fn bucket(idx: i64, phase: Phase) -> Bucket {
        Bucket {
            id: idx + 100,
            migration_id: 1,
            idx,
            lo: None,
            hi: None,
            planned_rows: 10,
            rows_copied: 0,
            phase,
            updated_at: 0,
            resume_phase: None,
            phase_since: Some(0),
            snapshot_at: None,
            watermark: None,
            loaded_at: None,
            dual_write_at: None,
            catch_up_from: None,
            catch_up_to: None,
            caught_up_at: None,
            verified_at: None,
            switched_at: None,
            accuracy: None,
            lag_changes: None,
            lag_seconds: None,
            last_error: None,
            batch_id: None,
            table_name: None,
            table_bucket: None,
            write_primary: "old".into(),
            held_by: None,
            drift_rows: None,
            drift_checked_at: None,
        }
    }

    fn job(id: i64, bucket: i64, kind: JobKind, state: JobState, updated_at: i64) -> Job {
        Job {
            id,
            migration_id: Some(1),
            bucket_id: Some(bucket + 100),
            kind,
            params: serde_json::Value::Null,
            state,
            requested: None,
            rate_limit: None,
            worker: None,
            lease_expires_at: None,
            attempts: 1,
            lease_token: 1,
            rows_done: 0,
            rows_total: None,
            rate: None,
            eta_seconds: None,
            message: Some("target unreachable".into()),
            created_by: "t".into(),
            created_at: 0,
            started_at: Some(0),
            updated_at,
            finished_at: Some(updated_at),
        }
    }

    const NOW: i64 = 10 * 60 * 1000;

    #[test]
    fn failed_paused_and_low_accuracy_buckets_block_and_say_what_to_do() {
        let mut failed = bucket(0, Phase::Failed);
        failed.last_error = Some("Expression tree is too large".into());
        let mut low = bucket(2, Phase::CaughtUp);
        low.accuracy = Some(37.0);
        let fine = {
            let mut b = bucket(3, Phase::Verified);
            b.accuracy = Some(100.0);
            b
        };
        let out = bucket_blockers(
            &[failed, bucket(1, Phase::Paused), low, fine],
            &[],
            99.9,
            NOW,
        );
        let kinds: Vec<BlockerKind> = out.iter().map(|b| b.kind).collect();
        assert_eq!(
            kinds,
            [
                BlockerKind::FailedBucket,
                BlockerKind::PausedBucket,
                BlockerKind::LowAccuracy
            ]
        );
        assert!(
            out[0].text.contains("Expression tree is too large"),
            "{}",
            out[0].text
        );
        assert!(out[2].text.contains("37.00%"), "{}", out[2].text);
        assert_eq!(out[2].bucket, Some(2));
    }

    #[test]
    fn a_bucket_in_an_active_phase_without_a_live_job_is_stuck() {
        let verifying = bucket(0, Phase::Verifying);
        let loading = bucket(1, Phase::BulkLoading);
        let fresh = {
            let mut b = bucket(2, Phase::CatchingUp);
            b.phase_since = Some(NOW - 1_000);
            b
        };
        let healthy = bucket(3, Phase::BulkLoading);
        let jobs = [
            job(
                9,
                1,
                JobKind::BulkLoad,
                JobState::Running,
                NOW - STUCK_MS - 1,
            ),
            job(8, 3, JobKind::BulkLoad, JobState::Running, NOW - 2_000),
        ];
        let out = bucket_blockers(&[verifying, loading, fresh, healthy], &jobs, 99.0, NOW);
        let stuck: Vec<Option<i64>> = out
            .iter()
            .filter(|b| b.kind == BlockerKind::StuckBucket)
            .map(|b| b.bucket)
            .collect();
        assert_eq!(stuck, [Some(0), Some(1)]);
        assert!(out[0].text.contains("no job running"), "{}", out[0].text);
        assert!(
            out[1].text.contains("job 9 last reported"),
            "{}",
            out[1].text
        );
    }

    #[test]
    fn blockers_group_by_kind_with_a_count_and_the_first_few() {
        let buckets: Vec<Bucket> = (0..5).map(|i| bucket(i, Phase::Verifying)).collect();
        let mut all = bucket_blockers(&buckets, &[], 99.0, NOW);
        all.push(Blocker {
            kind: BlockerKind::GatedRamp,
            text: "inbox-service".into(),
            bucket: None,
            client: Some(1),
        });
        let groups = group(all, 3);
        assert_eq!(groups.len(), 2);
        assert_eq!(
            (groups[0].kind, groups[0].count, groups[0].first.len()),
            (BlockerKind::StuckBucket, 5, 3)
        );
        assert_eq!(
            (groups[1].kind, groups[1].count),
            (BlockerKind::GatedRamp, 1)
        );
    }

    #[test]
    fn a_failed_job_blocks_until_a_later_one_replaces_it() {
        let b = bucket(0, Phase::CaughtUp);
        let failed = job(5, 0, JobKind::Verify, JobState::Failed, NOW - 1_000);
        let out = bucket_blockers(
            std::slice::from_ref(&b),
            std::slice::from_ref(&failed),
            99.0,
            NOW,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].kind, BlockerKind::FailedJob);
        assert!(
            out[0]
                .text
                .starts_with("verify job 5 (bucket 0) failed: target unreachable"),
            "{}",
            out[0].text
        );
        let retried = job(6, 0, JobKind::Verify, JobState::Succeeded, NOW - 500);
        assert!(bucket_blockers(&[b], &[retried, failed], 99.0, NOW).is_empty());
    }
}
