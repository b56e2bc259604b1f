//! Migrations: a named move of data from a source to a target database, with
//! its spec and its buckets. (Not to be confused with the control store's own
//! schema migrations in `migrations/`.)

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::audit::{self, AuditEntry};
use crate::buckets::{BucketPlan, Phase, insert_buckets};
use crate::clock::now_ms;
use crate::db::Run;
use crate::error::{ControlError, Result};
use crate::store::Store;
use crate::users::Actor;

/// A stored migration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Migration {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub spec: String,
    pub status: String,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
    #[sqlx(flatten)]
    pub settings: MigrationSettings,
    pub next_batch_at: Option<i64>,
    pub archived_at: Option<i64>,
}

/// What an engineer tunes while a migration runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct MigrationSettings {
    /// Rows per chunk for bulk loads and verification.
    pub chunk_size: i64,
    /// Rows per second for new jobs (running ones keep their own, changed per job); None = unthrottled.
    pub rate_limit: Option<f64>,
    /// A bucket counts as verified at or above this accuracy (percent).
    pub verify_min_accuracy: f64,
    /// Start the next planned batch every this many hours while the gates hold; None = off.
    pub schedule_every_hours: Option<f64>,
}

impl Default for MigrationSettings {
    fn default() -> Self {
        MigrationSettings {
            chunk_size: 5000,
            rate_limit: None,
            verify_min_accuracy: 100.0,
            schedule_every_hours: None,
        }
    }
}

impl MigrationSettings {
    /// Refuses settings that cannot work, naming the setting.
    pub fn validate(&self) -> Result<()> {
        if !(100..=1_000_000).contains(&self.chunk_size) {
            return Err(ControlError::Invalid(format!(
                "chunk size {} is not valid: use 100 to 1,000,000 rows",
                self.chunk_size
            )));
        }
        if let Some(r) = self.rate_limit {
            if !(r.is_finite() && r > 0.0) {
                return Err(ControlError::Invalid(format!(
                    "rate limit {r} is not valid: give rows per second above 0, or none"
                )));
            }
        }
        if !(0.0..=100.0).contains(&self.verify_min_accuracy) {
            return Err(ControlError::Invalid(format!(
                "verification gate {}% is not valid: use a percentage from 0 to 100",
                self.verify_min_accuracy
            )));
        }
        if let Some(h) = self.schedule_every_hours {
            if !(h.is_finite() && (0.01..=24.0 * 90.0).contains(&h)) {
                return Err(ControlError::Invalid(format!(
                    "a schedule every {h} hours is not valid: use 0.01 to 2160 hours, or none to turn it off"
                )));
            }
        }
        Ok(())
    }
}

/// What creating a migration needs.
#[derive(Debug, Clone)]
pub struct NewMigration {
    pub name: String,
    pub description: String,
    /// The migration spec (TOML), as written by the user.
    pub spec: String,
    pub buckets: Vec<BucketPlan>,
}

/// A migration with the counts the overview shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MigrationSummary {
    pub migration: Migration,
    pub buckets: i64,
    /// Buckets per phase, in playbook order; phases with no bucket are left out.
    pub phases: Vec<(Phase, i64)>,
    pub planned_rows: i64,
    pub rows_copied: i64,
}

fn validate_name(name: &str) -> Result<()> {
    let ok = (2..=80).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ControlError::Invalid(format!(
            "migration name `{name}` is not valid: use 2 to 80 letters, digits, `-`, `_` or `.`"
        )))
    }
}

impl Store {
    /// Creates a migration with its planned buckets (audited).
    pub async fn create_migration(&self, actor: &Actor, new: NewMigration) -> Result<Migration> {
        actor.require_operate("creating a migration")?;
        validate_name(&new.name)?;
        if new.spec.trim().is_empty() {
            return Err(ControlError::Invalid(format!(
                "migration `{}` has an empty spec: paste or upload the TOML spec",
                new.name
            )));
        }
        let now = now_ms();
        let mut tx = self.begin().await?;
        let id: i64 = sqlx::query(
            "INSERT INTO migrations (name, description, spec, status, created_by, created_at, updated_at)
             VALUES ($1, $2, $3, 'active', $4, $5, $5) RETURNING id",
        )
        .bind(&new.name)
        .bind(new.description.trim())
        .bind(&new.spec)
        .bind(&actor.name)
        .bind(now)
        .scalar(&mut *tx, format!("creating migration {}", new.name))
        .await
        .map_err(|e| {
            e.or_conflict(|| {
                format!(
                    "a migration named `{}` already exists: choose another name",
                    new.name
                )
            })
        })?;
        insert_buckets(&mut tx, id, &new.buckets).await?;
        let entry = AuditEntry::new(actor, "migration.create", "migration", &new.name)
            .to_state("active")
            .details(serde_json::json!({ "buckets": new.buckets.len() }));
        audit::commit(tx, entry, "committing a new migration").await?;
        self.migration(id).await
    }

    /// Changes a migration's settings (audited with the old and new values).
    pub async fn update_migration_settings(
        &self,
        actor: &Actor,
        id: i64,
        settings: &MigrationSettings,
        reason: &str,
    ) -> Result<Migration> {
        actor.require_operate("changing a migration's settings")?;
        settings.validate()?;
        let before = self.migration(id).await?;
        let now = now_ms();
        let next_batch_at = match (settings.schedule_every_hours, before.next_batch_at) {
            (Some(h), None) => Some(now + (h * 3_600_000.0) as i64),
            (Some(_), at) => at,
            (None, _) => None,
        };
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE migrations SET chunk_size = $1, rate_limit = $2, verify_min_accuracy = $3,
                    schedule_every_hours = $4, next_batch_at = $5, updated_at = $6
             WHERE id = $7",
        )
        .bind(settings.chunk_size)
        .bind(settings.rate_limit)
        .bind(settings.verify_min_accuracy)
        .bind(settings.schedule_every_hours)
        .bind(next_batch_at)
        .bind(now)
        .bind(id)
        .run(&mut *tx, format!("changing the settings of migration {id}"))
        .await?;
        let entry = AuditEntry::new(actor, "migration.settings", "migration", &before.name)
            .reason(reason)
            .details(serde_json::json!({ "from": before.settings, "to": settings }));
        audit::commit(tx, entry, "committing new settings").await?;
        self.migration(id).await
    }

    /// Archives a migration: it leaves the overview's active list and no job
    /// starts for it. Refused while a job of it is queued or running.
    pub async fn archive_migration(
        &self,
        actor: &Actor,
        id: i64,
        reason: &str,
    ) -> Result<Migration> {
        actor.require_operate("archiving a migration")?;
        let before = self.migration(id).await?;
        let busy: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM jobs WHERE migration_id = $1 AND state IN ('queued', 'running')",
        )
        .bind(id)
        .scalar(self.pool(), "counting a migration's jobs")
        .await?;
        if busy > 0 {
            return Err(ControlError::Conflict(format!(
                "migration `{}` has {busy} queued or running job(s): pause or cancel them first",
                before.name
            )));
        }
        if before.status == "archived" {
            return Err(ControlError::Conflict(format!(
                "migration `{}` is archived already",
                before.name
            )));
        }
        let now = now_ms();
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE migrations SET status = 'archived', archived_at = $1, updated_at = $1,
                    schedule_every_hours = NULL, next_batch_at = NULL
             WHERE id = $2",
        )
        .bind(now)
        .bind(id)
        .run(&mut *tx, format!("archiving migration {id}"))
        .await?;
        let entry = AuditEntry::new(actor, "migration.archive", "migration", &before.name)
            .from_state(before.status.as_str())
            .to_state("archived")
            .reason(reason);
        audit::commit(tx, entry, "committing an archive").await?;
        self.migration(id).await
    }

    /// The migration with this id.
    pub async fn migration(&self, id: i64) -> Result<Migration> {
        sqlx::query("SELECT * FROM migrations WHERE id = $1")
            .bind(id)
            .found(self.pool(), format!("migration {id}"))
            .await
    }

    /// Every migration with its bucket counts, active first, then by name.
    pub async fn migration_summaries(&self) -> Result<Vec<MigrationSummary>> {
        self.summaries(None).await
    }

    /// One migration with its bucket counts.
    pub async fn migration_summary(&self, id: i64) -> Result<MigrationSummary> {
        self.summaries(Some(id))
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| ControlError::NotFound(format!("there is no migration {id}")))
    }

    async fn summaries(&self, only: Option<i64>) -> Result<Vec<MigrationSummary>> {
        let migrations: Vec<Migration> = sqlx::query(
            "SELECT * FROM migrations WHERE ($1 IS NULL OR id = $1) ORDER BY status, name",
        )
        .bind(only)
        .all(self.pool(), "listing migrations")
        .await?;

        // Two statements, so that each can use the covering index its own way
        // (a seek for one migration, an ordered scan for all). One row per
        // migration, its phases packed as `phase:buckets:planned:copied,…`:
        // rows, not bytes, are what a read through the store costs.
        let packed = |where_: &str| {
            format!(
                "SELECT migration_id, string_agg(phase || ':' || CAST(n AS TEXT) || ':' ||
                        CAST(COALESCE(planned, 0) AS TEXT) || ':' || CAST(COALESCE(copied, 0) AS TEXT), ',') AS phases
                 FROM (SELECT migration_id, phase, COUNT(*) AS n,
                              CAST(SUM(planned_rows) AS BIGINT) AS planned,
                              CAST(SUM(rows_copied) AS BIGINT) AS copied
                       FROM buckets{where_} GROUP BY migration_id, phase) AS per_phase
                 GROUP BY migration_id"
            )
        };
        let (sql, doing) = (
            packed(" WHERE migration_id = $1"),
            "counting buckets per phase",
        );
        let counts: Vec<(i64, String)> = match only {
            Some(id) => sqlx::query(&sql).bind(id).all(self.pool(), doing).await?,
            None => sqlx::query(&packed("")).all(self.pool(), doing).await?,
        };
        let mut per_migration: BTreeMap<i64, (BTreeMap<Phase, i64>, i64, i64)> = BTreeMap::new();
        for (id, phases) in counts {
            let entry = per_migration.entry(id).or_default();
            let counts = crate::store::unpack(
                &phases,
                4,
                &format!("the bucket counts of migration {id}"),
                |f| {
                    Some((
                        f[0].to_string(),
                        f[1].parse::<i64>().ok()?,
                        f[2].parse::<i64>().ok()?,
                        f[3].parse::<i64>().ok()?,
                    ))
                },
            )?;
            for (phase, n, planned, copied) in counts {
                *entry.0.entry(Phase::parse(&phase)?).or_default() += n;
                entry.1 += planned;
                entry.2 += copied;
            }
        }
        Ok(migrations
            .into_iter()
            .map(|migration| {
                let (phases, planned_rows, rows_copied) =
                    per_migration.remove(&migration.id).unwrap_or_default();
                MigrationSummary {
                    buckets: phases.values().sum(),
                    phases: phases.into_iter().collect(),
                    planned_rows,
                    rows_copied,
                    migration,
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::validate_name;

    #[test]
    fn migration_names_are_checked() {
        assert!(validate_name("contacts-2026").is_ok());
        assert!(validate_name("x").is_err());
        assert!(validate_name("has space").is_err());
    }
}
