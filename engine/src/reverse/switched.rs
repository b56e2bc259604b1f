//! The set of switched buckets: for each table, the buckets whose source of
//! truth is the new store. The reverse relay applies target changes of these
//! buckets only; the forward relay, with its mirror option, skips source
//! changes of them. The control plane owns the set and sends each new value
//! through a `tokio::sync::watch` channel; both relays read it before every
//! batch.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;

use crate::buckets::Plan;
use crate::value::Value;

/// Switched buckets per table: `table → bucket indices` of the stored plan.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SwitchedBuckets(BTreeMap<String, BTreeSet<usize>>);

impl SwitchedBuckets {
    /// No bucket switched.
    pub fn none() -> SwitchedBuckets {
        SwitchedBuckets::default()
    }

    /// Buckets `indices` of `table`.
    pub fn of(table: &str, indices: impl IntoIterator<Item = usize>) -> SwitchedBuckets {
        let mut s = SwitchedBuckets::none();
        for i in indices {
            s.insert(table, i);
        }
        s
    }

    pub fn insert(&mut self, table: &str, bucket: usize) {
        self.0.entry(table.to_string()).or_default().insert(bucket);
    }

    pub fn remove(&mut self, table: &str, bucket: usize) {
        if let Some(set) = self.0.get_mut(table) {
            set.remove(&bucket);
            if set.is_empty() {
                self.0.remove(table);
            }
        }
    }

    pub fn contains(&self, table: &str, bucket: usize) -> bool {
        self.0.get(table).is_some_and(|s| s.contains(&bucket))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The tables with a switched bucket, and their buckets.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &BTreeSet<usize>)> {
        self.0.iter().map(|(t, s)| (t.as_str(), s))
    }

    /// Whether a record of `table` with bucket column value `value` is in a
    /// switched bucket, by the stored plans.
    pub fn admits(&self, plans: &HashMap<String, Plan>, table: &str, value: &Value) -> bool {
        let Some(set) = self.0.get(table) else {
            return false;
        };
        plans.get(table).is_some_and(|p| {
            p.buckets
                .iter()
                .find(|b| b.range.contains(value))
                .is_some_and(|b| set.contains(&b.index))
        })
    }
}

impl fmt::Display for SwitchedBuckets {
    /// `items:0,1,2 orders:3`, or `none`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(t, s)| {
                let idx: Vec<String> = s.iter().map(usize::to_string).collect();
                format!("{t}:{}", idx.join(","))
            })
            .collect();
        f.write_str(&parts.join(" "))
    }
}

impl FromStr for SwitchedBuckets {
    type Err = String;

    /// `table:0,1,2`, several separated by spaces or `;` (`none` for none).
    fn from_str(s: &str) -> Result<SwitchedBuckets, String> {
        let mut out = SwitchedBuckets::none();
        for part in s
            .split([' ', ';'])
            .map(str::trim)
            .filter(|p| !p.is_empty() && *p != "none")
        {
            let bad = || {
                format!(
                    "`{part}` is not `table:buckets`: write e.g. `items:0,1,2` (bucket indices)"
                )
            };
            let (table, list) = part.split_once(':').ok_or_else(bad)?;
            if table.is_empty() {
                return Err(bad());
            }
            for i in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                match i.split_once('-') {
                    Some((lo, hi)) => {
                        let lo: usize = lo.trim().parse().map_err(|_| bad())?;
                        let hi: usize = hi.trim().parse().map_err(|_| bad())?;
                        if lo > hi {
                            return Err(bad());
                        }
                        (lo..=hi).for_each(|b| out.insert(table, b));
                    }
                    None => out.insert(table, i.parse().map_err(|_| bad())?),
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switched_buckets_print_and_parse() {
        let s: SwitchedBuckets = "items:0,2-3 orders:1".parse().expect("parses");
        assert!(s.contains("items", 3) && !s.contains("items", 1));
        assert_eq!(s.to_string(), "items:0,2,3 orders:1");
        assert_eq!(s.to_string().parse::<SwitchedBuckets>(), Ok(s.clone()));
        assert!("items".parse::<SwitchedBuckets>().is_err());
        assert!("items:x".parse::<SwitchedBuckets>().is_err());
        assert_eq!(
            "none".parse::<SwitchedBuckets>(),
            Ok(SwitchedBuckets::none())
        );
        let mut t = s;
        t.remove("orders", 1);
        assert_eq!(t.to_string(), "items:0,2,3");
    }
}
