//! One record the filter selected: its fields in the filter's column order,
//! as JSON values (what the HTTP mapper sends, what the UI shows).

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// A record: the filter's columns and their values.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Record {
    fields: Vec<(String, Json)>,
}

impl Record {
    pub fn from_pairs(fields: Vec<(String, Json)>) -> Record {
        Record { fields }
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
