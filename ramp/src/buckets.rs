//! Which bucket a key falls in: the bucket column's key space is cut into
//! half-open ranges `[lo, hi)` (the first starts unbounded, the last ends
//! unbounded), kept as the column's canonical text. The engine compares in
//! the database; the control plane's routing API and every client compare
//! here, by the kind of the column, so a client needs no database to know
//! where a key's writes go.
//!
//! Integers and decimals compare as numbers; everything else (text, dates,
//! timestamps, uuids) compares byte by byte, which is the database's order
//! for the canonical formats and for binary collations. A text bucket column
//! under a case-insensitive collation (MariaDB's default) orders differently:
//! plan such a migration on a column with a binary collation.

use std::cmp::Ordering;

/// How keys of a bucket column compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// Whole numbers (`-3`, `42`).
    Integer,
    /// Numbers with a fraction.
    Number,
    /// Byte order of the canonical text.
    Text,
}

impl KeyKind {
    /// The kind named `integer`, `number` or `text`.
    pub fn parse(s: &str) -> Option<KeyKind> {
        match s {
            "integer" => Some(KeyKind::Integer),
            "number" => Some(KeyKind::Number),
            "text" => Some(KeyKind::Text),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Integer => "integer",
            KeyKind::Number => "number",
            KeyKind::Text => "text",
        }
    }

    /// The kind the bounds themselves show: integer when every bound reads
    /// as one, number when every bound reads as a number, text otherwise.
    pub fn of_bounds<'a>(bounds: impl IntoIterator<Item = &'a str> + Clone) -> KeyKind {
        if bounds
            .clone()
            .into_iter()
            .all(|b| b.parse::<i128>().is_ok())
        {
            KeyKind::Integer
        } else if bounds
            .into_iter()
            .all(|b| b.parse::<f64>().is_ok_and(f64::is_finite))
        {
            KeyKind::Number
        } else {
            KeyKind::Text
        }
    }

    /// Compares two keys of this kind; a key that does not read as the kind
    /// compares as text.
    pub fn compare(self, a: &str, b: &str) -> Ordering {
        match self {
            KeyKind::Integer => match (a.trim().parse::<i128>(), b.trim().parse::<i128>()) {
                (Ok(x), Ok(y)) => x.cmp(&y),
                _ => a.as_bytes().cmp(b.as_bytes()),
            },
            KeyKind::Number => match (a.trim().parse::<f64>(), b.trim().parse::<f64>()) {
                (Ok(x), Ok(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
                _ => a.as_bytes().cmp(b.as_bytes()),
            },
            KeyKind::Text => a.as_bytes().cmp(b.as_bytes()),
        }
    }
}

/// The position of `key` among buckets cut at `uppers`: the upper bound of
/// every bucket but the last, ascending (bucket `i` holds `uppers[i-1] <= key
/// < uppers[i]`). Answers the bucket's index in `0..=uppers.len()`.
pub fn bucket_of(kind: KeyKind, uppers: &[impl AsRef<str>], key: &str) -> usize {
    uppers.partition_point(|hi| kind.compare(hi.as_ref(), key) != Ordering::Greater)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn integers_compare_as_numbers_not_text() {
        let uppers = ["10", "200"];
        assert_eq!(bucket_of(KeyKind::Integer, &uppers, "9"), 0);
        assert_eq!(bucket_of(KeyKind::Integer, &uppers, "10"), 1);
        assert_eq!(bucket_of(KeyKind::Integer, &uppers, "199"), 1);
        assert_eq!(bucket_of(KeyKind::Integer, &uppers, "200"), 2);
        assert_eq!(bucket_of(KeyKind::Integer, &uppers, "-5"), 0);
        assert_eq!(
            bucket_of(KeyKind::Text, &uppers, "9"),
            2,
            "as text, 9 > 200"
        );
    }

    #[test]
    fn the_kind_follows_the_bounds() {
        assert_eq!(KeyKind::of_bounds(["1", "-20"]), KeyKind::Integer);
        assert_eq!(KeyKind::of_bounds(["1.5", "3"]), KeyKind::Number);
        assert_eq!(KeyKind::of_bounds(["2024-01-01", "3"]), KeyKind::Text);
        assert_eq!(
            KeyKind::of_bounds(std::iter::empty::<&str>()),
            KeyKind::Integer
        );
    }

    proptest! {
        /// The bucket found holds the key: lo <= key < hi, as numbers.
        #[test]
        fn the_bucket_found_holds_the_key(mut cuts in prop::collection::btree_set(-1000i64..1000, 0..20), key in -1100i64..1100) {
            let uppers: Vec<String> = std::mem::take(&mut cuts).into_iter().map(|c| c.to_string()).collect();
            let i = bucket_of(KeyKind::Integer, &uppers, &key.to_string());
            let lo = (i > 0).then(|| uppers[i - 1].parse::<i64>().unwrap_or(i64::MIN));
            let hi = uppers.get(i).map(|h| h.parse::<i64>().unwrap_or(i64::MAX));
            prop_assert!(lo.is_none_or(|lo| lo <= key));
            prop_assert!(hi.is_none_or(|hi| key < hi));
        }
    }
}
