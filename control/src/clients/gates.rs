//! A migration's gates in the store: the limits a read ramp must pass above
//! its threshold (verification accuracy, shadow mismatch rate) and the
//! decommission limits, read, set and measured. The rules are in `rules.rs`.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use tern_ramp::Ramp;

use crate::audit::{self, AuditEntry};
use crate::clients::model::Client;
use crate::clients::rules::{GateInputs, Gates, gate_reasons};
use crate::clock::now_ms;
use crate::error::{ControlError, Result};
use crate::store::Store;
use crate::users::Actor;

/// Whether the gates let a ramp through, and why not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateCheck {
    /// True when the ramp needs no gate or every gate holds.
    pub allowed: bool,
    /// One sentence per gate that does not hold.
    pub reasons: Vec<String>,
    pub threshold: i64,
    pub accuracy: Option<f64>,
    pub mismatch_rate: Option<f64>,
    pub samples: i64,
}

impl Store {
    /// A migration's gates (the defaults until an engineer sets them).
    pub async fn gates(&self, migration_id: i64) -> Result<Gates> {
        let row = sqlx::query("SELECT * FROM client_gates WHERE migration_id = $1")
            .bind(migration_id)
            .fetch_optional(self.pool())
            .await
            .map_err(ControlError::db("reading a migration's gates"))?;
        let Some(row) = row else {
            return Ok(Gates::defaults(migration_id));
        };
        gates_from_row(&row)
    }

    /// Sets a migration's gates (engineers and admins).
    pub async fn set_gates(&self, actor: &Actor, gates: &Gates) -> Result<Gates> {
        actor.require_operate("setting a migration's gates")?;
        gates.validate()?;
        let migration = self.migration(gates.migration_id).await?;
        let before = self.gates(gates.migration_id).await?;
        let mut tx = self.begin().await?;
        ensure_gates_row(&mut tx, gates.migration_id).await?;
        sqlx::query(
            "UPDATE client_gates SET ramp_threshold = $1, min_accuracy = $2, max_mismatch_rate = $3,
                    mismatch_window_ms = $4, quiet_days = $5, lock_days = $6 WHERE migration_id = $7",
        )
        .bind(gates.ramp_threshold)
        .bind(gates.min_accuracy)
        .bind(gates.max_mismatch_rate)
        .bind(gates.mismatch_window_ms)
        .bind(gates.quiet_days)
        .bind(gates.lock_days)
        .bind(gates.migration_id)
        .execute(&mut *tx)
        .await
        .map_err(ControlError::db("setting a migration's gates"))?;
        audit::record(
            &mut tx,
            AuditEntry::new(actor, "gates.set", "migration", &migration.name)
                .details(serde_json::json!({ "before": before, "after": gates })),
        )
        .await?;
        tx.commit()
            .await
            .map_err(ControlError::db("committing a migration's gates"))?;
        self.gates(gates.migration_id).await
    }

    /// The latest verification accuracy of a migration (row-weighted over
    /// every bucket's latest run), if any run finished.
    pub async fn latest_accuracy(&self, migration_id: i64) -> Result<Option<f64>> {
        Ok(self
            .accuracy_history(migration_id)
            .await?
            .last()
            .map(|(_, a)| *a))
    }

    /// The client's shadow mismatch rate (percent) and sample count over `window_ms`.
    pub async fn mismatch_rate(
        &self,
        client_id: i64,
        window_ms: i64,
    ) -> Result<(Option<f64>, i64)> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, COALESCE(SUM(CASE WHEN matched = 0 THEN 1 ELSE 0 END), 0) AS bad
             FROM shadow_results WHERE client_id = $1 AND at >= $2",
        )
        .bind(client_id)
        .bind(now_ms() - window_ms)
        .fetch_one(self.pool())
        .await
        .map_err(ControlError::db("measuring a client's mismatch rate"))?;
        let n: i64 = row
            .try_get("n")
            .map_err(ControlError::db("reading a count"))?;
        let bad: i64 = row
            .try_get("bad")
            .map_err(ControlError::db("reading a count"))?;
        Ok(((n > 0).then(|| bad as f64 * 100.0 / n as f64), n))
    }

    /// Whether the gates let `client` ramp to `to`, and why not.
    pub async fn check_gates(&self, client: &Client, to: Ramp) -> Result<GateCheck> {
        let gates = self.gates(client.migration_id).await?;
        let accuracy = self.latest_accuracy(client.migration_id).await?;
        let (mismatch_rate, samples) = self
            .mismatch_rate(client.id, gates.mismatch_window_ms)
            .await?;
        let inputs = GateInputs {
            client: &client.name,
            current: client.ramp,
            accuracy,
            mismatch_rate,
        };
        let reasons = gate_reasons(&gates, &inputs, to);
        Ok(GateCheck {
            allowed: reasons.is_empty(),
            reasons,
            threshold: gates.ramp_threshold,
            accuracy,
            mismatch_rate,
            samples,
        })
    }
}

/// A migration's gates from a `client_gates` row.
pub(crate) fn gates_from_row(row: &sqlx::any::AnyRow) -> Result<Gates> {
    let get = |e| ControlError::db("reading a migration's gates")(e);
    Ok(Gates {
        migration_id: row.try_get("migration_id").map_err(get)?,
        ramp_threshold: row.try_get("ramp_threshold").map_err(get)?,
        min_accuracy: row.try_get("min_accuracy").map_err(get)?,
        max_mismatch_rate: row.try_get("max_mismatch_rate").map_err(get)?,
        mismatch_window_ms: row.try_get("mismatch_window_ms").map_err(get)?,
        quiet_days: row.try_get("quiet_days").map_err(get)?,
        lock_days: row.try_get("lock_days").map_err(get)?,
    })
}

pub(crate) async fn ensure_gates_row(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    migration_id: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO client_gates (migration_id) VALUES ($1) ON CONFLICT (migration_id) DO NOTHING",
    )
    .bind(migration_id)
    .execute(&mut **tx)
    .await
    .map_err(ControlError::db("creating a migration's gates"))?;
    Ok(())
}
