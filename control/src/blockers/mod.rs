//! What blocks a migration, for the "what blocks us" panel of the overview
//! and the migration page: failed, stuck and paused buckets, buckets
//! verified under the accuracy gate, switched buckets whose stores drifted
//! apart (they gate further switches), jobs that failed and were not retried
//! since, and client ramps the gates hold back. Each says what to do.
//!
//! The sentences and the stuck rule are pure and unit-tested; the store
//! counts and picks the first few of each kind in SQL (`store.rs`), for
//! one migration or all at once, so the panel costs a fixed number of
//! queries however many buckets and migrations there are.

use serde::{Deserialize, Serialize};

use crate::buckets::Phase;
use crate::jobs::JobState;

mod store;

/// What kind of thing blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BlockerKind {
    FailedBucket,
    StuckBucket,
    PausedBucket,
    LowAccuracy,
    DriftedBucket,
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
            BlockerKind::DriftedBucket => "drifted bucket",
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

/// A bucket in an active phase (bulk-loading, catching-up, verifying) for
/// longer than [`STUCK_MS`], with the newest job of the bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct StuckCandidate {
    pub idx: i64,
    pub phase: Phase,
    /// When the bucket entered its phase.
    pub since: i64,
    /// The bucket's newest job: id, state, last report.
    pub newest_job: Option<(i64, JobState, i64)>,
}

/// Whether a bucket long in an active phase is stuck: its job stopped
/// reporting, or no job of it is running, queued or paused.
pub fn stuck(c: &StuckCandidate, now_ms: i64) -> Option<Blocker> {
    let text = match c.newest_job {
        Some((id, JobState::Running, updated_at)) if now_ms - updated_at > STUCK_MS => format!(
            "bucket {} is {} but its job {id} last reported {} ago — its worker may be gone",
            c.idx,
            c.phase,
            minutes(now_ms - updated_at)
        ),
        Some((_, JobState::Running | JobState::Queued | JobState::Paused, _)) => return None,
        _ if now_ms - c.since > STUCK_MS => format!(
            "bucket {} has been {} for {} with no job running — start its job again",
            c.idx,
            c.phase,
            minutes(now_ms - c.since)
        ),
        _ => return None,
    };
    Some(bucket_blocker(BlockerKind::StuckBucket, c.idx, text))
}

fn bucket_blocker(kind: BlockerKind, idx: i64, text: String) -> Blocker {
    Blocker {
        kind,
        text,
        bucket: Some(idx),
        client: None,
    }
}

/// A failed bucket, with its last error.
pub fn failed_bucket(idx: i64, last_error: Option<&str>) -> Blocker {
    let error = last_error.unwrap_or("no message recorded");
    let text = format!("bucket {idx} failed: {error} — retry it from its page");
    bucket_blocker(BlockerKind::FailedBucket, idx, text)
}

/// A paused bucket.
pub fn paused_bucket(idx: i64) -> Blocker {
    let text = format!("bucket {idx} is paused — resume it when ready");
    bucket_blocker(BlockerKind::PausedBucket, idx, text)
}

/// A bucket verified under the migration's gate.
pub fn low_accuracy(idx: i64, accuracy: f64, min_accuracy: f64) -> Blocker {
    let text = format!(
        "bucket {idx} verified at {accuracy:.2}%, under the gate of {min_accuracy}% — repair its mismatches"
    );
    bucket_blocker(BlockerKind::LowAccuracy, idx, text)
}

/// A switched bucket whose last re-verification found the old and the new
/// store different: further switches wait until it is repaired.
pub fn drifted_bucket(idx: i64, rows: i64) -> Blocker {
    let text = format!(
        "bucket {idx} drifted: its last re-verification found {rows} row(s) different between the old and the new store — repair it and verify again; no further bucket can be switched until then"
    );
    bucket_blocker(BlockerKind::DriftedBucket, idx, text)
}

/// A job that failed and was not replaced by a later one.
pub fn failed_job(kind: &str, id: i64, bucket: Option<i64>, message: Option<&str>) -> Blocker {
    Blocker {
        kind: BlockerKind::FailedJob,
        text: format!(
            "{kind} job {id}{} failed: {}",
            bucket.map(|b| format!(" (bucket {b})")).unwrap_or_default(),
            message.unwrap_or("no message recorded")
        ),
        bucket,
        client: None,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 10 * 60 * 1000;

    fn candidate(
        idx: i64,
        phase: Phase,
        newest_job: Option<(i64, JobState, i64)>,
    ) -> StuckCandidate {
        StuckCandidate {
            idx,
            phase,
            since: 0,
            newest_job,
        }
    }

    #[test]
    fn blockers_say_what_is_wrong_and_what_to_do() {
        let failed = failed_bucket(0, Some("Expression tree is too large"));
        assert_eq!(failed.kind, BlockerKind::FailedBucket);
        assert!(
            failed.text.contains("Expression tree is too large"),
            "{}",
            failed.text
        );
        assert!(
            failed.text.ends_with("retry it from its page"),
            "{}",
            failed.text
        );
        assert!(paused_bucket(1).text.contains("resume it"));
        let drifted = drifted_bucket(3, 2);
        assert_eq!(drifted.kind, BlockerKind::DriftedBucket);
        assert!(
            drifted.text.contains("2 row(s) different") && drifted.text.contains("switched"),
            "{}",
            drifted.text
        );
        let low = low_accuracy(2, 37.0, 99.9);
        assert!(
            low.text.contains("37.00%") && low.text.contains("99.9%"),
            "{}",
            low.text
        );
        assert_eq!(low.bucket, Some(2));
        let job = failed_job("verify", 5, Some(0), Some("target unreachable"));
        assert!(
            job.text
                .starts_with("verify job 5 (bucket 0) failed: target unreachable"),
            "{}",
            job.text
        );
    }

    #[test]
    fn a_bucket_long_in_an_active_phase_without_a_live_job_is_stuck() {
        let no_job = candidate(0, Phase::Verifying, None);
        let silent = candidate(
            1,
            Phase::BulkLoading,
            Some((9, JobState::Running, NOW - STUCK_MS - 1)),
        );
        let fresh = StuckCandidate {
            since: NOW - 1_000,
            ..candidate(2, Phase::CatchingUp, None)
        };
        let healthy = candidate(
            3,
            Phase::BulkLoading,
            Some((8, JobState::Running, NOW - 2_000)),
        );
        let queued = candidate(4, Phase::Verifying, Some((7, JobState::Queued, 0)));
        let ended = candidate(5, Phase::Verifying, Some((6, JobState::Succeeded, 0)));

        let stuck: Vec<Blocker> = [no_job, silent, fresh, healthy, queued, ended]
            .iter()
            .filter_map(|c| stuck(c, NOW))
            .collect();

        let at: Vec<Option<i64>> = stuck.iter().map(|b| b.bucket).collect();
        assert_eq!(at, [Some(0), Some(1), Some(5)]);
        assert!(
            stuck[0].text.contains("no job running"),
            "{}",
            stuck[0].text
        );
        assert!(
            stuck[1].text.contains("job 9 last reported"),
            "{}",
            stuck[1].text
        );
    }

    #[test]
    fn blockers_group_by_kind_with_a_count_and_the_first_few() {
        let mut all: Vec<Blocker> = (0..5)
            .filter_map(|i| stuck(&candidate(i, Phase::Verifying, None), NOW))
            .collect();
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
}
