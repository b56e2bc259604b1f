//! The relay's ramp: which keys it dual-writes, decided by the value of a
//! record's bucket column (e.g. the member id), so that all of a member's
//! records go together. A ramp is either a sticky share of bucket column
//! values by their hash ([`crate::ramp`]) or whole buckets of the stored
//! plan; engineers change it while the relay runs.

use std::collections::{BTreeSet, HashMap};

use crate::buckets::Plan;
use crate::ramp::{self, Ramp};
use crate::value::Value;

/// Which keys the relay writes. Decided by the value of a row's bucket
/// column (e.g. the member id), so all of a member's records go together.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RelayRamp {
    /// Nothing is dual-written.
    #[default]
    Off,
    /// A sticky share of bucket column values by their hash
    /// ([`crate::ramp::value_is_on`] under [`super::RelayOptions::salt`]).
    Percent(Ramp),
    /// Whole buckets of the stored plan: `(table, bucket index)`.
    Buckets(BTreeSet<(String, usize)>),
}

impl RelayRamp {
    /// Every key: the same as `Percent(100%)`.
    pub fn full() -> RelayRamp {
        RelayRamp::Percent(Ramp::FULL)
    }

    /// Bucket indices `indices` of each of `tables`.
    pub fn buckets<'a>(
        tables: impl IntoIterator<Item = &'a str>,
        indices: impl IntoIterator<Item = usize> + Clone,
    ) -> RelayRamp {
        let mut set = BTreeSet::new();
        for t in tables {
            for i in indices.clone() {
                set.insert((t.to_string(), i));
            }
        }
        RelayRamp::Buckets(set)
    }

    /// Whether a row of `table` with bucket column value `value` is on.
    pub fn admits(
        &self,
        salt: &str,
        plans: &HashMap<String, Plan>,
        table: &str,
        value: &Value,
    ) -> bool {
        match self {
            RelayRamp::Off => false,
            RelayRamp::Percent(r) => ramp::value_is_on(salt, value, *r),
            RelayRamp::Buckets(set) => plans.get(table).is_some_and(|p| {
                p.buckets
                    .iter()
                    .find(|b| b.range.contains(value))
                    .is_some_and(|b| set.contains(&(table.to_string(), b.index)))
            }),
        }
    }
}

impl std::fmt::Display for RelayRamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RelayRamp::Off => f.write_str("off"),
            RelayRamp::Percent(r) => write!(f, "{r} of keys"),
            RelayRamp::Buckets(set) => {
                let parts: Vec<String> = set.iter().map(|(t, i)| format!("{t}#{i}")).collect();
                write!(f, "buckets {}", parts.join(","))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buckets::Bucket;
    use crate::chunk::KeyRange;

    fn plans() -> HashMap<String, Plan> {
        let b = |i: usize, lo: Option<i64>, hi: Option<i64>| Bucket {
            table: "items".into(),
            index: i,
            range: KeyRange {
                lo: lo.map(Value::Int),
                hi: hi.map(Value::Int),
            },
            rows: 0,
        };
        HashMap::from([(
            "items".to_string(),
            Plan {
                table: "items".into(),
                bucket_column: "member_id".into(),
                buckets: vec![
                    b(0, None, Some(10)),
                    b(1, Some(10), Some(20)),
                    b(2, Some(20), None),
                ],
            },
        )])
    }

    #[test]
    fn a_bucket_ramp_admits_the_values_of_its_buckets_only() {
        let r = RelayRamp::buckets(["items"], [1, 2]);
        let p = plans();
        assert!(!r.admits("", &p, "items", &Value::Int(9)));
        assert!(r.admits("", &p, "items", &Value::Int(10)));
        assert!(r.admits("", &p, "items", &Value::Int(1_000)));
        assert!(!r.admits("", &p, "other", &Value::Int(15)));
        assert_eq!(r.to_string(), "buckets items#1,items#2");
    }

    #[test]
    fn percent_ramps_follow_the_sticky_hash() {
        let p = plans();
        let ten = RelayRamp::Percent(Ramp::from_millipercent(10_000));
        let on = (0..10_000i64)
            .filter(|k| ten.admits("m", &p, "items", &Value::Int(*k)))
            .count();
        assert!((800..1200).contains(&on), "{on} of 10,000 keys on at 10%");
        assert!(!RelayRamp::Off.admits("m", &p, "items", &Value::Int(1)));
        assert!(RelayRamp::full().admits("m", &p, "items", &Value::Int(1)));
    }
}
