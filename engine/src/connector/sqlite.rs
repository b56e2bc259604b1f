//! SQLite: reads values by their storage class, writes multi-row
//! `INSERT … ON CONFLICT DO UPDATE … WHERE version <` in one transaction per chunk.

use sqlx::query::Query;
use sqlx::sqlite::{SqliteArguments, SqliteConnection, SqliteRow};
use sqlx::{Column, Connection, Executor, Row, Sqlite, SqlitePool, TypeInfo, ValueRef};

use super::{Dialect, FetchError, Statement, VERSION_COLUMN, check_affected, insert_columns};
use crate::transform::{SourceColumn, TableRows};
use crate::value::{ColumnType, Value};

const D: Dialect = Dialect::Sqlite;
/// SQLite allows 32766 variables per statement.
const MAX_PARAMS: usize = 32_000;

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

pub(super) async fn describe(p: &SqlitePool, sql: &str) -> Result<Vec<SourceColumn>, sqlx::Error> {
    let st = p.prepare(sql).await?;
    Ok(sqlx::Statement::columns(&st)
        .iter()
        .map(|c| SourceColumn {
            name: c.name().to_string(),
            ty: column_type(c.type_info().name()),
        })
        .collect())
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

pub(super) fn bind_all<'q>(
    mut q: Query<'q, Sqlite, SqliteArguments<'q>>,
    params: &[Value],
) -> Query<'q, Sqlite, SqliteArguments<'q>> {
    for v in params {
        q = bind_one(q, v);
    }
    q
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

pub(super) async fn fetch(
    p: &SqlitePool,
    sql: &str,
    params: &[Value],
) -> Result<(Vec<String>, Vec<Vec<Value>>), FetchError> {
    let rows = bind_all(sqlx::query(sql), params).fetch_all(p).await?;
    let Some(first) = rows.first() else {
        return Ok((Vec::new(), Vec::new()));
    };
    let names: Vec<String> = first
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let mut values = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            values.push(decode(row, i).map_err(|e| FetchError::Decode {
                column: name.clone(),
                message: e.to_string(),
            })?);
        }
        out.push(values);
    }
    Ok((names, out))
}

pub(super) async fn write_chunk(
    c: &mut SqliteConnection,
    tables: &[TableRows],
    version: i64,
    after: &[Statement],
) -> Result<(), sqlx::Error> {
    let mut tx = c.begin().await?;
    for t in tables.iter().filter(|t| !t.rows.is_empty()) {
        let width = t.shape.columns.len() + 1;
        let target = D.quote(&t.shape.name);
        let cols = insert_columns(D, &t.shape.columns);
        let key: Vec<String> = t
            .shape
            .key
            .iter()
            .map(|&i| D.quote(&t.shape.columns[i]))
            .collect();
        let mut sets: Vec<String> = t
            .shape
            .columns
            .iter()
            .enumerate()
            .filter(|(i, _)| !t.shape.key.contains(i))
            .map(|(_, c)| format!("{0} = excluded.{0}", D.quote(c)))
            .collect();
        let v = D.quote(VERSION_COLUMN);
        sets.push(format!("{v} = excluded.{v}"));
        let row_marks = format!("({})", vec!["?"; width].join(", "));
        let per_statement = (MAX_PARAMS / width).max(1);
        for batch in t.rows.chunks(per_statement) {
            let sql = format!(
                "INSERT INTO {target} ({cols}) VALUES {} ON CONFLICT ({}) DO UPDATE SET {} WHERE {target}.{v} < excluded.{v}",
                vec![row_marks.as_str(); batch.len()].join(", "),
                key.join(", "),
                sets.join(", ")
            );
            let mut q = sqlx::query(&sql);
            for row in batch {
                for value in row {
                    q = bind_one(q, value);
                }
                q = q.bind(version);
            }
            q.execute(&mut *tx).await?;
        }
    }
    for st in after {
        let r = bind_all(sqlx::query(&st.sql), &st.params)
            .execute(&mut *tx)
            .await?;
        check_affected(st, r.rows_affected())?;
    }
    tx.commit().await
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
