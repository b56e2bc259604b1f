//! What a job is: its kind, state, the requests written on it, the progress
//! a worker reports and how a worker ends it. No SQL here.

use serde::{Deserialize, Serialize};

use crate::error::{ControlError, Result};
use crate::phases::Phase;

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobKind {
    BulkLoad,
    Relay,
    CatchUp,
    Verify,
    Repair,
    DataFix,
    /// Applies new → old for switched buckets (issue 17).
    ReverseRelay,
}

impl JobKind {
    pub const ALL: [JobKind; 7] = [
        JobKind::BulkLoad,
        JobKind::Relay,
        JobKind::CatchUp,
        JobKind::Verify,
        JobKind::Repair,
        JobKind::DataFix,
        JobKind::ReverseRelay,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::BulkLoad => "bulk-load",
            JobKind::Relay => "relay",
            JobKind::CatchUp => "catch-up",
            JobKind::Verify => "verify",
            JobKind::Repair => "repair",
            JobKind::DataFix => "data-fix",
            JobKind::ReverseRelay => "reverse-relay",
        }
    }

    pub fn parse(s: &str) -> Result<JobKind> {
        JobKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| ControlError::Invalid(format!("unknown job kind `{s}`")))
    }
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobState {
    Queued,
    Running,
    Paused,
    Succeeded,
    Failed,
    Cancelled,
}

crate::db::stored_as_text!(JobKind, JobState);

impl JobState {
    pub const ALL: [JobState; 6] = [
        JobState::Queued,
        JobState::Running,
        JobState::Paused,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Paused => "paused",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Result<JobState> {
        JobState::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| ControlError::Invalid(format!("unknown job state `{s}`")))
    }

    /// Finished for good.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }
}

/// What someone asked of a running job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Request {
    Pause,
    Cancel,
}

impl Request {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Request::Pause => "pause",
            Request::Cancel => "cancel",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Request> {
        match s {
            "pause" => Some(Request::Pause),
            "cancel" => Some(Request::Cancel),
            _ => None,
        }
    }
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: i64,
    pub migration_id: Option<i64>,
    pub bucket_id: Option<i64>,
    pub kind: JobKind,
    pub params: serde_json::Value,
    pub state: JobState,
    pub requested: Option<Request>,
    /// Rows (or records) per second; `None` is unthrottled.
    pub rate_limit: Option<f64>,
    pub worker: Option<String>,
    pub lease_expires_at: Option<i64>,
    pub attempts: i64,
    /// The fence token of the job's current lease: grows with every lease
    /// taken (store-wide); the holder's writes carry it and a stale one is
    /// refused (`../../engine/src/fence.rs` says why).
    pub lease_token: i64,
    pub rows_done: i64,
    pub rows_total: Option<i64>,
    pub rate: Option<f64>,
    pub eta_seconds: Option<f64>,
    pub message: Option<String>,
    pub created_by: String,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
}

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub migration_id: Option<i64>,
    pub bucket_id: Option<i64>,
    pub kind: JobKind,
    pub params: serde_json::Value,
    pub rate_limit: Option<f64>,
}

/// Progress a worker reports with its heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub rows_done: i64,
    pub rows_total: Option<i64>,
    pub rate: Option<f64>,
    pub eta_seconds: Option<f64>,
    pub message: Option<String>,
}

/// What the store tells a worker at each heartbeat.
#[derive(Debug, Clone, PartialEq)]
pub enum Heartbeat {
    /// Keep going, at this rate limit; honour `requested` if set.
    Continue {
        requested: Option<Request>,
        rate_limit: Option<f64>,
    },
    /// The lease is gone (expired and taken by another worker, or the job was
    /// finished elsewhere): stop at once and write nothing more.
    LeaseLost,
}

/// How a worker ends a job it holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Done; `bucket_phase` is where the job's bucket moves next (loaded after
    /// a bulk load, verified or caught-up after a verification, …).
    Succeeded {
        summary: Option<String>,
        bucket_phase: Option<Phase>,
    },
    Failed(String),
    /// Stopped at a checkpoint on request; resumes from there later.
    Paused,
    Cancelled,
    /// Stopped at a checkpoint because the worker shuts down: back in the
    /// queue at once, for any worker to resume.
    Released,
}

impl Outcome {
    /// The state a job ends in, and the message it is left with (`worker`
    /// names who released it).
    pub fn ends_in(&self, worker: &str) -> (JobState, Option<String>) {
        match self {
            Outcome::Succeeded { summary, .. } => (JobState::Succeeded, summary.clone()),
            Outcome::Failed(m) => (JobState::Failed, Some(m.clone())),
            Outcome::Paused => (JobState::Paused, Some("paused at a checkpoint".into())),
            Outcome::Cancelled => (JobState::Cancelled, Some("cancelled".into())),
            Outcome::Released => (
                JobState::Queued,
                Some(format!(
                    "released by {worker} (shutting down); resumes from its checkpoint"
                )),
            ),
        }
    }

    /// Where the job's bucket moves when the job ends this way (`None`: it
    /// stays, as for a job handed back to the queue).
    pub fn bucket_phase(&self) -> Option<Phase> {
        match self {
            Outcome::Succeeded { bucket_phase, .. } => *bucket_phase,
            Outcome::Failed(_) | Outcome::Cancelled => Some(Phase::Failed),
            Outcome::Paused => Some(Phase::Paused),
            Outcome::Released => None,
        }
    }
}

/// The state a job in `state` is in once `request` is asked of it: a running
/// job stays running (its worker stops at its next checkpoint), a queued one
/// pauses or is cancelled at once, a paused one may only be cancelled.
pub fn state_after_request(job_id: i64, state: JobState, request: Request) -> Result<JobState> {
    match (state, request) {
        (JobState::Running, _) => Ok(JobState::Running),
        (JobState::Queued, Request::Pause) => Ok(JobState::Paused),
        (JobState::Queued | JobState::Paused, Request::Cancel) => Ok(JobState::Cancelled),
        (state, request) => Err(ControlError::Conflict(format!(
            "job {job_id} is {}: it cannot be asked to {}{}",
            state.as_str(),
            request.as_str(),
            if state == JobState::Paused {
                " (resume it, or cancel it)"
            } else {
                ""
            }
        ))),
    }
}

/// Refuses a rate limit that is not a positive number of rows per second.
pub(crate) fn check_rate(rate: Option<f64>) -> Result<()> {
    match rate {
        Some(r) if !(r.is_finite() && r > 0.0) => Err(ControlError::Invalid(format!(
            "a rate limit of {r} is not valid: give rows per second above 0, or none for unthrottled"
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_changes_a_waiting_job_at_once_and_a_running_one_at_its_checkpoint() {
        use JobState::*;
        let after = |s, r| state_after_request(4, s, r).ok();
        assert_eq!(after(Running, Request::Pause), Some(Running));
        assert_eq!(after(Running, Request::Cancel), Some(Running));
        assert_eq!(after(Queued, Request::Pause), Some(Paused));
        assert_eq!(after(Queued, Request::Cancel), Some(Cancelled));
        assert_eq!(after(Paused, Request::Cancel), Some(Cancelled));
        for finished in [Succeeded, Failed, Cancelled] {
            assert_eq!(after(finished, Request::Cancel), None);
        }
        let paused = state_after_request(4, Paused, Request::Pause)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(
            paused,
            "job 4 is paused: it cannot be asked to pause (resume it, or cancel it)"
        );
    }

    #[test]
    fn a_jobs_end_says_where_its_bucket_goes() {
        let done = Outcome::Succeeded {
            summary: Some("ok".into()),
            bucket_phase: Some(Phase::Loaded),
        };
        assert_eq!(done.bucket_phase(), Some(Phase::Loaded));
        assert_eq!(done.ends_in("w1"), (JobState::Succeeded, Some("ok".into())));
        assert_eq!(
            Outcome::Failed("x".into()).bucket_phase(),
            Some(Phase::Failed)
        );
        assert_eq!(Outcome::Cancelled.bucket_phase(), Some(Phase::Failed));
        assert_eq!(Outcome::Paused.bucket_phase(), Some(Phase::Paused));
        assert_eq!(Outcome::Released.bucket_phase(), None);
        let (state, message) = Outcome::Released.ends_in("w1");
        assert_eq!(state, JobState::Queued);
        assert!(message.is_some_and(|m| m.starts_with("released by w1")));
    }
}
