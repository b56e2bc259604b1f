//! One record the filter selected: its fields in the filter's column order,
//! as JSON values (what the HTTP mapper sends, what the UI shows).

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use tern_engine::{Dialect, Value};

/// A record: the filter's columns and their values.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Record {
    fields: Vec<(String, Json)>,
}

impl Record {
    pub fn from_pairs(fields: Vec<(String, Json)>) -> Record {
        Record { fields }
    }

    /// A row the engine's connector read, its values as JSON: numbers,
    /// booleans and JSON as themselves; decimals, UUIDs, dates and times as
    /// text the database reads back (so a guarded write can compare them);
    /// bytes as text when they are UTF-8. `Err` names a column a data fix
    /// cannot read.
    pub fn from_row(
        names: &[String],
        values: Vec<Value>,
        dialect: Dialect,
    ) -> Result<Record, String> {
        let fields = names
            .iter()
            .zip(values)
            .map(|(name, v)| value_to_json(name, v, dialect).map(|j| (name.clone(), j)))
            .collect::<Result<_, _>>()?;
        Ok(Record { fields })
    }

    pub fn get(&self, name: &str) -> Option<&Json> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    pub fn fields(&self) -> &[(String, Json)] {
        &self.fields
    }

    /// The record as a JSON object.
    pub fn to_json(&self) -> Json {
        Json::Object(self.fields.iter().cloned().collect())
    }

    /// The key columns' values as a JSON object.
    pub fn key_json(&self, key: &[String]) -> Json {
        Json::Object(
            key.iter()
                .map(|k| (k.clone(), self.get(k).cloned().unwrap_or(Json::Null)))
                .collect(),
        )
    }

    /// The key as text, `(5)` or `(5, 'abc')`: how failures name a record.
    pub fn key_text(&self, key: &[String]) -> String {
        let parts: Vec<String> = key
            .iter()
            .map(|k| match self.get(k) {
                Some(Json::String(s)) => format!("'{}'", s.replace('\'', "''")),
                Some(v) => v.to_string(),
                None => "null".to_string(),
            })
            .collect();
        format!("({})", parts.join(", "))
    }
}

const DATETIME: &str = "%Y-%m-%d %H:%M:%S%.f";

fn value_to_json(name: &str, v: Value, dialect: Dialect) -> Result<Json, String> {
    Ok(match v {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(b),
        Value::Int(i) => Json::from(i),
        Value::Float(f) => Json::from(f),
        Value::Decimal(d) => Json::String(d.to_string()),
        Value::Text(s) => Json::String(s),
        Value::Bytes(b) => Json::String(String::from_utf8(b).map_err(|_| {
            format!(
                "column {name} holds binary data, which a data fix cannot read; select hex({name}) instead"
            )
        })?),
        Value::Uuid(u) => Json::String(u.to_string()),
        Value::Json(j) => j,
        Value::Timestamp(t) => Json::String(t.format(DATETIME).to_string()),
        // MariaDB reads no offset in a timestamp literal: its wall clock in UTC.
        Value::TimestampTz(t) if dialect == Dialect::MySql => {
            Json::String(t.naive_utc().format(DATETIME).to_string())
        }
        Value::TimestampTz(t) => Json::String(t.to_rfc3339()),
        Value::Date(d) => Json::String(d.to_string()),
    })
}

/// A JSON value as the engine binds it: numbers, booleans and text as
/// themselves, arrays and objects as their JSON text (PostgreSQL casts each
/// parameter to its column's type).
pub(crate) fn json_to_value(v: &Json) -> Value {
    match v {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Value::Int(i),
            (None, Some(f)) => Value::Float(f),
            _ => Value::Text(n.to_string()),
        },
        Json::String(s) => Value::Text(s.clone()),
        other => Value::Text(other.to_string()),
    }
}

/// A value shortened for display: long texts keep their start and say how long they were.
pub fn preview(v: &Json) -> String {
    match v {
        Json::String(s) if s.chars().count() > 60 => {
            let head: String = s.chars().take(40).collect();
            format!("'{head}…' ({} characters)", s.chars().count())
        }
        Json::String(s) => format!("'{s}'"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_render_like_sql_and_long_values_are_previewed() {
        let r = Record::from_pairs(vec![("id".into(), json!(5)), ("k".into(), json!("a'b"))]);
        assert_eq!(r.key_text(&["id".into(), "k".into()]), "(5, 'a''b')");
        assert_eq!(r.key_json(&["id".into()]), json!({"id": 5}));
        let long = json!("x".repeat(5000));
        assert!(preview(&long).ends_with("(5000 characters)"));
    }
}
