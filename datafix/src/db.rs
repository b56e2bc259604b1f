//! The job's database: a read-only pool for the filter and a pool for the
//! writes.
//!
//! The filter's guard is the database itself: every filter query runs in a
//! READ ONLY transaction on connections set up read-only (PostgreSQL
//! `default_transaction_read_only`, MariaDB/MySQL `SET SESSION TRANSACTION
//! READ ONLY`, SQLite `PRAGMA query_only`) with a statement timeout
//! (PostgreSQL `statement_timeout`, MariaDB `max_statement_time`, MySQL
//! `max_execution_time`). So a SELECT that calls a writing function is refused
//! by the database and cannot run forever. The text check in
//! [`check_filter_text`] only gives a clearer message for the obvious cases.
//!
//! Writes are guarded by the values the filter read: `UPDATE … WHERE key = ?
//! AND col IS NOT DISTINCT FROM <value read>` for every field the filter
//! returned. A record changed since it was read (by someone else, or by an
//! earlier attempt of this very job that a dead worker left behind) is not
//! written again; it counts as stale and the next filter pass looks at it
//! afresh. That is what keeps a resumed job from applying a non-idempotent
//! change (`add(n, 1)`) twice.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use serde_json::Value as Json;
use sqlx::{Column, Row, TypeInfo, ValueRef};
use tern_engine::connector::{Dialect, redact};

use crate::error::{DatafixError, Result};
use crate::record::Record;

/// Refuses filter text that is not one SELECT (or WITH … SELECT), with a
/// clear message. The read-only transaction is the real guard.
pub fn check_filter_text(sql: &str) -> Result<()> {
    let body = strip_comments(sql);
    let body = body.trim().trim_end_matches(';').trim();
    let first = body
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .find(|w| !w.is_empty())
        .unwrap_or("")
        .to_ascii_uppercase();
    if first != "SELECT" && first != "WITH" {
        let word = if first.is_empty() {
            "nothing".to_string()
        } else {
            format!("`{first}`")
        };
        return Err(DatafixError::Filter {
            message: format!(
                "the filter must be a single SELECT returning the records to change, but it starts with {word}; \
                 put the change itself in the mapper"
            ),
        });
    }
    let outside_literals: String = body.split('\'').step_by(2).collect();
    if outside_literals.contains(';') {
        return Err(DatafixError::Filter {
            message: "the filter must be a single statement: remove the `;` between statements"
                .into(),
        });
    }
    Ok(())
}

fn strip_comments(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("--") {
            rest = r.find('\n').map_or("", |i| &r[i..]);
        } else if let Some(r) = rest.strip_prefix("/*") {
            rest = r.find("*/").map_or("", |i| &r[i + 2..]);
            out.push(' ');
        } else if rest.starts_with('\'') {
            // Keep string literals whole (a `;` or `--` inside one is no statement end).
            let end = rest[1..].find('\'').map_or(rest.len(), |i| i + 2);
            out.push_str(&rest[..end]);
            rest = &rest[end..];
        } else {
            let c = rest.chars().next().unwrap_or(' ');
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

#[derive(Debug, Clone)]
enum Pools {
    Pg {
        read: sqlx::PgPool,
        write: sqlx::PgPool,
    },
    My {
        read: sqlx::MySqlPool,
        write: sqlx::MySqlPool,
    },
    Lite {
        read: sqlx::SqlitePool,
        write: sqlx::SqlitePool,
    },
}

/// What a write did to one record.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOutcome {
    Applied,
    /// The record changed (or vanished) since the filter read it: not written.
    Stale,
    Failed(String),
}

/// A change to write.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    Set(Vec<(String, Json)>),
    Delete,
}

/// The job's database.
#[derive(Debug, Clone)]
pub struct FixDb {
    pools: Pools,
    url: String,
    /// Statement timeout of filter queries.
    timeout: Duration,
    /// Column name → SQL type (PostgreSQL `udt_name`) of the mapper's table.
    columns: HashMap<String, String>,
    table: String,
}

impl FixDb {
    /// Connects to `url`; filter queries time out after `filter_timeout`.
    /// `table` is the mapper's table, whose columns are read once here.
    pub async fn connect(url: &str, filter_timeout: Duration, table: &str) -> Result<FixDb> {
        let dialect = Dialect::of_url(url).ok_or_else(|| {
            DatafixError::spec(
                "url",
                format!(
                    "`{}` is not a postgres://, mysql:// or sqlite:// URL",
                    redact(url)
                ),
            )
        })?;
        let unreachable = |source| DatafixError::Unreachable {
            url: redact(url),
            source,
        };
        let acquire = Duration::from_secs(10);
        let ms = filter_timeout.as_millis().max(1) as u64;
        let pools = match dialect {
            Dialect::Postgres => {
                let opts = sqlx::postgres::PgConnectOptions::from_str(url)
                    .map_err(unreachable)?
                    .options([
                        ("default_transaction_read_only", "on".to_string()),
                        ("statement_timeout", ms.to_string()),
                    ]);
                let read = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(2)
                    .acquire_timeout(acquire)
                    .connect_with(opts)
                    .await
                    .map_err(unreachable)?;
                let write = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(acquire)
                    .connect(url)
                    .await
                    .map_err(unreachable)?;
                Pools::Pg { read, write }
            }
            Dialect::MySql => {
                // The read pool's sessions get their read-only mode and statement
                // timeout before every filter query (see `read_only`).
                let read = sqlx::mysql::MySqlPoolOptions::new()
                    .max_connections(2)
                    .acquire_timeout(acquire)
                    .connect(url)
                    .await
                    .map_err(unreachable)?;
                let write = sqlx::mysql::MySqlPoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(acquire)
                    .connect(url)
                    .await
                    .map_err(unreachable)?;
                Pools::My { read, write }
            }
            Dialect::Sqlite => {
                let opts = sqlx::sqlite::SqliteConnectOptions::from_str(url)
                    .map_err(unreachable)?
                    .busy_timeout(Duration::from_secs(30));
                let read = sqlx::sqlite::SqlitePoolOptions::new()
                    .max_connections(2)
                    .acquire_timeout(acquire)
                    .connect_with(opts.clone().pragma("query_only", "ON"))
                    .await
                    .map_err(unreachable)?;
                let write = sqlx::sqlite::SqlitePoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(acquire)
                    .connect_with(opts)
                    .await
                    .map_err(unreachable)?;
                Pools::Lite { read, write }
            }
        };
        let mut db = FixDb {
            pools,
            url: redact(url),
            timeout: filter_timeout,
            columns: HashMap::new(),
            table: table.to_string(),
        };
        db.columns = db.read_columns(table).await?;
        if db.columns.is_empty() {
            return Err(DatafixError::spec(
                "mapper.table",
                format!("table `{table}` does not exist in {}", db.url),
            ));
        }
        Ok(db)
    }

    pub fn dialect(&self) -> Dialect {
        match self.pools {
            Pools::Pg { .. } => Dialect::Postgres,
            Pools::My { .. } => Dialect::MySql,
            Pools::Lite { .. } => Dialect::Sqlite,
        }
    }

    /// The URL without its password.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether the mapper's table has this column.
    pub fn has_column(&self, name: &str) -> bool {
        self.columns.contains_key(name)
    }

    async fn read_columns(&self, table: &str) -> Result<HashMap<String, String>> {
        let ctx = format!("reading the columns of {table} in {}", self.url);
        let (schema, name) = match table.split_once('.') {
            Some((s, n)) => (Some(s.to_string()), n.to_string()),
            None => (None, table.to_string()),
        };
        let rows: Vec<(String, String)> = match &self.pools {
            Pools::Pg { write, .. } => sqlx::query_as(
                "SELECT column_name::text, udt_name::text FROM information_schema.columns
                 WHERE table_name = $1 AND table_schema = COALESCE($2, current_schema())",
            )
            .bind(&name)
            .bind(&schema)
            .fetch_all(write)
            .await
            .map_err(DatafixError::db(ctx))?,
            Pools::My { write, .. } => {
                let rows = sqlx::query(
                    "SELECT column_name, data_type FROM information_schema.columns
                     WHERE table_name = ? AND table_schema = COALESCE(?, DATABASE())",
                )
                .bind(&name)
                .bind(&schema)
                .fetch_all(write)
                .await
                .map_err(DatafixError::db(ctx.clone()))?;
                rows.iter()
                    .map(|r| {
                        // information_schema text comes back as binary on some servers.
                        let get = |i: usize| -> std::result::Result<String, sqlx::Error> {
                            r.try_get::<String, _>(i).or_else(|_| {
                                r.try_get::<Vec<u8>, _>(i)
                                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                            })
                        };
                        Ok((get(0)?, get(1)?))
                    })
                    .collect::<std::result::Result<_, sqlx::Error>>()
                    .map_err(DatafixError::db(ctx))?
            }
            Pools::Lite { write, .. } => {
                sqlx::query_as("SELECT name, type FROM pragma_table_info(?)")
                    .bind(&name)
                    .fetch_all(write)
                    .await
                    .map_err(DatafixError::db(ctx))?
            }
        };
        Ok(rows.into_iter().collect())
    }

    fn filter_refused(&self, e: sqlx::Error) -> DatafixError {
        DatafixError::Filter {
            message: format!("{} refused it: {e}", self.url),
        }
    }

    /// One page of the filter: up to `limit` records after `after` in key
    /// order, read in a read-only transaction.
    pub async fn filter_page(
        &self,
        filter: &str,
        key: &[String],
        after: Option<&Record>,
        limit: usize,
    ) -> Result<Vec<Record>> {
        let d = self.dialect();
        let inner = filter.trim().trim_end_matches(';');
        let mut sql = format!("SELECT * FROM ({inner}\n) AS tern_filter");
        let mut params: Vec<Json> = Vec::new();
        if let Some(after) = after {
            // (k1 > a) OR (k1 = a AND k2 > b) …
            let mut ors = Vec::new();
            for i in 0..key.len() {
                let mut ands = Vec::new();
                for (j, k) in key.iter().enumerate().take(i + 1) {
                    let v = after.get(k).cloned().unwrap_or(Json::Null);
                    params.push(v);
                    let p = self.cursor_param(params.len(), k, after);
                    let op = if j == i { ">" } else { "=" };
                    ands.push(format!("{} {op} {p}", d.quote(k)));
                }
                ors.push(format!("({})", ands.join(" AND ")));
            }
            sql.push_str(&format!(" WHERE {}", ors.join(" OR ")));
        }
        let order: Vec<String> = key.iter().map(|k| d.quote(k)).collect();
        sql.push_str(&format!(" ORDER BY {} LIMIT {limit}", order.join(", ")));
        let records = self.read_only(&sql, &params).await?;
        if let Some(first) = records.first() {
            for k in key {
                if first.get(k).is_none() {
                    return Err(DatafixError::Filter {
                        message: format!(
                            "the filter returns no key column `{k}`; select it (the job's key is {key:?})"
                        ),
                    });
                }
            }
        }
        Ok(records)
    }

    /// How many records the filter selects now (for progress and ETA).
    pub async fn filter_count(&self, filter: &str) -> Result<u64> {
        let inner = filter.trim().trim_end_matches(';');
        let sql = format!("SELECT COUNT(*) AS n FROM ({inner}\n) AS tern_filter");
        let rows = self.read_only(&sql, &[]).await?;
        Ok(rows
            .first()
            .and_then(|r| r.get("n"))
            .and_then(|v| {
                v.as_u64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            })
            .unwrap_or(0))
    }

    fn cursor_param(&self, n: usize, key: &str, after: &Record) -> String {
        match self.dialect() {
            Dialect::Postgres => match after.get(key) {
                // Text keys may be of another type (uuid, varchar): let the column decide.
                Some(Json::String(_)) => match self.columns.get(key) {
                    Some(t) => format!("CAST(${n} AS {t})"),
                    None => format!("${n}"),
                },
                _ => format!("${n}"),
            },
            _ => "?".to_string(),
        }
    }

    async fn read_only(&self, sql: &str, params: &[Json]) -> Result<Vec<Record>> {
        match &self.pools {
            Pools::Pg { read, .. } => {
                let mut tx = read
                    .begin_with("BEGIN READ ONLY")
                    .await
                    .map_err(|e| self.filter_refused(e))?;
                let mut q = sqlx::query(sql);
                for p in params {
                    q = bind_pg(q, p);
                }
                let rows = q
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(|e| self.filter_refused(e))?;
                let _ = tx.rollback().await;
                rows.iter()
                    .map(decode_pg)
                    .collect::<std::result::Result<_, _>>()
                    .map_err(|m| DatafixError::Filter { message: m })
            }
            Pools::My { read, .. } => {
                let mut tx = read
                    .begin_with("START TRANSACTION READ ONLY")
                    .await
                    .map_err(|e| self.filter_refused(e))?;
                // MariaDB names the limit in seconds, MySQL in milliseconds.
                let secs = self.timeout.as_secs_f64().max(0.001);
                let set = sqlx::query("SET SESSION max_statement_time = ?").bind(secs);
                if set.execute(&mut *tx).await.is_err() {
                    let ms = i64::try_from(self.timeout.as_millis())
                        .unwrap_or(i64::MAX)
                        .max(1);
                    sqlx::query("SET SESSION max_execution_time = ?")
                        .bind(ms)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| self.filter_refused(e))?;
                }
                let mut q = sqlx::query(sql);
                for p in params {
                    q = bind_my(q, p);
                }
                let rows = q.fetch_all(&mut *tx).await;
                let _ = tx.rollback().await;
                let rows = rows.map_err(|e| self.filter_refused(e))?;
                rows.iter()
                    .map(decode_my)
                    .collect::<std::result::Result<_, _>>()
                    .map_err(|m| DatafixError::Filter { message: m })
            }
            Pools::Lite { read, .. } => {
                let mut q = sqlx::query(sql);
                for p in params {
                    q = bind_lite(q, p);
                }
                let rows = q
                    .fetch_all(read)
                    .await
                    .map_err(|e| self.filter_refused(e))?;
                rows.iter()
                    .map(decode_lite)
                    .collect::<std::result::Result<_, _>>()
                    .map_err(|m| DatafixError::Filter { message: m })
            }
        }
    }

    /// The guarded statement for one change, and its parameters.
    fn statement(&self, key: &[String], rec: &Record, write: &Write) -> (String, Vec<Json>) {
        let d = self.dialect();
        let mut params: Vec<Json> = Vec::new();
        let p = |params: &mut Vec<Json>, col: &str, v: &Json| -> String {
            params.push(v.clone());
            match d {
                Dialect::Postgres => match self.columns.get(col) {
                    Some(t) => format!("CAST(${} AS {t})", params.len()),
                    None => format!("${}", params.len()),
                },
                _ => "?".to_string(),
            }
        };
        let head = match write {
            Write::Set(cols) => {
                let sets: Vec<String> = cols
                    .iter()
                    .map(|(c, v)| format!("{} = {}", d.quote(c), p(&mut params, c, v)))
                    .collect();
                format!("UPDATE {} SET {}", d.quote(&self.table), sets.join(", "))
            }
            Write::Delete => format!("DELETE FROM {}", d.quote(&self.table)),
        };
        let mut conds = Vec::new();
        for k in key {
            let v = rec.get(k).cloned().unwrap_or(Json::Null);
            conds.push(format!("{} = {}", d.quote(k), p(&mut params, k, &v)));
        }
        let same = match d {
            Dialect::Postgres => "IS NOT DISTINCT FROM",
            Dialect::MySql => "<=>",
            Dialect::Sqlite => "IS",
        };
        for (name, v) in rec.fields() {
            if key.contains(name) || !self.columns.contains_key(name) {
                continue;
            }
            // Floats do not survive a text round trip exactly; structured values
            // compare differently per database: those fields do not guard.
            let guardable = match v {
                Json::Number(n) => n.is_i64() || n.is_u64(),
                Json::Array(_) | Json::Object(_) => false,
                _ => true,
            };
            if guardable {
                conds.push(format!(
                    "{} {same} {}",
                    d.quote(name),
                    p(&mut params, name, v)
                ));
            }
        }
        (format!("{head} WHERE {}", conds.join(" AND ")), params)
    }

    /// Writes a batch of changes in one transaction, each guarded by the
    /// values its record was read with. If the database refuses one, the batch
    /// is rolled back and each change written on its own, so one bad record
    /// fails alone.
    pub async fn write_batch(
        &self,
        key: &[String],
        batch: &[(Record, Write)],
    ) -> Vec<WriteOutcome> {
        let stmts: Vec<(String, Vec<Json>)> = batch
            .iter()
            .map(|(r, w)| self.statement(key, r, w))
            .collect();
        match self.write_all(&stmts).await {
            Ok(outcomes) => outcomes,
            Err(_) => {
                let mut out = Vec::with_capacity(stmts.len());
                for st in &stmts {
                    out.push(match self.write_all(std::slice::from_ref(st)).await {
                        Ok(mut o) => o.pop().unwrap_or(WriteOutcome::Stale),
                        Err(e) => {
                            WriteOutcome::Failed(format!("the database refused the change: {e}"))
                        }
                    });
                }
                out
            }
        }
    }

    async fn write_all(
        &self,
        stmts: &[(String, Vec<Json>)],
    ) -> std::result::Result<Vec<WriteOutcome>, sqlx::Error> {
        let outcome = |n: u64| {
            if n > 0 {
                WriteOutcome::Applied
            } else {
                WriteOutcome::Stale
            }
        };
        let mut out = Vec::with_capacity(stmts.len());
        match &self.pools {
            Pools::Pg { write, .. } => {
                let mut tx = write.begin().await?;
                for (sql, params) in stmts {
                    let mut q = sqlx::query(sql);
                    for p in params {
                        q = bind_pg(q, p);
                    }
                    out.push(outcome(q.execute(&mut *tx).await?.rows_affected()));
                }
                tx.commit().await?;
            }
            Pools::My { write, .. } => {
                let mut tx = write.begin().await?;
                for (sql, params) in stmts {
                    let mut q = sqlx::query(sql);
                    for p in params {
                        q = bind_my(q, p);
                    }
                    out.push(outcome(q.execute(&mut *tx).await?.rows_affected()));
                }
                tx.commit().await?;
            }
            Pools::Lite { write, .. } => {
                let mut tx = write.begin().await?;
                for (sql, params) in stmts {
                    let mut q = sqlx::query(sql);
                    for p in params {
                        q = bind_lite(q, p);
                    }
                    out.push(outcome(q.execute(&mut *tx).await?.rows_affected()));
                }
                tx.commit().await?;
            }
        }
        Ok(out)
    }

    /// Closes the pools.
    pub async fn close(&self) {
        match &self.pools {
            Pools::Pg { read, write } => {
                read.close().await;
                write.close().await;
            }
            Pools::My { read, write } => {
                read.close().await;
                write.close().await;
            }
            Pools::Lite { read, write } => {
                read.close().await;
                write.close().await;
            }
        }
    }
}

macro_rules! binder {
    ($name:ident, $db:ty) => {
        fn $name<'q>(
            q: sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>>,
            v: &Json,
        ) -> sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>> {
            match v {
                Json::Null => q.bind(None::<String>),
                Json::Bool(b) => q.bind(*b),
                Json::Number(n) => match (n.as_i64(), n.as_f64()) {
                    (Some(i), _) => q.bind(i),
                    (None, Some(f)) => q.bind(f),
                    _ => q.bind(n.to_string()),
                },
                Json::String(s) => q.bind(s.clone()),
                other => q.bind(other.to_string()),
            }
        }
    };
}
binder!(bind_pg, sqlx::Postgres);
binder!(bind_my, sqlx::MySql);
binder!(bind_lite, sqlx::Sqlite);

fn decode_pg(row: &sqlx::postgres::PgRow) -> std::result::Result<Record, String> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
    let mut fields = Vec::with_capacity(row.columns().len());
    for (i, col) in row.columns().iter().enumerate() {
        let name = col.name().to_string();
        let err = |e: sqlx::Error| format!("column {name}: {e}");
        let null = row.try_get_raw(i).map_err(err)?.is_null();
        let ty = col.type_info().name().to_ascii_uppercase();
        let v = if null {
            Json::Null
        } else {
            match ty.as_str() {
                "INT2" => Json::from(row.try_get::<i16, _>(i).map_err(err)?),
                "INT4" => Json::from(row.try_get::<i32, _>(i).map_err(err)?),
                "INT8" => Json::from(row.try_get::<i64, _>(i).map_err(err)?),
                "FLOAT4" => Json::from(row.try_get::<f32, _>(i).map_err(err)? as f64),
                "FLOAT8" => Json::from(row.try_get::<f64, _>(i).map_err(err)?),
                "NUMERIC" => Json::String(
                    row.try_get::<rust_decimal::Decimal, _>(i)
                        .map_err(err)?
                        .to_string(),
                ),
                "BOOL" => Json::Bool(row.try_get::<bool, _>(i).map_err(err)?),
                "UUID" => Json::String(row.try_get::<uuid::Uuid, _>(i).map_err(err)?.to_string()),
                "JSON" | "JSONB" => row.try_get::<Json, _>(i).map_err(err)?,
                "TIMESTAMPTZ" => Json::String(
                    row.try_get::<DateTime<Utc>, _>(i)
                        .map_err(err)?
                        .to_rfc3339(),
                ),
                "TIMESTAMP" => Json::String(
                    row.try_get::<NaiveDateTime, _>(i)
                        .map_err(err)?
                        .format("%Y-%m-%d %H:%M:%S%.f")
                        .to_string(),
                ),
                "DATE" => Json::String(row.try_get::<NaiveDate, _>(i).map_err(err)?.to_string()),
                _ => match row.try_get::<String, _>(i) {
                    Ok(s) => Json::String(s),
                    Err(_) => {
                        return Err(format!(
                            "column {name} has type {ty}, which a data fix cannot read; cast it in the filter (e.g. {name}::text)"
                        ));
                    }
                },
            }
        };
        fields.push((name, v));
    }
    Ok(Record::from_pairs(fields))
}

fn decode_my(row: &sqlx::mysql::MySqlRow) -> std::result::Result<Record, String> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
    let mut fields = Vec::with_capacity(row.columns().len());
    for (i, col) in row.columns().iter().enumerate() {
        let name = col.name().to_string();
        let null = row
            .try_get_raw(i)
            .map_err(|e| format!("column {name}: {e}"))?
            .is_null();
        let ty = col.type_info().name().to_ascii_uppercase();
        let v = if null {
            Json::Null
        } else if ty == "BOOLEAN" {
            row.try_get::<bool, _>(i)
                .map(Json::Bool)
                .map_err(|e| e.to_string())?
        } else if let Ok(x) = row.try_get::<i64, _>(i) {
            Json::from(x)
        } else if let Ok(x) = row.try_get::<u64, _>(i) {
            Json::from(x)
        } else if let Ok(x) = row.try_get::<f64, _>(i) {
            Json::from(x)
        } else if let Ok(x) = row.try_get::<f32, _>(i) {
            Json::from(x as f64)
        } else if let Ok(x) = row.try_get::<rust_decimal::Decimal, _>(i) {
            Json::String(x.to_string())
        } else if let Ok(x) = row.try_get::<String, _>(i) {
            Json::String(x)
        } else if let Ok(x) = row.try_get::<NaiveDateTime, _>(i) {
            Json::String(x.format("%Y-%m-%d %H:%M:%S%.f").to_string())
        } else if let Ok(x) = row.try_get::<DateTime<Utc>, _>(i) {
            Json::String(x.naive_utc().format("%Y-%m-%d %H:%M:%S%.f").to_string())
        } else if let Ok(x) = row.try_get::<NaiveDate, _>(i) {
            Json::String(x.to_string())
        } else if let Ok(x) = row.try_get::<Vec<u8>, _>(i) {
            match String::from_utf8(x) {
                Ok(s) => Json::String(s),
                Err(_) => {
                    return Err(format!(
                        "column {name} holds binary data, which a data fix cannot read; select HEX({name}) instead"
                    ));
                }
            }
        } else {
            return Err(format!(
                "column {name} has type {ty}, which a data fix cannot read; cast it in the filter"
            ));
        };
        fields.push((name, v));
    }
    Ok(Record::from_pairs(fields))
}

fn decode_lite(row: &sqlx::sqlite::SqliteRow) -> std::result::Result<Record, String> {
    let mut fields = Vec::with_capacity(row.columns().len());
    for (i, col) in row.columns().iter().enumerate() {
        let name = col.name().to_string();
        let null = row
            .try_get_raw(i)
            .map_err(|e| format!("column {name}: {e}"))?
            .is_null();
        let v = if null {
            Json::Null
        } else if let Ok(x) = row.try_get::<i64, _>(i) {
            Json::from(x)
        } else if let Ok(x) = row.try_get::<f64, _>(i) {
            Json::from(x)
        } else if let Ok(x) = row.try_get::<String, _>(i) {
            Json::String(x)
        } else {
            return Err(format!(
                "column {name} holds binary data, which a data fix cannot read; select hex({name}) instead"
            ));
        };
        fields.push((name, v));
    }
    Ok(Record::from_pairs(fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_single_select_passes_the_text_check() {
        assert!(check_filter_text("SELECT id FROM t").is_ok());
        assert!(
            check_filter_text("  -- which rows\n with x as (select 1) select * from x;").is_ok()
        );
        assert!(check_filter_text("select ';' as semi").is_ok());
        for bad in [
            "UPDATE t SET a = 1",
            "DELETE FROM t",
            "DROP TABLE t",
            "/* hi */ INSERT INTO t VALUES (1)",
            "SELECT 1; DELETE FROM t",
            "",
        ] {
            let e = check_filter_text(bad).unwrap_err().to_string();
            assert!(e.starts_with("filter refused"), "{bad}: {e}");
        }
    }
}
