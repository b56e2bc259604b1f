//! Registering, reading and editing client services of a migration.

use crate::audit::{self, AuditEntry};
use crate::clients::checklist::insert_item;
use crate::clients::model::*;
use crate::clock::now_ms;
use crate::db::Run;
use crate::error::{ControlError, Result};
use crate::store::Store;
use crate::users::Actor;

const CLIENT_SELECT: &str = "SELECT c.*, m.name AS migration_name FROM clients c \
                             JOIN migrations m ON m.id = c.migration_id";

impl Store {
    /// Registers a client with the default checklist.
    pub async fn create_client(
        &self,
        actor: &Actor,
        migration_id: i64,
        new: NewClient,
    ) -> Result<Client> {
        actor.require_operate("registering a client")?;
        let name = check_name(&new.name)?;
        let kind = check_kind(&new.kind)?;
        let migration = self.migration(migration_id).await?;
        let mut tx = self.begin().await?;
        let existing: Option<(i64, String)> =
            sqlx::query("SELECT id, status FROM clients WHERE migration_id = $1 AND name = $2")
                .bind(migration_id)
                .bind(&name)
                .optional(&mut *tx, "looking up a client")
                .await?;
        let now = now_ms();
        let id = match existing {
            // A discovered client is registered by giving it an owner.
            Some((id, status)) if status == "discovered" => {
                sqlx::query(
                    "UPDATE clients SET owner_team = $1, owner_contact = $2, kind = $3,
                            status = 'not-started', updated_at = $4 WHERE id = $5",
                )
                .bind(new.owner_team.trim())
                .bind(new.owner_contact.trim())
                .bind(kind)
                .bind(now)
                .bind(id)
                .run(&mut *tx, "registering a discovered client")
                .await?;
                id
            }
            Some(_) => {
                return Err(ControlError::Conflict(format!(
                    "migration `{}` already has a client `{name}`",
                    migration.name
                )));
            }
            None => {
                insert_client(
                    &mut tx,
                    migration_id,
                    &name,
                    new.owner_team.trim(),
                    new.owner_contact.trim(),
                    kind,
                    "not-started",
                )
                .await?
            }
        };
        audit::commit(
            tx,
            AuditEntry::new(
                actor,
                "client.create",
                "client",
                format!("{}/{name}", migration.name),
            )
            .to_state("not-started")
            .details(serde_json::json!({ "owner_team": new.owner_team, "kind": kind })),
            "committing a new client",
        )
        .await?;
        self.client(id).await
    }

    /// The client with this id.
    pub async fn client(&self, id: i64) -> Result<Client> {
        sqlx::query(&format!("{CLIENT_SELECT} WHERE c.id = $1"))
            .bind(id)
            .found(self.pool(), format!("client {id}"))
            .await
    }

    /// The client `name` of the migration named `migration`.
    pub async fn client_by_name(&self, migration: &str, name: &str) -> Result<Client> {
        sqlx::query(&format!(
            "{CLIENT_SELECT} WHERE m.name = $1 AND c.name = $2"
        ))
        .bind(migration)
        .bind(name)
        .optional(self.pool(), "reading a client")
        .await?
        .ok_or_else(|| {
            ControlError::NotFound(format!(
                "migration `{migration}` has no client `{name}`: register it on the clients page"
            ))
        })
    }

    /// Clients of one migration (or of all, with `None`); the actor's own clients first.
    pub async fn list_clients(
        &self,
        actor: &Actor,
        migration_id: Option<i64>,
    ) -> Result<Vec<Client>> {
        let mut clients: Vec<Client> = sqlx::query(&format!(
            "{CLIENT_SELECT} WHERE ($1 IS NULL OR c.migration_id = $1) ORDER BY m.name, c.name"
        ))
        .bind(migration_id)
        .all(self.pool(), "listing clients")
        .await?;
        clients.sort_by_key(|c| !owns(actor, c));
        Ok(clients)
    }

    /// Edits a client's owner, kind, notes or shadow settings.
    pub async fn edit_client(&self, actor: &Actor, id: i64, edit: ClientEdit) -> Result<Client> {
        let client = self.client(id).await?;
        // Owners may keep their own notes; everything else is an engineer's.
        let notes_only = edit.owner_team.is_none()
            && edit.owner_contact.is_none()
            && edit.kind.is_none()
            && edit.shadow_rate.is_none()
            && edit.shadow_rules.is_none();
        if notes_only {
            require_operate_or_owner(actor, &client, "editing a client's notes")?;
        } else {
            actor.require_operate("editing a client")?;
        }
        let kind = edit.kind.as_deref().map(check_kind).transpose()?;
        if let Some(rate) = edit.shadow_rate
            && !(0.0..=1.0).contains(&rate)
        {
            return Err(ControlError::Invalid(format!(
                "a shadow rate of {rate} is not valid: use a share from 0 (off) to 1 (every request)"
            )));
        }
        if let Some(rules) = &edit.shadow_rules {
            serde_json::from_str::<tern_engine::shadow::ShadowRules>(rules).map_err(|e| {
                ControlError::Invalid(format!(
                    "the shadow rules are not valid JSON rules ({e}); write for example \
                     {{\"ignore\": [\"updated_at\"], \"unordered\": [\"tags\"], \"decimals\": 2}}"
                ))
            })?;
        }
        self.audited(
            sqlx::query(
                "UPDATE clients SET owner_team = COALESCE($1, owner_team),
                    owner_contact = COALESCE($2, owner_contact), kind = COALESCE($3, kind),
                    notes = COALESCE($4, notes), shadow_rate = COALESCE($5, shadow_rate),
                    shadow_rules = COALESCE($6, shadow_rules), updated_at = $7
             WHERE id = $8",
            )
            .bind(edit.owner_team.as_deref().map(str::trim))
            .bind(edit.owner_contact.as_deref().map(str::trim))
            .bind(kind)
            .bind(edit.notes.as_deref())
            .bind(edit.shadow_rate)
            .bind(edit.shadow_rules.as_deref())
            .bind(now_ms())
            .bind(id),
            "editing a client",
            AuditEntry::new(actor, "client.edit", "client", client_entity(&client))
                .details(serde_json::to_value(&edit).unwrap_or_default()),
        )
        .await?;
        self.caches.clear_routing();
        self.client(id).await
    }

    /// Moves a client to `status` (engineers, or the client's owner).
    pub async fn set_client_status(
        &self,
        actor: &Actor,
        id: i64,
        status: &str,
        reason: &str,
    ) -> Result<Client> {
        let client = self.client(id).await?;
        require_operate_or_owner(actor, &client, "changing a client's status")?;
        let status = check_status(status)?;
        if status == "discovered" {
            return Err(ControlError::Invalid(
                "a client cannot be moved back to discovered: use not-started".into(),
            ));
        }
        self.audited(
            sqlx::query("UPDATE clients SET status = $1, updated_at = $2 WHERE id = $3")
                .bind(status)
                .bind(now_ms())
                .bind(id),
            "changing a client's status",
            AuditEntry::new(actor, "client.status", "client", client_entity(&client))
                .from_state(client.status.clone())
                .to_state(status)
                .reason(reason),
        )
        .await?;
        self.client(id).await
    }
}

/// Inserts a client with the default checklist inside `tx`.
pub(crate) async fn insert_client(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    migration_id: i64,
    name: &str,
    owner_team: &str,
    owner_contact: &str,
    kind: &str,
    status: &str,
) -> Result<i64> {
    let now = now_ms();
    let id: i64 = sqlx::query(
        "INSERT INTO clients (migration_id, name, owner_team, owner_contact, kind, status, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING id",
    )
    .bind(migration_id)
    .bind(name)
    .bind(owner_team)
    .bind(owner_contact)
    .bind(kind)
    .bind(status)
    .bind(now)
    .scalar(&mut **tx, "registering a client").await?;
    for label in DEFAULT_CHECKLIST {
        insert_item(tx, id, label).await?;
    }
    Ok(id)
}
