//! Buckets: slices of a migration's key space of about equal row count, each
//! moving through the phases on its own.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::clock::now_ms;
use crate::error::{ControlError, Result};
use crate::store::Store;

/// Where a bucket stands in the playbook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    Planned,
    BulkLoading,
    Loaded,
    CatchingUp,
    CaughtUp,
    Verifying,
    Verified,
    ReadsSwitching,
    Switched,
    Done,
    Paused,
    Failed,
}

impl Phase {
    /// Every phase, in playbook order, then paused and failed.
    pub const ALL: [Phase; 12] = [
        Phase::Planned,
        Phase::BulkLoading,
        Phase::Loaded,
        Phase::CatchingUp,
        Phase::CaughtUp,
        Phase::Verifying,
        Phase::Verified,
        Phase::ReadsSwitching,
        Phase::Switched,
        Phase::Done,
        Phase::Paused,
        Phase::Failed,
    ];

    /// The phase's name as stored and shown (`bulk-loading`).
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Planned => "planned",
            Phase::BulkLoading => "bulk-loading",
            Phase::Loaded => "loaded",
            Phase::CatchingUp => "catching-up",
            Phase::CaughtUp => "caught-up",
            Phase::Verifying => "verifying",
            Phase::Verified => "verified",
            Phase::ReadsSwitching => "reads-switching",
            Phase::Switched => "switched",
            Phase::Done => "done",
            Phase::Paused => "paused",
            Phase::Failed => "failed",
        }
    }

    /// Parses a stored phase name.
    pub fn parse(s: &str) -> Result<Phase> {
        Phase::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| ControlError::Invalid(format!("unknown bucket phase `{s}`")))
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A planned bucket, before it is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketPlan {
    pub idx: i64,
    /// Inclusive lower bound of the bucket column (None: unbounded).
    pub lo: Option<String>,
    /// Exclusive upper bound (None: unbounded).
    pub hi: Option<String>,
    pub planned_rows: i64,
}

/// A stored bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
}

pub(crate) fn bucket_from_row(row: &sqlx::any::AnyRow) -> Result<Bucket> {
    let get = |e| ControlError::db("reading a bucket")(e);
    let phase: String = row.try_get("phase").map_err(get)?;
    Ok(Bucket {
        id: row.try_get("id").map_err(get)?,
        migration_id: row.try_get("migration_id").map_err(get)?,
        idx: row.try_get("idx").map_err(get)?,
        lo: row.try_get("lo").map_err(get)?,
        hi: row.try_get("hi").map_err(get)?,
        planned_rows: row.try_get("planned_rows").map_err(get)?,
        rows_copied: row.try_get("rows_copied").map_err(get)?,
        phase: Phase::parse(&phase)?,
        updated_at: row.try_get("updated_at").map_err(get)?,
    })
}

impl Store {
    /// The buckets of a migration, by index.
    pub async fn list_buckets(&self, migration_id: i64) -> Result<Vec<Bucket>> {
        let rows = sqlx::query("SELECT * FROM buckets WHERE migration_id = $1 ORDER BY idx")
            .bind(migration_id)
            .fetch_all(self.pool())
            .await
            .map_err(ControlError::db(format!(
                "listing buckets of migration {migration_id}"
            )))?;
        rows.iter().map(bucket_from_row).collect()
    }
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
            "INSERT INTO buckets (migration_id, idx, lo, hi, planned_rows, rows_copied, phase, updated_at)
             VALUES ($1, $2, $3, $4, $5, 0, 'planned', $6)",
        )
        .bind(migration_id)
        .bind(plan.idx)
        .bind(plan.lo.as_deref())
        .bind(plan.hi.as_deref())
        .bind(plan.planned_rows)
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(ControlError::db(format!(
            "storing bucket {} of migration {migration_id}",
            plan.idx
        )))?;
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
