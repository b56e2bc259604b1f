//! The path the relay and catch-up reuse: from a source change to the keys
//! it touches, and from keys to version-guarded target rows.

use std::collections::HashSet;

use super::{BulkLoader, KeysReport};
use crate::error::{EngineError, Result};
use crate::spec::TrackMap;
use crate::transform::Record;
use crate::value::{Value, key_identity, render_key};
use crate::writer::BatchWriter;

impl BulkLoader {
    /// Re-reads the current source rows of the given source keys of `table`
    /// (through its query, joins, transformers and dedupers) and writes them
    /// version-guarded, exactly as the bulk load would. The relay and the
    /// catch-up call this for the keys a change touched.
    pub async fn load_keys(&self, table: &str, keys: &[Vec<Value>]) -> Result<KeysReport> {
        self.check_writable()?;
        let t = self.table(table)?;
        let mut report = KeysReport {
            rows_read: 0,
            rows_written: 0,
            missing: Vec::new(),
        };
        let mut writer = BatchWriter::open(&self.target).await?;
        for batch in keys.chunks(500) {
            // Clock before the read, for the reason given in `chunk.rs`.
            let version = self.source.clock_micros().await?;
            let (sql, params) = t.query.keys_sql(batch);
            let (_, rows) = self
                .source
                .fetch(
                    &sql,
                    &params,
                    &format!("read {} keys {}..", table, render_key(&batch[0])),
                )
                .await?;
            let found: HashSet<String> = rows
                .iter()
                .map(|r| {
                    let k = t.query.key_of(r);
                    key_identity(&k.iter().collect::<Vec<_>>())
                })
                .collect();
            for k in batch {
                if !found.contains(&key_identity(&k.iter().collect::<Vec<_>>())) {
                    report.missing.push(k.clone());
                }
            }
            report.rows_read += rows.len() as u64;
            let output = t.pipeline.apply(rows)?;
            writer
                .write(&output, version, &[])
                .await
                .map_err(|message| EngineError::Row {
                    table: table.to_string(),
                    key: render_key(&batch[0]),
                    message: format!(
                        "target rejected the rows of {} keys: {message}",
                        batch.len()
                    ),
                })?;
            report.rows_written += output.rows() as u64;
        }
        Ok(report)
    }

    /// The source keys of `table` that a change to a row of `changed_table`
    /// affects, by the table's `tracks` (for a table source: the row's key).
    /// `row` holds the changed row's columns (old or new image).
    pub async fn keys_for_change(
        &self,
        table: &str,
        changed_table: &str,
        row: &Record<'_>,
    ) -> Result<Vec<Vec<Value>>> {
        let t = self.table(table)?;
        let Some(src) = &t.spec.source else {
            return Ok(Vec::new());
        };
        let mut keys = Vec::new();
        for track in src.tracks.iter().filter(|tr| tr.table == changed_table) {
            match &track.map {
                TrackMap::Columns(cols) => {
                    let key = cols
                        .iter()
                        .map(|c| {
                            row.get(c).cloned().ok_or_else(|| {
                                EngineError::schema(
                                    table,
                                    format!("changed row of {changed_table} has no column {c}"),
                                )
                            })
                        })
                        .collect::<Result<Vec<_>>>()?;
                    keys.push(key);
                }
                TrackMap::Query(q) => {
                    let (sql, params) =
                        named_params(q, row, self.source.dialect()).map_err(|m| {
                            EngineError::schema(table, format!("track of {changed_table}: {m}"))
                        })?;
                    let (_, rows) = self
                        .source
                        .fetch(
                            &sql,
                            &params,
                            &format!("map a change of {changed_table} to keys of {table}"),
                        )
                        .await?;
                    keys.extend(rows);
                }
            }
        }
        Ok(keys)
    }
}

/// `:name` placeholders of a track query → the dialect's placeholders and
/// the changed row's values.
fn named_params(
    sql: &str,
    row: &Record<'_>,
    d: crate::connector::Dialect,
) -> std::result::Result<(String, Vec<Value>), String> {
    let mut out = String::with_capacity(sql.len());
    let mut params = Vec::new();
    let mut chars = sql.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        let next_is_ident = chars
            .peek()
            .is_some_and(|(_, n)| n.is_ascii_alphabetic() || *n == '_');
        if c == ':' && next_is_ident && !out.ends_with(':') {
            let mut name = String::new();
            while let Some(&(_, n)) = chars.peek() {
                if n.is_ascii_alphanumeric() || n == '_' {
                    name.push(n);
                    chars.next();
                } else {
                    break;
                }
            }
            let v = row
                .get(&name)
                .ok_or_else(|| format!("the changed row has no column {name}"))?;
            params.push(v.clone());
            out.push_str(&d.placeholder(params.len()));
        } else {
            out.push(c);
        }
    }
    Ok((out, params))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connector::Dialect;

    #[test]
    fn track_queries_take_named_values_from_the_changed_row() -> std::result::Result<(), String> {
        let cols = vec!["id".to_string(), "thread_id".to_string()];
        let vals = vec![Value::Int(1), Value::Int(9)];
        let row = Record {
            columns: &cols,
            values: &vals,
        };
        let (sql, params) = named_params(
            "SELECT member_id, id FROM inbox WHERE thread_id = :thread_id AND x::text = 'a'",
            &row,
            Dialect::Postgres,
        )?;
        assert_eq!(
            sql,
            "SELECT member_id, id FROM inbox WHERE thread_id = $1 AND x::text = 'a'"
        );
        assert_eq!(params, vec![Value::Int(9)]);
        Ok(())
    }
}
