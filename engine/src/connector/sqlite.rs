//! SQLite: reads values by their storage class, writes multi-row
//! `INSERT … ON CONFLICT DO UPDATE … WHERE version <` in one transaction per chunk.

use sqlx::query::Query;
use sqlx::sqlite::{SqliteArguments, SqliteQueryResult, SqliteRow};
use sqlx::{Row, Sqlite, SqlitePool, TypeInfo, ValueRef};

use super::driver::{self, Driver, MultiRowUpsert};
use super::{Dialect, FetchError, key_columns, upsert_sets};
use crate::transform::{SourceColumn, TableRows};
use crate::value::{ColumnType, Value};

const D: Dialect = Dialect::Sqlite;

/// The engine's type for a declared SQLite column type. SQLite stores
/// anything anywhere; the declared type says what the column means.
pub(super) fn column_type(decl: &str) -> Option<ColumnType> {
    let s = decl.to_ascii_lowercase();
    Some(match s.as_str() {
        "" | "null" => return None,
        "boolean" | "bool" => ColumnType::Bool,
        "date" => ColumnType::Date,
        "datetime" | "timestamp" => ColumnType::Timestamp,
        "timestamptz" => ColumnType::TimestampTz,
        "uuid" => ColumnType::Uuid,
        "json" | "jsonb" => ColumnType::Json,
        _ if s.contains("int") => ColumnType::Int,
        _ if s.contains("char") || s.contains("clob") || s.contains("text") => ColumnType::Text,
        _ if s.contains("blob") => ColumnType::Bytes,
        _ if s.contains("real") || s.contains("floa") || s.contains("doub") => ColumnType::Float,
        _ if s.contains("dec") || s.contains("numeric") => ColumnType::Decimal,
        _ => return None,
    })
}

pub(super) fn sql_type(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Bool => "BOOLEAN",
        ColumnType::Int => "INTEGER",
        ColumnType::Float => "REAL",
        // TEXT affinity keeps decimals exact (NUMERIC would turn them into REAL).
        ColumnType::Decimal | ColumnType::Text | ColumnType::Uuid | ColumnType::Json => "TEXT",
        ColumnType::Bytes => "BLOB",
        ColumnType::Timestamp => "DATETIME",
        ColumnType::TimestampTz => "TIMESTAMPTZ",
        ColumnType::Date => "DATE",
    }
}

pub(super) async fn table_columns(
    p: &SqlitePool,
    table: &str,
) -> Result<Option<Vec<SourceColumn>>, sqlx::Error> {
    let rows = sqlx::query(&format!("PRAGMA table_info({})", D.quote(table)))
        .fetch_all(p)
        .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    rows.iter()
        .map(|r| {
            Ok(SourceColumn {
                name: r.try_get::<String, _>("name")?,
                ty: column_type(&r.try_get::<String, _>("type")?),
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map(Some)
}

/// Runs a query on a connection set to `PRAGMA query_only` for the while:
/// SQLite refuses any write (`DELETE … RETURNING` included) instead of
/// making it. The pragma is set back before the connection returns to the
/// pool. SQLite has no statement timeout.
pub(super) async fn fetch_read_only(
    p: &SqlitePool,
    sql: &str,
    params: &[Value],
) -> Result<(Vec<String>, Vec<Vec<Value>>), FetchError> {
    let mut session = driver::Session::acquire(p).await?;
    sqlx::query("PRAGMA query_only = ON")
        .execute(session.conn())
        .await?;
    let out = driver::fetch_on::<Sqlite>(session.conn(), sql, params).await;
    sqlx::query("PRAGMA query_only = OFF")
        .execute(session.conn())
        .await?;
    session.restored();
    out
}

/// The declared type of each column of a table (`varchar(20)`, `INTEGER`).
pub(super) async fn type_names(
    p: &SqlitePool,
    table: &str,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as("SELECT name, type FROM pragma_table_info(?)")
        .bind(table)
        .fetch_all(p)
        .await
}

fn bind_one<'q>(
    q: Query<'q, Sqlite, SqliteArguments<'q>>,
    v: &Value,
) -> Query<'q, Sqlite, SqliteArguments<'q>> {
    match v {
        Value::Null => q.bind(None::<String>),
        Value::Bool(b) => q.bind(*b),
        Value::Int(i) => q.bind(*i),
        Value::Float(f) => q.bind(*f),
        Value::Text(s) => q.bind(s.clone()),
        Value::Bytes(b) => q.bind(b.clone()),
        other => q.bind(other.canonical_text()),
    }
}

fn decode(row: &SqliteRow, i: usize) -> Result<Value, sqlx::Error> {
    let raw = row.try_get_raw(i)?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let storage = raw.type_info().name().to_string();
    Ok(match storage.as_str() {
        "INTEGER" | "BOOLEAN" => Value::Int(row.try_get_unchecked::<i64, _>(i)?),
        "REAL" => Value::Float(row.try_get_unchecked::<f64, _>(i)?),
        "BLOB" => Value::Bytes(row.try_get_unchecked::<Vec<u8>, _>(i)?),
        _ => Value::Text(row.try_get_unchecked::<String, _>(i)?),
    })
}

impl Driver for Sqlite {
    /// SQLite stores anything anywhere: each value is read by its own
    /// storage class, whatever the column's declared type, which only says
    /// what the column means ([`column_type`]).
    type Decoder = Option<ColumnType>;

    const DIALECT: Dialect = D;

    fn bind_all<'q>(
        q: Query<'q, Sqlite, SqliteArguments<'q>>,
        params: &[Value],
    ) -> Query<'q, Sqlite, SqliteArguments<'q>> {
        params.iter().fold(q, bind_one)
    }

    fn rows_affected(result: &SqliteQueryResult) -> u64 {
        result.rows_affected()
    }

    fn decoder(declared: &str) -> Option<Option<ColumnType>> {
        Some(column_type(declared))
    }

    fn decode(row: &SqliteRow, i: usize, _: Option<ColumnType>) -> Result<Value, sqlx::Error> {
        decode(row, i)
    }

    fn cast_hint(column: &str) -> String {
        format!("CAST({column} AS TEXT)")
    }
}

impl MultiRowUpsert for Sqlite {
    /// SQLite allows 32766 variables per statement.
    const MAX_PARAMS: usize = 32_000;

    fn on_conflict(t: &TableRows, v: &str) -> String {
        format!(
            "ON CONFLICT ({}) DO UPDATE SET {} WHERE {}.{v} < excluded.{v}",
            key_columns(D, &t.shape).join(", "),
            upsert_sets(D, &t.shape, |c| format!("{c} = excluded.{c}")).join(", "),
            D.quote(&t.shape.name)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_types_map_like_sqlite_affinity() {
        assert_eq!(column_type("BIGINT"), Some(ColumnType::Int));
        assert_eq!(column_type("varchar(20)"), Some(ColumnType::Text));
        assert_eq!(column_type("TIMESTAMPTZ"), Some(ColumnType::TimestampTz));
        assert_eq!(column_type(""), None);
    }
}
