//! PostgreSQL: reads with prepared statements, writes with `COPY` into a
//! temporary staging table and one set-based, version-guarded upsert.

use std::collections::{HashMap, HashSet};

use sqlx::postgres::PgQueryResult;
use sqlx::postgres::{PgArguments, PgConnection, PgRow};
use sqlx::query::Query;
use sqlx::{Connection, Executor, PgPool, Postgres, Row};

use super::driver::{self, Chunk, Driver, Typed};
use super::pg_copy::{self, BinType};
use super::{Dialect, FetchError, VERSION_COLUMN, insert_columns, key_columns, upsert_sets};
use crate::transform::{TableRows, TableShape};
use crate::value::{ColumnType, Value};

const D: Dialect = Dialect::Postgres;

pub(super) fn sql_type(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Bool => "BOOLEAN",
        ColumnType::Int => "BIGINT",
        ColumnType::Float => "DOUBLE PRECISION",
        ColumnType::Decimal => "NUMERIC",
        ColumnType::Text => "TEXT",
        ColumnType::Bytes => "BYTEA",
        ColumnType::Uuid => "UUID",
        ColumnType::Json => "JSONB",
        ColumnType::Timestamp => "TIMESTAMP",
        ColumnType::TimestampTz => "TIMESTAMPTZ",
        ColumnType::Date => "DATE",
    }
}

/// Whether a table (`name` or `schema.name`) exists.
pub(super) async fn table_exists(p: &PgPool, table: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(D.quote(table))
        .fetch_one(p)
        .await
}

/// The table's `reltuples` (-1: never vacuumed or analysed).
pub(super) async fn estimated_rows(p: &PgPool, table: &str) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT reltuples::int8 FROM pg_class WHERE oid = to_regclass($1)")
        .bind(D.quote(table))
        .fetch_optional(p)
        .await
}

/// Runs a query in a `READ ONLY` transaction that stops it after `timeout`
/// (`statement_timeout`, local to the transaction), then rolls back: the
/// server refuses any write, a data-modifying CTE or a writing function
/// included.
pub(super) async fn fetch_read_only(
    p: &PgPool,
    sql: &str,
    params: &[Value],
    timeout: std::time::Duration,
) -> Result<(Vec<String>, Vec<Vec<Value>>), FetchError> {
    let mut tx = p.begin_with("BEGIN READ ONLY").await?;
    sqlx::query("SELECT set_config('statement_timeout', $1, true)")
        .bind(timeout.as_millis().max(1).to_string())
        .execute(&mut *tx)
        .await?;
    let out = driver::fetch_on::<Postgres>(&mut tx, sql, params).await;
    driver::roll_back(tx, out).await
}

impl Driver for Postgres {
    /// PostgreSQL names its column types (`INT8`, `TIMESTAMPTZ`…), each read
    /// one way.
    type Decoder = Typed;

    const DIALECT: Dialect = D;

    fn bind_all<'q>(
        mut q: Query<'q, Postgres, PgArguments>,
        params: &[Value],
    ) -> Query<'q, Postgres, PgArguments> {
        for v in params {
            q = match v.clone() {
                Value::Null => q.bind(None::<String>),
                Value::Bool(b) => q.bind(b),
                Value::Int(i) => q.bind(i),
                Value::Float(f) => q.bind(f),
                Value::Decimal(d) => q.bind(d),
                Value::Text(s) => q.bind(s),
                Value::Bytes(b) => q.bind(b),
                Value::Uuid(u) => q.bind(u),
                Value::Json(j) => q.bind(sqlx::types::Json(j)),
                Value::Timestamp(t) => q.bind(t),
                Value::TimestampTz(t) => q.bind(t),
                Value::Date(d) => q.bind(d),
            };
        }
        q
    }

    fn rows_affected(result: &PgQueryResult) -> u64 {
        result.rows_affected()
    }

    fn decoder(type_name: &str) -> Option<Typed> {
        Some(match type_name.to_ascii_uppercase().as_str() {
            "BOOL" => Typed::Bool,
            "INT2" => Typed::I16,
            "INT4" => Typed::I32,
            "INT8" => Typed::I64,
            "FLOAT4" => Typed::F32,
            "FLOAT8" => Typed::F64,
            "NUMERIC" => Typed::Decimal,
            "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "CHAR" => Typed::Text,
            "BYTEA" => Typed::Bytes,
            "UUID" => Typed::Uuid,
            "JSON" | "JSONB" => Typed::Json,
            "TIMESTAMP" => Typed::Ts,
            "TIMESTAMPTZ" => Typed::TsTz,
            "DATE" => Typed::Date,
            _ => return None,
        })
    }

    fn decode(row: &PgRow, i: usize, t: Typed) -> Result<Value, sqlx::Error> {
        match t {
            Typed::Uuid => driver::get::<Postgres, uuid::Uuid>(row, i, Value::Uuid),
            other => driver::decode_typed::<Postgres>(row, i, other),
        }
    }

    fn cast_hint(column: &str) -> String {
        format!("`{column}::text`")
    }
}

/// Per-connection state of the writer: staging tables already created, and
/// each table's binary COPY layout (`None`: copied as text).
#[derive(Default)]
pub(crate) struct Staging {
    created: HashSet<String>,
    layouts: HashMap<String, Option<Vec<BinType>>>,
}

/// The binary COPY types of a target table's spec columns, or `None` if one
/// of them has a type binary COPY is not taught here.
async fn binary_layout(
    c: &mut PgConnection,
    shape: &TableShape,
) -> Result<Option<Vec<BinType>>, sqlx::Error> {
    let attrs: Vec<(String, String)> = sqlx::query_as(
        "SELECT a.attname::text, t.typname::text FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
         WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped",
    )
    .bind(D.quote(&shape.name))
    .fetch_all(&mut *c)
    .await?;
    let find = |col: &str| {
        attrs
            .iter()
            .find(|(n, _)| n == col)
            .and_then(|(_, t)| BinType::from_typname(t))
    };
    if find(VERSION_COLUMN) != Some(BinType::Int8) {
        return Ok(None);
    }
    Ok(shape.columns.iter().map(|c| find(c)).collect())
}

fn stage_name(table: &str) -> String {
    format!("_tern_stage_{}", table.replace('.', "_"))
}

pub(super) async fn write_chunk(
    c: &mut PgConnection,
    staging: &mut Staging,
    chunk: Chunk<'_>,
) -> Result<(), sqlx::Error> {
    match write_chunk_once(c, staging, chunk, true).await {
        // A row appeared inside a range the fast path found empty (a
        // concurrent writer): COPY refused it and nothing was committed. The
        // chunk goes again, all through the guarded upsert.
        Err(e) if is_unique_violation(&e) => write_chunk_once(c, staging, chunk, false).await,
        other => other,
    }
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "23505")
}

/// The smallest and largest target key of the rows, if all keys compare.
fn key_bounds(t: &TableRows) -> Option<(Vec<Value>, Vec<Value>)> {
    let key =
        |r: &Vec<Value>| -> Vec<Value> { t.shape.key.iter().map(|&i| r[i].clone()).collect() };
    let cmp = |a: &[Value], b: &[Value]| -> Option<std::cmp::Ordering> {
        for (x, y) in a.iter().zip(b) {
            match x.compare(y)? {
                std::cmp::Ordering::Equal => continue,
                o => return Some(o),
            }
        }
        Some(std::cmp::Ordering::Equal)
    };
    let mut rows = t.rows.iter();
    let first = key(rows.next()?);
    let (mut lo, mut hi) = (first.clone(), first);
    for r in rows {
        let k = key(r);
        if cmp(&k, &lo)?.is_lt() {
            lo = k;
        } else if cmp(&k, &hi)?.is_gt() {
            hi = k;
        }
    }
    Some((lo, hi))
}

/// Whether the target has any row with a key in `[lo, hi]`.
async fn any_in_range(
    c: &mut PgConnection,
    t: &TableRows,
    lo: Vec<Value>,
    hi: Vec<Value>,
) -> Result<bool, sqlx::Error> {
    let cols: Vec<String> = t
        .shape
        .key
        .iter()
        .map(|&i| D.quote(&t.shape.columns[i]))
        .collect();
    let n = cols.len();
    let marks = |from: usize| {
        (from..from + n)
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let sql = format!(
        "SELECT EXISTS (SELECT 1 FROM {} WHERE ({c}) >= ({}) AND ({c}) <= ({}))",
        D.quote(&t.shape.name),
        marks(1),
        marks(n + 1),
        c = cols.join(", ")
    );
    let params: Vec<Value> = lo.into_iter().chain(hi).collect();
    let row = Postgres::bind_all(sqlx::query(&sql), &params)
        .fetch_one(&mut *c)
        .await?;
    row.try_get::<bool, _>(0)
}

/// Whether the target has any of the rows' keys; `None` when the key is not
/// a single integer, text or UUID column (then the guarded upsert is used).
async fn any_key_present(c: &mut PgConnection, t: &TableRows) -> Result<Option<bool>, sqlx::Error> {
    let [k] = t.shape.key[..] else {
        return Ok(None);
    };
    let sql = format!(
        "SELECT EXISTS (SELECT 1 FROM {} WHERE {} = ANY($1))",
        D.quote(&t.shape.name),
        D.quote(&t.shape.columns[k])
    );
    // Every row's key as `T`, or `None` if one is of another kind.
    fn all<T>(t: &TableRows, k: usize, f: impl Fn(&Value) -> Option<T>) -> Option<Vec<T>> {
        t.rows.iter().map(|r| f(&r[k])).collect()
    }
    let q = sqlx::query_scalar::<_, bool>(&sql);
    let q = match t.rows.first().map(|r| &r[k]) {
        Some(Value::Int(_)) => all(t, k, |v| match v {
            Value::Int(i) => Some(*i),
            _ => None,
        })
        .map(|keys| q.bind(keys)),
        Some(Value::Text(_)) => all(t, k, |v| match v {
            Value::Text(s) => Some(s.clone()),
            _ => None,
        })
        .map(|keys| q.bind(keys)),
        Some(Value::Uuid(_)) => all(t, k, |v| match v {
            Value::Uuid(u) => Some(*u),
            _ => None,
        })
        .map(|keys| q.bind(keys)),
        _ => None,
    };
    let Some(q) = q else {
        return Ok(None);
    };
    q.fetch_one(&mut *c).await.map(Some)
}

async fn write_chunk_once(
    c: &mut PgConnection,
    staging: &mut Staging,
    chunk: Chunk<'_>,
    allow_direct: bool,
) -> Result<(), sqlx::Error> {
    // Staging tables are created outside the chunk's transaction, so that a
    // rolled-back chunk does not take them away.
    for t in chunk.written() {
        if staging.created.insert(t.shape.name.clone()) {
            let sql = format!(
                "CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS",
                D.quote(&stage_name(&t.shape.name)),
                D.quote(&t.shape.name)
            );
            if let Err(e) = c.execute(sql.as_str()).await {
                staging.created.remove(&t.shape.name);
                return Err(e);
            }
        }
    }
    for t in chunk.written() {
        if !staging.layouts.contains_key(&t.shape.name) {
            let layout = binary_layout(c, &t.shape).await?;
            staging.layouts.insert(t.shape.name.clone(), layout);
        }
    }
    let mut tx = c.begin().await?;
    driver::run_statements::<Postgres>(&mut tx, chunk.before).await?;
    let mut buf = Vec::new();
    for t in chunk.written() {
        let cols = insert_columns(D, &t.shape.columns);
        buf.clear();
        buf.reserve(t.rows.len() * 128);
        let format = match staging.layouts.get(&t.shape.name).and_then(Option::as_ref) {
            Some(types) => {
                pg_copy::header(&mut buf);
                for row in &t.rows {
                    pg_copy::row(&mut buf, types, row, chunk.version).map_err(|e| {
                        sqlx::Error::Protocol(format!("encoding a row of {}: {e}", t.shape.name))
                    })?;
                }
                pg_copy::trailer(&mut buf);
                " (FORMAT binary)"
            }
            None => {
                for row in &t.rows {
                    for v in row {
                        v.write_copy_text(&mut buf);
                        buf.push(b'\t');
                    }
                    Value::Int(chunk.version).write_copy_text(&mut buf);
                    buf.push(b'\n');
                }
                ""
            }
        };
        let target = D.quote(&t.shape.name);

        // Fast path: when no target row has a key within the chunk's key
        // range, COPY straight into the target. COPY never replaces a row: a
        // row a concurrent writer adds in the meantime makes it fail on the
        // primary key instead (and the chunk is retried through the guarded
        // upsert), so the version rule holds either way.
        let direct = allow_direct
            && match key_bounds(t) {
                Some((lo, hi)) => {
                    !any_in_range(&mut tx, t, lo, hi).await?
                        // Keys interleave with rows already there (source order
                        // differs from the target key): probe the keys themselves.
                        || any_key_present(&mut tx, t).await? == Some(false)
                }
                None => false,
            };
        if direct {
            let mut copy = tx
                .copy_in_raw(&format!("COPY {target} ({cols}) FROM STDIN{format}"))
                .await?;
            copy.send(buf.as_slice()).await?;
            copy.finish().await?;
            continue;
        }

        let stage = D.quote(&stage_name(&t.shape.name));
        let mut copy = tx
            .copy_in_raw(&format!("COPY {stage} ({cols}) FROM STDIN{format}"))
            .await?;
        copy.send(buf.as_slice()).await?;
        copy.finish().await?;
        let key = key_columns(D, &t.shape);
        let sets = upsert_sets(D, &t.shape, |c| format!("{c} = EXCLUDED.{c}"));
        // The If-Unmodified-Since rule: a row already written with a newer
        // version (a relay write that saw newer source state) is kept.
        let upsert = format!(
            "INSERT INTO {target} ({cols}) SELECT {cols} FROM {stage} \
             ON CONFLICT ({key}) DO UPDATE SET {sets} WHERE {target}.{v} < EXCLUDED.{v}",
            key = key.join(", "),
            sets = sets.join(", "),
            v = D.quote(VERSION_COLUMN),
        );
        tx.execute(upsert.as_str()).await?;
    }
    driver::run_statements::<Postgres>(&mut tx, chunk.after).await?;
    tx.commit().await
}
