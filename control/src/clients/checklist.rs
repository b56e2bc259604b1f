//! A client's checklist (what its owner ticks off on the way to 100%) and the
//! migration guide client owners read.

use serde::{Deserialize, Serialize};

use crate::audit::{self, AuditEntry};
use crate::clients::gates::ensure_gates_row;
use crate::clients::model::{client_entity, require_operate_or_owner};
use crate::clock::now_ms;
use crate::db::Run;
use crate::error::{ControlError, Result};
use crate::store::Store;
use crate::users::Actor;

/// One checklist item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct ChecklistItem {
    pub id: i64,
    pub client_id: i64,
    pub position: i64,
    pub label: String,
    #[sqlx(try_from = "crate::db::Flag")]
    pub done: bool,
    pub done_by: Option<String>,
    pub done_at: Option<i64>,
}

impl Store {
    /// A client's checklist, in order.
    pub async fn checklist(&self, client_id: i64) -> Result<Vec<ChecklistItem>> {
        sqlx::query("SELECT * FROM client_checklist WHERE client_id = $1 ORDER BY position, id")
            .bind(client_id)
            .all(self.pool(), "reading a checklist")
            .await
    }

    /// Adds an item to a client's checklist (engineers).
    pub async fn add_checklist_item(
        &self,
        actor: &Actor,
        client_id: i64,
        label: &str,
    ) -> Result<ChecklistItem> {
        actor.require_operate("adding a checklist item")?;
        let label = label.trim();
        if label.is_empty() {
            return Err(ControlError::Invalid(
                "a checklist item needs a label".into(),
            ));
        }
        let client = self.client(client_id).await?;
        let mut tx = self.begin().await?;
        let id = insert_item(&mut tx, client_id, label).await?;
        audit::commit(
            tx,
            AuditEntry::new(actor, "checklist.add", "client", client_entity(&client))
                .details(serde_json::json!({ "label": label })),
            "committing a checklist item",
        )
        .await?;
        self.checklist_item(id).await
    }

    async fn checklist_item(&self, id: i64) -> Result<ChecklistItem> {
        sqlx::query("SELECT * FROM client_checklist WHERE id = $1")
            .bind(id)
            .found(self.pool(), format!("checklist item {id}"))
            .await
    }

    /// Ticks or unticks an item (engineers, or the client's owner).
    pub async fn tick_checklist_item(
        &self,
        actor: &Actor,
        item_id: i64,
        done: bool,
    ) -> Result<ChecklistItem> {
        let item = self.checklist_item(item_id).await?;
        let client = self.client(item.client_id).await?;
        require_operate_or_owner(actor, &client, "ticking a checklist item")?;
        self.audited(
            sqlx::query(
                "UPDATE client_checklist SET done = $1, done_by = $2, done_at = $3 WHERE id = $4",
            )
            .bind(i64::from(done))
            .bind(done.then_some(actor.name.as_str()))
            .bind(done.then(now_ms))
            .bind(item_id),
            "ticking a checklist item",
            AuditEntry::new(actor, "checklist.tick", "client", client_entity(&client))
                .from_state(if item.done { "done" } else { "open" })
                .to_state(if done { "done" } else { "open" })
                .details(serde_json::json!({ "label": item.label })),
        )
        .await?;
        self.checklist_item(item_id).await
    }

    /// The migration guide's Markdown (empty when none is written yet).
    pub async fn guide(&self, migration_id: i64) -> Result<String> {
        let guide: Option<(String,)> =
            sqlx::query("SELECT guide FROM client_gates WHERE migration_id = $1")
                .bind(migration_id)
                .optional(self.pool(), "reading a migration guide")
                .await?;
        Ok(guide.map(|(g,)| g).unwrap_or_default())
    }

    /// Replaces the migration guide (engineers).
    pub async fn set_guide(&self, actor: &Actor, migration_id: i64, markdown: &str) -> Result<()> {
        actor.require_operate("editing the migration guide")?;
        let migration = self.migration(migration_id).await?;
        let mut tx = self.begin().await?;
        ensure_gates_row(&mut tx, migration_id).await?;
        sqlx::query(
            "UPDATE client_gates SET guide = $1, guide_updated_at = $2, guide_updated_by = $3
             WHERE migration_id = $4",
        )
        .bind(markdown)
        .bind(now_ms())
        .bind(&actor.name)
        .bind(migration_id)
        .run(&mut *tx, "saving the migration guide")
        .await?;
        audit::commit(
            tx,
            AuditEntry::new(actor, "guide.edit", "migration", &migration.name)
                .details(serde_json::json!({ "chars": markdown.len() })),
            "committing the migration guide",
        )
        .await
    }
}

pub(crate) async fn insert_item(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    client_id: i64,
    label: &str,
) -> Result<i64> {
    sqlx::query(
        "INSERT INTO client_checklist (client_id, position, label)
         VALUES ($1, (SELECT COALESCE(MAX(position), 0) + 1 FROM client_checklist WHERE client_id = $1), $2)
         RETURNING id",
    )
    .bind(client_id)
    .bind(label)
    .scalar(&mut **tx, "adding a checklist item").await
}
