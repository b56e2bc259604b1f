//! The audit log: every change of state — who, when, what, from → to, why —
//! written in the same transaction as the change itself, so the log can never
//! disagree with the state it describes.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, Transaction};

use crate::access::Actor;
use crate::clock::now_ms;
use crate::db::Run;
use crate::error::Result;
use crate::store::Store;

/// One change to be recorded; build it with [`AuditEntry::new`] and the setters.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    actor: String,
    action: String,
    entity_kind: String,
    entity_id: String,
    from_state: Option<String>,
    to_state: Option<String>,
    reason: Option<String>,
    details: Option<serde_json::Value>,
}

impl AuditEntry {
    /// `action` is a dotted verb (`user.create`, `bucket.phase`, `ramp.set`);
    /// the entity is what changed (`migration`/`contacts`).
    pub fn new(
        actor: &Actor,
        action: impl Into<String>,
        entity_kind: impl Into<String>,
        entity_id: impl ToString,
    ) -> AuditEntry {
        AuditEntry {
            actor: actor.name.clone(),
            action: action.into(),
            entity_kind: entity_kind.into(),
            entity_id: entity_id.to_string(),
            from_state: None,
            to_state: None,
            reason: None,
            details: None,
        }
    }

    pub fn from_state(mut self, s: impl Into<String>) -> Self {
        self.from_state = Some(s.into());
        self
    }

    pub fn to_state(mut self, s: impl Into<String>) -> Self {
        self.to_state = Some(s.into());
        self
    }

    /// The reason the actor gave; blank reasons are not recorded.
    pub fn reason(mut self, s: impl Into<String>) -> Self {
        let s = s.into();
        self.reason = (!s.trim().is_empty()).then(|| s.trim().to_string());
        self
    }

    pub fn details(mut self, v: serde_json::Value) -> Self {
        self.details = Some(v);
        self
    }
}

/// Writes `entry` inside `tx`; it commits or rolls back with the change.
pub async fn record(tx: &mut Transaction<'static, Any>, entry: AuditEntry) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit_events
            (at, actor, action, entity_kind, entity_id, from_state, to_state, reason, details)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(now_ms())
    .bind(&entry.actor)
    .bind(&entry.action)
    .bind(&entry.entity_kind)
    .bind(&entry.entity_id)
    .bind(entry.from_state.as_deref())
    .bind(entry.to_state.as_deref())
    .bind(entry.reason.as_deref())
    .bind(entry.details.as_ref().map(|d| d.to_string()))
    .run(&mut **tx, format!("recording audit event {}", entry.action))
    .await?;
    Ok(())
}

/// Writes `entry` inside `tx` and commits both: the last step of an audited
/// change. `doing` names the commit in the error (`committing a new fix`).
pub async fn commit(
    mut tx: Transaction<'static, Any>,
    entry: AuditEntry,
    doing: impl Into<String>,
) -> Result<()> {
    record(&mut tx, entry).await?;
    crate::db::commit(tx, doing).await
}

impl Store {
    /// Runs one statement and records `entry` in one transaction, so the
    /// change and its audit event commit together; answers the rows the
    /// statement changed. `doing` names the change in an error.
    pub(crate) async fn audited<'q>(
        &self,
        statement: Query<'q, Any, AnyArguments<'q>>,
        doing: impl Into<String>,
        entry: AuditEntry,
    ) -> Result<u64> {
        let doing = doing.into();
        let mut tx = self.begin().await?;
        let changed = statement.run(&mut *tx, doing.clone()).await?;
        commit(tx, entry, doing).await?;
        Ok(changed)
    }
}

/// A recorded change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct AuditEvent {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub entity_kind: String,
    pub entity_id: String,
    pub from_state: Option<String>,
    pub to_state: Option<String>,
    pub reason: Option<String>,
    pub details: Option<String>,
}

/// Which events to list; empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditFilter {
    pub actor: Option<String>,
    /// Matches the action exactly or as a prefix (`user.` lists every user action).
    pub action: Option<String>,
    pub entity_kind: Option<String>,
    pub entity_id: Option<String>,
    /// Only events at or after this time (Unix ms).
    pub since: Option<i64>,
    /// Only events before this id (for paging backwards).
    pub before_id: Option<i64>,
    /// At most this many (default 100, at most 1,000).
    pub limit: Option<i64>,
}

fn blank_to_none(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

impl Store {
    /// The newest audit event's id (0 before the first): it moves with
    /// every audited change, so a cache of what the pages show can tell
    /// that it is out of date at the cost of one index lookup.
    pub async fn audit_stamp(&self) -> Result<i64> {
        sqlx::query("SELECT COALESCE(MAX(id), 0) AS id FROM audit_events")
            .scalar(self.pool(), "reading the newest audit event")
            .await
    }

    /// The newest events that match `filter`, newest first.
    pub async fn list_audit(&self, actor: &Actor, filter: &AuditFilter) -> Result<Vec<AuditEvent>> {
        actor.require_reader("reading the audit log")?;
        let limit = filter.limit.unwrap_or(100).clamp(1, 1000);
        let action_prefix = blank_to_none(&filter.action).map(|a| format!("{a}%"));
        sqlx::query(
            "SELECT * FROM audit_events
             WHERE ($1 IS NULL OR actor = $1)
               AND ($2 IS NULL OR action LIKE $2)
               AND ($3 IS NULL OR entity_kind = $3)
               AND ($4 IS NULL OR entity_id = $4)
               AND ($5 IS NULL OR at >= $5)
               AND ($6 IS NULL OR id < $6)
             ORDER BY id DESC
             LIMIT $7",
        )
        .bind(blank_to_none(&filter.actor))
        .bind(action_prefix.as_deref())
        .bind(blank_to_none(&filter.entity_kind))
        .bind(blank_to_none(&filter.entity_id))
        .bind(filter.since)
        .bind(filter.before_id)
        .bind(limit)
        .all(self.pool(), "listing the audit log")
        .await
    }
}
