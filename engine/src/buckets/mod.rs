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
use crate::value::{ColumnType, Value};

mod walk;
use walk::{Walk, walk};

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

/// A bucket as a control plane keeps it: its index in the table's plan, its
/// bounds as the bucket column's canonical text (`None`: unbounded), and the
/// rows it held when planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedBucket {
    pub index: usize,
    pub lo: Option<String>,
    pub hi: Option<String>,
    pub rows: u64,
}

impl Plan {
    /// The plan of `table` from buckets kept as text, each bound read back as
    /// the bucket column's type `ty`. The buckets must be numbered 0..n and
    /// follow on from each other (each bucket starts where the one before
    /// ends, the first and last unbounded): a plan with overlaps or holes
    /// would copy a row twice or never.
    pub fn from_planned(
        table: &str,
        bucket_column: &str,
        ty: Option<ColumnType>,
        planned: &[PlannedBucket],
    ) -> Result<Plan> {
        let bad = |message: String| EngineError::schema(table, message);
        let mut sorted: Vec<&PlannedBucket> = planned.iter().collect();
        sorted.sort_by_key(|b| b.index);
        if sorted.is_empty() {
            return Err(bad("the plan has no buckets".into()));
        }
        for (i, b) in sorted.iter().enumerate() {
            if b.index != i {
                return Err(bad(format!(
                    "the plan's buckets are not numbered 0 to {}: bucket {} is missing",
                    sorted.len() - 1,
                    i
                )));
            }
            let before = if i == 0 {
                None
            } else {
                sorted[i - 1].hi.as_ref()
            };
            if b.lo.as_ref() != before || (i == 0 && b.lo.is_some()) {
                return Err(bad(format!(
                    "bucket {i} starts at {} but the bucket before it ends at {}: \
                     buckets must follow on from each other; re-plan the migration",
                    b.lo.as_deref().unwrap_or("the start"),
                    before.map_or("the start", String::as_str)
                )));
            }
        }
        if sorted.last().is_some_and(|b| b.hi.is_some()) {
            return Err(bad("the last bucket of the plan has an upper bound".into()));
        }
        let value = |s: &Option<String>| -> Result<Option<Value>> {
            let Some(s) = s else { return Ok(None) };
            let v = Value::Text(s.clone());
            match ty {
                Some(t) => v
                    .cast(t)
                    .map(Some)
                    .map_err(|e| bad(format!("bucket bound {s}: {e}"))),
                None => Ok(Some(v)),
            }
        };
        let mut buckets = Vec::with_capacity(sorted.len());
        for b in sorted {
            buckets.push(Bucket {
                table: table.to_string(),
                index: b.index,
                range: KeyRange {
                    lo: value(&b.lo)?,
                    hi: value(&b.hi)?,
                },
                rows: b.rows,
            });
        }
        Ok(Plan {
            table: table.to_string(),
            bucket_column: bucket_column.to_string(),
            buckets,
        })
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
    /// The largest value.
    async fn last_value(&self) -> Result<Option<Value>>;
    /// Rows with `from <= value < to` (either unbounded when `None`).
    async fn count_between(&self, from: Option<&Value>, to: Option<&Value>) -> Result<u64>;
}

/// Boundaries cutting `rows` rows into `n` buckets of about equal count, and
/// each bucket's count: each boundary is the value one share of the rows left
/// after the previous one, in column order. A single value that holds more
/// than a share moves the boundary to the next value, so its bucket is larger
/// (and fewer buckets may result). Each step reads one share of the index.
///
/// When the column is `unique` (it is the table's whole key), the value
/// `offset` rows on has exactly `offset` rows before it, so the bucket's
/// count is known without counting it again.
pub async fn boundaries(
    col: &(impl OrderedColumn + Sync),
    rows: u64,
    n: usize,
    unique: bool,
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
        let mut counted = unique;
        if bounds.last().unwrap_or(&min) == &v {
            match col.next_after(&v).await? {
                Some(next) => v = next,
                None => break,
            }
            counted = false;
        }
        let size = if counted {
            offset
        } else {
            col.count_between(bounds.last(), Some(&v)).await?
        };
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

impl SqlColumn<'_> {
    /// The first value of a planning query's first row, if it has one.
    async fn first_value(&self, sql: &str, params: &[Value]) -> Result<Option<Value>> {
        let context = format!("plan buckets of {}", self.query.table);
        let (_, rows) = self.source.fetch(sql, params, &context).await?;
        Ok(rows.into_iter().next().and_then(|r| r.into_iter().next()))
    }
}

impl SqlColumn<'_> {
    /// The table's rows, and those with a bucket column value.
    async fn counts(&self) -> Result<(u64, u64)> {
        let b = self.query.dialect().quote(&self.query.bucket);
        let ctx = format!("plan buckets of {}", self.query.table);
        let sql = format!(
            "SELECT COUNT(*), COUNT({b}) FROM {}",
            self.query.from_clause()
        );
        let (_, counts) = self.source.fetch(&sql, &[], &ctx).await?;
        Ok(match counts.first().map(Vec::as_slice) {
            Some([Value::Int(t), Value::Int(nn)]) => (
                u64::try_from(*t).unwrap_or(0),
                u64::try_from(*nn).unwrap_or(0),
            ),
            _ => (0, 0),
        })
    }

    /// The count a `SELECT COUNT(*) …` answers.
    async fn count(&self, sql: &str, params: &[Value]) -> Result<u64> {
        Ok(match self.first_value(sql, params).await? {
            Some(Value::Int(c)) => u64::try_from(c).unwrap_or(0),
            _ => 0,
        })
    }

    /// Rows whose bucket column is NULL (an index lookup where the column
    /// has an index).
    async fn null_rows(&self) -> Result<u64> {
        let b = self.query.dialect().quote(&self.query.bucket);
        let sql = format!(
            "SELECT COUNT(*) FROM {} WHERE {b} IS NULL",
            self.query.from_clause()
        );
        self.count(&sql, &[]).await
    }

    /// Refuses a source whose bucket column is NULL in `nulls` rows.
    fn refuse_nulls(&self, nulls: u64) -> Result<()> {
        if nulls == 0 {
            return Ok(());
        }
        Err(EngineError::schema(
            &self.query.table,
            format!(
                "{nulls} source rows have NULL in bucket column {}; no bucket would copy them",
                self.query.bucket
            ),
        ))
    }
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
        self.first_value(&sql, &params).await
    }

    async fn next_after(&self, v: &Value) -> Result<Option<Value>> {
        let d = self.query.dialect();
        let b = d.quote(&self.query.bucket);
        let sql = format!(
            "SELECT MIN({b}) FROM {} WHERE {b} > {}",
            self.query.from_clause(),
            d.placeholder(1)
        );
        let min = self.first_value(&sql, std::slice::from_ref(v)).await?;
        Ok(min.filter(|v| !v.is_null()))
    }

    async fn last_value(&self) -> Result<Option<Value>> {
        let b = self.query.dialect().quote(&self.query.bucket);
        let sql = format!("SELECT MAX({b}) FROM {}", self.query.from_clause());
        let max = self.first_value(&sql, &[]).await?;
        Ok(max.filter(|v| !v.is_null()))
    }

    async fn count_between(&self, from: Option<&Value>, to: Option<&Value>) -> Result<u64> {
        let d = self.query.dialect();
        let b = d.quote(&self.query.bucket);
        let mut params = Vec::new();
        let mut conds = Vec::new();
        for (v, op) in [(from, ">="), (to, "<")] {
            if let Some(v) = v {
                params.push(v.clone());
                conds.push(format!("{b} {op} {}", d.placeholder(params.len())));
            }
        }
        let where_ = if conds.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conds.join(" AND "))
        };
        let sql = format!("SELECT COUNT(*) FROM {}{where_}", self.query.from_clause());
        self.count(&sql, &params).await
    }
}

/// Plans `n` buckets of `query`'s source by row count, with each bucket's
/// count. Refuses a source with NULLs in the bucket column: no
/// bucket range would ever copy those rows.
///
/// When the bucket column is the whole source key of a table the database
/// has statistics for, one [`walk`] of its index plans it (about the cost of
/// one count of the table); otherwise the table is counted and then cut
/// share by share ([`boundaries`]). Both take the spec's word that the key
/// is unique; a walk that finds it is not counts every bucket instead.
pub async fn plan(source: &Connector, query: &SourceQuery, n: usize) -> Result<Plan> {
    let col = SqlColumn { source, query };
    // The bucket column alone is the source key: its values are distinct.
    let unique = query.key.len() == 1 && query.key[0] == query.bucket;
    let estimate = match &query.relation_table {
        Some(t) if unique && n > 1 => source.estimated_rows(t).await?,
        _ => None,
    };
    let walked = match estimate {
        Some(estimate) => {
            col.refuse_nulls(col.null_rows().await?)?;
            walk(&col, estimate, n).await?
        }
        None => Walk::NotUnique,
    };
    let (bounds, rows) = match walked {
        Walk::Planned(bounds, rows) => (bounds, rows),
        Walk::Counted(total) => boundaries(&col, total, n, true).await?,
        // No walk, or one that met a value twice: counted share by share,
        // and each bucket counted too unless the column is distinct.
        Walk::NotUnique => {
            let distinct = unique && estimate.is_none();
            let (total, non_null) = col.counts().await?;
            col.refuse_nulls(total.saturating_sub(non_null))?;
            boundaries(&col, non_null, n, distinct).await?
        }
    };
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

    fn planned(index: usize, lo: Option<&str>, hi: Option<&str>) -> PlannedBucket {
        PlannedBucket {
            index,
            lo: lo.map(str::to_string),
            hi: hi.map(str::to_string),
            rows: 10,
        }
    }

    #[test]
    fn a_kept_plan_reads_back_its_bounds_by_the_column_type() {
        let plan = Plan::from_planned(
            "messages",
            "member_id",
            Some(ColumnType::Int),
            &[
                planned(1, Some("315"), Some("1254")),
                planned(0, None, Some("315")),
                planned(2, Some("1254"), None),
            ],
        )
        .expect("a contiguous plan");
        let ranges: Vec<_> = plan.buckets.iter().map(|b| b.range.clone()).collect();
        assert_eq!(
            ranges,
            ranges_from_boundaries(&[Value::Int(315), Value::Int(1254)])
        );
        assert_eq!(plan.buckets[1].index, 1);
        assert_eq!(plan.total_rows(), 30);
    }

    #[test]
    fn a_kept_plan_with_overlaps_or_holes_is_refused() {
        let overlap = Plan::from_planned(
            "messages",
            "member_id",
            Some(ColumnType::Int),
            &[
                planned(0, None, Some("1254")),
                planned(1, Some("1249"), None),
            ],
        );
        let message = overlap.expect_err("overlap").to_string();
        assert!(message.contains("bucket 1 starts at 1249"), "{message}");
        let hole = Plan::from_planned(
            "messages",
            "member_id",
            None,
            &[planned(0, None, Some("5")), planned(2, Some("5"), None)],
        );
        assert!(hole.is_err());
    }

    /// A sorted column in memory, answering like the SQL does.
    pub(super) struct Sorted(pub(super) Vec<i64>);

    /// A sorted column that refuses to count.
    struct Uncountable(Sorted);

    #[async_trait::async_trait]
    impl OrderedColumn for Uncountable {
        async fn value_at(&self, from: Option<&Value>, offset: u64) -> Result<Option<Value>> {
            self.0.value_at(from, offset).await
        }
        async fn next_after(&self, v: &Value) -> Result<Option<Value>> {
            self.0.next_after(v).await
        }
        async fn last_value(&self) -> Result<Option<Value>> {
            self.0.last_value().await
        }
        async fn count_between(&self, _: Option<&Value>, _: Option<&Value>) -> Result<u64> {
            Err(EngineError::schema("t", "counted a unique column"))
        }
    }

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
        async fn last_value(&self) -> Result<Option<Value>> {
            Ok(self.0.last().map(|v| Value::Int(*v)))
        }
        async fn count_between(&self, from: Option<&Value>, to: Option<&Value>) -> Result<u64> {
            let range = KeyRange {
                lo: from.cloned(),
                hi: to.cloned(),
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
        // Distinct values are planned both ways, with the same result.
        let unique = values.windows(2).all(|w| w[0] < w[1]);
        let plan = |unique| {
            futures::executor::block_on(boundaries(&Sorted(values.clone()), rows, n, unique))
                .unwrap_or_default()
        };
        let (bounds, sizes) = plan(false);
        if unique {
            assert_eq!(plan(true), (bounds.clone(), sizes.clone()));
        }
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
        fn distinct_values_are_planned_without_counting_them(values in prop::collection::btree_set(-1000i64..1000, 1..400), n in 1usize..12) {
            let values: Vec<i64> = values.into_iter().collect();
            let rows = values.len() as u64;
            let col = Uncountable(Sorted(values.clone()));
            let planned = futures::executor::block_on(boundaries(&col, rows, n, true));
            prop_assert!(planned.is_ok(), "{:?}", planned.err());
            // `ranges` checks the sizes against the values and against a
            // plan that counts.
            let r = ranges(values, n);
            prop_assert_eq!(r.len(), n.min(rows as usize));
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
