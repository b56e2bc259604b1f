//! The per-key apply path: bringing given source keys up to date in the
//! target, deletes included. The dual-write relay and the catch-up take it
//! for every batch of changes, and repair for the mismatches of a
//! verification run; a bulk load copies whole buckets instead
//! ([`crate::bulk_load`]), through the same pipeline and the same
//! version-guarded writer.
//!
//! For each spec table the keys are re-read from the source through its
//! query, joins, transformers and dedupers (the bulk load's own pipeline),
//! and in **one target transaction**:
//! 1. the rows of keys still in the source are upserted, version-guarded;
//! 2. the rows of keys gone from the source are deleted, found by the hidden
//!    [`SOURCE_KEY_COLUMN`](crate::connector::SOURCE_KEY_COLUMN) (or, for a
//!    table whose key is a plain copy of the source key, by that key) and
//!    guarded by version (a row written from a newer read, of a record
//!    inserted again, stays);
//! 3. each deletion leaves a tombstone (`tombstones.rs`), and rows just
//!    upserted that are older than a tombstone are deleted again;
//! 4. then the caller's statements (the relay's position, a bucket's
//!    catch-up position), so a position never moves past changes that are
//!    not committed.
//!
//! A deduplicated table with a source (rows shared by several records, by
//! the deduper's group columns) is brought up to date group by group: the
//! changed records' groups, old ones included, are re-read whole and the
//! record the `keep` rule picks rewrites the row (`groups.rs`); a row goes
//! only when no record of its group is left.
//!
//! Rows that transformers add to tables without a source (shared content)
//! are kept when one of their records is deleted: other records may still
//! emit them. Verification reports any that no record emits any more.
//!
//! The keys come from changes through `changes.rs` (a change's row → the keys
//! it touches, by the spec's `tracks`); `track.rs` holds the track queries'
//! placeholders, which change capture needs too.

pub(crate) mod changes;
pub(crate) mod groups;
pub(crate) mod tombstones;
pub(crate) mod track;

pub(crate) use changes::groups_for_changes;
pub use changes::{ChangedKey, keys_for_change, keys_for_changes};
pub use tombstones::TOMBSTONE_TABLE;

use std::collections::HashSet;

use crate::connector::Statement;
use crate::error::{EngineError, Result};
use crate::link::{Link, LinkTable};
use crate::transform::{Output, TableRows};
use crate::value::{Value, identity, key_identity, render_key, source_key_text};
use crate::writer::BatchWriter;
use tombstones::{KeyRef, RowsOf};

/// Keys per source read.
const KEYS_PER_READ: usize = 1000;
/// Keys per source read and write of [`load_keys`].
const KEYS_PER_LOAD: usize = 500;

/// Source keys of one spec table to bring up to date.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TableKeys {
    pub table: String,
    pub keys: Vec<Vec<Value>>,
    /// For a deduplicated table: the groups (dedupe group column values)
    /// the changed records belonged to before the change, read from the
    /// changelog's old images. A deleted record can no longer be read, so
    /// this is how its shared row is recomputed from the records left.
    pub groups: Vec<Vec<Value>>,
    /// For keys read from the *target's* changelog (reverse replication,
    /// where `keys` are target keys): the source keys the changes' images
    /// map to through the inverse mapping, so that a row gone from the
    /// target is deleted from the source. Empty otherwise.
    pub source_keys: Vec<Vec<Value>>,
}

impl TableKeys {
    /// The keys, each once, in their first order.
    pub(crate) fn distinct_keys(&self) -> Vec<Vec<Value>> {
        let mut seen = HashSet::with_capacity(self.keys.len());
        self.keys
            .iter()
            .filter(|k| seen.insert(identity(k)))
            .cloned()
            .collect()
    }
}

/// What [`apply_keys`] did.
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

/// What [`load_keys`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct KeysReport {
    pub rows_read: u64,
    pub rows_written: u64,
    /// Requested keys the source no longer has (deleted rows). They are not
    /// touched in the target; deleting them is the relay's decision.
    pub missing: Vec<Vec<Value>>,
}

/// Decides, for a spec table and a row's bucket column value, whether the
/// row is written (the relay's ramp, a catch-up's bucket).
pub(crate) type Admit<'a> = &'a (dyn Fn(&str, &Value) -> bool + Sync);

/// Brings the given source keys up to date in the target, in one
/// transaction: re-reads them through the spec and upserts them
/// version-guarded, and deletes the target rows of keys the source no longer
/// has (see the module docs). Idempotent: applying the same keys twice gives
/// the same target.
pub async fn apply_keys(link: &Link, keys: &[TableKeys]) -> Result<ApplyReport> {
    let mut writer = BatchWriter::open(link.target()).await?;
    apply_keys_with(link, &mut writer, keys, None, Vec::new()).await
}

/// [`apply_keys`] on a held writer, writing only rows whose bucket `admit`
/// accepts (deletions always go: a deleted record has no bucket value to
/// ramp by, and deleting it is never wrong), then running `after` in the
/// same transaction.
pub(crate) async fn apply_keys_with(
    link: &Link,
    writer: &mut BatchWriter,
    keys: &[TableKeys],
    admit: Option<Admit<'_>>,
    after: Vec<Statement>,
) -> Result<ApplyReport> {
    link.check_writable()?;
    let d = link.target().dialect();
    let mut report = ApplyReport::default();
    let mut tables: Vec<TableRows> = Vec::new();
    // Per table: the source keys gone, those whose rows are written, and
    // (shared rows) those re-read, whose old rows the picks release.
    type Keyed<'a> = (RowsOf<'a>, Vec<KeyRef>, Vec<KeyRef>, Option<Vec<KeyRef>>);
    let mut keyed: Vec<Keyed<'_>> = Vec::new();
    let mut first_key = None;
    for tk in keys {
        let t = link.table(&tk.table)?;
        let wanted = tk.distinct_keys();
        if wanted.is_empty() && tk.groups.is_empty() {
            continue;
        }
        if let Some(k) = wanted.first().or(tk.groups.first()) {
            first_key.get_or_insert_with(|| format!("{} {}", tk.table, render_key(k)));
        }
        report.keys += wanted.len() as u64;
        let mut rows = Vec::new();
        for batch in wanted.chunks(KEYS_PER_READ) {
            rows.extend(read_keys(link, t, batch).await?);
        }
        report.rows_read += rows.len() as u64;
        let shape = t.pipeline.shape();
        let key_ref = |k: &[Value]| KeyRef {
            text: source_key_text(k),
            target: shape.target_key_of(k),
        };
        let gone: Vec<KeyRef> = missing(t, &wanted, &rows).map(|k| key_ref(k)).collect();
        if let (Some(admit), Some(b)) = (admit, t.query.bucket_index()) {
            let before = rows.len();
            rows.retain(|r| admit(&tk.table, &r[b]));
            report.skipped += (before - rows.len()) as u64;
        }
        let mut written: Vec<KeyRef> = rows.iter().map(|r| key_ref(&t.query.key_of(r))).collect();
        let mut released = None;
        if let Some(shared) = &t.shared {
            // A shared row is rewritten from the record its group keeps now;
            // rows the changed records owned and no longer produce go (see
            // `groups.rs`), after the picks have taken over their rows.
            rows = shared
                .picks(link.source(), &t.query, &rows, &tk.groups)
                .await?;
            let picked = rows.iter().map(|r| key_ref(&t.query.key_of(r))).collect();
            released = Some(std::mem::replace(&mut written, picked));
        }
        let output = t.pipeline.transform(rows).await?;
        merge(&mut tables, output);
        report.keys_deleted += gone.len() as u64;
        let rows_of = RowsOf {
            table: &tk.table,
            key: shape.key_from_source.as_ref().map(|_| &t.spec.key[..]),
        };
        keyed.push((rows_of, gone, written, released));
    }
    // THE VERSION: the source clock *after* every read of the batch. A bulk
    // load chunk stamps its clock right before its one read; this batch
    // reads for longer (several tables, shared picks), so a clock taken
    // before its reads could be older than a chunk that read, between it
    // and these reads, state this batch has seen change since: the chunk's
    // stale rows would outrank the change, which this batch consumed from
    // the changelog, and it would be lost. Stamped after, whatever this
    // batch read is outranked only by a later stamp; and a change it did
    // not see committed after its read of the changelog, so it comes again
    // in a later batch, with a later stamp.
    let version = link.source().clock_micros().await?;
    let mut statements = Vec::new();
    for (rows_of, gone, written, released) in &keyed {
        if let Some(released) = released {
            statements.extend(tombstones::release_statements(
                d, *rows_of, released, version,
            ));
        }
        statements.extend(tombstones::delete_statements(d, *rows_of, gone, version));
        statements.extend(tombstones::stale_statements(d, *rows_of, written));
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

/// Re-reads the current source rows of the given source keys of `table`
/// (through its query, joins, transformers and dedupers) and writes them
/// version-guarded, exactly as the bulk load would, without deleting
/// anything: keys the source no longer has are returned as `missing`.
pub async fn load_keys(link: &Link, table: &str, keys: &[Vec<Value>]) -> Result<KeysReport> {
    link.check_writable()?;
    let t = link.table(table)?;
    let mut report = KeysReport {
        rows_read: 0,
        rows_written: 0,
        missing: Vec::new(),
    };
    let mut writer = BatchWriter::open(link.target()).await?;
    for batch in keys.chunks(KEYS_PER_LOAD) {
        // Clock before the read, for the reason given in `chunk.rs`.
        let version = link.source().clock_micros().await?;
        let mut rows = read_keys(link, t, batch).await?;
        report.missing.extend(missing(t, batch, &rows).cloned());
        report.rows_read += rows.len() as u64;
        if let Some(shared) = &t.shared {
            rows = shared.picks(link.source(), &t.query, &rows, &[]).await?;
        }
        let output = t.pipeline.transform(rows).await?;
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

/// The current source rows of some keys of a table, in one query.
async fn read_keys(link: &Link, t: &LinkTable, keys: &[Vec<Value>]) -> Result<Vec<Vec<Value>>> {
    let (sql, params) = t.query.keys_sql(keys);
    let (_, rows) = link
        .source()
        .fetch(
            &sql,
            &params,
            &format!("read {} keys {}..", t.spec.name, render_key(&keys[0])),
        )
        .await?;
    Ok(rows)
}

/// The keys of `wanted` that no row of `rows` has: deleted in the source.
fn missing<'a>(
    t: &LinkTable,
    wanted: &'a [Vec<Value>],
    rows: &[Vec<Value>],
) -> impl Iterator<Item = &'a Vec<Value>> {
    let found: HashSet<String> = rows.iter().map(|r| identity(&t.query.key_of(r))).collect();
    wanted.iter().filter(move |k| !found.contains(&identity(k)))
}

/// Adds a table's output to the batch's, one entry per target table.
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

/// One row per target key, the last one winning (the newest source read).
fn keep_last_per_key(t: &mut TableRows) {
    let mut seen = HashSet::with_capacity(t.rows.len());
    let mut rows = std::mem::take(&mut t.rows);
    rows.reverse();
    rows.retain(|r| seen.insert(key_identity(&t.shape.key_of(r))));
    rows.reverse();
    t.rows = rows;
}
