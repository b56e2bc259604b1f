//! Shadow comparison: a client sends the answer its old system gave and the
//! answer the new system gave for the same request (two JSON documents); this
//! module normalizes both and says which paths differ, as a tree that reads
//! like seed 001's "tree-like log".
//!
//! Normalization, in order:
//! - **ignore rules** drop fields: a bare name (`updated_at`) drops that field
//!   at any depth; a path (`profile.emails[].verified_at`, `meta.*`) drops
//!   exactly that path, where `*` matches any one field name and `[]` any index;
//! - **numbers** compare by value (`1` equals `1.0`), rounded to `decimals`
//!   places when set;
//! - **times**: strings that are RFC 3339 timestamps compare as the same instant
//!   in UTC, to the millisecond (`…T10:00:00+02:00` equals `…T08:00:00.000Z`);
//! - **order-insensitive lists**: arrays at the paths listed in `unordered`
//!   (or every array, with `unordered_all`) are sorted by their normalized
//!   content before they are compared.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};

/// How two documents are normalized before they are compared. Stored per
/// client as JSON; every field may be left out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ShadowRules {
    /// Field names (any depth) or paths to leave out of the comparison.
    pub ignore: Vec<String>,
    /// Paths of arrays whose order does not matter (`friends`, `items[].tags`).
    pub unordered: Vec<String>,
    /// Every array's order does not matter.
    pub unordered_all: bool,
    /// Round numbers to this many decimal places before comparing.
    pub decimals: Option<u32>,
    /// Keep timestamps as written instead of comparing them as instants.
    pub exact_times: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Seg {
    Key(String),
    Index(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pat {
    Key(String),
    AnyKey,
    AnyIndex,
    Index(usize),
}

/// Parses `a.b[].c[2].*` into segments.
fn parse_pattern(p: &str) -> Vec<Pat> {
    let mut out = Vec::new();
    for part in p.split('.').filter(|s| !s.is_empty()) {
        let (name, rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if name == "*" {
            out.push(Pat::AnyKey);
        } else if !name.is_empty() {
            out.push(Pat::Key(name.to_string()));
        }
        for idx in rest.split('[').filter(|s| !s.is_empty()) {
            let idx = idx.trim_end_matches(']');
            match idx.parse::<usize>() {
                Ok(n) => out.push(Pat::Index(n)),
                Err(_) => out.push(Pat::AnyIndex),
            }
        }
    }
    out
}

fn matches(pattern: &[Pat], path: &[Seg]) -> bool {
    pattern.len() == path.len()
        && pattern.iter().zip(path).all(|(p, s)| match (p, s) {
            (Pat::Key(k), Seg::Key(s)) => k == s,
            (Pat::AnyKey, Seg::Key(_)) => true,
            (Pat::AnyIndex, Seg::Index(_)) => true,
            (Pat::Index(n), Seg::Index(i)) => n == i,
            _ => false,
        })
}

/// The rules, parsed once per comparison.
struct Compiled<'a> {
    rules: &'a ShadowRules,
    ignore_names: Vec<&'a str>,
    ignore_paths: Vec<Vec<Pat>>,
    unordered: Vec<Vec<Pat>>,
}

impl<'a> Compiled<'a> {
    fn new(rules: &'a ShadowRules) -> Compiled<'a> {
        let (names, paths): (Vec<&String>, Vec<&String>) = rules
            .ignore
            .iter()
            .filter(|r| !r.trim().is_empty())
            .partition(|r| !r.contains('.') && !r.contains('[') && r.as_str() != "*");
        Compiled {
            rules,
            ignore_names: names.into_iter().map(|s| s.trim()).collect(),
            ignore_paths: paths.into_iter().map(|p| parse_pattern(p.trim())).collect(),
            unordered: rules.unordered.iter().map(|p| parse_pattern(p)).collect(),
        }
    }

    fn ignored(&self, path: &[Seg]) -> bool {
        if let Some(Seg::Key(k)) = path.last()
            && self.ignore_names.contains(&k.as_str())
        {
            return true;
        }
        self.ignore_paths.iter().any(|p| matches(p, path))
    }

    fn is_unordered(&self, path: &[Seg]) -> bool {
        self.rules.unordered_all || self.unordered.iter().any(|p| matches(p, path))
    }

    fn normalize(&self, v: &Value, path: &mut Vec<Seg>) -> Value {
        match v {
            Value::Object(m) => {
                let mut out = Map::new();
                for (k, child) in m {
                    path.push(Seg::Key(k.clone()));
                    if !self.ignored(path) {
                        out.insert(k.clone(), self.normalize(child, path));
                    }
                    path.pop();
                }
                Value::Object(out)
            }
            Value::Array(items) => {
                let mut out: Vec<Value> = Vec::with_capacity(items.len());
                for (i, child) in items.iter().enumerate() {
                    path.push(Seg::Index(i));
                    if !self.ignored(path) {
                        out.push(self.normalize(child, path));
                    }
                    path.pop();
                }
                if self.is_unordered(path) {
                    out.sort_by_cached_key(|v| v.to_string());
                }
                Value::Array(out)
            }
            Value::Number(n) => normalize_number(n, self.rules.decimals),
            Value::String(s) if !self.rules.exact_times => normalize_time(s)
                .map(Value::String)
                .unwrap_or_else(|| v.clone()),
            _ => v.clone(),
        }
    }
}

fn normalize_number(n: &Number, decimals: Option<u32>) -> Value {
    let Some(f) = n.as_f64() else {
        return Value::Number(n.clone());
    };
    let f = match decimals {
        Some(d) => {
            let scale = 10f64.powi(d.min(15) as i32);
            (f * scale).round() / scale
        }
        None => f,
    };
    // Integral values print as integers so `1` and `1.0` come out the same.
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        Value::Number(Number::from(f as i64))
    } else {
        Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or_else(|| Value::Number(n.clone()))
    }
}

fn normalize_time(s: &str) -> Option<String> {
    // Cheap test first: most strings are not timestamps.
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !(b[10] == b'T' || b[10] == b' ') {
        return None;
    }
    let t = chrono::DateTime::parse_from_rfc3339(&s.replacen(' ', "T", 1)).ok()?;
    Some(
        t.with_timezone(&chrono::Utc)
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string(),
    )
}

/// A document after the rules are applied (what is actually compared).
pub fn normalize(doc: &Value, rules: &ShadowRules) -> Value {
    Compiled::new(rules).normalize(doc, &mut Vec::new())
}

/// How one path differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiffKind {
    /// In the old answer, not in the new one.
    Missing,
    /// In the new answer, not in the old one.
    Extra,
    /// In both, with different values.
    Changed,
}

/// One differing path with both sides' (normalized) values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Difference {
    /// `profile.emails[1].address`; empty for the whole document.
    pub path: String,
    pub kind: DiffKind,
    pub old: Option<Value>,
    pub new: Option<Value>,
}

/// The outcome of comparing two answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowResult {
    pub differences: Vec<Difference>,
}

impl ShadowResult {
    /// True when the normalized answers are equal.
    pub fn matched(&self) -> bool {
        self.differences.is_empty()
    }

    /// The differing paths as a tree.
    pub fn tree(&self) -> MismatchTree {
        let mut root = MismatchTree::default();
        for d in &self.differences {
            let mut node = &mut root;
            for seg in split_path(&d.path) {
                node = node.children.entry(seg).or_default();
            }
            node.leaf = Some(d.clone());
        }
        root
    }

    /// The tree as text (see [`MismatchTree::render`]).
    pub fn render(&self) -> String {
        self.tree().render()
    }
}

fn split_path(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|s| !s.is_empty()) {
        let (name, rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            out.push(name.to_string());
        }
        for idx in rest.split('[').filter(|s| !s.is_empty()) {
            out.push(format!("[{idx}"));
        }
    }
    out
}

/// The differing paths as a tree: one node per field or index on the way to a
/// difference; a node with a leaf is where the documents differ.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MismatchTree {
    pub children: BTreeMap<String, MismatchTree>,
    pub leaf: Option<Difference>,
}

fn short(v: &Option<Value>) -> String {
    match v {
        None => "—".into(),
        Some(v) => {
            let s = v.to_string();
            if s.chars().count() > 60 {
                format!("{}…", s.chars().take(59).collect::<String>())
            } else {
                s
            }
        }
    }
}

impl MismatchTree {
    /// Text like:
    ///
    /// ```text
    /// profile
    /// ├── emails
    /// │   └── [1]: missing in new (was "b@example.com")
    /// └── name: "Ann" → "Anne"
    /// ```
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Some(d) = &self.leaf {
            let _ = writeln!(out, "(document): {}", describe(d));
        }
        for (name, child) in &self.children {
            child.render_into(&mut out, name, "", None);
        }
        out
    }

    fn render_into(&self, out: &mut String, name: &str, prefix: &str, last: Option<bool>) {
        let (branch, next_prefix) = match last {
            None => (String::new(), String::new()),
            Some(true) => (format!("{prefix}└── "), format!("{prefix}    ")),
            Some(false) => (format!("{prefix}├── "), format!("{prefix}│   ")),
        };
        match &self.leaf {
            Some(d) => {
                let _ = writeln!(out, "{branch}{name}: {}", describe(d));
            }
            None => {
                let _ = writeln!(out, "{branch}{name}");
            }
        }
        let n = self.children.len();
        for (i, (child_name, child)) in self.children.iter().enumerate() {
            child.render_into(out, child_name, &next_prefix, Some(i + 1 == n));
        }
    }
}

fn describe(d: &Difference) -> String {
    match d.kind {
        DiffKind::Missing => format!("missing in new (old {})", short(&d.old)),
        DiffKind::Extra => format!("extra in new ({})", short(&d.new)),
        DiffKind::Changed => format!("{} → {}", short(&d.old), short(&d.new)),
    }
}

fn join(path: &str, seg: &Seg) -> String {
    match seg {
        Seg::Key(k) if path.is_empty() => k.clone(),
        Seg::Key(k) => format!("{path}.{k}"),
        Seg::Index(i) => format!("{path}[{i}]"),
    }
}

fn diff(old: &Value, new: &Value, path: &str, out: &mut Vec<Difference>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, av) in a {
                let p = join(path, &Seg::Key(k.clone()));
                match b.get(k) {
                    Some(bv) => diff(av, bv, &p, out),
                    None => out.push(Difference {
                        path: p,
                        kind: DiffKind::Missing,
                        old: Some(av.clone()),
                        new: None,
                    }),
                }
            }
            for (k, bv) in b {
                if !a.contains_key(k) {
                    out.push(Difference {
                        path: join(path, &Seg::Key(k.clone())),
                        kind: DiffKind::Extra,
                        old: None,
                        new: Some(bv.clone()),
                    });
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for i in 0..a.len().max(b.len()) {
                let p = join(path, &Seg::Index(i));
                match (a.get(i), b.get(i)) {
                    (Some(av), Some(bv)) => diff(av, bv, &p, out),
                    (Some(av), None) => out.push(Difference {
                        path: p,
                        kind: DiffKind::Missing,
                        old: Some(av.clone()),
                        new: None,
                    }),
                    (None, Some(bv)) => out.push(Difference {
                        path: p,
                        kind: DiffKind::Extra,
                        old: None,
                        new: Some(bv.clone()),
                    }),
                    (None, None) => {}
                }
            }
        }
        (a, b) if a == b => {}
        (a, b) => out.push(Difference {
            path: path.to_string(),
            kind: DiffKind::Changed,
            old: Some(a.clone()),
            new: Some(b.clone()),
        }),
    }
}

/// Compares the old and the new answer under `rules`.
pub fn compare(old: &Value, new: &Value, rules: &ShadowRules) -> ShadowResult {
    let compiled = Compiled::new(rules);
    let old = compiled.normalize(old, &mut Vec::new());
    let new = compiled.normalize(new, &mut Vec::new());
    let mut differences = Vec::new();
    diff(&old, &new, "", &mut differences);
    ShadowResult { differences }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn profile() -> Value {
        json!({
            "id": 42,
            "name": "Ann",
            "updated_at": "2024-05-01T10:00:00+02:00",
            "profile": {
                "emails": [{"address": "a@example.com", "verified_at": "2024-01-01T00:00:00Z"},
                           {"address": "b@example.com", "verified_at": null}],
                "score": 1.0,
                "tags": ["x", "y"]
            }
        })
    }

    #[test]
    fn equal_documents_have_no_differences() {
        let r = compare(&profile(), &profile(), &ShadowRules::default());
        assert!(r.matched());
        assert_eq!(r.render(), "");
    }

    #[test]
    fn nested_differences_come_out_as_a_tree() {
        let mut new = profile();
        new["name"] = json!("Anne");
        new["profile"]["emails"][1]["address"] = json!("c@example.com");
        new["profile"]["emails"][0]
            .as_object_mut()
            .map(|o| o.remove("verified_at"));
        new["profile"]["nickname"] = json!("annie");
        let r = compare(&profile(), &new, &ShadowRules::default());
        let paths: Vec<&str> = r.differences.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "name",
                "profile.emails[0].verified_at",
                "profile.emails[1].address",
                "profile.nickname"
            ]
        );
        let text = r.render();
        assert_eq!(
            text,
            "name: \"Ann\" → \"Anne\"\n\
             profile\n\
             ├── emails\n\
             │   ├── [0]\n\
             │   │   └── verified_at: missing in new (old \"2024-01-01T00:00:00.000Z\")\n\
             │   └── [1]\n\
             │       └── address: \"b@example.com\" → \"c@example.com\"\n\
             └── nickname: extra in new (\"annie\")\n"
        );
    }

    #[test]
    fn ignore_rules_drop_fields_by_name_and_by_path() {
        let mut new = profile();
        new["updated_at"] = json!("2025-01-01T00:00:00Z");
        new["profile"]["emails"][0]["verified_at"] = json!("2030-01-01T00:00:00Z");
        new["profile"]["emails"][1]["verified_at"] = json!("2030-01-01T00:00:00Z");
        let without = compare(&profile(), &new, &ShadowRules::default());
        assert_eq!(without.differences.len(), 3);

        let rules = ShadowRules {
            ignore: vec!["updated_at".into(), "profile.emails[].verified_at".into()],
            ..Default::default()
        };
        assert!(compare(&profile(), &new, &rules).matched());

        // A path rule is exact: the same field name elsewhere still counts.
        let mut other = profile();
        other["verified_at"] = json!("x");
        let r = compare(&profile(), &other, &rules);
        assert_eq!(r.differences.len(), 1);
        assert_eq!(r.differences[0].path, "verified_at");

        let wildcard = ShadowRules {
            ignore: vec!["profile.*".into()],
            ..Default::default()
        };
        let mut p = profile();
        p["profile"]["score"] = json!(7);
        assert!(compare(&profile(), &p, &wildcard).matched());
    }

    #[test]
    fn lists_are_ordered_unless_configured() {
        let mut new = profile();
        new["profile"]["tags"] = json!(["y", "x"]);
        assert!(!compare(&profile(), &new, &ShadowRules::default()).matched());
        let rules = ShadowRules {
            unordered: vec!["profile.tags".into()],
            ..Default::default()
        };
        assert!(compare(&profile(), &new, &rules).matched());
        let all = ShadowRules {
            unordered_all: true,
            ..Default::default()
        };
        let mut emails = profile();
        let e = emails["profile"]["emails"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        emails["profile"]["emails"] = json!([e[1], e[0]]);
        assert!(compare(&profile(), &emails, &all).matched());
        assert!(!compare(&profile(), &emails, &rules).matched());
    }

    #[test]
    fn numbers_and_times_compare_by_value() {
        let old = json!({"n": 1, "f": 0.1234, "t": "2024-05-01T10:00:00+02:00"});
        let new = json!({"n": 1.0, "f": 0.1231, "t": "2024-05-01T08:00:00.000Z"});
        let r = compare(&old, &new, &ShadowRules::default());
        assert_eq!(r.differences.len(), 1, "{}", r.render());
        assert_eq!(r.differences[0].path, "f");
        let rounded = ShadowRules {
            decimals: Some(2),
            ..Default::default()
        };
        assert!(compare(&old, &new, &rounded).matched());
        let exact = ShadowRules {
            exact_times: true,
            decimals: Some(2),
            ..Default::default()
        };
        assert_eq!(compare(&old, &new, &exact).differences[0].path, "t");
    }

    #[test]
    fn different_types_and_lengths_are_reported() {
        let r = compare(
            &json!({"a": [1, 2, 3], "b": "1"}),
            &json!({"a": [1, 2], "b": 1}),
            &ShadowRules::default(),
        );
        assert_eq!(r.differences.len(), 2);
        assert_eq!(r.differences[0].kind, DiffKind::Missing);
        assert_eq!(r.differences[0].path, "a[2]");
        assert_eq!(r.differences[1].kind, DiffKind::Changed);
        let whole = compare(&json!(1), &json!("x"), &ShadowRules::default());
        assert!(whole.render().starts_with("(document): 1 → \"x\""));
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            (-1.0e6f64..1.0e6).prop_map(|f| json!(f)),
            "[a-z0-9 ]{0,8}".prop_map(Value::String),
            Just(json!("2024-05-01T10:00:00+02:00")),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map("[a-e]{1,3}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// A document equals itself after normalization, under any rules.
        #[test]
        fn a_document_equals_itself(doc in arb_json(), unordered_all in any::<bool>(),
                                    decimals in proptest::option::of(0u32..6),
                                    ignore in proptest::collection::vec("[a-e]{1,3}", 0..3)) {
            let rules = ShadowRules { ignore, unordered_all, decimals, ..Default::default() };
            prop_assert!(compare(&doc, &doc, &rules).matched());
            let once = normalize(&doc, &rules);
            prop_assert_eq!(normalize(&once, &rules), once.clone());
            prop_assert!(compare(&once, &doc, &rules).matched());
        }
    }
}
