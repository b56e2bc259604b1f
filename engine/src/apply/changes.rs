//! From changes to keys: the source keys of a spec table that changelog rows
//! touch, through the table's `tracks` (the row's own key for a table
//! source, a track query for a record assembled from other tables). The
//! change stream maps every batch through here before it is filtered and
//! applied.

use std::collections::HashSet;

use super::track::{bind_named, placeholders};
use crate::changelog::Change;
use crate::error::{EngineError, Result};
use crate::link::Link;
use crate::spec::{Relation, TrackMap};
use crate::transform::Record;
use crate::value::{Value, identity, render_key};

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

/// The source keys of `table` that changelog rows touch, through the
/// table's `tracks`: both images of an update (a change of key or bucket
/// column touches the old record and the new one). Values are cast to the
/// source key's types, so that keys compare and render as the source rows'
/// own keys do. A track query runs once per distinct set of values.
pub async fn keys_for_changes(
    link: &Link,
    table: &str,
    changes: &[Change],
) -> Result<Vec<ChangedKey>> {
    let t = link.table(table)?;
    let Some(src) = &t.spec.source else {
        return Ok(Vec::new());
    };
    let key_types = t.query.key_types();
    let bucket_pos = src.key.iter().position(|k| *k == src.bucket);
    let cast_key = |key: Vec<Value>, seq: i64, changed: &str| -> Result<ChangedKey> {
        let mut typed = Vec::with_capacity(key.len());
        for (v, ty) in key.iter().zip(&key_types) {
            typed.push(match ty {
                Some(ty) if !v.is_null() => v.clone().cast(*ty).map_err(|m| EngineError::Row {
                    table: table.to_string(),
                    key: render_key(&key),
                    message: format!("change {seq} of {changed}: {m}"),
                })?,
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
                        let columns = link.tracked_columns(&c.table).await?;
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
                        let id = format!("{ti}\u{1e}{}", identity(&params));
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
        for r in run_track_query(link, table, &changed, q, &rec).await? {
            out.push(cast_key(r, seq, &changed)?);
        }
    }
    Ok(out)
}

/// The source keys of `table` that a change to a row of `changed_table`
/// affects, by the table's `tracks` (for a table source: the row's key).
/// `row` holds the changed row's columns (old or new image).
pub async fn keys_for_change(
    link: &Link,
    table: &str,
    changed_table: &str,
    row: &Record<'_>,
) -> Result<Vec<Vec<Value>>> {
    let t = link.table(table)?;
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
                keys.extend(run_track_query(link, table, changed_table, q, row).await?);
            }
        }
    }
    Ok(keys)
}

/// Runs track query `q` of `table` with the values of a changed row of
/// `changed_table`: the keys of the records it touches.
async fn run_track_query(
    link: &Link,
    table: &str,
    changed_table: &str,
    q: &str,
    row: &Record<'_>,
) -> Result<Vec<Vec<Value>>> {
    let source = link.source();
    let (sql, params) = bind_named(q, row, source.dialect())
        .map_err(|m| EngineError::schema(table, format!("track of {changed_table}: {m}")))?;
    let (_, rows) = source
        .fetch(
            &sql,
            &params,
            &format!("map a change of {changed_table} to keys of {table}"),
        )
        .await?;
    Ok(rows)
}

/// For a deduplicated table (rows shared by the records of a group): the
/// groups the old images of `changes` belonged to, with the image's bucket
/// column value when it has one. A deleted or moved record can no longer be
/// read from the source; its old image is how its former group is found and
/// its shared row recomputed from the records left. Images of tables that do
/// not carry the group columns (other tables a query source joins) give none.
pub(crate) fn groups_for_changes(
    link: &Link,
    table: &str,
    changes: &[Change],
) -> Result<Vec<(Vec<Value>, Option<Value>)>> {
    let t = link.table(table)?;
    let (Some(shared), Some(src)) = (&t.shared, &t.spec.source) else {
        return Ok(Vec::new());
    };
    let own = match &src.relation {
        Relation::Table(name) => Some(name.as_str()),
        Relation::Query(_) => None,
    };
    let mut out = Vec::new();
    for c in changes {
        if !src.tracks.iter().any(|tr| tr.table == c.table) {
            continue;
        }
        let Some(old) = &c.old else { continue };
        let rec = old.record();
        match shared.group_from(&t.query, |col| rec.get(col).cloned())? {
            Some(g) => out.push((g, rec.get(&src.bucket).cloned())),
            None if own == Some(c.table.as_str()) => {
                return Err(EngineError::Schema {
                    table: table.to_string(),
                    message: format!(
                        "change {} of {} does not carry the dedupe group columns ({}): change \
                         capture was installed for another spec; run `tern capture install` \
                         with this one",
                        c.seq,
                        c.table,
                        shared.columns().join(", ")
                    ),
                });
            }
            None => {}
        }
    }
    Ok(out)
}
