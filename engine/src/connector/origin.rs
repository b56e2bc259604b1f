//! The origin mark: how change capture tells Tern's own writes from an
//! application's, so that a write one relay makes is never captured for the
//! other direction (no ping-pong). Every transaction the engine's writer runs
//! ([`super::Conn::write_chunk`]: bulk load, relays, catch-up, repair, the
//! reverse relay's writes to the source) opens with the mark; the capture
//! triggers ([`crate::capture`]) log nothing while it is set.
//!
//! - **PostgreSQL**: the setting `tern.origin`, set with
//!   `set_config('tern.origin', …, true)`: local to the transaction, so it
//!   ends with it, committed or not. Triggers read
//!   `current_setting('tern.origin', true)`.
//! - **MySQL/MariaDB**: the session variable `@tern_origin`, set as the
//!   transaction's first statement and cleared as its last; after a failed
//!   transaction it is cleared on the same connection before the error is
//!   returned (a connection that cannot be reached to clear it is broken,
//!   and the pool's check on acquire drops it).
//! - **SQLite** has no session variables. Its mark is a row in the table
//!   `_tern_origin` (created with change capture), inserted as the
//!   transaction's first statement and deleted as its last. SQLite runs one
//!   write transaction at a time per database, and a row not committed is
//!   seen by no other connection, so while the row exists every trigger that
//!   fires belongs to the marked transaction; the triggers' `WHEN NOT EXISTS
//!   (SELECT 1 FROM _tern_origin)` skips exactly those. Nothing of the mark
//!   is ever committed.

use sqlx::{MySql, MySqlConnection, Sqlite, SqliteConnection};

use super::driver::{self, Chunk};
use super::{Conn, Dialect, Statement, postgres};
use crate::transform::TableRows;
use crate::value::Value;

/// SQLite's marker table (created and dropped with change capture).
pub const ORIGIN_TABLE: &str = "_tern_origin";

/// What the mark holds: who wrote (for people reading a session list).
const ORIGIN: &str = "tern";

/// The statements that open the mark, first in a transaction.
pub(crate) fn open(d: Dialect) -> Vec<Statement> {
    let origin = Value::Text(ORIGIN.into());
    vec![match d {
        Dialect::Postgres => {
            Statement::new("SELECT set_config('tern.origin', $1, true)", vec![origin])
        }
        Dialect::MySql => Statement::new("SET @tern_origin = ?", vec![origin]),
        Dialect::Sqlite => Statement::new(
            format!("INSERT INTO {} (origin) VALUES (?)", d.quote(ORIGIN_TABLE)),
            vec![origin],
        ),
    }]
}

/// The statements that close the mark, last in a transaction (PostgreSQL's
/// ends with the transaction by itself).
pub(crate) fn close(d: Dialect) -> Vec<Statement> {
    match d {
        Dialect::Postgres => Vec::new(),
        Dialect::MySql => vec![Statement::new("SET @tern_origin = NULL", Vec::new())],
        Dialect::Sqlite => vec![Statement::new(
            format!("DELETE FROM {}", d.quote(ORIGIN_TABLE)),
            Vec::new(),
        )],
    }
}

/// The condition under which a capture trigger logs a change: no mark set.
pub(crate) fn unmarked_sql(d: Dialect) -> String {
    match d {
        Dialect::Postgres => "coalesce(current_setting('tern.origin', true), '') = ''".into(),
        Dialect::MySql => "@tern_origin IS NULL".into(),
        Dialect::Sqlite => format!("NOT EXISTS (SELECT 1 FROM {})", d.quote(ORIGIN_TABLE)),
    }
}

/// Clears the MySQL mark after a failed transaction (best effort: a
/// connection this fails on is broken and is not reused).
pub(crate) async fn clear_mysql(c: &mut MySqlConnection) {
    if let Err(e) = sqlx::query("SET @tern_origin = NULL").execute(c).await {
        tracing::debug!(error = %e, "could not clear the origin mark; the connection is broken");
    }
}

/// Whether the SQLite database has the marker table (change capture installed).
pub(crate) async fn sqlite_marker_exists(c: &mut SqliteConnection) -> Result<bool, sqlx::Error> {
    let n: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?")
            .bind(ORIGIN_TABLE)
            .fetch_one(c)
            .await?;
    Ok(n > 0)
}

/// [`Conn::write_chunk`]: the chunk's transaction, opened with the mark and
/// closed without it, per database.
pub(super) async fn write_chunk_marked(
    conn: &mut Conn,
    tables: &[TableRows],
    version: i64,
    after: &[Statement],
) -> Result<(), sqlx::Error> {
    let chunk = |before, after| Chunk {
        tables,
        version,
        before,
        after,
    };
    match conn {
        Conn::Pg(c, staging) => {
            let before = open(Dialect::Postgres);
            postgres::write_chunk(c, staging, chunk(&before, after)).await
        }
        Conn::My(c) => {
            let before = open(Dialect::MySql);
            let after = [after, &close(Dialect::MySql)].concat();
            let result = driver::write_upserts::<MySql>(c, chunk(&before, &after)).await;
            if result.is_err() {
                clear_mysql(c).await;
            }
            result
        }
        Conn::Lite(c) => {
            // The mark is a row of the marker table, which exists only
            // where change capture is installed (and can be installed
            // while a writer is held): looked for on every write.
            let (before, after) = if sqlite_marker_exists(c).await? {
                let close = close(Dialect::Sqlite);
                (open(Dialect::Sqlite), [after, &close].concat())
            } else {
                (Vec::new(), after.to_vec())
            };
            driver::write_upserts::<Sqlite>(c, chunk(&before, &after)).await
        }
    }
}
