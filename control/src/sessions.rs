//! Sign-in sessions, kept in the control store so that a restart of `tern`
//! signs nobody out. The web edge adapts these to `tower-sessions`; the data is
//! an opaque JSON document to this module.

use sqlx::Row;

use crate::clock::now_ms;
use crate::error::{ControlError, Result};
use crate::store::Store;

/// A stored session: its JSON data and when it expires (Unix ms).
#[derive(Debug, Clone, PartialEq, Eq)]
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
        .execute(self.pool())
        .await
        .map_err(ControlError::db("saving a session"))?;
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
        .execute(self.pool())
        .await
        .map_err(ControlError::db("creating a session"))?;
        Ok(done.rows_affected() == 1)
    }

    /// The session with this id, unless it is missing or expired.
    pub async fn load_session(&self, id: &str) -> Result<Option<SessionRecord>> {
        let row =
            sqlx::query("SELECT data, expires_at FROM sessions WHERE id = $1 AND expires_at > $2")
                .bind(id)
                .bind(now_ms())
                .fetch_optional(self.pool())
                .await
                .map_err(ControlError::db("loading a session"))?;
        row.map(|row| {
            Ok(SessionRecord {
                id: id.to_string(),
                data: row
                    .try_get("data")
                    .map_err(ControlError::db("reading a session"))?,
                expires_at: row
                    .try_get("expires_at")
                    .map_err(ControlError::db("reading a session"))?,
            })
        })
        .transpose()
    }

    /// Forgets a session (sign-out).
    pub async fn delete_session(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await
            .map_err(ControlError::db("deleting a session"))?;
        Ok(())
    }

    /// Deletes every expired session; returns how many.
    pub async fn delete_expired_sessions(&self) -> Result<u64> {
        let done = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now_ms())
            .execute(self.pool())
            .await
            .map_err(ControlError::db("deleting expired sessions"))?;
        Ok(done.rows_affected())
    }
}
