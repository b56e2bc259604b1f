//! Sign-in sessions, kept in the control store so that a restart of `tern`
//! signs nobody out. The web edge adapts these to `tower-sessions`; the data is
//! an opaque JSON document to this module.

use crate::clock::now_ms;
use crate::db::Run;
use crate::error::Result;
use crate::store::Store;

/// A stored session: its JSON data and when it expires (Unix ms).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SessionRecord {
    pub id: String,
    pub data: String,
    pub expires_at: i64,
}

impl Store {
    /// Inserts or replaces a session.
    pub async fn save_session(&self, record: &SessionRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO sessions (id, data, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET data = excluded.data, expires_at = excluded.expires_at",
        )
        .bind(&record.id)
        .bind(&record.data)
        .bind(record.expires_at)
        .run(self.pool(), "saving a session")
        .await?;
        Ok(())
    }

    /// Inserts a session only if its id is new; `false` when the id is taken.
    pub async fn create_session(&self, record: &SessionRecord) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO sessions (id, data, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&record.id)
        .bind(&record.data)
        .bind(record.expires_at)
        .run(self.pool(), "creating a session")
        .await?;
        Ok(done == 1)
    }

    /// The session with this id, unless it is missing or expired.
    pub async fn load_session(&self, id: &str) -> Result<Option<SessionRecord>> {
        sqlx::query("SELECT id, data, expires_at FROM sessions WHERE id = $1 AND expires_at > $2")
            .bind(id)
            .bind(now_ms())
            .optional(self.pool(), "loading a session")
            .await
    }

    /// Forgets a session (sign-out).
    pub async fn delete_session(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE id = $1")
            .bind(id)
            .run(self.pool(), "deleting a session")
            .await?;
        Ok(())
    }

    /// Deletes every expired session; returns how many.
    pub async fn delete_expired_sessions(&self) -> Result<u64> {
        let done = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now_ms())
            .run(self.pool(), "deleting expired sessions")
            .await?;
        Ok(done)
    }
}
