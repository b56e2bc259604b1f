//! The reverse apply path: bringing target keys up to date in the source,
//! new → old. Like the forward path ([`crate::apply`]), it never applies the
//! logged values: it re-reads the *current* target rows of the changed keys,
//! maps each through the table's inverse mapping and, in **one source
//! transaction** opened with Tern's origin mark (so the source's capture
//! does not log it, [`crate::connector::origin`]):
//! 1. upserts the source rows of the rows still in the target whose bucket
//!    is admitted (switched), by the source key;
//! 2. deletes the source rows of source keys the changes touched that no
//!    current target row maps to any more (deleted, or moved to another key);
//! 3. runs the caller's statements (the reverse relay's position).
//!
//! Before that, rows the application inserted in the target get the hidden
//! source key column the forward path writes (`_tern_source_key`), in a
//! marked target transaction: once the bucket is rolled back, a delete in
//! the source finds its target row by that column. (A table whose key is a
//! plain copy of the source key has no such column: its rows are found by
//! their key.)
//!
//! Applying the same keys twice gives the same source: a retried batch is
//! harmless. The source table needs a unique key on the inverse mapping's
//! source key (its primary key, as a rule): the upsert is by it.

use std::collections::HashSet;

use super::compiled::ReverseTable;
use crate::apply::TableKeys;
use crate::connector::{Dialect, SOURCE_KEY_COLUMN, Statement};
use crate::error::{EngineError, Result};
use crate::link::Link;
use crate::value::{Value, identity, render_key, source_key_text};
use crate::writer::BatchWriter;

/// Target keys per read.
const KEYS_PER_READ: usize = 500;
/// Source rows per upsert statement.
const ROWS_PER_UPSERT: usize = 100;

/// What one reverse apply did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReverseApplyReport {
    /// Distinct target keys asked for.
    pub keys: u64,
    /// Source rows written (upserted).
    pub rows_written: u64,
    /// Source keys deleted: gone from the target. A key already gone when
    /// an earlier change of it is read is deleted then, and again (a no-op)
    /// when its own delete is read: both count.
    pub rows_deleted: u64,
    /// Target rows read but left out: their bucket is not switched.
    pub skipped: u64,
}

impl ReverseApplyReport {
    pub(crate) fn add(&mut self, o: &ReverseApplyReport) {
        self.keys += o.keys;
        self.rows_written += o.rows_written;
        self.rows_deleted += o.rows_deleted;
        self.skipped += o.skipped;
    }
}

/// Applies the batch's keys to the source on `writer` (a writer on the
/// source), writing only rows whose bucket `admit` accepts, then `after`,
/// in one transaction; `target_writer` fills the source key column of the
/// rows the application inserted in the target first.
pub(crate) async fn apply_to_source(
    link: &Link,
    writer: &mut BatchWriter,
    target_writer: &mut BatchWriter,
    keys: &[TableKeys],
    admit: &(dyn Fn(&str, &Value) -> bool + Sync),
    after: Vec<Statement>,
) -> Result<ReverseApplyReport> {
    let d = link.source().dialect();
    let mut report = ReverseApplyReport::default();
    let mut statements = Vec::new();
    let mut fills = Vec::new();
    let mut first_key = None;
    for tk in keys {
        let rt = link.reverse_table(&tk.table).await?;
        // A table found by its key has no source key column to fill.
        let keeps = link.table(&tk.table)?.pipeline.shape().source_key.is_some();
        let wanted = tk.distinct_keys();
        if let Some(k) = wanted.first().or(tk.source_keys.first()) {
            first_key.get_or_insert_with(|| format!("{} {}", tk.table, render_key(k)));
        }
        report.keys += wanted.len() as u64;
        let mut produced = HashSet::new();
        let mut rows = Vec::new();
        for batch in wanted.chunks(KEYS_PER_READ) {
            for target_row in read_target_rows(link, &rt, batch, keeps).await? {
                let row = rt.source_row(&target_row).map_err(|m| EngineError::Row {
                    table: tk.table.clone(),
                    key: render_key(&rt.target_key_of(&target_row)),
                    message: format!("cannot map the target row back to the source: {m}"),
                })?;
                let source_key = rt.key_of(&row);
                produced.insert(identity(&source_key));
                if admit(&tk.table, rt.bucket_of(&row)) {
                    if keeps && target_row.last().is_some_and(Value::is_null) {
                        fills.push(fill(
                            link.target().dialect(),
                            &rt,
                            &rt.target_key_of(&target_row),
                            &source_key,
                        ));
                    }
                    rows.push(row.values);
                } else {
                    report.skipped += 1;
                }
            }
        }
        report.rows_written += rows.len() as u64;
        for chunk in rows.chunks(ROWS_PER_UPSERT) {
            statements.push(upsert(d, &rt, chunk));
        }
        let gone: Vec<&Vec<Value>> = tk
            .source_keys
            .iter()
            .filter(|k| !produced.contains(&identity(k)))
            .collect();
        report.rows_deleted += gone.len() as u64;
        for k in gone {
            statements.push(delete(d, &rt, k));
        }
    }
    if !fills.is_empty() {
        let what = format!(
            "{} rows the application inserted in the target",
            fills.len()
        );
        target_writer
            .write_statements(&fills, what, "cannot record their source keys")
            .await?;
    }
    statements.extend(after);
    let what = format!(
        "{} target keys back to the source from {}",
        report.keys,
        first_key.unwrap_or_else(|| "(none)".into())
    );
    let refused = "the source refused the batch, nothing of it was committed";
    writer.write_statements(&statements, what, refused).await?;
    Ok(report)
}

/// The current target rows of some target keys, `read_columns` order, then
/// the row's source key column when the table `keeps` one.
async fn read_target_rows(
    link: &Link,
    rt: &ReverseTable,
    keys: &[Vec<Value>],
    keeps: bool,
) -> Result<Vec<Vec<Value>>> {
    let d = link.target().dialect();
    let mut params = Vec::new();
    let key_cols: Vec<String> = rt.target_key.iter().map(|c| d.quote(c)).collect();
    let cond = d.keys_in(&key_cols, keys, &mut params);
    let mut cols: Vec<String> = rt.read_columns.iter().map(|c| d.quote(c)).collect();
    if keeps {
        cols.push(d.quote(SOURCE_KEY_COLUMN));
    }
    let sql = format!(
        "SELECT {} FROM {} WHERE {cond}",
        cols.join(", "),
        d.quote(&rt.mapping.table)
    );
    let (_, rows) = link
        .target()
        .fetch(
            &sql,
            &params,
            &format!(
                "read {} target keys of {} to write back",
                keys.len(),
                rt.mapping.table
            ),
        )
        .await?;
    Ok(rows)
}

/// A multi-row upsert of source rows by the source key.
fn upsert(d: Dialect, rt: &ReverseTable, rows: &[Vec<Value>]) -> Statement {
    let cols: Vec<String> = rt.source_columns().map(|c| d.quote(&c.name)).collect();
    let key: Vec<String> = rt.mapping.source_key.iter().map(|c| d.quote(c)).collect();
    let mut params = Vec::with_capacity(rows.len() * cols.len());
    let mut tuples = Vec::with_capacity(rows.len());
    for r in rows {
        let marks: Vec<String> = r
            .iter()
            .map(|v| {
                params.push(v.clone());
                d.placeholder(params.len())
            })
            .collect();
        tuples.push(format!("({})", marks.join(", ")));
    }
    let others: Vec<&String> = cols.iter().filter(|c| !key.contains(c)).collect();
    let table = d.quote(&rt.mapping.source_table);
    let head = format!(
        "INSERT INTO {table} ({}) VALUES {}",
        cols.join(", "),
        tuples.join(", ")
    );
    let sql = match d {
        Dialect::MySql if others.is_empty() => {
            format!("{head} ON DUPLICATE KEY UPDATE {k} = {k}", k = key[0])
        }
        Dialect::MySql => format!(
            "{head} ON DUPLICATE KEY UPDATE {}",
            others
                .iter()
                .map(|c| format!("{c} = VALUES({c})"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        _ if others.is_empty() => format!("{head} ON CONFLICT ({}) DO NOTHING", key.join(", ")),
        _ => format!(
            "{head} ON CONFLICT ({}) DO UPDATE SET {}",
            key.join(", "),
            others
                .iter()
                .map(|c| format!("{c} = excluded.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    Statement::new(sql, params)
}

/// Records the source key of a target row that has none (the application
/// inserted it), as the forward path would have written it.
fn fill(d: Dialect, rt: &ReverseTable, target_key: &[Value], source_key: &[Value]) -> Statement {
    let mut params = vec![Value::Text(source_key_text(source_key))];
    let key_cols: Vec<String> = rt.target_key.iter().map(|c| d.quote(c)).collect();
    let cond = d.keys_in(&key_cols, &[target_key.to_vec()], &mut params);
    Statement::new(
        format!(
            "UPDATE {} SET {sk} = {} WHERE {cond} AND {sk} IS NULL",
            d.quote(&rt.mapping.table),
            d.placeholder(1),
            sk = d.quote(SOURCE_KEY_COLUMN),
        ),
        params,
    )
}

/// Deletes the source row of a source key.
fn delete(d: Dialect, rt: &ReverseTable, key: &[Value]) -> Statement {
    let mut params = Vec::with_capacity(key.len());
    let key_cols: Vec<String> = rt.mapping.source_key.iter().map(|c| d.quote(c)).collect();
    let cond = d.keys_in(&key_cols, &[key.to_vec()], &mut params);
    Statement::new(
        format!(
            "DELETE FROM {} WHERE {cond}",
            d.quote(&rt.mapping.source_table)
        ),
        params,
    )
}
