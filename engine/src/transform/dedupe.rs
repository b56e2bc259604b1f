//! Dedupers: a denormalized source repeats shared content once per
//! participant (seed 001); the target keeps one copy. Within a chunk, rows with
//! equal dedupe keys collapse to one. Across chunks and buckets the writes are
//! idempotent upserts by key, so a copy written again changes nothing.

use std::collections::HashMap;
use std::collections::HashSet;

use crate::spec::Keep;
use crate::value::{Value, key_identity};

fn identity(row: &[Value], key: &[usize]) -> String {
    let vals: Vec<&Value> = key.iter().map(|&i| &row[i]).collect();
    key_identity(&vals)
}

/// Keeps one row per dedupe key, in the order keys first appear.
pub(crate) fn collapse(rows: Vec<Vec<Value>>, key: &[usize], keep: Keep) -> Vec<Vec<Value>> {
    let mut slot: HashMap<String, usize> = HashMap::with_capacity(rows.len());
    let mut out: Vec<Vec<Value>> = Vec::with_capacity(rows.len());
    for row in rows {
        match slot.entry(identity(&row, key)) {
            std::collections::hash_map::Entry::Occupied(e) => {
                if keep == Keep::Last {
                    out[*e.get()] = row;
                }
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(out.len());
                out.push(row);
            }
        }
    }
    out
}

/// Index of the first row whose key an earlier row already has.
pub(crate) fn first_duplicate(rows: &[Vec<Value>], key: &[usize]) -> Option<usize> {
    // The usual one-integer key, checked on every chunk of a bulk load:
    // without building a text identity per row.
    if let [k] = key
        && rows.iter().all(|r| matches!(r[*k], Value::Int(_)))
    {
        let mut seen = HashSet::with_capacity(rows.len());
        return rows
            .iter()
            .position(|r| matches!(r[*k], Value::Int(i) if !seen.insert(i)));
    }
    let mut seen = HashSet::with_capacity(rows.len());
    rows.iter().position(|r| !seen.insert(identity(r, key)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<Vec<Value>> {
        vec![
            vec![Value::Int(1), Value::Text("a".into())],
            vec![Value::Int(2), Value::Text("b".into())],
            vec![Value::Int(1), Value::Text("c".into())],
        ]
    }

    #[test]
    fn collapse_keeps_first_or_last_in_first_seen_order() {
        let first = collapse(rows(), &[0], Keep::First);
        assert_eq!(first, vec![rows()[0].clone(), rows()[1].clone()]);
        let last = collapse(rows(), &[0], Keep::Last);
        assert_eq!(last, vec![rows()[2].clone(), rows()[1].clone()]);
    }

    #[test]
    fn a_repeated_integer_key_is_found_on_the_fast_path() {
        let r = vec![
            vec![Value::Int(3)],
            vec![Value::Int(4)],
            vec![Value::Int(3)],
        ];
        assert_eq!(first_duplicate(&r, &[0]), Some(2));
        assert_eq!(first_duplicate(&r[..2], &[0]), None);
    }

    #[test]
    fn equal_text_and_int_are_different_keys() {
        let r = vec![vec![Value::Int(1)], vec![Value::Text("1".into())]];
        assert_eq!(first_duplicate(&r, &[0]), None);
        assert_eq!(first_duplicate(&rows(), &[0]), Some(2));
    }
}
