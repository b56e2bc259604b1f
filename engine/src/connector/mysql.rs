//! MySQL and MariaDB: reads with prepared statements, writes with multi-row
//! `INSERT … ON DUPLICATE KEY UPDATE`, each column guarded by the version.

use sqlx::mysql::{MySqlArguments, MySqlConnection, MySqlQueryResult, MySqlRow};
use sqlx::query::Query;
use std::time::Duration;

use sqlx::{Connection, MySql, MySqlPool, Row};

use super::driver::{self, Driver, MultiRowUpsert, Typed};
use super::{Dialect, FetchError, upsert_sets};
use crate::transform::TableRows;
use crate::value::{ColumnType, Value};

const D: Dialect = Dialect::MySql;

pub(super) fn sql_type(ty: ColumnType, in_key: bool) -> &'static str {
    match ty {
        ColumnType::Bool => "BOOLEAN",
        ColumnType::Int => "BIGINT",
        ColumnType::Float => "DOUBLE",
        ColumnType::Decimal => "DECIMAL(65,20)",
        ColumnType::Text if in_key => "VARCHAR(255)",
        ColumnType::Text => "LONGTEXT",
        ColumnType::Bytes if in_key => "VARBINARY(255)",
        ColumnType::Bytes => "LONGBLOB",
        ColumnType::Uuid => "CHAR(36)",
        ColumnType::Json => "JSON",
        ColumnType::Timestamp | ColumnType::TimestampTz => "DATETIME(6)",
        ColumnType::Date => "DATE",
    }
}

/// Whether a table (`name` or `schema.name`) exists.
pub(super) async fn table_exists(p: &MySqlPool, table: &str) -> Result<bool, sqlx::Error> {
    let (schema, name) = match table.split_once('.') {
        Some((s, n)) => (Some(s.to_string()), n.to_string()),
        None => (None, table.to_string()),
    };
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = COALESCE(?, DATABASE()) AND table_name = ?",
    )
    .bind(schema)
    .bind(name)
    .fetch_one(p)
    .await?;
    Ok(n > 0)
}

/// The table's `table_rows` (InnoDB's sampled estimate; NULL for a view).
pub(super) async fn estimated_rows(p: &MySqlPool, table: &str) -> Result<Option<i64>, sqlx::Error> {
    let (schema, name) = match table.split_once('.') {
        Some((s, n)) => (Some(s.to_string()), n.to_string()),
        None => (None, table.to_string()),
    };
    let rows: Option<Option<i64>> = sqlx::query_scalar(
        "SELECT CAST(table_rows AS SIGNED) FROM information_schema.tables WHERE table_schema = COALESCE(?, DATABASE()) AND table_name = ?",
    )
    .bind(schema)
    .bind(name)
    .fetch_optional(p)
    .await?;
    Ok(rows.flatten())
}

/// Runs a query in a `READ ONLY` transaction that the server stops after
/// `timeout` (MariaDB's `max_statement_time`, in seconds; MySQL's
/// `max_execution_time`, in milliseconds), then rolls back: the server
/// refuses any write, a writing function included. The limit is a session
/// setting, so it is set back before the connection returns to the pool.
pub(super) async fn fetch_read_only(
    p: &MySqlPool,
    sql: &str,
    params: &[Value],
    timeout: Duration,
) -> Result<(Vec<String>, Vec<Vec<Value>>), FetchError> {
    let mut session = driver::Session::acquire(p).await?;
    let limit = sqlx::query("SET SESSION max_statement_time = ?")
        .bind(timeout.as_secs_f64().max(0.001))
        .execute(session.conn())
        .await;
    let limit = match limit {
        Ok(_) => "max_statement_time",
        Err(_) => {
            let ms = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
            sqlx::query("SET SESSION max_execution_time = ?")
                .bind(ms.max(1))
                .execute(session.conn())
                .await?;
            "max_execution_time"
        }
    };
    let out = read_only(session.conn(), sql, params).await;
    sqlx::query(&format!("SET SESSION {limit} = DEFAULT"))
        .execute(session.conn())
        .await?;
    session.restored();
    out
}

async fn read_only(
    c: &mut MySqlConnection,
    sql: &str,
    params: &[Value],
) -> Result<(Vec<String>, Vec<Vec<Value>>), FetchError> {
    let mut tx = c.begin_with("START TRANSACTION READ ONLY").await?;
    let out = driver::fetch_on::<MySql>(&mut tx, sql, params).await;
    driver::roll_back(tx, out).await
}

fn bind_one<'q>(
    q: Query<'q, MySql, MySqlArguments>,
    v: &Value,
) -> Query<'q, MySql, MySqlArguments> {
    match v {
        Value::Null => q.bind(None::<String>),
        Value::Bool(b) => q.bind(*b),
        Value::Int(i) => q.bind(*i),
        Value::Float(f) => q.bind(*f),
        Value::Decimal(d) => q.bind(*d),
        Value::Text(s) => q.bind(s.clone()),
        Value::Bytes(b) => q.bind(b.clone()),
        Value::Timestamp(t) => q.bind(*t),
        // DATETIME(6) holds the UTC wall clock.
        Value::TimestampTz(t) => q.bind(t.naive_utc()),
        Value::Date(d) => q.bind(*d),
        other => q.bind(other.canonical_text()),
    }
}

impl Driver for MySql {
    /// MySQL names its column types (`BIGINT UNSIGNED`, `DATETIME`…), each
    /// read one way.
    type Decoder = Typed;

    const DIALECT: Dialect = D;

    fn bind_all<'q>(
        q: Query<'q, MySql, MySqlArguments>,
        params: &[Value],
    ) -> Query<'q, MySql, MySqlArguments> {
        params.iter().fold(q, bind_one)
    }

    fn rows_affected(result: &MySqlQueryResult) -> u64 {
        result.rows_affected()
    }

    fn decoder(type_name: &str) -> Option<Typed> {
        Some(match type_name {
            "BOOLEAN" => Typed::Bool,
            "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" => Typed::I64,
            "TINYINT UNSIGNED" | "SMALLINT UNSIGNED" | "MEDIUMINT UNSIGNED" | "INT UNSIGNED"
            | "BIGINT UNSIGNED" => Typed::U64,
            "FLOAT" => Typed::F32,
            "DOUBLE" => Typed::F64,
            "DECIMAL" => Typed::Decimal,
            "CHAR" | "VARCHAR" | "TINYTEXT" | "TEXT" | "MEDIUMTEXT" | "LONGTEXT" | "ENUM"
            | "SET" => Typed::Text,
            "BINARY" | "VARBINARY" | "TINYBLOB" | "BLOB" | "MEDIUMBLOB" | "LONGBLOB" => {
                Typed::Bytes
            }
            "JSON" => Typed::Json,
            "DATETIME" => Typed::Ts,
            "TIMESTAMP" => Typed::TsTz,
            "DATE" => Typed::Date,
            _ => return None,
        })
    }

    fn decode(row: &MySqlRow, i: usize, t: Typed) -> Result<Value, sqlx::Error> {
        match t {
            Typed::U64 => match row.try_get::<Option<u64>, _>(i)? {
                None => Ok(Value::Null),
                Some(v) => i64::try_from(v).map(Value::Int).map_err(|_| {
                    sqlx::Error::Decode(format!("{v} does not fit a signed 64-bit integer").into())
                }),
            },
            other => driver::decode_typed::<MySql>(row, i, other),
        }
    }

    fn cast_hint(column: &str) -> String {
        format!("CAST({column} AS CHAR)")
    }
}

impl MultiRowUpsert for MySql {
    /// MySQL allows 65535 placeholders per statement.
    const MAX_PARAMS: usize = 60_000;

    fn on_conflict(t: &TableRows, v: &str) -> String {
        // Each column keeps its value unless the incoming version is newer;
        // the version column is assigned last, because MySQL evaluates the
        // assignments left to right and later ones see earlier results.
        let sets = upsert_sets(D, &t.shape, |c| {
            format!("{c} = IF({v} < VALUES({v}), VALUES({c}), {c})")
        });
        format!("ON DUPLICATE KEY UPDATE {}", sets.join(", "))
    }
}
