//! What the three database drivers share, written once over sqlx's
//! `Database` trait: describing a query, fetching and decoding rows,
//! executing statements, and running statements in one transaction. Each
//! dialect's module says only what is its own, by implementing [`Driver`]:
//! how values are bound, how a type name maps to an engine type and which
//! decoder reads it, and (outside this trait) its fastest write path.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use rust_decimal::Decimal;
use sqlx::pool::PoolConnection;
use sqlx::query::Query;
use sqlx::types::Json;
use sqlx::{
    Column, ColumnIndex, Connection, Database, Decode, Executor, Pool, Row, Type, TypeInfo,
};

use super::{Dialect, FetchError, Statement, VERSION_COLUMN, check_affected, insert_columns};
use crate::transform::{SourceColumn, TableRows};
use crate::value::{ColumnType, Value};

/// One database driver as the connectors use it.
pub(super) trait Driver: Database {
    /// How one column of a result is decoded, chosen once per column from
    /// its type's name; it also says the engine's type of the column.
    type Decoder: Copy + EngineType;

    /// The database's SQL dialect.
    const DIALECT: Dialect;

    /// Binds `params` to a query, in order.
    fn bind_all<'q>(
        q: Query<'q, Self, <Self as Database>::Arguments<'q>>,
        params: &[Value],
    ) -> Query<'q, Self, <Self as Database>::Arguments<'q>>;

    /// Rows a statement affected.
    fn rows_affected(result: &Self::QueryResult) -> u64;

    /// The decoder of a column whose type the database names so; `None` for
    /// a type the engine does not read.
    fn decoder(type_name: &str) -> Option<Self::Decoder>;

    /// Decodes column `i` of a row.
    fn decode(row: &Self::Row, i: usize, decoder: Self::Decoder) -> Result<Value, sqlx::Error>;

    /// How a query source casts a column the engine does not read, for the
    /// error message: `` `x::text` ``, `CAST(x AS CHAR)`.
    fn cast_hint(column: &str) -> String;
}

/// The engine's type of the values a decoder reads, when it can be told.
pub(super) trait EngineType {
    fn engine_type(self) -> Option<ColumnType>;
}

/// SQLite's decoder is the declared type's meaning (see its driver).
impl EngineType for Option<ColumnType> {
    fn engine_type(self) -> Option<ColumnType> {
        self
    }
}

/// How a column of a driver that types its columns (PostgreSQL, MySQL) is
/// read, chosen from the database's name of its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Typed {
    Bool,
    I16,
    I32,
    I64,
    /// MySQL's unsigned integers, read by the MySQL driver.
    U64,
    F32,
    F64,
    Decimal,
    Text,
    Bytes,
    /// PostgreSQL's `uuid`, read by the PostgreSQL driver.
    Uuid,
    Json,
    Ts,
    TsTz,
    Date,
}

impl EngineType for Typed {
    fn engine_type(self) -> Option<ColumnType> {
        Some(match self {
            Typed::Bool => ColumnType::Bool,
            Typed::I16 | Typed::I32 | Typed::I64 | Typed::U64 => ColumnType::Int,
            Typed::F32 | Typed::F64 => ColumnType::Float,
            Typed::Decimal => ColumnType::Decimal,
            Typed::Text => ColumnType::Text,
            Typed::Bytes => ColumnType::Bytes,
            Typed::Uuid => ColumnType::Uuid,
            Typed::Json => ColumnType::Json,
            Typed::Ts => ColumnType::Timestamp,
            Typed::TsTz => ColumnType::TimestampTz,
            Typed::Date => ColumnType::Date,
        })
    }
}

/// Column `i` read as `T`: `NULL` as [`Value::Null`], a value through `f`.
pub(super) fn get<'r, DB, T>(
    row: &'r DB::Row,
    i: usize,
    f: impl FnOnce(T) -> Value,
) -> Result<Value, sqlx::Error>
where
    DB: Database,
    T: Decode<'r, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    Ok(row.try_get::<Option<T>, usize>(i)?.map_or(Value::Null, f))
}

/// Column `i` read as `typed` says, for the types both PostgreSQL and MySQL
/// read the same way; [`Typed::U64`] and [`Typed::Uuid`] are their
/// drivers' own.
pub(super) fn decode_typed<'r, DB>(
    row: &'r DB::Row,
    i: usize,
    typed: Typed,
) -> Result<Value, sqlx::Error>
where
    DB: Database,
    usize: ColumnIndex<DB::Row>,
    bool: Decode<'r, DB> + Type<DB>,
    i16: Decode<'r, DB> + Type<DB>,
    i32: Decode<'r, DB> + Type<DB>,
    i64: Decode<'r, DB> + Type<DB>,
    f32: Decode<'r, DB> + Type<DB>,
    f64: Decode<'r, DB> + Type<DB>,
    Decimal: Decode<'r, DB> + Type<DB>,
    String: Decode<'r, DB> + Type<DB>,
    Vec<u8>: Decode<'r, DB> + Type<DB>,
    Json<serde_json::Value>: Decode<'r, DB> + Type<DB>,
    NaiveDateTime: Decode<'r, DB> + Type<DB>,
    DateTime<Utc>: Decode<'r, DB> + Type<DB>,
    NaiveDate: Decode<'r, DB> + Type<DB>,
{
    match typed {
        Typed::Bool => get::<DB, bool>(row, i, Value::Bool),
        Typed::I16 => get::<DB, i16>(row, i, |v| Value::Int(v.into())),
        Typed::I32 => get::<DB, i32>(row, i, |v| Value::Int(v.into())),
        Typed::I64 => get::<DB, i64>(row, i, Value::Int),
        Typed::F32 => get::<DB, f32>(row, i, |v| Value::Float(v.into())),
        Typed::F64 => get::<DB, f64>(row, i, Value::Float),
        Typed::Decimal => get::<DB, Decimal>(row, i, Value::Decimal),
        Typed::Text => get::<DB, String>(row, i, Value::Text),
        Typed::Bytes => get::<DB, Vec<u8>>(row, i, Value::Bytes),
        Typed::Json => get::<DB, Json<serde_json::Value>>(row, i, |j| Value::Json(j.0)),
        Typed::Ts => get::<DB, NaiveDateTime>(row, i, Value::Timestamp),
        Typed::TsTz => get::<DB, DateTime<Utc>>(row, i, Value::TimestampTz),
        Typed::Date => get::<DB, NaiveDate>(row, i, Value::Date),
        Typed::U64 | Typed::Uuid => Err(sqlx::Error::Decode(
            format!("{typed:?} columns are read by their own driver").into(),
        )),
    }
}

/// The pool every connector opens: 8 connections, at most 10 s to get one.
pub(super) fn pool_options<DB: Database>() -> sqlx::pool::PoolOptions<DB> {
    sqlx::pool::PoolOptions::new()
        .max_connections(8)
        .acquire_timeout(std::time::Duration::from_secs(10))
}

/// The columns of a table, `None` if `exists` (the dialect's own
/// catalog look-up) says there is no such table.
pub(super) async fn table_columns<DB: Driver>(
    pool: &Pool<DB>,
    table: &str,
    exists: impl std::future::Future<Output = Result<bool, sqlx::Error>>,
) -> Result<Option<Vec<SourceColumn>>, sqlx::Error>
where
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
{
    if !exists.await? {
        return Ok(None);
    }
    let select = format!("SELECT * FROM {}", DB::DIALECT.quote(table));
    describe(pool, &select).await.map(Some)
}

/// The columns a SELECT returns, with their engine types where known.
pub(super) async fn describe<DB: Driver>(
    pool: &Pool<DB>,
    sql: &str,
) -> Result<Vec<SourceColumn>, sqlx::Error>
where
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
{
    let st = pool.prepare(sql).await?;
    Ok(sqlx::Statement::columns(&st)
        .iter()
        .map(|c| SourceColumn {
            name: c.name().to_string(),
            ty: DB::decoder(c.type_info().name()).and_then(EngineType::engine_type),
        })
        .collect())
}

/// Runs a query: its column names and rows, decoded.
pub(super) async fn fetch<DB: Driver>(
    pool: &Pool<DB>,
    sql: &str,
    params: &[Value],
) -> Result<(Vec<String>, Vec<Vec<Value>>), FetchError>
where
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    for<'q> <DB as Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
{
    let rows = DB::bind_all(sqlx::query(sql), params)
        .fetch_all(pool)
        .await?;
    decode_rows::<DB>(&rows)
}

/// Runs a query on a connection (inside the caller's transaction or
/// session): its column names and rows, decoded.
pub(super) async fn fetch_on<DB: Driver>(
    conn: &mut DB::Connection,
    sql: &str,
    params: &[Value],
) -> Result<(Vec<String>, Vec<Vec<Value>>), FetchError>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> <DB as Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
{
    let rows = DB::bind_all(sqlx::query(sql), params)
        .fetch_all(&mut *conn)
        .await?;
    decode_rows::<DB>(&rows)
}

/// Rolls back the transaction a query ran in (read-only, time-limited),
/// whatever happened, and returns the query's outcome `out`: nothing the
/// query did is kept.
pub(super) async fn roll_back<DB: Database, T>(
    tx: sqlx::Transaction<'_, DB>,
    out: Result<T, FetchError>,
) -> Result<T, FetchError> {
    // The query's own error says more than a failed rollback after it.
    let rolled_back = tx.rollback().await;
    let out = out?;
    rolled_back?;
    Ok(out)
}

/// A pooled connection whose session a caller changes for a while (SQLite's
/// `query_only`, MySQL's statement time limit). Unless [`Session::restored`]
/// says the session is as it was, the connection is closed instead of going
/// back to the pool: a read whose future is dropped midway (a cancelled run)
/// cannot leave a read-only or time-limited connection for the next writer.
pub(super) struct Session<DB: Database> {
    conn: PoolConnection<DB>,
    restored: bool,
}

impl<DB: Database> Session<DB> {
    pub(super) async fn acquire(pool: &Pool<DB>) -> Result<Session<DB>, sqlx::Error> {
        Ok(Session {
            conn: pool.acquire().await?,
            restored: false,
        })
    }

    pub(super) fn conn(&mut self) -> &mut DB::Connection {
        &mut self.conn
    }

    /// The session is as the pool handed it out: it may go back.
    pub(super) fn restored(mut self) {
        self.restored = true;
    }
}

impl<DB: Database> Drop for Session<DB> {
    fn drop(&mut self) {
        if !self.restored {
            self.conn.close_on_drop();
        }
    }
}

/// Decodes rows, choosing each column's decoder from the first row; a
/// column of a type the engine does not read is an error naming it.
fn decode_rows<DB: Driver>(rows: &[DB::Row]) -> Result<(Vec<String>, Vec<Vec<Value>>), FetchError> {
    let Some(first) = rows.first() else {
        return Ok((Vec::new(), Vec::new()));
    };
    let names: Vec<String> = first
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    let mut decoders = Vec::with_capacity(names.len());
    for (c, name) in first.columns().iter().zip(&names) {
        let ty = c.type_info().name();
        match DB::decoder(ty) {
            Some(d) => decoders.push(d),
            None => {
                return Err(FetchError::Decode {
                    column: name.clone(),
                    message: format!(
                        "type {ty} is not one the engine reads; cast it in a query source (e.g. {})",
                        DB::cast_hint(name)
                    ),
                });
            }
        }
    }
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let mut values = Vec::with_capacity(decoders.len());
        for (i, &d) in decoders.iter().enumerate() {
            values.push(DB::decode(row, i, d).map_err(|e| FetchError::Decode {
                column: names[i].clone(),
                message: e.to_string(),
            })?);
        }
        out.push(values);
    }
    Ok((names, out))
}

/// Runs a statement without result rows; the rows it affected.
pub(super) async fn execute<DB: Driver>(
    pool: &Pool<DB>,
    sql: &str,
    params: &[Value],
) -> Result<u64, sqlx::Error>
where
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    for<'q> <DB as Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
{
    let result = DB::bind_all(sqlx::query(sql), params).execute(pool).await?;
    Ok(DB::rows_affected(&result))
}

/// Runs statements on a connection (inside the caller's transaction), each
/// checked for the rows it must affect; the rows each affected.
pub(super) async fn run_statements<DB: Driver>(
    conn: &mut DB::Connection,
    statements: &[Statement],
) -> Result<Vec<u64>, sqlx::Error>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> <DB as Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
{
    let mut affected = Vec::with_capacity(statements.len());
    for st in statements {
        let result = DB::bind_all(sqlx::query(&st.sql), &st.params)
            .execute(&mut *conn)
            .await?;
        let n = DB::rows_affected(&result);
        check_affected(st, n)?;
        affected.push(n);
    }
    Ok(affected)
}

/// Runs statements in one transaction: all commit or none does. The rows
/// each affected.
pub(super) async fn transaction<DB: Driver>(
    pool: &Pool<DB>,
    statements: &[Statement],
) -> Result<Vec<u64>, sqlx::Error>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> <DB as Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
{
    let mut tx = pool.begin().await?;
    let affected = run_statements::<DB>(&mut tx, statements).await?;
    tx.commit().await?;
    Ok(affected)
}

/// The columns a SELECT returns with the database's own name of each type
/// (`INT4`, `TIMESTAMPTZ`, `VARCHAR`).
pub(super) async fn type_names<DB: Driver>(
    pool: &Pool<DB>,
    sql: &str,
) -> Result<Vec<(String, String)>, sqlx::Error>
where
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
{
    let st = pool.prepare(sql).await?;
    Ok(sqlx::Statement::columns(&st)
        .iter()
        .map(|c| (c.name().to_string(), c.type_info().name().to_string()))
        .collect())
}

/// A chunk's write: rows per table, each stamped with `version`, in one
/// transaction that `before` opens and `after` closes (the origin mark,
/// [`super::origin`], and the checkpoint).
#[derive(Clone, Copy)]
pub(super) struct Chunk<'a> {
    pub tables: &'a [TableRows],
    pub version: i64,
    pub before: &'a [Statement],
    pub after: &'a [Statement],
}

impl<'a> Chunk<'a> {
    /// The tables that have rows to write.
    pub fn written(self) -> impl Iterator<Item = &'a TableRows> {
        self.tables.iter().filter(|t| !t.rows.is_empty())
    }
}

/// A driver that writes chunks as multi-row upserts with `?` placeholders
/// (MySQL, SQLite): it says only its parameter limit and what it does on a
/// key already there.
pub(super) trait MultiRowUpsert: Driver {
    /// Placeholders one statement may hold, kept under the database's limit.
    const MAX_PARAMS: usize;

    /// The upsert's conflict clause for a table (`ON CONFLICT … DO UPDATE`),
    /// guarded by the version column `v` (quoted).
    fn on_conflict(t: &TableRows, v: &str) -> String;
}

/// Writes a chunk as multi-row upserts: for each table, batches of rows of
/// at most [`MultiRowUpsert::MAX_PARAMS`] parameters, each row followed by
/// the chunk's version, in `INSERT … VALUES … <on_conflict>` statements.
pub(super) async fn write_upserts<DB: MultiRowUpsert>(
    conn: &mut DB::Connection,
    chunk: Chunk<'_>,
) -> Result<(), sqlx::Error>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> <DB as Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
{
    let version = [Value::Int(chunk.version)];
    let mut tx = conn.begin().await?;
    run_statements::<DB>(&mut tx, chunk.before).await?;
    for t in chunk.written() {
        let width = t.shape.columns.len() + 1;
        let row_marks = format!("({})", vec!["?"; width].join(", "));
        let insert = format!(
            "INSERT INTO {} ({}) VALUES",
            DB::DIALECT.quote(&t.shape.name),
            insert_columns(DB::DIALECT, &t.shape.columns)
        );
        let on_conflict = DB::on_conflict(t, &DB::DIALECT.quote(VERSION_COLUMN));
        for batch in t.rows.chunks((DB::MAX_PARAMS / width).max(1)) {
            let values = vec![row_marks.as_str(); batch.len()].join(", ");
            let sql = format!("{insert} {values} {on_conflict}");
            let mut q = sqlx::query(&sql);
            for row in batch {
                q = DB::bind_all(DB::bind_all(q, row), &version);
            }
            q.execute(&mut *tx).await?;
        }
    }
    run_statements::<DB>(&mut tx, chunk.after).await?;
    tx.commit().await
}
