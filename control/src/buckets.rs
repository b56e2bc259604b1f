//! Buckets: slices of a migration's key space of about equal row count, each
//! moving through the phases on its own.

use serde::{Deserialize, Serialize};

use crate::audit::{self, AuditEntry};
use crate::clock::now_ms;
use crate::db::Run;
use crate::error::{ControlError, Result};
use crate::phases;
pub use crate::phases::Phase;
use crate::store::Store;
use crate::users::Actor;

/// A planned bucket, before it is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketPlan {
    pub idx: i64,
    /// Inclusive lower bound of the bucket column (None: unbounded).
    pub lo: Option<String>,
    /// Exclusive upper bound (None: unbounded).
    pub hi: Option<String>,
    pub planned_rows: i64,
    /// The target table the bucket belongs to, and its index among that table's buckets.
    pub table_name: Option<String>,
    pub table_bucket: Option<i64>,
}

/// A stored bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Bucket {
    pub id: i64,
    pub migration_id: i64,
    pub idx: i64,
    pub lo: Option<String>,
    pub hi: Option<String>,
    pub planned_rows: i64,
    pub rows_copied: i64,
    pub phase: Phase,
    pub updated_at: i64,
    /// Where a paused or failed bucket returns to.
    pub resume_phase: Option<Phase>,
    /// When the bucket entered its current phase.
    pub phase_since: Option<i64>,
    /// Bulk load: when the capture start point was fixed, before the first row was read.
    pub snapshot_at: Option<i64>,
    /// The changelog position at that moment (catch-up starts here).
    pub watermark: Option<String>,
    pub loaded_at: Option<i64>,
    /// When the relay began writing this bucket's keys (its dual-write ramp).
    pub dual_write_at: Option<i64>,
    /// The catch-up window: from this changelog position …
    pub catch_up_from: Option<String>,
    /// … to this one.
    pub catch_up_to: Option<String>,
    pub caught_up_at: Option<i64>,
    pub verified_at: Option<i64>,
    pub switched_at: Option<i64>,
    /// Latest verification accuracy, percent.
    pub accuracy: Option<f64>,
    pub lag_changes: Option<i64>,
    pub lag_seconds: Option<f64>,
    pub last_error: Option<String>,
    /// The batch the bucket belongs to, once batches are planned.
    pub batch_id: Option<i64>,
    /// The target table, and the bucket's index among that table's buckets.
    pub table_name: Option<String>,
    pub table_bucket: Option<i64>,
    /// The store that takes the bucket's writes first: `old` until it is
    /// switched, then `new` (issue 17).
    pub write_primary: String,
    /// The switch or rollback holding the bucket's writes, if any.
    pub held_by: Option<i64>,
    /// Rows the last drift check of a switched bucket found different
    /// between the stores, and when it ran.
    pub drift_rows: Option<i64>,
    pub drift_checked_at: Option<i64>,
}

impl Store {
    /// The buckets of a migration, by index.
    pub async fn list_buckets(&self, migration_id: i64) -> Result<Vec<Bucket>> {
        sqlx::query("SELECT * FROM buckets WHERE migration_id = $1 ORDER BY idx")
            .bind(migration_id)
            .all(
                self.pool(),
                format!("listing buckets of migration {migration_id}"),
            )
            .await
    }

    /// The bucket with this id.
    pub async fn bucket(&self, id: i64) -> Result<Bucket> {
        sqlx::query("SELECT * FROM buckets WHERE id = $1")
            .bind(id)
            .found(self.pool(), format!("bucket {id}"))
            .await
    }

    /// The bucket of a migration with this index.
    pub async fn bucket_by_idx(&self, migration_id: i64, idx: i64) -> Result<Bucket> {
        sqlx::query("SELECT * FROM buckets WHERE migration_id = $1 AND idx = $2")
            .bind(migration_id)
            .bind(idx)
            .optional(self.pool(), format!("reading bucket {idx}"))
            .await?
            .ok_or_else(|| {
                ControlError::NotFound(format!("migration {migration_id} has no bucket {idx}"))
            })
    }

    /// Records how many rows a bucket's bulk load has copied so far.
    pub async fn set_bucket_rows_copied(&self, bucket_id: i64, rows: i64) -> Result<()> {
        sqlx::query("UPDATE buckets SET rows_copied = $1, updated_at = $2 WHERE id = $3")
            .bind(rows)
            .bind(now_ms())
            .bind(bucket_id)
            .run(
                self.pool(),
                format!("recording rows copied of bucket {bucket_id}"),
            )
            .await?;
        Ok(())
    }

    /// Aligns a bucket with the plan the engine fixed at its first load (the
    /// data may have moved since the migration was planned).
    pub async fn sync_bucket_plan(
        &self,
        bucket_id: i64,
        lo: Option<&str>,
        hi: Option<&str>,
        planned_rows: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE buckets SET lo = $1, hi = $2, planned_rows = $3, updated_at = $4 WHERE id = $5",
        )
        .bind(lo)
        .bind(hi)
        .bind(planned_rows)
        .bind(now_ms())
        .bind(bucket_id)
        .run(
            self.pool(),
            format!("updating the plan of bucket {bucket_id}"),
        )
        .await?;
        Ok(())
    }

    /// Records a bucket's bulk-load snapshot: when its capture start point
    /// was fixed and the changelog position then (its watermark).
    pub async fn record_bucket_snapshot(
        &self,
        bucket_id: i64,
        snapshot_at: i64,
        watermark: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE buckets SET snapshot_at = $1, watermark = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(snapshot_at)
        .bind(watermark)
        .bind(now_ms())
        .bind(bucket_id)
        .run(
            self.pool(),
            format!("recording the snapshot of bucket {bucket_id}"),
        )
        .await?;
        Ok(())
    }
}

/// Moves a bucket inside the caller's transaction: checks the move against the
/// state machine, stamps the phase's moment, and writes the audit event.
pub async fn move_bucket_in(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    actor: &Actor,
    bucket_id: i64,
    to: Phase,
    reason: &str,
) -> Result<Bucket> {
    let bucket: Bucket = sqlx::query("SELECT * FROM buckets WHERE id = $1")
        .bind(bucket_id)
        .found(&mut **tx, format!("bucket {bucket_id}"))
        .await?;
    let what = format!("bucket {} of migration {}", bucket.idx, bucket.migration_id);
    phases::check_move(&what, bucket.phase, bucket.resume_phase, to)?;
    let resume = phases::resume_phase_after(bucket.phase, to, bucket.resume_phase);
    let now = now_ms();
    let stamp = match to {
        Phase::Loaded => ", loaded_at = $3",
        Phase::CaughtUp => ", caught_up_at = $3",
        Phase::Verified => ", verified_at = $3",
        Phase::Switched => ", switched_at = $3",
        _ => "",
    };
    let sql = format!(
        "UPDATE buckets SET phase = $1, resume_phase = $2, phase_since = $3, updated_at = $3{stamp},
                last_error = CASE WHEN $1 = 'failed' THEN $4 ELSE last_error END
         WHERE id = $5 AND phase = $6"
    );
    let changed = sqlx::query(&sql)
        .bind(to.as_str())
        .bind(resume.map(Phase::as_str))
        .bind(now)
        .bind(reason)
        .bind(bucket_id)
        .bind(bucket.phase.as_str())
        .run(&mut **tx, format!("moving {what} to {to}"))
        .await?;
    if changed == 0 {
        return Err(ControlError::Conflict(format!(
            "{what} changed phase meanwhile: reload and try again"
        )));
    }
    audit::record(tx, phase_entry(actor, "bucket.phase", &bucket, to, reason)).await?;
    Ok(bucket)
}

/// The audit entry of `bucket` moving to `to`: `action` is `bucket.phase`,
/// or `bucket.phase.override` for an admin's move without its evidence.
pub(crate) fn phase_entry(
    actor: &Actor,
    action: &str,
    bucket: &Bucket,
    to: Phase,
    reason: &str,
) -> AuditEntry {
    let entity = format!("{}/{}", bucket.migration_id, bucket.idx);
    AuditEntry::new(actor, action, "bucket", entity)
        .from_state(bucket.phase.as_str())
        .to_state(to.as_str())
        .reason(reason)
}

/// Stores planned buckets inside the caller's transaction.
pub(crate) async fn insert_buckets(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    migration_id: i64,
    plans: &[BucketPlan],
) -> Result<()> {
    let now = now_ms();
    for plan in plans {
        sqlx::query(
            "INSERT INTO buckets (migration_id, idx, lo, hi, planned_rows, rows_copied, phase,
                                  updated_at, phase_since, table_name, table_bucket)
             VALUES ($1, $2, $3, $4, $5, 0, 'planned', $6, $6, $7, $8)",
        )
        .bind(migration_id)
        .bind(plan.idx)
        .bind(plan.lo.as_deref())
        .bind(plan.hi.as_deref())
        .bind(plan.planned_rows)
        .bind(now)
        .bind(plan.table_name.as_deref())
        .bind(plan.table_bucket)
        .run(
            &mut **tx,
            format!("storing bucket {} of migration {migration_id}", plan.idx),
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_names_round_trip() {
        for p in Phase::ALL {
            assert_eq!(Phase::parse(p.as_str()).ok(), Some(p));
        }
        assert!(Phase::parse("copying").is_err());
    }
}
