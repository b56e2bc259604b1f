//! Group sums, the arithmetic both checksum paths share: a row's canonical
//! text as SQL for each database (`piece`, `row_hash`), and a group's row
//! count with the XOR of the first 64 bits of its rows' MD5s ([`Sum`]), read
//! back from the database (`sums_of`). Apart from the paths that use them
//! (`checksum.rs` for copied keys, `grouped.rs` for transformed keys) so
//! neither depends on the other.

use std::collections::HashMap;

use crate::connector::Dialect;
use crate::error::{EngineError, Result};
use crate::value::{ColumnType, Value};

/// One side's checksum of a group: its row count and the XOR of the first
/// 64 bits of its rows' MD5s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Sum {
    pub rows: u64,
    pub(super) xor: u64,
}

impl Sum {
    pub(super) const EMPTY: Sum = Sum { rows: 0, xor: 0 };

    /// Adds a row of the given hash bits.
    pub(super) fn add(&mut self, bits: u64) {
        self.rows += 1;
        self.xor ^= bits;
    }

    /// Adds the rows of another sum (of other rows).
    pub(super) fn merge(&mut self, other: Sum) {
        self.rows += other.rows;
        self.xor ^= other.xor;
    }
}

/// A column's canonical text: `~` for NULL, else integers in decimal,
/// booleans `1`/`0`, timestamps to the microsecond, dates `YYYY-MM-DD`, text
/// as `length:text` (so a `|` inside cannot shift the row's fields). `native`
/// is the column's type in its own database, `logical` the target's type.
pub(super) fn piece(d: Dialect, col: &str, native: ColumnType, logical: ColumnType) -> String {
    match (d, logical) {
        (Dialect::MySql, ColumnType::Bool) => {
            format!("CASE WHEN {col} IS NULL THEN '~' WHEN {col} <> 0 THEN '1' ELSE '0' END")
        }
        (Dialect::MySql, ColumnType::Timestamp) => {
            format!("IFNULL(DATE_FORMAT({col}, '%Y-%m-%d %H:%i:%s.%f'), '~')")
        }
        (Dialect::MySql, ColumnType::Date) => {
            format!("IFNULL(DATE_FORMAT({col}, '%Y-%m-%d'), '~')")
        }
        // UTF-8 whatever the column's character set, and one explicit
        // collation for every text column so CONCAT never mixes two.
        (Dialect::MySql, ColumnType::Text) => format!(
            "IF({col} IS NULL, '~', CONCAT(CHAR_LENGTH({col}), ':', CONVERT({col} USING utf8mb4) COLLATE utf8mb4_bin))"
        ),
        (Dialect::MySql, _) => format!("IFNULL(CAST({col} AS CHAR), '~')"),
        (_, ColumnType::Bool) if native == ColumnType::Int => {
            format!("CASE WHEN {col} IS NULL THEN '~' WHEN {col} <> 0 THEN '1' ELSE '0' END")
        }
        (_, ColumnType::Bool) => {
            format!("CASE WHEN {col} IS NULL THEN '~' WHEN {col} THEN '1' ELSE '0' END")
        }
        (_, ColumnType::Timestamp) => {
            format!("COALESCE(to_char({col}, 'YYYY-MM-DD HH24:MI:SS.US'), '~')")
        }
        (_, ColumnType::Date) => format!("COALESCE(to_char({col}, 'YYYY-MM-DD'), '~')"),
        // `concat` prints through the type's output function: a char(n)
        // keeps its padding, as the row-by-row read sees it.
        (_, ColumnType::Text) => format!(
            "CASE WHEN {col} IS NULL THEN '~' ELSE char_length(concat({col}))::text || ':' || concat({col}) END"
        ),
        _ => format!("COALESCE({col}::text, '~')"),
    }
}

/// `md5` of the row's canonical text.
pub(super) fn row_hash(d: Dialect, pieces: &[String]) -> String {
    match d {
        Dialect::MySql => format!("MD5(CONCAT_WS('|', {}))", pieces.join(", ")),
        _ => format!("md5(concat_ws('|', {}))", pieces.join(", ")),
    }
}

fn unexpected(what: &str) -> EngineError {
    EngineError::Apply {
        what: what.to_string(),
        message: "the checksum query returned an unexpected row".into(),
    }
}

pub(super) fn sums_of(rows: Vec<Vec<Value>>, what: &str) -> Result<HashMap<i64, Sum>> {
    // MySQL's XOR is unsigned, PostgreSQL's a signed bigint: the same bits.
    let bits = |v: &Value| -> Option<u64> {
        let text = match v {
            Value::Text(s) => s.clone(),
            Value::Bytes(b) => String::from_utf8(b.clone()).ok()?,
            Value::Int(i) => i.to_string(),
            Value::Decimal(d) => d.to_string(),
            _ => return None,
        };
        let n: i128 = text.trim().parse().ok()?;
        match i64::try_from(n) {
            Ok(i) => Some(i as u64),
            Err(_) => u64::try_from(n).ok(),
        }
    };
    let mut out = HashMap::with_capacity(rows.len());
    for row in rows {
        let (Some(Value::Int(g)), Some(Value::Int(n)), Some(xor)) =
            (row.first(), row.get(1), row.get(2).and_then(bits))
        else {
            return Err(unexpected(what));
        };
        let Ok(rows) = u64::try_from(*n) else {
            return Err(unexpected(what));
        };
        out.insert(*g, Sum { rows, xor });
    }
    Ok(out)
}
