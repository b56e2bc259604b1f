//! A migration's gates in the store: the limits a read ramp must pass above
//! its threshold (verification accuracy, shadow mismatch rate) and the
//! decommission limits, read, set and measured. The rules are in `rules.rs`.

use serde::{Deserialize, Serialize};
use tern_ramp::Ramp;

use crate::audit::{self, AuditEntry};
use crate::clients::model::Client;
use crate::clients::rules::{GateInputs, Gates, gate_reasons};
use crate::clock::now_ms;
use crate::db::Run;
use crate::error::Result;
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
        let gates = sqlx::query("SELECT * FROM client_gates WHERE migration_id = $1")
            .bind(migration_id)
            .optional(self.pool(), "reading a migration's gates")
            .await?;
        Ok(gates.unwrap_or_else(|| Gates::defaults(migration_id)))
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
        .run(&mut *tx, "setting a migration's gates").await?;
        audit::commit(
            tx,
            AuditEntry::new(actor, "gates.set", "migration", &migration.name)
                .details(serde_json::json!({ "before": before, "after": gates })),
            "committing a migration's gates",
        )
        .await?;
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
        let (n, bad): (i64, i64) = sqlx::query(
            "SELECT COUNT(*) AS n, COALESCE(SUM(CASE WHEN matched = 0 THEN 1 ELSE 0 END), 0) AS bad
             FROM shadow_results WHERE client_id = $1 AND at >= $2",
        )
        .bind(client_id)
        .bind(now_ms() - window_ms)
        .one(self.pool(), "measuring a client's mismatch rate")
        .await?;
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

/// Creates a migration's `client_gates` row (with the defaults) when it has none.
pub(crate) async fn ensure_gates_row(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    migration_id: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO client_gates (migration_id) VALUES ($1) ON CONFLICT (migration_id) DO NOTHING",
    )
    .bind(migration_id)
    .run(&mut **tx, "creating a migration's gates")
    .await?;
    Ok(())
}
