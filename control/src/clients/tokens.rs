//! API tokens client services authenticate with: created (shown once),
//! listed by prefix, revoked, and checked per request through a short cache.

use serde::{Deserialize, Serialize};

use crate::audit::{self, AuditEntry};
use crate::clients::model::{TokenGrant, client_entity, hash_token, require_operate_or_owner};
use crate::clock::now_ms;
use crate::db::Run;
use crate::error::{ControlError, Result};
use crate::store::Store;
use crate::users::Actor;

/// An API token as listed (never the token itself).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct ApiToken {
    pub id: i64,
    pub migration_id: i64,
    /// `None`: a collector token that may report for any client of the migration.
    pub client_id: Option<i64>,
    pub label: String,
    /// The first characters of the token, to tell tokens apart.
    pub prefix: String,
    pub created_by: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

impl Store {
    /// Creates an API token for `client_id` (or a collector token for the
    /// migration with `None`). Answers the token once; only its hash is kept.
    pub async fn create_token(
        &self,
        actor: &Actor,
        migration_id: i64,
        client_id: Option<i64>,
        label: &str,
    ) -> Result<(ApiToken, String)> {
        let migration = self.migration(migration_id).await?;
        let entity = match client_id {
            Some(id) => {
                let client = self.client(id).await?;
                if client.migration_id != migration_id {
                    return Err(ControlError::Invalid(format!(
                        "client `{}` is not a client of migration `{}`",
                        client.name, migration.name
                    )));
                }
                require_operate_or_owner(actor, &client, "creating an API token")?;
                client_entity(&client)
            }
            None => {
                actor.require_operate("creating a collector token")?;
                migration.name.clone()
            }
        };
        let mut bytes = [0u8; 24];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
        let token = format!("tern_{}", hex::encode(bytes));
        let prefix = token[..13].to_string();
        let label = if label.trim().is_empty() {
            "token"
        } else {
            label.trim()
        };
        let mut tx = self.begin().await?;
        let id: i64 = sqlx::query(
            "INSERT INTO api_tokens (migration_id, client_id, label, token_hash, prefix, created_by, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(migration_id)
        .bind(client_id)
        .bind(label)
        .bind(hash_token(&token))
        .bind(&prefix)
        .bind(&actor.name)
        .bind(now_ms())
        .scalar(&mut *tx, "creating an API token").await?;
        audit::commit(
            tx,
            AuditEntry::new(
                actor,
                "token.create",
                if client_id.is_some() {
                    "client"
                } else {
                    "migration"
                },
                entity,
            )
            .details(serde_json::json!({ "token": prefix, "label": label })),
            "committing an API token",
        )
        .await?;
        let listed = self
            .list_tokens(migration_id)
            .await?
            .into_iter()
            .find(|t| t.id == id)
            .ok_or_else(|| ControlError::Internal("a new token vanished".into()))?;
        Ok((listed, token))
    }

    /// A migration's tokens, newest first.
    pub async fn list_tokens(&self, migration_id: i64) -> Result<Vec<ApiToken>> {
        sqlx::query("SELECT * FROM api_tokens WHERE migration_id = $1 ORDER BY id DESC")
            .bind(migration_id)
            .all(self.pool(), "listing API tokens")
            .await
    }

    /// Revokes a token; it stops working at once in this process.
    pub async fn revoke_token(&self, actor: &Actor, token_id: i64) -> Result<()> {
        let (migration_id, client_id, prefix): (i64, Option<i64>, String) =
            sqlx::query("SELECT migration_id, client_id, prefix FROM api_tokens WHERE id = $1")
                .bind(token_id)
                .found(self.pool(), format!("API token {token_id}"))
                .await?;
        let entity = match client_id {
            Some(id) => {
                let client = self.client(id).await?;
                require_operate_or_owner(actor, &client, "revoking an API token")?;
                client_entity(&client)
            }
            None => {
                actor.require_operate("revoking a collector token")?;
                self.migration(migration_id).await?.name
            }
        };
        self.audited(
            sqlx::query(
                "UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
            )
            .bind(now_ms())
            .bind(token_id),
            "revoking an API token",
            AuditEntry::new(
                actor,
                "token.revoke",
                if client_id.is_some() {
                    "client"
                } else {
                    "migration"
                },
                entity,
            )
            .details(serde_json::json!({ "token": prefix })),
        )
        .await?;
        self.caches.clear_routing();
        Ok(())
    }

    /// What `token` may do, or `None` for a wrong or revoked token. Answers
    /// from a short-lived cache, so the routing path does not query the store
    /// per request.
    pub async fn check_token(&self, token: &str) -> Result<Option<TokenGrant>> {
        let hash = hash_token(token);
        if let Some(grant) = self.caches.tokens.get(&hash) {
            return Ok(grant);
        }
        let grant = sqlx::query(
            "SELECT t.id AS token_id, t.migration_id, m.name AS migration_name, c.name AS client
             FROM api_tokens t JOIN migrations m ON m.id = t.migration_id
             LEFT JOIN clients c ON c.id = t.client_id
             WHERE t.token_hash = $1 AND t.revoked_at IS NULL",
        )
        .bind(&hash)
        .optional(self.pool(), "checking an API token")
        .await?;
        self.caches.tokens.put(hash, grant.clone());
        Ok(grant)
    }
}
