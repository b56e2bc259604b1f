//! A client's read ramp: raising it (gated), rolling it back, its history,
//! and the cached state the routing path reads per request.

use serde::{Deserialize, Serialize};
use tern_ramp::Ramp;

use crate::audit::{self, AuditEntry};
use crate::clients::model::{Client, RampState, client_entity};
use crate::clients::rules::{ramp_reason, ramp_refused};
use crate::clock::now_ms;
use crate::db::Run;
use crate::error::Result;
use crate::store::Store;
use crate::users::Actor;

/// One ramp change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct RampStep {
    pub at: i64,
    pub from_ramp: i64,
    pub to_ramp: i64,
    pub actor: String,
    pub reason: String,
    #[sqlx(try_from = "crate::db::Flag")]
    pub overridden: bool,
}

impl Store {
    /// Sets a client's read ramp. Raising it above the migration's threshold
    /// is refused unless the gates hold; an admin may override with a written
    /// reason. Lowering is always allowed. Recorded with its reason.
    pub async fn set_ramp(
        &self,
        actor: &Actor,
        client_id: i64,
        to: Ramp,
        reason: &str,
        override_reason: Option<&str>,
    ) -> Result<Client> {
        actor.require_operate("changing a read ramp")?;
        let reason = ramp_reason(reason)?;
        let client = self.client(client_id).await?;
        let check = self.check_gates(&client, to).await?;
        let override_reason = override_reason.map(str::trim).filter(|r| !r.is_empty());
        let overridden = if check.allowed {
            false
        } else if let Some(why) = override_reason {
            actor.require_admin("overriding a ramp gate")?;
            tracing::warn!(client = %client.name, ramp = %to, actor = %actor.name, why, "ramp gate overridden");
            true
        } else {
            return Err(ramp_refused(
                &client.name,
                to,
                &check.reasons,
                actor.role.can_administer(),
            ));
        };
        let from = client.read_ramp();
        let now = now_ms();
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE clients SET ramp = $1, updated_at = $2,
                    status = CASE WHEN status IN ('discovered', 'not-started') AND $1 > 0
                                  THEN 'in-progress' ELSE status END
             WHERE id = $3",
        )
        .bind(i64::from(to.millipercent()))
        .bind(now)
        .bind(client_id)
        .run(&mut *tx, "changing a read ramp")
        .await?;
        let full_reason = match (overridden, override_reason) {
            (true, Some(why)) => format!("{} (gate overridden: {why})", reason.trim()),
            _ => reason.trim().to_string(),
        };
        sqlx::query(
            "INSERT INTO client_ramp_steps (client_id, at, from_ramp, to_ramp, actor, reason, overridden)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(client_id)
        .bind(now)
        .bind(i64::from(from.millipercent()))
        .bind(i64::from(to.millipercent()))
        .bind(&actor.name)
        .bind(&full_reason)
        .bind(i64::from(overridden))
        .run(&mut *tx, "recording a ramp step").await?;
        let mut entry = AuditEntry::new(
            actor,
            if overridden {
                "ramp.override"
            } else {
                "ramp.set"
            },
            "client",
            client_entity(&client),
        )
        .from_state(from.to_string())
        .to_state(to.to_string())
        .reason(full_reason);
        if overridden {
            entry = entry.details(serde_json::json!({ "refused_because": check.reasons }));
        }
        audit::commit(tx, entry, "committing a ramp change").await?;
        self.caches.clear_routing();
        tracing::info!(client = %client.name, from = %from, to = %to, "read ramp changed");
        self.client(client_id).await
    }

    /// Sets the ramp to 0 at once (never gated).
    pub async fn rollback(&self, actor: &Actor, client_id: i64, reason: &str) -> Result<Client> {
        let reason = if reason.trim().is_empty() {
            "rollback"
        } else {
            reason
        };
        self.set_ramp(actor, client_id, Ramp::OFF, reason, None)
            .await
    }

    /// A client's ramp changes, oldest first.
    pub async fn ramp_steps(&self, client_id: i64) -> Result<Vec<RampStep>> {
        sqlx::query("SELECT * FROM client_ramp_steps WHERE client_id = $1 ORDER BY at, id")
            .bind(client_id)
            .all(self.pool(), "reading ramp steps")
            .await
    }

    /// The ramp of `client` in `migration`, cached for the routing path.
    pub async fn ramp_state(&self, migration: &str, client: &str) -> Result<RampState> {
        let key = (migration.to_string(), client.to_string());
        if let Some(state) = self.caches.ramps.get(&key) {
            return Ok(state);
        }
        let c = self.client_by_name(migration, client).await?;
        let state = RampState {
            client_id: c.id,
            ramp: c.read_ramp(),
            salt: c.salt(),
            shadow_rate: c.shadow_rate,
        };
        self.caches.ramps.put(key, state.clone());
        Ok(state)
    }
}
