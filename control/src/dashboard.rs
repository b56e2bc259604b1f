//! What the pages show, gathered in one call each: the migration page (its
//! buckets, their jobs, pace, ETA, accuracy over time, batches) and the bucket
//! page (its history, jobs and verification runs).

use serde::{Deserialize, Serialize};

use crate::audit::{AuditEvent, AuditFilter};
use crate::batches::Batch;
use crate::buckets::Bucket;
use crate::error::Result;
use crate::jobs::Job;
use crate::migrations::{Migration, MigrationSummary};
use crate::store::Store;
use crate::throughput::{Eta, Throughput, eta, throughput_of};
use crate::users::Actor;
use crate::verify_runs::VerifyRun;

/// How far back the pace is measured.
pub const PACE_WINDOW_MS: i64 = 30 * 60 * 1000;

/// Everything the migration page shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MigrationBoard {
    pub summary: MigrationSummary,
    pub buckets: Vec<Bucket>,
    /// The newest job of each bucket that has one, by bucket id.
    pub bucket_jobs: Vec<(i64, Job)>,
    /// Recent jobs, newest first.
    pub jobs: Vec<Job>,
    pub pace: Option<Throughput>,
    pub eta: Option<Eta>,
    /// (time ms, accuracy %), oldest first.
    pub accuracy: Vec<(i64, f64)>,
    pub batches: Vec<Batch>,
}

/// Everything the bucket page shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BucketBoard {
    pub migration: Migration,
    pub bucket: Bucket,
    pub jobs: Vec<Job>,
    pub runs: Vec<VerifyRun>,
    /// The bucket's phase changes and other events, newest first.
    pub history: Vec<AuditEvent>,
}

/// One migration on the program manager's overview, with its pace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgramLine {
    pub summary: MigrationSummary,
    pub pace: Option<Throughput>,
    pub eta: Option<Eta>,
    pub accuracy: Vec<(i64, f64)>,
    pub running_jobs: i64,
}

impl Store {
    /// The migration page's data.
    pub async fn migration_board(&self, migration_id: i64) -> Result<MigrationBoard> {
        let migration = self.migration(migration_id).await?;
        let summary = self
            .migration_summaries()
            .await?
            .into_iter()
            .find(|s| s.migration.id == migration.id)
            .unwrap_or(MigrationSummary {
                migration,
                buckets: 0,
                phases: Vec::new(),
                planned_rows: 0,
                rows_copied: 0,
            });
        let buckets = self.list_buckets(migration_id).await?;
        let jobs = self.list_jobs(Some(migration_id), None, 2_000).await?;
        let mut bucket_jobs: Vec<(i64, Job)> = Vec::new();
        for job in &jobs {
            if let Some(b) = job.bucket_id {
                if !bucket_jobs.iter().any(|(id, _)| *id == b) {
                    bucket_jobs.push((b, job.clone()));
                }
            }
        }
        let samples = self
            .throughput_samples(migration_id, PACE_WINDOW_MS)
            .await?;
        let pace = throughput_of(&samples);
        let remaining = summary.planned_rows - summary.rows_copied;
        let eta = pace.as_ref().and_then(|p| eta(remaining, p));
        Ok(MigrationBoard {
            accuracy: self.accuracy_history(migration_id).await?,
            batches: self.list_batches(migration_id).await?,
            jobs: jobs.into_iter().take(30).collect(),
            summary,
            buckets,
            bucket_jobs,
            pace,
            eta,
        })
    }

    /// The bucket page's data.
    pub async fn bucket_board(
        &self,
        actor: &Actor,
        migration_id: i64,
        idx: i64,
    ) -> Result<BucketBoard> {
        let migration = self.migration(migration_id).await?;
        let bucket = self.bucket_by_idx(migration_id, idx).await?;
        let history = if actor.role.can_read_audit() {
            self.list_audit(
                actor,
                &AuditFilter {
                    entity_kind: Some("bucket".into()),
                    entity_id: Some(format!("{migration_id}/{idx}")),
                    limit: Some(500),
                    ..AuditFilter::default()
                },
            )
            .await?
        } else {
            Vec::new()
        };
        Ok(BucketBoard {
            jobs: self
                .list_jobs(Some(migration_id), Some(bucket.id), 200)
                .await?,
            runs: self
                .list_verify_runs(migration_id, Some(bucket.id), 200)
                .await?,
            migration,
            bucket,
            history,
        })
    }

    /// Every active migration with its pace, ETA and accuracy over time.
    pub async fn program_overview(&self) -> Result<Vec<ProgramLine>> {
        let mut lines = Vec::new();
        for summary in self.migration_summaries().await? {
            let id = summary.migration.id;
            let samples = self.throughput_samples(id, PACE_WINDOW_MS).await?;
            let pace = throughput_of(&samples);
            let remaining = summary.planned_rows - summary.rows_copied;
            let eta = pace.as_ref().and_then(|p| eta(remaining, p));
            let running_jobs = self
                .list_jobs(Some(id), None, 10_000)
                .await?
                .iter()
                .filter(|j| j.state == crate::jobs::JobState::Running)
                .count() as i64;
            lines.push(ProgramLine {
                accuracy: self.accuracy_history(id).await?,
                summary,
                pace,
                eta,
                running_jobs,
            });
        }
        Ok(lines)
    }
}
