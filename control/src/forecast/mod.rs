//! Where a migration stands and when it will be done, from what was
//! measured: rows moved (never over 100%: when the source grew since the
//! plan, the total is re-counted), the pace of the jobs running now, and an
//! ETA for every phase still ahead (load, catch-up, verify) from the rates
//! its jobs measured, with a range. Seed 001's lesson: timelines follow
//! measured throughput, not plans. A phase with work left that nothing has
//! measured yet gives no ETA, and says so, rather than a made-up one.
//!
//! Pure computation over buckets and jobs, so every number the overview
//! shows is unit-tested here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::buckets::Phase;
use crate::clock::now_ms;
use crate::db::Run;
use crate::error::Result;
use crate::jobs::{Job, JobKind, JobState};
use crate::store::Store;

/// A phase of the playbook with work the ETA counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    Load,
    CatchUp,
    Verify,
}

impl Stage {
    pub const ALL: [Stage; 3] = [Stage::Load, Stage::CatchUp, Stage::Verify];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Load => "load",
            Stage::CatchUp => "catch-up",
            Stage::Verify => "verify",
        }
    }

    /// The stage a job kind works on, if any.
    pub fn of(kind: JobKind) -> Option<Stage> {
        match kind {
            JobKind::BulkLoad => Some(Stage::Load),
            JobKind::CatchUp => Some(Stage::CatchUp),
            JobKind::Verify => Some(Stage::Verify),
            _ => None,
        }
    }

    /// Whether a bucket in `phase` still has this stage ahead of it (or in
    /// progress). Paused and failed buckets count by where they stopped:
    /// `copied` tells whether the load was done.
    fn ahead(self, phase: Phase, copied: bool) -> bool {
        let rank = |p: Phase| match p {
            Phase::Planned | Phase::BulkLoading => 0,
            Phase::Loaded | Phase::CatchingUp => 1,
            Phase::CaughtUp | Phase::Verifying => 2,
            Phase::Paused | Phase::Failed => {
                if copied {
                    1
                } else {
                    0
                }
            }
            _ => 3,
        };
        let stage = match self {
            Stage::Load => 0,
            Stage::CatchUp => 1,
            Stage::Verify => 2,
        };
        rank(phase) <= stage
    }
}

/// Buckets as the forecast sees them: a group of buckets in one phase,
/// all loaded (rows copied ≥ planned) or all not, with their row sums.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketWork {
    pub phase: Phase,
    pub loaded: bool,
    pub buckets: i64,
    pub planned_rows: i64,
    pub rows_copied: i64,
    /// Σ max(planned − copied, 0): rows the load still has to copy.
    pub rows_short: i64,
    /// Σ max(planned, copied): rows a verification reads.
    pub rows_max: i64,
}

impl BucketWork {
    /// One bucket.
    pub fn one(phase: Phase, planned_rows: i64, rows_copied: i64) -> BucketWork {
        BucketWork {
            phase,
            loaded: rows_copied >= planned_rows,
            buckets: 1,
            planned_rows,
            rows_copied,
            rows_short: (planned_rows - rows_copied).max(0),
            rows_max: planned_rows.max(rows_copied),
        }
    }
}

/// Rows moved out of the rows to move.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RowsDone {
    pub done: i64,
    /// The planned rows, or the rows moved when more were (re-counted).
    pub of: i64,
    /// `done / of`, at most 100.
    pub percent: f64,
    /// Rows the source grew by since the plan, when it did.
    pub recounted: Option<i64>,
}

/// Rows moved of the planned rows, never over 100%.
pub fn rows_done(planned: i64, copied: i64) -> RowsDone {
    let of = planned.max(copied).max(0);
    let done = copied.max(0);
    RowsDone {
        done,
        of,
        percent: if of > 0 {
            (done as f64 * 100.0 / of as f64).min(100.0)
        } else {
            0.0
        },
        recounted: (copied > planned).then(|| copied - planned),
    }
}

/// Seconds at the median pace and at the fast and slow ends of its range.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Span {
    pub seconds: f64,
    pub fast: f64,
    pub slow: f64,
}

impl Span {
    const ZERO: Span = Span {
        seconds: 0.0,
        fast: 0.0,
        slow: 0.0,
    };

    fn add(self, o: Span) -> Span {
        Span {
            seconds: self.seconds + o.seconds,
            fast: self.fast + o.fast,
            slow: self.slow + o.slow,
        }
    }
}

/// One phase still ahead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageForecast {
    pub stage: Stage,
    /// Buckets with this phase still ahead (or in progress).
    pub buckets_left: i64,
    /// Rows left for load and verify; buckets left for catch-up (which
    /// replays changes, not rows, so it is measured in buckets).
    pub work_left: i64,
    /// Jobs of this phase running now.
    pub running: i64,
    /// Rows (catch-up: buckets) per second this phase moves, from its jobs'
    /// measured rates times the jobs running at once; `None` when no job of
    /// the phase has been measured yet.
    pub pace: Option<f64>,
    /// Time left for this phase, with its range; `None` when not measured.
    pub eta: Option<Span>,
}

/// Where a migration stands and when it will be done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forecast {
    pub rows: RowsDone,
    /// Rows per second the running load and verify jobs move now (their
    /// own measured rates); `None` when no such job runs.
    pub pace_now: Option<f64>,
    /// Every phase with work left, in playbook order.
    pub stages: Vec<StageForecast>,
    /// Time until every bucket is verified (the phases one after another),
    /// with its range; `None` while a phase with work left is unmeasured.
    pub eta: Option<Span>,
    /// Phases with work left that no job has measured yet.
    pub unmeasured: Vec<Stage>,
}

/// What one job measured, for the stage its kind works on: the work it did
/// (rows; catch-up: one bucket) and the time it took. A phase's rate is
/// its jobs' work summed over their time summed, so a sub-second demo job
/// counts as much as its rows, where a rate of its own would be noise.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measured {
    pub stage: Stage,
    pub running: bool,
    /// Rows (catch-up: buckets) this job moved in `ms`.
    pub work: f64,
    /// Milliseconds it took (at least one).
    pub ms: f64,
}

impl Measured {
    /// Rows (catch-up: buckets) per second.
    pub fn rate(&self) -> f64 {
        self.work * 1000.0 / self.ms
    }
}

/// How long ago a finished job still tells the pace (an hour).
pub const RECENT_MS: i64 = 60 * 60 * 1000;

/// What a job measured: a running job its own rate (the engine measures it
/// over the current run) over the time it has run, or its rows so far over
/// that time when it has not reported one (at least a second, or nothing);
/// a finished job its rows over its run time, however short; a catch-up job
/// one bucket over its time.
pub fn measured(job: &Job, now_ms: i64) -> Option<Measured> {
    let stage = Stage::of(job.kind)?;
    let running = job.state == JobState::Running;
    let started = job.started_at?;
    let (work, ms) = match (stage, job.state) {
        (Stage::CatchUp, JobState::Succeeded) => (1.0, job.finished_at? - started),
        (Stage::CatchUp, _) => return None,
        (_, JobState::Running) => {
            let ms = now_ms - started;
            match job.rate {
                Some(r) if r > 0.0 => (r * ms.max(1000) as f64 / 1000.0, ms.max(1000)),
                _ if ms >= 1000 && job.rows_done > 0 => (job.rows_done as f64, ms),
                _ => return None,
            }
        }
        (_, JobState::Succeeded) => (job.rows_done as f64, job.finished_at? - started),
        _ => return None,
    };
    let fresh = running || job.finished_at.is_some_and(|f| now_ms - f <= RECENT_MS);
    let m = Measured {
        stage,
        running,
        work,
        ms: ms.max(1) as f64,
    };
    (fresh && work > 0.0 && m.rate().is_finite()).then_some(m)
}

/// A phase's measured rate: its jobs' work over their time (a time-weighted
/// mean of their rates), and the range its jobs spread over, the 10th and
/// 90th time-weighted percentiles of their own rates (slow, fast).
fn pooled_rate(samples: &[&Measured]) -> Option<(f64, f64, f64)> {
    let work: f64 = samples.iter().map(|m| m.work).sum();
    let ms: f64 = samples.iter().map(|m| m.ms).sum();
    if work <= 0.0 || ms <= 0.0 {
        return None;
    }
    let mean = work * 1000.0 / ms;
    let mut by_rate: Vec<(f64, f64)> = samples.iter().map(|m| (m.rate(), m.ms)).collect();
    by_rate.sort_by(|a, b| a.0.total_cmp(&b.0));
    let at = |p: f64| {
        let mut seen = 0.0;
        for (rate, weight) in &by_rate {
            seen += weight;
            if seen >= p * ms {
                return *rate;
            }
        }
        by_rate.last().map(|r| r.0).unwrap_or(mean)
    };
    Some((mean, at(0.1).min(mean), at(0.9).max(mean)))
}

/// The window "pace now" looks back over (a minute).
pub const PACE_WINDOW_MS: i64 = 60 * 1000;

/// Rows per second that the bulk loads and verifications moved in the last
/// minute, running or finished: what "pace now" says when jobs are too short
/// to report a rate of their own while they run (a bucket that loads between
/// two heartbeats). A finished job counts the share of its rows that falls in
/// the window; the window starts no earlier than the first of those jobs.
/// `None` when no such job ran in the last minute.
pub fn recent_pace(jobs: &[Job], now_ms: i64) -> Option<f64> {
    let from = now_ms - PACE_WINDOW_MS;
    let mut rows = 0.0;
    let mut first_start = now_ms;
    for job in jobs {
        if !matches!(Stage::of(job.kind), Some(Stage::Load | Stage::Verify)) {
            continue;
        }
        let (Some(start), running) = (job.started_at, job.state == JobState::Running) else {
            continue;
        };
        let end = match (running, job.state, job.finished_at) {
            (true, _, _) => now_ms,
            (false, JobState::Succeeded, Some(f)) if f >= from => f,
            _ => continue,
        };
        let overlap = (end - start.max(from)).max(0) as f64;
        let share = overlap / (end - start).max(1) as f64;
        rows += job.rows_done.max(0) as f64 * share.min(1.0);
        first_start = first_start.min(start.max(from));
    }
    let span = (now_ms - first_start).max(1000) as f64 / 1000.0;
    (rows > 0.0).then(|| rows / span)
}

/// The forecast of a migration from its buckets and its jobs' measured rates.
pub fn forecast(buckets: &[BucketWork], rates: &[Measured]) -> Forecast {
    let planned: i64 = buckets.iter().map(|b| b.planned_rows).sum();
    let copied: i64 = buckets.iter().map(|b| b.rows_copied).sum();
    let rows = rows_done(planned, copied);
    let mut stages = Vec::new();
    let mut unmeasured = Vec::new();
    let mut total = Span::ZERO;
    for stage in Stage::ALL {
        let left: Vec<&BucketWork> = buckets
            .iter()
            .filter(|b| b.buckets > 0 && stage.ahead(b.phase, b.loaded))
            .collect();
        if left.is_empty() {
            continue;
        }
        let buckets_left: i64 = left.iter().map(|b| b.buckets).sum();
        let work_left: i64 = match stage {
            Stage::Load => left.iter().map(|b| b.rows_short).sum(),
            Stage::CatchUp => buckets_left,
            Stage::Verify => left.iter().map(|b| b.rows_max).sum(),
        };
        let samples: Vec<&Measured> = rates.iter().filter(|m| m.stage == stage).collect();
        let running = samples.iter().filter(|m| m.running).count() as i64;
        let at_once = running.max(1) as f64;
        let (pace, eta) = match pooled_rate(&samples) {
            None => (None, None),
            Some((mean, slow, fast)) => {
                let left = work_left as f64;
                (
                    Some(mean * at_once),
                    Some(Span {
                        seconds: left / (mean * at_once),
                        fast: left / (fast * at_once),
                        slow: left / (slow * at_once),
                    }),
                )
            }
        };
        match eta {
            Some(e) => total = total.add(e),
            None if work_left > 0 => unmeasured.push(stage),
            None => {}
        }
        stages.push(StageForecast {
            stage,
            buckets_left,
            work_left,
            running,
            pace,
            eta,
        });
    }
    let now: f64 = rates
        .iter()
        .filter(|m| m.running && m.stage != Stage::CatchUp)
        .map(Measured::rate)
        .sum();
    Forecast {
        rows,
        pace_now: (now > 0.0).then_some(now),
        eta: unmeasured.is_empty().then_some(total),
        stages,
        unmeasured,
    }
}

impl Store {
    /// The forecast of one migration, or of every migration (keyed by
    /// migration id), in two queries whatever the number of buckets.
    pub async fn forecasts(&self, migration_id: Option<i64>) -> Result<BTreeMap<i64, Forecast>> {
        let loaded = "CASE WHEN rows_copied >= planned_rows THEN 1 ELSE 0 END";
        let rows: Vec<(i64, Phase, i64, i64, Option<i64>, Option<i64>, Option<i64>, Option<i64>)> = sqlx::query(&format!(
            "SELECT migration_id, phase, CAST({loaded} AS BIGINT) AS loaded, CAST(COUNT(*) AS BIGINT) AS n,
                    CAST(SUM(planned_rows) AS BIGINT) AS planned,
                    CAST(SUM(rows_copied) AS BIGINT) AS copied,
                    CAST(SUM(CASE WHEN planned_rows > rows_copied THEN planned_rows - rows_copied ELSE 0 END) AS BIGINT) AS short,
                    CAST(SUM(CASE WHEN planned_rows > rows_copied THEN planned_rows ELSE rows_copied END) AS BIGINT) AS maxed
             FROM buckets WHERE ($1 IS NULL OR migration_id = $1)
             GROUP BY migration_id, phase, {loaded}"
        ))
        .bind(migration_id)
        .all(self.pool(), "summing the buckets' work")
        .await?;
        let mut work: BTreeMap<i64, Vec<BucketWork>> = BTreeMap::new();
        for (id, phase, loaded, buckets, planned, copied, short, maxed) in rows {
            let sum = |n: Option<i64>| n.unwrap_or(0);
            work.entry(id).or_default().push(BucketWork {
                phase,
                loaded: loaded == 1,
                buckets,
                planned_rows: sum(planned),
                rows_copied: sum(copied),
                rows_short: sum(short),
                rows_max: sum(maxed),
            });
        }
        let now = now_ms();
        let jobs: Vec<Job> = sqlx::query(
            "SELECT * FROM jobs WHERE kind IN ('bulk-load', 'catch-up', 'verify')
               AND ($1 IS NULL OR migration_id = $1)
               AND (state = 'running' OR (state = 'succeeded' AND finished_at >= $2))",
        )
        .bind(migration_id)
        .bind(now - RECENT_MS)
        .all(self.pool(), "reading the jobs' measured rates")
        .await?;
        let mut rates: BTreeMap<i64, Vec<Measured>> = BTreeMap::new();
        let mut recent: BTreeMap<i64, Vec<Job>> = BTreeMap::new();
        for job in jobs {
            let Some(id) = job.migration_id else { continue };
            if let Some(m) = measured(&job, now) {
                rates.entry(id).or_default().push(m);
            }
            recent.entry(id).or_default().push(job);
        }
        Ok(work
            .into_iter()
            .map(|(id, w)| {
                let r = rates.remove(&id).unwrap_or_default();
                let mut f = forecast(&w, &r);
                if f.pace_now.is_none() {
                    f.pace_now = recent.get(&id).and_then(|jobs| recent_pace(jobs, now));
                }
                (id, f)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests;
