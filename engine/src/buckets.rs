//! Balanced buckets: the bucket column's key space cut into N ranges of about
//! equal *row count* (quantiles), not equal width, because old members own far
//! more rows than new ones (seed 002's hot shards: the pipeline is bound by
//! its largest batch). One bucket column value never spans two buckets, so a
//! single value that owns more than a bucket's share makes its bucket larger;
//! [`Plan::skew`] shows it before anything is copied.

use serde::{Deserialize, Serialize};

use crate::chunk::{KeyRange, SourceQuery};
use crate::connector::Connector;
use crate::error::{EngineError, Result};
use crate::value::Value;

/// One bucket of one table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    pub table: String,
    pub index: usize,
    pub range: KeyRange,
    /// Source rows in the range when planned.
    pub rows: u64,
}

/// The buckets of one table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub table: String,
    pub bucket_column: String,
    pub buckets: Vec<Bucket>,
}

impl Plan {
    pub fn total_rows(&self) -> u64 {
        self.buckets.iter().map(|b| b.rows).sum()
    }

    /// Largest bucket over the mean bucket size (1.0 = perfectly even).
    pub fn skew(&self) -> f64 {
        let n = self.buckets.len().max(1) as f64;
        let mean = self.total_rows() as f64 / n;
        let max = self.buckets.iter().map(|b| b.rows).max().unwrap_or(0) as f64;
        if mean > 0.0 { max / mean } else { 1.0 }
    }
}

/// Contiguous half-open ranges cut at the given boundaries (ascending,
/// distinct): the first starts unbounded, the last ends unbounded.
pub fn ranges_from_boundaries(bounds: &[Value]) -> Vec<KeyRange> {
    let mut ranges = Vec::with_capacity(bounds.len() + 1);
    let mut lo = None;
    for b in bounds {
        ranges.push(KeyRange {
            lo: lo.clone(),
            hi: Some(b.clone()),
        });
        lo = Some(b.clone());
    }
    ranges.push(KeyRange { lo, hi: None });
    ranges
}

/// What the planner needs to know of the bucket column, in its order.
#[async_trait::async_trait]
pub trait OrderedColumn {
    /// The value `offset` rows after the first row whose value is `>= from`
    /// (from the very first row when `from` is `None`).
    async fn value_at(&self, from: Option<&Value>, offset: u64) -> Result<Option<Value>>;
    /// The smallest value greater than `v`.
    async fn next_after(&self, v: &Value) -> Result<Option<Value>>;
    /// Rows with `from <= value < to` (`from` unbounded when `None`).
    async fn count_between(&self, from: Option<&Value>, to: &Value) -> Result<u64>;
}

/// Boundaries cutting `rows` rows into `n` buckets of about equal count, and
/// each bucket's count: each boundary is the value one share of the rows left
/// after the previous one, in column order. A single value that holds more
/// than a share moves the boundary to the next value, so its bucket is larger
/// (and fewer buckets may result). Each step reads one share of the index.
pub async fn boundaries(
    col: &(impl OrderedColumn + Sync),
    rows: u64,
    n: usize,
) -> Result<(Vec<Value>, Vec<u64>)> {
    let n = n.max(1);
    let mut bounds: Vec<Value> = Vec::new();
    let mut sizes = Vec::new();
    let Some(min) = col.value_at(None, 0).await? else {
        return Ok((bounds, vec![0]));
    };
    // Position of the first row of the current bucket.
    let mut start = 0u64;
    while bounds.len() + 1 < n {
        // The rows left, spread over the buckets left: a hot value that made
        // one bucket large does not leave a small one behind it.
        let left = (n - bounds.len()) as u64;
        let offset = rows.saturating_sub(start).div_ceil(left).max(1);
        let Some(mut v) = col.value_at(bounds.last(), offset).await? else {
            break;
        };
        if bounds.last().unwrap_or(&min) == &v {
            match col.next_after(&v).await? {
                Some(next) => v = next,
                None => break,
            }
        }
        let size = col.count_between(bounds.last(), &v).await?;
        sizes.push(size);
        start += size;
        bounds.push(v);
    }
    sizes.push(rows.saturating_sub(start));
    Ok((bounds, sizes))
}

/// The bucket column of a source, read through SQL.
struct SqlColumn<'a> {
    source: &'a Connector,
    query: &'a SourceQuery,
}

#[async_trait::async_trait]
impl OrderedColumn for SqlColumn<'_> {
    async fn value_at(&self, from: Option<&Value>, offset: u64) -> Result<Option<Value>> {
        let d = self.query.dialect();
        let b = d.quote(&self.query.bucket);
        let (cond, params) = match from {
            Some(v) => (
                format!(" WHERE {b} >= {}", d.placeholder(1)),
                vec![v.clone()],
            ),
            None => (String::new(), vec![]),
        };
        // OFFSET, which the chunk reader never uses, is right here: it walks
        // the bucket column's index once, a bucket's share per query.
        let sql = format!(
            "SELECT {b} FROM {}{cond} ORDER BY {b} LIMIT 1 OFFSET {offset}",
            self.query.from_clause()
        );
        let (_, rows) = self
            .source
            .fetch(
                &sql,
                &params,
                &format!("plan buckets of {}", self.query.table),
            )
            .await?;
        Ok(rows.into_iter().next().and_then(|mut r| r.pop()))
    }

    async fn next_after(&self, v: &Value) -> Result<Option<Value>> {
        let d = self.query.dialect();
        let b = d.quote(&self.query.bucket);
        let sql = format!(
            "SELECT MIN({b}) FROM {} WHERE {b} > {}",
            self.query.from_clause(),
            d.placeholder(1)
        );
        let (_, rows) = self
            .source
            .fetch(
                &sql,
                std::slice::from_ref(v),
                &format!("plan buckets of {}", self.query.table),
            )
            .await?;
        Ok(rows
            .into_iter()
            .next()
            .and_then(|mut r| r.pop())
            .filter(|v| !v.is_null()))
    }

    async fn count_between(&self, from: Option<&Value>, to: &Value) -> Result<u64> {
        let d = self.query.dialect();
        let b = d.quote(&self.query.bucket);
        let mut params = vec![to.clone()];
        let mut cond = format!("{b} < {}", d.placeholder(1));
        if let Some(f) = from {
            params.push(f.clone());
            cond.push_str(&format!(" AND {b} >= {}", d.placeholder(2)));
        }
        let sql = format!(
            "SELECT COUNT(*) FROM {} WHERE {cond}",
            self.query.from_clause()
        );
        let (_, rows) = self
            .source
            .fetch(
                &sql,
                &params,
                &format!("plan buckets of {}", self.query.table),
            )
            .await?;
        Ok(match rows.first().and_then(|r| r.first()) {
            Some(Value::Int(c)) => u64::try_from(*c).unwrap_or(0),
            _ => 0,
        })
    }
}

/// Plans `n` buckets of `query`'s source by row count, with each bucket's
/// count. Refuses a source with NULLs in the bucket column: no
/// bucket range would ever copy those rows.
pub async fn plan(source: &Connector, query: &SourceQuery, n: usize) -> Result<Plan> {
    let d = query.dialect();
    let b = d.quote(&query.bucket);
    let from = query.from_clause();
    let ctx = format!("plan buckets of {}", query.table);
    let (_, counts) = source
        .fetch(
            &format!("SELECT COUNT(*), COUNT({b}) FROM {from}"),
            &[],
            &ctx,
        )
        .await?;
    let (total, non_null) = match counts.first().map(Vec::as_slice) {
        Some([Value::Int(t), Value::Int(nn)]) => (*t, *nn),
        _ => (0, 0),
    };
    if total > non_null {
        return Err(EngineError::schema(
            &query.table,
            format!(
                "{} source rows have NULL in bucket column {}; no bucket would copy them",
                total - non_null,
                query.bucket
            ),
        ));
    }
    let (bounds, rows) = boundaries(
        &SqlColumn { source, query },
        u64::try_from(total).unwrap_or(0),
        n,
    )
    .await?;
    let ranges = ranges_from_boundaries(&bounds);
    Ok(Plan {
        table: query.table.clone(),
        bucket_column: query.bucket.clone(),
        buckets: ranges
            .into_iter()
            .zip(rows)
            .enumerate()
            .map(|(index, (range, rows))| Bucket {
                table: query.table.clone(),
                index,
                range,
                rows,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A sorted column in memory, answering like the SQL does.
    struct Sorted(Vec<i64>);

    #[async_trait::async_trait]
    impl OrderedColumn for Sorted {
        async fn value_at(&self, from: Option<&Value>, offset: u64) -> Result<Option<Value>> {
            let start = match from {
                Some(Value::Int(v)) => self.0.partition_point(|x| x < v),
                _ => 0,
            };
            Ok(self.0.get(start + offset as usize).map(|v| Value::Int(*v)))
        }
        async fn next_after(&self, v: &Value) -> Result<Option<Value>> {
            let Value::Int(v) = v else { return Ok(None) };
            Ok(self.0.iter().find(|x| *x > v).map(|x| Value::Int(*x)))
        }
        async fn count_between(&self, from: Option<&Value>, to: &Value) -> Result<u64> {
            let range = KeyRange {
                lo: from.cloned(),
                hi: Some(to.clone()),
            };
            Ok(self
                .0
                .iter()
                .filter(|x| range.contains(&Value::Int(**x)))
                .count() as u64)
        }
    }

    fn ranges(mut values: Vec<i64>, n: usize) -> Vec<KeyRange> {
        values.sort_unstable();
        let rows = values.len() as u64;
        let (bounds, sizes) =
            futures::executor::block_on(boundaries(&Sorted(values.clone()), rows, n))
                .unwrap_or_default();
        let ranges = ranges_from_boundaries(&bounds);
        // The sizes the planner reports are the true counts.
        for (r, size) in ranges.iter().zip(&sizes) {
            assert_eq!(
                values
                    .iter()
                    .filter(|v| r.contains(&Value::Int(**v)))
                    .count() as u64,
                *size
            );
        }
        assert_eq!(ranges.len(), sizes.len());
        ranges
    }

    proptest! {
        #[test]
        fn every_value_falls_in_exactly_one_bucket(values in prop::collection::vec(-50i64..50, 1..400), n in 1usize..12) {
            let r = ranges(values.clone(), n);
            for v in &values {
                let hits = r.iter().filter(|r| r.contains(&Value::Int(*v))).count();
                prop_assert_eq!(hits, 1);
            }
            prop_assert!(r.len() <= n);
            prop_assert!(r.first().is_some_and(|r| r.lo.is_none()));
            prop_assert!(r.last().is_some_and(|r| r.hi.is_none()));
        }

        #[test]
        fn buckets_are_balanced_up_to_the_largest_single_value(mut values in prop::collection::vec(0i64..1000, 1..600), n in 1usize..10) {
            values.sort_unstable();
            let r = ranges(values.clone(), n);
            let largest_run = values.chunk_by(|a, b| a == b).map(<[i64]>::len).max().unwrap_or(0);
            let share = values.len().div_ceil(n);
            for range in &r {
                let size = values.iter().filter(|v| range.contains(&Value::Int(**v))).count();
                prop_assert!(size <= share + largest_run, "bucket {} has {} rows, share {} run {}", range, size, share, largest_run);
            }
        }
    }

    #[test]
    fn skewed_keys_get_narrow_buckets_where_the_rows_are() {
        // Member 1 owns half the rows: equal width would put them all in one bucket.
        let mut values: Vec<i64> = vec![1; 50];
        values.extend(2..52);
        let r = ranges(values, 4);
        assert_eq!(
            r[0],
            KeyRange {
                lo: None,
                hi: Some(Value::Int(2))
            }
        );
        // The other 50 rows spread over the three buckets left: 17, 17, 16.
        assert_eq!(
            r[1],
            KeyRange {
                lo: Some(Value::Int(2)),
                hi: Some(Value::Int(19))
            }
        );
        assert_eq!(
            r[2],
            KeyRange {
                lo: Some(Value::Int(19)),
                hi: Some(Value::Int(36))
            }
        );
        assert_eq!(r.len(), 4);
    }
}
