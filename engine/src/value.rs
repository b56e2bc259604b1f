//! The values the engine moves: one [`Value`] per field, whatever the database,
//! and the [`ColumnType`]s a target column can have. Casting, the canonical text
//! of a value (used for UUIDv5 names and PostgreSQL `COPY`), and the JSON form in
//! which checkpoints store keys live here too.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Timelike, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One field of a source or target row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Decimal(Decimal),
    Text(String),
    Bytes(Vec<u8>),
    Uuid(Uuid),
    Json(serde_json::Value),
    /// A date and time without zone (MySQL `DATETIME`, PostgreSQL `timestamp`).
    Timestamp(NaiveDateTime),
    /// An instant (MySQL `TIMESTAMP`, PostgreSQL `timestamptz`).
    TimestampTz(DateTime<Utc>),
    Date(NaiveDate),
}

/// The type of a target column, independent of the database that stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    Bool,
    Int,
    Float,
    Decimal,
    Text,
    Bytes,
    Uuid,
    Json,
    Timestamp,
    TimestampTz,
    Date,
}

impl ColumnType {
    /// Every type, for error messages that list the choices.
    pub const ALL: [ColumnType; 11] = [
        ColumnType::Bool,
        ColumnType::Int,
        ColumnType::Float,
        ColumnType::Decimal,
        ColumnType::Text,
        ColumnType::Bytes,
        ColumnType::Uuid,
        ColumnType::Json,
        ColumnType::Timestamp,
        ColumnType::TimestampTz,
        ColumnType::Date,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ColumnType::Bool => "bool",
            ColumnType::Int => "int",
            ColumnType::Float => "float",
            ColumnType::Decimal => "decimal",
            ColumnType::Text => "text",
            ColumnType::Bytes => "bytes",
            ColumnType::Uuid => "uuid",
            ColumnType::Json => "json",
            ColumnType::Timestamp => "timestamp",
            ColumnType::TimestampTz => "timestamptz",
            ColumnType::Date => "date",
        }
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ColumnType {
    type Err = String;

    /// Accepts the engine's names and the usual SQL spellings (`bigint`, `varchar`, `jsonb`…).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = match s.trim().to_ascii_lowercase().as_str() {
            "bool" | "boolean" => ColumnType::Bool,
            "int" | "integer" | "bigint" | "smallint" => ColumnType::Int,
            "float" | "double" | "real" | "double precision" => ColumnType::Float,
            "decimal" | "numeric" => ColumnType::Decimal,
            "text" | "string" | "varchar" => ColumnType::Text,
            "bytes" | "blob" | "bytea" => ColumnType::Bytes,
            "uuid" => ColumnType::Uuid,
            "json" | "jsonb" => ColumnType::Json,
            "timestamp" | "datetime" => ColumnType::Timestamp,
            "timestamptz" => ColumnType::TimestampTz,
            "date" => ColumnType::Date,
            other => {
                let names: Vec<_> = ColumnType::ALL.iter().map(|t| t.name()).collect();
                return Err(format!(
                    "unknown type `{other}` (expected one of {})",
                    names.join(", ")
                ));
            }
        };
        Ok(t)
    }
}

const TS_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.6f";
const TSZ_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6fZ";

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The type this value already has, if it is not NULL.
    pub fn column_type(&self) -> Option<ColumnType> {
        Some(match self {
            Value::Null => return None,
            Value::Bool(_) => ColumnType::Bool,
            Value::Int(_) => ColumnType::Int,
            Value::Float(_) => ColumnType::Float,
            Value::Decimal(_) => ColumnType::Decimal,
            Value::Text(_) => ColumnType::Text,
            Value::Bytes(_) => ColumnType::Bytes,
            Value::Uuid(_) => ColumnType::Uuid,
            Value::Json(_) => ColumnType::Json,
            Value::Timestamp(_) => ColumnType::Timestamp,
            Value::TimestampTz(_) => ColumnType::TimestampTz,
            Value::Date(_) => ColumnType::Date,
        })
    }

    /// Converts the value to `to`. NULL stays NULL. The error says what could
    /// not be converted; the caller adds the table, column and row key.
    pub fn cast(self, to: ColumnType) -> Result<Value, String> {
        if self.is_null() || self.column_type() == Some(to) {
            return Ok(self);
        }
        let fail = |v: &Value| format!("cannot cast {} {} to {to}", v.type_label(), v.preview());
        let out = match (to, &self) {
            (ColumnType::Text, Value::Json(serde_json::Value::String(s))) => Value::Text(s.clone()),
            // MySQL reports text in binary collations (and MariaDB's JSON) as
            // bytes; valid UTF-8 is taken as the text it is.
            (ColumnType::Text, Value::Bytes(b)) if std::str::from_utf8(b).is_ok() => {
                Value::Text(String::from_utf8_lossy(b).into_owned())
            }
            (ColumnType::Json, Value::Bytes(b)) => {
                Value::Json(serde_json::from_slice(b).map_err(|_| fail(&self))?)
            }
            (ColumnType::Text, v) => Value::Text(v.canonical_text()),
            (ColumnType::Bool, Value::Int(i)) => Value::Bool(*i != 0),
            (ColumnType::Bool, Value::Text(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "t" | "1" | "yes" | "y" | "on" => Value::Bool(true),
                "false" | "f" | "0" | "no" | "n" | "off" => Value::Bool(false),
                _ => return Err(fail(&self)),
            },
            (ColumnType::Bool, Value::Json(serde_json::Value::Bool(b))) => Value::Bool(*b),
            (ColumnType::Int, Value::Bool(b)) => Value::Int(i64::from(*b)),
            (ColumnType::Int, Value::Float(f))
                if f.fract() == 0.0 && *f >= i64::MIN as f64 && *f <= i64::MAX as f64 =>
            {
                Value::Int(*f as i64)
            }
            (ColumnType::Int, Value::Decimal(d)) if d.fract().is_zero() => {
                Value::Int(i64::try_from(*d).map_err(|_| fail(&self))?)
            }
            (ColumnType::Int, Value::Text(s)) => {
                Value::Int(s.trim().parse::<i64>().map_err(|_| fail(&self))?)
            }
            (ColumnType::Int, Value::Json(serde_json::Value::Number(n))) => {
                Value::Int(n.as_i64().ok_or_else(|| fail(&self))?)
            }
            (ColumnType::Float, Value::Int(i)) => Value::Float(*i as f64),
            (ColumnType::Float, Value::Decimal(d)) => {
                Value::Float(f64::try_from(*d).map_err(|_| fail(&self))?)
            }
            (ColumnType::Float, Value::Text(s)) => {
                Value::Float(s.trim().parse::<f64>().map_err(|_| fail(&self))?)
            }
            (ColumnType::Decimal, Value::Int(i)) => Value::Decimal(Decimal::from(*i)),
            (ColumnType::Decimal, Value::Float(f)) => {
                Value::Decimal(Decimal::try_from(*f).map_err(|_| fail(&self))?)
            }
            (ColumnType::Decimal, Value::Text(s)) => {
                Value::Decimal(Decimal::from_str(s.trim()).map_err(|_| fail(&self))?)
            }
            (ColumnType::Bytes, Value::Text(s)) => Value::Bytes(s.clone().into_bytes()),
            (ColumnType::Uuid, Value::Text(s)) => {
                Value::Uuid(Uuid::parse_str(s.trim()).map_err(|_| fail(&self))?)
            }
            (ColumnType::Uuid, Value::Bytes(b)) => {
                Value::Uuid(Uuid::from_slice(b).map_err(|_| fail(&self))?)
            }
            (ColumnType::Json, Value::Text(s)) => {
                Value::Json(serde_json::from_str(s).map_err(|_| fail(&self))?)
            }
            (ColumnType::Json, v) => Value::Json(v.to_json()),
            (ColumnType::Timestamp, Value::TimestampTz(t)) => Value::Timestamp(t.naive_utc()),
            (ColumnType::Timestamp, Value::Date(d)) => {
                Value::Timestamp(d.and_hms_opt(0, 0, 0).ok_or_else(|| fail(&self))?)
            }
            (ColumnType::Timestamp, Value::Text(s)) => {
                Value::Timestamp(parse_naive(s).ok_or_else(|| fail(&self))?)
            }
            (ColumnType::TimestampTz, Value::Timestamp(t)) => Value::TimestampTz(t.and_utc()),
            (ColumnType::TimestampTz, Value::Text(s)) => {
                let s = s.trim();
                match DateTime::parse_from_rfc3339(s) {
                    Ok(t) => Value::TimestampTz(t.with_timezone(&Utc)),
                    Err(_) => {
                        Value::TimestampTz(parse_naive(s).ok_or_else(|| fail(&self))?.and_utc())
                    }
                }
            }
            (ColumnType::Date, Value::Timestamp(t)) => Value::Date(t.date()),
            (ColumnType::Date, Value::TimestampTz(t)) => Value::Date(t.date_naive()),
            (ColumnType::Date, Value::Text(s)) => Value::Date(
                NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").map_err(|_| fail(&self))?,
            ),
            _ => return Err(fail(&self)),
        };
        Ok(out)
    }

    /// The value as text, the same in every engine and process: integers in
    /// decimal, UUIDs hyphenated lower case, timestamps with six fractional
    /// digits, JSON compact, bytes as `\x` + hex. UUIDv5 names are built from it.
    pub fn canonical_text(&self) -> String {
        match self {
            Value::Null => String::new(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => format_float(*f),
            Value::Decimal(d) => d.to_string(),
            Value::Text(s) => s.clone(),
            Value::Bytes(b) => {
                let mut s = String::with_capacity(2 + b.len() * 2);
                s.push_str("\\x");
                for byte in b {
                    s.push_str(&format!("{byte:02x}"));
                }
                s
            }
            Value::Uuid(u) => u.hyphenated().to_string(),
            Value::Json(j) => j.to_string(),
            Value::Timestamp(t) => t.format(TS_FORMAT).to_string(),
            Value::TimestampTz(t) => t.format(TSZ_FORMAT).to_string(),
            Value::Date(d) => d.format("%Y-%m-%d").to_string(),
        }
    }

    /// The value as a JSON value, for JSON documents assembled from columns.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Json(j) => j.clone(),
            other => J::String(other.canonical_text()),
        }
    }

    /// Appends the value in PostgreSQL `COPY ... (FORMAT text)` form.
    pub fn write_copy_text(&self, out: &mut Vec<u8>) {
        use std::io::Write;
        match self {
            Value::Null => out.extend_from_slice(b"\\N"),
            Value::Bool(b) => out.extend_from_slice(if *b { b"t" } else { b"f" }),
            Value::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Value::Float(f) => out.extend_from_slice(format_float(*f).as_bytes()),
            Value::Text(s) => copy_escape(s.as_bytes(), out),
            Value::Json(j) => copy_escape(j.to_string().as_bytes(), out),
            Value::Timestamp(t) => write_timestamp(out, t),
            Value::TimestampTz(t) => {
                write_timestamp(out, &t.naive_utc());
                out.push(b'Z');
            }
            Value::Date(d) => {
                let _ = write!(out, "{:04}-{:02}-{:02}", d.year(), d.month(), d.day());
            }
            // `\x…` must reach PostgreSQL as `\\x…` through COPY's own escaping.
            other => copy_escape(other.canonical_text().as_bytes(), out),
        }
    }

    /// Orders two values of the same type (NULL first); `None` for values
    /// of different types, which the engine never compares.
    pub fn compare(&self, other: &Value) -> Option<std::cmp::Ordering> {
        use std::cmp::Ordering;
        Some(match (self, other) {
            (Value::Null, Value::Null) => Ordering::Equal,
            (Value::Null, _) => Ordering::Less,
            (_, Value::Null) => Ordering::Greater,
            (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
            (Value::Int(a), Value::Int(b)) => a.cmp(b),
            (Value::Float(a), Value::Float(b)) => a.partial_cmp(b)?,
            (Value::Decimal(a), Value::Decimal(b)) => a.cmp(b),
            (Value::Text(a), Value::Text(b)) => a.cmp(b),
            (Value::Bytes(a), Value::Bytes(b)) => a.cmp(b),
            (Value::Uuid(a), Value::Uuid(b)) => a.cmp(b),
            (Value::Timestamp(a), Value::Timestamp(b)) => a.cmp(b),
            (Value::TimestampTz(a), Value::TimestampTz(b)) => a.cmp(b),
            (Value::Date(a), Value::Date(b)) => a.cmp(b),
            _ => return None,
        })
    }

    fn type_label(&self) -> &'static str {
        self.column_type().map_or("null", ColumnType::name)
    }

    /// A short rendering for error messages.
    pub fn preview(&self) -> String {
        let text = match self {
            Value::Null => return "NULL".to_string(),
            Value::Text(s) => format!("'{s}'"),
            other => other.canonical_text(),
        };
        if text.chars().count() > 60 {
            let cut: String = text.chars().take(57).collect();
            format!("{cut}...")
        } else {
            text
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.preview())
    }
}

fn format_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".to_string()
    } else if f.is_infinite() {
        if f > 0.0 { "Infinity" } else { "-Infinity" }.to_string()
    } else {
        f.to_string()
    }
}

/// `YYYY-MM-DD HH:MM:SS.ffffff`, without chrono's format-string parsing
/// (this runs for every timestamp of every row a load copies or a
/// verification hashes). For years 0 to 9999.
pub(crate) struct TimestampText<'a>(pub &'a NaiveDateTime);

impl std::fmt::Display for TimestampText<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = self.0;
        write!(
            f,
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}",
            t.year(),
            t.month(),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.and_utc().timestamp_subsec_micros().min(999_999)
        )
    }
}

fn write_timestamp(out: &mut Vec<u8>, t: &NaiveDateTime) {
    use std::io::Write;
    let _ = write!(out, "{}", TimestampText(t));
}

fn parse_naive(s: &str) -> Option<NaiveDateTime> {
    let s = s.trim();
    [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
    .or_else(|| {
        NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
    })
}

fn copy_escape(bytes: &[u8], out: &mut Vec<u8>) {
    for &b in bytes {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
    }
}

/// A row key (or any tuple of values) rendered for messages: `(5, 'abc')`.
pub fn render_key(values: &[Value]) -> String {
    let parts: Vec<String> = values.iter().map(Value::preview).collect();
    format!("({})", parts.join(", "))
}

/// The text of a source key stored with every target row of a table with a
/// source (the hidden `_tern_source_key` column), so that the relay finds the
/// rows of a deleted source record: the canonical text of each value
/// ([`Value::canonical_text`]) joined by the ASCII unit separator (U+001F),
/// like UUIDv5 names. `(5, 'abc')` is `"5\u{1f}abc"`.
pub fn source_key_text(key: &[Value]) -> String {
    let mut s = String::new();
    for (i, v) in key.iter().enumerate() {
        if i > 0 {
            s.push('\u{1f}');
        }
        s.push_str(&v.canonical_text());
    }
    s
}

/// A hashable identity of a tuple of values, for dedupe and duplicate checks.
pub fn key_identity(values: &[&Value]) -> String {
    identity_of(values.iter().copied())
}

/// [`key_identity`] of a tuple held by value (a key, a group).
pub fn identity(values: &[Value]) -> String {
    identity_of(values.iter())
}

fn identity_of<'a>(values: impl Iterator<Item = &'a Value>) -> String {
    let mut s = String::new();
    for (i, v) in values.enumerate() {
        if i > 0 {
            s.push('\u{1f}');
        }
        s.push_str(v.type_label());
        s.push(':');
        s.push_str(&v.canonical_text());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn casts_text_to_the_usual_types() {
        assert_eq!(
            Value::Text(" 42 ".into()).cast(ColumnType::Int),
            Ok(Value::Int(42))
        );
        assert_eq!(
            Value::Text("yes".into()).cast(ColumnType::Bool),
            Ok(Value::Bool(true))
        );
        assert_eq!(Value::Int(0).cast(ColumnType::Bool), Ok(Value::Bool(false)));
        assert_eq!(
            Value::Text("2024-02-03 04:05:06".into()).cast(ColumnType::Timestamp),
            Ok(Value::Timestamp(
                NaiveDate::from_ymd_opt(2024, 2, 3)
                    .and_then(|d| d.and_hms_opt(4, 5, 6))
                    .expect("valid date")
            ))
        );
        assert_eq!(Value::Null.cast(ColumnType::Int), Ok(Value::Null));
        assert_eq!(
            Value::Bytes(b"{\"a\":1}".to_vec()).cast(ColumnType::Json),
            Ok(Value::Json(serde_json::json!({"a": 1})))
        );
        assert_eq!(
            Value::Bytes(b"ok".to_vec()).cast(ColumnType::Text),
            Ok(Value::Text("ok".into()))
        );
    }

    #[test]
    fn a_value_that_cannot_be_cast_says_what_and_to_what() {
        let err = Value::Text("maybe".into())
            .cast(ColumnType::Int)
            .unwrap_err();
        assert_eq!(err, "cannot cast text 'maybe' to int");
    }

    #[test]
    fn copy_text_escapes_separators_and_backslashes() {
        let mut out = Vec::new();
        Value::Text("a\tb\nc\\d".into()).write_copy_text(&mut out);
        assert_eq!(out, b"a\\tb\\nc\\\\d");
        out.clear();
        Value::Bytes(vec![0xde, 0xad]).write_copy_text(&mut out);
        assert_eq!(out, b"\\\\xdead");
        out.clear();
        Value::Null.write_copy_text(&mut out);
        assert_eq!(out, b"\\N");
    }

    #[test]
    fn copy_text_of_timestamps_matches_their_canonical_text() {
        let t = NaiveDate::from_ymd_opt(2024, 2, 3)
            .and_then(|d| d.and_hms_micro_opt(4, 5, 6, 7))
            .expect("valid");
        let mut out = Vec::new();
        Value::Timestamp(t).write_copy_text(&mut out);
        assert_eq!(
            String::from_utf8_lossy(&out),
            Value::Timestamp(t).canonical_text()
        );
        out.clear();
        Value::TimestampTz(t.and_utc()).write_copy_text(&mut out);
        assert_eq!(String::from_utf8_lossy(&out), "2024-02-03 04:05:06.000007Z");
    }

    #[test]
    fn values_round_trip_through_json_for_checkpoints() {
        let key = vec![
            Value::Int(7),
            Value::Text("x".into()),
            Value::Uuid(Uuid::nil()),
        ];
        let json = serde_json::to_string(&key).expect("serialize");
        let back: Vec<Value> = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, key);
    }

    #[test]
    fn column_types_parse_sql_spellings() {
        assert_eq!("BIGINT".parse::<ColumnType>(), Ok(ColumnType::Int));
        assert_eq!("jsonb".parse::<ColumnType>(), Ok(ColumnType::Json));
        assert!("widget".parse::<ColumnType>().is_err());
    }
}
