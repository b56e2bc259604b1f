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

/// Bucket ranges from the smallest bucket column value of each of N
/// equal-count tiles (in tile order): tile starts become boundaries; equal
/// starts (one value spanning tiles) collapse, so fewer buckets may result.
pub fn ranges_from_tile_starts(starts: &[Value]) -> Vec<KeyRange> {
    let mut bounds: Vec<&Value> = Vec::new();
    for s in starts.iter().skip(1) {
        if bounds.last().is_none_or(|b| *b != s) && starts.first() != Some(s) {
            bounds.push(s);
        }
    }
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

/// Plans `n` buckets of `query`'s source by row count. Refuses a source with
/// NULLs in the bucket column: no bucket range would ever copy those rows.
pub async fn plan(source: &Connector, query: &SourceQuery, n: usize) -> Result<Plan> {
    let d = query.dialect();
    let b = d.quote(&query.bucket);
    let from = query.from_clause();
    let ctx = format!("plan buckets of {}", query.table);
    let (_, nulls) = source
        .fetch(
            &format!("SELECT COUNT(*) FROM {from} WHERE {b} IS NULL"),
            &[],
            &ctx,
        )
        .await?;
    if let Some(Value::Int(k)) = nulls.first().and_then(|r| r.first())
        && *k > 0
    {
        return Err(EngineError::schema(
            &query.table,
            format!(
                "{k} source rows have NULL in bucket column {}; no bucket would copy them",
                query.bucket
            ),
        ));
    }
    let n = n.max(1);
    let tiles_sql = format!(
        "SELECT _tern_tile, MIN({b}) FROM (SELECT {b}, NTILE({n}) OVER (ORDER BY {b}) AS _tern_tile \
         FROM {from}) AS _tern_tiles GROUP BY _tern_tile ORDER BY _tern_tile"
    );
    let (_, tiles) = source.fetch(&tiles_sql, &[], &ctx).await?;
    let starts: Vec<Value> = tiles.into_iter().filter_map(|mut r| r.pop()).collect();
    let ranges = ranges_from_tile_starts(&starts);

    // Exact counts per range, in one pass.
    let mut params = Vec::new();
    let mut case = String::from("CASE");
    for (i, r) in ranges.iter().enumerate() {
        if let Some(hi) = &r.hi {
            params.push(hi.clone());
            case.push_str(&format!(
                " WHEN {b} < {} THEN {i}",
                d.placeholder(params.len())
            ));
        }
    }
    case.push_str(&format!(" ELSE {} END", ranges.len() - 1));
    if params.is_empty() {
        // One bucket: CASE needs at least one WHEN.
        case = "0".to_string();
    }
    let counts_sql = format!(
        "SELECT _tern_bucket, COUNT(*) FROM (SELECT {case} AS _tern_bucket FROM {from}) AS _tern_b GROUP BY _tern_bucket"
    );
    let (_, counts) = source.fetch(&counts_sql, &params, &ctx).await?;
    let mut rows = vec![0u64; ranges.len()];
    for r in counts {
        if let [Value::Int(i), Value::Int(c)] = r.as_slice()
            && let Some(slot) = usize::try_from(*i).ok().and_then(|i| rows.get_mut(i))
        {
            *slot = u64::try_from(*c).unwrap_or(0);
        }
    }
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

    /// NTILE(n) as SQL defines it: the first `len % n` tiles get one more row.
    fn tile_starts(sorted: &[i64], n: usize) -> Vec<Value> {
        let (base, extra) = (sorted.len() / n, sorted.len() % n);
        let mut starts = Vec::new();
        let mut at = 0;
        for t in 0..n {
            let size = base + usize::from(t < extra);
            if size == 0 {
                break;
            }
            starts.push(Value::Int(sorted[at]));
            at += size;
        }
        starts
    }

    proptest! {
        #[test]
        fn every_value_falls_in_exactly_one_bucket(mut values in prop::collection::vec(-50i64..50, 1..400), n in 1usize..12) {
            values.sort_unstable();
            let ranges = ranges_from_tile_starts(&tile_starts(&values, n));
            for v in &values {
                let hits = ranges.iter().filter(|r| r.contains(&Value::Int(*v))).count();
                prop_assert_eq!(hits, 1);
            }
            prop_assert!(ranges.len() <= n);
            prop_assert!(ranges.first().is_some_and(|r| r.lo.is_none()));
            prop_assert!(ranges.last().is_some_and(|r| r.hi.is_none()));
        }

        #[test]
        fn buckets_are_balanced_up_to_the_largest_single_value(mut values in prop::collection::vec(0i64..1000, 1..600), n in 1usize..10) {
            values.sort_unstable();
            let ranges = ranges_from_tile_starts(&tile_starts(&values, n));
            let largest_run = values.chunk_by(|a, b| a == b).map(<[i64]>::len).max().unwrap_or(0);
            let share = values.len().div_ceil(n);
            for r in &ranges {
                let size = values.iter().filter(|v| r.contains(&Value::Int(**v))).count();
                prop_assert!(size <= share + largest_run, "bucket {} has {} rows, share {} run {}", r, size, share, largest_run);
            }
        }
    }

    #[test]
    fn skewed_keys_get_narrow_buckets_where_the_rows_are() {
        // Member 1 owns half the rows: equal width would put them all in one bucket.
        let mut values: Vec<i64> = vec![1; 50];
        values.extend(2..52);
        values.sort_unstable();
        let ranges = ranges_from_tile_starts(&tile_starts(&values, 4));
        assert_eq!(
            ranges[0],
            KeyRange {
                lo: None,
                hi: Some(Value::Int(2))
            }
        );
        assert_eq!(ranges.len(), 3);
    }
}
