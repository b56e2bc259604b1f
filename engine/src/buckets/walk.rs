//! Planning a table bucketed by its own key in one walk of the key.

use super::OrderedColumn;
use crate::error::Result;
use crate::value::Value;

/// How many points per bucket [`walk`] takes: a boundary lands within one
/// step between points (1/16 of a share, with a right estimate) of its even
/// place.
const POINTS_PER_BUCKET: u64 = 16;

/// Pieces of an integer column's value range that [`walk`] walks at once
/// (each on a connection of its own, so the source spends more than one core).
const SEGMENTS: i128 = 4;

/// What one walk of a unique column found.
#[derive(Debug, PartialEq)]
pub(super) enum Walk {
    /// The boundaries and each bucket's rows.
    Planned(Vec<Value>, Vec<u64>),
    /// Fewer points than buckets (the estimate was far too high): the
    /// table's exact row count, for [`boundaries`].
    Counted(u64),
    /// The walk met a value twice: the column is not unique after all.
    NotUnique,
}

/// Plans a unique column in one walk of its index, without counting the
/// table first. Points every `estimate / (16 n)` rows (each the value `step`
/// rows after the one before: with distinct values, each point's position
/// is exact), the rows after a segment's last point counted, then the n - 1
/// points nearest to even shares of the exact total become the boundaries.
/// An integer column is walked in [`SEGMENTS`] pieces of its value range at
/// once. The estimate only sets the step: a wrong one costs evenness or one
/// more walk, never a wrong count.
pub(super) async fn walk(
    col: &(impl OrderedColumn + Sync),
    estimate: u64,
    n: usize,
) -> Result<Walk> {
    let n = n.max(1) as u64;
    let step = (estimate / (n * POINTS_PER_BUCKET)).max(1);
    let mut starts = vec![None];
    if let (Some(Value::Int(lo)), Some(Value::Int(hi))) =
        (col.value_at(None, 0).await?, col.last_value().await?)
    {
        let (lo, width) = (i128::from(lo), i128::from(hi) - i128::from(lo) + 1);
        let mut cuts: Vec<i64> = (1..SEGMENTS)
            .filter_map(|j| i64::try_from(lo + width * j / SEGMENTS).ok())
            .filter(|&cut| i128::from(cut) > lo)
            .collect();
        cuts.dedup();
        starts.extend(cuts.into_iter().map(|cut| Some(Value::Int(cut))));
    }
    let segments = futures::future::try_join_all(starts.iter().enumerate().map(|(j, from)| {
        let to = starts.get(j + 1).cloned().flatten();
        walk_segment(col, from.clone(), to, step)
    }))
    .await?;
    // Every point with the number of rows before it.
    let mut points: Vec<(Value, u64)> = Vec::new();
    let mut total = 0u64;
    for segment in segments {
        let Some((values, rows)) = segment else {
            return Ok(Walk::NotUnique);
        };
        points.extend((1..).zip(values).map(|(k, v)| (v, total + k * step)));
        total += rows;
    }
    let m = points.len();
    if (m as u64) + 1 < n {
        return Ok(Walk::Counted(total));
    }
    let n = n as usize;
    let (mut bounds, mut sizes) = (Vec::new(), Vec::new());
    let (mut prev, mut before) = (0usize, 0u64);
    for i in 1..n {
        let even = u64::try_from(u128::from(i as u64) * u128::from(total) / n as u128).unwrap_or(0);
        // The point nearest to the even share, after the previous boundary
        // and leaving a point for each boundary still to come.
        let after = points.partition_point(|(_, at)| *at < even);
        let nearest = match (after.checked_sub(1), points.get(after)) {
            (Some(b), Some((_, at))) if even - points[b].1 <= at - even => b,
            (Some(b), None) => b,
            _ => after,
        };
        let k = nearest.max(prev).min(m - (n - i));
        let (value, at) = &points[k];
        bounds.push(value.clone());
        sizes.push(at - before);
        (prev, before) = (k + 1, *at);
    }
    sizes.push(total - before);
    Ok(Walk::Planned(bounds, sizes))
}

/// One segment of a [`walk`]: the points every `step` rows from `from` (the
/// column's start when `None`) up to `to` (its end when `None`), and the
/// segment's exact rows; `None` when a value came twice.
async fn walk_segment(
    col: &(impl OrderedColumn + Sync),
    from: Option<Value>,
    to: Option<Value>,
    step: u64,
) -> Result<Option<(Vec<Value>, u64)>> {
    let mut points: Vec<Value> = Vec::new();
    while let Some(v) = col.value_at(points.last().or(from.as_ref()), step).await? {
        if to
            .as_ref()
            .is_some_and(|t| v.compare(t).is_none_or(|o| o.is_ge()))
        {
            break;
        }
        if points.last() == Some(&v) {
            return Ok(None);
        }
        points.push(v);
    }
    let rest = col
        .count_between(points.last().or(from.as_ref()), to.as_ref())
        .await?;
    let rows = points.len() as u64 * step + rest;
    Ok(Some((points, rows)))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::buckets::ranges_from_boundaries;
    use crate::buckets::tests::Sorted;

    proptest! {
        #[test]
        fn one_walk_plans_distinct_values_with_exact_counts(values in prop::collection::btree_set(-5000i64..5000, 1..2000), n in 2usize..12, percent in 10u64..1000) {
            let values: Vec<i64> = values.into_iter().collect();
            let rows = values.len() as u64;
            // The database's estimate, from a tenth to ten times the truth.
            let estimate = (rows * percent / 100).max(1);
            let walked = futures::executor::block_on(walk(&Sorted(values.clone()), estimate, n));
            prop_assert!(walked.is_ok());
            match walked.unwrap_or(Walk::NotUnique) {
                Walk::Planned(bounds, sizes) => {
                    let ranges = ranges_from_boundaries(&bounds);
                    prop_assert_eq!(ranges.len(), n);
                    let step = (estimate / (n as u64 * POINTS_PER_BUCKET)).max(1);
                    for (r, size) in ranges.iter().zip(&sizes) {
                        let count = values.iter().filter(|v| r.contains(&Value::Int(**v))).count() as u64;
                        prop_assert_eq!(count, *size);
                        prop_assert!(count > 0, "bucket {} is empty", r);
                        if estimate <= 2 * rows {
                            // Each end off by at most a step (points are a
                            // step apart, up to two where segments meet).
                            prop_assert!(count <= rows.div_ceil(n as u64) + 2 * step, "bucket {} has {} rows of {}, step {}", r, count, rows, step);
                        }
                    }
                }
                Walk::Counted(total) => prop_assert_eq!(total, rows),
                Walk::NotUnique => prop_assert!(false, "distinct values called not unique"),
            }
        }

    }

    #[test]
    fn a_walk_that_meets_a_value_twice_gives_up() -> Result<()> {
        // The spec calls the column the key, but 5 is there 40 times.
        let mut values: Vec<i64> = (0..100).collect();
        values.extend([5; 40]);
        values.sort_unstable();
        let walked = futures::executor::block_on(walk(&Sorted(values), 140, 2))?;
        assert_eq!(walked, Walk::NotUnique);
        Ok(())
    }
}
