//! Bringing source keys up to date in the target, deletes included: the
//! path the dual-write relay and the catch-up take for every batch of changes.
//!
//! For each spec table the keys are re-read from the source through its
//! query, joins, transformers and dedupers (the bulk load's own pipeline),
//! and in **one target transaction**:
//! 1. the rows of keys still in the source are upserted, version-guarded;
//! 2. the rows of keys gone from the source are deleted, found by the hidden
//!    [`SOURCE_KEY_COLUMN`] and guarded by version (a row written from a newer
//!    read, of a record inserted again, stays);
//! 3. each deletion leaves a *tombstone* (`_tern_tombstones`: table, source
//!    key, version), and rows just upserted that are older than a tombstone
//!    are deleted again: two relays applying the same key, one reading the
//!    record just before its deletion and writing just after the other
//!    deleted it, cannot bring it back;
//! 4. then the caller's statements (the relay's position), so a position
//!    never moves past changes that are not committed.
//!
//! Rows that transformers add to tables without a source (shared content)
//! are kept when one of their records is deleted: other records may still
//! emit them. Verification reports any that no record emits any more.

use std::collections::HashSet;

use super::BulkLoader;
use crate::connector::{Connector, Dialect, SOURCE_KEY_COLUMN, Statement, VERSION_COLUMN};
use crate::error::{EngineError, Result};
use crate::transform::{Output, TableRows};
use crate::value::{Value, key_identity, render_key, source_key_text};
use crate::writer::BatchWriter;

/// Where deletions are remembered in the target, with the version they were
/// read at.
pub const TOMBSTONE_TABLE: &str = "_tern_tombstones";

/// Keys per source read and per statement.
const KEYS_PER_READ: usize = 1000;

/// Source keys of one spec table to bring up to date.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TableKeys {
    pub table: String,
    pub keys: Vec<Vec<Value>>,
}

/// What [`BulkLoader::apply_keys`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ApplyReport {
    /// Distinct keys asked for.
    pub keys: u64,
    /// Source rows read.
    pub rows_read: u64,
    /// Target rows written, all tables (after dedupe).
    pub rows_written: u64,
    /// Keys no longer in the source, whose target rows were deleted.
    pub keys_deleted: u64,
    /// Rows read but left out because their bucket is not ramped on.
    pub skipped: u64,
}

impl ApplyReport {
    pub(crate) fn add(&mut self, o: &ApplyReport) {
        self.keys += o.keys;
        self.rows_read += o.rows_read;
        self.rows_written += o.rows_written;
        self.keys_deleted += o.keys_deleted;
        self.skipped += o.skipped;
    }
}

/// Decides, for a spec table and a row's bucket column value, whether the
/// row is written (the relay's ramp).
pub(crate) type Admit<'a> = &'a (dyn Fn(&str, &Value) -> bool + Sync);

/// Creates the tombstone table if it is missing.
pub(crate) async fn ensure_tombstones(target: &Connector) -> Result<()> {
    let d = target.dialect();
    let (name, key) = if d == Dialect::MySql {
        ("VARCHAR(128)", "VARCHAR(512)")
    } else {
        ("TEXT", "TEXT")
    };
    let sql = format!(
        "CREATE TABLE IF NOT EXISTS {} (table_name {name} NOT NULL, source_key {key} NOT NULL, \
         version BIGINT NOT NULL, PRIMARY KEY (table_name, source_key))",
        d.quote(TOMBSTONE_TABLE)
    );
    target
        .execute(&sql, &[], "create the tombstone table")
        .await
        .map(|_| ())
}

/// Deletes tombstones read before `version`: no write read that long ago
/// is still on its way.
pub(crate) async fn prune_tombstones(target: &Connector, version: i64) -> Result<u64> {
    let d = target.dialect();
    target
        .execute(
            &format!(
                "DELETE FROM {} WHERE version < {}",
                d.quote(TOMBSTONE_TABLE),
                d.placeholder(1)
            ),
            &[Value::Int(version)],
            "prune old tombstones",
        )
        .await
}

fn marks(d: Dialect, from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| d.placeholder(i))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Statements deleting the rows of deleted source keys and leaving tombstones.
fn delete_statements(d: Dialect, table: &str, keys: &[String], version: i64) -> Vec<Statement> {
    let t = d.quote(table);
    let sk = d.quote(SOURCE_KEY_COLUMN);
    let v = d.quote(VERSION_COLUMN);
    let tb = d.quote(TOMBSTONE_TABLE);
    let mut out = Vec::new();
    for batch in keys.chunks(KEYS_PER_READ) {
        let mut params: Vec<Value> = batch.iter().map(|k| Value::Text(k.clone())).collect();
        params.push(Value::Int(version));
        out.push(Statement {
            sql: format!(
                "DELETE FROM {t} WHERE {sk} IN ({}) AND {v} < {}",
                marks(d, 1, batch.len()),
                d.placeholder(batch.len() + 1)
            ),
            params,
            expect_rows: None,
        });
        let rows: Vec<String> = (0..batch.len())
            .map(|i| format!("({})", marks(d, i * 3 + 1, 3)))
            .collect();
        let conflict = match d {
            Dialect::MySql => "ON DUPLICATE KEY UPDATE version = GREATEST(version, VALUES(version))"
                .to_string(),
            Dialect::Postgres => format!(
                "ON CONFLICT (table_name, source_key) DO UPDATE SET version = GREATEST({tb}.version, EXCLUDED.version)"
            ),
            Dialect::Sqlite => "ON CONFLICT (table_name, source_key) DO UPDATE SET version = MAX(version, excluded.version)"
                .to_string(),
        };
        out.push(Statement {
            sql: format!(
                "INSERT INTO {tb} (table_name, source_key, version) VALUES {} {conflict}",
                rows.join(", ")
            ),
            params: batch
                .iter()
                .flat_map(|k| {
                    [
                        Value::Text(table.to_string()),
                        Value::Text(k.clone()),
                        Value::Int(version),
                    ]
                })
                .collect(),
            expect_rows: None,
        });
    }
    out
}

/// Statements deleting rows just written that a newer deletion (another
/// relay's tombstone) has already removed.
fn stale_statements(d: Dialect, table: &str, keys: &[String]) -> Vec<Statement> {
    let t = d.quote(table);
    let sk = d.quote(SOURCE_KEY_COLUMN);
    let v = d.quote(VERSION_COLUMN);
    let tb = d.quote(TOMBSTONE_TABLE);
    keys.chunks(KEYS_PER_READ)
        .map(|batch| {
            let mut params: Vec<Value> = batch.iter().map(|k| Value::Text(k.clone())).collect();
            params.push(Value::Text(table.to_string()));
            Statement {
                sql: format!(
                    "DELETE FROM {t} WHERE {sk} IN ({}) AND EXISTS (SELECT 1 FROM {tb} tb \
                     WHERE tb.table_name = {} AND tb.source_key = {t}.{sk} AND tb.version > {t}.{v})",
                    marks(d, 1, batch.len()),
                    d.placeholder(batch.len() + 1)
                ),
                params,
                expect_rows: None,
            }
        })
        .collect()
}

/// Adds a table's output to the batch's, one entry per target table, the
/// last row of a target key winning (the newest source read).
fn merge(into: &mut Vec<TableRows>, out: Output) {
    for t in out.tables {
        if t.rows.is_empty() {
            continue;
        }
        match into.iter_mut().find(|x| x.shape.name == t.shape.name) {
            Some(x) => x.rows.extend(t.rows),
            None => into.push(t),
        }
    }
}

fn keep_last_per_key(t: &mut TableRows) {
    let mut seen = HashSet::with_capacity(t.rows.len());
    let mut rows = std::mem::take(&mut t.rows);
    rows.reverse();
    rows.retain(|r| seen.insert(key_identity(&t.shape.key_of(r))));
    rows.reverse();
    t.rows = rows;
}

impl BulkLoader {
    /// Brings the given source keys up to date in the target, in one
    /// transaction: re-reads them through the spec and upserts them
    /// version-guarded, and deletes the target rows of keys the source no
    /// longer has (see the module docs). Idempotent: applying the same keys
    /// twice gives the same target.
    pub async fn apply_keys(&self, keys: &[TableKeys]) -> Result<ApplyReport> {
        let mut writer = BatchWriter::open(&self.target).await?;
        self.apply_keys_with(&mut writer, keys, None, Vec::new())
            .await
    }

    /// [`BulkLoader::apply_keys`] on a held writer, writing only rows whose
    /// bucket `admit` accepts (deletions always go: a deleted record has no
    /// bucket value to ramp by, and deleting it is never wrong), then running
    /// `after` in the same transaction.
    pub(crate) async fn apply_keys_with(
        &self,
        writer: &mut BatchWriter,
        keys: &[TableKeys],
        admit: Option<Admit<'_>>,
        after: Vec<Statement>,
    ) -> Result<ApplyReport> {
        self.check_writable()?;
        let d = self.target.dialect();
        // Clock before every read of the batch, for the reason given in
        // `chunk.rs`: each row then reflects state at least as new as it.
        let version = self.source.clock_micros().await?;
        let mut report = ApplyReport::default();
        let mut tables: Vec<TableRows> = Vec::new();
        let mut statements = Vec::new();
        let mut first_key = None;
        for tk in keys {
            let t = self.table(&tk.table)?;
            let mut seen = HashSet::with_capacity(tk.keys.len());
            let wanted: Vec<&Vec<Value>> = tk
                .keys
                .iter()
                .filter(|k| seen.insert(key_identity(&k.iter().collect::<Vec<_>>())))
                .collect();
            if wanted.is_empty() {
                continue;
            }
            first_key.get_or_insert_with(|| format!("{} {}", tk.table, render_key(wanted[0])));
            report.keys += wanted.len() as u64;
            let mut rows = Vec::new();
            for batch in wanted.chunks(KEYS_PER_READ) {
                let batch: Vec<Vec<Value>> = batch.iter().map(|k| (*k).clone()).collect();
                let (sql, params) = t.query.keys_sql(&batch);
                let (_, found) = self
                    .source
                    .fetch(
                        &sql,
                        &params,
                        &format!("read {} keys {}..", tk.table, render_key(&batch[0])),
                    )
                    .await?;
                rows.extend(found);
            }
            report.rows_read += rows.len() as u64;
            let found: HashSet<String> = rows
                .iter()
                .map(|r| key_identity(&t.query.key_of(r).iter().collect::<Vec<_>>()))
                .collect();
            let gone: Vec<String> = wanted
                .iter()
                .filter(|k| !found.contains(&key_identity(&k.iter().collect::<Vec<_>>())))
                .map(|k| source_key_text(k))
                .collect();
            if let (Some(admit), Some(b)) = (admit, t.query.bucket_index()) {
                let before = rows.len();
                rows.retain(|r| admit(&tk.table, &r[b]));
                report.skipped += (before - rows.len()) as u64;
            }
            let written: Vec<String> = rows
                .iter()
                .map(|r| source_key_text(&t.query.key_of(r)))
                .collect();
            let output = t.pipeline.apply(rows)?;
            merge(&mut tables, output);
            report.keys_deleted += gone.len() as u64;
            statements.extend(delete_statements(d, &tk.table, &gone, version));
            statements.extend(stale_statements(d, &tk.table, &written));
        }
        for t in &mut tables {
            keep_last_per_key(t);
        }
        report.rows_written = tables.iter().map(|t| t.rows.len() as u64).sum();
        statements.extend(after);
        writer
            .write(&Output { tables }, version, &statements)
            .await
            .map_err(|message| EngineError::Apply {
                what: format!(
                    "{} keys from {}",
                    report.keys,
                    first_key.unwrap_or_else(|| "(none)".into())
                ),
                message: format!(
                    "the target refused the batch, nothing of it was committed: {message}"
                ),
            })?;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deletions_are_version_guarded_and_leave_tombstones() {
        let s = delete_statements(Dialect::Postgres, "items", &["1".into(), "2".into()], 77);
        assert_eq!(s.len(), 2);
        assert_eq!(
            s[0].sql,
            "DELETE FROM \"items\" WHERE \"_tern_source_key\" IN ($1, $2) AND \"_tern_version\" < $3"
        );
        assert_eq!(s[0].params.last(), Some(&Value::Int(77)));
        assert!(s[1].sql.starts_with(
            "INSERT INTO \"_tern_tombstones\" (table_name, source_key, version) VALUES ($1, $2, $3), ($4, $5, $6) ON CONFLICT"
        ));
    }

    #[test]
    fn rows_older_than_a_tombstone_are_deleted_again() {
        let s = stale_statements(Dialect::MySql, "items", &["5".into()]);
        assert_eq!(
            s[0].sql,
            "DELETE FROM `items` WHERE `_tern_source_key` IN (?) AND EXISTS (SELECT 1 FROM `_tern_tombstones` tb \
             WHERE tb.table_name = ? AND tb.source_key = `items`.`_tern_source_key` AND tb.version > `items`.`_tern_version`)"
        );
    }
}
