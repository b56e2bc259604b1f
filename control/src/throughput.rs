//! Measured throughput and the ETA it gives. Seed 001's lesson: timelines
//! follow measured throughput, not plans; so the ETA comes from samples of rows
//! moved over time, with its spread (the pace of the slowest and fastest
//! tenth of recent intervals).

use serde::{Deserialize, Serialize};

use crate::clock::now_ms;
use crate::db::Run;
use crate::error::Result;
use crate::store::Store;

/// A migration's pace over a recent window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    /// Median rows per second over the window's intervals.
    pub median: f64,
    /// 10th and 90th percentile of the interval rates.
    pub p10: f64,
    pub p90: f64,
    /// How many intervals the figures come from.
    pub intervals: usize,
}

/// Time left at the measured pace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Eta {
    /// Seconds left at the median pace.
    pub seconds: f64,
    /// At the fast (p90) pace …
    pub seconds_fast: f64,
    /// … and at the slow (p10) pace (`None` when the slow pace is zero).
    pub seconds_slow: Option<f64>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Rates between consecutive (time ms, rows done) samples, as a throughput.
pub fn throughput_of(samples: &[(i64, i64)]) -> Option<Throughput> {
    let mut rates: Vec<f64> = samples
        .windows(2)
        .filter_map(|w| {
            let dt = (w[1].0 - w[0].0) as f64 / 1000.0;
            (dt > 0.0).then(|| ((w[1].1 - w[0].1).max(0) as f64) / dt)
        })
        .collect();
    if rates.is_empty() {
        return None;
    }
    rates.sort_by(f64::total_cmp);
    Some(Throughput {
        median: percentile(&rates, 0.5),
        p10: percentile(&rates, 0.1),
        p90: percentile(&rates, 0.9),
        intervals: rates.len(),
    })
}

/// The ETA for `remaining` rows at `pace`; `None` when nothing is moving.
pub fn eta(remaining: i64, pace: &Throughput) -> Option<Eta> {
    if remaining <= 0 {
        return Some(Eta {
            seconds: 0.0,
            seconds_fast: 0.0,
            seconds_slow: Some(0.0),
        });
    }
    if pace.median <= 0.0 {
        return None;
    }
    let left = remaining as f64;
    Some(Eta {
        seconds: left / pace.median,
        seconds_fast: left / pace.p90.max(pace.median),
        seconds_slow: (pace.p10 > 0.0).then(|| left / pace.p10),
    })
}

impl Store {
    /// Records how many rows a migration has moved so far (one sample per
    /// millisecond at most; a repeated instant is ignored).
    pub async fn record_throughput(&self, migration_id: i64, rows_done: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO throughput_samples (migration_id, at, rows_done) VALUES ($1, $2, $3)
             ON CONFLICT (migration_id, at) DO NOTHING",
        )
        .bind(migration_id)
        .bind(now_ms())
        .bind(rows_done)
        .run(self.pool(), "recording a throughput sample")
        .await?;
        Ok(())
    }

    /// Samples (time ms, rows done) of the last `window_ms`, oldest first.
    pub async fn throughput_samples(
        &self,
        migration_id: i64,
        window_ms: i64,
    ) -> Result<Vec<(i64, i64)>> {
        sqlx::query(
            "SELECT at, rows_done FROM throughput_samples
             WHERE migration_id = $1 AND at >= $2 ORDER BY at",
        )
        .bind(migration_id)
        .bind(now_ms() - window_ms)
        .all(self.pool(), "reading throughput samples")
        .await
    }

    /// Deletes samples older than `keep_ms`, keeping the store small.
    pub async fn prune_throughput(&self, keep_ms: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM throughput_samples WHERE at < $1")
            .bind(now_ms() - keep_ms)
            .run(self.pool(), "pruning throughput samples")
            .await?;
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throughput_is_the_median_of_interval_rates_with_its_spread() {
        // 10 s intervals moving 1,000, 2,000, 3,000, 4,000 and 5,000 rows.
        let samples = [
            (0, 0),
            (10_000, 1_000),
            (20_000, 3_000),
            (30_000, 6_000),
            (40_000, 10_000),
            (50_000, 15_000),
        ];
        let t = throughput_of(&samples).expect("five intervals");
        assert_eq!(t.intervals, 5);
        assert_eq!(t.median, 300.0);
        assert_eq!(t.p10, 100.0);
        assert_eq!(t.p90, 500.0);

        let e = eta(30_000, &t).expect("moving");
        assert_eq!(e.seconds, 100.0);
        assert_eq!(e.seconds_fast, 60.0);
        assert_eq!(e.seconds_slow, Some(300.0));
    }

    #[test]
    fn no_movement_gives_no_eta_and_nothing_left_gives_zero() {
        assert!(throughput_of(&[(0, 5)]).is_none());
        let still = throughput_of(&[(0, 5), (1_000, 5)]).expect("one interval");
        assert!(eta(10, &still).is_none());
        assert_eq!(eta(0, &still).map(|e| e.seconds), Some(0.0));
    }
}

impl Store {
    /// Records a throughput sample for every active migration that has a
    /// running job (the server calls this every few seconds).
    pub async fn sample_throughput(&self) -> Result<usize> {
        let rows: Vec<(i64, Option<i64>)> = sqlx::query(
            // The migrations first, then only their buckets (by the index):
            // joined the other way round every bucket row ran the EXISTS.
            "SELECT b.migration_id AS id, CAST(SUM(b.rows_copied) AS BIGINT) AS copied
             FROM buckets b
             WHERE b.migration_id IN (
                 SELECT m.id FROM migrations m
                 WHERE m.status = 'active'
                   AND EXISTS (SELECT 1 FROM jobs j WHERE j.migration_id = m.id AND j.state = 'running'))
             GROUP BY b.migration_id",
        )
        .all(self.pool(), "summing rows copied")
        .await?;
        for &(id, copied) in &rows {
            self.record_throughput(id, copied.unwrap_or(0)).await?;
        }
        Ok(rows.len())
    }
}
