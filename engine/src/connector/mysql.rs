//! MySQL and MariaDB: reads with prepared statements, writes with multi-row
//! `INSERT … ON DUPLICATE KEY UPDATE`, each column guarded by the version.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use rust_decimal::Decimal;
use sqlx::mysql::{MySqlArguments, MySqlConnection, MySqlRow};
use sqlx::query::Query;
use sqlx::{Column, Connection, Executor, MySql, MySqlPool, Row, TypeInfo};

use super::{Dialect, FetchError, Statement, VERSION_COLUMN, check_affected, insert_columns};
use crate::transform::{SourceColumn, TableRows};
use crate::value::{ColumnType, Value};

const D: Dialect = Dialect::MySql;
/// MySQL allows 65535 placeholders per statement.
const MAX_PARAMS: usize = 60_000;

pub(super) fn column_type(name: &str) -> Option<ColumnType> {
    Some(match decoder(name) {
        Dec::Bool => ColumnType::Bool,
        Dec::I64 | Dec::U64 => ColumnType::Int,
        Dec::F32 | Dec::F64 => ColumnType::Float,
        Dec::Decimal => ColumnType::Decimal,
        Dec::Text => ColumnType::Text,
        Dec::Bytes => ColumnType::Bytes,
        Dec::Json => ColumnType::Json,
        Dec::Ts => ColumnType::Timestamp,
        Dec::TsTz => ColumnType::TimestampTz,
        Dec::Date => ColumnType::Date,
        Dec::Unsupported => return None,
    })
}

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

pub(super) async fn describe(p: &MySqlPool, sql: &str) -> Result<Vec<SourceColumn>, sqlx::Error> {
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
    p: &MySqlPool,
    table: &str,
) -> Result<Option<Vec<SourceColumn>>, sqlx::Error> {
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
    if n == 0 {
        return Ok(None);
    }
    describe(p, &format!("SELECT * FROM {}", D.quote(table)))
        .await
        .map(Some)
}

pub(super) fn bind_all<'q>(
    mut q: Query<'q, MySql, MySqlArguments>,
    params: &[Value],
) -> Query<'q, MySql, MySqlArguments> {
    for v in params {
        q = bind_one(q, v);
    }
    q
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

#[derive(Clone, Copy)]
enum Dec {
    Bool,
    I64,
    U64,
    F32,
    F64,
    Decimal,
    Text,
    Bytes,
    Json,
    Ts,
    TsTz,
    Date,
    Unsupported,
}

fn decoder(name: &str) -> Dec {
    match name {
        "BOOLEAN" => Dec::Bool,
        "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" => Dec::I64,
        "TINYINT UNSIGNED" | "SMALLINT UNSIGNED" | "MEDIUMINT UNSIGNED" | "INT UNSIGNED"
        | "BIGINT UNSIGNED" => Dec::U64,
        "FLOAT" => Dec::F32,
        "DOUBLE" => Dec::F64,
        "DECIMAL" => Dec::Decimal,
        "CHAR" | "VARCHAR" | "TINYTEXT" | "TEXT" | "MEDIUMTEXT" | "LONGTEXT" | "ENUM" | "SET" => {
            Dec::Text
        }
        "BINARY" | "VARBINARY" | "TINYBLOB" | "BLOB" | "MEDIUMBLOB" | "LONGBLOB" => Dec::Bytes,
        "JSON" => Dec::Json,
        "DATETIME" => Dec::Ts,
        "TIMESTAMP" => Dec::TsTz,
        "DATE" => Dec::Date,
        _ => Dec::Unsupported,
    }
}

fn decode(row: &MySqlRow, i: usize, dec: Dec) -> Result<Value, sqlx::Error> {
    fn opt<T>(v: Option<T>, f: impl FnOnce(T) -> Value) -> Value {
        v.map_or(Value::Null, f)
    }
    Ok(match dec {
        Dec::Bool => opt(row.try_get::<Option<bool>, _>(i)?, Value::Bool),
        Dec::I64 => opt(row.try_get::<Option<i64>, _>(i)?, Value::Int),
        Dec::U64 => match row.try_get::<Option<u64>, _>(i)? {
            None => Value::Null,
            Some(v) => Value::Int(i64::try_from(v).map_err(|_| {
                sqlx::Error::Decode(format!("{v} does not fit a signed 64-bit integer").into())
            })?),
        },
        Dec::F32 => opt(row.try_get::<Option<f32>, _>(i)?, |v| {
            Value::Float(v.into())
        }),
        Dec::F64 => opt(row.try_get::<Option<f64>, _>(i)?, Value::Float),
        Dec::Decimal => opt(row.try_get::<Option<Decimal>, _>(i)?, Value::Decimal),
        Dec::Text => opt(row.try_get::<Option<String>, _>(i)?, Value::Text),
        Dec::Bytes => opt(row.try_get::<Option<Vec<u8>>, _>(i)?, Value::Bytes),
        Dec::Json => opt(
            row.try_get::<Option<sqlx::types::Json<serde_json::Value>>, _>(i)?,
            |j| Value::Json(j.0),
        ),
        Dec::Ts => opt(
            row.try_get::<Option<NaiveDateTime>, _>(i)?,
            Value::Timestamp,
        ),
        Dec::TsTz => opt(
            row.try_get::<Option<DateTime<Utc>>, _>(i)?,
            Value::TimestampTz,
        ),
        Dec::Date => opt(row.try_get::<Option<NaiveDate>, _>(i)?, Value::Date),
        Dec::Unsupported => Value::Null,
    })
}

pub(super) async fn fetch(
    p: &MySqlPool,
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
    let decs: Vec<Dec> = first
        .columns()
        .iter()
        .map(|c| decoder(c.type_info().name()))
        .collect();
    for (i, d) in decs.iter().enumerate() {
        if matches!(d, Dec::Unsupported) {
            return Err(FetchError::Decode {
                column: names[i].clone(),
                message: format!(
                    "type {} is not one the engine reads; cast it in a query source (e.g. CAST({} AS CHAR))",
                    first.columns()[i].type_info().name(),
                    names[i]
                ),
            });
        }
    }
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let mut values = Vec::with_capacity(decs.len());
        for (i, &d) in decs.iter().enumerate() {
            values.push(decode(row, i, d).map_err(|e| FetchError::Decode {
                column: names[i].clone(),
                message: e.to_string(),
            })?);
        }
        out.push(values);
    }
    Ok((names, out))
}

pub(super) async fn write_chunk(
    c: &mut MySqlConnection,
    tables: &[TableRows],
    version: i64,
    after: &[Statement],
) -> Result<(), sqlx::Error> {
    let mut tx = c.begin().await?;
    for t in tables.iter().filter(|t| !t.rows.is_empty()) {
        let width = t.shape.columns.len() + 1;
        let cols = insert_columns(D, &t.shape.columns);
        let v = D.quote(VERSION_COLUMN);
        // Each column keeps its value unless the incoming version is newer;
        // the version column is assigned last, because MySQL evaluates the
        // assignments left to right and later ones see earlier results.
        let mut sets: Vec<String> = t
            .shape
            .columns
            .iter()
            .enumerate()
            .filter(|(i, _)| !t.shape.key.contains(i))
            .map(|(_, c)| {
                let c = D.quote(c);
                format!("{c} = IF({v} < VALUES({v}), VALUES({c}), {c})")
            })
            .collect();
        sets.push(format!("{v} = IF({v} < VALUES({v}), VALUES({v}), {v})"));
        let row_marks = format!("({})", vec!["?"; width].join(", "));
        let per_statement = (MAX_PARAMS / width).max(1);
        for batch in t.rows.chunks(per_statement) {
            let sql = format!(
                "INSERT INTO {} ({cols}) VALUES {} ON DUPLICATE KEY UPDATE {}",
                D.quote(&t.shape.name),
                vec![row_marks.as_str(); batch.len()].join(", "),
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
