//! An inverse mapping made ready to run: checked against the two databases
//! (the target table's columns it reads, the source table and columns it
//! writes, with their types) and compiled into column operations, the
//! forward mapping's own ([`crate::transform`]), run on target rows.
//!
//! The link compiles every table once, on first use, and keeps the result:
//! a table that is not reversible keeps its reason.

use super::mapping::{InverseMapping, Reversibility, table_reversibility};
use crate::changelog::Image;
use crate::connector::Connector;
use crate::connector::unique_keys::is_unique_key;
use crate::error::Result;
use crate::spec::{ColumnSpec, TableSpec};
use crate::transform::{ColumnOp, SourceColumn};
use crate::value::{ColumnType, Value, render_key};

/// One table's inverse mapping, compiled.
#[derive(Debug, Clone)]
pub(crate) struct ReverseTable {
    pub mapping: InverseMapping,
    /// The target table's key columns, and their types.
    pub target_key: Vec<String>,
    pub target_key_types: Vec<Option<ColumnType>>,
    /// Target columns read for a row: the key first, then what the inverse reads.
    pub read_columns: Vec<String>,
    /// Target columns the target's changelog must carry: the key and what
    /// the source key and bucket column are computed from.
    pub captured: Vec<String>,
    /// One op per source column of `mapping.columns`, over `read_columns`.
    ops: Vec<ColumnOp>,
    /// The source type of each of `mapping.columns`.
    source_types: Vec<Option<ColumnType>>,
    /// Positions in `mapping.columns` of the source key columns, and of the
    /// bucket column.
    key_idx: Vec<usize>,
    bucket_idx: usize,
}

/// A source row computed from a target row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SourceRow {
    pub values: Vec<Value>,
}

impl ReverseTable {
    /// Compiles a table's inverse against the databases: `Ok(Err(reason))`
    /// when the table is not reversible (its mapping, or a column the
    /// databases do not have), `Err` when a database could not be read.
    pub(crate) async fn compile(
        t: &TableSpec,
        source: &Connector,
        target: &Connector,
    ) -> Result<std::result::Result<ReverseTable, String>> {
        let mapping = match table_reversibility(t) {
            Reversibility::Derived(m) | Reversibility::Declared(m) => m,
            Reversibility::No(why) => return Ok(Err(why)),
        };
        let Some(target_cols) = target.table_columns(&t.name).await? else {
            return Ok(Err(format!(
                "target table {} does not exist in {}: load it before switching",
                t.name,
                target.url()
            )));
        };
        let Some(source_cols) = source.table_columns(&mapping.source_table).await? else {
            return Ok(Err(format!(
                "source table {} does not exist in {}, so nothing can be written back to it",
                mapping.source_table,
                source.url()
            )));
        };
        // The reverse relay upserts old rows by the reverse key: without a
        // primary key or unique index on exactly those columns an upsert
        // would add a second row where it should replace one.
        let unique = source.unique_keys(&mapping.source_table).await?;
        if !is_unique_key(&unique, &mapping.source_key) {
            let known: Vec<String> = unique
                .iter()
                .map(|k| format!("({})", k.join(", ")))
                .collect();
            return Ok(Err(format!(
                "the reverse key ({}) is not unique in source table {}: the reverse relay writes old rows by it, so it needs a primary key or a unique index on exactly those columns (the table's unique keys: {}); add one, or name a unique key as `key` in the spec's [tables.reverse]",
                mapping.source_key.join(", "),
                mapping.source_table,
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )));
        }
        let mut read_columns: Vec<String> = t.key.clone();
        for c in &mapping.columns {
            for r in crate::spec::reads(c) {
                if !read_columns.contains(&r) {
                    read_columns.push(r);
                }
            }
        }
        for r in &read_columns {
            if !target_cols.iter().any(|c| &c.name == r) {
                return Ok(Err(format!(
                    "target table {} has no column {r} to map back from (its columns: {})",
                    t.name,
                    SourceColumn::list(&target_cols)
                )));
            }
        }
        let mut source_types = Vec::with_capacity(mapping.columns.len());
        for c in &mapping.columns {
            match source_cols.iter().find(|s| s.name == c.name) {
                Some(s) => source_types.push(s.ty),
                None => {
                    return Ok(Err(format!(
                        "source table {} has no column {} to write back to (its columns: {})",
                        mapping.source_table,
                        c.name,
                        SourceColumn::list(&source_cols)
                    )));
                }
            }
        }
        let mut ops = Vec::with_capacity(mapping.columns.len());
        for c in &mapping.columns {
            ops.push(ColumnOp::compile(c, &read_columns).map_err(|unknown| {
                crate::error::EngineError::schema(
                    &t.name,
                    format!("reverse column {} reads unknown column {unknown}", c.name),
                )
            })?);
        }
        let position = |name: &str| mapping.columns.iter().position(|c| c.name == name);
        let mut key_idx = Vec::with_capacity(mapping.source_key.len());
        for k in &mapping.source_key {
            match position(k) {
                Some(i) => key_idx.push(i),
                None => {
                    return Ok(Err(format!(
                        "source key column {k} of {} gets no value from the target",
                        mapping.source_table
                    )));
                }
            }
        }
        let Some(bucket_idx) = position(&mapping.bucket) else {
            return Ok(Err(format!(
                "the bucket column {} gets no value from the target",
                mapping.bucket
            )));
        };
        let mut captured = t.key.clone();
        for i in key_idx.iter().chain(std::iter::once(&bucket_idx)) {
            for r in crate::spec::reads(&mapping.columns[*i]) {
                if !captured.contains(&r) {
                    captured.push(r);
                }
            }
        }
        let target_key_types = t
            .key
            .iter()
            .map(|k| target_cols.iter().find(|c| &c.name == k).and_then(|c| c.ty))
            .collect();
        Ok(Ok(ReverseTable {
            target_key: t.key.clone(),
            target_key_types,
            read_columns,
            captured,
            ops,
            source_types,
            key_idx,
            bucket_idx,
            mapping,
        }))
    }

    /// The source columns written, in order.
    pub(crate) fn source_columns(&self) -> impl Iterator<Item = &ColumnSpec> {
        self.mapping.columns.iter()
    }

    /// The value of source column `i` from a target row (`read_columns`
    /// order), cast to the source column's type.
    fn value(&self, i: usize, target_row: &[Value]) -> std::result::Result<Value, String> {
        let mut scratch = target_row.to_vec();
        let v = self.ops[i]
            .apply(&mut scratch)
            .map_err(|m| format!("source column {}: {m}", self.mapping.columns[i].name))?;
        match self.source_types[i] {
            Some(ty) => v
                .cast(ty)
                .map_err(|m| format!("source column {}: {m}", self.mapping.columns[i].name)),
            None => Ok(v),
        }
    }

    /// The whole source row of a target row (`read_columns` order).
    pub(crate) fn source_row(
        &self,
        target_row: &[Value],
    ) -> std::result::Result<SourceRow, String> {
        let values = (0..self.ops.len())
            .map(|i| self.value(i, target_row))
            .collect::<std::result::Result<_, _>>()?;
        Ok(SourceRow { values })
    }

    pub(crate) fn key_of(&self, row: &SourceRow) -> Vec<Value> {
        self.key_idx
            .iter()
            .map(|i| row.values[*i].clone())
            .collect()
    }

    pub(crate) fn bucket_of<'a>(&self, row: &'a SourceRow) -> &'a Value {
        &row.values[self.bucket_idx]
    }

    /// The target key of a target row (`read_columns` order: the key leads).
    pub(crate) fn target_key_of(&self, target_row: &[Value]) -> Vec<Value> {
        target_row[..self.target_key.len()].to_vec()
    }

    /// From a changelog image of the target table: its target key, the
    /// source key it maps to and the source bucket column value. The image
    /// carries [`ReverseTable::captured`]; other columns read as NULL.
    pub(crate) fn keys_of_image(
        &self,
        image: &Image,
    ) -> std::result::Result<(Vec<Value>, Vec<Value>, Value), String> {
        let rec = image.record();
        let mut row = Vec::with_capacity(self.read_columns.len());
        for (i, c) in self.read_columns.iter().enumerate() {
            let v = rec.get(c).cloned();
            if v.is_none() && self.captured.contains(c) {
                return Err(format!(
                    "the change has no column {c}: change capture on the target was installed \
                     for another spec; install it again with this one"
                ));
            }
            let v = v.unwrap_or(Value::Null);
            // Key values are cast to the target key's types, so that keys
            // compare as the rows read from the table do.
            row.push(match self.target_key_types.get(i).copied().flatten() {
                Some(ty) if !v.is_null() => v.cast(ty)?,
                _ => v,
            });
        }
        let key = self.target_key_of(&row);
        let source_key = self
            .key_idx
            .iter()
            .map(|i| self.value(*i, &row))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|m| format!("target key {}: {m}", render_key(&key)))?;
        let bucket = self
            .value(self.bucket_idx, &row)
            .map_err(|m| format!("target key {}: {m}", render_key(&key)))?;
        Ok((key, source_key, bucket))
    }
}
