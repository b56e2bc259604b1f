//! Migrations: a named move of data from a source to a target database, with
//! its spec and its buckets. (Not to be confused with the control store's own
//! schema migrations in `migrations/`.)

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::audit::{self, AuditEntry};
use crate::buckets::{BucketPlan, Phase, insert_buckets};
use crate::clock::now_ms;
use crate::error::{ControlError, Result};
use crate::store::Store;
use crate::users::Actor;

/// A stored migration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Migration {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub spec: String,
    pub status: String,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

fn migration_from_row(row: &sqlx::any::AnyRow) -> Result<Migration> {
    let get = |e| ControlError::db("reading a migration")(e);
    Ok(Migration {
        id: row.try_get("id").map_err(get)?,
        name: row.try_get("name").map_err(get)?,
        description: row.try_get("description").map_err(get)?,
        spec: row.try_get("spec").map_err(get)?,
        status: row.try_get("status").map_err(get)?,
        created_by: row.try_get("created_by").map_err(get)?,
        created_at: row.try_get("created_at").map_err(get)?,
        updated_at: row.try_get("updated_at").map_err(get)?,
    })
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
        let row = sqlx::query(
            "INSERT INTO migrations (name, description, spec, status, created_by, created_at, updated_at)
             VALUES ($1, $2, $3, 'active', $4, $5, $5) RETURNING id",
        )
        .bind(&new.name)
        .bind(new.description.trim())
        .bind(&new.spec)
        .bind(&actor.name)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(ControlError::db(format!("creating migration {}", new.name)))
        .map_err(|e| {
            if e.is_unique_violation() {
                ControlError::Conflict(format!(
                    "a migration named `{}` already exists: choose another name",
                    new.name
                ))
            } else {
                e
            }
        })?;
        let id: i64 = row
            .try_get("id")
            .map_err(ControlError::db("reading a migration id"))?;
        insert_buckets(&mut tx, id, &new.buckets).await?;
        audit::record(
            &mut tx,
            AuditEntry::new(actor, "migration.create", "migration", &new.name)
                .to_state("active")
                .details(serde_json::json!({ "buckets": new.buckets.len() })),
        )
        .await?;
        tx.commit()
            .await
            .map_err(ControlError::db("committing a new migration"))?;
        self.migration(id).await
    }

    /// The migration with this id.
    pub async fn migration(&self, id: i64) -> Result<Migration> {
        let row = sqlx::query("SELECT * FROM migrations WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(ControlError::db(format!("reading migration {id}")))?;
        match row {
            Some(row) => migration_from_row(&row),
            None => Err(ControlError::NotFound(format!(
                "there is no migration {id}"
            ))),
        }
    }

    /// Every migration with its bucket counts, active first, then by name.
    pub async fn migration_summaries(&self) -> Result<Vec<MigrationSummary>> {
        let rows = sqlx::query("SELECT * FROM migrations ORDER BY status, name")
            .fetch_all(self.pool())
            .await
            .map_err(ControlError::db("listing migrations"))?;
        let migrations = rows
            .iter()
            .map(migration_from_row)
            .collect::<Result<Vec<_>>>()?;

        let counts = sqlx::query(
            "SELECT migration_id, phase, COUNT(*) AS n,
                    CAST(SUM(planned_rows) AS BIGINT) AS planned,
                    CAST(SUM(rows_copied) AS BIGINT) AS copied
             FROM buckets GROUP BY migration_id, phase",
        )
        .fetch_all(self.pool())
        .await
        .map_err(ControlError::db("counting buckets per phase"))?;
        let mut per_migration: BTreeMap<i64, (BTreeMap<Phase, i64>, i64, i64)> = BTreeMap::new();
        for row in &counts {
            let get = |e| ControlError::db("reading bucket counts")(e);
            let id: i64 = row.try_get("migration_id").map_err(get)?;
            let phase: String = row.try_get("phase").map_err(get)?;
            let n: i64 = row.try_get("n").map_err(get)?;
            let planned: i64 = row
                .try_get::<Option<i64>, _>("planned")
                .map_err(get)?
                .unwrap_or(0);
            let copied: i64 = row
                .try_get::<Option<i64>, _>("copied")
                .map_err(get)?
                .unwrap_or(0);
            let entry = per_migration.entry(id).or_default();
            *entry.0.entry(Phase::parse(&phase)?).or_default() += n;
            entry.1 += planned;
            entry.2 += copied;
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
