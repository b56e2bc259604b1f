//! The job's database, reached through the engine's [`Connector`]: the
//! filter runs on its read-only path, the mapper's changes go through its
//! write path. Records are JSON values ([`Record`]); the engine's
//! [`Value`]s are turned into them as they are read, and back when written.
//!
//! The filter's guard is the database itself: every filter query runs in a
//! READ ONLY transaction (PostgreSQL, MariaDB/MySQL) or on a `query_only`
//! connection (SQLite) with a statement timeout (PostgreSQL
//! `statement_timeout`, MariaDB `max_statement_time`, MySQL
//! `max_execution_time`). So a SELECT that calls a writing function is
//! refused by the database and cannot run forever. The text check in
//! [`crate::check_filter_text`] only gives a clearer message for the obvious
//! cases.
//!
//! Writes are guarded by the values the filter read: `UPDATE … WHERE key = ?
//! AND col IS NOT DISTINCT FROM <value read>` for every field the filter
//! returned. A record changed since it was read (by someone else, or by an
//! earlier attempt of this very job that a dead worker left behind) is not
//! written again; it counts as stale and the next filter pass looks at it
//! afresh. That is what keeps a resumed job from applying a non-idempotent
//! change (`add(n, 1)`) twice.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value as Json;
use tern_engine::connector::{Connector, Dialect, Statement, redact};
use tern_engine::{EngineError, Value};

use crate::error::{DatafixError, Result};
use crate::record::{Record, json_to_value};

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
    conn: Connector,
    /// Statement timeout of filter queries.
    timeout: Duration,
    /// Column name → the database's name of its type (`INT4`, `TIMESTAMPTZ`)
    /// of the mapper's table: PostgreSQL parameters are cast to it.
    columns: HashMap<String, String>,
    table: String,
}

impl FixDb {
    /// The engine's connector to the job's database.
    pub fn connector(&self) -> &Connector {
        &self.conn
    }

    /// Connects to `url`; filter queries time out after `filter_timeout`.
    /// `table` is the mapper's table, whose columns are read once here.
    pub async fn connect(url: &str, filter_timeout: Duration, table: &str) -> Result<FixDb> {
        if Dialect::of_url(url).is_none() {
            return Err(DatafixError::spec(
                "url",
                format!(
                    "`{}` is not a postgres://, mysql:// or sqlite:// URL",
                    redact(url)
                ),
            ));
        }
        let conn = Connector::connect(url, "fix").await?;
        let columns: HashMap<String, String> = conn
            .column_type_names(table)
            .await?
            .unwrap_or_default()
            .into_iter()
            .collect();
        if columns.is_empty() {
            return Err(DatafixError::spec(
                "mapper.table",
                format!("table `{table}` does not exist in {}", conn.url()),
            ));
        }
        Ok(FixDb {
            conn,
            timeout: filter_timeout,
            columns,
            table: table.to_string(),
        })
    }

    pub fn dialect(&self) -> Dialect {
        self.conn.dialect()
    }

    /// The URL without its password.
    pub fn url(&self) -> &str {
        self.conn.url()
    }

    /// Whether the mapper's table has this column.
    pub fn has_column(&self, name: &str) -> bool {
        self.columns.contains_key(name)
    }

    /// Why the database did not give the filter's rows.
    fn filter_refused(&self, e: EngineError) -> DatafixError {
        let message = match e {
            EngineError::Database {
                source: sqlx::Error::Decode(d),
                ..
            } => format!("the filter's {d}"),
            EngineError::Database { source, .. } => format!("{} refused it: {source}", self.url()),
            other => other.to_string(),
        };
        DatafixError::Filter { message }
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

    /// Runs a query of the filter on the connector's read-only path.
    async fn read_only(&self, sql: &str, params: &[Json]) -> Result<Vec<Record>> {
        let params: Vec<Value> = params.iter().map(json_to_value).collect();
        let (names, rows) = self
            .conn
            .fetch_read_only(sql, &params, self.timeout, "run the filter")
            .await
            .map_err(|e| self.filter_refused(e))?;
        rows.into_iter()
            .map(|row| Record::from_row(&names, row, self.dialect()))
            .collect::<std::result::Result<_, _>>()
            .map_err(|message| DatafixError::Filter { message })
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
                        Err(EngineError::Database { source, .. }) => WriteOutcome::Failed(format!(
                            "the database refused the change: {source}"
                        )),
                        Err(e) => WriteOutcome::Failed(e.to_string()),
                    });
                }
                out
            }
        }
    }

    async fn write_all(
        &self,
        stmts: &[(String, Vec<Json>)],
    ) -> std::result::Result<Vec<WriteOutcome>, EngineError> {
        let stmts: Vec<Statement> = stmts
            .iter()
            .map(|(sql, params)| Statement::new(sql, params.iter().map(json_to_value).collect()))
            .collect();
        let affected = self
            .conn
            .transaction(&stmts, "write the mapper's changes")
            .await?;
        Ok(affected
            .into_iter()
            .map(|n| {
                if n > 0 {
                    WriteOutcome::Applied
                } else {
                    WriteOutcome::Stale
                }
            })
            .collect())
    }

    /// Closes the connections.
    pub async fn close(&self) {
        self.conn.close().await;
    }
}
