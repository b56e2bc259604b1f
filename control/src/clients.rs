//! Client services of a migration: their owner, kind and status, the read ramp
//! (with its gates, rollback and history), per-client notes and checklist, the
//! migration guide, and the API tokens clients authenticate with.
//!
//! The read ramp of client `c` in migration `m` routes a key to the new system
//! when `tern_ramp::Ramp::is_on("m/c", key)` — the same rule the routing API and
//! the embedded `tern-client` crate apply, so raising a ramp only moves keys from
//! old to new.

use std::collections::HashMap;
use std::sync::{LazyLock, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::Row;
use tern_ramp::Ramp;

use crate::audit::{self, AuditEntry};
use crate::clock::now_ms;
use crate::error::{ControlError, Result};
use crate::store::Store;
use crate::users::{Actor, Role};

/// The checklist a new client starts with.
pub const DEFAULT_CHECKLIST: [&str; 5] = [
    "Read the migration guide",
    "Embed tern-client and deploy it with the ramp at 0%",
    "Turn on shadow reads and review the mismatch trees",
    "Reads at 100% with zero old traffic",
    "Remove the old read path from the service",
];

/// Client statuses, in the order a client moves through them.
pub const STATUSES: [&str; 4] = ["discovered", "not-started", "in-progress", "migrated"];

/// A client service (or offline consumer) of a migration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Client {
    pub id: i64,
    pub migration_id: i64,
    pub migration_name: String,
    pub name: String,
    pub owner_team: String,
    pub owner_contact: String,
    /// `online` (a service) or `offline` (a job).
    pub kind: String,
    /// `discovered`, `not-started`, `in-progress` or `migrated`.
    pub status: String,
    /// Share of keys read from the new system, in thousandths of a percent.
    pub ramp: i64,
    /// Share of requests whose old and new answers are compared (0–1).
    pub shadow_rate: f64,
    /// The shadow comparison's rules (JSON of `tern_engine::shadow::ShadowRules`).
    pub shadow_rules: String,
    pub notes: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Client {
    /// The ramp as a [`Ramp`].
    pub fn read_ramp(&self) -> Ramp {
        Ramp::from_millipercent(u32::try_from(self.ramp.max(0)).unwrap_or(u32::MAX))
    }

    /// The salt of this client's route hash: `migration/client`.
    pub fn salt(&self) -> String {
        route_salt(&self.migration_name, &self.name)
    }
}

/// The salt of a client's route hash.
pub fn route_salt(migration: &str, client: &str) -> String {
    format!("{migration}/{client}")
}

/// Where a key's reads go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Route {
    Old,
    New,
}

impl Route {
    /// The route of `key` for a client at `ramp` (salt `migration/client`).
    pub fn of(ramp: Ramp, salt: &str, key: &[u8]) -> Route {
        if ramp.is_on(salt, key) {
            Route::New
        } else {
            Route::Old
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Route::Old => "old",
            Route::New => "new",
        }
    }
}

/// A client to register.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NewClient {
    pub name: String,
    pub owner_team: String,
    pub owner_contact: String,
    /// `online` or `offline`; blank means online.
    pub kind: String,
}

/// What an engineer may edit about a client besides its ramp.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClientEdit {
    pub owner_team: Option<String>,
    pub owner_contact: Option<String>,
    pub kind: Option<String>,
    pub notes: Option<String>,
    pub shadow_rate: Option<f64>,
    pub shadow_rules: Option<String>,
}

/// Per-migration limits for ramps and decommissioning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gates {
    pub migration_id: i64,
    /// Ramps above this (millipercent) need the gates to hold.
    pub ramp_threshold: i64,
    /// The latest verification accuracy must be at least this (percent).
    pub min_accuracy: f64,
    /// The client's shadow mismatch rate must be at most this (percent).
    pub max_mismatch_rate: f64,
    /// The window the mismatch rate is measured over (ms).
    pub mismatch_window_ms: i64,
    /// Decommission: days every client must have sent no old traffic.
    pub quiet_days: i64,
    /// Days a dataset stays locked before it may be deleted.
    pub lock_days: i64,
}

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

/// One ramp change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RampStep {
    pub at: i64,
    pub from_ramp: i64,
    pub to_ramp: i64,
    pub actor: String,
    pub reason: String,
    pub overridden: bool,
}

/// One checklist item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChecklistItem {
    pub id: i64,
    pub client_id: i64,
    pub position: i64,
    pub label: String,
    pub done: bool,
    pub done_by: Option<String>,
    pub done_at: Option<i64>,
}

/// An API token as listed (never the token itself).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

/// What a valid token lets its bearer do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenGrant {
    pub token_id: i64,
    pub migration_id: i64,
    pub migration_name: String,
    /// The one client the token speaks for; `None` for a collector token.
    pub client: Option<String>,
}

impl TokenGrant {
    /// Refuses unless the token may speak for `client` of `migration`.
    pub fn require(&self, migration: &str, client: &str) -> Result<()> {
        if self.migration_name != migration {
            return Err(ControlError::Forbidden(format!(
                "this API token belongs to migration `{}`, not `{migration}`",
                self.migration_name
            )));
        }
        match &self.client {
            Some(c) if c != client => Err(ControlError::Forbidden(format!(
                "this API token belongs to client `{c}` and cannot act for `{client}`; \
                 use `{client}`'s own token"
            ))),
            _ => Ok(()),
        }
    }
}

/// How long a token check or a ramp is cached in this process. Changes made
/// through this process clear the caches at once; other processes of a fleet
/// see them within this time.
const CACHE_TTL: Duration = Duration::from_secs(2);
const CACHE_MAX: usize = 10_000;

type TokenCache = HashMap<String, (Instant, Option<TokenGrant>)>;
static TOKENS: LazyLock<RwLock<TokenCache>> = LazyLock::new(Default::default);

/// A client's ramp as the routing path needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct RampState {
    pub client_id: i64,
    pub ramp: Ramp,
    pub salt: String,
    pub shadow_rate: f64,
}

type RampCache = HashMap<(String, String), (Instant, RampState)>;
static RAMPS: LazyLock<RwLock<RampCache>> = LazyLock::new(Default::default);

fn clear_caches() {
    if let Ok(mut t) = TOKENS.write() {
        t.clear();
    }
    if let Ok(mut r) = RAMPS.write() {
        r.clear();
    }
}

/// SHA-256 of a token, hex: what the store keeps.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn client_from_row(row: &sqlx::any::AnyRow) -> Result<Client> {
    let get = |e| ControlError::db("reading a client")(e);
    Ok(Client {
        id: row.try_get("id").map_err(get)?,
        migration_id: row.try_get("migration_id").map_err(get)?,
        migration_name: row.try_get("migration_name").map_err(get)?,
        name: row.try_get("name").map_err(get)?,
        owner_team: row.try_get("owner_team").map_err(get)?,
        owner_contact: row.try_get("owner_contact").map_err(get)?,
        kind: row.try_get("kind").map_err(get)?,
        status: row.try_get("status").map_err(get)?,
        ramp: row.try_get("ramp").map_err(get)?,
        shadow_rate: row.try_get("shadow_rate").map_err(get)?,
        shadow_rules: row.try_get("shadow_rules").map_err(get)?,
        notes: row.try_get("notes").map_err(get)?,
        created_at: row.try_get("created_at").map_err(get)?,
        updated_at: row.try_get("updated_at").map_err(get)?,
    })
}

const CLIENT_SELECT: &str = "SELECT c.*, m.name AS migration_name FROM clients c \
                             JOIN migrations m ON m.id = c.migration_id";

fn check_name(name: &str) -> Result<String> {
    let n = name.trim();
    if n.is_empty()
        || n.len() > 100
        || !n
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(ControlError::Invalid(format!(
            "`{name}` is not a client name: use up to 100 letters, digits, `-`, `_` or `.` \
             (like `inbox-service`)"
        )));
    }
    Ok(n.to_string())
}

fn check_kind(kind: &str) -> Result<&'static str> {
    match kind.trim() {
        "" | "online" => Ok("online"),
        "offline" => Ok("offline"),
        other => Err(ControlError::Invalid(format!(
            "`{other}` is not a client kind: use `online` (a service) or `offline` (a job)"
        ))),
    }
}

fn check_status(status: &str) -> Result<&'static str> {
    STATUSES
        .into_iter()
        .find(|s| *s == status.trim())
        .ok_or_else(|| {
            ControlError::Invalid(format!(
                "`{status}` is not a client status: use not-started, in-progress or migrated"
            ))
        })
}

/// True when `actor` owns `client` (a client-owner bound to its name).
pub fn owns(actor: &Actor, client: &Client) -> bool {
    actor.role == Role::ClientOwner && actor.clients.iter().any(|c| c == &client.name)
}

fn require_operate_or_owner(actor: &Actor, client: &Client, what: &str) -> Result<()> {
    if actor.role.can_operate() || owns(actor, client) {
        Ok(())
    } else {
        Err(ControlError::Forbidden(format!(
            "{what} is for engineers, admins and the owners of `{}`; {} is signed in as {}",
            client.name, actor.name, actor.role
        )))
    }
}

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
                .fetch_optional(&mut *tx)
                .await
                .map_err(ControlError::db("looking up a client"))?
                .map(|r| (r.get::<i64, _>("id"), r.get::<String, _>("status")));
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
                .execute(&mut *tx)
                .await
                .map_err(ControlError::db("registering a discovered client"))?;
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
        audit::record(
            &mut tx,
            AuditEntry::new(
                actor,
                "client.create",
                "client",
                format!("{}/{name}", migration.name),
            )
            .to_state("not-started")
            .details(serde_json::json!({ "owner_team": new.owner_team, "kind": kind })),
        )
        .await?;
        tx.commit()
            .await
            .map_err(ControlError::db("committing a new client"))?;
        self.client(id).await
    }

    /// The client with this id.
    pub async fn client(&self, id: i64) -> Result<Client> {
        let row = sqlx::query(&format!("{CLIENT_SELECT} WHERE c.id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(ControlError::db(format!("reading client {id}")))?;
        match row {
            Some(row) => client_from_row(&row),
            None => Err(ControlError::NotFound(format!("there is no client {id}"))),
        }
    }

    /// The client `name` of the migration named `migration`.
    pub async fn client_by_name(&self, migration: &str, name: &str) -> Result<Client> {
        let row = sqlx::query(&format!(
            "{CLIENT_SELECT} WHERE m.name = $1 AND c.name = $2"
        ))
        .bind(migration)
        .bind(name)
        .fetch_optional(self.pool())
        .await
        .map_err(ControlError::db("reading a client"))?;
        match row {
            Some(row) => client_from_row(&row),
            None => Err(ControlError::NotFound(format!(
                "migration `{migration}` has no client `{name}`: register it on the clients page"
            ))),
        }
    }

    /// Clients of one migration (or of all, with `None`); the actor's own clients first.
    pub async fn list_clients(
        &self,
        actor: &Actor,
        migration_id: Option<i64>,
    ) -> Result<Vec<Client>> {
        let rows = sqlx::query(&format!(
            "{CLIENT_SELECT} WHERE ($1 IS NULL OR c.migration_id = $1) ORDER BY m.name, c.name"
        ))
        .bind(migration_id)
        .fetch_all(self.pool())
        .await
        .map_err(ControlError::db("listing clients"))?;
        let mut clients = rows
            .iter()
            .map(client_from_row)
            .collect::<Result<Vec<_>>>()?;
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
        let mut tx = self.begin().await?;
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
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(ControlError::db("editing a client"))?;
        audit::record(
            &mut tx,
            AuditEntry::new(actor, "client.edit", "client", client_entity(&client))
                .details(serde_json::to_value(&edit).unwrap_or_default()),
        )
        .await?;
        tx.commit()
            .await
            .map_err(ControlError::db("committing a client edit"))?;
        clear_caches();
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
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE clients SET status = $1, updated_at = $2 WHERE id = $3")
            .bind(status)
            .bind(now_ms())
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(ControlError::db("changing a client's status"))?;
        audit::record(
            &mut tx,
            AuditEntry::new(actor, "client.status", "client", client_entity(&client))
                .from_state(client.status.clone())
                .to_state(status)
                .reason(reason),
        )
        .await?;
        tx.commit()
            .await
            .map_err(ControlError::db("committing a client's status"))?;
        self.client(id).await
    }

    /// A migration's gates (the defaults until an engineer sets them).
    pub async fn gates(&self, migration_id: i64) -> Result<Gates> {
        let row = sqlx::query("SELECT * FROM client_gates WHERE migration_id = $1")
            .bind(migration_id)
            .fetch_optional(self.pool())
            .await
            .map_err(ControlError::db("reading a migration's gates"))?;
        let Some(row) = row else {
            return Ok(Gates {
                migration_id,
                ramp_threshold: 10_000,
                min_accuracy: 99.9,
                max_mismatch_rate: 0.1,
                mismatch_window_ms: 86_400_000,
                quiet_days: 7,
                lock_days: 30,
            });
        };
        let get = |e| ControlError::db("reading a migration's gates")(e);
        Ok(Gates {
            migration_id,
            ramp_threshold: row.try_get("ramp_threshold").map_err(get)?,
            min_accuracy: row.try_get("min_accuracy").map_err(get)?,
            max_mismatch_rate: row.try_get("max_mismatch_rate").map_err(get)?,
            mismatch_window_ms: row.try_get("mismatch_window_ms").map_err(get)?,
            quiet_days: row.try_get("quiet_days").map_err(get)?,
            lock_days: row.try_get("lock_days").map_err(get)?,
        })
    }

    /// Sets a migration's gates (engineers and admins).
    pub async fn set_gates(&self, actor: &Actor, gates: &Gates) -> Result<Gates> {
        actor.require_operate("setting a migration's gates")?;
        if !(0..=100_000).contains(&gates.ramp_threshold)
            || !(0.0..=100.0).contains(&gates.min_accuracy)
            || !(0.0..=100.0).contains(&gates.max_mismatch_rate)
            || gates.mismatch_window_ms < 60_000
            || gates.quiet_days < 0
            || gates.lock_days < 0
        {
            return Err(ControlError::Invalid(
                "gates need a threshold from 0% to 100%, an accuracy and a mismatch rate from 0 to \
                 100 percent, a mismatch window of at least a minute and no negative days"
                    .into(),
            ));
        }
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
        let mut reasons = Vec::new();
        let needs_gates = i64::from(to.millipercent()) > gates.ramp_threshold
            && i64::from(to.millipercent()) > client.ramp;
        if needs_gates {
            let threshold = Ramp::from_millipercent(gates.ramp_threshold as u32);
            match accuracy {
                None => reasons.push(format!(
                    "ramps above {threshold} need a verification run, and none has finished: \
                     verify the migration's buckets first"
                )),
                Some(a) if a < gates.min_accuracy => reasons.push(format!(
                    "the latest verification accuracy is {a:.3}%, below the {:.3}% ramps above \
                     {threshold} need: repair and verify again",
                    gates.min_accuracy
                )),
                _ => {}
            }
            let hours = gates.mismatch_window_ms as f64 / 3_600_000.0;
            match mismatch_rate {
                None => reasons.push(format!(
                    "ramps above {threshold} need shadow comparisons, and `{}` sent none in the \
                     last {hours:.0} h: turn on shadow reads",
                    client.name
                )),
                Some(r) if r > gates.max_mismatch_rate => reasons.push(format!(
                    "`{}`'s shadow mismatch rate is {r:.3}% over the last {hours:.0} h, above the \
                     {:.3}% limit: read the mismatch trees and fix the differences",
                    client.name, gates.max_mismatch_rate
                )),
                _ => {}
            }
        }
        Ok(GateCheck {
            allowed: reasons.is_empty(),
            reasons,
            threshold: gates.ramp_threshold,
            accuracy,
            mismatch_rate,
            samples,
        })
    }

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
        if reason.trim().is_empty() {
            return Err(ControlError::Invalid(
                "say why the ramp changes: the reason goes into the audit log".into(),
            ));
        }
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
            return Err(ControlError::Conflict(format!(
                "raising `{}` to {to} is refused: {}{}",
                client.name,
                check.reasons.join("; "),
                if actor.role.can_administer() {
                    ". An admin may override with a written reason"
                } else {
                    ""
                }
            )));
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
        .execute(&mut *tx)
        .await
        .map_err(ControlError::db("changing a read ramp"))?;
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
        .execute(&mut *tx)
        .await
        .map_err(ControlError::db("recording a ramp step"))?;
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
        audit::record(&mut tx, entry).await?;
        tx.commit()
            .await
            .map_err(ControlError::db("committing a ramp change"))?;
        clear_caches();
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
        let rows =
            sqlx::query("SELECT * FROM client_ramp_steps WHERE client_id = $1 ORDER BY at, id")
                .bind(client_id)
                .fetch_all(self.pool())
                .await
                .map_err(ControlError::db("reading ramp steps"))?;
        let get = |e| ControlError::db("reading a ramp step")(e);
        rows.iter()
            .map(|r| {
                Ok(RampStep {
                    at: r.try_get("at").map_err(get)?,
                    from_ramp: r.try_get("from_ramp").map_err(get)?,
                    to_ramp: r.try_get("to_ramp").map_err(get)?,
                    actor: r.try_get("actor").map_err(get)?,
                    reason: r.try_get("reason").map_err(get)?,
                    overridden: r.try_get::<i64, _>("overridden").map_err(get)? != 0,
                })
            })
            .collect()
    }

    /// The ramp of `client` in `migration`, cached for the routing path.
    pub async fn ramp_state(&self, migration: &str, client: &str) -> Result<RampState> {
        let key = (migration.to_string(), client.to_string());
        if let Ok(cache) = RAMPS.read()
            && let Some((at, state)) = cache.get(&key)
            && at.elapsed() < CACHE_TTL
        {
            return Ok(state.clone());
        }
        let c = self.client_by_name(migration, client).await?;
        let state = RampState {
            client_id: c.id,
            ramp: c.read_ramp(),
            salt: c.salt(),
            shadow_rate: c.shadow_rate,
        };
        if let Ok(mut cache) = RAMPS.write() {
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
            cache.insert(key, (Instant::now(), state.clone()));
        }
        Ok(state)
    }

    // ---- checklist ----

    /// A client's checklist, in order.
    pub async fn checklist(&self, client_id: i64) -> Result<Vec<ChecklistItem>> {
        let rows = sqlx::query(
            "SELECT * FROM client_checklist WHERE client_id = $1 ORDER BY position, id",
        )
        .bind(client_id)
        .fetch_all(self.pool())
        .await
        .map_err(ControlError::db("reading a checklist"))?;
        rows.iter().map(item_from_row).collect()
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
        audit::record(
            &mut tx,
            AuditEntry::new(actor, "checklist.add", "client", client_entity(&client))
                .details(serde_json::json!({ "label": label })),
        )
        .await?;
        tx.commit()
            .await
            .map_err(ControlError::db("committing a checklist item"))?;
        self.checklist_item(id).await
    }

    async fn checklist_item(&self, id: i64) -> Result<ChecklistItem> {
        let row = sqlx::query("SELECT * FROM client_checklist WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(ControlError::db("reading a checklist item"))?
            .ok_or_else(|| ControlError::NotFound(format!("there is no checklist item {id}")))?;
        item_from_row(&row)
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
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE client_checklist SET done = $1, done_by = $2, done_at = $3 WHERE id = $4",
        )
        .bind(i64::from(done))
        .bind(done.then_some(actor.name.as_str()))
        .bind(done.then(now_ms))
        .bind(item_id)
        .execute(&mut *tx)
        .await
        .map_err(ControlError::db("ticking a checklist item"))?;
        audit::record(
            &mut tx,
            AuditEntry::new(actor, "checklist.tick", "client", client_entity(&client))
                .from_state(if item.done { "done" } else { "open" })
                .to_state(if done { "done" } else { "open" })
                .details(serde_json::json!({ "label": item.label })),
        )
        .await?;
        tx.commit()
            .await
            .map_err(ControlError::db("committing a checklist tick"))?;
        self.checklist_item(item_id).await
    }

    // ---- guide ----

    /// The migration guide's Markdown (empty when none is written yet).
    pub async fn guide(&self, migration_id: i64) -> Result<String> {
        let row = sqlx::query("SELECT guide FROM client_gates WHERE migration_id = $1")
            .bind(migration_id)
            .fetch_optional(self.pool())
            .await
            .map_err(ControlError::db("reading a migration guide"))?;
        Ok(row.map(|r| r.get::<String, _>("guide")).unwrap_or_default())
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
        .execute(&mut *tx)
        .await
        .map_err(ControlError::db("saving the migration guide"))?;
        audit::record(
            &mut tx,
            AuditEntry::new(actor, "guide.edit", "migration", &migration.name)
                .details(serde_json::json!({ "chars": markdown.len() })),
        )
        .await?;
        tx.commit()
            .await
            .map_err(ControlError::db("committing the migration guide"))
    }

    // ---- API tokens ----

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
        .fetch_one(&mut *tx)
        .await
        .and_then(|r| r.try_get("id"))
        .map_err(ControlError::db("creating an API token"))?;
        audit::record(
            &mut tx,
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
        )
        .await?;
        tx.commit()
            .await
            .map_err(ControlError::db("committing an API token"))?;
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
        let rows = sqlx::query("SELECT * FROM api_tokens WHERE migration_id = $1 ORDER BY id DESC")
            .bind(migration_id)
            .fetch_all(self.pool())
            .await
            .map_err(ControlError::db("listing API tokens"))?;
        let get = |e| ControlError::db("reading an API token")(e);
        rows.iter()
            .map(|r| {
                Ok(ApiToken {
                    id: r.try_get("id").map_err(get)?,
                    migration_id: r.try_get("migration_id").map_err(get)?,
                    client_id: r.try_get("client_id").map_err(get)?,
                    label: r.try_get("label").map_err(get)?,
                    prefix: r.try_get("prefix").map_err(get)?,
                    created_by: r.try_get("created_by").map_err(get)?,
                    created_at: r.try_get("created_at").map_err(get)?,
                    revoked_at: r.try_get("revoked_at").map_err(get)?,
                })
            })
            .collect()
    }

    /// Revokes a token; it stops working at once in this process.
    pub async fn revoke_token(&self, actor: &Actor, token_id: i64) -> Result<()> {
        let row =
            sqlx::query("SELECT migration_id, client_id, prefix FROM api_tokens WHERE id = $1")
                .bind(token_id)
                .fetch_optional(self.pool())
                .await
                .map_err(ControlError::db("reading an API token"))?
                .ok_or_else(|| {
                    ControlError::NotFound(format!("there is no API token {token_id}"))
                })?;
        let client_id: Option<i64> = row.get("client_id");
        let prefix: String = row.get("prefix");
        let entity = match client_id {
            Some(id) => {
                let client = self.client(id).await?;
                require_operate_or_owner(actor, &client, "revoking an API token")?;
                client_entity(&client)
            }
            None => {
                actor.require_operate("revoking a collector token")?;
                self.migration(row.get("migration_id")).await?.name
            }
        };
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now_ms())
            .bind(token_id)
            .execute(&mut *tx)
            .await
            .map_err(ControlError::db("revoking an API token"))?;
        audit::record(
            &mut tx,
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
        tx.commit()
            .await
            .map_err(ControlError::db("committing a token revocation"))?;
        clear_caches();
        Ok(())
    }

    /// What `token` may do, or `None` for a wrong or revoked token. Answers
    /// from a short-lived cache, so the routing path does not query the store
    /// per request.
    pub async fn check_token(&self, token: &str) -> Result<Option<TokenGrant>> {
        let hash = hash_token(token);
        if let Ok(cache) = TOKENS.read()
            && let Some((at, grant)) = cache.get(&hash)
            && at.elapsed() < CACHE_TTL
        {
            return Ok(grant.clone());
        }
        let row = sqlx::query(
            "SELECT t.id, t.migration_id, m.name AS migration_name, c.name AS client_name
             FROM api_tokens t JOIN migrations m ON m.id = t.migration_id
             LEFT JOIN clients c ON c.id = t.client_id
             WHERE t.token_hash = $1 AND t.revoked_at IS NULL",
        )
        .bind(&hash)
        .fetch_optional(self.pool())
        .await
        .map_err(ControlError::db("checking an API token"))?;
        let grant = match row {
            Some(r) => {
                let get = |e| ControlError::db("reading an API token")(e);
                Some(TokenGrant {
                    token_id: r.try_get("id").map_err(get)?,
                    migration_id: r.try_get("migration_id").map_err(get)?,
                    migration_name: r.try_get("migration_name").map_err(get)?,
                    client: r.try_get("client_name").map_err(get)?,
                })
            }
            None => None,
        };
        if let Ok(mut cache) = TOKENS.write() {
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
            cache.insert(hash, (Instant::now(), grant.clone()));
        }
        Ok(grant)
    }
}

fn item_from_row(row: &sqlx::any::AnyRow) -> Result<ChecklistItem> {
    let get = |e| ControlError::db("reading a checklist item")(e);
    Ok(ChecklistItem {
        id: row.try_get("id").map_err(get)?,
        client_id: row.try_get("client_id").map_err(get)?,
        position: row.try_get("position").map_err(get)?,
        label: row.try_get("label").map_err(get)?,
        done: row.try_get::<i64, _>("done").map_err(get)? != 0,
        done_by: row.try_get("done_by").map_err(get)?,
        done_at: row.try_get("done_at").map_err(get)?,
    })
}

/// `migration/client`, the audit log's entity id of a client.
pub fn client_entity(c: &Client) -> String {
    format!("{}/{}", c.migration_name, c.name)
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

async fn insert_item(
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
    .fetch_one(&mut **tx)
    .await
    .and_then(|r| r.try_get("id"))
    .map_err(ControlError::db("adding a checklist item"))
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
    .fetch_one(&mut **tx)
    .await
    .and_then(|r| r.try_get("id"))
    .map_err(ControlError::db("registering a client"))?;
    for label in DEFAULT_CHECKLIST {
        insert_item(tx, id, label).await?;
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_kinds_and_statuses_are_checked() {
        assert!(check_name("inbox-service").is_ok());
        assert!(check_name("has space").is_err());
        assert!(check_name("").is_err());
        assert_eq!(check_kind("").ok(), Some("online"));
        assert!(check_kind("batch").is_err());
        assert!(check_status("migrated").is_ok());
        assert!(check_status("done").is_err());
    }

    #[test]
    fn a_client_token_speaks_only_for_its_client() {
        let grant = TokenGrant {
            token_id: 1,
            migration_id: 1,
            migration_name: "contacts".into(),
            client: Some("inbox".into()),
        };
        assert!(grant.require("contacts", "inbox").is_ok());
        assert!(grant.require("contacts", "search").is_err());
        assert!(grant.require("messages", "inbox").is_err());
        let collector = TokenGrant {
            client: None,
            ..grant
        };
        assert!(collector.require("contacts", "anyone").is_ok());
    }

    proptest! {
        /// Sticky routing: raising a client's ramp never sends a key from new
        /// back to old.
        #[test]
        fn raising_a_ramp_never_moves_a_key_back_to_old(
            key in "[a-z0-9-]{1,24}", client in "[a-z-]{1,12}",
            a in 0u32..=100_000, b in 0u32..=100_000,
        ) {
            let salt = route_salt("contacts", &client);
            let (lo, hi) = (Ramp::from_millipercent(a.min(b)), Ramp::from_millipercent(a.max(b)));
            if Route::of(lo, &salt, key.as_bytes()) == Route::New {
                prop_assert_eq!(Route::of(hi, &salt, key.as_bytes()), Route::New);
            }
        }
    }

    /// At p% about p% of 100,000 random keys go new: within 0.5 points (the
    /// binomial standard deviation is at most 0.16 points here).
    #[test]
    fn about_p_percent_of_random_keys_go_new() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let keys: Vec<String> = (0..100_000)
            .map(|_| format!("{:x}", rng.r#gen::<u64>()))
            .collect();
        let salt = route_salt("contacts", "inbox-service");
        for p in [0.1, 1.0, 10.0, 25.0, 50.0, 75.0, 99.9] {
            let ramp = Ramp::from_percent(p).expect("a valid ramp");
            let new = keys
                .iter()
                .filter(|k| Route::of(ramp, &salt, k.as_bytes()) == Route::New)
                .count();
            let share = new as f64 * 100.0 / keys.len() as f64;
            assert!((share - p).abs() < 0.5, "{p}%: {share:.3}% went new");
        }
    }
}
