//! Named connections: an admin registers a database once (kind, host, port,
//! database, user, options) with its secret, and specs and data fixes name it
//! (`source = "legacy-inbox"`) instead of carrying a URL with a password.
//!
//! The secret is stored encrypted ([`secret::SecretKey`]) or as a reference
//! (`env:NAME`, `file:/path`); it is read only to build the URL a job connects
//! with, and is never returned, logged, audited or shown: a [`Connection`]
//! says only whether a secret is set and where it comes from.

pub mod resolve;
pub mod secret;

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{FromRow, Row};

use crate::audit::{self, AuditEntry};
use crate::clock::now_ms;
use crate::db::Run;
use crate::error::{ControlError, Result};
use crate::store::Store;
use crate::users::Actor;

pub use secret::SecretKey;

/// A registered connection, as anyone may see it (no secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    pub id: i64,
    pub name: String,
    /// `postgres`, `mysql` or `sqlite`.
    pub kind: String,
    pub host: String,
    pub port: Option<i64>,
    /// The database name (the file path for SQLite).
    pub database: String,
    pub username: String,
    /// URL query options, e.g. `sslmode=require`.
    pub options: String,
    /// Whether a secret is set.
    pub secret_set: bool,
    /// `none`, `encrypted`, `env:NAME` or `file:/path`.
    pub secret_source: String,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What to do with a connection's secret when it is saved.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SecretInput {
    /// Leave it as it is (a new connection: none).
    #[default]
    Keep,
    /// Remove it.
    Clear,
    /// This value, to be encrypted with the secret key.
    Value(String),
    /// A reference: `env:NAME` or `file:/path`.
    Reference(String),
}

/// A connection as an admin registers or edits it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectionInput {
    pub name: String,
    pub kind: String,
    pub host: String,
    pub port: Option<i64>,
    pub database: String,
    pub username: String,
    pub options: String,
    pub secret: SecretInput,
}

const KINDS: [&str; 3] = ["postgres", "mysql", "sqlite"];

fn validate(input: &ConnectionInput) -> Result<()> {
    let name = &input.name;
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(ControlError::Invalid(format!(
            "connection name `{name}`: use 1 to 64 letters, digits, `-`, `_` or `.`"
        )));
    }
    if !KINDS.contains(&input.kind.as_str()) {
        return Err(ControlError::Invalid(format!(
            "connection `{name}`: kind `{}` is not one of postgres, mysql, sqlite",
            input.kind
        )));
    }
    if input.kind == "sqlite" {
        if input.database.trim().is_empty() {
            return Err(ControlError::Invalid(format!(
                "connection `{name}`: a sqlite connection needs the database file's path"
            )));
        }
        if matches!(
            input.secret,
            SecretInput::Value(_) | SecretInput::Reference(_)
        ) {
            return Err(ControlError::Invalid(format!(
                "connection `{name}`: a sqlite file has no password; leave the secret empty"
            )));
        }
    } else if input.host.trim().is_empty() {
        return Err(ControlError::Invalid(format!(
            "connection `{name}`: name the {} server's host",
            input.kind
        )));
    }
    if let Some(p) = input.port.filter(|p| !(1..=65535).contains(p)) {
        return Err(ControlError::Invalid(format!(
            "connection `{name}`: port {p} is not between 1 and 65535"
        )));
    }
    if input.options.contains(['#', ' ']) || input.options.starts_with('?') {
        return Err(ControlError::Invalid(format!(
            "connection `{name}`: options are a URL query without `?`, e.g. sslmode=require&application_name=tern"
        )));
    }
    if let SecretInput::Reference(r) = &input.secret {
        let ok = r.strip_prefix("env:").is_some_and(|v| !v.is_empty())
            || r.strip_prefix("file:").is_some_and(|p| p.starts_with('/'));
        if !ok {
            return Err(ControlError::Invalid(format!(
                "connection `{name}`: a secret reference is env:NAME or file:/absolute/path"
            )));
        }
    }
    Ok(())
}

/// Percent-encodes a URL user or password.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The URL of a connection with `password` (or none).
pub fn url_of(c: &Connection, password: Option<&str>) -> String {
    let query = if c.options.is_empty() {
        String::new()
    } else {
        format!("?{}", c.options)
    };
    if c.kind == "sqlite" {
        return format!("sqlite://{}{query}", c.database);
    }
    let auth = match (c.username.is_empty(), password) {
        (true, _) => String::new(),
        (false, None) => format!("{}@", encode(&c.username)),
        (false, Some(p)) => format!("{}:{}@", encode(&c.username), encode(p)),
    };
    let port = c.port.map(|p| format!(":{p}")).unwrap_or_default();
    format!("{}://{auth}{}{port}/{}{query}", c.kind, c.host, c.database)
}

/// A connection's secret is not read back: only whether it is set and,
/// for a reference, where it lives.
impl<'r> FromRow<'r, AnyRow> for Connection {
    fn from_row(row: &'r AnyRow) -> sqlx::Result<Connection> {
        let secret_kind: String = row.try_get("secret_kind")?;
        let secret_source = match secret_kind.as_str() {
            // A reference names where the secret lives; it is not the secret.
            "env" | "file" => row.try_get("secret")?,
            other => other.to_string(),
        };
        Ok(Connection {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            kind: row.try_get("kind")?,
            host: row.try_get("host")?,
            port: row.try_get("port")?,
            database: row.try_get("database")?,
            username: row.try_get("username")?,
            options: row.try_get("options")?,
            secret_set: secret_kind != "none",
            secret_source,
            created_by: row.try_get("created_by")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

impl Store {
    /// Every connection, by name (engineers and admins: specs name them).
    pub async fn list_connections(&self, actor: &Actor) -> Result<Vec<Connection>> {
        actor.require_operate("listing connections")?;
        sqlx::query("SELECT * FROM connections ORDER BY name")
            .all(self.pool(), "listing connections")
            .await
    }

    /// One connection by name.
    pub async fn connection(&self, name: &str) -> Result<Connection> {
        sqlx::query("SELECT * FROM connections WHERE name = $1")
            .bind(name)
            .optional(self.pool(), format!("reading connection `{name}`"))
            .await?
            .ok_or_else(|| ControlError::NotFound(format!(
                "there is no connection `{name}`: an admin registers it under Admin › Connections or with `tern connection add {name}`"
            )))
    }

    /// The stored form of a secret input: (kind, text), or `None` to keep.
    fn seal(&self, name: &str, secret: &SecretInput) -> Result<Option<(&'static str, String)>> {
        Ok(match secret {
            SecretInput::Keep => None,
            SecretInput::Clear => Some(("none", String::new())),
            SecretInput::Reference(r) if r.starts_with("env:") => Some(("env", r.clone())),
            SecretInput::Reference(r) => Some(("file", r.clone())),
            SecretInput::Value(v) => {
                let key = self.secret_key().ok_or_else(|| {
                    ControlError::Invalid(format!(
                        "connection `{name}`: Tern will not store a secret unencrypted and has no secret key: {}",
                        secret::KEY_HELP
                    ))
                })?;
                Some(("encrypted", key.encrypt(name, v)?))
            }
        })
    }

    /// Registers a connection (admins; audited without its secret).
    pub async fn create_connection(
        &self,
        actor: &Actor,
        input: ConnectionInput,
    ) -> Result<Connection> {
        actor.require_admin("registering a connection")?;
        validate(&input)?;
        refuse_own_store(&input)?;
        let (secret_kind, secret) = self
            .seal(&input.name, &input.secret)?
            .unwrap_or(("none", String::new()));
        let now = now_ms();
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO connections (name, kind, host, port, database, username, options,
                                      secret_kind, secret, created_by, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)",
        )
        .bind(&input.name)
        .bind(&input.kind)
        .bind(input.host.trim())
        .bind(input.port)
        .bind(input.database.trim())
        .bind(input.username.trim())
        .bind(input.options.trim())
        .bind(secret_kind)
        .bind(&secret)
        .bind(&actor.name)
        .bind(now)
        .run(&mut *tx, format!("registering connection `{}`", input.name))
        .await
        .map_err(|e| {
            e.or_conflict(|| {
                format!(
                    "a connection named `{}` exists already: edit it, or choose another name",
                    input.name
                )
            })
        })?;
        audit::commit(
            tx,
            audit_entry(actor, "connection.create", &input, secret_kind, None),
            "committing a new connection",
        )
        .await?;
        self.connection(&input.name).await
    }

    /// Changes a connection's fields; its secret is replaced only when the
    /// input says so (admins; audited without the secret).
    pub async fn update_connection(
        &self,
        actor: &Actor,
        input: ConnectionInput,
    ) -> Result<Connection> {
        actor.require_admin("changing a connection")?;
        let before = self.connection(&input.name).await?;
        validate(&input)?;
        refuse_own_store(&input)?;
        let sealed = self.seal(&input.name, &input.secret)?;
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE connections SET kind = $2, host = $3, port = $4, database = $5, username = $6,
                    options = $7, updated_at = $8 WHERE name = $1",
        )
        .bind(&input.name)
        .bind(&input.kind)
        .bind(input.host.trim())
        .bind(input.port)
        .bind(input.database.trim())
        .bind(input.username.trim())
        .bind(input.options.trim())
        .bind(now_ms())
        .run(&mut *tx, format!("changing connection `{}`", input.name))
        .await?;
        if let Some((kind, secret)) = &sealed {
            sqlx::query("UPDATE connections SET secret_kind = $2, secret = $3 WHERE name = $1")
                .bind(&input.name)
                .bind(*kind)
                .bind(secret)
                .run(
                    &mut *tx,
                    format!("replacing the secret of `{}`", input.name),
                )
                .await?;
        }
        let kind = sealed.as_ref().map_or("unchanged", |(k, _)| *k);
        audit::commit(
            tx,
            audit_entry(actor, "connection.update", &input, kind, Some(&before)),
            "committing a connection change",
        )
        .await?;
        self.connection(&input.name).await
    }

    /// Removes a connection (admins; audited). Specs that name it stop
    /// connecting until it is registered again.
    pub async fn remove_connection(&self, actor: &Actor, name: &str) -> Result<()> {
        actor.require_admin("removing a connection")?;
        let c = self.connection(name).await?;
        self.audited(
            sqlx::query("DELETE FROM connections WHERE name = $1").bind(name),
            format!("removing connection `{name}`"),
            AuditEntry::new(actor, "connection.remove", "connection", name)
                .details(serde_json::json!({ "was": describe(&c) })),
        )
        .await?;
        Ok(())
    }

    /// The URL a job connects with, its secret read now (decrypted or from
    /// its reference). Never show or log what this returns.
    pub async fn connection_url(&self, name: &str) -> Result<String> {
        let c = self.connection(name).await?;
        let (kind, stored): (String, String) =
            sqlx::query("SELECT secret_kind, secret FROM connections WHERE name = $1")
                .bind(name)
                .one(self.pool(), format!("reading connection `{name}`"))
                .await?;
        let password = match kind.as_str() {
            "encrypted" => {
                let key = self.secret_key().ok_or_else(|| {
                    ControlError::Invalid(format!(
                        "connection `{name}`: its secret is encrypted, and this tern has no secret key: {}",
                        secret::KEY_HELP
                    ))
                })?;
                Some(key.decrypt(name, &stored)?)
            }
            "env" | "file" => Some(secret::read_reference(name, &stored)?),
            _ => None,
        };
        let url = url_of(&c, password.as_deref());
        crate::own_store::refuse(&url, &format!("connection `{name}`"))?;
        Ok(url)
    }

    /// Re-encrypts every encrypted secret with the current key (after a key
    /// rotation; the previous key must still be set). Answers how many changed.
    pub async fn rekey_connections(&self, actor: &Actor) -> Result<usize> {
        actor.require_admin("re-encrypting connection secrets")?;
        let key = self.secret_key().ok_or_else(|| {
            ControlError::Invalid(format!(
                "no secret key to re-encrypt with: {}",
                secret::KEY_HELP
            ))
        })?;
        let rows: Vec<(String, String)> =
            sqlx::query("SELECT name, secret FROM connections WHERE secret_kind = 'encrypted'")
                .all(self.pool(), "reading connection secrets")
                .await?;
        let mut changed = 0;
        let mut tx = self.begin().await?;
        for (name, stored) in rows {
            if key.is_current(&name, &stored) {
                continue;
            }
            let sealed = key.encrypt(&name, &key.decrypt(&name, &stored)?)?;
            sqlx::query("UPDATE connections SET secret = $2, updated_at = $3 WHERE name = $1")
                .bind(&name)
                .bind(&sealed)
                .bind(now_ms())
                .run(&mut *tx, format!("re-encrypting the secret of `{name}`"))
                .await?;
            changed += 1;
        }
        audit::commit(
            tx,
            AuditEntry::new(actor, "connection.rekey", "connection", "*")
                .details(serde_json::json!({ "re_encrypted": changed })),
            "committing re-encrypted secrets",
        )
        .await?;
        Ok(changed)
    }
}

/// A connection in audit details: everything but its secret.
fn describe(c: &Connection) -> serde_json::Value {
    serde_json::json!({
        "kind": c.kind, "host": c.host, "port": c.port, "database": c.database,
        "username": c.username, "options": c.options, "secret": c.secret_source,
    })
}

/// The audit entry of a saved connection: its fields and where its secret
/// comes from (never the secret), and what it was before a change.
fn audit_entry(
    actor: &Actor,
    action: &str,
    input: &ConnectionInput,
    secret: &str,
    before: Option<&Connection>,
) -> AuditEntry {
    AuditEntry::new(actor, action, "connection", &input.name).details(serde_json::json!({
        "kind": input.kind, "host": input.host, "port": input.port, "database": input.database,
        "username": input.username, "options": input.options, "secret": secret,
        "before": before.map(describe),
    }))
}

/// A connection to Tern's own control store is refused when it is saved.
fn refuse_own_store(input: &ConnectionInput) -> Result<()> {
    let c = Connection {
        id: 0,
        name: input.name.clone(),
        kind: input.kind.clone(),
        host: input.host.trim().to_string(),
        port: input.port,
        database: input.database.trim().to_string(),
        username: input.username.trim().to_string(),
        options: input.options.trim().to_string(),
        secret_set: false,
        secret_source: String::new(),
        created_by: String::new(),
        created_at: 0,
        updated_at: 0,
    };
    crate::own_store::refuse(&url_of(&c, None), &format!("connection `{}`", input.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_built_with_encoded_credentials() {
        let mut c = Connection {
            id: 1,
            name: "legacy-inbox".into(),
            kind: "postgres".into(),
            host: "db.internal".into(),
            port: Some(5433),
            database: "inbox".into(),
            username: "app".into(),
            options: "sslmode=require".into(),
            secret_set: true,
            secret_source: "encrypted".into(),
            created_by: "ad".into(),
            created_at: 0,
            updated_at: 0,
        };
        assert_eq!(
            url_of(&c, Some("p@ss:w/rd")),
            "postgres://app:p%40ss%3Aw%2Frd@db.internal:5433/inbox?sslmode=require"
        );
        c.kind = "sqlite".into();
        c.database = "/data/inbox.db".into();
        c.options.clear();
        assert_eq!(url_of(&c, None), "sqlite:///data/inbox.db");
    }

    #[test]
    fn mistakes_are_named() {
        let ok = ConnectionInput {
            name: "legacy-inbox".into(),
            kind: "postgres".into(),
            host: "db".into(),
            ..Default::default()
        };
        assert!(validate(&ok).is_ok());
        for (bad, says) in [
            (
                ConnectionInput {
                    name: "no spaces".into(),
                    ..ok.clone()
                },
                "connection name",
            ),
            (
                ConnectionInput {
                    kind: "oracle".into(),
                    ..ok.clone()
                },
                "not one of",
            ),
            (
                ConnectionInput {
                    host: String::new(),
                    ..ok.clone()
                },
                "host",
            ),
            (
                ConnectionInput {
                    port: Some(70000),
                    ..ok.clone()
                },
                "port",
            ),
            (
                ConnectionInput {
                    secret: SecretInput::Reference("vault:x".into()),
                    ..ok.clone()
                },
                "env:NAME",
            ),
        ] {
            let e = validate(&bad).expect_err("refused").to_string();
            assert!(e.contains(says), "{e}");
        }
    }
}
