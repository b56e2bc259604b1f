//! The switches and rollbacks of a migration, newest first, with their hold
//! times: what the migration page lists.

use serde::{Deserialize, Serialize};

use crate::db::Run;
use crate::error::Result;
use crate::store::Store;

/// One switch or rollback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct SwitchRecord {
    pub id: i64,
    pub migration_id: i64,
    /// `switch` or `rollback`.
    pub direction: String,
    /// The buckets' indexes in the migration.
    #[sqlx(try_from = "IdList")]
    pub buckets: Vec<i64>,
    /// `holding`, `draining`, `done` or `aborted`.
    pub state: String,
    pub actor: String,
    pub reason: String,
    pub hold_version: Option<i64>,
    pub clients_expected: i64,
    pub clients_acked: i64,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    /// How long the buckets' writes were held, from hold to release.
    pub hold_ms: Option<i64>,
    /// Why an aborted switch stopped.
    pub error: Option<String>,
}

/// Bucket indexes as a switch stores them: `3,4,7`.
pub struct IdList(Vec<i64>);

impl IdList {
    fn parse(text: &str) -> Result<IdList> {
        Ok(IdList(
            text.split(',')
                .filter_map(|s| s.trim().parse().ok())
                .collect(),
        ))
    }
}

crate::db::stored_as_text!(IdList);

impl From<IdList> for Vec<i64> {
    fn from(list: IdList) -> Vec<i64> {
        list.0
    }
}

impl Store {
    /// The latest switches and rollbacks of a migration, newest first.
    pub async fn list_switches(&self, migration_id: i64, limit: i64) -> Result<Vec<SwitchRecord>> {
        sqlx::query("SELECT * FROM switches WHERE migration_id = $1 ORDER BY id DESC LIMIT $2")
            .bind(migration_id)
            .bind(limit.clamp(1, 1000))
            .all(self.pool(), "listing switches")
            .await
    }

    /// One switch or rollback.
    pub async fn switch_record(&self, id: i64) -> Result<SwitchRecord> {
        sqlx::query("SELECT * FROM switches WHERE id = $1")
            .bind(id)
            .found(self.pool(), format!("switch {id}"))
            .await
    }

    /// When the migration was marked complete (decommissioned), if it was.
    pub async fn migration_completed_at(&self, migration_id: i64) -> Result<Option<i64>> {
        let (completed_at,): (Option<i64>,) =
            sqlx::query("SELECT completed_at FROM migrations WHERE id = $1")
                .bind(migration_id)
                .found(self.pool(), format!("migration {migration_id}"))
                .await?;
        Ok(completed_at)
    }
}

/// Where a migration's source of truth stands, for the overview.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceOfTruth {
    pub migration_id: i64,
    pub migration: String,
    pub buckets: i64,
    /// Buckets whose writes go to the new store.
    pub switched: i64,
    /// Switched buckets whose last re-verification found the stores different.
    pub drifted: Vec<i64>,
    pub completed_at: Option<i64>,
    /// The hold of the latest finished switch or rollback.
    pub last_hold_ms: Option<i64>,
}

impl Store {
    /// Every active migration's source of truth that has begun to switch
    /// (or is complete). Only migrations with a switch (the only way a
    /// bucket's writes move to the new store) or completed have their
    /// buckets counted: the overview asks every few seconds.
    pub async fn sources_of_truth(&self) -> Result<Vec<SourceOfTruth>> {
        let rows: Vec<(i64, String, Option<i64>, i64, i64)> = sqlx::query(
            "SELECT m.id, m.name, m.completed_at, COUNT(b.id) AS buckets,
                    COALESCE(SUM(CASE WHEN b.write_primary = 'new' THEN 1 ELSE 0 END), 0) AS switched
             FROM migrations m JOIN buckets b ON b.migration_id = m.id
             WHERE m.status = 'active'
               AND (m.completed_at IS NOT NULL
                    OR EXISTS (SELECT 1 FROM switches s WHERE s.migration_id = m.id))
             GROUP BY m.id, m.name, m.completed_at ORDER BY m.name",
        )
        .all(self.pool(), "reading the sources of truth")
        .await?;
        let mut out = Vec::new();
        for (id, migration, completed_at, buckets, switched) in rows {
            let history = self.list_switches(id, 1).await?;
            if switched == 0 && completed_at.is_none() && history.is_empty() {
                continue;
            }
            out.push(SourceOfTruth {
                migration_id: id,
                migration,
                buckets,
                switched,
                drifted: self.drifted_buckets(id).await?,
                completed_at,
                last_hold_ms: history.first().and_then(|s| s.hold_ms),
            });
        }
        Ok(out)
    }
}
