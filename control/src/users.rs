//! Users, roles and passwords.
//!
//! Roles: `viewer` (the program manager: reads everything), `engineer` (also
//! starts jobs, flips ramps, rolls back), `client-owner` (reads, and edits only the
//! clients bound to them) and `admin` (everything, and manages users). Passwords
//! are hashed with Argon2id; a hash never leaves this module.

use argon2::password_hash::{PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng};
use argon2::{Argon2, PasswordHash};

pub use crate::access::{Actor, Role, User};
use crate::audit::{self, AuditEntry};
use crate::clock::now_ms;
use crate::db::Run;
use crate::error::{ControlError, Result};
use crate::store::Store;

/// What `create_user` needs.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub password: String,
    pub clients: Vec<String>,
}

/// The shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 8;

fn validate_username(name: &str) -> Result<()> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
    if (2..=64).contains(&name.len()) && ok_chars {
        Ok(())
    } else {
        Err(ControlError::Invalid(format!(
            "username `{name}` is not valid: use 2 to 64 characters from a-z, 0-9, `.`, `_` and `-`"
        )))
    }
}

fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ControlError::Internal(format!("hashing a password: {e}")))
}

/// The most memory (KiB), passes and lanes a stored hash may ask of a
/// check: a hash with a larger cost is refused, not computed.
const MAX_M_COST: u32 = 64 * 1024;
const MAX_T_COST: u32 = 8;
const MAX_P_COST: u32 = 4;
/// Longer passwords are refused before any hashing.
pub const MAX_PASSWORD_BYTES: usize = 1024;

fn verify_password(password: &str, hash: &str) -> bool {
    if password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let cost = |name: &str| parsed.params.get_decimal(name).unwrap_or(u32::MAX);
    if cost("m") > MAX_M_COST || cost("t") > MAX_T_COST || cost("p") > MAX_P_COST {
        tracing::warn!("a stored password hash asks for more Argon2 work than allowed; refused");
        return false;
    }
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// A real hash of a random password, checked against when the username is
/// unknown, so that a sign-in takes as long whether or not the user exists.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        let random = SaltString::generate(&mut OsRng);
        hash_password(random.as_str()).unwrap_or_default()
    })
}

/// At most this many Argon2 computations run at once (each holds about
/// 19 MiB): a flood of sign-ins waits its turn instead of exhausting memory.
const ARGON2_AT_ONCE: usize = 4;
static ARGON2_PERMITS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(ARGON2_AT_ONCE);

/// Argon2 is deliberately slow; it runs off the async workers, a few at a time.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    let _permit = ARGON2_PERMITS
        .acquire()
        .await
        .map_err(|e| ControlError::Internal(format!("password check queue closed: {e}")))?;
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ControlError::Internal(format!("password task failed: {e}")))
}

/// A user's row with the password hash, for a sign-in.
#[derive(sqlx::FromRow)]
struct Login {
    #[sqlx(flatten)]
    user: User,
    password_hash: String,
}

impl Store {
    /// Creates a user (audited). Refuses a taken username, a short password, or
    /// a client-owner without clients.
    pub async fn create_user(&self, actor: &Actor, new: NewUser) -> Result<User> {
        actor.require_admin("creating users")?;
        validate_username(&new.username)?;
        if new.password.chars().count() < MIN_PASSWORD_LEN {
            return Err(ControlError::Invalid(format!(
                "the password for `{}` is too short: use at least {MIN_PASSWORD_LEN} characters",
                new.username
            )));
        }
        if new.password.len() > MAX_PASSWORD_BYTES {
            return Err(ControlError::Invalid(format!(
                "the password for `{}` is too long: use at most {MAX_PASSWORD_BYTES} bytes",
                new.username
            )));
        }
        if new.role == Role::ClientOwner && new.clients.is_empty() {
            return Err(ControlError::Invalid(format!(
                "`{}` is a client-owner but owns no client: name at least one client",
                new.username
            )));
        }
        let display_name = if new.display_name.trim().is_empty() {
            new.username.clone()
        } else {
            new.display_name.trim().to_string()
        };
        let password = new.password;
        let hash = blocking(move || hash_password(&password)).await??;
        let now = now_ms();

        let mut tx = self.begin().await?;
        let id: i64 = sqlx::query(
            "INSERT INTO users (username, display_name, role, password_hash, disabled, created_at)
             VALUES ($1, $2, $3, $4, 0, $5) RETURNING id",
        )
        .bind(&new.username)
        .bind(&display_name)
        .bind(new.role.as_str())
        .bind(&hash)
        .bind(now)
        .scalar(&mut *tx, format!("creating user {}", new.username))
        .await
        .map_err(|e| {
            e.or_conflict(|| {
                format!(
                    "a user named `{}` already exists: choose another username",
                    new.username
                )
            })
        })?;
        let mut clients = new.clients.clone();
        clients.sort();
        clients.dedup();
        for client in &clients {
            sqlx::query("INSERT INTO user_clients (user_id, client) VALUES ($1, $2)")
                .bind(id)
                .bind(client)
                .run(&mut *tx, "binding a client-owner to a client")
                .await?;
        }
        audit::commit(
            tx,
            AuditEntry::new(actor, "user.create", "user", &new.username)
                .to_state(new.role.as_str())
                .details(serde_json::json!({ "clients": clients })),
            "committing a new user",
        )
        .await?;
        Ok(User {
            id,
            username: new.username,
            display_name,
            role: new.role,
            disabled: false,
            created_at: now,
            clients,
        })
    }

    async fn clients_of(&self, user_id: i64) -> Result<Vec<String>> {
        sqlx::query("SELECT client FROM user_clients WHERE user_id = $1 ORDER BY client")
            .bind(user_id)
            .column(self.pool(), "reading a user's clients")
            .await
    }

    /// `user` with the clients it owns.
    async fn with_clients(&self, user: User) -> Result<User> {
        let clients = self.clients_of(user.id).await?;
        Ok(User { clients, ..user })
    }

    /// The user with this id, if any.
    pub async fn user_by_id(&self, id: i64) -> Result<Option<User>> {
        let user = sqlx::query("SELECT * FROM users WHERE id = $1")
            .bind(id)
            .optional(self.pool(), "reading a user")
            .await?;
        match user {
            Some(user) => Ok(Some(self.with_clients(user).await?)),
            None => Ok(None),
        }
    }

    /// Every user, by username.
    pub async fn list_users(&self) -> Result<Vec<User>> {
        let rows: Vec<User> = sqlx::query("SELECT * FROM users ORDER BY username")
            .all(self.pool(), "listing users")
            .await?;
        let mut users = Vec::with_capacity(rows.len());
        for user in rows {
            users.push(self.with_clients(user).await?);
        }
        Ok(users)
    }

    /// Checks a username and password. `Ok(None)` for an unknown user, a wrong
    /// password or a disabled account: the caller must not tell them apart.
    pub async fn authenticate(&self, username: &str, password: &str) -> Result<Option<User>> {
        let login: Option<Login> = sqlx::query("SELECT * FROM users WHERE username = $1")
            .bind(username)
            .optional(self.pool(), "checking a sign-in")
            .await?;
        let Some(Login {
            user,
            password_hash: hash,
        }) = login
        else {
            // Spend the same time as a real check so that timing does not reveal
            // which usernames exist.
            let password = password.to_string();
            blocking(move || verify_password(&password, dummy_hash())).await?;
            return Ok(None);
        };
        let password = password.to_string();
        let ok = blocking(move || verify_password(&password, &hash)).await?;
        let user = self.with_clients(user).await?;
        Ok((ok && !user.disabled).then_some(user))
    }

    /// Enables or disables a user (audited). A disabled user cannot sign in, and
    /// their open sessions stop working at their next request.
    pub async fn set_user_disabled(
        &self,
        actor: &Actor,
        username: &str,
        disabled: bool,
    ) -> Result<()> {
        actor.require_admin("disabling users")?;
        if disabled && actor.name == username {
            return Err(ControlError::Conflict(
                "you cannot disable your own account: ask another admin".into(),
            ));
        }
        let mut tx = self.begin().await?;
        let done = sqlx::query("UPDATE users SET disabled = $1 WHERE username = $2")
            .bind(i64::from(disabled))
            .bind(username)
            .run(&mut *tx, "disabling a user")
            .await?;
        if done == 0 {
            return Err(ControlError::NotFound(format!(
                "no user named `{username}`"
            )));
        }
        let (from, to) = if disabled {
            ("enabled", "disabled")
        } else {
            ("disabled", "enabled")
        };
        audit::commit(
            tx,
            AuditEntry::new(actor, "user.disable", "user", username)
                .from_state(from)
                .to_state(to),
            "committing a user change",
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_round_trip() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()).ok(), Some(role));
        }
        let err = Role::parse("root").err().map(|e| e.to_string());
        assert!(err.is_some_and(|m| m.contains("viewer, engineer, client-owner, admin")));
    }

    #[test]
    fn only_engineers_and_admins_operate() {
        assert!(!Role::Viewer.can_operate());
        assert!(!Role::ClientOwner.can_operate());
        assert!(Role::Engineer.can_operate());
        assert!(Role::Admin.can_operate());
        assert!(Role::Admin.can_administer());
        assert!(!Role::Engineer.can_administer());
    }

    #[test]
    fn usernames_are_checked() {
        assert!(validate_username("pm.alice").is_ok());
        assert!(validate_username("A").is_err());
        assert!(validate_username("bob smith").is_err());
    }

    #[test]
    fn passwords_verify_only_against_their_hash() {
        let hash = hash_password("correct horse").expect("hash");
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong horse", &hash));
        assert!(!verify_password("correct horse", "not a hash"));
    }
}
