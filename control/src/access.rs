//! Who may do what: the roles, a user as the rest of the system sees it, and
//! the actor an action is performed as, with the checks every surface (UI,
//! JSON API, CLI, workers) goes through. Plain rules, no SQL: the store keeps
//! users in `users.rs`.

use serde::{Deserialize, Serialize};

use crate::error::{ControlError, Result};

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Viewer,
    Engineer,
    ClientOwner,
    Admin,
}

impl Role {
    /// Every role, in the order the UI lists them.
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Engineer, Role::ClientOwner, Role::Admin];

    /// The role's name as stored and typed (`client-owner`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Engineer => "engineer",
            Role::ClientOwner => "client-owner",
            Role::Admin => "admin",
        }
    }

    /// Parses a role name, saying which names exist when it is none of them.
    pub fn parse(s: &str) -> Result<Role> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                ControlError::Invalid(format!(
                    "unknown role `{s}`: use one of viewer, engineer, client-owner, admin"
                ))
            })
    }

    /// May start and stop jobs, flip ramps and roll back.
    pub fn can_operate(self) -> bool {
        matches!(self, Role::Engineer | Role::Admin)
    }

    /// May manage users and override gates.
    pub fn can_administer(self) -> bool {
        matches!(self, Role::Admin)
    }

    /// May read the audit log and every migration's internals.
    pub fn can_read_audit(self) -> bool {
        !matches!(self, Role::ClientOwner)
    }
}

crate::db::stored_as_text!(Role);

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A user as the rest of the system sees it (no password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    #[sqlx(try_from = "crate::db::Flag")]
    pub disabled: bool,
    pub created_at: i64,
    /// For client-owners: the clients they own (from `user_clients`: a row
    /// of `users` reads as none, the store adds them).
    #[sqlx(skip)]
    pub clients: Vec<String>,
}

/// Who performs an action: a signed-in user, or Tern itself (workers, the demo).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub name: String,
    pub role: Role,
    pub clients: Vec<String>,
}

impl Actor {
    /// Tern acting on its own (scheduled work, the demo's set-up): admin rights.
    pub fn system() -> Actor {
        Actor {
            name: "system".into(),
            role: Role::Admin,
            clients: Vec::new(),
        }
    }

    /// Refuses unless the actor may operate (engineer or admin).
    pub fn require_operate(&self, what: &str) -> Result<()> {
        self.require_role(
            self.role.can_operate(),
            what,
            "needs the engineer or admin role",
        )
    }

    /// Refuses unless the actor is an admin.
    pub fn require_admin(&self, what: &str) -> Result<()> {
        self.require_role(self.role.can_administer(), what, "needs the admin role")
    }

    /// Refuses, unless `allowed`, saying that `what` `needs` a role the
    /// actor does not have.
    fn require_role(&self, allowed: bool, what: &str, needs: &str) -> Result<()> {
        if allowed {
            Ok(())
        } else {
            Err(ControlError::Forbidden(format!(
                "{what} {needs}; {} is signed in as {}",
                self.name, self.role
            )))
        }
    }

    /// Whether the actor may read the client named `client`: readers see
    /// every client, client-owners only their own.
    pub fn sees_client(&self, client: &str) -> bool {
        self.role.can_read_audit() || self.clients.iter().any(|c| c == client)
    }

    /// Refuses a client-owner reading a client that is not theirs.
    pub fn require_client(&self, client: &str, what: &str) -> Result<()> {
        if self.sees_client(client) {
            Ok(())
        } else {
            Err(ControlError::Forbidden(format!(
                "{what}: client `{client}` is not one of {}'s clients ({})",
                self.name,
                if self.clients.is_empty() {
                    "none".to_string()
                } else {
                    self.clients.join(", ")
                }
            )))
        }
    }

    /// Refuses client-owners (who see only their own clients).
    pub fn require_reader(&self, what: &str) -> Result<()> {
        self.require_role(
            self.role.can_read_audit(),
            what,
            "is for program managers, engineers and admins",
        )
    }
}

impl From<&User> for Actor {
    fn from(u: &User) -> Actor {
        Actor {
            name: u.username.clone(),
            role: u.role,
            clients: u.clients.clone(),
        }
    }
}
