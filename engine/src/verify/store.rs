//! Where verification keeps its results: three engine tables in the target
//! database, beside the data they describe (like the checkpoint tables).
//!
//! - `_tern_verify_runs`: one row per run (table, scope, mode, status, the
//!   changelog position taken before its first read, counts).
//! - `_tern_verify_progress`: per run and bucket, the last key compared and
//!   the counts so far; a chunk's mismatches and this row commit in one
//!   transaction, so a resumed run neither loses nor double-counts a chunk.
//! - `_tern_verify_mismatches`: every mismatched row of a run, with its kind,
//!   field-level differences and the full values on both sides, as JSON.

use crate::connector::{Connector, Dialect, Statement};
use crate::error::{EngineError, Result};
use crate::value::Value;

use super::compare::MismatchTree;
use super::results::{Counts, Mismatch, MismatchKind};

pub const RUNS_TABLE: &str = "_tern_verify_runs";
pub const PROGRESS_TABLE: &str = "_tern_verify_progress";
pub const MISMATCH_TABLE: &str = "_tern_verify_mismatches";

/// Mismatch rows per INSERT (12 parameters each, under every database's limit).
const ROWS_PER_INSERT: usize = 400;

fn types(d: Dialect) -> (&'static str, &'static str, &'static str) {
    // (short key text, key text, long text)
    match d {
        Dialect::MySql => ("VARCHAR(64)", "VARCHAR(400)", "LONGTEXT"),
        _ => ("TEXT", "TEXT", "TEXT"),
    }
}

/// Creates the three tables if they are missing.
pub(crate) async fn ensure(target: &Connector) -> Result<()> {
    let d = target.dialect();
    let (short, key, long) = types(d);
    let statements = [
        format!(
            "CREATE TABLE IF NOT EXISTS {} (run_id {short} NOT NULL PRIMARY KEY, \
             table_name VARCHAR(128) NOT NULL, scope {short} NOT NULL, mode {long} NOT NULL, \
             status {short} NOT NULL, started_at BIGINT NOT NULL, finished_at BIGINT, \
             position {long}, compared BIGINT NOT NULL DEFAULT 0, matched BIGINT NOT NULL DEFAULT 0, \
             missing BIGINT NOT NULL DEFAULT 0, extra BIGINT NOT NULL DEFAULT 0, \
             different BIGINT NOT NULL DEFAULT 0, keys_read BIGINT NOT NULL DEFAULT 0)",
            d.quote(RUNS_TABLE)
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (run_id {short} NOT NULL, bucket INT NOT NULL, \
             last_key {long}, done INT NOT NULL DEFAULT 0, compared BIGINT NOT NULL DEFAULT 0, \
             matched BIGINT NOT NULL DEFAULT 0, missing BIGINT NOT NULL DEFAULT 0, \
             extra BIGINT NOT NULL DEFAULT 0, different BIGINT NOT NULL DEFAULT 0, \
             PRIMARY KEY (run_id, bucket))",
            d.quote(PROGRESS_TABLE)
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (run_id {short} NOT NULL, key_id {key} NOT NULL, \
             bucket INT NOT NULL, ord BIGINT NOT NULL, kind {short} NOT NULL, \
             target_key {long} NOT NULL, source_key {long}, paths {long} NOT NULL, \
             diffs {long} NOT NULL, source_row {long}, target_row {long}, \
             resolved INT NOT NULL DEFAULT 0, PRIMARY KEY (run_id, key_id))",
            d.quote(MISMATCH_TABLE)
        ),
    ];
    for s in &statements {
        target
            .execute_ddl(s, "create the verification tables")
            .await?;
    }
    Ok(())
}

/// A run as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    pub run_id: String,
    pub table: String,
    pub scope: String,
    pub mode: String,
    pub status: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub position: Option<String>,
    pub counts: Counts,
    pub keys_read: u64,
}

pub(crate) async fn insert_run(target: &Connector, run: &RunRow) -> Result<()> {
    let d = target.dialect();
    let marks: Vec<String> = (1..=8).map(|i| d.placeholder(i)).collect();
    target
        .execute(
            &format!(
                "INSERT INTO {} (run_id, table_name, scope, mode, status, started_at, position, keys_read) \
                 VALUES ({})",
                d.quote(RUNS_TABLE),
                marks.join(", ")
            ),
            &[
                Value::Text(run.run_id.clone()),
                Value::Text(run.table.clone()),
                Value::Text(run.scope.clone()),
                Value::Text(run.mode.clone()),
                Value::Text(run.status.clone()),
                Value::Int(run.started_at),
                run.position.clone().map_or(Value::Null, Value::Text),
                Value::Int(run.keys_read as i64),
            ],
            "record a verification run",
        )
        .await
        .map(|_| ())
}

const RUN_COLUMNS: &str = "run_id, table_name, scope, mode, status, started_at, finished_at, \
     position, compared, matched, missing, extra, different, keys_read";

fn int(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        Value::Decimal(d) => i64::try_from(*d).unwrap_or(0),
        Value::Text(s) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::Text(s) => Some(s.clone()),
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        other => Some(other.canonical_text()),
    }
}

/// The counts' columns, in the order of [`counts_at`] and [`count_params`].
const COUNT_COLUMNS: [&str; 5] = ["compared", "matched", "missing", "extra", "different"];

/// The counts stored in the [`COUNT_COLUMNS`] of a row, from column `at`.
fn counts_at(r: &[Value], at: usize) -> Counts {
    let n = |i: usize| int(&r[at + i]) as u64;
    Counts {
        compared: n(0),
        matched: n(1),
        missing: n(2),
        extra: n(3),
        different: n(4),
    }
}

/// `compared = …, matched = …` for the [`COUNT_COLUMNS`], with the
/// placeholders from the `from`-th on.
fn count_sets(d: Dialect, from: usize) -> String {
    COUNT_COLUMNS
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{c} = {}", d.placeholder(from + i)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The parameters of [`count_sets`].
fn count_params(c: &Counts) -> [Value; 5] {
    [c.compared, c.matched, c.missing, c.extra, c.different].map(|n| Value::Int(n as i64))
}

fn run_of(r: &[Value]) -> RunRow {
    RunRow {
        run_id: text(&r[0]).unwrap_or_default(),
        table: text(&r[1]).unwrap_or_default(),
        scope: text(&r[2]).unwrap_or_default(),
        mode: text(&r[3]).unwrap_or_default(),
        status: text(&r[4]).unwrap_or_default(),
        started_at: int(&r[5]),
        finished_at: (!r[6].is_null()).then(|| int(&r[6])),
        position: text(&r[7]),
        counts: counts_at(r, 8),
        keys_read: int(&r[13]) as u64,
    }
}

/// A stored run, `None` if there is no such run.
pub async fn load_run(target: &Connector, run_id: &str) -> Result<Option<RunRow>> {
    let runs = select_runs(target, "run_id", run_id, "read a verification run").await?;
    Ok(runs.into_iter().next())
}

/// The runs of a table, newest first.
pub async fn list_runs(target: &Connector, table: &str) -> Result<Vec<RunRow>> {
    select_runs(target, "table_name", table, "list verification runs").await
}

/// The runs whose `column` is `value`, newest first.
async fn select_runs(
    target: &Connector,
    column: &str,
    value: &str,
    context: &str,
) -> Result<Vec<RunRow>> {
    let rows = target
        .select_where(
            RUN_COLUMNS,
            RUNS_TABLE,
            &[(column, Value::Text(value.to_string()))],
            "ORDER BY started_at DESC, run_id DESC",
            context,
        )
        .await?;
    Ok(rows.iter().map(|r| run_of(r)).collect())
}

/// Sets a run's status, counts and end.
pub(crate) async fn finish_run(
    target: &Connector,
    run_id: &str,
    status: &str,
    counts: &Counts,
    keys_read: u64,
    finished_at: Option<i64>,
) -> Result<()> {
    let d = target.dialect();
    let p = |i| d.placeholder(i);
    let mut params = vec![Value::Text(status.to_string())];
    params.extend(count_params(counts));
    params.extend([
        Value::Int(keys_read as i64),
        // A typed NULL: an untyped one binds as text on PostgreSQL.
        Value::Int(finished_at.unwrap_or(-1)),
        Value::Text(run_id.to_string()),
    ]);
    target
        .execute(
            &format!(
                "UPDATE {} SET status = {}, {}, keys_read = {}, finished_at = NULLIF({}, -1) \
                 WHERE run_id = {}",
                d.quote(RUNS_TABLE),
                p(1),
                count_sets(d, 2),
                p(7),
                p(8),
                p(9)
            ),
            &params,
            "record the end of a verification run",
        )
        .await
        .map(|_| ())
}

/// Per-bucket progress of a run.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct BucketProgress {
    pub last_key: Option<Vec<Value>>,
    pub done: bool,
    pub counts: Counts,
}

pub(crate) async fn load_progress(
    target: &Connector,
    run_id: &str,
    bucket: usize,
) -> Result<Option<BucketProgress>> {
    let rows = target
        .select_where(
            "last_key, done, compared, matched, missing, extra, different",
            PROGRESS_TABLE,
            &[
                ("run_id", Value::Text(run_id.to_string())),
                ("bucket", Value::Int(bucket as i64)),
            ],
            "",
            "read verification progress",
        )
        .await?;
    let Some(r) = rows.first() else {
        return Ok(None);
    };
    let last_key = match text(&r[0]) {
        Some(j) => Some(
            serde_json::from_str(&j).map_err(|e| EngineError::Checkpoint {
                table: run_id.to_string(),
                bucket,
                message: format!("the stored verification position is not readable: {e}"),
            })?,
        ),
        None => None,
    };
    Ok(Some(BucketProgress {
        last_key,
        done: int(&r[1]) != 0,
        counts: counts_at(r, 2),
    }))
}

/// The statement that creates a bucket's progress row (idempotent).
pub(crate) async fn start_progress(target: &Connector, run_id: &str, bucket: usize) -> Result<()> {
    let d = target.dialect();
    let ignore = match d {
        Dialect::MySql => "INSERT IGNORE INTO",
        Dialect::Sqlite => "INSERT OR IGNORE INTO",
        Dialect::Postgres => "INSERT INTO",
    };
    let tail = if d == Dialect::Postgres {
        " ON CONFLICT DO NOTHING"
    } else {
        ""
    };
    target
        .execute(
            &format!(
                "{ignore} {} (run_id, bucket) VALUES ({}, {}){tail}",
                d.quote(PROGRESS_TABLE),
                d.placeholder(1),
                d.placeholder(2)
            ),
            &[Value::Text(run_id.to_string()), Value::Int(bucket as i64)],
            "start verification progress",
        )
        .await
        .map(|_| ())
}

/// The statement that moves a bucket's progress to `last_key` with `counts`
/// (the bucket's totals so far).
pub(crate) fn advance(
    d: Dialect,
    run_id: &str,
    bucket: usize,
    last_key: Option<&[Value]>,
    done: bool,
    counts: &Counts,
) -> Statement {
    let p = |i| d.placeholder(i);
    let last = last_key
        .and_then(|k| serde_json::to_string(k).ok())
        .map_or(Value::Null, Value::Text);
    let mut params = vec![last, Value::Int(i64::from(done))];
    params.extend(count_params(counts));
    params.extend([Value::Text(run_id.to_string()), Value::Int(bucket as i64)]);
    Statement {
        sql: format!(
            "UPDATE {} SET last_key = COALESCE({}, last_key), done = {}, {} \
             WHERE run_id = {} AND bucket = {}",
            d.quote(PROGRESS_TABLE),
            p(1),
            p(2),
            count_sets(d, 3),
            p(8),
            p(9)
        ),
        params,
        expect_rows: Some(1),
    }
}

/// Statements storing mismatches (replacing a row stored for the same key
/// by an interrupted attempt at the same chunk).
pub(crate) fn insert_mismatches(d: Dialect, run_id: &str, found: &[Mismatch]) -> Vec<Statement> {
    let t = d.quote(MISMATCH_TABLE);
    let cols = "run_id, key_id, bucket, ord, kind, target_key, source_key, paths, diffs, \
                source_row, target_row, resolved";
    let mut out = Vec::new();
    for batch in found.chunks(ROWS_PER_INSERT) {
        let mut params = Vec::with_capacity(batch.len() * 12);
        let mut rows = Vec::with_capacity(batch.len());
        for m in batch {
            let start = params.len();
            params.extend([
                Value::Text(run_id.to_string()),
                Value::Text(m.key_id.clone()),
                Value::Int(m.bucket as i64),
                Value::Int(m.ord as i64),
                Value::Text(m.kind.as_str().to_string()),
                Value::Text(serde_json::to_string(&m.target_key).unwrap_or_default()),
                m.source_key
                    .as_ref()
                    .and_then(|k| serde_json::to_string(k).ok())
                    .map_or(Value::Null, Value::Text),
                Value::Text(m.paths().join("\n")),
                Value::Text(serde_json::to_string(&m.diffs).unwrap_or_default()),
                m.source_row
                    .as_ref()
                    .map_or(Value::Null, |r| Value::Text(r.to_string())),
                m.target_row
                    .as_ref()
                    .map_or(Value::Null, |r| Value::Text(r.to_string())),
                Value::Int(i64::from(m.resolved)),
            ]);
            let marks: Vec<String> = (start + 1..=start + 12).map(|i| d.placeholder(i)).collect();
            rows.push(format!("({})", marks.join(", ")));
        }
        let upsert = match d {
            Dialect::MySql => {
                " ON DUPLICATE KEY UPDATE kind = VALUES(kind), paths = VALUES(paths), \
                 diffs = VALUES(diffs), source_row = VALUES(source_row), \
                 target_row = VALUES(target_row), resolved = VALUES(resolved)"
                    .to_string()
            }
            _ => " ON CONFLICT (run_id, key_id) DO UPDATE SET kind = excluded.kind, \
                 paths = excluded.paths, diffs = excluded.diffs, source_row = excluded.source_row, \
                 target_row = excluded.target_row, resolved = excluded.resolved"
                .to_string(),
        };
        out.push(Statement {
            sql: format!(
                "INSERT INTO {t} ({cols}) VALUES {}{upsert}",
                rows.join(", ")
            ),
            params,
            expect_rows: None,
        });
    }
    out
}

/// Mismatches of a run in key order within each bucket, `limit` from
/// `offset`; with `open_only`, those repair has not resolved.
pub async fn list_mismatches(
    target: &Connector,
    run_id: &str,
    offset: u64,
    limit: u64,
    open_only: bool,
) -> Result<Vec<Mismatch>> {
    let d = target.dialect();
    let filter = if open_only { " AND resolved = 0" } else { "" };
    let (_, rows) = target
        .fetch(
            &format!(
                "SELECT key_id, bucket, ord, kind, target_key, source_key, diffs, source_row, \
                 target_row, resolved FROM {} WHERE run_id = {}{filter} \
                 ORDER BY bucket, ord, key_id LIMIT {limit} OFFSET {offset}",
                d.quote(MISMATCH_TABLE),
                d.placeholder(1)
            ),
            &[Value::Text(run_id.to_string())],
            "list the mismatches of a verification run",
        )
        .await?;
    rows.iter().map(|r| mismatch_of(run_id, r)).collect()
}

fn mismatch_of(run_id: &str, r: &[Value]) -> Result<Mismatch> {
    let bad = |what: &str, e: serde_json::Error| EngineError::Checkpoint {
        table: format!("verification run {run_id}"),
        bucket: int(&r[1]) as usize,
        message: format!("stored mismatch {what} is not readable: {e}"),
    };
    let json = |v: &Value| text(v).and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok());
    Ok(Mismatch {
        key_id: text(&r[0]).unwrap_or_default(),
        bucket: int(&r[1]) as usize,
        ord: int(&r[2]) as u64,
        kind: MismatchKind::parse(&text(&r[3]).unwrap_or_default()),
        target_key: serde_json::from_str(&text(&r[4]).unwrap_or_default())
            .map_err(|e| bad("key", e))?,
        source_key: match text(&r[5]) {
            Some(s) => Some(serde_json::from_str(&s).map_err(|e| bad("source key", e))?),
            None => None,
        },
        diffs: serde_json::from_str(&text(&r[6]).unwrap_or_default())
            .map_err(|e| bad("differences", e))?,
        source_row: json(&r[7]),
        target_row: json(&r[8]),
        resolved: int(&r[9]) != 0,
    })
}

/// Row keys and paths of a run's open mismatches, for the tree.
pub(crate) async fn paths_of(target: &Connector, run_id: &str) -> Result<Vec<(String, String)>> {
    let key = [("run_id", Value::Text(run_id.to_string()))];
    let open = "AND resolved = 0 ORDER BY bucket, ord, key_id";
    let context = "read the mismatch paths of a verification run";
    let rows = target
        .select_where("target_key, paths", MISMATCH_TABLE, &key, open, context)
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let key: Vec<Value> =
                serde_json::from_str(&text(&r[0]).unwrap_or_default()).unwrap_or_default();
            (
                crate::value::render_key(&key),
                text(&r[1]).unwrap_or_default(),
            )
        })
        .collect())
}

/// The last run of `table` that finished with a changelog position.
pub(crate) async fn last_positioned_run(target: &Connector, table: &str) -> Result<Option<RunRow>> {
    Ok(list_runs(target, table)
        .await?
        .into_iter()
        .find(|r| r.status == "completed" && r.position.is_some()))
}

/// The mismatch tree of a run's open mismatches.
pub async fn mismatch_tree(target: &Connector, run_id: &str) -> Result<MismatchTree> {
    let mut tree = MismatchTree::default();
    for (key, paths) in paths_of(target, run_id).await? {
        let paths: Vec<String> = paths.lines().map(str::to_string).collect();
        tree.add(&key, &paths);
    }
    Ok(tree)
}
