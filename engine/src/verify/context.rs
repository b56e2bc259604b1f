//! What every mode of a verification shares: the run's context ([`Ctx`]:
//! the table's source query and transform, its target shape and how its
//! target rows can be read) and the comparison of expected with actual rows
//! by target key, which finds missing, extra and different rows.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::compare;
use super::results::{Counts, Mismatch, MismatchKind};
use super::store;
use crate::apply::groups::SharedRows;
use crate::buckets::Bucket;
use crate::chunk::SourceQuery;
use crate::connector::Connector;
use crate::error::{EngineError, Result};
use crate::link::Link;
use crate::progress::{Progress, Task, Unit};
use crate::run_control::RunControl;
use crate::spec::{TableSpec, Transform};
use crate::transform::{Pipeline, TableShape};
use crate::value::{ColumnType, Value, key_identity};

/// Keys per source read and target lookup in key-set checks.
pub(super) const KEYS_PER_BATCH: usize = 1000;

/// Everything a verification task needs, owned, so buckets run in tasks.
#[derive(Clone)]
pub(super) struct Ctx {
    pub(super) table: String,
    pub(super) source: Connector,
    pub(super) target: Connector,
    pub(super) query: Arc<SourceQuery>,
    pub(super) pipeline: Arc<Pipeline>,
    /// For a deduplicated table: the records sharing a row, so that a chunk
    /// expects the row its group's pick writes (see `apply/groups.rs`).
    pub(super) shared: Option<Arc<SharedRows>>,
    pub(super) shape: Arc<TableShape>,
    /// `SELECT <shape columns> FROM <target table>`.
    pub(super) select: String,
    /// The target key is a copy of the source order columns.
    pub(super) aligned: bool,
    /// A chunk's target rows are one key range: aligned, and the key sorts
    /// the same on both sides (integers, or one kind of database). A text
    /// key between MariaDB and PostgreSQL follows two collations, so its
    /// rows are looked up by key instead.
    pub(super) range_reads: bool,
    pub(super) chunk_rows: usize,
    pub(super) run_id: String,
    /// Group checksums of transformed keys (`grouped.rs`), when the mapping
    /// allows them and the run may use them.
    pub(super) grouped: Option<Arc<GroupSums>>,
    /// Asked to read every row: no checksum path of any kind.
    pub(super) row_by_row: bool,
}

/// What a full diff of one bucket did.
pub(super) struct BucketDiff {
    /// The bucket's counts, earlier attempts of the run included.
    pub counts: Counts,
    /// Whether the bucket finished.
    pub done: bool,
    /// Source rows this attempt read (or covered by checksums).
    pub read: u64,
    /// Of those, rows found equal by chunk checksums.
    pub by_checksum: u64,
    /// A chunk of this attempt was checked by group sums without its span of
    /// source keys, so its orphans are left to the orphan pass.
    pub spanless: bool,
}

/// Identity of a target key within a run: an integer without allocation for
/// the usual one-integer key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum KeyId {
    Int(i64),
    Text(String),
}

impl KeyId {
    pub(super) fn text(&self) -> String {
        match self {
            KeyId::Int(i) => format!("int:{i}"),
            KeyId::Text(s) => s.clone(),
        }
    }
}

impl Ctx {
    /// The context of a run of `table`: its source query, transform and
    /// target shape, and how its target rows can be read.
    pub(super) async fn new(link: &Link, table: &str, run_id: &str) -> Result<Ctx> {
        let spec = link.spec().table(table)?.clone();
        let query = link.source_query(table)?;
        let pipeline = link.pipeline(table)?;
        let shape = pipeline
            .shapes()
            .iter()
            .find(|s| s.name == table)
            .cloned()
            .ok_or_else(|| EngineError::schema(table, "the transform has no shape for it"))?;
        let target = link.target().clone();
        let d = target.dialect();
        let cols: Vec<String> = shape.columns.iter().map(|c| d.quote(c)).collect();
        let select = format!("SELECT {} FROM {}", cols.join(", "), d.quote(table));
        let aligned = aligned(&spec, &pipeline);
        let int_keys = query
            .key_types()
            .iter()
            .all(|t| *t == Some(ColumnType::Int));
        let same_kind = link.source().dialect() == link.target().dialect();
        Ok(Ctx {
            aligned,
            range_reads: aligned && (int_keys || same_kind),
            table: table.to_string(),
            source: link.source().clone(),
            target,
            query,
            pipeline,
            shared: link.table(table)?.shared.clone(),
            shape,
            select,
            chunk_rows: link.spec().chunk_rows,
            run_id: run_id.to_string(),
            grouped: None,
            row_by_row: false,
        })
    }

    pub(super) fn key_id(&self, row: &[Value]) -> KeyId {
        if let [i] = self.shape.key[..]
            && let Value::Int(v) = &row[i]
        {
            return KeyId::Int(*v);
        }
        KeyId::Text(key_identity(&self.shape.key_of(row)))
    }

    pub(super) fn key_of(&self, row: &[Value]) -> Vec<Value> {
        self.shape.key.iter().map(|&i| row[i].clone()).collect()
    }

    pub(super) fn row_json(&self, row: &[Value]) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        for (c, v) in self.shape.columns.iter().zip(row) {
            m.insert(c.clone(), v.to_json());
        }
        serde_json::Value::Object(m)
    }

    /// Columns compared: the spec's, not the hidden source key.
    pub(super) fn compared_len(&self) -> usize {
        self.shape.source_key.unwrap_or(self.shape.columns.len())
    }

    /// The compared columns with their target types, or which one's type
    /// the target does not say (a checksum plan needs every type).
    pub(super) fn compared_types(&self) -> std::result::Result<Vec<(&str, ColumnType)>, String> {
        let n = self.compared_len();
        self.shape.columns[..n]
            .iter()
            .zip(
                self.shape
                    .types
                    .iter()
                    .copied()
                    .chain(std::iter::repeat(None)),
            )
            .map(|(name, ty)| {
                ty.map(|ty| (name.as_str(), ty))
                    .ok_or_else(|| format!("the target does not say the type of column {name}"))
            })
            .collect()
    }

    /// The source key an (extra) target row was written from: its
    /// `_tern_source_key` parsed by the source key types, or, when the target
    /// key is a plain copy of the source key, the target key itself.
    pub(super) fn source_key_of_target(&self, row: &[Value]) -> Option<Vec<Value>> {
        let types = self.query.key_types();
        if let Some(i) = self.shape.source_key
            && let Value::Text(s) = &row[i]
        {
            let parts: Vec<&str> = s.split('\u{1f}').collect();
            if parts.len() == types.len() {
                let key: Option<Vec<Value>> = parts
                    .iter()
                    .zip(&types)
                    .map(|(p, t)| match t {
                        Some(t) => Value::Text((*p).to_string()).cast(*t).ok(),
                        None => Some(Value::Text((*p).to_string())),
                    })
                    .collect();
                if key.is_some() {
                    return key;
                }
            }
        }
        let cast = |v: Value, t: Option<ColumnType>| match t {
            Some(t) => v.clone().cast(t).unwrap_or(v),
            None => v,
        };
        if let Some(from) = &self.shape.key_from_source {
            let mut key = vec![Value::Null; types.len()];
            for (&j, v) in from.iter().zip(self.key_of(row)) {
                if let Some(slot) = key.get_mut(j) {
                    *slot = cast(v, types[j]);
                }
            }
            return Some(key);
        }
        self.aligned.then(|| {
            self.key_of(row)
                .into_iter()
                .zip(&types)
                .map(|(v, t)| match t {
                    Some(t) => v.clone().cast(*t).unwrap_or(v),
                    None => v,
                })
                .collect()
        })
    }

    /// Joins expected and actual rows by target key and compares them.
    /// `ord` numbers rows in the order met (expected first, then extras).
    pub(super) fn compare(
        &self,
        expected: Vec<Vec<Value>>,
        actual: Vec<Vec<Value>>,
        bucket: usize,
        ord: &mut u64,
        counts: &mut Counts,
        found: &mut Vec<Mismatch>,
    ) {
        let mut by_key: HashMap<KeyId, Vec<Value>> = HashMap::with_capacity(actual.len());
        for row in actual {
            by_key.insert(self.key_id(&row), row);
        }
        let n = self.compared_len();
        let names = &self.shape.columns[..n];
        for row in expected {
            *ord += 1;
            counts.compared += 1;
            let id = self.key_id(&row);
            let actual = by_key.remove(&id);
            let (kind, diffs) = match &actual {
                Some(t)
                    if row[..n]
                        .iter()
                        .zip(&t[..n])
                        .all(|(a, b)| compare::values_equal(a, b)) =>
                {
                    counts.matched += 1;
                    continue;
                }
                Some(t) => {
                    counts.different += 1;
                    let diffs = compare::diff_rows(names, &row[..n], &t[..n]);
                    (MismatchKind::Different, diffs)
                }
                None => {
                    counts.missing += 1;
                    (MismatchKind::Missing, Vec::new())
                }
            };
            found.push(self.mismatch(
                id,
                bucket,
                *ord,
                kind,
                &row,
                Some(&row),
                actual.as_deref(),
                diffs,
            ));
        }
        let mut extras: Vec<(KeyId, Vec<Value>)> = by_key.into_iter().collect();
        extras.sort_by(|a, b| {
            let ka = self.key_of(&a.1);
            let kb = self.key_of(&b.1);
            ka.iter()
                .zip(&kb)
                .find_map(|(x, y)| x.compare(y).filter(|o| o.is_ne()))
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        for (id, t) in extras {
            *ord += 1;
            counts.compared += 1;
            counts.extra += 1;
            found.push(self.mismatch(
                id,
                bucket,
                *ord,
                MismatchKind::Extra,
                &t,
                None,
                Some(&t),
                Vec::new(),
            ));
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn mismatch(
        &self,
        id: KeyId,
        bucket: usize,
        ord: u64,
        kind: MismatchKind,
        keyed: &[Value],
        expected: Option<&[Value]>,
        actual: Option<&[Value]>,
        diffs: Vec<compare::FieldDiff>,
    ) -> Mismatch {
        let source_key = match expected {
            Some(row) => self.source_key_of_target(row),
            None => self.source_key_of_target(keyed),
        };
        Mismatch {
            key_id: id.text(),
            bucket,
            ord,
            kind,
            target_key: self.key_of(keyed),
            source_key,
            diffs,
            source_row: expected.map(|r| self.row_json(r)),
            target_row: actual.map(|r| self.row_json(r)),
            resolved: false,
        }
    }

    /// Tells the run control where a bucket's full diff is.
    pub(super) fn report(
        &self,
        control: &RunControl,
        bucket: &Bucket,
        counts: &Counts,
        read: u64,
        chunks: u64,
        started: Instant,
    ) {
        let mut p = Progress::new(
            Task::Verify {
                table: self.table.clone(),
                bucket: Some(bucket.index),
            },
            Unit::Rows,
        );
        p.measure(
            counts.compared,
            read,
            Some(bucket.rows.max(counts.compared)),
            started.elapsed(),
        );
        p.steps = chunks;
        control.report(&p);
    }

    /// Stores a chunk's mismatches and the bucket's new progress in one
    /// transaction, so a resumed run neither loses nor double-counts them.
    pub(super) async fn commit_chunk(
        &self,
        bucket: usize,
        found: &[Mismatch],
        last: Option<&[Value]>,
        end: bool,
        counts: &Counts,
    ) -> Result<()> {
        let d = self.target.dialect();
        let mut statements = store::insert_mismatches(d, &self.run_id, found);
        statements.push(store::advance(d, &self.run_id, bucket, last, end, counts));
        self.target
            .transaction(
                &statements,
                &format!(
                    "store verification results of {} bucket {bucket}",
                    self.table
                ),
            )
            .await?;
        Ok(())
    }
}

/// Whether the target key columns are plain copies of the source order
/// columns, in order, with nothing that could change or merge keys.
fn aligned(spec: &TableSpec, pipeline: &Pipeline) -> bool {
    let Some(src) = &spec.source else {
        return false;
    };
    let order = src.order_columns();
    spec.transformers.is_empty()
        && spec.dedupe.is_none()
        && pipeline.shapes().len() == 1
        && order.len() == spec.key.len()
        && spec.key.iter().zip(&order).all(|(k, o)| {
            spec.column(k).is_some_and(|c| {
                !c.trim
                    && !c.lower
                    && matches!(&c.transform, Transform::Copy(s) if s == o)
                    && matches!(c.cast, None | Some(ColumnType::Int))
            })
        })
}

/// How the target computes a chunk's group sums.
#[derive(Debug)]
pub(super) struct GroupSums {
    /// The per-row `md5(canonical row)` in the target.
    pub(super) target_hash: String,
    /// The target types of the compared columns.
    pub(super) types: Vec<ColumnType>,
}
