//! The changelog: what change capture ([`crate::capture`]) appends to in the
//! source database, and the reads the change stream ([`crate::change_stream`])
//! makes of it for the relay, the catch-up and verification: changes after a
//! position, the position after them, gaps given up, the head and the lag.
//!
//! # Schema (`_tern_changelog`, in the source database)
//!
//! | column | type | meaning |
//! |---|---|---|
//! | `seq` | BIGINT, auto-increment primary key | order of the change (the *position*) |
//! | `table_name` | VARCHAR(255) | the source table that changed |
//! | `op` | CHAR(1) | `I` insert, `U` update, `D` delete |
//! | `old_row` | TEXT (JSON object) | before the change (U, D): the captured columns |
//! | `new_row` | TEXT (JSON object) | after the change (I, U): the captured columns |
//! | `changed_at` | BIGINT | the source clock at the change, µs since the epoch |
//!
//! The captured columns of a table are those the spec needs to find the
//! changed records: the source key (and bucket column) of a table source and
//! the columns each `tracks` entry names or uses as `:placeholder`. An update
//! records both images, so a change of key or bucket column finds both the
//! old record (now gone: deleted in the target) and the new one.
//!
//! Readers never apply the logged values: they map a change to source keys and
//! re-read the *current* source rows of those keys. Reading a change twice,
//! or an old change late, is therefore harmless, which is what makes positions
//! with gaps ([`Position`]) and at-least-once delivery safe.

mod position;

pub use position::Position;

use std::collections::HashSet;
use std::time::Duration;

use crate::connector::{Connector, Dialect};
use crate::error::{EngineError, Result};
use crate::transform::Record;
use crate::value::Value;

/// The changelog table in the source database.
pub const CHANGELOG_TABLE: &str = "_tern_changelog";

/// How long a gap (a sequence number handed out but not committed) is waited
/// for by default before it is taken for a rolled-back transaction: two
/// minutes after the change that follows it. A transaction that keeps a
/// captured change uncommitted for longer than this may be missed by the
/// relay (the bucket's catch-up and verification still see it).
pub const DEFAULT_GAP_TIMEOUT: Duration = Duration::from_secs(120);

/// What happened to a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Insert,
    Update,
    Delete,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        match s {
            "I" => Some(Op::Insert),
            "U" => Some(Op::Update),
            "D" => Some(Op::Delete),
            _ => None,
        }
    }
}

/// The captured columns of a row before or after a change.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub columns: Vec<String>,
    pub values: Vec<Value>,
}

impl Image {
    pub fn record(&self) -> Record<'_> {
        Record {
            columns: &self.columns,
            values: &self.values,
        }
    }

    fn parse(text: &str) -> std::result::Result<Image, String> {
        let map: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(text).map_err(|e| format!("not a JSON object ({e}): {text}"))?;
        let mut img = Image {
            columns: Vec::with_capacity(map.len()),
            values: Vec::with_capacity(map.len()),
        };
        for (k, v) in map {
            img.columns.push(k);
            img.values.push(from_json(v));
        }
        Ok(img)
    }
}

/// A JSON value from a trigger as an engine value (cast later to the
/// column's type).
fn from_json(v: serde_json::Value) -> Value {
    use serde_json::Value as J;
    match v {
        J::Null => Value::Null,
        J::Bool(b) => Value::Bool(b),
        J::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        J::String(s) => Value::Text(s),
        other => Value::Json(other),
    }
}

/// One row of the changelog.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub seq: i64,
    pub table: String,
    pub op: Op,
    pub old: Option<Image>,
    pub new: Option<Image>,
    /// Source clock at the change, µs since the epoch.
    pub changed_at: i64,
}

impl Change {
    /// The images to map to keys: old and new for an update (a key or bucket
    /// change touches two records), the one there is otherwise.
    pub fn images(&self) -> impl Iterator<Item = &Image> {
        self.old.iter().chain(self.new.iter())
    }
}

/// How far a reader is behind the head of the changelog.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Lag {
    /// Changes logged after the reader's position (an estimate from
    /// sequence numbers: rolled-back ones count too).
    pub changes: u64,
    /// Source clock now minus the time of the oldest change not read yet; 0
    /// when nothing is waiting.
    pub seconds: f64,
}

impl Lag {
    pub fn is_zero(&self) -> bool {
        self.changes == 0
    }
}

fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::Text(s) => Some(s.clone()),
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::Json(j) => Some(j.to_string()),
        _ => None,
    }
}

fn int_of(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::Decimal(d) => i64::try_from(*d).ok(),
        Value::Text(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn decode_row(row: &[Value]) -> std::result::Result<Change, String> {
    let [seq, table, op, old, new, at] = row else {
        return Err(format!("expected 6 columns, got {}", row.len()));
    };
    let seq = int_of(seq).ok_or_else(|| format!("seq {seq} is not an integer"))?;
    let table = text_of(table).ok_or_else(|| format!("change {seq}: table_name is {table}"))?;
    let op_text = text_of(op).unwrap_or_default();
    let op = Op::parse(op_text.trim())
        .ok_or_else(|| format!("change {seq}: op `{op_text}` is not I, U or D"))?;
    let image = |v: &Value| -> std::result::Result<Option<Image>, String> {
        match text_of(v) {
            None => Ok(None),
            Some(t) => Image::parse(&t)
                .map(Some)
                .map_err(|e| format!("change {seq}: {e}")),
        }
    };
    Ok(Change {
        seq,
        table,
        op,
        old: image(old)?,
        new: image(new)?,
        changed_at: int_of(at).unwrap_or(0),
    })
}

const COLUMNS: &str = "seq, table_name, op, old_row, new_row, changed_at";

/// Whether the changelog table exists in the source.
pub async fn exists(source: &Connector) -> Result<bool> {
    Ok(source.table_columns(CHANGELOG_TABLE).await?.is_some())
}

/// The changes after `from` (and in its gaps), at most `limit` of the new
/// ones, ordered by sequence number.
pub(crate) async fn read(source: &Connector, from: &Position, limit: usize) -> Result<Vec<Change>> {
    let d = source.dialect();
    let t = d.quote(CHANGELOG_TABLE);
    let mut changes = Vec::new();
    // Gaps first: they are older, and usually few (open transactions).
    for ranges in from.gaps.chunks(200) {
        let mut params = Vec::with_capacity(ranges.len() * 2);
        let mut conds = Vec::with_capacity(ranges.len());
        for &(lo, hi) in ranges {
            params.push(Value::Int(lo));
            params.push(Value::Int(hi));
            conds.push(format!(
                "seq BETWEEN {} AND {}",
                d.placeholder(params.len() - 1),
                d.placeholder(params.len())
            ));
        }
        let sql = format!(
            "SELECT {COLUMNS} FROM {t} WHERE {} ORDER BY seq",
            conds.join(" OR ")
        );
        let (_, rows) = source
            .fetch(&sql, &params, "read the changelog's gaps")
            .await?;
        for r in rows {
            changes.push(decode(&r)?);
        }
    }
    let sql = format!(
        "SELECT {COLUMNS} FROM {t} WHERE seq > {} ORDER BY seq LIMIT {}",
        d.placeholder(1),
        limit.max(1)
    );
    let (_, rows) = source
        .fetch(
            &sql,
            &[Value::Int(from.high)],
            &format!("read the changelog after {}", from.high),
        )
        .await?;
    for r in rows {
        changes.push(decode(&r)?);
    }
    Ok(changes)
}

fn decode(row: &[Value]) -> Result<Change> {
    decode_row(row).map_err(|m| EngineError::schema(CHANGELOG_TABLE, m))
}

/// The position after reading `changes` from `from`: their sequence numbers
/// are seen, and any number skipped between `from.high` and the highest one
/// read becomes a gap.
pub(crate) fn advance(from: &Position, changes: &[Change]) -> Position {
    let seen: HashSet<i64> = changes.iter().map(|c| c.seq).collect();
    let mut gaps = Vec::new();
    for &(lo, hi) in &from.gaps {
        let mut start = lo;
        let mut filled: Vec<i64> = seen
            .iter()
            .copied()
            .filter(|s| lo <= *s && *s <= hi)
            .collect();
        filled.sort_unstable();
        for s in filled {
            if s > start {
                gaps.push((start, s - 1));
            }
            start = s + 1;
        }
        if start <= hi {
            gaps.push((start, hi));
        }
    }
    let mut news: Vec<i64> = seen.into_iter().filter(|s| *s > from.high).collect();
    news.sort_unstable();
    let mut expected = from.high + 1;
    for s in &news {
        if *s > expected {
            gaps.push((expected, s - 1));
        }
        expected = s + 1;
    }
    let mut next = Position {
        high: news.last().copied().unwrap_or(from.high),
        gaps,
    };
    next.normalize();
    next
}

/// Gives up the gaps whose following change is older than `timeout` by the
/// source clock: the transaction that took that sequence number has been open
/// (or was rolled back) for longer than any transaction is expected to be.
/// Returns the gaps given up. Checks at most 100 gaps per call.
pub(crate) async fn expire_gaps(
    source: &Connector,
    position: &mut Position,
    timeout: Duration,
) -> Result<Vec<(i64, i64)>> {
    if position.gaps.is_empty() {
        return Ok(Vec::new());
    }
    let d = source.dialect();
    let now = source.clock_micros().await?;
    let limit_micros = i64::try_from(timeout.as_micros()).unwrap_or(i64::MAX);
    let mut expired = Vec::new();
    let mut kept = Vec::with_capacity(position.gaps.len());
    for (i, &(lo, hi)) in position.gaps.iter().enumerate() {
        if i >= 100 {
            kept.push((lo, hi));
            continue;
        }
        let sql = format!(
            "SELECT changed_at FROM {} WHERE seq > {} ORDER BY seq LIMIT 1",
            d.quote(CHANGELOG_TABLE),
            d.placeholder(1)
        );
        let (_, rows) = source
            .fetch(&sql, &[Value::Int(hi)], "check a changelog gap")
            .await?;
        let next_at = rows.first().and_then(|r| r.first()).and_then(int_of);
        match next_at {
            // Nothing follows a gap at or below `high` only when the rows
            // after it were pruned: long gone.
            None => expired.push((lo, hi)),
            Some(at) if now.saturating_sub(at) > limit_micros => expired.push((lo, hi)),
            Some(_) => kept.push((lo, hi)),
        }
    }
    position.gaps = kept;
    for (lo, hi) in &expired {
        tracing::debug!(
            lo,
            hi,
            "changelog gap given up: rolled back, or open longer than the gap timeout"
        );
    }
    Ok(expired)
}

/// The highest sequence number in the changelog (0 when empty).
pub(crate) async fn head(source: &Connector) -> Result<i64> {
    let sql = format!(
        "SELECT MAX(seq) FROM {}",
        source.dialect().quote(CHANGELOG_TABLE)
    );
    let (_, rows) = source
        .fetch(&sql, &[], "read the head of the changelog")
        .await?;
    Ok(rows
        .first()
        .and_then(|r| r.first())
        .and_then(int_of)
        .unwrap_or(0))
}

/// How far `position` is behind the head of the changelog.
pub async fn lag(source: &Connector, position: &Position) -> Result<Lag> {
    let d = source.dialect();
    let t = d.quote(CHANGELOG_TABLE);
    let sql = format!(
        "SELECT (SELECT MAX(seq) FROM {t}), (SELECT changed_at FROM {t} WHERE seq > {} ORDER BY seq LIMIT 1)",
        d.placeholder(1)
    );
    let (_, rows) = source
        .fetch(
            &sql,
            &[Value::Int(position.high)],
            "measure the lag behind the changelog",
        )
        .await?;
    let row = rows.first();
    let head = row.and_then(|r| r.first()).and_then(int_of).unwrap_or(0);
    let oldest = row.and_then(|r| r.get(1)).and_then(int_of);
    let changes = u64::try_from(head.saturating_sub(position.high)).unwrap_or(0);
    let seconds = match oldest {
        Some(at) => {
            let now = source.clock_micros().await?;
            (now.saturating_sub(at)).max(0) as f64 / 1e6
        }
        None => 0.0,
    };
    Ok(Lag {
        changes: if oldest.is_some() { changes.max(1) } else { 0 },
        seconds,
    })
}

/// SQL for the source clock in µs, usable inside a trigger.
pub(crate) fn clock_sql(d: Dialect) -> &'static str {
    match d {
        Dialect::Postgres => "(extract(epoch from clock_timestamp()) * 1000000)::bigint",
        Dialect::MySql => "CAST(UNIX_TIMESTAMP(NOW(6)) * 1000000 AS SIGNED)",
        Dialect::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(seq: i64) -> Change {
        Change {
            seq,
            table: "t".into(),
            op: Op::Insert,
            old: None,
            new: None,
            changed_at: 0,
        }
    }

    #[test]
    fn skipped_sequence_numbers_become_gaps_and_fill_later() {
        let from = Position::at(10);
        let next = advance(&from, &[change(11), change(13), change(16)]);
        assert_eq!(next.to_string(), "16/12,14-15");
        let later = advance(&next, &[change(14), change(17)]);
        assert_eq!(later.to_string(), "17/12,15");
        assert_eq!(advance(&later, &[]), later);
    }

    #[test]
    fn trigger_rows_decode_into_images() -> std::result::Result<(), String> {
        let row = vec![
            Value::Int(7),
            Value::Text("items".into()),
            Value::Text("U".into()),
            Value::Text(r#"{"id": 1, "member_id": 5}"#.into()),
            Value::Bytes(br#"{"id": 2, "member_id": 5}"#.to_vec()),
            Value::Int(1_700_000_000_000_000),
        ];
        let c = decode_row(&row)?;
        assert_eq!(c.op, Op::Update);
        let old = c.old.as_ref().ok_or("old image")?;
        assert_eq!(old.record().get("id"), Some(&Value::Int(1)));
        let new = c.new.as_ref().ok_or("new image")?;
        assert_eq!(new.record().get("id"), Some(&Value::Int(2)));
        assert_eq!(c.images().count(), 2);
        Ok(())
    }
}
