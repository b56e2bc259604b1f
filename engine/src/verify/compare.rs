//! Field-by-field comparison of an expected row (the source through the
//! spec's transform) with the row the target holds, and the mismatch tree.
//!
//! What counts as a difference, on purpose strict (a user asked "is the copy
//! exact?", and each of these breaks some reader of the new system):
//! - NULL and the empty string differ (`Value::Null` vs `Value::Text("")`).
//! - Timestamps compare to the microsecond: a value rounded to seconds or
//!   milliseconds in the target differs from the source's.
//! - JSON lists are ordered: `[1, 2]` and `[2, 1]` differ (the diff says the
//!   list has the same elements in another order). JSON object key order does
//!   not matter (it carries no meaning in JSON).
//! - Values are compared after the spec's casts, so a source `TINYINT` 1 and a
//!   target `BOOLEAN` true are equal; a spec that wants a looser rule says so
//!   with a cast, `trim` or `lower` on the column, which both sides then share.
//!
//! Floats compare exactly (bit-for-bit equal values; NaN equals NaN).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value as J;

use crate::value::Value;

/// One field that differs, with both full values (never truncated).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldDiff {
    /// Column, then JSON path inside it: `payload.items[2].sku`.
    pub path: String,
    /// The expected value (source through the transform), as JSON.
    pub source: J,
    /// The value in the target, as JSON.
    pub target: J,
    /// What kind of difference, when it is one of the telling ones:
    /// `null vs empty string`, `timestamp precision`, `list order`, `type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Equality as verification defines it (see the module doc).
pub fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => x == y || (x.is_nan() && y.is_nan()),
        _ => a == b,
    }
}

/// The differences between the expected row and the target row, column by
/// column (`columns` names both rows' fields, in order). Empty when equal.
pub fn diff_rows(columns: &[String], expected: &[Value], actual: &[Value]) -> Vec<FieldDiff> {
    let mut out = Vec::new();
    for (i, name) in columns.iter().enumerate() {
        let (Some(a), Some(b)) = (expected.get(i), actual.get(i)) else {
            continue;
        };
        if values_equal(a, b) {
            continue;
        }
        diff_value(name, a, b, &mut out);
    }
    out
}

fn diff_value(path: &str, a: &Value, b: &Value, out: &mut Vec<FieldDiff>) {
    if let (Value::Json(x), Value::Json(y)) = (a, b) {
        diff_json(path, x, y, out);
        return;
    }
    let note = match (a, b) {
        (Value::Null, Value::Text(s)) | (Value::Text(s), Value::Null) if s.is_empty() => {
            Some("null vs empty string")
        }
        (Value::Timestamp(x), Value::Timestamp(y))
            if x.and_utc().timestamp() == y.and_utc().timestamp() =>
        {
            Some("timestamp precision")
        }
        (Value::TimestampTz(x), Value::TimestampTz(y)) if x.timestamp() == y.timestamp() => {
            Some("timestamp precision")
        }
        (x, y) if !x.is_null() && !y.is_null() && x.column_type() != y.column_type() => {
            Some("type")
        }
        _ => None,
    };
    out.push(FieldDiff {
        path: path.to_string(),
        source: a.to_json(),
        target: b.to_json(),
        note: note.map(str::to_string),
    });
}

/// Differences inside two JSON documents: objects field by field, lists
/// reported at the list (with a note when only the order differs), scalars
/// at their path.
pub fn diff_json(path: &str, a: &J, b: &J, out: &mut Vec<FieldDiff>) {
    if a == b {
        return;
    }
    match (a, b) {
        (J::Object(x), J::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let sub = format!("{path}.{k}");
                match (x.get(k), y.get(k)) {
                    (Some(p), Some(q)) => diff_json(&sub, p, q, out),
                    (p, q) => out.push(FieldDiff {
                        path: sub,
                        source: p.cloned().unwrap_or(J::Null),
                        target: q.cloned().unwrap_or(J::Null),
                        note: Some(if p.is_none() {
                            "field only in target".into()
                        } else {
                            "field missing in target".into()
                        }),
                    }),
                }
            }
        }
        (J::Array(x), J::Array(y)) => {
            let note = if x.len() == y.len() && same_multiset(x, y) {
                Some("list order".to_string())
            } else {
                None
            };
            out.push(FieldDiff {
                path: path.to_string(),
                source: a.clone(),
                target: b.clone(),
                note,
            });
        }
        _ => out.push(FieldDiff {
            path: path.to_string(),
            source: a.clone(),
            target: b.clone(),
            note: None,
        }),
    }
}

fn same_multiset(x: &[J], y: &[J]) -> bool {
    let mut a: Vec<String> = x.iter().map(J::to_string).collect();
    let mut b: Vec<String> = y.iter().map(J::to_string).collect();
    a.sort();
    b.sort();
    a == b
}

/// The mismatch tree: per field path, how many rows differ there, with
/// example keys. Missing and extra rows are the top-level entries
/// `(missing in target)` and `(extra in target)`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MismatchTree {
    pub children: BTreeMap<String, TreeNode>,
}

/// One path segment of the tree.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TreeNode {
    /// Rows with at least one difference at or below this path.
    pub rows: u64,
    /// Up to [`MismatchTree::EXAMPLES`] row keys, first found first.
    pub examples: Vec<String>,
    pub children: BTreeMap<String, TreeNode>,
}

/// Row-level pseudo paths of the tree.
pub const MISSING_PATH: &str = "(missing in target)";
pub const EXTRA_PATH: &str = "(extra in target)";

impl MismatchTree {
    /// Example keys kept per node.
    pub const EXAMPLES: usize = 3;

    /// Adds one mismatched row (rendered key) and the paths where it differs.
    pub fn add(&mut self, key: &str, paths: &[String]) {
        // A row counts once per node, even when several of its paths share it.
        let mut seen: std::collections::HashSet<Vec<&str>> = std::collections::HashSet::new();
        for p in paths {
            let segments = split_path(p);
            for depth in 1..=segments.len() {
                let prefix = segments[..depth].to_vec();
                if !seen.insert(prefix.clone()) {
                    continue;
                }
                let n = walk(&mut self.children, &prefix);
                n.rows += 1;
                if n.examples.len() < Self::EXAMPLES {
                    n.examples.push(key.to_string());
                }
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }

    /// The tree as indented text, one path per line:
    /// `body  3 rows  e.g. (5), (9)`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        render_level(&self.children, 0, &mut out);
        out
    }
}

fn walk<'a>(children: &'a mut BTreeMap<String, TreeNode>, prefix: &[&str]) -> &'a mut TreeNode {
    let (first, rest) = prefix.split_first().expect("a path has a segment");
    let n = children.entry((*first).to_string()).or_default();
    if rest.is_empty() {
        n
    } else {
        walk(&mut n.children, rest)
    }
}

fn render_level(level: &BTreeMap<String, TreeNode>, depth: usize, out: &mut String) {
    for (name, node) in level {
        let row_word = if node.rows == 1 { "row" } else { "rows" };
        out.push_str(&format!(
            "{}{name}  {} {row_word}  e.g. {}\n",
            "  ".repeat(depth),
            node.rows,
            node.examples.join(", ")
        ));
        render_level(&node.children, depth + 1, out);
    }
}

/// `payload.items[2].sku` → `["payload", "items[2]", "sku"]`; the row-level
/// pseudo paths stay whole.
fn split_path(p: &str) -> Vec<&str> {
    if p.starts_with('(') {
        return vec![p];
    }
    p.split('.').collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;
    use proptest::prelude::*;
    use serde_json::json;

    fn cols(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn null_and_empty_string_differ_and_say_so() {
        let d = diff_rows(
            &cols(&["id", "body"]),
            &[Value::Int(1), Value::Null],
            &[Value::Int(1), Value::Text(String::new())],
        );
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].path, "body");
        assert_eq!(d[0].source, J::Null);
        assert_eq!(d[0].target, json!(""));
        assert_eq!(d[0].note.as_deref(), Some("null vs empty string"));
    }

    #[test]
    fn a_timestamp_rounded_in_the_target_is_a_precision_difference() {
        let t = NaiveDate::from_ymd_opt(2024, 1, 2)
            .and_then(|d| d.and_hms_micro_opt(3, 4, 5, 123_456))
            .expect("valid");
        let r = NaiveDate::from_ymd_opt(2024, 1, 2)
            .and_then(|d| d.and_hms_opt(3, 4, 5))
            .expect("valid");
        let d = diff_rows(
            &cols(&["at"]),
            &[Value::Timestamp(t)],
            &[Value::Timestamp(r)],
        );
        assert_eq!(d[0].note.as_deref(), Some("timestamp precision"));
        assert_eq!(d[0].source, json!("2024-01-02 03:04:05.123456"));
        assert_eq!(d[0].target, json!("2024-01-02 03:04:05.000000"));
    }

    #[test]
    fn json_objects_recurse_and_lists_keep_their_order() {
        let a = json!({"a": {"b": 1, "c": [1, 2]}, "k": "x"});
        let b = json!({"k": "x", "a": {"c": [2, 1], "b": 2}});
        let d = diff_rows(&cols(&["doc"]), &[Value::Json(a)], &[Value::Json(b)]);
        let paths: Vec<_> = d.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["doc.a.b", "doc.a.c"]);
        assert_eq!(d[1].note.as_deref(), Some("list order"));
        // Key order alone is no difference.
        assert!(
            diff_rows(
                &cols(&["doc"]),
                &[Value::Json(json!({"x": 1, "y": 2}))],
                &[Value::Json(json!({"y": 2, "x": 1}))]
            )
            .is_empty()
        );
    }

    #[test]
    fn the_tree_counts_rows_per_path_once_with_examples() {
        let mut t = MismatchTree::default();
        t.add("(1)", &["doc.a".into(), "doc.b".into()]);
        t.add("(2)", &["doc.a".into()]);
        t.add("(3)", &["body".into()]);
        t.add("(4)", &[MISSING_PATH.into()]);
        let doc = &t.children["doc"];
        assert_eq!(doc.rows, 2);
        assert_eq!(doc.children["a"].rows, 2);
        assert_eq!(doc.children["b"].rows, 1);
        assert_eq!(doc.children["a"].examples, ["(1)", "(2)"]);
        assert_eq!(t.children[MISSING_PATH].rows, 1);
        let text = t.render();
        assert!(
            text.contains("doc  2 rows  e.g. (1), (2)\n  a  2 rows"),
            "{text}"
        );
        assert!(
            text.contains("(missing in target)  1 row  e.g. (4)"),
            "{text}"
        );
    }

    fn json_strategy() -> impl Strategy<Value = J> {
        let leaf = prop_oneof![
            Just(J::Null),
            any::<bool>().prop_map(J::Bool),
            any::<i32>().prop_map(|i| json!(i)),
            "[a-z]{0,6}".prop_map(J::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(J::Array),
                prop::collection::btree_map("[a-c]{1,2}", inner, 0..4)
                    .prop_map(|m| J::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn a_row_equals_itself(doc in json_strategy(), s in ".{0,8}", i in any::<i64>()) {
            let row = vec![Value::Json(doc), Value::Text(s), Value::Int(i)];
            prop_assert!(diff_rows(&cols(&["a", "b", "c"]), &row, &row.clone()).is_empty());
        }

        #[test]
        fn a_changed_leaf_is_found_at_its_path(doc in json_strategy(), n in any::<i32>()) {
            let a = json!({"wrap": doc.clone(), "leaf": n});
            let b = json!({"wrap": doc, "leaf": i64::from(n) + 1});
            let d = diff_rows(&cols(&["d"]), &[Value::Json(a)], &[Value::Json(b)]);
            prop_assert_eq!(d.len(), 1);
            prop_assert_eq!(d[0].path.as_str(), "d.leaf");
        }
    }
}
