//! Shared target rows: a denormalized source repeats content once per
//! participant (seed 001: one inbox row per copy of a message), and the
//! spec's deduper keeps one target row for all of them. Which source records
//! share a row is decided by the deduper's *group* columns (the source
//! columns its key is made from, e.g. thread and message number).
//!
//! The row must always be what the spec's `keep` rule makes of the records
//! that produce it *now*, wherever they are: another chunk, another bucket,
//! or deleted. So every writer of a shared table (the bulk load per chunk,
//! the apply path per batch of keys, verification per chunk) first widens
//! the records it has to whole groups ([`SharedRows::picks`]): it reads every
//! source record of each group touched, in the source's read order (bucket
//! column, then key), and keeps the first or the last of each. The row is
//! then written from that record alone, owned by its source key. A deleted
//! record's row is deleted by its source key (see `mod.rs`) only after the
//! group's remaining pick has rewritten it under its own key, so a shared
//! row goes only with the last record that produced it.

use std::collections::HashMap;

use crate::chunk::SourceQuery;
use crate::connector::{Connector, Dialect};
use crate::error::{EngineError, Result};
use crate::spec::{Keep, TableSpec};
use crate::value::{Value, identity, render_key};

/// Groups per source read.
const GROUPS_PER_READ: usize = 500;

/// How a table with a deduper and a source finds the records that share its
/// rows.
#[derive(Debug, Clone)]
pub(crate) struct SharedRows {
    table: String,
    /// The group's source columns and their indexes in a source row.
    columns: Vec<String>,
    idx: Vec<usize>,
    keep: Keep,
}

impl SharedRows {
    /// The shared-row rule of a spec table, if it has a deduper and a
    /// source; `Err` when a group column is not a source column.
    pub(crate) fn of(table: &TableSpec, query: &SourceQuery) -> Result<Option<SharedRows>> {
        let (Some(d), Some(_)) = (&table.dedupe, &table.source) else {
            return Ok(None);
        };
        if d.group.is_empty() {
            return Ok(None);
        }
        let mut idx = Vec::with_capacity(d.group.len());
        for c in &d.group {
            let i = query.columns.iter().position(|s| &s.name == c).ok_or_else(|| {
                EngineError::schema(
                    &table.name,
                    format!(
                        "dedupe group column `{c}` is not a column of the source (its columns: {})",
                        crate::transform::SourceColumn::list(&query.columns)
                    ),
                )
            })?;
            idx.push(i);
        }
        Ok(Some(SharedRows {
            table: table.name.clone(),
            columns: d.group.clone(),
            idx,
            keep: d.keep,
        }))
    }

    /// The group's source columns.
    pub(crate) fn columns(&self) -> &[String] {
        &self.columns
    }

    /// The group values of a source row.
    pub(crate) fn group_of(&self, row: &[Value]) -> Vec<Value> {
        self.idx.iter().map(|&i| row[i].clone()).collect()
    }

    /// The group values read from a change image, cast to the source
    /// columns' types; `None` when the image lacks a group column.
    pub(crate) fn group_from(
        &self,
        query: &SourceQuery,
        get: impl Fn(&str) -> Option<Value>,
    ) -> Result<Option<Vec<Value>>> {
        let mut out = Vec::with_capacity(self.idx.len());
        for (c, &i) in self.columns.iter().zip(&self.idx) {
            let Some(v) = get(c) else { return Ok(None) };
            out.push(match query.columns[i].ty {
                Some(ty) if !v.is_null() => v.cast(ty).map_err(|m| {
                    EngineError::schema(&self.table, format!("dedupe group column {c}: {m}"))
                })?,
                _ => v,
            });
        }
        Ok(Some(out))
    }

    /// The record each group keeps, for the groups of `rows` and the extra
    /// `groups` (of deleted or moved records): every source record of those
    /// groups is read in the source's order and the first or last of each
    /// group is kept. Groups with no record left give nothing.
    pub(crate) async fn picks(
        &self,
        source: &Connector,
        query: &SourceQuery,
        rows: &[Vec<Value>],
        groups: &[Vec<Value>],
    ) -> Result<Vec<Vec<Value>>> {
        let mut wanted: Vec<Vec<Value>> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for g in rows
            .iter()
            .map(|r| self.group_of(r))
            .chain(groups.iter().cloned())
        {
            if seen.insert(identity(&g)) {
                wanted.push(g);
            }
        }
        let mut picked: HashMap<String, Vec<Value>> = HashMap::with_capacity(wanted.len());
        let mut order: Vec<String> = Vec::with_capacity(wanted.len());
        for batch in wanted.chunks(GROUPS_PER_READ) {
            let (sql, params) = self.groups_sql(query, batch);
            let (_, found) = source
                .fetch(
                    &sql,
                    &params,
                    &format!(
                        "read the records sharing rows of {} (groups {}..)",
                        self.table,
                        render_key(&batch[0])
                    ),
                )
                .await?;
            for r in found {
                let id = identity(&self.group_of(&r));
                match picked.entry(id) {
                    std::collections::hash_map::Entry::Occupied(mut e) => {
                        if self.keep == Keep::Last {
                            e.insert(r);
                        }
                    }
                    std::collections::hash_map::Entry::Vacant(e) => {
                        order.push(e.key().clone());
                        e.insert(r);
                    }
                }
            }
        }
        Ok(order
            .into_iter()
            .filter_map(|id| picked.remove(&id))
            .collect())
    }

    /// The picks among a chunk's own rows: each shared row comes from the
    /// one chunk that holds its group's pick, so a bulk load writes it and a
    /// full diff compares it once, whatever chunks and buckets the group's
    /// records are spread over.
    pub(crate) async fn picks_within(
        &self,
        source: &Connector,
        query: &SourceQuery,
        rows: Vec<Vec<Value>>,
    ) -> Result<Vec<Vec<Value>>> {
        let picks = self.picks(source, query, &rows, &[]).await?;
        let chosen: std::collections::HashSet<String> =
            picks.iter().map(|r| identity(&query.key_of(r))).collect();
        Ok(rows
            .into_iter()
            .filter(|r| chosen.contains(&identity(&query.key_of(r))))
            .collect())
    }

    /// Every source record of some groups, in the source's read order.
    fn groups_sql(&self, query: &SourceQuery, groups: &[Vec<Value>]) -> (String, Vec<Value>) {
        let d: Dialect = query.dialect();
        let mut params = Vec::new();
        let mut ors = Vec::with_capacity(groups.len());
        for g in groups {
            let parts: Vec<String> = self
                .columns
                .iter()
                .zip(g)
                .map(|(c, v)| {
                    if v.is_null() {
                        format!("{} IS NULL", d.quote(c))
                    } else {
                        params.push(v.clone());
                        format!("{} = {}", d.quote(c), d.placeholder(params.len()))
                    }
                })
                .collect();
            ors.push(format!("({})", parts.join(" AND ")));
        }
        let order: Vec<String> = query.order.iter().map(|c| d.quote(c)).collect();
        (
            format!(
                "SELECT * FROM {} WHERE {} ORDER BY {}",
                query.from_clause(),
                ors.join(" OR "),
                order.join(", ")
            ),
            params,
        )
    }
}
