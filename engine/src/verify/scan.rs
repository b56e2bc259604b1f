//! The verification engine: chunked full diff per bucket, key-set checks
//! (sample, incremental, repair) and the repair itself.

mod checksum;

use checksum::Side;

use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::compare;
use super::{
    Counts, Mismatch, MismatchKind, Mode, RepairReport, Scope, Stratum, VerifyOptions,
    VerifyReport, VerifyStatus, store,
};
use crate::buckets::{Bucket, Plan};
use crate::capture;
use crate::changelog::{self, Position};
use crate::chunk::{ChunkReader, KeyRange, SourceQuery};
use crate::connector::{Connector, Dialect, SOURCE_KEY_COLUMN};
use crate::error::{EngineError, Result};
use crate::link::Link;
use crate::progress::Progress;
use crate::spec::{TableSpec, Transform};
use crate::throttle::Throttle;
use crate::transform::{Pipeline, TableShape};
use crate::value::{ColumnType, Value, key_identity, source_key_text};

/// Keys per source read and target lookup in key-set checks.
const KEYS_PER_BATCH: usize = 1000;
/// Source rows per chunk of a sample scan (only key and stratum are kept).
const SAMPLE_SCAN_ROWS: usize = 20_000;
/// Changelog rows read per call of an incremental run.
const CHANGES_PER_READ: usize = 10_000;

/// Everything a verification task needs, owned, so buckets run in tasks.
#[derive(Clone)]
struct Ctx {
    table: String,
    source: Connector,
    target: Connector,
    query: Arc<SourceQuery>,
    pipeline: Arc<Pipeline>,
    shape: Arc<TableShape>,
    /// `SELECT <shape columns> FROM <target table>`.
    select: String,
    /// The target key is a copy of the source order columns.
    aligned: bool,
    /// A chunk's target rows are one key range: aligned, and the key sorts
    /// the same on both sides (integers, or one kind of database). A text
    /// key between MariaDB and PostgreSQL follows two collations, so its
    /// rows are looked up by key instead.
    range_reads: bool,
    chunk_rows: usize,
    run_id: String,
    /// The checksum fast path of a full diff, when the mapping allows it.
    checksums: Option<Arc<checksum::Checksums>>,
    /// Rows this run found equal by checksum.
    by_checksum: Arc<AtomicU64>,
    /// Why the checksum fast path is off.
    row_by_row_reason: Option<String>,
}

/// Identity of a target key within a run: an integer without allocation for
/// the usual one-integer key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum KeyId {
    Int(i64),
    Text(String),
}

impl KeyId {
    fn text(&self) -> String {
        match self {
            KeyId::Int(i) => format!("int:{i}"),
            KeyId::Text(s) => s.clone(),
        }
    }
}

impl Ctx {
    async fn new(link: &Link, table: &str, run_id: &str, row_by_row: bool) -> Result<Ctx> {
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
        let mut ctx = Ctx {
            aligned,
            range_reads: aligned && (int_keys || same_kind),
            table: table.to_string(),
            source: link.source().clone(),
            target,
            query,
            pipeline,
            shape,
            select,
            chunk_rows: link.spec().chunk_rows,
            run_id: run_id.to_string(),
            checksums: None,
            by_checksum: Arc::new(AtomicU64::new(0)),
            row_by_row_reason: None,
        };
        if row_by_row {
            ctx.row_by_row_reason = Some("asked to read every row".into());
        } else {
            match checksum::Checksums::plan(&ctx, &spec) {
                Ok(c) => ctx.checksums = Some(Arc::new(c)),
                Err(why) => {
                    tracing::info!(table, %why, "a full diff of this table reads every row");
                    ctx.row_by_row_reason = Some(why);
                }
            }
        }
        Ok(ctx)
    }

    fn key_id(&self, row: &[Value]) -> KeyId {
        if let [i] = self.shape.key[..]
            && let Value::Int(v) = &row[i]
        {
            return KeyId::Int(*v);
        }
        KeyId::Text(key_identity(&self.shape.key_of(row)))
    }

    fn key_of(&self, row: &[Value]) -> Vec<Value> {
        self.shape.key.iter().map(|&i| row[i].clone()).collect()
    }

    fn row_json(&self, row: &[Value]) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        for (c, v) in self.shape.columns.iter().zip(row) {
            m.insert(c.clone(), v.to_json());
        }
        serde_json::Value::Object(m)
    }

    /// Columns compared: the spec's, not the hidden source key.
    fn compared_len(&self) -> usize {
        self.shape.source_key.unwrap_or(self.shape.columns.len())
    }

    /// The source key an (extra) target row was written from: its
    /// `_tern_source_key` parsed by the source key types, or, when the target
    /// key is the source key, the target key itself.
    fn source_key_of_target(&self, row: &[Value]) -> Option<Vec<Value>> {
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
    fn compare(
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
            match by_key.remove(&id) {
                Some(t) => {
                    if row[..n]
                        .iter()
                        .zip(&t[..n])
                        .all(|(a, b)| compare::values_equal(a, b))
                    {
                        counts.matched += 1;
                    } else {
                        counts.different += 1;
                        let diffs = compare::diff_rows(names, &row[..n], &t[..n]);
                        found.push(self.mismatch(
                            id,
                            bucket,
                            *ord,
                            MismatchKind::Different,
                            &row,
                            Some(&row),
                            Some(&t),
                            diffs,
                        ));
                    }
                }
                None => {
                    counts.missing += 1;
                    found.push(self.mismatch(
                        id,
                        bucket,
                        *ord,
                        MismatchKind::Missing,
                        &row,
                        Some(&row),
                        None,
                        Vec::new(),
                    ));
                }
            }
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
    fn mismatch(
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

    /// Tells the caller's progress callback where a bucket's full diff is.
    fn report(
        &self,
        opts: &VerifyOptions,
        bucket: &Bucket,
        counts: &Counts,
        read: u64,
        chunks: u64,
        started: Instant,
    ) {
        if let Some(cb) = &opts.progress {
            cb(&Progress::compute(
                &self.table,
                bucket.index,
                counts.compared,
                bucket.rows.max(counts.compared),
                read,
                chunks,
                started.elapsed(),
            ));
        }
    }

    /// Stores a chunk's mismatches and the bucket's new progress in one
    /// transaction, so a resumed run neither loses nor double-counts them.
    async fn commit_chunk(
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
            .await
    }

    /// The target key columns, quoted.
    fn target_key_columns(&self) -> Vec<String> {
        let d = self.target.dialect();
        self.shape
            .key
            .iter()
            .map(|&i| d.quote(&self.shape.columns[i]))
            .collect()
    }

    /// A source key value as the target stores it.
    fn target_key_value(&self, v: &Value, i: usize) -> Value {
        match self.shape.types.get(self.shape.key[i]).copied().flatten() {
            Some(t) => v.clone().cast(t).unwrap_or_else(|_| v.clone()),
            None => v.clone(),
        }
    }

    /// Target rows in the key range `(after, upto]` (aligned mode), within the
    /// bucket range `range` on the first key column.
    async fn target_range(
        &self,
        range: &KeyRange,
        after: Option<&[Value]>,
        upto: Option<&[Value]>,
    ) -> Result<Vec<Vec<Value>>> {
        let (where_, params) = range_where(
            self.target.dialect(),
            &self.target_key_columns(),
            range,
            after,
            upto,
            &|v, i| self.target_key_value(v, i),
        );
        self.target_rows(&where_, &params).await
    }

    /// Target rows matching a ` WHERE …`.
    async fn target_rows(&self, where_: &str, params: &[Value]) -> Result<Vec<Vec<Value>>> {
        let (_, rows) = self
            .target
            .fetch(
                &format!("{}{where_}", self.select),
                params,
                &format!("read {} target rows to verify", self.table),
            )
            .await?;
        Ok(rows)
    }

    /// The expected rows of the source rows matching a ` WHERE …`, in key
    /// order, through the transform.
    async fn source_rows(&self, where_: &str, params: &[Value]) -> Result<Vec<Vec<Value>>> {
        let d = self.source.dialect();
        let keys: Vec<String> = self.query.key.iter().map(|c| d.quote(c)).collect();
        let (_, rows) = self
            .source
            .fetch(
                &format!(
                    "SELECT * FROM {}{where_} ORDER BY {}",
                    self.query.from_clause(),
                    keys.join(", ")
                ),
                params,
                &format!("read {} source rows to verify", self.table),
            )
            .await?;
        self.expected(rows)
    }

    /// Target rows with the given target keys or written from the given
    /// source keys (`_tern_source_key`).
    async fn target_lookup(
        &self,
        target_keys: &[Vec<Value>],
        source_keys: &[String],
    ) -> Result<Vec<Vec<Value>>> {
        let d = self.target.dialect();
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        let ctx = format!("look up {} target rows to verify", self.table);
        for batch in target_keys.chunks(KEYS_PER_BATCH) {
            let (sql, params) = keys_where(d, &self.shape, batch);
            let (_, rows) = self
                .target
                .fetch(&format!("{}{sql}", self.select), &params, &ctx)
                .await?;
            for r in rows {
                if seen.insert(self.key_id(&r)) {
                    out.push(r);
                }
            }
        }
        if self.shape.source_key.is_some() {
            for batch in source_keys.chunks(KEYS_PER_BATCH) {
                let marks: Vec<String> = (1..=batch.len()).map(|i| d.placeholder(i)).collect();
                let params: Vec<Value> = batch.iter().map(|s| Value::Text(s.clone())).collect();
                let (_, rows) = self
                    .target
                    .fetch(
                        &format!(
                            "{} WHERE {} IN ({})",
                            self.select,
                            d.quote(SOURCE_KEY_COLUMN),
                            marks.join(", ")
                        ),
                        &params,
                        &ctx,
                    )
                    .await?;
                for r in rows {
                    if seen.insert(self.key_id(&r)) {
                        out.push(r);
                    }
                }
            }
        }
        Ok(out)
    }

    /// The expected main-table rows of source rows (the bulk load's transform).
    fn expected(&self, rows: Vec<Vec<Value>>) -> Result<Vec<Vec<Value>>> {
        let mut out = self.pipeline.apply(rows)?;
        let i = out.tables.iter().position(|t| t.shape.name == self.table);
        Ok(i.map(|i| std::mem::take(&mut out.tables[i].rows))
            .unwrap_or_default())
    }

    /// Checks a set of source keys: reads them from the source (dropping rows
    /// whose bucket value is outside `range`), transforms, looks the target
    /// up by expected key and by source key, compares.
    #[allow(clippy::too_many_arguments)]
    async fn check_keys(
        &self,
        keys: &[Vec<Value>],
        range: Option<&KeyRange>,
        extra_target_keys: &[Vec<Value>],
        plan: Option<&Plan>,
        throttle: &dyn Throttle,
        cancel: &CancellationToken,
        counts: &mut Counts,
        found: &mut Vec<Mismatch>,
    ) -> Result<bool> {
        let bucket_idx = self.query.bucket_index();
        let mut ord = 0u64;
        for (n, batch) in keys.chunks(KEYS_PER_BATCH).enumerate() {
            if cancel.is_cancelled() {
                return Ok(false);
            }
            throttle.admit(batch.len() as u64).await;
            let (sql, params) = self.query.keys_sql(batch);
            let (_, mut rows) = self
                .source
                .fetch(
                    &sql,
                    &params,
                    &format!("read {} source rows by key to verify", self.table),
                )
                .await?;
            if let (Some(r), Some(b)) = (range, bucket_idx) {
                rows.retain(|row| r.contains(&row[b]));
            }
            let bucket = match (plan, bucket_idx, rows.first()) {
                (Some(p), Some(b), Some(row)) => p
                    .buckets
                    .iter()
                    .find(|x| x.range.contains(&row[b]))
                    .map_or(0, |x| x.index),
                _ => 0,
            };
            let source_texts: Vec<String> = batch.iter().map(|k| source_key_text(k)).collect();
            let expected = self.expected(rows)?;
            let mut wanted: Vec<Vec<Value>> = expected.iter().map(|r| self.key_of(r)).collect();
            if n == 0 {
                wanted.extend(extra_target_keys.iter().cloned());
            }
            let actual = self.target_lookup(&wanted, &source_texts).await?;
            self.compare(expected, actual, bucket, &mut ord, counts, found);
        }
        if keys.is_empty() && !extra_target_keys.is_empty() {
            let actual = self.target_lookup(extra_target_keys, &[]).await?;
            self.compare(Vec::new(), actual, 0, &mut ord, counts, found);
        }
        Ok(true)
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

/// ` WHERE …` of the key range `(after, upto]` within the bucket range
/// `range` of the first key column (`cols`, quoted), with its parameters.
fn range_where(
    d: Dialect,
    cols: &[String],
    range: &KeyRange,
    after: Option<&[Value]>,
    upto: Option<&[Value]>,
    cast: &dyn Fn(&Value, usize) -> Value,
) -> (String, Vec<Value>) {
    let mut params = Vec::new();
    let mut conds = Vec::new();
    match after {
        Some(a) => conds.push(tuple_cmp(d, cols, ">", a, &mut params, cast)),
        None => {
            if let Some(lo) = &range.lo {
                params.push(cast(lo, 0));
                conds.push(format!("{} >= {}", cols[0], d.placeholder(params.len())));
            }
        }
    }
    match upto {
        Some(u) => conds.push(tuple_cmp(d, cols, "<=", u, &mut params, cast)),
        None => {
            if let Some(hi) = &range.hi {
                params.push(cast(hi, 0));
                conds.push(format!("{} < {}", cols[0], d.placeholder(params.len())));
            }
        }
    }
    if conds.is_empty() {
        (String::new(), params)
    } else {
        (format!(" WHERE {}", conds.join(" AND ")), params)
    }
}

/// `(a, b) > (x, y)` expanded (works on every database and uses the index).
fn tuple_cmp(
    d: Dialect,
    cols: &[String],
    op: &str,
    vals: &[Value],
    params: &mut Vec<Value>,
    cast: &dyn Fn(&Value, usize) -> Value,
) -> String {
    let strict = if op == ">" { ">" } else { "<" };
    let last = cols.len() - 1;
    let mut expr = String::new();
    for i in 0..last {
        params.push(cast(&vals[i], i));
        let a = d.placeholder(params.len());
        params.push(cast(&vals[i], i));
        let b = d.placeholder(params.len());
        expr.push_str(&format!(
            "({c} {strict} {a} OR ({c} = {b} AND ",
            c = cols[i]
        ));
    }
    params.push(cast(&vals[last], last));
    expr.push_str(&format!(
        "{} {op} {}",
        cols[last],
        d.placeholder(params.len())
    ));
    expr.push_str(&"))".repeat(last));
    format!("({expr})")
}

/// ` WHERE key IN (…)` (one column) or an OR of ANDs, with parameters.
fn keys_where(d: Dialect, shape: &TableShape, keys: &[Vec<Value>]) -> (String, Vec<Value>) {
    let cast = |v: &Value, col: usize| match shape.types.get(col).copied().flatten() {
        Some(t) => v.clone().cast(t).unwrap_or_else(|_| v.clone()),
        None => v.clone(),
    };
    if let [col] = shape.key[..] {
        let params: Vec<Value> = keys
            .iter()
            .filter_map(|k| k.first().map(|v| cast(v, col)))
            .collect();
        let marks: Vec<String> = (1..=params.len()).map(|i| d.placeholder(i)).collect();
        return (
            format!(
                " WHERE {} IN ({})",
                d.quote(&shape.columns[col]),
                marks.join(", ")
            ),
            params,
        );
    }
    let mut params = Vec::new();
    let mut ors = Vec::new();
    for k in keys {
        let parts: Vec<String> = shape
            .key
            .iter()
            .zip(k)
            .map(|(&c, v)| {
                params.push(cast(v, c));
                format!(
                    "{} = {}",
                    d.quote(&shape.columns[c]),
                    d.placeholder(params.len())
                )
            })
            .collect();
        ors.push(format!("({})", parts.join(" AND ")));
    }
    (format!(" WHERE {}", ors.join(" OR ")), params)
}

fn new_run_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn scope_text(s: Scope) -> String {
    match s {
        Scope::All => "all".into(),
        Scope::Bucket(n) => format!("bucket {n}"),
    }
}

fn mode_text(m: &Mode) -> String {
    match m {
        Mode::Full => "full".into(),
        Mode::Sample {
            per_stratum,
            strata,
        } => format!("sample {per_stratum} per {strata}"),
        Mode::SinceLast => "since-last".into(),
    }
}

async fn plan_of(link: &Link, table: &str) -> Result<Plan> {
    match link.stored_plan(table).await? {
        Some(p) => Ok(p),
        None => link.plan(table, None).await,
    }
}

fn pick_buckets(plan: &Plan, scope: Scope) -> Result<Vec<Bucket>> {
    match scope {
        Scope::All => Ok(plan.buckets.clone()),
        Scope::Bucket(n) => plan
            .buckets
            .iter()
            .find(|b| b.index == n)
            .cloned()
            .map(|b| vec![b])
            .ok_or_else(|| {
                EngineError::schema(
                    &plan.table,
                    format!(
                        "no bucket {n}: the plan has buckets 0..{}",
                        plan.buckets.len().saturating_sub(1)
                    ),
                )
            }),
    }
}

pub(super) async fn run(link: &Link, opts: &VerifyOptions) -> Result<VerifyReport> {
    let started = Instant::now();
    let target = link.target();
    store::ensure(target).await?;
    let plan = plan_of(link, &opts.table).await?;
    let buckets = pick_buckets(&plan, opts.scope)?;
    let range = match opts.scope {
        Scope::All => None,
        Scope::Bucket(_) => buckets.first().map(|b| b.range.clone()),
    };

    // A resumed run keeps its id, position and per-bucket progress.
    let (run_id, position) = match &opts.resume {
        Some(id) => {
            let run = store::load_run(target, id)
                .await?
                .ok_or_else(|| super::unknown_run(id))?;
            if run.mode != "full" || run.table != opts.table {
                return Err(EngineError::Spec {
                    at: format!("run {id}"),
                    message: format!(
                        "only a full diff can be resumed, of its own table; run {id} is `{}` of {}",
                        run.mode, run.table
                    ),
                });
            }
            (id.clone(), run.position.clone())
        }
        None => {
            let id = new_run_id();
            // Taken before the first read, like the bulk load's watermark:
            // a change committed after it is in the next incremental run.
            let position = match &opts.mode {
                Mode::SinceLast => None,
                _ => capture::head_position(link.source())
                    .await?
                    .map(|p| p.to_string()),
            };
            store::insert_run(
                target,
                &store::RunRow {
                    run_id: id.clone(),
                    table: opts.table.clone(),
                    scope: scope_text(opts.scope),
                    mode: mode_text(&opts.mode),
                    status: "running".into(),
                    started_at: crate::connector::process_clock_micros(),
                    finished_at: None,
                    position: position.clone(),
                    counts: Counts::default(),
                    keys_read: 0,
                },
            )
            .await?;
            (id, position)
        }
    };
    let ctx = Ctx::new(link, &opts.table, &run_id, opts.row_by_row).await?;
    tracing::info!(run = %run_id, table = %opts.table, mode = %mode_text(&opts.mode),
        scope = %scope_text(opts.scope), aligned = ctx.aligned, range_reads = ctx.range_reads,
        checksums = ctx.checksums.is_some(), "verification starts");

    let mut counts = Counts::default();
    let mut strata = Vec::new();
    let mut position = position;
    let (keys_read, complete) = match &opts.mode {
        Mode::Full => full(&ctx, buckets, opts, &mut counts).await?,
        Mode::Sample {
            per_stratum,
            strata: column,
        } => {
            sample(
                &ctx,
                &plan,
                range.as_ref(),
                *per_stratum,
                column,
                opts,
                &mut counts,
                &mut strata,
            )
            .await?
        }
        Mode::SinceLast => {
            let (n, ok, next) =
                since_last(link, &ctx, &plan, range.as_ref(), opts, &mut counts).await?;
            position = Some(next);
            (n, ok)
        }
    };
    let status = if complete {
        VerifyStatus::Completed
    } else {
        VerifyStatus::Cancelled
    };
    if opts.mode == Mode::SinceLast {
        set_position(target, &run_id, position.as_deref()).await?;
    }
    store::finish_run(
        target,
        &run_id,
        status.as_str(),
        &counts,
        keys_read,
        complete.then(crate::connector::process_clock_micros),
    )
    .await?;
    let tree = super::mismatch_tree(target, &run_id).await?;
    tracing::info!(run = %run_id, compared = counts.compared, matched = counts.matched,
        missing = counts.missing, extra = counts.extra, different = counts.different,
        accuracy = %counts.accuracy_text(), "verification ends");
    Ok(VerifyReport {
        run_id,
        table: opts.table.clone(),
        status,
        counts,
        keys_read,
        rows_by_checksum: ctx.by_checksum.load(Ordering::Relaxed),
        row_by_row_reason: match opts.mode {
            Mode::Full => ctx.row_by_row_reason.clone(),
            _ => None,
        },
        position,
        elapsed: started.elapsed(),
        tree,
        strata,
    })
}

async fn set_position(target: &Connector, run_id: &str, position: Option<&str>) -> Result<()> {
    let d = target.dialect();
    target
        .execute(
            &format!(
                "UPDATE {} SET position = {} WHERE run_id = {}",
                d.quote(store::RUNS_TABLE),
                d.placeholder(1),
                d.placeholder(2)
            ),
            &[
                position.map_or(Value::Null, |p| Value::Text(p.to_string())),
                Value::Text(run_id.to_string()),
            ],
            "record the changelog position of a verification run",
        )
        .await
        .map(|_| ())
}

/// Full diff of the buckets, `parallelism` at a time, each in its own task.
async fn full(
    ctx: &Ctx,
    buckets: Vec<Bucket>,
    opts: &VerifyOptions,
    counts: &mut Counts,
) -> Result<(u64, bool)> {
    let sem = Arc::new(tokio::sync::Semaphore::new(opts.parallelism.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for b in buckets {
        let ctx = ctx.clone();
        let opts = opts.clone();
        let sem = sem.clone();
        tasks.spawn(async move {
            let _permit = sem.acquire_owned().await;
            store::start_progress(&ctx.target, &ctx.run_id, b.index).await?;
            let progress = store::load_progress(&ctx.target, &ctx.run_id, b.index)
                .await?
                .unwrap_or_default();
            if progress.done {
                return Ok((progress.counts, true, 0));
            }
            match ctx.checksums.clone() {
                Some(sums) => full_bucket_by_checksums(&ctx, &sums, &b, &opts, progress).await,
                None => full_bucket(&ctx, &b, &opts, progress).await,
            }
        });
    }
    let mut complete = true;
    let mut read = 0;
    let mut first_err = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok((c, done, rows))) => {
                counts.add(&c);
                read += rows;
                complete &= done;
            }
            Ok(Err(e)) => {
                opts.cancel.cancel();
                first_err.get_or_insert(e);
            }
            Err(e) => {
                opts.cancel.cancel();
                first_err.get_or_insert(EngineError::Apply {
                    what: format!("verify {}", ctx.table),
                    message: format!("a bucket task failed: {e}"),
                });
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok((read, complete)),
    }
}

/// A chunk read and transformed by the reader task.
struct ReadChunk {
    expected: Vec<Vec<Value>>,
    rows: u64,
    last: Option<Vec<Value>>,
    end: bool,
}

/// Compares one bucket chunk by chunk from its progress (not done yet).
/// Returns the bucket's counts (earlier attempts included), whether it
/// finished, and the source rows this attempt read.
async fn full_bucket(
    ctx: &Ctx,
    bucket: &Bucket,
    opts: &VerifyOptions,
    progress: store::BucketProgress,
) -> Result<(Counts, bool, u64)> {
    let started = Instant::now();
    let mut counts = progress.counts;
    let reader = ChunkReader::new(
        ctx.source.clone(),
        ctx.query.clone(),
        bucket.range.clone(),
        progress.last_key.clone(),
        ctx.chunk_rows,
        bucket.index,
    );
    let (tx, mut rx) = mpsc::channel::<Result<ReadChunk>>(1);
    let reader_task = tokio::spawn(read_chunks(
        reader,
        ctx.pipeline.clone(),
        ctx.table.clone(),
        opts.throttle.clone(),
        opts.cancel.clone(),
        ctx.chunk_rows as u64,
        tx,
    ));
    let mut after = progress.last_key.clone();
    let mut ord = counts.compared;
    let mut read = 0u64;
    let mut chunks = 0u64;
    let result = loop {
        let next = tokio::select! {
            biased;
            _ = opts.cancel.cancelled() => None,
            n = rx.recv() => n,
        };
        let Some(item) = next else {
            break Ok(false);
        };
        let chunk = match item {
            Ok(c) => c,
            Err(e) => break Err(e),
        };
        let mut found = Vec::new();
        let mut chunk_counts = Counts::default();
        let actual = if ctx.range_reads {
            let upto = if chunk.end {
                None
            } else {
                chunk.last.as_deref()
            };
            ctx.target_range(&bucket.range, after.as_deref(), upto)
                .await
        } else {
            let wanted: Vec<Vec<Value>> = chunk.expected.iter().map(|r| ctx.key_of(r)).collect();
            let sources: Vec<String> = match ctx.shape.source_key {
                Some(i) => {
                    let mut s: Vec<String> = chunk
                        .expected
                        .iter()
                        .filter_map(|r| match &r[i] {
                            Value::Text(t) => Some(t.clone()),
                            _ => None,
                        })
                        .collect();
                    s.dedup();
                    s
                }
                None => Vec::new(),
            };
            ctx.target_lookup(&wanted, &sources).await
        };
        let actual = match actual {
            Ok(a) => a,
            Err(e) => break Err(e),
        };
        ctx.compare(
            chunk.expected,
            actual,
            bucket.index,
            &mut ord,
            &mut chunk_counts,
            &mut found,
        );
        counts.add(&chunk_counts);
        if let Err(e) = ctx
            .commit_chunk(
                bucket.index,
                &found,
                chunk.last.as_deref(),
                chunk.end,
                &counts,
            )
            .await
        {
            break Err(e);
        }
        if chunk.last.is_some() {
            after = chunk.last.clone();
        }
        read += chunk.rows;
        chunks += 1;
        ctx.report(opts, bucket, &counts, read, chunks, started);
        if chunk.end {
            break Ok(true);
        }
    };
    drop(rx);
    reader_task.abort();
    result.map(|done| (counts, done, read))
}

/// Compares one bucket chunk by chunk from its progress by checksums (see
/// [`checksum`]), reading row by row only the chunks whose checksums differ.
/// Returns what [`full_bucket`] returns.
async fn full_bucket_by_checksums(
    ctx: &Ctx,
    sums: &checksum::Checksums,
    bucket: &Bucket,
    opts: &VerifyOptions,
    progress: store::BucketProgress,
) -> Result<(Counts, bool, u64)> {
    let started = Instant::now();
    let mut counts = progress.counts;
    let range = &bucket.range;
    // Groups of a hundredth of a chunk (at least 10 rows): a difference
    // costs reading its group, not its chunk.
    let group_rows = (ctx.chunk_rows / 100).max(10);
    let limit = group_rows * (ctx.chunk_rows / group_rows).max(1);
    let mut after = progress.last_key;
    let mut read = 0u64;
    let mut chunks = 0u64;
    loop {
        tokio::select! {
            biased;
            _ = opts.cancel.cancelled() => return Ok((counts, false, read)),
            _ = opts.throttle.admit(limit as u64) => {}
        }
        let cut = sums
            .cut(ctx, range, after.as_deref(), limit, group_rows)
            .await?;
        let end = cut.upto.is_none();
        let (source, target) = tokio::try_join!(
            sums.sums(ctx, Side::Source, range, after.as_deref(), &cut),
            sums.sums(ctx, Side::Target, range, after.as_deref(), &cut),
        )?;
        let (differ, equal_rows) = checksum::Cut::differing(&source, &target);
        counts.compared += equal_rows;
        counts.matched += equal_rows;
        ctx.by_checksum.fetch_add(equal_rows, Ordering::Relaxed);
        let mut found = Vec::new();
        if !differ.is_empty() {
            // Every differing group of the chunk in one read per side.
            let (sw, sp) = sums.groups_where(ctx, Side::Source, range, &cut, &differ);
            let (tw, tp) = sums.groups_where(ctx, Side::Target, range, &cut, &differ);
            let (expected, actual) =
                tokio::try_join!(ctx.source_rows(&sw, &sp), ctx.target_rows(&tw, &tp))?;
            let mut ord = counts.compared;
            let mut group_counts = Counts::default();
            ctx.compare(
                expected,
                actual,
                bucket.index,
                &mut ord,
                &mut group_counts,
                &mut found,
            );
            counts.add(&group_counts);
        }
        let upto = cut.upto.map(|k| vec![Value::Int(k)]);
        let chunk_rows: u64 = source.values().map(|s| s.rows).sum();
        // The last chunk's position stays the previous one: `end` marks it done.
        let last = upto.as_deref().or(after.as_deref());
        ctx.commit_chunk(bucket.index, &found, last, end, &counts)
            .await?;
        read += chunk_rows;
        chunks += 1;
        ctx.report(opts, bucket, &counts, read, chunks, started);
        if end {
            return Ok((counts, true, read));
        }
        after = upto;
    }
}

/// Reads chunks (asking the throttle first) and transforms them.
async fn read_chunks(
    mut reader: ChunkReader,
    pipeline: Arc<Pipeline>,
    table: String,
    throttle: Arc<dyn Throttle>,
    cancel: CancellationToken,
    chunk_rows: u64,
    tx: mpsc::Sender<Result<ReadChunk>>,
) {
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = throttle.admit(chunk_rows) => {}
        }
        let item = match reader.next_chunk().await {
            Ok(None) => return,
            Ok(Some(mut chunk)) => {
                let rows = std::mem::take(&mut chunk.rows);
                let n = rows.len() as u64;
                pipeline.apply(rows).map(|mut out| {
                    let i = out.tables.iter().position(|t| t.shape.name == table);
                    ReadChunk {
                        expected: i
                            .map(|i| std::mem::take(&mut out.tables[i].rows))
                            .unwrap_or_default(),
                        rows: n,
                        last: chunk.last,
                        end: chunk.end,
                    }
                })
            }
            Err(e) => Err(e),
        };
        let stop = item.as_ref().map_or(true, |c| c.end);
        if tx.send(item).await.is_err() || stop {
            return;
        }
    }
}

/// Stores a key-set check's mismatches and returns nothing else.
async fn store_found(ctx: &Ctx, found: &[Mismatch]) -> Result<()> {
    let statements = store::insert_mismatches(ctx.target.dialect(), &ctx.run_id, found);
    for chunk in statements.chunks(20) {
        ctx.target
            .transaction(
                chunk,
                &format!("store verification results of {}", ctx.table),
            )
            .await?;
    }
    Ok(())
}

/// Stable 64-bit FNV-1a, for the deterministic sample.
fn stable_hash(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[allow(clippy::too_many_arguments)]
async fn sample(
    ctx: &Ctx,
    plan: &Plan,
    range: Option<&KeyRange>,
    per_stratum: usize,
    column: &str,
    opts: &VerifyOptions,
    counts: &mut Counts,
    strata: &mut Vec<Stratum>,
) -> Result<(u64, bool)> {
    let Some(col) = ctx.query.columns.iter().position(|c| c.name == column) else {
        return Err(EngineError::schema(
            &ctx.table,
            format!(
                "the source has no column `{column}` to take strata from (its columns: {})",
                ctx.query
                    .columns
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    };
    if per_stratum == 0 {
        return Err(EngineError::schema(
            &ctx.table,
            "a sample needs at least 1 key per stratum",
        ));
    }
    // Per stratum, the `per_stratum` keys with the smallest hash (a max-heap
    // of the best so far): deterministic, and spread over the key space.
    let mut heaps: HashMap<String, BinaryHeap<(u64, String)>> = HashMap::new();
    let mut keys_by_text: HashMap<String, Vec<Value>> = HashMap::new();
    let mut reader = ChunkReader::new(
        ctx.source.clone(),
        ctx.query.clone(),
        range.cloned().unwrap_or_else(KeyRange::all),
        None,
        SAMPLE_SCAN_ROWS,
        0,
    );
    loop {
        if opts.cancel.is_cancelled() {
            return Ok((0, false));
        }
        let Some(chunk) = reader.next_chunk().await? else {
            break;
        };
        for row in &chunk.rows {
            let key = ctx.query.key_of(row);
            let text = source_key_text(&key);
            let h = stable_hash(&text);
            let heap = heaps.entry(row[col].canonical_text()).or_default();
            if heap.len() < per_stratum {
                heap.push((h, text.clone()));
                keys_by_text.insert(text, key);
            } else if heap.peek().is_some_and(|top| (h, &text) < (top.0, &top.1)) {
                if let Some((_, out)) = heap.pop() {
                    keys_by_text.remove(&out);
                }
                heap.push((h, text.clone()));
                keys_by_text.insert(text, key);
            }
        }
        if chunk.end {
            break;
        }
    }
    let mut names: Vec<String> = heaps.keys().cloned().collect();
    names.sort();
    let mut read = 0u64;
    let mut found = Vec::new();
    for name in names {
        let mut picked: Vec<(u64, String)> = heaps.remove(&name).unwrap_or_default().into_vec();
        picked.sort();
        let keys: Vec<Vec<Value>> = picked
            .into_iter()
            .filter_map(|(_, t)| keys_by_text.remove(&t))
            .collect();
        read += keys.len() as u64;
        let mut c = Counts::default();
        let done = ctx
            .check_keys(
                &keys,
                range,
                &[],
                Some(plan),
                opts.throttle.as_ref(),
                &opts.cancel,
                &mut c,
                &mut found,
            )
            .await?;
        counts.add(&c);
        strata.push(Stratum {
            value: name,
            counts: c,
        });
        if !done {
            store_found(ctx, &found).await?;
            return Ok((read, false));
        }
    }
    dedupe_found(&mut found);
    store_found(ctx, &found).await?;
    Ok((read, true))
}

/// One stored row per key (a key could be met in two batches).
fn dedupe_found(found: &mut Vec<Mismatch>) {
    let mut seen = HashSet::new();
    found.retain(|m| seen.insert(m.key_id.clone()));
}

async fn since_last(
    link: &Link,
    ctx: &Ctx,
    plan: &Plan,
    range: Option<&KeyRange>,
    opts: &VerifyOptions,
    counts: &mut Counts,
) -> Result<(u64, bool, String)> {
    let Some(prev) = store::last_positioned_run(&ctx.target, &ctx.table).await? else {
        return Err(EngineError::Spec {
            at: format!("verify {} --since-last", ctx.table),
            message: "no earlier completed verification of this table has a changelog position: \
                      install change capture, then run a full verification first"
                .into(),
        });
    };
    let from = prev.position.clone().unwrap_or_default();
    let mut at: Position = from.parse().map_err(|m: String| EngineError::Checkpoint {
        table: ctx.table.clone(),
        bucket: 0,
        message: format!(
            "run {} has an unreadable changelog position: {m}",
            prev.run_id
        ),
    })?;
    let mut seen = HashSet::new();
    let mut keys = Vec::new();
    loop {
        let batch = changelog::changed_keys_since(link, &ctx.table, &at, CHANGES_PER_READ).await?;
        for k in batch.keys {
            if seen.insert(key_identity(&k.iter().collect::<Vec<_>>())) {
                keys.push(k);
            }
        }
        at = batch.next;
        if batch.at_head {
            break;
        }
    }
    tracing::info!(table = %ctx.table, since = %from, keys = keys.len(), "incremental verification");
    let mut found = Vec::new();
    let done = ctx
        .check_keys(
            &keys,
            range,
            &[],
            Some(plan),
            opts.throttle.as_ref(),
            &opts.cancel,
            counts,
            &mut found,
        )
        .await?;
    dedupe_found(&mut found);
    store_found(ctx, &found).await?;
    Ok((keys.len() as u64, done, at.to_string()))
}

pub(super) async fn repair(
    link: &Link,
    run_id: &str,
    throttle: Arc<dyn Throttle>,
    cancel: CancellationToken,
) -> Result<RepairReport> {
    let target = link.target();
    store::ensure(target).await?;
    let run = store::load_run(target, run_id)
        .await?
        .ok_or_else(|| super::unknown_run(run_id))?;
    let mut open = Vec::new();
    let page = 10_000;
    loop {
        let batch = store::list_mismatches(target, run_id, open.len() as u64, page, true).await?;
        let n = batch.len();
        open.extend(batch);
        if (n as u64) < page {
            break;
        }
    }
    let ctx = Ctx::new(link, &run.table, run_id, true).await?;
    let mut report = RepairReport {
        run_id: run_id.to_string(),
        mismatches: open.len() as u64,
        keys_applied: 0,
        rows_written: 0,
        keys_deleted: 0,
        resolved: 0,
        still_open: 0,
        counts: run.counts,
    };
    if open.is_empty() {
        return Ok(report);
    }
    // 1. Re-copy through the bulk load's own keyed path.
    let keys = super::repair_keys(&run.table, &open);
    for batch in keys.keys.chunks(5 * KEYS_PER_BATCH) {
        if cancel.is_cancelled() {
            break;
        }
        throttle.admit(batch.len() as u64).await;
        let r = crate::apply::apply_keys(
            link,
            &[crate::apply::TableKeys {
                table: run.table.clone(),
                keys: batch.to_vec(),
            }],
        )
        .await?;
        report.keys_applied += r.keys;
        report.rows_written += r.rows_written;
        report.keys_deleted += r.keys_deleted;
    }
    // 2. Re-verify exactly those keys (and the target keys of extras no
    //    source key is known for).
    let orphan_keys: Vec<Vec<Value>> = open
        .iter()
        .filter(|m| m.source_key.is_none())
        .map(|m| m.target_key.clone())
        .collect();
    let mut counts = Counts::default();
    let mut again = Vec::new();
    ctx.check_keys(
        &keys.keys,
        None,
        &orphan_keys,
        None,
        throttle.as_ref(),
        &cancel,
        &mut counts,
        &mut again,
    )
    .await?;
    let still: HashMap<String, Mismatch> =
        again.into_iter().map(|m| (m.key_id.clone(), m)).collect();
    // 3. Update the stored mismatches and the run's counts.
    let mut updated = Vec::with_capacity(open.len());
    let mut c = run.counts;
    for m in open {
        match still.get(&m.key_id) {
            Some(now) => {
                report.still_open += 1;
                let mut keep = now.clone();
                keep.bucket = m.bucket;
                keep.ord = m.ord;
                if keep.kind != m.kind {
                    dec(&mut c, m.kind);
                    inc(&mut c, keep.kind);
                }
                updated.push(keep);
            }
            None => {
                report.resolved += 1;
                dec(&mut c, m.kind);
                if m.kind == MismatchKind::Extra {
                    c.compared = c.compared.saturating_sub(1);
                } else {
                    c.matched += 1;
                }
                let mut done = m;
                done.resolved = true;
                updated.push(done);
            }
        }
    }
    store_found(&ctx, &updated).await?;
    let status = run.status.clone();
    store::finish_run(target, run_id, &status, &c, run.keys_read, run.finished_at).await?;
    report.counts = c;
    tracing::info!(run = %run_id, resolved = report.resolved, still_open = report.still_open,
        accuracy = %c.accuracy_text(), "repair ends");
    Ok(report)
}

fn dec(c: &mut Counts, k: MismatchKind) {
    match k {
        MismatchKind::Missing => c.missing = c.missing.saturating_sub(1),
        MismatchKind::Extra => c.extra = c.extra.saturating_sub(1),
        MismatchKind::Different => c.different = c.different.saturating_sub(1),
    }
}

fn inc(c: &mut Counts, k: MismatchKind) {
    match k {
        MismatchKind::Missing => c.missing += 1,
        MismatchKind::Extra => c.extra += 1,
        MismatchKind::Different => c.different += 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composite_ranges_expand_to_an_or_of_ands() {
        let mut params = Vec::new();
        let cols = vec!["\"a\"".to_string(), "\"b\"".to_string()];
        let sql = tuple_cmp(
            Dialect::Postgres,
            &cols,
            "<=",
            &[Value::Int(1), Value::Int(2)],
            &mut params,
            &|v, _| v.clone(),
        );
        assert_eq!(sql, "((\"a\" < $1 OR (\"a\" = $2 AND \"b\" <= $3)))");
        assert_eq!(params, [Value::Int(1), Value::Int(1), Value::Int(2)]);
    }

    #[test]
    fn the_sample_hash_is_stable() {
        assert_eq!(stable_hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stable_hash("5"), stable_hash("5"));
        assert_ne!(stable_hash("5"), stable_hash("6"));
    }
}
