//! What a client service is, and the rules about it that need no store: its
//! name, kind and status, who may edit it, where a key's reads go at a ramp,
//! and what an API token lets its bearer do.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tern_ramp::Ramp;

use crate::access::{Actor, Role};
use crate::error::{ControlError, Result};

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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
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

/// A client's ramp as the routing path needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct RampState {
    pub client_id: i64,
    pub ramp: Ramp,
    pub salt: String,
    pub shadow_rate: f64,
}

/// What a valid token lets its bearer do.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
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

/// SHA-256 of a token, hex: what the store keeps.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub(crate) fn check_name(name: &str) -> Result<String> {
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

pub(crate) fn check_kind(kind: &str) -> Result<&'static str> {
    match kind.trim() {
        "" | "online" => Ok("online"),
        "offline" => Ok("offline"),
        other => Err(ControlError::Invalid(format!(
            "`{other}` is not a client kind: use `online` (a service) or `offline` (a job)"
        ))),
    }
}

pub(crate) fn check_status(status: &str) -> Result<&'static str> {
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

pub(crate) fn require_operate_or_owner(actor: &Actor, client: &Client, what: &str) -> Result<()> {
    if actor.role.can_operate() || owns(actor, client) {
        Ok(())
    } else {
        Err(ControlError::Forbidden(format!(
            "{what} is for engineers, admins and the owners of `{}`; {} is signed in as {}",
            client.name, actor.name, actor.role
        )))
    }
}

/// `migration/client`, the audit log's entity id of a client.
pub fn client_entity(c: &Client) -> String {
    format!("{}/{}", c.migration_name, c.name)
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
