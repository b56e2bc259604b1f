//! The batch writer: writes a chunk's transformed rows to their target
//! tables, version-guarded, and the chunk's checkpoint, in one transaction on
//! one held connection (see [`crate::connector`] for each database's path).

use crate::connector::{Conn, Connector, Statement};
use crate::error::{EngineError, Result};
use crate::transform::Output;

/// Writes chunks to the target.
pub struct BatchWriter {
    conn: Conn,
}

impl BatchWriter {
    pub(crate) async fn open(target: &Connector) -> Result<BatchWriter> {
        Ok(BatchWriter {
            conn: target.writer().await?,
        })
    }

    /// Writes `output` stamped with `version`, then `after` (the checkpoint),
    /// atomically. On error nothing of it is committed; the message carries
    /// the database's own detail (PostgreSQL says which COPY line and column).
    pub(crate) async fn write(
        &mut self,
        output: &Output,
        version: i64,
        after: &[Statement],
    ) -> std::result::Result<(), String> {
        self.conn
            .write_chunk(&output.tables, version, after)
            .await
            .map_err(describe)
    }

    /// Runs `statements` alone (no rows), in one transaction marked like a
    /// chunk's. A refusal is an [`EngineError::Apply`] about `what`, its
    /// message the database's after `refused`.
    pub(crate) async fn write_statements(
        &mut self,
        statements: &[Statement],
        what: String,
        refused: &str,
    ) -> Result<()> {
        self.conn
            .write_chunk(&[], 0, statements)
            .await
            .map_err(|e| EngineError::Apply {
                what,
                message: format!("{refused}: {}", describe(e)),
            })
    }
}

/// A database error with whatever detail the driver offers.
pub(crate) fn describe(e: sqlx::Error) -> String {
    if let Some(db) = e.as_database_error()
        && let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
    {
        let mut s = pg.message().to_string();
        if let Some(d) = pg.detail() {
            s.push_str(&format!(" ({d})"));
        }
        if let Some(w) = pg.r#where() {
            s.push_str(&format!(" [{w}]"));
        }
        return s;
    }
    e.to_string()
}
