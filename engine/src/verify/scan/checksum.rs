//! Chunk checksums: the fast path of a full diff.
//!
//! When the spec maps a table by plain column copies (no transformer, no
//! dedupe, the target key a copy of the source key) between MariaDB/MySQL
//! and PostgreSQL, each database can compute the canonical text of a row
//! itself. A chunk of the bucket, `(after, upto]` in key order, is then
//! compared by its row count and a 120-bit sum of per-row MD5s computed on
//! each side (order-independent, so collations that order keys differently
//! do not matter), without moving the rows. Only a chunk whose sums differ is
//! read row by row, through the spec's transform like every full diff, and
//! its mismatches are found, counted and stored exactly as the row-by-row
//! path does: every mismatched key with its field diffs and both full rows.
//!
//! The canonical text is built so that equal sums imply rows the row-by-row
//! comparison would call equal: each value is `length:text` or `~` for NULL,
//! integers in decimal, booleans `1`/`0`, timestamps to the microsecond,
//! dates as `YYYY-MM-DD`, text in UTF-8 as the database returns it (padded
//! `char(n)` included on PostgreSQL). Rows that the comparison would call
//! equal but whose texts differ only cost a row-by-row read of their chunk.
//! Columns of other types (floats, decimals, JSON, UUIDs, bytes, time zones)
//! or other mappings leave the table on the row-by-row path; the reason is
//! logged when the run starts.

use super::{Ctx, range_where};
use crate::chunk::KeyRange;
use crate::connector::Dialect;
use crate::error::{EngineError, Result};
use crate::spec::{TableSpec, Transform};
use crate::value::{ColumnType, Value};

/// How each side computes a chunk's checksum.
#[derive(Debug)]
pub(super) struct Checksums {
    /// The source key columns, quoted for the source.
    source_key: Vec<String>,
    /// `SELECT count, sum1, sum2 FROM (SELECT md5(row) …` up to the WHERE.
    source_sql: String,
    target_sql: String,
}

/// One side's checksum of a chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Sum {
    pub rows: u64,
    high: String,
    low: String,
}

impl Checksums {
    /// The checksum queries of the table, or why it is verified row by row.
    pub(super) fn plan(ctx: &Ctx, spec: &TableSpec) -> std::result::Result<Checksums, String> {
        let (sd, td) = (ctx.source.dialect(), ctx.target.dialect());
        for d in [sd, td] {
            if d == Dialect::Sqlite {
                return Err("SQLite has no MD5 to checksum chunks with".into());
            }
        }
        if !ctx.aligned {
            return Err("the target key is not a copy of the source key".into());
        }
        // Chunks are key ranges on both sides: only integers sort the same
        // in every database (text keys follow each database's collation).
        let int_keys = ctx
            .query
            .key_types()
            .iter()
            .all(|t| *t == Some(ColumnType::Int))
            && ctx
                .shape
                .key
                .iter()
                .all(|&i| ctx.shape.types.get(i).copied().flatten() == Some(ColumnType::Int));
        if !int_keys {
            return Err("the key is not made of integers on both sides".into());
        }
        let n = ctx.compared_len();
        let mut source_pieces = Vec::with_capacity(n);
        let mut target_pieces = Vec::with_capacity(n);
        for (i, name) in ctx.shape.columns[..n].iter().enumerate() {
            let col = spec
                .column(name)
                .ok_or_else(|| format!("column {name} is not in the spec"))?;
            let Transform::Copy(from) = &col.transform else {
                return Err(format!(
                    "column {name} is not a plain copy of a source column"
                ));
            };
            if col.trim || col.lower {
                return Err(format!("column {name} is trimmed or lowered"));
            }
            let target_ty = ctx
                .shape
                .types
                .get(i)
                .copied()
                .flatten()
                .ok_or_else(|| format!("the target does not say the type of column {name}"))?;
            if col.cast.is_some_and(|c| c != target_ty) {
                return Err(format!(
                    "column {name} is cast to another type than the target's"
                ));
            }
            let source_ty = ctx
                .query
                .columns
                .iter()
                .find(|c| &c.name == from)
                .and_then(|c| c.ty)
                .ok_or_else(|| format!("the source does not say the type of column {from}"))?;
            let supported = matches!(
                (source_ty, target_ty),
                (ColumnType::Int, ColumnType::Int | ColumnType::Bool)
                    | (ColumnType::Bool, ColumnType::Bool)
                    | (ColumnType::Text, ColumnType::Text)
                    | (ColumnType::Timestamp, ColumnType::Timestamp)
                    | (ColumnType::Date, ColumnType::Date)
            );
            if !supported {
                return Err(format!(
                    "column {name} ({source_ty} to {target_ty}) has no canonical text in both databases"
                ));
            }
            source_pieces.push(piece(sd, &sd.quote(from), source_ty, target_ty));
            target_pieces.push(piece(td, &td.quote(name), target_ty, target_ty));
        }
        let target_from = td.quote(&ctx.table);
        Ok(Checksums {
            source_key: ctx.query.key.iter().map(|c| sd.quote(c)).collect(),
            source_sql: sum_sql(sd, &source_pieces, ctx.query.from_clause()),
            target_sql: sum_sql(td, &target_pieces, &target_from),
        })
    }

    /// The source key of the `chunk_rows`-th row after `after` in the
    /// bucket: the end of the next chunk, `None` when the bucket ends first.
    pub(super) async fn boundary(
        &self,
        ctx: &Ctx,
        range: &KeyRange,
        after: Option<&[Value]>,
        chunk_rows: usize,
    ) -> Result<Option<Vec<Value>>> {
        let d = ctx.source.dialect();
        let (where_, params) =
            range_where(d, &self.source_key, range, after, None, &|v, _| v.clone());
        let cols = self.source_key.join(", ");
        let sql = format!(
            "SELECT {cols} FROM {}{where_} ORDER BY {cols} LIMIT 1 OFFSET {}",
            ctx.query.from_clause(),
            chunk_rows.saturating_sub(1)
        );
        let (_, mut rows) = ctx
            .source
            .fetch(
                &sql,
                &params,
                &format!("find the next chunk of {} to verify", ctx.table),
            )
            .await?;
        Ok(rows.pop())
    }

    /// The source's checksum of the chunk `(after, upto]` of the bucket.
    pub(super) async fn source_sum(
        &self,
        ctx: &Ctx,
        range: &KeyRange,
        after: Option<&[Value]>,
        upto: Option<&[Value]>,
    ) -> Result<Sum> {
        let d = ctx.source.dialect();
        let (where_, params) =
            range_where(d, &self.source_key, range, after, upto, &|v, _| v.clone());
        let what = format!("checksum a chunk of {} in the source", ctx.table);
        let (_, rows) = ctx
            .source
            .fetch(
                &format!("{}{where_}) AS _tern_h", self.source_sql),
                &params,
                &what,
            )
            .await?;
        sum_of(rows, &what)
    }

    /// The target's checksum of the same chunk.
    pub(super) async fn target_sum(
        &self,
        ctx: &Ctx,
        range: &KeyRange,
        after: Option<&[Value]>,
        upto: Option<&[Value]>,
    ) -> Result<Sum> {
        let (where_, params) = range_where(
            ctx.target.dialect(),
            &ctx.target_key_columns(),
            range,
            after,
            upto,
            &|v, i| ctx.target_key_value(v, i),
        );
        let what = format!("checksum a chunk of {} in the target", ctx.table);
        let (_, rows) = ctx
            .target
            .fetch(
                &format!("{}{where_}) AS _tern_h", self.target_sql),
                &params,
                &what,
            )
            .await?;
        sum_of(rows, &what)
    }
}

/// `len:text` of a column's canonical text, or `~` for NULL. `native` is the
/// column's type in its own database, `logical` the target's type.
fn piece(d: Dialect, col: &str, native: ColumnType, logical: ColumnType) -> String {
    let text = match (d, logical) {
        (Dialect::MySql, ColumnType::Bool) => {
            format!("CASE WHEN {col} <> 0 THEN '1' ELSE '0' END")
        }
        (Dialect::MySql, ColumnType::Timestamp) => {
            format!("DATE_FORMAT({col}, '%Y-%m-%d %H:%i:%s.%f')")
        }
        (Dialect::MySql, ColumnType::Date) => format!("DATE_FORMAT({col}, '%Y-%m-%d')"),
        (Dialect::MySql, _) => format!("CAST({col} AS CHAR)"),
        (_, ColumnType::Bool) if native == ColumnType::Int => {
            format!("CASE WHEN {col} <> 0 THEN '1' ELSE '0' END")
        }
        (_, ColumnType::Bool) => format!("CASE WHEN {col} THEN '1' ELSE '0' END"),
        (_, ColumnType::Timestamp) => format!("to_char({col}, 'YYYY-MM-DD HH24:MI:SS.US')"),
        (_, ColumnType::Date) => format!("to_char({col}, 'YYYY-MM-DD')"),
        // `concat` prints through the type's output function: a char(n)
        // keeps its padding, as the row-by-row read sees it.
        (_, ColumnType::Text) => format!("concat({col})"),
        _ => format!("{col}::text"),
    };
    match d {
        // One explicit collation for every piece, so CONCAT never mixes
        // collations, and UTF-8 whatever the column's character set.
        Dialect::MySql => {
            let t = format!("CONVERT({text} USING utf8mb4) COLLATE utf8mb4_bin");
            format!(
                "CASE WHEN {col} IS NULL THEN '~' ELSE COALESCE(CONCAT(CHAR_LENGTH({t}), ':', {t}), '!') END"
            )
        }
        _ => format!(
            "CASE WHEN {col} IS NULL THEN '~' ELSE COALESCE(char_length({text})::text || ':' || {text}, '!') END"
        ),
    }
}

/// `SELECT count, high sum, low sum FROM (SELECT md5(row) AS h FROM from`;
/// the caller appends the WHERE and `) AS _tern_h`.
fn sum_sql(d: Dialect, pieces: &[String], from: &str) -> String {
    match d {
        Dialect::MySql => {
            let half = |at: usize| {
                format!(
                    "CAST(COALESCE(SUM(CAST(CONV(SUBSTRING(h, {at}, 15), 16, 10) AS UNSIGNED)), 0) AS CHAR)"
                )
            };
            format!(
                "SELECT COUNT(*), {}, {} FROM (SELECT MD5(CONCAT({})) AS h FROM {from}",
                half(1),
                half(16),
                pieces.join(", ")
            )
        }
        _ => {
            let half = |at: usize| {
                format!("COALESCE(sum(('x' || substr(h, {at}, 15))::bit(60)::bigint), 0)::text")
            };
            format!(
                "SELECT count(*), {}, {} FROM (SELECT md5({}) AS h FROM {from}",
                half(1),
                half(16),
                pieces.join(" || ")
            )
        }
    }
}

fn sum_of(rows: Vec<Vec<Value>>, what: &str) -> Result<Sum> {
    let text = |v: &Value| match v {
        Value::Text(s) => Some(s.clone()),
        Value::Bytes(b) => String::from_utf8(b.clone()).ok(),
        Value::Int(i) => Some(i.to_string()),
        Value::Decimal(d) => Some(d.to_string()),
        _ => None,
    };
    let bad = || EngineError::Apply {
        what: what.to_string(),
        message: "the checksum query returned an unexpected row".into(),
    };
    let row = rows.first().ok_or_else(bad)?;
    let (Some(Value::Int(n)), Some(high), Some(low)) = (
        row.first(),
        row.get(1).and_then(text),
        row.get(2).and_then(text),
    ) else {
        return Err(bad());
    };
    Ok(Sum {
        rows: u64::try_from(*n).map_err(|_| bad())?,
        high,
        low,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_mark_null_and_length_prefix_the_text() {
        let p = piece(
            Dialect::Postgres,
            "\"b\"",
            ColumnType::Text,
            ColumnType::Text,
        );
        assert_eq!(
            p,
            "CASE WHEN \"b\" IS NULL THEN '~' ELSE COALESCE(char_length(concat(\"b\"))::text || ':' || concat(\"b\"), '!') END"
        );
        let m = piece(Dialect::MySql, "`f`", ColumnType::Int, ColumnType::Bool);
        assert_eq!(
            m,
            "CASE WHEN `f` IS NULL THEN '~' ELSE COALESCE(CONCAT(CHAR_LENGTH(CONVERT(CASE WHEN `f` <> 0 THEN '1' ELSE '0' END USING utf8mb4) COLLATE utf8mb4_bin), ':', CONVERT(CASE WHEN `f` <> 0 THEN '1' ELSE '0' END USING utf8mb4) COLLATE utf8mb4_bin), '!') END"
        );
    }

    #[test]
    fn timestamps_keep_microseconds_on_both_sides() {
        let p = piece(
            Dialect::Postgres,
            "c",
            ColumnType::Timestamp,
            ColumnType::Timestamp,
        );
        assert!(p.contains("HH24:MI:SS.US"), "{p}");
        let m = piece(
            Dialect::MySql,
            "c",
            ColumnType::Timestamp,
            ColumnType::Timestamp,
        );
        assert!(m.contains("%H:%i:%s.%f"), "{m}");
    }
}
