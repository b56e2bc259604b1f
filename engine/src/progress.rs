//! Progress of a bucket load, reported after every committed chunk through a
//! callback (the CLI draws a bar with it; the control plane records it).

use std::sync::Arc;
use std::time::Duration;

/// Where a bucket load stands after a committed chunk.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub table: String,
    pub bucket: usize,
    /// Source rows of the bucket copied so far, earlier runs included.
    pub rows_done: u64,
    /// Source rows the plan counted in the bucket.
    pub rows_planned: u64,
    /// Source rows copied by this run.
    pub rows_this_run: u64,
    pub chunks_this_run: u64,
    pub elapsed: Duration,
    /// Rows per second of this run.
    pub rate: f64,
    /// Time left at the current rate, if it can be told.
    pub eta: Option<Duration>,
}

impl Progress {
    pub(crate) fn compute(
        table: &str,
        bucket: usize,
        rows_done: u64,
        rows_planned: u64,
        rows_this_run: u64,
        chunks_this_run: u64,
        elapsed: Duration,
    ) -> Progress {
        let secs = elapsed.as_secs_f64();
        let rate = if secs > 0.0 {
            rows_this_run as f64 / secs
        } else {
            0.0
        };
        let left = rows_planned.saturating_sub(rows_done);
        let eta = (rate > 0.0).then(|| Duration::from_secs_f64(left as f64 / rate));
        Progress {
            table: table.to_string(),
            bucket,
            rows_done,
            rows_planned,
            rows_this_run,
            chunks_this_run,
            elapsed,
            rate,
            eta,
        }
    }
}

/// The progress callback; called from the load's task, so keep it quick.
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_is_the_rows_left_at_the_current_rate() {
        let p = Progress::compute("t", 0, 300, 1300, 200, 2, Duration::from_secs(2));
        assert_eq!(p.rate, 100.0);
        assert_eq!(p.eta, Some(Duration::from_secs(10)));
        let p = Progress::compute("t", 0, 0, 10, 0, 0, Duration::ZERO);
        assert_eq!(p.eta, None);
    }
}
