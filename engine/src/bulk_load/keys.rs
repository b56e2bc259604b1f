//! The path the relay and catch-up reuse: from a source change to the keys
//! it touches, and from keys to version-guarded target rows.

use std::collections::{HashMap, HashSet};

use super::{BulkLoader, KeysReport};
use crate::changelog::Change;
use crate::error::{EngineError, Result};
use crate::spec::TrackMap;
use crate::transform::{Record, SourceColumn};
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

    /// The source keys of `table` that changelog rows touch, through the
    /// table's `tracks`: both images of an update (a change of key or bucket
    /// column touches the old record and the new one). Values are cast to the
    /// source key's types, so that keys compare and render as the source
    /// rows' own keys do. A track query runs once per distinct set of values.
    pub async fn keys_for_changes(
        &self,
        table: &str,
        changes: &[Change],
    ) -> Result<Vec<ChangedKey>> {
        let t = self.table(table)?;
        let Some(src) = &t.spec.source else {
            return Ok(Vec::new());
        };
        let key_types = t.query.key_types();
        let bucket_pos = src.key.iter().position(|k| *k == src.bucket);
        let cast_key = |key: Vec<Value>, seq: i64, changed: &str| -> Result<ChangedKey> {
            let mut typed = Vec::with_capacity(key.len());
            for (v, ty) in key.iter().zip(&key_types) {
                typed.push(match ty {
                    Some(ty) if !v.is_null() => {
                        v.clone().cast(*ty).map_err(|m| EngineError::Row {
                            table: table.to_string(),
                            key: render_key(&key),
                            message: format!("change {seq} of {changed}: {m}"),
                        })?
                    }
                    _ => v.clone(),
                });
            }
            Ok(ChangedKey {
                bucket: bucket_pos.and_then(|i| typed.get(i).cloned()),
                key: typed,
                seq,
            })
        };
        let mut out = Vec::new();
        // Track queries to run: (track, parameter values) → first change.
        let mut queries: Vec<(usize, Vec<Value>, i64, String)> = Vec::new();
        let mut seen_queries = HashSet::new();
        for c in changes {
            for (ti, track) in src.tracks.iter().enumerate() {
                if track.table != c.table {
                    continue;
                }
                for img in c.images() {
                    let rec = img.record();
                    let missing = |col: &str| EngineError::Schema {
                        table: table.to_string(),
                        message: format!(
                            "change {} of {} has no column {col}: change capture was installed for \
                             another spec; run `tern capture install` with this one",
                            c.seq, c.table
                        ),
                    };
                    match &track.map {
                        TrackMap::Columns(cols) => {
                            let key = cols
                                .iter()
                                .map(|col| rec.get(col).cloned().ok_or_else(|| missing(col)))
                                .collect::<Result<Vec<_>>>()?;
                            out.push(cast_key(key, c.seq, &c.table)?);
                        }
                        TrackMap::Query(q) => {
                            let columns = self.tracked_columns(&c.table).await?;
                            let mut params = Vec::new();
                            for name in placeholders(q) {
                                let v = rec.get(&name).cloned().ok_or_else(|| missing(&name))?;
                                let ty = columns
                                    .iter()
                                    .find(|sc| sc.name == name)
                                    .and_then(|sc| sc.ty);
                                params.push(match ty {
                                    Some(ty) if !v.is_null() => {
                                        v.cast(ty).map_err(|m| EngineError::Schema {
                                            table: table.to_string(),
                                            message: format!(
                                                "change {} of {}: column {name}: {m}",
                                                c.seq, c.table
                                            ),
                                        })?
                                    }
                                    _ => v,
                                });
                            }
                            let id = format!(
                                "{ti}\u{1e}{}",
                                key_identity(&params.iter().collect::<Vec<_>>())
                            );
                            if seen_queries.insert(id) {
                                queries.push((ti, params, c.seq, c.table.clone()));
                            }
                        }
                    }
                }
            }
        }
        for (ti, params, seq, changed) in queries {
            let TrackMap::Query(q) = &src.tracks[ti].map else {
                continue;
            };
            let names = placeholders(q);
            let rec = Record {
                columns: &names,
                values: &params,
            };
            let (sql, bound) = named_params(q, &rec, self.source.dialect())
                .map_err(|m| EngineError::schema(table, format!("track of {changed}: {m}")))?;
            let (_, rows) = self
                .source
                .fetch(
                    &sql,
                    &bound,
                    &format!("map a change of {changed} to keys of {table}"),
                )
                .await?;
            for r in rows {
                out.push(cast_key(r, seq, &changed)?);
            }
        }
        Ok(out)
    }

    /// The columns of a source table named in `tracks` (cached).
    async fn tracked_columns(&self, table: &str) -> Result<Vec<SourceColumn>> {
        let all = self
            .tracked
            .get_or_try_init(|| async {
                let mut m = HashMap::new();
                for t in self.spec.sourced_tables() {
                    for tr in t.source.iter().flat_map(|s| &s.tracks) {
                        if !m.contains_key(&tr.table)
                            && let Some(cols) = self.source.table_columns(&tr.table).await?
                        {
                            m.insert(tr.table.clone(), cols);
                        }
                    }
                }
                Ok::<_, EngineError>(m)
            })
            .await?;
        Ok(all.get(table).cloned().unwrap_or_default())
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

/// The `:name` placeholders of a track query, in order of appearance (the
/// columns change capture must record for it).
pub(crate) fn placeholders(sql: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut chars = sql.chars().peekable();
    let mut prev = ' ';
    while let Some(c) = chars.next() {
        let next_is_ident = chars
            .peek()
            .is_some_and(|n| n.is_ascii_alphabetic() || *n == '_');
        if c == ':' && next_is_ident && prev != ':' {
            let mut name = String::new();
            while let Some(&n) = chars.peek() {
                if n.is_ascii_alphanumeric() || n == '_' {
                    name.push(n);
                    chars.next();
                } else {
                    break;
                }
            }
            if !names.contains(&name) {
                names.push(name);
            }
            prev = 'x';
        } else {
            prev = c;
        }
    }
    names
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

/// A source key a change touches.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangedKey {
    pub key: Vec<Value>,
    /// The bucket column's value, when the bucket column is part of the key
    /// (otherwise it is known only once the row is read).
    pub bucket: Option<Value>,
    /// The changelog row it came from (the first, if several).
    pub seq: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connector::Dialect;

    #[test]
    fn placeholders_are_listed_once_and_casts_are_not_placeholders() {
        assert_eq!(
            placeholders("SELECT a FROM t WHERE x = :id AND y::text = :name OR z = :id"),
            vec!["id".to_string(), "name".to_string()]
        );
    }

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
