//! What the pages show, gathered in one call each: the migration page (its
//! buckets, their jobs, pace, ETA, accuracy over time, batches) and the bucket
//! page (its history, jobs and verification runs).

use serde::{Deserialize, Serialize};

use crate::audit::{AuditEvent, AuditFilter};
use crate::batches::Batch;
use crate::blockers::BlockerGroup;
use crate::buckets::{Bucket, Phase};
use crate::db::Run;
use crate::error::Result;
use crate::forecast::Forecast;
use crate::jobs::Job;
use crate::migrations::{Migration, MigrationSummary};
use crate::store::Store;
use crate::throughput::{Eta, Throughput, eta, throughput_of};
use crate::users::Actor;
use crate::verify_runs::VerifyRun;

/// How far back the pace is measured.
pub const PACE_WINDOW_MS: i64 = 30 * 60 * 1000;

/// Which buckets the migration page lists: a page of them, optionally of one phase.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BucketQuery {
    pub phase: Option<Phase>,
    pub offset: i64,
    pub limit: i64,
}

impl Default for BucketQuery {
    fn default() -> Self {
        BucketQuery {
            phase: None,
            offset: 0,
            limit: 100,
        }
    }
}

/// Everything the migration page shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MigrationBoard {
    pub summary: MigrationSummary,
    /// The listed page of buckets …
    pub buckets: Vec<Bucket>,
    /// … out of this many that match the query.
    pub buckets_matching: i64,
    pub query: BucketQuery,
    /// The newest job of each bucket that has one, by bucket id.
    pub bucket_jobs: Vec<(i64, Job)>,
    /// Recent jobs, newest first.
    pub jobs: Vec<Job>,
    pub pace: Option<Throughput>,
    pub eta: Option<Eta>,
    /// (time ms, accuracy %), oldest first.
    pub accuracy: Vec<(i64, f64)>,
    /// The same, one history per table.
    pub accuracy_by_table: Vec<crate::verify_runs::TableAccuracy>,
    pub batches: Vec<Batch>,
    /// Every bucket in a batch, for the batches' checkpoints.
    pub batch_members: Vec<BatchMember>,
    /// The migration's active relay job, if any.
    pub relay: Option<Job>,
    /// Rows done, pace now and the ETA of every phase ahead.
    pub forecast: Option<Forecast>,
}

/// A bucket as its batch's checkpoint shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct BatchMember {
    pub batch_id: i64,
    pub idx: i64,
    pub phase: Phase,
    pub rows_copied: i64,
    pub accuracy: Option<f64>,
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
    /// Accuracy over time, one history per table.
    pub accuracy_by_table: Vec<crate::verify_runs::TableAccuracy>,
    pub running_jobs: i64,
    /// Rows done, pace now and the ETA of every phase ahead.
    pub forecast: Option<Forecast>,
    /// What blocks the migration, by kind.
    pub blockers: Vec<BlockerGroup>,
}

impl Store {
    /// The migration page's data, with one page of buckets.
    pub async fn migration_board(
        &self,
        migration_id: i64,
        query: &BucketQuery,
    ) -> Result<MigrationBoard> {
        let summary = self.migration_summary(migration_id).await?;
        let query = BucketQuery {
            limit: query.limit.clamp(1, 1000),
            offset: query.offset.max(0),
            ..*query
        };
        let (buckets, buckets_matching) = self.bucket_page(migration_id, &query).await?;
        let bucket_jobs = self.newest_jobs_of(migration_id, &buckets).await?;
        let jobs = self.list_jobs(Some(migration_id), None, 30).await?;
        let samples = self
            .throughput_samples(migration_id, PACE_WINDOW_MS)
            .await?;
        let pace = throughput_of(&samples);
        let remaining = summary.planned_rows - summary.rows_copied;
        let eta = pace.as_ref().and_then(|p| eta(remaining, p));
        Ok(MigrationBoard {
            forecast: self
                .forecasts(Some(migration_id))
                .await?
                .remove(&migration_id),
            accuracy: self.accuracy_history(migration_id).await?,
            accuracy_by_table: self.table_accuracy(migration_id).await?,
            batches: self.list_batches(migration_id).await?,
            batch_members: self.batch_members(migration_id).await?,
            relay: self.active_relay(migration_id).await?,
            summary,
            buckets,
            buckets_matching,
            query,
            bucket_jobs,
            jobs,
            pace,
            eta,
        })
    }

    async fn batch_members(&self, migration_id: i64) -> Result<Vec<BatchMember>> {
        sqlx::query(
            "SELECT batch_id, idx, phase, rows_copied, accuracy FROM buckets
             WHERE migration_id = $1 AND batch_id IS NOT NULL ORDER BY idx",
        )
        .bind(migration_id)
        .all(self.pool(), "reading batch members")
        .await
    }

    async fn bucket_page(&self, migration_id: i64, q: &BucketQuery) -> Result<(Vec<Bucket>, i64)> {
        let phase = q.phase.map(Phase::as_str);
        let buckets = sqlx::query(
            "SELECT * FROM buckets WHERE migration_id = $1 AND ($2 IS NULL OR phase = $2)
             ORDER BY idx LIMIT $3 OFFSET $4",
        )
        .bind(migration_id)
        .bind(phase)
        .bind(q.limit)
        .bind(q.offset)
        .all(self.pool(), "listing a page of buckets")
        .await?;
        let total: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM buckets WHERE migration_id = $1 AND ($2 IS NULL OR phase = $2)",
        )
        .bind(migration_id)
        .bind(phase)
        .scalar(self.pool(), "counting buckets")
        .await?;
        Ok((buckets, total))
    }

    /// The newest job of each of `buckets` that has one.
    async fn newest_jobs_of(
        &self,
        migration_id: i64,
        buckets: &[Bucket],
    ) -> Result<Vec<(i64, Job)>> {
        if buckets.is_empty() {
            return Ok(Vec::new());
        }
        let list = (0..buckets.len())
            .map(|i| format!("${}", i + 2))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT * FROM jobs WHERE migration_id = $1 AND bucket_id IN ({list}) ORDER BY id DESC"
        );
        let mut q = sqlx::query(&sql).bind(migration_id);
        for b in buckets {
            q = q.bind(b.id);
        }
        let jobs: Vec<Job> = q.all(self.pool(), "reading the buckets' jobs").await?;
        let mut out: Vec<(i64, Job)> = Vec::new();
        for job in jobs {
            if let Some(b) = job.bucket_id {
                if !out.iter().any(|(id, _)| *id == b) {
                    out.push((b, job));
                }
            }
        }
        Ok(out)
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

    /// Every migration with its pace, ETA and accuracy over time, in a fixed
    /// number of queries whatever the number of migrations.
    pub async fn program_overview(&self, actor: &Actor) -> Result<Vec<ProgramLine>> {
        let summaries = self.migration_summaries().await?;
        let mut forecasts = self.forecasts(None).await?;
        // One row per migration, its samples packed as `at:rows,…` in order.
        let mut samples: std::collections::BTreeMap<i64, Vec<(i64, i64)>> = Default::default();
        let packed: Vec<(i64, String)> = sqlx::query(
            "SELECT migration_id,
                    string_agg(CAST(at AS TEXT) || ':' || CAST(rows_done AS TEXT), ',' ORDER BY at) AS s
             FROM throughput_samples WHERE at >= $1 GROUP BY migration_id",
        )
        .bind(crate::clock::now_ms() - PACE_WINDOW_MS)
        .all(self.pool(), "reading throughput samples")
        .await?;
        for (id, packed) in packed {
            let points = crate::store::unpack(
                &packed,
                2,
                &format!("the throughput samples of migration {id}"),
                |f| Some((f[0].parse().ok()?, f[1].parse().ok()?)),
            )?;
            samples.insert(id, points);
        }
        let running: Vec<(i64, i64)> = sqlx::query(
            "SELECT migration_id, COUNT(*) AS n FROM jobs WHERE state = 'running' AND migration_id IS NOT NULL
             GROUP BY migration_id",
        )
        .all(self.pool(), "counting running jobs")
        .await?;
        let running: std::collections::BTreeMap<i64, i64> = running.into_iter().collect();
        let crate::verify_runs::Histories {
            total: mut accuracy,
            mut by_table,
        } = self.every_accuracy_history().await?;
        let latest = accuracy
            .iter()
            .filter_map(|(id, points)| points.last().map(|(_, a)| (*id, *a)))
            .collect();
        let mut blockers = self.blockers_of(actor, None, 3, &latest).await?;
        Ok(summaries
            .into_iter()
            .map(|summary| {
                let id = summary.migration.id;
                let pace = samples.get(&id).and_then(|s| throughput_of(s));
                let remaining = summary.planned_rows - summary.rows_copied;
                let eta = pace.as_ref().and_then(|p| eta(remaining, p));
                ProgramLine {
                    forecast: forecasts.remove(&id),
                    blockers: blockers.remove(&id).unwrap_or_default(),
                    accuracy: accuracy.remove(&id).unwrap_or_default(),
                    accuracy_by_table: by_table.remove(&id).unwrap_or_default(),
                    running_jobs: running.get(&id).copied().unwrap_or(0),
                    summary,
                    pace,
                    eta,
                }
            })
            .collect())
    }
}
