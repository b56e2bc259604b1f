//! How a verification reads rows: the expected rows of source rows through
//! the spec's transform, and the target rows of a key range or of a set of
//! keys (by target key and by `_tern_source_key`), with the SQL for key
//! ranges and key sets in every dialect.

use std::collections::HashSet;

use super::context::{Ctx, KEYS_PER_BATCH};
use crate::chunk::KeyRange;
use crate::connector::{Dialect, SOURCE_KEY_COLUMN};
use crate::error::Result;
use crate::transform::TableShape;
use crate::value::Value;

impl Ctx {
    /// The target key columns, quoted.
    pub(super) fn target_key_columns(&self) -> Vec<String> {
        let d = self.target.dialect();
        self.shape
            .key
            .iter()
            .map(|&i| d.quote(&self.shape.columns[i]))
            .collect()
    }

    /// A source key value as the target stores it.
    fn target_key_value(&self, v: &Value, i: usize) -> Value {
        match self.shape.types.get(self.shape.key[i]).copied().flatten() {
            Some(t) => v.clone().cast(t).unwrap_or_else(|_| v.clone()),
            None => v.clone(),
        }
    }

    /// Target rows in the key range `(after, upto]` (aligned mode), within the
    /// bucket range `range` on the first key column.
    pub(super) async fn target_range(
        &self,
        range: &KeyRange,
        after: Option<&[Value]>,
        upto: Option<&[Value]>,
    ) -> Result<Vec<Vec<Value>>> {
        let (where_, params) = range_where(
            self.target.dialect(),
            &self.target_key_columns(),
            range,
            after,
            upto,
            &|v, i| self.target_key_value(v, i),
        );
        self.target_rows(&where_, &params).await
    }

    /// Target rows matching a ` WHERE …`.
    pub(super) async fn target_rows(
        &self,
        where_: &str,
        params: &[Value],
    ) -> Result<Vec<Vec<Value>>> {
        let (_, mut rows) = self
            .target
            .fetch(
                &format!("{}{where_}", self.select),
                params,
                &format!("read {} target rows to verify", self.table),
            )
            .await?;
        self.as_target_types(&mut rows);
        Ok(rows)
    }

    /// Reads target values as their columns' types, so that values compare
    /// by what the target column means, on every pair of databases: SQLite
    /// stores a `BOOLEAN` as the integer 0 or 1 and a `DATETIME` as text,
    /// MySQL a `BOOLEAN` as `TINYINT(1)`; each reads back as its storage
    /// class, not as the `false` or timestamp the transform produced. A
    /// value that does not convert stays as read (and differs, noted `type`).
    pub(super) fn as_target_types(&self, rows: &mut [Vec<Value>]) {
        for row in rows {
            for (v, t) in row.iter_mut().zip(&self.shape.types) {
                if let Some(t) = t
                    && !v.is_null()
                    && v.column_type() != Some(*t)
                    && let Ok(cast) = v.clone().cast(*t)
                {
                    *v = cast;
                }
            }
        }
    }

    /// The expected rows of the source rows matching a ` WHERE …`, in key
    /// order, through the transform.
    pub(super) async fn source_rows(
        &self,
        where_: &str,
        params: &[Value],
    ) -> Result<Vec<Vec<Value>>> {
        let d = self.source.dialect();
        let keys: Vec<String> = self.query.key.iter().map(|c| d.quote(c)).collect();
        let (_, rows) = self
            .source
            .fetch(
                &format!(
                    "SELECT * FROM {}{where_} ORDER BY {}",
                    self.query.from_clause(),
                    keys.join(", ")
                ),
                params,
                &format!("read {} source rows to verify", self.table),
            )
            .await?;
        self.expected(rows).await
    }

    /// Target rows with the given target keys or written from the given
    /// source keys (`_tern_source_key`).
    pub(super) async fn target_lookup(
        &self,
        target_keys: &[Vec<Value>],
        source_keys: &[String],
    ) -> Result<Vec<Vec<Value>>> {
        let d = self.target.dialect();
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        let ctx = format!("look up {} target rows to verify", self.table);
        // The conditions to read by: target keys, then source keys (in the
        // hidden column, for rows whose target key moved).
        let mut conds: Vec<(String, Vec<Value>)> = target_keys
            .chunks(KEYS_PER_BATCH)
            .map(|batch| keys_where(d, &self.shape, batch))
            .collect();
        if self.shape.source_key.is_some() {
            for batch in source_keys.chunks(KEYS_PER_BATCH) {
                let keys: Vec<Vec<Value>> =
                    batch.iter().map(|s| vec![Value::Text(s.clone())]).collect();
                let mut params = Vec::with_capacity(keys.len());
                let cond = d.keys_in(&[d.quote(SOURCE_KEY_COLUMN)], &keys, &mut params);
                conds.push((format!(" WHERE {cond}"), params));
            }
        }
        for (cond, params) in conds {
            let (_, mut rows) = self
                .target
                .fetch(&format!("{}{cond}", self.select), &params, &ctx)
                .await?;
            self.as_target_types(&mut rows);
            for r in rows {
                if seen.insert(self.key_id(&r)) {
                    out.push(r);
                }
            }
        }
        Ok(out)
    }

    /// The expected main-table rows of source rows (the bulk load's transform).
    pub(super) async fn expected(&self, rows: Vec<Vec<Value>>) -> Result<Vec<Vec<Value>>> {
        let mut out = self.pipeline.transform(rows).await?;
        let i = out.tables.iter().position(|t| t.shape.name == self.table);
        Ok(i.map(|i| std::mem::take(&mut out.tables[i].rows))
            .unwrap_or_default())
    }
}

/// ` WHERE …` of the key range `(after, upto]` within the bucket range
/// `range` of the first key column (`cols`, quoted), with its parameters.
pub(super) fn range_where(
    d: Dialect,
    cols: &[String],
    range: &KeyRange,
    after: Option<&[Value]>,
    upto: Option<&[Value]>,
    cast: &dyn Fn(&Value, usize) -> Value,
) -> (String, Vec<Value>) {
    let mut params = Vec::new();
    let mut conds = Vec::new();
    // Each end: the position given (exclusive below, inclusive above), else
    // the bucket's bound (inclusive below, exclusive above).
    for (given, op, bound, bound_op) in
        [(after, ">", &range.lo, ">="), (upto, "<=", &range.hi, "<")]
    {
        match (given, bound) {
            (Some(p), _) => conds.push(tuple_cmp(d, cols, op, p, &mut params, cast)),
            (None, Some(b)) => {
                params.push(cast(b, 0));
                conds.push(format!(
                    "{} {bound_op} {}",
                    cols[0],
                    d.placeholder(params.len())
                ));
            }
            (None, None) => {}
        }
    }
    if conds.is_empty() {
        (String::new(), params)
    } else {
        (format!(" WHERE {}", conds.join(" AND ")), params)
    }
}

/// `(a, b) > (x, y)` expanded (works on every database and uses the index).
fn tuple_cmp(
    d: Dialect,
    cols: &[String],
    op: &str,
    vals: &[Value],
    params: &mut Vec<Value>,
    cast: &dyn Fn(&Value, usize) -> Value,
) -> String {
    let strict = if op == ">" { ">" } else { "<" };
    let last = cols.len() - 1;
    let mut expr = String::new();
    for i in 0..last {
        params.push(cast(&vals[i], i));
        let a = d.placeholder(params.len());
        params.push(cast(&vals[i], i));
        let b = d.placeholder(params.len());
        expr.push_str(&format!(
            "({c} {strict} {a} OR ({c} = {b} AND ",
            c = cols[i]
        ));
    }
    params.push(cast(&vals[last], last));
    expr.push_str(&format!(
        "{} {op} {}",
        cols[last],
        d.placeholder(params.len())
    ));
    expr.push_str(&"))".repeat(last));
    format!("({expr})")
}

/// ` WHERE key IN (…)`, the keys as the target stores them, with parameters.
fn keys_where(d: Dialect, shape: &TableShape, keys: &[Vec<Value>]) -> (String, Vec<Value>) {
    let cast = |v: &Value, col: usize| match shape.types.get(col).copied().flatten() {
        Some(t) => v.clone().cast(t).unwrap_or_else(|_| v.clone()),
        None => v.clone(),
    };
    let cols: Vec<String> = shape
        .key
        .iter()
        .map(|&c| d.quote(&shape.columns[c]))
        .collect();
    let typed: Vec<Vec<Value>> = keys
        .iter()
        .map(|k| shape.key.iter().zip(k).map(|(&c, v)| cast(v, c)).collect())
        .collect();
    let mut params = Vec::with_capacity(typed.len() * cols.len());
    let cond = d.keys_in(&cols, &typed, &mut params);
    (format!(" WHERE {cond}"), params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composite_ranges_expand_to_an_or_of_ands() {
        let mut params = Vec::new();
        let cols = vec!["\"a\"".to_string(), "\"b\"".to_string()];
        let sql = tuple_cmp(
            Dialect::Postgres,
            &cols,
            "<=",
            &[Value::Int(1), Value::Int(2)],
            &mut params,
            &|v, _| v.clone(),
        );
        assert_eq!(sql, "((\"a\" < $1 OR (\"a\" = $2 AND \"b\" <= $3)))");
        assert_eq!(params, [Value::Int(1), Value::Int(1), Value::Int(2)]);
    }
}
