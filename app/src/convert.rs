//! Server-side conversions from `tern-control`'s domain types to the UI types
//! the pages receive.

use tern_control::buckets::Bucket;
use tern_control::clock::format_ms;
use tern_control::jobs::Job;

use crate::types::{BucketLine, JobRow, PhaseCount};

fn when(ms: Option<i64>) -> String {
    ms.map(format_ms).unwrap_or_default()
}

pub fn job_row(job: &Job, bucket_idx: Option<i64>) -> JobRow {
    JobRow {
        id: job.id,
        kind: job.kind.as_str().to_string(),
        state: job.state.as_str().to_string(),
        requested: job.requested.map(|r| format!("{r:?}").to_lowercase()),
        bucket_idx,
        rows_done: job.rows_done,
        rows_total: job.rows_total,
        rate: job.rate,
        rate_limit: job.rate_limit,
        eta_seconds: job.eta_seconds,
        message: job.message.clone().unwrap_or_default(),
        attempts: job.attempts,
        worker: job.worker.clone().unwrap_or_default(),
        created_by: job.created_by.clone(),
        updated_at: format_ms(job.updated_at),
    }
}

pub fn bucket_line(b: &Bucket, job: Option<&Job>, batch_seq: Option<i64>) -> BucketLine {
    BucketLine {
        id: b.id,
        idx: b.idx,
        table: b.table_name.clone().unwrap_or_default(),
        range: format!(
            "[{}, {})",
            b.lo.as_deref().unwrap_or("−∞"),
            b.hi.as_deref().unwrap_or("+∞")
        ),
        planned_rows: b.planned_rows,
        rows_copied: b.rows_copied,
        phase: b.phase.as_str().to_string(),
        phase_since: when(b.phase_since),
        snapshot_at: when(b.snapshot_at),
        loaded_at: when(b.loaded_at),
        dual_write_at: when(b.dual_write_at),
        caught_up_at: when(b.caught_up_at),
        verified_at: when(b.verified_at),
        accuracy: b.accuracy,
        lag_changes: b.lag_changes,
        lag_seconds: b.lag_seconds,
        last_error: b.last_error.clone().unwrap_or_default(),
        batch: batch_seq,
        job: job.map(|j| job_row(j, Some(b.idx))),
    }
}

pub fn phase_counts(phases: &[(tern_control::buckets::Phase, i64)]) -> Vec<PhaseCount> {
    phases
        .iter()
        .map(|(p, n)| PhaseCount {
            phase: p.as_str().to_string(),
            count: *n,
        })
        .collect()
}

fn span(s: &tern_control::forecast::Span) -> (f64, f64, f64) {
    (s.seconds, s.fast, s.slow)
}

pub fn forecast_view(f: &tern_control::forecast::Forecast) -> crate::types::ForecastView {
    use tern_control::forecast::Stage;
    crate::types::ForecastView {
        done: f.rows.done,
        of: f.rows.of,
        percent: f.rows.percent,
        recounted: f.rows.recounted,
        pace_now: f.pace_now,
        stages: f
            .stages
            .iter()
            .map(|s| crate::types::StageView {
                name: s.stage.as_str().to_string(),
                buckets_left: s.buckets_left,
                work_left: s.work_left,
                unit: if s.stage == Stage::CatchUp {
                    "buckets"
                } else {
                    "rows"
                }
                .to_string(),
                running: s.running,
                pace: s.pace,
                eta: s.eta.as_ref().map(span),
            })
            .collect(),
        eta: f.eta.as_ref().map(span),
        unmeasured: f
            .unmeasured
            .iter()
            .map(|s| s.as_str().to_string())
            .collect(),
    }
}

/// Blockers by kind, each with a link to the bucket or client it concerns.
pub fn blocker_views(
    migration_id: i64,
    groups: Vec<tern_control::blockers::BlockerGroup>,
) -> Vec<crate::types::BlockerGroupView> {
    groups
        .into_iter()
        .map(|g| crate::types::BlockerGroupView {
            kind: g.kind.as_str().to_string(),
            count: g.count,
            first: g
                .first
                .into_iter()
                .map(|b| crate::types::BlockerView {
                    href: match (b.bucket, b.client) {
                        (Some(idx), _) => Some(format!("/migrations/{migration_id}/buckets/{idx}")),
                        (None, Some(c)) => Some(format!("/clients/{c}")),
                        _ => None,
                    },
                    text: b.text,
                })
                .collect(),
        })
        .collect()
}
