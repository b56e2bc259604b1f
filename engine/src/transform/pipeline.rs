//! The whole transform of a table: built-in mapping, transformer chain,
//! dedupe, and the final cast of every value to its target column's type.

use std::sync::Arc;

use super::builtins::ColumnOp;
use super::lookups::Lookups;
use super::{Emitted, Record, TargetRow, Transformer, TransformerRegistry, dedupe};
use crate::connector::Connector;
use crate::connector::SOURCE_KEY_COLUMN;
use crate::error::{EngineError, Result};
use crate::expr::lookup::{LookupBatch, MAX_ROUNDS};
use crate::spec::{Keep, Spec, TableSpec};
use crate::value::{ColumnType, Value, render_key, source_key_text};

/// A column of the source relation as the database describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceColumn {
    pub name: String,
    /// `None` when the database does not say (SQLite expressions) or the
    /// type is not one the engine maps.
    pub ty: Option<ColumnType>,
}

impl SourceColumn {
    /// The names of `columns`, comma-separated, for messages that list what
    /// a table has.
    pub fn list(columns: &[SourceColumn]) -> String {
        columns
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A target table as the pipeline fills it: the spec's columns in order, with
/// the types the target table actually has, then, for a table with a source
/// whose key is not a plain copy of the source key, the hidden
/// [`SOURCE_KEY_COLUMN`] (the source key of the record that wrote the row,
/// which is how the relay finds the rows of a deleted record; see
/// [`TableSpec::key_from_source_key`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TableShape {
    pub name: String,
    pub columns: Vec<String>,
    /// Target column types; `None` leaves values as they come.
    pub types: Vec<Option<ColumnType>>,
    /// Indexes of the target key columns.
    pub key: Vec<usize>,
    /// Indexes of the dedupe key columns and which copy to keep.
    pub dedupe: Option<(Vec<usize>, Keep)>,
    /// Index of the hidden source key column (last), for a table with a
    /// source that keeps it.
    pub source_key: Option<usize>,
    /// For a table without the hidden column whose key is a plain copy of
    /// the source key: where each target key column is in the source key
    /// ([`TableSpec::key_from_source_key`]). Rows are found by the target key.
    pub key_from_source: Option<Vec<usize>>,
}

impl TableShape {
    /// The shape of a spec table with the given types of its spec columns,
    /// with the hidden source key column as the spec decides
    /// ([`TableShape::with_source_key_column`] to say what the target has).
    pub fn new(table: &TableSpec, types: Vec<Option<ColumnType>>) -> TableShape {
        let keeps = table.source.is_some() && table.key_from_source_key().is_none();
        TableShape::with_source_key_column(table, types, keeps)
    }

    /// The shape of a spec table whose target has the hidden source key
    /// column or not (a target created before plain-copy keys went without
    /// it keeps it, and keeps using it).
    pub fn with_source_key_column(
        table: &TableSpec,
        mut types: Vec<Option<ColumnType>>,
        keeps: bool,
    ) -> TableShape {
        let mut columns: Vec<String> = table.columns.iter().map(|c| c.name.clone()).collect();
        let pos = |name: &String| columns.iter().position(|c| c == name).unwrap_or(0);
        let key = table.key.iter().map(pos).collect();
        let dedupe = table
            .dedupe
            .as_ref()
            .map(|d| (d.key.iter().map(pos).collect(), d.keep));
        types.truncate(columns.len());
        let source_key = (table.source.is_some() && keeps).then(|| {
            columns.push(SOURCE_KEY_COLUMN.to_string());
            types.push(Some(ColumnType::Text));
            columns.len() - 1
        });
        let key_from_source = match source_key {
            Some(_) => None,
            None => table.key_from_source_key(),
        };
        TableShape {
            key,
            key_from_source,
            dedupe,
            name: table.name.clone(),
            columns,
            types,
            source_key,
        }
    }

    pub fn index(&self, column: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == column)
    }

    /// The target key of the rows a source key wrote, for a table found by
    /// its key ([`TableShape::key_from_source`]): the source key's values in
    /// target key order, cast to the key columns' types as the pipeline
    /// casts them. `None` for a table found by its source key column.
    pub fn target_key_of(&self, source_key: &[Value]) -> Option<Vec<Value>> {
        let from = self.key_from_source.as_ref()?;
        Some(
            from.iter()
                .zip(&self.key)
                .map(|(&j, &i)| {
                    let v = source_key.get(j).cloned().unwrap_or(Value::Null);
                    match self.types.get(i).copied().flatten() {
                        Some(t) if !v.is_null() && v.column_type() != Some(t) => {
                            v.clone().cast(t).unwrap_or(v)
                        }
                        _ => v,
                    }
                })
                .collect(),
        )
    }

    /// The key values of a row of this table.
    pub fn key_of<'a>(&self, row: &'a [Value]) -> Vec<&'a Value> {
        self.key.iter().map(|&i| &row[i]).collect()
    }

    /// Casts every value to its column's type; `Err` names the column.
    fn finish(&self, row: &mut [Value]) -> std::result::Result<(), String> {
        for (i, v) in row.iter_mut().enumerate() {
            if let Some(t) = self.types[i]
                && !v.is_null()
                && v.column_type() != Some(t)
            {
                let taken = std::mem::replace(v, Value::Null);
                *v = taken
                    .cast(t)
                    .map_err(|e| format!("column {}: {e}", self.columns[i]))?;
            }
        }
        Ok(())
    }
}

/// Rows for one target table.
#[derive(Debug, Clone)]
pub struct TableRows {
    pub shape: Arc<TableShape>,
    pub rows: Vec<Vec<Value>>,
}

/// The transformed rows of one chunk, per target table (in the order of
/// [`Pipeline::shapes`]; tables nothing was emitted for have no rows).
#[derive(Debug, Clone)]
pub struct Output {
    pub tables: Vec<TableRows>,
}

impl Output {
    pub fn rows(&self) -> usize {
        self.tables.iter().map(|t| t.rows.len()).sum()
    }

    pub fn table(&self, name: &str) -> Option<&TableRows> {
        self.tables.iter().find(|t| t.shape.name == name)
    }
}

/// The compiled transform of one spec table.
pub struct Pipeline {
    table: String,
    main: usize,
    shapes: Vec<Arc<TableShape>>,
    ops: Vec<ColumnOp>,
    chain: Vec<(String, Arc<dyn Transformer>)>,
    source_columns: Vec<String>,
    source_key: Vec<usize>,
    /// Where `lookup(…)` expressions read, once given ([`Pipeline::with_source`]).
    lookups: Option<Arc<Lookups>>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("table", &self.table)
            .field(
                "chain",
                &self.chain.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Pipeline {
    /// Compiles `table`'s mapping against the source's columns. `shapes` are
    /// all target tables of the spec (transformers may emit rows for any).
    /// An unknown source column or transformer is an error naming the spec line.
    pub fn compile(
        spec: &Spec,
        table: &TableSpec,
        source: &[SourceColumn],
        shapes: Vec<Arc<TableShape>>,
        registry: &TransformerRegistry,
    ) -> Result<Pipeline> {
        let names: Vec<String> = source.iter().map(|c| c.name.clone()).collect();
        let mut ops = compile_ops(spec, table, &names)?;
        let Some(src) = &table.source else {
            return Err(spec.error_at(
                table.line,
                &table.field(),
                "the table has no source to load",
            ));
        };
        let missing = |col: &String, what: &str| {
            spec.error_at(
                src.line,
                &format!("{}.source.{what}", table.field()),
                format!(
                    "source column `{col}` does not exist in the source (its columns: {})",
                    names.join(", ")
                ),
            )
        };
        let source_key = src
            .key
            .iter()
            .map(|k| {
                names
                    .iter()
                    .position(|c| c == k)
                    .ok_or_else(|| missing(k, "key"))
            })
            .collect::<Result<Vec<_>>>()?;
        if !names.contains(&src.bucket) {
            return Err(missing(&src.bucket, "bucket"));
        }
        let mut chain = Vec::new();
        for name in &table.transformers {
            let t = registry.get(name).ok_or_else(|| {
                spec.error_at(
                    table.line,
                    &format!("{}.transformers", table.field()),
                    format!(
                        "no transformer `{name}` is registered (registered: {})",
                        registry.names().join(", ")
                    ),
                )
            })?;
            chain.push((name.clone(), t));
        }
        // Values are moved out of the record, not cloned, when nothing reads
        // them again: no transformer, read once, not part of the key (errors
        // quote the key).
        if chain.is_empty() {
            let mut reads = vec![0usize; names.len()];
            for op in &ops {
                for i in op.reads() {
                    reads[i] += 1;
                }
            }
            for op in &mut ops {
                if let [i] = op.reads()[..]
                    && reads[i] == 1
                    && !source_key.contains(&i)
                {
                    op.allow_take();
                }
            }
        }
        let main = shapes
            .iter()
            .position(|s| s.name == table.name)
            .ok_or_else(|| EngineError::schema(&table.name, "no target shape for the table"))?;
        Ok(Pipeline {
            table: table.name.clone(),
            main,
            shapes,
            ops,
            chain,
            source_columns: names,
            source_key,
            lookups: None,
        })
    }

    /// Gives the pipeline the source its `lookup(…)` expressions read.
    pub fn with_source(mut self, source: &Connector) -> Pipeline {
        if self.ops.iter().any(ColumnOp::looks_up) {
            self.lookups = Some(Arc::new(Lookups::new(source.clone())));
        }
        self
    }

    /// [`Pipeline::apply`], with the chunk's `lookup(…)` answers read from
    /// the source first (in rounds, for lookups whose key is another
    /// lookup's answer; see `expr/lookup.rs`). What every engine calls.
    pub async fn transform(&self, rows: Vec<Vec<Value>>) -> Result<Output> {
        let Some(lookups) = &self.lookups else {
            return self.apply(rows);
        };
        let asking: Vec<&ColumnOp> = self.ops.iter().filter(|o| o.looks_up()).collect();
        let mut batch = LookupBatch::default();
        for _ in 0..MAX_ROUNDS {
            batch.run(true, || {
                for row in &rows {
                    for op in &asking {
                        op.ask_lookups(row);
                    }
                }
            });
            if !lookups.fill(&mut batch).await? {
                break;
            }
        }
        batch.run(false, || self.apply(rows))
    }

    /// The types the mapping produces from the source types, for creating a
    /// target table that does not exist yet.
    pub fn inferred_types(
        spec: &Spec,
        table: &TableSpec,
        source: &[SourceColumn],
    ) -> Result<Vec<Option<ColumnType>>> {
        let names: Vec<String> = source.iter().map(|c| c.name.clone()).collect();
        let types: Vec<Option<ColumnType>> = source.iter().map(|c| c.ty).collect();
        Ok(compile_ops(spec, table, &names)?
            .iter()
            .map(|op| op.inferred_type(&types))
            .collect())
    }

    pub fn shapes(&self) -> &[Arc<TableShape>] {
        &self.shapes
    }

    /// The shape of the pipeline's own table.
    pub fn shape(&self) -> &Arc<TableShape> {
        &self.shapes[self.main]
    }

    pub fn source_columns(&self) -> &[String] {
        &self.source_columns
    }

    /// The source key of a source row, rendered for messages.
    pub fn render_source_key(&self, row: &[Value]) -> String {
        let key: Vec<Value> = self.source_key.iter().map(|&i| row[i].clone()).collect();
        render_key(&key)
    }

    /// Transforms a chunk of source rows (in source key order) into target
    /// rows: mapping, chain, final cast, then dedupe. A target key that two
    /// rows share without a deduper is an error naming the key.
    pub fn apply(&self, rows: Vec<Vec<Value>>) -> Result<Output> {
        let mut out: Vec<TableRows> = self
            .shapes
            .iter()
            .map(|s| TableRows {
                shape: s.clone(),
                rows: Vec::new(),
            })
            .collect();
        out[self.main].rows.reserve(rows.len());
        let main_shape = &self.shapes[self.main];
        for mut row in rows {
            let mut mapped = Vec::with_capacity(self.ops.len() + 1);
            for op in &self.ops {
                match op.apply(&mut row) {
                    Ok(v) => mapped.push(v),
                    Err(e) => return Err(self.row_error(&row, format!("column {}: {e}", op.name))),
                }
            }
            let source_key = main_shape.source_key.map(|_| {
                let key: Vec<Value> = self.source_key.iter().map(|&i| row[i].clone()).collect();
                Value::Text(source_key_text(&key))
            });
            if let Some(k) = &source_key {
                mapped.push(k.clone());
            }
            if self.chain.is_empty() {
                if let Err(e) = main_shape.finish(&mut mapped) {
                    return Err(self.row_error(&row, e));
                }
                out[self.main].rows.push(mapped);
                continue;
            }
            let record = Record {
                columns: &self.source_columns,
                values: &row,
            };
            let mut emitted = Emitted::new(
                &self.shapes,
                vec![TargetRow::new(main_shape.clone(), mapped)],
            );
            for (name, t) in &self.chain {
                t.transform(&record, &mut emitted)
                    .map_err(|e| self.row_error(&row, format!("transformer {name}: {e}")))?;
            }
            for target_row in emitted.rows {
                let (shape, mut values) = target_row.into_parts();
                // Every row of this table emitted for the record belongs to it.
                if let (true, Some(i), Some(k)) = (
                    Arc::ptr_eq(&shape, main_shape),
                    shape.source_key,
                    &source_key,
                ) && values[i].is_null()
                {
                    values[i] = k.clone();
                }
                shape
                    .finish(&mut values)
                    .map_err(|e| self.row_error(&row, format!("{}: {e}", shape.name)))?;
                let i = self
                    .shapes
                    .iter()
                    .position(|s| Arc::ptr_eq(s, &shape))
                    .unwrap_or(self.main);
                out[i].rows.push(values);
            }
        }
        for t in &mut out {
            let rows = std::mem::take(&mut t.rows);
            t.rows = match &t.shape.dedupe {
                Some((key, keep)) => dedupe::collapse(rows, key, *keep),
                None => {
                    if let Some(dup) = dedupe::first_duplicate(&rows, &t.shape.key) {
                        let key: Vec<Value> =
                            t.shape.key_of(&rows[dup]).into_iter().cloned().collect();
                        return Err(EngineError::Row {
                            table: t.shape.name.clone(),
                            key: render_key(&key),
                            message: format!(
                                "two source rows map to this target key ({}); the key is not unique \
                                 (declare [tables.dedupe] if the source repeats rows on purpose)",
                                t.shape
                                    .key
                                    .iter()
                                    .map(|&i| t.shape.columns[i].as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        });
                    }
                    rows
                }
            };
        }
        Ok(Output { tables: out })
    }

    fn row_error(&self, row: &[Value], message: String) -> EngineError {
        EngineError::Row {
            table: self.table.clone(),
            key: self.render_source_key(row),
            message,
        }
    }
}

fn compile_ops(spec: &Spec, table: &TableSpec, names: &[String]) -> Result<Vec<ColumnOp>> {
    table
        .columns
        .iter()
        .map(|c| {
            ColumnOp::compile(c, names).map_err(|unknown| {
                spec.error_at(
                    c.line,
                    &format!("{}.columns.{}", table.field(), c.name),
                    format!(
                        "source column `{unknown}` does not exist in the source (its columns: {})",
                        names.join(", ")
                    ),
                )
            })
        })
        .collect()
}
