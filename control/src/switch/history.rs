//! The switches and rollbacks of a migration, newest first, with their hold
//! times: what the migration page lists.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::error::{ControlError, Result};
use crate::store::Store;

/// One switch or rollback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SwitchRecord {
    pub id: i64,
    pub migration_id: i64,
    /// `switch` or `rollback`.
    pub direction: String,
    /// The buckets' indexes in the migration.
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

pub(crate) fn switch_from_row(r: &sqlx::any::AnyRow) -> Result<SwitchRecord> {
    let get = |e| ControlError::db("reading a switch")(e);
    let buckets: String = r.try_get("buckets").map_err(get)?;
    Ok(SwitchRecord {
        id: r.try_get("id").map_err(get)?,
        migration_id: r.try_get("migration_id").map_err(get)?,
        direction: r.try_get("direction").map_err(get)?,
        buckets: buckets
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .collect(),
        state: r.try_get("state").map_err(get)?,
        actor: r.try_get("actor").map_err(get)?,
        reason: r.try_get("reason").map_err(get)?,
        hold_version: r.try_get("hold_version").map_err(get)?,
        clients_expected: r.try_get("clients_expected").map_err(get)?,
        clients_acked: r.try_get("clients_acked").map_err(get)?,
        started_at: r.try_get("started_at").map_err(get)?,
        finished_at: r.try_get("finished_at").map_err(get)?,
        hold_ms: r.try_get("hold_ms").map_err(get)?,
        error: r.try_get("error").map_err(get)?,
    })
}

impl Store {
    /// The latest switches and rollbacks of a migration, newest first.
    pub async fn list_switches(&self, migration_id: i64, limit: i64) -> Result<Vec<SwitchRecord>> {
        let rows =
            sqlx::query("SELECT * FROM switches WHERE migration_id = $1 ORDER BY id DESC LIMIT $2")
                .bind(migration_id)
                .bind(limit.clamp(1, 1000))
                .fetch_all(self.pool())
                .await
                .map_err(ControlError::db("listing switches"))?;
        rows.iter().map(switch_from_row).collect()
    }

    /// One switch or rollback.
    pub async fn switch_record(&self, id: i64) -> Result<SwitchRecord> {
        let row = sqlx::query("SELECT * FROM switches WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(ControlError::db("reading a switch"))?
            .ok_or_else(|| ControlError::NotFound(format!("there is no switch {id}")))?;
        switch_from_row(&row)
    }

    /// When the migration was marked complete (decommissioned), if it was.
    pub async fn migration_completed_at(&self, migration_id: i64) -> Result<Option<i64>> {
        sqlx::query("SELECT completed_at FROM migrations WHERE id = $1")
            .bind(migration_id)
            .fetch_optional(self.pool())
            .await
            .map_err(ControlError::db("reading whether a migration is complete"))?
            .ok_or_else(|| ControlError::NotFound(format!("there is no migration {migration_id}")))?
            .try_get("completed_at")
            .map_err(ControlError::db("reading whether a migration is complete"))
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
        let rows = sqlx::query(
            "SELECT m.id, m.name, m.completed_at, COUNT(b.id) AS buckets,
                    COALESCE(SUM(CASE WHEN b.write_primary = 'new' THEN 1 ELSE 0 END), 0) AS switched
             FROM migrations m JOIN buckets b ON b.migration_id = m.id
             WHERE m.status = 'active'
               AND (m.completed_at IS NOT NULL
                    OR EXISTS (SELECT 1 FROM switches s WHERE s.migration_id = m.id))
             GROUP BY m.id, m.name, m.completed_at ORDER BY m.name",
        )
        .fetch_all(self.pool())
        .await
        .map_err(ControlError::db("reading the sources of truth"))?;
        let get = |e| ControlError::db("reading a source of truth")(e);
        let mut out = Vec::new();
        for r in &rows {
            let id: i64 = r.try_get("id").map_err(get)?;
            let switched: i64 = r.try_get("switched").map_err(get)?;
            let completed_at: Option<i64> = r.try_get("completed_at").map_err(get)?;
            let history = self.list_switches(id, 1).await?;
            if switched == 0 && completed_at.is_none() && history.is_empty() {
                continue;
            }
            out.push(SourceOfTruth {
                migration_id: id,
                migration: r.try_get("name").map_err(get)?,
                buckets: r.try_get("buckets").map_err(get)?,
                switched,
                drifted: self.drifted_buckets(id).await?,
                completed_at,
                last_hold_ms: history.first().and_then(|s| s.hold_ms),
            });
        }
        Ok(out)
    }
}
