//! The key-ordered chunk iterator: reads a bucket's rows of a table's source
//! in (bucket column, key) order, `chunk_rows` at a time, with keyset
//! pagination (`WHERE (bucket, key) > last ORDER BY … LIMIT n`, never OFFSET),
//! so each chunk costs the same however deep into the table it is and memory
//! holds one chunk. The source should have an index on (bucket column, key…).
//!
//! It is usable on its own: verification streams the same chunks through the
//! same [`crate::transform::Pipeline`] and compares them with the target.

use serde::{Deserialize, Serialize};

use crate::connector::{Connector, Dialect};
use crate::error::{EngineError, Result};
use crate::spec::{Relation, TableSpec};
use crate::transform::SourceColumn;
use crate::value::{Value, render_key};

/// A half-open range `[lo, hi)` of the bucket column; `None` is unbounded,
/// so the first and last buckets also take rows inserted after planning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyRange {
    pub lo: Option<Value>,
    pub hi: Option<Value>,
}

impl KeyRange {
    pub fn all() -> KeyRange {
        KeyRange { lo: None, hi: None }
    }

    /// Whether a bucket column value falls in the range.
    pub fn contains(&self, v: &Value) -> bool {
        use std::cmp::Ordering::*;
        let above_lo = self
            .lo
            .as_ref()
            .is_none_or(|lo| matches!(v.compare(lo), Some(Greater | Equal)));
        let below_hi = self
            .hi
            .as_ref()
            .is_none_or(|hi| matches!(v.compare(hi), Some(Less)));
        above_lo && below_hi
    }
}

impl std::fmt::Display for KeyRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lo = self.lo.as_ref().map_or("-inf".to_string(), Value::preview);
        let hi = self.hi.as_ref().map_or("+inf".to_string(), Value::preview);
        write!(f, "[{lo}, {hi})")
    }
}

/// A time window of a source column, `[from, to)`: what a window catch-up
/// re-copies (rows whose `updated_at` fell in it).
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// A column of the table's source (e.g. `updated_at`).
    pub column: String,
    pub from: Value,
    pub to: Value,
}

/// How to read a table's source: the relation, its columns, the order.
#[derive(Debug, Clone)]
pub struct SourceQuery {
    pub table: String,
    dialect: Dialect,
    /// `"t" AS _tern_src` or `(SELECT …) AS _tern_src`.
    from: String,
    /// The source table, when the source is one (not a query).
    pub relation_table: Option<String>,
    pub columns: Vec<SourceColumn>,
    /// Bucket column then key (see [`crate::spec::SourceSpec::order_columns`]).
    pub order: Vec<String>,
    order_idx: Vec<usize>,
    pub bucket: String,
    pub key: Vec<String>,
    key_idx: Vec<usize>,
}

impl SourceQuery {
    /// Describes the source of `table`. Unknown key or bucket columns are
    /// reported by [`crate::transform::Pipeline::compile`] with their spec line.
    pub async fn prepare(source: &Connector, table: &TableSpec) -> Result<SourceQuery> {
        let Some(src) = &table.source else {
            return Err(EngineError::schema(&table.name, "the table has no source"));
        };
        let d = source.dialect();
        let relation_table = match &src.relation {
            Relation::Table(t) => Some(t.clone()),
            Relation::Query(_) => None,
        };
        let from = match &src.relation {
            Relation::Table(t) => {
                if source.table_columns(t).await?.is_none() {
                    return Err(EngineError::schema(
                        &table.name,
                        format!("source table {t} does not exist in {}", source.url()),
                    ));
                }
                format!("{} AS _tern_src", d.quote(t))
            }
            Relation::Query(q) => format!("({}) AS _tern_src", q.trim().trim_end_matches(';')),
        };
        let columns = source.describe(&format!("SELECT * FROM {from}")).await?;
        let pos = |c: &String| {
            columns
                .iter()
                .position(|s| &s.name == c)
                .unwrap_or(usize::MAX)
        };
        let order = src.order_columns();
        Ok(SourceQuery {
            table: table.name.clone(),
            dialect: d,
            order_idx: order.iter().map(pos).collect(),
            key_idx: src.key.iter().map(pos).collect(),
            from,
            relation_table,
            columns,
            order,
            bucket: src.bucket.clone(),
            key: src.key.clone(),
        })
    }

    /// The FROM clause, for queries built elsewhere (planning, counting).
    pub fn from_clause(&self) -> &str {
        &self.from
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The SELECT of one chunk and its parameters.
    fn chunk_sql(
        &self,
        range: &KeyRange,
        after: Option<&[Value]>,
        limit: usize,
        window: Option<&(String, Value, Value)>,
    ) -> (String, Vec<Value>) {
        let d = self.dialect;
        let mut params = Vec::new();
        let mut conds = Vec::new();
        let ph = |v: &Value, params: &mut Vec<Value>| {
            params.push(v.clone());
            d.placeholder(params.len())
        };
        let b = d.quote(&self.bucket);
        if let Some(lo) = &range.lo {
            conds.push(format!("{b} >= {}", ph(lo, &mut params)));
        }
        if let Some(hi) = &range.hi {
            conds.push(format!("{b} < {}", ph(hi, &mut params)));
        }
        if let Some((column, from, to)) = window {
            let c = d.quote(column);
            conds.push(format!("{c} >= {}", ph(from, &mut params)));
            conds.push(format!("{c} < {}", ph(to, &mut params)));
        }
        if let Some(after) = after {
            let cols: Vec<String> = self.order.iter().map(|c| d.quote(c)).collect();
            if d == Dialect::MySql {
                // Expanded form with a leading `>=` on the first column, which
                // MySQL/MariaDB turn into an index range.
                conds.push(format!("{} >= {}", cols[0], ph(&after[0], &mut params)));
                let last = cols.len() - 1;
                let mut expr = String::new();
                for i in 0..last {
                    let gt = ph(&after[i], &mut params);
                    let eq = ph(&after[i], &mut params);
                    expr.push_str(&format!("({c} > {gt} OR ({c} = {eq} AND ", c = cols[i]));
                }
                expr.push_str(&format!(
                    "{} > {}",
                    cols[last],
                    ph(&after[last], &mut params)
                ));
                expr.push_str(&"))".repeat(last));
                conds.push(expr);
            } else {
                let marks: Vec<String> = after.iter().map(|v| ph(v, &mut params)).collect();
                conds.push(format!("({}) > ({})", cols.join(", "), marks.join(", ")));
            }
        }
        let where_ = if conds.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conds.join(" AND "))
        };
        let order: Vec<String> = self.order.iter().map(|c| d.quote(c)).collect();
        (
            format!(
                "SELECT * FROM {}{where_} ORDER BY {} LIMIT {limit}",
                self.from,
                order.join(", ")
            ),
            params,
        )
    }

    /// The types of the source key columns, where the database tells them.
    pub fn key_types(&self) -> Vec<Option<crate::value::ColumnType>> {
        self.key_idx
            .iter()
            .map(|&i| self.columns.get(i).and_then(|c| c.ty))
            .collect()
    }

    /// The index of the bucket column in a source row.
    pub fn bucket_index(&self) -> Option<usize> {
        self.columns.iter().position(|c| c.name == self.bucket)
    }

    /// The SELECT of the source rows with the given keys, and its parameters.
    pub(crate) fn keys_sql(&self, keys: &[Vec<Value>]) -> (String, Vec<Value>) {
        let d = self.dialect;
        let cols: Vec<String> = self.key.iter().map(|c| d.quote(c)).collect();
        let mut params = Vec::with_capacity(keys.len() * cols.len());
        let cond = d.keys_in(&cols, keys, &mut params);
        (format!("SELECT * FROM {} WHERE {cond}", self.from), params)
    }

    /// The order position (bucket column, key) of a source row.
    pub fn position_of(&self, row: &[Value]) -> Vec<Value> {
        self.order_idx.iter().map(|&i| row[i].clone()).collect()
    }

    /// The source key of a source row.
    pub fn key_of(&self, row: &[Value]) -> Vec<Value> {
        self.key_idx.iter().map(|&i| row[i].clone()).collect()
    }

    fn same_position(&self, a: &[Value], b: &[Value]) -> bool {
        self.order_idx.iter().all(|&i| a[i] == b[i])
    }
}

/// One chunk of source rows.
#[derive(Debug, Clone)]
pub struct Chunk {
    /// The source clock (µs) read just before the chunk's SELECT.
    pub version: i64,
    pub rows: Vec<Vec<Value>>,
    /// Position (bucket column, key) of the first and last row.
    pub first: Option<Vec<Value>>,
    pub last: Option<Vec<Value>>,
    /// No rows of the range follow this chunk.
    pub end: bool,
}

impl Chunk {
    /// The chunk's key range for messages: `(1, 7)..(1, 90)`.
    pub fn describe_keys(&self) -> String {
        match (&self.first, &self.last) {
            (Some(a), Some(b)) => format!("{}..{}", render_key(a), render_key(b)),
            _ => "(none)".to_string(),
        }
    }
}

/// Reads a range of a table's source chunk by chunk.
#[derive(Debug)]
pub struct ChunkReader {
    source: Connector,
    query: std::sync::Arc<SourceQuery>,
    range: KeyRange,
    after: Option<Vec<Value>>,
    chunk_rows: usize,
    done: bool,
    bucket: usize,
    /// Only rows whose column is in `[from, to)` (a window catch-up).
    window: Option<(String, Value, Value)>,
}

impl ChunkReader {
    /// A reader of `range` starting after position `after` (a checkpoint),
    /// or at the start of the range. `bucket` only names it in errors.
    pub fn new(
        source: Connector,
        query: std::sync::Arc<SourceQuery>,
        range: KeyRange,
        after: Option<Vec<Value>>,
        chunk_rows: usize,
        bucket: usize,
    ) -> ChunkReader {
        ChunkReader {
            source,
            query,
            range,
            after,
            chunk_rows: chunk_rows.max(1),
            done: false,
            bucket,
            window: None,
        }
    }

    /// Reads only the rows whose `column` is in `[from, to)`.
    pub fn with_window(mut self, column: &str, from: Value, to: Value) -> ChunkReader {
        self.window = Some((column.to_string(), from, to));
        self
    }

    /// The position of the last row read.
    pub fn position(&self) -> Option<&[Value]> {
        self.after.as_deref()
    }

    /// The next chunk, `None` once the range is exhausted. A final chunk may
    /// be empty (with `end` set) so that callers can mark the range done.
    pub async fn next_chunk(&mut self) -> Result<Option<Chunk>> {
        if self.done {
            return Ok(None);
        }
        // The version is the source clock *before* the SELECT: the rows then
        // reflect a snapshot at least as new as their version. A relay or
        // catch-up write stamps the clock *after* its re-reads (see
        // `apply/mod.rs`), so one that read newer state than this chunk
        // carries a larger version and is never overwritten by it; stamping
        // this chunk after its read would let stale bulk data outrank it.
        let version = self.source.clock_micros().await?;
        let (sql, params) = self.query.chunk_sql(
            &self.range,
            self.after.as_deref(),
            self.chunk_rows + 1,
            self.window.as_ref(),
        );
        let range_text = match &self.after {
            Some(a) => format!("after {}", render_key(a)),
            None => format!("from the start of {}", self.range),
        };
        let (_, mut rows) = self
            .source
            .fetch(
                &sql,
                &params,
                &format!(
                    "read {} bucket {} {range_text}",
                    self.query.table, self.bucket
                ),
            )
            .await?;
        // One row more than a chunk is read to see whether the next chunk
        // would start with the same key: keyset pagination would skip it.
        let lookahead = if rows.len() > self.chunk_rows {
            rows.pop()
        } else {
            None
        };
        self.check_keys(&rows, lookahead.as_ref())?;
        let end = lookahead.is_none();
        self.done = end;
        let first = rows.first().map(|r| self.query.position_of(r));
        let last = rows.last().map(|r| self.query.position_of(r));
        if let Some(l) = &last {
            self.after = Some(l.clone());
        }
        Ok(Some(Chunk {
            version,
            rows,
            first,
            last,
            end,
        }))
    }

    fn check_keys(&self, rows: &[Vec<Value>], lookahead: Option<&Vec<Value>>) -> Result<()> {
        let q = &self.query;
        let dup = |row: &[Value]| EngineError::Row {
            table: q.table.clone(),
            key: render_key(&q.key_of(row)),
            message: format!(
                "the source key ({}) is not unique: at least two source rows have it",
                q.key.join(", ")
            ),
        };
        for row in rows.iter().chain(lookahead) {
            if let Some(i) = q.order_idx.iter().position(|&i| row[i].is_null()) {
                return Err(EngineError::Row {
                    table: q.table.clone(),
                    key: render_key(&q.key_of(row)),
                    message: format!(
                        "source column {} is NULL; key and bucket columns must not be",
                        q.order[i]
                    ),
                });
            }
        }
        for pair in rows.windows(2) {
            if q.same_position(&pair[0], &pair[1]) {
                return Err(dup(&pair[1]));
            }
        }
        if let (Some(last), Some(next)) = (rows.last(), lookahead)
            && q.same_position(last, next)
        {
            return Err(dup(next));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(dialect: Dialect, order: &[&str]) -> SourceQuery {
        SourceQuery {
            table: "t".into(),
            dialect,
            from: "\"t\" AS _tern_src".into(),
            relation_table: Some("t".into()),
            columns: vec![],
            order: order.iter().map(|s| s.to_string()).collect(),
            order_idx: vec![0, 1],
            bucket: order[0].into(),
            key: order[1..].iter().map(|s| s.to_string()).collect(),
            key_idx: vec![1],
        }
    }

    #[test]
    fn postgres_chunks_use_a_row_comparison_after_the_checkpoint() {
        let q = query(Dialect::Postgres, &["member_id", "id"]);
        let range = KeyRange {
            lo: Some(Value::Int(10)),
            hi: Some(Value::Int(20)),
        };
        let (sql, params) = q.chunk_sql(&range, Some(&[Value::Int(12), Value::Int(7)]), 101, None);
        assert_eq!(
            sql,
            "SELECT * FROM \"t\" AS _tern_src WHERE \"member_id\" >= $1 AND \"member_id\" < $2 \
             AND (\"member_id\", \"id\") > ($3, $4) ORDER BY \"member_id\", \"id\" LIMIT 101"
        );
        assert_eq!(
            params,
            [
                Value::Int(10),
                Value::Int(20),
                Value::Int(12),
                Value::Int(7)
            ]
        );
    }

    #[test]
    fn mysql_chunks_expand_the_row_comparison() {
        let mut q = query(Dialect::MySql, &["m", "id"]);
        q.from = "`t` AS _tern_src".into();
        let (sql, params) = q.chunk_sql(
            &KeyRange::all(),
            Some(&[Value::Int(1), Value::Int(2)]),
            5,
            None,
        );
        assert_eq!(
            sql,
            "SELECT * FROM `t` AS _tern_src WHERE `m` >= ? AND (`m` > ? OR (`m` = ? AND `id` > ?)) ORDER BY `m`, `id` LIMIT 5"
        );
        assert_eq!(
            params,
            [Value::Int(1), Value::Int(1), Value::Int(1), Value::Int(2)]
        );
    }

    #[test]
    fn ranges_are_half_open_and_unbounded_at_none() {
        let r = KeyRange {
            lo: Some(Value::Int(5)),
            hi: Some(Value::Int(9)),
        };
        assert!(r.contains(&Value::Int(5)));
        assert!(!r.contains(&Value::Int(9)));
        assert!(KeyRange::all().contains(&Value::Int(i64::MIN)));
    }
}
