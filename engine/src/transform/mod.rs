//! Turning source records into target rows.
//!
//! A source record (one row of the source table or query) goes through the
//! built-in column mapping of its table ([`builtins`]), then through the
//! table's chain of plug-in [`Transformer`]s, each of which sees the record and
//! the rows emitted so far and may change them or add rows for other target
//! tables (seed 001's composite messages). Per chunk, [`dedupe`] then collapses
//! rows that a denormalized source repeats. [`Pipeline`] runs all of it and is
//! usable on its own (verification streams source rows through it).

mod builtins;
mod dedupe;
mod lookups;
mod pipeline;
mod plugin;

use std::sync::Arc;

pub use crate::ids::{UUID5_SEPARATOR, uuid5, uuid5_namespace};
pub(crate) use builtins::ColumnOp;
pub use pipeline::{Output, Pipeline, SourceColumn, TableRows, TableShape};
pub use plugin::{Transformer, TransformerRegistry};

use crate::value::Value;

/// One source record as transformers see it.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub columns: &'a [String],
    pub values: &'a [Value],
}

impl<'a> Record<'a> {
    /// The value of a source column, `None` if the source has no such column.
    pub fn get(&self, column: &str) -> Option<&'a Value> {
        self.columns
            .iter()
            .position(|c| c == column)
            .map(|i| &self.values[i])
    }
}

/// A row for one target table, as emitted for one source record.
#[derive(Debug, Clone)]
pub struct TargetRow {
    shape: Arc<TableShape>,
    values: Vec<Value>,
}

impl TargetRow {
    pub(crate) fn new(shape: Arc<TableShape>, values: Vec<Value>) -> TargetRow {
        TargetRow { shape, values }
    }

    pub fn table(&self) -> &str {
        &self.shape.name
    }

    pub fn get(&self, column: &str) -> Option<&Value> {
        self.shape.index(column).map(|i| &self.values[i])
    }

    /// Sets a column; the value is cast to the column's type after the chain.
    pub fn set(&mut self, column: &str, value: Value) -> Result<(), String> {
        let i = self
            .shape
            .index(column)
            .ok_or_else(|| format!("target table {} has no column `{column}`", self.shape.name))?;
        self.values[i] = value;
        Ok(())
    }

    pub fn values(&self) -> &[Value] {
        &self.values
    }

    pub(crate) fn into_parts(self) -> (Arc<TableShape>, Vec<Value>) {
        (self.shape, self.values)
    }
}

/// The rows emitted so far for one source record; what a transformer changes.
#[derive(Debug)]
pub struct Emitted<'a> {
    shapes: &'a [Arc<TableShape>],
    pub rows: Vec<TargetRow>,
}

impl<'a> Emitted<'a> {
    pub(crate) fn new(shapes: &'a [Arc<TableShape>], rows: Vec<TargetRow>) -> Emitted<'a> {
        Emitted { shapes, rows }
    }

    /// A new row of `table` with every column NULL; push it to emit it.
    pub fn new_row(&self, table: &str) -> Result<TargetRow, String> {
        let shape = self
            .shapes
            .iter()
            .find(|s| s.name == table)
            .ok_or_else(|| format!("the spec declares no target table `{table}`"))?;
        Ok(TargetRow::new(
            shape.clone(),
            vec![Value::Null; shape.columns.len()],
        ))
    }

    pub fn push(&mut self, row: TargetRow) {
        self.rows.push(row);
    }

    /// The first emitted row of `table`, to change it.
    pub fn first_mut(&mut self, table: &str) -> Option<&mut TargetRow> {
        self.rows.iter_mut().find(|r| r.table() == table)
    }
}
