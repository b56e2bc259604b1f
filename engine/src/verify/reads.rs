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
        let (_, rows) = self
            .target
            .fetch(
                &format!("{}{where_}", self.select),
                params,
                &format!("read {} target rows to verify", self.table),
            )
            .await?;
        Ok(rows)
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
        self.expected(rows)
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
        for batch in target_keys.chunks(KEYS_PER_BATCH) {
            let (sql, params) = keys_where(d, &self.shape, batch);
            let (_, rows) = self
                .target
                .fetch(&format!("{}{sql}", self.select), &params, &ctx)
                .await?;
            for r in rows {
                if seen.insert(self.key_id(&r)) {
                    out.push(r);
                }
            }
        }
        if self.shape.source_key.is_some() {
            for batch in source_keys.chunks(KEYS_PER_BATCH) {
                let marks: Vec<String> = (1..=batch.len()).map(|i| d.placeholder(i)).collect();
                let params: Vec<Value> = batch.iter().map(|s| Value::Text(s.clone())).collect();
                let (_, rows) = self
                    .target
                    .fetch(
                        &format!(
                            "{} WHERE {} IN ({})",
                            self.select,
                            d.quote(SOURCE_KEY_COLUMN),
                            marks.join(", ")
                        ),
                        &params,
                        &ctx,
                    )
                    .await?;
                for r in rows {
                    if seen.insert(self.key_id(&r)) {
                        out.push(r);
                    }
                }
            }
        }
        Ok(out)
    }

    /// The expected main-table rows of source rows (the bulk load's transform).
    pub(super) fn expected(&self, rows: Vec<Vec<Value>>) -> Result<Vec<Vec<Value>>> {
        let mut out = self.pipeline.apply(rows)?;
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
    match after {
        Some(a) => conds.push(tuple_cmp(d, cols, ">", a, &mut params, cast)),
        None => {
            if let Some(lo) = &range.lo {
                params.push(cast(lo, 0));
                conds.push(format!("{} >= {}", cols[0], d.placeholder(params.len())));
            }
        }
    }
    match upto {
        Some(u) => conds.push(tuple_cmp(d, cols, "<=", u, &mut params, cast)),
        None => {
            if let Some(hi) = &range.hi {
                params.push(cast(hi, 0));
                conds.push(format!("{} < {}", cols[0], d.placeholder(params.len())));
            }
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

/// ` WHERE key IN (…)` (one column) or an OR of ANDs, with parameters.
fn keys_where(d: Dialect, shape: &TableShape, keys: &[Vec<Value>]) -> (String, Vec<Value>) {
    let cast = |v: &Value, col: usize| match shape.types.get(col).copied().flatten() {
        Some(t) => v.clone().cast(t).unwrap_or_else(|_| v.clone()),
        None => v.clone(),
    };
    if let [col] = shape.key[..] {
        let params: Vec<Value> = keys
            .iter()
            .filter_map(|k| k.first().map(|v| cast(v, col)))
            .collect();
        let marks: Vec<String> = (1..=params.len()).map(|i| d.placeholder(i)).collect();
        return (
            format!(
                " WHERE {} IN ({})",
                d.quote(&shape.columns[col]),
                marks.join(", ")
            ),
            params,
        );
    }
    let mut params = Vec::new();
    let mut ors = Vec::new();
    for k in keys {
        let parts: Vec<String> = shape
            .key
            .iter()
            .zip(k)
            .map(|(&c, v)| {
                params.push(cast(v, c));
                format!(
                    "{} = {}",
                    d.quote(&shape.columns[c]),
                    d.placeholder(params.len())
                )
            })
            .collect();
        ors.push(format!("({})", parts.join(" AND ")));
    }
    (format!(" WHERE {}", ors.join(" OR ")), params)
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
