//! Drift watch: switched buckets are re-verified on a schedule until the
//! migration is decommissioned; a bucket whose stores differ has drifted,
//! shows on the overview and gates further switches.

use serde::{Deserialize, Serialize};

use crate::clock::now_ms;
use crate::db::{self, Run};
use crate::error::Result;
use crate::store::Store;

/// The last drift check of one switched bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftCheck {
    pub idx: i64,
    pub rows: i64,
    pub checked_at: i64,
}

impl Store {
    /// Records what a re-verification of a switched bucket found (0 rows:
    /// the stores agree).
    pub async fn record_drift(&self, bucket_id: i64, rows: i64) -> Result<()> {
        sqlx::query("UPDATE buckets SET drift_rows = $1, drift_checked_at = $2 WHERE id = $3")
            .bind(rows.max(0))
            .bind(now_ms())
            .bind(bucket_id)
            .run(self.pool(), "recording a drift check")
            .await?;
        Ok(())
    }

    /// The buckets (indexes) whose writes go to the new store, and those
    /// whose writes are held now, read without the other buckets' rows (a
    /// migration page asks every few seconds).
    pub async fn switched_and_held(&self, migration_id: i64) -> Result<(Vec<i64>, Vec<i64>)> {
        let rows: Vec<(i64, i64, i64)> = sqlx::query(
            "SELECT idx, CASE WHEN write_primary = 'new' THEN 1 ELSE 0 END AS switched,
                    CASE WHEN held_by IS NOT NULL THEN 1 ELSE 0 END AS held
             FROM buckets
             WHERE migration_id = $1 AND (write_primary = 'new' OR held_by IS NOT NULL)
             ORDER BY idx",
        )
        .bind(migration_id)
        .all(self.pool(), "reading the switched buckets")
        .await?;
        let (mut switched, mut held) = (Vec::new(), Vec::new());
        for (idx, is_switched, is_held) in rows {
            if is_switched == 1 {
                switched.push(idx);
            }
            if is_held == 1 {
                held.push(idx);
            }
        }
        Ok((switched, held))
    }

    /// The switched buckets whose last check found the stores different.
    pub async fn drifted_buckets(&self, migration_id: i64) -> Result<Vec<i64>> {
        sqlx::query(
            "SELECT idx FROM buckets WHERE migration_id = $1 AND write_primary = 'new'
               AND drift_rows > 0 ORDER BY idx",
        )
        .bind(migration_id)
        .column(self.pool(), "reading drifted buckets")
        .await
    }

    /// The switched buckets due a drift check: never checked, or checked
    /// before `before` (Unix ms), oldest check first.
    pub async fn buckets_due_drift_check(
        &self,
        migration_id: i64,
        before: i64,
    ) -> Result<Vec<i64>> {
        sqlx::query(
            "SELECT id FROM buckets WHERE migration_id = $1 AND write_primary = 'new'
               AND held_by IS NULL AND (drift_checked_at IS NULL OR drift_checked_at < $2)
             ORDER BY COALESCE(drift_checked_at, 0), idx",
        )
        .bind(migration_id)
        .bind(before)
        .column(self.pool(), "reading buckets due a drift check")
        .await
    }
}

/// How often a switched bucket is re-verified (default: every 10 minutes).
pub const DRIFT_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

impl Store {
    /// The drift watch: for every active migration not yet complete, queues
    /// a full verification of each switched bucket not checked for
    /// `every` (one at a time per bucket). The verify runner records the
    /// result as the bucket's drift and leaves its phase alone. Answers the
    /// jobs queued.
    pub async fn run_drift_watch(&self, every: std::time::Duration) -> Result<Vec<i64>> {
        let migrations: Vec<i64> = sqlx::query(
            "SELECT id FROM migrations WHERE status = 'active' AND completed_at IS NULL",
        )
        .column(self.pool(), "listing migrations for the drift watch")
        .await?;
        let before = now_ms() - i64::try_from(every.as_millis()).unwrap_or(i64::MAX / 2);
        let mut queued = Vec::new();
        for migration_id in migrations {
            let due = self.buckets_due_drift_check(migration_id, before).await?;
            if due.is_empty() {
                continue;
            }
            let migration = self.migration(migration_id).await?;
            let mut tx = self.begin().await?;
            for bucket_id in due {
                let busy: i64 = sqlx::query(
                    "SELECT COUNT(*) AS n FROM jobs WHERE bucket_id = $1 AND state IN ('queued', 'running', 'paused')",
                )
                .bind(bucket_id)
                .scalar(&mut *tx, "looking for a bucket's jobs").await?;
                if busy > 0 {
                    continue;
                }
                let (table, index): (Option<String>, Option<i64>) =
                    sqlx::query("SELECT table_name, table_bucket FROM buckets WHERE id = $1")
                        .bind(bucket_id)
                        .one(&mut *tx, "reading a switched bucket")
                        .await?;
                let job = crate::jobs::NewJob {
                    migration_id: Some(migration_id),
                    bucket_id: Some(bucket_id),
                    kind: crate::jobs::JobKind::Verify,
                    params: serde_json::json!({
                        "table": table.unwrap_or_default(),
                        "table_bucket": index.unwrap_or_default(),
                        // A full diff, not an incremental one: after the
                        // switch the applications write the new store, whose
                        // changes the old store's changelog never sees (the
                        // reverse relay's writes are not logged there), so an
                        // incremental check read no key and found no drift.
                        "mode": "full",
                        "drift": true,
                    }),
                    rate_limit: migration.settings.rate_limit,
                };
                queued.push(
                    crate::jobs::enqueue(&mut tx, &crate::users::Actor::system(), &job).await?,
                );
            }
            db::commit(tx, "queueing drift checks").await?;
        }
        Ok(queued)
    }
}
