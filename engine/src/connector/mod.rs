//! Connectors: one [`Connector`] per source or target database, PostgreSQL,
//! MySQL/MariaDB or SQLite, each usable as source and as target.
//!
//! As a source a connector describes relations, reads rows as [`Value`]s and
//! tells the database's clock. As a target it creates tables from the spec and
//! writes chunks with its fastest safe path, always as a version-guarded upsert
//! by key, in one transaction with the chunk's checkpoint:
//! PostgreSQL `COPY` into a temporary staging table then one set-based
//! `INSERT … SELECT … ON CONFLICT DO UPDATE … WHERE version <`; MySQL multi-row
//! `INSERT … ON DUPLICATE KEY UPDATE col = IF(version <, …)`; SQLite multi-row
//! `INSERT … ON CONFLICT DO UPDATE … WHERE version <`. The target key must be
//! the table's primary key (MySQL's upsert fires on any unique key, so other
//! unique keys on a MySQL target are not supported).

mod dialect;
mod driver;
mod keyed;
mod mysql;
pub(crate) mod origin;
mod pg_copy;
mod postgres;
mod sqlite;
pub(crate) mod unique_keys;

use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::pool::PoolConnection;
use sqlx::{MySql, MySqlPool, PgPool, Postgres, Sqlite, SqlitePool};

pub use dialect::Dialect;

use crate::error::{EngineError, Result};
use crate::transform::{SourceColumn, TableRows, TableShape};
use crate::value::{ColumnType, Value};

/// The version column every target table carries: the source clock (µs) at
/// which the row was read. See [`crate::bulk_load`] for why it is taken before
/// the read.
pub const VERSION_COLUMN: &str = "_tern_version";

/// The hidden column every target table filled from a source carries: the
/// source key of the record that wrote the row ([`crate::value::source_key_text`]),
/// indexed, so that a record deleted in the source is deleted in the target
/// (the relay cannot compute target keys of a record it can no longer read).
pub const SOURCE_KEY_COLUMN: &str = "_tern_source_key";

/// A URL with its password (`user:pw@`, and `password=` / `pass=` query
/// parameters) replaced by `***`, for messages and logs.
pub fn redact(url: &str) -> String {
    query_passwords(&redact_userinfo(url))
}

fn redact_userinfo(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    let host_start = rest.find('/').unwrap_or(rest.len());
    match rest[..host_start].rfind('@') {
        Some(at) => {
            let user = &rest[..at];
            let user = user.split(':').next().unwrap_or("");
            if rest[..at].contains(':') {
                format!("{}{user}:***{}", &url[..scheme_end], &rest[at..])
            } else {
                url.to_string()
            }
        }
        None => url.to_string(),
    }
}

/// `password=…` and `pass=…` query parameters of a URL, hidden.
fn query_passwords(url: &str) -> String {
    let Some(q) = url.find('?') else {
        return url.to_string();
    };
    let params: Vec<String> = url[q + 1..]
        .split('&')
        .map(|p| match p.split_once('=') {
            Some((k, _)) if matches!(k.to_ascii_lowercase().as_str(), "password" | "pass") => {
                format!("{k}=***")
            }
            _ => p.to_string(),
        })
        .collect();
    format!("{}?{}", &url[..q], params.join("&"))
}

/// A connection pool to a source or target database.
#[derive(Debug, Clone)]
pub struct Connector {
    pool: Pool,
    /// `source` or `target`, for messages.
    role: &'static str,
    url: String,
}

#[derive(Debug, Clone)]
enum Pool {
    Pg(PgPool),
    My(MySqlPool),
    Lite(SqlitePool),
}

/// A connection held for the duration of a load (PostgreSQL's staging
/// tables live in it).
pub(crate) enum Conn {
    Pg(PoolConnection<Postgres>, postgres::Staging),
    My(PoolConnection<MySql>),
    Lite(PoolConnection<Sqlite>),
}

/// A statement with its parameters, run in a transaction with others: after
/// a chunk's rows (the checkpoint), or in [`Connector::transaction`].
#[derive(Debug, Clone)]
pub struct Statement {
    pub sql: String,
    pub params: Vec<Value>,
    /// Rows it must affect, or the transaction is rolled back.
    pub expect_rows: Option<u64>,
}

impl Statement {
    /// A statement that may affect any number of rows.
    pub fn new(sql: impl Into<String>, params: Vec<Value>) -> Statement {
        Statement {
            sql: sql.into(),
            params,
            expect_rows: None,
        }
    }
}

impl Connector {
    /// Connects to `url`; `role` (`source` or `target`) names it in errors.
    pub async fn connect(url: &str, role: &'static str) -> Result<Connector> {
        let dialect = Dialect::of_url(url).ok_or_else(|| EngineError::Spec {
            at: format!("{role} url"),
            message: format!(
                "`{}` is not a postgres://, mysql:// or sqlite:// URL",
                redact(url)
            ),
        })?;
        let unreachable = |source| EngineError::Unreachable {
            role: role.to_string(),
            url: redact(url),
            source,
        };
        let pool = match dialect {
            Dialect::Postgres => {
                use std::str::FromStr;
                // Tern's statements are short, and some carry a batch's keys
                // as long generated conditions, which PostgreSQL estimates as
                // costly: past `jit_above_cost` it compiles them first (a
                // relay's 250-key delete: 7 s compiling, under 1 ms running).
                let opts = sqlx::postgres::PgConnectOptions::from_str(url)
                    .map_err(unreachable)?
                    .options([("jit", "off")]);
                driver::pool_options()
                    .connect_with(opts)
                    .await
                    .map(Pool::Pg)
            }
            Dialect::MySql => driver::pool_options().connect(url).await.map(Pool::My),
            Dialect::Sqlite => {
                use std::str::FromStr;
                let opts = sqlx::sqlite::SqliteConnectOptions::from_str(url)
                    .map_err(unreachable)?
                    .busy_timeout(std::time::Duration::from_secs(30));
                driver::pool_options()
                    .connect_with(opts)
                    .await
                    .map(Pool::Lite)
            }
        }
        .map_err(unreachable)?;
        Ok(Connector {
            pool,
            role,
            url: redact(url),
        })
    }

    pub fn dialect(&self) -> Dialect {
        match self.pool {
            Pool::Pg(_) => Dialect::Postgres,
            Pool::My(_) => Dialect::MySql,
            Pool::Lite(_) => Dialect::Sqlite,
        }
    }

    pub fn role(&self) -> &'static str {
        self.role
    }

    /// The URL without password.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's clock in microseconds since the Unix epoch; for SQLite,
    /// which has no server, this process's clock.
    pub async fn clock_micros(&self) -> Result<i64> {
        let ctx = || format!("read the clock of {} database {}", self.role, self.url);
        match &self.pool {
            Pool::Pg(p) => sqlx::query_scalar::<_, i64>(
                "SELECT (extract(epoch from clock_timestamp()) * 1000000)::bigint",
            )
            .fetch_one(p)
            .await
            .map_err(EngineError::db(ctx())),
            Pool::My(p) => sqlx::query_scalar::<_, i64>(
                "SELECT CAST(UNIX_TIMESTAMP(NOW(6)) * 1000000 AS SIGNED)",
            )
            .fetch_one(p)
            .await
            .map_err(EngineError::db(ctx())),
            Pool::Lite(_) => Ok(process_clock_micros()),
        }
    }

    /// The columns a SELECT returns, with their types where the engine maps them.
    pub async fn describe(&self, sql: &str) -> Result<Vec<SourceColumn>> {
        let ctx = format!(
            "describe `{}` on {} database {}",
            one_line(sql),
            self.role,
            self.url
        );
        match &self.pool {
            Pool::Pg(p) => driver::describe(p, sql).await,
            Pool::My(p) => driver::describe(p, sql).await,
            Pool::Lite(p) => driver::describe(p, sql).await,
        }
        .map_err(EngineError::db(ctx))
    }

    /// The columns of a table, `None` if it does not exist.
    pub async fn table_columns(&self, table: &str) -> Result<Option<Vec<SourceColumn>>> {
        let ctx = format!(
            "read the columns of {table} on {} database {}",
            self.role, self.url
        );
        match &self.pool {
            Pool::Pg(p) => driver::table_columns(p, table, postgres::table_exists(p, table)).await,
            Pool::My(p) => driver::table_columns(p, table, mysql::table_exists(p, table)).await,
            Pool::Lite(p) => sqlite::table_columns(p, table).await,
        }
        .map_err(EngineError::db(ctx))
    }

    /// The database's own estimate of a table's rows, from its statistics
    /// (PostgreSQL `pg_class.reltuples`, MySQL/MariaDB
    /// `information_schema.tables.table_rows`): free to read, and off by
    /// whatever the statistics are behind. `None` when there is none (a table
    /// never analysed, SQLite), or when it says 0.
    pub async fn estimated_rows(&self, table: &str) -> Result<Option<u64>> {
        let ctx = format!(
            "read the estimated rows of {table} on {} database {}",
            self.role, self.url
        );
        let estimate = match &self.pool {
            Pool::Pg(p) => postgres::estimated_rows(p, table).await,
            Pool::My(p) => mysql::estimated_rows(p, table).await,
            Pool::Lite(_) => Ok(None),
        }
        .map_err(EngineError::db(ctx))?;
        Ok(estimate
            .and_then(|n| u64::try_from(n).ok())
            .filter(|&n| n > 0))
    }

    /// Runs a query and returns its column names and rows. `context` says
    /// what the query was for, in errors.
    pub async fn fetch(
        &self,
        sql: &str,
        params: &[Value],
        context: &str,
    ) -> Result<(Vec<String>, Vec<Vec<Value>>)> {
        match &self.pool {
            Pool::Pg(p) => driver::fetch(p, sql, params).await,
            Pool::My(p) => driver::fetch(p, sql, params).await,
            Pool::Lite(p) => driver::fetch(p, sql, params).await,
        }
        .map_err(|e| self.fetch_error(e, context))
    }

    /// Runs a query that must not write and returns its column names and
    /// rows; the database itself refuses a write, however it is hidden (a
    /// writing function, a data-modifying CTE, `DELETE … RETURNING`), and
    /// stops the query after `timeout`. PostgreSQL and MySQL/MariaDB run it
    /// in a `READ ONLY` transaction with a statement time limit; SQLite on a
    /// connection set to `query_only` (SQLite has no time limit). Whatever
    /// happens, nothing is committed and the connection goes back to the pool
    /// as it was. This is how a data fix runs the filter its user wrote.
    pub async fn fetch_read_only(
        &self,
        sql: &str,
        params: &[Value],
        timeout: std::time::Duration,
        context: &str,
    ) -> Result<(Vec<String>, Vec<Vec<Value>>)> {
        match &self.pool {
            Pool::Pg(p) => postgres::fetch_read_only(p, sql, params, timeout).await,
            Pool::My(p) => mysql::fetch_read_only(p, sql, params, timeout).await,
            Pool::Lite(p) => sqlite::fetch_read_only(p, sql, params).await,
        }
        .map_err(|e| self.fetch_error(e, context))
    }

    fn fetch_error(&self, e: FetchError, context: &str) -> EngineError {
        let context = format!("{context} on {} database {}", self.role, self.url);
        match e {
            FetchError::Db(source) => EngineError::Database { context, source },
            FetchError::Decode { column, message } => EngineError::Database {
                context,
                source: sqlx::Error::Decode(format!("column {column}: {message}").into()),
            },
        }
    }

    /// The columns of a table with the database's own name of each type
    /// (`INT4`, `TIMESTAMPTZ`; SQLite: the declared type), `None` if the
    /// table does not exist: for statements that cast a parameter to its
    /// column's type.
    pub async fn column_type_names(&self, table: &str) -> Result<Option<Vec<(String, String)>>> {
        if self.table_columns(table).await?.is_none() {
            return Ok(None);
        }
        let ctx = format!(
            "read the column types of {table} on {} database {}",
            self.role, self.url
        );
        let select = format!("SELECT * FROM {}", self.dialect().quote(table));
        match &self.pool {
            Pool::Pg(p) => driver::type_names(p, &select).await,
            Pool::My(p) => driver::type_names(p, &select).await,
            Pool::Lite(p) => sqlite::type_names(p, table).await,
        }
        .map(Some)
        .map_err(EngineError::db(ctx))
    }

    /// Closes the pool, waiting for connections in use to come back.
    pub async fn close(&self) {
        match &self.pool {
            Pool::Pg(p) => p.close().await,
            Pool::My(p) => p.close().await,
            Pool::Lite(p) => p.close().await,
        }
    }

    /// Runs an idempotent schema statement (`CREATE … IF NOT EXISTS`) that
    /// several processes may run at once: PostgreSQL can refuse the loser of
    /// such a race with a unique violation in its catalog, so that is retried;
    /// by then the object exists and the statement does nothing.
    pub async fn execute_ddl(&self, sql: &str, context: &str) -> Result<()> {
        let mut attempt = 0;
        loop {
            match self.execute(sql, &[], context).await {
                Ok(_) => return Ok(()),
                Err(e) if attempt < 5 && e.is_concurrent_ddl() => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(50 * attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Runs a statement without result rows.
    pub async fn execute(&self, sql: &str, params: &[Value], context: &str) -> Result<u64> {
        let ctx = format!("{context} on {} database {}", self.role, self.url);
        match &self.pool {
            Pool::Pg(p) => driver::execute(p, sql, params).await,
            Pool::My(p) => driver::execute(p, sql, params).await,
            Pool::Lite(p) => driver::execute(p, sql, params).await,
        }
        .map_err(EngineError::db(ctx))
    }

    /// Runs statements unprepared (DDL such as triggers cannot always be
    /// prepared), in one transaction on PostgreSQL and SQLite, whose DDL is
    /// transactional; MySQL commits each statement on its own.
    pub(crate) async fn run_ddl(&self, statements: &[String], context: &str) -> Result<()> {
        let ctx = |i: usize| {
            format!(
                "{context} (`{}`) on {} database {}",
                statements.get(i).map_or(String::new(), |s| one_line(s)),
                self.role,
                self.url
            )
        };
        // Written out per pool, not through the generic driver: a generic
        // `for<'c> &'c mut Connection: Executor` bound makes the caller's
        // future not `Send`, and server functions (decommission) need it.
        macro_rules! in_one_transaction {
            ($pool:expr) => {
                async {
                    let mut tx = $pool.begin().await.map_err(|e| (0, e))?;
                    for (i, st) in statements.iter().enumerate() {
                        // A `&str` runs unprepared (several statements at once).
                        sqlx::Executor::execute(&mut *tx, st.as_str())
                            .await
                            .map_err(|e| (i, e))?;
                    }
                    tx.commit().await.map_err(|e| (0, e))
                }
            };
        }
        let result: std::result::Result<(), (usize, sqlx::Error)> = match &self.pool {
            Pool::Pg(p) => in_one_transaction!(p).await,
            Pool::Lite(p) => in_one_transaction!(p).await,
            Pool::My(p) => {
                // MariaDB commits DDL as it goes: one statement after another.
                let mut conn = p.acquire().await.map_err(EngineError::db(ctx(0)))?;
                let mut done = Ok(());
                for (i, st) in statements.iter().enumerate() {
                    if let Err(e) = sqlx::Executor::execute(&mut *conn, st.as_str()).await {
                        done = Err((i, e));
                        break;
                    }
                }
                done
            }
        };
        result.map_err(|(i, e)| EngineError::db(ctx(i))(e))
    }

    /// Runs statements with parameters in one transaction: all commit or none
    /// does (verification stores a chunk's mismatches and its progress so; a
    /// data fix writes a page of guarded changes so). The rows each affected.
    pub async fn transaction(&self, statements: &[Statement], context: &str) -> Result<Vec<u64>> {
        let ctx = || format!("{context} on {} database {}", self.role, self.url);
        match &self.pool {
            Pool::Pg(p) => driver::transaction(p, statements).await,
            Pool::My(p) => driver::transaction(p, statements).await,
            Pool::Lite(p) => driver::transaction(p, statements).await,
        }
        .map_err(EngineError::db(ctx()))
    }

    /// The column definition SQL type of the dialect for a column type.
    pub fn sql_type(&self, ty: ColumnType, in_key: bool) -> &'static str {
        match self.dialect() {
            Dialect::Postgres => postgres::sql_type(ty),
            Dialect::MySql => mysql::sql_type(ty, in_key),
            Dialect::Sqlite => sqlite::sql_type(ty),
        }
    }

    /// A connection held for a load's writes.
    pub(crate) async fn writer(&self) -> Result<Conn> {
        let ctx = format!("open a writer on {} database {}", self.role, self.url);
        Ok(match &self.pool {
            Pool::Pg(p) => {
                let mut c = p.acquire().await.map_err(EngineError::db(&ctx))?;
                // A chunk and its checkpoint commit together, so losing the
                // last commits in a server crash only moves the resume point
                // back: the durability wait buys nothing here.
                sqlx::query("SET synchronous_commit = off")
                    .execute(&mut *c)
                    .await
                    .map_err(EngineError::db(&ctx))?;
                Conn::Pg(c, postgres::Staging::default())
            }
            Pool::My(p) => Conn::My(p.acquire().await.map_err(EngineError::db(&ctx))?),
            Pool::Lite(p) => Conn::Lite(p.acquire().await.map_err(EngineError::db(&ctx))?),
        })
    }
}

impl Conn {
    /// Writes a chunk's rows to their tables, version-guarded, then runs
    /// `after` (the checkpoint), all in one transaction, marked as Tern's
    /// own write so that change capture leaves it out ([`origin`]).
    pub(crate) async fn write_chunk(
        &mut self,
        tables: &[TableRows],
        version: i64,
        after: &[Statement],
    ) -> Result<(), sqlx::Error> {
        origin::write_chunk_marked(self, tables, version, after).await
    }
}

/// Why reading rows failed.
pub(crate) enum FetchError {
    Db(sqlx::Error),
    Decode { column: String, message: String },
}

impl From<sqlx::Error> for FetchError {
    fn from(e: sqlx::Error) -> Self {
        FetchError::Db(e)
    }
}

pub(crate) fn check_affected(st: &Statement, affected: u64) -> Result<(), sqlx::Error> {
    match st.expect_rows {
        Some(n) if n != affected => Err(sqlx::Error::Protocol(format!(
            "`{}` affected {affected} rows, expected {n}",
            one_line(&st.sql)
        ))),
        _ => Ok(()),
    }
}

pub(crate) fn process_clock_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// A short stable hash (64-bit FNV-1a): the same text gives the same number
/// in every process and release, for object names that must be cut to fit a
/// limit and for the deterministic verification sample.
pub(crate) fn stable_hash(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// `prefix + name + suffix`, at most 60 characters (PostgreSQL allows 63,
/// MySQL 64): a long name is cut and made unique with a hash.
pub(crate) fn object_name(prefix: &str, name: &str, suffix: &str) -> String {
    let full = format!("{prefix}{name}{suffix}");
    if full.len() <= 60 {
        return full;
    }
    let keep = 60 - prefix.len() - suffix.len() - 17;
    let cut: String = name.chars().take(keep).collect();
    format!("{prefix}{cut}_{:016x}{suffix}", stable_hash(name))
}

fn one_line(sql: &str) -> String {
    let s: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.len() > 120 {
        format!(
            "{}...",
            &s[..s.char_indices().nth(117).map_or(s.len(), |(i, _)| i)]
        )
    } else {
        s
    }
}

/// The key columns of a target table, quoted.
pub(crate) fn key_columns(dialect: Dialect, shape: &TableShape) -> Vec<String> {
    shape
        .key
        .iter()
        .map(|&i| dialect.quote(&shape.columns[i]))
        .collect()
}

/// The assignments of an upsert: `assign(column)` for every column but the
/// key's, quoted, then for the version column, last.
pub(crate) fn upsert_sets(
    dialect: Dialect,
    shape: &TableShape,
    assign: impl Fn(&str) -> String,
) -> Vec<String> {
    shape
        .columns
        .iter()
        .enumerate()
        .filter(|(i, _)| !shape.key.contains(i))
        .map(|(_, c)| c.as_str())
        .chain(std::iter::once(VERSION_COLUMN))
        .map(|c| assign(&dialect.quote(c)))
        .collect()
}

/// `INSERT` column list with the version column appended.
pub(crate) fn insert_columns(dialect: Dialect, columns: &[String]) -> String {
    columns
        .iter()
        .map(String::as_str)
        .chain(std::iter::once(VERSION_COLUMN))
        .map(|c| dialect.quote(c))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(
            redact("mysql://root@127.0.0.1/x"),
            "mysql://root@127.0.0.1/x"
        );
        assert_eq!(redact("sqlite:///tmp/a.db"), "sqlite:///tmp/a.db");
        assert_eq!(
            redact("postgres://h/db?sslmode=require&password=s3"),
            "postgres://h/db?sslmode=require&password=***"
        );
    }

    #[test]
    fn long_object_names_are_cut_and_stay_unique() {
        let a = object_name("_tern_capture_", &"x".repeat(70), "_i");
        let b = object_name("_tern_capture_", &format!("{}y", "x".repeat(69)), "_i");
        assert!(a.len() <= 60 && b.len() <= 60);
        assert_ne!(a, b);
        assert_eq!(
            object_name("_tern_capture_", "items", "_u"),
            "_tern_capture_items_u"
        );
        assert_eq!(stable_hash(""), 0xcbf2_9ce4_8422_2325);
    }
}
