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
use sqlx::Row;

use crate::buckets::Phase;
use crate::clock::now_ms;
use crate::error::{ControlError, Result};
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

/// One job's measured rate, for the stage its kind works on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measured {
    pub stage: Stage,
    pub running: bool,
    /// Rows (catch-up: buckets) per second this job moved.
    pub rate: f64,
}

/// How long ago a finished job still tells the pace (an hour).
pub const RECENT_MS: i64 = 60 * 60 * 1000;

/// What a job measured, if it ran long enough to tell: a running job's own
/// rate (the engine measures it over the current run), a finished job's
/// rows over its run time; a catch-up job counts one bucket over its time.
pub fn measured(job: &Job, now_ms: i64) -> Option<Measured> {
    let stage = Stage::of(job.kind)?;
    let running = job.state == JobState::Running;
    let started = job.started_at?;
    let rate = match (stage, job.state) {
        (Stage::CatchUp, JobState::Succeeded) => {
            let ms = (job.finished_at? - started).max(1);
            1000.0 / ms as f64
        }
        (Stage::CatchUp, _) => return None,
        (_, JobState::Running) => match job.rate {
            Some(r) if r > 0.0 => r,
            _ => {
                let ms = now_ms - started;
                (ms >= 1000 && job.rows_done > 0)
                    .then(|| job.rows_done as f64 * 1000.0 / ms as f64)?
            }
        },
        (_, JobState::Succeeded) => {
            let ms = job.finished_at? - started;
            (ms >= 1000 && job.rows_done > 0).then(|| job.rows_done as f64 * 1000.0 / ms as f64)?
        }
        _ => return None,
    };
    let fresh = running || job.finished_at.is_some_and(|f| now_ms - f <= RECENT_MS);
    (fresh && rate.is_finite() && rate > 0.0).then_some(Measured {
        stage,
        running,
        rate,
    })
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

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = (p * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
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
        let mut per_job: Vec<f64> = rates
            .iter()
            .filter(|m| m.stage == stage)
            .map(|m| m.rate)
            .collect();
        per_job.sort_by(f64::total_cmp);
        let running = rates
            .iter()
            .filter(|m| m.stage == stage && m.running)
            .count() as i64;
        let at_once = running.max(1) as f64;
        let (pace, eta) = if per_job.is_empty() {
            (None, None)
        } else {
            let median = percentile(&per_job, 0.5) * at_once;
            let fast = percentile(&per_job, 0.9) * at_once;
            let slow = percentile(&per_job, 0.1) * at_once;
            let left = work_left as f64;
            (
                Some(median),
                Some(Span {
                    seconds: left / median,
                    fast: left / fast,
                    slow: left / slow,
                }),
            )
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
        .map(|m| m.rate)
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
        let rows = sqlx::query(&format!(
            "SELECT migration_id, phase, CAST({loaded} AS BIGINT) AS loaded, CAST(COUNT(*) AS BIGINT) AS n,
                    CAST(SUM(planned_rows) AS BIGINT) AS planned,
                    CAST(SUM(rows_copied) AS BIGINT) AS copied,
                    CAST(SUM(CASE WHEN planned_rows > rows_copied THEN planned_rows - rows_copied ELSE 0 END) AS BIGINT) AS short,
                    CAST(SUM(CASE WHEN planned_rows > rows_copied THEN planned_rows ELSE rows_copied END) AS BIGINT) AS maxed
             FROM buckets WHERE ($1 IS NULL OR migration_id = $1)
             GROUP BY migration_id, phase, {loaded}"
        ))
        .bind(migration_id)
        .fetch_all(self.pool())
        .await
        .map_err(ControlError::db("summing the buckets' work"))?;
        let mut work: BTreeMap<i64, Vec<BucketWork>> = BTreeMap::new();
        for r in &rows {
            let get = |e| ControlError::db("reading the buckets' work")(e);
            let phase: String = r.try_get("phase").map_err(get)?;
            let loaded: i64 = r.try_get("loaded").map_err(get)?;
            let sum = |c: &str| -> Result<i64> {
                Ok(r.try_get::<Option<i64>, _>(c).map_err(get)?.unwrap_or(0))
            };
            work.entry(r.try_get("migration_id").map_err(get)?)
                .or_default()
                .push(BucketWork {
                    phase: Phase::parse(&phase)?,
                    loaded: loaded == 1,
                    buckets: r.try_get("n").map_err(get)?,
                    planned_rows: sum("planned")?,
                    rows_copied: sum("copied")?,
                    rows_short: sum("short")?,
                    rows_max: sum("maxed")?,
                });
        }
        let now = now_ms();
        let jobs = sqlx::query(
            "SELECT * FROM jobs WHERE kind IN ('bulk-load', 'catch-up', 'verify')
               AND ($1 IS NULL OR migration_id = $1)
               AND (state = 'running' OR (state = 'succeeded' AND finished_at >= $2))",
        )
        .bind(migration_id)
        .bind(now - RECENT_MS)
        .fetch_all(self.pool())
        .await
        .map_err(ControlError::db("reading the jobs' measured rates"))?;
        let mut rates: BTreeMap<i64, Vec<Measured>> = BTreeMap::new();
        let mut recent: BTreeMap<i64, Vec<Job>> = BTreeMap::new();
        for row in &jobs {
            let job = crate::jobs::job_from_row(row)?;
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
mod tests {
    use super::*;

    fn bucket(phase: Phase, planned: i64, copied: i64) -> BucketWork {
        BucketWork::one(phase, planned, copied)
    }

    fn rate(stage: Stage, running: bool, rate: f64) -> Measured {
        Measured {
            stage,
            running,
            rate,
        }
    }

    #[test]
    fn rows_done_never_pass_100_percent_and_say_when_the_source_grew() {
        // The card: 402,618 of 400,733 read 100.5%.
        let r = rows_done(400_733, 402_618);
        assert_eq!(r.percent, 100.0);
        assert_eq!((r.done, r.of), (402_618, 402_618));
        assert_eq!(r.recounted, Some(1_885));
        let half = rows_done(1_000, 500);
        assert_eq!(half.percent, 50.0);
        assert_eq!(half.recounted, None);
        assert_eq!(rows_done(0, 0).percent, 0.0);
    }

    #[test]
    fn a_running_load_gives_the_pace_now_and_an_eta_from_it() {
        // Two buckets loading at ~2,800 rows/s together, two planned.
        let buckets = [
            bucket(Phase::BulkLoading, 10_000, 4_000),
            bucket(Phase::BulkLoading, 10_000, 6_000),
            bucket(Phase::Planned, 10_000, 0),
            bucket(Phase::Planned, 10_000, 0),
        ];
        let rates = [
            rate(Stage::Load, true, 1_400.0),
            rate(Stage::Load, true, 1_400.0),
        ];
        let f = forecast(&buckets, &rates);
        assert_eq!(f.pace_now, Some(2_800.0));
        let load = &f.stages[0];
        assert_eq!(load.stage, Stage::Load);
        assert_eq!(load.work_left, 30_000);
        assert_eq!(load.pace, Some(2_800.0));
        let eta = load.eta.expect("measured");
        assert!((eta.seconds - 30_000.0 / 2_800.0).abs() < 1e-9);
        // Catch-up and verify have not run yet: no ETA for the whole, and
        // the card says which phases are unmeasured.
        assert_eq!(f.eta, None);
        assert_eq!(f.unmeasured, vec![Stage::CatchUp, Stage::Verify]);
    }

    #[test]
    fn a_throttled_job_paces_at_its_own_measured_rate() {
        // The job throttled to 1,500 rows/s read 33,541 rows/s.
        let buckets = [bucket(Phase::BulkLoading, 100_000, 16_000)];
        let f = forecast(&buckets, &[rate(Stage::Load, true, 1_480.0)]);
        assert_eq!(f.pace_now, Some(1_480.0));
        let eta = f.stages[0].eta.expect("measured");
        assert!((eta.seconds - 84_000.0 / 1_480.0).abs() < 1e-6);
    }

    #[test]
    fn after_the_load_the_eta_counts_the_verification_still_ahead() {
        // The card after the run: loaded everywhere, 8 of 16
        // buckets verified, "ETA 0s". Verification still has 8 buckets.
        let mut buckets: Vec<BucketWork> = (0..8)
            .map(|_| bucket(Phase::Verified, 25_000, 25_100))
            .collect();
        buckets.extend((0..8).map(|_| bucket(Phase::CaughtUp, 25_000, 25_200)));
        let rates = [
            rate(Stage::Verify, false, 8_000.0),
            rate(Stage::Verify, false, 10_000.0),
            rate(Stage::Verify, false, 12_000.0),
        ];
        let f = forecast(&buckets, &rates);
        assert_eq!(f.stages.len(), 1);
        let verify = &f.stages[0];
        assert_eq!(verify.stage, Stage::Verify);
        assert_eq!(verify.buckets_left, 8);
        assert_eq!(verify.work_left, 8 * 25_200);
        let eta = f.eta.expect("every phase left is measured");
        assert!((eta.seconds - 201_600.0 / 10_000.0).abs() < 1e-9);
        assert!(eta.fast < eta.seconds && eta.seconds < eta.slow);
        assert!(eta.seconds > 0.0, "not 0s while buckets are unverified");
        assert_eq!(f.pace_now, None, "nothing runs now");
    }

    #[test]
    fn phases_add_up_and_catch_up_counts_buckets() {
        let buckets = [
            bucket(Phase::Loaded, 1_000, 1_000),
            bucket(Phase::Planned, 1_000, 0),
        ];
        let rates = [
            rate(Stage::Load, false, 100.0),
            rate(Stage::CatchUp, false, 0.5),
            rate(Stage::Verify, false, 1_000.0),
        ];
        let f = forecast(&buckets, &rates);
        let stages: Vec<(Stage, i64)> = f.stages.iter().map(|s| (s.stage, s.work_left)).collect();
        assert_eq!(
            stages,
            vec![
                (Stage::Load, 1_000),
                (Stage::CatchUp, 2),
                (Stage::Verify, 2_000)
            ]
        );
        let eta = f.eta.expect("measured");
        assert!((eta.seconds - (10.0 + 4.0 + 2.0)).abs() < 1e-9);
    }

    #[test]
    fn everything_verified_is_done_with_no_time_left() {
        let f = forecast(&[bucket(Phase::Verified, 10, 10)], &[]);
        assert!(f.stages.is_empty());
        assert_eq!(f.eta, Some(Span::ZERO));
        assert_eq!(f.rows.percent, 100.0);
    }

    #[test]
    fn a_failed_bucket_counts_where_it_stopped() {
        let f = forecast(
            &[
                bucket(Phase::Failed, 1_000, 300),
                bucket(Phase::Failed, 1_000, 1_000),
            ],
            &[],
        );
        assert_eq!(f.stages[0].stage, Stage::Load);
        assert_eq!(f.stages[0].buckets_left, 1);
        assert_eq!(f.stages[1].stage, Stage::CatchUp);
        assert_eq!(f.stages[1].buckets_left, 2);
    }

    #[test]
    fn what_a_job_measured() {
        let job = |kind, state, started: Option<i64>, finished: Option<i64>, rows, rate| Job {
            id: 1,
            migration_id: Some(1),
            bucket_id: Some(1),
            kind,
            params: serde_json::Value::Null,
            state,
            requested: None,
            rate_limit: None,
            worker: None,
            lease_expires_at: None,
            attempts: 1,
            lease_token: 1,
            rows_done: rows,
            rows_total: None,
            rate,
            eta_seconds: None,
            message: None,
            created_by: "t".into(),
            created_at: 0,
            started_at: started,
            updated_at: 0,
            finished_at: finished,
        };
        let now = 100_000_000;
        let running = job(
            JobKind::BulkLoad,
            JobState::Running,
            Some(now - 10_000),
            None,
            30_000,
            Some(2_900.0),
        );
        assert_eq!(measured(&running, now).map(|m| m.rate), Some(2_900.0));

        // Jobs too short to report while running still give a pace: two
        // 25,000-row loads that finished in the last 10 s, nothing older.
        let quick = |start, end| {
            job(
                JobKind::BulkLoad,
                JobState::Succeeded,
                Some(start),
                Some(end),
                25_000,
                None,
            )
        };
        let pace = recent_pace(
            &[
                quick(now - 10_000, now - 6_000),
                quick(now - 5_000, now - 1_000),
            ],
            now,
        );
        assert_eq!(pace, Some(5_000.0));
        let old = quick(now - 200_000, now - 100_000);
        assert_eq!(recent_pace(&[old], now), None, "older than the window");
        assert_eq!(recent_pace(&[], now), None);
        let finished = job(
            JobKind::Verify,
            JobState::Succeeded,
            Some(now - 20_000),
            Some(now - 10_000),
            50_000,
            None,
        );
        assert_eq!(measured(&finished, now).map(|m| m.rate), Some(5_000.0));
        let old = job(
            JobKind::Verify,
            JobState::Succeeded,
            Some(0),
            Some(10_000),
            50_000,
            None,
        );
        assert_eq!(measured(&old, now), None, "older than an hour");
        let caught = job(
            JobKind::CatchUp,
            JobState::Succeeded,
            Some(now - 4_000),
            Some(now - 2_000),
            7,
            None,
        );
        assert_eq!(measured(&caught, now).map(|m| m.rate), Some(0.5));
        let relay = job(
            JobKind::Relay,
            JobState::Running,
            Some(now - 4_000),
            None,
            7,
            Some(3.0),
        );
        assert_eq!(measured(&relay, now), None);
    }
}
