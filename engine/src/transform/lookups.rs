//! Reading the answers of `lookup(…)` expressions from the source, a chunk
//! at a time (see `expr/lookup.rs` for why they are collected first).

use std::collections::HashMap;

use tokio::sync::Mutex;

use crate::connector::{Connector, Dialect};
use crate::error::{EngineError, Result};
use crate::expr::lookup::{LookupBatch, LookupTable, Wanted};
use crate::value::{ColumnType, Value};

/// Keys per `IN (…)` query (under every database's parameter limit).
const KEYS_PER_QUERY: usize = 1000;

/// A looked-up table as the source describes it, read once per link.
#[derive(Debug, Clone)]
struct Described {
    /// The column rows are found by, and its type.
    by: String,
    by_type: Option<ColumnType>,
    columns: Vec<String>,
}

/// The source a pipeline's lookups read, with the tables described so far.
#[derive(Debug)]
pub(crate) struct Lookups {
    source: Connector,
    described: Mutex<HashMap<LookupTable, Described>>,
}

impl Lookups {
    pub fn new(source: Connector) -> Lookups {
        Lookups {
            source,
            described: Mutex::new(HashMap::new()),
        }
    }

    /// Reads from the source what the last collecting run of `batch` asked
    /// for, and gives it to the batch. Returns false when nothing was asked.
    pub async fn fill(&self, batch: &mut LookupBatch) -> Result<bool> {
        let wanted = batch.take_wanted();
        if wanted.is_empty() {
            return Ok(false);
        }
        for (table, Wanted { keys, columns }) in wanted {
            let described = self.describe(&table).await?;
            let mut columns: Vec<String> = columns.into_iter().collect();
            for c in &columns {
                if !described.columns.contains(c) {
                    return Err(lookup_error(
                        &table,
                        c,
                        format!(
                            "the source table {} has no column {c} (its columns: {})",
                            table.table,
                            described.columns.join(", ")
                        ),
                    ));
                }
            }
            // Columns read for these keys in an earlier round are read again,
            // so that the batch's row of a key stays whole.
            for k in keys.keys() {
                for c in batch.columns_read(&table, k) {
                    if !columns.contains(&c) {
                        columns.push(c);
                    }
                }
            }
            let keys: Vec<(String, Value)> = keys.into_iter().collect();
            for part in keys.chunks(KEYS_PER_QUERY) {
                let rows = self.read(&table, &described, &columns, part).await?;
                batch
                    .insert(&table, part.iter().map(|(t, _)| t.clone()), rows)
                    .map_err(|m| lookup_error(&table, &columns[0], m))?;
            }
        }
        Ok(true)
    }

    /// One `SELECT by, columns… FROM table WHERE by IN (…)`; rows by the
    /// canonical text of their `by` value.
    async fn read(
        &self,
        table: &LookupTable,
        described: &Described,
        columns: &[String],
        keys: &[(String, Value)],
    ) -> Result<HashMap<String, HashMap<String, Value>>> {
        let d = self.source.dialect();
        let key_values: Vec<Vec<Value>> = keys
            .iter()
            .map(|(_, v)| {
                let v = v.clone();
                vec![match described.by_type {
                    Some(t) if v.column_type() != Some(t) => v.clone().cast(t).unwrap_or(v),
                    _ => v,
                }]
            })
            .collect();
        let mut params = Vec::with_capacity(keys.len());
        let cond = d.keys_in(&[d.quote(&described.by)], &key_values, &mut params);
        let select: Vec<String> = columns.iter().map(|c| d.quote(c)).collect();
        let sql = format!(
            "SELECT {}, {} FROM {} WHERE {cond}",
            d.quote(&described.by),
            select.join(", "),
            d.quote(&table.table)
        );
        let what = format!("read {} keys of lookup table {}", keys.len(), table.table);
        let (_, rows) = self.source.fetch(&sql, &params, &what).await?;
        let mut out = HashMap::with_capacity(rows.len());
        for mut row in rows {
            let key = std::mem::replace(&mut row[0], Value::Null).canonical_text();
            let values = columns.iter().cloned().zip(row.into_iter().skip(1));
            out.entry(key).or_insert_with(|| values.collect());
        }
        Ok(out)
    }

    async fn describe(&self, table: &LookupTable) -> Result<Described> {
        if let Some(d) = self.described.lock().await.get(table) {
            return Ok(d.clone());
        }
        let err = |m: String| lookup_error(table, "…", m);
        for name in std::iter::once(&table.table).chain(table.by.as_ref()) {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
            {
                return Err(err(format!(
                    "`{name}` is not a plain table or column name (letters, digits, _ and .)"
                )));
            }
        }
        let Some(cols) = self.source.table_columns(&table.table).await? else {
            return Err(err(format!(
                "the source has no table {}; a lookup reads a table of the source",
                table.table
            )));
        };
        let by = match &table.by {
            Some(by) => by.clone(),
            None => {
                let pk = self.primary_key(&table.table).await?;
                match &pk[..] {
                    [one] => one.clone(),
                    [] => {
                        return Err(err(format!(
                            "the source table {} has no primary key; name the column to find rows by: \
                             lookup(\"{}\", column, \"by_column\", key)",
                            table.table, table.table
                        )));
                    }
                    more => {
                        return Err(err(format!(
                            "the primary key of {} has several columns ({}); name one unique column to \
                             find rows by: lookup(\"{}\", column, \"by_column\", key)",
                            table.table,
                            more.join(", "),
                            table.table
                        )));
                    }
                }
            }
        };
        let Some(by_col) = cols.iter().find(|c| c.name == by) else {
            return Err(err(format!(
                "the source table {} has no column {by} to find rows by",
                table.table
            )));
        };
        let described = Described {
            by: by.clone(),
            by_type: by_col.ty,
            columns: cols.iter().map(|c| c.name.clone()).collect(),
        };
        self.described
            .lock()
            .await
            .insert(table.clone(), described.clone());
        Ok(described)
    }

    /// The primary key columns of a source table, in order.
    async fn primary_key(&self, table: &str) -> Result<Vec<String>> {
        let d = self.source.dialect();
        let (sql, params) = match d {
            Dialect::Postgres => (
                "SELECT a.attname::text FROM pg_index i \
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
                 WHERE i.indrelid = to_regclass($1) AND i.indisprimary \
                 ORDER BY array_position(i.indkey, a.attnum)"
                    .to_string(),
                vec![Value::Text(d.quote(table))],
            ),
            Dialect::MySql => {
                let (schema, name) = match table.split_once('.') {
                    Some((s, n)) => ("?", vec![Value::Text(s.into()), Value::Text(n.into())]),
                    None => ("DATABASE()", vec![Value::Text(table.into())]),
                };
                (
                    format!(
                        "SELECT CAST(column_name AS CHAR) FROM information_schema.key_column_usage \
                         WHERE table_schema = {schema} AND table_name = ? \
                         AND constraint_name = 'PRIMARY' ORDER BY ordinal_position"
                    ),
                    name,
                )
            }
            Dialect::Sqlite => (
                "SELECT name FROM pragma_table_info(?) WHERE pk > 0 ORDER BY pk".to_string(),
                vec![Value::Text(table.into())],
            ),
        };
        let (_, rows) = self
            .source
            .fetch(
                &sql,
                &params,
                &format!("read the primary key of lookup table {table}"),
            )
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| r.into_iter().next())
            .map(|v| v.canonical_text())
            .collect())
    }
}

fn lookup_error(table: &LookupTable, column: &str, message: String) -> EngineError {
    EngineError::schema(
        &table.table,
        format!("{}: {message}", table.describe(column)),
    )
}
