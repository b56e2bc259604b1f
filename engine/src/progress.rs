//! Progress: where a running engine stands, one shape for every engine (bulk
//! load, catch-up, relay, verification, repair, and the data-fix platform).
//!
//! Why one shape: whoever watches a run (the CLI's bar, the control plane's
//! job record, a test) should not need a converter per engine. Every engine
//! reports a [`Progress`] through its [`RunControl`](crate::RunControl) after
//! each committed step (a chunk, a batch of changes, a page of records) and
//! after each failed attempt it will retry: how much is done of how much,
//! the rate and time left, retries and the last error, the lag behind the
//! changelog where there is one, and a short note (a relay's ramp).

use std::fmt;
use std::time::Duration;

use crate::changelog::{Lag, Position};

/// What is running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Task {
    /// The bulk load of one bucket.
    BulkLoad { table: String, bucket: usize },
    /// The catch-up of one bucket, from its watermark or over a window.
    CatchUp { table: String, bucket: usize },
    /// The dual-write relay, by name.
    Relay { name: String },
    /// A verification of a table: one bucket, or every bucket at once.
    Verify {
        table: String,
        bucket: Option<usize>,
    },
    /// The repair of a verification run's mismatches.
    Repair { run_id: String },
    /// A data fix, by name, in its `pass` (a fix repeats until its filter
    /// selects nothing).
    Fix { name: String, pass: u32 },
    /// Building the indexes of a table that its load deferred.
    IndexBuild { table: String },
}

impl Task {
    /// The spec table the task works on, if it is one table's.
    pub fn table(&self) -> Option<&str> {
        match self {
            Task::BulkLoad { table, .. }
            | Task::CatchUp { table, .. }
            | Task::Verify { table, .. }
            | Task::IndexBuild { table } => Some(table),
            Task::Relay { .. } | Task::Repair { .. } | Task::Fix { .. } => None,
        }
    }

    /// The bucket the task works on, if it is one bucket's.
    pub fn bucket(&self) -> Option<usize> {
        match self {
            Task::BulkLoad { bucket, .. } | Task::CatchUp { bucket, .. } => Some(*bucket),
            Task::Verify { bucket, .. } => *bucket,
            Task::Relay { .. }
            | Task::Repair { .. }
            | Task::Fix { .. }
            | Task::IndexBuild { .. } => None,
        }
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Task::BulkLoad { table, bucket } => write!(f, "bulk-load {table} bucket {bucket}"),
            Task::CatchUp { table, bucket } => write!(f, "catch-up {table} bucket {bucket}"),
            Task::Relay { name } => write!(f, "relay {name}"),
            Task::Verify {
                table,
                bucket: Some(b),
            } => write!(f, "verify {table} bucket {b}"),
            Task::Verify {
                table,
                bucket: None,
            } => write!(f, "verify {table}"),
            Task::Repair { run_id } => write!(f, "repair run {run_id}"),
            Task::Fix { name, pass } => write!(f, "fix {name} pass {pass}"),
            Task::IndexBuild { table } => write!(f, "build indexes of {table}"),
        }
    }
}

/// What `done`, `total` and `rate` count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Source rows read (bulk load, full diff, window catch-up).
    Rows,
    /// Changelog rows read (relay, catch-up).
    Changes,
    /// Source keys checked or applied (sampled and incremental
    /// verification, repair).
    Keys,
    /// Records a data fix selected.
    Records,
    /// Indexes built after a load.
    Indexes,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Rows => "rows",
            Unit::Changes => "changes",
            Unit::Keys => "keys",
            Unit::Records => "records",
            Unit::Indexes => "indexes",
        }
    }
}

/// What a run did to the data so far (this run only); engines leave at zero
/// what they do not do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Rows written to the target, every table (a data fix: records changed).
    pub rows_written: u64,
    /// Keys brought up to date through the apply path.
    pub keys_applied: u64,
    /// Keys gone from the source whose target rows were deleted.
    pub keys_deleted: u64,
    /// Keys passed over because they are not ramped on.
    pub keys_skipped: u64,
    /// Records set aside after failing (a data fix).
    pub failed: u64,
    /// Records found changed since their filter read them, left alone (a
    /// data fix).
    pub stale: u64,
}

/// Where a run stands, reported after every committed step.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub task: Task,
    pub unit: Unit,
    /// Units done, earlier runs included where the engine resumes (a bucket
    /// load's checkpoint, a full diff's progress).
    pub done: u64,
    /// Units done by this run.
    pub done_this_run: u64,
    /// Units in all, when known (rows planned; a catch-up's changes read
    /// plus its lag).
    pub total: Option<u64>,
    /// Steps committed by this run: chunks, batches of changes or pages.
    pub steps: u64,
    /// Units per second of this run.
    pub rate: f64,
    /// Time left at the current rate, if it can be told.
    pub eta: Option<Duration>,
    pub elapsed: Duration,
    pub tally: Tally,
    /// Failed attempts so far (each step is retried until it lands).
    pub retries: u64,
    /// The error of the last failed attempt, cleared when a step lands.
    pub last_error: Option<String>,
    /// A short note on how the run goes, e.g. a relay's ramp (`25% of keys`).
    pub note: Option<String>,
    /// Things an operator should act on (a backlog older than the retention).
    pub warnings: Vec<String>,
    /// How far the run is behind the head of the changelog, for the engines
    /// that read it.
    pub lag: Option<Lag>,
    /// The changelog position after the last committed batch.
    pub position: Option<Position>,
}

impl Progress {
    /// Nothing done yet.
    pub fn new(task: Task, unit: Unit) -> Progress {
        Progress {
            task,
            unit,
            done: 0,
            done_this_run: 0,
            total: None,
            steps: 0,
            rate: 0.0,
            eta: None,
            elapsed: Duration::ZERO,
            tally: Tally::default(),
            retries: 0,
            last_error: None,
            note: None,
            warnings: Vec::new(),
            lag: None,
            position: None,
        }
    }

    /// Sets how much is done of how much after `elapsed`, and derives the
    /// rate (this run's units per second) and the time left at that rate.
    pub fn measure(
        &mut self,
        done: u64,
        done_this_run: u64,
        total: Option<u64>,
        elapsed: Duration,
    ) {
        self.done = done;
        self.done_this_run = done_this_run;
        self.total = total;
        self.elapsed = elapsed;
        let secs = elapsed.as_secs_f64();
        self.rate = if secs > 0.0 {
            done_this_run as f64 / secs
        } else {
            0.0
        };
        self.eta = match total {
            Some(total) if self.rate > 0.0 => Some(Duration::from_secs_f64(
                total.saturating_sub(done) as f64 / self.rate,
            )),
            _ => None,
        };
    }
}

impl fmt::Display for Progress {
    /// One line: `bulk-load items bucket 3: 1200 of 5000 rows, 240/s, eta 17s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.task, self.done)?;
        if let Some(total) = self.total {
            write!(f, " of {total}")?;
        }
        write!(f, " {}, {:.0}/s", self.unit.as_str(), self.rate)?;
        if let Some(eta) = self.eta {
            write!(f, ", eta {}s", eta.as_secs())?;
        }
        if let Some(lag) = &self.lag {
            write!(f, ", lag {} changes {:.1}s", lag.changes, lag.seconds)?;
        }
        if let Some(note) = &self.note {
            write!(f, ", {note}")?;
        }
        if let Some(e) = &self.last_error {
            write!(f, "; retrying ({} so far) after: {e}", self.retries)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_is_the_units_left_at_the_current_rate() {
        let task = Task::BulkLoad {
            table: "t".into(),
            bucket: 0,
        };
        let mut p = Progress::new(task.clone(), Unit::Rows);
        p.measure(300, 200, Some(1300), Duration::from_secs(2));
        assert_eq!(p.rate, 100.0);
        assert_eq!(p.eta, Some(Duration::from_secs(10)));
        assert_eq!(
            p.to_string(),
            "bulk-load t bucket 0: 300 of 1300 rows, 100/s, eta 10s"
        );
        let mut p = Progress::new(task, Unit::Rows);
        p.measure(0, 0, Some(10), Duration::ZERO);
        assert_eq!(p.eta, None);
    }
}
