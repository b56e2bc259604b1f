//! Deterministic IDs: the UUIDv5 of a namespace and source fields, the same
//! in the spec's `uuid5` transform, in expressions (`uuid5(…)`) and in an
//! application's own dual-write (`tern_engine::transform::uuid5`).

use uuid::Uuid;

use crate::value::Value;

/// Separator between fields in a UUIDv5 name (ASCII unit separator), chosen
/// because it does not occur in ordinary text, so `("a:b", "c")` and
/// `("a", "b:c")` get different IDs.
pub const UUID5_SEPARATOR: char = '\u{1f}';

/// The deterministic ID of a record: UUIDv5 of `namespace` and the canonical
/// text of `fields` ([`Value::canonical_text`]) joined by [`UUID5_SEPARATOR`].
/// The same fields give the same ID in every run, process and engine, so the
/// bulk load, the relay and an application's own dual-write agree (seed 001).
pub fn uuid5(namespace: &Uuid, fields: &[&Value]) -> Uuid {
    let mut name = String::new();
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            name.push(UUID5_SEPARATOR);
        }
        name.push_str(&f.canonical_text());
    }
    Uuid::new_v5(namespace, name.as_bytes())
}

/// A spec's `namespace`: a UUID as written, or any other text hashed into one
/// (UUIDv5 of the text in the URL namespace), so `namespace = "conversations"`
/// is stable too.
pub fn uuid5_namespace(text: &str) -> Uuid {
    Uuid::parse_str(text.trim())
        .unwrap_or_else(|_| Uuid::new_v5(&Uuid::NAMESPACE_URL, text.as_bytes()))
}
