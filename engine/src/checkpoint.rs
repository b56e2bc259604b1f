//! Checkpoints, kept in the *target* database (`_tern_checkpoints`), one row
//! per table and bucket: the bucket's range as planned, the position (bucket
//! column, key) of the last row written, rows written, and whether the bucket
//! is done. A chunk's rows and its checkpoint commit in one transaction, so the
//! checkpoint never claims a row that is not there and never lags one that is:
//! after a kill at any moment the load resumes right after the last committed
//! chunk. The bucket plan itself is persisted here too, so a restarted load
//! uses the ranges it started with, recomputed from persisted state rather
//! than re-planned from a source that has moved on.

use crate::buckets::{Bucket, Plan};
use crate::changelog::Position;
use crate::chunk::KeyRange;
use crate::connector::{Connector, Dialect, Statement, process_clock_micros};
use crate::error::{EngineError, Result};
use crate::fence::Fence;
use crate::value::Value;

pub const CHECKPOINT_TABLE: &str = "_tern_checkpoints";

/// The persisted state of one bucket of one table.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub table: String,
    pub bucket: usize,
    pub range: KeyRange,
    pub planned_rows: u64,
    /// Position (bucket column, key…) of the last row written; `None` before
    /// the first chunk.
    pub last_key: Option<Vec<Value>>,
    pub rows_written: u64,
    pub done: bool,
    /// The changelog position taken before the bucket's first row was read.
    pub watermark: Option<Position>,
    /// When it was taken (source clock, µs).
    pub snapshot_at: Option<i64>,
    /// When a catch-up brought the bucket to the head of the changelog.
    pub caught_up_at: Option<i64>,
}

/// Columns added after the first release of the table, with their types.
const LATER_COLUMNS: [(&str, &str); 4] = [
    ("watermark", "TEXT"),
    ("snapshot_at", "BIGINT"),
    ("caught_up_at", "BIGINT"),
    ("fence", "BIGINT"),
];

/// Creates the checkpoint table if it is missing.
pub async fn ensure_table(target: &Connector) -> Result<()> {
    let d = target.dialect();
    let text = d.long_text();
    let sql = format!(
        "CREATE TABLE IF NOT EXISTS {t} (table_name VARCHAR(255) NOT NULL, bucket BIGINT NOT NULL, \
         lo {text} NOT NULL, hi {text} NOT NULL, planned_rows BIGINT NOT NULL, last_key {text}, \
         rows_written BIGINT NOT NULL, done BIGINT NOT NULL, updated_at BIGINT NOT NULL, \
         watermark {text}, snapshot_at BIGINT, caught_up_at BIGINT, fence BIGINT, \
         PRIMARY KEY (table_name, bucket))",
        t = d.quote(CHECKPOINT_TABLE)
    );
    target
        .execute_ddl(&sql, "create the checkpoint table")
        .await?;
    // A table made by an earlier version lacks the later columns.
    let have = target
        .table_columns(CHECKPOINT_TABLE)
        .await?
        .unwrap_or_default();
    for (col, ty) in LATER_COLUMNS {
        if !have.iter().any(|c| c.name.eq_ignore_ascii_case(col)) {
            let ty = if ty == "TEXT" { text } else { ty };
            let added = target
                .execute(
                    &format!(
                        "ALTER TABLE {} ADD COLUMN {col} {ty}",
                        d.quote(CHECKPOINT_TABLE)
                    ),
                    &[],
                    &format!("add column {col} to the checkpoint table"),
                )
                .await;
            // Another process may have added it at the same moment.
            if let Err(e) = added {
                let now = target
                    .table_columns(CHECKPOINT_TABLE)
                    .await?
                    .unwrap_or_default();
                if !now.iter().any(|c| c.name.eq_ignore_ascii_case(col)) {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

/// Records a bucket's watermark, unless one is recorded already (a resumed
/// load keeps the position its first run took).
pub async fn set_watermark(
    target: &Connector,
    table: &str,
    bucket: usize,
    watermark: &Position,
    snapshot_at: i64,
) -> Result<()> {
    target
        .update_where(
            CHECKPOINT_TABLE,
            &[
                ("watermark", Value::Text(watermark.to_string())),
                ("snapshot_at", Value::Int(snapshot_at)),
            ],
            &bucket_key(table, bucket),
            "AND watermark IS NULL",
            &format!("record the watermark of {table} bucket {bucket}"),
        )
        .await
        .map(|_| ())
}

/// Records that a bucket was caught up to the head of the changelog (or
/// clears it with `None`, when the bucket must be caught up again).
pub async fn set_caught_up(
    target: &Connector,
    table: &str,
    bucket: usize,
    at: Option<i64>,
) -> Result<()> {
    target
        .update_where(
            CHECKPOINT_TABLE,
            &[("caught_up_at", at.map_or(Value::Null, Value::Int))],
            &bucket_key(table, bucket),
            "",
            &format!("record the catch-up of {table} bucket {bucket}"),
        )
        .await
        .map(|_| ())
}

/// Every bucket of every table, for the relay's pruning and warnings.
pub async fn load_every_table(target: &Connector, tables: &[&str]) -> Result<Vec<Checkpoint>> {
    let mut out = Vec::new();
    for t in tables {
        out.extend(load_all(target, t).await?);
    }
    Ok(out)
}

/// The columns that key a bucket's checkpoint row, with their values.
fn bucket_key(table: &str, bucket: usize) -> [(&'static str, Value); 2] {
    [
        ("table_name", Value::Text(table.into())),
        ("bucket", Value::Int(bucket as i64)),
    ]
}

fn json<T: serde::Serialize>(v: &T) -> Value {
    Value::Text(serde_json::to_string(v).unwrap_or_else(|_| "null".to_string()))
}

fn parse<T: serde::de::DeserializeOwned>(table: &str, bucket: usize, v: &Value) -> Result<T> {
    let text = match v {
        Value::Text(s) => s.as_str(),
        Value::Null => "null",
        other => {
            return Err(EngineError::Checkpoint {
                table: table.into(),
                bucket,
                message: format!("unexpected stored value {other}"),
            });
        }
    };
    serde_json::from_str(text).map_err(|e| EngineError::Checkpoint {
        table: table.into(),
        bucket,
        message: format!("stored value {text} is not readable: {e}"),
    })
}

fn int(v: &Value) -> u64 {
    match v {
        Value::Int(i) => u64::try_from(*i).unwrap_or(0),
        _ => 0,
    }
}

/// All checkpoints of a table, by bucket: its persisted plan and progress.
pub async fn load_all(target: &Connector, table: &str) -> Result<Vec<Checkpoint>> {
    if target.table_columns(CHECKPOINT_TABLE).await?.is_none() {
        return Ok(Vec::new());
    }
    let rows = target
        .select_where(
            "bucket, lo, hi, planned_rows, last_key, rows_written, done, watermark, snapshot_at, \
             caught_up_at",
            CHECKPOINT_TABLE,
            &[("table_name", Value::Text(table.into()))],
            "ORDER BY bucket",
            &format!("read the checkpoints of {table}"),
        )
        .await?;
    rows.iter()
        .map(|r| {
            let bucket = usize::try_from(int(&r[0])).unwrap_or(0);
            Ok(Checkpoint {
                table: table.to_string(),
                bucket,
                range: KeyRange {
                    lo: parse(table, bucket, &r[1])?,
                    hi: parse(table, bucket, &r[2])?,
                },
                planned_rows: int(&r[3]),
                last_key: parse(table, bucket, &r[4])?,
                rows_written: int(&r[5]),
                done: int(&r[6]) != 0,
                watermark: match r.get(7) {
                    Some(Value::Text(w)) => {
                        Some(w.parse().map_err(|m| EngineError::Checkpoint {
                            table: table.into(),
                            bucket,
                            message: m,
                        })?)
                    }
                    _ => None,
                },
                snapshot_at: match r.get(8) {
                    Some(Value::Int(i)) => Some(*i),
                    _ => None,
                },
                caught_up_at: match r.get(9) {
                    Some(Value::Int(i)) => Some(*i),
                    _ => None,
                },
            })
        })
        .collect()
}

/// The plan persisted for a table, if any.
pub async fn load_plan(
    target: &Connector,
    table: &str,
    bucket_column: &str,
) -> Result<Option<Plan>> {
    let cps = load_all(target, table).await?;
    if cps.is_empty() {
        return Ok(None);
    }
    Ok(Some(Plan {
        table: table.to_string(),
        bucket_column: bucket_column.to_string(),
        buckets: cps
            .into_iter()
            .map(|c| Bucket {
                table: c.table,
                index: c.bucket,
                range: c.range,
                rows: c.planned_rows,
            })
            .collect(),
    }))
}

/// Persists a plan: one fresh checkpoint per bucket, in one statement, so that
/// a plan is stored whole or not at all. Refuses if the table already has
/// checkpoints (call [`forget`] first to re-plan); when another process stores
/// a plan at the same moment, exactly one of the two statements succeeds.
pub async fn store_plan(target: &Connector, plan: &Plan) -> Result<()> {
    if !load_all(target, &plan.table).await?.is_empty() {
        return Err(EngineError::Checkpoint {
            table: plan.table.clone(),
            bucket: 0,
            message: "the table already has a stored plan; forget it before storing another".into(),
        });
    }
    insert_rows(target, &plan.table, &plan.buckets).await
}

/// Inserts fresh checkpoints for `buckets` in one statement.
async fn insert_rows(target: &Connector, table: &str, buckets: &[Bucket]) -> Result<()> {
    if buckets.is_empty() {
        return Ok(());
    }
    let d = target.dialect();
    let mut rows = Vec::with_capacity(buckets.len());
    let mut params = Vec::with_capacity(buckets.len() * 6);
    for b in buckets {
        let n = params.len();
        let ph: Vec<String> = (n + 1..=n + 6).map(|i| d.placeholder(i)).collect();
        rows.push(format!(
            "({}, {}, {}, {}, {}, NULL, 0, 0, {})",
            ph[0], ph[1], ph[2], ph[3], ph[4], ph[5]
        ));
        params.extend([
            Value::Text(b.table.clone()),
            Value::Int(b.index as i64),
            json(&b.range.lo),
            json(&b.range.hi),
            Value::Int(i64::try_from(b.rows).unwrap_or(i64::MAX)),
            Value::Int(process_clock_micros()),
        ]);
    }
    let sql = format!(
        "INSERT INTO {} (table_name, bucket, lo, hi, planned_rows, last_key, rows_written, done, updated_at) \
         VALUES {}",
        d.quote(CHECKPOINT_TABLE),
        rows.join(", ")
    );
    target
        .execute(&sql, &params, &format!("store the plan of {table}"))
        .await
        .map(|_| ())
}

async fn insert(target: &Connector, b: &Bucket) -> Result<()> {
    insert_rows(target, &b.table, std::slice::from_ref(b)).await
}

/// The checkpoint of a bucket, created from the bucket if none is stored.
/// A stored checkpoint with a different range is an error: the bucket was
/// planned differently and resuming it with new bounds could skip rows.
pub async fn begin(target: &Connector, bucket: &Bucket) -> Result<Checkpoint> {
    let existing = load_all(target, &bucket.table)
        .await?
        .into_iter()
        .find(|c| c.bucket == bucket.index);
    match existing {
        Some(c) if c.range != bucket.range => Err(EngineError::Checkpoint {
            table: bucket.table.clone(),
            bucket: bucket.index,
            message: format!(
                "stored range {} differs from the requested {}; load the stored plan, or forget the checkpoints to re-plan",
                c.range, bucket.range
            ),
        }),
        Some(c) => Ok(c),
        None => {
            insert(target, bucket).await?;
            Ok(Checkpoint {
                table: bucket.table.clone(),
                bucket: bucket.index,
                range: bucket.range.clone(),
                planned_rows: bucket.rows,
                last_key: None,
                rows_written: 0,
                done: false,
                watermark: None,
                snapshot_at: None,
                caught_up_at: None,
            })
        }
    }
}

/// The statement that advances a bucket's checkpoint, run in the chunk's
/// transaction; it must update exactly one row.
pub(crate) fn advance(
    d: Dialect,
    table: &str,
    bucket: usize,
    last_key: Option<&[Value]>,
    rows: u64,
    done: bool,
    fence: Option<&Fence>,
) -> Statement {
    let ph: Vec<String> = (1..=6).map(|i| d.placeholder(i)).collect();
    let sql = format!(
        "UPDATE {} SET last_key = COALESCE({}, last_key), rows_written = rows_written + {}, done = {}, updated_at = {} \
         WHERE table_name = {} AND bucket = {}{}",
        d.quote(CHECKPOINT_TABLE),
        ph[0],
        ph[1],
        ph[2],
        ph[3],
        ph[4],
        ph[5],
        fence_guard(d, 7, fence)
    );
    let mut params = vec![
        match last_key {
            Some(k) => json(&k),
            None => Value::Null,
        },
        Value::Int(i64::try_from(rows).unwrap_or(i64::MAX)),
        Value::Int(i64::from(done)),
        Value::Int(process_clock_micros()),
        Value::Text(table.to_string()),
        Value::Int(bucket as i64),
    ];
    params.extend(fence.map(|f| Value::Int(f.token)));
    Statement {
        sql,
        params,
        expect_rows: Some(1),
    }
}

/// ` AND (fence IS NULL OR fence <= $n)` for a fenced write (its token bound
/// at placeholder `n`), nothing for a write by hand.
pub(crate) fn fence_guard(d: Dialect, n: usize, fence: Option<&Fence>) -> String {
    match fence {
        Some(_) => format!(" AND (fence IS NULL OR fence <= {})", d.placeholder(n)),
        None => String::new(),
    }
}

/// Claims a bucket's checkpoint for `fence` before the run reads where to
/// resume: from now on a write with an older token is refused. Refused
/// itself ([`EngineError::Fenced`]) when a newer token claimed it already.
pub async fn claim(target: &Connector, table: &str, bucket: usize, fence: &Fence) -> Result<()> {
    let d = target.dialect();
    let sql = format!(
        "UPDATE {} SET fence = {} WHERE table_name = {} AND bucket = {}{}",
        d.quote(CHECKPOINT_TABLE),
        d.placeholder(1),
        d.placeholder(2),
        d.placeholder(3),
        fence_guard(d, 4, Some(fence))
    );
    let token = Value::Int(fence.token);
    let claimed = target
        .execute(
            &sql,
            &[
                token.clone(),
                Value::Text(table.into()),
                Value::Int(bucket as i64),
                token,
            ],
            &format!("claim the checkpoint of {table} bucket {bucket}"),
        )
        .await?;
    if claimed == 1 {
        return Ok(());
    }
    match fenced_out(target, table, bucket, fence).await? {
        Some(e) => Err(e),
        None => Err(EngineError::Checkpoint {
            table: table.into(),
            bucket,
            message: "there is no checkpoint to claim: plan and begin the bucket first".into(),
        }),
    }
}

/// The [`EngineError::Fenced`] to return when a newer token than `fence`'s
/// has claimed the bucket (a refused write is then explained by it), `None`
/// otherwise.
pub async fn fenced_out(
    target: &Connector,
    table: &str,
    bucket: usize,
    fence: &Fence,
) -> Result<Option<EngineError>> {
    let rows = target
        .select_where(
            "fence",
            CHECKPOINT_TABLE,
            &bucket_key(table, bucket),
            "",
            &format!("read the fence of {table} bucket {bucket}"),
        )
        .await?;
    let current = match rows.first().and_then(|r| r.first()) {
        Some(Value::Int(t)) => *t,
        _ => return Ok(None),
    };
    Ok((current > fence.token).then(|| EngineError::Fenced {
        holder: fence.holder.clone(),
        table: table.into(),
        bucket,
        token: fence.token,
        current,
    }))
}

/// Deletes a table's checkpoints and plan, so that the next load re-plans
/// and starts from the beginning (the upserts make re-copying harmless).
pub async fn forget(target: &Connector, table: &str) -> Result<u64> {
    let d = target.dialect();
    target
        .execute(
            &format!(
                "DELETE FROM {} WHERE table_name = {}",
                d.quote(CHECKPOINT_TABLE),
                d.placeholder(1)
            ),
            &[Value::Text(table.into())],
            &format!("forget the checkpoints of {table}"),
        )
        .await
}
