//! PostgreSQL binary `COPY` encoding. The server decodes binary integers and
//! timestamps for much less CPU than their text, which matters when the load
//! and the databases share a few cores. A table with a column type not listed
//! here is copied in text format instead.

use chrono::{Datelike, NaiveDate, NaiveDateTime};

use crate::value::{ColumnType, Value};

/// The PostgreSQL type of a target column, as binary COPY needs it exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BinType {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Text,
    Bytea,
    Uuid,
    Json,
    Jsonb,
    Timestamp,
    TimestampTz,
    Date,
}

impl BinType {
    /// From `pg_type.typname`; `None` for types copied as text only.
    pub fn from_typname(name: &str) -> Option<BinType> {
        Some(match name {
            "bool" => BinType::Bool,
            "int2" => BinType::Int2,
            "int4" => BinType::Int4,
            "int8" => BinType::Int8,
            "float4" => BinType::Float4,
            "float8" => BinType::Float8,
            "text" | "varchar" | "bpchar" | "name" => BinType::Text,
            "bytea" => BinType::Bytea,
            "uuid" => BinType::Uuid,
            "json" => BinType::Json,
            "jsonb" => BinType::Jsonb,
            "timestamp" => BinType::Timestamp,
            "timestamptz" => BinType::TimestampTz,
            "date" => BinType::Date,
            _ => return None,
        })
    }

    /// The engine type a value must have to be encoded for this column.
    fn value_type(self) -> ColumnType {
        match self {
            BinType::Bool => ColumnType::Bool,
            BinType::Int2 | BinType::Int4 | BinType::Int8 => ColumnType::Int,
            BinType::Float4 | BinType::Float8 => ColumnType::Float,
            BinType::Text => ColumnType::Text,
            BinType::Bytea => ColumnType::Bytes,
            BinType::Uuid => ColumnType::Uuid,
            BinType::Json | BinType::Jsonb => ColumnType::Json,
            BinType::Timestamp => ColumnType::Timestamp,
            BinType::TimestampTz => ColumnType::TimestampTz,
            BinType::Date => ColumnType::Date,
        }
    }
}

const PG_EPOCH_DAYS_FROM_CE: i32 = 730_120; // 2000-01-01

fn pg_epoch() -> NaiveDateTime {
    NaiveDate::from_num_days_from_ce_opt(PG_EPOCH_DAYS_FROM_CE)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .unwrap_or_default()
}

/// The binary COPY header.
pub(super) fn header(out: &mut Vec<u8>) {
    out.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    out.extend_from_slice(&0i32.to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes());
}

/// The binary COPY trailer.
pub(super) fn trailer(out: &mut Vec<u8>) {
    out.extend_from_slice(&(-1i16).to_be_bytes());
}

/// Appends one tuple: the row's values, then the version as int8.
pub(super) fn row(
    out: &mut Vec<u8>,
    types: &[BinType],
    values: &[Value],
    version: i64,
) -> Result<(), String> {
    let n = i16::try_from(values.len() + 1).map_err(|_| "too many columns".to_string())?;
    out.extend_from_slice(&n.to_be_bytes());
    for (ty, v) in types.iter().zip(values) {
        field(out, *ty, v)?;
    }
    field(out, BinType::Int8, &Value::Int(version))
}

fn sized(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), String> {
    let len = i32::try_from(bytes.len()).map_err(|_| "value larger than 2 GiB".to_string())?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

fn field(out: &mut Vec<u8>, ty: BinType, v: &Value) -> Result<(), String> {
    if v.is_null() {
        out.extend_from_slice(&(-1i32).to_be_bytes());
        return Ok(());
    }
    if v.column_type() != Some(ty.value_type()) {
        let cast = v.clone().cast(ty.value_type())?;
        return field(out, ty, &cast);
    }
    let range = |what: &str| format!("{v} is out of range for {what}");
    match (ty, v) {
        (BinType::Bool, Value::Bool(b)) => sized(out, &[u8::from(*b)]),
        (BinType::Int2, Value::Int(i)) => sized(
            out,
            &i16::try_from(*i)
                .map_err(|_| range("smallint"))?
                .to_be_bytes(),
        ),
        (BinType::Int4, Value::Int(i)) => sized(
            out,
            &i32::try_from(*i)
                .map_err(|_| range("integer"))?
                .to_be_bytes(),
        ),
        (BinType::Int8, Value::Int(i)) => sized(out, &i.to_be_bytes()),
        (BinType::Float4, Value::Float(f)) => sized(out, &(*f as f32).to_be_bytes()),
        (BinType::Float8, Value::Float(f)) => sized(out, &f.to_be_bytes()),
        (BinType::Text, Value::Text(s)) => sized(out, s.as_bytes()),
        (BinType::Bytea, Value::Bytes(b)) => sized(out, b),
        (BinType::Uuid, Value::Uuid(u)) => sized(out, u.as_bytes()),
        (BinType::Json, Value::Json(j)) => sized(out, j.to_string().as_bytes()),
        (BinType::Jsonb, Value::Json(j)) => {
            let mut bytes = vec![1u8];
            bytes.extend_from_slice(j.to_string().as_bytes());
            sized(out, &bytes)
        }
        (BinType::Timestamp, Value::Timestamp(t)) => micros(out, *t),
        (BinType::TimestampTz, Value::TimestampTz(t)) => micros(out, t.naive_utc()),
        (BinType::Date, Value::Date(d)) => {
            let days = d.num_days_from_ce() - PG_EPOCH_DAYS_FROM_CE;
            sized(out, &days.to_be_bytes())
        }
        _ => Err(format!("{v} does not fit a {ty:?} column")),
    }
}

fn micros(out: &mut Vec<u8>, t: NaiveDateTime) -> Result<(), String> {
    let us = (t - pg_epoch())
        .num_microseconds()
        .ok_or_else(|| format!("timestamp {t} is out of range"))?;
    sized(out, &us.to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_count_microseconds_from_2000() -> Result<(), String> {
        let t = NaiveDate::from_ymd_opt(2000, 1, 2)
            .and_then(|d| d.and_hms_micro_opt(0, 0, 1, 5))
            .ok_or("date")?;
        let mut out = Vec::new();
        field(&mut out, BinType::Timestamp, &Value::Timestamp(t))?;
        let us: i64 = 86_400_000_000 + 1_000_005;
        assert_eq!(out[..4], 8i32.to_be_bytes());
        assert_eq!(out[4..], us.to_be_bytes());
        Ok(())
    }

    #[test]
    fn values_are_cast_to_the_column_and_checked_for_range() {
        let mut out = Vec::new();
        assert!(field(&mut out, BinType::Int4, &Value::Text("7".into())).is_ok());
        assert_eq!(out, [0, 0, 0, 4, 0, 0, 0, 7]);
        let err = field(&mut out, BinType::Int2, &Value::Int(70_000)).unwrap_err();
        assert_eq!(err, "70000 is out of range for smallint");
    }
}
